"""Reading a fan-out job: `runner status ID` (items, shards, --items, --json), `runner logs --shard/--item`, `runner outputs`.

Every test writes the records a fan-out run leaves in a file:// store itself (the store layout is the contract), so the
readers are checked without launching anything.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import run_cli

from runner import jobs
from runner.fanout import ids, views
from runner.fanout.items import Item, manifest_bytes
from runner.store import FileStore

PARENT = "taxi-fanout-20261201T101500Z-3fa9c2"


@pytest.fixture
def store(runner_home):
    return FileStore(f"file://{runner_home}/store")


def parent_record(store, names, vms, reduce=True, retries=0):
    outputs = {"passenger_counts.csv": store.uri(jobs.job_key(PARENT, "outputs", "passenger_counts.csv"))} if reduce else {}
    jobs.write_json(store, PARENT, "job.json", {
        "job_id": PARENT, "cloud": "aws", "spec": {"name": "taxi-fanout", "command": "true", "retries": retries},
        "outputs": outputs, "fanout": {"vms": vms, "items": len(names), "per_vm": 0, "fetch": True, "reduce": reduce}})
    store.put_bytes(jobs.job_key(PARENT, "manifest.jsonl"), manifest_bytes([Item(f"s3://b/trip data/{n}", n, 10) for n in names]))
    jobs.write_status(store, PARENT, jobs.Status(jobs.PROVISIONING))


def shard(store, k, state, done, total, failed=None, exit_code=None, attempt=1, launched="2026-12-01T10:15:00Z",
          started="2026-12-01T10:16:00Z", ended="2026-12-01T12:16:00Z", rate=0.5):
    sid = ids.shard_id(PARENT, k)
    store.put_bytes(jobs.job_key(PARENT, "shards", str(k)), json.dumps({"shard_id": sid, "items": total, "launched_at": launched}).encode())
    jobs.write_json(store, sid, "job.json", {"job_id": sid, "cloud": "aws", "parent": PARENT, "shard": k})
    jobs.write_json(store, sid, "instance.json", {"cloud": "aws", "id": f"i-0{k}abc", "job_id": sid, "zone": "us-east-1b",
                                                  "data": {"usd_per_hour": rate}, "attempt": attempt})
    final = state in jobs.FINAL
    jobs.write_status(store, sid, jobs.Status(state, exit_code=exit_code, started_at=started, ended_at=ended if final else None))
    failed = failed or {}
    jobs.write_json(store, sid, "summary.json", {"total": total, "done": done, "failed": len(failed), "failed_items": failed,
                                                 "updated_at": "2026-12-01T11:00:00Z"})
    return sid


def item(store, name, code, result=None, log=b""):
    base = jobs.job_key(PARENT, "items", name)
    for rel, data in (result or {}).items():
        store.put_bytes(f"{base}/result/{rel}", data)
    store.put_bytes(f"{base}/log", log or f"log of {name}\n".encode())
    store.put_bytes(f"{base}/exit_code", f"{code}\n".encode())
    if code == 0:
        store.put_bytes(f"{base}/done", b"")


def reduce_status(store, state, code):
    store.put_bytes(jobs.job_key(PARENT, "reduce", "status.json"),
                    json.dumps({"state": state, "exit_code": code, "started_at": "2026-12-01T12:16:00Z"}).encode())


NAMES = ["yellow_tripdata_2012-01.csv", "yellow_tripdata_2012-02.csv", "yellow_tripdata_2012-03.csv",
         "yellow_tripdata_2012-04.csv", "yellow_tripdata_2012-05.csv"]


def two_shards_one_failed(store):
    """5 items over 2 shards, both ended: shard 1's third item exited 3."""
    parent_record(store, NAMES, vms=2)
    shard(store, 0, jobs.SUCCEEDED, 2, 2, exit_code=0)
    shard(store, 1, jobs.FAILED, 2, 3, failed={NAMES[4]: 3}, exit_code=1, attempt=2)
    for n in NAMES[:4]:
        item(store, n, 0, {"counts.csv": f"1,{len(n)}\n".encode()})
    item(store, NAMES[4], 3, {"partial.csv": b"half"})


