"""Waiting on a fan-out job: a line of items and shards from the shards' summaries and statuses, the failed items
that --follow prints, and `runner logs ID --follow` of a fan-out job."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, run_cli

from runner import jobs
from runner.fanout import ids, state
from runner.progress import FanoutLooker, ItemNotes, describe_fanout
from runner.store import open_store

PARENT = "fan-20260101T000000Z-abcdef"
ITEMS_RE = re.compile(r"\| items (\d+)/(\d+) done(?:, (\d+) failed)? \| shards (\d+) running, (\d+) ended")


# --- the pieces, without a backend

def test_describe_fanout_shows_items_shards_elapsed_and_cost():
    key, text = describe_fanout(PARENT, jobs.RUNNING, state.counts(7, 3, 1), 2, 1, 75.0, 0.25)
    assert text == f"{PARENT}: RUNNING | items 3/7 done, 1 failed | shards 2 running, 1 ended | 1:15 | $0.2500"
    assert key == (jobs.RUNNING, "3/1/2/1/0")
    key2, text = describe_fanout(PARENT, jobs.RUNNING, state.counts(7, 7, 0), 1, 2, 80.0, None, reducing=True)
    assert text == f"{PARENT}: RUNNING | items 7/7 done | shards 1 running, 2 ended; reducing | 1:20"
    assert key2 != key
    assert describe_fanout(PARENT, jobs.RUNNING, state.counts(7, 3, 1), 2, 1, 99.0, 0.5)[0] == key  # time alone is no change


class CountingStore:
    """A store that records every key read."""

    def __init__(self, store) -> None:
        self.store, self.read = store, []

    def get_bytes(self, key, *a, **kw):
        self.read.append(key)
        return self.store.get_bytes(key, *a, **kw)

    def get_versioned(self, key, *a, **kw):
        self.read.append(key)
        return self.store.get_versioned(key, *a, **kw)

    def __getattr__(self, name):
        return getattr(self.store, name)


def shard_records(store, k: int, status: jobs.Status, summary: dict | None, rate: float | None = 3.6) -> jobs.Status:
    sid = ids.shard_id(PARENT, k)
    jobs.write_json(store, sid, "job.json", {"job_id": sid, "usd_per_hour": rate, "parent": PARENT, "shard": k})
    if summary is not None:
        jobs.write_json(store, sid, "summary.json", summary)
    jobs.write_status(store, sid, status)
    return status


def test_the_looker_reads_each_shards_summary_and_price_never_an_item(tmp_path):
    base = open_store(f"file://{tmp_path}/store")
    ended = jobs.Status(jobs.FAILED, 1, "the job exited with code 1", started_at="2026-01-01T00:00:00Z", ended_at="2026-01-01T00:01:40Z")
    running = jobs.Status(jobs.RUNNING, started_at=None)
    statuses = {0: shard_records(base, 0, ended, {"total": 3, "done": 2, "failed": 1, "failed_items": {"b": 3}}),
                1: shard_records(base, 1, running, {"total": 2, "done": 1, "failed": 0, "failed_items": {}})}
    for name in "abcde":  # items/ is there, and never read
        base.put_bytes(jobs.job_key(PARENT, "items", name, "exit_code"), b"0")
    store = CountingStore(base)
    looker = FanoutLooker(store, PARENT, 5, has_reduce=False)
    key, text = looker.look(statuses)
    assert "| items 3/5 done, 1 failed | shards 1 running, 1 ended |" in text
    assert text.endswith("| $0.1000")  # the ended shard: 100 s at $3.60 an hour; the other has not started
    assert looker.failed == {"b": 3}
    looker.look(statuses)
    reads = [k.removeprefix("jobs/") for k in store.read]
    assert not [k for k in reads if "/items/" in k]
    s0, s1 = ids.shard_id(PARENT, 0), ids.shard_id(PARENT, 1)
    assert reads.count(f"{s0}/summary.json") == 1  # an ended shard's summary is read once
    assert reads.count(f"{s1}/summary.json") == 2  # a running one's every look
    assert {k.split("/", 1)[1] for k in reads} <= {"summary.json", "instance.json", "job.json"}
    assert reads.count(f"{s0}/job.json") == 1 and f"{s1}/job.json" not in reads  # a price once, after the start


def test_item_notes_print_each_failed_item_once_and_the_hint_once(tmp_path):
    store = open_store(f"file://{tmp_path}/store")
    looker = FanoutLooker(store, PARENT, 300, has_reduce=True)
    out, err = io.BytesIO(), []
    notes = ItemNotes(PARENT, out)
    failed = {f"i{n:02d}": 2 for n in range(99)}  # with "ok": the 100 a summary names at most
    status = jobs.Status(jobs.RUNNING, started_at="2026-01-01T00:00:00Z")
    shard_records(store, 0, status, {"total": 300, "done": 10, "failed": 1, "failed_items": {"x\x1b[2J": 1, "a b": 4, "ok": 5}})
    looker.look({0: status})
    notes.show(looker, err.append)
    shard_records(store, 0, status, {"total": 300, "done": 20, "failed": 150, "failed_items": {"ok": 5, **failed}})
    looker.look({0: status})
    notes.show(looker, err.append)
    notes.show(looker, err.append)
    lines = out.getvalue().decode().splitlines()
    assert lines[0] == "ok: exit 5" and sorted(lines[1:]) == [f"i{n:02d}: exit 2" for n in range(99)]  # unsafe names dropped
    assert err == [f"an item's log: runner logs {PARENT} --item NAME",
                   f"more items failed than the shards' summaries name: runner status {PARENT} --items"]


# --- end to end in the sandbox: each item waits for its gate; the test opens the next one once the line shows
#     every opened item finished, so the line must show each count in turn

COMMAND = ('while [ ! -e "$GATES/$RUNNER_ITEM_NAME" ]; do sleep 0.05; done; '
           '[ "$RUNNER_ITEM_NAME" != c ] || exit 3; echo "$RUNNER_ITEM_NAME" > "$RUNNER_ITEM_OUTPUT/r"')
ORDER = "abcd"


def gated_fanout(make_job, tmp_path: Path, **extra) -> tuple[Path, Path]:
    gates = tmp_path / "gates"
    gates.mkdir()
    spec = {"name": "fan", "command": COMMAND, "env": {"GATES": str(gates)}, "vms": 2,
            "items": {"manifest": "items.txt", "fetch": False, "per_vm": 1}, **extra}
    return make_job(spec, {"items.txt": "".join(i + "\n" for i in ORDER)}), gates


def drive(fd: int, gates: Path, proc: subprocess.Popen) -> str:
    """Read the launcher's stderr; open the next gate whenever the line shows every opened item finished."""
    text, opened, deadline = b"", 0, time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the pty's other end is closed
                chunk = b""
            if not chunk:
                return text.decode()
            text += chunk
            seen = [int(m[1]) + int(m[3] or 0) for m in ITEMS_RE.finditer(text.decode(errors="replace"))]
            if seen and seen[-1] == opened and opened < len(ORDER):
                (gates / ORDER[opened]).touch()
                opened += 1
    proc.kill()
    for name in ORDER:  # the shards finish on their own
        (gates / name).touch()
    raise AssertionError(f"the launch did not end; its stderr so far: {text!r}")


