"""`runner launch` of a cluster job: launch its nodes, and with --wait follow the head until the job ends."""

from __future__ import annotations

import json
import os
import sys

import click

from runner import interrupts, jobs, watch
from runner.cluster import launch as cluster
from runner.cluster.wait import wait_cluster


def note(line: str) -> None:
    click.echo(line, err=True)


def launch(p: cluster.ClusterPlan, wait: bool, as_json: bool, cancel_on_interrupt: bool | None, follow: bool = False,
           quiet: bool = False) -> None:
    """Launch the nodes; with `wait`, wait (printing the head's log with `follow`; how many nodes run on stderr unless
    `quiet`) and exit with the job's code."""
    launched = cluster.launch_cluster(p)
    nodes = [{"k": x.k, "role": x.role, "job_id": x.job_id, "instance": x.vm or None, **({"error": x.error} if x.error else {})}
             for x in launched]
    started = sum(1 for x in launched if x.vm)
    if not as_json:
        note(f"launched {p.job_id} on {p.cloud}: a Ray cluster of {started} of {len(p.nodes)} nodes "
             f"({p.request.instance_type}{', workers on spot' if p.spec.spot else ''})")
    if not wait:
        if as_json:
            click.echo(json.dumps({"job_id": p.job_id, "state": jobs.read_status(p.store, p.job_id).state, "cloud": p.cloud, "nodes": nodes}))
        else:
            click.echo(p.job_id)
            note(f"follow it: runner logs {p.job_id} --follow   nodes: runner status {p.job_id}   a node: runner logs {p.job_id} --node K")
        return
    from runner.logs import Follower

    head = p.nodes[0].job_id
    follower = Follower(p.store, head, sys.stdout.buffer) if follow and not as_json else None
    cancel = interrupts.should_cancel(cancel_on_interrupt, p.spec.cancel_on_interrupt, os.environ)
    with interrupts.guard(p.store, p.job_id, cancel, as_json):
        status = wait_cluster(p.store, p.job_id, note=note, follower=follower, progress=not quiet)
    if as_json:
        click.echo(json.dumps({"job_id": p.job_id, **status.__dict__, "nodes": nodes}))
    else:
        ok = status.state == jobs.SUCCEEDED
        click.secho(f"{p.job_id}: {status.state} (exit {watch.exit_code(status)}): {status.reason}", fg="green" if ok else "red", err=True)
        note(f"nodes: runner status {p.job_id}   logs: runner logs {p.job_id} [--node K]" + (f"   outputs: runner outputs {p.job_id} ./outputs" if ok else ""))
    sys.exit(watch.exit_code(status))
