"""The IAM permissions each feature needs, asked of IAM's policy simulator for the launcher and the VM's role.

The policies that grant them are docs/policies/aws-launcher.json and docs/policies/aws-vm.json.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

LAUNCHER_POLICY = "docs/policies/aws-launcher.json"
VM_POLICY = "docs/policies/aws-vm.json"
JOB = "doctor-20000101T000000Z-000000"  # a job id for the resource names asked about; no such job exists


@dataclass(frozen=True)
class Need:
    """One action on one resource (with the request's condition keys) that a feature needs."""

    feature: str
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.action} on {self.resource} ({self.feature})"


def launcher_needs(region: str, account: str, bucket: str, prefix: str, vm_role_arn: str) -> list[Need]:
    """What the user or role that runs `runner` needs, per feature."""
    ec2, obj = f"arn:aws:ec2:{region}:{account}", f"arn:aws:s3:::{bucket}/{_join(prefix, 'jobs', JOB)}"
    tag, launch = {"aws:RequestTag/runner-job": JOB}, "every launch"
    return [
        Need(launch, "ec2:DescribeImages", "*"),
        Need(launch, "ec2:RunInstances", f"{ec2}:instance/*", tag),
        Need(launch, "ec2:RunInstances", f"{ec2}:volume/*", tag),
        Need(launch, "ec2:RunInstances", f"arn:aws:ec2:{region}::image/ami-00000000000000000"),
        Need(launch, "ec2:RunInstances", f"{ec2}:subnet/subnet-00000000000000000"),
        Need(launch, "ec2:RunInstances", f"{ec2}:network-interface/*"),
        Need(launch, "ec2:RunInstances", f"{ec2}:security-group/sg-00000000000000000"),
        Need(launch, "ec2:CreateTags", f"{ec2}:instance/*", {"ec2:CreateAction": "RunInstances"}),
        Need(launch, "ec2:CreateTags", f"{ec2}:volume/*", {"ec2:CreateAction": "RunInstances"}),
        Need(launch, "iam:PassRole", vm_role_arn, {"iam:PassedToService": "ec2.amazonaws.com"}),
        Need("--spot", "ec2:RunInstances", f"{ec2}:spot-instances-request/*"),
        Need("--spot", "ec2:DescribeSpotPriceHistory", "*"),
        Need("subnets, security group", "ec2:DescribeSubnets", "*"),
        Need("subnets, security group", "ec2:DescribeSecurityGroups", "*"),
        Need("status", "ec2:DescribeInstances", "*"),
        Need("cancel, gc", "ec2:TerminateInstances", f"{ec2}:instance/i-00000000000000000", {"aws:ResourceTag/runner-job": JOB}),
        Need("logs (the console)", "ec2:GetConsoleOutput", f"{ec2}:instance/i-00000000000000000", {"aws:ResourceTag/runner-job": JOB}),
        Need("the store", "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": _join(prefix, "jobs") + "/"}),
        Need("the store", "s3:GetObject", f"{obj}/status.json"),
        Need("the store", "s3:PutObject", f"{obj}/job.json"),
        Need("fan-out launch", "ec2:RunInstances", f"{ec2}:instance/*", {"aws:RequestTag/runner-fanout": JOB}),
        Need("fan-out launch", "ec2:RunInstances", f"{ec2}:volume/*", {"aws:RequestTag/runner-fanout": JOB}),
        Need("fan-out launch", "ec2:CreateTags", f"{ec2}:instance/i-00000000000000000", {"aws:ResourceTag/runner-fanout": JOB}),
        Need("fan-out launch", "ec2:TerminateInstances", f"{ec2}:instance/i-00000000000000000", {"aws:ResourceTag/runner-fanout": JOB}),
        Need("fan-out quota check", "ec2:DescribeInstanceTypes", "*"),
        Need("cluster jobs", "ec2:DescribeVpcs", "*"),
        Need("cluster jobs", "ec2:CreateSecurityGroup", f"{ec2}:vpc/vpc-00000000000000000"),
        Need("cluster jobs", "ec2:CreateSecurityGroup", f"{ec2}:security-group/*", {"aws:RequestTag/runner-network": "runner-cluster"}),
        Need("cluster jobs", "ec2:CreateTags", f"{ec2}:security-group/*", {"ec2:CreateAction": "CreateSecurityGroup"}),
        Need("cluster jobs", "ec2:AuthorizeSecurityGroupIngress", f"{ec2}:security-group/sg-00000000000000000",
             {"aws:ResourceTag/runner-network": "runner-cluster"}),
        Need("fan-out quota check", "servicequotas:GetServiceQuota", f"arn:aws:servicequotas:{region}:{account}:ec2/L-1216C47A"),
    ]


