"""The sweeper: find runner's VMs whose job has ended, is unknown, or is past its deadline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from runner import jobs
from runner.errors import NotFoundError, SpecError
from runner.providers.base import Instance
from runner.store import Store

MARGIN = timedelta(minutes=15)  # past max runtime: the VM's own watchdog and failsafe should have fired


@dataclass(frozen=True)
class Stray:
    instance: Instance
    why: str


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def why_stray(store: Store, inst: Instance, now: datetime) -> str | None:
    """Why this VM should not be running (None when its job is alive and on time)."""
    try:
        record = jobs.read_json(store, jobs.check_job_id(inst.job_id), "job.json")
        status = jobs.read_status(store, inst.job_id)
    except (NotFoundError, SpecError):
        return f"no job {inst.job_id!r} in {store.uri()}"
    if status.final:
        return f"its job ended {status.state} at {status.ended_at or status.updated_at}"
    deadline = _parse(record["created_at"]) + timedelta(seconds=record["spec"]["max_runtime"]) + MARGIN
    if now > deadline:
        return f"its job is past its deadline ({deadline:%Y-%m-%dT%H:%M:%SZ}: max runtime + {MARGIN.seconds // 60} min)"
    return None


def find_strays(store: Store, provider, now: datetime | None = None) -> list[Stray]:
    """Every runner-tagged VM of `provider` that should be gone."""
    now = now or datetime.now(timezone.utc)
    strays = []
    for inst in provider.find({"runner-job": "*"}):
        why = why_stray(store, inst, now)
        if why:
            strays.append(Stray(inst, why))
    return strays
