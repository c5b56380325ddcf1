"""Launching a fan-out: the parent's records, then one ordinary job per slice of the frozen manifest."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from runner import children, input_check, jobs
from runner import launch as launcher
from runner import pack as packing
from runner.errors import NotFoundError, RunnerError
from runner.fanout import ids, slicing, state
from runner.fanout import items as listing
from runner.fanout.items import Item
from runner.providers import get_provider
from runner.providers.base import Instance
from runner.providers.batch import Batch
from runner.render import outputs_at
from runner.spec import JobSpec, validate
from runner.store import Store

ITEMS_SH, ITEMS_TSV, MANIFEST = ".runner/items.sh", ".runner/items.tsv", ".runner/manifest.jsonl"


@dataclass
class FanoutPlan:
    """What a fan-out launch will do: the parent, its frozen items and each shard's slice."""

    spec: JobSpec
    job_dir: Path
    job_id: str
    cloud: str
    store: Store
    items: list[Item]
    slices: list[list[Item]]
    usd_per_hour: float | None = None
    notes: list[str] = field(default_factory=list)
    quota: dict | None = None  # the vCPU quota check's result, once made (check_quota)

    @property
    def request(self):
        """Shard 0's launch request (every shard's is the same but for its id)."""
        return shard_plan(self, 0, self.slices[0]).request

    def check_quota(self) -> dict:
        """The account's vCPU quota against all the VMs (a cloud's, made once): QuotaError when the run cannot fit;
        a quota that cannot be read is a warning on stderr."""
        if self.quota is None:
            self.quota = _quota(self.cloud, self.request, len(self.slices))
            if self.quota.get("quota_fits") is None and "quota" in self.quota:
                sys.stderr.write(f"runner: warning: the vCPU quota was {self.quota['quota']}\n")
        return self.quota

    def summary(self) -> dict:
        """What `--dry-run` prints: the VMs, each one's share of the items, the prices for all of them, the quota check."""
        quota = self.check_quota()
        r = self.request
        vms = len(self.slices)
        rate = self.usd_per_hour
        summary = {
            "job_id": self.job_id, "state": "DRY_RUN", "cloud": self.cloud, "store": self.store.uri(),
            "instance_type": r.instance_type, "spot": r.spot, "max_runtime_s": r.max_runtime, "image": r.image,
            "user_data_bytes": len(r.user_data.encode()), "usd_per_hour": rate,
            "all_vms_usd_at_max_runtime": None if rate is None else round(rate * vms * r.max_runtime / 3600, 4),
        }
        with packing.packed(self.job_dir) as code:  # packed as a launch would, then deleted
            summary.update(code_bytes=code.size, code_files=code.files, code_skipped=list(code.skipped))
        quote = getattr(get_provider(self.cloud), "quote", None)  # a cloud adds its prices and zones
        quoted = quote(r) if quote else {}
        return {**summary, **quoted, **listing.describe_plan(self.items, self.slices, self.spec.vms, {**summary, **quoted}), **quota}


def _quota(cloud: str, request, vms: int) -> dict:
    """The cloud's vCPU quota check for `vms` VMs of the request's type ({} where the backend has no quota)."""
    from runner.providers import aws_quota, gcp_quota

    check = {"aws": aws_quota.check, "gcp": gcp_quota.check}.get(cloud)
    return check(get_provider(cloud), request, vms) if check else {}


def shard_spec(spec: JobSpec, parent: str, shard: str) -> JobSpec:
    """A shard's spec: the parent's, running items.sh over its own items.tsv, with no outputs of its own."""
    data = spec.model_dump(exclude={"items", "vms", "reduce"})
    inputs = {**spec.inputs, f"jobs/{parent}/items.sh": ITEMS_SH, f"jobs/{shard}/items.tsv": ITEMS_TSV,
              f"jobs/{parent}/manifest.jsonl": MANIFEST}
    data.update(command=f"bash {ITEMS_SH}", outputs={}, inputs=inputs)
    return validate(data, f"the spec of {shard}")


def shard_plan(p: FanoutPlan, k: int, items: list[Item]) -> launcher.Plan:
    """The ordinary launch plan of shard k (its items travel in items.tsv, never in user-data)."""
    sid = ids.shard_id(p.job_id, k)
    spec = shard_spec(p.spec, p.job_id, sid)
    request = launcher.request_for(spec, sid, p.cloud, p.store)
    over = _in_store(p.spec.items.over, p.store.uri()) if p.spec.items.over else None
    if over is not None:  # the items' prefix is read item by item, never pulled whole: shared, not an input
        request = replace(request, mounts=tuple(sorted({*request.mounts, over})))
    return launcher.Plan(spec, p.job_dir, sid, p.cloud, p.store, request, p.usd_per_hour)


