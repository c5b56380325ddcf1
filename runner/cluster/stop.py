"""Stopping a cluster's workers left once the head has ended (`runner cancel` of the job goes through runner.children)."""

from __future__ import annotations

import time

from runner import children
from runner.cluster import ids
from runner.errors import RunnerError
from runner.store import Store

HEAD_ENDED = "the cluster's head ended"


def node_numbers(store: Store, parent: str) -> list[int]:
    """The parent's nodes, by number, from its `nodes/<k>` keys (anything else there is ignored)."""
    return children.numbers(store, parent, ids.KIND)


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
