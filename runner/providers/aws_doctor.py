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
    ok, caller = _try(lambda: sts.get_caller_identity()["Arn"], "STS GetCallerIdentity")
    out.append((ok, "credentials", str(caller)))
    if not ok:
        skipped = ("store", "instance profile", "image", "network", "cluster network", "permissions", "vm permissions")
        return out + [(False, name, "skipped: no working credentials") for name in skipped]
    out.append(_store(provider, cfg))
    profile_check, vm_role = _instance_profile(provider, cfg)
    out.append(profile_check)
    ec2 = provider.client("ec2", cfg.region)
    ok, detail = _try(lambda: _image(provider, ec2, cfg.region), "image")
    out.append((ok, "image", str(detail)))
    ok, detail = _try(lambda: _network(provider, ec2, cfg), "network")
    out.append((ok, "network", str(detail)))
    ok, detail = _try(lambda: _cluster_network(provider, ec2, cfg), "cluster network")
    out.append((ok, "cluster network", str(detail)))
    return out + _permissions(provider, cfg, str(caller), vm_role)


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
    prefix = _prefix(uri)
    # a listing under the store's prefix, not HeadBucket: a ListBucket grant limited by s3:prefix still allows it
    ok, detail = _try(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1) and f"{uri} (bucket reachable)",
                      f"S3 ListObjectsV2 {bucket}/{prefix}")
    return ok, "store", str(detail) if ok else f"{detail}; create the bucket or fix RUNNER_STORE"


def _prefix(uri: str) -> str:
    key = split_uri(uri)[2].strip("/")
    return f"{key}/" if key else ""


def _instance_profile(provider, cfg) -> tuple[Check, str | None]:
    """The check, and the ARN of the profile's role (None when there is none)."""
    name = cfg.instance_profile
    if not name:
        return (False, "instance profile", "none: set RUNNER_AWS_INSTANCE_PROFILE (docs/aws.md has its policy)"), None
    iam = provider.client("iam", cfg.region)
    ok, found = _try(
        lambda: iam.get_instance_profile(InstanceProfileName=name.rsplit("/", 1)[-1])["InstanceProfile"],
        f"IAM GetInstanceProfile {name}",
    )
    if not ok:
        return (False, "instance profile", str(found)), None
    roles = found.get("Roles", [])
    if not roles:
        return (False, "instance profile", f"{name} has no role: add one (docs/aws.md)"), None
    return (True, "instance profile", f"{name} (role {', '.join(r['RoleName'] for r in roles)})"), roles[0]["Arn"]


def _permissions(provider, cfg, caller: str, vm_role: str | None) -> list[Check]:
    """IAM's policy simulator, asked about every permission the launcher and the VM's role need."""
    from runner.providers import aws_permissions as perms

    uri = config.store_uri()
    scheme, bucket, key = split_uri(uri)
    account = caller.split(":")[4] if caller.count(":") >= 5 else ""
    principal = perms.principal_arn(caller)
    if scheme != "s3" or not account:
        return [(False, "permissions", "skipped: needs an s3:// store and credentials")]
    if principal is None:
        return [(True, "permissions", f"not checked: {caller} is not an IAM user or role (root, a federated user), "
                                      "which IAM's policy simulator cannot check")]
    iam = provider.client("iam", cfg.region)
    role = vm_role or f"arn:aws:iam::{account}:role/runner-vm-role"
    ok, found = _try(lambda: perms.decisions(iam, principal, perms.launcher_needs(cfg.region, account, bucket, key, role)),
                     f"IAM SimulatePrincipalPolicy {principal}")
    if not ok:
        why = f"could not ask IAM's policy simulator: {found}; grant iam:SimulatePrincipalPolicy ({perms.LAUNCHER_POLICY})"
        return [(False, "permissions", why), (False, "vm permissions", "skipped: the policy simulator did not answer")]
    good, detail = perms.verdict(principal, found, [], perms.LAUNCHER_POLICY)
    out: list[Check] = [(good, "permissions", detail)]
    if vm_role is None:
        return out + [(False, "vm permissions", "skipped: no instance profile role to check")]
    ok, found = _try(lambda: (perms.decisions(iam, vm_role, perms.vm_needs(cfg.region, account, bucket, key)),
                              perms.decisions(iam, vm_role, perms.vm_forbidden(bucket, key))),
                     f"IAM SimulatePrincipalPolicy {vm_role}")
    if not ok:
        return out + [(False, "vm permissions", f"could not ask IAM's policy simulator: {found}")]
    good, detail = perms.verdict(vm_role, found[0], found[1], perms.VM_POLICY)
    return out + [(good, "vm permissions", detail)]


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


def _cluster_network(provider, ec2, cfg) -> str:
    """The security group a cluster job's nodes share: none yet, or one whose only inbound rule is its members'."""
    from runner.cluster.ids import NETWORK
    from runner.providers import aws_network

    return aws_network.check(provider, ec2, cfg, NETWORK)
