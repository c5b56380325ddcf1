"""The cloud object stores: S3 (boto3) and GCS (google-cloud-storage), each client made on first use."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from runner.errors import AuthError, NotFoundError, StoreError
from runner.store import Store, join, split_uri

CHANGED = object()  # a conditional write found another version


class S3Store(Store):
    """An S3 bucket prefix; honours AWS_ENDPOINT_URL and the standard credential chain."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        _, self.bucket, self.prefix = split_uri(root)

    @cached_property
    def client(self):
        import boto3  # imported only when an s3:// store is used

        return boto3.client("s3")

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
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                return CHANGED
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "403"):
                raise StoreError(f"{what} {self.uri(key)}: access denied ({code}); `runner doctor --cloud aws` checks credentials and permissions") from None
            raise StoreError(f"{what} {self.uri(key)}: {code}: {e}") from None
        except BotoCoreError as e:
            raise StoreError(f"{what} {self.uri(key)}: {e}") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("write", key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)

    def _get(self, key: str, offset: int, length: int | None) -> dict:
        end = "" if length is None else offset + length - 1
        kw = {"Range": f"bytes={offset}-{end}"} if offset or length is not None else {}
        resp = self._call("read", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key), **kw)
        return resp if resp is not CHANGED else self._get(key, offset, length)

    def get_bytes(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if length == 0:
            return b""
        try:
            resp = self._get(key, offset, length)
        except NotFoundError:
            if offset and self.exists(key):
                return b""  # the object exists; nothing past offset
            raise
        return resp["Body"].read()

    def get_versioned(self, key: str, limit: int | None = None) -> tuple[bytes, str]:
        try:
            resp = self._get(key, 0, limit)
        except NotFoundError:
            if limit and self.exists(key):  # an empty object has no byte 0 to range over
                return self.get_versioned(key)
            raise
        return resp["Body"].read(), resp["ETag"]

    def put_if(self, key: str, data: bytes, expected: str | None) -> bool:
        cond = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        resp = self._call("write", key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data, **cond)
        return resp is not CHANGED

    def exists(self, key: str) -> bool:
        try:
            self._call("read", key, self.client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except NotFoundError:
            return False

    def list(self, prefix: str) -> list[str]:
        return [key for key, _ in self.list_sizes(prefix)]

    def list_sizes(self, prefix: str) -> list[tuple[str, int]]:
        full = self._key(prefix)
        strip = len(self.prefix.rstrip("/") + "/") if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
        found = []
        for page in self._call("list", prefix, list, pages):
            found += [(o["Key"][strip:], o.get("Size", 0)) for o in page.get("Contents", [])]
        return sorted(found)

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
        _, self.bucket_name, self.prefix = split_uri(root)

    @cached_property
    def bucket(self):
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage  # imported only when a gs:// store is used

        try:  # project=None: a store needs no project (ADC from `gcloud auth application-default login` has none)
            return storage.Client(project=None).bucket(self.bucket_name)
        except DefaultCredentialsError:
            raise AuthError(
                f"{self.root}: no Google credentials (Application Default Credentials) found; run "
                "`gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a key file"
            ) from None

    def _blob(self, key: str):
        return self.bucket.blob(join(self.prefix, key))

    def _call(self, key: str, fn, *args, **kwargs):
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import GoogleAuthError
        from requests import RequestException

        try:
            return fn(*args, **kwargs)
        except gexc.NotFound:
            raise NotFoundError(f"{self.uri(key)} does not exist") from None
        except gexc.PreconditionFailed:
            return CHANGED
        except gexc.Forbidden as e:
            raise StoreError(f"{self.uri(key)}: permission denied: {e.message}; `runner doctor --cloud gcp` checks the setup") from None
        except gexc.GoogleAPIError as e:
            raise StoreError(f"{self.uri(key)}: {e}") from None
        except GoogleAuthError as e:
            raise AuthError(f"{self.uri(key)}: the Google credentials were refused ({e}); run `gcloud auth application-default login`") from None
        except RequestException as e:
            raise StoreError(f"{self.uri(key)}: cannot reach GCS ({e})") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(key, self._blob(key).upload_from_string, data)

    def _get_blob(self, key: str):
        blob = self._call(key, lambda: self.bucket.get_blob(join(self.prefix, key)))
        if blob is None:
            raise NotFoundError(f"{self.uri(key)} does not exist")
        return blob

    def _read(self, key: str, blob, offset: int, length: int | None) -> bytes:
        size = blob.size or 0
        end = size if length is None else min(size, offset + length)
        if offset >= end:
            return b""
        data = self._call(key, blob.download_as_bytes, start=offset, end=end - 1, if_generation_match=blob.generation)
        if data is CHANGED:  # rewritten between the two calls: read the new one
            return self._read(key, self._get_blob(key), offset, length)
        return data

    def get_bytes(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._read(key, self._get_blob(key), offset, length)

    def get_versioned(self, key: str, limit: int | None = None) -> tuple[bytes, str]:
        blob = self._get_blob(key)
        generation = str(blob.generation)  # before the download, which may reset it from its headers
        return self._read(key, blob, 0, limit), generation

    def put_if(self, key: str, data: bytes, expected: str | None) -> bool:
        gen = 0 if expected is None else int(expected)
        return self._call(key, self._blob(key).upload_from_string, data, if_generation_match=gen) is not CHANGED

    def exists(self, key: str) -> bool:
        return bool(self._call(key, lambda: self._blob(key).exists()))

    def list(self, prefix: str) -> list[str]:
        return [key for key, _ in self.list_sizes(prefix)]

    def list_sizes(self, prefix: str) -> list[tuple[str, int]]:
        strip = len(self.prefix.rstrip("/") + "/") if self.prefix else 0
        blobs = self._call(prefix, lambda: list(self.bucket.client.list_blobs(self.bucket, prefix=join(self.prefix, prefix))))
        return sorted((b.name[strip:], b.size or 0) for b in blobs)

    def children(self, prefix: str) -> list[str]:
        full = join(self.prefix, prefix).rstrip("/") + "/"

        def names() -> set[str]:
            pages = self.bucket.client.list_blobs(self.bucket, prefix=full, delimiter="/")
            for _ in pages:  # the prefixes fill in as the pages are read
                pass
            return set(pages.prefixes)

        return sorted(p[len(full):].rstrip("/") for p in self._call(prefix, names))

    def upload(self, path: Path, key: str) -> None:
        self._call(key, lambda: self._blob(key).upload_from_filename(str(path)))

    def download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._call(key, lambda: self._blob(key).download_to_filename(str(path)))
