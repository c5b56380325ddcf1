"""The local backend: a real VM under QEMU, booted from the image `make image` bakes.

The VM gets the rendered startup script as NoCloud user-data, no network at all (-nic none; a cluster
node has one more NIC, on its job's private network alone: local_net.py), and a virtiofs share (tag
runner-store, mounted by the image at /mnt/runner-store) that shows it
its own job's folder read-write and its inputs read-only, nothing else of the store. Its serial
console is written into the job's logs in the store. The job ends when the guest powers off and
QEMU exits; a QEMU that fails says why in the job's LOST reason and console log.
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
from typing import NamedTuple

from runner import config, images
from runner.errors import NotOwnedError, RunnerError, SpecError
from runner.providers import local_doctor, local_net, local_share, proc
from runner.providers.base import Instance, InstanceState, LaunchRequest
from runner.store import split_uri

TYPE_RE = re.compile(r"^local-(\d+)x(\d+)(?:-nvme(\d+))?\Z")
MAX_NVME = 8  # emulated NVMe drives per VM
NVME_GIB = 2  # size of each drive unless $RUNNER_LOCAL_NVME_GIB says otherwise
GUEST_STORE = "file:///mnt/runner-store"
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
POWERDOWN_GRACE = 120.0  # seconds for the guest's script to save its logs after an ACPI power-off
FAILURE_LIMIT = 2000  # characters of QEMU's own error kept in a job's reason


class LocalType(NamedTuple):
    cpus: int
    gib: int
    nvme: int  # emulated NVMe drives, the VM's instance store


def parse_type(instance_type: str) -> LocalType:
    """'local-2x4' -> (2 vCPUs, 4 GiB, no drives); 'local-2x4-nvme2' -> the same with 2 emulated NVMe drives."""
    m = TYPE_RE.match(instance_type)
    if not m:
        raise SpecError(f"instance type {instance_type!r} is not a local type: use local-<vCPUs>x<GiB>, e.g. local-2x4, "
                        "or local-<vCPUs>x<GiB>-nvme<N> for N emulated NVMe drives, e.g. local-2x4-nvme2")
    cpus, gib, nvme = int(m[1]), int(m[2]), int(m[3] or 0)
    host_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30
    if not 1 <= cpus <= 4 * (os.cpu_count() or 1) or not 1 <= gib < host_gib:
        raise SpecError(f"instance type {instance_type!r} does not fit this host ({os.cpu_count()} CPUs, {host_gib} GiB)")
    if m[3] is not None and not 1 <= nvme <= MAX_NVME:
        raise SpecError(f"instance type {instance_type!r} asks for {nvme} NVMe drives: use 1 to {MAX_NVME}, e.g. local-{cpus}x{gib}-nvme2")
    return LocalType(cpus, gib, nvme)


def nvme_gib() -> int:
    """$RUNNER_LOCAL_NVME_GIB: the size of each emulated NVMe drive (a sparse file), 2 GiB unless set."""
    value = os.environ.get("RUNNER_LOCAL_NVME_GIB", "").strip() or str(NVME_GIB)
    if not value.isdigit() or not 1 <= int(value) <= 1024:
        raise SpecError(f"RUNNER_LOCAL_NVME_GIB={value!r} is not a whole number of GiB from 1 to 1024: set it to e.g. 2, or unset it")
    return int(value)


def nvme_drives(d: Path, count: int) -> list[Path]:
    """The backing files of a VM's emulated NVMe drives, in its local dir."""
    return [d / f"nvme{k}.raw" for k in range(count)]


def nvme_args(drives: list[Path]) -> list[str]:
    """QEMU options that attach each file as an NVMe drive with the serial runner-scratch-K (how the guest finds them)."""
    args = []
    for k, path in enumerate(drives):
        args += ["-drive", f"file={_q(path)},if=none,format=raw,id=scratch{k}",
                 "-device", f"nvme,serial=runner-scratch-{k},drive=scratch{k}"]
    return args


