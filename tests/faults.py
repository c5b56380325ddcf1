"""The fault-injection suite: each fault, in the sandbox, with what must happen and what did.

`python3 tests/faults.py` (or `make faults`) prints the table; tests/test_faults.py asserts it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POWER_ONCE = "power-off once"
CLOSED_PORT = "http://127.0.0.1:1"  # nothing listens there: connections are refused at once

# A wrapper for s5cmd that fails the first two uploads into a job's outputs/ (then works).
FLAKY_S5CMD = """#!/bin/bash
FLAKY_COUNT=$(dirname "$0")/../flaky-count  # beside the shim: a job sees only what a VM would
if [[ "$*" == *"/outputs/"* ]]; then
  n=$(cat "$FLAKY_COUNT" 2>/dev/null || echo 0); echo $((n + 1)) > "$FLAKY_COUNT"
  if [ "$n" -lt 2 ]; then echo "injected failure $((n + 1)) of an output upload" >&2; exit 1; fi
fi
exec {real} "$@"
"""


@dataclass
class Case:
    fault: str
    spec: dict
    state: str  # expected final state
    exit: int  # expected exit code of `launch --wait`
    reason: str  # expected in the final reason
    store: str = "file"  # or "s3"
    logs: bool = True  # the job's log must be in the store
    env: dict = field(default_factory=dict)
    during: Callable | None = None  # run while the job runs: during(env, home)
    alt: tuple[tuple[str, int], ...] = ()  # other (state, exit) pairs that are right too
    poweroffs: int = 1  # one per VM the job had
    before: Callable | None = None  # seed the store: before(s3 client, bucket)
    check: Callable | None = None  # more checks afterwards: check(env, home, job_id, seen) -> problems
    seen: dict = field(default_factory=dict)  # what `during` observed


@dataclass
class Seen:
    state: str = ""
    exit: int = -1
    reason: str = ""
    logs: bool = False
    poweroffs: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def _when_started(home: Path) -> str | None:
    """Wait until a job in the file store logged "working"; its id (None after 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for part in (home / "store" / "jobs").glob("*/logs/*/job.log.*"):
            if "working" in part.read_text(errors="replace"):
                return part.parents[2].name
        time.sleep(0.2)
    return None


def _interrupt_when_started(env: dict, home: Path, meta, times: int = 0) -> None:
    if _when_started(home):
        meta.interrupt(times=times)


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def _cancel_near_the_end(env: dict, home: Path, seen: dict) -> None:
    """`runner cancel` as the job's command ends by itself: whichever final status lands first must stay."""
    job_id = _when_started(home)
    if job_id:  # the command sleeps 8 s after the script starts: cancel then
        started = json.loads((home / "store" / "jobs" / job_id / "status.json").read_text())["started_at"]
        t0 = time.mktime(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        time.sleep(max(0.0, t0 + 8.3 - time.time()))
        seen["cancel"] = _cli(env, "cancel", job_id).stderr


def _truncate_status(env: dict, home: Path, seen: dict) -> None:
    """Empty status.json while the job runs (as a full disk once left it), then read it as a user would."""
    job_id = _when_started(home)
    if job_id:
        (home / "store" / "jobs" / job_id / "status.json").write_bytes(b"")
        seen["status"] = _cli(env, "status", job_id, "--json")


def _no_escape(marker: Path) -> Callable:
    def check(env: dict, home: Path, job_id: str, seen: dict) -> list[str]:
        problems = [f"{marker} was written outside the input's folder"] if marker.exists() else []
        startup = _cli(env, "logs", job_id, "--all").stdout
        if "skipped" not in startup:
            problems.append("the startup log does not name the skipped key")
        return problems
    return check


def _race_check(env: dict, home: Path, job_id: str, seen: dict) -> list[str]:
    stored = json.loads((home / "store" / "jobs" / job_id / "status.json").read_text())["state"]
    problems = [] if stored == seen["state"] else [f"the store says {stored}, launch said {seen['state']}"]
    if "cancel" not in seen:
        problems.append("cancel never ran")
    return problems


def _unknown_check(env: dict, home: Path, job_id: str, seen: dict) -> list[str]:
    r = seen.get("status")
    if r is None:
        return ["status was never read mid-run"]
    if r.returncode or "Traceback" in r.stderr:
        return [f"runner status failed on a 0-byte status.json: {r.stderr.strip()[-200:]}"]
    shown = json.loads(r.stdout)
    return [] if shown["state"] == "UNKNOWN" and "not valid JSON" in shown["reason"] else [f"runner status showed {shown}"]


def _relaunch_log_check(env: dict, home: Path, job_id: str, seen: dict) -> list[str]:
    shown = _cli(env, "logs", job_id).stdout
    return [] if shown == "working\nresumed at 41\n" else [f"runner logs printed {shown!r}, not each attempt once"]


def cases(meta=None) -> list[Case]:
    mb100 = 100 * 1000 * 1000
    marker = Path(f"/tmp/runner-fault-{secrets.token_hex(4)}")
    evil = "runner/data/evil/" + "../" * 16 + marker.relative_to("/").as_posix()
    race, emptied = {}, {}
    resume = ('if [ -f "$RUNNER_CHECKPOINT_DIR/step" ]; then echo "resumed at $(cat "$RUNNER_CHECKPOINT_DIR/step")"; exit 0; fi; '
              'echo 41 > "$RUNNER_CHECKPOINT_DIR/step"; echo working; sleep 600')
    return [
        Case("job exits non-zero", {"command": "echo hi; exit 3"}, "FAILED", 3, "exited with code 3"),
        Case("job killed by a signal", {"command": "echo hi; kill -KILL $$"}, "FAILED", 137, "killed by signal 9 (SIGKILL)"),
        Case("job hangs past max runtime", {"command": "echo hi; sleep 600", "max_runtime": "3s"}, "TIMED_OUT", 124, "max runtime"),
        Case("job prints 100 MB of log", {"command": f"yes 'a line of log output' | head -c {mb100}"}, "SUCCEEDED", 0, ""),
        Case("output upload fails twice, then works", {"command": "echo hi; echo hi > out.txt", "outputs": ["out.txt"]},
             "SUCCEEDED", 0, "", store="s3", env={"FLAKY": "1"}),
        Case("store unreachable at start", {"command": "echo hi"}, "LOST", 71, "never wrote a final status",
             store="s3", logs=False, env={"RUNNER_S3_ENDPOINT": CLOSED_PORT}),
        Case("spot interruption notice mid-run",
             {"command": "echo working; echo step-41 > \"$RUNNER_CHECKPOINT_DIR/state\"; sleep 600"},
             "PREEMPTED", 75, "spot interruption",
             env={"RUNNER_SANDBOX_INTERRUPTION": "aws", "RUNNER_SANDBOX_METADATA_URL": meta.url if meta else ""},
             during=(lambda env, home: _interrupt_when_started(env, home, meta)) if meta else None),
        Case("disk fills while writing outputs",
             {"command": "mkdir -p out && unshare -m sh -c 'mount -t tmpfs -o size=1m tmpfs out && "
                         "dd if=/dev/zero of=out/big.bin bs=1M count=8'", "outputs": ["out/"]},
             "FAILED", 1, "exited with code 1"),
        Case("an input key with '..' in it", {"command": "cat data/ok.txt", "inputs": {"data/": "data/"}},
             "SUCCEEDED", 0, "", store="s3",
             before=lambda s3, bucket: [s3.put_object(Bucket=bucket, Key=k, Body=b"x") for k in ("runner/data/ok.txt", evil)],
             check=_no_escape(marker)),
        Case("cancel racing the final status", {"command": "echo working; sleep 8"}, "CANCELLED", 130, "",
             alt=(("SUCCEEDED", 0),), during=lambda env, home: _cancel_near_the_end(env, home, race),
             seen=race, check=_race_check),
        Case("a 0-byte status.json mid-run", {"command": "echo working; sleep 15"}, "SUCCEEDED", 0, "",
             during=lambda env, home: _truncate_status(env, home, emptied), seen=emptied, check=_unknown_check),
        Case("a relaunch's log", {"command": resume, "spot": True, "retries": 1}, "SUCCEEDED", 0, "", poweroffs=2,
             env={"RUNNER_SANDBOX_INTERRUPTION": "aws", "RUNNER_SANDBOX_METADATA_URL": meta.url if meta else ""},
             during=(lambda env, home: _interrupt_when_started(env, home, meta, times=1)) if meta else None,
             check=_relaunch_log_check),
    ]


def run(case: Case, home: Path, s3_endpoint: str | None = None) -> Seen:
    """Launch the case's job in the sandbox with --wait and look at everything it left."""
    import boto3

    env = {**os.environ, "RUNNER_HOME": str(home), **case.env}
    env.pop("RUNNER_STORE", None)
    bucket = None
    if case.store == "s3":
        bucket = f"faults-{secrets.token_hex(4)}"
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                   AWS_ENDPOINT_URL=s3_endpoint, RUNNER_STORE=f"s3://{bucket}/runner")
        env.setdefault("RUNNER_S3_ENDPOINT", s3_endpoint)
        if "RUNNER_S3_ENDPOINT" in case.env:
            env["RUNNER_S3_ENDPOINT"] = case.env["RUNNER_S3_ENDPOINT"]
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        s3.create_bucket(Bucket=bucket)
        if case.before:
            case.before(s3, bucket)
    if case.env.get("FLAKY"):
        shim = home / "shim"
        shim.mkdir(parents=True)
        real = subprocess.run(["bash", "-c", "command -v s5cmd"], capture_output=True, text=True, env=env).stdout.strip()
        (shim / "s5cmd").write_text(FLAKY_S5CMD.format(real=real))
        (shim / "s5cmd").chmod(0o755)
        env.update(PATH=f"{shim}:{env['PATH']}", FLAKY_COUNT=str(home / "flaky-count"))
    job = home / "job"
    job.mkdir(parents=True, exist_ok=True)
    (job / "job.yaml").write_text(json.dumps({"name": "fault", **case.spec}))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "runner", "launch", str(job), "--cloud", "sandbox", "--wait", "--json"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if case.during:
        case.during(env, home)
    out, err = proc.communicate(timeout=300)
    seen = Seen(exit=proc.returncode, seconds=time.monotonic() - t0)
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        seen.problems.append(f"no JSON from launch: {err.strip()[-300:]}")
        return seen
    seen.state, seen.reason = result["state"], result.get("reason") or ""
    job_id = result["job_id"]
    power = home / "sandbox" / job_id / "power.log"
    seen.poweroffs = sum(line.startswith("poweroff") for line in power.read_text().splitlines()) if power.exists() else 0
    if bucket:
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"runner/jobs/{job_id}/").get("Contents", [])}
        seen.logs = any(k.startswith(f"runner/jobs/{job_id}/logs/1/job.log.") for k in keys)
        if case.env.get("FLAKY") and f"runner/jobs/{job_id}/outputs/out.txt" not in keys:
            seen.problems.append("output not uploaded after the retries")
    else:
        parts = list((home / "store" / "jobs" / job_id / "logs").glob("*/job.log.*"))
        seen.logs = bool(parts)
        size = sum(p.stat().st_size for p in parts)
        if "100 MB" in case.fault and size != 100 * 1000 * 1000:
            seen.problems.append(f"log in the store is {size} bytes in {len(parts)} parts, not 100 MB")
        if case.state == "PREEMPTED":
            ckpt = home / "store" / "jobs" / job_id / "checkpoint" / "state"
            if not ckpt.exists() or ckpt.read_text() != "step-41\n":
                seen.problems.append("checkpoint not saved to the store")
    if case.check:
        seen.problems += case.check(env, home, job_id, {**case.seen, "state": seen.state})
    return seen


