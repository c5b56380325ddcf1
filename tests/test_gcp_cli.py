"""`runner` as a user and CI run it, as a subprocess, on GCP: FakeGoogle for Compute (reached through
RUNNER_GCP_ENDPOINT, with a token from its OAuth endpoint) and the GCS emulator for the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, cli_json, run_cli
from conftest import job_status as status
from fake_google import PROJECT
from test_gcp import IMAGE, SA, ZONES

pytest_plugins = ["fake_google"]  # its fixtures: google, gcs_server, gcs


def rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@pytest.fixture
def gcp_cli(google, gcs, monkeypatch, tmp_path):
    """The environment a user on GCP has, every address on 127.0.0.1; -> (fake, storage client, bucket)."""
    client, bucket = gcs
    creds = tmp_path / "launcher-key.json"  # a service account key whose token endpoint is the fake's
    creds.write_text(json.dumps({"type": "service_account", "project_id": PROJECT, "private_key_id": "1",
                                 "private_key": rsa_pem(), "client_email": f"launcher@{PROJECT}.iam.gserviceaccount.com",
                                 "client_id": "1", "token_uri": f"{google.url}/token"}))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "manifest.json").write_text(json.dumps({"builds": [
        {"builder_type": "googlecompute", "artifact_id": IMAGE, "build_time": 1}]}))
    google.add_image(IMAGE)
    for var in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "CLOUDSDK_COMPUTE_ZONE", "RUNNER_GCP_NETWORK",
                "RUNNER_GCP_SUBNETWORK", "RUNNER_GCP_EXTERNAL_IP", "RUNNER_GCP_SPOT_FALLBACK"):
        monkeypatch.delenv(var, raising=False)
    for k, v in {
        "RUNNER_STORE": f"gs://{bucket}/runner", "RUNNER_GCP_PROJECT": PROJECT, "RUNNER_GCP_ZONES": ZONES,
        "RUNNER_GCP_SERVICE_ACCOUNT": SA, "RUNNER_GCP_ENDPOINT": google.url, "RUNNER_IMAGES": str(tmp_path / "images"),
        "GOOGLE_APPLICATION_CREDENTIALS": str(creds), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        # anything that looks for a metadata server finds the fake's
        "GCE_METADATA_HOST": google.url.removeprefix("http://"), "GCE_METADATA_IP": google.url.removeprefix("http://"),
        "RUNNER_GCP_RESOURCE_MANAGER_ENDPOINT": google.url,
    }.items():
        monkeypatch.setenv(k, v)
    return google, client, bucket


def launch_json(job_dir, *args) -> dict:
    return cli_json("launch", str(job_dir), "--cloud", "gcp", "--json", *args)


def test_launch_then_vm_gone_without_status_is_lost(gcp_cli, make_job):
    google, _, _ = gcp_cli
    out = launch_json(make_job({"name": "lost", "command": "sleep 600", "spot": True}))
    [(zone, name)] = google.instances
    assert name == out["instance"] and zone == "us-central1-a"
    auth = {r["auth"] for r in google.log if r["path"].startswith("/compute")}
    # the key's token, or JWTs it signed itself (one per second of signing time: there may be several)
    assert auth and all(a.startswith("Bearer ") for a in auth)
    assert status(out["job_id"])["state"] == "PROVISIONING"  # the VM runs; nothing written yet
    del google.instances[(zone, name)]  # behind the job's back
    st = status(out["job_id"])
    assert st["state"] == "LOST" and "never wrote a final status" in st["reason"]
    assert out["job_id"] in run_cli("status").stdout


def test_preempted_spot_vm_is_preempted(gcp_cli, make_job):
    google, _, _ = gcp_cli
    out = launch_json(make_job({"name": "preempted", "command": "sleep 600", "spot": True}))
    google.preempt("us-central1-a", out["instance"])
    st = status(out["job_id"])
    assert st["state"] == "PREEMPTED" and "preempted spot VM" in st["reason"]


def test_stopped_vms_are_deleted(gcp_cli, make_job):
    """A guest power-off only stops a GCE VM: whatever the VM's own shutdown-script missed goes here."""
    google, client, bucket = gcp_cli
    d = make_job({"name": "stopped", "command": "true"})
    a = launch_json(d)
    google.instances[("us-central1-a", a["instance"])]["status"] = "TERMINATED"
    st = status(a["job_id"])  # no final status: LOST, and the stopped VM is deleted
    assert st["state"] == "LOST" and not google.instances
    b = launch_json(d)
    google.instances[("us-central1-a", b["instance"])]["status"] = "TERMINATED"
    client.bucket(bucket).blob(f"runner/jobs/{b['job_id']}/status.json").upload_from_string(json.dumps({"state": "SUCCEEDED"}))
    assert status(b["job_id"])["state"] == "SUCCEEDED"  # final: nobody asks GCE about it again ...
    c = launch_json(d)  # ... but the next launch sweeps it
    assert list(google.instances) == [("us-central1-a", c["instance"])]


