"""A fan-out job end to end in the sandbox: shards as ordinary jobs, retry of only what is missing, refusals."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

from conftest import run_cli
from test_sandbox import wait_for

# Each item records that it ran; item `e` fails the first time (until its mark exists), `c` blocks while BLOCK exists.
COMMAND = (
    'echo "$RUNNER_ITEM_NAME" >> "$MARKS/ran"; '
    'if [ "$RUNNER_ITEM_NAME" = e ] && [ ! -e "$MARKS/e-failed" ]; then touch "$MARKS/e-failed"; exit 1; fi; '
    'while [ "$RUNNER_ITEM_NAME" = c ] && [ -e "$MARKS/block" ]; do sleep 0.2; done; '
    'printf "%s\\n" "$RUNNER_ITEM" > "$RUNNER_ITEM_OUTPUT/line"'
)


def fanout_job(make_job, marks: Path, items: list[str], **extra) -> Path:
    marks.mkdir(parents=True, exist_ok=True)
    spec = {"name": "fan", "command": COMMAND, "env": {"MARKS": str(marks)},
            "items": {"manifest": "items.txt", "fetch": False, "per_vm": 1}, **extra}
    return make_job(spec, {"items.txt": "".join(i + "\n" for i in items)})


def runner_json(*args: str) -> tuple[int, dict, str]:
    r = run_cli(*args, "--json", timeout=300)
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}, r.stderr


def ran(marks: Path) -> list[str]:
    return (marks / "ran").read_text().split()


def test_seven_items_over_three_shards_then_retry_runs_only_the_failed_one(runner_home, make_job, tmp_path):
    marks = tmp_path / "marks"
    reduce = {"command": "cat items/*/line | sort > all.txt", "outputs": ["all.txt"]}
    d = fanout_job(make_job, marks, list("abcdefg"), vms=3, reduce=reduce)
    rc, obj, err = runner_json("launch", str(d), "--cloud", "sandbox", "--wait")
    assert rc == 72, err  # item e failed: the job is FAILED with the items' code, the reduce did not run
    parent = obj["job_id"]
    assert obj["state"] == "FAILED" and obj["items"] == {"total": 7, "done": 6, "failed": 1, "missing": 0}
    assert f"runner retry {parent}" in obj["reason"]
    assert [s["items"] for s in obj["shards"]] == [3, 2, 2] and all(s["instance"] for s in obj["shards"])
    store = runner_home / "store" / "jobs"
    folder = store / parent
    assert sorted(ran(marks)) == list("abcdefg")
    # the parent's records; each shard is an ordinary job with the parent's code bytes and its own items.tsv
    record = json.loads((folder / "job.json").read_text())
    assert record["fanout"] == {"vms": 3, "items": 7, "per_vm": 1, "fetch": False, "reduce": True}
    assert len((folder / "manifest.jsonl").read_text().splitlines()) == 7
    lines = []
    for k in range(3):
        sid = json.loads((folder / "shards" / str(k)).read_text())["shard_id"]
        assert sid == f"fan--s{k}-{parent.removeprefix('fan-')}"
        shard = json.loads((store / sid / "job.json").read_text())
        assert (shard["parent"], shard["shard"], shard["spec"]["command"]) == (parent, k, "bash .runner/items.sh")
        assert (store / sid / "code.tar.gz").read_bytes() == (folder / "code.tar.gz").read_bytes()
        lines += (store / sid / "items.tsv").read_text().splitlines()
    assert sorted(lines) == [f"{c}\t{c}" for c in "abcdefg"]
    assert not (folder / "reduce" / "status.json").exists()
    # `runner status` lists the job, not its shards
    listed = json.loads(run_cli("status", "--json").stdout)
    assert [r["job_id"] for r in listed] == [parent]
    # retry: one new shard (number 3) over the one item without a done marker, then the reduce
    rc, obj, err = runner_json("retry", parent, "--wait")
    assert rc == 0, err
    assert obj["state"] == "SUCCEEDED" and obj["items"] == {"total": 7, "done": 7, "failed": 0, "missing": 0}
    assert [(s["shard"], s["items"]) for s in obj["shards"]] == [(3, 1)]
    assert sorted(ran(marks)) == sorted("abcdefge")  # only e ran again
    assert (folder / "outputs" / "all.txt").read_text().split() == list("abcdefg")
    assert json.loads((folder / "reduce" / "status.json").read_text())["state"] == "SUCCEEDED"
    assert json.loads((folder / "status.json").read_text())["state"] == "SUCCEEDED"
    # nothing left to retry
    rc, obj, err = runner_json("retry", parent)
    assert rc == 0 and obj["retried"] == 0 and "nothing to retry" in obj["why"]


def test_a_killed_shard_keeps_its_finished_items_and_retry_runs_the_rest(runner_home, make_job, tmp_path):
    marks = tmp_path / "marks"
    d = fanout_job(make_job, marks, ["a", "b", "c", "d"])  # one VM, one item at a time: a, b, then c blocks
    (marks / "block").touch()
    (marks / "e-failed").touch()
    rc, obj, err = runner_json("launch", str(d), "--cloud", "sandbox")
    assert rc == 0, err
    parent = obj["job_id"]
    folder = runner_home / "store" / "jobs" / parent
    assert wait_for(lambda: (folder / "items" / "b" / "done").exists() and "c" in ran(marks), timeout=60)
    sid = obj["shards"][0]["job_id"]
    pid = json.loads((runner_home / "store" / "jobs" / sid / "instance.json").read_text())["data"]["pid"]
    os.killpg(pid, signal.SIGKILL)  # the VM dies mid-run: no final status, no more pushes
    (marks / "block").unlink()
    shard = json.loads(run_cli("status", sid, "--json").stdout)
    assert shard["state"] == "LOST"
    assert sorted(p.name for p in (folder / "items").iterdir() if (p / "done").exists()) == ["a", "b"]
    rc, obj, err = runner_json("retry", parent, "--wait")
    assert rc == 0, err
    assert obj["state"] == "SUCCEEDED" and obj["items"]["done"] == 4
    assert [(s["shard"], s["items"]) for s in obj["shards"]] == [(1, 2)]
    assert ran(marks) == ["a", "b", "c", "c", "d"]  # a and b kept their results and did not run again


def test_an_empty_prefix_and_a_duplicate_item_are_refused_with_nothing_created(runner_home, make_job):
    (runner_home / "store" / "data" / "empty").mkdir(parents=True)
    empty = make_job({"name": "fan", "command": "true", "items": {"over": "data/empty/"}}, name="empty")
    r = run_cli("launch", str(empty), "--cloud", "sandbox")
    assert r.returncode == 2 and "data/empty" in r.stderr, r.stderr
    dup = make_job({"name": "fan", "command": "true", "items": {"manifest": "items.txt"}}, {"items.txt": "x\ny\nx\n"}, name="dup")
    r = run_cli("launch", str(dup), "--cloud", "sandbox")
    assert r.returncode == 2 and "items.txt" in r.stderr and "'x'" in r.stderr, r.stderr
    assert not (runner_home / "store" / "jobs").exists()


def test_vms_are_capped_at_the_items_and_said_so(runner_home, make_job):
    d = make_job({"name": "fan", "command": "true", "items": {"manifest": "items.txt"}, "vms": 10}, {"items.txt": "x\ny\n"})
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert "10 VMs asked for 2 items: launching 2" in r.stderr
    assert json.loads(r.stdout)["vms"] == 2
    assert not (runner_home / "store" / "jobs").exists()


def _blocked_shard(runner_home, make_job, marks: Path, **extra) -> tuple[str, Path, str]:
    """A fan-out of a, b, c, d on one VM whose item c blocks; returns (parent, its folder, the shard id) once c runs."""
    d = fanout_job(make_job, marks, ["a", "b", "c", "d"], **extra)
    (marks / "block").touch()
    (marks / "e-failed").touch()
    rc, obj, err = runner_json("launch", str(d), "--cloud", "sandbox")
    assert rc == 0, err
    folder = runner_home / "store" / "jobs" / obj["job_id"]
    assert wait_for(lambda: (folder / "items" / "b" / "done").exists() and "c" in ran(marks), timeout=60)
    return obj["job_id"], folder, obj["shards"][0]["job_id"]


def test_a_preempted_shard_is_relaunched_with_only_its_missing_items(runner_home, make_job, tmp_path):
    from runner import config, jobs
    from runner.fanout.launch import wait_fanout
    from runner.store import open_store

    marks = tmp_path / "marks"
    parent, folder, sid = _blocked_shard(runner_home, make_job, marks, retries=1)
    pid = json.loads((runner_home / "store" / "jobs" / sid / "instance.json").read_text())["data"]["pid"]
    os.killpg(pid, signal.SIGKILL)  # the cloud took the VM back ...
    store = open_store(config.store_uri())
    jobs.write_status(store, sid, jobs.Status(jobs.PREEMPTED, reason="spot interruption"))  # ... and the VM said so
    (marks / "block").unlink()
    notes = []
    status, counts = wait_fanout(store, parent, note=notes.append)
    assert (status.state, status.exit_code) == ("SUCCEEDED", 0) and counts.done == 4
    assert notes == [f"{parent}: shard 0 preempted; relaunching it (attempt 2 of 2)"]
    assert json.loads((runner_home / "store" / "jobs" / sid / "instance.json").read_text())["attempt"] == 2
    assert ran(marks) == ["a", "b", "c", "c", "d"]
    assert json.loads((folder / "status.json").read_text())["state"] == "SUCCEEDED"


def test_cancel_of_a_fanout_cancels_every_shard(runner_home, make_job, tmp_path):
    marks = tmp_path / "marks"
    parent, folder, sid = _blocked_shard(runner_home, make_job, marks)
    r = run_cli("cancel", parent)
    assert r.returncode == 0, r.stderr
    assert f"{sid}: CANCELLED" in r.stderr and f"{parent}: CANCELLED" in r.stderr
    assert json.loads((runner_home / "store" / "jobs" / sid / "status.json").read_text())["state"] == "CANCELLED"
    assert json.loads((folder / "status.json").read_text())["state"] == "CANCELLED"
    r = run_cli("cancel", parent)
    assert "already ended: CANCELLED" in r.stderr


def test_retry_reruns_a_failed_reduce_on_one_shard_with_no_items(runner_home, make_job, tmp_path):
    marks = tmp_path / "marks"
    (marks).mkdir()
    (marks / "e-failed").touch()
    reduce = {"command": 'echo reduced >> "$MARKS/reduces"; [ -e "$MARKS/reduce-failed" ] || { touch "$MARKS/reduce-failed"; exit 5; }; '
                         "cat items/*/line | sort > all.txt", "outputs": ["all.txt"]}
    d = fanout_job(make_job, marks, ["a", "b", "c"], vms=2, reduce=reduce)
    rc, obj, err = runner_json("launch", str(d), "--cloud", "sandbox", "--wait")
    assert rc == 5, err  # every item done, the reduce failed: the job exits with the reduce's code
    parent = obj["job_id"]
    assert obj["state"] == "FAILED" and obj["items"]["done"] == 3 and f"runner retry {parent}" in obj["reason"]
    rc, obj, err = runner_json("retry", parent, "--wait")
    assert rc == 0, err
    assert [(s["shard"], s["items"]) for s in obj["shards"]] == [(2, 0)]
    assert sorted(ran(marks)) == ["a", "b", "c"]  # no item ran again
    assert (marks / "reduces").read_text().split() == ["reduced", "reduced"]
    folder = runner_home / "store" / "jobs" / parent
    assert (folder / "outputs" / "all.txt").read_text().split() == ["a", "b", "c"]


def test_an_item_that_fails_once_is_run_again_on_its_vm_within_items_retries_and_the_job_succeeds(runner_home, make_job, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    d = make_job({"name": "fan", "command": COMMAND, "env": {"MARKS": str(marks)},
                  "items": {"manifest": "items.txt", "fetch": False, "per_vm": 1, "retries": 1},
                  "reduce": {"command": "cat items/*/line | sort > all.txt", "outputs": ["all.txt"]}}, {"items.txt": "a\ne\n"})
    rc, obj, err = runner_json("launch", str(d), "--cloud", "sandbox", "--wait")
    assert rc == 0, err  # no `runner retry`: e failed once, ran again on its VM and succeeded
    parent = obj["job_id"]
    assert obj["state"] == "SUCCEEDED" and obj["items"] == {"total": 2, "done": 2, "failed": 0, "missing": 0}
    assert sorted(ran(marks)) == ["a", "e", "e"] and len(obj["shards"]) == 1
    folder = runner_home / "store" / "jobs" / parent
    assert (folder / "items" / "e" / "tries").read_text() == "2\n" and not (folder / "items" / "a" / "tries").exists()
    assert (folder / "items" / "e" / "log").read_text().count("--- try ") == 2
    assert (folder / "outputs" / "all.txt").read_text().split() == ["a", "e"]
    r = run_cli("status", parent, "--items")
    assert r.returncode == 0, r.stderr
    assert "e  (2 tries)" in r.stdout and "a  (" not in r.stdout
    rows = {d["name"]: d for d in json.loads(run_cli("status", parent, "--items", "--json").stdout)["item_states"]}
    assert (rows["e"]["state"], rows["e"]["exit_code"], rows["e"]["tries"]) == ("done", 0, 2) and rows["a"]["tries"] is None
    (folder / "items" / "e" / "tries").write_text("<b>999999</b>\n")  # the VM can write there: read back as untrusted
    rows = {d["name"]: d for d in json.loads(run_cli("status", parent, "--items", "--json").stdout)["item_states"]}
    assert rows["e"]["tries"] is None


def test_a_shard_preempted_past_its_spot_tries_is_relaunched_on_demand_last_with_retry_on_demand(runner_home, make_job, tmp_path,
                                                                                                 monkeypatch):
    from runner import config, jobs
    from runner.fanout.launch import wait_fanout
    from runner.providers.sandbox import SandboxProvider
    from runner.store import open_store

    marks = tmp_path / "marks"
    parent, folder, sid = _blocked_shard(runner_home, make_job, marks, retries=2, spot=True, retry_on_demand=True)
    store = open_store(config.store_uri())

    def preempt(pid: int) -> None:  # the cloud takes the VM back while item c runs, and the VM says so
        os.killpg(pid, signal.SIGSTOP)  # frozen, not gone: the waiter sees it alive until its status says PREEMPTED
        jobs.write_status(store, sid, jobs.Status(jobs.PREEMPTED, reason="spot interruption"))
        os.killpg(pid, signal.SIGKILL)

    def preempt_at_c_again(pid: int) -> None:
        assert wait_for(lambda: ran(marks).count("c") == 2, timeout=60)
        preempt(pid)

    launches, real, preempting = [], SandboxProvider.launch, []

    def launch(self, req):
        launches.append((req.attempt, req.spot))
        if req.attempt == 3:
            (marks / "block").unlink()
        inst = real(self, req)
        if req.attempt == 2:  # preempted again once it is back at item c
            preempting.append(threading.Thread(target=preempt_at_c_again, args=(inst.data["pid"],)))
            preempting[0].start()
        return inst

    monkeypatch.setattr(SandboxProvider, "launch", launch)
    preempt(json.loads((runner_home / "store" / "jobs" / sid / "instance.json").read_text())["data"]["pid"])
    notes = []
    status, counts = wait_fanout(store, parent, note=notes.append)
    preempting[0].join()
    assert (status.state, status.exit_code) == ("SUCCEEDED", 0) and counts.done == 4
    assert launches == [(2, True), (3, False)]  # the first relaunch on spot, the last on-demand
    assert notes == [f"{parent}: shard 0 preempted; relaunching it (attempt 2 of 3)",
                     f"{parent}: shard 0 preempted; relaunching it (attempt 3 of 3)"]
    assert ran(marks) == ["a", "b", "c", "c", "c", "d"]
    assert json.loads((folder / "status.json").read_text())["state"] == "SUCCEEDED"
