"""Commands that read a job from the store: logs, status, outputs, report."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from runner import interrupts
from runner.commands import common
from runner.commands.common import note
from runner.errors import NotFoundError


@click.command()
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing as the log grows, until the job ends; a fan-out job: each failed item, then the reduce's log.")
@click.option("--all", "show_all", is_flag=True, help="Also the startup script's log and the VM console.")
@click.option("--cancel-on-interrupt/--no-cancel-on-interrupt", default=None,
              help="With --follow: on Ctrl-C or SIGTERM, cancel the job (default: on when $CI or $GITHUB_ACTIONS is true).")
@click.option("--quiet", "-q", is_flag=True, help="No progress line on stderr while waiting (state, phase, elapsed, cost).")
@click.option("--shard", type=int, metavar="K", help="A fan-out job: shard K's log (every attempt).")
@click.option("--item", metavar="NAME", help="A fan-out job: one item's log (its name as `runner status ID --items` lists it).")
@click.option("--node", type=int, metavar="K", help="A cluster job: node K's log (0 is the head, the default).")
def logs(job_id, follow, show_all, cancel_on_interrupt, quiet, shard, item, node):
    """Print a job's log, every attempt in order, while it runs and after its VM is gone.

    \b
    Examples:
      runner logs JOB_ID --follow    # until the job ends; Ctrl-C stops following, not the job
      runner logs JOB_ID --all       # with the startup script's log and the VM console
      runner logs JOB_ID --shard 3   # a fan-out job: one shard's log
      runner logs JOB_ID --item yellow_tripdata_2012-03.csv
      runner logs JOB_ID --follow    # a fan-out job: items and shards on stderr, failed items, then the reduce's log
      runner logs JOB_ID --node 2    # a cluster job: node 2's log (without --node: the head's)
    """
    from runner import jobs, watch
    from runner import logs as joblogs

    store = common.store()
    jobs.read_status(store, jobs.check_job_id(job_id))  # a clear error for an unknown job
    from runner.cluster import launch as cluster

    if node is not None or cluster.cluster_of(store, job_id) is not None:
        from runner.cluster.views import node_target

        job_id = node_target(store, job_id, node)
    if follow and item is None and shard is None and joblogs.is_fanout(store, job_id):
        _follow_parent(store, job_id, cancel_on_interrupt, quiet)
        return
    if item is not None or shard is not None or joblogs.is_fanout(store, job_id):
        job_id = joblogs.fanout_target(store, job_id, shard, item, sys.stdout.buffer, follow, note)
        if job_id is None:
            return
    out = sys.stdout.buffer
    if follow:
        # job.yaml's cancel_on_interrupt is the launcher's: a watcher's Ctrl-C cancels only when asked (or in CI)
        with interrupts.guard(store, job_id, interrupts.should_cancel(cancel_on_interrupt, None, os.environ)):
            from runner.progress import Progress

            watch.wait(store, job_id, follow=True, out=out, progress=None if quiet else Progress())
    else:
        joblogs.show(store, job_id, "job.log", out, note, console=not show_all)
    if show_all:
        for name in ("startup.log", "console.log"):
            click.echo(f"==> {name} <==")
            joblogs.show(store, job_id, name, out, note, console=name == "console.log")


def _follow_parent(store, job_id, cancel_on_interrupt, quiet):
    """`runner logs ID --follow` of a fan-out job: the progress line on stderr, each failed item on stdout as it
    appears, the reduce's log once the job has ended; its shards are only watched (a preempted one is not relaunched)."""
    from runner import jobs, logs
    from runner.fanout import launch as fanout
    from runner.progress import ItemNotes, Progress

    progress = None if quiet else Progress()
    out = sys.stdout.buffer
    items = ItemNotes(job_id, progress.guard(out) if progress else out)
    with interrupts.guard(store, job_id, interrupts.should_cancel(cancel_on_interrupt, None, os.environ)):
        status, counts = fanout.wait_fanout(store, job_id, note=note, progress=progress, follow=items, relaunch=False)
    logs.copy_object(store, jobs.job_key(job_id, "reduce", "log"), out)
    c = counts
    note(f"{job_id}: {status.state}: {c.done} of {c.total} items done, {c.failed} failed, {c.missing} missing"
         + (f"; {status.reason}" if status.reason and status.final else ""))
    if not status.final:  # a preempted shard with retries left: only its launcher relaunches it
        note(f"its shards have ended, some preempted with retries left: a waiting `runner launch` relaunches them; "
             f"else `runner retry {job_id}` runs every item without a result")