def test_status_of_a_parent_shows_items_and_a_table_of_shards(store):
    two_shards_one_failed(store)
    r = run_cli("status", PARENT)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "items: 4/5 done, 1 failed, 0 missing" in out
    assert "state: FAILED" in out and f"runner retry {PARENT}" in out
    lines = out.splitlines()
    row1 = next(line for line in lines if ids.shard_id(PARENT, 1) in line)
    assert row1.split()[:2] == ["1", ids.shard_id(PARENT, 1)]
    assert "aws i-01abc" in row1 and "us-east-1b" in row1 and "FAILED" in row1 and "2/3" in row1
    assert row1.split()[-2:] == ["2", "1.0000"]  # attempts, cost (2 h at 0.5 USD/h)
    total = next(line for line in lines if line.lstrip().startswith("total"))
    assert "2.0000" in total and "(2 of 2 shards priced)" in total


def test_status_json_has_items_shards_and_the_derived_state_is_recorded(store):
    two_shards_one_failed(store)
    row = json.loads(run_cli("status", PARENT, "--json").stdout)
    assert row["state"] == jobs.FAILED and row["exit_code"] == 72
    assert row["items"] == {"total": 5, "done": 4, "failed": 1, "missing": 0}
    assert [s["shard_id"] for s in row["shards"]] == [ids.shard_id(PARENT, 0), ids.shard_id(PARENT, 1)]
    assert row["shards"][1]["items"] == {"total": 3, "done": 2, "failed": 1} and row["shards"][1]["attempts"] == 2
    assert row["cost_usd"] == pytest.approx(2.0)
    assert jobs.read_status(store, PARENT).state == jobs.FAILED  # the first to see it final writes it


def test_a_retry_wave_supersedes_the_failures_before_it(store):
    two_shards_one_failed(store)
    shard(store, 2, jobs.SUCCEEDED, 1, 1, exit_code=0, launched="2026-12-01T13:00:00Z", started="2026-12-01T13:01:00Z",
          ended="2026-12-01T13:02:00Z")
    item(store, NAMES[4], 0, {"counts.csv": b"1,1\n"})
    reduce_status(store, jobs.SUCCEEDED, 0)
    row = json.loads(run_cli("status", PARENT, "--json").stdout)
    assert row["items"] == {"total": 5, "done": 5, "failed": 0, "missing": 0}
    assert row["state"] == jobs.SUCCEEDED and row["exit_code"] == 0 and row["reduce"] == {"state": "SUCCEEDED", "exit_code": 0}


def test_running_shards_make_a_running_parent_with_missing_items(store):
    parent_record(store, NAMES, vms=2)
    shard(store, 0, jobs.SUCCEEDED, 2, 2, exit_code=0)
    sid = shard(store, 1, jobs.RUNNING, 1, 3)
    store.put_bytes(jobs.job_key(sid, "instance.json"), b"{}")  # no VM known: nothing to ask
    row = json.loads(run_cli("status", PARENT, "--json").stdout)
    assert row["state"] == jobs.RUNNING and row["items"] == {"total": 5, "done": 3, "failed": 0, "missing": 2}
    assert jobs.read_status(store, PARENT).state == jobs.PROVISIONING  # nothing final to record


class Counting(FileStore):
    """A file:// store that counts the objects it is asked to read."""

    reads = 0

    def get_bytes(self, key, offset=0, length=None):
        Counting.reads += 1
        return super().get_bytes(key, offset, length)

    def get_versioned(self, key, limit=None):
        Counting.reads += 1
        return super().get_versioned(key, limit)


def test_status_reads_per_shard_never_per_item(store):
    names = [f"part-{i:05}.csv" for i in range(1200)]
    parent_record(store, names, vms=3)
    for k in range(3):
        shard(store, k, jobs.SUCCEEDED, 400, 400, exit_code=0)
    for n in names:
        store.put_bytes(jobs.job_key(PARENT, "items", n, "done"), b"")
    reduce_status(store, jobs.SUCCEEDED, 0)
    jobs.write_status(store, PARENT, jobs.Status(jobs.SUCCEEDED, 0))
    counting = Counting(store.root)
    parent = views.read_parent(counting, PARENT, views.fanout_of(counting, PARENT))
    assert parent.counts.to_json() == {"total": 1200, "done": 1200, "failed": 0, "missing": 0}
    assert Counting.reads <= 8 * 3 + 6  # a handful per shard and for the parent, not one per item


ITEM_LINE = re.compile(r"(done|failed|missing|pending) +(-?[0-9]*) +([A-Za-z0-9._-]+)")


