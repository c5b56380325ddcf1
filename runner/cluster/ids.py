"""Node ids: node k of the parent `<name>-<ts>-<rand>` is the ordinary job `<name>--n<k>-<ts>-<rand>` (k=0 is the head; runner.children)."""

from __future__ import annotations

from runner import children

KIND = children.NODES
NETWORK = "runner-cluster"  # the AWS security group / GCP network tag every node of every cluster job carries
MAX_NODES = KIND.bound  # the spec's bound on `nodes`


def node_id(parent_id: str, k: int) -> str:
    """The job id of node `k` (0 is the head) of the cluster job `parent_id`."""
    return children.child_id(parent_id, KIND, k)


def parent_of(job_id: str) -> tuple[str, int] | None:
    """(parent id, k) when `job_id` is a node's id, else None."""
    found = children.parent_of(job_id)
    return (found.parent, found.k) if found and found.kind is KIND else None


def is_node(job_id: str) -> bool:
    """Whether `job_id` names a node of a cluster job (`runner status` lists only their parents)."""
    return parent_of(job_id) is not None


def network_tag(job_id: str) -> str:
    """The network a job's VM joins: NETWORK for a cluster's node, none for any other job."""
    return NETWORK if is_node(job_id) else ""
