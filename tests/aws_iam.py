"""A small IAM evaluator over the policy files in docs/policies, the IAM actions each AWS API call needs,
and a stand-in for IAM's policy simulator (moto does not implement SimulatePrincipalPolicy)."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace

POLICIES = Path(__file__).resolve().parent.parent / "docs" / "policies"
Need = tuple[str, str, Mapping[str, str]]  # (IAM action, resource ARN, condition context)


def load(name: str, region: str, account: str, bucket: str, prefix: str = "runner") -> dict:
    """A policy file with its placeholders filled in, as a user would before attaching it."""
    text = (POLICIES / name).read_text()
    for old, new in (("REGION", region), ("ACCOUNT", account), ("my-bucket", bucket), (":::" + bucket + "/runner/", f":::{bucket}/{prefix}/")):
        text = text.replace(old, new)
    return json.loads(text)


def _list(v) -> list:
    return v if isinstance(v, list) else [v]


def _like(pattern: str, value: str, ctx: Mapping[str, str]) -> bool:
    """IAM's wildcard match: * any run (across '/' and ':'), ? one character; ${var} from the context."""
    pattern = re.sub(r"\$\{([^}]+)\}", lambda m: ctx.get(m[1], "\0unresolved"), pattern)
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _conditions(cond: Mapping, ctx: Mapping[str, str]) -> bool:
    for op, tests in cond.items():
        for key, wanted in tests.items():
            got = ctx.get(key)
            if got is None:
                return False
            if op == "StringEquals" and got not in _list(wanted):
                return False
            if op == "StringLike" and not any(_like(w, got, ctx) for w in _list(wanted)):
                return False
            if op not in ("StringEquals", "StringLike"):
                raise AssertionError(f"the evaluator does not know condition operator {op}")
    return True


def decide(policy: Mapping, action: str, resource: str, ctx: Mapping[str, str] | None = None) -> str:
    """'allowed', 'explicitDeny' or 'implicitDeny', as IAM evaluates one identity policy."""
    ctx = ctx or {}
    allowed = False
    for st in policy["Statement"]:
        if not any(_like(a.lower(), action.lower(), ctx) for a in _list(st["Action"])):
            continue
        if not any(_like(r, resource, ctx) for r in _list(st["Resource"])):
            continue
        if not _conditions(st.get("Condition") or {}, ctx):
            continue
        if st["Effect"] == "Deny":
            return "explicitDeny"
        allowed = True
    return "allowed" if allowed else "implicitDeny"


def needs(service: str, op: str, params: Mapping, region: str, account: str, job_tag: str = "any") -> list[Need]:
    """The IAM actions (on which resources, with which context) one API call of the launcher needs.

    An operation missing here fails the policy test: add it here, and to the policy if it needs a permission.
    """
    ec2 = f"arn:aws:ec2:{region}:{account}"
    s3 = "arn:aws:s3:::" + str(params.get("Bucket", ""))
    key = f"{s3}/{params.get('Key', '')}"
    tagged = {"aws:ResourceTag/runner-job": job_tag}
    table: dict[tuple[str, str], list[Need]] = {
        ("sts", "GetCallerIdentity"): [],  # needs no permission
        ("ec2", "DescribeInstances"): [("ec2:DescribeInstances", "*", {})],
        ("ec2", "DescribeImages"): [("ec2:DescribeImages", "*", {})],
        ("ec2", "DescribeSubnets"): [("ec2:DescribeSubnets", "*", {})],
        ("ec2", "DescribeSecurityGroups"): [("ec2:DescribeSecurityGroups", "*", {})],
        ("ec2", "DescribeSpotPriceHistory"): [("ec2:DescribeSpotPriceHistory", "*", {})],
        ("ec2", "DescribeInstanceTypes"): [("ec2:DescribeInstanceTypes", "*", {})],
        ("ec2", "DescribeVpcs"): [("ec2:DescribeVpcs", "*", {})],
        ("ec2", "CreateSecurityGroup"): [  # a cluster's group, tagged at creation
            ("ec2:CreateSecurityGroup", f"{ec2}:vpc/{params.get('VpcId')}", {}),
            ("ec2:CreateSecurityGroup", f"{ec2}:security-group/*",
             {f"aws:RequestTag/{t['Key']}": t["Value"] for s in params.get("TagSpecifications", []) for t in s["Tags"]}),
            ("ec2:CreateTags", f"{ec2}:security-group/*", {"ec2:CreateAction": "CreateSecurityGroup"})],
        ("ec2", "AuthorizeSecurityGroupIngress"): [
            ("ec2:AuthorizeSecurityGroupIngress", f"{ec2}:security-group/{params.get('GroupId')}", {"aws:ResourceTag/runner-network": "runner-cluster"})],
        ("service-quotas", "GetServiceQuota"): [
            ("servicequotas:GetServiceQuota", f"arn:aws:servicequotas:{region}:{account}:{params.get('ServiceCode')}/{params.get('QuotaCode')}", {})],
        ("ec2", "TerminateInstances"): [("ec2:TerminateInstances", f"{ec2}:instance/{i}", tagged) for i in params.get("InstanceIds", [])],
        ("ec2", "CreateTags"): [("ec2:CreateTags", f"{ec2}:instance/{i}", {"aws:ResourceTag/runner-fanout": job_tag})
                                for i in params.get("Resources", [])],  # a fan-out's VM, tagged with its shard after launch
        ("ec2", "GetConsoleOutput"): [("ec2:GetConsoleOutput", f"{ec2}:instance/{params.get('InstanceId')}", tagged)],
        ("iam", "GetInstanceProfile"): [("iam:GetInstanceProfile", f"arn:aws:iam::{account}:instance-profile/{params.get('InstanceProfileName')}", {})],
        ("iam", "SimulatePrincipalPolicy"): [("iam:SimulatePrincipalPolicy", str(params.get("PolicySourceArn")), {"aws:username": "me"})],
        ("pricing", "GetProducts"): [("pricing:GetProducts", "*", {})],
        ("s3", "HeadBucket"): [("s3:ListBucket", s3, {})],
        ("s3", "ListObjectsV2"): [("s3:ListBucket", s3, {"s3:prefix": str(params.get("Prefix", ""))})],
        ("s3", "ListObjects"): [("s3:ListBucket", s3, {"s3:prefix": str(params.get("Prefix", ""))})],
        ("s3", "GetObject"): [("s3:GetObject", key, {})],
        ("s3", "HeadObject"): [("s3:GetObject", key, {})],
        ("s3", "PutObject"): [("s3:PutObject", key, {})],
        ("s3", "CreateMultipartUpload"): [("s3:PutObject", key, {})],
        ("s3", "UploadPart"): [("s3:PutObject", key, {})],
        ("s3", "CompleteMultipartUpload"): [("s3:PutObject", key, {})],
        ("s3", "AbortMultipartUpload"): [("s3:AbortMultipartUpload", key, {})],
        ("ssm", "GetParameter"): [("ssm:GetParameter", f"arn:aws:ssm:{region}:{account}:parameter{params.get('Name')}", {})],
    }
    if (service, op) == ("ec2", "RunInstances"):
        return run_instances_needs(params, ec2, region, account)
    if (service, op) not in table:
        raise AssertionError(f"{service} {op}: which IAM permission does it need? Add it to tests/aws_iam.py and the policy")
    return table[(service, op)]


