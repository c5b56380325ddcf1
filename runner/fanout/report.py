"""`runner report` of a fan-out job: its items, its reduce, a timeline row and a table row per shard, its failed items.

It reads what `runner status ID` reads (job.json, each shard's records and summary.json, reduce/status.json), the end
of the reduce's log, and the manifest only when items failed (to show what they are): never one object per item.
Everything is untrusted: values are cleaned and cut here, counts are capped, and the template escapes every one.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner import jobs, report
from runner.errors import RunnerError
from runner.fanout import views
from runner.store import Store

SHARDS_SHOWN = 200  # shards drawn and listed; the rest are counted
FAILED_SHOWN = 50  # failed items listed
ITEM_CHARS = 200  # an item (a URI or a manifest line) is cut after this many characters
ROW_H, ROW_GAP = 18, 6  # a timeline row (SVG user units)


@dataclass(frozen=True)
class Span:
    """One bar of the timeline: its row, its ends in seconds from the job's creation, its state and hover text."""

    row: int
    start: float
    end: float
    state: str
    title: str
    dashed: bool = False


def _at(ts: str | None, t0: float, now: float) -> float | None:
    """A timestamp from the store as seconds from t0, kept between t0 and now."""
    t = report._epoch(ts)
    return None if t is None else min(max(t, t0), max(now, t0)) - t0


def _cost(usd: float | None) -> str:
    return "unknown" if usd is None else f"{usd:.4f} USD"


def shard_spans(s: views.Shard, row: int, t0: float, now: float) -> list[Span]:
    """A shard's bars: waiting for its VM (launch to start; its earlier attempts in there, dashed, when it was
    relaunched), then its run in its state's colour, to its end or to now."""
    st = s.status
    launched, started = _at(s.launched_at, t0, now), _at(st.started_at, t0, now)
    ended = _at(st.ended_at, t0, now) if st.final else now - t0
    begin = launched if launched is not None else started if started is not None else ended
    if begin is None:
        return []
    end = max(ended if ended is not None else begin, begin)
    what = (f"shard {s.k}: {st.state}; attempts {s.attempts}; items {s.summary.done}/{s.summary.total} done"
            f"{f', {s.summary.failed} failed' if s.summary.failed else ''}; cost {_cost(s.cost_usd)}")
    if started is None or started <= begin:
        return [Span(row, begin, end, st.state, f"{what}; {report.duration(begin)} to {report.duration(end)}")]
    wait = "attempts 1 to " + str(s.attempts - 1) + " (preempted), then provisioning" if s.attempts > 1 else "provisioning"
    return [Span(row, begin, started, jobs.PREEMPTED if s.attempts > 1 else "provisioning",
                 f"shard {s.k}: {wait}, {report.duration(begin)} to {report.duration(started)}", dashed=s.attempts > 1),
            Span(row, started, max(end, started), st.state, f"{what}; ran {report.duration(started)} to {report.duration(max(end, started))}")]


def reduce_span(red: jobs.Status, row: int, t0: float, now: float) -> list[Span]:
    """The reduce's bar, from its start to its end (or to now while it runs)."""
    started = _at(red.started_at, t0, now)
    if started is None:
        return []
    end = _at(red.ended_at, t0, now) if red.final else now - t0
    end = max(end if end is not None else started, started)
    return [Span(row, started, end, red.state, f"reduce: {red.state}, {report.duration(started)} to {report.duration(end)}")]


