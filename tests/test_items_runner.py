"""The fan-out item runner (items.sh) run by the startup script as a shard's command, against file:// and s3:// stores."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from script_harness import VM, FileJob, S3Job, code_tar, wait_for

from runner.errors import SpecError
from runner.render import render_items

PARENT = "fan-20260101T000000Z-abcdef"
ITEM_SH = """\
set -e
mkdir -p "$MARKS/started"; : > "$MARKS/started/$RUNNER_ITEM_NAME"
while [ -n "${GO:-}" ] && [ ! -e "$GO" ]; do sleep 0.1; done
mkdir "$MARKS/running.$RUNNER_ITEM_NAME"; ls -d "$MARKS"/running.* | wc -l >> "$MARKS/concurrency"
echo "$RUNNER_ITEM_NAME" >> "$MARKS/runs"
if [ "$RUNNER_ITEM_NAME" = "$FLAKY" ] && [ ! -e "$MARKS/failed-once" ]; then
  : > "$MARKS/failed-once"; rmdir "$MARKS/running.$RUNNER_ITEM_NAME"; echo "failing on purpose"; exit 1
fi
printf '%s\\n' "$RUNNER_ITEM" > "$RUNNER_ITEM_OUTPUT/item"
cp "$RUNNER_ITEM_PATH" "$RUNNER_ITEM_OUTPUT/data"
echo "item $RUNNER_ITEM_NAME ok"
rmdir "$MARKS/running.$RUNNER_ITEM_NAME"
"""
REDUCE = 'echo "$RUNNER_JOB_ID" >> "$MARKS/reduce-runs"; cat items/*/data | LC_ALL=C sort > total.txt'
FILES = ["jan 2012.csv", "it's \"quoted\".csv", "plain.csv", "a&b $HOME.csv", "sub/deep.csv"]


def shard_id(k: int) -> str:
    return f"fan--s{k}-20260101T000000Z-abcdef"


def safe_name(item: str) -> str:
    """The item's safe name as the launcher makes it (its basename, changed chars replaced, a hash when changed)."""
    base = item.rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", base)[:100]
    return name if name == base else f"{name}-{hashlib.sha256(item.encode()).hexdigest()[:8]}"


class Store:
    """One fan-out job's folders in a store: its parent and its shards."""

    def __init__(self, kind: str, tmp_path: Path, request) -> None:
        self.kind, self.tmp = kind, tmp_path
        if kind == "file":
            self.job, self.endpoint = FileJob(tmp_path / "store", PARENT), ""
        else:
            client, bucket = request.getfixturevalue("s3")
            self.job, self.endpoint = S3Job(client, bucket, PARENT), request.getfixturevalue("s3_server")

    @property
    def uri(self) -> str:
        return self.job.uri

    def put(self, key: str, data: bytes | str) -> None:
        self.job.put(key, data.encode() if isinstance(data, str) else data)

    def get(self, key: str) -> bytes | None:
        if self.kind == "file":
            p = self.job.root / key
            return p.read_bytes() if p.is_file() else None
        try:
            return self.job.client.get_object(Bucket=self.job.bucket, Key=f"{self.job.prefix}/{key}")["Body"].read()
        except self.job.client.exceptions.NoSuchKey:
            return None

    def keys(self, prefix: str) -> list[str]:
        if self.kind == "file":
            base = self.job.root
            return sorted(str(p.relative_to(base)) for p in (base / prefix).rglob("*") if p.is_file()) if (base / prefix).is_dir() else []
        pages = self.job.client.get_paginator("list_objects_v2").paginate(Bucket=self.job.bucket, Prefix=f"{self.job.prefix}/{prefix}")
        return sorted(o["Key"][len(self.job.prefix) + 1:] for page in pages for o in page.get("Contents", []))

    def item(self, name: str, key: str) -> bytes | None:
        return self.get(f"jobs/{PARENT}/items/{name}/{key}")

    def status(self, job_id: str) -> dict:
        data = self.get(f"jobs/{job_id}/status.json")
        assert data is not None, f"{job_id} wrote no status"
        return json.loads(data)


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    return Store(request.param, tmp_path, request)