def test_gc_deletes_vms_of_ended_jobs(gcp_cli, make_job):
    google, client, bucket = gcp_cli
    out = launch_json(make_job({"name": "ended", "command": "true"}))
    client.bucket(bucket).blob(f"runner/jobs/{out['job_id']}/status.json").upload_from_string(json.dumps({"state": "SUCCEEDED"}))
    r = run_cli("gc", "--cloud", "gcp")
    assert f"would terminate gcp {out['instance']} ({out['job_id']}): its job ended SUCCEEDED" in r.stdout, r.stderr
    assert run_cli("gc", "--cloud", "gcp", "--yes").returncode == 0 and not google.instances


def test_cancel_deletes_the_vm_and_marks_cancelled(gcp_cli, make_job):
    google, client, bucket = gcp_cli
    d = make_job({"name": "cancelme", "command": "sleep 600"})
    out = launch_json(d)
    r = run_cli("cancel", out["job_id"])
    assert r.returncode == 0, r.stderr
    assert not google.instances and status(out["job_id"])["state"] == "CANCELLED"
    assert "already ended" in run_cli("cancel", out["job_id"]).stderr
    # a launcher that died before recording instance.json: cancel finds the VM by its label
    out = launch_json(d)
    client.bucket(bucket).blob(f"runner/jobs/{out['job_id']}/instance.json").delete()
    assert run_cli("cancel", out["job_id"]).returncode == 0
    assert not google.instances


def test_status_and_cancel_leave_a_vm_the_job_does_not_own_alone(gcp_cli, make_job):
    """A job's VM can rewrite its instance.json to name any VM of the project, e.g. the production database."""
    google, client, bucket = gcp_cli
    out = launch_json(make_job({"name": "forger", "command": "sleep 600"}))
    google.instances[("us-central1-c", "prod-db")] = {"name": "prod-db", "status": "TERMINATED", "labels": {"team": "db"},
                                                      "metadata": {"items": []}}
    blob = client.bucket(bucket).blob(f"runner/jobs/{out['job_id']}/instance.json")
    record = json.loads(blob.download_as_bytes())
    record.update(id="prod-db", zone="us-central1-c", data={**record["data"], "zone": "us-central1-c", "name": "prod-db"})
    blob.upload_from_string(json.dumps(record))
    google.console["prod-db"] = "root password: hunter2\n"
    st = status(out["job_id"])  # state() deletes a stopped VM, when it is the job's own
    assert st["state"] != "RUNNING" and "prod-db in us-central1-c does not carry the label runner-job=" in st["reason"], st
    run_cli("cancel", out["job_id"])
    r = run_cli("logs", out["job_id"])  # the console of last resort is the job's own VM's only
    assert "hunter2" not in r.stdout + r.stderr
    assert ("us-central1-c", "prod-db") in google.instances
    assert not [x for x in google.log if x["method"] == "DELETE" and x["path"].endswith("/prod-db")]


