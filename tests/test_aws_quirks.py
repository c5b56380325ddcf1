"""EC2 as it behaves for real, beyond what moto shows: VMs the job does not own, a new instance the API
does not list yet, idempotency tokens across relaunches, error codes a first account meets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber
from conftest import cli_json, run_cli

from runner import jobs, watch
from runner.errors import AuthError, NotOwnedError
from runner.providers.aws import Attempt, AwsProvider, AwsSettings, classify, run_instances_request
from runner.providers.base import Instance, LaunchRequest
from runner.store import open_store

pytest.register_assert_rewrite("aws_fixtures")
from aws_fixtures import PROFILE, REGION, instances

pytest_plugins = ["aws_fixtures"]

JOB = "quirk-20240101T000000Z-abcdef"


def request(**kw) -> LaunchRequest:
    base = {"job_id": JOB, "user_data": "#!/bin/bash\n", "instance_type": "m6i.large", "spot": True,
            "disk_gb": 30, "max_runtime": 3600, "tags": {"runner-job": JOB}}
    return LaunchRequest(**{**base, **kw})


def vm_state(ec2, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


# ---------------------------------------------------------------- terminate only the job's own VM

def test_terminate_leaves_untagged_and_foreign_vms_alone(aws):
    p = AwsProvider()
    untagged = aws.ec2.run_instances(ImageId=aws.ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    foreign = aws.ec2.run_instances(ImageId=aws.ami, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "runner-job", "Value": "other-20240101T000000Z-000000"}]}],
    )["Instances"][0]["InstanceId"]
    for iid in (untagged, foreign):
        with pytest.raises(NotOwnedError, match=f"{iid}.*runner-job={JOB}"):
            p.terminate(Instance("aws", iid, JOB, data={"region": REGION}))
        assert vm_state(aws.ec2, iid) in ("pending", "running")
        with pytest.raises(NotOwnedError, match=iid):  # nor is its console read into a job's log
            p.console_output(Instance("aws", iid, JOB, data={"region": REGION}))
    with pytest.raises(NotOwnedError, match="without a job id"):
        p.terminate(Instance("aws", untagged, "", data={"region": REGION}))
    with pytest.raises(NotOwnedError, match="not an EC2 instance id"):
        p.terminate(Instance("aws", "i-1,i-2", JOB, data={"region": REGION}))
    own = p.launch(request(job_id="own-20240101T000000Z-000001", tags={"runner-job": "own-20240101T000000Z-000001"}))
    p.terminate(own)
    assert vm_state(aws.ec2, own.id) in ("shutting-down", "terminated")
    p.terminate(own)  # idempotent: gone == done


def test_cancel_does_not_terminate_a_vm_the_record_points_at_but_the_job_does_not_own(aws, make_job):
    victim = aws.ec2.run_instances(ImageId=aws.ami, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "prod-db"}]}])["Instances"][0]["InstanceId"]
    out = cli_json("launch", str(make_job({"name": "evil", "command": "sleep 600"})), "--cloud", "aws", "--json")
    key = f"runner/jobs/{out['job_id']}/instance.json"
    record = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read())
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=json.dumps({**record, "id": victim}).encode())  # as the VM could
    r = run_cli("cancel", out["job_id"])
    assert victim in r.stderr and f"runner-job={out['job_id']}" in r.stderr
    assert vm_state(aws.ec2, victim) in ("pending", "running")


# ---------------------------------------------------------------- eventual consistency

def stubbed(monkeypatch, p: AwsProvider, error_code: str = "InvalidInstanceID.NotFound"):
    """The provider's EC2 client answers DescribeInstances with `error_code` (moto cannot show it)."""
    ec2 = boto3.client("ec2", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    stub = Stubber(ec2)
    stub.add_client_error("describe_instances", error_code, "The instance ID 'i-0123456789abcdef0' does not exist")
    stub.activate()
    monkeypatch.setattr(p, "client", lambda service, region: ec2)
    return stub


def at(**delta) -> str:
    return (datetime.now(timezone.utc) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("launched_at, alive", [
    ({"seconds": 5}, True),  # just started: EC2 does not list it yet
    ({"minutes": 10}, False),  # long enough for EC2 to know it: gone
    (None, False),  # a record without a launch time
    ("not a time", False),
    ({"minutes": -30}, False),  # a launch time in the future is not believed
])
def test_an_instance_ec2_does_not_list_yet_is_starting_while_young(aws, monkeypatch, launched_at, alive):
    if isinstance(launched_at, dict):  # relative to when the test runs, not to when it was collected
        launched_at = at(**launched_at)
    p = AwsProvider()
    stub = stubbed(monkeypatch, p)
    data = {"region": REGION, **({"launched_at": launched_at} if launched_at else {})}
    st = p.state(Instance("aws", "i-0123456789abcdef0", JOB, data=data))
    stub.assert_no_pending_responses()
    assert st.alive is alive
    assert ("not listed yet" in st.reason) if alive else ("no longer lists" in st.reason)


def test_launch_records_the_launch_time_and_wait_does_not_call_a_new_vm_lost(aws, monkeypatch, make_job):
    from runner import launch as launcher

    p = launcher.plan(make_job({"name": "young", "command": "true"}), None, cloud="aws")
    inst = launcher.launch(p)
    launched = datetime.strptime(inst.data["launched_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - launched).total_seconds()) < 120
    provider = AwsProvider()
    stubbed(monkeypatch, provider)
    monkeypatch.setattr(watch, "get_provider", lambda cloud: provider)
    store = open_store(aws.env["RUNNER_STORE"])
    assert watch.refresh(store, p.job_id).state == jobs.PROVISIONING  # not LOST


# ---------------------------------------------------------------- idempotency tokens

def test_client_token_differs_per_attempt_and_repeats_within_one():
    cfg, image = AwsSettings(region=REGION, instance_profile=PROFILE), {"ImageId": "ami-1"}

    def token(attempt: int, zone: str = "us-east-1a", market: str = "spot") -> str:
        return run_instances_request(request(attempt=attempt), cfg, image, Attempt(market, zone))["ClientToken"]

    assert token(1) == token(1) and token(2) == token(2)
    assert len({token(1), token(2), token(3)}) == 3  # a relaunch is a new request, not a repeat of the dead VM's
    assert token(1) != token(1, "us-east-1b") and token(1) != token(1, market="on-demand")
    assert all(0 < len(token(n)) <= 64 for n in (1, 99, 10**12))


def test_a_relaunch_starts_a_new_vm_instead_of_returning_the_dead_one(aws, hook):
    repeats_of = ec2_client_tokens(hook)
    p = AwsProvider()
    first = p.launch(request(spot=False))
    assert p.launch(request(spot=False)).id == first.id  # a retried call: the same VM, as EC2 promises
    p.terminate(first)  # preempted
    second = p.launch(request(spot=False, attempt=2))
    assert second.id != first.id and repeats_of == [first.id]
    assert vm_state(aws.ec2, second.id) in ("pending", "running")
    assert len(instances(aws.ec2, JOB)) == 2


def ec2_client_tokens(hook) -> list:
    """EC2's ClientToken promise (moto does not keep it): a repeated token answers the first call's instance."""
    from types import SimpleNamespace

    answered: dict = {}
    token: dict = {}
    repeats: list = []

    def build(params, **_):
        token["now"] = params.get("ClientToken")

    def before(**_):
        if token["now"] in answered:
            repeats.append(answered[token["now"]]["Instances"][0]["InstanceId"])
            return SimpleNamespace(status_code=200, headers={}), answered[token["now"]]
        return None

    def after(parsed, **_):
        answered.setdefault(token["now"], parsed)

    hook("before-parameter-build.ec2.RunInstances", build)
    hook("before-call.ec2.RunInstances", before)
    hook("after-call.ec2.RunInstances", after)
    return repeats


# ---------------------------------------------------------------- error codes

def test_spot_service_linked_role_missing_is_an_auth_error_with_the_fix():
    err = classify("AuthFailure.ServiceLinkedRoleCreationNotPermitted",
                   "The provided credentials do not have permission to create the service-linked role for EC2 Spot Instances.",
                   "EC2 RunInstances (m6i.large spot in us-east-1a)")
    assert isinstance(err, AuthError)
    assert "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com" in str(err)
