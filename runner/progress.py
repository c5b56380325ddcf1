"""The line shown while a job is waited on: state, phase, elapsed, cost so far; live on a terminal, a line per phase without.

The phase comes from status.json (the startup script writes it) and, before the script's first status, from the
VM: a cloud's instance state, or the last line of a local VM's console in the store. All of it is untrusted and
is shown only as printable text.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from runner import cost, jobs
from runner.errors import NotFoundError, StoreError
from runner.providers.base import InstanceState
from runner.store import Store

PHASES = ("booting", "pulling", "running", "uploading", "powering off")
BOOTING = (jobs.PENDING, jobs.PROVISIONING)
CLEAR = "\r\x1b[K"
ESCAPE_RE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)")
KERNEL_TS_RE = re.compile(r"^\[\s*\d+\.\d+\]\s*")
CONSOLE_CHUNK = 64 << 10  # the most of the console read per poll
NOTE_WIDTH = 60


@dataclass(frozen=True)
class Phase:
    """What status.json says the script is doing: a phase and, where known, the pull's bytes and rate, the push's."""

    name: str = ""
    bytes_done: int | None = None
    bytes_total: int | None = None
    rate: int | None = None  # the pull's bytes per second (so far while it runs)
    pushed: int | None = None
    push_rate: int | None = None


def _count(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def phase_of(record: object) -> Phase:
    """The phase fields of a status.json record; anything not a known phase or a byte count is dropped."""
    if not isinstance(record, dict):
        return Phase()
    name = record.get("phase")
    return Phase(name if name in PHASES else "", _count(record.get("bytes_done")), _count(record.get("bytes_total")),
                 _count(record.get("bytes_per_s")), _count(record.get("pushed_bytes")), _count(record.get("pushed_bytes_per_s")))


def clean(text: str, width: int = NOTE_WIDTH) -> str:
    """Printable text only (terminal escapes and control characters dropped), at most `width` characters."""
    text = "".join(c for c in ESCAPE_RE.sub("", text) if c.isprintable()).strip()
    return text if len(text) <= width else text[: width - 3] + "..."


def console_line(console: str) -> str:
    """The last non-empty line of a console, without the kernel's timestamp, printable and trimmed."""
    for line in reversed(console.replace("\r", "\n").split("\n")):
        if text := clean(KERNEL_TS_RE.sub("", ESCAPE_RE.sub("", line)), 1 << 16):
            return clean(text)
    return ""


class ConsoleTail:
    """The last line of the job's console log in the store (a local VM's), read as it grows."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store, self.key, self.offset, self.last = store, jobs.job_key(job_id, "logs", "console.log"), 0, b""

    def poll(self) -> str:
        try:
            data = self.store.get_bytes(self.key, self.offset, CONSOLE_CHUNK)
        except (NotFoundError, StoreError):
            data = b""
        self.offset += len(data)
        self.last = (self.last + data)[-4096:]
        return console_line(self.last.decode("utf-8", "replace"))


def size(n: int) -> str:
    value, unit = float(n), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def clock(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def rate(per_s: int) -> str:
    """A transfer rate in decimal megabytes per second (kilobytes under 1 MB/s), as the startup log writes it."""
    mb = per_s / 1e6
    return f"{mb:.0f} MB/s" if mb >= 10 else f"{mb:.1f} MB/s" if mb >= 1 else f"{per_s / 1e3:.0f} kB/s"


def _bytes(p: Phase, verb: str) -> str:
    if p.bytes_done is None and p.bytes_total is None:
        return ""
    done = "?" if p.bytes_done is None else size(p.bytes_done)
    at = "" if p.rate is None else f" at {rate(p.rate)}"
    return f" ({verb}{done}{'' if p.bytes_total is None else ' of ' + size(p.bytes_total)}{at})"


def describe(job_id: str, status: jobs.Status, phase: Phase, boot: str, elapsed: float, cost: float | None) -> tuple[tuple[str, str], str]:
    """(what counts as a change, the line) for one look at the job; `boot` is the VM's note before the script's status."""
    name, detail = phase.name, ""
    if status.state in BOOTING:
        name, detail = "booting", f" ({clean(boot)})" if clean(boot) else ""
    elif name == "pulling":
        detail = _bytes(phase, "")
    elif name == "running":
        detail = _bytes(phase, "pulled ")
    elif name == "powering off" and phase.pushed is not None and phase.push_rate is not None:
        detail = f" (pushed {size(phase.pushed)} at {rate(phase.push_rate)})"
    parts = [f"{job_id}: {status.state}", f"{name}{detail}" if name else "", clock(elapsed), "" if cost is None else f"${cost:.4f}"]
    return (status.state, name), " | ".join(p for p in parts if p)


class Progress:
    """Shows `describe`'s lines on stderr: one line redrawn in place on a terminal, else one line per change."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, width: int | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = _isatty(self.stream) if live is None else live
        self.width = width
        self.key: tuple[str, str] | None = None
        self.text = self.shown = ""
        self.line_start = True  # the log printed so far ends its line: the progress line may be drawn

    def update(self, key: tuple[str, str], text: str) -> None:
        if self.live:
            self.text = text
            self.redraw()
        elif key != self.key:
            self._write(text + "\n")
        self.key = key

    def redraw(self) -> None:
        """Draw the line (a terminal only), unless the log is mid-line or it is on screen already."""
        text = self.text[: max(1, self._columns() - 1)]
        if self.live and self.line_start and text and text != self.shown:
            self._write(CLEAR + text)
            self.shown = text

    def clear(self) -> None:
        if self.shown:
            self._write(CLEAR)
            self.shown = ""

    def close(self) -> None:
        self.clear()
        self.text = ""

    def guard(self, out: BinaryIO) -> BinaryIO:
        """`out` (the job's log) wrapped so that the line is cleared before its bytes and redrawn after."""
        return out if isinstance(out, _Guarded) else _Guarded(out, self)  # type: ignore[return-value]

    def _columns(self) -> int:
        if self.width:
            return self.width
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 100
        except (OSError, ValueError, AttributeError):
            return 100

    def _write(self, s: str) -> None:
        try:
            self.stream.write(s)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr never stops the wait
            pass