def create_drives(drives: list[Path], gib: int) -> None:
    """Fresh sparse files of `gib` GiB each: all zeros, so a drive never carries an earlier attempt's data."""
    for path in drives:
        with open(path, "wb") as f:
            f.truncate(gib << 30)


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
        if parse_type(req.instance_type).nvme:
            nvme_gib()
        local_doctor.accel_setting()
        images.local_image(req.image)
        for tool in ("qemu-system-x86_64", "qemu-img", "cloud-localds", "unshare"):
            if not shutil.which(tool):
                raise RunnerError(f"{tool} is not installed: apt-get install qemu-system-x86 qemu-utils cloud-image-utils")
        if not os.access(VIRTIOFSD, os.X_OK):
            raise RunnerError(f"{VIRTIOFSD} is missing: apt-get install qemu-system-common")

    def store_for_vm(self, store: str) -> str:
        if split_uri(store)[0] != "file":
            raise SpecError(f"the local backend shares a file:// store into the VM, and {store} is not one: unset RUNNER_STORE")
        return GUEST_STORE

    def launch(self, req: LaunchRequest) -> Instance:
        cpus, gib, nvme = parse_type(req.instance_type)
        image = images.local_image(req.image)
        store = Path(split_uri(config.store_uri())[2])
        binds = local_share.plan(store, req.job_id, req.mounts)
        accel = local_doctor.chosen_accel()
        d = self.root / req.job_id
        d.mkdir(parents=True, exist_ok=True)
        for stale in ("failure", "qemu.log", *(p.name for p in d.glob("nvme*.raw"))):
            (d / stale).unlink(missing_ok=True)
        local_share.prepare(d / "share", binds)
        sockets = Path(tempfile.mkdtemp(prefix="runner-vm-"))  # unix socket paths must stay short
        console = store / "jobs" / req.job_id / "logs" / "console.log"
        console.parent.mkdir(parents=True, exist_ok=True)
        (d / "user-data").write_text(req.user_data)
        (d / "meta-data").write_text(f"instance-id: {req.job_id}\nlocal-hostname: {req.job_id[:63]}\n")
        (d / "tags.json").write_text(json.dumps(dict(req.tags)))
        node, nic = _cluster_node(req), []
        if node:  # a cluster node: a second NIC on the job's private network, its address in the seed
            net = local_net.lookup(node[0])
            (d / "network-config").write_text(local_net.network_config(net, node[1]))
            nic = local_net.qemu_args(net, node[1])
        seed = [f"--network-config={d / 'network-config'}"] if node else []
        _run(["cloud-localds", *seed, str(d / "seed.iso"), str(d / "user-data"), str(d / "meta-data")])
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "qcow2", str(d / "disk.qcow2"), f"{req.disk_gb}G"])
        drives = nvme_drives(d, nvme)
        if drives:
            create_drives(drives, nvme_gib())
        qemu = [
            "qemu-system-x86_64", "-name", req.job_id, "-no-reboot", "-nic", "none",
            *accel,
            "-smp", str(cpus), "-m", f"{gib}G",
            "-object", f"memory-backend-memfd,id=mem,size={gib}G,share=on", "-numa", "node,memdev=mem",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", image.cmdline,
            "-drive", f"file={_q(d / 'disk.qcow2')},if=virtio,format=qcow2",
            "-drive", f"file={_q(d / 'seed.iso')},if=virtio,format=raw,readonly=on",
            *nvme_args(drives), *nic,
            "-chardev", f"socket,id=vfs,path={_q(sockets / 'vfsd.sock')}",
            "-device", "vhost-user-fs-pci,chardev=vfs,tag=runner-store",
            "-chardev", f"file,id=con,path={_q(console)}", "-serial", "chardev:con",
            "-qmp", f"unix:{_q(sockets / 'qmp.sock')},server=on,wait=off",
            "-display", "none", "-monitor", "none",
        ]
        serve = [VIRTIOFSD, f"--socket-path={sockets / 'vfsd.sock'}", "-o", f"source={d / 'share'}", "-o", "cache=none"]
        (d / "share.sh").write_text(local_share.script(d / "share", binds, serve))
        q = shlex.quote
        (d / "run.sh").write_text(SUPERVISOR.format(
            share=q(str(d / "share.sh")), sock=q(str(sockets / "vfsd.sock")), qemu=shlex.join(qemu),
            disks=shlex.join(str(p) for p in (d / "disk.qcow2", *drives)), sockets=q(str(sockets)), qemu_log=q(str(d / "qemu.log")),
            share_log=q(str(d / "share.log")), failure=q(str(d / "failure")), console=q(str(console)),
        ))
        def start() -> dict:
            return proc.spawn(["bash", str(d / "run.sh")], d, dict(os.environ), d / "host.log")

        data = {"dir": str(d), "sockets": str(sockets), **(local_net.attach(*node, start) if node else start())}
        (d / "instance.json").write_text(json.dumps(data))
        return Instance(cloud=self.name, id=f"qemu-{data['pid']}", job_id=req.job_id, zone="localhost", data=data)

    def state(self, inst: Instance) -> InstanceState:
        """Alive while QEMU runs; once gone, the reason holds QEMU's own error if it failed."""
        try:
            data = proc.owned(self.root, inst, "qemu")
        except NotOwnedError as e:
            return InstanceState(alive=False, reason=str(e))
        if proc.alive(data):
            return InstanceState(alive=True)
        try:
            failure = (self.root / inst.job_id / "failure").read_text(errors="replace").strip()
        except OSError:
            failure = ""
        return InstanceState(alive=False, reason=f"the VM {inst.id} is gone: {failure[-FAILURE_LIMIT:]}" if failure else "")

    def terminate(self, inst: Instance, wait: bool = True) -> None:
        """ACPI power-off (the guest's script saves logs and status), then kill QEMU if it lingers.

        Acts only on the VM this host started for inst.job_id (its own record, not the store's).
        With wait=False it returns once the guest is told; a detached reaper kills QEMU if it lingers.
        """
        data = proc.owned(self.root, inst, "qemu")
        if not proc.alive(data):
            return
        qmp = Path(str(data["sockets"])) / "qmp.sock"
        try:
            if not qmp.is_socket():
                raise OSError(f"no QMP socket at {qmp}")
            _qmp(qmp, "system_powerdown")
            polite: list[int] | None = []  # the guest powers itself off; QEMU then exits by itself
        except OSError:
            polite = None  # no way to ask the guest: SIGTERM to QEMU
        proc.stop(data, grace=POWERDOWN_GRACE, polite=polite, wait=wait)

    def find(self, tags: Mapping[str, str]) -> list[Instance]:
        found = []
        for f in sorted(self.root.glob("*/instance.json")):
            try:
                have = json.loads((f.parent / "tags.json").read_text())
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if all(have.get(k) == v or (v == "*" and k in have) for k, v in tags.items()) and proc.alive(data):
                found.append(Instance(self.name, f"qemu-{data['pid']}", f.parent.name, "localhost", data))
        return found

    def console_output(self, inst: Instance) -> str:
        if proc.record_dir(self.root, inst.job_id) is None:
            return ""
        console = Path(split_uri(config.store_uri())[2]) / "jobs" / inst.job_id / "logs" / "console.log"
        try:
            return console.read_text(errors="replace")
        except OSError:
            return ""

    def doctor(self) -> list[tuple[bool, str, str]]:
        """Tools, image, and whether KVM works on this host (a probe boot)."""
        return local_doctor.run()


