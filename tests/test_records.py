"""Records read back from the store are untrusted: garbage gives a clear per-job state, never a traceback."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from runner import jobs, watch
from runner.store import FileStore

JOB = "rec-20250101T000000Z-abcdef"
OTHER = "rec-20250102T000000Z-123456"
BIG = b'{"state": "SUCCEEDED", "reason": "' + b"x" * (5 << 20) + b'"}'

BAD_STATUS = {
    "empty": (b"", "status.json is not valid JSON"),
    "truncated": (b'{"state": "RUNN', "status.json is not valid JSON"),
    "not utf-8": (b'{"state": "\xff"}', "status.json is not valid JSON"),
    "a list": (b"[1, 2]", "status.json is not a JSON object (a list)"),
    "a string": (b'"SUCCEEDED"', "status.json is not a JSON object (a str)"),
    "unknown state": (b'{"state": "WHATEVER"}', "status.json names no state runner knows: 'WHATEVER'"),
    "state of the wrong type": (b'{"state": 5}', "status.json names no state runner knows: 5"),
    "5 MB": (BIG, "status.json is larger than 256 KiB"),
}


@pytest.fixture
def store(runner_home):
    store = FileStore(f"file://{runner_home}/store")
    for j in (JOB, OTHER):
        jobs.write_json(store, j, "job.json", {"job_id": j, "cloud": "sandbox", "outputs": {}})
    jobs.write_status(store, OTHER, jobs.Status(jobs.SUCCEEDED, exit_code=0))
    return store


@pytest.mark.parametrize("case", BAD_STATUS)
def test_a_bad_status_is_unknown_with_the_reason(store, case):
    raw, reason = BAD_STATUS[case]
    store.put_bytes(jobs.job_key(JOB, "status.json"), raw)
    st = jobs.read_status(store, JOB)
    assert st.state == "UNKNOWN" and st.reason.startswith(reason) and not st.final
    assert len(st.reason) < 300
    assert watch.refresh(store, JOB).state == "UNKNOWN"  # no VM recorded: nothing to reconcile with


def test_wrong_field_types_are_dropped_not_fatal(store):
    raw = {"state": "RUNNING", "exit_code": "abc", "reason": ["x"], "started_at": "yesterday", "ended_at": 5}
    store.put_bytes(jobs.job_key(JOB, "status.json"), json.dumps(raw).encode())
    st = jobs.read_status(store, JOB)
    assert (st.state, st.exit_code, st.reason, st.started_at, st.ended_at) == ("RUNNING", None, "", None, None)


BAD_INSTANCE = {
    "empty": (b"", "instance.json is not valid JSON"),
    "a list": (b"[]", "instance.json is not a JSON object (a list)"),
    "no id": (b'{"cloud": "sandbox"}', "instance.json names no VM"),
    "id of the wrong type": (json.dumps({"cloud": "sandbox", "id": 5, "job_id": JOB}).encode(), "instance.json names no VM"),
    "unknown cloud": (json.dumps({"cloud": "azure", "id": "vm-1", "job_id": JOB}).encode(), "instance.json names an unknown cloud 'azure'"),
    "another job": (json.dumps({"cloud": "sandbox", "id": "vm-1", "job_id": OTHER}).encode(), f"instance.json is for another job ({OTHER!r})"),
}


@pytest.mark.parametrize("case", BAD_INSTANCE)
def test_a_bad_instance_record_is_no_vm_known(store, case):
    raw, reason = BAD_INSTANCE[case]
    store.put_bytes(jobs.job_key(JOB, "instance.json"), raw)
    inst, why = jobs.read_instance(store, JOB)
    assert inst is None and why.startswith(f"no VM known: {reason}")
    assert watch.instance_of(store, JOB) is None
    assert watch.refresh(store, JOB).state == jobs.PENDING


def test_every_command_copes_with_garbage(store):
    store.put_bytes(jobs.job_key(JOB, "status.json"), b"")
    store.put_bytes(jobs.job_key(JOB, "instance.json"), b"{not json")
    r = run_cli("status")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    rows = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()[1:-1]}
    assert rows == {JOB: "UNKNOWN", OTHER: "SUCCEEDED"}
    assert "status.json is not valid JSON" in r.stdout
    r = run_cli("status", JOB)
    assert r.returncode == 0 and "UNKNOWN" in r.stdout and "no VM known: instance.json is not valid JSON" in r.stdout
    assert json.loads(run_cli("status", JOB, "--json").stdout)["state"] == "UNKNOWN"
    for args in (("logs", JOB), ("logs", JOB, "--all"), ("cancel", JOB), ("outputs", JOB, "out")):
        r = run_cli(*args)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        assert r.returncode in (0, 66), (args, r.stderr)


def test_a_bad_job_record_is_named(store):
    store.put_bytes(jobs.job_key(JOB, "job.json"), b"[]")
    for args in (("outputs", JOB, "out"), ("cancel", JOB)):
        r = run_cli(*args)
        assert "Traceback" not in r.stderr and "job.json is not a JSON object" in r.stderr, (args, r.stderr)


def test_status_of_a_job_whose_records_are_links_out(store, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"state": "SUCCEEDED"}')
    path = store.base / "jobs" / JOB / "status.json"
    path.symlink_to(secret)
    st = jobs.read_status(store, JOB)
    assert st.state == "UNKNOWN" and "not an object of the store" in st.reason


def test_launch_wait_rides_over_a_garbage_status(make_job, runner_home):
    """The job itself empties its status.json while it runs (a VM can write its own folder)."""
    d = make_job({"name": "garbage", "command": ': > "$STORE/jobs/$RUNNER_JOB_ID/status.json"; sleep 2; echo done',
                  "env": {"STORE": str(runner_home / "store")}})
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--wait", "--json")
    assert "Traceback" not in r.stderr, r.stderr
    assert json.loads(r.stdout)["state"] in ("SUCCEEDED", "UNKNOWN", "LOST")
