"""Fakes for the GCP tests, all on 127.0.0.1: Compute Engine's REST API + the metadata server + an
OAuth token endpoint (FakeGoogle, on pytest-httpserver), and GCS (gcp-storage-emulator served over
HTTP for the launcher and HTTPS for gsutil, which speaks nothing else).

A plugin, not a test module: load it with `pytest_plugins = ["fake_google"]`. Its fixtures are then
registered once, globally, whatever order the test files are collected in (a test module that also
serves as a plugin gets its fixtures scoped to itself when pytest happens to collect it first).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import ssl
import threading
from functools import partial
from http import server
from typing import ClassVar

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

PROJECT = "runner-test"
ZONES = ("us-central1-a", "us-central1-b", "us-central1-c", "europe-west1-b")
TOKEN = "fake-token"
API = "/compute/v1/projects/(?P<project>[^/]+)/"


def error(status: int, reason: str, message: str) -> Response:
    """An error as Google APIs answer it."""
    body = {"error": {"code": status, "message": message, "errors": [{"message": message, "domain": "global", "reason": reason}]}}
    return Response(json.dumps(body), status, content_type="application/json")


def ok(body) -> Response:
    return Response(json.dumps(body), 200, content_type="application/json")


class FakeGoogle:
    """Compute Engine in memory, with failure switches: `insert_errors[zone]` is a list of errors the
    next inserts there meet: ("sync", http status, reason, message) or ("op", code, message)."""

    def __init__(self) -> None:
        self.images: dict[str, dict] = {}
        self.instances: dict[tuple[str, str], dict] = {}
        self.ops: dict[tuple[str, str], dict] = {}
        self.by_request_id: dict[str, dict] = {}
        self.insert_errors: dict[str, list[tuple]] = {}
        self.deny: dict[str, tuple[int, str, str]] = {}  # method -> error for every such call
        self.console: dict[str, str] = {}
        self.log: list[dict] = []
        self.lacking: set[str] = set()  # permissions projects.testIamPermissions says the caller lacks
        self.private_access: dict[str, bool] = {}  # region -> Private Google Access of its subnets (True unless set)
        self.routers: dict[str, list[dict]] = {}  # region -> its Cloud Routers (REST JSON)
        self.vm = ("us-central1-a", "")  # whose metadata server this is (the shutdown-script's VM)
        self.quotas: dict[str, list[dict]] = {}  # region -> its quotas as regions.get lists them (default: CPUS 1000)
        self.region_errors: dict[str, tuple[int, str, str]] = {}  # region -> the error regions.get answers
        self.bulk_capacity: dict[str, int] = {}  # zone -> how many VMs a bulkInsert there creates at most (default: all)
        self.bulk_last = False  # a short bulkInsert creates the last names asked for, not the first
        self.label_errors: dict[str, tuple[int, str, str]] = {}  # a regex of VM names -> the error their setLabels answers
        self.firewalls: dict[str, dict] = {}  # name -> the firewall rule (REST JSON)
        self.next_id = 1000
        self.url = ""

    # ---- test helpers
    def add_image(self, name: str, family: str = "runner", created: str = "2024-01-01T00:00:00.000-00:00", **kw) -> None:
        self.images[name] = {"name": name, "family": family, "creationTimestamp": created, "status": "READY",
                             "architecture": "X86_64", "diskSizeGb": "16", **kw}

    def inserts(self) -> list[dict]:
        return [r for r in self.log if r["method"] == "POST" and r["path"].endswith("/instances")]

    def bulk_inserts(self) -> list[dict]:
        return [r for r in self.log if r["method"] == "POST" and r["path"].endswith("/instances/bulkInsert")]

    def set_labels(self) -> list[dict]:
        return [r for r in self.log if r["method"] == "POST" and r["path"].endswith("/setLabels")]

    def preempt(self, zone: str, name: str) -> None:
        """As GCE does with a spot VM whose termination action is DELETE."""
        vm = self.instances.pop((zone, name))
        self._op(zone, "compute.instances.preempted", vm, done=True)

    def _op(self, zone: str, kind: str, vm: dict, done: bool = False, **extra) -> dict:
        self.next_id += 1
        op = {"kind": "compute#operation", "id": str(self.next_id), "name": f"operation-{self.next_id}", "operationType": kind,
              "status": "DONE" if done else "RUNNING", "targetId": vm.get("id", "0"), "zone": f"{self.url}/zones/{zone}",
              "targetLink": f"{self.url}/compute/v1/projects/{PROJECT}/zones/{zone}/instances/{vm['name']}",
              "insertTime": "2024-01-01T00:00:00.000-00:00", **({"endTime": "2024-01-01T00:01:00.000-00:00"} if done else {}), **extra}
        self.ops[(zone, op["name"])] = op
        return op

    # ---- the server
    def handle(self, request: Request) -> Response:
        body = request.get_data()
        self.log.append({"method": request.method, "path": request.path, "args": dict(request.args),
                         "json": json.loads(body) if body and request.path.startswith("/compute") else None,
                         "auth": request.headers.get("Authorization", "")})
        if request.path == "/token":
            return ok({"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"})
        if request.path == "/" or request.path.startswith("/computeMetadata/v1/"):
            return self.metadata(request)
        if request.path.endswith(":testIamPermissions"):  # Resource Manager: what the caller holds of what it asks
            asked = json.loads(body or b"{}").get("permissions") or []
            return ok({"permissions": [p for p in asked if p not in self.lacking]})
        if request.method in self.deny:
            return error(*self.deny[request.method])
        for pattern, fn in self.ROUTES:
            m = re.fullmatch(API + pattern, request.path)
            if m and fn.__name__.startswith(request.method.lower() + "_"):
                return fn(self, request, **{k: v for k, v in m.groupdict().items() if k != "project"})
        return error(404, "notFound", f"The resource '{request.path}' was not found")

    def metadata(self, request: Request) -> Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            return Response("Missing Metadata-Flavor:Google header", 403)
        zone, name = self.vm
        values = {
            "instance/name": name, "instance/zone": f"projects/123456/zones/{zone}", "instance/id": "42",
            "project/project-id": PROJECT, "": "computeMetadata/\n",
            "instance/service-accounts": "default/\nrunner-vm@runner-test.iam.gserviceaccount.com/\n",
            "instance/service-accounts/default/scopes": "https://www.googleapis.com/auth/devstorage.read_write\n",
            "instance/service-accounts/default/token": json.dumps({"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"}),
        }
        key = request.path.removeprefix("/").removeprefix("computeMetadata/v1/").rstrip("/")
        if key not in values:
            return Response("not found", 404)
        return Response(values[key], 200, content_type="application/json" if key.endswith("token") else "application/text",
                        headers={"Metadata-Flavor": "Google"})

    def get_zones(self, request):
        return ok({"items": [{"name": z, "status": "UP", "region": f"{self.url}/regions/{z[:-2]}"} for z in ZONES]})

    def get_zone(self, request, zone):
        return ok({"name": zone, "status": "UP"}) if zone in ZONES else error(404, "notFound", f"zone {zone} not found")

    def get_family(self, request, family):
        found = sorted((i for i in self.images.values() if i["family"] == family), key=lambda i: i["creationTimestamp"])
        return ok(found[-1]) if found else error(404, "notFound", f"The resource 'family/{family}' was not found")

    def get_image(self, request, image):
        return ok(self.images[image]) if image in self.images else error(404, "notFound", f"The resource '{image}' was not found")

    def post_insert(self, request, zone):
        rid = request.args.get("requestId", "")
        if rid in self.by_request_id:
            return ok(self.by_request_id[rid])
        vm = json.loads(request.get_data())
        queued = self.insert_errors.get(zone) or []
        if queued:
            kind, *rest = queued.pop(0)
            if kind == "sync":
                return error(*rest)
            code, message = rest
            op = self._op(zone, "insert", {"name": vm["name"]}, done=True, httpErrorStatusCode=503,
                          error={"errors": [{"code": code, "message": message}]})
        else:
            self.next_id += 1
            vm.update(id=str(self.next_id), status="RUNNING", zone=f"{self.url}/zones/{zone}")
            self.instances[(zone, vm["name"])] = vm
            op = self._op(zone, "insert", vm)
        self.by_request_id[rid] = op
        return ok(op)

    def _queued_error(self, zone: str, name: str) -> Response | dict | None:
        """The next injected error of an insert in `zone`: a response (sync), an operation (op), or None."""
        queued = self.insert_errors.get(zone) or []
        if not queued:
            return None
        kind, *rest = queued.pop(0)
        if kind == "sync":
            return error(*rest)
        code, message = rest
        return self._op(zone, "insert", {"name": name}, done=True, httpErrorStatusCode=503, error={"errors": [{"code": code, "message": message}]})

    def post_bulk(self, request, zone):
        """instances.bulkInsert: the named VMs, as many as `bulk_capacity` allows (none below minCount)."""
        rid = request.args.get("requestId", "")
        if rid in self.by_request_id:
            return ok(self.by_request_id[rid])
        body = json.loads(request.get_data())
        names = sorted(body.get("perInstanceProperties") or {})  # a map: GCE keeps no order
        if len(names) != int(body.get("count", 0)) or any(not re.fullmatch(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?", n) for n in names):
            return error(400, "invalid", f"bulkInsert: count {body.get('count')} for names {names}")
        queued = self._queued_error(zone, names[0])
        if isinstance(queued, Response):
            return queued
        room = self.bulk_capacity.get(zone, len(names))
        made = (names[-room:] if room else []) if self.bulk_last else names[:room]
        if queued is None and len(made) < int(body.get("minCount", len(names))):
            queued = self._op(zone, "bulkInsert", {"name": names[0]}, done=True, httpErrorStatusCode=503, error={"errors": [
                {"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": f"The zone '{zone}' does not have enough resources available"}]})
        if queued is None:
            for name in made:
                self.next_id += 1
                vm = {**json.loads(json.dumps(body["instanceProperties"])), "name": name, "id": str(self.next_id), "status": "RUNNING",
                      "zone": f"{self.url}/zones/{zone}", "labelFingerprint": f"fp-{self.next_id}"}
                self.instances[(zone, name)] = vm
            queued = self._op(zone, "bulkInsert", {"name": names[0]})
        self.by_request_id[rid] = queued
        return ok(queued)

    def get_list(self, request, zone):
        clauses = re.findall(r'([\w.-]+) = "([^"]*)"', request.args.get("filter", ""))
        found = [vm for (z, _), vm in self.instances.items() if z == zone
                 and all({"status": vm["status"], **{f"labels.{k}": v for k, v in vm.get("labels", {}).items()}}.get(k) == v for k, v in clauses)]
        return ok({"items": found})

    def post_labels(self, request, zone, name):
        vm = self.instances.get((zone, name))
        if vm is None:
            return error(404, "notFound", f"The resource 'projects/{PROJECT}/zones/{zone}/instances/{name}' was not found")
        for pattern, err in self.label_errors.items():
            if re.search(pattern, name):
                return error(*err)
        body = json.loads(request.get_data())
        if body.get("labelFingerprint") != vm.get("labelFingerprint"):
            return error(412, "conditionNotMet", f"Labels fingerprint either invalid or resource labels have changed for {name}")
        self.next_id += 1
        vm.update(labels=body.get("labels") or {}, labelFingerprint=f"fp-{self.next_id}")
        return ok(self._op(zone, "setLabels", vm, done=True))

    def get_instance(self, request, zone, name):
        vm = self.instances.get((zone, name))
        return ok(vm) if vm else error(404, "notFound", f"The resource 'projects/{PROJECT}/zones/{zone}/instances/{name}' was not found")

    def delete_instance(self, request, zone, name):
        vm = self.instances.pop((zone, name), None)
        if vm is None:
            return error(404, "notFound", f"The resource 'projects/{PROJECT}/zones/{zone}/instances/{name}' was not found")
        return ok(self._op(zone, "delete", vm))

    def get_serial(self, request, zone, name):
        if (zone, name) not in self.instances:
            return error(404, "notFound", f"instance {name} not found")
        return ok({"contents": self.console.get(name, ""), "start": "0", "next": "100"})

    def get_aggregated(self, request):
        clauses = re.findall(r'([\w.-]+) = "([^"]*)"', request.args.get("filter", ""))
        items: dict[str, dict] = {f"zones/{z}": {"warning": {"code": "NO_RESULTS_ON_PAGE"}} for z in ZONES}
        for (zone, _), vm in self.instances.items():
            fields = {"status": vm["status"], **{f"labels.{k}": v for k, v in vm.get("labels", {}).items()}}
            if all(fields.get(k) == v for k, v in clauses):
                items[f"zones/{zone}"].setdefault("instances", []).append(vm)
        return ok({"items": items})

    def post_wait(self, request, zone, op):
        found = self.ops[(zone, op)]
        found["status"] = "DONE"
        return ok(found)

    def get_ops(self, request, zone):
        want = re.findall(r'operationType = "([^"]+)"', request.args.get("filter", ""))
        return ok({"items": [o for (z, _), o in self.ops.items() if z == zone and (not want or o["operationType"] in want)]})

    def get_subnet(self, request, region, name):
        net = f"{self.url}/compute/v1/projects/{PROJECT}/global/networks/{name}"
        return ok({"name": name, "region": region, "network": net, "privateIpGoogleAccess": self.private_access.get(region, True)})

    def get_routers(self, request, region):
        return ok({"items": self.routers.get(region, [])})

    def get_region(self, request, region):
        if region in self.region_errors:
            return error(*self.region_errors[region])
        if region not in {z[:-2] for z in ZONES}:
            return error(404, "notFound", f"The resource 'projects/{PROJECT}/regions/{region}' was not found")
        quotas = self.quotas.get(region, [{"metric": "CPUS", "limit": 1000.0, "usage": 0.0}])
        return ok({"kind": "compute#region", "name": region, "status": "UP", "quotas": quotas})

    def get_firewall(self, request, name):
        if name not in self.firewalls:
            return error(404, "notFound", f"The resource 'projects/{PROJECT}/global/firewalls/{name}' was not found")
        return ok(self.firewalls[name])

    def post_firewalls(self, request):
        rule = json.loads(request.get_data())
        if rule["name"] in self.firewalls:
            return error(409, "alreadyExists", f"The resource 'projects/{PROJECT}/global/firewalls/{rule['name']}' already exists")
        link = f"{self.url}/compute/v1/projects/{PROJECT}/global/firewalls/{rule['name']}"
        self.firewalls[rule["name"]] = {**rule, "kind": "compute#firewall", "selfLink": link}
        return ok({"kind": "compute#operation", "name": f"op-fw-{rule['name']}", "operationType": "insert", "status": "DONE", "targetLink": link})

    ROUTES = (
        ("zones", get_zones), ("zones/(?P<zone>[^/]+)", get_zone),
        ("global/images/family/(?P<family>[^/]+)", get_family), ("global/images/(?P<image>[^/]+)", get_image),
        ("zones/(?P<zone>[^/]+)/instances", post_insert), ("zones/(?P<zone>[^/]+)/instances", get_list),
        ("zones/(?P<zone>[^/]+)/instances/bulkInsert", post_bulk),
        ("zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/setLabels", post_labels),
        ("zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)", get_instance),
        ("zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)", delete_instance),
        ("zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/serialPort", get_serial),
        ("aggregated/instances", get_aggregated),
        ("global/firewalls", post_firewalls), ("global/firewalls/(?P<name>[^/]+)", get_firewall),
        ("regions/(?P<region>[^/]+)/subnetworks/(?P<name>[^/]+)", get_subnet),
        ("regions/(?P<region>[^/]+)/routers", get_routers),
        ("regions/(?P<region>[^/]+)", get_region),
        ("zones/(?P<zone>[^/]+)/operations/(?P<op>[^/]+)/wait", post_wait),
        ("zones/(?P<zone>[^/]+)/operations", get_ops),
    )


@pytest.fixture
def google():
    """A FakeGoogle on 127.0.0.1; `.url` is its address (RUNNER_GCP_ENDPOINT, GCE_METADATA_HOST, token_uri)."""
    fake = FakeGoogle()
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.expect_request(re.compile(".*")).respond_with_handler(fake.handle)
    srv.start()
    fake.url = srv.url_for("").rstrip("/")
    yield fake
    srv.clear()
    srv.stop()


# ---------------------------------------------------------------- GCS

class GcsHandler:
    """The emulator's handler, made to take what gsutil sends as GCS does, one request at a time."""

    lock = threading.Lock()
    auth: ClassVar[list[str]] = []  # the Authorization header of every request
    requests: ClassVar[list[str]] = []  # and its path
    host = ""  # the HTTP door, named in every link the emulator hands out (mediaLink, Location)

    @classmethod
    def make(cls):
        from gcp_storage_emulator.server import RequestHandler

        class Handler(RequestHandler):
            def parse_request(self):
                if not super().parse_request():
                    return False
                cls.auth.append(self.headers.get("Authorization", ""))
                cls.requests.append(self.path)
                # links name one host, as GCS's do: a mediaLink made for gsutil (HTTPS door) must
                # work for the launcher (HTTP door); apitools puts its own base on upload URLs
                if "Host" in self.headers:
                    self.headers.replace_header("Host", cls.host)
                # gsutil starts resumable uploads at /resumable/upload/..., as GCS allows
                self.path = self.path.replace("/resumable/upload/", "/upload/", 1)
                ctype = self.headers.get("Content-Type", "")
                if "boundary='" in ctype:  # apitools quotes the multipart boundary with ', which GCS accepts
                    self.headers.replace_header("Content-Type", ctype.replace("'", '"'))
                return True

            def handle_one_request(self):
                with cls.lock:
                    super().handle_one_request()

        return Handler


