"""The IAM permissions behind every Google API call runner makes, and `runner doctor`'s check of them.

CALLS maps each REST call (method, path under /compute/v1/projects/P/) to the permissions GCE checks
for it; the policy files in docs/policies/ are tested against this table and the calls the code makes.
"""

from __future__ import annotations

import re

RESOURCE_MANAGER = "https://cloudresourcemanager.googleapis.com"

# instances.insert checks one permission per part of the body it is given (docs: "Create a VM: required roles")
INSERT = ("compute.instances.create", "compute.disks.create", "compute.images.useReadOnly", "compute.subnetworks.use",
          "compute.instances.setMetadata", "compute.instances.setLabels", "compute.disks.setLabels",
          "compute.instances.setServiceAccount", "iam.serviceAccounts.actAs",
          "compute.instances.setTags")  # a cluster node's network tag
CALLS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("POST", r"zones/[^/]+/instances", INSERT),
    ("POST", r"zones/[^/]+/instances/bulkInsert", INSERT),  # a fan-out's VMs, a zone at a time
    ("GET", r"zones/[^/]+/instances", ("compute.instances.list",)),
    ("POST", r"zones/[^/]+/instances/[^/]+/setLabels", ("compute.instances.setLabels",)),
    ("GET", r"zones/[^/]+/instances/[^/]+", ("compute.instances.get",)),
    ("DELETE", r"zones/[^/]+/instances/[^/]+", ("compute.instances.delete",)),
    ("GET", r"zones/[^/]+/instances/[^/]+/serialPort", ("compute.instances.getSerialPortOutput",)),
    ("GET", r"aggregated/instances", ("compute.instances.list",)),
    ("POST", r"zones/[^/]+/operations/[^/]+/wait", ("compute.zoneOperations.get",)),
    ("GET", r"zones/[^/]+/operations", ("compute.zoneOperations.list",)),
    ("GET", r"zones", ("compute.zones.list",)),
    ("GET", r"zones/[^/]+", ("compute.zones.get",)),
    ("GET", r"global/images/family/[^/]+", ("compute.images.getFromFamily",)),
    ("GET", r"global/images/[^/]+", ("compute.images.get",)),
    ("GET", r"regions/[^/]+/subnetworks/[^/]+", ("compute.subnetworks.get",)),
    ("GET", r"regions/[^/]+/routers", ("compute.routers.list",)),
    ("GET", r"regions/[^/]+", ("compute.regions.get",)),  # a fan-out's check of the regional vCPU quotas
    ("GET", r"global/firewalls/[^/]+", ("compute.firewalls.get",)),  # a cluster's firewall rule, checked
    ("POST", r"global/firewalls", ("compute.firewalls.create", "compute.networks.updatePolicy")),  # and made when missing
)
EXTERNAL_IP = ("compute.subnetworks.useExternalIp",)  # only when VMs get an external IP
CALL_RE = re.compile(r"/compute/v1/projects/[^/]+/(?P<rest>.+)\Z")


def permissions_for(method: str, path: str) -> tuple[str, ...]:
    """The permissions of one Compute REST call; KeyError for a call the table does not know."""
    m = CALL_RE.match(path)
    if m:
        for verb, pattern, perms in CALLS:
            if verb == method and re.fullmatch(pattern, m["rest"]):
                return perms
    raise KeyError(f"{method} {path}")


def launcher_permissions(external_ip: bool) -> list[str]:
    """Every permission the launcher's calls need, for the chosen features; `actAs` aside (see missing())."""
    perms = {p for _, _, ps in CALLS for p in ps} | (set(EXTERNAL_IP) if external_ip else set())
    return sorted(perms - {"iam.serviceAccounts.actAs"})


def missing(provider, cfg, project: str) -> list[str]:
    """The launcher permissions the credentials lack on the project (projects.testIamPermissions)."""
    from google.auth.transport.requests import AuthorizedSession

    from runner.providers.gcp import call

    wanted = launcher_permissions(cfg.external_ip)
    url = f"{(cfg.resource_manager_endpoint or RESOURCE_MANAGER).rstrip('/')}/v1/projects/{project}:testIamPermissions"
    session = AuthorizedSession(provider.credentials()[0])

    def ask() -> set[str]:
        r = session.post(url, json={"permissions": wanted}, timeout=30)
        r.raise_for_status()
        return set(r.json().get("permissions") or ())

    granted = call(f"projects.testIamPermissions ({project})", ask)
    return [p for p in wanted if p not in granted]