def verdict(case: Case, seen: Seen) -> list[str]:
    """Everything that differs from what must happen ([] when the fault was handled)."""
    problems = list(seen.problems)
    right = {(case.state, case.exit), *case.alt}
    if (seen.state, seen.exit) not in right:
        problems.append(f"state {seen.state}, exit {seen.exit}; expected " + " or ".join(f"{s}, exit {e}" for s, e in sorted(right)))
    if case.reason not in seen.reason:
        problems.append(f"reason {seen.reason!r} lacks {case.reason!r}")
    if seen.logs != case.logs:
        problems.append("job log missing from the store" if case.logs else "log unexpectedly in the store")
    if seen.poweroffs != case.poweroffs:
        problems.append(f"{seen.poweroffs} power-offs, expected exactly {case.poweroffs}")
    return problems


def main() -> int:
    import logging
    import tempfile

    from fake_metadata import FakeMetadata
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    failed = 0
    print("| fault | expected | observed | s | ok |\n|---|---|---|---|---|")
    for case in cases():
        meta = FakeMetadata()
        case = next(c for c in cases(meta) if c.fault == case.fault)
        with tempfile.TemporaryDirectory(prefix="runner-fault-") as tmp:
            seen = run(case, Path(tmp), endpoint)
        meta.close()
        problems = verdict(case, seen)
        failed += bool(problems)
        states = " or ".join([f"{case.state}, exit {case.exit}", *(f"{st}, exit {e}" for st, e in case.alt)])
        once = POWER_ONCE if case.poweroffs == 1 else f"power-off once per VM ({case.poweroffs})"
        expected = f"{states}, logs {'kept' if case.logs else 'unreachable'}, {once}"
        observed = f"{seen.state}, exit {seen.exit}, logs {'kept' if seen.logs else 'absent'}, {seen.poweroffs} power-off"
        reason = f" ({seen.reason[:50]})" if seen.reason else ""
        print(f"| {case.fault} | {expected} | {observed}{reason} | {seen.seconds:.1f} | {'yes' if not problems else 'NO: ' + '; '.join(problems)} |")
    server.stop()
    print(f"\n{len(cases()) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
