#!/usr/bin/env python3
"""Cold wall time of `runner --help` and `runner status` (fresh process each run), beside `aws --version`
and the bare interpreter; and which heavy modules `runner --help` / `runner status` import.

Usage: python3 bench/cli_latency.py [--runs N] [--jobs N]

`runner status` reads a throwaway $RUNNER_HOME holding --jobs finished job records, made by
launching a no-op job in the sandbox. Runs are interleaved (one of each command per round) so
drift and other load on the machine hit every command alike; one untimed warm-up round first.
Target: runner --help and runner status <= 150 ms median (the real console script).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl

TARGET_MS = 150.0
HEAVY = ("boto3", "botocore", "google", "google.cloud", "jinja2", "pydantic", "yaml", "runner.render", "runner.spec")
MUST_NOT = ("boto3", "google.cloud", "jinja2")


def make_records(runner: str, env: dict, home: Path, n: int) -> tuple[int, float]:
    """Launch the no-op job n times in the sandbox (4 at a time); returns (records, seconds)."""
    job = home.parent / "noop"
    job.mkdir()
    (job / "job.yaml").write_text('name: noop\ncommand: "true"\n')
    cmd = [runner, "launch", str(job), "--cloud", "sandbox", "--wait"]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: subprocess.run(cmd, env=env, capture_output=True, text=True, check=False), range(n)))
    took = time.perf_counter() - t0
    bad = [r for r in results if r.returncode != 0]
    for r in bad[:3]:
        print(f"  a setup launch failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[-300:]}")
    out = subprocess.run([runner, "status", "--json", "--limit", "1000"], env=env, capture_output=True, text=True, check=False)
    try:
        rows = json.loads(out.stdout)
    except json.JSONDecodeError:
        print(f"  `runner status --json` did not print JSON: {out.stdout[:200]!r} {out.stderr[:200]!r}")
        rows = []
    states = {}
    for r in rows:
        states[r.get("state")] = states.get(r.get("state"), 0) + 1
    print(f"- setup: {n} sandbox launches of a no-op job in {took:.1f} s; store now holds {len(rows)} job records {states}")
    return len(rows), took


def top_level(argv: list[str], env: dict, n: int = 6) -> list[tuple[str, float]]:
    """The n slowest top-level imports (cumulative ms) of `python -X importtime ARGV`."""
    r = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, capture_output=True, text=True, check=False)
    tops = []
    for ln in r.stderr.splitlines():
        if ln.startswith("import time:") and "|" in ln:
            _, cum, name = ln.split(":", 1)[1].split("|")
            if cum.strip().isdigit() and not name.startswith("  "):  # one leading space = top level
                tops.append((name.strip(), int(cum) / 1000))
    return sorted(tops, key=lambda t: -t[1])[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--jobs", type=int, default=20, help="finished job records in the store for `runner status`")
    a = ap.parse_args()

    bl.header("CLI latency: cold wall time of one command, a fresh process per run")
    which = shutil.which("runner")
    real = bl.real_script("runner")
    shim, py_shim, aws_shim = bl.pyenv_shim("runner"), bl.pyenv_shim("python3"), bl.pyenv_shim("aws")
    aws_real = bl.real_script("aws")
    print(f"- shutil.which('runner'): {bl.describe_path(which)}")
    print(f"- runner's real console script (this interpreter's scripts dir): {bl.describe_path(real)}")
    print(f"- runner's pyenv shim (what an interactive shell here runs): {bl.describe_path(shim)}")
    print(f"- aws: {bl.describe_path(aws_real)}; shim: {bl.describe_path(aws_shim)}")
    print(f"- interpreter (the floor): {sys.executable}; python3 shim: {bl.describe_path(py_shim)}")
    print(f"- versions: {bl.first_line([aws_real or 'aws', '--version'])}; {bl.first_line([real or 'runner', '--version'])}")
    if not real:
        print("runner is not installed (pip install -e '.[test]'); nothing to measure")
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("RUNNER_STORE", "RUNNER_CLOUD", "RUNNER_S3_ENDPOINT")}
    env["RUNNER_HOME"] = str(home)
    try:
        records, _ = make_records(real, env, home, a.jobs)

        # (label, argv, target applies)
        cmds: list[tuple[str, list[str], bool]] = [("python3 -c pass (interpreter: the floor)", [sys.executable, "-c", "pass"], False)]
        if py_shim:
            cmds.append(("python3 -c pass via pyenv shim", [py_shim, "-c", "pass"], False))
        for sub, label in ((["--help"], "runner --help"), (["status"], f"runner status ({records} jobs)")):
            cmds.append((f"{label}: real console script", [real, *sub], True))
            cmds.append((f"{label}: python3 -m runner", [sys.executable, "-m", "runner", *sub], True))
            if shim:
                cmds.append((f"{label}: via pyenv shim", [shim, *sub], True))
        if aws_real:
            cmds.append(("aws --version: real console script (awscli v1)", [aws_real, "--version"], False))
        if aws_shim:
            cmds.append(("aws --version: via pyenv shim", [aws_shim, "--version"], False))

        # Warm-up round (untimed): page cache, .pyc files; also proves each command works.
        for _label, argv, _ in cmds:
            r = subprocess.run(argv, env=env, cwd=tmp, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                print(f"  warning: `{' '.join(argv)}` exited {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}")
        times: dict[str, list[float]] = {label: [] for label, _, _ in cmds}
        for _ in range(a.runs):
            for label, argv, _ in cmds:
                t0 = time.perf_counter()
                subprocess.run(argv, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
                times[label].append((time.perf_counter() - t0) * 1000)

        floor = bl.median(times[cmds[0][0]])
        rows = []
        for label, _, targeted in cmds:
            ms = times[label]
            med = bl.median(ms)
            tgt = f"<= {TARGET_MS:.0f}: {bl.verdict(med <= TARGET_MS)}" if targeted else ""
            rows.append([label, f"{med:.0f}", f"{bl.p90(ms):.0f}", f"{min(ms):.0f}", f"{med - floor:+.0f}", tgt])
        print(f"\n## Wall time, ms ({a.runs} runs each, fresh process per run, interleaved; {bl.loadavg()} at the end)\n")
        print(bl.table(["command", "median", "p90", "min", "vs floor", "target (median, ms)"], rows, align="lrrrrl"))
        print("\n`vs floor` = median minus the bare interpreter's median. The target is judged on every runner row;"
              " the one that matters is the real console script (what a venv or pipx install runs). A pyenv shim is a"
              " bash script running `pyenv exec`: this machine's overhead, not runner's (see the python3 shim row).")

        # Import evidence
        print("\n## What `runner --help` and `runner status` import (`python3 -X importtime`, real console script)\n")
        help_mods = bl.import_times([real, "--help"], env)
        status_mods = bl.import_times([real, "status"], env)
        rows = []
        for m in HEAVY:
            rows.append([m, _imp(help_mods, m), _imp(status_mods, m)])
        print(bl.table(["module", "runner --help", "runner status"], rows, align="lll"))
        print()
        for m in MUST_NOT:
            for what, mods in (("runner --help", help_mods), ("runner status", status_mods)):
                bad = m in mods
                print(f"- check: {m} not imported by `{what}`: {'MISSED (it is imported)' if bad else 'OK'}")
        for what, argv in (("runner --help", [real, "--help"]), ("runner status", [real, "status"])):
            tops = top_level(argv, env)
            print(f"- slowest top-level imports of `{what}` (cumulative ms): " + ", ".join(f"{n} {ms:.1f}" for n, ms in tops))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _imp(mods: dict[str, float], name: str) -> str:
    return f"imported ({mods[name]:.1f} ms)" if name in mods else "not imported"


if __name__ == "__main__":
    sys.exit(main())
