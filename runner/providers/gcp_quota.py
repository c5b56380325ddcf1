"""The project's regional GCE vCPU quotas, checked before a fan-out starts its VMs (regions.get, read-only).

A VM counts against its machine series' own regional quota where the region has one (N2_CPUS,
C2_CPUS, ...), else against CPUS; a spot VM counts against PREEMPTIBLE_CPUS when the project has
that quota (a limit above 0), else against the same as a standard VM. regions.get gives each
quota's limit and usage, so what already runs is subtracted. The project-wide CPUS_ALL_REGIONS is
not checked. A region the launcher may not read (403) is a warning, never a refusal.
"""

from __future__ import annotations

from runner.errors import AuthError, RunnerError
from runner.providers import gcp_prices
from runner.providers.aws_quota import Quota, verdict
from runner.providers.gcp_build import region_of

PREEMPTIBLE = "PREEMPTIBLE_CPUS"


def metric_for(machine_type: str, spot: bool, limits: dict[str, float]) -> str:
    """The quota metric a VM of `machine_type` counts against, given the region's quotas ({metric: limit})."""
    if spot and limits.get(PREEMPTIBLE, 0) > 0:
        return PREEMPTIBLE
    own = machine_type.split("-", 1)[0].upper() + "_CPUS"
    return own if own in limits else "CPUS"


def region_quotas(region) -> dict[str, tuple[float, float]]:
    """{metric: (limit, usage)} from a regions.get answer (untrusted: entries that are not numbers are left out)."""
    out = {}
    for q in getattr(region, "quotas", None) or ():
        metric, limit, usage = str(getattr(q, "metric", "") or ""), getattr(q, "limit", None), getattr(q, "usage", 0) or 0
        if metric.endswith("CPUS") and isinstance(limit, (int, float)) and isinstance(usage, (int, float)) and limit >= 0:
            out[metric] = (float(limit), float(usage))
    return out


def read_region(provider, project: str, region: str, machine_type: str, spot: bool) -> Quota:
    """The quota a VM of this type and market counts against in `region`; unread (with why) when it cannot be asked."""
    from runner.providers.gcp_api import call

    try:
        found = call(f"GCE regions.get {region} ({project})", provider.client("RegionsClient").get, project=project, region=region)
    except AuthError as e:
        return Quota(f"GCE quotas of {region}", None, why=f"not allowed to read them ({e}); grant compute.regions.get "
                                                           "(docs/policies/gcp-launcher-role.yaml)")
    except RunnerError as e:
        return Quota(f"GCE quotas of {region}", None, why=str(e))
    quotas = region_quotas(found)
    metric = metric_for(machine_type, spot, {m: lim for m, (lim, _) in quotas.items()})
    if metric not in quotas:
        return Quota(f"GCE quota {metric} in {region}", None, why=f"regions.get {region} lists no {metric} quota")
    limit, usage = quotas[metric]
    fix = f"raise {metric} in {region}: https://console.cloud.google.com/iam-admin/quotas?project={project}"
    return Quota(f"GCE quota {metric} in {region} (project {project})", limit, used=usage, fix=fix)


def check(provider, req, vms: int) -> dict:
    """Whether `vms` VMs of req's machine type fit the regional vCPU quotas of the zones the launch may use."""
    shape = gcp_prices.shape(req.instance_type)
    if shape is None:
        return {"quota": f"not checked: the vCPUs of {req.instance_type} are not known here", "quota_fits": None, "quota_vms_that_fit": None}
    try:
        project, zones = provider.project(), provider.zones_for(req)
    except RunnerError as e:
        return {"quota": f"not checked: {e}", "quota_fits": None, "quota_vms_that_fit": None}
    regions = list(dict.fromkeys(region_of(z) for z in zones))  # in the order the launch tries them
    quotas = [read_region(provider, project, r, req.instance_type, req.spot) for r in regions]
    return verdict(vms, shape[0], quotas, "")
