#!/usr/bin/env python3
"""Cluster formation and jobs/taxi-ray beside jobs/taxi, in the sandbox and in local VMs.

Usage: python3 bench/cluster.py [--reps 2] [--files 8] [--rows 40000] [--no-local]

In one run, alternating: a single-VM sandbox job (`true`) from launch to its end, and a 2-node cluster job from
launch until every node joined (the nodes' `joined` records, second resolution) and to its end; then
`runner launch jobs/taxi-ray --nodes 2` and `runner launch jobs/taxi` on the same synthetic data (wall time of
`--wait`). On a 2-core host both nodes share the cores: the cluster cannot be faster here, it shows the cost of
forming one. Then, when the local image is baked (and not --no-local), once each: a single local VM (`true`,
local-1x2) and a 2-node local cluster (local-1x2 nodes on the job's private network), from launch until the command
started / both nodes joined and to the end, one after the other (never two runs at once). A throwaway
$RUNNER_HOME; nothing leaves 127.0.0.1.
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
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl

RAY_CHECK = "python3 -c 'import ray; ray.init(); print(len(ray.nodes()), \"nodes\")'"


def launch(env: dict, job: Path, *args: str, cloud: str = "sandbox") -> tuple[float, dict, float]:
    """(wall s, the --json result, the UTC epoch at launch)."""
    t0, at = time.monotonic(), time.time()
    r = subprocess.run([sys.executable, "-m", "runner", "launch", str(job), "--cloud", cloud, "--wait", "--json", "-q", *args],
                       capture_output=True, text=True, env=env, cwd=bl.REPO, timeout=1800)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"launch {job} failed ({r.returncode}): {r.stderr[-2000:]}")
    return wall, json.loads(r.stdout.strip().splitlines()[-1]), at


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def joined_after(env: dict, job_id: str, at: float) -> float:
    """Seconds from the launch until the last node's joined record."""
    r = subprocess.run([sys.executable, "-m", "runner", "status", job_id, "--json"], capture_output=True, text=True, env=env, cwd=bl.REPO)
    nodes = json.loads(r.stdout)["node_states"]
    return max(_epoch(n["joined_at"]) for n in nodes) - at


def started_after(env: dict, job_id: str, at: float) -> float:
    """Seconds from the launch until the job's command started (its status's started_at)."""
    r = subprocess.run([sys.executable, "-m", "runner", "status", job_id, "--json"], capture_output=True, text=True, env=env, cwd=bl.REPO)
    return _epoch(json.loads(r.stdout)["started_at"]) - at


def local_rows(env: dict, single: Path, cluster: Path) -> list[list]:
    """One single local VM, then one 2-node local cluster: launch to start/joined and to the end."""
    wall1, out1, at1 = launch(env, single, "--type", "local-1x2", cloud="local")
    wall2, out2, at2 = launch(env, cluster, "--type", "local-1x2", cloud="local")
    return [
        ["single local VM `true`: launch until its command started", f"{started_after(env, out1['job_id'], at1):.1f}", 1],
        ["single local VM `true`: launch to its end (powered off)", f"{wall1:.1f}", 1],
        ["2-node local cluster: launch until both nodes joined", f"{joined_after(env, out2['job_id'], at2):.1f}", 1],
        ["2-node local cluster: launch to its end (ray.init, nodes counted)", f"{wall2:.1f}", 1],
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--no-local", action="store_true", help="skip the local VM rows")
    a = ap.parse_args()
    bl.header("Ray cluster in the sandbox: formation of 2 nodes beside a single job; jobs/taxi-ray beside jobs/taxi")
    try:
        import ray  # noqa: F401
    except ImportError:
        print("no ray on this host (pip install -e '.[test]'); nothing measured")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    env = {k: v for k, v in os.environ.items() if k not in ("RUNNER_STORE", "RUNNER_CLOUD", "RUNNER_S3_ENDPOINT")}
    env.update(RUNNER_HOME=str(tmp / "home"), RUNNER_RAY_POLL="2")
    try:
        single, cluster = tmp / "single", tmp / "cluster"
        for d, spec in ((single, {"name": "one", "command": "true"}), (cluster, {"name": "two", "command": RAY_CHECK, "nodes": 2})):
            d.mkdir()
            (d / "job.yaml").write_text(json.dumps(spec))
        one, formed, two = [], [], []
        for _ in range(a.reps):
            one.append(launch(env, single)[0])
            wall, out, at = launch(env, cluster)
            two.append(wall)
            formed.append(joined_after(env, out["job_id"], at))
        print(bl.table(["what (sandbox)", "median s", "runs"], [
            ["single job `true`: launch to its end", f"{bl.median(one):.1f}", len(one)],
            ["2-node cluster: launch until both nodes joined", f"{bl.median(formed):.1f}", len(formed)],
            ["2-node cluster: launch to its end (ray.init, nodes counted)", f"{bl.median(two):.1f}", len(two)],
        ]))
        from runner import images

        try:
            env["RUNNER_IMAGES"] = str(images.images_dir())  # the baked image stays where `make image` put it
            images.local_image(None)
        except Exception as e:  # noqa: BLE001 - no image: the local rows say why
            print(f"\nlocal VMs: not measured ({e})")
        else:
            if not a.no_local:
                print()
                print(bl.table(["what (local VMs, TCG unless KVM works)", "s", "runs"], local_rows(env, single, cluster)))
        sys.path.insert(0, str(bl.REPO / "tests"))
        from taxi_reference import make_data

        make_data.generate(tmp / "home" / "store" / "data" / "nyc-taxi", files=a.files, rows=a.rows, seed=5, fmt="both")
        taxi, taxi_ray = [], []
        for _ in range(a.reps):
            taxi.append(launch(env, bl.REPO / "jobs" / "taxi")[0])
            taxi_ray.append(launch(env, bl.REPO / "jobs" / "taxi-ray", "--nodes", "2")[0])
        print()
        print(bl.table([f"job ({a.files} trip files x {a.rows} rows, CSV and Parquet)", "median s", "runs"], [
            ["jobs/taxi (one process, DuckDB)", f"{bl.median(taxi):.1f}", len(taxi)],
            ["jobs/taxi-ray --nodes 2 (a task per file)", f"{bl.median(taxi_ray):.1f}", len(taxi_ray)],
        ]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
