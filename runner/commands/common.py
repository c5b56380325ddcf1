"""What the command modules share: the store, the spec flags, planning from flags, notes on stderr."""

from __future__ import annotations

import click


def store():
    """The store named by $RUNNER_STORE (or the config), opened."""
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
        click.option("--disk-type", metavar="TYPE", help="Root disk type (GCP: pd-*, hyperdisk-balanced, by family; AWS: gp3)."),
        click.option("--disk-throughput", type=int, metavar="MBPS", help="Root disk MiB/s (AWS gp3: 125-2000; GCP hyperdisk-balanced: 140-2400)."),
        click.option("--disk-iops", type=int, metavar="N", help="Root disk IOPS (AWS gp3: 3000-80000; GCP hyperdisk-balanced: 3000-160000)."),
        click.option("--local-ssds", type=int, metavar="N", help="GCP: local SSDs (375 GB each) striped into the job's scratch."),
        click.option("--region", metavar="R", help="Cloud region."),
        click.option("--zone", metavar="Z", help="Cloud zone."),
        click.option("--vms", type=int, metavar="N", help="VMs a job with items runs on (1-1000; capped at the number of items)."),
        click.option("--nodes", type=int, metavar="N", help="Run the job on a Ray cluster of N VMs (2-64): a head and N-1 workers."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def plan_from_flags(job_dir, cloud, env, **flags):
    from runner.launch import plan
    from runner.spec import parse_env

    overrides = {**flags, "env": parse_env(env) if env else None}
    return plan(job_dir, overrides, cloud)


def note(line: str) -> None:
    click.echo(line, err=True)
