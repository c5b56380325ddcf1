"""A fan-out on AWS (moto) and GCP (FakeGoogle): one VM per shard, all started in one call (RunInstances,
bulkInsert), each tagged with its shard's id, and the account's vCPU quota checked before anything is created:
a run that does not fit is refused with the VMs that would; a quota the launcher may not read is a warning."""

from __future__ import annotations

import json

import aws_iam
import pytest
import yaml
from aws_fixtures import ACCOUNT, REGION, instances
from conftest import ROOT, run_cli
from fake_google import PROJECT
from test_gcp_cli import gcp_cli  # noqa: F401 (the fixture)

from runner.errors import QuotaError
from runner.providers import aws_quota, gcp_quota
from runner.providers.aws_quota import Quota
from runner.providers.gcp_build import label_value
from runner.providers.gcp_iam import permissions_for

pytest_plugins = ["aws_fixtures", "fake_google"]
ITEMS = ["a.csv", "b.csv", "c.csv", "d.csv", "e.csv"]


def fanout(make_job, vms: int, **extra):
    spec = {"name": "fan", "command": "true", "items": {"manifest": "items.txt", "fetch": False}, "vms": vms, **extra}
    return make_job(spec, {"items.txt": "".join(i + "\n" for i in ITEMS)})


def launched(out: dict) -> list[str]:
    return [s["job_id"] for s in out["shards"]]


# ---------------------------------------------------------------- pure

def test_each_type_has_its_family_quota():
    groups = {"m6i.large": "standard", "i3en.2xlarge": "standard", "z1d.large": "standard", "im4gn.large": "standard",
              "t3.micro": "standard", "g5.xlarge": "g", "vt1.3xlarge": "g", "p4d.24xlarge": "p", "x2idn.16xlarge": "x",
              "f1.2xlarge": "f", "inf2.xlarge": "inf", "dl1.24xlarge": "dl", "trn1.2xlarge": "trn", "hpc7g.4xlarge": "hpc",
              "u-6tb1.metal": "u", "mac2.metal": None, "q9.large": None}
    assert {t: aws_quota.group(t) for t in groups} == groups
    assert aws_quota.quota_code("c6i.large", "on-demand")[0] == "L-1216C47A"
    assert aws_quota.quota_code("c6i.large", "spot")[0] == "L-34B43A08"
    assert aws_quota.quota_code("g5.xlarge", "spot")[0] == "L-3819A6DF"
    assert aws_quota.quota_code("hpc7g.4xlarge", "spot") is None  # no spot market
    assert aws_quota.markets(True, True) == ["spot", "on-demand"] and aws_quota.markets(False, True) == ["on-demand"]


def test_the_verdict_names_the_quota_the_need_and_the_vms_that_fit():
    q = Quota('EC2 quota L-34B43A08 "All Standard Spot" in us-east-1', 20.0, fix="ask for L-34B43A08")
    assert aws_quota.verdict(2, 8, [q], "")["quota_fits"] is True
    with pytest.raises(QuotaError) as e:
        aws_quota.verdict(4, 8, [q], "")
    msg = str(e.value)
    assert "4 VM(s) x 8 vCPUs = 32 vCPUs" in msg and "L-34B43A08" in msg and "is 20 vCPUs" in msg
    assert "2 VM(s) would fit: launch with --vms 2" in msg and "ask for L-34B43A08" in msg
    with pytest.raises(QuotaError, match="no VM fits"):
        aws_quota.verdict(1, 8, [Quota("q", 16.0, used=10.0)], "")
    # a spot run that may fall back: spot and on-demand together
    assert aws_quota.verdict(4, 8, [q, Quota("on-demand", 16.0)], "")["quota_vms_that_fit"] == 4
    unread = aws_quota.verdict(4, 8, [q, Quota("on-demand", None, why="denied")], "")
    assert unread["quota_fits"] is None and "on-demand: denied" in unread["quota"]


def test_a_gce_vm_counts_against_its_series_quota_or_cpus():
    limits = {"CPUS": 24.0, "N2_CPUS": 8.0, "PREEMPTIBLE_CPUS": 0.0}
    assert gcp_quota.metric_for("n2-standard-8", False, limits) == "N2_CPUS"
    assert gcp_quota.metric_for("e2-standard-4", False, limits) == "CPUS"
    assert gcp_quota.metric_for("n2-standard-8", True, limits) == "N2_CPUS"  # no preemptible quota: the regular one
    assert gcp_quota.metric_for("n2-standard-8", True, {**limits, "PREEMPTIBLE_CPUS": 100.0}) == "PREEMPTIBLE_CPUS"


# ---------------------------------------------------------------- AWS, against moto

