"""Fixtures and helpers shared by the AWS tests (loaded with `pytest_plugins = ["aws_fixtures"]`):
a runner AMI and instance profile in moto, the environment a user would set, botocore hooks."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

REGION = "us-east-1"
PROFILE = "runner-vm"
ACCOUNT = "123456789012"  # moto's


@pytest.fixture(scope="session")
def runner_ami(s3_server):
    """A runner-* AMI in moto (owned by 'self'), as `make image CLOUD=aws` would leave it."""
    import boto3

    kw = {"region_name": REGION, "endpoint_url": s3_server, "aws_access_key_id": "t", "aws_secret_access_key": "t"}
    ec2, iam = boto3.client("ec2", **kw), boto3.client("iam", **kw)
    name = "runner-20990101000000"
    for image in ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]:
        return image["ImageId"]  # made already (by an earlier session on this server)
    base = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=iid, Name=name)["ImageId"]
    ec2.terminate_instances(InstanceIds=[iid])
    iam.create_role(RoleName="runner-vm-role", AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName=PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=PROFILE, RoleName="runner-vm-role")
    return ami


@pytest.fixture
def aws(s3, runner_ami, monkeypatch, tmp_path):
    """The environment a user would set up for AWS, pointed at the moto server."""
    import boto3

    client, bucket = s3
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    manifest = {"builds": [{"builder_type": "amazon-ebs", "artifact_id": f"{REGION}:{runner_ami}", "build_time": 1}]}
    (images_dir / "manifest.json").write_text(json.dumps(manifest))
    for var in ("RUNNER_AWS_SUBNETS", "RUNNER_AWS_SECURITY_GROUP", "RUNNER_AWS_SPOT_FALLBACK", "RUNNER_CONFIG", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    env = {"RUNNER_STORE": f"s3://{bucket}/runner", "RUNNER_AWS_REGION": REGION, "RUNNER_AWS_INSTANCE_PROFILE": PROFILE,
           "RUNNER_IMAGES": str(images_dir)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return SimpleNamespace(ec2=boto3.client("ec2", region_name=REGION), s3=client, bucket=bucket, ami=runner_ami,
                           images=images_dir, env=env)


@pytest.fixture
def hook():
    """Register botocore event handlers on the default session, so every client made after sees them."""
    import boto3

    session = boto3._get_default_session()
    added = []

    def register(event, handler):
        session.events.register(event, handler)
        added.append((event, handler))

    yield register
    for event, handler in added:
        session.events.unregister(event, handler)


def fail_in(zones: dict[str, str], calls: list):
    """A before-parameter-build handler: RunInstances in zone Z fails with zones[Z] ('*' = any)."""

    def handler(params, **_):
        zone = params.get("Placement", {}).get("AvailabilityZone", "")
        calls.append((zone, "spot" if "InstanceMarketOptions" in params else "on-demand"))
        code = zones.get(zone) or zones.get("*")
        if code:
            raise ClientError({"Error": {"Code": code, "Message": f"injected {code} in {zone or 'any zone'}"}}, "RunInstances")

    return handler


def spot_prices(prices: dict[str, float]):
    """A before-call handler answering DescribeSpotPriceHistory with these prices."""
    now = datetime.now(timezone.utc)
    rows = [{"AvailabilityZone": z, "SpotPrice": str(p), "Timestamp": now, "InstanceType": "m6i.large"} for z, p in prices.items()]
    return lambda **_: (SimpleNamespace(status_code=200, headers={}), {"SpotPriceHistory": rows})


def instances(ec2, job_id: str) -> list[dict]:
    resp = ec2.describe_instances(Filters=[{"Name": "tag:runner-job", "Values": [job_id]}])
    return [i for r in resp["Reservations"] for i in r["Instances"]]