def _in_store(uri: str, store: str) -> str | None:
    """The store-relative path of `uri` when it lies in the store (kept with its trailing '/'), else None."""
    from runner.render import resolve

    full, root = resolve(uri, store), store.rstrip("/") + "/"
    return full[len(root):] if full.startswith(root) and full != root else None


def for_vm(items: list[Item], store: str, vm_store: str) -> list[Item]:
    """The items as the VM sees them: a URI in the store is named below the store's root on the VM."""
    root, vm_root = store.rstrip("/") + "/", vm_store.rstrip("/") + "/"
    if root == vm_root:
        return items
    return [replace(i, item=vm_root + i.item[len(root):]) if i.item.startswith(root) else i for i in items]


def plan_fanout(spec: JobSpec, job_dir: Path, cloud: str, store: Store, job_id: str, usd_per_hour: float | None = None) -> FanoutPlan:
    """List and check the items, slice them over the VMs; nothing is created anywhere (a bad listing is refused here)."""
    found = listing.list_items(spec.items, job_dir, store.uri())
    wanted = spec.vms or 1
    vms = slicing.vm_count(found, wanted)
    notes = [f"runner: {wanted} VMs asked for {len(found)} items: launching {vms}"] if vms < wanted else []
    p = FanoutPlan(spec, job_dir, job_id, cloud, store, found, slicing.slices(found, vms), usd_per_hour, notes)
    for note in notes:
        sys.stderr.write(note + "\n")
    return p


def _record(p: FanoutPlan, request) -> dict:
    spec = p.spec
    reduce = getattr(spec, "reduce", None)
    outputs = outputs_at(reduce.outputs, p.store.uri(), p.job_id) if reduce else {}
    return {
        "job_id": p.job_id, "cloud": p.cloud, "spec": spec.model_dump(), "job_dir": str(p.job_dir),
        "instance_type": request.instance_type, "spot": request.spot, "created_at": jobs.utcnow(),
        "launched_by": f"{getpass.getuser()}@{socket.gethostname()}", "outputs": outputs, "usd_per_hour": p.usd_per_hour,
        "fanout": {"vms": len(p.slices), "items": len(p.items), "per_vm": spec.items.per_vm, "fetch": spec.items.fetch,
                   "reduce": reduce is not None},
    }


@dataclass
class Shard:
    """One shard as launched: its number, id, items, and its VM or why it has none."""

    k: int
    job_id: str
    items: int
    vm: str = ""
    error: str = ""


def launch_fanout(p: FanoutPlan) -> list[Shard]:
    """Write the parent's records, then launch every shard; a shard that fails to start is FAILED, the rest go on."""
    store = p.store
    p.check_quota()  # a run the account's vCPU quota cannot hold is refused before anything is created
    input_check.check(p.spec, store.uri(), p.job_dir, p.cloud)  # the parent's own inputs, before anything is created
    with packing.packed(p.job_dir) as code:  # packed once: every shard's code.tar.gz is the same bytes
        if code.skipped:
            sys.stderr.write(f"runner: not shipped from {p.job_dir}: {', '.join(code.skipped)}\n")
        store.upload(code.path, jobs.job_key(p.job_id, "code.tar.gz"))
        jobs.write_json(store, p.job_id, "job.json", _record(p, p.request))
        store.put_bytes(jobs.job_key(p.job_id, "manifest.jsonl"), listing.manifest_bytes(p.items))
        store.put_bytes(jobs.job_key(p.job_id, "items.sh"), render_items_sh(p))
        jobs.write_status(store, p.job_id, jobs.Status(jobs.PROVISIONING))
        return launch_shards(p, p.slices, 0, code.path)


def render_items_sh(p: FanoutPlan) -> bytes:
    """items.sh, rendered with the parent's folder as the VM sees the store."""
    from runner.render import render_items

    spec = p.spec
    vm_store = get_provider(p.cloud).store_for_vm(p.store.uri())
    reduce = spec.reduce
    return render_items(spec.command, p.job_id, vm_store, spec.items.per_vm, spec.items.fetch,
                        reduce.command if reduce else "", reduce.outputs if reduce else None, spec.items.retries).encode()


