"""Job records in the store, the source of truth: ids, states, status.json, job.json.

Layout (the contract between the launcher and the VM):
    <store>/jobs/<id>/{job.json, instance.json, code.tar.gz, status.json, logs/, outputs/}
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from runner.errors import NotFoundError, SpecError
from runner.store import Store

PENDING, PROVISIONING, RUNNING = "PENDING", "PROVISIONING", "RUNNING"
SUCCEEDED, FAILED, TIMED_OUT = "SUCCEEDED", "FAILED", "TIMED_OUT"
PREEMPTED, CANCELLED, LOST = "PREEMPTED", "CANCELLED", "LOST"
STATES = (PENDING, PROVISIONING, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, PREEMPTED, CANCELLED, LOST)
FINAL = frozenset({SUCCEEDED, FAILED, TIMED_OUT, PREEMPTED, CANCELLED, LOST})

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]\Z|^[a-z]\Z")
ID_RE = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)-(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{6})\Z")


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_job_id(name: str) -> str:
    """`<name>-<utc timestamp>-<random>`: sortable by time, unique, safe as a key and a cloud tag."""
    return f"{name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}"


def check_job_id(job_id: str) -> str:
    """Reject anything that is not a job id, so it can never escape its store folder."""
    if not ID_RE.match(job_id):
        raise SpecError(f"{job_id!r} is not a job id (expected NAME-YYYYMMDDTHHMMSSZ-xxxxxx, as `runner status` lists them)")
    return job_id


def job_key(job_id: str, *parts: str) -> str:
    return "/".join(("jobs", check_job_id(job_id), *parts))


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
    def from_json(cls, data: dict) -> Status:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def read_status(store: Store, job_id: str) -> Status:
    try:
        return Status.from_json(json.loads(store.get_bytes(job_key(job_id, "status.json"))))
    except NotFoundError:
        if not store.exists(job_key(job_id, "job.json")):
            raise NotFoundError(f"no job {job_id!r} in {store.uri()} (see `runner status` for the jobs there)") from None
        return Status(PENDING)


def write_status(store: Store, job_id: str, status: Status) -> None:
    status.updated_at = utcnow()
    store.put_bytes(job_key(job_id, "status.json"), json.dumps(status.__dict__, indent=1).encode())


def write_json(store: Store, job_id: str, name: str, data: dict) -> None:
    store.put_bytes(job_key(job_id, name), json.dumps(data, indent=1, sort_keys=True).encode())


def read_json(store: Store, job_id: str, name: str) -> dict:
    return json.loads(store.get_bytes(job_key(job_id, name)))


def list_jobs(store: Store, limit: int | None = None) -> list[str]:
    """Job ids in the store, newest first."""
    ids = [j for j in store.children("jobs") if ID_RE.match(j)]
    ids.sort(key=lambda j: (ID_RE.match(j)["ts"], j), reverse=True)
    return ids[:limit] if limit else ids
