"""Stopping a cluster's nodes: on `runner cancel` of the job, and the workers left once the head has ended."""

from __future__ import annotations

import time

from runner import jobs
from runner.cluster import ids
from runner.errors import RunnerError
from runner.store import Store

HEAD_ENDED = "the cluster's head ended"


def node_numbers(store: Store, parent: str) -> list[int]:
    """The parent's nodes, by number, from its `nodes/<k>` keys (anything else there is ignored)."""
    prefix = jobs.job_key(parent, "nodes") + "/"
    found = set()
    for key in store.list(prefix):
        leaf = key[len(prefix):]
        if leaf.isascii() and leaf.isdigit() and len(leaf) <= 2 and int(leaf) < ids.MAX_NODES:
            found.add(int(leaf))
    return sorted(found)


def cancel_cluster(store: Store, parent: str, st: jobs.Status, wait: bool, reason: str):
    """Every node cancelled as a job of its own (the workers first), then the job itself CANCELLED (conditionally)."""
    from runner import cancel

    result = cancel.Result(jobs.CANCELLED)
    for k in sorted(node_numbers(store, parent), reverse=True):
        try:
            result.lines += cancel.cancel(store, ids.node_id(parent, k), wait, reason).lines
        except RunnerError as e:
            result.lines.append(f"{parent}: node {k} could not be cancelled: {e}")
    wanted = jobs.Status(jobs.CANCELLED, exit_code=130, reason=reason, started_at=st.started_at, ended_at=jobs.utcnow())
    now = jobs.write_status(store, parent, wanted)
    result.state = now.state
    result.lines.append(f"{parent}: {now.state}" if now.state == jobs.CANCELLED else
                        f"{parent} already ended: {now.state} (it had already finished, while being cancelled); it stays {now.state}")
    return result


def end_workers(store: Store, parent: str, grace: float, poll: float = 0.5, note=None) -> None:
    """Give the workers `grace` seconds to see the head's end and leave by themselves, then cancel those still running."""
    from runner import cancel, watch

    deadline = time.monotonic() + grace
    workers = [k for k in node_numbers(store, parent) if k != 0]
    while True:
        left = [k for k in workers if not watch.refresh(store, ids.node_id(parent, k)).final]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    for k in left:
        if note:
            note(f"{parent}: worker {k} is still running {grace:.0f} s after the head ended: cancelling it")
        try:
            cancel.cancel(store, ids.node_id(parent, k), reason=f"{HEAD_ENDED}; the worker did not leave by itself")
        except RunnerError as e:
            if note:
                note(f"{parent}: worker {k} could not be cancelled: {e}")