def lay_out(store: Store, items: list[str], slices: list[list[int]], per_vm: int = 2, reduce: str = REDUCE) -> list[str]:
    """The launcher's part: items.sh, the frozen manifest, each shard's items.tsv and code; returns the names."""
    names = [safe_name(i) for i in items]
    store.put(f"jobs/{PARENT}/items.sh", render_items("bash item.sh", PARENT, store.uri, per_vm, True, reduce, {"total.txt": None}))
    store.put(f"jobs/{PARENT}/manifest.jsonl", "".join(json.dumps({"name": n, "item": i, "size": None}) + "\n" for n, i in zip(names, items, strict=True)))
    for k, picked in enumerate(slices):
        store.put(f"jobs/{shard_id(k)}/items.tsv", "".join(f"{names[i]}\t{items[i]}\n" for i in picked))
        store.put(f"jobs/{shard_id(k)}/code.tar.gz", code_tar({"item.sh": ITEM_SH}))
    return names


def data_items(store: Store) -> list[str]:
    """Five input objects in the store (spaces, quotes, '&', '$' in their names); their URIs."""
    for f in FILES:
        store.put(f"data/{f}", f"{f}\n")
    return [f"{store.uri}/data/{f}" for f in FILES]


def start(store: Store, k: int, marks: Path, attempt: int = 1, env: dict | None = None) -> VM:
    spec = {
        "name": "fan", "command": "bash .runner/items.sh",
        "inputs": {f"jobs/{PARENT}/items.sh": ".runner/items.sh", f"jobs/{shard_id(k)}/items.tsv": ".runner/items.tsv",
                   f"jobs/{PARENT}/manifest.jsonl": ".runner/manifest.jsonl"},
        "env": {"MARKS": str(marks), **(env or {})},
    }
    return VM(store.tmp / f"vm{k}-{attempt}", store.uri, shard_id(k)).start(spec, attempt=attempt, s3_endpoint=store.endpoint)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_items_run_in_parallel_failures_are_recorded_and_a_relaunch_redoes_only_them_then_reduces(store, tmp_path):
    items = data_items(store)
    names = lay_out(store, items, [[0, 1, 2, 3, 4]])
    flaky = names[1]
    marks = tmp_path / "marks"
    marks.mkdir()
    vm = start(store, 0, marks, env={"FLAKY": flaky})
    vm.wait()

    status = store.status(shard_id(0))
    assert (status["state"], status["exit_code"], status["reason"]) == ("FAILED", 1, "the job exited with code 1"), vm.console
    for name, item in zip(names, items, strict=True):
        assert store.item(name, "log") is not None and store.item(name, "exit_code") is not None, name
        if name == flaky:
            assert store.item(name, "exit_code").strip() == b"1" and store.item(name, "done") is None
            assert b"failing on purpose" in store.item(name, "log")
            assert not store.keys(f"jobs/{PARENT}/items/{name}/result/")
        else:
            assert store.item(name, "exit_code").strip() == b"0" and store.item(name, "done") == b""
            assert store.item(name, "result/item") == f"{item}\n".encode()
            assert store.item(name, "result/data") == f"{item.split('/data/', 1)[1]}\n".encode()
            assert f"item {name} ok".encode() in store.item(name, "log")
    summary = json.loads(store.get(f"jobs/{shard_id(0)}/summary.json"))
    assert {k: summary[k] for k in ("total", "done", "failed", "failed_items")} == {"total": 5, "done": 4, "failed": 1, "failed_items": {flaky: 1}}
    assert max(int(n) for n in lines(marks / "concurrency")) <= 2  # per_vm
    assert sorted(lines(marks / "runs")) == sorted(names)
    assert store.get(f"jobs/{PARENT}/reduce/lock") is None and not (marks / "reduce-runs").exists()

    store.put(f"jobs/{shard_id(0)}/status.json", json.dumps({"state": "PROVISIONING"}))  # as the launcher does on a relaunch
    vm = start(store, 0, marks, attempt=2, env={"FLAKY": flaky})  # the same shard relaunched: every item in its tsv
    vm.wait()
    assert store.status(shard_id(0))["state"] == "SUCCEEDED", vm.console
    assert sorted(lines(marks / "runs")) == sorted([*names, flaky])  # only the failed item ran again
    assert store.item(flaky, "done") == b"" and store.item(flaky, "exit_code").strip() == b"0"
    summary = json.loads(store.get(f"jobs/{shard_id(0)}/summary.json"))
    assert (summary["total"], summary["done"], summary["failed"], summary["failed_items"]) == (5, 5, 0, {})
    assert lines(marks / "reduce-runs") == [shard_id(0)]
    assert store.get(f"jobs/{PARENT}/outputs/total.txt").decode().splitlines() == sorted(FILES)
    reduce = json.loads(store.get(f"jobs/{PARENT}/reduce/status.json"))
    assert (reduce["state"], reduce["exit_code"], reduce["shard"]) == ("SUCCEEDED", 0, shard_id(0))
    assert reduce["started_at"] and reduce["ended_at"]
    assert store.get(f"jobs/{PARENT}/reduce/exit_code").strip() == b"0"
    assert store.get(f"jobs/{PARENT}/reduce/lock") == shard_id(0).encode()
    assert store.get(f"jobs/{PARENT}/reduce/log") is not None


