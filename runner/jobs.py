"""Job records in the store, the source of truth: ids, states, status.json, job.json.

Layout (the contract between the launcher and the VM):
    <store>/jobs/<id>/{job.json, instance.json, code.tar.gz, status.json, cancel, logs/, outputs/}

Every record is read back as untrusted (a job's VM can write its own folder): at most RECORD_LIMIT
bytes, and garbage becomes a state (UNKNOWN) or "no VM known" with the reason, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from runner.errors import NotFoundError, SpecError, StoreError
from runner.providers import PROVIDERS
from runner.providers.base import Instance
from runner.store import OutsideStoreError, Store

PENDING, PROVISIONING, RUNNING = "PENDING", "PROVISIONING", "RUNNING"
SUCCEEDED, FAILED, TIMED_OUT = "SUCCEEDED", "FAILED", "TIMED_OUT"
PREEMPTED, CANCELLED, LOST = "PREEMPTED", "CANCELLED", "LOST"
STATES = (PENDING, PROVISIONING, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, PREEMPTED, CANCELLED, LOST)
UNKNOWN = "UNKNOWN"  # status.json is unreadable; not final: the VM may still write one
FINAL = frozenset({SUCCEEDED, FAILED, TIMED_OUT, PREEMPTED, CANCELLED, LOST})

NAME_RE = re.compile(r"^(?!.*--)(?:[a-z][a-z0-9-]{0,38}[a-z0-9]|[a-z])\Z")  # '--' is kept for shards' ids
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
RECORD_LIMIT = 256 * 1024  # the most of a record (status.json, job.json, instance.json) ever read
ID_RE = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)-(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{6})\Z")


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_job_id(name: str) -> str:
    """`<name>-<utc timestamp>-<random>`: sortable by time, unique, safe as a key and a cloud tag."""
    return f"{name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}"


def check_job_id(job_id: str) -> str:
    """Reject anything that is not a job id, so it can never escape its store folder."""
    if not ID_RE.fullmatch(job_id):
        raise SpecError(f"{job_id!r} is not a job id (expected NAME-YYYYMMDDTHHMMSSZ-xxxxxx, as `runner status` lists them)")
    return job_id


def job_key(job_id: str, *parts: str) -> str:
    return "/".join(("jobs", check_job_id(job_id), *parts))


class RecordError(StoreError):
    """A record in the store is not what runner writes: not JSON, the wrong shape, too large."""

    exit_code = 65  # EX_DATAERR


def _ts(v: object) -> str | None:
    return v if isinstance(v, str) and TS_RE.match(v) else None


@dataclass
class Status:
    """status.json: what state the job is in, and why."""

    state: str
    exit_code: int | None = None
    reason: str = ""
    updated_at: str = field(default_factory=utcnow)
    started_at: str | None = None
    ended_at: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @classmethod
    def from_json(cls, data: object) -> Status:
        """A Status from parsed JSON; anything that is not one is UNKNOWN with the reason."""
        if not isinstance(data, dict):
            return cls(UNKNOWN, reason=f"status.json is not a JSON object (a {type(data).__name__})")
        state = data.get("state")
        if not isinstance(state, str) or state not in STATES:
            return cls(UNKNOWN, reason=f"status.json names no state runner knows: {_short(state)}")
        code = data.get("exit_code")
        reason = data.get("reason")
        return cls(
            state, exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            reason=reason if isinstance(reason, str) else "", updated_at=_ts(data.get("updated_at")) or "",
            started_at=_ts(data.get("started_at")), ended_at=_ts(data.get("ended_at")),
        )


def _short(v: object, n: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= n else text[:n] + "..."


def parse_record(raw: bytes, name: str) -> object:
    """JSON from a record's bytes (at most RECORD_LIMIT); RecordError naming the record otherwise."""
    if len(raw) > RECORD_LIMIT:
        raise RecordError(f"{name} is larger than {RECORD_LIMIT >> 10} KiB: not a record runner writes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RecordError(f"{name} is not valid JSON ({type(e).__name__}: {str(e)[:80]})") from None


def _read(store: Store, job_id: str, name: str) -> tuple[bytes, str]:
    """The first RECORD_LIMIT + 1 bytes of a record and its version; a link out of the store is a bad record."""
    try:
        return store.get_versioned(job_key(job_id, name), RECORD_LIMIT + 1)
    except OutsideStoreError as e:
        raise RecordError(f"{name}: {e}") from None


def read_json(store: Store, job_id: str, name: str) -> dict:
    """A JSON object record (job.json, instance.json); NotFoundError if missing, RecordError if bad."""
    data = parse_record(_read(store, job_id, name)[0], name)
    if not isinstance(data, dict):
        raise RecordError(f"{name} is not a JSON object (a {type(data).__name__}), in {job_id}")
    return data


def _status(store: Store, job_id: str) -> tuple[Status | None, str | None]:
    """The status in the store (None if none) and its version (for a conditional write)."""
    try:
        raw, version = _read(store, job_id, "status.json")
    except NotFoundError:
        return None, None
    except RecordError as e:
        return Status(UNKNOWN, reason=str(e)), None
    try:
        return Status.from_json(parse_record(raw, "status.json")), version
    except RecordError as e:
        return Status(UNKNOWN, reason=str(e)), version


def read_status(store: Store, job_id: str) -> Status:
    """The job's status; PENDING before its first, UNKNOWN (with the reason) when status.json is garbage."""
    status, _ = _status(store, job_id)
    if status is None:
        if not store.exists(job_key(job_id, "job.json")):
            raise NotFoundError(f"no job {job_id!r} in {store.uri()} (see `runner status` for the jobs there)")
        return Status(PENDING)
    return status


def write_status(store: Store, job_id: str, status: Status, replacing: str | None = None) -> Status:
    """Write status.json unless a final status is there (only the final state `replacing` may be replaced).

    A conditional write: a status the VM writes between our read and our write is never lost.
    Returns the status the store holds afterwards (the earlier final one when it was kept).
    """
    status.updated_at = utcnow()
    data = json.dumps(status.__dict__, indent=1).encode()
    key = job_key(job_id, "status.json")
    for _ in range(10):
        current, version = _status(store, job_id)
        if current is not None and current.final and current.state != replacing:
            return current
        if current is not None and version is None:  # unreadable (a link): replace it outright
            store.put_bytes(key, data)
            return status
        if store.put_if(key, data, version):
            return status
    raise StoreError(f"{store.uri(key)} keeps changing under each write; try again")


def write_json(store: Store, job_id: str, name: str, data: dict) -> None:
    store.put_bytes(job_key(job_id, name), json.dumps(data, indent=1, sort_keys=True).encode())


def read_instance(store: Store, job_id: str) -> tuple[Instance | None, str]:
    """The job's VM from instance.json, or None and why no VM is known."""
    return read_instance_record(store, job_id)[1:]


def read_instance_record(store: Store, job_id: str) -> tuple[dict, Instance | None, str]:
    """instance.json as read ({} when missing or bad) and, as read_instance says, the job's VM or why none is known."""
    try:
        record = read_json(store, job_id, "instance.json")
    except NotFoundError:
        return {}, None, "no VM known: no instance.json yet"
    except RecordError as e:
        return {}, None, f"no VM known: {e}"
    if "relaunching" in record and "id" not in record:
        return record, None, "no VM known: a relaunch is starting one"
    if not isinstance(record.get("id"), str) or not record["id"]:
        return record, None, "no VM known: instance.json names no VM"
    if record.get("cloud") not in PROVIDERS:
        return record, None, f"no VM known: instance.json names an unknown cloud {_short(record.get('cloud'))}"
    if record.get("job_id") != job_id:
        return record, None, f"no VM known: instance.json is for another job ({_short(record.get('job_id'))})"
    zone, data = record.get("zone", ""), record.get("data", {})
    return record, Instance(record["cloud"], record["id"], job_id, zone if isinstance(zone, str) else "",
                            data if isinstance(data, dict) else {}), ""


def list_jobs(store: Store, limit: int | None = None) -> list[str]:
    """Job ids in the store, newest first (a fan-out job's shards and a cluster job's nodes are listed under it, not here)."""
    from runner.children import parent_of

    ids = [j for j in store.children("jobs") if ID_RE.fullmatch(j) and parent_of(j) is None]
    ids.sort(key=lambda j: (ID_RE.fullmatch(j)["ts"], j), reverse=True)
    return ids[:limit] if limit else ids
