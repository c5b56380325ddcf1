"""Reading a fan-out job: its shards, item counts from their summaries, each item's state, log and result.

Everything here is read back from the store and untrusted: a shard's VM writes its own folder and the parent's
items/, so counts are clamped, names are checked as safe names before they become keys, and a shard's id is
always computed from the parent's id and its number, never taken from a record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from runner import children, cost, jobs, watch
from runner.errors import NotFoundError, RunnerError, SpecError
from runner.fanout import ids, state
from runner.fanout.items import SAFE_RE as NAME_RE
from runner.fanout.items import Item
from runner.fanout.items import read_manifest as parse_manifest
from runner.store import Store

FAILED_ITEMS_SHOWN = 100  # a summary names at most this many failed items
MAX_TRIES = 11  # 1 + the most items.retries allows


def _safe(name: object) -> bool:
    """Whether `name` is an item's safe name (it may become a key below the job's items/ folder)."""
    return isinstance(name, str) and bool(NAME_RE.fullmatch(name)) and name not in (".", "..")


def check_name(name: str) -> str:
    """An item's safe name, or SpecError: it becomes a key below the job's items/ folder."""
    if not _safe(name):
        raise SpecError(f"{name!r} is not an item name: names use only A-Z a-z 0-9 . _ - (see `runner status ID --items`)")
    return name


def fanout_of(store: Store, job_id: str) -> dict | None:
    """The job's `fanout` record from job.json when it is a fan-out parent, else None."""
    return children.record_of(store, job_id, ids.KIND)


def _count(v: object) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


@dataclass
class Summary:
    """A shard's summary.json: its items done and failed so far (the failed ones named, at most 100)."""

    total: int = 0
    done: int = 0
    failed: int = 0
    failed_items: dict[str, int] = field(default_factory=dict)
    updated_at: str = ""

    @classmethod
    def read(cls, store: Store, shard_id: str) -> Summary:
        """The shard's summary; an empty one when it has written none yet or wrote garbage."""
        try:
            data = jobs.read_json(store, shard_id, "summary.json")
        except (NotFoundError, jobs.RecordError):
            return cls()
        named = data.get("failed_items")
        failed = {}
        for name, code in (named.items() if isinstance(named, dict) else ()):
            if len(failed) < FAILED_ITEMS_SHOWN and _safe(name):
                failed[name] = code if isinstance(code, int) and not isinstance(code, bool) else None
        updated = data.get("updated_at")
        return cls(_count(data.get("total")), _count(data.get("done")), _count(data.get("failed")), failed,
                   updated if isinstance(updated, str) else "")


@dataclass
class Shard:
    """One shard as `runner status` shows it."""

    k: int
    shard_id: str
    status: jobs.Status
    summary: Summary
    vm: str = ""
    zone: str = ""
    attempts: int = 1
    usd_per_hour: float | None = None
    cost_usd: float | None = None
    launched_at: str = ""
    wave: int = -1  # the first shard number of the launch that started it (launch, then each `runner retry`); -1: unknown

    def to_json(self) -> dict:
        return {"k": self.k, "shard_id": self.shard_id, "state": self.status.state, "exit_code": self.status.exit_code,
                "reason": self.status.reason, "vm": self.vm, "zone": self.zone, "attempts": self.attempts,
                "items": {"total": self.summary.total, "done": self.summary.done, "failed": self.summary.failed},
                "usd_per_hour": self.usd_per_hour, "cost_usd": self.cost_usd}


def _shard_record(store: Store, parent: str, k: int) -> dict:
    try:
        data = jobs.parse_record(store.get_bytes(jobs.job_key(parent, "shards", str(k)), 0, jobs.RECORD_LIMIT + 1), f"shards/{k}")
    except (NotFoundError, jobs.RecordError):
        return {}
    return data if isinstance(data, dict) else {}


def _status(store: Store, shard_id: str, check_vm: bool) -> jobs.Status:
    try:
        return watch.refresh(store, shard_id, check_vm)
    except NotFoundError:
        return jobs.Status(jobs.PENDING, reason="no record of this shard yet")
    except RunnerError as e:  # its VM could not be asked
        st = jobs.read_status(store, shard_id)
        st.reason = f"{st.reason}; the VM could not be checked: {e}".lstrip("; ")
        return st


