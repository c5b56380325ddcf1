"""runner: one job, one VM from a baked image, gone when the job ends.

Jobs live in folders with a job.yaml. Records, logs and outputs live in the store
($RUNNER_STORE, default file://$RUNNER_HOME/store), so any machine with the store sees them.
"""

from __future__ import annotations

import sys

import click

from runner.commands import inspect, manage, run
from runner.errors import RunnerError


class Group(click.Group):
    """Turns RunnerError into a one-line message and its exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RunnerError as e:
            click.secho(f"runner: {e}", fg="red", err=True)
            sys.exit(e.exit_code)


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


for command in (run.launch, run.render, run.retry, inspect.logs, inspect.status, inspect.outputs, inspect.report,
                manage.cancel, manage.gc, manage.doctor):
    main.add_command(command)
