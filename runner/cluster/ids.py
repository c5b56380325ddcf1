"""Node ids: node k of the parent `<name>-<ts>-<rand>` is the ordinary job `<name>--n<k>-<ts>-<rand>` (k=0 is the head)."""

from __future__ import annotations

import re

from runner.errors import SpecError
from runner.jobs import ID_RE, NAME_RE

NETWORK = "runner-cluster"  # the AWS security group / GCP network tag every node of every cluster job carries
MAX_NODES = 64  # the spec's bound on `nodes`
NODE_RE = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)--n(?P<k>0|[1-9][0-9]?)-(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{6})\Z")


def _parent_name(name: str) -> bool:
    return bool(NAME_RE.match(name)) and "--" not in name


def node_id(parent_id: str, k: int) -> str:
    """The job id of node `k` (0 is the head) of the cluster job `parent_id`."""
    m = ID_RE.fullmatch(parent_id)
    if not m or not _parent_name(m["name"]):
        raise SpecError(f"{parent_id!r} is not the id of a cluster job (NAME-YYYYMMDDTHHMMSSZ-xxxxxx, a name without '--')")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < MAX_NODES:
        raise SpecError(f"node {k!r} of {parent_id}: a node number is an integer from 0 (the head) to {MAX_NODES - 1}")
    return f"{m['name']}--n{k}-{m['ts']}-{m['rand']}"


def parent_of(job_id: str) -> tuple[str, int] | None:
    """(parent id, k) when `job_id` is a node's id, else None."""
    m = NODE_RE.fullmatch(job_id)
    if not m or not _parent_name(m["name"]) or int(m["k"]) >= MAX_NODES:
        return None
    return f"{m['name']}-{m['ts']}-{m['rand']}", int(m["k"])


def is_node(job_id: str) -> bool:
    """Whether `job_id` names a node of a cluster job (`runner status` lists only their parents)."""
    return parent_of(job_id) is not None


def network_tag(job_id: str) -> str:
    """The network a job's VM joins: NETWORK for a cluster's node, none for any other job."""
    return NETWORK if is_node(job_id) else ""
