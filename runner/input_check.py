"""Before a launch on this host: the store-relative inputs of a job are in its file:// store, or nothing is created.

A job folder that ships `make_data.py OUT_DIR` (as jobs/taxi does) makes its own example input:
the error then names that exact command.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from runner.errors import NotFoundError
from runner.spec import URI_RE, JobSpec
from runner.store import split_uri

DATA_MAKER = "make_data.py"
HOST_CLOUDS = ("sandbox", "local")  # their VM reads the same folder the launcher sees


def missing(spec: JobSpec, store: str) -> list[tuple[str, Path]]:
    """The spec's store-relative inputs a file:// store lacks: (input, path); a prefix needs a file below it."""
    if split_uri(store)[0] != "file":
        return []  # a bucket is listed by the VM itself: no cloud call before the launch
    root = Path(split_uri(store)[2])
    found = []
    for uri in spec.inputs:
        if URI_RE.match(uri):
            continue
        path = root / uri
        if not (_holds_a_file(path) if uri.endswith("/") else path.is_file()):
            found.append((uri, path))
    return found


def _holds_a_file(folder: Path) -> bool:
    """Whether a folder (not a link) holds at least one file, at any depth."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return any(files for _, _, files in os.walk(folder))


def _shown(path: Path) -> str:
    """A path as a user types it here: relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())


def check(spec: JobSpec, store: str, job_dir: Path, cloud: str) -> None:
    """On a host backend: NotFoundError naming each missing input, where it belongs and the command that puts it there."""
    absent = missing(spec, store) if cloud in HOST_CLOUDS else []
    if not absent:
        return
    uri, path = absent[0]
    target = shlex.quote(str(path).rstrip("/"))
    maker = job_dir / DATA_MAKER
    if maker.is_file():
        how = f"Make it with: python3 {shlex.quote(_shown(maker))} {target}"
    else:
        how = f"Copy it there first, e.g. mkdir -p {target} && cp -r YOUR_DATA/. {target}/" if uri.endswith("/") \
            else f"Copy it there first, e.g. mkdir -p {shlex.quote(str(path.parent))} && cp YOUR_FILE {target}"
    others = "".join(f"; also missing: {u!r}" for u, _ in absent[1:])
    raise NotFoundError(
        f"input {uri!r} is not in the store: {'no file below' if uri.endswith('/') else 'no file'} {path}; "
        f"nothing was launched. {how}{others}"
    )
