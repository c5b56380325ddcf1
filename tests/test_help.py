"""Every command's --help shows an example, and each `runner ...` line in it is a command runner accepts."""

from __future__ import annotations

import shlex

import click
import pytest
from click.testing import CliRunner

from runner.cli import main

COMMANDS = sorted(main.commands)


def help_of(*args: str) -> str:
    r = CliRunner().invoke(main, [*args, "--help"], terminal_width=100)
    assert r.exit_code == 0, r.output
    return r.output


def example_lines(text: str) -> list[str]:
    """The lines of a help text that are a runner command line (as a `\\b` block keeps them), without a comment."""
    return [line.split(" #")[0].strip() for line in text.splitlines() if line.strip().startswith("runner ")]


def parses(line: str) -> None:
    """Parse `line` as runner would (options, choices, arguments), without running it; click raises if it is wrong."""
    words = shlex.split(line, comments=True)[1:]
    args = words[:next((i for i, w in enumerate(words) if w in (">", "|")), len(words))]  # up to a redirection or pipe
    cmd = main.get_command(click.Context(main), args[0])
    if cmd is None:
        raise click.UsageError(f"no command {args[0]!r}")
    cmd.make_context(args[0], args[1:])


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_has_an_example_that_runner_accepts(name):
    text = help_of(name)
    assert "Example" in text, f"`runner {name} --help` has no example:\n{text}"
    lines = [line for line in example_lines(text) if line.split()[1] == name]
    assert lines, f"`runner {name} --help` shows no `runner {name} ...` line:\n{text}"
    for line in lines:
        parses(line)


def test_the_top_level_help_has_an_example_that_runner_accepts():
    text = help_of()
    assert "Example" in text
    assert example_lines(text)
    for line in example_lines(text):
        parses(line)


def test_a_wrong_example_would_be_caught():
    with pytest.raises(click.UsageError):
        parses("runner launch jobs/taxi --cloud nowhere")
    with pytest.raises(click.UsageError):
        parses("runner status --no-such-flag")


def test_a_missing_local_image_names_the_exact_build_command(runner_home, monkeypatch, tmp_path):
    from runner import images
    from runner.errors import NotFoundError

    monkeypatch.setenv("RUNNER_IMAGES", str(tmp_path / "no-images"))
    with pytest.raises(NotFoundError, match=r"build one with `make image CLOUD=local`"):
        images.local_image(None)
    with pytest.raises(NotFoundError, match=r"build it with `make image CLOUD=local`, or pass --image"):
        images.local_image(str(tmp_path / "gone.qcow2"))


def test_a_denied_store_names_the_doctor_command():
    from botocore.exceptions import ClientError

    from runner.cloud_stores import S3Store
    from runner.errors import StoreError

    def denied():
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    with pytest.raises(StoreError, match=r"access denied \(AccessDenied\); `runner doctor --cloud aws` checks"):
        S3Store("s3://bucket/prefix")._call("read", "jobs/x/status.json", denied)


def test_an_unreachable_cloud_names_the_doctor_command():
    from botocore.exceptions import EndpointConnectionError

    from runner.providers.aws_errors import translate

    err = translate(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "EC2 DescribeInstances")
    assert "`runner doctor --cloud aws`" in str(err)


def test_gc_dry_run_names_the_command_that_terminates(monkeypatch, runner_home):
    from types import SimpleNamespace

    from runner import gc
    from runner.providers.base import Instance

    stray = SimpleNamespace(instance=Instance("sandbox", "sandbox-1", "orphan-20250101T000000Z-abcdef"), why="its job ended")
    monkeypatch.setattr(gc, "find_strays", lambda store, provider: [stray])
    r = CliRunner().invoke(main, ["gc", "--cloud", "sandbox"])
    assert r.exit_code == 0 and "1 VM(s) found; terminate them with: runner gc --cloud sandbox --yes" in r.output
    parses("runner gc --cloud sandbox --yes")
