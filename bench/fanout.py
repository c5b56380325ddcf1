#!/usr/bin/env python3
"""Fan-out: the per-item overhead of a shard's item runner, the cost of launching 50 shards, and
jobs/taxi-fanout beside jobs/taxi, side by side in one run.

Usage: python3 bench/fanout.py [--items 2000] [--before REV] [--shards 50] [--singles 50] [--launch-before REV]
                               [--files 8] [--rows 400000] [--only overhead,launch,taxi]

1. Per-item overhead: N tiny items (`echo x > $RUNNER_ITEM_OUTPUT/r`, fetch: false, a manifest) over 2 shards
   in the sandbox (`runner launch --cloud sandbox --vms 2 --wait`), with this tree's items.sh and with REV's
   (default: the last commit before items.sh packed each item into one push), checked out in a temporary git
   worktree; beside the seeds' own way: `xargs -P <nproc>` running the same command per key, each key's
   result copied into a folder as the shard puts it into its store, run before, between and after the two
   fan-outs (each fan-out is compared with the mean of the two xargs runs beside it). Items per second is from the
   first item's result to the last one's (file mtimes: the store's done-markers, xargs' copied results),
   so the launch itself is not in it; the wall time of the whole launch is beside it. Target: >= 0.8x xargs.
2. Launch cost: one 50-shard fan-out (`runner launch --cloud aws`, a moto server on 127.0.0.1) with this tree
   and with REV's launcher (default: the last commit that launched each shard on its own), vs 50 launches of an
   ordinary one-command job, each a fresh CLI process; AWS API calls counted by a botocore hook inside the CLI
   process, and wall time. The moto server starts up to MaxCount instances per RunInstances, as EC2 does
   (tests/moto_capacity.py: moto itself starts MinCount).
3. jobs/taxi-fanout (2 sandbox shards) vs jobs/taxi on the same synthetic data (jobs/taxi/make_data.py):
   their passenger_counts.csv compared byte for byte, wall times beside.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

TARGET = 0.8
BEFORE = "2212e43"  # items.sh pushed each item's result, log, exit code and done one by one, summary per item
LAUNCH_BEFORE = "bc31050"  # a fan-out launched each shard with its own RunInstances
TINY = 'echo x > "$RUNNER_ITEM_OUTPUT/r"'
# The seeds' way, per key: the same command, then its result copied into a folder (as a shard pushes it).
XARGS_ITEM = r'''out=$W/out/$1; mkdir -p "$out" && RUNNER_ITEM="$1" RUNNER_ITEM_OUTPUT="$out" bash -c "$CMD" &&
mkdir -p "$W/results/$1" && cp -R -- "$out/." "$W/results/$1/"'''
S3_CALLS = {"PutObject", "GetObject", "HeadObject", "ListObjectsV2", "DeleteObject", "DeleteObjects", "CopyObject",
            "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "HeadBucket"}
CLEAN = ("RUNNER_STORE", "RUNNER_CLOUD", "RUNNER_S3_ENDPOINT", "RUNNER_CONFIG", "RUNNER_IMAGES", "AWS_PROFILE")


def base_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env["RUNNER_HOME"] = str(home)
    return env


def rate(mtimes: list[float]) -> float:
    """Items per second from the first result to the last (n results, n - 1 intervals)."""
    span = max(mtimes) - min(mtimes)
    return (len(mtimes) - 1) / span if span > 0 else float("inf")


def fanout_run(tree: Path, tmp: Path, n: int) -> dict:
    """N tiny items over 2 sandbox shards with `tree`'s runner: rate between the first and last done-marker, wall."""
    home = tmp / "home"
    job = tmp / "tiny"
    job.mkdir(parents=True)
    (job / "items.txt").write_text("".join(f"item-{i:05d}\n" for i in range(n)))
    (job / "job.yaml").write_text(json.dumps({"name": "tiny", "command": TINY, "vms": 2,
                                              "items": {"manifest": "items.txt", "fetch": False}}))
    env = {**base_env(home), "PYTHONPATH": str(tree)}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "runner", "launch", str(job), "--cloud", "sandbox", "--wait", "--json"],
                       cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    if r.returncode:
        raise SystemExit(f"fan-out launch with {tree} failed ({r.returncode}): {r.stderr[-600:]}")
    parent = json.loads(r.stdout.strip().splitlines()[-1])["job_id"]
    items = home / "store" / "jobs" / parent / "items"
    done = [p.stat().st_mtime for p in items.glob("*/done")]
    results = len(list(items.glob("*/result/r")))
    if len(done) != n or results != n:
        raise SystemExit(f"{tree}: {len(done)} done-markers and {results} results of {n} items")
    return {"rate": rate(done), "wall": wall}