def read_shard(store: Store, parent: str, k: int, check_vm: bool = True) -> Shard:
    """Shard k: its status (reconciled with its VM when `check_vm`), VM, attempts, cost and summary."""
    shard_id = ids.shard_id(parent, k)
    status = _status(store, shard_id, check_vm)
    record = _shard_record(store, parent, k)
    launched = record.get("launched_at")
    wave = record.get("wave")
    wave = wave if isinstance(wave, int) and not isinstance(wave, bool) and 0 <= wave <= k else -1  # untrusted
    shard = Shard(k, shard_id, status, Summary.read(store, shard_id), launched_at=launched if isinstance(launched, str) else "",
                  wave=wave)
    inst, found, why = jobs.read_instance_record(store, shard_id)  # instance.json, read once
    shard.vm = f"{found.cloud} {found.id}" if found else why.removeprefix("no VM known: ")
    shard.zone = found.zone if found else ""
    attempt = inst.get("attempt", inst.get("relaunching", 1))
    shard.attempts = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) and 1 <= attempt <= 9999 else 1
    shard.usd_per_hour = children.rate(store, shard_id, found)
    shard.cost_usd = cost.so_far(shard.usd_per_hour, status.started_at, status.ended_at)
    return shard


def last_wave(shards: list[Shard]) -> list[Shard]:
    """The shards of the newest launch: those its shard records name as such (their `wave`), else (older records)
    those from the last one launched after every shard before it had ended.

    `runner retry` relaunches every item not done, so an item that failed in an earlier wave is done since, or in this one.
    """
    if shards and all(s.wave >= 0 for s in shards):
        newest = max(s.wave for s in shards)
        return [s for s in shards if s.wave == newest]
    start = 0
    for i, s in enumerate(shards):
        before = shards[:i]
        if before and s.launched_at and all(b.status.final and (b.status.ended_at or "") <= s.launched_at for b in before):
            start = i
    return shards[start:]


def item_counts(total: int, shards: list[Shard]) -> state.Counts:
    """Done, failed and missing items of the manifest from the shards' summaries alone (one read per shard)."""
    done = sum(s.summary.done for s in shards)
    failed = sum(s.summary.failed for s in last_wave(shards))
    return state.counts(total, done, failed)


@dataclass
class Parent:
    """A fan-out job as `runner status ID` shows it."""

    job_id: str
    status: jobs.Status
    counts: state.Counts
    shards: list[Shard]
    reduce: jobs.Status | None
    has_reduce: bool

    @property
    def cost_usd(self) -> float | None:
        known = [s.cost_usd for s in self.shards if s.cost_usd is not None]
        return sum(known) if known else None

    def items_line(self) -> str:
        c = self.counts
        return f"{c.done}/{c.total} done, {c.failed} failed, {c.missing} missing"

    def to_json(self) -> dict:
        reduce = None if self.reduce is None else {"state": self.reduce.state, "exit_code": self.reduce.exit_code}
        return {"job_id": self.job_id, **self.status.__dict__, "cost_usd": self.cost_usd, "items": self.counts.to_json(),
                "reduce": reduce if self.has_reduce else None, "shards": [s.to_json() for s in self.shards]}


def _retries_left(store: Store, parent: str, shards: list[Shard]) -> list[int]:
    try:
        spec = jobs.read_json(store, parent, "job.json").get("spec")
    except (NotFoundError, jobs.RecordError):
        spec = None
    retries = spec.get("retries") if isinstance(spec, dict) else 0
    retries = retries if isinstance(retries, int) and not isinstance(retries, bool) and 0 <= retries <= 100 else 0
    return [max(retries - (s.attempts - 1), 0) for s in shards]


def shard_numbers(store: Store, parent: str) -> list[int]:
    """The shards' numbers, from the keys below shards/ (one listing)."""
    return children.numbers(store, parent, ids.KIND)


def read_parent(store: Store, parent: str, fan: dict, check_vm: bool = True) -> Parent:
    """The parent's derived state, item counts (from the shards' summaries), reduce and shards.

    When every shard has ended and no final state is recorded yet, it is derived from the items' done markers
    (one listing) and written, conditionally: whoever sees it final first records it.
    """
    from runner.fanout import launch

    shards = [read_shard(store, parent, k, check_vm) for k in shard_numbers(store, parent)]
    counts = item_counts(_count(fan.get("items")), shards)
    has_reduce = fan.get("reduce") is True
    reduce = launch.read_reduce(store, parent) if has_reduce else None
    statuses, left = [s.status for s in shards], _retries_left(store, parent, shards)
    derived = state.derive(statuses, counts, reduce, has_reduce, left, parent)
    stored = jobs.read_status(store, parent)
    if stored.final:
        derived = stored
    elif derived.final:
        derived = launch.settle(store, parent, statuses, left)[0]
    elif not shards:
        derived = stored
    return Parent(parent, derived, counts, shards, reduce, has_reduce)


