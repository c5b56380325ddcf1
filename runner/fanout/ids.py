"""Shard ids: shard k of the parent `<name>-<ts>-<rand>` is the ordinary job `<name>--s<k>-<ts>-<rand>`."""

from __future__ import annotations

import re

from runner.errors import SpecError
from runner.jobs import ID_RE, NAME_RE

MAX_SHARD = 999_999  # more shards than any run starts, and a bound on the id's length
SHARD_RE = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)--s(?P<k>0|[1-9][0-9]{0,5})-(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{6})\Z")


def _parent_name(name: str) -> bool:
    return bool(NAME_RE.match(name)) and "--" not in name


def shard_id(parent_id: str, k: int) -> str:
    """The job id of shard `k` (0-based) of the fan-out job `parent_id`."""
    m = ID_RE.fullmatch(parent_id)
    if not m or not _parent_name(m["name"]):
        raise SpecError(f"{parent_id!r} is not the id of a fan-out job (NAME-YYYYMMDDTHHMMSSZ-xxxxxx, a name without '--')")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_SHARD:
        raise SpecError(f"shard {k!r} of {parent_id}: a shard number is an integer from 0 to {MAX_SHARD}")
    return f"{m['name']}--s{k}-{m['ts']}-{m['rand']}"


def parent_of(job_id: str) -> tuple[str, int] | None:
    """(parent id, k) when `job_id` is a shard's id, else None."""
    m = SHARD_RE.fullmatch(job_id)
    if not m or not _parent_name(m["name"]):
        return None
    return f"{m['name']}-{m['ts']}-{m['rand']}", int(m["k"])


def is_shard(job_id: str) -> bool:
    """Whether `job_id` names a shard of a fan-out job (`runner status` lists only their parents)."""
    return parent_of(job_id) is not None