def test_status_items_lists_every_item_with_its_exit_code(store):
    two_shards_one_failed(store)
    store.put_bytes(jobs.job_key(PARENT, "manifest.jsonl"),
                    store.get_bytes(jobs.job_key(PARENT, "manifest.jsonl")) + manifest_bytes([Item("s3://b/x.csv", "x.csv", 1)]))
    jobs.write_json(store, PARENT, "job.json", {**jobs.read_json(store, PARENT, "job.json"),
                                                "fanout": {"vms": 2, "items": 6, "reduce": True}})
    r = run_cli("status", PARENT, "--items")
    assert r.returncode == 0, r.stderr
    rows = {m[3]: (m[1], m[2]) for m in map(ITEM_LINE.match, r.stdout.splitlines()) if m}
    assert rows[NAMES[0]] == ("done", "0") and rows[NAMES[4]] == ("failed", "3") and rows["x.csv"] == ("missing", "")
    assert f"{NAMES[4]}  (s3://b/trip data/{NAMES[4]})" in r.stdout
    assert f"runner logs {PARENT} --item NAME" in r.stderr
    data = json.loads(run_cli("status", PARENT, "--items", "--json").stdout)
    assert {d["name"]: d["state"] for d in data["item_states"]}["x.csv"] == "missing"
    assert data["items"] == {"total": 6, "done": 4, "failed": 1, "missing": 1}


def test_logs_of_an_item_by_name_or_by_item_and_of_a_shard(store):
    two_shards_one_failed(store)
    item(store, NAMES[4], 3, log=b"Traceback: bad row 17\n")
    r = run_cli("logs", PARENT, "--item", NAMES[4])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Traceback: bad row 17\n"
    r = run_cli("logs", PARENT, "--item", f"s3://b/trip data/{NAMES[4]}")  # the item as the manifest holds it
    assert r.stdout == "Traceback: bad row 17\n"
    sid = ids.shard_id(PARENT, 1)
    store.put_bytes(jobs.job_key(sid, "logs", "1", "job.log.000000"), b"first try\n")
    store.put_bytes(jobs.job_key(sid, "logs", "2", "job.log.000000"), b"second try\n")
    r = run_cli("logs", PARENT, "--shard", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "first try\nsecond try\n" and "attempt 2" in r.stderr


@pytest.mark.parametrize("args, code, message", [
    (["--item", "../../other-20250101T000000Z-abcdef/status.json"], 2, "is not an item name"),
    (["--item", "nope.csv"], 66, "no log of item 'nope.csv'"),
    (["--shard", "7"], 66, "has no shard 7 (its shards: 0..1)"),
    (["--shard", "0", "--item", NAMES[0]], 2, "not both"),
])
def test_logs_refuses_what_is_not_an_item_or_shard(store, args, code, message):
    two_shards_one_failed(store)
    r = run_cli("logs", PARENT, *args)
    assert r.returncode == code and message in r.stderr, r.stderr
    assert r.stdout == ""


def test_logs_item_of_an_ordinary_job_is_refused(store):
    single = "taxi-20261201T101500Z-3fa9c2"
    jobs.write_json(store, single, "job.json", {"job_id": single, "cloud": "sandbox"})
    jobs.write_status(store, single, jobs.Status(jobs.SUCCEEDED, 0))
    r = run_cli("logs", single, "--item", "a.csv")
    assert r.returncode == 2 and "is not a fan-out job" in r.stderr


def test_outputs_brings_every_done_item_result_and_the_reduce_outputs(store, tmp_path, secret):
    two_shards_one_failed(store)
    store.put_bytes(jobs.job_key(PARENT, "outputs", "passenger_counts.csv"), b"passenger_count,trips\n1,9\n")
    store.put_bytes(jobs.job_key(PARENT, "items", NAMES[0], "result", "sub", "deep.txt"), b"deep")
    link = store.base / jobs.job_key(PARENT, "items", NAMES[1], "result", "stolen")
    link.symlink_to(secret)
    (store.base / jobs.job_key(PARENT, "items", "not a name", "result")).mkdir(parents=True)
    (store.base / jobs.job_key(PARENT, "items", "not a name", "result", "x")).write_bytes(b"x")
    dest = tmp_path / "dest"
    r = run_cli("outputs", PARENT, str(dest))
    assert r.returncode == 0, r.stderr
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert got == sorted([f"items/{n}/counts.csv" for n in NAMES[:4]] + [f"items/{NAMES[0]}/sub/deep.txt", "passenger_counts.csv"])
    assert (dest / "items" / NAMES[2] / "counts.csv").read_bytes() == f"1,{len(NAMES[2])}\n".encode()
    assert f"the result of 1 item(s) not done ({NAMES[4]})" in r.stderr  # a failed item's partial result stays
    assert "'not a name' is not an item name" in r.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and p != secret and p.read_bytes() == b"PRIVATE KEY"]