def test_logs_fall_back_to_the_serial_console(gcp_cli, make_job):
    google, client, bucket = gcp_cli
    out = launch_json(make_job({"name": "console", "command": "true"}))
    google.console[out["instance"]] = "cloud-init: running user-data\n"
    r = run_cli("logs", out["job_id"])
    assert r.returncode == 0 and r.stdout == "cloud-init: running user-data\n", r.stderr
    assert f"the console of {out['instance']}" in r.stderr
    client.bucket(bucket).blob(f"runner/jobs/{out['job_id']}/logs/job.log").upload_from_string(b"the job's own log\n")
    assert run_cli("logs", out["job_id"]).stdout == "the job's own log\n"


def test_no_capacity_anywhere_fails_clearly_and_is_recorded(gcp_cli, make_job):
    google, _, _ = gcp_cli
    google.insert_errors = {z: [("op", "ZONE_RESOURCE_POOL_EXHAUSTED", "not enough resources")] for z in ZONES.split(",")}
    r = run_cli("launch", str(make_job({"name": "full", "command": "true", "spot": True})), "--cloud", "gcp", "--wait")
    assert r.returncode == 69 and "could not start a e2-standard-4 in us-central1-a, us-central1-b, us-central1-c" in r.stderr
    rows = json.loads(run_cli("status", "--json").stdout)
    assert rows[0]["state"] == "FAILED" and "launch failed" in rows[0]["reason"]


def test_missing_credentials_are_an_auth_error(gcp_cli, make_job, tmp_path):
    r = run_cli("launch", str(make_job({"name": "noauth", "command": "true"})), "--cloud", "gcp",
                env={"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json")})
    assert r.returncode == 69 and "gcloud auth application-default login" in r.stderr and "capacity" not in r.stderr


def test_bad_flags_create_nothing(gcp_cli, make_job):
    google, client, bucket = gcp_cli
    d = make_job({"name": "good", "command": "true"})
    r = run_cli("launch", str(d), "--cloud", "gcp", "--type", "m6i.large")
    assert r.returncode == 2 and "'m6i.large' is not a GCE machine type" in r.stderr
    r = run_cli("launch", str(d), "--cloud", "gcp", env={"RUNNER_STORE": ""})
    assert r.returncode == 2 and "set RUNNER_STORE=gs://bucket/prefix" in r.stderr
    assert not google.inserts() and not list(client.list_blobs(bucket))
    r = run_cli("launch", str(d), "--cloud", "gcp", "--disk-gb", "10")  # needs the image: checked at launch
    assert r.returncode == 2 and "smaller than image" in r.stderr and not google.inserts()


def test_dry_run_prints_zones_prices_and_cost(gcp_cli, make_job):
    google, client, bucket = gcp_cli
    d = make_job({"name": "priced", "command": "true", "spot": True, "max_runtime": "1h"})
    r = run_cli("launch", str(d), "--cloud", "gcp", "--dry-run", "--spot-fallback")
    assert r.returncode == 0, r.stderr
    assert "attempts: spot in us-central1-a, then spot in us-central1-b" in r.stdout
    assert "then standard in us-central1-c" in r.stdout
    plan = json.loads(run_cli("launch", str(d), "--cloud", "gcp", "--dry-run", "--json").stdout)
    assert plan["on_demand_usd_per_hour"] == 0.134012 and plan["max_cost_on_demand_usd"] is None
    assert plan["spot_usd_per_hour"] == 0.134012 and "at most the on-demand price" in plan["spot_price"]
    capped = make_job({"name": "capped", "command": "true", "spot": True, "max_cost": 0.05}, name="capped")
    capped_plan = json.loads(run_cli("launch", str(capped), "--cloud", "gcp", "--dry-run", "--json").stdout)
    assert capped_plan["max_runtime_s"] == int(0.05 / 0.134012 * 3600)  # a ceiling on the spot price's upper bound
    assert plan["max_cost_spot_usd"] == pytest.approx((0.134012 + 50 * 0.10 / 730) * 4500 / 3600, abs=1e-4)
    assert IMAGE in plan["image"] and "standard" not in plan["attempts"]
    assert not google.inserts() and not list(client.list_blobs(bucket))


