#!/usr/bin/env python3
"""What runner adds around a job: wall time of `runner launch jobs/taxi --cloud sandbox --wait` minus
the job's own time (`python3 taxi.py data out.csv` run directly on the same data, same run).

Usage: python3 bench/sandbox_overhead.py [--rows 20000] [--reps 5]

A throwaway $RUNNER_HOME gets a small synthetic taxi sample (jobs/taxi/make_data.py) in its store
under data/nyc-taxi/, where jobs/taxi/job.yaml looks for it. Launches and direct runs alternate;
one untimed warm-up of each first. Each launch is split into three parts by the sandbox's own
files: the CLI until the sandbox starts (user-data written), the startup script until its
power-off (power.log written), and `--wait` noticing the end until the CLI exits.
Target: overhead <= 3 s (difference of the medians).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl

TARGET_S = 3.0
ID_RE = re.compile(r"\b(taxi-\d{8}T\d{6}Z-[0-9a-f]{6})\b")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()

    bl.header("Sandbox overhead: `runner launch jobs/taxi --cloud sandbox --wait` minus the job itself")
    runner = bl.real_script("runner")
    job_dir = bl.REPO / "jobs" / "taxi"
    if not runner or not (job_dir / "job.yaml").is_file():
        print(f"need runner installed and {job_dir}/job.yaml; nothing measured")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("RUNNER_STORE", "RUNNER_CLOUD", "RUNNER_S3_ENDPOINT")}
    env["RUNNER_HOME"] = str(home)
    py = shutil.which("python3", path=env.get("PATH"))
    print(f"- runner: {bl.describe_path(runner)}")
    print(f"- the job's `python3` (first on PATH, in the sandbox and in the direct run): {bl.describe_path(py)}")
    print(f"- duckdb {_version('duckdb')}, pyarrow {_version('pyarrow')}; bash {bl.first_line(['bash', '--version']).split('version ')[-1]}")
    try:
        data = home / "store" / "data" / "nyc-taxi"
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, str(job_dir / "make_data.py"), str(data), "--rows", str(a.rows)],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            print(f"make_data.py failed: {r.stderr.strip()[-300:]}; nothing measured")
            return 0
        files = [p for p in data.rglob("*") if p.is_file()]
        print(f"- data: {r.stdout.strip().splitlines()[-1]} ({len(files)} files, "
              f"{sum(p.stat().st_size for p in files) / 1e6:.1f} MB, made in {time.perf_counter() - t0:.1f} s)")

        direct = tmp / "direct"
        direct.mkdir()
        shutil.copy(job_dir / "taxi.py", direct / "taxi.py")
        (direct / "data").symlink_to(data)

        def run_direct() -> float:
            (direct / "out.csv").unlink(missing_ok=True)
            t = time.perf_counter()
            r = subprocess.run(["python3", "taxi.py", "data", "out.csv"], cwd=direct, env=env, capture_output=True, text=True, check=False)
            took = time.perf_counter() - t
            if r.returncode != 0:
                print(f"  direct run failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
            return took

        def run_launch() -> tuple[float, dict[str, float], str]:
            t = time.time()
            r = subprocess.run([runner, "launch", str(job_dir), "--cloud", "sandbox", "--wait"],
                               env=env, cwd=tmp, capture_output=True, text=True, check=False)
            end = time.time()
            m = ID_RE.search(r.stderr + r.stdout)
            if r.returncode != 0 or not m:
                print(f"  launch failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[-400:]}")
                return end - t, {}, ""
            job_id = m.group(1)
            box = home / "sandbox" / job_id
            parts = {}
            try:
                started = (box / "user-data").stat().st_mtime_ns / 1e9
                powered = (box / "power.log").stat().st_mtime_ns / 1e9
                parts = {"cli": started - t, "script": powered - started, "wait": end - powered}
            except OSError as e:
                print(f"  no timing files for {job_id}: {e}")
            out = home / "store" / "jobs" / job_id / "outputs" / "passenger_counts.csv"
            same = out.is_file() and (direct / "out.csv").is_file() and out.read_bytes() == (direct / "out.csv").read_bytes()
            return end - t, parts, job_id if same else f"{job_id} (OUTPUT DIFFERS from the direct run)"

        def run_dry() -> float:
            t = time.perf_counter()
            r = subprocess.run([runner, "launch", str(job_dir), "--cloud", "sandbox", "--dry-run"],
                               env=env, cwd=tmp, capture_output=True, text=True, check=False)
            took = time.perf_counter() - t
            if r.returncode != 0:
                print(f"  dry run failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[-300:]}")
            return took

        run_direct()  # warm-up: page cache for duckdb and the data; also writes out.csv for the first comparison
        _, _, first = run_launch()
        print(f"- warm-up launch: {first or 'failed'}")
        run_dry()
        launches, directs, dries, parts, ids = [], [], [], [], []
        for _ in range(a.reps):
            directs.append(run_direct())
            dries.append(run_dry())
            took, p, job_id = run_launch()
            launches.append(took)
            if p:
                parts.append(p)
            ids.append(job_id)
        bad = [i for i in ids if not i or "DIFFERS" in i]
        print(f"- launches: {a.reps}, all SUCCEEDED with output identical to the direct run: {'yes' if not bad else 'NO: ' + ', '.join(bad)}")

        ml, md = bl.median(launches), bl.median(directs)
        overhead = ml - md
        print(f"\n## Wall time, s ({a.reps} runs each, alternating; {bl.loadavg()} at the end)\n")
        rows = [
            ["runner launch jobs/taxi --cloud sandbox --wait", f"{ml:.2f}", f"{min(launches):.2f}", f"{max(launches):.2f}", ""],
            ["python3 taxi.py data out.csv (the job alone)", f"{md:.2f}", f"{min(directs):.2f}", f"{max(directs):.2f}", ""],
            ["overhead (difference of the medians)", f"{overhead:.2f}", "", "", f"<= {TARGET_S:.0f} s: {bl.verdict(overhead <= TARGET_S)}"],
        ]
        print(bl.table(["measured", "median", "min", "max", "target"], rows, align="lrrrl"))
        if parts:
            print(f"\n## Where a launch's time goes (median of {len(parts)} launches, s)\n")
            med = {k: bl.median([p[k] for p in parts]) for k in ("cli", "script", "wait")}
            dry = bl.median(dries)
            rows = [
                ["`runner launch` starts -> sandbox starts (imports, plan + render, pack code, job records)", f"{med['cli']:.2f}"],
                ["  for comparison: a whole `runner launch ... --dry-run` (imports, validate, render; median)", f"{dry:.2f}"],
                ["sandbox starts -> power-off (the startup script: pull, the job, push outputs/logs/status)", f"{med['script']:.2f}"],
                ["  of which the script without the job (script part minus the direct run's median)", f"{med['script'] - md:.2f}"],
                ["power-off -> `runner launch --wait` exits (polling the status, final report)", f"{med['wait']:.2f}"],
            ]
            print(bl.table(["part", "median"], rows, align="lr"))
        mods = bl.import_times([runner, "launch", str(job_dir), "--cloud", "sandbox", "--dry-run"], env)
        heavy = [(m, mods[m]) for m in ("runner.cli", "runner.launch", "runner.spec", "pydantic", "jinja2", "yaml", "click") if m in mods]
        print("\n- imports of `runner launch --dry-run` (cumulative ms, `python3 -X importtime`, one run): "
              + ", ".join(f"{m} {ms:.0f}" for m, ms in heavy))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


if __name__ == "__main__":
    sys.exit(main())
