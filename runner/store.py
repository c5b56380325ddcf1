"""Object stores by URI scheme: file:// (the local default), s3://, gs://.

URIs are written as users write them, not percent-encoded: `s3://nyc-tlc/trip data/` names
the key prefix `trip data/`, `file:///srv/my store` the folder `/srv/my store`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from runner.errors import AuthError, NotFoundError, SpecError, StoreError

SCHEMES = ("file", "s3", "gs")


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


class Store:
    """A folder of objects under one root URI; keys are '/'-separated paths below it."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def uri(self, key: str = "") -> str:
        return join(self.root, key) if key else self.root

    # Each subclass implements these six; every other operation is built on them.
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write an object atomically: a reader sees the old bytes or the new, never a part."""
        raise NotImplementedError

    def get_bytes(self, key: str, offset: int = 0) -> bytes:
        """Read an object from `offset`; NotFoundError if it does not exist."""
        raise NotImplementedError

    def list(self, prefix: str) -> list[str]:
        """Keys of all objects below `prefix` (recursive), sorted."""
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
        """Copy one object, or every object below a prefix ending in '/', to `dest`."""
        if not key.endswith("/"):
            self.download(key, dest)
            return [dest]
        got = []
        for k in self.list(key):
            target = dest / k[len(key):]
            self.download(k, target)
            got.append(target)
        return got


class FileStore(Store):
    """A folder on this machine (or one shared into a local VM)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.base = Path(split_uri(root)[2])

    def _path(self, key: str) -> Path:
        return self.base / key

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def get_bytes(self, key: str, offset: int = 0) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(offset)
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"{self.uri(key)} does not exist") from None

    def list(self, prefix: str) -> list[str]:
        top = self._path(prefix)
        if top.is_file():
            return [prefix]
        if not top.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.base))
            for p in top.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def children(self, prefix: str) -> list[str]:
        top = self._path(prefix)
        return sorted(p.name for p in top.iterdir() if p.is_dir()) if top.is_dir() else []

    def upload(self, path: Path, key: str) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)

    def download(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise NotFoundError(f"{self.uri(key)} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)


class S3Store(Store):
    """An S3 bucket prefix; honours AWS_ENDPOINT_URL and the standard credential chain."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        _, self.bucket, self.prefix = split_uri(root)
        import boto3  # imported only when an s3:// store is used

        self.client = boto3.client("s3")
        self._errors = self.client.exceptions

    def _key(self, key: str) -> str:
        return join(self.prefix, key)

    def _call(self, what: str, key: str, fn, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound", "InvalidRange"):
                raise NotFoundError(f"{self.uri(key)} does not exist") from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "403"):
                raise StoreError(f"{what} {self.uri(key)}: access denied ({code}); check the credentials and the bucket policy") from None
            raise StoreError(f"{what} {self.uri(key)}: {code}: {e}") from None
        except BotoCoreError as e:
            raise StoreError(f"{what} {self.uri(key)}: {e}") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("write", key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)

    def get_bytes(self, key: str, offset: int = 0) -> bytes:
        kw = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            resp = self._call("read", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key), **kw)
        except NotFoundError:
            if offset and self.exists(key):
                return b""  # the object exists; nothing past offset
            raise
        return resp["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self._call("read", key, self.client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except NotFoundError:
            return False

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        strip = len(self.prefix.rstrip("/") + "/") if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
        keys = []
        for page in self._call("list", prefix, list, pages):
            keys += [o["Key"][strip:] for o in page.get("Contents", [])]
        return sorted(keys)

    def children(self, prefix: str) -> list[str]:
        full = self._key(prefix).rstrip("/") + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full, Delimiter="/")
        names = []
        for page in self._call("list", prefix, list, pages):
            names += [p["Prefix"][len(full):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(names)

    def upload(self, path: Path, key: str) -> None:
        self._call("write", key, self.client.upload_file, str(path), self.bucket, self._key(key))

    def download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._call("read", key, self.client.download_file, self.bucket, self._key(key), str(path))


class GCSStore(Store):
    """A GCS bucket prefix; honours STORAGE_EMULATOR_HOST and Application Default Credentials."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        _, bucket, self.prefix = split_uri(root)
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage  # imported only when a gs:// store is used

        try:  # project=None: a store needs no project (ADC from `gcloud auth application-default login` has none)
            self.bucket = storage.Client(project=None).bucket(bucket)
        except DefaultCredentialsError:
            raise AuthError(
                f"{root}: no Google credentials (Application Default Credentials) found; run "
                "`gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a key file"
            ) from None

    def _blob(self, key: str):
        return self.bucket.blob(join(self.prefix, key))

    def _call(self, key: str, fn, *args):
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import GoogleAuthError
        from requests import RequestException

        try:
            return fn(*args)
        except gexc.NotFound:
            raise NotFoundError(f"{self.uri(key)} does not exist") from None
        except gexc.Forbidden as e:
            raise StoreError(f"{self.uri(key)}: permission denied: {e.message}") from None
        except gexc.GoogleAPIError as e:
            raise StoreError(f"{self.uri(key)}: {e}") from None
        except GoogleAuthError as e:
            raise AuthError(f"{self.uri(key)}: the Google credentials were refused ({e}); run `gcloud auth application-default login`") from None
        except RequestException as e:
            raise StoreError(f"{self.uri(key)}: cannot reach GCS ({e})") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(key, self._blob(key).upload_from_string, data)

    def get_bytes(self, key: str, offset: int = 0) -> bytes:
        blob = self._call(key, self.bucket.get_blob, join(self.prefix, key))
        if blob is None:
            raise NotFoundError(f"{self.uri(key)} does not exist")
        return b"" if offset >= (blob.size or 0) else self._call(key, lambda: blob.download_as_bytes(start=offset))

    def exists(self, key: str) -> bool:
        return bool(self._call(key, self._blob(key).exists))

    def list(self, prefix: str) -> list[str]:
        strip = len(self.prefix.rstrip("/") + "/") if self.prefix else 0
        blobs = self._call(prefix, lambda: list(self.bucket.client.list_blobs(self.bucket, prefix=join(self.prefix, prefix))))
        return sorted(b.name[strip:] for b in blobs)

    def children(self, prefix: str) -> list[str]:
        full = join(self.prefix, prefix).rstrip("/") + "/"

        def names() -> set[str]:
            pages = self.bucket.client.list_blobs(self.bucket, prefix=full, delimiter="/")
            for _ in pages:  # the prefixes fill in as the pages are read
                pass
            return set(pages.prefixes)

        return sorted(p[len(full):].rstrip("/") for p in self._call(prefix, names))

    def upload(self, path: Path, key: str) -> None:
        self._call(key, self._blob(key).upload_from_filename, str(path))

    def download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._call(key, self._blob(key).download_to_filename, str(path))


STORES = {"file": FileStore, "s3": S3Store, "gs": GCSStore}


def open_store(uri: str) -> Store:
    """The Store for a root URI, by scheme."""
    return STORES[split_uri(uri)[0]](uri)
