"""Reading a job's logs from the store: numbered parts per attempt, streamed, byte-exact.

The VM pushes each log as immutable parts, `jobs/<id>/logs/<A>/<name>.<SEQ>` (A the attempt, SEQ six
digits from 000000), each holding only the bytes appended since the previous one; the log is their
concatenation in SEQ order. A key under logs/ that is not a part is a whole object: a host-written
file (the local VM's console.log), or the whole log of a job launched by an earlier version (read as
attempt 1). Nothing here holds a whole log in memory: parts one at a time, whole objects in ranges.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from runner import jobs
from runner.errors import NotFoundError
from runner.store import Store

PART_RE = re.compile(r"(?P<attempt>[1-9][0-9]{0,3})/(?P<name>[A-Za-z0-9_-][A-Za-z0-9._-]*)\.(?P<seq>[0-9]{6})")
WHOLE_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
CHUNK = 8 << 20  # a whole object is read in ranges of this many bytes


@dataclass
class Index:
    """What logs/ holds for one log name: each attempt's parts in SEQ order, and a whole object if any."""

    parts: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    whole: str | None = None

    @property
    def attempts(self) -> list[int]:
        """The attempts with a log, in order (a legacy whole object counts as attempt 1)."""
        found = set(self.parts)
        if self.whole:
            found.add(1)
        return sorted(found)


def logs_prefix(job_id: str) -> str:
    return jobs.job_key(job_id, "logs") + "/"


def index(store: Store, job_id: str, name: str, attempt: int | None = None) -> Index:
    """List logs/ (or one attempt's folder) once and sort out the parts and whole object of `name`."""
    prefix = logs_prefix(job_id)
    below = f"{prefix}{attempt}/" if attempt else prefix
    found = Index()
    for key in store.list(below):
        rel = key[len(prefix):]
        m = PART_RE.fullmatch(rel)
        if m and m["name"] == name:
            found.parts.setdefault(int(m["attempt"]), []).append((int(m["seq"]), key))
        elif rel == name and WHOLE_RE.fullmatch(rel):
            found.whole = key
    for parts in found.parts.values():
        parts.sort()
    return found


def copy_object(store: Store, key: str, out: BinaryIO, offset: int = 0) -> int:
    """Write an object from `offset` to `out` in ranges of CHUNK bytes; returns the new offset."""
    while True:
        try:
            data = store.get_bytes(key, offset, CHUNK)
        except NotFoundError:
            return offset
        if data:
            out.write(data)
            out.flush()
            offset += len(data)
        if len(data) < CHUNK:
            return offset


def print_all(store: Store, job_id: str, name: str, out: BinaryIO, header: Callable[[str], None]) -> bool:
    """Every attempt's `name`, in attempt order (a header line per attempt when there is more than one)."""
    found = index(store, job_id, name)
    attempts = found.attempts
    for attempt in attempts:
        if len(attempts) > 1:
            header(f"==> {name}, attempt {attempt} <==")
        for _, key in found.parts.get(attempt, []):
            copy_object(store, key, out)
        if attempt == 1 and found.whole and not found.parts.get(1):
            copy_object(store, found.whole, out)
    return bool(attempts)


@dataclass
class Follower:
    """Prints one log as it grows, each attempt's once and in order, byte-exact; keep one across relaunches."""

    store: Store
    job_id: str
    out: BinaryIO
    name: str = "job.log"
    attempt: int = 1
    seq: int = 0  # the next part of `attempt` to print
    offset: int = 0  # how much of a legacy whole object is printed
    whole: bool = False  # attempt 1 is a legacy whole object

    def poll(self) -> None:
        """Print what is new: the rest of this attempt, then any later attempt's parts."""
        found = index(self.store, self.job_id, self.name)
        while True:
            self._drain(found)
            later = [a for a in found.attempts if a > self.attempt]
            if not later:
                return
            found = index(self.store, self.job_id, self.name)  # the attempt ended: print its very last part
            self._drain(found)
            self.attempt, self.seq, self.offset, self.whole = later[0], 0, 0, False

    def _drain(self, found: Index) -> None:
        parts = dict(found.parts.get(self.attempt, []))
        if self.attempt == 1 and not parts and found.whole and self.seq == 0:
            self.whole = True
        if self.whole:
            self.offset = copy_object(self.store, found.whole, self.out, self.offset) if found.whole else self.offset
            return
        while self.seq in parts:  # parts are pushed in order; a gap is one not listed yet
            copy_object(self.store, parts[self.seq], self.out)
            self.seq += 1


def show(store: Store, job_id: str, name: str, out: BinaryIO, note: Callable[[str], None], console: bool = False) -> None:
    """`runner logs`: every attempt of `name`; when the store has none and `console`, the VM's console instead."""
    if print_all(store, job_id, name, out, note) or not console:
        return
    inst = jobs.read_instance(store, job_id)[0]
    if inst is None:
        return
    from runner.providers import get_provider

    if name == "job.log":
        note(f"(no {name} in the store yet; the console of {inst.id}:)")
    out.write(get_provider(inst.cloud).console_output(inst).encode("utf-8", "surrogateescape"))
    out.flush()


def is_fanout(store: Store, job_id: str) -> bool:
    """Whether the job is a fan-out job (its logs are its shards', its items' and its reduce's)."""
    from runner.fanout import views

    return views.fanout_of(store, job_id) is not None


def fanout_target(store: Store, job_id: str, shard: int | None, item: str | None, out: BinaryIO, follow: bool = False,
                  note: Callable[[str], None] = print) -> str | None:
    """`runner logs ID --shard K` -> the shard's id (its logs are an ordinary job's); `--item NAME` prints the item's
    log; neither prints the reduce's log and says how to see the rest."""
    from runner.errors import SpecError
    from runner.fanout import views

    if shard is not None and item is not None:
        raise SpecError("give --shard K or --item NAME, not both")
    if views.fanout_of(store, job_id) is None:
        raise SpecError(f"{job_id} is not a fan-out job: --shard and --item name a shard or an item of one")
    if follow and shard is None:
        raise SpecError(f"{job_id} is a fan-out job: follow one of its VMs with `runner logs {job_id} --shard K --follow`")
    if shard is None and item is None:
        found = copy_object(store, jobs.job_key(job_id, "reduce", "log"), out) > 0
        numbers = views.shard_numbers(store, job_id)
        note(f"{job_id} is a fan-out job{' (above: its reduce log)' if found else ''}: each VM's log is "
             f"`runner logs {job_id} --shard K` (K of {', '.join(map(str, numbers[:10])) or 'none yet'}"
             f"{', ...' if len(numbers) > 10 else ''}), each item's `--item NAME` (`runner status {job_id} --items` names them)")
        return None
    if item is None:
        numbers = views.shard_numbers(store, job_id)
        if shard not in numbers:
            have = f"0..{numbers[-1]}" if numbers == list(range(len(numbers))) and numbers else ", ".join(map(str, numbers)) or "none yet"
            raise NotFoundError(f"{job_id} has no shard {shard} (its shards: {have}); see `runner status {job_id}`")
        return views.ids.shard_id(job_id, shard)
    key = views.item_log_key(store, job_id, item)
    if not store.exists(key):
        raise NotFoundError(f"no log of item {item!r} in {job_id} yet (it has not run, or is running); "
                            f"see `runner status {job_id} --items`")
    copy_object(store, key, out)
    return None
