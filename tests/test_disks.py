"""The root disk's speed and the local SSDs: the request bodies for defaults and explicit values, every refusal
(AWS gp3, GCE disk types per family, local SSD counts), what the sandbox and a local VM do with the fields, and
--dry-run's extra cost line through the CLI against moto and the GCP fake."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from conftest import run_cli
from fake_google import PROJECT
from test_gcp import IMAGE, SA
from test_gcp_cli import gcp_cli  # noqa: F401 (a fixture: the GCP fake and GCS emulator a user's CLI talks to)

from runner import aws_prices, launch
from runner.errors import SpecError
from runner.providers import aws_disks, gcp_disks, gcp_prices
from runner.providers.aws import Attempt, run_instances_request
from runner.providers.base import LaunchRequest
from runner.providers.gcp_build import Attempt as GcpAttempt
from runner.providers.gcp_build import GcpSettings, instance_body
from runner.settings import AwsSettings
from runner.spec import JobSpec

pytest_plugins = ["aws_fixtures", "fake_google"]

JOB = "disks-20240101T000000Z-abcdef"
HOUR = 730  # hours in the month the clouds bill by


def request(**kw) -> LaunchRequest:
    base = {"job_id": JOB, "user_data": "#!/bin/bash\n", "instance_type": "m6i.large", "spot": False, "disk_gb": 50,
            "max_runtime": 3600, "tags": {"runner-job": JOB}}
    return LaunchRequest(**{**base, **kw})


def ebs(**kw) -> dict:
    """The root volume's Ebs mapping in the run_instances request."""
    kw_ = run_instances_request(request(**kw), AwsSettings("us-east-1"), {"ImageId": "ami-1"}, Attempt("on-demand"))
    [bdm] = kw_["BlockDeviceMappings"]
    return bdm["Ebs"]


def gce_disks(zone: str = "us-central1-a", **kw) -> list[dict]:
    body = instance_body(request(**{"instance_type": "e2-standard-4", **kw}), GcpSettings(PROJECT, service_account=SA),
                         f"projects/{PROJECT}/global/images/{IMAGE}", GcpAttempt("standard", zone))
    return body["disks"]


# ---------------------------------------------------------------- AWS: gp3

def test_gp3_defaults_follow_the_instances_ebs_baseline():
    base = {"VolumeSize": 50, "VolumeType": "gp3", "DeleteOnTermination": True}
    assert ebs() == base  # m6i.large: 650 Mbps = 77 MiB/s, below gp3's included 125
    assert ebs(instance_type="i3en.2xlarge") == {**base, "Throughput": 275}  # 2307 Mbps, within the included 3000 IOPS
    assert ebs(instance_type="c6i.32xlarge") == {**base, "Throughput": 1000, "Iops": 4000}  # 40 Gbps: a default stops at 1000
    assert ebs(instance_type="c6i.xlarge") == {**base, "Throughput": 149}  # 1250 Mbps = 149 MiB/s
    assert ebs(instance_type="zz9.48xlarge") == base  # a family runner does not know: gp3's included speed
    vol = aws_disks.root_volume(request(instance_type="c6i.32xlarge"))
    assert (vol.mibps, vol.iops) == (1000, 4000) and "EBS baseline is 4768 MiB/s; a default stops at 1000" in vol.why
    assert "below gp3's included 125" in aws_disks.root_volume(request()).why
    assert "no EBS bandwidth for zz9.48xlarge" in aws_disks.root_volume(request(instance_type="zz9.48xlarge")).why
    assert aws_disks.baseline_mibps("i3en.2xlarge") == pytest.approx(2307e6 / 8 / 2**20)
    assert aws_disks.baseline_mibps("m7g.metal") == pytest.approx(20000e6 / 8 / 2**20)
    assert aws_disks.baseline_mibps("m6i.nano") is None and aws_disks.baseline_mibps("m6i") is None


