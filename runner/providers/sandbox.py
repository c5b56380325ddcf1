"""The sandbox backend: the exact rendered startup script, run on this host in a per-job folder.

Power-off is recorded, not performed: `poweroff` and `shutdown` are shims on the script's PATH
that write to power.log and then end every process of the sandbox, as a real power-off would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping

from runner import config
from runner.providers.base import Instance, InstanceState, LaunchRequest

POWEROFF = """#!/bin/bash
# sandbox shim: record the power-off, then end every process of this sandbox (as the VM would)
echo "poweroff $(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >> {dir}/power.log
kill -KILL 0
"""
SHUTDOWN = """#!/bin/bash
# sandbox shim: 'shutdown -P +MIN' schedules a power-off of this sandbox MIN minutes from now
echo "shutdown $(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >> {dir}/power.log
for a in "$@"; do case $a in +*) min=${{a#+}} ;; now) min=0 ;; esac; done
( sleep $(( ${{min:-1}} * 60 )); exec {dir}/bin/poweroff failsafe ) > /dev/null 2>&1 &
"""


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (to tell it from a later process with the same pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


class SandboxProvider:
    name = "sandbox"
    default_instance_type = "sandbox"

    def __init__(self) -> None:
        self.root = config.home() / "sandbox"

    def check_request(self, req: LaunchRequest) -> None:
        """Any instance type is accepted: the sandbox runs the script, it does not size a VM."""

    def store_for_vm(self, store: str) -> str:
        return store

    def launch(self, req: LaunchRequest) -> Instance:
        d = self.root / req.job_id
        (d / "bin").mkdir(parents=True, exist_ok=True)
        (d / "user-data").write_text(req.user_data)
        (d / "tags.json").write_text(json.dumps(dict(req.tags)))
        for name, text in (("poweroff", POWEROFF), ("shutdown", SHUTDOWN)):
            (d / "bin" / name).write_text(text.format(dir=_q(d)))
            (d / "bin" / name).chmod(0o755)
        env = {**os.environ, "RUNNER_VM_ROOT": str(d / "vm"), "PATH": f"{d / 'bin'}:{os.environ.get('PATH', '')}"}
        with open(d / "console.log", "ab") as console:
            proc = subprocess.Popen(
                ["bash", str(d / "user-data")],
                cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        data = {"dir": str(d), "pid": proc.pid, "start": _start_time(proc.pid)}
        (d / "instance.json").write_text(json.dumps(data))
        return Instance(cloud=self.name, id=f"sandbox-{proc.pid}", job_id=req.job_id, zone="localhost", data=data)

    def _alive(self, inst: Instance) -> bool:
        pid = int(inst.data["pid"])
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
        except ChildProcessError:
            pass
        start = _start_time(pid)
        return start is not None and start == inst.data.get("start")

    def state(self, inst: Instance) -> InstanceState:
        return InstanceState(alive=self._alive(inst))

    def terminate(self, inst: Instance) -> None:
        """SIGTERM the sandbox (the script's trap saves logs and status), SIGKILL after 15 s."""
        if not self._alive(inst):
            return
        pgid = int(inst.data["pid"])
        for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if not self._alive(inst):
                    return
                time.sleep(0.1)

    def find(self, tags: Mapping[str, str]) -> list[Instance]:
        found = []
        for d in sorted(self.root.glob("*/instance.json")):
            have = json.loads((d.parent / "tags.json").read_text())
            if all(have.get(k) == v for k, v in tags.items()):
                data = json.loads(d.read_text())
                inst = Instance(self.name, f"sandbox-{data['pid']}", d.parent.name, "localhost", data)
                if self._alive(inst):
                    found.append(inst)
        return found

    def console_output(self, inst: Instance) -> str:
        try:
            return (Path(str(inst.data["dir"])) / "console.log").read_text(errors="replace")
        except OSError:
            return ""


def _q(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))
