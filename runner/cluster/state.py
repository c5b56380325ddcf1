"""A cluster job's state, derived from its nodes: pure, no store. The head's end is the job's end."""

from __future__ import annotations

from collections.abc import Mapping

from runner import jobs


def derive(statuses: Mapping[int, jobs.Status], n: int, head_relaunching: bool = False) -> jobs.Status:
    """The parent's status: the head's once it has ended (and is not being relaunched), else PROVISIONING or RUNNING
    with how many nodes run; a worker's end never decides the job (Ray runs its tasks again on the others)."""
    started = sorted(s.started_at for s in statuses.values() if s.started_at)
    start = started[0] if started else None
    head = statuses.get(0)
    if head is not None and head.final and not head_relaunching:
        why = f"the head {head.state}" + (f": {head.reason}" if head.reason else "")
        return jobs.Status(head.state, head.exit_code, why, started_at=start, ended_at=head.ended_at or jobs.utcnow())
    running = sum(1 for s in statuses.values() if s.state == jobs.RUNNING)
    began = start is not None or running > 0
    what = f"{running} of {n} nodes running" + ("; the head is being relaunched after a preemption" if head_relaunching else "")
    return jobs.Status(jobs.RUNNING if began else jobs.PROVISIONING, reason=what, started_at=start)
