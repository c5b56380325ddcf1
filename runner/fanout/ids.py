"""Shard ids: shard k of the parent `<name>-<ts>-<rand>` is the ordinary job `<name>--s<k>-<ts>-<rand>` (runner.children)."""

from __future__ import annotations

from runner import children

KIND = children.SHARDS
MAX_SHARD = KIND.bound - 1  # more shards than any run starts, and a bound on the id's length


def shard_id(parent_id: str, k: int) -> str:
    """The job id of shard `k` (0-based) of the fan-out job `parent_id`."""
    return children.child_id(parent_id, KIND, k)


def parent_of(job_id: str) -> tuple[str, int] | None:
    """(parent id, k) when `job_id` is a shard's id, else None."""
    found = children.parent_of(job_id)
    return (found.parent, found.k) if found and found.kind is KIND else None


def is_shard(job_id: str) -> bool:
    """Whether `job_id` names a shard of a fan-out job (`runner status` lists only their parents)."""
    return parent_of(job_id) is not None
