"""Stores by URI: the same operations on file:// and on s3:// (a moto server on 127.0.0.1)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from runner.errors import NotFoundError, SpecError
from runner.store import FileStore, open_store, split_uri


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_store(f"file://{tmp_path}/my store")
    _, bucket = request.getfixturevalue("s3")
    return open_store(f"s3://{bucket}/some prefix")


def test_roundtrip_list_children_and_ranges(store, tmp_path):
    store.put_bytes("jobs/a b/status.json", b'{"x": 1}')
    store.put_bytes("jobs/a b/logs/job.log", b"hello world")
    store.put_bytes("jobs/c/job.json", b"{}")
    assert store.get_bytes("jobs/a b/status.json") == b'{"x": 1}'
    assert store.get_bytes("jobs/a b/logs/job.log", 6) == b"world"
    assert store.get_bytes("jobs/a b/logs/job.log", 11) == b""
    assert store.list("jobs/a b/") == ["jobs/a b/logs/job.log", "jobs/a b/status.json"]
    assert store.children("jobs") == ["a b", "c"]
    assert store.exists("jobs/c/job.json") and not store.exists("jobs/c/nope")
    with pytest.raises(NotFoundError, match="does not exist"):
        store.get_bytes("jobs/nope")
    got = store.download_tree("jobs/a b/", tmp_path / "dl")
    assert sorted(p.relative_to(tmp_path / "dl").as_posix() for p in got) == ["logs/job.log", "status.json"]
    src = tmp_path / "up load.bin"
    src.write_bytes(b"\0" * 1000)
    store.upload(src, "data/up load.bin")
    store.download("data/up load.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == b"\0" * 1000


def test_file_store_writes_atomically(tmp_path):
    store = FileStore(f"file://{tmp_path}")
    store.put_bytes("status.json", b"1")
    store.put_bytes("status.json", b"2")
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


@pytest.mark.parametrize("uri, message", [
    ("bucket/key", "is not a store URI"),
    ("ftp://host/x", "is not a store URI"),
    ("s3:///key", "names no bucket"),
    ("file://relative/path", "needs an absolute path"),
])
def test_bad_uris(uri, message):
    with pytest.raises(SpecError, match=message):
        split_uri(uri)


def test_sandbox_job_on_an_s3_store(s3, make_job, monkeypatch, tmp_path):
    """The rendered script with the real transfer tool (s5cmd) against the S3 server."""
    client, bucket = s3
    monkeypatch.setenv("RUNNER_STORE", f"s3://{bucket}/runner")
    client.put_object(Bucket=bucket, Key="runner/data/trip data/jan 01.csv", Body=b"1\n2\n")
    client.put_object(Bucket=bucket, Key="runner/data/trip data/deep/feb 02.csv", Body=b"3\n")
    client.put_object(Bucket=bucket, Key="single key.txt", Body=b"single\n")
    d = make_job({
        "name": "s3job",
        "command": "echo working; cat 'in/jan 01.csv' 'in/deep/feb 02.csv' one.txt > 'all rows.csv'; mkdir -p charts; echo c > charts/c.txt",
        "inputs": {"data/trip data/": "in/", f"s3://{bucket}/single key.txt": "one.txt"},
        "outputs": {"all rows.csv": None, "charts/": f"s3://{bucket}/elsewhere/charts/"},
    })
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--wait", "--json")
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    prefix = f"runner/jobs/{job_id}/"

    def get(key):
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    assert get(prefix + "outputs/all rows.csv") == b"1\n2\n3\nsingle\n"
    assert get("elsewhere/charts/c.txt") == b"c\n"
    assert json.loads(get(prefix + "status.json"))["state"] == "SUCCEEDED"
    assert get(prefix + "logs/1/job.log.000000") == b"working\n"  # one part: the whole short log
    assert run_cli("logs", job_id).stdout == "working\n"
    out = tmp_path / "out"
    r = run_cli("outputs", job_id, str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "all rows.csv").read_bytes() == b"1\n2\n3\nsingle\n"
    assert (out / "charts" / "c.txt").read_bytes() == b"c\n"
