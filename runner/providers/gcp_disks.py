"""GCE disks (pure): the boot disk's type and provisioned speed per machine family, local SSDs, the insert's disks.

From the Compute Engine docs:
- "About Hyperdisk" (https://cloud.google.com/compute/docs/disks/hyperdisks, machine series support): E2, N1, N2,
  N2D, T2D, T2A, C2 and C2D take no Hyperdisk Balanced; N4, C4, C4A, C4D and the newer series take Hyperdisk only.
  C3 and C3D take pd-balanced, pd-ssd and Hyperdisk Balanced (no pd-standard), as do M3 and Z3; H3 pd-balanced.
- "About Hyperdisk Balanced" (https://cloud.google.com/compute/docs/disks/hd-types/hyperdisk-balanced): Hyperdisk
  Balanced (and its HA variant) is the only Hyperdisk a VM boots from, so hyperdisk-throughput, -extreme and -ml
  cannot be the root disk. It includes 3,000 IOPS and 140 MiB/s; up to 160,000 IOPS (500 per GiB of size) and
  2,400 MiB/s can be provisioned. Persistent Disk has no provisioned speed: it grows with the size.
- "Choose a valid number of Local SSD disks" (https://cloud.google.com/compute/docs/disks/local-ssd): N1, N2,
  N2D, C2, C2D and M3 take 375 GiB local SSDs at creation, in the counts below by vCPUs; C3, C3D and Z3 get theirs
  only from their -lssd types, which come with a fixed number, attached by GCE itself ("Add a Local SSD",
  https://cloud.google.com/compute/docs/disks/add-local-ssd).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.errors import SpecError
from runner.providers import gcp_prices
from runner.providers.base import LaunchRequest
from runner.providers.gcp_families import HYPERDISK_BALANCED, boot_disk_type, family

PD = ("pd-balanced", "pd-ssd", "pd-standard")
BOOT_TYPES = (*PD, HYPERDISK_BALANCED)
NOT_BOOT = ("hyperdisk-throughput", "hyperdisk-extreme", "hyperdisk-ml", "local-ssd")
FAMILY_TYPES: dict[str, tuple[str, ...]] = {
    **{f: PD for f in ("e2", "n1", "n2", "n2d", "t2d", "t2a", "c2", "c2d")},
    **{f: ("pd-balanced", "pd-ssd", HYPERDISK_BALANCED) for f in ("c3", "c3d", "m3", "z3")},
    "h3": ("pd-balanced", HYPERDISK_BALANCED),
}
HB_IOPS = (3000, 160000)
HB_IOPS_PER_GIB = 500
HB_MIBPS = (140, 2400)
LOCAL_SSD_GIB = 375

_ANY = (1, 2, 4, 8, 16, 24)
# family -> [(most vCPUs, the local SSD counts a type with up to that many vCPUs takes), ...]
LOCAL_SSDS: dict[str, list[tuple[int, tuple[int, ...]]]] = {
    "n1": [(96, (1, 2, 3, 4, 5, 6, 7, 8, 16, 24))],
    "n2": [(10, _ANY), (20, _ANY[1:]), (40, _ANY[2:]), (80, _ANY[3:]), (128, _ANY[4:])],
    "n2d": [(16, _ANY), (48, _ANY[1:]), (80, _ANY[2:]), (224, _ANY[3:])],
    "c2": [(8, (1, 2, 4, 8)), (16, (2, 4, 8)), (30, (4, 8)), (60, (8,))],
    "c2d": [(16, (1, 2, 4, 8)), (32, (2, 4, 8)), (56, (4, 8)), (112, (8,))],
    "m3": [(64, (4, 8)), (128, (8,))],
}
# the -lssd types: local SSDs by vCPUs, a fixed count GCE attaches
LSSD_FIXED: dict[str, dict[int, int]] = {
    "c3-standard": {4: 1, 8: 2, 22: 4, 44: 8, 88: 16, 176: 32},
    "c3d-standard": {8: 1, 16: 1, 30: 2, 60: 4, 90: 8, 180: 16, 360: 32},
    "c3d-highmem": {8: 1, 16: 1, 30: 2, 60: 4, 90: 8, 180: 16, 360: 32},
    "z3-standard": {88: 12, 176: 12},
}
SHAPE_RE = re.compile(r"^(?P<series>[a-z0-9]+-[a-z]+)-(?P<cpus>\d+)")


@dataclass(frozen=True)
class Disks:
    """What the request's disks come to: the boot disk's type and provisioned speed, the local SSDs it adds."""

    boot_type: str
    iops: int | None = None  # provisioned (Hyperdisk Balanced only); None: GCE's default for the size
    mibps: int | None = None
    local_ssds: int = 0  # added to the insert; a -lssd type's own are not counted here
    why: str = ""

    def __str__(self) -> str:
        speed = "".join(f", {v} {unit}" for v, unit in ((self.mibps, "MiB/s"), (self.iops, "IOPS")) if v is not None)
        return f"{self.boot_type}{speed} ({self.why})"


def vcpus(machine_type: str) -> int | None:
    """'n2-standard-16' -> 16, 'n2-custom-8-32768' -> 8, 'e2-micro' -> None."""
    m = SHAPE_RE.match(machine_type)
    return int(m["cpus"]) if m else None


def allowed_types(machine_type: str) -> tuple[str, ...]:
    """The boot disk types the machine type's family takes (a family runner does not know: any, GCE decides)."""
    known = FAMILY_TYPES.get(family(machine_type))
    if known:
        return known
    return (HYPERDISK_BALANCED,) if boot_disk_type(machine_type) == HYPERDISK_BALANCED else BOOT_TYPES


