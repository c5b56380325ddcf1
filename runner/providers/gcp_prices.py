"""GCE prices for `--dry-run`: on-demand list prices per vCPU and GB-hour (us-central1), dated.

GCE spot prices change up to once a month and have no offline source; the on-demand price is their
upper bound, so "the most the run can cost" stays true for spot too.
"""

from __future__ import annotations

import re

AS_OF = "2024-06"
REGION = "us-central1"
RATES = {  # machine family: (USD per vCPU-hour, USD per GB-hour), on-demand, us-central1
    "e2": (0.021811, 0.002923),
    "n1": (0.031611, 0.004237),
    "n2": (0.031611, 0.004237),
    "n2d": (0.027502, 0.003686),
    "t2d": (0.027502, 0.003686),
    "c2": (0.03398, 0.00455),
    "c2d": (0.029563, 0.003959),
    "c3": (0.03465, 0.003938),
}
GB_PER_VCPU = {"standard": 4.0, "highmem": 8.0, "highcpu": 1.0}
GB_PER_VCPU_BY_FAMILY = {("n1", "standard"): 3.75, ("n1", "highmem"): 6.5, ("n1", "highcpu"): 0.9,
                         ("c3", "highcpu"): 2.0, ("c2d", "highcpu"): 2.0}
DISK_USD_PER_GB_MONTH = {  # boot disk capacity (https://cloud.google.com/compute/disks-image-pricing)
    "pd-standard": 0.04,
    "pd-balanced": 0.10,
    "pd-ssd": 0.17,
    "hyperdisk-balanced": 0.08,
}
# A Hyperdisk Balanced disk includes 3,000 IOPS and 140 MiB/s; more of either is billed per provisioned unit-month.
HB_INCLUDED_IOPS, HB_INCLUDED_MIBPS = 3000, 140
HB_USD_PER_IOPS_MONTH = 0.005
HB_USD_PER_MIBPS_MONTH = 0.04
LOCAL_SSD_USD_PER_GB_MONTH = 0.08  # on-demand; a spot VM's local SSDs cost less
LOCAL_SSD_GB = 375
HOURS_PER_MONTH = 730
TYPE_RE = re.compile(r"^(?P<family>[a-z0-9]+)-(?:(?P<kind>standard|highmem|highcpu)-(?P<cpus>\d+)|custom-(?P<ccpus>\d+)-(?P<mb>\d+))\Z")


def shape(machine_type: str) -> tuple[int, float] | None:
    """'e2-standard-4' -> (4 vCPUs, 16.0 GB); 'n2-custom-4-16384' -> (4, 16.0); None for others."""
    m = TYPE_RE.match(machine_type)
    if not m:
        return None
    if m["ccpus"]:
        return int(m["ccpus"]), int(m["mb"]) / 1024
    cpus = int(m["cpus"])
    return cpus, cpus * GB_PER_VCPU_BY_FAMILY.get((m["family"], m["kind"]), GB_PER_VCPU[m["kind"]])


def on_demand(region: str, machine_type: str) -> tuple[float, str] | None:
    """(USD/hour, where the number comes from), or None when the table cannot price the type."""
    dims = shape(machine_type)
    rates = RATES.get(machine_type.split("-", 1)[0])
    if not dims or not rates:
        return None
    price = round(dims[0] * rates[0] + dims[1] * rates[1], 6)
    where = "" if region == REGION else f"; {region} may differ (the table has {REGION} only)"
    return price, f"{REGION} list price as of {AS_OF}{where}"


def disk_extra_per_hour(disk_type: str, iops: int | None = None, mibps: int | None = None) -> float:
    """USD per hour of a boot disk's provisioned IOPS and throughput above what its price includes (Hyperdisk only)."""
    if disk_type != "hyperdisk-balanced":
        return 0.0
    extra = max(0, (iops or 0) - HB_INCLUDED_IOPS) * HB_USD_PER_IOPS_MONTH + max(0, (mibps or 0) - HB_INCLUDED_MIBPS) * HB_USD_PER_MIBPS_MONTH
    return extra / HOURS_PER_MONTH


def local_ssds_per_hour(count: int) -> float:
    """USD per hour of `count` local SSDs (375 GB each)."""
    return count * LOCAL_SSD_GB * LOCAL_SSD_USD_PER_GB_MONTH / HOURS_PER_MONTH


def cost(usd_per_hour: float | None, seconds: int, disk_gb: int, disk_type: str = "pd-balanced", iops: int | None = None,
         mibps: int | None = None, local_ssds: int = 0) -> float | None:
    """The most a run can cost: the VM, its boot disk (of `disk_type`, at `iops` and `mibps`) and local SSDs for `seconds`."""
    if usd_per_hour is None:
        return None
    disk = disk_gb * DISK_USD_PER_GB_MONTH.get(disk_type, max(DISK_USD_PER_GB_MONTH.values())) / HOURS_PER_MONTH
    disks = disk + disk_extra_per_hour(disk_type, iops, mibps) + local_ssds_per_hour(local_ssds)
    return round((usd_per_hour + disks) * seconds / 3600, 4)