def _cluster_node(req: LaunchRequest) -> tuple[str, int] | None:
    """(parent, k) when the request is for node k of a cluster job (it carries the cluster's network tag)."""
    from runner.cluster.ids import parent_of

    return parent_of(req.job_id) if req.network_tag else None


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


# The VM's lifetime on the host: virtiofsd for the job's share (in a mount namespace of its own),
# QEMU in the foreground, then cleanup. A failure leaves QEMU's own words in `failure` and the console log.
SUPERVISOR = """#!/bin/bash
set -u
echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) start"
unshare --mount --propagation private bash {share} > {share_log} 2>&1 &
vfsd=$!
for _ in $(seq 100); do [ -S {sock} ] && break; sleep 0.05; done
if [ -S {sock} ]; then
  {qemu} 2>> {qemu_log}
  rc=$?
else
  echo "the store share did not start: $(tail -n 3 {share_log})" >> {qemu_log}
  rc=1
fi
echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) qemu exited with code $rc"
if [ "$rc" -ne 0 ]; then
  {{ echo "QEMU exited with code $rc: $(tail -n 5 {qemu_log} | tr "\\n" " ")"; }} > {failure}
  {{ echo; echo "runner (host): $(cat {failure})"; }} >> {console}
fi
kill "$vfsd" 2>/dev/null
wait "$vfsd" 2>/dev/null
rm -f {disks}
rm -rf {sockets}
exit $rc
"""
