"""The IAM policies in docs/policies against the calls the code makes: every boto3 call the launcher makes
(recorded against moto) is allowed by the launcher's policy; every call the startup script makes is allowed
by the VM's policy, which cannot write the launcher's records; `runner doctor` asks IAM's policy simulator
(answered here from the same files) and names what is missing."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.register_assert_rewrite("aws_fixtures", "aws_iam")
import aws_iam
from aws_fixtures import ACCOUNT, REGION

from runner.providers import aws_permissions as perms

pytest_plugins = ["aws_fixtures"]
ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "templates" / "startup.sh.j2"
ITEMS_TEMPLATE = ROOT / "templates" / "items.sh.j2"
JOB = "vm-20240101T000000Z-abcdef"
PARENT, SHARD = "fan-20240101T000000Z-abcdef", "fan--s1-20240101T000000Z-abcdef"
LAUNCHER_RECORDS = ("job.json", "user-data", "startup.sh", "code.tar.gz", "cancel", "instance.json", "manifest.jsonl", "items.sh",
                    "items.tsv", "shards/0", "shards/12")


def policies(bucket: str) -> SimpleNamespace:
    return SimpleNamespace(launcher=aws_iam.load("aws-launcher.json", REGION, ACCOUNT, bucket),
                           vm=aws_iam.load("aws-vm.json", REGION, ACCOUNT, bucket))


def test_the_policy_files_are_shown_by_the_docs():
    docs = (ROOT / "docs" / "aws.md").read_text()
    for name in ("aws-launcher.json", "aws-vm.json", "aws-vm-trust.json"):
        doc = json.loads((aws_iam.POLICIES / name).read_text())
        assert doc["Version"] == "2012-10-17" and doc["Statement"]
        assert f"docs/policies/{name}" in docs
    assert "does not watch the spot interruption notice" not in docs
    assert "spot/instance-action" in docs


# ---------------------------------------------------------------- the VM's role

# What each s5cmd subcommand the startup script uses asks of S3 (and the AWS CLI for aws-ssm: secrets).
SCRIPT_TOOLS = {
    "s5cmd cp (download)": ["HeadObject", "GetObject", "ListObjectsV2"],
    "s5cmd cp (upload)": ["PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"],
    "s5cmd ls": ["ListObjectsV2"],
    "s5cmd run": ["HeadObject", "GetObject"],  # the pull's plan file: one `cp` download per kept key
    "s5cmd cat": ["GetObject"],
    "aws ssm get-parameter": ["GetParameter"],
    "aws s3api put-object": ["PutObject"],  # items.sh: reduce/lock, created only if absent (--if-none-match '*')
}


def script_calls(bucket: str, prefix: str) -> list[tuple[str, str, dict]]:
    """The AWS calls the startup script makes for job JOB, by the keys of the store layout."""
    job = f"{prefix}/jobs/{JOB}"
    reads = [f"{job}/code.tar.gz", f"{job}/status.json", f"{job}/cancel", f"{job}/checkpoint/state", f"{prefix}/data/in.csv"]
    writes = [f"{job}/status.json", f"{job}/logs/1/job.log.000000", f"{job}/logs/2/startup.log.000013",
              f"{job}/outputs/result.csv", f"{job}/outputs/sub/job.json", f"{job}/checkpoint/state"]
    calls = [("s3", "HeadBucket", {"Bucket": bucket})]
    calls += [("s3", op, {"Bucket": bucket, "Key": k}) for k in reads for op in ("HeadObject", "GetObject")]
    calls += [("s3", "ListObjectsV2", {"Bucket": bucket, "Prefix": p}) for p in (f"{job}/checkpoint/", f"{prefix}/data/")]
    calls += [("s3", op, {"Bucket": bucket, "Key": k}) for k in writes for op in SCRIPT_TOOLS["s5cmd cp (upload)"]]
    calls.append(("ssm", "GetParameter", {"Name": "/runner/db-password"}))
    return calls


def item_calls(bucket: str, prefix: str) -> list[tuple[str, str, dict]]:
    """The AWS calls a fan-out shard's items.sh makes (besides its startup script's), by the keys of the store layout."""
    parent, shard, name = f"{prefix}/jobs/{PARENT}", f"{prefix}/jobs/{SHARD}", "yellow_tripdata_2012-03.csv"
    reads = [f"{parent}/items.sh", f"{parent}/manifest.jsonl", f"{parent}/code.tar.gz", f"{shard}/items.tsv",
             f"{prefix}/data/nyc-taxi/{name}", f"{parent}/reduce/lock", f"{parent}/items/{name}/result/counts.csv"]
    writes = [f"{parent}/items/{name}/result/counts.csv", f"{parent}/items/{name}/result/sub/part-0.csv",
              f"{parent}/items/{name}/log", f"{parent}/items/{name}/exit_code", f"{parent}/items/{name}/done",
              f"{shard}/summary.json", f"{parent}/reduce/status.json", f"{parent}/reduce/log", f"{parent}/reduce/exit_code",
              f"{parent}/outputs/passenger_counts.csv"]
    lists = [f"{parent}/items/{name}/done", f"{parent}/items/", f"{prefix}/data/nyc-taxi/"]
    calls = [("s3", op, {"Bucket": bucket, "Key": k}) for k in reads for op in ("HeadObject", "GetObject")]
    calls += [("s3", "ListObjectsV2", {"Bucket": bucket, "Prefix": p}) for p in lists]
    calls += [("s3", op, {"Bucket": bucket, "Key": k}) for k in writes for op in SCRIPT_TOOLS["s5cmd cp (upload)"]]
    calls += [("s3", op, {"Bucket": bucket, "Key": f"{parent}/reduce/lock"}) for op in SCRIPT_TOOLS["aws s3api put-object"]]
    return calls


@pytest.mark.parametrize("template", [TEMPLATE, ITEMS_TEMPLATE], ids=["startup.sh", "items.sh"])
def test_the_script_uses_only_the_tools_whose_calls_are_checked(template):
    text = "\n".join(line for line in template.read_text().splitlines() if "declare -f" not in line)  # names, not calls
    used = set(re.findall(r"(?:^|[;&|(]\s*|\s)s3 (?:--[a-z-]+ )*([a-z]+)\b", text, re.M))
    known = {tool.split()[1] for tool in SCRIPT_TOOLS if tool.startswith("s5cmd")}
    assert used and used <= known, f"{template.name} uses s5cmd {sorted(used - known)}: add its S3 calls to SCRIPT_TOOLS"
    aws_cli = {" ".join(m) for m in re.findall(r"\baws\b[^\n]*?\b(s3api|ssm|s3|ec2|sts|iam) ([a-z-]+)", text)}
    assert aws_cli <= {tool.removeprefix("aws ") for tool in SCRIPT_TOOLS if tool.startswith("aws ")}, (
        f"{template.name} calls aws {sorted(aws_cli)}: add each one's calls to SCRIPT_TOOLS")
    assert not re.search(r"\baws s3\b|\baws ec2\b", text)  # the VM calls nothing else of AWS


def test_the_item_runner_uses_the_calls_that_item_calls_checks():
    text = ITEMS_TEMPLATE.read_text()
    assert "s3api put-object" in text and "--if-none-match '*'" in text  # the reduce lock: a PutObject, create-only
    assert re.search(r"\bs3 ls\b", text) and re.search(r"\bs3 --json ls\b", text)  # exists, all_done: ListObjectsV2


@pytest.mark.parametrize("prefix", ["runner"])
def test_the_vm_policy_allows_what_the_script_does_and_nothing_of_the_launchers(prefix):
    vm = policies("my-bucket").vm
    for service, op, params in script_calls("my-bucket", prefix) + item_calls("my-bucket", prefix):
        for action, resource, ctx in aws_iam.needs(service, op, params, REGION, ACCOUNT):
            assert aws_iam.decide(vm, action, resource, ctx) == "allowed", f"the VM's role cannot {action} on {resource}"
    for victim in (JOB, "other-20240101T000000Z-000000", PARENT, SHARD):
        for name in (*LAUNCHER_RECORDS, "../job.json"):
            key = f"arn:aws:s3:::my-bucket/{prefix}/jobs/{victim}/{name}"
            assert aws_iam.decide(vm, "s3:PutObject", key) != "allowed", f"the VM may write {key}"
            assert aws_iam.decide(vm, "s3:DeleteObject", key) != "allowed"
    for action in ("ec2:TerminateInstances", "ec2:RunInstances", "iam:PassRole", "s3:DeleteObject", "ssm:PutParameter"):
        assert aws_iam.decide(vm, action, "*") == "implicitDeny"
    assert aws_iam.decide(vm, "ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/prod/db") == "implicitDeny"


def test_the_vm_policy_grants_a_fan_out_only_its_item_reduce_and_summary_keys():
    vm = policies("my-bucket").vm
    parent = f"arn:aws:s3:::my-bucket/runner/jobs/{PARENT}"
    for key in ("items/a.csv/result/x.csv", "items/a.csv/log", "items/a.csv/exit_code", "items/a.csv/done",
                "reduce/lock", "reduce/log", "reduce/exit_code", "reduce/status.json", "summary.json"):
        assert aws_iam.decide(vm, "s3:PutObject", f"{parent}/{key}") == "allowed", key
    for key in ("items/a.csv/other", "items/a.csv", "items/done", "reduce/other", "reduce", "items.sh", "items.tsv",
                "manifest.jsonl", "shards/3", "summary.jsonl", "x.json"):
        assert aws_iam.decide(vm, "s3:PutObject", f"{parent}/{key}") == "implicitDeny", key
    for key in ("items/a/done", "reduce/lock", "summary.json"):  # only below a job's folder in the store
        assert aws_iam.decide(vm, "s3:PutObject", f"arn:aws:s3:::my-bucket/elsewhere/{key}") == "implicitDeny", key


def test_the_doctors_lists_match_the_policies():
    p = policies("my-bucket")
    role = f"arn:aws:iam::{ACCOUNT}:role/runner-vm-role"
    for need in perms.launcher_needs(REGION, ACCOUNT, "my-bucket", "runner", role):
        assert aws_iam.decide(p.launcher, need.action, need.resource, need.context) == "allowed", str(need)
    for need in perms.vm_needs(REGION, ACCOUNT, "my-bucket", "runner"):
        assert aws_iam.decide(p.vm, need.action, need.resource, need.context) == "allowed", str(need)
    for need in perms.vm_forbidden("my-bucket", "runner"):
        assert aws_iam.decide(p.vm, need.action, need.resource, need.context) == "implicitDeny", str(need)
    vm_actions = {a for _, op, params in script_calls("b", "p") for a, _, _ in aws_iam.needs(_, op, params, REGION, ACCOUNT)}
    assert vm_actions <= {n.action for n in perms.vm_needs(REGION, ACCOUNT, "b", "p")}


# ---------------------------------------------------------------- the launcher, against moto

def kind(resource: str) -> str:
    """'arn:aws:ec2:r:a:instance/i-1' -> 'ec2:instance'; an S3 object -> 's3:object'; '*' -> '*'."""
    if resource == "*":
        return "*"
    parts = resource.split(":", 5)
    if parts[2] == "s3":
        return "s3:object" if "/" in parts[5] else "s3:bucket"
    return f"{parts[2]}:{parts[5].split('/')[0]}"


def test_every_call_the_launcher_makes_is_allowed_by_the_launcher_policy(aws, hook, make_job, monkeypatch):
    from click.testing import CliRunner

    from runner import launch as launcher
    from runner.cli import main

    subnet = aws.ec2.describe_subnets()["Subnets"][0]
    group = aws.ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    monkeypatch.setenv("RUNNER_AWS_SUBNETS", subnet["SubnetId"])
    monkeypatch.setenv("RUNNER_AWS_SECURITY_GROUP", group)
    answer_simulator(hook, aws.bucket)
    calls: list = []
    aws_iam.recorder(hook, calls)

    d = make_job({"name": "pol", "command": "sleep 600", "spot": True, "outputs": {"out": None}, "max_cost": 5})
    p = launcher.plan(d, {"spot_fallback": True}, cloud="aws")
    p.summary()
    spot = launcher.launch(p)
    on_demand = launcher.launch(launcher.plan(d, {"spot": False}, cloud="aws"))
    cli = CliRunner()
    for args in (["status"], ["status", spot.job_id], ["logs", spot.job_id], ["cancel", spot.job_id],
                 ["gc", "--cloud", "aws", "--yes"], ["outputs", on_demand.job_id, str(make_job({}, name="dest"))],
                 ["doctor", "--cloud", "aws"]):
        cli.invoke(main, args, catch_exceptions=False)
    assert {op for _, op, _ in calls} >= {"RunInstances", "DescribeSpotPriceHistory", "TerminateInstances", "GetConsoleOutput",
                                          "PutObject", "GetObject", "ListObjectsV2", "SimulatePrincipalPolicy"}

    launcher_policy = policies(aws.bucket).launcher
    needed = set()
    for service, op, params in calls:
        for action, resource, ctx in aws_iam.needs(service, op, params, REGION, ACCOUNT):
            assert aws_iam.decide(launcher_policy, action, resource, ctx) == "allowed", f"{service} {op}: {action} on {resource}"
            needed.add((action, kind(resource)))
    # and `runner doctor` checks each of them
    doctor = {(n.action, kind(n.resource)) for n in perms.launcher_needs(REGION, ACCOUNT, aws.bucket, "runner", VM_ROLE)}
    assert needed - {("iam:GetInstanceProfile", "iam:instance-profile"), ("iam:SimulatePrincipalPolicy", "iam:role"),
                     ("iam:SimulatePrincipalPolicy", "iam:user")} <= doctor


def test_every_call_a_fan_out_makes_from_the_launcher_is_allowed_by_the_launcher_policy(aws, hook, make_job, monkeypatch):
    from click.testing import CliRunner

    from runner import jobs
    from runner.cli import main
    from runner.fanout import ids
    from runner.store import open_store

    subnet = aws.ec2.describe_subnets()["Subnets"][0]
    monkeypatch.setenv("RUNNER_AWS_SUBNETS", subnet["SubnetId"])
    monkeypatch.setenv("RUNNER_AWS_SECURITY_GROUP", aws.ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"])
    for name in ("yellow_tripdata_2012-01.csv", "yellow_tripdata_2012-02.csv", "yellow_tripdata_2012-03.csv", "notes.txt"):
        aws.s3.put_object(Bucket=aws.bucket, Key=f"runner/data/trips/{name}", Body=b"x" * 100)
    d = make_job({"name": "fan", "command": "true", "items": {"over": "data/trips/", "match": "yellow_*"}, "vms": 2,
                  "reduce": {"command": "true", "outputs": {"total.csv": None}}})
    calls: list = []
    aws_iam.recorder(hook, calls)
    cli = CliRunner()
    launched = cli.invoke(main, ["launch", str(d), "--cloud", "aws", "--json"], catch_exceptions=False)
    assert launched.exit_code == 0, launched.output
    parent = json.loads(launched.stdout)["job_id"]
    store = open_store(aws.env["RUNNER_STORE"])
    name = "yellow_tripdata_2012-01.csv"
    store.put_bytes(jobs.job_key(parent, "items", name, "done"), b"")  # as a shard's VM would
    store.put_bytes(jobs.job_key(parent, "items", name, "log"), b"counted\n")
    store.put_bytes(jobs.job_key(parent, "items", name, "result", "counts.csv"), b"1,2\n")
    for args in (["status", parent, "--items"], ["status", parent, "--json"], ["logs", parent, "--item", name],
                 ["logs", parent, "--shard", "0"], ["cancel", parent], ["retry", parent, "--vms", "1"],
                 ["outputs", parent, str(make_job({}, name="dest"))]):
        r = cli.invoke(main, args, catch_exceptions=False)
        assert r.exit_code == 0, (args, r.output)
    puts = [params["Key"] for _, op, params in calls if op == "PutObject"]
    written = {k.removeprefix(f"runner/jobs/{parent}/") for k in puts if k.startswith(f"runner/jobs/{parent}/")}
    assert {"job.json", "code.tar.gz", "manifest.jsonl", "items.sh", "status.json", "shards/0", "shards/1",
            "shards/2"} <= written
    shards = {k.removeprefix("runner/jobs/") for k in puts if k.startswith("runner/jobs/fan--s")}
    assert f"{ids.shard_id(parent, 2)}/items.tsv" in shards

    launcher_policy = policies(aws.bucket).launcher
    for service, op, params in calls:
        for action, resource, ctx in aws_iam.needs(service, op, params, REGION, ACCOUNT):
            assert aws_iam.decide(launcher_policy, action, resource, ctx) == "allowed", f"{service} {op}: {action} on {resource}"
    vm = policies(aws.bucket).vm
    ours = {"status.json"} | {k for k in written if k.startswith("items/")}  # the derived state; this test's items
    for key in {f"{parent}/{k}" for k in written - ours} | {k for k in shards if not k.endswith("/status.json")}:
        assert aws_iam.decide(vm, "s3:PutObject", f"arn:aws:s3:::{aws.bucket}/runner/jobs/{key}") == "implicitDeny", key


# ---------------------------------------------------------------- runner doctor

LAUNCHER = f"arn:aws:iam::{ACCOUNT}:role/runner-launcher"
VM_ROLE = f"arn:aws:iam::{ACCOUNT}:role/runner-vm-role"


def answer_simulator(hook, bucket: str, launcher: dict | None = None, vm: dict | None = None) -> list:
    """GetCallerIdentity says a CI role's session; the simulator answers from the policy files (or these)."""
    p = policies(bucket)
    caller = {"UserId": "AROAEXAMPLE:ci", "Account": ACCOUNT, "Arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/runner-launcher/ci"}
    hook("before-call.sts.GetCallerIdentity", lambda **_: (SimpleNamespace(status_code=200, headers={}), caller))
    asked: list = []
    aws_iam.simulator(hook, {LAUNCHER: launcher or p.launcher, VM_ROLE: vm or p.vm}, asked)
    return asked


