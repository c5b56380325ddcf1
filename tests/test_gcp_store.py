"""gs:// stores against gcp-storage-emulator: the launcher's GCSStore (google-cloud-storage), and the
rendered script's gs() (the baked gsutil) run by the sandbox backend, authenticating as a GCE VM does
(a token from a fake metadata server)."""

from __future__ import annotations

import json
import os
import sysconfig

import pytest
from conftest import run_cli
from fake_google import TOKEN, GcsHandler
from test_store import test_roundtrip_list_children_and_ranges  # noqa: F401 (run here on a gs:// store)

from runner.errors import AuthError, NotFoundError
from runner.store import GCSStore, open_store

pytest_plugins = ["fake_google"]  # its fixtures: google, gcs_server, gcs


@pytest.fixture
def store(gcs):
    return open_store(f"gs://{gcs[1]}/some prefix")


def test_gcs_store_children_by_delimiter_and_missing_objects(store, tmp_path):
    for i in range(3):
        store.put_bytes(f"jobs/job {i}/logs/job.log", b"x")
    store.put_bytes("jobs/loose.json", b"{}")
    GcsHandler.requests.clear()
    assert store.children("jobs") == ["job 0", "job 1", "job 2"]
    assert any("delimiter=%2F" in path for path in GcsHandler.requests)  # one level, not every object below
    assert store.children("nothing here") == []
    with pytest.raises(NotFoundError, match="does not exist"):
        store.download("jobs/nope", tmp_path / "nope")
    assert not (tmp_path / "nope").exists()
    with pytest.raises(NotFoundError, match="does not exist"):
        open_store("gs://no-such-bucket-here/x").get_bytes("a")


def test_gcs_store_without_credentials_says_how_to_get_them(monkeypatch):
    import google.auth as google_auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_adc(*a, **kw):
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(google_auth, "default", no_adc)
    with pytest.raises(AuthError, match="gcloud auth application-default login"):
        GCSStore("gs://bucket/prefix").exists("x")  # the client is made on first use
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setattr(google_auth, "default", lambda *a, **kw: (AnonymousCredentials(), None))  # ADC with no project
    assert GCSStore("gs://bucket/prefix").bucket.name == "bucket"


def test_sandbox_job_on_a_gcs_store(gcs, google, make_job, monkeypatch, tmp_path):
    """The rendered script with the baked transfer tool (gsutil) against the emulator, as on a GCE VM."""
    client, bucket = gcs
    b = client.bucket(bucket)
    b.blob("runner/data/trip data/jan 01.csv").upload_from_string(b"1\n2\n")
    b.blob("runner/data/trip data/deep/feb 02.csv").upload_from_string(b"3\n")
    b.blob("single key.txt").upload_from_string(b"single\n")
    env = {
        "RUNNER_STORE": f"gs://{bucket}/runner",
        "GCE_METADATA_HOST": google.url.removeprefix("http://"),  # gsutil gets the VM's token here
        "PATH": f"{sysconfig.get_path('scripts')}:{os.environ['PATH']}",  # the gsutil of the test extra
    }
    d = make_job({
        "name": "gsjob",
        "command": "echo working; cat 'in/jan 01.csv' 'in/deep/feb 02.csv' one.txt > 'all rows.csv'; "
                   "mkdir -p charts/sub; echo c > charts/c.txt; echo d > charts/sub/d.txt; echo h > charts/.hidden",
        "inputs": {"data/trip data/": "in/", f"gs://{bucket}/single key.txt": "one.txt"},
        "outputs": {"all rows.csv": None, "charts/": f"gs://{bucket}/else where/charts/"},
    })
    GcsHandler.auth.clear()
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--wait", "--json", env=env, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    job_id = json.loads(r.stdout)["job_id"]
    prefix = f"runner/jobs/{job_id}/"

    def get(key):
        return b.blob(key).download_as_bytes()

    assert get(prefix + "outputs/all rows.csv") == b"1\n2\n3\nsingle\n"
    assert [get(f"else where/charts/{k}") for k in ("c.txt", "sub/d.txt", ".hidden")] == [b"c\n", b"d\n", b"h\n"]
    assert json.loads(get(prefix + "status.json"))["state"] == "SUCCEEDED"
    parts = sorted(o.name for o in client.list_blobs(bucket, prefix=prefix + "logs/1/job.log."))  # attempt 1's numbered parts
    assert parts and b"".join(get(k) for k in parts) == b"working\n"
    assert f"Bearer {TOKEN}" in GcsHandler.auth  # gsutil authenticated as the VM's service account
    startup = b"".join(get(o.name) for o in sorted(client.list_blobs(bucket, prefix=prefix + "logs/1/startup.log."), key=lambda o: o.name))
    assert startup and b"restored the checkpoint" not in startup  # an empty prefix is not a fetch
    assert run_cli("logs", job_id, env=env).stdout == "working\n"
    out = tmp_path / "out"
    r = run_cli("outputs", job_id, str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert (out / "all rows.csv").read_bytes() == b"1\n2\n3\nsingle\n"
    assert (out / "charts" / "sub" / "d.txt").read_bytes() == b"d\n"
