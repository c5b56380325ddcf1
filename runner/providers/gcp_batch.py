"""Launching a fan-out's shards on GCE with one instances.bulkInsert per zone attempt, paced to GCE's rate quotas.

A bulkInsert names each VM (perInstanceProperties: runner-<shard id>, so a VM reads its shard from its own name at
boot) and shares the rest: machine, disks, the batch's bootstrap, the label and metadata runner-fanout=<parent>.
minCount 1: GCE creates as many as it can, and the zone's VMs labelled with the fan-out say which. Each is then
labelled runner-job=<its shard's id> (setLabels, with the fingerprint that listing gave); the shards GCE did not
create fail over to the next zone attempt. A VM of a batch has no runner-job metadata: its job id is the shard of
its runner-fanout metadata that its runner-job label spells (job_of), which is what every owner check compares.
"""

from __future__ import annotations

import copy
import re
import sys
import uuid

from runner import throttle
from runner.errors import CapacityError, QuotaError, RunnerError, SpecError
from runner.fanout import ids
from runner.providers import gcp_prices
from runner.providers.base import Instance
from runner.providers.batch import Batch, Result, span, tried, unplaced
from runner.providers.gcp_api import call
from runner.providers.gcp_build import LABEL, Attempt, GcpSettings, instance_body, instance_name, label_value, region_of

FANOUT = "runner-fanout"
GCE_QUOTAS = "https://cloud.google.com/compute/api-quota"
PER_MINUTE = 1500  # GCE's default per-project rate quota of a method group, per minute
# A bucket of half the minute's quota refilled over two minutes never sends more than the quota in any 60 s
# (GCE counts per minute, from the start of each minute).
MUTATIONS = throttle.Rate(PER_MINUTE / 2, PER_MINUTE / 120, GCE_QUOTAS)
THROTTLED = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RESOURCE_OPERATION_RATE_EXCEEDED"})
BACKOFF = (5.0, 15.0, 30.0, 60.0)  # GCE refills a rate quota at the next minute
SHARD_LABEL_RE = re.compile(r"--s(0|[1-9][0-9]{0,5})-[0-9]{8}t[0-9]{6}z-[0-9a-f]{6}\Z")


# ---- pure

def bulk_body(b: Batch, shards: list[int], cfg: GcpSettings, image: str, attempt: Attempt) -> dict:
    """The compute_v1.BulkInsertInstanceResource (as a dict) for `shards` in one zone: one named VM each."""
    one = instance_body(b.request(shards[0]), cfg, image, attempt)
    labels = {**{k: v for k, v in one["labels"].items() if k != LABEL}, FANOUT: label_value(b.parent)}
    props = {k: copy.deepcopy(v) for k, v in one.items() if k != "name"}
    props.update(machine_type=b.request(shards[0]).instance_type, labels=labels)  # a template's names, not zone paths
    for disk in props["disks"]:
        init = disk.get("initialize_params") or {}
        if "disk_type" in init:
            init["disk_type"] = init["disk_type"].rsplit("/", 1)[-1]
        if "labels" in init:
            init["labels"] = labels
    items = [i for i in props["metadata"]["items"] if i["key"] not in ("user-data", LABEL)]
    props["metadata"] = {"items": [{"key": "user-data", "value": b.user_data(span(shards))}, *items, {"key": FANOUT, "value": b.parent}]}
    return {"count": len(shards), "min_count": 1, "instance_properties": props,
            "per_instance_properties": {instance_name(b.request(k).job_id): {} for k in shards}}


def bulk_request_id(parent: str, shards: list[int], launch: int, attempt: Attempt) -> str:
    """The same bulkInsert retried cannot create its VMs twice; another (other shards, zone, market or launch) is new."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"runner/batch/{parent}/{','.join(map(str, shards))}/{launch}/{attempt.market}/{attempt.zone}"))


def job_of(meta: dict, labels: dict) -> str:
    """A VM's job id: its runner-job metadata; for a VM of a batch (no such metadata), the shard of its runner-fanout
    metadata whose id its runner-job label spells; else the label itself ('' when it has none)."""
    if meta.get(LABEL):
        return meta[LABEL]
    label, parent = labels.get(LABEL, ""), meta.get(FANOUT, "")
    m = SHARD_LABEL_RE.search(label)
    if parent and m:
        try:
            sid = ids.shard_id(parent, int(m[1]))
        except SpecError:
            return label
        if label_value(sid) == label:
            return sid
    return label


def owned_by(meta: dict, labels: dict, job_id: str) -> bool:
    """Whether a VM is job_id's: its runner-job label, and its runner-job (or, for a batch's VM, runner-fanout) metadata."""
    if labels.get(LABEL) != label_value(job_id):
        return False
    if LABEL in meta:
        return meta[LABEL] == job_id
    return FANOUT not in meta or job_of(meta, labels) == job_id


def throttled(e: Exception) -> bool:
    return getattr(e, "code", "") in THROTTLED


# ---- acting

def _paced(project: str, what: str, fn):
    """fn() once a token of the project's bucket is there, retried with backoff while GCE answers rateLimitExceeded."""
    def once():
        throttle.bucket(("gcp", project, "mutations"), MUTATIONS).take(1)
        return fn()

    return throttle.retrying(once, throttled, what, delays=BACKOFF, note=lambda m: sys.stderr.write(m + "\n"))


