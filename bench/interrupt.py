#!/usr/bin/env python3
"""Time from SIGINT to the terminate call: `runner launch --wait` interrupted while it waits on an AWS job
(a moto server on 127.0.0.1), with --cancel-on-interrupt and without.

Usage: python3 bench/interrupt.py [--reps 5]

Each run launches a one-line job (`sleep 600`) with the real CLI in a fresh process, waits until the CLI
is in its wait loop (1 s after RunInstances), sends SIGINT and records, with botocore's before-call hook
inside the CLI's process (the same clock, this host): the moment each AWS call after the signal starts,
the first TerminateInstances among them, and when the CLI exited. GitHub Actions sends SIGTERM 7.5 s
after SIGINT and SIGKILL 2.5 s later: the target is the terminate call inside 7.5 s.
A 20-shard fan-out (20 VMs for one job, one item each) is measured the same way, to its LAST
TerminateInstances call: the cancel stops every shard.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
from aws_launch import PROFILE, REGION, setup  # noqa: E402

TARGET_S = 7.5
SHARDS = 20
# The real CLI, with a botocore hook that logs "<unix time> <API call>" for every call it makes.
HOOKED = r'''
import sys, time
import boto3
log = open(sys.argv[1], "a", buffering=1)
def seen(model, **_):
    log.write(f"{time.time()} {model.name}\n")  # returns None: a value would stand in for the response
boto3._get_default_session().events.register("before-call", seen)
sys.argv = ["runner", *sys.argv[2:]]
from runner.cli import main
main()
'''


def one_run(job_dir: Path, tmp: Path, n: int, cancel: bool, vms: int = 1) -> dict:
    """Launch, interrupt, and read what the CLI called after the signal."""
    log = tmp / f"calls-{n}.log"
    flag = "--cancel-on-interrupt" if cancel else "--no-cancel-on-interrupt"
    p = subprocess.Popen([sys.executable, "-c", HOOKED, str(log), "launch", str(job_dir), "--cloud", "aws", "--wait", flag],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=bl.REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (log.read_text() if log.exists() else "").count("RunInstances") < vms:
        if p.poll() is not None:
            raise RuntimeError(f"runner launch ended before its VM started: {p.stderr.read().decode()[-400:]}")
        time.sleep(0.05)
    time.sleep(1.0)  # in the wait loop by now
    sent = time.time()
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=60)
    exited = time.time()
    err = p.stderr.read().decode()
    after = [(float(t), name) for t, name in (line.split() for line in log.read_text().splitlines()) if float(t) >= sent]
    terminates = [t for t, name in after if name == "TerminateInstances"]
    terminate = terminates[-1] if len(terminates) >= vms else None  # the last VM's
    return {"rc": rc, "terminate_ms": None if terminate is None else (terminate - sent) * 1000, "terminates": len(terminates),
            "exit_ms": (exited - sent) * 1000, "calls": [name for _, name in after], "stderr": err}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    bl.header("Interrupt: SIGINT to `runner launch --wait` on AWS (moto server), to the terminate call")
    tmp = Path(tempfile.mkdtemp(prefix="bench-interrupt-"))
    job_dir = tmp / "jobs" / "sleeper"
    job_dir.mkdir(parents=True)
    (job_dir / "job.yaml").write_text(json.dumps({"name": "sleeper", "command": "sleep 600"}))
    wide = tmp / "jobs" / "wide"
    wide.mkdir(parents=True)
    (wide / "items.txt").write_text("".join(f"item-{i}\n" for i in range(SHARDS)))
    (wide / "job.yaml").write_text(json.dumps({"name": "wide", "command": "sleep 600", "vms": SHARDS,
                                               "items": {"manifest": "items.txt", "fetch": False}}))
    port = bl.free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bl.wait_port(port, proc=server)
        url = f"http://127.0.0.1:{port}"
        env = {
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true", "RUNNER_HOME": str(tmp / "home"),
            "RUNNER_STORE": "s3://runner-bench/runner", "RUNNER_AWS_REGION": REGION, "RUNNER_AWS_INSTANCE_PROFILE": PROFILE,
        }
        os.environ.update(env)
        for var in ("AWS_PROFILE", "RUNNER_CLOUD", "RUNNER_CONFIG", "RUNNER_AWS_SUBNETS", "RUNNER_AWS_SECURITY_GROUP",
                    "RUNNER_S3_ENDPOINT", "RUNNER_IMAGES", "CI", "GITHUB_ACTIONS"):
            os.environ.pop(var, None)
        setup(url, tmp / "home")
        print(f"- server: python3 -m moto.server on {url}; job: `sleep 600`, default type; {a.reps} runs per row")
        return measure(a.reps, job_dir, wide, tmp)
    finally:
        bl.stop(server)


def measure(reps: int, job_dir: Path, wide: Path, tmp: Path) -> int:
    runs: dict[bool, list[dict]] = {True: [], False: []}
    fanout: list[dict] = []
    for n in range(reps):
        for cancel in (True, False):
            r = one_run(job_dir, tmp, 3 * n + cancel, cancel)
            if r["rc"] != 130:
                raise RuntimeError(f"runner launch exited {r['rc']}, not 130: {r['stderr'][-400:]}")
            runs[cancel].append(r)
        r = one_run(wide, tmp, 3 * n + 2, True, vms=SHARDS)
        if r["rc"] != 130:
            raise RuntimeError(f"runner launch of the fan-out exited {r['rc']}, not 130: {r['stderr'][-400:]}")
        fanout.append(r)
    rows = []
    for cancel, label in ((True, "--cancel-on-interrupt"), (False, "--no-cancel-on-interrupt")):
        got = runs[cancel]
        term = [r["terminate_ms"] for r in got if r["terminate_ms"] is not None]
        exits = [r["exit_ms"] for r in got]
        term_cell = f"{bl.median(term):.0f} / {max(term):.0f}" if term else "no call (as meant)"
        ok = bool(term) and len(term) == len(got) and max(term) <= TARGET_S * 1000 and max(exits) <= TARGET_S * 1000
        target = f"<= {TARGET_S} s: {bl.verdict(ok)}" if cancel else "exit only"
        rows.append([f"1 VM, {label}", term_cell, f"{bl.median(exits):.0f} / {max(exits):.0f}", target])
    term = [r["terminate_ms"] for r in fanout if r["terminate_ms"] is not None]
    exits = [r["exit_ms"] for r in fanout]
    ok = len(term) == len(fanout) and max(term) <= TARGET_S * 1000 and max(exits) <= TARGET_S * 1000
    term_cell = f"{bl.median(term):.0f} / {max(term):.0f} (the {SHARDS}th)" if term else f"fewer than {SHARDS} calls"
    rows.append([f"{SHARDS}-shard fan-out, --cancel-on-interrupt", term_cell, f"{bl.median(exits):.0f} / {max(exits):.0f}",
                 f"<= {TARGET_S} s: {bl.verdict(ok)}"])
    print(f"\n## SIGINT to ..., ms (median / max of {reps}; {bl.loadavg()} at the end)\n")
    print(bl.table(["case", "TerminateInstances starts", "CLI exited (130)", "target"], rows, align="llll"))
    calls = runs[True][0]["calls"]
    print(f"\nAWS calls after SIGINT with cancel (first run): {len(calls)}: {', '.join(calls)}")
    print("S3 calls are among them: the cancel marker is written before the terminate call (it is what lets the")
    print("VM's script end CANCELLED), CANCELLED after it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
