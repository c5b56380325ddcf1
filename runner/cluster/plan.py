"""A cluster's plan, pure: each node's role, id and market, its spec, and which nodes to start again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runner import jobs
from runner.cluster import ids
from runner.errors import SpecError
from runner.spec import JobSpec, validate

HEAD, WORKER = "head", "worker"
RAY_SH = ".runner/ray.sh"  # where every node finds the node script (pulled as an input)
NETWORKED = ("sandbox", "local", "aws", "gcp")  # backends whose VMs reach each other (local: a private network per job)


@dataclass(frozen=True)
class Node:
    """One node as planned: its number, role, job id and market."""

    k: int
    role: str
    job_id: str
    spot: bool


def roles(n: int) -> list[str]:
    """Node 0 is the head, the rest are workers."""
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= ids.MAX_NODES:
        raise SpecError(f"nodes {n!r}: a Ray cluster has 2 to {ids.MAX_NODES} nodes (a head and at least one worker)")
    return [HEAD] + [WORKER] * (n - 1)


def nodes(parent: str, n: int, spot: bool) -> list[Node]:
    """Every node of the cluster: with spot, the head is on-demand (its loss ends the job) and the workers spot."""
    return [Node(k, role, ids.node_id(parent, k), spot and role == WORKER) for k, role in enumerate(roles(n))]


def check_cloud(cloud: str, n: int) -> None:
    """A SpecError for a backend whose VMs cannot reach each other."""
    if cloud not in NETWORKED:
        raise SpecError(f"nodes: {n} needs a network between the job's VMs, and the {cloud} backend has none: "
                        f"use --cloud sandbox (nodes on this host), local (VMs on this host), aws or gcp")


def node_spec(spec: JobSpec, parent: str, node: Node) -> JobSpec:
    """A node's spec: the parent's, running ray.sh in its role; the head uploads the outputs into the parent's outputs/."""
    data = spec.model_dump(exclude={"nodes", "items", "vms", "reduce"})
    inputs = {**spec.inputs, f"jobs/{parent}/ray.sh": RAY_SH}
    if node.role == HEAD:
        outputs = {path: uri if uri is not None else f"jobs/{parent}/outputs/{path}" for path, uri in spec.outputs.items()}
    else:
        outputs = {}
    data.update(command=f"bash {RAY_SH} {node.role} {node.k} {spec.nodes}", inputs=inputs, outputs=outputs, spot=node.spot)
    return validate(data, f"the spec of {node.job_id}")


@dataclass(frozen=True)
class Relaunch:
    """A node to start again: its number and the attempt it gets."""

    k: int
    attempt: int
    on_demand: bool


def to_relaunch(statuses: Mapping[int, jobs.Status], attempts: Mapping[int, int], retries: int,
                retry_on_demand: bool = False) -> list[Relaunch]:
    """The preempted nodes with retries left: the head whenever so, a worker only while the head has not ended."""
    head = statuses.get(0)
    head_over = head is not None and head.final and not (head.state == jobs.PREEMPTED and attempts.get(0, 1) <= retries)
    out = []
    for k in sorted(statuses):
        st, attempt = statuses[k], attempts.get(k, 1)
        if st.state != jobs.PREEMPTED or attempt > retries or (k != 0 and head_over):
            continue
        out.append(Relaunch(k, attempt + 1, retry_on_demand and attempt + 1 == retries + 1))
    return out


def missing(expected: int, present: Sequence[int]) -> list[int]:
    """The node numbers 0..expected-1 that have no record (a launch cut short)."""
    have = set(present)
    return [k for k in range(expected) if k not in have]