def xargs_run(tmp: Path, n: int) -> dict:
    """The same N items with `xargs -P nproc`, each result copied into results/<key>/."""
    w = tmp / "xargs"
    (w / "out").mkdir(parents=True)
    keys = "".join(f"item-{i:05d}\n" for i in range(n))
    env = {**os.environ, "W": str(w), "CMD": TINY}
    procs = str(os.cpu_count() or 1)
    t0 = time.monotonic()
    subprocess.run(["xargs", "-P", procs, "-n", "1", "bash", "-c", XARGS_ITEM, "_"], input=keys, text=True, env=env, check=True)
    wall = time.monotonic() - t0
    done = [p.stat().st_mtime for p in (w / "results").glob("*/r")]
    if len(done) != n:
        raise SystemExit(f"xargs: {len(done)} results of {n} items")
    return {"rate": rate(done), "wall": wall}


def overhead(n: int, before: str, tmp: Path) -> None:
    print(f"\n## 1. Per-item overhead: {n} tiny items, `{TINY}`, fetch: false\n")
    rows: list[list[object]] = []
    res: dict[str, dict] = {}
    old = tmp / "before-tree"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old), before], cwd=bl.REPO, check=True)
    try:  # xargs runs before, between and after the two fan-outs: each is compared with the xargs runs beside it
        xs = [xargs_run(tmp / "x0", n)]
        res["before"] = fanout_run(old, tmp / "before", n)
        xs.append(xargs_run(tmp / "x1", n))
        res["after"] = fanout_run(bl.REPO, tmp / "after", n)
        xs.append(xargs_run(tmp / "x2", n))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=bl.REPO, check=False)
    near = {"before": (xs[0]["rate"] + xs[1]["rate"]) / 2, "after": (xs[1]["rate"] + xs[2]["rate"]) / 2}
    for k, x in enumerate(xs):
        rows.append([f"xargs -P {os.cpu_count()} (the seeds' way), run {k + 1}", f"{x['rate']:.0f}", "", f"{x['wall']:.1f}",
                     f"{n / x['wall']:.0f}"])
    for key, label in (("before", f"2 sandbox shards, items.sh of {before}"), ("after", "2 sandbox shards, items.sh of this tree")):
        r = res[key]
        rows.append([label, f"{r['rate']:.0f}", f"{r['rate'] / near[key]:.2f}x", f"{r['wall']:.1f}", f"{n / r['wall']:.0f}"])
    print(bl.table(["way", "items/s (first to last result)", "of the xargs runs beside it", "wall s (whole launch)",
                    "items/s over the wall"], rows, align="lrrrr"))
    ok = res["after"]["rate"] >= TARGET * near["after"]
    print(f"\nthis tree >= {TARGET}x xargs: {bl.verdict(ok)} ({bl.loadavg()} at the end; other work on this machine moves every number)")


def hooked(args: list[str], log: Path, env: dict, tree: Path = bl.REPO) -> float:
    """The real CLI of TREE with ARGS in a fresh process, its AWS calls logged to LOG; its wall time."""
    from interrupt import HOOKED

    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", HOOKED, str(log), *args], cwd=tree, env={**env, "PYTHONPATH": str(tree)},
                       capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - t0
    if r.returncode:
        raise SystemExit(f"runner {' '.join(args)} failed ({r.returncode}): {r.stderr[-600:]}")
    return wall


def old_tree(rev: str, where: Path) -> Path:
    """REV checked out in a temporary worktree, its templates importable as its own runner.templates."""
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(where), rev], cwd=bl.REPO, check=True)
    (where / "runner" / "templates").symlink_to("../templates")  # else the installed tree's templates are found
    return where


