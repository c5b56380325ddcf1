"""Launching a cluster job: the parent's records and ray.sh, then one ordinary job per node, the head first."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from runner import children, input_check, jobs
from runner import launch as launcher
from runner import pack as packing
from runner.cluster import ids
from runner.cluster import plan as planning
from runner.cluster.script import render_ray_node
from runner.errors import NotFoundError, RunnerError
from runner.providers import get_provider
from runner.render import output_uris
from runner.spec import JobSpec
from runner.store import Store

NETWORK = ids.NETWORK


@dataclass
class ClusterPlan:
    """What a cluster launch will do: the parent and each node's role, id and market."""

    spec: JobSpec
    job_dir: Path
    job_id: str
    cloud: str
    store: Store
    nodes: list[planning.Node]
    usd_per_hour: float | None = None
    notes: list[str] = field(default_factory=list)

    def node_plan(self, node: planning.Node) -> launcher.Plan:
        """The ordinary launch plan of one node."""
        spec = planning.node_spec(self.spec, self.job_id, node)
        return launcher.Plan(spec, self.job_dir, node.job_id, self.cloud, self.store,
                             launcher.request_for(spec, node.job_id, self.cloud, self.store), self.usd_per_hour)

    @property
    def request(self):
        """The head's launch request (`runner render` prints its script)."""
        return self.node_plan(self.nodes[0]).request

    def summary(self) -> dict:
        """What `--dry-run` prints: the nodes, their roles and markets, the price of all of them."""
        head = self.request
        rate = self.usd_per_hour
        summary = {
            "job_id": self.job_id, "state": "DRY_RUN", "cloud": self.cloud, "store": self.store.uri(), "engine": "ray",
            "nodes": len(self.nodes), "instance_type": head.instance_type,
            "roles": [f"{n.k}: {n.role} {n.job_id} ({'spot' if n.spot else 'on-demand'})" for n in self.nodes],
            "max_runtime_s": head.max_runtime, "image": head.image, "user_data_bytes": len(head.user_data.encode()),
            "usd_per_hour": rate,
            "all_nodes_usd_at_max_runtime": None if rate is None else round(rate * len(self.nodes) * head.max_runtime / 3600, 4),
        }
        with packing.packed(self.job_dir) as code:
            summary.update(code_bytes=code.size, code_files=code.files, code_skipped=list(code.skipped))
        return summary


def plan_cluster(spec: JobSpec, job_dir: Path, cloud: str, store: Store, job_id: str, usd_per_hour: float | None = None) -> ClusterPlan:
    """Every node's role, id and market; nothing is created anywhere."""
    planning.check_cloud(cloud, spec.nodes)
    if spec.max_cost and usd_per_hour:  # the ceiling is for every node together
        from runner import cost

        limit = cost.runtime_for(spec.max_cost, usd_per_hour * spec.nodes, cloud, spec.instance_type or "the default type")
        if limit and limit < spec.max_runtime:
            spec = spec.model_copy(update={"max_runtime": limit})
    node_net = ""
    if cloud == "local":  # every node is a VM on this host: their memory together must fit it
        from runner.providers import local, local_net

        host_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30
        local_net.check_cluster(spec.nodes, local.parse_type(spec.instance_type or local.LocalProvider.default_instance_type).gib, host_gib)
        node_net = next(local_net.candidates(job_id))  # the subnet the launch reserves may differ; only the script's checks here
    render_ray_node(job_id, ids.node_id(job_id, 0), get_provider(cloud).store_for_vm(store.uri()), spec.command, cloud,
                    node_net=node_net)  # bad settings: refused here
    return ClusterPlan(spec, job_dir, job_id, cloud, store, planning.nodes(job_id, spec.nodes, spec.spot), usd_per_hour)


def prepare_network(cloud: str, job_id: str = "") -> tuple[str, str]:
    """The cloud's rule that lets the nodes reach each other and nothing else, created when missing; what it is,
    and the local VMs' subnet (10.X.Y, reserved for this job on this host; empty elsewhere)."""
    provider = get_provider(cloud)
    if cloud == "local":
        from runner.providers import local_net

        net = local_net.reserve(job_id)
        return f"a private network {net.prefix}.0/24 between the job's VMs alone (unix sockets and a hub on this host)", net.prefix
    if cloud == "aws":
        from runner.providers import aws_network

        return aws_network.ensure(provider, NETWORK), ""
    if cloud == "gcp":
        from runner.providers import gcp_firewall

        return gcp_firewall.ensure(provider, NETWORK), ""
    return "the nodes share this host (127.0.0.x)", ""


