"""A fan-out job's state, derived from its shards, its items and its reduce: pure, no store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner import jobs

ITEMS_FAILED = 72  # some items failed or are missing: `runner retry ID` runs only those


@dataclass(frozen=True)
class Counts:
    """How many of the manifest's items are done, failed (and not done since) and missing."""

    total: int
    done: int
    failed: int

    @property
    def missing(self) -> int:
        return max(self.total - self.done - self.failed, 0)

    def to_json(self) -> dict:
        return {"total": self.total, "done": self.done, "failed": self.failed, "missing": self.missing}


def counts(total: int, done: int, failed: int) -> Counts:
    """Counts clamped to the manifest: a store can claim more done or failed items than were asked for."""
    done = min(max(done, 0), total)
    return Counts(total, done, min(max(failed, 0), total - done))


def item_marks(keys: Sequence[str], prefix: str, names: set[str]) -> tuple[set[str], set[str]]:
    """(done, failed) item names from the keys below `prefix` (items/): an item is done iff its `done` marker is
    there, failed when it has an exit_code and no marker; a name not in the manifest is ignored."""
    done, tried = set(), set()
    for key in keys:
        rest = key[len(prefix):] if key.startswith(prefix) else ""
        name, _, leaf = rest.partition("/")
        if name in names and leaf in ("done", "exit_code"):
            (done if leaf == "done" else tried).add(name)
    return done, tried - done


def _pending_relaunch(shard: jobs.Status, left: int) -> bool:
    return shard.state == jobs.PREEMPTED and left > 0


def derive(
    shards: Sequence[jobs.Status], items: Counts, reduce: jobs.Status | None = None, has_reduce: bool = False,
    retries_left: Sequence[int] = (), job_id: str = "ID",
) -> jobs.Status:
    """The parent's status: RUNNING until every shard is final (a preempted shard with retries left is not), then
    SUCCEEDED when every item is done and the reduce (if any) succeeded, else FAILED, CANCELLED or PREEMPTED."""
    left = list(retries_left) + [0] * (len(shards) - len(retries_left))
    started = sorted(s.started_at for s in shards if s.started_at)
    start = started[0] if started else None
    if not shards or any(not s.final or _pending_relaunch(s, n) for s, n in zip(shards, left, strict=False)):
        began = start or any(s.state not in (jobs.PENDING, jobs.PROVISIONING) for s in shards)
        state = jobs.RUNNING if began else jobs.PROVISIONING
        return jobs.Status(state, reason=_progress(shards, items), started_at=start)
    ended = max((s.ended_at for s in shards if s.ended_at), default=None) or jobs.utcnow()
    reduce_state = reduce.state if reduce else None
    if items.done == items.total and (not has_reduce or reduce_state == jobs.SUCCEEDED):
        return jobs.Status(jobs.SUCCEEDED, 0, f"{items.total} of {items.total} items done" + ("; the reduce succeeded" if has_reduce else ""),
                           started_at=start, ended_at=ended)
    if has_reduce and reduce_state == jobs.FAILED and items.done == items.total:
        code = reduce.exit_code if reduce and reduce.exit_code else ITEMS_FAILED
        return jobs.Status(jobs.FAILED, code, f"the reduce exited with code {code}: runner retry {job_id}", started_at=start, ended_at=ended)
    if items.done == items.total:  # every item is done and the reduce never ended
        why = f"the reduce did not finish ({reduce_state or 'it never started'}): runner retry {job_id}"
        return jobs.Status(jobs.FAILED, ITEMS_FAILED, why, started_at=start, ended_at=ended)
    unfinished = [s for s in shards if s.state != jobs.SUCCEEDED]
    what = f"{items.failed} of {items.total} items failed, {items.missing} missing: runner retry {job_id}"
    if unfinished and all(s.state == jobs.CANCELLED for s in unfinished):
        return jobs.Status(jobs.CANCELLED, jobs_exit(jobs.CANCELLED), f"cancelled; {what}", started_at=start, ended_at=ended)
    if items.failed == 0 and any(s.state == jobs.PREEMPTED for s in shards):
        return jobs.Status(jobs.PREEMPTED, jobs_exit(jobs.PREEMPTED), f"shards preempted past their retries; {what}",
                           started_at=start, ended_at=ended)
    return jobs.Status(jobs.FAILED, ITEMS_FAILED, what, started_at=start, ended_at=ended)


def jobs_exit(state: str) -> int:
    """The exit code `--wait` gives a state that is not the job's own (as for a single job)."""
    return {jobs.CANCELLED: 130, jobs.PREEMPTED: 75}[state]


def _progress(shards: Sequence[jobs.Status], items: Counts) -> str:
    final = sum(s.final for s in shards)
    return f"{items.done} of {items.total} items done, {items.failed} failed; {final} of {len(shards)} shards ended"