def shard_table(shards: list[Shard]) -> list[str]:
    """The shards as the lines of a table, with the total cost."""
    width = max([len(s.shard_id) for s in shards] + [5])
    vmw = max([len(s.vm) for s in shards] + [2])
    lines = [f"{'K':>4}  {'SHARD':<{width}}  {'VM':<{vmw}}  {'ZONE':<12} {'STATE':<12} {'ITEMS':>11}  {'ATTEMPTS':>8}  {'COST $':>8}"]
    for s in shards:
        spent = "-" if s.cost_usd is None else f"{s.cost_usd:.4f}"
        items = f"{s.summary.done}/{s.summary.total}"
        lines.append(f"{s.k:>4}  {s.shard_id:<{width}}  {s.vm:<{vmw}}  {s.zone or '-':<12} {s.status.state:<12} {items:>11}  "
                     f"{s.attempts:>8}  {spent:>8}")
    known = [s.cost_usd for s in shards if s.cost_usd is not None]
    lines.append(f"{'total':>4}  {'':<{width}}  {'':<{vmw}}  {'':<12} {'':<12} {'':>11}  {'':>8}  {sum(known):>8.4f}"
                 f"  ({len(known)} of {len(shards)} shards priced)")
    return lines


def parent_lines(parent: Parent, items: list[dict] | None = None) -> list[str]:
    """`runner status ID` of a fan-out job as text: its fields, its shards' table and (given) its items."""
    st, red = parent.status, parent.reduce
    reduce = "none" if not parent.has_reduce else "not started" if red is None else \
        red.state + ("" if red.exit_code is None else f" (exit {red.exit_code})")
    fields = {"job_id": parent.job_id, "state": st.state, "exit_code": st.exit_code, "reason": st.reason,
              "items": parent.items_line(), "reduce": reduce, "started_at": st.started_at, "ended_at": st.ended_at,
              "cost_usd": None if parent.cost_usd is None else round(parent.cost_usd, 4)}
    lines = [f"{k:>12}: {'' if v is None else v}" for k, v in fields.items()]
    lines += shard_table(parent.shards) if parent.shards else []
    for it in items or ():
        code = "" if it["exit_code"] is None else it["exit_code"]
        tries = f"  ({it['tries']} tries)" if (it.get("tries") or 0) > 1 else ""
        lines.append(f"{it['state']:<8} {code:>4}  {it['name']}{tries}" + ("" if it["item"] in ("", it["name"]) else f"  ({it['item']})"))
    return lines


def read_manifest(store: Store, parent: str) -> list[Item]:
    """The frozen manifest, every line checked (RecordError naming the first bad one)."""
    try:
        raw = store.get_bytes(jobs.job_key(parent, "manifest.jsonl"))
    except NotFoundError:
        raise NotFoundError(f"{parent} has no manifest.jsonl: it is not a fan-out job, or its launch did not get that far") from None
    return parse_manifest(raw)


def _exit_code(store: Store, key: str) -> int | None:
    try:
        text = store.get_bytes(key, 0, 32).decode("ascii", "replace").strip()
    except NotFoundError:
        return None
    return int(text) if re.fullmatch(r"-?[0-9]{1,5}", text) else None


def read_tries(store: Store, key: str) -> int | None:
    """An item's `tries` record (untrusted): a small whole number, else None."""
    try:
        text = store.get_bytes(key, 0, 8).decode("ascii", "replace").strip()
    except NotFoundError:
        return None
    return int(text) if re.fullmatch(r"[0-9]{1,2}", text) and int(text) <= MAX_TRIES else None


def item_states(store: Store, parent: str, shards: list[Shard]) -> list[dict]:
    """Every manifest item: done, failed (with its exit code), or pending/missing, from one listing of items/; its
    tries read only where the listing shows a `tries` record (an item that ran more than once, or again since)."""
    prefix = jobs.job_key(parent, "items") + "/"
    done, coded, tried = set(), set(), set()
    for key in store.list(prefix):
        name, _, rest = key[len(prefix):].partition("/")
        if rest == "done":
            done.add(name)
        elif rest == "exit_code":
            coded.add(name)
        elif rest == "tries":
            tried.add(name)
    named: dict[str, int | None] = {}
    for s in shards:  # later shards last: a retry's code wins
        named.update(s.summary.failed_items)
    running = any(not s.status.final for s in shards)
    out = []
    for entry in read_manifest(store, parent):
        name = entry.name
        if name in done:
            row = {"state": "done", "exit_code": 0}
        elif name in coded or name in named:
            code = named[name] if name in named else _exit_code(store, f"{prefix}{name}/exit_code")
            row = {"state": "failed", "exit_code": code}
        else:
            row = {"state": "pending" if running else "missing", "exit_code": None}
        tries = read_tries(store, f"{prefix}{name}/tries") if name in tried and row["state"] != "pending" else None
        out.append({"name": name, "item": entry.item, **row, "tries": tries})
    return out


def item_log_key(store: Store, parent: str, name: str) -> str:
    """The key of an item's log, by its safe name or, failing that, by the item itself (as the manifest holds it)."""
    try:
        return jobs.job_key(parent, "items", check_name(name), "log")
    except SpecError:
        for entry in read_manifest(store, parent):
            if entry.item == name:
                return jobs.job_key(parent, "items", entry.name, "log")
        raise
