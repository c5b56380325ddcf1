"""A cluster job's private network between its local VMs: one L2 link per job, frames only through unix sockets.

Each node VM keeps `-nic none` and gets one more NIC: a QEMU `dgram` netdev bound to the unix socket vm<K>.sock in
the job's socket folder (0700, under /tmp: socket paths must stay short) that sends every frame to hub.sock there.
The hub (runner/providers/local_hub.py, one detached process per job) forwards frames between those sockets only.
Node K has the static address 10.X.Y.(K+2)/24 from its NoCloud network-config; 10.X.Y is reserved per job on this
host, so two cluster jobs never share a subnet. The hub ends, and the reservation and sockets go, when the job's
last VM has ended. Pure planning first (the Net, QEMU's argv, the network-config), then the acting (reserve, attach).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runner import config
from runner.errors import RunnerError, SpecError
from runner.providers import proc

PREFIX_RE = re.compile(r"^10\.(25[0-4]|2[0-4]\d|1\d\d|[1-9]\d?)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\Z")  # 10.1.0 .. 10.254.255
VM_SOCKET_RE = re.compile(r"^vm(0|[1-9]\d?)\.sock\Z")
MAX_NODES = 64
STALE = 600.0  # s a reservation without a live VM is kept (a launch under way), then it is free again


@dataclass(frozen=True)
class Net:
    """One job's link: its subnet prefix (10.X.Y) and the folder of its unix sockets."""

    parent: str
    prefix: str
    sockets: Path

    def address(self, k: int) -> str:
        """Node k's address on the link: 10.X.Y.(k+2)."""
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < MAX_NODES:
            raise SpecError(f"node {k!r}: a node on a local private network is numbered 0 to {MAX_NODES - 1}")
        return f"{self.prefix}.{k + 2}"

    def mac(self, k: int) -> str:
        """Node k's MAC on the link (QEMU's 52:54 prefix, then the subnet and k): unique on it."""
        _, x, y = (int(o) for o in self.prefix.split("."))
        self.address(k)
        return f"52:54:{x:02x}:{y:02x}:00:{k + 2:02x}"

    def vm_socket(self, k: int) -> Path:
        """The unix socket node k's QEMU binds (its end of the link)."""
        self.address(k)
        return self.sockets / f"vm{k}.sock"

    @property
    def hub_socket(self) -> Path:
        return self.sockets / "hub.sock"


def candidates(parent: str) -> Iterator[str]:
    """Every subnet prefix 10.X.Y (X 1-254), starting at one derived from the job id, then in order."""
    start = int.from_bytes(hashlib.sha256(parent.encode()).digest()[:4], "big") % (254 * 256)
    for i in range(254 * 256):
        n = (start + i) % (254 * 256)
        yield f"10.{n // 256 + 1}.{n % 256}"


def qemu_args(net: Net, k: int) -> list[str]:
    """QEMU options for node k's second NIC: a dgram netdev between its unix socket and the job's hub, nothing else."""
    for path in (net.vm_socket(k), net.hub_socket):
        if "," in str(path) or len(str(path)) > 100:
            raise RunnerError(f"socket path {path} has a comma or is too long for a unix socket: set TMPDIR to a short folder")
    return ["-netdev", f"dgram,id=cluster,local.type=unix,local.path={net.vm_socket(k)},"
                       f"remote.type=unix,remote.path={net.hub_socket}",
            "-device", f"virtio-net-pci,netdev=cluster,mac={net.mac(k)}"]


def network_config(net: Net, k: int) -> str:
    """NoCloud network-config (v2): the NIC with node k's MAC, named cluster0, at 10.X.Y.(k+2)/24; no route, no DNS."""
    return (
        "version: 2\n"
        "ethernets:\n"
        "  cluster0:\n"
        f"    match: {{macaddress: \"{net.mac(k)}\"}}\n"
        "    set-name: cluster0\n"
        f"    addresses: [\"{net.address(k)}/24\"]\n"
        "    dhcp4: false\n"
        "    dhcp6: false\n"
    )


def check_cluster(nodes: int, gib: int, host_gib: int) -> None:
    """A SpecError when the nodes' memory together does not fit this host (every local node is a VM here)."""
    if nodes * gib >= host_gib:
        raise SpecError(f"nodes: {nodes} local VMs of {gib} GiB each need {nodes * gib} GiB, and this host has {host_gib} GiB: "
                        f"use fewer nodes or a smaller --type (e.g. local-1x2), or --cloud sandbox")


