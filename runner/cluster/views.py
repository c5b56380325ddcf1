"""Reading a cluster job: its nodes (role, VM, state, when joined, cost) and the parent's state, as text or JSON.

Everything here is read back from the store and untrusted: a node's id is always computed from the parent's id
and its number, never taken from a record; a `joined` record counts only when it is a timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner import children, cost, jobs
from runner.cluster import ids
from runner.cluster import launch as cluster
from runner.cluster.head import HEAD_LIMIT, parse_head
from runner.cluster.stop import node_numbers
from runner.cluster.wait import look, settle
from runner.errors import NotFoundError, RunnerError, SpecError
from runner.store import Store


@dataclass
class NodeView:
    """One node as `runner status` shows it."""

    k: int
    role: str
    node_id: str
    status: jobs.Status
    vm: str = ""
    attempts: int = 1
    joined_at: str = ""
    usd_per_hour: float | None = None
    cost_usd: float | None = None

    def to_json(self) -> dict:
        return {"k": self.k, "role": self.role, "node_id": self.node_id, "state": self.status.state, "exit_code": self.status.exit_code,
                "reason": self.status.reason, "vm": self.vm, "attempts": self.attempts, "joined_at": self.joined_at or None,
                "usd_per_hour": self.usd_per_hour, "cost_usd": self.cost_usd}


@dataclass
class ClusterView:
    """A cluster job: its derived state, the head's address and every node."""

    job_id: str
    status: jobs.Status
    n: int
    head: str = ""
    nodes: list[NodeView] = field(default_factory=list)

    def cost(self) -> float | None:
        known = [x.cost_usd for x in self.nodes if x.cost_usd is not None]
        return sum(known) if known else None

    def to_json(self) -> dict:
        return {"job_id": self.job_id, **self.status.__dict__, "engine": "ray", "nodes": self.n, "head": self.head or None,
                "usd_per_hour": sum(x.usd_per_hour for x in self.nodes if x.usd_per_hour is not None) if self.nodes else None,
                "cost_usd": self.cost(), "node_states": [x.to_json() for x in self.nodes]}


def _joined(store: Store, node_id: str) -> str:
    try:
        raw = store.get_bytes(jobs.job_key(node_id, "joined"), 0, 64)
    except (NotFoundError, RunnerError):
        return ""
    text = raw.decode("ascii", "replace").strip()
    return text if jobs.TS_RE.match(text) else ""


def _head(store: Store, parent: str) -> str:
    try:
        found = parse_head(store.get_bytes(jobs.job_key(parent, "head"), 0, HEAD_LIMIT + 1))
    except (NotFoundError, RunnerError):
        return ""
    return f"{found[0]}:{found[1]}" if found else "(the head record holds no IPv4:port)"


def read_cluster(store: Store, parent: str, check_vm: bool = True) -> ClusterView:
    """The cluster job now: each node's status (reconciled with its VM when `check_vm`), VM, attempts, join time and
    cost; the parent's state derived from the head (and written when final)."""
    record, spec = cluster.read_parent(store, parent)
    n = cluster.node_count(record["cluster"])
    statuses, attempts, _ = look(store, parent, n, spec.retries, check_vm)
    launched = set(node_numbers(store, parent))
    view = ClusterView(parent, settle(store, parent, check_vm=False), n, _head(store, parent))
    for k in range(n):
        nid = ids.node_id(parent, k)
        found, why = jobs.read_instance(store, nid)
        st = statuses[k] if k in launched or statuses[k].state != jobs.PENDING else jobs.Status(jobs.PENDING, reason="not launched")
        rate = children.rate(store, nid, found)
        view.nodes.append(NodeView(k, "head" if k == 0 else "worker", nid, st, f"{found.cloud} {found.id}" if found else why.removeprefix("no VM known: "),
                                   attempts[k], _joined(store, nid), rate, cost.so_far(rate, st.started_at, st.ended_at)))
    return view


def lines(view: ClusterView) -> list[str]:
    """`runner status ID` of a cluster job: the job, then a row per node."""
    st = view.status
    spent = view.cost()
    out = [f"{'job_id':>12}: {view.job_id}", f"{'state':>12}: {st.state}" + (f" (exit {st.exit_code})" if st.exit_code is not None else ""),
           f"{'reason':>12}: {st.reason}", f"{'engine':>12}: ray, {view.n} nodes" + (f", head at {view.head}" if view.head else ""),
           f"{'cost $':>12}: {'-' if spent is None else f'{spent:.4f}'} (all nodes)", ""]
    width = max(len(x.node_id) for x in view.nodes) if view.nodes else 10
    out.append(f"{'K':>2}  {'ROLE':<6}  {'NODE':<{width}}  {'STATE':<12} {'EXIT':>4}  {'JOINED':<20}  {'COST $':>8}  VM")
    for x in view.nodes:
        code = "" if x.status.exit_code is None else x.status.exit_code
        spent = "-" if x.cost_usd is None else f"{x.cost_usd:.4f}"
        vm = x.vm + (f" (attempt {x.attempts})" if x.attempts > 1 else "")
        out.append(f"{x.k:>2}  {x.role:<6}  {x.node_id:<{width}}  {x.status.state:<12} {code:>4}  {x.joined_at or '-':<20}  {spent:>8}  {vm}")
    out.append(f"a node's log: runner logs {view.job_id} --node K (0 is the head)")
    return out


def row(store: Store, parent: str, detail: bool = False) -> dict:
    """A cluster job as one row of `runner status`: its state and the cost of all its nodes."""
    view = read_cluster(store, parent, check_vm=detail)
    out = view.to_json()
    if not detail:
        out.pop("node_states")
    return out


def node_target(store: Store, parent: str, node: int | None) -> str:
    """`runner logs ID [--node K]` of a cluster job: node K's id (the head's without --node)."""
    if cluster.cluster_of(store, parent) is None:
        raise SpecError(f"{parent} is not a cluster job: --node names a node of one (a job launched with nodes: N)")
    k = 0 if node is None else node
    launched = node_numbers(store, parent)
    if k not in launched:
        have = ", ".join(map(str, launched)) or "none yet"
        raise NotFoundError(f"{parent} has no node {k} (its nodes: {have}); see `runner status {parent}`")
    return ids.node_id(parent, k)
