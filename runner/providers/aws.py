"""The AWS backend: one EC2 instance per job, booted from the baked AMI, tagged runner-job=<id>.

Spot is tried zone by zone, cheapest first (describe_spot_price_history), then on-demand only if
the user allowed it. Cloud errors are classified by code here, at the edge. Region, instance
profile, subnets and security group come from runner.settings; credentials from the standard AWS
chain; AWS_ENDPOINT_URL is honoured by boto3 itself. boto3 is imported only when a call is made.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from runner import aws_prices, images, settings
from runner.errors import CapacityError, NotFoundError, NotOwnedError, QuotaError, SpecError
from runner.providers import aws_disks, aws_network
from runner.providers.aws_errors import call, classify, translate  # noqa: F401 (the backend's error edge)
from runner.providers.base import Instance, InstanceState, LaunchRequest
from runner.settings import AwsSettings
from runner.store import split_uri

DEFAULT_TYPE = "m6i.large"
IMAGE_PREFIX = "runner-"  # images/ names AMIs runner-<timestamp> (and tags them runner-image=1)
TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+\Z")
ALIVE = ("pending", "running", "stopping", "stopped")
INSTANCE_ID_RE = re.compile(r"i-[0-9a-f]{8,17}")
REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
NEW_GRACE = 300.0  # s: how long a new instance may be missing from DescribeInstances (eventual consistency)
CLOCK_SKEW = 120.0  # s: a launch time this far ahead of our clock is still believed
PREEMPTION = frozenset({"Server.SpotInstanceTermination", "Server.SpotInstanceShutdown"})


@dataclass(frozen=True)
class Attempt:
    """One run_instances try: a market and a zone ('' lets EC2 pick), the zone's subnet and spot price."""

    market: str  # "spot" or "on-demand"
    zone: str = ""
    subnet: str = ""
    price: float | None = None

    def __str__(self) -> str:
        price = f" (${self.price:.4f}/h)" if self.price is not None else ""
        return f"{self.market} in {self.zone or 'any zone'}{price}"


# ---- pure: spec -> requests, responses -> answers (unit-tested without a cloud)

def plan_attempts(spot: bool, fallback: bool, zone: str | None, subnet_zones: Mapping[str, str],
                  spot_prices: Mapping[str, float]) -> list[Attempt]:
    """The order to try: spot zones cheapest first (unpriced last), then on-demand if allowed."""
    by_zone: dict[str, str] = {}
    for subnet, z in subnet_zones.items():
        by_zone.setdefault(z, subnet)
    zones = list(by_zone) or None
    if zone:
        if zones is not None and zone not in by_zone:
            raise SpecError(f"zone {zone} has none of the configured subnets (they are in {', '.join(zones)})")
        zones = [zone]
    out = []
    if spot:
        order = sorted(zones if zones is not None else spot_prices, key=lambda z: (spot_prices.get(z, float("inf")), z))
        out += [Attempt("spot", z, by_zone.get(z, ""), spot_prices.get(z)) for z in order] or [Attempt("spot")]
    if not spot or fallback:
        out += [Attempt("on-demand", z, by_zone.get(z, "")) for z in zones or [""]]
    return out


