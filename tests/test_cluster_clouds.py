"""A cluster job's network on the clouds: on AWS a security group whose only inbound rule is its own members (moto),
the head on-demand and the workers spot, every node in the group; on GCP a firewall rule from the tag to the tag and
the tag on every node (FakeGoogle). Pure builders first."""

from __future__ import annotations

import json

import aws_iam
import pytest
from aws_fixtures import ACCOUNT, REGION, instances
from conftest import run_cli
from test_gcp_cli import gcp_cli  # noqa: F401 (the fixture)
from test_gcp_policies import writable

from runner.cluster import ids
from runner.errors import SpecError
from runner.providers import aws_network, gcp_firewall
from runner.providers.aws import Attempt, run_instances_request
from runner.providers.base import LaunchRequest
from runner.providers.gcp_build import instance_name, label_value
from runner.settings import AwsSettings

pytest_plugins = ["aws_fixtures", "fake_google"]
TAG = ids.NETWORK


def cluster_job(make_job, **extra):
    return make_job({"name": "ray", "command": "python3 -c 'import ray'", "nodes": 3, **extra})


# ---------------------------------------------------------------- pure

def test_the_group_admits_its_members_only():
    assert aws_network.ingress_request("sg-1") == {"GroupId": "sg-1", "IpPermissions": [
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-1", "Description": "members of this group only"}]}]}
    assert aws_network.group_request(TAG, "vpc-1")["GroupName"] == TAG
    own = {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-1"}]}
    assert aws_network.problems({"GroupId": "sg-1", "IpPermissions": [own]}) == []
    assert "lacks the rule" in aws_network.problems({"GroupId": "sg-1", "IpPermissions": []})[0]
    world = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    assert aws_network.problems({"GroupId": "sg-1", "IpPermissions": [own, world]}) == ["it admits 0.0.0.0/0 (tcp)"]
    other = {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-1"}, {"GroupId": "sg-2"}]}
    assert aws_network.problems({"GroupId": "sg-1", "IpPermissions": [other]}) == ["it admits the group(s) sg-2"]
    v6 = {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}
    assert aws_network.problems({"GroupId": "sg-1", "IpPermissions": [own, v6]}) == ["it admits ::/0 (-1)"]


def test_a_nodes_request_carries_the_group_beside_the_configured_one():
    req = LaunchRequest("ray--n1-20261201T101500Z-3fa9c2", "#!", "m6i.large", True, 50, 3600, network_tag=TAG)
    image = {"ImageId": "ami-1", "RootDeviceName": "/dev/xvda"}
    assert run_instances_request(req, AwsSettings(region="us-east-1"), image, Attempt("spot"), ("sg-c",))["SecurityGroupIds"] == ["sg-c"]
    cfg = AwsSettings(region="us-east-1", security_group="sg-mine")
    assert run_instances_request(req, cfg, image, Attempt("spot"), ("sg-c",))["SecurityGroupIds"] == ["sg-mine", "sg-c"]
    assert "SecurityGroupIds" not in run_instances_request(req, AwsSettings(region="us-east-1"), image, Attempt("spot"))


def test_the_firewall_rule_goes_from_the_tag_to_the_tag():
    body = gcp_firewall.rule_body(TAG, "global/networks/default")
    assert body["source_tags"] == body["target_tags"] == [TAG] and "source_ranges" not in body
    assert body["direction"] == "INGRESS" and [a["I_p_protocol"] for a in body["allowed"]] == ["tcp", "udp", "icmp"]
    good = {"direction": "INGRESS", "sourceTags": [TAG], "targetTags": [TAG], "allowed": [{"IPProtocol": "tcp"}, {"IPProtocol": "udp"}]}
    assert gcp_firewall.problems(good, TAG) == []
    assert gcp_firewall.problems({**good, "sourceRanges": ["0.0.0.0/0"]}, TAG) == ["it admits the ranges 0.0.0.0/0"]
    assert "tags are not both" in gcp_firewall.problems({**good, "targetTags": []}, TAG)[0]
    assert "every TCP and UDP port" in gcp_firewall.problems({**good, "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]}, TAG)[0]


def test_a_node_writes_the_head_record_and_its_joined_record_and_no_launcher_record():
    vm = aws_iam.load("aws-vm.json", REGION, ACCOUNT, "b")
    parent, node = "runner/jobs/ray-20240101T000000Z-abcdef", "runner/jobs/ray--n1-20240101T000000Z-abcdef"
    for key in (f"{parent}/head", f"{node}/joined", f"{node}/status.json"):
        assert aws_iam.decide(vm, "s3:PutObject", f"arn:aws:s3:::b/{key}") == "allowed", key
        assert writable(key), key
    for key in (f"{parent}/ray.sh", f"{parent}/nodes/0", f"{parent}/job.json", f"{node}/startup.sh", "runner/head"):
        assert aws_iam.decide(vm, "s3:PutObject", f"arn:aws:s3:::b/{key}") == "implicitDeny", key
        assert not writable(key), key
    assert not writable(f"{parent}/x/head")  # IAM's * crosses '/': S3 policies cannot say one folder deep, GCS conditions can


# ---------------------------------------------------------------- AWS, against moto

def test_aws_cluster_group_and_the_head_and_worker_requests(aws, make_job, hook):
    from click.testing import CliRunner

    from runner.cli import main

    d = cluster_job(make_job)
    calls: list = []
    aws_iam.recorder(hook, calls)
    r = CliRunner().invoke(main, ["launch", str(d), "--cloud", "aws", "--spot", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    policy = aws_iam.load("aws-launcher.json", REGION, ACCOUNT, aws.bucket)
    assert {op for _, op, _ in calls} >= {"CreateSecurityGroup", "AuthorizeSecurityGroupIngress", "RunInstances"}
    for service, op, params in calls:  # the launcher's policy allows every call of a cluster launch
        for action, resource, ctx in aws_iam.needs(service, op, params, REGION, ACCOUNT):
            assert aws_iam.decide(policy, action, resource, ctx) == "allowed", f"{service} {op}: {action} on {resource}"
    parent = out["job_id"]
    [group] = aws.ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [TAG]}])["SecurityGroups"]
    gid = group["GroupId"]
    assert [(p["IpProtocol"], [g["GroupId"] for g in p["UserIdGroupPairs"]], p["IpRanges"]) for p in group["IpPermissions"]] == [("-1", [gid], [])]
    assert [x["role"] for x in out["nodes"]] == ["head", "worker", "worker"]
    for k, node in enumerate(out["nodes"]):
        [vm] = instances(aws.ec2, node["job_id"])
        assert node["job_id"] == ids.node_id(parent, k) and vm["InstanceId"] == node["instance"]
        assert [g["GroupId"] for g in vm["SecurityGroups"]] == [gid]
        assert (vm.get("InstanceLifecycle") == "spot") == (k > 0), vm.get("InstanceLifecycle")  # the head on-demand
    assert instances(aws.ec2, parent) == []
    record = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=f"runner/jobs/{parent}/job.json")["Body"].read())
    assert record["cluster"]["nodes"] == 3 and gid in record["cluster"]["network"]
    assert b"ray start --head" in aws.s3.get_object(Bucket=aws.bucket, Key=f"runner/jobs/{parent}/ray.sh")["Body"].read()
    doctor = run_cli("doctor", "--cloud", "aws").stdout
    assert f"security group {TAG} ({gid}): members reach each other, nothing else" in doctor
    assert run_cli("launch", str(d), "--cloud", "aws", "--json").returncode == 0  # the group is found, not made again
    assert len(aws.ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [TAG]}])["SecurityGroups"]) == 1

    r = run_cli("cancel", parent)
    assert r.returncode == 0, r.stderr
    assert all(i["State"]["Name"] in ("shutting-down", "terminated") for n in out["nodes"] for i in instances(aws.ec2, n["job_id"]))

    # a rule that lets the world in: the doctor says so, and no cluster launches into it
    aws.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6379, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    try:
        doctor = run_cli("doctor", "--cloud", "aws")
        assert doctor.returncode == 1 and "it admits 0.0.0.0/0 (tcp)" in doctor.stdout
        r = run_cli("launch", str(d), "--cloud", "aws")
        assert r.returncode == 2 and f"security group {TAG} ({gid}) is not runner's: it admits 0.0.0.0/0 (tcp)" in r.stderr
    finally:  # the moto server lives for the whole session: leave no group behind
        for i in aws.ec2.describe_instances(Filters=[{"Name": "instance.group-id", "Values": [gid]}])["Reservations"]:
            aws.ec2.terminate_instances(InstanceIds=[x["InstanceId"] for x in i["Instances"]])
        aws.ec2.delete_security_group(GroupId=gid)


