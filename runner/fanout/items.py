"""The items of a fan-out job: listed from a prefix or read from a manifest, named safely, frozen as JSON lines.

Every refusal happens before anything is created and raises SpecError naming the file or prefix and the item.
What is read back from the store (manifest.jsonl) is untrusted: a bad line is a RecordError naming its number.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from runner.errors import SpecError
from runner.jobs import RecordError
from runner.store import join

if TYPE_CHECKING:
    from runner.spec import ItemsSpec

NAME_MAX = 100  # characters of a safe name before its hash suffix
MANIFEST_LIMIT = 64 << 20  # the largest manifest file read from a job folder
MAX_ITEMS = 1_000_000
SAFE_RE = re.compile(r"^[A-Za-z0-9._-]{1,110}\Z")
UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]")
SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*://")


@dataclass(frozen=True)
class Item:
    """One unit of work: `item` is its URI or manifest line, `name` its safe name, `size` its bytes when known."""

    item: str
    name: str
    size: int | None = None


def raw_name(item: str) -> str:
    """What an item's name is made from: a URI's basename, or the whole line."""
    if SCHEME_RE.match(item):
        return item.split("://", 1)[1].rstrip("/").rsplit("/", 1)[-1] or item
    return item


def safe_name(item: str) -> str:
    """[A-Za-z0-9._-] only, at most 100 chars; `-` + 8 hex of sha256(item) appended when anything was changed or cut."""
    raw = raw_name(item)
    name = UNSAFE_RE.sub("_", raw)[:NAME_MAX]
    if name in ("", ".", ".."):
        name = name.replace(".", "_") or "_"
    elif name == raw:
        return name
    return f"{name}-{hashlib.sha256(item.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def bad_char(item: str) -> str | None:
    """The first control character (or line/paragraph separator) in an item, if any."""
    for ch in item:
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            return ch
    return None


def _check_item(item: str, where: str) -> None:
    ch = bad_char(item)
    if ch is not None:
        raise SpecError(f"{where}: item {item!r} contains the control character {ch!r} (tabs, CR, LF and other "
                        "control characters cannot be part of an item); rename it or leave it out with `match:`")


def _checked(items: list[Item], source: str, match: str, total: int) -> list[Item]:
    """Refuse an empty selection, duplicate items and colliding names; `source` names the file or prefix."""
    if not items:
        what = f"none of its {total} items match {match!r}" if total else "it holds no items"
        raise SpecError(f"{source}: {what}; a fan-out needs at least one item")
    if len(items) > MAX_ITEMS:
        raise SpecError(f"{source}: {len(items)} items, more than the {MAX_ITEMS} one job takes; split the work over several jobs")
    seen: dict[str, Item] = {}
    for it in items:
        other = seen.setdefault(it.name, it)
        if other is not it:
            raise SpecError(f"{source}: items {other.item!r} and {it.item!r} have the same name {it.name!r} (names are "
                            "made from the basename, with unsafe characters replaced); rename one or leave one out with `match:`")
    return items


def from_manifest(data: bytes, source: str, match: str = "*") -> list[Item]:
    """Items from a manifest file's bytes: one item per line (UTF-8), blank lines skipped, CRLF endings allowed."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SpecError(f"{source}: not UTF-8 text (line {line}, byte {e.start}: {data[e.start:e.start + 1]!r}); "
                        "save the manifest as UTF-8") from None
    text = text.removeprefix("\ufeff")
    lines: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        _check_item(line, f"{source}, line {number}")
        if line in lines:
            raise SpecError(f"{source}, line {number}: item {line!r} is listed twice (first on line {lines[line]}); "
                            "each item is listed once")
        lines[line] = number
    chosen = [Item(line, safe_name(line)) for line in lines if fnmatchcase(raw_name(line), match)]
    return _checked(chosen, source, match, len(lines))


def from_listing(prefix_uri: str, keys_with_sizes: Iterable[tuple[str, int]], match: str = "*") -> list[Item]:
    """Items from a listing below `prefix_uri` (keys relative to it): each object's full URI, named by its basename."""
    total, chosen = 0, []
    for key, size in keys_with_sizes:
        if not key or key.endswith("/"):  # a "folder" marker, not an object
            continue
        total += 1
        uri = join(prefix_uri, key)
        if not fnmatchcase(raw_name(uri), match):
            continue
        _check_item(uri, prefix_uri)
        ok = isinstance(size, int) and not isinstance(size, bool) and size >= 0
        chosen.append(Item(uri, safe_name(uri), size if ok else None))
    return _checked(chosen, prefix_uri, match, total)


def read_manifest_file(job_dir: Path, rel: str) -> bytes:
    """The manifest file `rel` of a job folder: inside it (no '..', no link out), a regular file, at most 64 MiB."""
    where = job_dir / rel
    if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
        raise SpecError(f"items.manifest {rel!r}: must be a path inside the job folder {job_dir}, without '..'")
    root = os.path.realpath(job_dir)
    real = os.path.realpath(where)
    if os.path.commonpath([root, real]) != root:
        raise SpecError(f"items.manifest {rel!r}: {where} leads out of the job folder {job_dir} (a symbolic link)")
    if not os.path.isfile(real):
        raise SpecError(f"items.manifest {rel!r}: {where} is not a file; put the manifest (one item per line) in the job folder")
    if os.path.getsize(real) > MANIFEST_LIMIT:
        raise SpecError(f"items.manifest {rel!r}: {where} is larger than {MANIFEST_LIMIT >> 20} MiB")
    with open(real, "rb") as f:
        return f.read(MANIFEST_LIMIT + 1)