def run_instances_needs(params: Mapping, ec2: str, region: str, account: str) -> list[Need]:
    """RunInstances is authorized per resource it touches or creates (and tags, and the role it passes)."""
    tags = {t["Key"]: t["Value"] for spec in params.get("TagSpecifications", []) for t in spec["Tags"]}
    request_tags = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    out: list[Need] = [
        ("ec2:RunInstances", f"{ec2}:instance/*", request_tags),
        ("ec2:RunInstances", f"{ec2}:volume/*", request_tags),
        ("ec2:RunInstances", f"arn:aws:ec2:{region}::image/{params['ImageId']}", {}),
        ("ec2:RunInstances", f"{ec2}:subnet/{params.get('SubnetId', 'subnet-default')}", {}),
        ("ec2:RunInstances", f"{ec2}:network-interface/*", {}),
        ("ec2:RunInstances", f"{ec2}:security-group/{(params.get('SecurityGroupIds') or ['sg-default'])[0]}", {}),
        ("ec2:CreateTags", f"{ec2}:instance/*", {"ec2:CreateAction": "RunInstances"}),
        ("ec2:CreateTags", f"{ec2}:volume/*", {"ec2:CreateAction": "RunInstances"}),
    ]
    if "InstanceMarketOptions" in params:
        out.append(("ec2:RunInstances", f"{ec2}:spot-instances-request/*", {}))
    if "IamInstanceProfile" in params:
        out.append(("iam:PassRole", f"arn:aws:iam::{account}:role/runner-vm-role", {"iam:PassedToService": "ec2.amazonaws.com"}))
    return out


def recorder(hook, calls: list) -> None:
    """Record (service, operation, params) of every AWS API call made through boto3's default session."""

    def record(params, model, **_):
        calls.append((model.service_model.service_name if hasattr(model, "service_model") else "", model.name, dict(params)))

    hook("before-parameter-build", record)


def simulator(hook, policies: Mapping[str, Mapping], asked: list | None = None):
    """Answer iam:SimulatePrincipalPolicy from these policies ({principal ARN: policy}), as IAM would."""
    pending: dict = {}

    def build(params, **_):
        pending.update(params)

    def answer(**_):
        p = dict(pending)
        if asked is not None:
            asked.append(p)
        ctx = {e["ContextKeyName"]: e["ContextKeyValues"][0] for e in p.get("ContextEntries", [])}
        policy = policies.get(p["PolicySourceArn"])
        if policy is None:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "NoSuchEntity", "Message": f"{p['PolicySourceArn']} not found"}}, "SimulatePrincipalPolicy")
        results = [{"EvalActionName": a, "EvalResourceName": r, "EvalDecision": decide(policy, a, r, ctx)}
                   for a in p["ActionNames"] for r in p.get("ResourceArns") or ["*"]]
        return SimpleNamespace(status_code=200, headers={}), {"EvaluationResults": results, "IsTruncated": False}

    hook("before-parameter-build.iam.SimulatePrincipalPolicy", build)
    hook("before-call.iam.SimulatePrincipalPolicy", answer)
