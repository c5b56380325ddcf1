"""Processes on this host that stand for a VM: started detached, told apart from a reused pid."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from runner.errors import NotOwnedError
from runner.providers.base import Instance

SAFE_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\Z")


def start_time(pid: int) -> str | None:
    """The kernel's start time of a live `pid`; None when it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid):
            found.append(int(stat.parent.name))
    return found


def spawn(argv: list[str], cwd: Path, env: dict, console: Path) -> dict:
    """Start `argv` in a session of its own, output to `console`; returns {pid, start} to find it again."""
    with open(console, "ab") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return {"pid": proc.pid, "start": start_time(proc.pid)}


def alive(data: dict) -> bool:
    """Whether the process recorded by `spawn` still runs (reaping it if it is our own child)."""
    pid = int(data["pid"])
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    start = start_time(pid)
    return start is not None and start == data.get("start")


def _wait_gone(data: dict, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive(data):
        time.sleep(0.1)
    return not alive(data)


def stop(data: dict, grace: float, polite: list[int] | None = None, wait: bool = True) -> None:
    """SIGTERM the process group (or only the pids in `polite`), then SIGKILL the group after `grace` seconds.

    With wait=False it returns once the SIGTERM is sent; a detached reaper sends the SIGKILL (see `reap_later`).
    """
    if not alive(data):
        return
    try:
        if polite is None:
            os.killpg(int(data["pid"]), signal.SIGTERM)
        for pid in polite or []:
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not wait:
        reap_later(data, grace)
        return
    if _wait_gone(data, grace):
        return
    try:
        os.killpg(int(data["pid"]), signal.SIGKILL)
    except ProcessLookupError:
        return
    _wait_gone(data, 5.0)


REAPER = "import json, sys; from runner.providers import proc; proc.stop(json.loads(sys.argv[1]), float(sys.argv[2]), polite=[])"


def reap_later(data: dict, grace: float) -> None:
    """A process of its own session that SIGKILLs the group `grace` seconds from now, unless it is gone first.

    It outlives the caller (an interrupted CLI exits at once); it checks the recorded start time, as `alive` does.
    """
    root = str(Path(__file__).resolve().parents[2])  # where `runner` is imported from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
    subprocess.Popen([sys.executable, "-c", REAPER, json.dumps(data), str(grace)], cwd="/", env=env,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def record_dir(root: Path, job_id: str) -> Path | None:
    """The folder a backend on this host keeps for `job_id`; None for anything that is not a plain name."""
    return root / job_id if SAFE_JOB_ID.match(job_id) and job_id not in (".", "..") else None


def owned(root: Path, inst: Instance, prefix: str) -> dict:
    """The backend's own record (under `root`) of the VM `inst` names; NotOwnedError unless it is that job's.

    `inst` comes from the store, which a job can write: only the record this backend wrote when it
    started the VM is used, and only when it carries the tag runner-job=<inst.job_id> and the same id.
    """
    d = record_dir(root, inst.job_id)
    try:
        if d is None:
            raise ValueError
        tags = json.loads((d / "tags.json").read_text())
        data = json.loads((d / "instance.json").read_text())
        mine = f"{prefix}-{int(data['pid'])}"
    except (OSError, ValueError, TypeError, KeyError):
        raise NotOwnedError(
            f"{inst.id!r} of job {inst.job_id!r} is not a VM this host started (no record under {root}): left alone"
        ) from None
    if not isinstance(tags, dict) or tags.get("runner-job") != inst.job_id:
        raise NotOwnedError(f"{mine} lacks the tag runner-job={inst.job_id}: left alone")
    if inst.id != mine:
        raise NotOwnedError(
            f"{inst.id!r} is not the VM this host started for job {inst.job_id} (that is {mine}, runner-job={inst.job_id}): left alone"
        )
    return data