def test_gp3_explicit_values():
    base = {"VolumeSize": 50, "VolumeType": "gp3", "DeleteOnTermination": True}
    assert ebs(disk_throughput=500) == {**base, "Throughput": 500}  # 500 MiB/s needs 2000 IOPS: the included 3000 do
    assert ebs(disk_throughput=1000) == {**base, "Throughput": 1000, "Iops": 4000}  # the IOPS it needs come with it
    assert ebs(disk_throughput=2000, disk_iops=25000) == {**base, "Throughput": 2000, "Iops": 25000}
    assert ebs(disk_iops=6000) == {**base, "Iops": 6000}
    assert ebs(disk_type="gp3", disk_throughput=125, disk_iops=3000) == base  # gp3's included speed: nothing to add
    assert ebs(local_ssds=0) == base  # none: what an AWS type has unless its instance storage comes with it
    # an explicit IOPS holds a default throughput to 0.25 MiB/s per IOPS
    assert ebs(instance_type="c6i.32xlarge", disk_iops=3200) == {**base, "Throughput": 800, "Iops": 3200}
    assert ebs(instance_type="c6i.32xlarge", disk_throughput=300) == {**base, "Throughput": 300}


@pytest.mark.parametrize(("fields", "message"), [
    ({"disk_type": "io2"}, "disk_type 'io2' is not offered on AWS: the root volume is gp3"),
    ({"disk_type": "pd-ssd"}, "disk_type 'pd-ssd' is not offered on AWS"),
    ({"local_ssds": 2}, "local_ssds 2 is for GCP: on AWS instance storage comes with the instance type"),
    ({"disk_throughput": 124}, "disk_throughput 124 MiB/s is outside gp3's range, 125-2000 MiB/s"),
    ({"disk_throughput": 2001}, "disk_throughput 2001 MiB/s is outside gp3's range, 125-2000 MiB/s"),
    ({"disk_iops": 2999}, "disk_iops 2999 is outside gp3's range, 3000-80000"),
    ({"disk_iops": 80001}, "disk_iops 80001 is outside gp3's range, 3000-80000"),
    ({"disk_iops": 16000, "disk_gb": 20}, "disk_iops 16000 is more than a 20 GB gp3 volume takes (500 IOPS per GB, so at most "
                                          "10000): raise disk_gb to 32 or lower disk_iops"),
    ({"disk_throughput": 1000, "disk_iops": 3000}, "disk_throughput 1000 MiB/s needs 4000 IOPS on gp3 (0.25 MiB/s per IOPS) and "
                                                   "disk_iops is 3000: raise disk_iops to 4000 or lower disk_throughput to 750"),
    ({"disk_throughput": 2000, "disk_gb": 10}, "disk_throughput 2000 MiB/s needs 8000 IOPS (0.25 MiB/s per IOPS), more than a 10 GB "
                                               "gp3 volume takes (500 per GB): raise disk_gb to 16"),
])
def test_gp3_refusals_name_the_value_and_what_is_allowed(fields, message):
    with pytest.raises(SpecError) as e:
        ebs(**fields)
    assert message in str(e.value)


def test_gp3_extra_cost_per_hour_and_in_the_most_a_run_costs():
    extra = (875 * 0.04 + 1000 * 0.005) / HOUR  # 1000 MiB/s and 4000 IOPS: $35 + $5 a month above the included speed
    assert aws_prices.gp3_extra_per_hour(1000, 4000) == pytest.approx(extra)
    assert aws_prices.gp3_extra_per_hour() == 0 and aws_prices.gp3_extra_per_hour(125, 3000) == 0
    assert aws_prices.cost(1.0, 7200, 50, 1000, 4000) == pytest.approx((1.0 + 50 * 0.08 / HOUR + extra) * 2, abs=1e-4)
    assert aws_prices.cost(1.0, 7200, 50) == pytest.approx((1.0 + 50 * 0.08 / HOUR) * 2, abs=1e-4)
    vol = aws_disks.root_volume(request(instance_type="c6i.32xlarge"))
    q = aws_disks.quote(vol, 7200)
    assert q["root_disk_extra_usd_per_hour"] == round(extra, 4) and q["root_disk_extra_max_usd"] == round(extra * 2, 4)
    assert q["root_disk"].startswith("gp3 at 1000 MiB/s and 4000 IOPS (default: c6i.32xlarge's EBS baseline")


