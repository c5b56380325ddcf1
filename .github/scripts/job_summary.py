"""Write a runner job's summary for GitHub Actions: state, exit code, duration, cost, and how to get its logs.

Usage: python job_summary.py RESULT_JSON   (what `runner launch --wait --json` printed)
Appends Markdown to $GITHUB_STEP_SUMMARY (stdout when unset) and `job_id=ID` to $GITHUB_OUTPUT; exits 0.
Everything but the job id is read from `runner status ID --json`, and every value shown is treated as untrusted:
a job's VM writes its own status.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from urllib.parse import quote

ID_RE = re.compile(r"[a-z][a-z0-9-]*-\d{8}T\d{6}Z-[0-9a-f]{6}")
TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
STATES = {"PENDING", "PROVISIONING", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "PREEMPTED", "CANCELLED", "LOST", "UNKNOWN"}
ICONS = {"SUCCEEDED": ":white_check_mark:", "RUNNING": ":hourglass:", "PROVISIONING": ":hourglass:", "PENDING": ":hourglass:"}


def launch_result(path: str) -> dict:
    """The last JSON object in the launch's output ({} when there is none: the launch failed or was cut short)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(256 * 1024)
    except OSError:
        return {}
    for line in reversed(text.splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return {}


def job_status(job_id: str) -> tuple[dict, str]:
    """`runner status ID --json` as a dict, and the error when it could not be read."""
    try:
        p = subprocess.run([sys.executable, "-m", "runner", "status", job_id, "--json"], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {}, str(e)
    try:
        row = json.loads(p.stdout) if p.returncode == 0 else None
    except ValueError:
        row = None
    return (row, "") if isinstance(row, dict) else ({}, p.stderr.strip() or f"exit {p.returncode}")


def code(text: object, limit: int = 300) -> str:
    """Untrusted text as an inline code span: no Markdown, HTML or links; one line, bounded."""
    s = re.sub(r"[\x00-\x1f\x7f|]+", " ", str(text))[:limit].replace("`", "'").strip()
    return f"`{s}`" if s else "-"


def duration(started: object, ended: object) -> str:
    """`1h 02m 03s` between two store timestamps (up to now while the job runs); `-` when unknown."""
    if not (isinstance(started, str) and TS_RE.fullmatch(started)):
        return "-"
    parse = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)  # noqa: E731
    end = parse(ended) if isinstance(ended, str) and TS_RE.fullmatch(ended) else datetime.now(timezone.utc)
    secs = max(0, int((end - parse(started)).total_seconds()))
    h, m, s = secs // 3600, secs % 3600 // 60, secs % 60
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def number(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def store_link(store: str, job_id: str) -> str:
    """A console link to the job's logs folder for an s3:// or gs:// store ('' for others)."""
    m = re.fullmatch(r"(s3|gs)://([a-z0-9][a-z0-9.\-_]{1,221})(/.*)?", store.rstrip("/"))
    if not m:
        return ""
    scheme, bucket, prefix = m.group(1), m.group(2), (m.group(3) or "").strip("/")
    key = "/".join(p for p in (prefix, "jobs", job_id, "logs") if p) + "/"
    if scheme == "s3":
        return f"https://s3.console.aws.amazon.com/s3/buckets/{bucket}?prefix={quote(key)}"
    return f"https://console.cloud.google.com/storage/browser/{bucket}/{quote(key)}"


def summary(job_id: str, row: dict, error: str) -> list[str]:
    """The summary's Markdown lines for one job."""
    state = row.get("state") if row.get("state") in STATES else "UNKNOWN"
    exit_code = row.get("exit_code") if isinstance(row.get("exit_code"), int) and not isinstance(row.get("exit_code"), bool) else None
    cost, rate = number(row.get("cost_usd")), number(row.get("usd_per_hour"))
    lines = [
        f"### {ICONS.get(state, ':x:')} runner job `{job_id}`: {state}", "",
        "| | |", "|---|---|",
        f"| **state** | {state} |",
        f"| **exit code** | {'-' if exit_code is None else exit_code} |",
        f"| **duration** | {duration(row.get('started_at'), row.get('ended_at'))} |",
        f"| **cost** | {'unknown (no price for this type)' if cost is None else f'${cost:.4f}'}"
        f"{'' if rate is None else f' at ${rate:.4f}/h'} |",
        f"| **reason** | {code(row.get('reason', ''))} |",
        f"| **VM** | {code(row.get('vm', ''))} |",
    ]
    if error:
        lines.append(f"| **status** | could not be read: {code(error)} |")
    store = os.environ.get("RUNNER_STORE", "")
    run_url = "{GITHUB_SERVER_URL}/{GITHUB_REPOSITORY}/actions/runs/{GITHUB_RUN_ID}".format_map(os.environ) \
        if all(os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")) else ""
    artifact = f"runner-outputs-{job_id}"
    lines += [
        "", f"**Outputs**: the artifact [`{artifact}`]({run_url}#artifacts)" if run_url else f"**Outputs**: the artifact `{artifact}`",
        "", "**Logs**, from any machine with the store's credentials"
        + (f" and `RUNNER_STORE={store}`" if store else "") + ":", "",
        "```sh",
        f"runner logs {job_id}          # the job's output",
        f"runner logs {job_id} --all    # with the startup script's log and the VM console",
        f"runner status {job_id}",
        "```",
    ]
    if link := store_link(store, job_id):
        lines += ["", f"The logs in the store: [{store.rstrip('/')}/jobs/{job_id}/logs/]({link})"]
    return lines


def main(argv: list[str]) -> int:
    result = launch_result(argv[1] if len(argv) > 1 else "runner-result.json")
    job_id = result.get("job_id")
    if not (isinstance(job_id, str) and ID_RE.fullmatch(job_id)):
        lines = ["### :x: runner launch reported no job",
                 "", "It failed before a job started, or the step was cancelled before the job ended: see the launch step's log.",
                 "`runner status` lists the recent jobs."]
        job_id = ""
    else:
        row, error = job_status(job_id)
        lines = summary(job_id, {**result, **row}, error)
    text = "\n".join(lines) + "\n"
    if path := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if job_id and (out := os.environ.get("GITHUB_OUTPUT")):
        with open(out, "a", encoding="utf-8") as f:
            f.write(f"job_id={job_id}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
