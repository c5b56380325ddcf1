"""GCE without the cloud: settings, launch request -> instances.insert body, GCE errors -> typed
errors, instance -> state. No Google import here, so all of it is unit-tested without one. The bodies
use the field names of google.cloud.compute_v1 (snake_case; the REST JSON is their camelCase).
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from runner import settings
from runner.errors import AuthError, CapacityError, NotFoundError, QuotaError, RunnerError, SpecError
from runner.providers import gcp_disks
from runner.providers.base import InstanceState, LaunchRequest
from runner.providers.gcp_families import on_host_maintenance

DEFAULT_TYPE = "e2-standard-4"
IMAGE_FAMILY = "runner"  # images/variables.pkr.hcl: image_family
API = "https://compute.googleapis.com"
# the cloud-side deadline: the in-VM failsafe powers off at max runtime + 10 min from the script's
# start; the VM boots for a minute or more before that, so the cloud's own DELETE comes 5 min later
DEADLINE_MARGIN = 15 * 60
# Access is decided by the VM's service account's IAM roles (docs/policies/gcp-vm-role.yaml): the store, the
# VM's own delete (shutdown-script below), Secret Manager for gcp-sm: secrets, which no narrower scope allows.
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
LABEL = "runner-job"
KEYS = ("project", "zones", "service_account", "network", "subnetwork", "external_ip", "spot_fallback", "endpoint",
        "resource_manager_endpoint")
TYPE_RE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]*[a-z0-9]\Z")  # e2-standard-4, n2-custom-4-16384
ZONE_RE = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z]\Z")
ALIVE = ("PROVISIONING", "STAGING", "RUNNING", "STOPPING", "SUSPENDING", "REPAIRING")
ARM_FAMILIES = ("t2a", "c4a", "n4a")

ZONE_CAPACITY = frozenset({
    "ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "STOCKOUT", "GPU_STOCKOUT",
    "RESOURCE_POOL_EXHAUSTED", "insufficientCapacity", "resourcePoolExhausted",
    "UNSUPPORTED_OPERATION",  # seen when a spot VM is preempted while it is being created
})
REGION_CAPACITY = frozenset({"REGION_RESOURCE_POOL_EXHAUSTED"})
QUOTA = frozenset({"QUOTA_EXCEEDED", "quotaExceeded"})
TRANSIENT = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RESOURCE_OPERATION_RATE_EXCEEDED",
                       "resourceNotReady", "RESOURCE_NOT_READY", "backendError", "internalError"})
API_DISABLED = frozenset({"accessNotConfigured", "SERVICE_DISABLED"})
CREDENTIALS_FIX = ("run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to a "
                   "key file), then `runner doctor --cloud gcp`")

# Run by the guest agent at every shutdown but a reboot (metadata key shutdown-script).
SHUTDOWN_SCRIPT = r"""#!/bin/bash
# runner: delete this VM as it shuts down. A guest power-off only STOPS a GCE VM, and a stopped VM
# still bills its disk. Needs the VM's service account to hold compute.instances.delete (docs/gcp.md).
set -u
api={api}
md="http://${{GCE_METADATA_HOST:-metadata.google.internal}}/computeMetadata/v1"
get() {{ curl -fsS --retry 3 -m 10 -H 'Metadata-Flavor: Google' "$md/$1"; }}
if systemctl list-jobs 2>/dev/null | grep -q 'reboot\.target'; then echo "runner: rebooting: keeping this VM"; exit 0; fi
if ! name=$(get instance/name) || ! zone=$(get instance/zone) || ! project=$(get project/project-id) ||
   ! token=$(get instance/service-accounts/default/token | sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p'); then
  echo "runner: the metadata server did not answer: cannot delete this VM"; exit 0
fi
if curl -fsS --retry 3 -m 30 -X DELETE -H "Authorization: Bearer $token" \
    "$api/compute/v1/projects/$project/zones/${{zone##*/}}/instances/$name" > /dev/null; then
  echo "runner: deleting VM $name"
else
  echo "runner: could not delete VM $name: being deleted already, or its service account lacks compute.instances.delete (docs/gcp.md)"
fi
"""


@dataclass(frozen=True)
class GcpSettings:
    """Where and how to launch: flags over RUNNER_GCP_* over [gcp] in the config file."""

    project: str
    zones: tuple[str, ...] = ()
    service_account: str = ""
    network: str = ""
    subnetwork: str = ""
    external_ip: bool = False
    spot_fallback: bool = False
    endpoint: str = ""  # the Compute API's address: Private Service Connect, or a fake in tests
    resource_manager_endpoint: str = ""  # the Resource Manager API's (doctor's permission check), likewise

    @property
    def api(self) -> str:
        return (self.endpoint or API).rstrip("/")

    @classmethod
    def load(cls) -> GcpSettings:
        """RUNNER_GCP_* over [gcp] in the config file; the project and zone also from gcloud's variables."""
        table = settings.load().get("gcp", {})
        for key in table if isinstance(table, dict) else ():
            if key not in KEYS:
                near = difflib.get_close_matches(key, KEYS, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise SpecError(f"{settings.path()}: unknown key [gcp] {key!r}{hint}; known: {', '.join(KEYS)}")
        env = os.environ
        zone = env.get("CLOUDSDK_COMPUTE_ZONE", "")
        return cls(
            project=str(settings.get("project", "gcp") or env.get("GOOGLE_CLOUD_PROJECT") or env.get("CLOUDSDK_CORE_PROJECT") or ""),
            zones=settings.get_list("zones", "gcp") or ((zone,) if zone else ()),
            service_account=str(settings.get("service_account", "gcp") or ""),
            network=str(settings.get("network", "gcp") or ""), subnetwork=str(settings.get("subnetwork", "gcp") or ""),
            external_ip=settings.get_bool("external_ip", "gcp"), spot_fallback=settings.get_bool("spot_fallback", "gcp"),
            endpoint=str(settings.get("endpoint", "gcp") or ""),
            resource_manager_endpoint=str(settings.get("resource_manager_endpoint", "gcp") or ""),
        )


@dataclass(frozen=True)
class Attempt:
    """One instances.insert try: a provisioning model ('spot' or 'standard') in a zone."""

    market: str
    zone: str

    def __str__(self) -> str:
        return f"{self.market} in {self.zone}"


def region_of(zone: str | None) -> str:
    """'us-central1-a' -> 'us-central1'."""
    return zone.rsplit("-", 1)[0] if zone and ZONE_RE.match(zone) else ""


def plan_attempts(spot: bool, fallback: bool, zones: tuple[str, ...] | list[str]) -> list[Attempt]:
    """The order to try: spot in each zone, then standard (on-demand) in each if allowed."""
    out = [Attempt("spot", z) for z in zones] if spot else []
    if not spot or fallback:
        out += [Attempt("standard", z) for z in zones]
    return out


def instance_name(job_id: str) -> str:
    """A GCE name for the job's VM: 'runner-' + the lowercased id (names allow no capitals), <= 63 chars; a long name
    is cut before a shard's `--s<k>`, which stays whole (a VM of a batch reads its shard from its name)."""
    low = job_id.lower()
    name, suffix = low[:-24], low[-24:]  # suffix: '-yyyymmddthhmmssz-xxxxxx'
    shard = re.search(r"--s[0-9]+\Z", name)
    keep = shard.group() if shard else ""
    head = name[:len(name) - len(keep)]
    return f"runner-{head[:63 - len('runner-') - len(suffix) - len(keep)]}{keep}{suffix}"


def label_value(value: str) -> str:
    """A GCE label value: lowercase letters, digits, '_' and '-', <= 63 chars."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def labels(req: LaunchRequest) -> dict[str, str]:
    out = {label_value(k)[:63] or "tag": label_value(v) for k, v in req.tags.items()}
    return {**out, LABEL: label_value(req.job_id)}


def image_link(image: str, project: str) -> str:
    """--image as GCE takes it: a path stays, a bare name is an image of the project."""
    if image.startswith(("projects/", "https://", "global/")):
        return image
    return f"projects/{project}/global/images/{image}"


def resource(value: str, kind: str, region: str = "") -> str:
    """A network or subnetwork setting: a path stays, a bare name is put where GCE looks for it."""
    if "/" in value:
        return value
    return f"regions/{region}/subnetworks/{value}" if kind == "subnetworks" else f"global/networks/{value}"


def instance_body(req: LaunchRequest, cfg: GcpSettings, image: str, attempt: Attempt) -> dict:
    """The compute_v1.Instance for one attempt, as a dict of its fields."""
    zone, spot = attempt.zone, attempt.market == "spot"
    tags = labels(req)
    nic: dict = {"network": resource(cfg.network or "default", "networks")}
    if cfg.subnetwork:
        nic["subnetwork"] = resource(cfg.subnetwork, "subnetworks", region_of(zone))
    if cfg.external_ip:  # else no public address: egress through Cloud NAT (docs/gcp.md)
        nic["access_configs"] = [{"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]
    return {
        "name": instance_name(req.job_id),
        "machine_type": f"zones/{zone}/machineTypes/{req.instance_type}",
        "labels": tags,
        "metadata": {"items": [
            {"key": "user-data", "value": req.user_data},  # cloud-init's GCE datasource runs it
            {"key": "shutdown-script", "value": shutdown_script(cfg.api)},  # the guest agent runs it
            {"key": LABEL, "value": req.job_id},
        ]},
        "disks": gcp_disks.disks(req, zone, image, tags),  # the boot disk, and local SSDs when asked for
        "network_interfaces": [nic],
        **({"tags": {"items": [req.network_tag]}} if req.network_tag else {}),  # a cluster node: its firewall rule's tag
        "service_accounts": [{"email": cfg.service_account, "scopes": list(SCOPES)}],
        "scheduling": {
            "provisioning_model": "SPOT" if spot else "STANDARD",
            "instance_termination_action": "DELETE",  # at preemption and at the deadline
            "max_run_duration": {"seconds": req.max_runtime + DEADLINE_MARGIN},
            "automatic_restart": False,  # a restarted VM would not run its user-data again
            "on_host_maintenance": on_host_maintenance(req.instance_type, spot),
        },
    }


def request_id(job_id: str, attempt: Attempt, launch: int) -> str:
    """The same insert retried (a timeout) cannot start a second VM; a relaunch (`launch` N) is a new insert."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"runner/{job_id}/{launch}/{attempt.market}/{attempt.zone}"))


def shutdown_script(api: str) -> str:
    return SHUTDOWN_SCRIPT.format(api=shlex.quote(api.rstrip("/")))


def type_arch(machine_type: str) -> str:
    """'t2a-standard-4' -> 'ARM64', 'e2-standard-4' -> 'X86_64' (GCE's spelling)."""
    return "ARM64" if machine_type.split("-", 1)[0] in ARM_FAMILIES else "X86_64"


def check_fit(req: LaunchRequest, image: Mapping) -> None:
    """The machine type and disk size fit the image; SpecError before anything starts."""
    arch = str(image.get("architecture") or "")
    if arch in ("X86_64", "ARM64") and arch != type_arch(req.instance_type):
        raise SpecError(f"{req.instance_type} is {type_arch(req.instance_type)} but image {image['name']} is {arch}: pick a matching type")
    size = int(image.get("disk_size_gb") or 0)
    if size and req.disk_gb < size:
        raise SpecError(f"disk_gb {req.disk_gb} is smaller than image {image['name']}'s {size} GB disk")


def instance_state(name: str, status: str | None, preempted_at: str | None) -> InstanceState:
    """A VM's status (None: gone) and when GCE preempted it (None: never) -> alive, or gone and why."""
    if status in ALIVE:
        return InstanceState(alive=True, reason=status or "")
    if preempted_at:
        return InstanceState(False, f"GCE preempted spot VM {name} at {preempted_at}", preempted=True)
    if status is None:
        return InstanceState(False, f"GCE VM {name} is gone and the job never wrote a final status")
    return InstanceState(False, f"GCE VM {name} is {status} and the job never wrote a final status")


def pick(errors: list[tuple[str, str]]) -> tuple[str, str]:
    """The (code, message) that decides: a capacity, quota or auth code before any other."""
    known = ZONE_CAPACITY | REGION_CAPACITY | QUOTA | API_DISABLED
    return next((e for e in errors if e[0] in known), errors[0] if errors else ("", ""))


def classify(code: str, message: str, what: str, status: int = 0, zone: str = "", region: str = "") -> RunnerError:
    """A GCE error code (an operation's error code, or an HTTP error's reason) -> a typed error.

    Capacity is per zone, quota per region (or global); auth is never reported as capacity.
    """
    text = f"{what}: {code or status}: {message}".rstrip(": ")
    low = message.lower()
    if code in QUOTA:
        where = "global" if "globally" in low else zone if f"in zone {zone}" in low and zone else region
        err: RunnerError = QuotaError(f"{text}; ask for more quota (IAM & Admin > Quotas) or use a smaller type", scope=where)
    elif code in ZONE_CAPACITY or (("does not exist in zone" in low or "not available in zone" in low) and "machine" in low):
        err = CapacityError(text, scope=zone)  # out of stock, or the type is not offered there
    elif code in REGION_CAPACITY:
        err = CapacityError(text, scope=region)
    elif code in API_DISABLED:
        err = AuthError(f"{text}; enable the API: gcloud services enable compute.googleapis.com")
    elif "service account" in low and ("does not have access" in low or "actas" in low or "serviceaccountuser" in low):
        err = AuthError(f"{text}; grant the launcher roles/iam.serviceAccountUser on the VM's service account (docs/gcp.md)")
    elif "service account" in low and ("not found" in low or "does not exist" in low):
        err = SpecError(f"{text}; fix RUNNER_GCP_SERVICE_ACCOUNT (or [gcp] service_account)")
    elif status == 401:
        err = AuthError(f"{text}; {CREDENTIALS_FIX}")
    elif status == 403 and code not in TRANSIENT:
        err = AuthError(f"{text}; these credentials lack a permission: grant the launcher the roles in docs/gcp.md")
    elif status == 404 or code in ("notFound", "RESOURCE_NOT_FOUND"):
        err = NotFoundError(text)
    elif (status == 400 or code in ("invalid", "INVALID_FIELD_VALUE", "badRequest")) and code not in TRANSIENT:
        err = SpecError(text)
    else:
        err = RunnerError(text)
    err.code = code or str(status)  # type: ignore[attr-defined]
    err.detail = message[:160]  # type: ignore[attr-defined]
    return err
