"""The sandbox backend: the exact rendered startup script, run on this host in a per-job folder.

Each sandbox is a pid namespace of its own whose init runs the script with the environment a
VM's job would have (never the launcher's). Power-off is recorded, not performed: `poweroff` and
`shutdown` are shims on the script's PATH that write to power.log and then end every process of
the namespace, as a real power-off would; nothing of the job outlives it.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping

from runner import config
from runner.errors import NotOwnedError, RunnerError
from runner.providers import proc
from runner.providers.base import Instance, InstanceState, LaunchRequest
from runner.providers.sandbox_env import aws_credentials, clouds_for, job_env

INIT_NAME = "runner-sandbox-init"
INIT = """#!/bin/bash
# sandbox init: pid 1 of the sandbox's pid namespace. Runs the startup script and passes SIGTERM and
# SIGINT on to it, as a VM's shutdown would; when the script ends, so does every process of the namespace.
bash "$1" & script=$!
trap 'kill -TERM "$script" 2>/dev/null' TERM
trap 'kill -INT "$script" 2>/dev/null' INT
while kill -0 "$script" 2>/dev/null; do wait "$script"; done
"""
POWEROFF = """#!/bin/bash
# sandbox shim: record the power-off, then end every process of this sandbox (as the VM would)
echo "poweroff $(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >> {dir}/power.log
# pid 1 is the sandbox's own init: -1 is then every process of its namespace, and nothing else
if grep -qs {init} /proc/1/cmdline; then kill -KILL -1; fi
kill -KILL 0
"""
SHUTDOWN = """#!/bin/bash
# sandbox shim: 'shutdown -P +MIN' schedules a power-off of this sandbox MIN minutes from now
echo "shutdown $(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >> {dir}/power.log
for a in "$@"; do case $a in +*) min=${{a#+}} ;; now) min=0 ;; esac; done
( sleep $(( ${{min:-1}} * 60 )); exec {dir}/bin/poweroff failsafe ) > /dev/null 2>&1 &
"""
PIDNS = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]


@functools.cache
def pidns_argv() -> tuple[str, ...]:
    """The unshare command that gives a sandbox its own pid namespace here (as root, or in a user namespace)."""
    errors = []
    for extra in ([], ["--user", "--map-root-user"]):
        argv = [*PIDNS, *extra]
        try:
            r = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            errors.append(str(e))
            continue
        if r.returncode == 0:
            return tuple(argv)
        errors.append(r.stderr.strip())
    raise RunnerError(
        f"the sandbox runs each job in a pid namespace of its own, and `unshare --pid` fails here ({'; '.join(errors)}): "
        "run as root, or allow user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
    )


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
        pidns_argv()

    def store_for_vm(self, store: str) -> str:
        return store

    def launch(self, req: LaunchRequest) -> Instance:
        d = self.root / req.job_id
        shutil.rmtree(d / "vm", ignore_errors=True)  # a relaunched job gets a fresh machine, as in a cloud
        (d / "bin").mkdir(parents=True, exist_ok=True)
        (d / "vm" / "home").mkdir(parents=True)
        (d / "user-data").write_text(req.user_data)
        (d / "tags.json").write_text(json.dumps(dict(req.tags)))
        for name, text in (("poweroff", POWEROFF), ("shutdown", SHUTDOWN), (INIT_NAME, INIT)):
            (d / "bin" / name).write_text(text.format(dir=shlex.quote(str(d)), init=INIT_NAME))
            (d / "bin" / name).chmod(0o755)
        store = config.store_uri()
        creds = aws_credentials(os.environ) if "aws" in clouds_for(store, self.interruption) else {}
        env = job_env(os.environ, store_uri=store, interruption=self.interruption, shims=str(d / "bin"),
                      vm_root=str(d / "vm"), home=str(d / "vm" / "home"), credentials=creds)
        argv = [*pidns_argv(), "bash", str(d / "bin" / INIT_NAME), str(d / "user-data")]
        data = {"dir": str(d), **proc.spawn(argv, d, env, d / "console.log")}
        (d / "instance.json").write_text(json.dumps(data))
        return Instance(cloud=self.name, id=f"sandbox-{data['pid']}", job_id=req.job_id, zone="localhost", data=data)

    def state(self, inst: Instance) -> InstanceState:
        try:
            data = proc.owned(self.root, inst, "sandbox")
        except NotOwnedError as e:
            return InstanceState(alive=False, reason=str(e))
        return InstanceState(alive=proc.alive(data))

    def terminate(self, inst: Instance, wait: bool = True) -> None:
        """SIGTERM the sandbox's init (the script's trap saves logs and status), SIGKILL all of it after 15 s.

        Acts only on the sandbox this host started for inst.job_id (its own record, not the store's).
        With wait=False it returns once the init is told; a detached reaper sends the SIGKILL, as a cloud would.
        """
        data = proc.owned(self.root, inst, "sandbox")
        if proc.alive(data):
            proc.stop(data, grace=15.0, polite=proc.children(int(data["pid"])), wait=wait)

    def find(self, tags: Mapping[str, str]) -> list[Instance]:
        found = []
        for d in sorted(self.root.glob("*/instance.json")):
            try:
                have = json.loads((d.parent / "tags.json").read_text())
                data = json.loads(d.read_text())
            except (OSError, ValueError):
                continue
            if all(have.get(k) == v or (v == "*" and k in have) for k, v in tags.items()) and proc.alive(data):
                found.append(Instance(self.name, f"sandbox-{data['pid']}", d.parent.name, "localhost", data))
        return found

    def console_output(self, inst: Instance) -> str:
        d = proc.record_dir(self.root, inst.job_id)
        try:
            return (d / "console.log").read_text(errors="replace") if d else ""
        except OSError:
            return ""
