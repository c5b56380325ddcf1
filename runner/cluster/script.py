"""The node script every node of a cluster runs (.runner/ray.sh), rendered once into the parent's folder."""

from __future__ import annotations

import os

from runner.errors import SpecError
from runner.render import _env, job_uri  # the one Jinja environment: every value shell-quoted

JOIN_TIMEOUT = 300  # s the head waits for every node before it runs the command with those it has
HEAD_GONE = 180  # s a worker waits for a head that stopped answering before it leaves
POLL = 10  # s between a worker's looks at the job's and the head's status
GCS_PORT = 6379  # Ray's default; the sandbox's nodes share a host, so each head takes a free port there
SETTINGS = {"RUNNER_RAY_JOIN_TIMEOUT": JOIN_TIMEOUT, "RUNNER_RAY_HEAD_GONE": HEAD_GONE, "RUNNER_RAY_POLL": POLL}


def timings(environ=os.environ) -> dict[str, int]:
    """join_timeout, head_gone and poll in seconds, from RUNNER_RAY_* when set (whole seconds, 1 to a day)."""
    out = {}
    for var, default in SETTINGS.items():
        raw = environ.get(var, "").strip()
        if not raw:
            value = default
        elif raw.isdigit() and 1 <= int(raw) <= 86400:
            value = int(raw)
        else:
            raise SpecError(f"{var}={raw!r} is not a number of seconds from 1 to 86400")
        out[var.removeprefix("RUNNER_RAY_").lower()] = value
    return out


def render_ray_node(parent_id: str, head_id: str, store: str, command: str, cloud: str, environ=os.environ, node_net: str = "") -> str:
    """ray.sh for the cluster job `parent_id`; `store` is the store as the VM sees it; `node_net` the local VMs' 10.X.Y."""
    if not command.strip():
        raise SpecError(f"cluster job {parent_id} has no command to run on its head")
    loopback = cloud == "sandbox"
    if (cloud == "local") != bool(node_net):
        raise SpecError(f"cluster job {parent_id}: a node subnet ({node_net!r}) is for local VMs only, and they need one")
    return _env.get_template("ray_node.sh.j2").render(
        parent_id=parent_id, parent_uri=job_uri(store, parent_id), head_uri=job_uri(store, head_id), command=command,
        loopback=1 if loopback else 0, gcs_port=0 if loopback else GCS_PORT, node_net=node_net, **timings(environ),
    )