@pytest.fixture
def ec2_capacity():
    """moto starting up to MaxCount instances per RunInstances, as EC2 does (tests/moto_capacity.py): set
    `.capacity[zone]` (or "*") to make a zone short; `.calls` is every RunInstances moto received."""
    from types import SimpleNamespace

    import moto_capacity

    state = SimpleNamespace(capacity={}, calls=[])
    undo = moto_capacity.install(state.capacity, state.calls)
    yield state
    undo()


@pytest.fixture
def ec2_quotas(monkeypatch):
    """The moto server (in this process) answers GetServiceQuota for EC2 from this dict ({code: vCPUs}, or
    {"deny": True} for AccessDenied); moto itself knows no EC2 quota."""
    from moto.core.exceptions import JsonRESTError
    from moto.servicequotas.models import ServiceQuotasBackend

    values: dict = {}
    real = ServiceQuotasBackend.get_service_quota

    def get_service_quota(self, service_code, quota_code):
        if values.get("deny"):
            raise JsonRESTError("AccessDeniedException", "User is not authorized to perform: servicequotas:GetServiceQuota")
        if service_code == "ec2" and quota_code in values:
            return {"ServiceCode": "ec2", "QuotaCode": quota_code, "QuotaName": quota_code, "Value": values[quota_code],
                    "Unit": "None", "Adjustable": True, "GlobalQuota": False}
        return real(self, service_code, quota_code)

    monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get_service_quota)
    return values


def count_instances(ec2) -> int:
    return sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"])


