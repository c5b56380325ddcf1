"""Shared fixtures: every test gets its own RUNNER_HOME; S3 is a moto server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items):
    """Under xdist (`make test` runs `-n 3 --dist loadgroup`) the tests that boot real VMs run one after another on
    one worker: two TCG guests at once would starve each other and the rest of the suite."""
    for item in items:
        if item.get_closest_marker("vm"):
            item.add_marker(pytest.mark.xdist_group("vm"))


@pytest.fixture(autouse=True)
def runner_home(tmp_path, monkeypatch):
    """All local state (store, sandboxes) in a fresh folder; no cloud settings leak in."""
    home = tmp_path / "runner home"  # a space, on purpose
    monkeypatch.setenv("RUNNER_HOME", str(home))
    for var in ("RUNNER_STORE", "RUNNER_CLOUD", "RUNNER_S3_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def make_job(tmp_path):
    """Write a job folder from a dict (its job.yaml) and extra files; returns its path."""

    def make(spec: dict, files: dict[str, str] | None = None, name: str = "job") -> Path:
        d = tmp_path / "jobs" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "job.yaml").write_text(json.dumps(spec))  # JSON is YAML
        for rel, text in (files or {}).items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text)
        return d

    return make


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`runner ARGS` in a fresh process, as a user or a CI pipeline runs it."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=ROOT,
    )


def cli_json(*args: str) -> dict:
    """`runner ARGS` that must succeed and print one JSON object."""
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def job_status(job_id: str) -> dict:
    return cli_json("status", job_id, "--json")


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3/EC2 server on 127.0.0.1 (subprocesses such as s5cmd reach it by endpoint URL)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{server._server.server_port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket on the moto server; the environment points boto3, s5cmd and the script at it."""
    import secrets

    import boto3

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server, "RUNNER_S3_ENDPOINT": s3_server,
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = f"runner-test-{secrets.token_hex(4)}"
    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    return client, bucket


@pytest.fixture
def victim():
    """A process that no job owns: a forged record names it; it must survive."""
    from runner.providers import proc

    p = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield {"pid": p.pid, "start": proc.start_time(p.pid)}
    p.kill()
    p.wait()


@pytest.fixture
def secret(tmp_path):
    """An operator's key outside the store, mode 0600."""
    path = tmp_path / "operator" / ".ssh" / "id_ed25519"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PRIVATE KEY")
    path.chmod(0o600)
    return path


def processes_with(marker: str) -> list[int]:
    """Live (not zombie) pids whose argv holds `marker`."""
    from runner.providers import proc

    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (d / "cmdline").read_bytes() and proc.start_time(int(d.name)):
                found.append(int(d.name))
        except OSError:
            continue
    return found