def doctor_rows() -> dict[str, tuple[bool, str]]:
    from runner.providers.aws import AwsProvider

    return {what: (ok, detail) for ok, what, detail in AwsProvider().doctor()}


def test_doctor_asks_the_simulator_for_the_caller_role_and_the_vm_role(aws, hook):
    asked = answer_simulator(hook, aws.bucket)
    rows = doctor_rows()
    assert rows["permissions"][0] and rows["vm permissions"][0], rows
    assert f"{LAUNCHER}: all " in rows["permissions"][1] and "writes denied" in rows["vm permissions"][1]
    assert {a["PolicySourceArn"] for a in asked} == {LAUNCHER, VM_ROLE}
    assert all(r[0] for r in rows.values()), rows


def test_doctor_names_the_missing_spot_permission(aws, hook):
    old = copy.deepcopy(policies(aws.bucket).launcher)  # the launcher policy as docs/aws.md gave it before
    for st in old["Statement"]:
        if st["Sid"] == "LaunchFromTheseResources":
            st["Resource"] = [r for r in st["Resource"] if "spot-instances-request" not in r]
    answer_simulator(hook, aws.bucket, launcher=old)
    ok, detail = doctor_rows()["permissions"]
    assert not ok
    assert f"ec2:RunInstances on arn:aws:ec2:{REGION}:{ACCOUNT}:spot-instances-request/* (--spot) is implicitDeny" in detail
    assert "docs/policies/aws-launcher.json" in detail and "ec2:TerminateInstances" not in detail


