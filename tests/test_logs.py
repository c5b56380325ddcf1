"""Logs from the store: numbered parts per attempt, each attempt once and in order, byte-exact, streamed."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from runner import jobs, logs, watch
from runner.store import FileStore

JOB = "log-20250101T000000Z-abcdef"


@pytest.fixture
def store(runner_home):
    store = FileStore(f"file://{runner_home}/store")
    jobs.write_json(store, JOB, "job.json", {"job_id": JOB, "cloud": "sandbox", "outputs": {}})
    jobs.write_status(store, JOB, jobs.Status(jobs.RUNNING))
    return store


def part(store, attempt: int, seq: int, data: bytes, name: str = "job.log") -> None:
    store.put_bytes(jobs.job_key(JOB, "logs", str(attempt), f"{name}.{seq:06d}"), data)


def runner_bytes(*args: str) -> subprocess.CompletedProcess:
    """`runner ARGS` with stdout as bytes (the log is not decoded on the way)."""
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, cwd=ROOT, timeout=120, env=os.environ)


def test_follow_prints_each_attempt_once_in_order_byte_exact(store):
    out = io.BytesIO()
    follower = logs.Follower(store, JOB, out)
    part(store, 1, 0, b"caf\xc3")  # a character split at a push boundary
    follower.poll()
    part(store, 1, 1, b"\xa9 1\n")
    part(store, 1, 3, b"later\n")  # not listed in order yet: waits for 000002
    follower.poll()
    assert out.getvalue() == b"caf\xc3\xa9 1\n"
    part(store, 1, 2, b"\xff raw\n")  # not UTF-8 at all: passes through untouched
    part(store, 2, 0, b"attempt 2\n")
    follower.poll()
    follower.poll()
    assert out.getvalue() == b"caf\xc3\xa9 1\n\xff raw\nlater\nattempt 2\n"
    part(store, 2, 1, b"more\n")
    jobs.write_status(store, JOB, jobs.Status(jobs.SUCCEEDED, exit_code=0))
    assert watch.wait(store, JOB, follower=follower, poll=0.01).state == jobs.SUCCEEDED
    assert out.getvalue() == b"caf\xc3\xa9 1\n\xff raw\nlater\nattempt 2\nmore\n"


def test_wait_after_a_relaunch_moves_on_to_the_next_attempt(store):
    """launch --wait --follow waits once per attempt with one follower: attempt 1 is never printed twice."""
    out = io.BytesIO()
    follower = logs.Follower(store, JOB, out)
    part(store, 1, 0, b"working\n")
    jobs.write_status(store, JOB, jobs.Status(jobs.PREEMPTED))
    watch.wait(store, JOB, follower=follower, poll=0.01)
    part(store, 2, 0, b"resumed\n")
    jobs.write_status(store, JOB, jobs.Status(jobs.SUCCEEDED, exit_code=0), replacing=jobs.PREEMPTED)
    watch.wait(store, JOB, follower=follower, poll=0.01)
    assert out.getvalue() == b"working\nresumed\n"


def test_a_legacy_whole_log_is_attempt_one(store):
    store.put_bytes(jobs.job_key(JOB, "logs", "job.log"), b"old \xc3\xa9\n")
    out = io.BytesIO()
    follower = logs.Follower(store, JOB, out)
    follower.poll()
    store.put_bytes(jobs.job_key(JOB, "logs", "job.log"), b"old \xc3\xa9\nand more\n")  # it grew (an old VM re-uploads)
    follower.poll()
    part(store, 2, 0, b"new\n")
    follower.poll()
    assert out.getvalue() == b"old \xc3\xa9\nand more\nnew\n"


def test_logs_prints_every_attempt_with_a_header_each(store):
    part(store, 1, 0, b"one \xe2\x82")
    part(store, 1, 1, b"\xac\n")
    part(store, 2, 0, b"two\n")
    part(store, 2, 0, b"startup 2\n", name="startup.log")
    store.put_bytes(jobs.job_key(JOB, "logs", "console.log"), b"console\n")  # a host-written whole file
    r = runner_bytes("logs", JOB)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"one \xe2\x82\xac\ntwo\n"
    assert r.stderr.decode().splitlines() == ["==> job.log, attempt 1 <==", "==> job.log, attempt 2 <=="]
    r = runner_bytes("logs", JOB, "--all")
    assert r.stdout.startswith(b"one \xe2\x82\xac\ntwo\n") and b"startup 2\n" in r.stdout and b"console\n" in r.stdout
    jobs.write_status(store, JOB, jobs.Status(jobs.SUCCEEDED, exit_code=0))
    r = runner_bytes("logs", JOB, "--follow")
    assert r.returncode == 0 and r.stdout == b"one \xe2\x82\xac\ntwo\n"


def test_one_attempt_has_no_header(store):
    part(store, 1, 0, b"only\n")
    r = runner_bytes("logs", JOB)
    assert r.stdout == b"only\n" and r.stderr == b""


class Counting(FileStore):
    """A file store that records the length asked of every read."""

    asked: list

    def get_bytes(self, key, offset=0, length=None):
        self.asked.append(length)
        return super().get_bytes(key, offset, length)


def test_logs_are_read_in_bounded_ranges(runner_home, monkeypatch):
    store = Counting(f"file://{runner_home}/store")
    store.asked = []
    monkeypatch.setattr(logs, "CHUNK", 1000)
    store.put_bytes(jobs.job_key(JOB, "logs", "job.log"), b"x" * 4500)  # legacy whole object
    out = io.BytesIO()
    logs.print_all(store, JOB, "job.log", out, lambda line: None)
    assert out.getvalue() == b"x" * 4500
    assert store.asked and all(n is not None and n <= 1000 for n in store.asked)
    store.asked.clear()
    part(store, 2, 0, b"y" * 2500)
    out = io.BytesIO()
    logs.Follower(store, JOB, out).poll()
    assert out.getvalue() == b"x" * 4500 + b"y" * 2500
    assert all(n is not None and n <= 1000 for n in store.asked)


def test_part_keys_that_are_not_parts_are_ignored(store):
    part(store, 1, 0, b"a\n")
    store.put_bytes(jobs.job_key(JOB, "logs", "1", "job.log.12"), b"not a part\n")
    store.put_bytes(jobs.job_key(JOB, "logs", "1", "job.log.000001.tmp"), b"not a part\n")
    store.put_bytes(jobs.job_key(JOB, "logs", "0", "job.log.000000"), b"attempt 0 is none\n")
    out = io.BytesIO()
    logs.print_all(store, JOB, "job.log", out, lambda line: None)
    assert out.getvalue() == b"a\n"
