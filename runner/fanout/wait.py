"""Waiting on a fan-out job: each shard until it ends (a preempted one relaunched), a line of progress meanwhile
and, when asked, each failed item as it appears; then the parent's derived state."""

from __future__ import annotations

import sys
import time

from runner import jobs, watch
from runner import launch as launcher
from runner.errors import RunnerError
from runner.fanout import ids, state
from runner.fanout.launch import _attempt, read_parent, settle, shard_numbers
from runner.progress import FanoutLooker
from runner.providers import get_provider
from runner.store import Store


def wait_fanout(store: Store, parent: str, poll: float = 0.5, note=None, progress=None, follow=None,
                relaunch: bool = True) -> tuple[jobs.Status, state.Counts]:
    """Wait for every shard to end, relaunching a preempted one within the parent's retries (only its missing
    items run again: items.sh skips done ones); then write and return the derived state.

    With `progress` (runner.progress.Progress), a line of items and shards from their summaries and statuses;
    with `follow` (runner.progress.ItemNotes), each failed item as it appears. Without `relaunch` (a watcher, not
    the launcher), a preempted shard counts as ended and the state stays RUNNING while its retries are left.
    """

    note = note or (lambda line: sys.stderr.write(line + "\n"))

    def say(line: str) -> None:
        if progress:
            progress.clear()
        note(line)

    record, spec = read_parent(store, parent)
    every = float(getattr(get_provider(record["cloud"]), "state_every", 0.0))
    fan = record["fanout"]
    total = fan.get("items") if isinstance(fan.get("items"), int) and not isinstance(fan.get("items"), bool) else 0
    looker = FanoutLooker(store, parent, max(total, 0), fan.get("reduce") is True) if progress or follow else None
    final: dict[int, jobs.Status] = {}
    next_check = 0.0

    def show(statuses: dict[int, jobs.Status], settled: jobs.Status | None = None) -> None:
        if looker is None:
            return
        line = looker.look(statuses, settled)
        if follow:
            follow.show(looker, say)
        if progress:
            progress.update(*line)

    def end(statuses: dict[int, jobs.Status]) -> tuple[jobs.Status, state.Counts]:
        listed = list(statuses.values())
        left = None if relaunch else [max(spec.retries - (_attempt(store, ids.shard_id(parent, k)) - 1), 0) for k in statuses]
        settled = settle(store, parent, listed, left)
        show(statuses, settled[0])
        return settled

    try:
        while True:
            now = time.monotonic()
            check, next_check = now >= next_check, (now + every if now >= next_check else next_check)
            statuses: dict[int, jobs.Status] = {}
            for k in shard_numbers(store, parent):
                sid = ids.shard_id(parent, k)
                st = final.get(k) or watch.refresh(store, sid, check_vm=check)
                if relaunch and st.state == jobs.PREEMPTED and (attempt := _attempt(store, sid)) <= spec.retries:
                    last = attempt + 1 == spec.retries + 1
                    say(f"{parent}: shard {k} preempted; relaunching it (attempt {attempt + 1} of {spec.retries + 1})")
                    try:
                        launcher.relaunch(store, sid, attempt + 1, on_demand=last and spec.retry_on_demand)
                    except RunnerError as e:
                        say(f"{parent}: shard {k} was not relaunched: {e}")
                    else:  # its new attempt is looked at on the next round, even if it is preempted at once
                        statuses[k] = jobs.read_status(store, sid)
                        continue
                    st = jobs.read_status(store, sid)
                if st.final:
                    final[k] = st
                statuses[k] = st
            if statuses and all(s.final for s in statuses.values()):
                for k in statuses:  # on this host, a shard ends when its machine is off
                    watch.until_powered_off(store, ids.shard_id(parent, k), poll)
                return end(statuses)
            if jobs.read_status(store, parent).final:  # cancelled meanwhile: the shards are being stopped
                return end(statuses)
            show(statuses)
            time.sleep(poll)
    finally:
        if progress:
            progress.close()
