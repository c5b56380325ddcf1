"""Child jobs of a parent: a fan-out's shards and a cluster's nodes, each an ordinary job with a derived id.

Child k of the parent `<name>-<ts>-<rand>` is `<name>--<letter><k>-<ts>-<rand>`; the parent keeps one record per
child under `<folder>/<k>`. Everything read back from the store is untrusted: a child's id is always computed from
the parent's id and its number, never taken from a record.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from runner import jobs
from runner.errors import NotFoundError, RunnerError, SpecError
from runner.providers import PROVIDERS
from runner.spec import JobSpec, validate
from runner.store import Store


@dataclass(frozen=True)
class Kind:
    """One kind of child: its letter in the id, its words in messages, the parent's record and folder, its numbers' bound."""

    letter: str  # the id's `--<letter><k>`
    noun: str  # "shard": how a message names one child
    parent: str  # "fan-out job": how a message names the parent
    record: str  # the key of job.json that makes a job a parent of this kind
    folder: str  # the parent's folder of per-child records, `<folder>/<k>`
    bound: int  # a child's number is 0 to bound - 1
    first: str = "0"  # how a message names number 0
    last_first: bool = False  # cancel the highest number first

    @cached_property
    def digits(self) -> int:
        """The most digits a child's number has."""
        return len(str(self.bound - 1))

    @cached_property
    def id_re(self) -> re.Pattern:
        """A child's id, its number written without leading zeros."""
        return re.compile(rf"^(?P<name>[a-z][a-z0-9-]*)--{self.letter}(?P<k>0|[1-9][0-9]{{0,{self.digits - 1}}})"
                          r"-(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{6})\Z")


SHARDS = Kind("s", "shard", "fan-out job", "fanout", "shards", 1_000_000)
NODES = Kind("n", "node", "cluster job", "cluster", "nodes", 64, first="0 (the head)", last_first=True)  # workers before the head
KINDS = (SHARDS, NODES)


class Child(NamedTuple):
    """What a child's id says: its parent's id, its kind and its number."""

    parent: str
    kind: Kind
    k: int


def _parent_name(name: str) -> bool:
    return bool(jobs.NAME_RE.match(name)) and "--" not in name


def child_id(parent_id: str, kind: Kind, k: int) -> str:
    """The job id of child `k` (0-based) of the kind's parent `parent_id`; SpecError for a bad parent id or number."""
    m = jobs.ID_RE.fullmatch(parent_id)
    if not m or not _parent_name(m["name"]):
        raise SpecError(f"{parent_id!r} is not the id of a {kind.parent} (NAME-YYYYMMDDTHHMMSSZ-xxxxxx, a name without '--')")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < kind.bound:
        raise SpecError(f"{kind.noun} {k!r} of {parent_id}: a {kind.noun} number is an integer from {kind.first} to {kind.bound - 1}")
    return f"{m['name']}--{kind.letter}{k}-{m['ts']}-{m['rand']}"


def parent_of(job_id: str) -> Child | None:
    """(parent id, kind, k) when `job_id` is a child's id of either kind, else None."""
    for kind in KINDS:
        m = kind.id_re.fullmatch(job_id)
        if m and _parent_name(m["name"]) and int(m["k"]) < kind.bound:
            return Child(f"{m['name']}-{m['ts']}-{m['rand']}", kind, int(m["k"]))
    return None


def numbers(store: Store, parent: str, kind: Kind) -> list[int]:
    """The parent's children, by number, from its `<folder>/<k>` keys (one listing; anything else there is ignored)."""
    prefix = jobs.job_key(parent, kind.folder) + "/"
    found = set()
    for key in store.list(prefix):
        leaf = key[len(prefix):]
        if leaf.isascii() and leaf.isdigit() and len(leaf) <= kind.digits and int(leaf) < kind.bound:
            found.add(int(leaf))
    return sorted(found)


def record_of(store: Store, job_id: str, kind: Kind) -> dict | None:
    """The kind's record from the job's job.json when it is a parent of that kind, else None (a missing or bad job.json too)."""
    return _record(store, job_id, kind)[1]


def parent_kind(store: Store, job_id: str) -> Kind | None:
    """The kind of the job's children when it is a parent (one read of job.json), else None."""
    return parent_record(store, job_id)[0]


def parent_record(store: Store, job_id: str) -> tuple[Kind | None, dict | None]:
    """The kind of the job's children and its record of them when it is a parent (one read of job.json), else (None, None)."""
    return _record(store, job_id, *KINDS)


def _record(store: Store, job_id: str, *kinds: Kind) -> tuple[Kind | None, dict | None]:
    try:
        record = jobs.read_json(store, job_id, "job.json")
    except (NotFoundError, jobs.RecordError):
        return None, None
    for kind in kinds:
        if isinstance(found := record.get(kind.record), dict):
            return kind, found
    return None, None


def read_parent(store: Store, parent: str, kind: Kind, accept: Callable[[dict], bool], refusal: str) -> tuple[dict, JobSpec]:
    """A parent's job.json and its spec, re-validated; SpecError(`refusal`) unless its kind's record is a dict `accept`s,
    and SpecError unless it names a known backend."""
    record = jobs.read_json(store, parent, "job.json")
    if not isinstance(record.get(kind.record), dict) or not accept(record[kind.record]):
        raise SpecError(refusal)
    cloud = record.get("cloud")
    if not isinstance(cloud, str) or cloud not in PROVIDERS:
        raise SpecError(f"job.json of {parent} names an unknown cloud {str(cloud)[:40]!r}")
    spec_data = record.get("spec")
    if not isinstance(spec_data, dict):
        raise SpecError(f"job.json of {parent} holds no spec (a {type(spec_data).__name__})")
    return record, validate(spec_data, f"job.json of {parent}")


def cancel_children(store: Store, parent: str, st: jobs.Status, kind: Kind, reason: str,
                    cancel_one: Callable[[str], list[str]]) -> tuple[str, list[str]]:
    """Every child cancelled as a job of its own (`cancel_one(child id)` says what happened), then the parent
    CANCELLED (conditionally: a final state written meanwhile stays); the parent's state afterwards and the lines."""
    lines: list[str] = []
    for k in sorted(numbers(store, parent, kind), reverse=kind.last_first):
        try:
            lines += cancel_one(child_id(parent, kind, k))
        except RunnerError as e:
            lines.append(f"{parent}: {kind.noun} {k} could not be cancelled: {e}")
    wanted = jobs.Status(jobs.CANCELLED, exit_code=130, reason=reason, started_at=st.started_at, ended_at=jobs.utcnow())
    now = jobs.write_status(store, parent, wanted)
    lines.append(f"{parent}: {now.state}" if now.state == jobs.CANCELLED else
                 f"{parent} already ended: {now.state} (it had already finished, while being cancelled); it stays {now.state}")
    return now.state, lines


def rate(store: Store, child: str, found) -> float | None:
    """A child's USD per hour: its VM's record's (`found`, from jobs.read_instance), else the price planned with, else None."""
    usd = found.data.get("usd_per_hour") if found else None
    if usd is None:  # the price planned with, as for a single job
        try:
            usd = jobs.read_json(store, child, "job.json").get("usd_per_hour")
        except (NotFoundError, jobs.RecordError):
            usd = None
    return float(usd) if isinstance(usd, (int, float)) and not isinstance(usd, bool) else None
