#!/usr/bin/env python3
"""Does the GCP extra slow the CLI down? Cold wall time of `runner --help` and `runner status` (a fresh
process each run) with google-cloud-compute installed, beside `import google.cloud.compute_v1`, the
GCP provider module alone, and the bare interpreter; and whether each imports the GCP client.

Usage: python3 bench/gcp_imports.py [--runs N] [--jobs N]

`runner status` reads a throwaway $RUNNER_HOME holding --jobs finished sandbox job records. Runs are
interleaved (one of each command per round) after one untimed warm-up round. Target: `runner --help`
and `runner status` import no GCP client at all (and so stay at the core's latency).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl

GCP_MODULES = ("google.cloud.compute_v1", "google.cloud.storage", "google.api_core")


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    took = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-300:]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=5, help="finished sandbox job records in the store for `runner status`")
    a = ap.parse_args()

    bl.header("GCP extra: CLI cold start, a fresh process per run")
    runner = bl.real_script("runner")
    if not runner:
        print("\n`runner` is not installed (pip install -e '.[test]')")
        return 1
    try:
        import google.cloud.compute_v1 as compute  # noqa: F401 (only its version)
        from google.cloud.compute_v1 import gapic_version
        version = gapic_version.__version__
    except ImportError:
        print("\ngoogle-cloud-compute is not installed: pip install -e '.[gcp]'")
        return 1
    print(f"- runner: {bl.describe_path(runner)}; google-cloud-compute {version}")

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "RUNNER_HOME": str(home)}
        for var in ("RUNNER_STORE", "RUNNER_CLOUD", "RUNNER_CONFIG"):
            env.pop(var, None)
        job = Path(tmp) / "noop"
        job.mkdir()
        (job / "job.yaml").write_text('name: noop\ncommand: "true"\n')
        for _ in range(a.jobs):
            subprocess.run([runner, "launch", str(job), "--cloud", "sandbox", "--wait"], env=env, capture_output=True, check=False)
        print(f"- setup: {a.jobs} finished sandbox jobs in {home / 'store'}; {bl.loadavg()}")

        commands = {
            "python3 -c pass": [sys.executable, "-c", "pass"],
            "runner --help": [runner, "--help"],
            "runner status": [runner, "status"],
            "python3 -c 'import runner.providers.gcp'": [sys.executable, "-c", "import runner.providers.gcp"],
            "python3 -c 'import google.cloud.compute_v1'": [sys.executable, "-c", "import google.cloud.compute_v1"],
        }
        for cmd in commands.values():  # warm-up: page cache, .pyc files
            timed(cmd, env)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(a.runs):
            for name, cmd in commands.items():
                samples[name].append(timed(cmd, env))

        imported = {}
        for name, argv in {"runner --help": ["-m", "runner", "--help"], "runner status": ["-m", "runner", "status"],
                           "python3 -c 'import runner.providers.gcp'": ["-c", "import runner.providers.gcp"],
                           "python3 -c 'import google.cloud.compute_v1'": ["-c", "import google.cloud.compute_v1"]}.items():
            mods = bl.import_times(argv, env)
            imported[name] = ", ".join(m for m in GCP_MODULES if m in mods) or "none"
        imported["python3 -c pass"] = "none"

    print(f"\n{a.runs} runs each, interleaved; milliseconds of wall time\n")
    rows = [[name, f"{bl.median(xs):.0f}", f"{bl.p90(xs):.0f}", imported[name]] for name, xs in samples.items()]
    print(bl.table(["command", "median ms", "p90 ms", "GCP modules imported"], rows, align="lrrl"))
    clean = all(imported[n] == "none" for n in ("runner --help", "runner status"))
    extra = bl.median(samples["python3 -c 'import google.cloud.compute_v1'"]) - bl.median(samples["python3 -c pass"])
    print(f"\n- `runner --help` and `runner status` import no GCP client: {bl.verdict(clean)}")
    print(f"- what they would pay if they did: ~{extra:.0f} ms (google.cloud.compute_v1 over the bare interpreter)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