def test_doctor_checks_the_setup_and_names_fixes(gcp_cli):
    google, _, bucket = gcp_cli
    r = run_cli("doctor", "--cloud", "gcp")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()] == ["OK"] * 9
    assert PROJECT in r.stdout and f"gs://{bucket}/runner" in r.stdout and IMAGE in r.stdout and "Cloud NAT" in r.stdout
    google.instances[("us-central1-b", "runner-old")] = {"name": "runner-old", "status": "TERMINATED", "labels": {"runner-job": "x"}}
    r = run_cli("doctor", "--cloud", "gcp", env={"RUNNER_GCP_SERVICE_ACCOUNT": "", "RUNNER_STORE": "s3://b/x"})
    assert r.returncode == 1
    fails = {line.split()[1] for line in r.stdout.splitlines() if line.startswith("FAIL")}
    assert fails == {"store", "service", "stopped"}
    assert "us-central1-b/runner-old" in r.stdout and "RUNNER_GCP_SERVICE_ACCOUNT" in r.stdout


def test_render_needs_no_google_credentials(make_job, tmp_path):
    """Rendering creates nothing: a gs:// store and no credentials anywhere still print the script."""
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "RUNNER_HOME")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(RUNNER_STORE="gs://no-credentials-bucket/runner", RUNNER_GCP_PROJECT=PROJECT, RUNNER_GCP_ZONES=ZONES,
               RUNNER_GCP_SERVICE_ACCOUNT=SA, HOME=str(tmp_path / "home"), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
               GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9", NO_GCE_CHECK="True")
    d = make_job({"name": "rendered", "command": "echo hi"})
    r = subprocess.run([sys.executable, "-m", "runner", "render", str(d), "--cloud", "gcp"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("#!") and "gs://no-credentials-bucket/runner/jobs/rendered-" in r.stdout
    del env["RUNNER_GCP_PROJECT"]  # the project would come from the credentials: launch needs it, render does not
    r = subprocess.run([sys.executable, "-m", "runner", "render", str(d), "--cloud", "gcp"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.startswith("#!"), r.stderr


def test_doctor_names_a_missing_permission_and_a_subnet_without_a_way_out(gcp_cli):
    google, _, _ = gcp_cli
    google.lacking = {"compute.instances.delete"}
    google.private_access["us-central1"] = False
    r = run_cli("doctor", "--cloud", "gcp")
    assert r.returncode == 1
    fails = {line.split()[1]: line for line in r.stdout.splitlines() if line.startswith("FAIL")}
    assert set(fails) == {"permissions", "network"}, r.stdout
    assert "missing compute.instances.delete on project runner-test" in fails["permissions"]
    assert ("gcloud compute networks subnets update default --region=us-central1 --project=runner-test "
            "--enable-private-ip-google-access") in fails["network"]
    [asked] = [x for x in google.log if x["path"].endswith(":testIamPermissions")]
    assert asked["path"] == f"/v1/projects/{PROJECT}:testIamPermissions"


def test_non_gcp_commands_never_import_the_gcp_client(make_job):
    r = run_cli("launch", str(make_job({"name": "local", "command": "true"})), "--cloud", "sandbox", "--wait")
    assert r.returncode == 0, r.stderr
    code = ("import sys; from click.testing import CliRunner; from runner.cli import main;"
            "r = CliRunner().invoke(main, ['status']); assert r.exit_code == 0, r.output;"
            "print(sorted(m for m in sys.modules if m.startswith(('google.cloud', 'google.api_core'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