def test_launch_sends_the_volumes_speed_to_ec2(aws, hook, make_job):
    sent = []
    hook("before-parameter-build.ec2.RunInstances", lambda params, **_: sent.append(params["BlockDeviceMappings"][0]["Ebs"]))
    d = make_job({"name": "fast", "command": "true", "disk_throughput": 600, "disk_iops": 5000})
    p = launch.plan(d, {"instance_type": "i3en.2xlarge"}, cloud="aws")
    launch.launch(p)
    assert sent == [{"VolumeSize": 50, "VolumeType": "gp3", "DeleteOnTermination": True, "Throughput": 600, "Iops": 5000}]
    record = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=f"runner/jobs/{p.job_id}/job.json")["Body"].read())
    assert record["request"]["disk_throughput"] == 600 and record["request"]["disk_iops"] == 5000


def test_dry_run_on_aws_shows_the_volume_why_and_its_extra_cost(aws, make_job):
    d = make_job({"name": "seeds", "command": "true", "instance_type": "i3en.2xlarge", "max_runtime": "2h"})
    r = run_cli("launch", str(d), "--cloud", "aws", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "root_disk: gp3 at 275 MiB/s and 3000 IOPS (default: i3en.2xlarge's EBS baseline)" in r.stdout
    extra = 150 * 0.04 / HOUR
    assert f"root_disk_extra_usd_per_hour: {round(extra, 4)}" in r.stdout
    plan = json.loads(run_cli("launch", str(d), "--cloud", "aws", "--dry-run", "--json", "--disk-throughput", "1000").stdout)
    extra = (875 * 0.04 + 1000 * 0.005) / HOUR
    assert plan["root_disk"] == "gp3 at 1000 MiB/s and 4000 IOPS (set by disk_throughput; IOPS: 3000, or 4 per MiB/s above 750)"
    assert plan["root_disk_extra_usd_per_hour"] == round(extra, 4) and plan["root_disk_extra_max_usd"] == round(extra * 2, 4)
    assert plan["max_cost_on_demand_usd"] == pytest.approx((0.904 + 50 * 0.08 / HOUR + extra) * 2, abs=1e-4)
    bad = run_cli("launch", str(d), "--cloud", "aws", "--dry-run", "--disk-iops", "100000")
    assert bad.returncode == 2 and "disk_iops 100000 is outside gp3's range, 3000-80000" in bad.stderr
    assert not aws.s3.list_objects_v2(Bucket=aws.bucket).get("KeyCount")  # nothing written, nothing started


# ---------------------------------------------------------------- GCP: disk types, Hyperdisk, local SSDs

def test_gce_boot_disk_defaults_and_explicit_types():
    [boot] = gce_disks()
    assert boot["initialize_params"]["disk_type"] == "zones/us-central1-a/diskTypes/pd-balanced"
    assert not {"provisioned_iops", "provisioned_throughput"} & set(boot["initialize_params"])
    [boot] = gce_disks(disk_type="pd-ssd")
    assert boot["initialize_params"]["disk_type"].endswith("/pd-ssd")
    [boot] = gce_disks(instance_type="n4-standard-8")  # the 4th generation boots from Hyperdisk Balanced only
    assert boot["initialize_params"]["disk_type"].endswith("/hyperdisk-balanced")
    [boot] = gce_disks(instance_type="c3-standard-8", disk_type="hyperdisk-balanced", disk_throughput=600, disk_iops=12000)
    assert boot == {"boot": True, "auto_delete": True, "initialize_params": {
        "source_image": f"projects/{PROJECT}/global/images/{IMAGE}", "disk_size_gb": 50,
        "disk_type": "zones/us-central1-a/diskTypes/hyperdisk-balanced", "labels": {"runner-job": JOB.lower()},
        "provisioned_iops": 12000, "provisioned_throughput": 600}}
    [boot] = gce_disks(instance_type="n4-standard-8", disk_iops=5000)  # one of the two: GCE picks the other's default
    assert boot["initialize_params"]["provisioned_iops"] == 5000 and "provisioned_throughput" not in boot["initialize_params"]


def test_gce_local_ssds_are_nvme_scratch_disks():
    from google.cloud import compute_v1

    boot, *scratch = gce_disks(instance_type="n2-standard-8", local_ssds=2)
    assert boot["boot"] and scratch == [{"type_": "SCRATCH", "auto_delete": True, "interface": "NVME",
                                         "initialize_params": {"disk_type": "zones/us-central1-a/diskTypes/local-ssd"}}] * 2
    rest = json.loads(compute_v1.AttachedDisk.to_json(compute_v1.AttachedDisk(scratch[0])))  # as the REST API gets it
    assert (rest["type"], rest["interface"], rest["initializeParams"]["diskType"]) == ("SCRATCH", "NVME", "zones/us-central1-a/diskTypes/local-ssd")
    assert len(gce_disks(instance_type="n1-standard-4", local_ssds=3)) == 4  # N1 takes 1-8, 16, 24 at any size
    assert len(gce_disks(instance_type="n2d-highmem-96", local_ssds=24)) == 25
    assert len(gce_disks(instance_type="n2-standard-8", local_ssds=0)) == 1
    # an -lssd type comes with its own, attached by GCE: none in the body; its own count is accepted
    assert len(gce_disks(instance_type="c3-standard-8-lssd")) == len(gce_disks(instance_type="c3-standard-8-lssd", local_ssds=2)) == 1
    assert gcp_disks.fixed_local_ssds("c3d-highmem-60-lssd") == 4 and gcp_disks.fixed_local_ssds("c3-standard-8") is None
    assert gcp_disks.local_ssd_counts("c2-standard-16") == (2, 4, 8) and gcp_disks.local_ssd_counts("e2-standard-4") is None
    assert gcp_disks.vcpus("n2-custom-8-32768") == 8 and gcp_disks.vcpus("e2-micro") is None


@pytest.mark.parametrize(("fields", "message"), [
    ({"disk_type": "hyperdisk-balanced"}, "disk_type hyperdisk-balanced is not offered for e2-standard-4 (e2 VMs take "
                                          "pd-balanced, pd-ssd, pd-standard)"),
    ({"instance_type": "n1-standard-8", "disk_type": "hyperdisk-balanced"}, "(n1 VMs take pd-balanced, pd-ssd, pd-standard)"),
    ({"instance_type": "n4-standard-8", "disk_type": "pd-balanced"}, "disk_type pd-balanced is not offered for n4-standard-8 "
                                                                    "(n4 VMs take hyperdisk-balanced)"),
    ({"instance_type": "c4-standard-8", "disk_type": "pd-ssd"}, "(c4 VMs take hyperdisk-balanced)"),
    ({"instance_type": "c3-standard-8", "disk_type": "pd-standard"}, "(c3 VMs take pd-balanced, pd-ssd, hyperdisk-balanced)"),
    ({"instance_type": "c3-standard-8", "disk_type": "hyperdisk-throughput"},
     "disk_type 'hyperdisk-throughput' cannot be the root disk (GCE boots only from Persistent Disk and Hyperdisk Balanced): "
     "use one of pd-balanced, pd-ssd, hyperdisk-balanced for c3-standard-8"),
    ({"disk_type": "gp3"}, "disk_type 'gp3' is not a GCE boot disk type: use one of pd-balanced, pd-ssd, pd-standard"),
    ({"disk_throughput": 300}, "disk_throughput 300: a pd-balanced disk has no provisioned speed (it grows with disk_gb); only "
                               "hyperdisk-balanced takes one: e2 VMs take no Hyperdisk: leave them out"),
    ({"instance_type": "c3-standard-8", "disk_iops": 5000}, "only hyperdisk-balanced takes one: set disk_type hyperdisk-balanced"),
    ({"instance_type": "c3-standard-8", "disk_type": "pd-ssd", "disk_iops": 5000}, "disk_iops 5000: a pd-ssd disk has no provisioned"),
    ({"instance_type": "n4-standard-8", "disk_iops": 2999}, "disk_iops 2999 is outside what a 50 GB hyperdisk-balanced disk "
                                                            "takes, 3000-25000 (500 per GB, at most 160000): raise disk_gb"),
    ({"instance_type": "n4-standard-8", "disk_iops": 160001, "disk_gb": 1000}, "takes, 3000-160000 (500 per GB, at most 160000)"),
    ({"instance_type": "n4-standard-8", "disk_throughput": 139}, "disk_throughput 139 MiB/s is outside hyperdisk-balanced's range, 140-2400"),
    ({"instance_type": "n4-standard-8", "disk_throughput": 2401}, "disk_throughput 2401 MiB/s is outside hyperdisk-balanced's range"),
    ({"local_ssds": 1}, "local_ssds 1: e2-standard-4 takes no local SSDs; n1, n2, n2d, c2, c2d and m3 types take them"),
    ({"instance_type": "c3-standard-8", "local_ssds": 2}, "c3, c3d and z3 come with them as -lssd types (e.g. c3-standard-8-lssd)"),
    ({"instance_type": "n2-standard-32", "local_ssds": 2}, "local_ssds 2 is not a count GCE attaches to n2-standard-32: it takes 4, 8, 16, 24"),
    ({"instance_type": "n2-standard-8", "local_ssds": 3}, "it takes 1, 2, 4, 8, 16, 24"),
    ({"instance_type": "c2-standard-60", "local_ssds": 4}, "it takes 8"),
    ({"instance_type": "c3-standard-8-lssd", "local_ssds": 4}, "local_ssds 4: c3-standard-8-lssd comes with 2 local SSDs; leave local_ssds out"),
    ({"instance_type": "c3-standard-8-lssd", "local_ssds": 0}, "leave local_ssds out, or pick c3-standard-8 for none"),
    ({"instance_type": "c4-standard-8-lssd", "local_ssds": 1}, "comes with its own local SSDs, a count runner does not know"),
])
def test_gce_refusals_name_the_value_and_what_the_type_takes(fields, message):
    with pytest.raises(SpecError) as e:
        gce_disks(**{"instance_type": "e2-standard-4", **fields})
    assert message in str(e.value)


def test_gce_disk_prices():
    hb = (2000 * 0.005 + 360 * 0.04) / HOUR  # 5000 IOPS, 500 MiB/s: above the included 3000 and 140
    assert gcp_prices.disk_extra_per_hour("hyperdisk-balanced", 5000, 500) == pytest.approx(hb)
    assert gcp_prices.disk_extra_per_hour("hyperdisk-balanced") == 0 == gcp_prices.disk_extra_per_hour("pd-ssd", 5000, 500)
    assert gcp_prices.local_ssds_per_hour(2) == pytest.approx(2 * 375 * 0.08 / HOUR)
    most = gcp_prices.cost(1.0, 3600, 100, "hyperdisk-balanced", 5000, 500, 2)
    assert most == pytest.approx(1.0 + 100 * 0.08 / HOUR + hb + 2 * 375 * 0.08 / HOUR, abs=1e-4)
    assert gcp_prices.cost(0.0, HOUR * 3600, 100, "pd-ssd") == pytest.approx(17.0)
    assert gcp_prices.cost(0.0, HOUR * 3600, 100, "pd-standard") == pytest.approx(4.0)


def test_dry_run_on_gcp_shows_the_disks_and_their_cost(gcp_cli, make_job):  # noqa: F811 (the fixture)
    google, client, bucket = gcp_cli
    d = make_job({"name": "scratch", "command": "true", "instance_type": "n2-standard-4", "max_runtime": "1h", "local_ssds": 2})
    r = run_cli("launch", str(d), "--cloud", "gcp", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "root_disk: pd-balanced (n2's default)" in r.stdout
    assert "local_ssds: 2 x 375 GiB NVMe scratch disks" in r.stdout
    ssd = 2 * 375 * 0.08 / HOUR
    assert f"local_ssds_usd_per_hour: {round(ssd, 4)}" in r.stdout
    plan = json.loads(run_cli("launch", str(d), "--cloud", "gcp", "--dry-run", "--json", "--type", "c3-standard-4",
                              "--local-ssds", "0", "--disk-type", "hyperdisk-balanced", "--disk-iops", "6000",
                              "--disk-throughput", "400").stdout)
    hb = (3000 * 0.005 + 260 * 0.04) / HOUR
    assert plan["root_disk"] == "hyperdisk-balanced, 400 MiB/s, 6000 IOPS (set by disk_type)"
    assert plan["root_disk_extra_usd_per_hour"] == round(hb, 4) and plan["root_disk_extra_max_usd"] == round(hb * 4500 / 3600, 4)
    assert "local_ssds" not in plan
    price = plan["on_demand_usd_per_hour"]
    assert plan["max_cost_on_demand_usd"] == pytest.approx((price + 50 * 0.08 / HOUR + hb) * 4500 / 3600, abs=1e-4)
    bad = run_cli("launch", str(d), "--cloud", "gcp", "--dry-run", "--type", "e2-standard-4")
    assert bad.returncode == 2 and "local_ssds 2: e2-standard-4 takes no local SSDs" in bad.stderr
    assert not google.inserts() and not list(client.list_blobs(bucket))


# ---------------------------------------------------------------- the sandbox and a local VM

def sized(cloud: str, **fields) -> LaunchRequest:
    spec = JobSpec(name="disks", command="true", **fields)
    return launch.sized(spec, JOB, SimpleNamespace(name=cloud, default_instance_type="local-2x4"))


def test_a_local_vm_refuses_the_disk_fields_and_points_at_its_nvme_types():
    assert sized("local").disk_fields() == {}
    with pytest.raises(SpecError, match=r"local_ssds 2 is for GCP: a local VM gets emulated NVMe drives from its type, "
                                        r"local-<vCPUs>x<GiB>-nvme<N> \(e\.g\. --type local-2x4-nvme2\)"):
        sized("local", local_ssds=2, disk_iops=5000)
    with pytest.raises(SpecError, match="disk_type gp3, disk_iops 5000: a local VM's root disk is a file on this host"):
        sized("local", disk_type="gp3", disk_iops=5000)


def test_the_sandbox_ignores_the_disk_fields_with_a_note(capsys):
    launch._note_once.cache_clear()
    spec = {"disk_type": "hyperdisk-balanced", "disk_throughput": 500, "local_ssds": 4}
    first, again = sized("sandbox", **spec), sized("sandbox", **spec)
    assert first == again and first.disk_fields() == {}
    err = capsys.readouterr().err
    assert err.count("runner: the sandbox runs on this host and sizes no disk: disk_type, disk_throughput, local_ssds ignored\n") == 1
    assert sized("aws", **spec).disk_fields() == {"disk_type": "hyperdisk-balanced", "disk_throughput": 500, "local_ssds": 4}