class _Guarded:
    """A log stream that clears the progress line before writing and redraws it on flush."""

    def __init__(self, out: BinaryIO, progress: Progress) -> None:
        self.out, self.progress = out, progress

    def write(self, data: bytes) -> int:
        if data:
            self.progress.clear()
            self.progress.line_start = data.endswith(b"\n")
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()
        self.progress.redraw()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Looker:
    """One look at a waited-on job as `describe`'s line: status.json's phase, the price, a booting VM's note."""

    def __init__(self, store: Store, job_id: str) -> None:
        from runner.status_table import _rate

        self.store, self.job_id = store, job_id
        self.rate = _rate(store, job_id)
        ts = jobs.ID_RE.fullmatch(job_id)["ts"]  # the launch's time, in the job's id
        self.launched = f"{ts[:4]}-{ts[4:6]}-{ts[6:8]}T{ts[9:11]}:{ts[11:13]}:{ts[13:15]}Z"
        self.console = ConsoleTail(store, job_id)

    def look(self, status: jobs.Status, vm: InstanceState | None) -> tuple[tuple[str, str], str]:
        boot, phase = "", Phase()
        if status.state in BOOTING:
            boot = vm.reason if vm is not None and vm.alive and vm.reason else self.console.poll()
        elif status.state != jobs.UNKNOWN:
            try:
                phase = phase_of(jobs.read_json(self.store, self.job_id, "status.json"))
            except (NotFoundError, StoreError):
                pass
        end = status.ended_at if status.final else None
        elapsed = (cost._ts(end or jobs.utcnow()) - cost._ts(self.launched)).total_seconds()
        return describe(self.job_id, status, phase, boot, elapsed, cost.so_far(self.rate, self.launched, end))


# --- a fan-out job: items and shards, from the shards' summary.json and status.json only (never per item)

def describe_fanout(job_id: str, state: str, counts, running: int, ended: int, elapsed: float, cost: float | None,
                    reducing: bool = False) -> tuple[tuple[str, str], str]:
    """(what counts as a change, the line) for one look at a fan-out job: its items, its shards, elapsed and cost."""
    items = f"items {counts.done}/{counts.total} done" + (f", {counts.failed} failed" if counts.failed else "")
    shards = f"shards {running} running, {ended} ended" + ("; reducing" if reducing else "")
    parts = [f"{job_id}: {state}", items, shards, clock(elapsed), "" if cost is None else f"${cost:.4f}"]
    key = (state, f"{counts.done}/{counts.failed}/{running}/{ended}/{int(reducing)}")
    return key, " | ".join(p for p in parts if p)