def self_signed(folder) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (gsutil is told not to validate it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return str(folder / "cert.pem"), str(folder / "key.pem")


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """One in-memory GCS, two doors: (http port, https port)."""
    from gcp_storage_emulator.storage import Storage

    storage, handler = Storage(use_memory_fs=True), GcsHandler.make()
    servers = []
    for tls in (False, True):
        srv = server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, storage))
        srv.daemon_threads = True
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self_signed(tmp_path_factory.mktemp("tls")))
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    GcsHandler.host = f"127.0.0.1:{servers[0].server_address[1]}"
    yield tuple(s.server_address[1] for s in servers)
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def gcs(gcs_server, monkeypatch, tmp_path):
    """A fresh bucket; STORAGE_EMULATOR_HOST for the launcher, BOTO_CONFIG for gsutil. -> (client, bucket)."""
    import secrets

    from google.cloud import storage

    http, https = gcs_server
    boto = tmp_path / "boto.cfg"
    boto.write_text(f"[Credentials]\ngs_json_host = 127.0.0.1\ngs_json_port = {https}\n"
                    "[Boto]\nhttps_validate_certificates = False\n[GSUtil]\nsoftware_update_check_period = 0\n")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{http}")
    monkeypatch.setenv("BOTO_CONFIG", str(boto))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # gsutil keeps a credential cache there
    GcsHandler.auth.clear()  # each test sees its own requests only
    GcsHandler.requests.clear()
    client = storage.Client(project=PROJECT)
    bucket = f"runner-test-{secrets.token_hex(4)}"
    client.create_bucket(bucket)
    return client, bucket
