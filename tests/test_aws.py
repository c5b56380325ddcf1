"""The AWS backend: pure request builders, then the provider against a moto server on 127.0.0.1.

Capacity, quota and auth errors are injected with botocore event hooks (moto does not simulate
them); spot prices too (moto's are all 0.00001).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import NoCredentialsError

from runner import aws_prices, settings
from runner.errors import AuthError, CapacityError, NotFoundError, QuotaError, RunnerError, SpecError
from runner.providers.aws import (
    Attempt,
    AwsProvider,
    AwsSettings,
    check_fit,
    classify,
    instance_state,
    plan_attempts,
    run_instances_request,
    translate,
    type_arch,
)
from runner.providers.base import LaunchRequest

pytest.register_assert_rewrite("aws_fixtures")
from aws_fixtures import ACCOUNT, PROFILE, REGION, fail_in, instances, spot_prices

pytest_plugins = ["aws_fixtures"]


def request(**kw) -> LaunchRequest:
    job_id = "demo-20240101T000000Z-abcdef"
    base = {"job_id": job_id, "user_data": "#!/bin/bash\necho hi\n", "instance_type": "m6i.large", "spot": True,
            "disk_gb": 30, "max_runtime": 3600, "tags": {"runner-job": job_id}}
    return LaunchRequest(**{**base, **kw})


# ---------------------------------------------------------------- pure request builders

def test_run_instances_request_spot_in_a_subnet():
    cfg = AwsSettings(region=REGION, instance_profile=PROFILE, subnets=("subnet-b",), security_group="sg-1")
    image = {"ImageId": "ami-1", "RootDeviceName": "/dev/xvda"}
    kw = run_instances_request(request(), cfg, image, Attempt("spot", "us-east-1b", "subnet-b", 0.02))
    tags = [{"Key": "Name", "Value": "demo-20240101T000000Z-abcdef"}, {"Key": "runner-job", "Value": "demo-20240101T000000Z-abcdef"}]
    token = kw.pop("ClientToken")
    assert len(token) == 40 and token == run_instances_request(request(), cfg, image, Attempt("spot", "us-east-1b", "subnet-b"))["ClientToken"]
    assert kw == {
        "ImageId": "ami-1",
        "InstanceType": "m6i.large",
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": "#!/bin/bash\necho hi\n",
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 30, "VolumeType": "gp3", "DeleteOnTermination": True}}],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}],
        "IamInstanceProfile": {"Name": PROFILE},
        "SubnetId": "subnet-b",
        "SecurityGroupIds": ["sg-1"],
        "InstanceMarketOptions": {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        },
    }


def test_run_instances_request_on_demand_by_zone_with_a_profile_arn():
    arn = f"arn:aws:iam::{ACCOUNT}:instance-profile/{PROFILE}"
    cfg = AwsSettings(region=REGION, instance_profile=arn)
    kw = run_instances_request(request(spot=False), cfg, {"ImageId": "ami-1", "RootDeviceName": "/dev/sda1"}, Attempt("on-demand", "us-east-1c"))
    assert kw["IamInstanceProfile"] == {"Arn": arn}
    assert kw["Placement"] == {"AvailabilityZone": "us-east-1c"}
    assert kw["BlockDeviceMappings"][0]["DeviceName"] == "/dev/sda1"
    assert not {"InstanceMarketOptions", "SubnetId", "SecurityGroupIds"} & set(kw)
    anywhere = run_instances_request(request(spot=False), cfg, {"ImageId": "ami-1"}, Attempt("on-demand"))
    assert "Placement" not in anywhere and anywhere["ClientToken"] != kw["ClientToken"]


def test_attempts_spot_cheapest_zone_first_then_on_demand_if_allowed():
    prices = {"z-a": 0.05, "z-b": 0.01, "z-c": 0.03}
    got = plan_attempts(True, False, None, {}, prices)
    assert [(a.market, a.zone, a.price) for a in got] == [("spot", "z-b", 0.01), ("spot", "z-c", 0.03), ("spot", "z-a", 0.05)]
    got = plan_attempts(True, True, None, {}, prices)
    assert [str(a) for a in got[-2:]] == ["spot in z-a ($0.0500/h)", "on-demand in any zone"]
    # subnets decide the zones (the first subnet of each zone); a zone with no spot price goes last
    subnets = {"s-1": "z-a", "s-2": "z-d", "s-3": "z-a", "s-4": "z-b"}
    got = plan_attempts(True, True, None, subnets, prices)
    assert [(a.market, a.zone, a.subnet) for a in got] == [
        ("spot", "z-b", "s-4"), ("spot", "z-a", "s-1"), ("spot", "z-d", "s-2"),
        ("on-demand", "z-a", "s-1"), ("on-demand", "z-d", "s-2"), ("on-demand", "z-b", "s-4"),
    ]
    assert plan_attempts(True, False, "z-c", {}, prices) == [Attempt("spot", "z-c", "", 0.03)]
    assert plan_attempts(True, False, None, {}, {}) == [Attempt("spot")]  # no prices: EC2 picks
    assert plan_attempts(False, False, None, {}, prices) == [Attempt("on-demand")]
    with pytest.raises(SpecError, match="zone z-c has none of the configured subnets"):
        plan_attempts(True, False, "z-c", subnets, prices)


@pytest.mark.parametrize("code, kind", [
    ("InsufficientInstanceCapacity", CapacityError),
    ("SpotMaxPriceTooLow", CapacityError),
    ("Unsupported", CapacityError),
    ("MaxSpotInstanceCountExceeded", QuotaError),
    ("VcpuLimitExceeded", QuotaError),
    ("InstanceLimitExceeded", QuotaError),
    ("UnauthorizedOperation", AuthError),
    ("AuthFailure", AuthError),
    ("InvalidClientTokenId", AuthError),
    ("ExpiredToken", AuthError),
    ("AccessDenied", AuthError),
    ("NoSuchEntity", AuthError),
    ("InvalidAMIID.NotFound", NotFoundError),
    ("InvalidSubnetID.NotFound", SpecError),
    ("SomethingNew", RunnerError),
])
def test_errors_are_classified_by_code(code, kind):
    err = classify(code, "message", "EC2 RunInstances (m6i.large spot in us-east-1a)", scope="us-east-1a")
    assert type(err) is kind and err.code == code
    assert "EC2 RunInstances (m6i.large spot in us-east-1a)" in str(err)
    if isinstance(err, CapacityError):
        assert err.scope == "us-east-1a"
    if kind is AuthError:
        assert "docs/aws.md" in str(err) or "credentials" in str(err)


def test_auth_fixes_name_the_missing_piece():
    assert "iam:PassRole" in str(classify("UnauthorizedOperation", "not authorized to perform: iam:PassRole on x", "EC2"))
    profile = classify("InvalidParameterValue", "Value (x) for parameter iamInstanceProfile.name is invalid", "EC2")
    assert isinstance(profile, AuthError) and "instance profile does not exist" in str(profile)
    assert "make image CLOUD=aws" in str(classify("InvalidAMIID.NotFound", "gone", "EC2"))
    err = translate(NoCredentialsError(), "EC2 RunInstances")
    assert isinstance(err, AuthError) and "aws configure" in str(err)
    other = ValueError("x")
    assert translate(other, "EC2") is other  # not an AWS error: stays itself


def test_instance_state_tells_preemption_from_loss():
    assert instance_state({"InstanceId": "i-1", "State": {"Name": "running"}}).alive
    spot = instance_state({"InstanceId": "i-1", "State": {"Name": "terminated"}, "StateReason": {
        "Code": "Server.SpotInstanceTermination", "Message": "Server.SpotInstanceTermination: Spot instance termination"}})
    assert (spot.alive, spot.preempted) == (False, True) and "reclaimed spot instance i-1" in spot.reason
    gone = instance_state({"InstanceId": "i-1", "State": {"Name": "terminated"}, "StateReason": {"Code": "Client.UserInitiatedShutdown"}})
    assert (gone.alive, gone.preempted) == (False, False) and "never wrote a final status" in gone.reason


def test_type_arch_and_image_fit():
    assert [type_arch(t) for t in ("m6i.large", "c7g.xlarge", "m6gd.large", "g4dn.xlarge", "t4g.micro", "a1.large")] == [
        "x86_64", "arm64", "arm64", "x86_64", "arm64", "arm64"]
    image = {"ImageId": "ami-1", "Architecture": "x86_64", "RootDeviceName": "/dev/xvda",
             "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 16}}]}
    check_fit(request(), image)
    with pytest.raises(SpecError, match="c7g.large is arm64 but image ami-1 is x86_64"):
        check_fit(request(instance_type="c7g.large"), image)
    with pytest.raises(SpecError, match="smaller than image ami-1's 16 GB root volume"):
        check_fit(request(disk_gb=8), image)


def test_prices_table_scaling_and_latest_spot():
    assert aws_prices.on_demand("us-east-1", "m6i.large")[0] == 0.096
    assert "list price as of" in aws_prices.on_demand("us-east-1", "m6i.large")[1]
    price, source = aws_prices.on_demand("us-east-1", "m6i.12xlarge")
    assert price == pytest.approx(2.304) and source.startswith("scaled from m6i.")
    assert aws_prices.on_demand("us-east-1", "zz9.large") is None and aws_prices.on_demand("us-east-1", "m6i.metal") is None
    now = datetime.now(timezone.utc)
    rows = [{"AvailabilityZone": "a", "SpotPrice": "0.5", "Timestamp": now - timedelta(hours=1)},
            {"AvailabilityZone": "a", "SpotPrice": "0.2", "Timestamp": now},
            {"AvailabilityZone": "b", "SpotPrice": "0.3", "Timestamp": now}]
    assert aws_prices.latest_spot(rows) == {"a": 0.2, "b": 0.3}
    assert aws_prices.cost(0.096, 7200, 0) == pytest.approx(0.192)
    assert aws_prices.cost(None, 7200, 50) is None


def test_settings_env_over_config_file(runner_home, monkeypatch):
    runner_home.mkdir(parents=True)
    (runner_home / "config.toml").write_text(
        'store = "s3://b/p"\n[aws]\nregion = "eu-west-1"\nsubnets = ["subnet-1", "subnet-2"]\nspot_fallback = true\n')
    for var in ("RUNNER_AWS_REGION", "RUNNER_AWS_SUBNETS", "RUNNER_AWS_SPOT_FALLBACK", "RUNNER_AWS_INSTANCE_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    cfg = AwsSettings.load()
    assert (cfg.region, cfg.subnets, cfg.spot_fallback, cfg.instance_profile) == ("eu-west-1", ("subnet-1", "subnet-2"), True, "")
    from runner import config

    assert config.store_uri() == "s3://b/p"
    monkeypatch.setenv("RUNNER_AWS_SUBNETS", "subnet-9, subnet-8")
    monkeypatch.setenv("RUNNER_AWS_SPOT_FALLBACK", "no")
    assert AwsSettings.load("us-west-2") == AwsSettings("us-west-2", "", ("subnet-9", "subnet-8"), "", False)
    monkeypatch.setenv("RUNNER_AWS_SPOT_FALLBACK", "maybe")
    with pytest.raises(SpecError, match="RUNNER_AWS_SPOT_FALLBACK='maybe': expected true or false"):
        AwsSettings.load()
    (runner_home / "config.toml").write_text('[aws]\nsubnet = "subnet-1"\n')
    with pytest.raises(SpecError, match="unknown key \\[aws\\] 'subnet' \\(did you mean 'subnets'\\?\\)"):
        settings.load()


# ---------------------------------------------------------------- against a moto server

def test_launch_creates_exactly_one_instance_as_specified(aws, make_job):
    from runner import launch as launcher

    d = make_job({"name": "one", "command": "echo hi", "spot": True, "disk_gb": 20})
    p = launcher.plan(d, {"instance_type": "m6i.large"}, cloud="aws")
    inst = launcher.launch(p)
    [i] = instances(aws.ec2, p.job_id)
    assert i["InstanceId"] == inst.id and i["InstanceType"] == "m6i.large" and i["ImageId"] == aws.ami
    assert i["InstanceLifecycle"] == "spot"
    assert i["MetadataOptions"]["HttpTokens"] == "required"
    assert i["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{PROFILE}")
    assert {"Key": "runner-job", "Value": p.job_id} in i["Tags"]
    attr = aws.ec2.describe_instance_attribute(InstanceId=inst.id, Attribute="instanceInitiatedShutdownBehavior")
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    import base64

    user_data = aws.ec2.describe_instance_attribute(InstanceId=inst.id, Attribute="userData")["UserData"]["Value"]
    assert base64.b64decode(user_data).decode() == p.request.user_data
    assert f"s3://{aws.bucket}/runner/jobs/{p.job_id}" in p.request.user_data
    [vol] = aws.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [inst.id]}])["Volumes"]
    assert (vol["Size"], vol["VolumeType"]) == (20, "gp3") and {"Key": "runner-job", "Value": p.job_id} in vol["Tags"]
    # what another machine needs is in the store
    record = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=f"runner/jobs/{p.job_id}/instance.json")["Body"].read())
    assert record["cloud"] == "aws" and record["id"] == inst.id and record["data"]["region"] == REGION
    assert record["data"]["market"] == "spot"


def test_spot_failover_goes_cheapest_first_and_skips_full_zones(aws, hook):
    calls: list = []
    hook("before-call.ec2.DescribeSpotPriceHistory", spot_prices({"us-east-1a": 0.05, "us-east-1b": 0.01, "us-east-1c": 0.03}))
    hook("before-parameter-build.ec2.RunInstances", fail_in(
        {"us-east-1b": "InsufficientInstanceCapacity", "us-east-1c": "SpotMaxPriceTooLow"}, calls))
    req = request(job_id="fo-20240101T000000Z-000001", tags={"runner-job": "fo-20240101T000000Z-000001"})
    inst = AwsProvider().launch(req)
    assert calls == [("us-east-1b", "spot"), ("us-east-1c", "spot"), ("us-east-1a", "spot")]
    assert inst.zone == "us-east-1a" and inst.data["usd_per_hour"] == 0.05
    assert inst.data["tried"] == ["spot in us-east-1b ($0.0100/h): InsufficientInstanceCapacity",
                                  "spot in us-east-1c ($0.0300/h): SpotMaxPriceTooLow"]
    assert [i["InstanceId"] for i in instances(aws.ec2, req.job_id)] == [inst.id]


def test_no_spot_anywhere_is_capacity_unless_on_demand_is_allowed(aws, hook):
    calls: list = []
    hook("before-parameter-build.ec2.RunInstances", fail_in({z: "InsufficientInstanceCapacity" for z in
                                                              ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f")}, calls))
    req = request(job_id="full-20240101T000000Z-000001", tags={"runner-job": "full-20240101T000000Z-000001"})
    with pytest.raises(CapacityError) as e:
        AwsProvider().launch(req)
    assert type(e.value) is CapacityError and e.value.scope == REGION and "--spot-fallback" in str(e.value)
    assert calls and all(market == "spot" for _, market in calls) and not instances(aws.ec2, req.job_id)
    calls.clear()
    inst = AwsProvider().launch(request(job_id="full-20240101T000000Z-000002", spot_fallback=True,
                                        tags={"runner-job": "full-20240101T000000Z-000002"}))
    assert calls[-1] == ("", "on-demand") and inst.data["market"] == "on-demand" and inst.data["usd_per_hour"] == 0.096
    [i] = instances(aws.ec2, "full-20240101T000000Z-000002")
    assert "InstanceLifecycle" not in i


def test_spot_quota_skips_the_other_zones(aws, hook, monkeypatch):
    calls: list = []
    hook("before-parameter-build.ec2.RunInstances", fail_in({"us-east-1a": "MaxSpotInstanceCountExceeded"}, calls))
    hook("before-call.ec2.DescribeSpotPriceHistory", spot_prices({"us-east-1a": 0.01, "us-east-1b": 0.02}))
    with pytest.raises(QuotaError, match="MaxSpotInstanceCountExceeded"):
        AwsProvider().launch(request(job_id="q-20240101T000000Z-000001"))
    assert calls == [("us-east-1a", "spot")]
    monkeypatch.setenv("RUNNER_AWS_SPOT_FALLBACK", "true")  # the config allows on-demand
    calls.clear()
    inst = AwsProvider().launch(request(job_id="q-20240101T000000Z-000002"))
    assert calls == [("us-east-1a", "spot"), ("", "on-demand")] and inst.data["market"] == "on-demand"


def test_auth_errors_are_not_capacity_and_stop_at_once(aws, hook):
    calls: list = []
    hook("before-parameter-build.ec2.RunInstances", fail_in({"*": "UnauthorizedOperation"}, calls))
    with pytest.raises(AuthError) as e:
        AwsProvider().launch(request(job_id="auth-20240101T000000Z-000001"))
    assert not isinstance(e.value, CapacityError) and len(calls) == 1
    assert "UnauthorizedOperation" in str(e.value) and "launcher policy in docs/aws.md" in str(e.value)


def test_no_credentials_is_an_auth_error(aws, monkeypatch, tmp_path):
    import boto3

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    for var in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(var, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # forget the credentials found before
    with pytest.raises(AuthError, match="Unable to locate credentials.*aws configure"):
        AwsProvider().launch(request(job_id="nocred-20240101T000000Z-000001"))


def test_missing_instance_profile_is_an_auth_error(aws, monkeypatch):
    monkeypatch.setenv("RUNNER_AWS_INSTANCE_PROFILE", "no-such-profile")
    with pytest.raises(AuthError, match="instance profile does not exist"):
        AwsProvider().launch(request(job_id="noprof-20240101T000000Z-000001"))
    assert not instances(aws.ec2, "noprof-20240101T000000Z-000001")


def test_image_from_the_manifest_else_the_newest_owned_else_a_clear_error(aws):
    p = AwsProvider()
    ec2 = p.client("ec2", REGION)
    assert p.resolve_image(ec2, REGION, None)["source"].startswith("the Packer manifest")
    (aws.images / "manifest.json").unlink()
    newest = p.resolve_image(ec2, REGION, None)
    assert newest["ImageId"] == aws.ami and newest["Name"].startswith("runner-") and "owned by this account" in newest["source"]
    with pytest.raises(NotFoundError, match="ami-0000000000000000f"):
        p.resolve_image(ec2, REGION, "ami-0000000000000000f")
    with pytest.raises(NotFoundError, match="no runner image in eu-north-1.*make image CLOUD=aws"):
        p.resolve_image(p.client("ec2", "eu-north-1"), "eu-north-1", None)


def test_find_state_terminate_and_console(aws):
    p = AwsProvider()
    req = request(job_id="life-20240101T000000Z-000001", tags={"runner-job": "life-20240101T000000Z-000001"})
    inst = p.launch(req)
    assert [i.id for i in p.find({"runner-job": req.job_id})] == [inst.id]
    assert p.find({"runner-job": req.job_id})[0].job_id == req.job_id
    assert p.state(inst).alive
    assert "Linux" in p.console_output(inst)  # moto's fixed boot log
    p.terminate(inst)
    p.terminate(inst)  # idempotent
    assert not p.state(inst).alive and not p.find({"runner-job": req.job_id})
    ghost = type(inst)("aws", "i-0123456789abcdef0", req.job_id, data={"region": REGION})
    p.terminate(ghost)  # never existed: nothing to do
    assert not p.state(ghost).alive and p.console_output(ghost) == ""


def test_check_request_and_store_for_vm_refuse_before_anything_starts(aws, monkeypatch):
    p = AwsProvider()
    with pytest.raises(SpecError, match="not an EC2 instance type"):
        p.check_request(request(instance_type="large"))
    with pytest.raises(SpecError, match="zone eu-west-1a is not in region us-east-1"):
        p.check_request(request(zone="eu-west-1a", region=REGION))
    with pytest.raises(SpecError, match="set RUNNER_STORE=s3://"):
        p.store_for_vm("file:///home/me/store")
    assert p.store_for_vm("s3://b/p") == "s3://b/p"
    monkeypatch.delenv("RUNNER_AWS_INSTANCE_PROFILE")
    with pytest.raises(SpecError, match="no instance profile"):
        p.check_request(request())


def test_dry_run_quote_shows_zone_order_prices_and_cost(aws, hook, make_job):
    from runner import launch as launcher

    hook("before-call.ec2.DescribeSpotPriceHistory", spot_prices({"us-east-1a": 0.04, "us-east-1b": 0.03}))
    d = make_job({"name": "quote", "command": "true", "spot": True, "max_runtime": "2h", "disk_gb": 73})
    s = launcher.plan(d, {"spot_fallback": True}, cloud="aws").summary()
    assert s["attempts"] == "spot in us-east-1b ($0.0300/h), then spot in us-east-1a ($0.0400/h), then on-demand in any zone"
    assert (s["spot_usd_per_hour"], s["on_demand_usd_per_hour"]) == (0.03, 0.096)
    disk = 73 * 0.08 / 730
    assert s["max_cost_spot_usd"] == pytest.approx((0.03 + disk) * 2, abs=1e-4)
    assert s["max_cost_on_demand_usd"] == pytest.approx((0.096 + disk) * 2, abs=1e-4)
    assert s["image"].startswith(aws.ami)
    assert not aws.s3.list_objects_v2(Bucket=aws.bucket).get("KeyCount")  # nothing written, nothing started


def test_wait_asks_ec2_at_most_every_state_every_seconds(aws, hook, make_job):
    import threading

    from runner import jobs, watch
    from runner import launch as launcher

    asked: list = []
    hook("before-call.ec2.DescribeInstances", lambda **_: asked.append(1))
    p = launcher.plan(make_job({"name": "polled", "command": "true"}), None, cloud="aws")
    launcher.launch(p)
    done = jobs.Status(jobs.SUCCEEDED, exit_code=0)
    threading.Timer(1.5, jobs.write_status, (p.store, p.job_id, done)).start()  # the VM's last write
    assert watch.wait(p.store, p.job_id, poll=0.05).state == jobs.SUCCEEDED
    assert len(asked) == 1  # ~30 polls of the store, one question to EC2 (state_every = 15 s)
