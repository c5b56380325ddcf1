"""The GCP backend: one GCE VM per job, booted from the baked image, labelled runner-job=<id>.

The rendered script goes in the metadata key `user-data` (the image's cloud-init reads it through its
GCE datasource). Zones are tried in order, spot first; then standard (on-demand) if allowed. Errors
are classified by code at the edge (gcp_build.classify). Nothing is left billing: GCE deletes the VM
at preemption and at the cloud-side deadline (max_run_duration, instance_termination_action=DELETE);
the VM deletes itself when its script powers it off (a guest power-off only STOPS a GCE VM, and a
stopped VM bills its disk): the `shutdown-script` metadata key; and what that misses, state() and
every launch delete (docs/gcp.md). google-cloud-compute (>1 s to import) is imported on first call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from runner import images, settings
from runner.errors import AuthError, CapacityError, NotFoundError, NotOwnedError, QuotaError, RunnerError, SpecError
from runner.providers import gcp_disks, gcp_network, gcp_prices
from runner.providers.base import Instance, InstanceState, LaunchRequest
from runner.providers.gcp_api import call, translate  # noqa: F401 (translate: gcp_doctor's)
from runner.providers.gcp_batch import job_of, owned_by
from runner.providers.gcp_build import (
    ALIVE,
    DEADLINE_MARGIN,
    DEFAULT_TYPE,
    IMAGE_FAMILY,
    LABEL,
    TYPE_RE,
    ZONE_RE,
    GcpSettings,
    check_fit,
    classify,
    image_link,
    instance_body,
    instance_state,
    label_value,
    pick,
    plan_attempts,
    region_of,
    request_id,
)
from runner.store import split_uri

IMAGE_RE = re.compile(r"^(?:https://[^/]+/compute/v1/)?projects/(?P<project>[^/]+)/global/images/(?P<rest>.+)\Z")
NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")  # a GCE resource name
PROJECT_RE = re.compile(r"(?:[a-z][-a-z0-9.]{0,61}[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]")  # 'my-project', 'example.com:my-project'
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
WAIT_S = 300.0  # at most this long for an insert's operation; after it, the VM is taken as started


class GcpProvider:
    """GCE. state() deletes a stopped (TERMINATED) VM it meets: a stopped VM still bills its disk."""

    name = "gcp"
    default_instance_type = DEFAULT_TYPE
    interruption = "gcp"  # the startup script watches the metadata server's instance/preempted
    metadata_url = "http://metadata.google.internal"
    state_every = 15.0  # seconds between GCE checks while waiting (API rate limits)

    def __init__(self, credentials=None) -> None:
        self._creds = (credentials, None) if credentials is not None else None
        self._clients: dict[str, object] = {}
        self._cfg: GcpSettings | None = None

    # ---- configuration, credentials, clients

    def settings(self) -> GcpSettings:
        if self._cfg is None:
            self._cfg = GcpSettings.load()
        return self._cfg

    def credentials(self):
        """(credentials, their project): Application Default Credentials unless given."""
        if self._creds is None:
            import google.auth

            self._creds = call("Google credentials", google.auth.default, scopes=[CLOUD_PLATFORM])
        return self._creds

    def project(self) -> str:
        project = self.settings().project or self.credentials()[1]
        if not project:
            raise SpecError(f"no GCP project: set RUNNER_GCP_PROJECT (or GOOGLE_CLOUD_PROJECT, or [gcp] project in {settings.path()})")
        return project

    def client(self, kind: str):
        """A compute_v1 client (InstancesClient, ImagesClient, ZoneOperationsClient, ZonesClient), made once."""
        if kind not in self._clients:
            from google.cloud import compute_v1

            endpoint = self.settings().endpoint
            opts = {"api_endpoint": endpoint} if endpoint else None
            self._clients[kind] = getattr(compute_v1, kind)(credentials=self.credentials()[0], transport="rest", client_options=opts)
        return self._clients[kind]

    # ---- checks and planning

    def check_request(self, req: LaunchRequest) -> None:
        """Offline checks (machine type, image, zone, project, service account); `render` calls this too."""
        if not TYPE_RE.match(req.instance_type):
            raise SpecError(f"{req.instance_type!r} is not a GCE machine type (e.g. {DEFAULT_TYPE}, n2-highmem-16)")
        gcp_disks.plan(req)  # the disk type, provisioned speed and local SSDs the machine type takes
        if req.image and req.image.startswith("ami-"):
            raise SpecError(f"--image {req.image!r} is an AMI; give a GCE image name or projects/P/global/images/NAME")
        if req.zone and not ZONE_RE.match(req.zone):
            raise SpecError(f"--zone {req.zone!r} is not a GCE zone (e.g. us-central1-a)")
        if req.zone and req.region and region_of(req.zone) != req.region:
            raise SpecError(f"zone {req.zone} is not in region {req.region}")
        cfg = self.settings()
        if not cfg.service_account:
            raise SpecError(
                "no service account: the VM needs one to read and write the store; set RUNNER_GCP_SERVICE_ACCOUNT "
                f"or [gcp] service_account in {settings.path()} (docs/gcp.md shows its roles)"
            )
        if not (req.zone or req.region or cfg.zones):
            raise SpecError(f"no GCP zone: pass --zone or --region, or set RUNNER_GCP_ZONES (or [gcp] zones in {settings.path()})")
        try:
            self.project()
        except AuthError:
            pass  # no credentials to take the project from: `render` needs none, and launch asks for them before any insert

    def store_for_vm(self, store: str) -> str:
        scheme = split_uri(store)[0]
        if scheme != "gs":
            raise SpecError(
                f"a GCE VM cannot reach the store {store} ({scheme}:// is {'a folder on this machine' if scheme == 'file' else 'not GCS'}): "
                f"set RUNNER_STORE=gs://bucket/prefix (or store = \"gs://...\" in {settings.path()})"
            )
        return store

    def zones_for(self, req: LaunchRequest) -> tuple[str, ...]:
        """--zone, else the configured zones (of --region, if given), else the zones of --region that are UP."""
        if req.zone:
            return (req.zone,)
        zones = self.settings().zones
        if not req.region:
            return zones
        return tuple(z for z in zones if region_of(z) == req.region) or self.region_zones(req.region)

    def region_zones(self, region: str) -> tuple[str, ...]:
        found = call(f"GCE zones.list ({self.project()})", lambda: list(self.client("ZonesClient").list(project=self.project())))
        return tuple(sorted(z.name for z in found if region_of(z.name) == region and z.status == "UP"))

    def resolve_image(self, explicit: str | None) -> dict:
        """--image, else the Packer manifest's image, else the newest of the project's family `runner`."""
        project, imgs = self.project(), self.client("ImagesClient")
        name = explicit or images.gce_image_from_manifest()
        source = "--image" if explicit else f"the Packer manifest {images.manifest_path()}"
        if name:
            m = IMAGE_RE.match(image_link(name, project))
            if not m:
                raise SpecError(f"--image {name!r}: expected an image name or projects/P/global/images/NAME")
            p, rest = m["project"], m["rest"]
            what = f"GCE images.get {rest} ({p})"
            if rest.startswith("family/"):
                img = call(what, imgs.get_from_family, project=p, family=rest.split("/", 1)[1])
            else:
                img = call(what, imgs.get, project=p, image=rest)
        else:
            p, source = project, f"newest of image family {IMAGE_FAMILY!r} in {project}"
            try:
                img = call(f"GCE images.getFromFamily {IMAGE_FAMILY} ({p})", imgs.get_from_family, project=p, family=IMAGE_FAMILY)
            except NotFoundError:
                raise NotFoundError(
                    f"no runner image in project {p}: none in the Packer manifest ({images.manifest_path()}) and no image "
                    f"in family {IMAGE_FAMILY!r}; build one with `make image CLOUD=gcp`, or pass --image NAME"
                ) from None
        return {"name": img.name, "link": f"projects/{p}/global/images/{img.name}", "architecture": img.architecture,
                "disk_size_gb": int(img.disk_size_gb or 0), "source": source}

    def _prepare(self, req: LaunchRequest):
        cfg, project = self.settings(), self.project()
        image = self.resolve_image(req.image)
        check_fit(req, image)
        zones = self.zones_for(req)
        if not zones:
            raise SpecError(f"no zone of region {req.region} is UP in project {project}")
        fallback = cfg.spot_fallback if req.spot_fallback is None else req.spot_fallback
        attempts = plan_attempts(req.spot, fallback, zones)
        gcp_network.check_launch(self, cfg, project, (region_of(a.zone) for a in attempts))
        return cfg, project, image, attempts, fallback

    # ---- the Protocol

    def launch(self, req: LaunchRequest) -> Instance:
        """Waits for each insert's operation (GCE reports capacity there) and fails over to the next zone."""
        cfg, project, image, attempts, fallback = self._prepare(req)
        swept = self.sweep()
        failed: list[tuple[object, CapacityError]] = []
        blocked: set[tuple[str, str]] = set()
        for a in attempts:
            if {(a.market, region_of(a.zone)), (a.market, "global")} & blocked:
                continue  # quotas are per region (or global): no other zone there will do
            try:
                inst = self._insert(req, cfg, project, image, a)
            except CapacityError as e:
                failed.append((a, e))
                if isinstance(e, QuotaError):
                    blocked.add((a.market, "global" if e.scope == "global" else region_of(a.zone)))
                continue
            tried = [f"{f}: {e.code}" for f, e in failed]
            return Instance(inst.cloud, inst.id, inst.job_id, inst.zone, {**inst.data, "tried": tried, "swept": swept})
        tried = "; ".join(f"{f}: {e.code} ({e.detail})" for f, e in failed)
        hint = "allow on-demand with --spot-fallback, or " if req.spot and not fallback else ""
        kind = QuotaError if failed and all(isinstance(e, QuotaError) for _, e in failed) else CapacityError
        where = ", ".join(sorted({a.zone for a in attempts}))
        raise kind(f"could not start a {req.instance_type} in {where}: tried {tried}; {hint}try another type, zone or region",
                   scope=region_of(attempts[0].zone))

    def launch_batch(self, batch) -> dict:
        """A fan-out's shards in one instances.bulkInsert per zone attempt: see runner.providers.gcp_batch."""
        from runner.providers.gcp_batch import launch_batch

        return launch_batch(self, batch)

    def _insert(self, req: LaunchRequest, cfg: GcpSettings, project: str, image: dict, a) -> Instance:
        from google.cloud import compute_v1

        body = compute_v1.Instance(instance_body(req, cfg, image["link"], a))
        request = compute_v1.InsertInstanceRequest(project=project, zone=a.zone, instance_resource=body, request_id=request_id(req.job_id, a, req.attempt))
        what = f"GCE instances.insert ({req.instance_type} {a}, project {project})"
        op = call(what, self.client("InstancesClient").insert_unary, at=a.zone, request=request)
        op = self.wait(op, project, a.zone, what)
        price = gcp_prices.on_demand(region_of(a.zone), req.instance_type)
        data = {
            "project": project, "zone": a.zone, "name": body.name, "instance_id": str(op.target_id or ""),
            "market": a.market, "image": image["name"], "machine_type": req.instance_type,
            "usd_per_hour": price[0] if price and a.market == "standard" else None,
        }
        return Instance(self.name, body.name, req.job_id, a.zone, data)

    def wait(self, op, project: str, zone: str, what: str, timeout: float = WAIT_S):
        """Poll a zone operation through our own client until DONE (or `timeout`); its error, typed."""
        ops = self.client("ZoneOperationsClient")
        deadline = time.monotonic() + timeout
        while op.status.name != "DONE" and time.monotonic() < deadline:
            op = call(what, ops.wait, at=zone, zone=zone, project=project, operation=op.name)
        errors = [(e.code, e.message) for e in op.error.errors] if "error" in op else []
        if errors:
            code, message = pick(errors)
            raise classify(code, message, what, int(op.http_error_status_code or 0), zone, region_of(zone))
        return op

    def quote(self, req: LaunchRequest) -> dict:
        """What `--dry-run` adds: the image, the order of zones, list prices and the most it can cost."""
        _, project, image, attempts, fallback = self._prepare(req)
        od = gcp_prices.on_demand(region_of(attempts[0].zone), req.instance_type)
        deadline = req.max_runtime + DEADLINE_MARGIN
        disks = gcp_disks.plan(req)
        disk = disks.boot_type
        most = gcp_prices.cost(od[0] if od else None, deadline, req.disk_gb, disk, disks.iops, disks.mibps, disks.local_ssds)
        return {
            "project": project,
            "image": f"{image['name']} ({image['source']})",
            "attempts": ", then ".join(str(a) for a in attempts),
            "on_demand_usd_per_hour": od[0] if od else None,
            "on_demand_price": od[1] if od else f"unknown: {req.instance_type} is not in runner/providers/gcp_prices.py",
            "spot_usd_per_hour": od[0] if od and req.spot else None,  # an upper bound: see spot_price
            "spot_price": "at most the on-demand price (GCE spot prices change monthly; no offline source)",
            "max_cost_spot_usd": most if req.spot else None,
            "max_cost_on_demand_usd": most if (not req.spot or fallback) else None,
            "cost_note": f"at the cloud-side deadline ({deadline} s = max runtime + {DEADLINE_MARGIN} s) with a "
                         f"{req.disk_gb} GB {disk} disk; spot is at most the on-demand price (usually 60-90% less)",
            **gcp_disks.quote(req, disks, deadline),
        }

    def _where(self, inst: Instance) -> tuple[str, str, str]:
        """(project, zone, name) from a job's records (untrusted): each must be a GCE name, or NotOwnedError."""
        d = inst.data
        project, zone, name = str(d.get("project") or self.project()), str(d.get("zone") or inst.zone), str(d.get("name") or inst.id)
        if not (PROJECT_RE.fullmatch(project) and ZONE_RE.fullmatch(zone) and NAME_RE.fullmatch(name)):
            raise NotOwnedError(f"job {inst.job_id}'s records name the VM {project!r}/{zone!r}/{name!r}, which is not a GCE VM name: "
                                "runner leaves it alone")
        return project, zone, name

    def _get(self, project: str, zone: str, name: str):
        """The compute_v1.Instance, or None when it is gone."""
        try:
            return call(f"GCE instances.get {name} ({zone})", self.client("InstancesClient").get, at=zone, zone=zone, project=project, instance=name)
        except NotFoundError:
            return None

    @staticmethod
    def _not_owned(vm, job_id: str, zone: str) -> NotOwnedError | None:
        """None if the VM carries job_id's label (and, where present, its runner-job metadata); else the error to raise."""
        if owned_by({i.key: i.value for i in vm.metadata.items}, dict(vm.labels), job_id):
            return None
        return NotOwnedError(f"GCE VM {vm.name} in {zone} does not carry the label {LABEL}={label_value(job_id)}: it is not "
                             f"job {job_id}'s VM, so runner leaves it alone (the job's instance.json names it)")

    def state(self, inst: Instance) -> InstanceState:
        try:
            project, zone, name = self._where(inst)
        except NotOwnedError as e:
            return InstanceState(False, str(e))
        vm = self._get(project, zone, name)
        if vm is not None and (err := self._not_owned(vm, inst.job_id, zone)):
            return InstanceState(False, str(err))
        if vm is not None and vm.status in ALIVE:
            return instance_state(name, vm.status, None)
        preempted = self.preempted_at(inst)
        if vm is not None:
            self.delete(project, zone, name)  # stopped, it still bills its disk
        return instance_state(name, vm.status if vm is not None else None, preempted)

    def preempted_at(self, inst: Instance) -> str | None:
        """When GCE preempted the VM (its zone operation compute.instances.preempted), or None."""
        project, zone, name = self._where(inst)
        ops = self.client("ZoneOperationsClient")
        request = {"project": project, "zone": zone, "filter": 'operationType = "compute.instances.preempted"'}
        found = call(f"GCE zoneOperations.list ({zone})", lambda: list(ops.list(request=request)), at=zone)
        iid = str(inst.data.get("instance_id") or "")
        for op in found:
            if (iid and str(op.target_id) == iid) or op.target_link.endswith(f"/instances/{name}"):
                return op.end_time or op.insert_time or "an unknown time"
        return None

    def delete(self, project: str, zone: str, name: str) -> bool:
        """Start deleting a VM (returns at once); False if it is already gone."""
        try:
            call(f"GCE instances.delete {name} ({zone})", self.client("InstancesClient").delete_unary,
                 at=zone, zone=zone, project=project, instance=name)
        except NotFoundError:
            return False
        except RunnerError as e:
            if getattr(e, "code", "") not in ("resourceNotReady", "RESOURCE_NOT_READY"):  # already being deleted
                raise
        return True

    def terminate(self, inst: Instance) -> None:
        """Deletes the VM and any other VM labelled with its job; gone == done; a VM without the job's label: NotOwnedError."""
        project, zone, name = self._where(inst)
        vm = self._get(project, zone, name)
        if vm is not None:
            err = self._not_owned(vm, inst.job_id, zone)
            if err:
                raise err
            self.delete(project, zone, name)
        for other in self.find({LABEL: inst.job_id}):
            if (other.zone, other.id) != (zone, name) and other.job_id == inst.job_id:
                self.delete(str(other.data["project"]), other.zone, other.id)

    def _aggregated(self, filter_: str):
        """(zone, compute_v1.Instance) for every VM of the project matching `filter_`."""
        project = self.project()
        request = {"project": project, "filter": filter_}
        pages = call(f"GCE instances.aggregatedList ({project})", lambda: list(self.client("InstancesClient").aggregated_list(request=request)))
        return [(scope.rsplit("/", 1)[-1], vm) for scope, scoped in pages for vm in scoped.instances]

    def find(self, tags: Mapping[str, str]) -> list[Instance]:
        """Every VM carrying all of `tags` as labels ('*': any value; values are lowercased), in any state."""
        exact = {label_value(k): label_value(v) for k, v in tags.items() if v != "*"}
        present = [label_value(k) for k, v in tags.items() if v == "*"]
        flt = " AND ".join(f'(labels.{k} = "{v}")' for k, v in exact.items())
        found = []
        for zone, vm in self._aggregated(flt):
            if not all(k in vm.labels for k in present):
                continue
            meta = {i.key: i.value for i in vm.metadata.items}
            data = {"project": self.project(), "zone": zone, "name": vm.name, "instance_id": str(vm.id),
                    "market": vm.scheduling.provisioning_model.lower(), "status": vm.status,
                    "machine_type": vm.machine_type.rsplit("/", 1)[-1]}
            found.append(Instance(self.name, vm.name, job_of(meta, dict(vm.labels)), zone, data))
        return found

    def sweep(self) -> list[str]:
        """Delete every stopped (TERMINATED) runner VM of the project; best effort, returns zone/name of each."""
        try:
            stopped = [(z, vm.name) for z, vm in self._aggregated('status = "TERMINATED"') if LABEL in vm.labels]
            return [f"{z}/{n}" for z, n in stopped if self.delete(self.project(), z, n)]
        except RunnerError:
            return []

    def console_output(self, inst: Instance) -> str:
        """The serial console of the job's own VM (another VM's console may hold anything: NotOwnedError)."""
        from google.cloud import compute_v1

        project, zone, name = self._where(inst)
        vm = self._get(project, zone, name)
        if vm is None:
            return ""
        if err := self._not_owned(vm, inst.job_id, zone):
            raise err
        request = compute_v1.GetSerialPortOutputInstanceRequest(project=project, zone=zone, instance=name, port=1)
        try:
            out = call(f"GCE instances.getSerialPortOutput {name}", self.client("InstancesClient").get_serial_port_output,
                       at=zone, request=request)
        except NotFoundError:
            return ""
        return out.contents or ""

    def doctor(self) -> list[tuple[bool, str, str]]:
        """(ok, check, detail or fix) for every part of the setup; reads only, launches nothing."""
        from runner.providers.gcp_doctor import run

        return run(self)

