"""Can a VM without an external IP reach Google's APIs (the store, the image's tools)?

Only through Private Google Access on its subnet, or Cloud NAT on the subnet's network in its region.
Without either the VM reaches nothing and its job hangs until the cloud-side deadline, so launch and
`runner doctor` ask GCE (subnetworks.get, routers.list) and say which gcloud command fixes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from runner.errors import AuthError, NotFoundError, SpecError

SUBNET_PATH = re.compile(r"(?:.*/)?projects/(?P<project>[^/]+)/regions/(?P<region>[^/]+)/subnetworks/(?P<name>[^/]+)\Z")
REGION_PATH = re.compile(r"regions/(?P<region>[^/]+)/subnetworks/(?P<name>[^/]+)\Z")
ALL_SUBNETS = ("ALL_SUBNETWORKS_ALL_IP_RANGES", "ALL_SUBNETWORKS_ALL_PRIMARY_IP_RANGES")


def subnet_ref(subnetwork: str, network: str, project: str, region: str) -> tuple[str, str, str]:
    """(project, region, name) of the subnet a VM in `region` joins: the configured one, else the network's own."""
    if subnetwork:
        m = SUBNET_PATH.match(subnetwork)
        if m:
            return m["project"], m["region"], m["name"]
        m = REGION_PATH.match(subnetwork)
        if m:
            return project, m["region"], m["name"]
        return project, region, subnetwork
    return project, region, (network or "default").rsplit("/", 1)[-1]  # an auto-mode network's subnets bear its name


def nat_covers(routers: Iterable[Mapping], network_link: str, subnet_name: str) -> bool:
    """Whether a Cloud NAT on one of the region's routers serves the subnet (routers as compute_v1 dicts)."""
    net = network_link.rsplit("/", 1)[-1]
    for router in routers:
        if str(router.get("network", "")).rsplit("/", 1)[-1] != net:
            continue
        for nat in router.get("nats") or ():
            if nat.get("source_subnetwork_ip_ranges_to_nat") in ALL_SUBNETS:
                return True
            if any(str(s.get("name", "")).rsplit("/", 1)[-1] == subnet_name for s in nat.get("subnetworks") or ()):
                return True
    return False


def fix_command(project: str, region: str, name: str) -> str:
    return f"gcloud compute networks subnets update {name} --region={region} --project={project} --enable-private-ip-google-access"


def problem(project: str, region: str, name: str) -> str:
    """What is wrong and what to do, for a subnet with neither Private Google Access nor Cloud NAT."""
    return (f"subnet {name} ({region}, project {project}) has no Private Google Access and no Cloud NAT: a VM without an "
            f"external IP reaches neither the store nor Google's APIs, and its job would hang. Run `{fix_command(project, region, name)}` "
            "(or give VMs an external IP: RUNNER_GCP_EXTERNAL_IP=true, or a Cloud NAT for downloads from the internet; docs/gcp.md)")


def check_region(provider, cfg, project: str, region: str) -> str:
    """'' when VMs of `region` reach Google's APIs, or what is wrong; an unreadable subnet or router is no verdict ('')."""
    from runner.providers.gcp import call

    sub_project, sub_region, name = subnet_ref(cfg.subnetwork, cfg.network, project, region)
    try:
        subnet = call(f"GCE subnetworks.get {name} ({sub_region})", provider.client("SubnetworksClient").get,
                      project=sub_project, region=sub_region, subnetwork=name)
        if subnet.private_ip_google_access:
            return ""
        routers = call(f"GCE routers.list ({sub_region})", lambda: [type(r).to_dict(r) for r in provider.client("RoutersClient").list(
            project=sub_project, region=sub_region)])
    except (AuthError, NotFoundError):
        return ""  # no permission to look, or a subnet named otherwise: the insert reports its own errors
    return "" if nat_covers(routers, subnet.network, name) else problem(sub_project, sub_region, name)


def check_launch(provider, cfg, project: str, regions: Iterable[str]) -> None:
    """SpecError before any insert when the VM would have no way to Google's APIs."""
    if cfg.external_ip:
        return
    for region in sorted(set(regions)):
        found = check_region(provider, cfg, project, region)
        if found:
            raise SpecError(found)
