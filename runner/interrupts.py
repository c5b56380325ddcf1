"""Ctrl-C or SIGTERM while a command waits on a job: say how to cancel it (or cancel it), then exit 130.

A pipeline that is cancelled (GitHub Actions sends SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that)
must not leave a VM billing: with cancel on, the job is cancelled at once, the VM told to stop first and
the status written after, and a second signal during that cancel is noted, never obeyed.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

EXIT = 130  # as a shell reports a command ended by SIGINT
SIGNALS = (signal.SIGINT, signal.SIGTERM)
CI_VARIABLES = ("CI", "GITHUB_ACTIONS")  # GitHub Actions sets both, GitLab CI sets CI


class Interrupted(BaseException):  # noqa: N818 -- not an error: a signal, raised where the wait was
    """SIGINT or SIGTERM arrived while waiting (a BaseException, so no `except Exception` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def in_ci(environ: Mapping[str, str]) -> bool:
    """Whether a CI system runs this command ($CI or $GITHUB_ACTIONS is true)."""
    return any(environ.get(v, "").strip().lower() in ("true", "1") for v in CI_VARIABLES)


def should_cancel(flag: bool | None, setting: bool | None, environ: Mapping[str, str]) -> bool:
    """The --[no-]cancel-on-interrupt flag, else job.yaml's cancel_on_interrupt, else on in CI only."""
    if flag is not None:
        return flag
    if setting is not None:
        return setting
    return in_ci(environ)


@contextmanager
def _handlers(handler: Callable) -> Iterator[None]:
    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def raising() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise Interrupted where the program is (no KeyboardInterrupt, no death)."""

    def handler(signum, frame):
        raise Interrupted(signum)

    with _handlers(handler):
        yield


@contextmanager
def shielded(note: Callable[[str], None], doing: str) -> Iterator[None]:
    """Within: SIGINT and SIGTERM are only noted (`doing` says what goes on), so a cancel under way is not cut short."""

    def handler(signum, frame):
        note(f"runner: {signal.Signals(signum).name} again: {doing}")

    with _handlers(handler):
        yield


def on_interrupt(store, job_id: str, signum: int, cancel: bool, as_json: bool, note: Callable[[str], None]) -> None:
    """What an interrupt does: cancel the job (VM first, status after), or say it runs on and how to cancel it."""
    name = signal.Signals(signum).name
    command = f"runner cancel {job_id}"
    if not cancel:
        note(f"runner: {name}: stopped waiting; {job_id} is still running. Cancel it with: {command}")
        if as_json:
            print(json.dumps({"job_id": job_id, "interrupted": name, "cancelled": False, "cancel_with": command}), flush=True)
        return
    from runner.cancel import cancel as cancel_job
    from runner.errors import RunnerError

    note(f"runner: {name}: cancelling {job_id}")
    try:
        with shielded(note, "still cancelling (the VM is being told to stop)"):
            result = cancel_job(store, job_id, wait=False, reason=f"cancelled: {name} while runner waited on it")
    except RunnerError as e:
        note(f"runner: could not cancel {job_id}: {e}; it may still be running. Cancel it with: {command}")
        if as_json:
            print(json.dumps({"job_id": job_id, "interrupted": name, "cancelled": False, "cancel_with": command}), flush=True)
        return
    for line in result.lines:
        note(line)
    if as_json:
        print(json.dumps({"job_id": job_id, "interrupted": name, "cancelled": True, "state": result.state}), flush=True)


def to_stderr(line: str) -> None:
    """Print a line on stderr; on a terminal, over whatever live line was there (a progress line)."""
    clear = "\r\x1b[K" if sys.stderr.isatty() else ""
    print(clear + line, file=sys.stderr, flush=True)


@contextmanager
def guard(store, job_id: str, cancel: bool, as_json: bool = False, note: Callable[[str], None] = to_stderr) -> Iterator[None]:
    """Wrap a wait on `job_id`: on SIGINT or SIGTERM, handle it as `on_interrupt` says and exit 130."""
    try:
        with raising():
            yield
    except Interrupted as e:
        with shielded(note, "still cancelling (the VM is being told to stop)" if cancel else "exiting"):
            on_interrupt(store, job_id, e.signum, cancel, as_json, note)
        raise SystemExit(EXIT) from None
