"""EC2 prices for showing money before it is spent: on-demand list prices from a shipped table
(runner/data/aws_on_demand.csv, dated; `make prices` refreshes it), spot prices as EC2 reports them at launch time."""

from __future__ import annotations

import csv
import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).parent / "data" / "aws_on_demand.csv"
SIZE_RE = re.compile(r"^(?:(\d*)xlarge|large|medium|small|micro|nano)\Z")
# gp3 in us-east-1 (https://aws.amazon.com/ebs/pricing/); other regions differ by a few cents. A volume includes
# 3,000 IOPS and 125 MiB/s; more of either is billed per provisioned unit-month.
GP3_USD_PER_GB_MONTH = 0.08
GP3_USD_PER_IOPS_MONTH = 0.005
GP3_USD_PER_MIBPS_MONTH = 0.04
GP3_INCLUDED_IOPS = 3000
GP3_INCLUDED_MIBPS = 125
HOURS_PER_MONTH = 730


ACCELERATED_RE = re.compile(r"^(g|gr|p|inf|trn|dl|f|vt)\d")  # GPU/accelerator families: price is not linear in size


def load(path: Path) -> tuple[str, dict[tuple[str, str], float]]:
    """(the 'AS OF' date of the header, {(region, type): USD/hour}) of a price table."""
    text = path.read_text()
    m = re.search(r"AS OF (\d{4}-\d\d(?:-\d\d)?)", text)
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    return (m[1] if m else "unknown date"), {(r["region"], r["instance_type"]): float(r["usd_per_hour"]) for r in rows}


@lru_cache(maxsize=1)
def _table() -> tuple[str, dict[tuple[str, str], float]]:
    return load(TABLE)


def as_of() -> str:
    """The date the shipped on-demand prices were taken."""
    return _table()[0]


def scalable(family: str) -> bool:
    """Whether a family's price grows with its size (not GPU/accelerator families: g5.2xlarge has g5.xlarge's one GPU)."""
    return not ACCELERATED_RE.match(family)


def size_units(size: str) -> float | None:
    """'large' -> 1, 'xlarge' -> 2, '16xlarge' -> 32, 'medium' -> 0.5; None for 'metal' and the like."""
    m = SIZE_RE.match(size)
    if not m:
        return None
    if size.endswith("xlarge"):
        return 2.0 * int(m[1] or 1)
    return {"large": 1.0, "medium": 0.5, "small": 0.25, "micro": 0.125, "nano": 0.0625}[size]


def on_demand(region: str, instance_type: str) -> tuple[float, str] | None:
    """(USD/hour, where the number comes from), or None when the table has nothing for it."""
    date, prices = _table()
    if (region, instance_type) in prices:
        return prices[(region, instance_type)], f"list price as of {date}"
    family, _, size = instance_type.partition(".")
    units = size_units(size)
    if units is None or not scalable(family):
        return None
    for (r, t), price in sorted(prices.items()):
        fam, _, sz = t.partition(".")
        if r == region and fam == family and size_units(sz):
            return round(price * units / size_units(sz), 5), f"scaled from {t}'s list price as of {date}"
    return None


def latest_spot(rows: list[dict]) -> dict[str, float]:
    """describe_spot_price_history rows -> {zone: the newest price}."""
    newest: dict[str, tuple[datetime, float]] = {}
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    for row in rows:
        zone, ts = row["AvailabilityZone"], row.get("Timestamp") or epoch
        if zone not in newest or ts > newest[zone][0]:
            newest[zone] = (ts, float(row["SpotPrice"]))
    return {zone: price for zone, (_, price) in newest.items()}


def gp3_extra_per_hour(mibps: int = GP3_INCLUDED_MIBPS, iops: int = GP3_INCLUDED_IOPS) -> float:
    """USD per hour of a gp3 volume's throughput and IOPS above what its price includes."""
    extra = max(0, mibps - GP3_INCLUDED_MIBPS) * GP3_USD_PER_MIBPS_MONTH + max(0, iops - GP3_INCLUDED_IOPS) * GP3_USD_PER_IOPS_MONTH
    return extra / HOURS_PER_MONTH


def disk_per_hour(disk_gb: int, mibps: int = GP3_INCLUDED_MIBPS, iops: int = GP3_INCLUDED_IOPS) -> float:
    """USD per hour of a gp3 volume: its size, and its speed above the included 125 MiB/s and 3,000 IOPS."""
    return disk_gb * GP3_USD_PER_GB_MONTH / HOURS_PER_MONTH + gp3_extra_per_hour(mibps, iops)


def cost(usd_per_hour: float | None, seconds: int, disk_gb: int, mibps: int = GP3_INCLUDED_MIBPS,
         iops: int = GP3_INCLUDED_IOPS) -> float | None:
    """The most a run can cost: the instance and its gp3 root volume (at `mibps` and `iops`) for `seconds`."""
    if usd_per_hour is None:
        return None
    return round((usd_per_hour + disk_per_hour(disk_gb, mibps, iops)) * seconds / 3600, 4)