def launch_cost(shards: int, singles: int, before: str, tmp: Path) -> None:
    """One fan-out of SHARDS shards (this tree's launcher and BEFORE's) vs SINGLES launches of a one-command job, against
    a moto server."""
    from aws_launch import PROFILE, REGION, setup

    print(f"\n## 2. Launch cost on AWS (moto server on 127.0.0.1): one {shards}-shard fan-out vs {singles} single launches\n")
    wide, single = tmp / "jobs" / "wide", tmp / "jobs" / "single"
    wide.mkdir(parents=True)
    single.mkdir(parents=True)
    (wide / "items.txt").write_text("".join(f"item-{i}\n" for i in range(shards)))
    (wide / "job.yaml").write_text(json.dumps({"name": "wide", "command": "true", "vms": shards,
                                               "items": {"manifest": "items.txt", "fetch": False}}))
    (single / "job.yaml").write_text(json.dumps({"name": "single", "command": "true"}))
    port = bl.free_port()
    server = subprocess.Popen([sys.executable, str(bl.REPO / "tests" / "moto_capacity.py"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = dict(os.environ)
    old = None
    runs = []
    try:
        bl.wait_port(port, proc=server)
        url = f"http://127.0.0.1:{port}"
        env = {**base_env(tmp / "home"), "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true",
               "RUNNER_STORE": "s3://runner-bench/runner", "RUNNER_AWS_REGION": REGION, "RUNNER_AWS_INSTANCE_PROFILE": PROFILE}
        for var in ("RUNNER_AWS_SUBNETS", "RUNNER_AWS_SECURITY_GROUP", "CI", "GITHUB_ACTIONS"):
            env.pop(var, None)
        os.environ.update(env)  # setup's boto3 clients talk to the server too
        setup(url, tmp / "home")
        old = old_tree(before, tmp / "before-tree")
        for label, log, tree, job, n in (
            (f"1 fan-out, {shards} shards, this tree", tmp / "wide.log", bl.REPO, wide, 1),
            (f"1 fan-out, {shards} shards, {before}", tmp / "wide-before.log", old, wide, 1),
            (f"{singles} single launches, this tree", tmp / "single.log", bl.REPO, single, singles),
        ):
            wall = sum(hooked(["launch", str(job), "--cloud", "aws", "--json"], log, env, tree) for _ in range(n))
            runs.append((label, log, wall))
    finally:
        os.environ.clear()
        os.environ.update(saved)
        bl.stop(server)
        if old is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=bl.REPO, check=False)
    rows = []
    for label, log, wall in runs:
        calls = Counter(line.split()[1] for line in log.read_text().splitlines())
        ec2 = sum(n for name, n in calls.items() if name not in S3_CALLS)
        rows.append([label, sum(calls.values()), ec2, calls["RunInstances"], calls["CreateTags"], f"{wall:.1f}",
                     ", ".join(f"{name} {n}" for name, n in calls.most_common())])
    print(bl.table(["launch", "AWS calls", "not S3", "RunInstances", "CreateTags", "wall s (CLI processes)", "calls by name"], rows,
                   align="lrrrrrl"))


def taxi(files: int, rows: int, tmp: Path) -> None:
    """jobs/taxi-fanout over 2 sandbox shards and jobs/taxi on the same data: outputs compared, wall times."""
    import importlib.util

    print(f"\n## 3. jobs/taxi-fanout (2 sandbox shards) vs jobs/taxi: {files} trip files, {rows} rows\n")
    spec = importlib.util.spec_from_file_location("make_data", bl.REPO / "jobs" / "taxi" / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    home = tmp / "home"
    make_data.generate(home / "store" / "data" / "nyc-taxi", files=files, rows=rows, seed=7, fmt="both")
    env = base_env(home)
    got, table_rows = {}, []
    for job, extra in (("taxi-fanout", ["--vms", "2"]), ("taxi", [])):
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "runner", "launch", f"jobs/{job}", "--cloud", "sandbox", "--wait", "--json", *extra],
                           cwd=bl.REPO, env=env, capture_output=True, text=True, timeout=1800)
        wall = time.monotonic() - t0
        if r.returncode:
            raise SystemExit(f"jobs/{job} failed ({r.returncode}): {r.stderr[-600:]}")
        job_id = json.loads(r.stdout.strip().splitlines()[-1])["job_id"]
        dest = tmp / "out" / job
        o = subprocess.run([sys.executable, "-m", "runner", "outputs", job_id, str(dest)], cwd=bl.REPO, env=env,
                           capture_output=True, text=True, timeout=600)
        if o.returncode:
            raise SystemExit(f"runner outputs {job_id} failed: {o.stderr[-600:]}")
        got[job] = (dest / "passenger_counts.csv").read_bytes()
        table_rows.append([f"jobs/{job}" + (" (2 shards, 1 item per file)" if extra else " (1 VM)"), f"{wall:.1f}",
                           f"{len(got[job].splitlines()) - 1}"])
    print(bl.table(["job", "launch --wait s", "rows in passenger_counts.csv"], table_rows))
    print(f"\npassenger_counts.csv byte for byte equal: {bl.verdict(got['taxi-fanout'] == got['taxi'])}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--shards", type=int, default=50)
    ap.add_argument("--singles", type=int, default=50)
    ap.add_argument("--launch-before", default=LAUNCH_BEFORE)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--only", default="overhead,launch,taxi")
    a = ap.parse_args()
    parts = set(a.only.split(","))
    bl.header("Fan-out: per-item overhead, launching many shards, taxi-fanout beside taxi")
    print(f"- bash {bl.first_line(['bash', '--version']).split('version ')[-1]}; xargs {bl.first_line(['xargs', '--version'])}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    try:
        if "overhead" in parts:
            overhead(a.items, a.before, tmp / "overhead")
        if "launch" in parts:
            launch_cost(a.shards, a.singles, a.launch_before, tmp / "launch")
        if "taxi" in parts:
            taxi(a.files, a.rows, tmp / "taxi")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
