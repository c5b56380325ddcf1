"""Money: the hourly price of a launch, a cost ceiling turned into a runtime limit, and cost so far."""

from __future__ import annotations

from datetime import datetime, timezone

from runner.errors import SpecError
from runner.providers.base import LaunchRequest

FREE = ("sandbox", "local")


def hourly_price(provider, req: LaunchRequest) -> float | None:
    """USD per hour of the VM this request starts (the dearer of spot and on-demand when it may fall back)."""
    if provider.name in FREE:
        return 0.0
    quote = getattr(provider, "quote", None)
    if quote is None:
        return None
    q = quote(req)
    prices = [q.get("spot_usd_per_hour") if req.spot else None, q.get("on_demand_usd_per_hour") if not req.spot else None]
    if req.spot and q.get("max_cost_on_demand_usd") is not None:  # it may fall back to on-demand
        prices.append(q.get("on_demand_usd_per_hour"))
    known = [p for p in prices if p is not None]
    return max(known) if known else None


def runtime_for(max_cost: float, usd_per_hour: float | None, cloud: str, instance_type: str) -> int | None:
    """The runtime (s) that `max_cost` buys; None when it buys more than any runtime (a free backend)."""
    if usd_per_hour is None:
        raise SpecError(f"max_cost: no price is known for {instance_type} on {cloud}, so the ceiling cannot be enforced")
    if usd_per_hour == 0:
        return None
    seconds = int(max_cost / usd_per_hour * 3600)
    if seconds < 60:
        raise SpecError(f"max_cost {max_cost} USD buys only {seconds} s of {instance_type} at {usd_per_hour} USD/h")
    return seconds


def _ts(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def so_far(usd_per_hour: float | None, started_at: str | None, ended_at: str | None) -> float | None:
    """Estimated USD spent: the hourly price times the time the job has run."""
    if usd_per_hour is None or not started_at:
        return None
    end = _ts(ended_at) if ended_at else datetime.now(timezone.utc)
    return usd_per_hour * max(0.0, (end - _ts(started_at)).total_seconds()) / 3600
