"""The sandbox backend: the exact rendered startup script, run on this host in a per-job folder.

Power-off is recorded, not performed: `poweroff` and `shutdown` are shims on the script's PATH
that write to power.log and then end every process of the sandbox, as a real power-off would.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

from runner import config
from runner.providers import proc
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


class SandboxProvider:
    name = "sandbox"
    default_instance_type = "sandbox"
    poweroff_wait = 10.0  # `--wait` returns when the script has powered the sandbox off

    def __init__(self) -> None:
        self.root = config.home() / "sandbox"
        # Rehearse a spot interruption: point the script at a metadata server of your own.
        self.interruption = os.environ.get("RUNNER_SANDBOX_INTERRUPTION", "")
        self.metadata_url = os.environ.get("RUNNER_SANDBOX_METADATA_URL", "")

    def check_request(self, req: LaunchRequest) -> None:
        """Any instance type is accepted: the sandbox runs the script, it does not size a VM."""

    def store_for_vm(self, store: str) -> str:
        return store

    def launch(self, req: LaunchRequest) -> Instance:
        d = self.root / req.job_id
        shutil.rmtree(d / "vm", ignore_errors=True)  # a relaunched job gets a fresh machine, as in a cloud
        (d / "bin").mkdir(parents=True, exist_ok=True)
        (d / "user-data").write_text(req.user_data)
        (d / "tags.json").write_text(json.dumps(dict(req.tags)))
        for name, text in (("poweroff", POWEROFF), ("shutdown", SHUTDOWN)):
            (d / "bin" / name).write_text(text.format(dir=shlex.quote(str(d))))
            (d / "bin" / name).chmod(0o755)
        env = {**os.environ, "RUNNER_VM_ROOT": str(d / "vm"), "PATH": f"{d / 'bin'}:{os.environ.get('PATH', '')}"}
        data = {"dir": str(d), **proc.spawn(["bash", str(d / "user-data")], d, env, d / "console.log")}
        (d / "instance.json").write_text(json.dumps(data))
        return Instance(cloud=self.name, id=f"sandbox-{data['pid']}", job_id=req.job_id, zone="localhost", data=data)

    def state(self, inst: Instance) -> InstanceState:
        return InstanceState(alive=proc.alive(dict(inst.data)))

    def terminate(self, inst: Instance) -> None:
        """SIGTERM the sandbox (the script's trap saves logs and status), SIGKILL after 15 s."""
        proc.stop(dict(inst.data), grace=15.0)

    def find(self, tags: Mapping[str, str]) -> list[Instance]:
        found = []
        for d in sorted(self.root.glob("*/instance.json")):
            have = json.loads((d.parent / "tags.json").read_text())
            if all(have.get(k) == v or (v == "*" and k in have) for k, v in tags.items()):
                data = json.loads(d.read_text())
                inst = Instance(self.name, f"sandbox-{data['pid']}", d.parent.name, "localhost", data)
                if proc.alive(data):
                    found.append(inst)
        return found

    def console_output(self, inst: Instance) -> str:
        try:
            return (Path(str(inst.data["dir"])) / "console.log").read_text(errors="replace")
        except OSError:
            return ""

