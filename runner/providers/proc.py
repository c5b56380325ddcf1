"""Processes on this host that stand for a VM: started detached, told apart from a reused pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The kernel's start time of a live `pid`; None when it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


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


def stop(data: dict, grace: float) -> None:
    """SIGTERM the process group, then SIGKILL after `grace` seconds; returns when it is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not alive(data):
            return
        try:
            os.killpg(int(data["pid"]), sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and alive(data):
            time.sleep(0.1)