@click.command()
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=20, show_default=True, help="How many recent jobs to list.")
@click.option("--items", "show_items", is_flag=True, help="A fan-out job: also every item, its state and exit code.")
def status(job_id, as_json, limit, show_items):
    """Show one job's status, or a table of recent jobs, newest first, with what each has cost.

    \b
    Examples:
      runner status
      runner status JOB_ID --json
      runner status JOB_ID --items     # a fan-out job: every item and its exit code
    """
    from runner import children, jobs, status_table

    store = common.store()
    if job_id:
        kind, record = children.parent_record(store, jobs.check_job_id(job_id))  # one read of job.json
        if kind is children.SHARDS:
            _status_of_parent(store, job_id, record, as_json, show_items)
            return
        if kind is children.NODES:
            from runner.cluster import views as cluster_views

            view = cluster_views.read_cluster(store, job_id)
            click.echo(json.dumps(view.to_json()) if as_json else "\n".join(cluster_views.lines(view)))
            return
        row = status_table.job_row(store, job_id, detail=True)
        click.echo(json.dumps(row) if as_json else "\n".join(f"{k:>12}: {'' if v is None else v}" for k, v in row.items()))
        return
    rows = [status_table.row(store, j) for j in jobs.list_jobs(store, limit)]
    if as_json:
        click.echo(json.dumps(rows))
    elif not rows:
        click.echo(f"no jobs in {store.uri()}; start one with: runner launch jobs/taxi --wait", err=True)
    else:
        click.echo("\n".join(status_table.table(rows)))


def _status_of_parent(store, job_id, fan, as_json, show_items):
    """`runner status ID` of a fan-out job: its state, its items, a table of its shards (and with --items, every item)."""
    from runner.fanout import views

    parent = views.read_parent(store, job_id, fan)
    items = views.item_states(store, job_id, parent.shards) if show_items else None
    if as_json:
        click.echo(json.dumps({**parent.to_json(), **({"item_states": items} if show_items else {})}))
        return
    click.echo("\n".join(views.parent_lines(parent, items)))
    if items and any(it["state"] == "failed" for it in items):
        click.echo(f"a failed item's log: runner logs {job_id} --item NAME", err=True)


@click.command()
@click.argument("job_id")
@click.argument("dest", type=click.Path(path_type=Path))
def outputs(job_id, dest):
    """Download a job's outputs into DEST.

    \b
    Example:
      runner outputs JOB_ID ./outputs

    \b
    job.json may have been rewritten by the job's VM, so its outputs are checked first:
    every file lands inside DEST (an output path or key with '..', or an absolute path,
    is refused); a URI in the store is read only from this job's own folder; a file://
    URI outside the store is refused; s3:// and gs:// URIs outside it are read as declared;
    symbolic links in a file:// store are not followed.
    """
    from runner import jobs
    from runner import outputs as out

    result = out.download(common.store(), jobs.check_job_id(job_id), dest)
    for line in result.notes:
        click.echo(line, err=True)
    for g in result.got:
        click.echo(g)
    if not result.got:
        raise NotFoundError(f"{job_id} has no outputs in the store; see `runner status {job_id}` and `runner logs {job_id}`")


@click.command()
@click.argument("job_id")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), help="The page to write (default: JOB_ID.html).")
def report(job_id, out):
    """Write one self-contained HTML page of a job: summary, timeline, cost, each log's tail, commands for more.

    \b
    Example (the page loads nothing: open it from disk, or keep it as a CI artifact):
      runner report JOB_ID -o report.html
    """
    from runner import jobs
    from runner import report as job_report

    click.echo(job_report.write(common.store(), jobs.check_job_id(job_id), out or Path(f"{job_id}.html")))
