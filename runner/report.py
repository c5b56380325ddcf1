"""`runner report`: one self-contained HTML page of a job: summary, timeline, cost, each log's tail, the commands for more
(a fan-out job's: its items, its reduce and a row per shard, see runner.fanout.report).

The page loads nothing (inline CSS and SVG, no script, a Content-Security-Policy that forbids any fetch), so it
opens from disk or as a CI artifact. Everything on it was read back from the store and is untrusted: the
template escapes every value, and control characters are replaced before they get there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from runner import jobs, logs, status_table
from runner.errors import NotFoundError
from runner.fanout import views
from runner.store import Store

TAIL_LINES = 50  # lines of each log's end shown
TAIL_BYTES = 64 * 1024  # the most of one log's end ever kept
RANGE = 1 << 20  # a part is read in ranges of this many bytes, only its end kept
LINE_CHARS = 400  # a longer line is cut
MAX_ATTEMPTS = 10  # the latest attempts shown (attempt numbers come from the store)
LOG_NAMES = ("job.log", "startup.log")
CLOCK_RE = re.compile(r"(?P<h>[01][0-9]|2[0-3]):(?P<m>[0-5][0-9]):(?P<s>[0-5][0-9]) runner: ")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
COLORS = {
    "provisioning": "#9db9e0", jobs.PENDING: "#9db9e0", jobs.PROVISIONING: "#9db9e0", jobs.RUNNING: "#3b7dd8",
    jobs.SUCCEEDED: "#2e9d57", jobs.FAILED: "#d64541", jobs.TIMED_OUT: "#e67e22", jobs.PREEMPTED: "#d4a017",
    jobs.CANCELLED: "#7f8c8d", jobs.LOST: "#6c5b7b", jobs.UNKNOWN: "#b0b0b0",
}
# Timeline geometry (SVG user units)
LEFT, PLOT, ROW_H, ROW_GAP, TOP = 100, 880, 26, 14, 8
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("runner.templates", "."),
    undefined=jinja2.StrictUndefined, autoescape=True, trim_blocks=True, lstrip_blocks=True,
)


def clean(value: object, limit: int = LINE_CHARS) -> str:
    """A value from the store as one line of plain text: control characters replaced, cut at `limit`."""
    text = CONTROL.sub("\ufffd", value if isinstance(value, str) else "" if value is None else str(value))
    return text if len(text) <= limit else text[:limit] + "\u2026"


def _epoch(ts: str | None) -> float | None:
    if not ts or not jobs.TS_RE.match(ts):
        return None
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def duration(seconds: float | None) -> str:
    """`1h 5m 3s`, `4m 10s`, `12s`."""
    if seconds is None:
        return ""
    s = int(round(max(0.0, seconds)))
    h, m = s // 3600, s % 3600 // 60
    return " ".join(p for p in (f"{h}h" if h else "", f"{m}m" if h or m else "", f"{s % 60}s") if p)


@dataclass(frozen=True)
class Bar:
    """One span of the timeline, in seconds from the job's creation."""

    row: str  # "phase" or "attempt"
    label: str
    start: float
    end: float
    state: str
    estimated: bool = False  # its ends are not recorded in the store


def _boundaries(ends: dict[int, float], earlier: list[int], t0: float, limit: float) -> list[float] | None:
    """Each earlier attempt's end (s from t0) when every one is known and they come in order before `limit`."""
    found, prev = [], 0.0
    for n in earlier:
        at = ends.get(n)
        if at is None or not prev <= at - t0 <= limit:
            return None
        prev = at - t0
        found.append(prev)
    return found


def timeline(created: str | None, started: str | None, ended: str | None, state: str, attempts: list[int],
             phase: str | None, now: str, attempt_ends: dict[int, float] | None = None) -> list[Bar]:
    """The attempts, and the last attempt's phases (provisioning, then running or the recorded phase), on one time axis.

    status.json times the last attempt only; an earlier attempt ends where `attempt_ends` (epoch seconds, from
    its startup log's clock) says, else the time before the last attempt is split evenly and marked estimated.
    """
    t_now = _epoch(now) or 0.0
    t_start = _epoch(started)
    t_end = _epoch(ended) or (t_now if state not in jobs.FINAL else max(filter(None, (t_start, _epoch(created), t_now))))
    t0 = min(filter(None, (_epoch(created), t_start, t_end)))
    end = t_end - t0
    final = state in jobs.FINAL
    numbers = attempts or [1]
    earlier = numbers[:-1]
    limit = t_start - t0 if t_start is not None and t_start > t0 else end * len(earlier) / len(numbers)
    known = _boundaries(attempt_ends or {}, earlier, t0, limit)
    cuts = known or [limit * (i + 1) / len(earlier) for i in range(len(earlier))]
    bars, begin = [], 0.0
    for n, cut in zip(earlier, cuts, strict=True):
        bars.append(Bar("attempt", f"attempt {n}", begin, cut, jobs.PREEMPTED, estimated=known is None))
        begin = cut
    bars.append(Bar("attempt", f"attempt {numbers[-1]}", begin, end, state))
    if t_start is not None:
        bars.append(Bar("phase", "provisioning", begin, max(begin, t_start - t0), "provisioning"))
        bars.append(Bar("phase", phase if phase and not final else "running", max(begin, t_start - t0), end, state))
    else:
        bars.append(Bar("phase", phase or ("provisioning" if not final else state.lower()), begin, end, state))
    return bars


