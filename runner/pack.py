"""Packing a job's folder: what ships (ignore files; never credentials or links out), streamed to a capped .tar.gz.

What is left out, in order: credentials folders and files (always; see NEVER), then whatever the
folder's .runnerignore files, its .gitignore files (and those of the git repository above it) and
the defaults (caches, virtualenvs) leave out; a .runnerignore beats a .gitignore, so `!name` there
ships a file git ignores. A symbolic link ships as a link only when it points inside the folder.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from runner import config
from runner.errors import SpecError
from runner.ignore import Ignore, Patterns, parse

CODE_LIMIT = 512 * 1024 * 1024  # packed bytes
RAW_LIMIT = 8 * CODE_LIMIT  # file bytes: more is refused before anything is compressed
IGNORE_FILES = {".gitignore": "git", ".runnerignore": "runner"}
IGNORE_FILE_LIMIT = 1 << 20
DEFAULTS = "__pycache__/\n*.pyc\n.venv/\nvenv/\nnode_modules/\n.pytest_cache/\n.mypy_cache/\n"
# Never shipped, at any depth, whatever an ignore file says: no job needs its launcher's keys.
NEVER = frozenset({
    ".git", ".ssh", ".aws", ".gnupg", ".azure", ".kube", ".docker", ".password-store",
    ".netrc", ".git-credentials", ".pypirc", ".boto", ".s3cfg", ".npmrc",
})
NEVER_PATHS = (".config/gcloud",)


@dataclass(frozen=True)
class Entry:
    """One path that ships: a folder, a regular file (with its size) or a link (with its target)."""

    rel: str
    kind: str  # "dir", "file" or "link"
    size: int = 0
    link: str = ""


@dataclass
class Selection:
    """What a folder ships, and what it holds that does not ship though no ignore file said so."""

    entries: list[Entry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == "file"]

    def biggest(self, n: int = 3) -> str:
        top = sorted(self.files, key=lambda e: -e.size)[:n]
        return ", ".join(f"{e.rel} ({_mib(e.size)})" for e in top)


@dataclass(frozen=True)
class Packed:
    """A packed folder: the .tar.gz on local disk, its size, how many files it holds, what was skipped."""

    path: Path
    size: int
    files: int
    skipped: tuple[str, ...]


def _mib(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 16 else f"{n} bytes"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_folder(job_dir: Path) -> None:
    """Refuse a folder that holds runner's own home or the file:// store (every job's records would ship)."""
    folder = Path(os.path.realpath(job_dir))
    home = Path(os.path.realpath(config.home()))
    uri = config.store_uri()
    store = Path(os.path.realpath(uri[len("file://"):])) if uri.startswith("file://") else None
    held = [f"runner's home {home} ($RUNNER_HOME)"] if _inside(home, folder) else []
    if store and _inside(store, folder):
        held.append(f"the store {uri}")
    if held:
        raise SpecError(
            f"{job_dir} holds {' and '.join(held)}: packing it would ship every job's records; "
            "launch a folder that holds only the job, or set RUNNER_HOME / RUNNER_STORE to a place outside it"
        )


def _never(rel: str) -> bool:
    return rel.rsplit("/", 1)[-1] in NEVER or any(rel == p or rel.endswith("/" + p) for p in NEVER_PATHS)


def _read_ignore(path: Path) -> str | None:
    """An ignore file's text, if it is a regular file (not a link); capped, undecodable bytes replaced."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(IGNORE_FILE_LIMIT).decode("utf-8", "replace")
    except OSError:
        return None


def _repository_ignores(root: Path) -> list[Patterns]:
    """The .gitignore files above `root` up to its git repository's top (none if it is in no repository)."""
    if (root / ".git").exists():
        return []  # the folder is a repository's top: its own .gitignore is read on the walk
    found = []
    for folder in root.parents:
        rel = f"{root.relative_to(folder).as_posix()}/"
        text = _read_ignore(folder / ".gitignore")
        if text is not None:
            found.append(Patterns(parse(text, str(folder / ".gitignore")), outside=rel))
        if (folder / ".git").exists():
            return found[::-1]  # the repository's top first: deeper files win
    return []


