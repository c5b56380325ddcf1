#!/usr/bin/env python3
"""Time and peak memory of `runner launch DIR --cloud sandbox [--dry-run]` on hostile job folders until their error.

Usage: python3 bench/hostile_input.py [--big-mb 560] [--skip-big]

The big folder is measured with --dry-run and with a real launch (its pack fails before anything is created).

Each case is a fresh folder under a throwaway $RUNNER_HOME's sibling: job.yaml files that are not UTF-8,
nest 100k '[', hold a 5000-digit integer, expand aliases a billion times (billion laughs), repeat a
key; and a valid job.yaml beside one incompressible file of --big-mb MB (over the 512 MiB code limit).
Measured with /usr/bin/time -v: wall time and maximum resident set size of the whole CLI process.
Targets: a bad job.yaml fails in under 1 s and under 100 MB; the big folder fails with memory that
does not grow with the file.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl

VALID = b"name: t\ncommand: 'true'\n"
LAUGHS = b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n".encode() for i in range(8)
) + VALID
CASES = {
    "non-UTF-8 bytes": b"name: caf\xe9\ncommand: 'true'\n",
    "100k nested '['": b"name: " + b"[" * 100_000,
    "5000-digit integer": VALID + b"disk_gb: 1" + b"0" * 4999 + b"\n",
    "billion laughs (10^9 via aliases)": LAUGHS,
    "duplicate keys": VALID + b"name: again\n",
}


def measure(job: Path, env: dict, dry_run: bool = True) -> tuple[float, float, int, str]:
    """(wall s, max RSS MB, exit code, last line the CLI wrote to stderr) of one launch."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "runner", "launch", str(job), "--cloud", "sandbox"] + ["--dry-run"] * dry_run
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=bl.REPO, timeout=600)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    h, m, s = (float(g or 0) for g in wall.groups())
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)[1])
    own = [line for line in r.stderr.split("\tCommand being timed")[0].strip().splitlines() if not line.startswith("Command exited")]
    return h * 3600 + m * 60 + s, rss_kb / 1024, r.returncode, (own[-1] if own else "")[:140]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big-mb", type=int, default=560)
    ap.add_argument("--skip-big", action="store_true")
    a = ap.parse_args()
    bl.header("Hostile input: time and peak RSS of `runner launch DIR --cloud sandbox --dry-run` until its error")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RUNNER_HOME": f"{tmp}/home"}
        for label, data in CASES.items():
            job = Path(tmp, re.sub(r"\W+", "-", label))
            job.mkdir()
            (job / "job.yaml").write_bytes(data)
            wall, rss, code, said = measure(job, env)
            rows.append([label, f"{wall:.2f}", f"{rss:.0f}", code, said])
        if not a.skip_big:
            job = Path(tmp, "big")
            job.mkdir()
            (job / "job.yaml").write_bytes(VALID)
            with open(job / "data.bin", "wb") as f:
                for _ in range(a.big_mb):
                    f.write(os.urandom(1 << 20))
            for dry_run in (True, False):
                wall, rss, code, said = measure(job, env, dry_run)
                how = "--dry-run" if dry_run else "launch"
                rows.append([f"{a.big_mb} MB incompressible file in the folder ({how})", f"{wall:.2f}", f"{rss:.0f}", code, said])
    print(bl.table(["case", "wall s", "max RSS MB", "exit", "what it said"], rows, align="lrrrl"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
