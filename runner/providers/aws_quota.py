"""The account's EC2 vCPU quota, checked before a fan-out starts its VMs (Service Quotas, read-only).

EC2 counts running vCPUs per region against one quota per group of instance families and market
(the Service Quotas codes below, from the EC2 docs "On-Demand Instance quotas" and "Spot Instance
quotas"). The check compares the quota with what the run needs (VMs x the type's vCPUs from
DescribeInstanceTypes); the vCPUs already running in the region are not subtracted (Service Quotas
does not say them), so a run that passes here may still meet VcpuLimitExceeded at launch.
A quota the launcher may not read (AccessDenied) is a warning, never a refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.errors import AuthError, QuotaError, RunnerError

STANDARD = "Standard (A, C, D, H, I, M, R, T, Z)"
# family group -> {market: (quota code, quota name)}; a group without a spot quota has no spot market
QUOTAS: dict[str, dict[str, tuple[str, str]]] = {
    "standard": {"on-demand": ("L-1216C47A", f"Running On-Demand {STANDARD} instances"),
                 "spot": ("L-34B43A08", f"All {STANDARD} Spot Instance Requests")},
    "g": {"on-demand": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
          "spot": ("L-3819A6DF", "All G and VT Spot Instance Requests")},
    "p": {"on-demand": ("L-417A185B", "Running On-Demand P instances"), "spot": ("L-7212CCBC", "All P Spot Instance Requests")},
    "x": {"on-demand": ("L-7295265B", "Running On-Demand X instances"), "spot": ("L-E3A00192", "All X Spot Instance Requests")},
    "f": {"on-demand": ("L-74FC7D96", "Running On-Demand F instances"), "spot": ("L-88CF9481", "All F Spot Instance Requests")},
    "inf": {"on-demand": ("L-1945791B", "Running On-Demand Inf instances"), "spot": ("L-B5D1601B", "All Inf Spot Instance Requests")},
    "dl": {"on-demand": ("L-6E869C2A", "Running On-Demand DL instances"), "spot": ("L-85EED4F7", "All DL Spot Instance Requests")},
    "trn": {"on-demand": ("L-2C3B7624", "Running On-Demand Trn instances"), "spot": ("L-6B0D517C", "All Trn Spot Instance Requests")},
    "hpc": {"on-demand": ("L-F7808C92", "Running On-Demand HPC instances")},
    "u": {"on-demand": ("L-43DA4232", "Running On-Demand High Memory instances")},
}
GROUPS = {"g": "g", "gr": "g", "vt": "g", "p": "p", "x": "x", "f": "f", "inf": "inf", "dl": "dl", "trn": "trn", "hpc": "hpc", "u": "u"}
LETTERS_RE = re.compile(r"^([a-z]+)(?=\d|-)")


@dataclass(frozen=True)
class Quota:
    """One vCPU quota as read: what it is called, its limit (None: unread, `why`) and what already uses it."""

    name: str
    limit: float | None
    used: float = 0.0
    why: str = ""
    fix: str = ""  # how to ask for more


def group(instance_type: str) -> str | None:
    """The quota group of an EC2 type: 'c6i.large' -> 'standard', 'g5.xlarge' -> 'g', 'u-6tb1.metal' -> 'u'; None if unknown."""
    m = LETTERS_RE.match(instance_type.partition(".")[0])
    if not m:
        return None
    letters = m[1]
    if letters in GROUPS:
        return GROUPS[letters]
    if letters == "mac":
        return None  # Mac instances run on Dedicated Hosts: no vCPU quota
    return "standard" if letters[0] in "acdhimrtz" else None


def quota_code(instance_type: str, market: str) -> tuple[str, str] | None:
    """(Service Quotas code, name) of the type's vCPU quota in `market` ('spot' or 'on-demand'); None if none is known."""
    g = group(instance_type)
    return QUOTAS.get(g, {}).get(market) if g else None


def markets(spot: bool, fallback: bool) -> list[str]:
    """The markets a launch may use, in order: a spot run with fallback may place the rest on-demand."""
    return ["spot", "on-demand"] if spot and fallback else ["spot"] if spot else ["on-demand"]