def geometry(labels: list[tuple[str, str]], spans: list[Span]) -> dict:
    """Where each row's label, each bar and each axis tick goes in the SVG (pure: the template only draws it).

    `labels` are (text, in-page anchor) per row."""
    total = max([s.end for s in spans] + [1.0])
    scale = report.PLOT / total
    bars = []
    for s in spans:
        x, w = report.LEFT + s.start * scale, max(2.0, (s.end - s.start) * scale)
        bars.append({"x": round(x, 1), "y": report.TOP + s.row * (ROW_H + ROW_GAP), "w": round(w, 1), "h": ROW_H,
                     "fill": report.COLORS.get(s.state, report.COLORS[jobs.UNKNOWN]), "label": "", "title": s.title,
                     "dashed": s.dashed, "href": labels[s.row][1]})
    axis_y = report.TOP + len(labels) * (ROW_H + ROW_GAP)
    step = report._tick_step(total)
    ticks = [{"x": round(report.LEFT + t * scale, 1), "label": report.duration(t) if t else "0s"} for t in range(0, int(total) + 1, step)]
    rows = [{"y": report.TOP + i * (ROW_H + ROW_GAP) + ROW_H / 2 + 4, "text": text, "href": href} for i, (text, href) in enumerate(labels)]
    return {"width": report.LEFT + report.PLOT + 20, "height": axis_y + 28, "bars": bars, "axis_y": axis_y, "ticks": ticks,
            "row_labels": rows, "left": report.LEFT, "right": report.LEFT + report.PLOT}


def failed_items(store: Store, parent: str, shards: list[views.Shard], failed: int) -> tuple[list[dict], int]:
    """The first FAILED_SHOWN failed items the newest shards' summaries name (exit code, and the item the manifest
    holds for it), and how many failed items are not listed."""
    named: dict[str, int | None] = {}
    for s in views.last_wave(shards):  # as the counts: an item that failed in an earlier wave is done since or in this one
        named.update(s.summary.failed_items)
    first = list(named.items())[:FAILED_SHOWN]
    items: dict[str, str] = {}
    if first:
        try:
            items = {i.name: i.item for i in views.read_manifest(store, parent)}
        except RunnerError:  # no manifest, or a bad one: the names alone
            items = {}
    rows = [{"name": name, "exit_code": "" if code is None else str(code),
             "item": "" if items.get(name, name) == name else report.clean(items[name], ITEM_CHARS)} for name, code in first]
    return rows, max(failed, len(named)) - len(rows)


def reduce_tail(store: Store, parent: str) -> list[str]:
    """The last lines of the reduce's log (one object), cleaned; none when it has none."""
    data, cut = report._object_end(store, jobs.job_key(parent, "reduce", "log"), report.TAIL_BYTES)
    lines = data.decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if cut and len(lines) > 1:
        lines = lines[1:]  # the first may be the end of a line cut off
    return [report.clean(line.rsplit("\r", 1)[-1]) for line in lines[-report.TAIL_LINES:]]


def _reduce_line(p: views.Parent) -> str:
    red = p.reduce
    if not p.has_reduce:
        return "none"
    if red is None:
        return "not started"
    return red.state + ("" if red.exit_code is None else f" (exit {red.exit_code})") + (f": {report.clean(red.reason, 200)}" if red.reason else "")