def run_instances_request(req: LaunchRequest, cfg: AwsSettings, image: Mapping, attempt: Attempt, groups: tuple[str, ...] = ()) -> dict:
    """The exact run_instances kwargs for one attempt; `groups` are security groups besides the configured one (a cluster's)."""
    tags = [{"Key": k, "Value": v} for k, v in {"Name": req.job_id, **req.tags, "runner-job": req.job_id}.items()]
    kw: dict = {
        "ImageId": image["ImageId"],
        "InstanceType": req.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": req.user_data,
        "InstanceInitiatedShutdownBehavior": "terminate",  # the script's poweroff ends the bill
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
        "BlockDeviceMappings": [{
            "DeviceName": image.get("RootDeviceName") or "/dev/xvda",
            "Ebs": {"VolumeSize": req.disk_gb, "VolumeType": "gp3", "DeleteOnTermination": True, **aws_disks.root_volume(req).ebs()},
        }],
        "TagSpecifications": [{"ResourceType": r, "Tags": tags} for r in ("instance", "volume")],
        "ClientToken": client_token(req, attempt),
    }
    if cfg.instance_profile:
        p = cfg.instance_profile
        kw["IamInstanceProfile"] = {"Arn": p} if p.startswith("arn:") else {"Name": p}
    if attempt.subnet:
        kw["SubnetId"] = attempt.subnet
    elif attempt.zone:
        kw["Placement"] = {"AvailabilityZone": attempt.zone}
    if cfg.security_group or groups:
        kw["SecurityGroupIds"] = [g for g in (cfg.security_group, *groups) if g]
    if attempt.market == "spot":
        kw["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        }
    return kw


def client_token(req: LaunchRequest, attempt: Attempt) -> str:
    """RunInstances' idempotency token: a retried call (a timeout) cannot start a second VM, a relaunch starts a new one.

    EC2 answers a repeated token with the first call's instance for 24 h, dead or alive, so the launch
    attempt (1, then 2 after a preemption, ...) is part of it; 40 hex digits, within EC2's 64.
    """
    key = f"{req.job_id}/{req.attempt}/{attempt.market}/{attempt.zone}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def newest_image(found: list[Mapping]) -> Mapping | None:
    return max(found, key=lambda i: (i.get("CreationDate", ""), i.get("Name", "")), default=None)


def type_arch(instance_type: str) -> str:
    """'c7g.large' -> 'arm64' (Graviton: a 'g' after the generation digit), 'm6i.large' -> 'x86_64'."""
    family = instance_type.partition(".")[0]
    m = re.match(r"^[a-z]+\d+([a-z-]*)\Z", family)
    return "arm64" if family == "a1" or (m and "g" in m[1]) else "x86_64"


def check_fit(req: LaunchRequest, image: Mapping) -> None:
    """The instance type and disk size fit the image; SpecError before anything starts."""
    arch = image.get("Architecture")
    if arch and arch != type_arch(req.instance_type):
        raise SpecError(f"{req.instance_type} is {type_arch(req.instance_type)} but image {image['ImageId']} is {arch}: pick a matching type")
    for bdm in image.get("BlockDeviceMappings") or []:
        size = (bdm.get("Ebs") or {}).get("VolumeSize")
        if bdm.get("DeviceName") == image.get("RootDeviceName") and size and req.disk_gb < size:
            raise SpecError(f"disk_gb {req.disk_gb} is smaller than image {image['ImageId']}'s {size} GB root volume")


def not_listed(inst: Instance, now: datetime) -> InstanceState:
    """An instance DescribeInstances does not know: still starting while younger than NEW_GRACE, else gone.

    EC2 is eventually consistent: right after RunInstances, DescribeInstances may answer
    InvalidInstanceID.NotFound. The launch time comes from the store, so a time in the future is not believed.
    """
    launched = parse_time(inst.data.get("launched_at"))
    age = (now - launched).total_seconds() if launched else None
    if age is not None and -CLOCK_SKEW <= age <= NEW_GRACE:
        return InstanceState(True, f"EC2 instance {inst.id} is not listed yet ({int(age)} s after its launch): still starting")
    return InstanceState(False, f"EC2 no longer lists instance {inst.id}, and the job never wrote a final status")


def parse_time(value: object) -> datetime | None:
    """'2024-01-01T00:00:00Z' -> an aware datetime; None for anything else."""
    try:
        return datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def owner_check(inst: Instance, found: list[Mapping]) -> None:
    """NotOwnedError unless the described instance carries runner-job=<inst.job_id>."""
    tags = {t.get("Key"): t.get("Value") for d in found for t in d.get("Tags") or []}
    if tags.get("runner-job") != inst.job_id or len(found) != 1:
        has = f"its runner-job tag is {tags['runner-job']!r}" if "runner-job" in tags else "it has no runner-job tag"
        raise NotOwnedError(
            f"EC2 instance {inst.id} does not carry the tag runner-job={inst.job_id} ({has}): runner leaves it alone; "
            "the job's records name a VM that is not the job's own (terminate it yourself if it should go)"
        )


def instance_state(desc: Mapping) -> InstanceState:
    """A describe_instances entry -> alive, or gone and why (a spot reclaim is `preempted`)."""
    name = desc["State"]["Name"]
    if name in ALIVE:
        return InstanceState(alive=True, reason=name)
    sr = desc.get("StateReason") or {}
    why = sr.get("Message") or sr.get("Code") or desc.get("StateTransitionReason") or "no reason given"
    if sr.get("Code") in PREEMPTION:
        return InstanceState(False, f"EC2 reclaimed spot instance {desc['InstanceId']} ({why})", preempted=True)
    return InstanceState(False, f"EC2 instance {desc['InstanceId']} is {name} ({why}) and never wrote a final status")


def region_of(zone: str | None) -> str | None:
    return zone[:-1] if zone and zone[-1].isalpha() else None


class AwsProvider:
    name = "aws"
    default_instance_type = DEFAULT_TYPE
    interruption = "aws"  # the startup script watches IMDSv2 spot/instance-action
    metadata_url = "http://169.254.169.254"
    state_every = 15.0  # seconds between EC2 checks while waiting (describe calls are rate-limited)

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], object] = {}

    def client(self, service: str, region: str):
        """A boto3 client, made once per provider, service and region."""
        if (service, region) not in self._clients:
            import boto3
            from botocore.config import Config

            conf = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=10, read_timeout=60)
            self._clients[(service, region)] = boto3.client(service, region_name=region, config=conf)
        return self._clients[(service, region)]

    def load_settings(self, req: LaunchRequest | None = None) -> AwsSettings:
        return AwsSettings.load(req and (req.region or region_of(req.zone)))

    def check_request(self, req: LaunchRequest) -> None:
        """Offline checks only (the type's shape, region, instance profile); `render` calls this too."""
        if not TYPE_RE.match(req.instance_type):
            raise SpecError(f"{req.instance_type!r} is not an EC2 instance type (e.g. {DEFAULT_TYPE}, c6i.32xlarge)")
        if req.image and not req.image.startswith("ami-"):
            raise SpecError(f"--image {req.image!r} is not an AMI id (ami-...)")
        aws_disks.root_volume(req)  # gp3's limits and the disk fields AWS takes
        cfg = self.load_settings(req)
        if not cfg.region:
            raise SpecError(f"no AWS region: pass --region, or set RUNNER_AWS_REGION, AWS_REGION or [aws] region in {settings.path()}")
        if req.zone and region_of(req.zone) != cfg.region:
            raise SpecError(f"zone {req.zone} is not in region {cfg.region}")
        if not cfg.instance_profile:
            raise SpecError(
                "no instance profile: the VM needs one to read and write the store; set RUNNER_AWS_INSTANCE_PROFILE "
                f"or [aws] instance_profile in {settings.path()} (docs/aws.md shows its policy)"
            )

    def store_for_vm(self, store: str) -> str:
        scheme = split_uri(store)[0]
        if scheme != "s3":
            raise SpecError(
                f"an EC2 VM cannot reach the store {store} ({scheme}:// is {'a folder on this machine' if scheme == 'file' else 'not S3'}): "
                f"set RUNNER_STORE=s3://bucket/prefix (or store = \"s3://...\" in {settings.path()})"
            )
        return store

    def resolve_image(self, ec2, region: str, explicit: str | None) -> dict:
        """--image, else the Packer manifest's AMI for the region, else the newest runner-* AMI we own."""
        ami = explicit or images.from_manifest("amazon-ebs", region)
        if ami:
            found = call(f"EC2 DescribeImages {ami} ({region})", ec2.describe_images, ImageIds=[ami])["Images"]
            if not found:
                raise NotFoundError(f"AMI {ami} does not exist in {region}: rebuild with `make image CLOUD=aws`")
            return {**found[0], "source": "--image" if explicit else f"the Packer manifest {images.manifest_path()}"}
        filters = [{"Name": "name", "Values": [IMAGE_PREFIX + "*"]}, {"Name": "state", "Values": ["available"]}]
        found = call(f"EC2 DescribeImages ({region})", ec2.describe_images, Owners=["self"], Filters=filters)["Images"]
        image = newest_image(found)
        if image is None:
            raise NotFoundError(
                f"no runner image in {region}: none in the Packer manifest ({images.manifest_path()}) and no AMI named "
                f"{IMAGE_PREFIX}* owned by this account; build one with `make image CLOUD=aws`, or pass --image ami-..."
            )
        return {**image, "source": f"newest {IMAGE_PREFIX}* AMI owned by this account"}

    def subnet_zones(self, ec2, cfg: AwsSettings) -> dict[str, str]:
        if not cfg.subnets:
            return {}
        found = call(f"EC2 DescribeSubnets ({cfg.region})", ec2.describe_subnets, SubnetIds=list(cfg.subnets))["Subnets"]
        zone = {s["SubnetId"]: s["AvailabilityZone"] for s in found}
        return {s: zone[s] for s in cfg.subnets if s in zone}

    def spot_prices(self, ec2, region: str, instance_type: str) -> dict[str, float]:
        rows = call(
            f"EC2 DescribeSpotPriceHistory ({instance_type}, {region})", ec2.describe_spot_price_history,
            InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX"], StartTime=datetime.now(timezone.utc),
        )["SpotPriceHistory"]
        return aws_prices.latest_spot(rows)

    def _prepare(self, req: LaunchRequest):
        cfg = self.load_settings(req)
        ec2 = self.client("ec2", cfg.region)
        image = self.resolve_image(ec2, cfg.region, req.image)
        check_fit(req, image)
        prices = self.spot_prices(ec2, cfg.region, req.instance_type) if req.spot else {}
        fallback = cfg.spot_fallback if req.spot_fallback is None else req.spot_fallback
        attempts = plan_attempts(req.spot, fallback, req.zone, self.subnet_zones(ec2, cfg), prices)
        return cfg, ec2, image, attempts, fallback

    def launch(self, req: LaunchRequest) -> Instance:
        cfg, ec2, image, attempts, fallback = self._prepare(req)
        groups = (aws_network.group_id(self, ec2, cfg, req.network_tag),) if req.network_tag else ()  # a cluster node's
        failed: list[tuple[Attempt, CapacityError]] = []
        for a in attempts:
            if a.market == "spot" and any(isinstance(e, QuotaError) for _, e in failed):
                continue  # the spot quota is per region: no zone will do
            what = f"EC2 RunInstances ({req.instance_type} {a}, {cfg.region})"
            try:
                resp = call(what, ec2.run_instances, scope=a.zone or cfg.region, **run_instances_request(req, cfg, image, a, groups))
            except CapacityError as e:
                if isinstance(e, QuotaError) and a.market != "spot":
                    raise
                failed.append((a, e))
                continue
            i = resp["Instances"][0]
            price = a.price if a.market == "spot" else (aws_prices.on_demand(cfg.region, req.instance_type) or (None,))[0]
            launched = i.get("LaunchTime") if isinstance(i.get("LaunchTime"), datetime) else datetime.now(timezone.utc)
            data = {
                "region": cfg.region, "market": a.market, "image": image["ImageId"], "instance_type": req.instance_type,
                "subnet": i.get("SubnetId", ""), "usd_per_hour": price, "tried": [f"{f}: {e.code}" for f, e in failed],
                "launched_at": launched.astimezone(timezone.utc).strftime(TIME_FORMAT),
            }
            return Instance(self.name, i["InstanceId"], req.job_id, i.get("Placement", {}).get("AvailabilityZone", a.zone), data)
        tried = "; ".join(f"{f}: {e.code}" for f, e in failed)
        hint = "allow on-demand with --spot-fallback, or " if req.spot and not fallback else ""
        kind = QuotaError if failed and all(isinstance(e, QuotaError) for _, e in failed) else CapacityError
        raise kind(f"could not start a {req.instance_type} in {cfg.region}: tried {tried}; {hint}try another type or region", scope=cfg.region)

    def launch_batch(self, batch) -> dict:
        """A fan-out's shards in one RunInstances call per zone attempt: see runner.providers.aws_batch."""
        from runner.providers.aws_batch import launch_batch

        return launch_batch(self, batch)

    def quote(self, req: LaunchRequest) -> dict:
        """What `--dry-run` adds: the image, the order of zones, hourly prices and the most it can cost."""
        cfg, _, image, attempts, fallback = self._prepare(req)
        od = aws_prices.on_demand(cfg.region, req.instance_type)
        vol = aws_disks.root_volume(req)
        spot = min((a.price for a in attempts if a.price is not None), default=None)
        return {
            "region": cfg.region,
            "image": f"{image['ImageId']} ({image.get('Name', '')}; {image['source']})",
            "attempts": ", then ".join(str(a) for a in attempts),
            "spot_usd_per_hour": spot,
            "on_demand_usd_per_hour": od[0] if od else None,
            "on_demand_price": od[1] if od else f"unknown: {req.instance_type} is not in {aws_prices.TABLE.name} (`make prices` refreshes it)",
            "on_demand_prices_as_of": aws_prices.as_of(),
            "max_cost_spot_usd": aws_prices.cost(spot, req.max_runtime, req.disk_gb, vol.mibps, vol.iops) if req.spot else None,
            "max_cost_on_demand_usd": aws_prices.cost(od and od[0], req.max_runtime, req.disk_gb, vol.mibps, vol.iops) if (not req.spot or fallback) else None,
            "cost_note": f"at max runtime ({req.max_runtime} s), with the {req.disk_gb} GB gp3 root volume",
            **aws_disks.quote(vol, req.max_runtime),
        }

    def _ec2_of(self, inst: Instance):
        """The EC2 client for the instance's region (recorded in instance.json, so checked), and the region."""
        region = str(inst.data.get("region") or self.load_settings().region)
        if not REGION_RE.fullmatch(region):
            raise SpecError(f"instance.json of {inst.job_id} names region {region[:40]!r}, which is not an AWS region")
        return self.client("ec2", region), region

    def _describe(self, inst: Instance) -> list[dict] | None:
        """DescribeInstances of the one instance; None when EC2 does not know it."""
        ec2, region = self._ec2_of(inst)
        if not INSTANCE_ID_RE.fullmatch(inst.id):
            raise NotOwnedError(f"{inst.id[:40]!r} in instance.json of {inst.job_id} is not an EC2 instance id: runner leaves it alone")
        try:
            resp = call(f"EC2 DescribeInstances {inst.id} ({region})", ec2.describe_instances, InstanceIds=[inst.id])
        except NotFoundError:
            return None
        return [i for r in resp["Reservations"] for i in r["Instances"]] or None

    def state(self, inst: Instance) -> InstanceState:
        found = self._describe(inst)
        return instance_state(found[0]) if found else not_listed(inst, datetime.now(timezone.utc))

    def find(self, tags: Mapping[str, str], region: str | None = None) -> list[Instance]:
        region = region or self.load_settings().region
        ec2 = self.client("ec2", region)
        filters = [{"Name": "tag-key", "Values": [k]} if v == "*" else {"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        filters.append({"Name": "instance-state-name", "Values": list(ALIVE)})
        pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
        found = []
        for page in call(f"EC2 DescribeInstances ({region})", lambda: list(pages)):
            for r in page["Reservations"]:
                for i in r["Instances"]:
                    tag = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                    data = {"region": region, "market": i.get("InstanceLifecycle", "on-demand"), "instance_type": i["InstanceType"]}
                    found.append(Instance(self.name, i["InstanceId"], tag.get("runner-job", ""), i["Placement"]["AvailabilityZone"], data))
        return found

    def terminate(self, inst: Instance) -> None:
        """Terminates the instance and anything else tagged with its job; gone == done.

        Only instances tagged runner-job=<inst.job_id>: an instance EC2 describes without that tag raises
        NotOwnedError before anything is terminated.
        """
        if not inst.job_id:
            raise NotOwnedError(f"EC2 instance {inst.id[:40]!r} is recorded without a job id: runner leaves it alone")
        found = self._describe(inst)
        if found:
            owner_check(inst, found)
        ec2, region = self._ec2_of(inst)
        ids = ({inst.id} if found else set()) | {i.id for i in self.find({"runner-job": inst.job_id}, region)}
        for iid in sorted(ids):  # one call each: a single unknown id fails a batch
            try:
                call(f"EC2 TerminateInstances {iid} ({region})", ec2.terminate_instances, InstanceIds=[iid])
            except NotFoundError:
                pass

    def console_output(self, inst: Instance) -> str:
        """The console of the job's own instance ('' when EC2 does not know it); NotOwnedError for any other."""
        found = self._describe(inst)
        if not found:
            return ""
        owner_check(inst, found)
        ec2, _ = self._ec2_of(inst)
        try:
            return call(f"EC2 GetConsoleOutput {inst.id}", ec2.get_console_output, InstanceId=inst.id).get("Output") or ""
        except NotFoundError:
            return ""

    def doctor(self) -> list[tuple[bool, str, str]]:
        """(ok, check, detail or fix) for every part of the setup; reads only, launches nothing."""
        from runner.providers.aws_doctor import run

        return run(self)
