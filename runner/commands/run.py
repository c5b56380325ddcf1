"""Commands that start work: launch, render, retry."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from runner import interrupts
from runner.commands import common
from runner.commands.common import note, plan_from_flags, spec_options


@click.command()
@click.argument("job_dir", type=click.Path(file_okay=False, path_type=Path))
@spec_options
@click.option("--wait", is_flag=True, help="Wait for the job to end and exit with its exit code.")
@click.option("--follow", "-f", is_flag=True,
              help="Print the job's log as it runs (implies --wait); a fan-out job: each failed item (NAME: exit N), then the reduce's log.")
@click.option("--dry-run", is_flag=True, help="Validate and show what would start; create nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (job_id, state, ...).")
@click.option("--cancel-on-interrupt/--no-cancel-on-interrupt", default=None,
              help="On Ctrl-C or SIGTERM while waiting, cancel the job (default: job.yaml's cancel_on_interrupt, else on when $CI or $GITHUB_ACTIONS is true).")
@click.option("--quiet", "-q", is_flag=True, help="No progress line on stderr while waiting (state, phase, elapsed, cost).")
def launch(job_dir, wait, follow, dry_run, as_json, cancel_on_interrupt, quiet, cloud, env, **flags):
    """Start JOB_DIR's job on a new VM.

    \b
    Examples:
      runner launch jobs/taxi --cloud sandbox --follow    # on this host, no account
      runner launch jobs/taxi --cloud aws --dry-run       # what would start, at what price
      runner launch jobs/taxi --cloud aws --type c6i.32xlarge --spot --retries 2 --wait
      runner launch jobs/taxi --wait --json > result.json # in CI: one JSON object

    \b
    With --wait (or --follow) the exit code is the job's own; otherwise:
      0 SUCCEEDED, 70 FAILED before the command ran, 71 LOST, 75 PREEMPTED,
      124 TIMED_OUT, 130 CANCELLED, 2 invalid spec or flag, 69 launch failed.
    Ctrl-C or SIGTERM while waiting exits 130 and leaves the job running (the
    message names `runner cancel JOB_ID`), unless --cancel-on-interrupt (on in CI).
    """
    from runner import launch as launcher
    from runner import watch

    p = plan_from_flags(job_dir, cloud, env, **flags)
    if dry_run:
        summary = p.summary()
        width = max(map(len, summary))
        click.echo(json.dumps(summary) if as_json else "\n".join(f"{k:>{width}}: {', '.join(v) if isinstance(v, list) else v}" for k, v in summary.items()))
        return
    from runner.cluster.launch import ClusterPlan

    if isinstance(p, ClusterPlan):  # a Ray cluster: its nodes are ordinary jobs
        from runner.cluster import command

        command.launch(p, wait or follow, as_json, cancel_on_interrupt, follow=follow, quiet=quiet)
        return
    if not isinstance(p, launcher.Plan):  # a fan-out: its shards are ordinary jobs
        _launch_fanout(p, wait or follow, as_json, cancel_on_interrupt, follow=follow and not as_json, quiet=quiet)
        return
    inst = launcher.launch(p)
    if not as_json:
        click.echo(f"launched {p.job_id} on {p.cloud} ({inst.id}, {p.request.instance_type}{', spot' if p.request.spot else ''})", err=True)
    if not (wait or follow):
        if as_json:
            click.echo(json.dumps({"job_id": p.job_id, "state": "PROVISIONING", "cloud": p.cloud, "instance": inst.id}))
        else:
            click.echo(p.job_id)
            click.echo(f"follow it: runner logs {p.job_id} --follow   result: runner status {p.job_id}", err=True)
        return
    from runner.logs import Follower
    from runner.progress import Progress

    follower = Follower(p.store, p.job_id, sys.stdout.buffer) if follow and not as_json else None  # one for every attempt
    cancel = interrupts.should_cancel(cancel_on_interrupt, p.spec.cancel_on_interrupt, os.environ)
    with interrupts.guard(p.store, p.job_id, cancel, as_json):
        status = _wait_through_preemptions(p, follower, None if quiet else Progress())
    _report(p.job_id, status, as_json)
    sys.exit(watch.exit_code(status))


def _wait_through_preemptions(p, follower, progress=None):
    """Wait for the job to end, relaunching it after a preemption as many times as its retries allow."""
    from runner import launch as launcher
    from runner import watch

    status = watch.wait(p.store, p.job_id, follower=follower, progress=progress)
    for attempt in range(2, p.spec.retries + 2):
        if status.state != "PREEMPTED":
            break
        last = attempt == p.spec.retries + 1
        click.echo(f"{p.job_id}: preempted; relaunching (attempt {attempt} of {p.spec.retries + 1})", err=True)
        launcher.relaunch(p.store, p.job_id, attempt, on_demand=last and p.spec.retry_on_demand)
        status = watch.wait(p.store, p.job_id, follower=follower, progress=progress)
    return status


def _launch_fanout(p, wait, as_json, cancel_on_interrupt, follow=False, quiet=False):
    """Launch a fan-out job's shards; with `wait`, wait for all of them and exit with the derived code."""
    from runner import jobs
    from runner.fanout import launch as fanout

    shards = fanout.launch_fanout(p)
    started = sum(1 for s in shards if s.vm)
    if not as_json:
        click.echo(f"launched {p.job_id} on {p.cloud}: {len(p.items)} items over {started} of {len(shards)} VMs", err=True)
    if not wait:
        if as_json:
            click.echo(json.dumps({"job_id": p.job_id, "state": jobs.PROVISIONING, "cloud": p.cloud, **_shards_json(p.job_id, shards)}))
        else:
            click.echo(p.job_id)
            click.echo(f"result: runner status {p.job_id}   logs: runner logs {p.job_id} --shard K", err=True)
        return
    _wait_fanout(p.store, p.job_id, p.spec, as_json, cancel_on_interrupt, shards, follow, quiet)


