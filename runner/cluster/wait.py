"""Waiting on a cluster job: its nodes until the head ends (a preempted node relaunched within `retries`), then the
workers' end, and the parent's state (the head's)."""

from __future__ import annotations

import sys
import time

from runner import jobs, watch
from runner import launch as launcher
from runner.cluster import ids, state
from runner.cluster import launch as cluster
from runner.cluster import plan as planning
from runner.cluster.script import timings
from runner.cluster.stop import end_workers, node_numbers
from runner.errors import RunnerError
from runner.providers import get_provider
from runner.store import Store


def look(store: Store, parent: str, n: int, retries: int, check_vm: bool = True) -> tuple[dict[int, jobs.Status], dict[int, int], bool]:
    """Each node's status and attempt now, and whether the head waits for a relaunch (preempted, retries left)."""
    statuses, attempts = {}, {}
    for k in range(n):
        nid = ids.node_id(parent, k)
        try:
            statuses[k] = watch.refresh(store, nid, check_vm)
        except RunnerError:  # no record yet, or its VM could not be asked
            statuses[k] = jobs.read_status(store, nid) if store.exists(jobs.job_key(nid, "job.json")) else jobs.Status(jobs.PENDING)
        attempts[k] = cluster.attempt_of(store, nid)
    head = statuses[0]
    return statuses, attempts, head.state == jobs.PREEMPTED and attempts[0] <= retries


def settle(store: Store, parent: str, check_vm: bool = True) -> jobs.Status:
    """The parent's state derived now (nothing relaunched) and, when final, written (a final status there stays)."""
    record, spec = cluster.read_parent(store, parent)
    n = cluster.node_count(record["cluster"])
    statuses, _, relaunching = look(store, parent, n, spec.retries, check_vm)
    st = state.derive(statuses, n, relaunching)
    stored = jobs.read_status(store, parent)
    if stored.final:
        return stored
    return jobs.write_status(store, parent, st) if st.final else st


def wait_cluster(store: Store, parent: str, poll: float = 0.5, note=None, follower=None, relaunch: bool = True,
                 progress: bool = True) -> jobs.Status:
    """Wait until the head ends, relaunching a preempted node within the job's retries (a worker only while the head
    runs); then give the workers time to leave, cancel any left, and return the parent's written state.

    With `follower` (runner.logs.Follower of the head), the head's log is printed as it grows; with `progress`, each
    change of how many nodes run is a line for `note`.
    """
    note = note or (lambda line: sys.stderr.write(line + "\n"))
    record, spec = cluster.read_parent(store, parent)
    n = cluster.node_count(record["cluster"])
    said, next_check = "", 0.0
    every = float(getattr(get_provider(record["cloud"]), "state_every", 0.0))  # the backend's own pace of asking
    while True:
        now = time.monotonic()
        check, next_check = now >= next_check, (now + every if now >= next_check else next_check)
        statuses, attempts, relaunching = look(store, parent, n, spec.retries, check)
        if relaunch:
            for r in planning.to_relaunch(statuses, attempts, spec.retries, spec.retry_on_demand):
                role = "the head" if r.k == 0 else f"worker {r.k}"
                note(f"{parent}: {role} preempted; relaunching it (attempt {r.attempt} of {spec.retries + 1})")
                try:
                    launcher.relaunch(store, ids.node_id(parent, r.k), r.attempt, on_demand=r.on_demand)
                except RunnerError as e:
                    note(f"{parent}: {role} was not relaunched: {e}")
                statuses[r.k] = jobs.read_status(store, ids.node_id(parent, r.k))
            relaunching = statuses[0].state == jobs.PREEMPTED and attempts[0] <= spec.retries
        if follower:
            follower.poll()
        st = state.derive(statuses, n, relaunching)
        stored = jobs.read_status(store, parent)
        if stored.final:  # cancelled meanwhile: the nodes are being stopped
            st = stored
        elif st.final:
            st = jobs.write_status(store, parent, st)
        elif st.reason != said and progress:
            note(f"{parent}: {st.state}: {st.reason}")
            said = st.reason
        if st.final:
            end_workers(store, parent, grace=float(timings()["poll"]) * 3 + 30, poll=poll, note=note)
            if follower:
                follower.poll()
            for k in node_numbers(store, parent):  # on this host, a node ends when its machine is off
                watch.until_powered_off(store, ids.node_id(parent, k), poll)
            return st
        time.sleep(poll)
