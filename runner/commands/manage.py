"""Commands that stop or check things: cancel, gc, doctor."""

from __future__ import annotations

import sys

import click

from runner.commands import common


@click.command()
@click.argument("job_id")
def cancel(job_id):
    """Stop a job's VM and mark the job CANCELLED (a job that already ended stays as it is).

    \b
    Example (the id as `runner status` lists it):
      runner cancel JOB_ID
    """
    from runner import jobs
    from runner.cancel import cancel as cancel_job

    result = cancel_job(common.store(), jobs.check_job_id(job_id))
    for line in result.lines:
        click.echo(line, err=True)


@click.command()
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

    store = common.store()
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


@click.command()
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
