#!/usr/bin/env python3
"""Log shipping, before and after numbered parts: bytes uploaded while a job writes a 200 MB log, and the
peak memory of `runner logs` printing it. Both versions run in the same run, on the same moto S3 server.

Usage: python3 bench/log_shipping.py [--mb 200] [--seconds 26] [--before REV]

"before" is REV (default: the last commit whose startup script re-uploaded the whole log every 5 s),
checked out in a temporary git worktree; "after" is this tree. Each launches the same sandbox job on an
s3:// store. A counting wrapper for s5cmd adds up the size of every file it is asked to upload below
logs/ (the script's log pushes); `runner logs JOB` then runs in a fresh process, output to /dev/null,
and its peak RSS is read from getrusage. Targets: bytes uploaded within 1.1x of the log's size;
`runner logs` under 100 MB whatever the log's size.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "4d54857"  # whole log re-uploaded every 5 s; `runner logs` read it whole
COUNTING_S5CMD = """#!/bin/bash
# Count the bytes of every local file this s5cmd call uploads below logs/, then run the real s5cmd.
last=${{!#}}
if [[ $last == s3://*/logs/* ]]; then
  for a in "$@"; do
    if [ -f "$a" ]; then stat -c %s -- "$a" >> {count}; fi
  done
fi
exec {real} "$@"
"""
RSS_OF = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); " \
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def run_version(tree: Path, work: Path, env: dict, mb: int, seconds: int) -> dict:
    """Launch the job with `tree`'s runner; the bytes its script uploaded to logs/ and `runner logs`' peak RSS."""
    count = work / "uploaded"
    shim = work / "shim"
    shim.mkdir(parents=True)
    (shim / "s5cmd").write_text(COUNTING_S5CMD.format(count=count, real=shutil.which("s5cmd")))
    (shim / "s5cmd").chmod(0o755)
    job = work / "job"
    job.mkdir()
    per_second = mb * 1000 * 1000 // seconds
    command = f"for i in $(seq {seconds}); do yes 'a line of log output, 32 bytes...' | head -c {per_second}; sleep 1; done"
    (job / "job.yaml").write_text(json.dumps({"name": "chatty", "command": command}))
    env = {**env, "RUNNER_HOME": str(work / "home"), "PATH": f"{shim}:{env['PATH']}", "PYTHONPATH": str(tree)}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "runner", "launch", str(job), "--cloud", "sandbox", "--wait", "--json"],
                       cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - t0
    if r.returncode:
        raise SystemExit(f"launch with {tree} failed ({r.returncode}): {r.stderr[-500:]}")
    job_id = json.loads(r.stdout.strip().splitlines()[-1])["job_id"]
    uploaded = sum(int(x) for x in count.read_text().split()) if count.exists() else 0
    t0 = time.monotonic()
    rss = subprocess.run([sys.executable, "-c", RSS_OF, sys.executable, "-m", "runner", "logs", job_id],
                         cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    if rss.returncode:
        raise SystemExit(f"runner logs with {tree} failed: {rss.stderr[-500:]}")
    return {"wall": wall, "uploaded": uploaded, "rss_kb": int(rss.stdout.split()[-1]), "logs_s": time.monotonic() - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=26)
    ap.add_argument("--before", default=BEFORE)
    a = ap.parse_args()

    bl.header(f"Log shipping: a {a.mb} MB log written over {a.seconds} s, on an s3:// store (moto server on 127.0.0.1)")
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **{k.lower(): v for k, v in creds.items() if "KEY" in k}
                 ).create_bucket(Bucket="bench")
    env = {**os.environ, **creds, "AWS_ENDPOINT_URL": endpoint, "RUNNER_S3_ENDPOINT": endpoint,
           "RUNNER_STORE": "s3://bench/runner", "CI": "true"}
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="runner-bench-logs-") as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old), a.before], cwd=ROOT, check=True)
        try:
            for name, tree in (("before", old), ("after", ROOT)):
                results[name] = res = run_version(tree, Path(tmp) / f"run-{name}", env, a.mb, a.seconds)
                size = a.mb * 1000 * 1000
                rows.append([
                    f"{name} ({a.before if name == 'before' else 'this tree'})", f"{res['uploaded'] / 1e6:.0f}",
                    f"{res['uploaded'] / size:.2f}x", f"{res['rss_kb'] / 1024:.0f}", f"{res['logs_s']:.1f}", f"{res['wall']:.1f}",
                ])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    server.stop()
    print(bl.table(["version", "MB uploaded to logs/", "of the log", "`runner logs` peak RSS MB", "`runner logs` s", "launch --wait s"], rows))
    after = results["after"]
    print(f"\nuploaded within 1.1x of the log: {bl.verdict(after['uploaded'] <= 1.1 * a.mb * 1e6)}; "
          f"`runner logs` under 100 MB: {bl.verdict(after['rss_kb'] < 100 * 1024)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