def finished_counts(err: str) -> list[int]:
    return [int(m[1]) + int(m[3] or 0) for m in ITEMS_RE.finditer(err)]


def test_without_a_terminal_a_line_per_change_counts_rising_and_stdout_only_the_failed_item(make_job, tmp_path):
    job, gates = gated_fanout(make_job, tmp_path)
    argv = [sys.executable, "-m", "runner", "launch", str(job), "--cloud", "sandbox", "--follow"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=ROOT)
    err = drive(proc.stderr.fileno(), gates, proc)
    out = proc.stdout.read()
    assert proc.wait() == 72, err
    assert out == b"c: exit 3\n"  # --follow on a fan-out: each failed item, then the reduce's log (none here)
    lines = [line for line in err.splitlines() if ITEMS_RE.search(line)]
    assert len(lines) == len(set(lines))  # one line per change
    counts = finished_counts(err)
    assert counts == sorted(counts) and {0, 1, 2, 3, 4} <= set(counts), err
    last = ITEMS_RE.search(lines[-1])
    assert lines[-1].startswith("fan-") and ": FAILED |" in lines[-1] and last.groups() == ("3", "4", "1", "0", "2"), err
    assert re.search(r"\| \d+:\d\d \| \$0\.0000$", lines[-1])  # elapsed and cost (the sandbox is free)
    assert "an item's log: runner logs fan-" in err and " --item NAME" in err
    assert "\x1b" not in err and "\r" not in err


def test_on_a_terminal_the_line_is_redrawn_in_place_and_stdout_holds_only_the_failed_item(make_job, tmp_path):
    job, gates = gated_fanout(make_job, tmp_path)
    argv = [sys.executable, "-m", "runner", "launch", str(job), "--cloud", "sandbox", "--follow"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, cwd=ROOT)
    os.close(slave)
    try:
        err = drive(master, gates, proc)
    finally:
        os.close(master)
    out = proc.stdout.read()
    assert proc.wait() == 72, err
    assert out == b"c: exit 3\n"
    counts = finished_counts(err)
    assert counts == sorted(counts) and {0, 1, 2, 3, 4} <= set(counts), err
    # every draw of the line starts by clearing it: none is on a line of its own
    assert all(pre == "\r\x1b[K" for pre, _ in re.findall(r"(\r\x1b\[K|\n|^)([^\r\n]*\| items \d+/\d+ done)", err)), err
    assert "\r\x1b[Kan item's log: runner logs fan-" in err  # the hint clears the line first


def test_wait_and_quiet_print_no_line_and_nothing_on_stdout(make_job, tmp_path):
    job, gates = gated_fanout(make_job, tmp_path)
    for name in ORDER:
        (gates / name).touch()
    r = run_cli("launch", str(job), "--cloud", "sandbox", "--wait", "--quiet", timeout=180)
    assert r.returncode == 72, r.stderr
    assert r.stdout == "" and not ITEMS_RE.search(r.stderr) and "FAILED (exit 72)" in r.stderr


