"""`runner doctor --cloud aws`: check every part of the AWS setup, read-only; launch nothing."""

from __future__ import annotations

from runner import config, settings
from runner.errors import RunnerError
from runner.store import split_uri

Check = tuple[bool, str, str]  # (ok, what was checked, what was found or how to fix it)


def run(provider) -> list[Check]:
    """One entry per check; after a credentials failure the cloud checks are skipped."""
    out: list[Check] = []
    try:
        cfg = provider.load_settings()
    except RunnerError as e:
        return [(False, "config", str(e))]
    if not cfg.region:
        return [(False, "region", f"none: set RUNNER_AWS_REGION (or AWS_REGION, or [aws] region in {settings.path()})")]
    out.append((True, "region", cfg.region))
    sts = provider.client("sts", cfg.region)
    ok, detail = _try(lambda: sts.get_caller_identity()["Arn"], "STS GetCallerIdentity")
    out.append((ok, "credentials", str(detail)))
    if not ok:
        return out + [(False, name, "skipped: no working credentials") for name in ("store", "instance profile", "image", "network")]
    out.append(_store(provider, cfg))
    out.append(_instance_profile(provider, cfg))
    ec2 = provider.client("ec2", cfg.region)
    ok, detail = _try(lambda: _image(provider, ec2, cfg.region), "image")
    out.append((ok, "image", str(detail)))
    ok, detail = _try(lambda: _network(provider, ec2, cfg), "network")
    out.append((ok, "network", str(detail)))
    return out


def _try(fn, what: str) -> tuple[bool, object]:
    """(True, fn()) or (False, the translated error's message)."""
    from runner.providers.aws import translate

    try:
        return True, fn()
    except Exception as e:
        err = translate(e, what)
        if isinstance(err, RunnerError):
            return False, str(err)
        raise


def _store(provider, cfg) -> Check:
    uri = config.store_uri()
    scheme, bucket, _ = split_uri(uri)
    if scheme != "s3":
        return False, "store", f"{uri} is not on S3, and a VM cannot see it: set RUNNER_STORE=s3://bucket/prefix"
    s3 = provider.client("s3", cfg.region)
    ok, detail = _try(lambda: s3.head_bucket(Bucket=bucket) and f"{uri} (bucket reachable)", f"S3 HeadBucket {bucket}")
    return ok, "store", str(detail) if ok else f"{detail}; create the bucket or fix RUNNER_STORE"


def _instance_profile(provider, cfg) -> Check:
    name = cfg.instance_profile
    if not name:
        return False, "instance profile", "none: set RUNNER_AWS_INSTANCE_PROFILE (docs/aws.md has its policy)"
    iam = provider.client("iam", cfg.region)
    ok, found = _try(
        lambda: iam.get_instance_profile(InstanceProfileName=name.rsplit("/", 1)[-1])["InstanceProfile"],
        f"IAM GetInstanceProfile {name}",
    )
    if not ok:
        return False, "instance profile", str(found)
    roles = [r["RoleName"] for r in found.get("Roles", [])]
    return bool(roles), "instance profile", f"{name} (role {', '.join(roles)})" if roles else f"{name} has no role: add one (docs/aws.md)"


def _image(provider, ec2, region: str) -> str:
    image = provider.resolve_image(ec2, region, None)
    return f"{image['ImageId']} ({image.get('Name', '')}; {image['source']})"


def _network(provider, ec2, cfg) -> str:
    parts = []
    if cfg.subnets:
        zones = provider.subnet_zones(ec2, cfg)
        missing = [s for s in cfg.subnets if s not in zones]
        if missing:
            raise RunnerError(f"subnet(s) {', '.join(missing)} not found in {cfg.region}: fix RUNNER_AWS_SUBNETS")
        parts.append("subnets " + ", ".join(f"{s} ({z})" for s, z in zones.items()))
    else:
        parts.append("no subnets configured: the default VPC's, EC2 picks the zone")
    if cfg.security_group:
        ec2.describe_security_groups(GroupIds=[cfg.security_group])
        parts.append(f"security group {cfg.security_group}")
    else:
        parts.append("the VPC's default security group (no inbound rule is needed)")
    return "; ".join(parts)