def _record(p: ClusterPlan, network: str) -> dict:
    head = p.request
    return {
        "job_id": p.job_id, "cloud": p.cloud, "spec": p.spec.model_dump(), "job_dir": str(p.job_dir),
        "instance_type": head.instance_type, "spot": p.spec.spot, "created_at": jobs.utcnow(),
        "launched_by": f"{getpass.getuser()}@{socket.gethostname()}", "outputs": output_uris(p.spec, p.store.uri(), p.job_id),
        "usd_per_hour": p.usd_per_hour, "cluster": {"engine": "ray", "nodes": len(p.nodes), "network": network},
    }


@dataclass
class Launched:
    """One node as launched: its number, role, id, and its VM or why it has none."""

    k: int
    role: str
    job_id: str
    vm: str = ""
    error: str = ""


def launch_cluster(p: ClusterPlan) -> list[Launched]:
    """Write the parent's records and ray.sh, then launch the head and the workers; a head that does not start fails
    the job before any worker starts, a worker that does not start is FAILED and the rest go on."""
    store = p.store
    input_check.check(p.spec, store.uri(), p.job_dir, p.cloud)
    network, node_net = prepare_network(p.cloud, p.job_id)
    vm_store = get_provider(p.cloud).store_for_vm(store.uri())
    with packing.packed(p.job_dir) as code:  # packed once: every node's code.tar.gz is the same bytes
        if code.skipped:
            sys.stderr.write(f"runner: not shipped from {p.job_dir}: {', '.join(code.skipped)}\n")
        jobs.write_json(store, p.job_id, "job.json", _record(p, network))
        script = render_ray_node(p.job_id, p.nodes[0].job_id, vm_store, p.spec.command, p.cloud, node_net=node_net)
        store.put_bytes(jobs.job_key(p.job_id, "ray.sh"), script.encode())
        jobs.write_status(store, p.job_id, jobs.Status(jobs.PROVISIONING, reason=f"0 of {len(p.nodes)} nodes running"))
        out = []
        for node in p.nodes:
            out.append(_launch_node(p, node, code.path))
            if node.role == planning.HEAD and out[0].error:
                why = f"the head did not start: {out[0].error}"
                jobs.write_status(store, p.job_id, jobs.Status(jobs.FAILED, reason=why, ended_at=jobs.utcnow()))
                break
        return out


def _launch_node(p: ClusterPlan, node: planning.Node, code: Path) -> Launched:
    done = Launched(node.k, node.role, node.job_id)
    try:
        inst = launcher.launch(p.node_plan(node), code=code, extra={"parent": p.job_id, "node": node.k, "role": node.role})
        done.vm = inst.id
    except RunnerError as e:
        done.error = str(e)
        jobs.write_status(p.store, node.job_id, jobs.Status(jobs.FAILED, reason=f"launch failed: {e}", ended_at=jobs.utcnow()))
        sys.stderr.write(f"runner: node {node.k} ({node.role}, {node.job_id}) did not start: {e}\n")
    record = {"node_id": node.job_id, "role": node.role, "spot": node.spot, "launched_at": jobs.utcnow()}
    p.store.put_bytes(jobs.job_key(p.job_id, "nodes", str(node.k)), json.dumps(record).encode())
    return done


def cluster_of(store: Store, job_id: str) -> dict | None:
    """The job's `cluster` record from job.json when it is a cluster job, else None."""
    return children.record_of(store, job_id, ids.KIND)


def node_count(cluster: dict) -> int:
    """The number of nodes the record names (untrusted: 2..64, else 0)."""
    n = cluster.get("nodes")
    return n if isinstance(n, int) and not isinstance(n, bool) and 2 <= n <= ids.MAX_NODES else 0


def read_parent(store: Store, parent: str) -> tuple[dict, JobSpec]:
    """A cluster parent's job.json and its spec, re-validated; SpecError if it is not a cluster job."""
    refusal = f"{parent} is not a cluster job (its job.json has no cluster with 2-64 nodes)"
    return children.read_parent(store, parent, ids.KIND, lambda cluster: bool(node_count(cluster)), refusal)


def attempt_of(store: Store, job_id: str) -> int:
    """A node's launch attempt from instance.json (untrusted; 1 when it says nothing usable)."""
    try:
        n = jobs.read_json(store, job_id, "instance.json")
    except (NotFoundError, jobs.RecordError):
        return 1
    n = n.get("attempt", n.get("relaunching", 1))
    return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 99 else 1