def gather(store: Store, job_id: str, fan: dict, now: str | None = None) -> dict:
    """Everything the page of a fan-out job shows, read as `runner status ID` reads it (its VMs checked)."""
    p = views.read_parent(store, job_id, fan)
    job = report._record(store, job_id, "job.json")
    now = now or jobs.utcnow()
    st, c = p.status, p.counts
    t_now = report._epoch(now) or 0.0
    created = job.get("created_at") if isinstance(job.get("created_at"), str) and jobs.TS_RE.match(job["created_at"]) else None
    known = [report._epoch(t) for t in [created, *(s.launched_at for s in p.shards), *(s.status.started_at for s in p.shards)]]
    t0 = min([t for t in known if t is not None] or [t_now])
    shown = p.shards[:SHARDS_SHOWN]
    labels = [(f"shard {s.k}", f"#shard-{s.k}") for s in shown]
    spans = [span for i, s in enumerate(shown) for span in shard_spans(s, i, t0, t_now)]
    if p.has_reduce and p.reduce is not None:
        spans += reduce_span(p.reduce, len(labels), t0, t_now)
        labels.append(("reduce", "#reduce"))
    failed, more_failed = failed_items(store, job_id, p.shards, c.failed)
    started, ended = report._epoch(st.started_at), report._epoch(st.ended_at)
    final = st.state in jobs.FINAL
    ran = (ended or t_now) - started if started is not None and (ended or not final) else None
    rate = sum(s.usd_per_hour for s in p.shards if s.usd_per_hour is not None) if p.shards else None
    running = sum(not s.status.final for s in p.shards)
    spot = job.get("spot")
    summary = [
        ("Job", job_id), ("State", st.state), ("Exit code", "" if st.exit_code is None else str(st.exit_code)),
        ("Reason", report.clean(st.reason)), ("Items", p.items_line()), ("Reduce", _reduce_line(p)),
        ("Shards", f"{len(p.shards)} ({running} running)"), ("Cloud", report.clean(job.get("cloud"), 40)),
        ("Instance type", report.clean(job.get("instance_type"), 60)), ("Spot", {True: "yes", False: "no"}.get(spot, "")),
        ("Created", created or ""), ("Started", st.started_at or ""), ("Ended", st.ended_at or ""),
        ("Ran for", report.duration(ran) + ("" if final or ran is None else " so far")),
        ("Price", "unknown" if rate is None else f"{rate:.4f} USD/h for all its VMs"),
        ("Cost", "unknown" if p.cost_usd is None else f"{p.cost_usd:.4f} USD {'in total' if final else 'so far'}, its shards' sum"),
    ]
    rows = [{"k": s.k, "anchor": f"shard-{s.k}", "shard_id": s.shard_id, "state": s.status.state,
             "color": report.COLORS.get(s.status.state, report.COLORS[jobs.UNKNOWN]), "vm": report.clean(s.vm, 120),
             "zone": report.clean(s.zone, 40), "started": s.status.started_at or "", "ended": s.status.ended_at or "",
             "attempts": s.attempts, "done_of": f"{s.summary.done}/{s.summary.total}", "failed": s.summary.failed,
             "cost": "" if s.cost_usd is None else f"{s.cost_usd:.4f}", "reason": report.clean(s.status.reason, 200),
             "logs": f"runner logs {job_id} --shard {s.k}"} for s in shown]
    red = p.reduce
    return {
        "fanout": True, "job_id": job_id, "state": st.state, "color": report.COLORS.get(st.state, report.COLORS[jobs.UNKNOWN]),
        "now": now, "summary": [(k, v) for k, v in summary if v != ""], "items": c.to_json(),
        "reduce": None if not p.has_reduce else {
            "state": red.state if red else "not started", "exit_code": "" if red is None or red.exit_code is None else str(red.exit_code),
            "reason": report.clean(red.reason) if red else "", "started": (red.started_at or "") if red else "",
            "ended": (red.ended_at or "") if red else "", "tail": reduce_tail(store, job_id) if red else []},
        "svg": geometry(labels, spans), "shards": rows, "hidden_shards": len(p.shards) - len(shown),
        "failed": failed, "more_failed": more_failed, "tail_lines": report.TAIL_LINES,
        "commands": [("every item, its state and exit code", f"runner status {job_id} --items"),
                     ("one item's log", f"runner logs {job_id} --item NAME"), ("one shard's log", f"runner logs {job_id} --shard K"),
                     ("the reduce's log", f"runner logs {job_id}"), ("every item's result and the outputs", f"runner outputs {job_id} ./outputs"),
                     ("the status, checked with the VMs", f"runner status {job_id}")],
        "legend": [(s, report.COLORS[s]) for s in ("provisioning", jobs.RUNNING, jobs.SUCCEEDED, jobs.FAILED, jobs.PREEMPTED,
                                                   jobs.TIMED_OUT, jobs.CANCELLED, jobs.LOST)],
    }