def local_ssd_counts(machine_type: str) -> tuple[int, ...] | None:
    """The local SSD counts the type takes at creation; None when it takes none that way."""
    cpus = vcpus(machine_type)
    for most, counts in LOCAL_SSDS.get(family(machine_type), []):
        if cpus is not None and cpus <= most:
            return counts
    return None


def fixed_local_ssds(machine_type: str) -> int | None:
    """The local SSDs a -lssd type comes with; None for another type or a count runner does not know."""
    m = SHAPE_RE.match(machine_type)
    if not machine_type.endswith("-lssd") or not m:
        return None
    return LSSD_FIXED.get(m["series"], {}).get(int(m["cpus"]))


def plan(req: LaunchRequest) -> Disks:
    """The disks of the request's VM; SpecError naming the value and what the machine type takes."""
    mt, wanted = req.instance_type, req.disk_type
    allowed = allowed_types(mt)
    if wanted is not None and wanted not in BOOT_TYPES:
        what = ("cannot be the root disk (GCE boots only from Persistent Disk and Hyperdisk Balanced)" if wanted in NOT_BOOT
                else "is not a GCE boot disk type")
        raise SpecError(f"disk_type {wanted!r} {what}: use one of {', '.join(allowed)} for {mt}")
    if wanted is not None and wanted not in allowed:
        raise SpecError(f"disk_type {wanted} is not offered for {mt} ({family(mt)} VMs take {', '.join(allowed)}): "
                        "pick one of those, or another machine series")
    boot = wanted or boot_disk_type(mt)
    why = "set by disk_type" if wanted else f"{family(mt)}'s default"
    speed = [f"{k} {v}" for k, v in (("disk_throughput", req.disk_throughput), ("disk_iops", req.disk_iops)) if v is not None]
    if speed and boot != HYPERDISK_BALANCED:
        hint = f"set disk_type {HYPERDISK_BALANCED}" if HYPERDISK_BALANCED in allowed else f"{family(mt)} VMs take no Hyperdisk: leave them out"
        raise SpecError(f"{', '.join(speed)}: a {boot} disk has no provisioned speed (it grows with disk_gb); "
                        f"only {HYPERDISK_BALANCED} takes one: {hint}")
    check_speed(req)
    return Disks(boot, req.disk_iops, req.disk_throughput, local_ssds(req), why)


