"""Launching a fan-out's shards on EC2 in one RunInstances call per zone attempt, paced to EC2's published rates.

Each call asks for MinCount=1, MaxCount=<the shards still unplaced>, with one bootstrap that every VM of the call
shares (the VM adds its launch index to the call's first shard number) and tags at creation that name the
fan-out (runner-fanout=<parent>). The VMs are then tagged runner-job=<their own shard's id> and Name, one CreateTags
each, in launch-index order. Shards EC2 did not place (fewer VMs than MaxCount, or a capacity error) fail over to
the next zone attempt, where the call's first shard number is the first of those left.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from datetime import datetime, timezone

from runner import aws_prices, throttle
from runner.errors import CapacityError, NotFoundError, QuotaError, RunnerError
from runner.providers.aws import TIME_FORMAT, Attempt, call, run_instances_request
from runner.providers.base import Instance
from runner.providers.batch import Batch, Result, runs, tried, unplaced
from runner.settings import AwsSettings

FANOUT_TAG = "runner-fanout"
EC2_THROTTLING = "https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html"
# EC2's token buckets, per account and region: RunInstances spends a request token per call and a resource token
# per instance; CreateTags a request token per call.
RUN_INSTANCES = throttle.Rate(1000, 2, EC2_THROTTLING)
RUN_INSTANCES_RESOURCE = throttle.Rate(1000, 2, EC2_THROTTLING)
CREATE_TAGS = throttle.Rate(100, 10, EC2_THROTTLING)
THROTTLED = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
NOT_LISTED_YET = (1.0, 2.0, 4.0)  # a new instance's id may be unknown to CreateTags for a moment (eventual consistency)


# ---- pure

def batch_token(parent: str, shards: list[int], launch: int, attempt: Attempt) -> str:
    """One call's ClientToken: the same call retried (same shards, zone and market) cannot start its VMs twice; another
    call (other shards, another attempt, a relaunch) is a new one. 40 hex digits, within EC2's 64."""
    key = f"batch/{parent}/{shards[0]}-{shards[-1]}/{launch}/{attempt.market}/{attempt.zone}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def batch_request(b: Batch, shards: list[int], cfg: AwsSettings, image: Mapping, attempt: Attempt) -> dict:
    """The run_instances kwargs for `shards` (consecutive numbers) in one call: shard k is the VM of launch index k - shards[0]."""
    req = b.request(shards[0])
    kw = run_instances_request(req, cfg, image, attempt)
    shared = {k: v for k, v in req.tags.items() if k != "runner-job"}
    tags = [{"Key": k, "Value": v} for k, v in {"Name": b.parent, **shared, FANOUT_TAG: b.parent}.items()]
    kw.update(MinCount=1, MaxCount=len(shards), UserData=b.user_data(range(shards[0], shards[-1] + 1)),
              TagSpecifications=[{"ResourceType": r, "Tags": tags} for r in ("instance", "volume")],
              ClientToken=batch_token(b.parent, shards, req.attempt, attempt))
    return kw


def launch_index(i: Mapping, position: int) -> object:
    """The VM's AmiLaunchIndex (what its IMDS tells its bootstrap); where an answer lacks it, its place in the answer."""
    return i.get("AmiLaunchIndex", position)


def placed(shards: list[int], instances: list[Mapping]) -> list[tuple[int, Mapping]]:
    """(shard, instance) for each VM a call started: shard = shards[its launch index]; an index out of range, or
    one that two VMs claim, is dropped (such a VM is no shard's)."""
    indexed = [(launch_index(i, n), i) for n, i in enumerate(instances)]
    counts: dict[object, int] = {}
    for index, _ in indexed:
        counts[index] = counts.get(index, 0) + 1
    return sorted(((shards[index], i) for index, i in indexed
                   if isinstance(index, int) and 0 <= index < len(shards) and counts[index] == 1), key=lambda p: p[0])


def throttled(e: Exception) -> bool:
    return getattr(e, "code", "") in THROTTLED


# ---- acting

def launch_batch(provider, b: Batch) -> dict[int, Result]:
    """Start every shard of `b`: {shard: its Instance, or the error that left it without one}."""
    cfg, ec2, image, attempts, fallback = provider._prepare(b.reqs[0])
    out: dict[int, Result] = {}
    for run in runs(b.numbers):
        out.update(_launch_run(provider, b, run, cfg, ec2, image, attempts, fallback))
    return out


def _paced(cfg: AwsSettings, action: str, rate: throttle.Rate, what: str, fn, resources: int = 0, resource_rate=None):
    """fn() after the tokens it spends are there, retried with backoff while EC2 answers RequestLimitExceeded."""
    def once():
        throttle.bucket(("aws", cfg.region, action), rate).take(1)
        if resources:
            throttle.bucket(("aws", cfg.region, action, "resource"), resource_rate).take(resources)
        return fn()

    return throttle.retrying(once, throttled, what, note=lambda m: sys.stderr.write(m + "\n"))


