"""`runner cancel`: the cancel marker first, then the VM (only the job's own), then CANCELLED unless final."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from runner import cancel, jobs, providers
from runner.errors import NotOwnedError
from runner.providers.base import Instance, InstanceState
from runner.store import FileStore

JOB = "can-20250101T000000Z-abcdef"


class FakeProvider:
    """A backend whose VMs are a dict; `on_terminate` runs inside terminate (a VM's last write, say)."""

    name = "fake"
    vms: ClassVar[dict[str, dict]] = {}
    calls: ClassVar[list[str]] = []
    on_terminate = None

    def state(self, inst):
        return InstanceState(alive=inst.id in self.vms)

    def terminate(self, inst):
        self.calls.append(inst.id)
        if self.vms.get(inst.id, {}).get("runner-job") != inst.job_id:
            raise NotOwnedError(f"{inst.id} does not carry the tag runner-job={inst.job_id}; left alone")
        if FakeProvider.on_terminate:
            FakeProvider.on_terminate()
        self.vms.pop(inst.id, None)

    def find(self, tags):
        return [Instance("fake", i, t["runner-job"]) for i, t in self.vms.items() if t.get("runner-job") == tags["runner-job"]]


@pytest.fixture
def store(runner_home, monkeypatch):
    monkeypatch.setitem(providers.PROVIDERS, "fake", "test_cancel:FakeProvider")
    FakeProvider.vms, FakeProvider.calls, FakeProvider.on_terminate = {}, [], None
    store = FileStore(f"file://{runner_home}/store")
    jobs.write_json(store, JOB, "job.json", {"job_id": JOB, "cloud": "fake", "outputs": {}})
    jobs.write_json(store, JOB, "instance.json", Instance("fake", "vm-1", JOB).to_json())
    jobs.write_status(store, JOB, jobs.Status(jobs.RUNNING, started_at="2025-01-01T00:00:00Z"))
    FakeProvider.vms["vm-1"] = {"runner-job": JOB}
    return store


def test_cancel_marks_first_then_terminates_then_cancelled(store):
    seen = []
    FakeProvider.on_terminate = lambda: seen.append(store.exists(jobs.job_key(JOB, "cancel")))
    result = cancel.cancel(store, JOB)
    assert seen == [True]  # the marker is in the store before the VM is told to stop
    marker = json.loads(store.get_bytes(jobs.job_key(JOB, "cancel")))
    assert set(marker) == {"requested_at", "by"}
    assert "vm-1" not in FakeProvider.vms
    st = jobs.read_status(store, JOB)
    assert st.state == jobs.CANCELLED and st.reason == "cancelled by `runner cancel`" and st.started_at == "2025-01-01T00:00:00Z"
    assert result.state == jobs.CANCELLED and result.lines[-1] == f"{JOB}: CANCELLED"


def test_a_status_written_during_cancel_stays(store):
    """The VM finishes while cancel terminates it: its SUCCEEDED stays, and cancel says so."""
    FakeProvider.on_terminate = lambda: jobs.write_status(store, JOB, jobs.Status(jobs.SUCCEEDED, exit_code=0))
    result = cancel.cancel(store, JOB)
    assert jobs.read_status(store, JOB).state == jobs.SUCCEEDED
    assert result.state == jobs.SUCCEEDED and "already ended: SUCCEEDED (it had already finished" in result.lines[-1]


class RacingStore(FileStore):
    """The VM's write lands between cancel's read of status.json and its conditional write."""

    def put_if(self, key, data, expected):
        if key.endswith("status.json") and not getattr(self, "raced", False):
            self.raced = True
            self.put_bytes(key, json.dumps({"state": "SUCCEEDED", "exit_code": 0}).encode())
        return super().put_if(key, data, expected)


def test_the_conditional_write_loses_to_the_vm_final_status(store, runner_home):
    racing = RacingStore(store.root)
    result = cancel.cancel(racing, JOB)
    assert racing.raced and jobs.read_status(store, JOB).state == jobs.SUCCEEDED
    assert result.state == jobs.SUCCEEDED and "already ended: SUCCEEDED (it had already finished" in result.lines[-1]


def test_cancel_of_a_finished_job_changes_nothing(store):
    jobs.write_status(store, JOB, jobs.Status(jobs.FAILED, exit_code=3))
    before = store.get_bytes(jobs.job_key(JOB, "status.json"))
    result = cancel.cancel(store, JOB)
    assert result.lines == [f"{JOB} already ended: FAILED (it had already finished); nothing changed"]
    assert store.get_bytes(jobs.job_key(JOB, "status.json")) == before
    assert not store.exists(jobs.job_key(JOB, "cancel")) and FakeProvider.calls == []


def test_a_vm_that_is_not_the_job_is_left_alone(store):
    FakeProvider.vms["prod-db"] = {}
    jobs.write_json(store, JOB, "instance.json", Instance("fake", "prod-db", JOB).to_json())
    result = cancel.cancel(store, JOB)
    assert "prod-db" in FakeProvider.vms
    assert any("prod-db does not carry the tag runner-job" in line for line in result.lines)
    assert jobs.read_status(store, JOB).state == jobs.CANCELLED


def test_instance_record_of_another_job_finds_the_vm_by_its_tag(store):
    jobs.write_json(store, JOB, "instance.json", Instance("fake", "prod-db", "can-20250101T000000Z-000000").to_json())
    FakeProvider.vms["prod-db"] = {}
    result = cancel.cancel(store, JOB)
    assert FakeProvider.calls == ["vm-1"] and "prod-db" in FakeProvider.vms  # found by runner-job=JOB, not by the record
    assert any("no VM known: instance.json is for another job" in line for line in result.lines)
    assert jobs.read_status(store, JOB).state == jobs.CANCELLED


def test_garbage_records_still_cancel(store):
    store.put_bytes(jobs.job_key(JOB, "status.json"), b"\x00\x01")
    store.put_bytes(jobs.job_key(JOB, "instance.json"), b"")
    store.put_bytes(jobs.job_key(JOB, "job.json"), b"[]")
    result = cancel.cancel(store, JOB)
    assert jobs.read_status(store, JOB).state == jobs.CANCELLED and result.state == jobs.CANCELLED
    assert any("no VM known" in line for line in result.lines)
