"""The gp3 root volume's speed on EC2 (pure): gp3's limits, defaults from the instance's EBS bandwidth, the Ebs keys.

gp3, from the EBS User Guide, "General Purpose SSD volumes"
(https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html#gp3-performance): every volume includes
3,000 IOPS and 125 MiB/s; up to 80,000 IOPS and 2,000 MiB/s can be provisioned (16,000 and 1,000 before the
2025 raise), at most 500 IOPS per GiB of the volume's size and 0.25 MiB/s of throughput per provisioned IOPS.
The EC2 API takes Throughput in MiB/s; disk_throughput is passed as it is.

EBS-optimized baseline bandwidth (Mbps) by size, from the "Amazon EBS specifications" tables of the EC2
Instance Types guide (https://docs.aws.amazon.com/ec2/latest/instancetypes/gp.html, co.html, mo.html,
so.html), the numbers DescribeInstanceTypes answers as EbsInfo.EbsOptimizedInfo.BaselineBandwidthInMbps.
A gp3 volume faster than the instance's baseline only runs at that speed in the instance's bursts (30 min a
day for the smaller sizes), so a default never asks for more than the baseline; a family missing here gets
gp3's included 125 MiB/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runner.aws_prices import GP3_INCLUDED_IOPS, GP3_INCLUDED_MIBPS, gp3_extra_per_hour
from runner.errors import SpecError
from runner.providers.base import LaunchRequest

GP3 = "gp3"
MAX_MIBPS = 2000
MAX_IOPS = 80000
IOPS_PER_GIB = 500
IOPS_PER_MIBPS = 4  # 0.25 MiB/s per provisioned IOPS
DEFAULT_MAX_MIBPS = 1000  # the most a default asks for (4,000 IOPS): more is the user's own choice

_GEN5 = {"large": 650, "xlarge": 1150, "2xlarge": 2300, "4xlarge": 4750, "8xlarge": 6800, "9xlarge": 9500,
         "12xlarge": 9500, "16xlarge": 13600, "18xlarge": 19000, "24xlarge": 19000, "metal": 19000}
_GEN6 = {"medium": 325, "large": 650, "xlarge": 1250, "2xlarge": 2500, "4xlarge": 5000, "8xlarge": 10000,
         "12xlarge": 15000, "16xlarge": 20000, "24xlarge": 30000, "32xlarge": 40000, "48xlarge": 40000,
         "metal": 40000, "metal-24xl": 30000, "metal-48xl": 40000}
_GRAVITON2 = {"medium": 315, "large": 630, "xlarge": 1188, "2xlarge": 2375, "4xlarge": 4750, "8xlarge": 9500,
              "12xlarge": 14250, "16xlarge": 19000, "metal": 19000}
_GRAVITON3 = {"medium": 315, "large": 630, "xlarge": 1250, "2xlarge": 2500, "4xlarge": 5000, "8xlarge": 10000,
              "12xlarge": 15000, "16xlarge": 20000, "24xlarge": 30000, "48xlarge": 40000,
              "metal-24xl": 30000, "metal-48xl": 40000}
_NETWORK6 = {"large": 1562, "xlarge": 3125, "2xlarge": 6250, "4xlarge": 12500, "8xlarge": 25000, "12xlarge": 37500,
             "16xlarge": 50000, "24xlarge": 75000, "32xlarge": 100000, "metal": 100000}
EBS_BASELINE_MBPS: dict[str, dict[str, int]] = {
    **{f: _GEN5 for f in ("m5", "m5d", "m5n", "r5", "r5d", "r5n", "c5", "c5d", "c5n")},
    **{f: _GEN6 for f in ("m6i", "m6id", "c6i", "c6id", "r6i", "r6id", "m6a", "c6a", "r6a",
                          "m7i", "c7i", "r7i", "m7a", "c7a", "r7a")},
    **{f: _GRAVITON2 for f in ("m6g", "m6gd", "c6g", "c6gd", "r6g", "r6gd")},
    **{f: _GRAVITON3 for f in ("m7gd", "c7gd", "m8g", "c8g", "r8g")},
    **{f: _NETWORK6 for f in ("c6in", "m6in", "r6in")},
    "m7g": {**_GRAVITON3, "metal": 20000}, "c7g": {**_GRAVITON3, "metal": 20000}, "r7g": {**_GRAVITON3, "metal": 20000},
    "i4i": {**_GEN6, "large": 625},
    "i3": {"large": 425, "xlarge": 850, "2xlarge": 1700, "4xlarge": 3500, "8xlarge": 7000, "16xlarge": 14000},
    "i3en": {"large": 576, "xlarge": 1153, "2xlarge": 2307, "3xlarge": 3800, "6xlarge": 4750, "12xlarge": 9500,
             "24xlarge": 19000, "metal": 19000},
}


@dataclass(frozen=True)
class RootVolume:
    """The gp3 root volume's provisioned speed, and why it is what it is."""

    mibps: int
    iops: int
    why: str

    def ebs(self) -> dict[str, int]:
        """The keys this adds to run_instances' Ebs mapping (none at gp3's included speed)."""
        out = {}
        if self.iops > GP3_INCLUDED_IOPS:
            out["Iops"] = self.iops
        if self.mibps > GP3_INCLUDED_MIBPS:
            out["Throughput"] = self.mibps
        return out

    def __str__(self) -> str:
        return f"gp3 at {self.mibps} MiB/s and {self.iops} IOPS ({self.why})"


