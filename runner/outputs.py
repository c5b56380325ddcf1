"""Downloading a job's outputs (and a fan-out job's item results): only from where they may be, only to inside DEST.

job.json is untrusted (a job's VM can rewrite it), so its `outputs` are checked before anything is read:
- each output path is relative and has no '..': it lands inside DEST;
- a URI inside the store is honoured only in the job's own folder (never another job's);
- a file:// URI outside the store is refused (it could name any file of this machine);
- an s3:// or gs:// URI outside the store is read as declared (the job's own bucket outputs);
- a key below an output prefix that would land outside DEST (a '..' in it) is skipped;
- a file:// store hands back no symbolic link and nothing below one.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from runner import jobs
from runner.errors import NotFoundError, RunnerError, SpecError
from runner.store import Store, climbs, open_store, split_uri


@dataclass
class Result:
    got: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was refused or skipped, and why


def source(store: Store, job_id: str, uri: str) -> tuple[Store, str]:
    """The store and key an output URI may be read from; SpecError saying why not."""
    if not isinstance(uri, str):
        raise SpecError(f"{uri!r} is not a URI")
    scheme, bucket, key = split_uri(uri)
    if ".." in key.split("/"):
        raise SpecError(f"{uri} has a '..' in it")
    if uri.startswith(store.root + "/"):
        rel = uri[len(store.root) + 1:]
        parts = rel.split("/")
        if parts[0] == "jobs" and (len(parts) < 3 or parts[1] != job_id):
            raise SpecError(f"{uri} is in another job's folder, not {job_id}'s")
        return store, rel
    if scheme == "file":
        raise SpecError(f"{uri} is outside the store ({store.root}): a file:// output must be in it")
    return open_store(f"{scheme}://{bucket}"), key


def _inside(dest: Path, target: Path) -> bool:
    return target.resolve().is_relative_to(dest.resolve())


def _copy(src: Store, key: str, dest: Path, target: Path, result: Result) -> None:
    if not _inside(dest, target):
        result.notes.append(f"skipped {src.uri(key)}: it would land outside {dest} ({target})")
        return
    src.download(key, target)
    result.got.append(target)


def download(store: Store, job_id: str, dest: Path) -> Result:
    """Copy every output of the job that may be read into `dest`; what was refused is in `notes`."""
    record = jobs.read_json(store, job_id, "job.json")
    outputs = record.get("outputs", {})
    if not isinstance(outputs, dict):
        raise jobs.RecordError(f"job.json of {job_id}: `outputs` is not a mapping (a {type(outputs).__name__})")
    result = Result()
    for path, uri in outputs.items():
        try:
            if not isinstance(path, str) or climbs(path.rstrip("/")) or posixpath.isabs(path):
                raise SpecError(f"the output path {path!r} would land outside {dest}")
            src, key = source(store, job_id, uri)
        except SpecError as e:
            result.notes.append(f"refused: {e}")
            continue
        try:
            if not key.endswith("/"):
                _copy(src, key, dest, dest / path, result)
                continue
            for k in src.list(key):
                rel = k[len(key):]
                if climbs(rel) or rel.endswith("/"):
                    result.notes.append(f"skipped {src.uri(k)}: it would land outside {dest}")
                    continue
                _copy(src, k, dest, dest / path / rel, result)
        except NotFoundError:
            result.notes.append(f"not in the store (yet): {uri}")
        except RunnerError as e:
            result.notes.append(f"refused: {e}")
    if isinstance(record.get("fanout"), dict):
        item_results(store, job_id, dest, result)
    return result


def item_results(store: Store, job_id: str, dest: Path, result: Result) -> None:
    """A fan-out job's items: each done item's result under DEST/items/<name>/, from one listing of its items/."""
    from runner.fanout.views import NAME_RE

    prefix = jobs.job_key(job_id, "items") + "/"
    results: dict[str, list[str]] = {}
    done = set()
    for key in store.list(prefix):
        name, _, rest = key[len(prefix):].partition("/")
        if not NAME_RE.fullmatch(name) or name in (".", ".."):
            result.notes.append(f"skipped {store.uri(key)}: {name!r} is not an item name")
        elif rest == "done":
            done.add(name)
        elif rest.startswith("result/"):
            results.setdefault(name, []).append(key)
    for name in sorted(done):
        for key in results.get(name, []):
            rel = key[len(f"{prefix}{name}/result/"):]
            if climbs(rel):
                result.notes.append(f"skipped {store.uri(key)}: it would land outside {dest}")
                continue
            _copy(store, key, dest, dest / "items" / name / rel, result)
    unfinished = sorted(set(results) - done)
    if unfinished:
        result.notes.append(f"not brought: the result of {len(unfinished)} item(s) not done ({', '.join(unfinished[:5])}"
                            f"{', ...' if len(unfinished) > 5 else ''}); see `runner status {job_id} --items`")