def vm_needs(region: str, account: str, bucket: str, prefix: str) -> list[Need]:
    """What the VM's role needs: its job's code and checkpoint, its status, logs and outputs, secrets by name."""
    obj = f"arn:aws:s3:::{bucket}/{_join(prefix, 'jobs', JOB)}"
    return [
        Need("the VM", "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": _join(prefix, "jobs", JOB, "checkpoint") + "/"}),
        Need("the VM", "s3:GetObject", f"{obj}/code.tar.gz"),
        Need("the VM", "s3:PutObject", f"{obj}/status.json"),
        Need("the VM", "s3:PutObject", f"{obj}/logs/1/job.log.000000"),
        Need("the VM", "s3:PutObject", f"{obj}/outputs/result.csv"),
        Need("the VM", "s3:PutObject", f"{obj}/checkpoint/state"),
        Need("the VM", "s3:AbortMultipartUpload", f"{obj}/outputs/result.csv"),
        Need("fan-out items", "s3:PutObject", f"{obj}/items/part-1.csv/result/counts.csv"),
        Need("fan-out items", "s3:PutObject", f"{obj}/items/part-1.csv/done"),
        Need("fan-out items", "s3:PutObject", f"{obj}/summary.json"),
        Need("fan-out reduce", "s3:PutObject", f"{obj}/reduce/lock"),
        Need("cluster jobs", "s3:PutObject", f"{obj}/head"),
        Need("cluster jobs", "s3:PutObject", f"{obj}/joined"),
        Need("aws-ssm: secrets", "ssm:GetParameter", f"arn:aws:ssm:{region}:{account}:parameter/runner/example"),
        Need("aws-ssm: secrets", "kms:Decrypt", f"arn:aws:kms:{region}:{account}:key/example", {"kms:ViaService": f"ssm.{region}.amazonaws.com"}),
    ]


def vm_forbidden(bucket: str, prefix: str) -> list[Need]:
    """What the VM's role must NOT be allowed: the launcher's own records of any job."""
    obj = f"arn:aws:s3:::{bucket}/{_join(prefix, 'jobs', JOB)}"
    return [Need("the launcher's records", "s3:PutObject", f"{obj}/{name}")
            for name in ("job.json", "user-data", "code.tar.gz", "cancel", "instance.json", "manifest.jsonl", "items.sh",
                         "items.tsv", "shards/0", "ray.sh", "nodes/0")]


def principal_arn(caller_arn: str) -> str | None:
    """The IAM user or role behind GetCallerIdentity's ARN (an assumed role's session -> its role); None for root and others."""
    m = re.fullmatch(r"arn:(aws[\w-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/[\w+=,.@-]+", caller_arn)
    if m:
        return f"arn:{m[1]}:iam::{m[2]}:role/{m[3]}"  # a role with a path: IAM knows it by its path, which this ARN lacks
    if re.fullmatch(r"arn:aws[\w-]*:iam::\d{12}:(user|role)/[\w+=,.@/-]+", caller_arn):
        return caller_arn
    return None


def decisions(iam, principal: str, needs: list[Need]) -> list[tuple[Need, str]]:
    """Each need with IAM's decision for `principal`: 'allowed', 'explicitDeny' or 'implicitDeny'."""
    out = []
    for need in needs:
        entries = [{"ContextKeyName": k, "ContextKeyValues": [v], "ContextKeyType": "string"} for k, v in need.context.items()]
        resp = iam.simulate_principal_policy(
            PolicySourceArn=principal, ActionNames=[need.action], ResourceArns=[need.resource], ContextEntries=entries,
        )
        found = [r["EvalDecision"] for r in resp.get("EvaluationResults", [])]
        out.append((need, found[0] if found else "implicitDeny"))
    return out


def verdict(principal: str, needed: list[tuple[Need, str]], forbidden: list[tuple[Need, str]], policy: str) -> tuple[bool, str]:
    """(ok, what to say): each denied need named with its feature, each forbidden grant named."""
    denied = [f"{n} is {d}" for n, d in needed if d != "allowed"]
    broad = [f"{n} is allowed" for n, d in forbidden if d == "allowed"]
    if not denied and not broad:
        return True, f"{principal}: all {len(needed)} actions allowed" + (f", {len(forbidden)} writes denied" if forbidden else "")
    parts = [f"{principal}: denied: " + "; ".join(denied) + f"; add the statements of {policy}"] if denied else []
    if broad:
        parts.append(f"{principal} may write what only the launcher writes: " + "; ".join(broad) + f"; use {policy} instead")
    return False, ". ".join(parts)


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))