def verdict(vms: int, vcpus: int, quotas: list[Quota], where: str) -> dict:
    """What `--dry-run` shows of the check; QuotaError when the run cannot fit (naming each quota and the VMs that fit)."""
    need = f"{vms} VM(s) x {vcpus} vCPUs = {vms * vcpus} vCPUs"
    read = [q for q in quotas if q.limit is not None]
    fit = sum(max(0, int((q.limit - q.used) // vcpus)) for q in read)
    said = "; ".join(_say(q) for q in read)
    if fit >= vms:
        return {"quota": f"fits: the run needs {need}; {said}{where}", "quota_fits": True, "quota_vms_that_fit": fit}
    unread = [q for q in quotas if q.limit is None]
    if unread:
        why = "; ".join(f"{q.name}: {q.why}" for q in unread)
        return {"quota": f"not checked: {why}" + (f" ({said})" if said else ""), "quota_fits": None, "quota_vms_that_fit": None}
    fits = f"{fit} VM(s) would fit: launch with --vms {fit}" if fit else "no VM fits"
    fixes = "; ".join(q.fix for q in read if q.fix)
    raise QuotaError(f"the run needs {need}, more than {said}{where}: {fits}, or ask for a higher quota ({fixes})")


def _say(q: Quota) -> str:
    used = f", {q.used:g} in use" if q.used else ""
    return f"{q.name} is {q.limit:g} vCPUs{used}"


def vcpus_of(provider, region: str, instance_type: str) -> int:
    """The type's default vCPUs (EC2 DescribeInstanceTypes; the answer is checked)."""
    from runner.providers.aws_errors import call

    ec2 = provider.client("ec2", region)
    found = call(f"EC2 DescribeInstanceTypes {instance_type} ({region})", ec2.describe_instance_types,
                 InstanceTypes=[instance_type]).get("InstanceTypes") or []
    n = ((found[0] if found else {}).get("VCpuInfo") or {}).get("DefaultVCpus")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 4096:
        raise RunnerError(f"EC2 DescribeInstanceTypes gave no vCPU count for {instance_type} in {region}")
    return n


def read_quota(provider, region: str, code: str, name: str) -> Quota:
    """One quota's applied value (Service Quotas GetServiceQuota); unread (with why) when it cannot be asked."""
    from runner.providers.aws_errors import call

    label = f"EC2 quota {code} \"{name}\" in {region}"
    fix = f"aws service-quotas request-service-quota-increase --region {region} --service-code ec2 --quota-code {code} --desired-value N"
    client = provider.client("service-quotas", region)
    try:
        value = call(f"Service Quotas GetServiceQuota ec2/{code} ({region})", client.get_service_quota,
                     ServiceCode="ec2", QuotaCode=code)["Quota"].get("Value")
    except AuthError as e:
        return Quota(label, None, why=f"not allowed to read it ({e}); grant servicequotas:GetServiceQuota (docs/policies/aws-launcher.json)")
    except RunnerError as e:
        return Quota(label, None, why=str(e))
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        return Quota(label, None, why=f"Service Quotas answered {str(value)[:40]!r}, not a number of vCPUs")
    return Quota(label, float(value), fix=fix)


def check(provider, req, vms: int) -> dict:
    """Whether `vms` VMs of req's type fit the account's vCPU quota of its market(s) in the region; see verdict()."""
    cfg = provider.load_settings(req)
    fallback = cfg.spot_fallback if req.spot_fallback is None else req.spot_fallback
    wanted = markets(req.spot, fallback)
    known = [(m, c) for m in wanted if (c := quota_code(req.instance_type, m))]
    if not known:
        return {"quota": f"not checked: no EC2 vCPU quota is known for {req.instance_type} ({' or '.join(wanted)})", "quota_fits": None,
                "quota_vms_that_fit": None}
    try:
        vcpus = vcpus_of(provider, cfg.region, req.instance_type)
    except RunnerError as e:
        return {"quota": f"not checked: {e}", "quota_fits": None, "quota_vms_that_fit": None}
    quotas = [read_quota(provider, cfg.region, code, name) for _, (code, name) in known]
    return verdict(vms, vcpus, quotas, " (vCPUs already running in the region are not counted)")