def test_doctor_names_a_missing_secret_permission_and_a_too_broad_vm_role(aws, hook):
    vm = copy.deepcopy(policies(aws.bucket).vm)
    vm["Statement"] = [st for st in vm["Statement"] if st["Sid"] != "SecretsByName"]
    for st in vm["Statement"]:
        if st["Sid"] == "WriteStatusLogsOutputsCheckpoints":
            st["Resource"] = f"arn:aws:s3:::{aws.bucket}/runner/jobs/*"  # as docs/aws.md had it
    answer_simulator(hook, aws.bucket, vm=vm)
    rows = doctor_rows()
    assert rows["permissions"][0]
    ok, detail = rows["vm permissions"]
    assert not ok
    assert "ssm:GetParameter on" in detail and "(aws-ssm: secrets) is implicitDeny" in detail
    assert f"s3:PutObject on arn:aws:s3:::{aws.bucket}/runner/jobs/{perms.JOB}/job.json" in detail
    assert "may write what only the launcher writes" in detail


def test_principal_behind_the_caller():
    assert perms.principal_arn(f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-role/session-1") == f"arn:aws:iam::{ACCOUNT}:role/ci-role"
    assert perms.principal_arn(f"arn:aws:iam::{ACCOUNT}:user/team/me") == f"arn:aws:iam::{ACCOUNT}:user/team/me"
    assert perms.principal_arn(f"arn:aws:iam::{ACCOUNT}:root") is None
    assert perms.principal_arn("arn:aws:iam::123:user/x\n") is None


def test_the_doctors_store_check_passes_under_a_list_grant_limited_by_prefix(aws, hook):
    from runner import config
    from runner.providers import aws_doctor
    from runner.providers.aws import AwsProvider

    limited = copy.deepcopy(policies(aws.bucket).launcher)  # ListBucket only under the store's prefix
    for st in limited["Statement"]:
        if st["Sid"] == "StoreList":
            st["Condition"] = {"StringLike": {"s3:prefix": ["runner/*", "runner/"]}}
    calls: list = []
    aws_iam.recorder(hook, calls)
    p = AwsProvider()
    ok, _, detail = aws_doctor._store(p, p.load_settings())
    assert ok and config.store_uri() in detail
    assert calls and all(aws_iam.decide(limited, a, r, ctx) == "allowed"
                         for service, op, params in calls for a, r, ctx in aws_iam.needs(service, op, params, REGION, ACCOUNT))