def _tick_step(total: float) -> int:
    """A round step that puts at most 8 ticks on the axis, however long the span (its ends come from the store)."""
    return next((s for s in TICK_STEPS if total / s <= 8), math.ceil(total / 8))


def svg_geometry(bars: list[Bar]) -> dict:
    """Where each bar and axis tick goes in the SVG (pure: the template only draws it)."""
    total = max([b.end for b in bars] + [1.0])
    rows = [r for r in ("phase", "attempt") if any(b.row == r for b in bars)]
    scale = PLOT / total
    shapes = []
    for b in bars:
        x, w = LEFT + b.start * scale, max(2.0, (b.end - b.start) * scale)
        y = TOP + rows.index(b.row) * (ROW_H + ROW_GAP)
        title = f"{b.label}: {b.state}, {duration(b.start)} to {duration(b.end)}" + (" (times estimated)" if b.estimated else "")
        shapes.append({"x": round(x, 1), "y": y, "w": round(w, 1), "h": ROW_H, "fill": COLORS.get(b.state, COLORS[jobs.UNKNOWN]),
                       "label": b.label if w >= 7.5 * len(b.label) + 8 else "", "title": title, "dashed": b.estimated})
    axis_y = TOP + len(rows) * (ROW_H + ROW_GAP)
    step = _tick_step(total)
    ticks = [{"x": round(LEFT + t * scale, 1), "label": duration(t) if t else "0s"} for t in range(0, int(total) + 1, step)]
    labels = [{"y": TOP + i * (ROW_H + ROW_GAP) + ROW_H / 2 + 4, "text": "phases" if r == "phase" else "attempts"} for i, r in enumerate(rows)]
    return {"width": LEFT + PLOT + 20, "height": axis_y + 28, "bars": shapes, "axis_y": axis_y, "ticks": ticks,
            "row_labels": labels, "left": LEFT, "right": LEFT + PLOT}


@dataclass
class Tail:
    """The last lines of one attempt's log, and whether more of it precedes them."""

    name: str
    attempt: int
    lines: list[str] = field(default_factory=list)
    more: bool = False
    found: bool = True


def _object_end(store: Store, key: str, keep: int) -> tuple[bytes, bool]:
    """The last `keep` bytes of an object, read from the start in ranges (only the end is held); and whether it was cut."""
    end, offset, cut = b"", 0, False
    while True:
        try:
            data = store.get_bytes(key, offset, RANGE)
        except NotFoundError:
            return end, cut
        offset += len(data)
        end += data
        if len(end) > keep:
            end, cut = end[-keep:], True
        if len(data) < RANGE:
            return end, cut


def log_tail(store: Store, job_id: str, name: str, attempt: int, found: logs.Index | None = None) -> Tail:
    """The last TAIL_LINES lines of one attempt's log: its parts read from the last back, only as many as needed."""
    found = found or logs.index(store, job_id, name, attempt)
    keys = [key for _, key in found.parts.get(attempt, [])]
    if not keys and attempt == 1 and found.whole:
        keys = [found.whole]
    if not keys:
        return Tail(name, attempt, found=False)
    data, more = b"", False
    for i, key in enumerate(reversed(keys)):
        end, cut = _object_end(store, key, TAIL_BYTES - len(data))
        data = end + data
        more = cut or i < len(keys) - 1
        if cut or data.count(b"\n") > TAIL_LINES or len(data) >= TAIL_BYTES:
            break
    lines = data.decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if more and len(lines) > 1 and len(lines) <= TAIL_LINES:  # the first may be the end of a line cut off
        lines = lines[1:]
    more = more or len(lines) > TAIL_LINES
    return Tail(name, attempt, [clean(line.rsplit("\r", 1)[-1]) for line in lines[-TAIL_LINES:]], more)


def log_clock(tail: Tail, after: float | None) -> float | None:
    """When a startup log's last line was written (its `HH:MM:SS runner:` stamp, the first such time after `after`)."""
    m = next((CLOCK_RE.match(line) for line in reversed(tail.lines) if CLOCK_RE.match(line)), None)
    if m is None or after is None:
        return None
    day = int(after) - int(after) % 86400
    at = day + int(m["h"]) * 3600 + int(m["m"]) * 60 + int(m["s"])
    return at if at >= after else at + 86400


