"""The sweeper finds VMs that outlived their job, and terminates them only when told to."""

from __future__ import annotations

import json
import os
import signal
import time

from conftest import run_cli


def _wait_running(home, job_id):
    status = home / "store" / "jobs" / job_id / "status.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if status.exists() and json.loads(status.read_text())["state"] == "RUNNING":
            return
        time.sleep(0.2)
    raise AssertionError("job never started")


def test_gc_lists_then_terminates_a_vm_whose_job_ended(runner_home, make_job):
    d = make_job({"name": "orphan", "command": "sleep 300"})
    job_id = json.loads(run_cli("launch", str(d), "--cloud", "sandbox", "--json").stdout)["job_id"]
    live = json.loads(run_cli("launch", str(d), "--cloud", "sandbox", "--json").stdout)["job_id"]
    _wait_running(runner_home, job_id)
    _wait_running(runner_home, live)
    # the record says it ended (as when a status was written but the VM never powered off)
    status = runner_home / "store" / "jobs" / job_id / "status.json"
    status.write_text(json.dumps({**json.loads(status.read_text()), "state": "SUCCEEDED", "exit_code": 0}))

    dry = run_cli("gc")
    assert dry.returncode == 0
    assert "would terminate sandbox" in dry.stdout and job_id in dry.stdout and "its job ended SUCCEEDED" in dry.stdout
    assert live not in dry.stdout  # alive and on time: left alone
    pid = json.loads((runner_home / "store" / "jobs" / job_id / "instance.json").read_text())["data"]["pid"]
    os.kill(pid, 0)  # a dry run terminates nothing

    r = run_cli("gc", "--yes")
    assert r.returncode == 0 and "terminating sandbox" in r.stdout
    assert not _alive(pid)
    after = run_cli("gc")
    assert job_id not in after.stdout and live not in after.stdout and "nothing to sweep" in after.stderr
    run_cli("cancel", live)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return "Z" not in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]


def test_gc_finds_vms_of_unknown_jobs_and_past_deadline(runner_home, make_job):
    d = make_job({"name": "late", "command": "sleep 300", "max_runtime": "1s"})
    job_id = json.loads(run_cli("launch", str(d), "--cloud", "sandbox", "--json").stdout)["job_id"]
    _wait_running(runner_home, job_id)
    record = runner_home / "store" / "jobs" / job_id / "job.json"
    data = json.loads(record.read_text())
    data["created_at"] = "2020-01-01T00:00:00Z"
    record.write_text(json.dumps(data))
    out = run_cli("gc").stdout
    assert job_id in out and "past its deadline" in out
    # its record removed from the store: an unknown job
    for f in record.parent.iterdir():
        if f.is_file():
            f.unlink()
    out = run_cli("gc", "--yes").stdout
    assert f"no job '{job_id}'" in out
    pid = json.loads((runner_home / "sandbox" / job_id / "instance.json").read_text())["pid"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            time.sleep(0.2)
        except ProcessLookupError:
            break
    else:
        os.killpg(pid, signal.SIGKILL)
        raise AssertionError("gc --yes left the VM running")


def test_a_job_cannot_write_itself_out_of_the_sweep(runner_home, make_job):
    """job.json is the job's own to write: a garbage record makes its VM a stray, a later created_at changes nothing."""
    from datetime import datetime, timedelta, timezone

    from runner import gc
    from runner.providers.base import Instance
    from runner.store import open_store

    d = make_job({"name": "sly", "command": "sleep 300", "max_runtime": "1s"})
    job_id = json.loads(run_cli("launch", str(d), "--cloud", "sandbox", "--json").stdout)["job_id"]
    _wait_running(runner_home, job_id)
    record = runner_home / "store" / "jobs" / job_id / "job.json"
    data = json.loads(record.read_text())
    store = open_store(f"file://{runner_home / 'store'}")
    inst = Instance("sandbox", "sandbox-1", job_id)
    later = datetime.now(timezone.utc) + timedelta(days=7, minutes=16)  # the longest runtime a spec allows, and the margin
    record.write_text(json.dumps({**data, "created_at": "2099-01-01T00:00:00Z", "spec": {**data["spec"], "max_runtime": 10**9}}))
    assert "past its deadline" in gc.why_stray(store, inst, later)
    record.write_text("{not json")
    why = gc.why_stray(store, inst, datetime.now(timezone.utc))
    assert why and "unreadable" in why, why
    run_cli("cancel", job_id)