# The acting part: records under $RUNNER_HOME/local/net/, one <parent>.json per reserved network.


def root() -> Path:
    return config.home() / "local" / "net"


@contextmanager
def locked() -> Iterator[None]:
    """The host-wide lock every reservation, attach and hub exit takes."""
    root().mkdir(parents=True, exist_ok=True)
    with open(root() / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _record_path(parent: str) -> Path:
    if not proc.SAFE_JOB_ID.match(parent):
        raise SpecError(f"{parent!r} is not a job id")
    return root() / f"{parent}.json"


def read(path: Path) -> dict | None:
    """A reservation record (ours, but checked): None when it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(data, dict) and PREFIX_RE.match(str(data.get("prefix", ""))) and isinstance(data.get("sockets"), str)
          and isinstance(data.get("created"), (int, float)) and isinstance(data.get("members", {}), dict))
    return data if ok else None


def _net(parent: str, data: dict) -> Net:
    return Net(parent, data["prefix"], Path(data["sockets"]))


def live_members(data: dict) -> list[int]:
    """The node numbers whose VM (its supervisor) still runs."""
    out = []
    for k, member in data.get("members", {}).items():
        if isinstance(member, dict) and str(k).isdigit() and member.get("pid") and proc.alive(member):
            out.append(int(k))
    return sorted(out)


def hub_alive(data: dict) -> bool:
    hub = data.get("hub")
    return isinstance(hub, dict) and bool(hub.get("pid")) and proc.alive(hub)


def unused(data: dict, now: float) -> bool:
    """Whether a reservation can go: no live VM, and either its VMs have all ended or none came for STALE seconds."""
    if live_members(data):
        return False
    return bool(data.get("members")) or now - data["created"] > STALE


def release(path: Path, data: dict | None) -> None:
    """Remove a reservation and its socket folder (only a runner-net-* folder under the temp dir)."""
    if data:
        sockets = Path(data["sockets"])
        if sockets.name.startswith("runner-net-") and sockets.parent == Path(tempfile.gettempdir()) and not sockets.is_symlink():
            shutil.rmtree(sockets, ignore_errors=True)
    path.with_suffix(".hub.log").unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def reserve(parent: str) -> Net:
    """This job's network: its subnet reserved on this host (stale reservations freed first) and its socket folder."""
    path = _record_path(parent)
    with locked():
        now = time.time()
        taken = set()
        for other in root().glob("*.json"):
            data = read(other)
            if other == path and data:
                return _net(parent, data)
            if data is None or (unused(data, now) and not hub_alive(data)):
                release(other, data)
            else:
                taken.add(data["prefix"])
        prefix = next((p for p in candidates(parent) if p not in taken), None)
        if prefix is None:
            raise RunnerError(f"every 10.X.Y.0/24 subnet is reserved by a running cluster job on this host ({root()}): wait for one to end")
        sockets = Path(tempfile.mkdtemp(prefix="runner-net-"))
        path.write_text(json.dumps({"parent": parent, "prefix": prefix, "sockets": str(sockets), "created": now, "members": {}}))
        return Net(parent, prefix, sockets)


def lookup(parent: str) -> Net:
    """The network reserved for `parent`; RunnerError when there is none."""
    path = _record_path(parent)
    data = read(path)
    if data is None:
        raise RunnerError(f"cluster job {parent} has no private network on this host (no {path}; its VMs all ended?): "
                          f"launch the job again")
    return _net(parent, data)


def attach(parent: str, k: int, start) -> dict:
    """Start node k's VM with `start()` (it returns the supervisor's {pid, start}) with the job's hub running."""
    path = _record_path(parent)
    with locked():
        data = read(path)
        if data is None:
            lookup(parent)
        net = _net(parent, data)
        net.vm_socket(k).unlink(missing_ok=True)
        if not hub_alive(data):
            argv = [sys.executable, "-m", "runner.providers.local_hub", str(path)]
            data["hub"] = proc.spawn(argv, Path("/"), {**os.environ, "PYTHONPATH": _import_root()}, path.with_suffix(".hub.log"))
        vm = start()
        data.setdefault("members", {})[str(k)] = {"pid": vm["pid"], "start": vm["start"]}
        path.write_text(json.dumps(data))
        return vm


def _import_root() -> str:
    here = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join(filter(None, (here, os.environ.get("PYTHONPATH"))))