def test_list_shows_a_parent_as_one_row(store):
    two_shards_one_failed(store)
    rows = json.loads(run_cli("status", "--json").stdout)
    assert [r["job_id"] for r in rows] == [PARENT]
    assert rows[0]["state"] == jobs.FAILED and rows[0]["items"]["done"] == 4 and rows[0]["cost_usd"] == pytest.approx(2.0)
    r = run_cli("status")
    assert PARENT in r.stdout and "FAILED" in r.stdout


def test_logs_of_a_parent_print_the_reduce_log_and_name_the_rest(store):
    two_shards_one_failed(store)
    store.put_bytes(jobs.job_key(PARENT, "reduce", "log"), b"merge: 5 items\n")
    r = run_cli("logs", PARENT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "merge: 5 items\n"
    assert f"runner logs {PARENT} --shard K` (K of 0, 1)" in r.stderr and "--item NAME" in r.stderr
    r = run_cli("logs", PARENT, "--follow")  # every shard has ended: the failed items, then the reduce's log
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{NAMES[4]}: exit 3\nmerge: 5 items\n"
    assert f"{PARENT}: FAILED: 4 of 5 items done, 1 failed, 0 missing" in r.stderr and "--item NAME" in r.stderr


def test_status_and_outputs_of_a_parent_in_an_s3_store(s3, tmp_path):
    from runner.store import open_store

    _, bucket = s3
    uri = f"s3://{bucket}/runner"
    store = open_store(uri)
    two_shards_one_failed(store)
    store.put_bytes(jobs.job_key(PARENT, "outputs", "passenger_counts.csv"), b"passenger_count,trips\n1,9\n")
    env = {"RUNNER_STORE": uri}
    row = json.loads(run_cli("status", PARENT, "--json", env=env).stdout)
    assert row["items"] == {"total": 5, "done": 4, "failed": 1, "missing": 0} and row["state"] == jobs.FAILED
    r = run_cli("outputs", PARENT, str(tmp_path / "dest"), env=env)
    assert r.returncode == 0, r.stderr
    got = sorted(p.relative_to(tmp_path / "dest").as_posix() for p in (tmp_path / "dest").rglob("*") if p.is_file())
    assert got == sorted([f"items/{n}/counts.csv" for n in NAMES[:4]] + ["passenger_counts.csv"])
    assert run_cli("logs", PARENT, "--item", NAMES[4], env=env).stdout == f"log of {NAMES[4]}\n"


def _shard(k: int, wave: int, launched: str, ended: str, failed: int) -> views.Shard:
    status = jobs.Status(jobs.FAILED if failed else jobs.SUCCEEDED, started_at=launched, ended_at=ended)
    summary = views.Summary(total=2, done=2 - failed, failed=failed)
    return views.Shard(k, f"fan--s{k}-20260101T000000Z-abcdef", status, summary, launched_at=launched, wave=wave)


def test_the_last_wave_is_the_newest_launch_even_within_one_second():
    t = "2026-01-01T00:00:08Z"
    # one launch whose shard 0 ended in the second its records were written: still one wave
    one = [_shard(0, 0, t, t, failed=1), _shard(1, 0, t, t, failed=0)]
    assert views.last_wave(one) == one and views.item_counts(4, one).failed == 1
    # a `runner retry` (shards 2-3, wave 2) in that same second: only its shards count
    again = [*one, _shard(2, 2, t, t, failed=0), _shard(3, 2, t, t, failed=0)]
    assert [s.k for s in views.last_wave(again)] == [2, 3] and views.item_counts(4, again).failed == 0
    # records without a wave (older launches): the times decide
    old = [_shard(0, -1, t, t, failed=1), _shard(1, -1, "2026-01-01T00:00:09Z", t, failed=0)]
    assert [s.k for s in views.last_wave(old)] == [1]