def _record(store: Store, job_id: str, name: str) -> dict:
    try:
        return jobs.read_json(store, job_id, name)
    except (NotFoundError, jobs.RecordError):
        return {}


def gather(store: Store, job_id: str, now: str | None = None) -> dict:
    """Everything the page shows, read from the store (and the VM's state, as `runner status` reads it); a fan-out
    job's page shows its items, reduce and shards (runner.fanout.report)."""
    fan = views.fanout_of(store, job_id)
    if fan is not None:
        from runner.fanout import report as fanout_report

        return fanout_report.gather(store, job_id, fan, now)
    row = status_table.row(store, job_id, detail=True)
    job, inst, raw = _record(store, job_id, "job.json"), _record(store, job_id, "instance.json"), _record(store, job_id, "status.json")
    phase = clean(raw["phase"], 40) if isinstance(raw.get("phase"), str) and raw["phase"] else None
    indexes = {name: logs.index(store, job_id, name) for name in LOG_NAMES}
    attempts = sorted({a for ix in indexes.values() for a in ix.attempts})
    if isinstance(inst.get("attempt"), int) and not isinstance(inst.get("attempt"), bool) and 0 < inst["attempt"] < 10000:
        attempts = sorted({*attempts, inst["attempt"]})
    shown = attempts[-MAX_ATTEMPTS:] or [1]
    now = now or jobs.utcnow()
    created = job.get("created_at") if isinstance(job.get("created_at"), str) and jobs.TS_RE.match(job["created_at"]) else None
    state, final = row["state"], row["state"] in jobs.FINAL
    started, ended = _epoch(row["started_at"]), _epoch(row["ended_at"])
    ran = (ended or _epoch(now)) - started if started is not None and (ended or not final) else None
    cost = row["cost_usd"]
    spot = job.get("spot")
    summary = [
        ("Job", job_id), ("State", state), ("Exit code", "" if row["exit_code"] is None else str(row["exit_code"])),
        ("Reason", clean(row["reason"])), ("Phase", phase or ""), ("Cloud", clean(job.get("cloud"), 40)),
        ("Instance type", clean(job.get("instance_type"), 60)), ("Spot", {True: "yes", False: "no"}.get(spot, "")),
        ("VM", clean(row.get("vm"), 200)), ("Attempts", str(len(attempts) or 1)),
        ("Created", created or ""), ("Started", row["started_at"] or ""), ("Ended", row["ended_at"] or ""),
        ("Ran for" + (" (last attempt)" if len(attempts) > 1 else ""), duration(ran) + ("" if final or ran is None else " so far")),
        ("Price", "unknown" if row["usd_per_hour"] is None else f"{row['usd_per_hour']:.4f} USD/h"),
        ("Cost", "unknown" if cost is None else f"{cost:.4f} USD {'in total' if final else 'so far'}"
                 + (": the last attempt's run, as `runner status` counts it" if len(attempts) > 1 else "")),
    ]
    tails = [log_tail(store, job_id, name, a, indexes[name]) for a in shown for name in LOG_NAMES]
    ends = {t.attempt: log_clock(t, _epoch(created)) for t in tails if t.name == "startup.log" and t.attempt != shown[-1]}
    bars = timeline(created, row["started_at"], row["ended_at"], state, shown, phase, now, {a: e for a, e in ends.items() if e})
    return {
        "fanout": False, "job_id": job_id, "state": state, "color": COLORS.get(state, COLORS[jobs.UNKNOWN]), "now": now,
        "summary": [(k, v) for k, v in summary if v != ""], "svg": svg_geometry(bars),
        "estimated": any(b.estimated for b in bars), "clocked": len(shown) > 1 and not any(b.estimated for b in bars),
        "hidden_attempts": max(len(attempts) - len(shown), 0),
        "tails": tails, "multi": len(shown) > 1, "tail_lines": TAIL_LINES,
        "commands": [("every log, every attempt", f"runner logs {job_id} --all"),
                     ("the outputs", f"runner outputs {job_id} ./outputs"), ("the status, checked with the VM", f"runner status {job_id}")],
        "legend": [(s, COLORS[s]) for s in ("provisioning", jobs.RUNNING, jobs.SUCCEEDED, jobs.FAILED, jobs.PREEMPTED,
                                            jobs.TIMED_OUT, jobs.CANCELLED, jobs.LOST)],
    }


def html(data: dict) -> str:
    """The page for what `gather` read."""
    return _env.get_template("report.html.j2").render(**data)


def write(store: Store, job_id: str, path: Path) -> Path:
    """Read the job and write its page to `path` (written whole, then moved into place)."""
    page = html(gather(store, job_id))
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
