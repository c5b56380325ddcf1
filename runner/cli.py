"""runner: one job, one VM from a baked image, gone when the job ends.

Jobs live in folders with a job.yaml. Records, logs and outputs live in the store
($RUNNER_STORE, default file://$RUNNER_HOME/store), so any machine with the store sees them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from runner import interrupts
from runner.errors import NotFoundError, RunnerError


class Group(click.Group):
    """Turns RunnerError into a one-line message and its exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RunnerError as e:
            click.secho(f"runner: {e}", fg="red", err=True)
            sys.exit(e.exit_code)


def _store():
    from runner import config
    from runner.store import open_store

    return open_store(config.store_uri())


def spec_options(f):
    """The flags that override job.yaml (used by launch and render)."""
    opts = [
        click.option("--cloud", type=click.Choice(["sandbox", "local", "aws", "gcp"]), help="Backend (default: job.yaml's cloud, $RUNNER_CLOUD, or local)."),
        click.option("--type", "instance_type", metavar="TYPE", help="Instance type, e.g. c6i.32xlarge, n2-standard-64, local-2x4."),
        click.option("--spot/--on-demand", default=None, help="Spot/preemptible, or on-demand (default: job.yaml's spot)."),
        click.option("--spot-fallback/--no-spot-fallback", default=None,
                     help="Launch on-demand if no zone has spot capacity (default: job.yaml, then config)."),
        click.option("--image", metavar="ID", help="Image to boot (default: the newest baked by `make image`)."),
        click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Set an environment variable for the job (repeatable)."),
        click.option("--max-runtime", metavar="DUR", help="Stop the job after DUR (90s, 30m, 2h) and power off."),
        click.option("--max-cost", type=float, metavar="USD", help="Stop the job before it costs more than USD (from the hourly price)."),
        click.option("--retries", type=int, metavar="N", help="Relaunch a preempted spot job up to N times (with --wait)."),
        click.option("--retry-on-demand/--no-retry-on-demand", default=None, help="Make the last relaunch on-demand."),
        click.option("--disk-gb", type=int, metavar="GB", help="Root disk size in GB."),
        click.option("--region", metavar="R", help="Cloud region."),
        click.option("--zone", metavar="Z", help="Cloud zone."),
        click.option("--vms", type=int, metavar="N", help="VMs a job with items runs on (1-1000; capped at the number of items)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _plan(job_dir, cloud, env, **flags):
    from runner.launch import plan
    from runner.spec import parse_env

    overrides = {**flags, "env": parse_env(env) if env else None}
    return plan(job_dir, overrides, cloud)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runner")
def main():
    """runner: run a batch job on one VM from a baked image, gone when the job ends.

    \b
    Example, no cloud account needed (`runner COMMAND --help` shows each command's):
      runner launch jobs/taxi --cloud sandbox --follow
      runner status
      runner outputs JOB_ID ./out

    Records, logs and outputs live in the store ($RUNNER_STORE, default
    file://$RUNNER_HOME/store): any machine with the store sees the same jobs.
    """


@main.command()
@click.argument("job_dir", type=click.Path(file_okay=False, path_type=Path))
@spec_options
@click.option("--wait", is_flag=True, help="Wait for the job to end and exit with its exit code.")
@click.option("--follow", "-f", is_flag=True, help="Print the job's log as it runs (implies --wait).")
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

    p = _plan(job_dir, cloud, env, **flags)
    if dry_run:
        summary = p.summary()
        width = max(map(len, summary))
        click.echo(json.dumps(summary) if as_json else "\n".join(f"{k:>{width}}: {', '.join(v) if isinstance(v, list) else v}" for k, v in summary.items()))
        return
    if not isinstance(p, launcher.Plan):  # a fan-out: its shards are ordinary jobs
        _launch_fanout(p, wait or follow, as_json, cancel_on_interrupt)
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


def _launch_fanout(p, wait, as_json, cancel_on_interrupt):
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
    _wait_fanout(p.store, p.job_id, p.spec, as_json, cancel_on_interrupt, shards)


def _wait_fanout(store, job_id, spec, as_json, cancel_on_interrupt, shards):
    """Wait for a fan-out job, print one line (or one JSON object), exit with its derived code."""
    from runner import watch
    from runner.fanout import launch as fanout

    cancel = interrupts.should_cancel(cancel_on_interrupt, spec.cancel_on_interrupt, os.environ)
    with interrupts.guard(store, job_id, cancel, as_json):
        status, counts = fanout.wait_fanout(store, job_id, note=_note)
    if as_json:
        click.echo(json.dumps({"job_id": job_id, **status.__dict__, "items": counts.to_json(), **_shards_json(job_id, shards)}))
    else:
        color = "green" if status.state == "SUCCEEDED" else "red"
        c = counts
        click.secho(f"{job_id}: {status.state} (exit {watch.exit_code(status)}): {c.done} of {c.total} items done, "
                    f"{c.failed} failed, {c.missing} missing" + (f"; {status.reason}" if status.reason else ""), fg=color, err=True)
    sys.exit(watch.exit_code(status))


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


@main.command()
@click.argument("job_dir", type=click.Path(file_okay=False, path_type=Path))
@spec_options
def render(job_dir, cloud, env, **flags):
    """Print the startup script exactly as it would be sent (with a fresh job id).

    \b
    Example (EC2 takes at most 16 KiB of user-data):
      runner render jobs/taxi --cloud aws | wc -c
    """
    click.echo(_plan(job_dir, cloud, env, **flags).request.user_data, nl=False)


@main.command()
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the log grows, until the job ends.")
@click.option("--all", "show_all", is_flag=True, help="Also the startup script's log and the VM console.")
@click.option("--cancel-on-interrupt/--no-cancel-on-interrupt", default=None,
              help="With --follow: on Ctrl-C or SIGTERM, cancel the job (default: on when $CI or $GITHUB_ACTIONS is true).")
@click.option("--quiet", "-q", is_flag=True, help="No progress line on stderr while waiting (state, phase, elapsed, cost).")
@click.option("--shard", type=int, metavar="K", help="A fan-out job: shard K's log (every attempt).")
@click.option("--item", metavar="NAME", help="A fan-out job: one item's log (its name as `runner status ID --items` lists it).")
def logs(job_id, follow, show_all, cancel_on_interrupt, quiet, shard, item):
    """Print a job's log, every attempt in order, while it runs and after its VM is gone.

    \b
    Examples:
      runner logs JOB_ID --follow    # until the job ends; Ctrl-C stops following, not the job
      runner logs JOB_ID --all       # with the startup script's log and the VM console
      runner logs JOB_ID --shard 3   # a fan-out job: one shard's log
      runner logs JOB_ID --item yellow_tripdata_2012-03.csv
    """
    from runner import jobs, watch
    from runner import logs as joblogs

    store = _store()
    jobs.read_status(store, jobs.check_job_id(job_id))  # a clear error for an unknown job
    if item is not None or shard is not None or joblogs.is_fanout(store, job_id):
        job_id = joblogs.fanout_target(store, job_id, shard, item, sys.stdout.buffer, follow, _note)
        if job_id is None:
            return
    out = sys.stdout.buffer
    if follow:
        # job.yaml's cancel_on_interrupt is the launcher's: a watcher's Ctrl-C cancels only when asked (or in CI)
        with interrupts.guard(store, job_id, interrupts.should_cancel(cancel_on_interrupt, None, os.environ)):
            from runner.progress import Progress

            watch.wait(store, job_id, follow=True, out=out, progress=None if quiet else Progress())
    else:
        joblogs.show(store, job_id, "job.log", out, _note, console=not show_all)
    if show_all:
        for name in ("startup.log", "console.log"):
            click.echo(f"==> {name} <==")
            joblogs.show(store, job_id, name, out, _note, console=name == "console.log")


def _note(line: str) -> None:
    click.echo(line, err=True)


@main.command()
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
    from runner import jobs, status_table

    store = _store()
    if job_id:
        from runner.fanout import views

        fan = views.fanout_of(store, jobs.check_job_id(job_id))
        if fan is not None:
            _status_of_parent(store, job_id, fan, as_json, show_items)
            return
        row = status_table.row(store, jobs.check_job_id(job_id), detail=True)
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


@main.command()
@click.argument("job_id")
@click.option("--vms", type=click.IntRange(1, 1000), metavar="M", help="VMs for the missing items (default: as many as needed, at most the job's own).")
@click.option("--wait", is_flag=True, help="Wait for the job to end and exit with its code (as launch --wait).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--cancel-on-interrupt/--no-cancel-on-interrupt", default=None,
              help="With --wait: on Ctrl-C or SIGTERM, cancel the job (default: job.yaml's, else on in CI).")
def retry(job_id, vms, wait, as_json, cancel_on_interrupt):
    """Relaunch a fan-out job's items that have no result (then its reduce), on new VMs in the same job.

    \b
    Examples:
      runner retry JOB_ID --vms 2 --wait   # only the items without a done marker, then the reduce
      runner retry JOB_ID --json
    """
    from runner import jobs
    from runner.fanout import launch as fanout

    store = _store()
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
    _wait_fanout(store, job_id, spec, as_json, cancel_on_interrupt, done.shards)


@main.command()
@click.argument("job_id")
def cancel(job_id):
    """Stop a job's VM and mark the job CANCELLED (a job that already ended stays as it is).

    \b
    Example (the id as `runner status` lists it):
      runner cancel JOB_ID
    """
    from runner import jobs
    from runner.cancel import cancel as cancel_job

    result = cancel_job(_store(), jobs.check_job_id(job_id))
    for line in result.lines:
        click.echo(line, err=True)


@main.command()
@click.option("--cloud", "clouds", multiple=True, type=click.Choice(["sandbox", "local", "aws", "gcp"]),
              help="Backend to sweep (repeatable; default: sandbox and local).")
@click.option("--yes", is_flag=True, help="Terminate what is found (without it: only list).")
def gc(clouds, yes):
    """Find runner's VMs whose job ended, is unknown, or is past its deadline; terminate them with --yes.

    Run it from cron or CI: nothing bills forever, even when the machine that launched a job died.

    \b
    Examples:
      runner gc --cloud aws          # list what would be terminated
      runner gc --cloud aws --yes    # terminate it
    """
    from runner.gc import find_strays
    from runner.providers import get_provider

    store = _store()
    found = 0
    for cloud in clouds or ("sandbox", "local"):
        provider = get_provider(cloud)
        for stray in find_strays(store, provider):
            found += 1
            inst = stray.instance
            verb = "terminating" if yes else "would terminate"
            click.echo(f"{verb} {cloud} {inst.id} ({inst.job_id}): {stray.why}")
            if yes:
                provider.terminate(inst)
    if not found:
        click.echo("nothing to sweep", err=True)
    elif not yes:
        again = " ".join(["runner gc", *(f"--cloud {c}" for c in clouds), "--yes"])
        click.echo(f"{found} VM(s) found; terminate them with: {again}", err=True)


@main.command()
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

    result = out.download(_store(), jobs.check_job_id(job_id), dest)
    for note in result.notes:
        click.echo(note, err=True)
    for g in result.got:
        click.echo(g)
    if not result.got:
        raise NotFoundError(f"{job_id} has no outputs in the store; see `runner status {job_id}` and `runner logs {job_id}`")


@main.command()
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

    click.echo(job_report.write(_store(), jobs.check_job_id(job_id), out or Path(f"{job_id}.html")))


@main.command()
@click.option("--cloud", type=click.Choice(["sandbox", "local", "aws", "gcp"]), help="Backend to check (default: $RUNNER_CLOUD or config).")
def doctor(cloud):
    """Check the setup for a cloud (credentials, store, image, network); launches nothing.

    \b
    Examples:
      runner doctor --cloud aws
      runner doctor --cloud local
    """
    from runner import config
    from runner.providers import get_provider

    provider = get_provider(cloud or config.default_cloud())
    checks = provider.doctor() if hasattr(provider, "doctor") else []
    for ok, what, detail in checks:
        click.secho(f"{'OK' if ok else 'FAIL':<4} {what:<16} {detail}", fg="green" if ok else "red")
    if not checks:
        click.echo(f"nothing to check for {provider.name}: it needs no account")
    sys.exit(0 if all(ok for ok, _, _ in checks) else 1)