class FanoutLooker:
    """One look at a waited-on fan-out job: each shard's summary.json (re-read only while it runs) and status."""

    def __init__(self, store: Store, parent: str, total: int, has_reduce: bool) -> None:
        self.store, self.parent, self.total, self.has_reduce = store, parent, total, has_reduce
        ts = jobs.ID_RE.fullmatch(parent)["ts"]
        self.launched = f"{ts[:4]}-{ts[4:6]}-{ts[6:8]}T{ts[9:11]}:{ts[11:13]}:{ts[13:15]}Z"
        self.summaries: dict[int, object] = {}  # a final shard's summary, read once after it ended
        self.rates: dict[int, float | None] = {}  # a shard's price, read once it has started
        self.failed: dict[str, int | None] = {}  # every failed item named so far, in the order seen
        self.unnamed = 0  # failed items a summary counts but does not name (it names at most 100)

    def _summary(self, sid: str, k: int, status: jobs.Status):
        from runner.fanout import views

        if k in self.summaries:
            return self.summaries[k]
        summary = views.Summary.read(self.store, sid)
        if status.final:
            self.summaries[k] = summary
        return summary

    def _rate(self, sid: str, k: int, status: jobs.Status) -> float | None:
        from runner.status_table import _rate

        if k not in self.rates and status.started_at:
            self.rates[k] = _rate(self.store, sid)
        return self.rates.get(k)

    def _reducing(self) -> bool:
        """Whether reduce/status.json says the reduce runs (read only once every item is done)."""
        from runner.fanout.launch import read_reduce

        try:
            reduce = read_reduce(self.store, self.parent)
        except StoreError:
            return False
        return reduce is not None and reduce.state == jobs.RUNNING

    def look(self, statuses: dict[int, jobs.Status], settled: jobs.Status | None = None) -> tuple[tuple[str, str], str]:
        """The line for the shards' statuses now (`settled`: the parent's final status, once derived)."""
        from runner.fanout import ids, views

        shards = []
        for k, st in sorted(statuses.items()):
            sid = ids.shard_id(self.parent, k)
            if not st.final:
                self.summaries.pop(k, None)  # relaunched: its summary changes again
            shards.append(views.Shard(k, sid, st, self._summary(sid, k, st)))
        counts = views.item_counts(self.total, shards)
        unnamed = 0
        for s in views.last_wave(shards):
            for name, code in s.summary.failed_items.items():
                self.failed.setdefault(name, code)
            unnamed += max(s.summary.failed - len(s.summary.failed_items), 0)
        self.unnamed = max(self.unnamed, unnamed)
        spent = [cost.so_far(self._rate(s.shard_id, s.k, s.status), s.status.started_at, s.status.ended_at) for s in shards]
        known = [c for c in spent if c is not None]
        running = sum(not s.status.final for s in shards)
        if settled is not None:
            state = settled.state
        else:
            began = any(s.status.started_at or s.status.state not in BOOTING for s in shards)
            state = jobs.RUNNING if began else jobs.PROVISIONING
        end = settled.ended_at if settled is not None and settled.final else None
        elapsed = (cost._ts(end or jobs.utcnow()) - cost._ts(self.launched)).total_seconds()
        reducing = self.has_reduce and settled is None and running > 0 and counts.done == counts.total and self._reducing()
        return describe_fanout(self.parent, state, counts, running, len(shards) - running, elapsed,
                               sum(known) if known else None, reducing)


class ItemNotes:
    """What `--follow` prints of a fan-out job: each failed item once, as `<name>: exit N`, and how to read its log."""

    def __init__(self, parent: str, out: BinaryIO) -> None:
        self.parent, self.out = parent, out
        self.shown: set[str] = set()
        self.hinted = self.unnamed_noted = False

    def show(self, looker: FanoutLooker, err) -> None:
        """Print the failed items `looker` has seen that were not printed yet (on `out`; how to read them, to `err`)."""
        for name, code in looker.failed.items():
            if name in self.shown:
                continue
            self.shown.add(name)
            self.out.write(f"{name}: exit {'?' if code is None else code}\n".encode())
            self.out.flush()
            if not self.hinted:
                self.hinted = True
                err(f"an item's log: runner logs {self.parent} --item NAME")
        if looker.unnamed and not self.unnamed_noted:
            self.unnamed_noted = True
            err(f"more items failed than the shards' summaries name: runner status {self.parent} --items")