def launch_batch(provider, b: Batch) -> dict[int, Result]:
    """Start every shard of `b`: {shard: its Instance, or the error that left it without one}."""
    from google.cloud import compute_v1

    req = b.reqs[0]
    cfg, project, image, attempts, fallback = provider._prepare(req)
    swept = provider.sweep()
    out: dict[int, Result] = {}
    failed: list[tuple[Attempt, CapacityError]] = []
    blocked: set[tuple[str, str]] = set()
    left = sorted(b.numbers)
    vms = provider.client("InstancesClient")
    for a in attempts:
        if not left:
            break
        if {(a.market, region_of(a.zone)), (a.market, "global")} & blocked:
            continue  # quotas are per region (or global): no other zone there will do
        what = f"GCE instances.bulkInsert ({len(left)} x {req.instance_type} {a}, project {project})"
        body = compute_v1.BulkInsertInstanceResource(bulk_body(b, left, cfg, image["link"], a))
        request = compute_v1.BulkInsertInstanceRequest(project=project, zone=a.zone, bulk_insert_instance_resource_resource=body,
                                                       request_id=bulk_request_id(b.parent, left, req.attempt, a))
        try:
            op = _paced(project, what, lambda request=request, what=what, a=a: call(what, vms.bulk_insert_unary, at=a.zone, request=request))
            provider.wait(op, project, a.zone, what)
        except CapacityError as e:
            failed.append((a, e))
            if isinstance(e, QuotaError):
                blocked.add((a.market, "global" if e.scope == "global" else region_of(a.zone)))
            continue
        except RunnerError as e:  # not capacity (credentials, settings): no other attempt will do better
            return {**out, **{k: e for k in left}}
        try:
            made = _created(provider, b, left, project, a.zone)
        except RunnerError as e:  # which VMs exist is unknown: none may run unlabelled, so each asked for goes
            for k in left:
                _delete(provider, project, a.zone, instance_name(b.request(k).job_id))
            return {**out, **{k: RunnerError(f"{e}; the VMs this bulkInsert may have created were deleted") for k in left}}
        for k, vm in made.items():
            out[k] = _own(provider, b, k, vm, project, a, image, tried(failed), swept)
        if len(made) < len(left):
            short = CapacityError(f"{what}: GCE created {len(made)} of {len(left)}", scope=a.zone)
            short.code = f"created {len(made)} of {len(left)}"  # type: ignore[attr-defined]
            short.detail = ""  # type: ignore[attr-defined]
            failed.append((a, short))
        left = [k for k in left if k not in made]
    return {**out, **unplaced(left, failed, req, fallback, "", "type, zone or region", region_of(attempts[0].zone))}


def _created(provider, b: Batch, shards: list[int], project: str, zone: str) -> dict[int, object]:
    """{shard: its compute_v1.Instance} for the shards whose VM a bulkInsert created in `zone` (one list call)."""
    names = {instance_name(b.request(k).job_id): k for k in shards}
    vms = provider.client("InstancesClient")
    request = {"project": project, "zone": zone, "filter": f'labels.{FANOUT} = "{label_value(b.parent)}"'}
    found = call(f"GCE instances.list ({zone})", lambda: list(vms.list(request=request)), at=zone)
    return {names[vm.name]: vm for vm in found if vm.name in names and vm.labels.get(FANOUT) == label_value(b.parent)}


def _own(provider, b: Batch, k: int, vm, project: str, a: Attempt, image: dict, tried: list[str], swept: list[str]) -> Result:
    """Label the VM runner-job=<shard k's id>; a VM that cannot be labelled is deleted and the shard has none."""
    from google.cloud import compute_v1

    sid, zone = b.request(k).job_id, a.zone
    vms = provider.client("InstancesClient")
    what = f"GCE instances.setLabels {vm.name} {LABEL}={label_value(sid)} ({zone})"
    labels = compute_v1.InstancesSetLabelsRequest(labels={**vm.labels, LABEL: label_value(sid)}, label_fingerprint=vm.label_fingerprint)
    try:
        op = _paced(project, what, lambda: call(what, vms.set_labels_unary, at=zone, project=project, zone=zone, instance=vm.name,
                                                instances_set_labels_request_resource=labels))
        provider.wait(op, project, zone, what)
    except RunnerError as e:  # unlabelled, no runner command would ever find it: it goes now
        gone = _delete(provider, project, zone, vm.name)
        return RunnerError(f"{e}; its VM {vm.name} was deleted" if gone is None else
                           f"{e}; and deleting the unlabelled VM {vm.name} failed too: {gone} (delete it yourself)")
    price = gcp_prices.on_demand(region_of(zone), b.request(k).instance_type)
    data = {
        "project": project, "zone": zone, "name": vm.name, "instance_id": str(vm.id or ""), "market": a.market,
        "image": image["name"], "machine_type": b.request(k).instance_type, "fanout": b.parent,
        "usd_per_hour": price[0] if price and a.market == "standard" else None, "tried": tried, "swept": swept,
    }
    return Instance(provider.name, vm.name, sid, zone, data)


def _delete(provider, project: str, zone: str, name: str) -> RunnerError | None:
    """Delete a VM this launch named and just created (gone already is fine); the error, if any."""
    try:
        provider.delete(project, zone, name)
    except RunnerError as e:
        sys.stderr.write(f"runner: could not delete VM {name} in {zone}, which no shard can claim: {e} (delete it yourself)\n")
        return e
    return None
