"""The local backend: a real VM under QEMU, booted from the image `make image` bakes.

The VM gets the rendered startup script as NoCloud user-data, no network at all (-nic none),
and the host's file:// store as a virtiofs share (tag runner-store, mounted by the image at
/mnt/runner-store). Its serial console is written into the job's logs in the store. The job
ends when the guest powers off and QEMU exits.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from runner import config, images
from runner.errors import RunnerError, SpecError
from runner.providers import proc
from runner.providers.base import Instance, InstanceState, LaunchRequest
from runner.store import split_uri

TYPE_RE = re.compile(r"^local-(\d+)x(\d+)\Z")
GUEST_STORE = "file:///mnt/runner-store"
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
POWERDOWN_GRACE = 120.0  # seconds for the guest's script to save its logs after an ACPI power-off


def parse_type(instance_type: str) -> tuple[int, int]:
    """'local-2x4' -> (2 vCPUs, 4 GiB)."""
    m = TYPE_RE.match(instance_type)
    if not m:
        raise SpecError(f"instance type {instance_type!r} is not a local type: use local-<vCPUs>x<GiB>, e.g. local-2x4")
    cpus, gib = int(m[1]), int(m[2])
    host_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30
    if not 1 <= cpus <= 4 * (os.cpu_count() or 1) or not 1 <= gib < host_gib:
        raise SpecError(f"instance type {instance_type!r} does not fit this host ({os.cpu_count()} CPUs, {host_gib} GiB)")
    return cpus, gib


def _q(path: str | Path) -> str:
    """A path inside a QEMU option value: commas are doubled."""
    return str(path).replace(",", ",,")


class LocalProvider:
    name = "local"
    default_instance_type = "local-2x4"
    interruption = ""  # a local VM is never taken back
    poweroff_wait = 180.0  # `--wait` returns when QEMU has exited, at most this long after the final status
    metadata_url = ""

    def __init__(self) -> None:
        self.root = config.home() / "local"

    def check_request(self, req: LaunchRequest) -> None:
        parse_type(req.instance_type)
        images.local_image(req.image)
        for tool in ("qemu-system-x86_64", "qemu-img", "cloud-localds"):
            if not shutil.which(tool):
                raise RunnerError(f"{tool} is not installed: apt-get install qemu-system-x86 qemu-utils cloud-image-utils")
        if not os.access(VIRTIOFSD, os.X_OK):
            raise RunnerError(f"{VIRTIOFSD} is missing: apt-get install qemu-system-common")

    def store_for_vm(self, store: str) -> str:
        if split_uri(store)[0] != "file":
            raise SpecError(f"the local backend shares a file:// store into the VM, and {store} is not one: unset RUNNER_STORE")
        return GUEST_STORE

    def launch(self, req: LaunchRequest) -> Instance:
        cpus, gib = parse_type(req.instance_type)
        image = images.local_image(req.image)
        store = Path(split_uri(config.store_uri())[2])
        d = self.root / req.job_id
        d.mkdir(parents=True, exist_ok=True)
        sockets = Path(tempfile.mkdtemp(prefix="runner-vm-"))  # unix socket paths must stay short
        console = store / "jobs" / req.job_id / "logs" / "console.log"
        console.parent.mkdir(parents=True, exist_ok=True)
        (d / "user-data").write_text(req.user_data)
        (d / "meta-data").write_text(f"instance-id: {req.job_id}\nlocal-hostname: {req.job_id[:63]}\n")
        (d / "tags.json").write_text(json.dumps(dict(req.tags)))
        _run(["cloud-localds", str(d / "seed.iso"), str(d / "user-data"), str(d / "meta-data")])
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "qcow2", str(d / "disk.qcow2"), f"{req.disk_gb}G"])
        accel = os.environ.get("RUNNER_LOCAL_ACCEL", "tcg")
        qemu = [
            "qemu-system-x86_64", "-name", req.job_id, "-no-reboot", "-nic", "none",
            *(["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg,thread=multi", "-cpu", "max"]),
            "-smp", str(cpus), "-m", f"{gib}G",
            "-object", f"memory-backend-memfd,id=mem,size={gib}G,share=on", "-numa", "node,memdev=mem",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", image.cmdline,
            "-drive", f"file={_q(d / 'disk.qcow2')},if=virtio,format=qcow2",
            "-drive", f"file={_q(d / 'seed.iso')},if=virtio,format=raw,readonly=on",
            "-chardev", f"socket,id=vfs,path={_q(sockets / 'vfsd.sock')}",
            "-device", "vhost-user-fs-pci,chardev=vfs,tag=runner-store",
            "-chardev", f"file,id=con,path={_q(console)}", "-serial", "chardev:con",
            "-qmp", f"unix:{_q(sockets / 'qmp.sock')},server=on,wait=off",
            "-display", "none", "-monitor", "none",
        ]
        (d / "run.sh").write_text(SUPERVISOR.format(
            vfsd=VIRTIOFSD, sock=shlex.quote(str(sockets / "vfsd.sock")), store=shlex.quote(str(store)),
            qemu=shlex.join(qemu), disk=shlex.quote(str(d / "disk.qcow2")), sockets=shlex.quote(str(sockets)),
        ))
        data = {"dir": str(d), "sockets": str(sockets), **proc.spawn(["bash", str(d / "run.sh")], d, dict(os.environ), d / "host.log")}
        (d / "instance.json").write_text(json.dumps(data))
        return Instance(cloud=self.name, id=f"qemu-{data['pid']}", job_id=req.job_id, zone="localhost", data=data)

    def state(self, inst: Instance) -> InstanceState:
        return InstanceState(alive=proc.alive(dict(inst.data)))

    def terminate(self, inst: Instance) -> None:
        """ACPI power-off (the guest's script saves logs and status), then kill QEMU if it lingers."""
        data = dict(inst.data)
        if not proc.alive(data):
            return
        try:
            _qmp(Path(str(data["sockets"])) / "qmp.sock", "system_powerdown")
        except OSError:
            pass
        proc.stop(data, grace=POWERDOWN_GRACE)

    def find(self, tags: Mapping[str, str]) -> list[Instance]:
        found = []
        for f in sorted(self.root.glob("*/instance.json")):
            have = json.loads((f.parent / "tags.json").read_text())
            data = json.loads(f.read_text())
            if all(have.get(k) == v or (v == "*" and k in have) for k, v in tags.items()) and proc.alive(data):
                found.append(Instance(self.name, f"qemu-{data['pid']}", f.parent.name, "localhost", data))
        return found

    def console_output(self, inst: Instance) -> str:
        console = Path(split_uri(config.store_uri())[2]) / "jobs" / inst.job_id / "logs" / "console.log"
        try:
            return console.read_text(errors="replace")
        except OSError:
            return ""


def _run(argv: list[str]) -> None:
    """A preparation step; its failure is a launch error that says what failed."""
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        raise RunnerError(f"{argv[0]} failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[-400:]}")


def _qmp(path: Path, command: str) -> None:
    """Send one QMP command to a running QEMU."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        f = s.makefile("rw")
        f.readline()  # greeting
        for cmd in ("qmp_capabilities", command):
            f.write(json.dumps({"execute": cmd}) + "\n")
            f.flush()
            f.readline()


# The VM's lifetime on the host: virtiofsd for the store, QEMU in the foreground, then cleanup.
SUPERVISOR = """#!/bin/bash
set -u
echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) start"
{vfsd} --socket-path={sock} -o source={store} -o cache=none &
for _ in $(seq 100); do [ -S {sock} ] && break; sleep 0.05; done
{qemu}
rc=$?
echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) qemu exited with code $rc"
rm -f {disk}
rm -rf {sockets}
exit $rc
"""