def test_two_shards_finishing_together_run_the_reduce_exactly_once(store, tmp_path):
    items = data_items(store)
    lay_out(store, items, [[0, 2, 4], [1, 3]], per_vm=3)
    marks, go = tmp_path / "marks", tmp_path / "go"
    marks.mkdir()
    vms = [start(store, k, marks, env={"FLAKY": "none", "GO": str(go)}) for k in (0, 1)]
    try:
        assert wait_for(lambda: len(list((marks / "started").glob("*"))) == 5, timeout=120), vms[0].console + vms[1].console
        go.touch()  # every item of both shards is under way: they finish together
    finally:
        for vm in vms:
            vm.wait()
    assert [store.status(shard_id(k))["state"] for k in (0, 1)] == ["SUCCEEDED", "SUCCEEDED"], vms[0].console + vms[1].console
    runs = lines(marks / "reduce-runs")
    assert len(runs) == 1 and runs[0] in (shard_id(0), shard_id(1))
    assert store.get(f"jobs/{PARENT}/reduce/lock") == runs[0].encode()
    assert json.loads(store.get(f"jobs/{PARENT}/reduce/status.json"))["state"] == "SUCCEEDED"
    assert store.get(f"jobs/{PARENT}/outputs/total.txt").decode().splitlines() == sorted(FILES)


def test_a_lock_held_by_another_shard_keeps_this_one_from_reducing(tmp_path, request):
    store = Store("file", tmp_path, request)
    items = data_items(store)
    lay_out(store, items, [[0, 1, 2, 3, 4]])
    store.put(f"jobs/{PARENT}/reduce/lock", "fan--s9-20260101T000000Z-abcdef")
    marks = tmp_path / "marks"
    marks.mkdir()
    vm = start(store, 0, marks, env={"FLAKY": "none"})
    vm.wait()
    assert store.status(shard_id(0))["state"] == "SUCCEEDED", vm.console
    assert not (marks / "reduce-runs").exists() and store.get(f"jobs/{PARENT}/reduce/status.json") is None
    assert b"reduce/lock is held by fan--s9-20260101T000000Z-abcdef" in FileJob(store.job.root, shard_id(0)).log("job.log")


def test_item_keys_with_dot_dot_stay_in_their_folders(tmp_path, request):
    store = Store("s3", tmp_path, request)
    store.put("data/sub/..", "dot dot\n")  # an object whose key ends in '..'
    store.put("data/ok.csv", "ok\n")
    items = [f"{store.uri}/data/sub/..", f"{store.uri}/data/ok.csv"]
    store.put(f"jobs/{PARENT}/items.sh", render_items("bash item.sh", PARENT, store.uri, 2, True))
    store.put(f"jobs/{PARENT}/manifest.jsonl", "")
    tsv = f"dotdot-0123abcd\t{items[0]}\nok.csv\t{items[1]}\n..\t{items[1]}\n../../../../escape\t{items[1]}\n"
    store.put(f"jobs/{shard_id(0)}/items.tsv", tsv)
    store.put(f"jobs/{shard_id(0)}/code.tar.gz", code_tar({"item.sh": ITEM_SH}))
    marks = tmp_path / "marks"
    marks.mkdir()
    vm = start(store, 0, marks, env={"FLAKY": "none"})
    vm.wait()
    assert store.item("dotdot-0123abcd", "result/data") == b"dot dot\n"  # fetched to in/<name>/<name>, not to in/
    assert store.item("ok.csv", "done") == b""
    assert all(k.startswith((f"jobs/{PARENT}/items/dotdot-0123abcd/", f"jobs/{PARENT}/items/ok.csv/", f"jobs/{PARENT}/items.sh",
                             f"jobs/{PARENT}/manifest.jsonl")) for k in store.keys(f"jobs/{PARENT}/")), store.keys(f"jobs/{PARENT}/")
    assert not [k for k in store.keys("") if "escape" in k]
    summary = json.loads(store.get(f"jobs/{shard_id(0)}/summary.json"))
    assert (summary["total"], summary["done"], summary["failed"]) == (4, 2, 2)
    assert summary["failed_items"] == {"line-3": 65, "line-4": 65}
    assert store.status(shard_id(0))["state"] == "FAILED"