def _wait_fanout(store, job_id, spec, as_json, cancel_on_interrupt, shards, follow=False, quiet=False):
    """Wait for a fan-out job (a progress line on stderr unless `quiet`; with `follow`, each failed item and then the
    reduce's log on stdout), print one line (or one JSON object), exit with its derived code."""
    from runner import watch
    from runner.fanout import launch as fanout
    from runner.progress import ItemNotes, Progress

    progress = None if quiet else Progress()
    out = sys.stdout.buffer
    items = ItemNotes(job_id, progress.guard(out) if progress else out) if follow else None
    cancel = interrupts.should_cancel(cancel_on_interrupt, spec.cancel_on_interrupt, os.environ)
    with interrupts.guard(store, job_id, cancel, as_json):
        status, counts = fanout.wait_fanout(store, job_id, note=note, progress=progress, follow=items)
    if follow:
        _reduce_log(store, job_id, out)
    if as_json:
        click.echo(json.dumps({"job_id": job_id, **status.__dict__, "items": counts.to_json(), **_shards_json(job_id, shards)}))
    else:
        ok, c = status.state == "SUCCEEDED", counts
        why = f"; {status.reason}" if status.reason and not ok else ""  # a success's reason repeats the counts
        click.secho(f"{job_id}: {status.state} (exit {watch.exit_code(status)}): {c.done} of {c.total} items done, "
                    f"{c.failed} failed, {c.missing} missing{why}", fg="green" if ok else "red", err=True)
    sys.exit(watch.exit_code(status))


def _reduce_log(store, job_id, out):
    """The reduce's log on stdout, when the job has one."""
    from runner import jobs
    from runner.logs import copy_object

    copy_object(store, jobs.job_key(job_id, "reduce", "log"), out)


def _shards_json(job_id, shards):
    return {"shards": [{"shard": s.k, "job_id": s.job_id, "items": s.items, "instance": s.vm or None,
                        **({"error": s.error} if s.error else {})} for s in shards]}


def _report(job_id, status, as_json):
    if as_json:
        click.echo(json.dumps({"job_id": job_id, **status.__dict__}))
        return
    color = "green" if status.state == "SUCCEEDED" else "red"
    line = f"{job_id}: {status.state}"
    if status.exit_code is not None:
        line += f" (exit {status.exit_code})"
    click.secho(line + (f": {status.reason}" if status.reason else ""), fg=color, err=True)
    if status.state == "SUCCEEDED":
        click.echo(f"outputs: runner outputs {job_id} ./outputs", err=True)
    click.echo(f"logs:    runner logs {job_id} --all", err=True)


@click.command()
@click.argument("job_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--user-data", "user_data", is_flag=True, help="Print the user-data instead: the bootstrap that fetches the script.")
@spec_options
def render(job_dir, user_data, cloud, env, **flags):
    """Print the startup script exactly as the VM runs it (with a fresh job id).

    The VM's user-data is a small bootstrap: it schedules the failsafe power-off and fetches this script
    from the job's folder in the store (jobs/<id>/startup.sh).

    \b
    Examples:
      runner render jobs/taxi --cloud aws | shellcheck -
      runner render jobs/taxi --cloud aws --user-data | wc -c   # EC2 takes at most 16 KiB
    """
    request = plan_from_flags(job_dir, cloud, env, **flags).request
    click.echo(request.user_data if user_data else request.script, nl=False)


@click.command()
@click.argument("job_id")
@click.option("--vms", type=click.IntRange(1, 1000), metavar="M", help="VMs for the missing items (default: as many as needed, at most the job's own).")
@click.option("--wait", is_flag=True, help="Wait for the job to end and exit with its code (as launch --wait).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--cancel-on-interrupt/--no-cancel-on-interrupt", default=None,
              help="With --wait: on Ctrl-C or SIGTERM, cancel the job (default: job.yaml's, else on in CI).")
@click.option("--quiet", "-q", is_flag=True, help="With --wait: no progress line on stderr (state, items, shards, elapsed, cost).")
def retry(job_id, vms, wait, as_json, cancel_on_interrupt, quiet):
    """Relaunch a fan-out job's items that have no result (then its reduce), on new VMs in the same job.

    \b
    Examples:
      runner retry JOB_ID --vms 2 --wait   # only the items without a done marker, then the reduce
      runner retry JOB_ID --json
    """
    from runner import jobs
    from runner.fanout import launch as fanout

    store = common.store()
    done = fanout.retry(store, jobs.check_job_id(job_id), vms)
    if not as_json:
        click.echo(f"{job_id}: {done.why}" + (f"; launched {len(done.shards)} VM(s)" if done.shards else ""), err=True)
    if not done.shards:
        if as_json:
            click.echo(json.dumps({"job_id": job_id, "state": jobs.read_status(store, job_id).state, "retried": 0, "why": done.why}))
        return
    if not wait:
        if as_json:
            click.echo(json.dumps({"job_id": job_id, "state": jobs.PROVISIONING, "retried": done.missing, **_shards_json(job_id, done.shards)}))
        return
    _, spec = fanout.read_parent(store, job_id)
    _wait_fanout(store, job_id, spec, as_json, cancel_on_interrupt, done.shards, quiet=quiet)
