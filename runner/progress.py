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
    """What status.json says the script is doing: a phase and, where known, the pull's bytes."""

    name: str = ""
    bytes_done: int | None = None
    bytes_total: int | None = None


def _count(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def phase_of(record: object) -> Phase:
    """The phase fields of a status.json record; anything not a known phase or a byte count is dropped."""
    if not isinstance(record, dict):
        return Phase()
    name = record.get("phase")
    return Phase(name if name in PHASES else "", _count(record.get("bytes_done")), _count(record.get("bytes_total")))


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


def _bytes(p: Phase, verb: str) -> str:
    if p.bytes_done is None and p.bytes_total is None:
        return ""
    done = "?" if p.bytes_done is None else size(p.bytes_done)
    return f" ({verb}{done}{'' if p.bytes_total is None else ' of ' + size(p.bytes_total)})"


def describe(job_id: str, status: jobs.Status, phase: Phase, boot: str, elapsed: float, cost: float | None) -> tuple[tuple[str, str], str]:
    """(what counts as a change, the line) for one look at the job; `boot` is the VM's note before the script's status."""
    name, detail = phase.name, ""
    if status.state in BOOTING:
        name, detail = "booting", f" ({clean(boot)})" if clean(boot) else ""
    elif name == "pulling":
        detail = _bytes(phase, "")
    elif name == "running":
        detail = _bytes(phase, "pulled ")
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