def test_aws_fanout_starts_one_tagged_vm_per_shard_within_the_quota(aws, ec2_quotas, ec2_capacity, hook, make_job):
    from click.testing import CliRunner

    from runner.cli import main

    ec2_quotas["L-1216C47A"] = 128.0
    d = fanout(make_job, 3)
    dry = run_cli("launch", str(d), "--cloud", "aws", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["quota_fits"] is True and plan["quota_vms_that_fit"] == 64
    assert "3 VM(s) x 2 vCPUs = 6 vCPUs" in plan["quota"] and "L-1216C47A" in plan["quota"] and "is 128 vCPUs" in plan["quota"]
    assert not aws.s3.list_objects_v2(Bucket=aws.bucket).get("KeyCount")

    calls: list = []
    aws_iam.recorder(hook, calls)
    r = CliRunner().invoke(main, ["launch", str(d), "--cloud", "aws", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    shards = launched(out)
    assert len(shards) == 3 and [s["items"] for s in out["shards"]] == [2, 2, 1]
    for k, sid in enumerate(shards):  # one VM each, tagged with its own shard's id (never the parent's)
        [vm] = instances(aws.ec2, sid)
        assert vm["InstanceId"] == out["shards"][k]["instance"] and vm["InstanceType"] == "m6i.large"
    assert instances(aws.ec2, out["job_id"]) == []
    ops = [op for _, op, _ in calls]
    assert ops.count("RunInstances") == 1 and ops.count("CreateTags") == 3  # one call for all, then each VM its shard's tag
    assert ops.count("DescribeInstanceTypes") == 1 and ops.count("GetServiceQuota") == 1
    assert ops.index("GetServiceQuota") < min(i for i, (_, op, p) in enumerate(calls) if op == "PutObject")
    policy = aws_iam.load("aws-launcher.json", REGION, ACCOUNT, aws.bucket)
    for service, op, params in calls:  # and the launcher's policy allows each of them
        for action, resource, ctx in aws_iam.needs(service, op, params, REGION, ACCOUNT):
            assert aws_iam.decide(policy, action, resource, ctx) == "allowed", f"{service} {op}: {action} on {resource}"


def test_aws_fanout_over_the_spot_quota_is_refused_with_nothing_created(aws, ec2_quotas, ec2_capacity, make_job):
    ec2_quotas["L-34B43A08"] = 20.0  # 2 x i3en.2xlarge (8 vCPUs each)
    d = fanout(make_job, 4, spot=True)
    before = count_instances(aws.ec2)
    for args in (["--dry-run"], []):
        r = run_cli("launch", str(d), "--cloud", "aws", "--type", "i3en.2xlarge", *args)
        assert r.returncode == 69, r.stderr
        assert "the run needs 4 VM(s) x 8 vCPUs = 32 vCPUs" in r.stderr
        assert 'L-34B43A08 "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests" in us-east-1 is 20 vCPUs' in r.stderr
        assert "2 VM(s) would fit: launch with --vms 2" in r.stderr and "--quota-code L-34B43A08" in r.stderr
    assert count_instances(aws.ec2) == before
    assert not aws.s3.list_objects_v2(Bucket=aws.bucket).get("KeyCount")
    # as many as fit: it launches
    r = run_cli("launch", str(d), "--cloud", "aws", "--type", "i3en.2xlarge", "--vms", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert len(launched(json.loads(r.stdout))) == 2 and count_instances(aws.ec2) == before + 2


def test_aws_quota_the_launcher_may_not_read_is_a_warning(aws, ec2_quotas, ec2_capacity, make_job):
    ec2_quotas["deny"] = True
    r = run_cli("launch", str(fanout(make_job, 2)), "--cloud", "aws", "--json")
    assert r.returncode == 0, r.stderr
    assert "runner: warning: the vCPU quota was not checked" in r.stderr
    assert "AccessDeniedException" in r.stderr and "servicequotas:GetServiceQuota" in r.stderr
    out = json.loads(r.stdout)
    assert all(len(instances(aws.ec2, sid)) == 1 for sid in launched(out)) and len(launched(out)) == 2


# ---------------------------------------------------------------- GCP, against FakeGoogle

def test_gcp_fanout_inserts_one_labelled_vm_per_shard_within_the_regional_quota(gcp_cli, make_job):  # noqa: F811
    google, _, _ = gcp_cli
    google.quotas["us-central1"] = [{"metric": "CPUS", "limit": 24.0, "usage": 4.0}, {"metric": "N2_CPUS", "limit": 8.0, "usage": 0.0}]
    d = fanout(make_job, 3)
    dry = run_cli("launch", str(d), "--cloud", "gcp", "--type", "e2-standard-4", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["quota_fits"] is True and plan["quota_vms_that_fit"] == 5
    assert f"GCE quota CPUS in us-central1 (project {PROJECT}) is 24 vCPUs, 4 in use" in plan["quota"]
    assert google.inserts() == [] and google.bulk_inserts() == []
    r = run_cli("launch", str(d), "--cloud", "gcp", "--type", "e2-standard-4", "--json")
    assert r.returncode == 0, r.stderr
    shards = launched(json.loads(r.stdout))
    assert google.inserts() == [] and len(google.bulk_inserts()) == 1  # one instances.bulkInsert for all of them
    body = google.bulk_inserts()[0]["json"]
    assert body["count"] == "3" and body["instanceProperties"]["machineType"] == "e2-standard-4"
    vms = list(google.instances.values())
    assert sorted(vm["labels"]["runner-job"] for vm in vms) == sorted(label_value(s) for s in shards)  # then each its own label
    regions = [r for r in google.log if r["path"].endswith("/regions/us-central1")]
    assert regions and all(r["method"] == "GET" for r in regions)
    role = set(yaml.safe_load((ROOT / "docs" / "policies" / "gcp-launcher-role.yaml").read_text())["includedPermissions"])
    calls = {(r["method"], r["path"]) for r in google.log if r["path"].startswith("/compute/")}
    assert {p for m, path in calls for p in permissions_for(m, path)} <= role


def test_gcp_fanout_over_the_regional_quota_is_refused_with_nothing_created(gcp_cli, make_job):  # noqa: F811
    google, client, bucket = gcp_cli
    google.quotas["us-central1"] = [{"metric": "CPUS", "limit": 100.0, "usage": 0.0}, {"metric": "N2_CPUS", "limit": 24.0, "usage": 8.0}]
    d = fanout(make_job, 5)
    for args in (["--dry-run"], []):
        r = run_cli("launch", str(d), "--cloud", "gcp", "--type", "n2-standard-4", *args)
        assert r.returncode == 69, r.stderr
        assert "the run needs 5 VM(s) x 4 vCPUs = 20 vCPUs" in r.stderr
        assert "GCE quota N2_CPUS in us-central1" in r.stderr and "is 24 vCPUs, 8 in use" in r.stderr
        assert "4 VM(s) would fit: launch with --vms 4" in r.stderr
    assert google.inserts() == [] and google.bulk_inserts() == []
    assert list(client.list_blobs(bucket)) == []


def test_gcp_quota_the_launcher_may_not_read_is_a_warning(gcp_cli, make_job):  # noqa: F811
    google, _, _ = gcp_cli
    google.region_errors["us-central1"] = (403, "forbidden", "Required 'compute.regions.get' permission")
    r = run_cli("launch", str(fanout(make_job, 2)), "--cloud", "gcp", "--type", "e2-standard-4", "--json")
    assert r.returncode == 0, r.stderr
    assert "runner: warning: the vCPU quota was not checked" in r.stderr and "compute.regions.get" in r.stderr
    assert len(google.bulk_inserts()) == 1 and len(google.instances) == 2