def select(job_dir: Path, exclude: tuple[int, int] | None = None) -> Selection:
    """Walk the folder (never through a link) and decide what ships; `exclude` is a (dev, inode) to leave out."""
    root = Path(os.path.realpath(job_dir))
    ignore = Ignore()
    ignore.add("default", Patterns(parse(DEFAULTS, "runner's defaults")))
    for patterns in _repository_ignores(root):
        ignore.add("git", patterns)
    sel = Selection()
    stack = [""]
    while stack:
        prefix = stack.pop()
        folder = root / prefix if prefix else root
        for name, kind in IGNORE_FILES.items():
            text = _read_ignore(folder / name)
            if text is not None:
                ignore.add(kind, Patterns(parse(text, f"{prefix}{name}"), base=prefix))
        try:
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda d: d.name)
        except OSError as e:
            raise SpecError(f"{folder}: cannot list it ({e.strerror}); leave it out with a .runnerignore") from None
        subfolders = []
        for child in children:
            rel = prefix + child.name
            try:
                st = child.stat(follow_symlinks=False)
            except OSError:
                continue  # gone since the listing
            is_dir = stat.S_ISDIR(st.st_mode)
            if _never(rel):
                why = "version control: its config may hold tokens" if child.name == ".git" else "credentials"
                sel.skipped.append(f"{rel}{'/' if is_dir else ''} ({why})")
            elif ignore.ignored(rel, is_dir) or (st.st_dev, st.st_ino) == exclude:
                continue
            elif stat.S_ISLNK(st.st_mode):
                _add_link(sel, root, rel)
            elif is_dir:
                sel.entries.append(Entry(rel, "dir"))
                subfolders.append(rel + "/")
            elif stat.S_ISREG(st.st_mode):
                sel.entries.append(Entry(rel, "file", st.st_size))
            else:
                sel.skipped.append(f"{rel} (not a regular file)")
        stack.extend(reversed(subfolders))
    return sel


def _add_link(sel: Selection, root: Path, rel: str) -> None:
    """A link ships only if what it leads to, through every hop, is inside the folder; an absolute one is made relative."""
    path = root / rel
    try:
        target = os.readlink(path)
        real = Path(os.path.realpath(path))
    except (OSError, RuntimeError):  # gone, or a loop of links
        sel.skipped.append(f"{rel} (a link that leads nowhere readable)")
        return
    if not _inside(real, root):
        sel.skipped.append(f"{rel} -> {target} (a link out of the folder)")
        return
    sel.entries.append(Entry(rel, "link", link=os.path.relpath(real, path.parent) if os.path.isabs(target) else target))


class _TooBig(Exception):
    pass


class _Capped:
    """A write-only file that counts what passes and stops once `limit` bytes have."""

    def __init__(self, out: BinaryIO, limit: int) -> None:
        self.out, self.limit, self.written, self.stopped = out, limit, 0, False

    def write(self, data: bytes) -> int:
        if self.stopped:
            return len(data)
        self.written += len(data)
        if self.written > self.limit:
            self.stopped = True
            raise _TooBig
        return self.out.write(data)

    def flush(self) -> None:
        if not self.stopped:
            self.out.flush()


def _open_regular(path: Path) -> BinaryIO:
    """Open a file to read, never through a link and never blocking on a pipe put there since the walk."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is no longer a regular file")
    return os.fdopen(fd, "rb")


def _add(tar: tarfile.TarFile, root: Path, entry: Entry) -> None:
    path = root / entry.rel
    if entry.kind == "file":
        with _open_regular(path) as f:
            info = tar.gettarinfo(arcname=entry.rel, fileobj=f)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, f)
        return
    info = tarfile.TarInfo(entry.rel)
    info.mtime = int(os.lstat(path).st_mtime)
    if entry.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.link, 0o777
    tar.addfile(info)


def write(job_dir: Path, sel: Selection, out: BinaryIO, limit: int = CODE_LIMIT) -> int:
    """Write the selection as a gzipped tar to `out`; SpecError as soon as it passes `limit` bytes."""
    root = Path(os.path.realpath(job_dir))
    raw = sum(e.size for e in sel.files)
    advice = "list data under `inputs:` in job.yaml (the VM pulls it), or leave it out with a .runnerignore"
    if raw > RAW_LIMIT:
        raise SpecError(f"{job_dir} holds {_mib(raw)} of files, over the {_mib(RAW_LIMIT)} a job's code may be; the biggest: {sel.biggest()}; {advice}")
    capped = _Capped(out, limit)
    tar = tarfile.open(fileobj=capped, mode="w:gz", compresslevel=6)  # type: ignore[call-overload]
    try:
        for entry in sel.entries:
            _add(tar, root, entry)
        tar.close()
    except _TooBig:
        tar.close()
        raise SpecError(
            f"{job_dir} packs to more than {_mib(limit)} (stopped there, of {_mib(raw)} of files); "
            f"the biggest: {sel.biggest()}; {advice}"
        ) from None
    except OSError as e:
        tar.close()
        raise SpecError(f"{job_dir}: cannot pack {e.filename or ''} ({e.strerror or e}); leave it out with a .runnerignore") from None
    return capped.written


@contextlib.contextmanager
def packed(job_dir: Path, limit: int = CODE_LIMIT) -> Iterator[Packed]:
    """The folder packed into a temporary .tar.gz, deleted when the block ends; nothing else is written."""
    check_folder(job_dir)
    fd, name = tempfile.mkstemp(prefix="runner-code-", suffix=".tar.gz")
    try:
        with os.fdopen(fd, "wb") as out:
            st = os.fstat(out.fileno())
            sel = select(job_dir, exclude=(st.st_dev, st.st_ino))
            size = write(job_dir, sel, out, limit)
        yield Packed(Path(name), size, len(sel.files), tuple(sel.skipped))
    finally:
        os.unlink(name)
