"""The sandbox job sees what a VM's job would, and nothing of it outlives its power-off or another job's records."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

import pytest
from conftest import processes_with, run_cli

from runner.errors import NotOwnedError
from runner.providers import proc
from runner.providers.base import Instance
from runner.providers.sandbox import SandboxProvider
from runner.providers.sandbox_env import job_env

LEAKS = {"GITHUB_TOKEN": "ghp_fake0launcher0token", "AWS_SECRET_ACCESS_KEY": "launcher-secret-key-xyz",
         "AWS_ACCESS_KEY_ID": "AKIALAUNCHER", "SOME_PASSWORD": "hunter2-launcher"}


@pytest.fixture(autouse=True)
def no_sandbox_left(runner_home):
    """Whatever a test leaves running (a failed assertion before its cleanup) is stopped after it."""
    yield
    sb = SandboxProvider()
    for inst in sb.find({"runner-job": "*"}):
        sb.terminate(inst)


def launch(job: Path, *args: str, env: dict | None = None) -> tuple[int, dict, str]:
    r = run_cli("launch", str(job), "--cloud", "sandbox", "--json", *args, env=env)
    return r.returncode, (json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}), r.stderr


def env_of_job(job_id: str) -> dict[str, str]:
    """The environment the job printed (`env -0` into its log), as `runner logs` returns it."""
    log = run_cli("logs", job_id).stdout
    return dict(item.split("=", 1) for item in log.split("\0") if "=" in item)


def test_job_env_is_minimal_and_store_scoped():
    launcher = {**LEAKS, "PATH": "/usr/bin:/bin", "HOME": "/root", "AWS_DEFAULT_REGION": "eu-west-1",
                "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9", "RUNNER_STORE": "s3://b/x"}
    common = {"shims": "/sb/bin", "vm_root": "/sb/vm", "home": "/sb/vm/home", "interruption": ""}
    on_file = job_env(launcher, store_uri="file:///srv/store", **common)
    assert on_file == {"PATH": "/sb/bin:/usr/bin:/bin", "HOME": "/sb/vm/home", "LANG": "C.UTF-8", "RUNNER_VM_ROOT": "/sb/vm"}
    on_s3 = job_env(launcher, store_uri="s3://b/x", **common)
    assert on_s3["AWS_SECRET_ACCESS_KEY"] == LEAKS["AWS_SECRET_ACCESS_KEY"] and on_s3["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert "GITHUB_TOKEN" not in on_s3 and "STORAGE_EMULATOR_HOST" not in on_s3 and "RUNNER_STORE" not in on_s3
    on_gs = job_env(launcher, store_uri="gs://b/x", **common)
    assert on_gs["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:9" and "AWS_SECRET_ACCESS_KEY" not in on_gs


def test_launcher_secrets_do_not_reach_the_job(make_job, runner_home):
    d = make_job({"name": "envdump", "command": "env -0"})
    rc, obj, err = launch(d, "--wait", env=LEAKS)
    assert rc == 0, err
    seen = env_of_job(obj["job_id"])
    assert seen, "the job printed no environment"
    for value in LEAKS.values():
        assert value not in "\0".join(f"{k}={v}" for k, v in seen.items())
    assert seen["PATH"].split(":")[0] == str(runner_home / "sandbox" / obj["job_id"] / "bin")
    assert seen["RUNNER_VM_ROOT"] == str(runner_home / "sandbox" / obj["job_id"] / "vm")
    assert seen["HOME"] != os.environ.get("HOME") and seen["LANG"]


def test_an_s3_store_hands_the_job_only_the_store_credentials(s3, make_job, monkeypatch):
    _, bucket = s3
    monkeypatch.setenv("RUNNER_STORE", f"s3://{bucket}/runner")
    d = make_job({"name": "envdump", "command": "env -0"})
    rc, obj, err = launch(d, "--wait", env={"GITHUB_TOKEN": LEAKS["GITHUB_TOKEN"]})
    assert rc == 0, err
    seen = env_of_job(obj["job_id"])
    assert seen["AWS_SECRET_ACCESS_KEY"] == "testing" and seen["AWS_ACCESS_KEY_ID"] == "testing"
    assert "GITHUB_TOKEN" not in seen and LEAKS["GITHUB_TOKEN"] not in "".join(seen.values())


def test_nothing_of_the_job_outlives_its_poweroff(make_job, runner_home):
    marker = f"runner-bg-{secrets.token_hex(4)}"
    cmd = (f"setsid nohup sh -c 'sleep 1000; : {marker}' > /dev/null 2>&1 & "
           f"nohup sh -c 'sleep 1000; : {marker}' > /dev/null 2>&1 & echo started")
    d = make_job({"name": "bg", "command": cmd})
    try:
        rc, obj, err = launch(d, "--wait")
        assert rc == 0, err
        power = (runner_home / "sandbox" / obj["job_id"] / "power.log").read_text().split()
        assert "poweroff" in power
        assert processes_with(marker) == []
    finally:
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_cancel_saves_the_log_and_ends_every_process(make_job, runner_home):
    marker = f"runner-bg-{secrets.token_hex(4)}"
    d = make_job({"name": "bgcancel", "command": f"setsid sh -c 'sleep 1000; : {marker}' & echo first line; sleep 1000"})
    try:
        rc, obj, err = launch(d)
        assert rc == 0, err
        job_id = obj["job_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "first line" not in run_cli("logs", job_id).stdout:
            time.sleep(0.3)
        assert processes_with(marker), "the background process never started"
        r = run_cli("cancel", job_id)
        assert r.returncode == 0, r.stderr
        assert json.loads(run_cli("status", job_id, "--json").stdout)["state"] not in ("RUNNING", "LOST")
        assert "first line" in run_cli("logs", job_id).stdout
        assert (runner_home / "sandbox" / job_id / "power.log").read_text().count("poweroff") == 1  # the trap ran
        assert processes_with(marker) == []
    finally:
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def forge(job_dir: Path, data: dict, inst_id: str) -> None:
    """What a job can do to its own folder in the store: rewrite instance.json."""
    rec = json.loads((job_dir / "instance.json").read_text())
    rec.update(id=inst_id, data={**rec["data"], **data})
    (job_dir / "instance.json").write_text(json.dumps(rec))


def test_cancel_with_a_forged_instance_json_signals_nobody(make_job, runner_home, victim):
    d = make_job({"name": "forged", "command": "sleep 1000"})
    rc, obj, err = launch(d)
    assert rc == 0, err
    job_id = obj["job_id"]
    forge(runner_home / "store" / "jobs" / job_id, victim, f"sandbox-{victim['pid']}")
    r = run_cli("cancel", job_id)
    assert proc.alive(victim), "a process named by a forged instance.json was signalled"
    assert "left alone" in r.stderr
    (real,) = SandboxProvider().find({"runner-job": job_id})
    SandboxProvider().terminate(real)  # the backend's own record still stops the real sandbox
    assert not proc.alive(dict(real.data))


def test_terminate_acts_only_on_the_backends_own_tagged_record(make_job, runner_home, victim):
    d = make_job({"name": "owned", "command": "sleep 1000"})
    rc, obj, err = launch(d)
    assert rc == 0, err
    job_id = obj["job_id"]
    sb = SandboxProvider()
    (real,) = sb.find({"runner-job": job_id})
    for forged in (
        Instance("sandbox", "sandbox-1", job_id, data={"pid": 1, "start": proc.start_time(1)}),
        Instance("sandbox", f"sandbox-{os.getpid()}", job_id, data={"pid": os.getpid(), "start": proc.start_time(os.getpid())}),
        Instance("sandbox", f"sandbox-{victim['pid']}", job_id, data=victim),
        Instance("sandbox", real.id, "../../etc", data=real.data),
        Instance("sandbox", real.id, "other-20260101T000000Z-abcdef", data=real.data),
    ):
        with pytest.raises(NotOwnedError, match="left alone"):
            sb.terminate(forged)
        assert sb.state(forged).alive is False
    assert proc.alive(victim) and proc.alive(dict(real.data))
    tags = runner_home / "sandbox" / job_id / "tags.json"
    tags.write_text(json.dumps({"runner-job": "someone-else"}))
    with pytest.raises(NotOwnedError, match=f"lacks the tag runner-job={job_id}"):
        sb.terminate(real)
    assert proc.alive(dict(real.data))
    tags.write_text(json.dumps({"runner-job": job_id}))
    sb.terminate(real)
    assert not proc.alive(dict(real.data))
    sb.terminate(real)  # gone == done
