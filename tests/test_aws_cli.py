"""`runner` as a user and CI run it, as a subprocess, against the moto server: launch, status from
the store (LOST / PREEMPTED), cancel, logs, dry-run prices, doctor; nothing half-created."""

from __future__ import annotations

import json

import pytest
from conftest import cli_json, run_cli
from conftest import job_status as status

pytest.register_assert_rewrite("aws_fixtures")
from aws_fixtures import ACCOUNT, REGION, instances

pytest_plugins = ["aws_fixtures"]


def launch_json(job_dir, *args) -> dict:
    return cli_json("launch", str(job_dir), "--cloud", "aws", "--json", *args)


def moto_instance(instance_id: str):
    """The moto server's own record of an instance (the server runs in this process)."""
    from moto.ec2.models import ec2_backends

    return ec2_backends[ACCOUNT][REGION].get_instance(instance_id)


def test_launch_then_vm_gone_without_status_is_lost(aws, make_job):
    d = make_job({"name": "lost", "command": "sleep 600"})
    out = launch_json(d, "--type", "m6i.large")
    [i] = instances(aws.ec2, out["job_id"])
    assert i["InstanceId"] == out["instance"] and "InstanceLifecycle" not in i
    assert status(out["job_id"])["state"] == "PROVISIONING"  # the VM is there; nothing written yet
    aws.ec2.terminate_instances(InstanceIds=[out["instance"]])  # behind the job's back
    st = status(out["job_id"])
    assert st["state"] == "LOST" and "never wrote a final status" in st["reason"]
    table = run_cli("status").stdout
    assert out["job_id"] in table and "LOST" in table


def test_spot_reclaim_is_preempted(aws, make_job):
    from moto.ec2.models.instances import StateReason

    d = make_job({"name": "reclaimed", "command": "sleep 600", "spot": True})
    out = launch_json(d)
    vm = moto_instance(out["instance"])
    assert vm.lifecycle == "spot"
    vm.terminate()
    vm.state_reason = StateReason("Server.SpotInstanceTermination: Spot instance termination", "Server.SpotInstanceTermination")
    st = status(out["job_id"])
    assert st["state"] == "PREEMPTED" and "reclaimed spot instance" in st["reason"]


def test_cancel_terminates_by_tag_and_marks_cancelled(aws, make_job):
    d = make_job({"name": "cancelme", "command": "sleep 600"})
    out = launch_json(d)
    r = run_cli("cancel", out["job_id"])
    assert r.returncode == 0, r.stderr
    [i] = instances(aws.ec2, out["job_id"])
    assert i["State"]["Name"] in ("shutting-down", "terminated")
    assert status(out["job_id"])["state"] == "CANCELLED"
    # a launcher that died before recording instance.json: cancel still finds the VM by its tag
    out = launch_json(d)
    aws.s3.delete_object(Bucket=aws.bucket, Key=f"runner/jobs/{out['job_id']}/instance.json")
    assert run_cli("cancel", out["job_id"]).returncode == 0
    [i] = instances(aws.ec2, out["job_id"])
    assert i["State"]["Name"] in ("shutting-down", "terminated")


def test_logs_fall_back_to_the_console_before_the_job_log_exists(aws, make_job):
    d = make_job({"name": "console", "command": "true"})
    out = launch_json(d)
    r = run_cli("logs", out["job_id"])
    assert r.returncode == 0, r.stderr
    assert "Linux version" in r.stdout  # moto's fake boot log, from get_console_output
    assert f"no job.log in the store yet; the console of {out['instance']}" in r.stderr
    aws.s3.put_object(Bucket=aws.bucket, Key=f"runner/jobs/{out['job_id']}/logs/job.log", Body=b"the job's own log\n")
    assert run_cli("logs", out["job_id"]).stdout == "the job's own log\n"


def test_bad_spec_or_flag_creates_no_instance_and_no_record(aws, make_job):
    def count():
        return sum(len(r["Instances"]) for r in aws.ec2.describe_instances()["Reservations"])

    before = count()
    r = run_cli("launch", str(make_job({"name": "bad", "command": "true", "spto": True})), "--cloud", "aws")
    assert r.returncode == 2 and "unknown field 'spto' (did you mean 'spot'?)" in r.stderr
    good = make_job({"name": "good", "command": "true"}, name="good")
    r = run_cli("launch", str(good), "--cloud", "aws", "--type", "potato")
    assert r.returncode == 2 and "'potato' is not an EC2 instance type" in r.stderr
    r = run_cli("launch", str(good), "--cloud", "aws", "--image", "img-123")
    assert r.returncode == 2 and "not an AMI id" in r.stderr
    r = run_cli("launch", str(good), "--cloud", "aws", env={"RUNNER_STORE": ""})
    assert r.returncode == 2 and "set RUNNER_STORE=s3://bucket/prefix" in r.stderr
    assert count() == before
    assert not aws.s3.list_objects_v2(Bucket=aws.bucket).get("KeyCount")


