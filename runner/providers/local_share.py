"""What a local VM sees of the store: its own job's folder read-write, its inputs read-only, nothing else.

The share root is a folder under the job's $RUNNER_HOME/local/<id>/ that mirrors the store's layout
(so the guest's /mnt/runner-store paths are unchanged); the bind mounts are made in a mount
namespace of virtiofsd's own, so nothing changes in the host's mount table.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from runner.errors import SpecError


@dataclass(frozen=True)
class Bind:
    """One path of the store shown to the VM: `source` on the host at `target` (relative to the share root)."""

    source: Path
    target: str
    writable: bool = False


def check_mount(path: str) -> str:
    """A store-relative input path, normalised; SpecError for anything absolute, climbing or empty."""
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or "\\" in path or any(p in ("..", ".") for p in path.split("/")) or not parts:
        raise SpecError(f"input path {path!r} is not a plain store-relative path (no leading '/', no '.' or '..'): "
                        "name inputs by their path inside the store, e.g. data/trips/")
    if any(ord(c) < 32 for c in path):
        raise SpecError(f"input path {path!r} holds a control character: rename it in the store")
    return "/".join(parts)


def plan(store: Path, job_id: str, mounts: Iterable[str]) -> list[Bind]:
    """The binds for one job, parents before children, the job's own folder last (read-write)."""
    root = store.resolve()
    binds = []
    for m in sorted({check_mount(m) for m in mounts}, key=lambda m: (m.count("/"), m)):
        source = root / m
        if not source.exists():
            raise SpecError(f"input {m!r} does not exist in the store ({root}): put it there first, or fix the path")
        real = source.resolve()
        if not real.is_relative_to(root):
            raise SpecError(f"input {m!r} leads out of the store (to {real}): a local VM sees only the store's own files")
        binds.append(Bind(real, m))
    own = root / "jobs" / job_id
    if not own.is_dir() or own.is_symlink():
        raise SpecError(f"the job's folder {own} is not a folder: launch it again")
    return [*_cluster_binds(root, job_id), *binds, Bind(own, f"jobs/{job_id}", writable=True), *_parent_binds(root, job_id)]


# A cluster's records in its folder that no node may replace (the head writes `head` and outputs/ beside them).
CLUSTER_RECORDS = ("job.json", "ray.sh", "status.json", "nodes")


def _cluster_binds(root: Path, job_id: str) -> list[Bind]:
    """A cluster node's view of its job's folder: the head writes in it (its address, the outputs) but not over the
    launcher's records; a worker reads it and the head's folder (the head's address and status)."""
    from runner.cluster.ids import node_id, parent_of

    found = parent_of(job_id)
    if not found:
        return []
    parent_id, k = found
    parent = root / "jobs" / parent_id
    if not parent.is_dir() or parent.is_symlink():
        raise SpecError(f"the cluster job's folder {parent} is not a folder: launch it again")
    if k:
        head = root / "jobs" / node_id(parent_id, 0)
        return [Bind(parent.resolve(), f"jobs/{parent_id}"), *([Bind(head.resolve(), head.relative_to(root).as_posix())]
                                                                if head.is_dir() and not head.is_symlink() else [])]
    (parent / "outputs").mkdir(exist_ok=True)
    binds = [Bind(parent.resolve(), f"jobs/{parent_id}", writable=True)]
    for name in CLUSTER_RECORDS:
        path = parent / name
        if path.is_symlink():
            raise SpecError(f"{path} is a link: a cluster job's records are plain files; launch it again")
        if path.exists():
            binds.append(Bind(path, f"jobs/{parent_id}/{name}"))
    return binds


# What a fan-out shard writes in its parent's folder: item results, the reduce, the reduce's outputs.
PARENT_WRITES = ("items", "reduce", "outputs")


def _parent_binds(root: Path, job_id: str) -> list[Bind]:
    """A shard's read-write view of its parent's item results, reduce and outputs (nothing else of the parent)."""
    from runner.fanout.ids import parent_of

    found = parent_of(job_id)
    if not found:
        return []
    parent = root / "jobs" / found[0]
    if not parent.is_dir() or parent.is_symlink():
        raise SpecError(f"the fan-out job's folder {parent} is not a folder: launch it again")
    binds = []
    for name in PARENT_WRITES:
        d = parent / name
        d.mkdir(exist_ok=True)
        if d.is_symlink() or not d.resolve().is_relative_to(parent.resolve()):
            raise SpecError(f"{d} leads out of its job's folder: it is not shared")
        binds.append(Bind(d.resolve(), f"jobs/{found[0]}/{name}", writable=True))
    return binds


def prepare(share: Path, binds: list[Bind]) -> None:
    """Create the share root and an empty mount point for each bind (a folder, or a file for a file)."""
    share.mkdir(parents=True, exist_ok=True)
    for b in binds:
        target = share / b.target
        if b.source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)


def script(share: Path, binds: list[Bind], serve: list[str]) -> str:
    """The shell script run in a fresh mount namespace: the binds, then `serve` (virtiofsd) exec'd."""
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        "# The VM's view of the store, mounted in this namespace only: the root and the inputs read-only,",
        "# the job's own folder read-write; then virtiofsd serves it.",
        "set -eu",
        f"mount --bind {q(str(share))} {q(str(share))}",
        f"mount -o remount,bind,ro {q(str(share))}",
    ]
    for b in binds:
        target = q(str(share / b.target))
        lines.append(f"mount --bind {q(str(b.source))} {target}")
        if not b.writable:
            lines.append(f"mount -o remount,bind,ro {target}")
    lines.append(f"exec {shlex.join(serve)}")
    return "\n".join(lines) + "\n"
