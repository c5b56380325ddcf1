"""Object stores by URI scheme: file:// (the local default), s3://, gs://.

URIs are written as users write them, not percent-encoded: `s3://nyc-tlc/trip data/` names
the key prefix `trip data/`, `file:///srv/my store` the folder `/srv/my store`.

What a store holds is untrusted (a job's VM writes its own folder): a file:// store hands back
only regular files below its root, never through a symbolic link, and takes no key that climbs
out of it ('..', an absolute path).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from pathlib import Path, PurePosixPath

from runner.errors import NotFoundError, SpecError, StoreError

SCHEMES = ("file", "s3", "gs")


class OutsideStoreError(StoreError):
    """A key that would lead out of the store (a '..', an absolute path, a symbolic link)."""


def split_uri(uri: str) -> tuple[str, str, str]:
    """`s3://bucket/a/b` -> ("s3", "bucket", "a/b"); `file:///x/y` -> ("file", "", "/x/y")."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in SCHEMES:
        raise SpecError(f"{uri!r} is not a store URI: use file:///abs/path, s3://bucket/prefix or gs://bucket/prefix")
    if scheme == "file":
        if not rest.startswith("/"):
            raise SpecError(f"{uri!r}: a file:// URI needs an absolute path, e.g. file:///var/data")
        return scheme, "", rest
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise SpecError(f"{uri!r} names no bucket: use {scheme}://bucket/prefix")
    return scheme, bucket, key


def join(base: str, *parts: str) -> str:
    """Join URI or key parts with single slashes, keeping a trailing slash on the last part."""
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.lstrip('/')}" if out else p.lstrip("/")
    return out


def climbs(rel: str) -> bool:
    """Whether a relative key or path could leave the folder it is put under ('..', absolute, empty)."""
    parts = PurePosixPath(rel).parts
    return not rel or rel.startswith("/") or "\\" in rel or "\0" in rel or ".." in parts