def list_items(spec_items: ItemsSpec, job_dir: str | Path, store_root_uri: str) -> list[Item]:
    """The items a spec names: its manifest file read, or its prefix listed (store-relative against the store root)."""
    from runner.render import resolve
    from runner.store import open_store

    match = spec_items.match or "*"
    if spec_items.manifest is not None:
        data = read_manifest_file(Path(job_dir), spec_items.manifest)
        return from_manifest(data, str(Path(job_dir) / spec_items.manifest), match)
    if spec_items.over is None:
        raise SpecError("items: give `over:` (a prefix to list) or `manifest:` (a file of items), exactly one")
    prefix = resolve(spec_items.over, store_root_uri).rstrip("/") + "/"
    return from_listing(prefix, open_store(prefix).list_sizes(""), match)


def manifest_bytes(items: Iterable[Item]) -> bytes:
    """The frozen manifest: one JSON object {"name", "item", "size"} per line, in the order given."""
    lines = [json.dumps({"name": it.name, "item": it.item, "size": it.size}, ensure_ascii=False) for it in items]
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _manifest_line(number: int, line: str) -> Item:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as e:
        raise RecordError(f"manifest.jsonl, line {number}: not JSON ({str(e)[:80]})") from None
    if not isinstance(obj, dict) or set(obj) != {"name", "item", "size"}:
        raise RecordError(f"manifest.jsonl, line {number}: not an object with exactly name, item and size")
    item, name, size = obj["item"], obj["name"], obj["size"]
    if not isinstance(item, str) or not item or bad_char(item) is not None:
        raise RecordError(f"manifest.jsonl, line {number}: the item is not a string without control characters")
    if not isinstance(name, str) or name != safe_name(item):
        raise RecordError(f"manifest.jsonl, line {number}: the name {str(name)[:120]!r} is not the safe name of its item")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise RecordError(f"manifest.jsonl, line {number}: the size {str(size)[:40]!r} is not a byte count")
    return Item(item, name, size)


def read_manifest(data: bytes) -> list[Item]:
    """Items from a frozen manifest.jsonl read back from the store (untrusted: every line is checked)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise RecordError(f"manifest.jsonl, line {line}: not UTF-8") from None
    items: list[Item] = []
    names: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        it = _manifest_line(number, line)
        if it.name in names:
            raise RecordError(f"manifest.jsonl, line {number}: the name {it.name!r} is already on line {names[it.name]}")
        names[it.name] = number
        items.append(it)
        if len(items) > MAX_ITEMS:
            raise RecordError(f"manifest.jsonl holds more than {MAX_ITEMS} items: not a manifest runner writes")
    if not items:
        raise RecordError("manifest.jsonl holds no items: not a manifest runner writes")
    return items


def items_tsv(items: Iterable[Item]) -> bytes:
    """A shard's item list: `name<TAB>item` per line."""
    return "".join(f"{it.name}\t{it.item}\n" for it in items).encode("utf-8")


def missing(manifest: Iterable[Item], done_names: Iterable[str]) -> list[Item]:
    """The manifest's items without a done-marker, in manifest order."""
    done = set(done_names)
    return [it for it in manifest if it.name not in done]


def describe_plan(items: list[Item], slices: list[list[Item]], vms_requested: int | None = None, quote: dict | None = None) -> dict:
    """What `--dry-run` adds for a fan-out: items, bytes, VMs (and the cap), each VM's share, all VMs' prices from one VM's quote."""
    known = [it.size for it in items if it.size is not None]
    out: dict = {"items": len(items), "items_bytes": sum(known) if known else None}
    if known and len(known) < len(items):
        out["items_bytes_note"] = f"sizes known for {len(known)} of {len(items)} items"
    out["vms"] = len(slices)
    if vms_requested and vms_requested > len(slices):
        out["vms_note"] = f"capped at the number of items ({len(items)}), from {vms_requested} asked for"
    out["per_vm"] = [f"vm {k}: {len(s)} items, {_bytes(s)}" for k, s in enumerate(slices[:20])]
    if len(slices) > 20:
        out["per_vm"].append(f"... and {len(slices) - 20} more VMs")
    for key, value in (quote or {}).items():
        if (key.endswith("usd_per_hour") or key.startswith("max_cost")) and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"all_vms_{key}"] = round(value * len(slices), 6)
    return out


def _bytes(items: list[Item]) -> str:
    sizes = [it.size for it in items if it.size is not None]
    if not sizes:
        return "size unknown"
    return f"{sum(sizes)} bytes" + ("" if len(sizes) == len(items) else f" ({len(items) - len(sizes)} of unknown size)")