# ---------------------------------------------------------------- GCP, against FakeGoogle

def test_gcp_cluster_firewall_rule_and_the_tag_on_every_node(gcp_cli, make_job):  # noqa: F811
    google, _, _ = gcp_cli
    d = cluster_job(make_job, nodes=2)
    r = run_cli("launch", str(d), "--cloud", "gcp", "--type", "e2-standard-4", "--spot", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    rule = google.firewalls[f"{TAG}-internal"]
    assert rule["sourceTags"] == rule["targetTags"] == [TAG] and not rule.get("sourceRanges") and rule["direction"] == "INGRESS"
    assert rule["network"].endswith("global/networks/default")
    for k, node in enumerate(out["nodes"]):
        vm = next(v for (_, name), v in google.instances.items() if name == instance_name(node["job_id"]))
        assert vm["tags"]["items"] == [TAG] and vm["labels"]["runner-job"] == label_value(node["job_id"])
        assert vm["scheduling"]["provisioningModel"] == ("SPOT" if k else "STANDARD")
    posts = [x for x in google.log if x["method"] == "POST" and x["path"].endswith("/global/firewalls")]
    assert len(posts) == 1
    assert run_cli("launch", str(d), "--cloud", "gcp", "--type", "e2-standard-4", "--json").returncode == 0
    assert len([x for x in google.log if x["method"] == "POST" and x["path"].endswith("/global/firewalls")]) == 1  # found, not made again

    google.firewalls[f"{TAG}-internal"]["sourceRanges"] = ["0.0.0.0/0"]
    r = run_cli("launch", str(d), "--cloud", "gcp", "--type", "e2-standard-4")
    assert r.returncode == 2 and "it admits the ranges 0.0.0.0/0" in r.stderr


def test_a_backend_without_a_network_between_its_vms_runs_no_cluster():
    with pytest.raises(SpecError):
        from runner.cluster.plan import check_cloud

        check_cloud("vmware", 3)