def test_render_items_quotes_every_value_and_passes_shellcheck(tmp_path):
    nasty = "it's $(rm -rf /) `id` \"q\""
    text = render_items(f"python3 x.py {nasty}", PARENT, "s3://b/r dir", 0, False, f"merge {nasty}",
                        {"out.csv": None, "plots/": "s3://x/y z/"})
    assert "PARENT_URI='s3://b/r dir/jobs/fan-20260101T000000Z-abcdef'\n" in text and "PER_VM=0\n" in text and "FETCH=0\n" in text
    assert "push \"$WORK\"/out.csv 's3://b/r dir/jobs/fan-20260101T000000Z-abcdef/outputs/out.csv'" in text
    assert "push \"$WORK\"/plots/ 's3://x/y z/'" in text
    assert "$(rm -rf /)" not in text.replace("'\"'\"'", "").replace("'", "").split("COMMAND=")[0]
    script = tmp_path / "items.sh"
    script.write_text(text)
    assert shutil.which("shellcheck")
    r = subprocess.run(["shellcheck", "--severity=info", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    for bad in (-1, True, "2"):
        with pytest.raises(SpecError, match="per_vm"):
            render_items("x", PARENT, "s3://b", bad)


def test_a_failed_reduce_is_recorded_and_a_shard_holding_the_lock_reruns_it_alone(tmp_path, request):
    store = Store("file", tmp_path, request)
    items = data_items(store)
    flaky_reduce = f'if [ ! -e "$MARKS/reduce-failed" ]; then : > "$MARKS/reduce-failed"; echo broken; exit 3; fi; {REDUCE}'
    lay_out(store, items, [[0, 1, 2, 3, 4], []], reduce=flaky_reduce)
    marks = tmp_path / "marks"
    marks.mkdir()
    vm = start(store, 0, marks, env={"FLAKY": "none"})
    vm.wait()
    status = store.status(shard_id(0))
    assert (status["state"], status["exit_code"]) == ("FAILED", 3), vm.console
    reduce = json.loads(store.get(f"jobs/{PARENT}/reduce/status.json"))
    assert (reduce["state"], reduce["exit_code"], reduce["reason"]) == ("FAILED", 3, "the reduce exited with code 3")
    assert b"broken" in store.get(f"jobs/{PARENT}/reduce/log") and store.get(f"jobs/{PARENT}/outputs/total.txt") is None

    store.put(f"jobs/{PARENT}/reduce/lock", shard_id(1))  # a retry: a new shard with no items, the lock made its own
    vm = start(store, 1, marks, env={"FLAKY": "none"})
    vm.wait()
    assert store.status(shard_id(1))["state"] == "SUCCEEDED", vm.console
    assert lines(marks / "reduce-runs") == [shard_id(1)] and len(lines(marks / "runs")) == 5
    assert json.loads(store.get(f"jobs/{PARENT}/reduce/status.json"))["state"] == "SUCCEEDED"
    assert store.get(f"jobs/{PARENT}/outputs/total.txt").decode().splitlines() == sorted(FILES)


COUNTING_S5CMD = """#!/bin/bash
# Log every s5cmd call (unix time, then its arguments, one per field; one write a line), then run the real one.
line=$EPOCHREALTIME; for a in "$@"; do line+=$'\\t'$a; done; printf '%s\\n' "$line" >> {log}
exec {real} "$@"
"""


def test_each_item_is_one_upload_of_its_folder_then_its_done_marker_and_the_summary_at_most_once_a_second(tmp_path, request):
    store = Store("s3", tmp_path, request)
    items = [f"item-{i:02d}" for i in range(24)]
    store.put(f"jobs/{PARENT}/items.sh", render_items('echo "$RUNNER_ITEM" > "$RUNNER_ITEM_OUTPUT/r"; echo ran', PARENT, store.uri, 3, False))
    store.put(f"jobs/{PARENT}/manifest.jsonl", "".join(json.dumps({"name": i, "item": i, "size": None}) + "\n" for i in items))
    store.put(f"jobs/{PARENT}/items/{items[0]}/done", "")  # done by an earlier attempt: not run again
    store.put(f"jobs/{shard_id(0)}/items.tsv", "".join(f"{i}\t{i}\n" for i in items))
    store.put(f"jobs/{shard_id(0)}/code.tar.gz", code_tar({"item.sh": ITEM_SH}))
    calls, shim = tmp_path / "s5cmd.log", tmp_path / "shim"
    shim.mkdir()
    (shim / "s5cmd").write_text(COUNTING_S5CMD.format(log=calls, real=shutil.which("s5cmd")))
    (shim / "s5cmd").chmod(0o755)
    vm = VM(tmp_path / "vm", store.uri, shard_id(0), extra_path=[shim])
    vm.start({"name": "fan", "command": "bash .runner/items.sh",
              "inputs": {f"jobs/{PARENT}/items.sh": ".runner/items.sh", f"jobs/{shard_id(0)}/items.tsv": ".runner/items.tsv",
                         f"jobs/{PARENT}/manifest.jsonl": ".runner/manifest.jsonl"}}, s3_endpoint=store.endpoint)
    vm.wait()
    assert store.status(shard_id(0))["state"] == "SUCCEEDED", vm.console
    base = f"{store.uri}/jobs/{PARENT}/items/"
    log = [line.split("\t") for line in calls.read_text().splitlines()]
    uploads = [(float(c[0]), c[-1]) for c in log if "cp" in c and c[-1].startswith(base)]
    for name in items[1:]:
        mine = [dest for _, dest in uploads if dest.startswith(f"{base}{name}/")]
        assert mine == [f"{base}{name}/", f"{base}{name}/done"], mine  # its folder (result, log, exit code) in one, done last
        assert store.item(name, "result/r") == f"{name}\n".encode() and store.item(name, "exit_code").strip() == b"0"
        assert store.item(name, "log") == b"ran\n" and store.item(name, "done") == b""
    assert not [dest for _, dest in uploads if dest.startswith(f"{base}{items[0]}/")]
    lists = [c for c in log if "ls" in c and any(a.startswith(base) for a in c)]
    assert len(lists) == 1, lists  # the done-markers listed once, not looked up item by item
    summaries = [float(c[0]) for c in log if "cp" in c and c[-1].endswith(f"/jobs/{shard_id(0)}/summary.json")]
    assert summaries and len({int(t) for t in summaries[:-1]}) == len(summaries) - 1, summaries  # one a second, then the last
    summary = json.loads(store.get(f"jobs/{shard_id(0)}/summary.json"))
    assert (summary["total"], summary["done"], summary["failed"], summary["failed_items"]) == (24, 24, 0, {})


def power_cut(vm: VM) -> None:
    """Every process of this VM ends at once, its job's own session too (each carries RUNNER_VM_ROOT in its environment)."""
    mark = f"RUNNER_VM_ROOT={vm.root}".encode()
    vm.kill()
    for _ in range(50):
        pids = []
        for p in Path("/proc").iterdir():
            try:
                if p.name.isdigit() and mark in (p / "environ").read_bytes().split(b"\0"):
                    pids.append(int(p.name))
            except OSError:
                continue
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    raise AssertionError(f"processes of {vm.root} still running")


def test_a_shard_killed_mid_run_keeps_every_item_it_marked_done_and_a_relaunch_runs_only_the_rest(store, tmp_path):
    items = ["a", "b", "c", "d"]
    block = tmp_path / "block"
    block.touch()
    command = ('echo "$RUNNER_ITEM_NAME" >> "$MARKS/runs"; while [ "$RUNNER_ITEM_NAME" = c ] && [ -e "$BLOCK" ]; do sleep 0.1; done; '
               'echo "$RUNNER_ITEM" > "$RUNNER_ITEM_OUTPUT/r"')
    store.put(f"jobs/{PARENT}/items.sh", render_items(command, PARENT, store.uri, 1, False))
    store.put(f"jobs/{PARENT}/manifest.jsonl", "".join(json.dumps({"name": i, "item": i, "size": None}) + "\n" for i in items))
    store.put(f"jobs/{shard_id(0)}/items.tsv", "".join(f"{i}\t{i}\n" for i in items))
    store.put(f"jobs/{shard_id(0)}/code.tar.gz", code_tar({}))
    marks = tmp_path / "marks"
    marks.mkdir()
    vm = start(store, 0, marks, env={"BLOCK": str(block)})
    try:
        assert wait_for(lambda: lines(marks / "runs") == ["a", "b", "c"], timeout=120), vm.console
    finally:
        power_cut(vm)  # the machine dies while c runs: no more pushes, no final status
    for name in ("a", "b"):
        assert store.item(name, "done") == b"" and store.item(name, "result/r") == f"{name}\n".encode()
        assert store.item(name, "exit_code").strip() == b"0" and store.item(name, "log") is not None
    assert not store.keys(f"jobs/{PARENT}/items/c/") and not store.keys(f"jobs/{PARENT}/items/d/")
    block.unlink()
    store.put(f"jobs/{shard_id(0)}/status.json", json.dumps({"state": "PROVISIONING"}))
    vm = start(store, 0, marks, attempt=2, env={"BLOCK": str(block)})
    vm.wait()
    assert store.status(shard_id(0))["state"] == "SUCCEEDED", vm.console
    assert lines(marks / "runs") == ["a", "b", "c", "c", "d"]  # a and b were not run again
    assert all(store.item(name, "done") == b"" and store.item(name, "result/r") == f"{name}\n".encode() for name in items)
    summary = json.loads(store.get(f"jobs/{shard_id(0)}/summary.json"))
    assert (summary["total"], summary["done"], summary["failed"]) == (4, 4, 0)


def test_links_planted_in_a_file_store_are_not_written_through(tmp_path, request):
    store = Store("file", tmp_path, request)
    items = ["a", "b"]
    store.put(f"jobs/{PARENT}/items.sh", render_items('echo "$RUNNER_ITEM" > "$RUNNER_ITEM_OUTPUT/r"', PARENT, store.uri, 1, False))
    store.put(f"jobs/{PARENT}/manifest.jsonl", "".join(json.dumps({"name": i, "item": i, "size": None}) + "\n" for i in items))
    store.put(f"jobs/{shard_id(0)}/items.tsv", "a\ta\nb\tb\n")
    store.put(f"jobs/{shard_id(0)}/code.tar.gz", code_tar({}))
    elsewhere, planted = tmp_path / "elsewhere", tmp_path / "planted"
    elsewhere.mkdir()
    folder = store.job.root / "jobs" / PARENT / "items"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "done").symlink_to(planted)  # a dangling link where a's done-marker goes
    (folder / "b").symlink_to(elsewhere)  # b's whole folder a link to a folder outside the store
    marks = tmp_path / "marks"
    marks.mkdir()
    vm = start(store, 0, marks)
    vm.wait()
    assert not planted.exists() and not list(elsewhere.iterdir())
    assert not (folder / "a" / "done").is_symlink() and store.item("a", "done") == b"" and store.item("a", "result/r") == b"a\n"
    summary = json.loads(store.get(f"jobs/{shard_id(0)}/summary.json"))
    assert (summary["done"], summary["failed_items"]) == (1, {"b": 74})


# Each run of an item is counted in $MARKS/runs.<name> and leaves a file named for it in its output folder; the item
# fails (exit 10 + its run number) while its run number is at most the number in $MARKS/fails.<name>.
COUNTED = (
    'runs="$MARKS/runs.$RUNNER_ITEM_NAME"; echo x >> "$runs"; n=$(wc -l < "$runs"); echo "run $n of $RUNNER_ITEM_NAME"; '
    ': > "$RUNNER_ITEM_OUTPUT/from-run-$n"; '
    'if [ "$n" -le "$(cat "$MARKS/fails.$RUNNER_ITEM_NAME" 2> /dev/null || echo 0)" ]; then echo "failing on purpose"; exit $((10 + n)); fi'
)


def counted(store: Store, tmp_path: Path, fails: dict[str, int], retries: int) -> Path:
    """One shard over the items of `fails` (each failing that many times first), at most `retries` more tries each."""
    items = list(fails)
    store.put(f"jobs/{PARENT}/items.sh", render_items(COUNTED, PARENT, store.uri, 2, False, item_retries=retries))
    store.put(f"jobs/{PARENT}/manifest.jsonl", "".join(json.dumps({"name": i, "item": i, "size": None}) + "\n" for i in items))
    store.put(f"jobs/{shard_id(0)}/items.tsv", "".join(f"{i}\t{i}\n" for i in items))
    store.put(f"jobs/{shard_id(0)}/code.tar.gz", code_tar({}))
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    for name, n in fails.items():
        (marks / f"fails.{name}").write_text(f"{n}\n")
    return marks


def runs(marks: Path, name: str) -> int:
    return len(lines(marks / f"runs.{name}"))


@pytest.mark.parametrize("retries", [0, 1])
def test_an_item_that_fails_once_is_done_after_two_tries_within_its_budget_and_failed_at_once_without(tmp_path, request, retries):
    store = Store("file", tmp_path, request)
    marks = counted(store, tmp_path, {"flaky": 1, "fine": 0}, retries)
    vm = start(store, 0, marks)
    vm.wait()
    log = store.item("flaky", "log").decode()
    summary = json.loads(store.get(f"jobs/{shard_id(0)}/summary.json"))
    assert store.item("fine", "done") == b"" and store.item("fine", "tries") is None and runs(marks, "fine") == 1
    assert store.item("fine", "log") == (b"--- try 1 of 2\n" if retries else b"") + b"run 1 of fine\n"
    if retries:
        assert store.status(shard_id(0))["state"] == "SUCCEEDED", vm.console
        assert runs(marks, "flaky") == 2 and store.item("flaky", "done") == b""
        assert store.item("flaky", "exit_code") == b"0\n" and store.item("flaky", "tries") == b"2\n"
        assert log == "--- try 1 of 2\nrun 1 of flaky\nfailing on purpose\n--- try 2 of 2\nrun 2 of flaky\n"
        assert store.keys(f"jobs/{PARENT}/items/flaky/result/") == [f"jobs/{PARENT}/items/flaky/result/from-run-2"]  # a fresh folder
        assert (summary["done"], summary["failed"], summary["failed_items"]) == (2, 0, {})
        assert "flaky: exit 11 on try 1 of 2: running it again" in FileJob(store.job.root, shard_id(0)).log("job.log").decode()
    else:
        assert store.status(shard_id(0))["state"] == "FAILED", vm.console
        assert runs(marks, "flaky") == 1 and store.item("flaky", "done") is None
        assert store.item("flaky", "exit_code") == b"11\n" and store.item("flaky", "tries") is None
        assert log == "run 1 of flaky\nfailing on purpose\n" and not store.keys(f"jobs/{PARENT}/items/flaky/result/")
        assert (summary["done"], summary["failed"], summary["failed_items"]) == (1, 1, {"flaky": 11})


def test_an_item_failing_every_try_runs_three_times_with_two_retries_then_is_failed_and_its_rerun_rewrites_tries(store, tmp_path):
    marks = counted(store, tmp_path, {"broken": 3, "fine": 0}, 2)
    vm = start(store, 0, marks)
    vm.wait()
    assert store.status(shard_id(0))["state"] == "FAILED", vm.console
    assert runs(marks, "broken") == 3 and runs(marks, "fine") == 1
    assert store.item("broken", "done") is None and store.item("broken", "exit_code") == b"13\n"  # the last try's code
    assert store.item("broken", "tries") == b"3\n" and store.item("fine", "tries") is None
    log = store.item("broken", "log").decode()
    assert [line for line in log.splitlines() if line.startswith("---")] == ["--- try 1 of 3", "--- try 2 of 3", "--- try 3 of 3"]
    assert [f"run {n} of broken" in log for n in (1, 2, 3)] == [True] * 3
    summary = json.loads(store.get(f"jobs/{shard_id(0)}/summary.json"))
    assert (summary["done"], summary["failed"], summary["failed_items"]) == (1, 1, {"broken": 13})

    store.put(f"jobs/{shard_id(0)}/status.json", json.dumps({"state": "PROVISIONING"}))  # relaunched: it succeeds at once now
    vm = start(store, 0, marks, attempt=2)
    vm.wait()
    assert store.status(shard_id(0))["state"] == "SUCCEEDED", vm.console
    assert runs(marks, "broken") == 4 and runs(marks, "fine") == 1
    assert store.item("broken", "done") == b"" and store.item("broken", "exit_code") == b"0\n"
    assert store.item("broken", "tries") == b"1\n"  # not the 3 of the run before
