"""The sweeper: find runner's VMs whose job has ended, is unknown, or is past its deadline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from runner import jobs
from runner.errors import NotFoundError, SpecError
from runner.providers.base import Instance
from runner.store import Store

MARGIN = timedelta(minutes=15)
MAX_RUNTIME = 7 * 24 * 3600  # the spec's upper bound on max_runtime  # past max runtime: the VM's own watchdog and failsafe should have fired


@dataclass(frozen=True)
class Stray:
    instance: Instance
    why: str


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _deadline(job_id: str, record: dict) -> datetime:
    """When the job must be over. The record is the job's own to write, so it may only bring the deadline closer:
    the start is the earlier of its created_at and the id's timestamp, the runtime at most the spec's maximum."""
    start = datetime.strptime(jobs.ID_RE.fullmatch(job_id)["ts"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    try:
        start = min(start, _parse(str(record["created_at"])))
    except (KeyError, TypeError, ValueError):
        pass
    runtime = (record.get("spec") or {}).get("max_runtime") if isinstance(record.get("spec"), dict) else None
    if not isinstance(runtime, int) or isinstance(runtime, bool) or not 1 <= runtime <= MAX_RUNTIME:
        runtime = MAX_RUNTIME
    return start + timedelta(seconds=runtime) + MARGIN


def why_stray(store: Store, inst: Instance, now: datetime) -> str | None:
    """Why this VM should not be running (None when its job is alive and on time)."""
    try:
        record = jobs.read_json(store, jobs.check_job_id(inst.job_id), "job.json")
        status = jobs.read_status(store, inst.job_id)
    except (NotFoundError, SpecError):
        return f"no job {inst.job_id!r} in {store.uri()}"
    except jobs.RecordError as e:
        return f"its job's record is unreadable ({e})"
    if status.final:
        return f"its job ended {status.state} at {status.ended_at or status.updated_at}"
    deadline = _deadline(inst.job_id, record)
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