def test_retry_wait_shows_the_line(make_job, tmp_path):
    job, gates = gated_fanout(make_job, tmp_path)
    for name in ORDER:
        (gates / name).touch()
    r = run_cli("launch", str(job), "--cloud", "sandbox", "--wait", "--quiet", "--json", timeout=180)
    parent = json.loads(r.stdout)["job_id"]
    assert r.returncode == 72, r.stderr  # item c exits 3 every time it runs
    r = run_cli("retry", parent, "--wait", timeout=180)
    assert r.returncode == 72, r.stderr
    lines = [line for line in r.stderr.splitlines() if ITEMS_RE.search(line)]
    assert lines and ITEMS_RE.search(lines[-1]).groups() == ("3", "4", "1", "0", "3"), r.stderr  # 2 shards, then 1 for c
    assert r.stdout == ""


def test_launch_and_logs_follow_of_a_fanout_job_print_the_reduce_log(make_job, tmp_path):
    reduce = {"command": "echo reducing; cat items/*/r | sort | tr -d '\\n'; echo", "outputs": []}
    gates = tmp_path / "gates"
    gates.mkdir()
    for name in ORDER:
        (gates / name).touch()
    spec = {"name": "fan", "command": COMMAND.replace("!= c", "!= nothing"), "env": {"GATES": str(gates)}, "vms": 2,
            "items": {"manifest": "items.txt", "fetch": False, "per_vm": 1}, "reduce": reduce}
    job = make_job(spec, {"items.txt": "".join(i + "\n" for i in ORDER)})
    r = run_cli("launch", str(job), "--cloud", "sandbox", "--follow", timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "reducing\nabcd\n"  # nothing failed: only the reduce's log
    parent = re.search(r"launched (fan-\S+) on sandbox", r.stderr)[1]
    r = run_cli("logs", parent, "--follow", timeout=180)  # the same, from any machine with the store, once it has ended
    assert r.returncode == 0, r.stderr
    assert r.stdout == "reducing\nabcd\n"
    assert re.search(r"items 4/4 done \| shards 0 running, 2 ended", r.stderr), r.stderr
    assert f"{parent}: SUCCEEDED: 4 of 4 items done, 0 failed, 0 missing" in r.stderr
    assert json.loads(run_cli("status", parent, "--json").stdout)["state"] == "SUCCEEDED"


# --- a watcher (runner logs ID --follow) over records written by hand: it never relaunches a shard

def test_the_line_says_reducing_only_while_reduce_status_says_so(tmp_path):
    store = open_store(f"file://{tmp_path}/store")
    ended = jobs.Status(jobs.SUCCEEDED, 0, started_at="2026-01-01T00:00:00Z", ended_at="2026-01-01T00:01:00Z")
    running = jobs.Status(jobs.RUNNING, started_at="2026-01-01T00:00:00Z")
    statuses = {0: shard_records(store, 0, ended, {"total": 2, "done": 2, "failed": 0, "failed_items": {}}),
                1: shard_records(store, 1, running, {"total": 2, "done": 2, "failed": 0, "failed_items": {}})}
    looker = FanoutLooker(store, PARENT, 4, has_reduce=True)
    assert "| shards 1 running, 1 ended |" in looker.look(statuses)[1]  # every item done; no reduce yet
    store.put_bytes(jobs.job_key(PARENT, "reduce", "status.json"), b'{"state": "RUNNING", "exit_code": null}')
    assert "| shards 1 running, 1 ended; reducing |" in looker.look(statuses)[1]
    assert "reducing" not in FanoutLooker(store, PARENT, 4, has_reduce=False).look(statuses)[1]


def test_a_watcher_leaves_a_preempted_shard_with_retries_to_its_launcher(runner_home):
    from test_fanout_views import NAMES, PARENT, item, parent_record, shard

    from runner.fanout.launch import wait_fanout
    from runner.store import FileStore

    store = FileStore(f"file://{runner_home}/store")
    parent_record(store, NAMES, vms=2, reduce=False, retries=1)
    shard(store, 0, jobs.SUCCEEDED, 3, 3, exit_code=0)
    shard(store, 1, jobs.PREEMPTED, 0, 2, attempt=1)
    for n in NAMES[:3]:
        item(store, n, 0)
    status, counts = wait_fanout(store, PARENT, poll=0.01, relaunch=False)
    assert status.state == jobs.RUNNING and counts.to_json() == {"total": 5, "done": 3, "failed": 0, "missing": 2}
    assert jobs.read_status(store, PARENT).state == jobs.PROVISIONING  # nothing final written
    assert jobs.read_json(store, ids.shard_id(PARENT, 1), "instance.json")["attempt"] == 1  # not relaunched
    r = run_cli("logs", PARENT, "--follow")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert f"{PARENT}: RUNNING: 3 of 5 items done, 0 failed, 2 missing" in r.stderr
    assert f"runner retry {PARENT}" in r.stderr and "a waiting `runner launch` relaunches them" in r.stderr