def check_speed(req: LaunchRequest) -> None:
    """Hyperdisk Balanced's ranges for provisioned IOPS and throughput."""
    iops, mibps, gib = req.disk_iops, req.disk_throughput, req.disk_gb
    if iops is not None:
        most = min(HB_IOPS[1], HB_IOPS_PER_GIB * gib)
        if not HB_IOPS[0] <= iops <= most:
            raise SpecError(f"disk_iops {iops} is outside what a {gib} GB {HYPERDISK_BALANCED} disk takes, {HB_IOPS[0]}-{most} "
                            f"({HB_IOPS_PER_GIB} per GB, at most {HB_IOPS[1]})" + (": raise disk_gb" if iops <= HB_IOPS[1] else ""))
    if mibps is not None and not HB_MIBPS[0] <= mibps <= HB_MIBPS[1]:
        raise SpecError(f"disk_throughput {mibps} MiB/s is outside {HYPERDISK_BALANCED}'s range, {HB_MIBPS[0]}-{HB_MIBPS[1]} MiB/s")


def local_ssds(req: LaunchRequest) -> int:
    """How many local SSDs the insert adds (0 for a -lssd type: GCE attaches its own); SpecError for a count GCE refuses."""
    mt, n = req.instance_type, req.local_ssds
    if mt.endswith("-lssd"):
        fixed = fixed_local_ssds(mt)
        if n is not None and n != fixed:
            has = f"comes with {fixed} local SSDs" if fixed is not None else "comes with its own local SSDs, a count runner does not know"
            raise SpecError(f"local_ssds {n}: {mt} {has}; leave local_ssds out" +
                            (f", or pick {mt.removesuffix('-lssd')} for none" if n == 0 else ""))
        return 0
    if not n:
        return 0
    counts = local_ssd_counts(mt)
    if counts is None:
        raise SpecError(f"local_ssds {n}: {mt} takes no local SSDs; n1, n2, n2d, c2, c2d and m3 types take them at creation, "
                        "c3, c3d and z3 come with them as -lssd types (e.g. c3-standard-8-lssd)")
    if n not in counts:
        raise SpecError(f"local_ssds {n} is not a count GCE attaches to {mt}: it takes {', '.join(map(str, counts))}")
    return n


def disks(req: LaunchRequest, zone: str, image: str, labels: dict[str, str]) -> list[dict]:
    """The insert body's disks: the boot disk (its type and provisioned speed) and the local SSDs, NVMe scratch."""
    d = plan(req)
    params: dict = {"source_image": image, "disk_size_gb": req.disk_gb, "disk_type": f"zones/{zone}/diskTypes/{d.boot_type}",
                    "labels": labels}
    if d.iops is not None:
        params["provisioned_iops"] = d.iops
    if d.mibps is not None:
        params["provisioned_throughput"] = d.mibps
    scratch = [{"type_": "SCRATCH", "auto_delete": True, "interface": "NVME",
                "initialize_params": {"disk_type": f"zones/{zone}/diskTypes/local-ssd"}} for _ in range(d.local_ssds)]
    return [{"boot": True, "auto_delete": True, "initialize_params": params}, *scratch]


def quote(req: LaunchRequest, d: Disks, seconds: int) -> dict:
    """What `--dry-run` shows of the disks: the boot disk's type and speed, why, what its speed and the local SSDs cost."""
    extra = gcp_prices.disk_extra_per_hour(d.boot_type, d.iops, d.mibps)
    out = {"root_disk": str(d), "root_disk_extra_usd_per_hour": round(extra, 4), "root_disk_extra_max_usd": round(extra * seconds / 3600, 4)}
    fixed = fixed_local_ssds(req.instance_type)  # None unless a -lssd type
    if d.local_ssds:
        per_hour = gcp_prices.local_ssds_per_hour(d.local_ssds)
        out.update(local_ssds=f"{d.local_ssds} x {LOCAL_SSD_GIB} GiB NVMe scratch disks",
                   local_ssds_usd_per_hour=round(per_hour, 4), local_ssds_max_usd=round(per_hour * seconds / 3600, 4))
    elif req.instance_type.endswith("-lssd"):
        out["local_ssds"] = f"{fixed if fixed is not None else 'the'} x {LOCAL_SSD_GIB} GiB NVMe that {req.instance_type} comes with"
    return out