def _launch_run(provider, b: Batch, run: list[int], cfg, ec2, image, attempts: list[Attempt], fallback: bool) -> dict[int, Result]:
    """Consecutive shards: one RunInstances per attempt for those still unplaced, until none is left or no attempt is."""
    req = b.request(run[0])
    out: dict[int, Result] = {}
    failed: list[tuple[Attempt, CapacityError]] = []
    left = list(run)
    for a in attempts:
        if not left:
            break
        if a.market == "spot" and any(isinstance(e, QuotaError) for _, e in failed):
            continue  # the spot quota is per region: no zone will do
        what = f"EC2 RunInstances ({len(left)} x {req.instance_type} {a}, {cfg.region})"
        kw = batch_request(b, left, cfg, image, a)
        try:
            resp = _paced(cfg, "RunInstances", RUN_INSTANCES, what,
                          lambda kw=kw, what=what, a=a: call(what, ec2.run_instances, scope=a.zone or cfg.region, **kw),
                          resources=len(left), resource_rate=RUN_INSTANCES_RESOURCE)
        except CapacityError as e:
            failed.append((a, e))
            if isinstance(e, QuotaError) and a.market != "spot":
                break  # the on-demand quota is per region too: no other attempt will do
            continue
        except RunnerError as e:  # not capacity (credentials, settings): no other attempt will do better
            return {**out, **{k: e for k in left}}
        started = resp.get("Instances") or []
        got = placed(left, started)
        for k, i in got:
            out[k] = _own(provider, b, k, i, a, cfg, image, failed)
        mine = {i["InstanceId"] for _, i in got}
        for i in started:
            if i["InstanceId"] not in mine:  # a VM no shard can claim: it would not know which it is
                _terminate(ec2, i["InstanceId"], cfg)
        done = {k for k, _ in got}
        if len(done) < len(left):
            short = CapacityError(f"{what}: EC2 started {len(done)} of {len(left)}", scope=a.zone or cfg.region)
            short.code = f"placed {len(done)} of {len(left)}"  # type: ignore[attr-defined]
            failed.append((a, short))
        left = [k for k in left if k not in done]
    return {**out, **unplaced(left, failed, req, fallback, f" in {cfg.region}", "type or region", cfg.region)}


def _own(provider, b: Batch, k: int, i: Mapping, a: Attempt, cfg, image, failed) -> Result:
    """Tag the VM runner-job=<shard k's id> (and Name); a VM that cannot be tagged is terminated and the shard has none."""
    sid = b.request(k).job_id
    ec2 = provider.client("ec2", cfg.region)
    iid = i["InstanceId"]
    what = f"EC2 CreateTags {iid} runner-job={sid} ({cfg.region})"
    tags = [{"Key": "runner-job", "Value": sid}, {"Key": "Name", "Value": sid}]
    try:
        for wait in (*NOT_LISTED_YET, None):
            try:
                _paced(cfg, "CreateTags", CREATE_TAGS, what, lambda: call(what, ec2.create_tags, Resources=[iid], Tags=tags))
                break
            except NotFoundError:
                if wait is None:
                    raise
                throttle.sleep(wait)
    except RunnerError as e:  # untagged, no runner command would ever find it: it goes now
        gone = _terminate(ec2, iid, cfg)
        return RunnerError(f"{e}; its instance {iid} was terminated" if gone is None else
                           f"{e}; and terminating the untagged instance {iid} failed too: {gone} (terminate it yourself)")
    price = a.price if a.market == "spot" else (aws_prices.on_demand(cfg.region, b.request(k).instance_type) or (None,))[0]
    launched = i.get("LaunchTime") if isinstance(i.get("LaunchTime"), datetime) else datetime.now(timezone.utc)
    data = {
        "region": cfg.region, "market": a.market, "image": image["ImageId"], "instance_type": b.request(k).instance_type,
        "subnet": i.get("SubnetId", ""), "usd_per_hour": price, "tried": tried(failed),
        "launched_at": launched.astimezone(timezone.utc).strftime(TIME_FORMAT), "fanout": b.parent,
        "launch_index": i.get("AmiLaunchIndex", 0),
    }
    return Instance(provider.name, iid, sid, i.get("Placement", {}).get("AvailabilityZone", a.zone), data)


def _terminate(ec2, iid: str, cfg) -> RunnerError | None:
    """Terminate an instance this launch just started (its id is from our own RunInstances answer); the error, if any."""
    try:
        call(f"EC2 TerminateInstances {iid} ({cfg.region})", ec2.terminate_instances, InstanceIds=[iid])
    except RunnerError as e:
        sys.stderr.write(f"runner: could not terminate instance {iid}, which no shard can claim: {e} (terminate it yourself)\n")
        return e
    return None