def launch_shards(p: FanoutPlan, slices: list[list[Item]], first: int, code: Path) -> list[Shard]:
    """Launch shard first+i over slices[i]: every shard's records first (items.tsv, job.json, startup.sh, user-data,
    PROVISIONING), then all their VMs at once where the backend can (`launch_batch`: one call per zone attempt),
    else one launch each; then each shard's instance.json, or FAILED with the reason; its `shards/<k>` record last."""
    store, provider = p.store, get_provider(p.cloud)
    shards: list[Shard] = []
    ready: list[tuple[Shard, launcher.Plan]] = []
    for i, part in enumerate(slices):
        sp = shard_plan(p, first + i, part)
        shard = Shard(first + i, sp.job_id, len(part))
        shards.append(shard)
        try:
            vm_store = provider.store_for_vm(store.uri())
            store.put_bytes(jobs.job_key(sp.job_id, "items.tsv"), listing.items_tsv(for_vm(part, store.uri(), vm_store)))
            launcher.prepare(sp, code=code, extra={"parent": p.job_id, "shard": shard.k})
            ready.append((shard, sp))
        except RunnerError as e:
            _did_not_start(store, shard, e)
    started = _start(p, provider, ready)
    for shard, sp in ready:
        got = started[shard.k]
        if isinstance(got, Instance):
            shard.vm = got.id
            jobs.write_json(store, sp.job_id, "instance.json", got.to_json())
        else:
            _did_not_start(store, shard, got)
    for shard in shards:
        record = {"shard_id": shard.job_id, "items": shard.items, "launched_at": jobs.utcnow(), "wave": first}  # wave: this launch
        store.put_bytes(jobs.job_key(p.job_id, "shards", str(shard.k)), json.dumps(record).encode())
    return shards


def _start(p: FanoutPlan, provider, ready: list[tuple[Shard, launcher.Plan]]) -> dict[int, Instance | Exception]:
    """Every ready shard's VM, or why it has none: one batch where the backend has one, else a launch per shard."""
    if len(ready) > 1 and hasattr(provider, "launch_batch"):
        batch = Batch(p.job_id, tuple(s.k for s, _ in ready), tuple(sp.request for _, sp in ready), partial(_batch_user_data, p, provider))
        try:
            return provider.launch_batch(batch)
        except RunnerError as e:  # before any VM started (the image, the settings, the credentials): every shard's reason
            return {s.k: e for s, _ in ready}
    out: dict[int, Instance | Exception] = {}
    for shard, sp in ready:
        try:
            out[shard.k] = provider.launch(sp.request)
        except RunnerError as e:
            out[shard.k] = e
    return out


def _batch_user_data(p: FanoutPlan, provider, shards: range) -> str:
    """The bootstrap every VM of one batch call shares: each finds its shard in `shards` at boot."""
    from runner.render import render_bootstrap

    vm_store = provider.store_for_vm(p.store.uri())
    return render_bootstrap(p.job_id, vm_store, p.cloud, p.spec.max_runtime, s3_endpoint=os.environ.get("RUNNER_S3_ENDPOINT", ""),
                            shards=shards, metadata_url=provider.metadata_url)


def _did_not_start(store: Store, shard: Shard, e: Exception) -> None:
    shard.error = str(e)
    jobs.write_status(store, shard.job_id, jobs.Status(jobs.FAILED, reason=f"launch failed: {e}", ended_at=jobs.utcnow()))
    sys.stderr.write(f"runner: shard {shard.k} ({shard.job_id}) did not start: {e}\n")


def shard_numbers(store: Store, parent: str) -> list[int]:
    """The parent's shards, by number, from its `shards/<k>` keys (anything else there is ignored)."""
    return children.numbers(store, parent, ids.KIND)


def read_parent(store: Store, parent: str) -> tuple[dict, JobSpec]:
    """A parent's job.json and its spec, re-validated; SpecError if it is not a fan-out job."""
    refusal = f"{parent} is not a fan-out job (its job.json has no fanout); see `runner status {parent}`"
    return children.read_parent(store, parent, ids.KIND, lambda fan: True, refusal)


def read_reduce(store: Store, parent: str) -> jobs.Status | None:
    """reduce/status.json (untrusted): None when there is none yet, UNKNOWN when it is garbage."""
    try:
        raw = store.get_bytes(jobs.job_key(parent, "reduce", "status.json"), 0, jobs.RECORD_LIMIT + 1)
    except NotFoundError:
        return None
    try:
        return jobs.Status.from_json(jobs.parse_record(raw, "reduce/status.json"))
    except jobs.RecordError as e:
        return jobs.Status(jobs.UNKNOWN, reason=str(e))


def item_counts(store: Store, parent: str, names: set[str]) -> tuple[set[str], set[str]]:
    """(done, failed) item names: one listing of the parent's items/."""
    prefix = jobs.job_key(parent, "items") + "/"
    return state.item_marks(store.list(prefix), prefix, names)


