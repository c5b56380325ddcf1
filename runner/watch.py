"""Following a job from any machine with the store: reconcile with the VM, wait, stream the log."""

from __future__ import annotations

import sys
import time
from typing import BinaryIO

from runner import jobs
from runner.logs import Follower
from runner.progress import Looker, Progress
from runner.providers import get_provider
from runner.providers.base import Instance, InstanceState
from runner.store import Store

# `runner launch --wait` exits with the job's own exit code, or with one of these.
EXIT_CODES = {
    jobs.SUCCEEDED: 0,
    jobs.FAILED: 70,  # failed before the job's command ran (a missing input, an upload); else its code
    jobs.LOST: 71,  # the VM went away without writing a final status
    jobs.PREEMPTED: 75,  # the cloud took the spot VM back
    jobs.TIMED_OUT: 124,  # ran past max_runtime (as timeout(1))
    jobs.CANCELLED: 130,  # `runner cancel`
}


def exit_code(status: jobs.Status) -> int:
    if status.state == jobs.FAILED and status.exit_code:
        return int(status.exit_code)
    return EXIT_CODES.get(status.state, 70)


def instance_of(store: Store, job_id: str) -> Instance | None:
    """The job's VM from instance.json; None when none is known (none yet, a relaunch starting, a bad record)."""
    return jobs.read_instance(store, job_id)[0]


def refresh(store: Store, job_id: str, check_vm: bool = True) -> jobs.Status:
    """The job's status, reconciled with its VM (when `check_vm`): a VM gone without a final status is LOST."""
    return _reconcile(store, job_id, check_vm)[0]


def _reconcile(store: Store, job_id: str, check_vm: bool) -> tuple[jobs.Status, InstanceState | None]:
    """`refresh`, and the VM's state when it was asked."""
    status = jobs.read_status(store, job_id)
    if status.final or not check_vm:
        return status, None
    inst = instance_of(store, job_id)
    if inst is None:
        return status, None
    vm = get_provider(inst.cloud).state(inst)
    if vm.alive:
        return status, vm
    state = jobs.PREEMPTED if vm.preempted else jobs.LOST
    reason = vm.reason or f"the VM {inst.id} is gone and never wrote a final status"
    lost = jobs.Status(state, reason=reason, started_at=status.started_at, ended_at=jobs.utcnow())
    return jobs.write_status(store, job_id, lost), vm  # a final status the VM wrote just before going stays


def wait(store: Store, job_id: str, follow: bool = False, out: BinaryIO | None = None, poll: float = 0.5,
         follower: Follower | None = None, progress: Progress | None = None) -> jobs.Status:
    """Block until the job reaches a final state, printing its log as it grows when `follow`.

    Pass the same `follower` to each wait of one job (e.g. across relaunches) so no attempt is printed twice.
    With `progress`, a line on stderr says where the job is (cleared before each piece of the log).
    """
    if follow and follower is None:
        follower = Follower(store, job_id, out or sys.stdout.buffer)
    if progress and follower:
        follower.out = progress.guard(follower.out)
    looker = Looker(store, job_id) if progress else None
    next_check, every, vm = 0.0, None, None
    try:
        while True:
            now = time.monotonic()
            status, seen = _reconcile(store, job_id, check_vm=now >= next_check)
            vm = seen or vm
            if now >= next_check:  # ask the cloud at most every `state_every` seconds; the store every poll
                if every is None and (inst := instance_of(store, job_id)):
                    every = float(getattr(get_provider(inst.cloud), "state_every", 0.0))
                next_check = now + (every or 0.0)
            if follower:
                follower.poll()  # after the status: a final status is written after the last log push
            if progress and looker:
                progress.update(*looker.look(status, vm))
            if status.final:
                until_powered_off(store, job_id, poll)
                return status
            time.sleep(poll)
    finally:
        if progress:
            progress.close()


def until_powered_off(store: Store, job_id: str, poll: float) -> None:
    """For a backend on this host (a local VM), the job ends when the machine is off: wait for it, bounded."""
    inst = instance_of(store, job_id)
    provider = get_provider(inst.cloud) if inst else None
    deadline = time.monotonic() + float(getattr(provider, "poweroff_wait", 0.0))
    while provider and time.monotonic() < deadline and provider.state(inst).alive:
        time.sleep(poll)
