"""Cancelling a job: the `cancel` marker first, then its VM (only one carrying its tag), then CANCELLED.

The marker tells the startup script, when the VM's shutdown ends it, that its end is a cancel (not a
failure). CANCELLED is a conditional write: a final status the VM wrote meanwhile stays, and cancel says so.
With wait=False (an interrupted CLI) a backend on this host returns once its VM is told to stop.
"""

from __future__ import annotations

import getpass
import inspect
import json
import socket
from dataclasses import dataclass, field

from runner import children, jobs
from runner.errors import NotOwnedError, RunnerError
from runner.providers import PROVIDERS, get_provider

REASON = "cancelled by `runner cancel`"


@dataclass
class Result:
    state: str  # the job's state afterwards
    lines: list[str] = field(default_factory=list)  # what happened, for the user


def _provider_and_vms(store, job_id: str, result: Result):
    """The backend and the VMs to stop: the recorded one, else every VM tagged with the job (by job.json's cloud)."""
    inst, why = jobs.read_instance(store, job_id)
    if inst:
        return get_provider(inst.cloud), [inst]
    result.lines.append(f"{job_id}: {why}; looking for VMs tagged runner-job={job_id}")
    try:
        cloud = jobs.read_json(store, job_id, "job.json").get("cloud")
    except RunnerError as e:
        cloud, why = None, str(e)
    if cloud not in PROVIDERS:
        result.lines.append(f"{job_id}: cannot tell its cloud ({why if cloud is None else f'job.json names {cloud!r}'}); no VM stopped")
        return None, []
    provider = get_provider(cloud)
    return provider, provider.find({"runner-job": job_id})


def _terminate(provider, vm, wait: bool) -> None:
    """provider.terminate, told not to wait for the VM to be gone when it can be (a cloud returns at once anyway)."""
    if not wait and "wait" in inspect.signature(provider.terminate).parameters:
        provider.terminate(vm, wait=False)
    else:
        provider.terminate(vm)


def cancel(store, job_id: str, wait: bool = True, reason: str = REASON) -> Result:
    """Cancel the job: marker, VM, status; a job that already ended is left as it is."""
    st = jobs.read_status(store, job_id)
    if st.final:
        return Result(st.state, [f"{job_id} already ended: {st.state} (it had already finished); nothing changed"])
    if (kind := children.parent_kind(store, job_id)) is not None:  # a fan-out's shards, a cluster's nodes (workers first)
        return Result(*children.cancel_children(store, job_id, st, kind, reason, lambda child: cancel(store, child, wait, reason).lines))
    marker = {"requested_at": jobs.utcnow(), "by": f"{getpass.getuser()}@{socket.gethostname()}"}
    store.put_bytes(jobs.job_key(job_id, "cancel"), json.dumps(marker).encode())
    result = Result(jobs.CANCELLED)
    provider, vms = _provider_and_vms(store, job_id, result)
    for vm in vms:
        try:
            _terminate(provider, vm, wait)
        except NotOwnedError as e:
            result.lines.append(f"{job_id}: {e}")
    last = jobs.read_status(store, job_id)
    wanted = jobs.Status(jobs.CANCELLED, exit_code=last.exit_code, reason=reason, started_at=last.started_at, ended_at=jobs.utcnow())
    now = jobs.write_status(store, job_id, wanted)
    result.state = now.state
    if now.state == jobs.CANCELLED:
        result.lines.append(f"{job_id}: CANCELLED")
    else:
        result.lines.append(f"{job_id} already ended: {now.state} (it had already finished, while being cancelled); it stays {now.state}")
    return result