def manifest_items(store: Store, parent: str) -> list[Item]:
    """The frozen manifest, read back as untrusted."""
    return listing.read_manifest(store.get_bytes(jobs.job_key(parent, "manifest.jsonl"), 0, listing.MANIFEST_LIMIT + 1))


def settle(store: Store, parent: str, shards: list[jobs.Status], retries_left: list[int] | None = None) -> tuple[jobs.Status, state.Counts]:
    """Derive the parent's state now (one listing of items/) and, when final, write it (conditionally)."""
    record, _ = read_parent(store, parent)
    names = {i.name for i in manifest_items(store, parent)}
    done, failed = item_counts(store, parent, names)
    counts = state.counts(len(names), len(done), len(failed))
    has_reduce = bool(record["fanout"].get("reduce"))
    st = state.derive(shards, counts, read_reduce(store, parent) if has_reduce else None, has_reduce, retries_left or (), parent)
    if st.final:
        st = jobs.write_status(store, parent, st)  # a final status already there (a cancel) stays
    elif (stored := jobs.read_status(store, parent)).final:
        st = stored  # cancelled while shards were still stopping
    return st, counts


def _attempt(store: Store, sid: str) -> int:
    """The shard's launch attempt from instance.json (untrusted; 1 when it says nothing usable)."""
    try:
        n = jobs.read_json(store, sid, "instance.json").get("attempt", 1)
    except (NotFoundError, jobs.RecordError):
        return 1
    return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 99 else 1


def wait_fanout(store: Store, parent: str, poll: float = 0.5, note=None, progress=None, follow=None,
                relaunch: bool = True) -> tuple[jobs.Status, state.Counts]:
    """Wait for every shard to end (relaunching a preempted one), then write and return the derived state: see
    runner.fanout.wait."""
    from runner.fanout import wait

    return wait.wait_fanout(store, parent, poll, note, progress, follow, relaunch)


@dataclass
class Retry:
    """What `runner retry` did: the shards it launched over the missing items (or for the reduce alone)."""

    shards: list[Shard]
    missing: int
    why: str


def retry(store: Store, parent: str, vms: int | None = None) -> Retry:
    """Launch new shards (the next numbers) over the manifest's items without a done-marker; when none is
    missing but the reduce failed or never ran, one shard with no items that runs it."""
    record, spec = read_parent(store, parent)
    cloud = record["cloud"]
    from runner import watch

    known = shard_numbers(store, parent)
    running = [k for k in known if not watch.refresh(store, ids.shard_id(parent, k)).final]
    if running:
        raise RunnerError(f"{parent}: shard(s) {', '.join(map(str, running))} still running; wait for them "
                          f"(runner status {parent}) or cancel the job (runner cancel {parent}) first")
    manifest = manifest_items(store, parent)
    done, _ = item_counts(store, parent, {i.name for i in manifest})
    todo = listing.missing(manifest, done)
    original = record["fanout"].get("vms")
    cap = original if isinstance(original, int) and not isinstance(original, bool) and 1 <= original <= 1000 else 1
    if todo:
        parts = slicing.slices(todo, vms or cap)
        why = f"{len(todo)} item(s) without a result"
    elif spec.reduce is not None and (reduced := read_reduce(store, parent)) is not None and reduced.state == jobs.SUCCEEDED:
        return Retry([], 0, "every item is done and the reduce succeeded: nothing to retry")
    elif spec.reduce is not None:
        parts, why = [[]], "every item is done; the reduce runs again"
    else:
        return Retry([], 0, "every item is done: nothing to retry")
    first = (known[-1] + 1) if known else 0
    p = FanoutPlan(spec, Path(str(record.get("job_dir", "."))), parent, cloud, store, manifest, parts,
                   record.get("usd_per_hour") if isinstance(record.get("usd_per_hour"), (int, float)) else None)
    if not todo:  # the lock goes to the shard that reruns the reduce (items.sh runs it when the lock is its own)
        store.put_bytes(jobs.job_key(parent, "reduce", "lock"), ids.shard_id(parent, first).encode())
    current = jobs.read_status(store, parent)
    jobs.write_status(store, parent, jobs.Status(jobs.PROVISIONING, reason=f"retry: {why}", started_at=current.started_at),
                      replacing=current.state if current.final else None)
    with _local_copy(store, jobs.job_key(parent, "code.tar.gz")) as path:
        return Retry(launch_shards(p, parts, first, path), len(todo), why)


@contextmanager
def _local_copy(store: Store, key: str) -> Iterator[Path]:
    """The parent's code.tar.gz as a local temp file (each new shard gets the same bytes)."""
    with tempfile.TemporaryDirectory(prefix="runner-code-") as d:
        path = Path(d) / "code.tar.gz"
        store.download(key, path)
        yield path