class Store:
    """A folder of objects under one root URI; keys are '/'-separated paths below it."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def uri(self, key: str = "") -> str:
        return join(self.root, key) if key else self.root

    # Each subclass implements these eight; every other operation is built on them.
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write an object atomically: a reader sees the old bytes or the new, never a part."""
        raise NotImplementedError

    def get_bytes(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read up to `length` bytes (None: all) of an object from `offset`; NotFoundError if it does not exist."""
        raise NotImplementedError

    def get_versioned(self, key: str, limit: int | None = None) -> tuple[bytes, str]:
        """The object's first `limit` bytes (None: all) and its version, for `put_if`; NotFoundError if missing."""
        raise NotImplementedError

    def put_if(self, key: str, data: bytes, expected: str | None) -> bool:
        """Write only if the object is still at version `expected` (None: only if it does not exist); else False."""
        raise NotImplementedError

    def list(self, prefix: str) -> list[str]:
        """Keys of all objects below `prefix` (recursive), sorted."""
        raise NotImplementedError

    def list_sizes(self, prefix: str) -> list[tuple[str, int]]:
        """(key, bytes) of all objects below `prefix` (recursive), sorted by key."""
        raise NotImplementedError

    def upload(self, path: Path, key: str) -> None:
        raise NotImplementedError

    def download(self, key: str, path: Path) -> None:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def children(self, prefix: str) -> list[str]:
        """Names of the immediate sub-folders of `prefix`."""
        base = prefix.rstrip("/") + "/"
        return sorted({k[len(base):].split("/", 1)[0] for k in self.list(base) if "/" in k[len(base):]})

    def download_tree(self, key: str, dest: Path) -> list[Path]:
        """Copy one object, or every object below a prefix ending in '/', to `dest`; a key that would land
        outside `dest` (a '..' in it) is skipped."""
        if not key.endswith("/"):
            self.download(key, dest)
            return [dest]
        got = []
        for k in self.list(key):
            rel = k[len(key):]
            if climbs(rel) or rel.endswith("/"):
                continue
            target = dest / rel
            self.download(k, target)
            got.append(target)
        return got


class FileStore(Store):
    """A folder on this machine (or one shared into a local VM)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.base = Path(split_uri(root)[2])

    def _path(self, key: str) -> Path:
        """The file a key names, if it stays below the root without passing through a link."""
        key = key.rstrip("/")
        if key and climbs(key):
            raise OutsideStoreError(f"{key!r} is not a key of {self.root}: it has a '..', is absolute or is empty")
        path = self.base / key
        if key and Path(os.path.realpath(path)) != Path(os.path.realpath(self.base)) / key:
            raise OutsideStoreError(f"{self.uri(key)} is a symbolic link, or lies below one: not an object of the store")
        return path

    def _file(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise NotFoundError(f"{self.uri(key)} does not exist")
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path(key)  # a folder made by someone else on the way may be a link
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def get_bytes(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            with open(self._file(key), "rb") as f:
                f.seek(offset)
                return f.read() if length is None else f.read(length)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"{self.uri(key)} does not exist") from None

    def _read_versioned(self, key: str, limit: int | None) -> tuple[bytes, str]:
        try:
            with open(self._file(key), "rb", opener=_no_follow) as f:
                st = os.fstat(f.fileno())  # a write replaces the file: a new inode, size or time
                return (f.read() if limit is None else f.read(limit)), f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}"
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"{self.uri(key)} does not exist") from None

    def get_versioned(self, key: str, limit: int | None = None) -> tuple[bytes, str]:
        return self._read_versioned(key, limit)

    def put_if(self, key: str, data: bytes, expected: str | None) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / f".{path.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = self._read_versioned(key, 0)[1]
            except NotFoundError:
                current = None
            if current != expected:
                return False
            self.put_bytes(key, data)
            return True

    def list(self, prefix: str) -> list[str]:
        return [key for key, _ in self.list_sizes(prefix)]

    def list_sizes(self, prefix: str) -> list[tuple[str, int]]:
        try:
            top = self._path(prefix)
        except OutsideStoreError:
            return []
        if top.is_file():
            return [(prefix, top.stat().st_size)]
        if not top.is_dir():
            return []
        found = []
        for folder, dirs, files in os.walk(top):  # does not descend into linked folders
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
            for name in files:
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path, follow_symlinks=False)
                except OSError:  # gone since the walk saw it
                    continue
                if not name.startswith(".") and stat.S_ISREG(st.st_mode):
                    found.append((Path(path).relative_to(self.base).as_posix(), st.st_size))
        return sorted(found)

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except OutsideStoreError:
            return False

    def children(self, prefix: str) -> list[str]:
        try:
            top = self._path(prefix)
        except OutsideStoreError:
            return []
        if not top.is_dir():
            return []
        return sorted(p.name for p in top.iterdir() if p.is_dir() and not p.is_symlink())

    def upload(self, path: Path, key: str) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)

    def download(self, key: str, path: Path) -> None:
        src = self._file(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb", opener=_no_follow) as f, open(path, "wb") as out:
            shutil.copyfileobj(f, out)


def _no_follow(path: str, flags: int) -> int:
    """Open without following a link swapped in at the last moment."""
    return os.open(path, flags | os.O_NOFOLLOW)


STORES = {"file": "runner.store:FileStore", "s3": "runner.cloud_stores:S3Store", "gs": "runner.cloud_stores:GCSStore"}


def open_store(uri: str) -> Store:
    """The Store for a root URI, by scheme (a cloud store's SDK is imported only when it is used)."""
    import importlib

    module, cls = STORES[split_uri(uri)[0]].split(":")
    return getattr(importlib.import_module(module), cls)(uri)


def __getattr__(name: str):
    """S3Store and GCSStore live in runner.cloud_stores; importable from here as before."""
    if name in ("S3Store", "GCSStore"):
        from runner import cloud_stores

        return getattr(cloud_stores, name)
    raise AttributeError(name)