def baseline_mibps(instance_type: str) -> float | None:
    """The instance's EBS-optimized baseline in MiB/s; None for a type the table does not know."""
    family, _, size = instance_type.partition(".")
    mbps = EBS_BASELINE_MBPS.get(family, {}).get(size)
    return None if mbps is None else mbps * 1_000_000 / 8 / 2**20


def root_volume(req: LaunchRequest) -> RootVolume:
    """The gp3 volume this request asks for; SpecError naming the value and the range for one EC2 would refuse."""
    if req.disk_type not in (None, GP3):
        raise SpecError(f"disk_type {req.disk_type!r} is not offered on AWS: the root volume is gp3, its speed set with "
                        "disk_throughput and disk_iops; leave disk_type out or set it to gp3")
    if req.local_ssds:  # 0: none, as everywhere
        raise SpecError(f"local_ssds {req.local_ssds} is for GCP: on AWS instance storage comes with the instance type "
                        "(i3en.2xlarge has 2 NVMe drives, c6id.* and the other '*d' types have theirs); pick such a type "
                        "and leave local_ssds out")
    mibps, iops, gib = req.disk_throughput, req.disk_iops, req.disk_gb
    if mibps is not None and not GP3_INCLUDED_MIBPS <= mibps <= MAX_MIBPS:
        raise SpecError(f"disk_throughput {mibps} MiB/s is outside gp3's range, {GP3_INCLUDED_MIBPS}-{MAX_MIBPS} MiB/s")
    if iops is not None and not GP3_INCLUDED_IOPS <= iops <= MAX_IOPS:
        raise SpecError(f"disk_iops {iops} is outside gp3's range, {GP3_INCLUDED_IOPS}-{MAX_IOPS}")
    if iops is not None and iops > IOPS_PER_GIB * gib:
        raise SpecError(f"disk_iops {iops} is more than a {gib} GB gp3 volume takes ({IOPS_PER_GIB} IOPS per GB, so at most "
                        f"{IOPS_PER_GIB * gib}): raise disk_gb to {math.ceil(iops / IOPS_PER_GIB)} or lower disk_iops")
    if mibps is not None:
        needed = max(GP3_INCLUDED_IOPS, IOPS_PER_MIBPS * mibps)
        if iops is not None and iops < needed:
            raise SpecError(f"disk_throughput {mibps} MiB/s needs {needed} IOPS on gp3 (0.25 MiB/s per IOPS) and disk_iops is "
                            f"{iops}: raise disk_iops to {needed} or lower disk_throughput to {iops // IOPS_PER_MIBPS}")
        if needed > IOPS_PER_GIB * gib:
            raise SpecError(f"disk_throughput {mibps} MiB/s needs {needed} IOPS (0.25 MiB/s per IOPS), more than a {gib} GB "
                            f"gp3 volume takes ({IOPS_PER_GIB} per GB): raise disk_gb to {math.ceil(needed / IOPS_PER_GIB)}")
        return RootVolume(mibps, iops or needed, "set by disk_throughput" + (" and disk_iops" if iops else "; IOPS: 3000, or 4 per MiB/s above 750"))
    chosen, why = default_mibps(req.instance_type)
    why = f"default: {why}"
    if iops is not None and chosen > iops // IOPS_PER_MIBPS:
        chosen, why = iops // IOPS_PER_MIBPS, f"{why}; held to disk_iops / 4 = {iops // IOPS_PER_MIBPS}"
    if iops is not None:
        return RootVolume(chosen, iops, f"{why}; IOPS from disk_iops")
    return RootVolume(chosen, max(GP3_INCLUDED_IOPS, IOPS_PER_MIBPS * chosen), why)


def default_mibps(instance_type: str) -> tuple[int, str]:
    """The throughput a root volume gets when disk_throughput is not given, and why."""
    base = baseline_mibps(instance_type)
    if base is None:
        return GP3_INCLUDED_MIBPS, f"runner's table has no EBS bandwidth for {instance_type}, so gp3's included 125"
    if base <= GP3_INCLUDED_MIBPS:
        return GP3_INCLUDED_MIBPS, f"{instance_type}'s EBS baseline is {base:.0f} MiB/s, below gp3's included 125"
    if base > DEFAULT_MAX_MIBPS:
        return DEFAULT_MAX_MIBPS, f"{instance_type}'s EBS baseline is {base:.0f} MiB/s; a default stops at {DEFAULT_MAX_MIBPS}"
    return math.floor(base), f"{instance_type}'s EBS baseline"


def quote(vol: RootVolume, seconds: int) -> dict:
    """What `--dry-run` shows of the root volume: its speed, why, and what the speed above gp3's included one costs."""
    extra = gp3_extra_per_hour(vol.mibps, vol.iops)
    return {"root_disk": str(vol), "root_disk_extra_usd_per_hour": round(extra, 4),
            "root_disk_extra_max_usd": round(extra * seconds / 3600, 4)}