def test_no_image_says_how_to_build_one(aws, make_job):
    (aws.images / "manifest.json").unlink()
    d = make_job({"name": "noimage", "command": "true"})
    r = run_cli("launch", str(d), "--cloud", "aws", "--region", "eu-north-1", "--json")
    assert r.returncode == 66 and "make image CLOUD=aws" in r.stderr and "capacity" not in r.stderr


def test_dry_run_prints_zones_prices_and_cost(aws, make_job):
    d = make_job({"name": "priced", "command": "true", "spot": True, "max_runtime": "1h"})
    r = run_cli("launch", str(d), "--cloud", "aws", "--dry-run", "--spot-fallback")
    assert r.returncode == 0, r.stderr
    assert "attempts: spot in us-east-1a ($0.0000/h), then spot in us-east-1b" in r.stdout
    assert "then on-demand in any zone" in r.stdout
    plan = json.loads(run_cli("launch", str(d), "--cloud", "aws", "--dry-run", "--json").stdout)
    assert plan["on_demand_usd_per_hour"] == 0.096 and plan["spot_usd_per_hour"] == 0.00001
    assert plan["max_cost_spot_usd"] < 0.01 and plan["max_cost_on_demand_usd"] is None
    assert "on-demand" not in plan["attempts"]
    assert not aws.s3.list_objects_v2(Bucket=aws.bucket).get("KeyCount")


def test_doctor_checks_the_setup_and_names_fixes(aws):
    r = run_cli("doctor", "--cloud", "aws")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["OK"] * 8
    assert "cluster network  security group runner-cluster" in r.stdout
    assert "permissions      not checked: arn:aws:sts::123456789012:user/moto is not an IAM user or role" in r.stdout  # moto's caller
    assert "arn:aws:sts::123456789012" in r.stdout and f"s3://{aws.bucket}/runner" in r.stdout
    assert aws.ami in r.stdout
    r = run_cli("doctor", "--cloud", "aws", env={"RUNNER_AWS_INSTANCE_PROFILE": "nope", "RUNNER_STORE": "",
                                                 "RUNNER_AWS_SUBNETS": "subnet-00000000000000000"})
    assert r.returncode == 1
    fails = {line.split()[1] for line in r.stdout.splitlines() if line.startswith("FAIL")}
    assert fails == {"store", "instance", "network", "cluster", "permissions"}  # permissions: skipped, no s3:// store
    assert "set RUNNER_STORE=s3://bucket/prefix" in r.stdout and "create it (docs/aws.md)" in r.stdout
    assert run_cli("doctor", "--cloud", "sandbox").returncode == 0


def test_gc_terminates_ec2_vms_whose_job_ended_or_is_unknown(aws, make_job):
    d = make_job({"name": "sweep", "command": "sleep 600"})
    ended, alive = launch_json(d), launch_json(d)
    key = f"runner/jobs/{ended['job_id']}/status.json"
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=json.dumps({"state": "SUCCEEDED", "exit_code": 0}).encode())
    stranger = aws.ec2.run_instances(ImageId=aws.ami, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "runner-job", "Value": "ghost-20200101T000000Z-abcdef"}]}])
    untagged = aws.ec2.run_instances(ImageId=aws.ami, MinCount=1, MaxCount=1)
    dry = run_cli("gc", "--cloud", "aws")
    assert dry.returncode == 0, dry.stderr
    assert ended["job_id"] in dry.stdout and "its job ended SUCCEEDED" in dry.stdout
    assert "no job 'ghost-20200101T000000Z-abcdef'" in dry.stdout
    assert alive["job_id"] not in dry.stdout and untagged["Instances"][0]["InstanceId"] not in dry.stdout
    [i] = instances(aws.ec2, ended["job_id"])
    assert i["State"]["Name"] in ("pending", "running")  # a dry run terminates nothing
    assert run_cli("gc", "--cloud", "aws", "--yes").returncode == 0
    assert instances(aws.ec2, ended["job_id"])[0]["State"]["Name"] in ("shutting-down", "terminated")
    ghost = stranger["Instances"][0]["InstanceId"]
    state = aws.ec2.describe_instances(InstanceIds=[ghost])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")
    assert instances(aws.ec2, alive["job_id"])[0]["State"]["Name"] in ("pending", "running")
