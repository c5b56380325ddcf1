#!/usr/bin/env python3
"""What runner adds to an AWS launch: `runner launch jobs/taxi --cloud aws --spot` against a moto
server on 127.0.0.1, beside a minimal boto3 script making the same API calls, same run.

Usage: python3 bench/aws_launch.py [--reps 7]

Four variants, interleaved, one untimed warm-up round first, median of --reps:
  runner in-process   runner.launch.plan + runner.launch.launch (validate, render, pack, record, launch)
  boto3 in-process    the same API calls with boto3 (clients made per launch, as a script makes them);
                      the payloads (user-data, code tarball, records) are prepared outside the timing
  runner CLI          the real console script in a fresh process
  boto3 script        the same boto3 calls as a script in a fresh process (python3 FILE)
The API calls each variant makes are counted with botocore hooks and printed. The moto server runs
as its own process (python3 -m moto.server), so it does not share this process's GIL.
Target: runner <= 1.5x the boto3 baseline, in-process and as a CLI (ratio of medians).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

TARGET = 1.5
REGION = "us-east-1"
BUCKET = "runner-bench"
PROFILE = "runner-vm"

# The minimal script: the same calls runner makes for a spot launch, nothing else.
BASELINE = r'''
import json, sys, time
from datetime import datetime, timezone
import boto3

def launch(cfg, payload):
    ec2 = boto3.client("ec2", region_name=cfg["region"])
    s3 = boto3.client("s3")
    job = f"bench-{time.time_ns()}"
    key = f"runner/jobs/{job}/"
    s3.put_object(Bucket=cfg["bucket"], Key=key + "job.json", Body=payload["job_json"])
    s3.put_object(Bucket=cfg["bucket"], Key=key + "code.tar.gz", Body=payload["code"])
    s3.put_object(Bucket=cfg["bucket"], Key=key + "status.json", Body=b'{"state": "PROVISIONING"}')
    image = ec2.describe_images(ImageIds=[cfg["ami"]])["Images"][0]
    prices = ec2.describe_spot_price_history(InstanceTypes=["m6i.large"], ProductDescriptions=["Linux/UNIX"],
                                             StartTime=datetime.now(timezone.utc))["SpotPriceHistory"]
    zone = min(prices, key=lambda p: float(p["SpotPrice"]))["AvailabilityZone"]
    tags = [{"Key": "runner-job", "Value": job}]
    inst = ec2.run_instances(
        ImageId=image["ImageId"], InstanceType="m6i.large", MinCount=1, MaxCount=1, UserData=payload["user_data"],
        InstanceInitiatedShutdownBehavior="terminate", MetadataOptions={"HttpTokens": "required"},
        IamInstanceProfile={"Name": cfg["profile"]}, Placement={"AvailabilityZone": zone},
        BlockDeviceMappings=[{"DeviceName": image["RootDeviceName"], "Ebs": {"VolumeSize": 50, "VolumeType": "gp3", "DeleteOnTermination": True}}],
        TagSpecifications=[{"ResourceType": r, "Tags": tags} for r in ("instance", "volume")],
        InstanceMarketOptions={"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}},
    )["Instances"][0]
    s3.put_object(Bucket=cfg["bucket"], Key=key + "instance.json", Body=json.dumps({"id": inst["InstanceId"]}).encode())
    return job

if __name__ == "__main__":
    cfg, payload = json.loads(open(sys.argv[1]).read()), json.loads(open(sys.argv[2]).read())
    payload["code"] = bytes.fromhex(payload["code"])
    print(launch(cfg, payload))
'''


def setup(url: str, home: Path) -> dict:
    """Bucket, instance profile and a runner-* AMI on the server; a Packer manifest pointing at it."""
    import boto3

    ec2, s3, iam = (boto3.client(s, region_name=REGION) for s in ("ec2", "s3", "iam"))
    s3.create_bucket(Bucket=BUCKET)
    iam.create_role(RoleName="runner-vm-role", AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName=PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=PROFILE, RoleName="runner-vm-role")
    base = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=iid, Name="runner-20990101000000")["ImageId"]
    (home / "images").mkdir(parents=True)
    manifest = {"builds": [{"builder_type": "amazon-ebs", "artifact_id": f"{REGION}:{ami}", "build_time": 1}]}
    (home / "images" / "manifest.json").write_text(json.dumps(manifest))
    return {"region": REGION, "bucket": BUCKET, "ami": ami, "profile": PROFILE}


class CallLog:
    """Counts the AWS API calls made in this process (botocore's before-call event)."""

    def __init__(self) -> None:
        import boto3

        self.calls: list[str] = []
        boto3._get_default_session().events.register("before-call", self._seen)

    def _seen(self, model, **_):
        self.calls.append(model.name)

    def take(self) -> list[str]:
        got, self.calls = self.calls, []
        return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    bl.header("AWS launch: `runner launch jobs/taxi --cloud aws --spot` vs a minimal boto3 script (moto server)")
    runner = bl.real_script("runner")
    job_dir = bl.REPO / "jobs" / "taxi"
    if not runner:
        print("runner is not installed (pip install -e '.[test]'); nothing measured")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-aws-"))
    port = bl.free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bl.wait_port(port, proc=server)
        url = f"http://127.0.0.1:{port}"
        env = {
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true", "RUNNER_HOME": str(tmp / "home"),
            "RUNNER_STORE": f"s3://{BUCKET}/runner", "RUNNER_AWS_REGION": REGION, "RUNNER_AWS_INSTANCE_PROFILE": PROFILE,
        }
        os.environ.update(env)
        for var in ("AWS_PROFILE", "RUNNER_CLOUD", "RUNNER_CONFIG", "RUNNER_AWS_SUBNETS", "RUNNER_AWS_SECURITY_GROUP",
                    "RUNNER_S3_ENDPOINT", "RUNNER_IMAGES"):
            os.environ.pop(var, None)
        cfg = setup(url, tmp / "home")
        print(f"- moto {_version('moto')}, boto3 {_version('boto3')}; server: python3 -m moto.server on {url}")
        print(f"- runner: {bl.describe_path(runner)}; job: {job_dir.relative_to(bl.REPO)} (--spot, default type)")
        return measure(a.reps, cfg, job_dir, runner, tmp)
    finally:
        bl.stop(server)


def measure(reps: int, cfg: dict, job_dir: Path, runner: str, tmp: Path) -> int:
    import importlib.util

    from runner import launch as launcher

    script = tmp / "baseline.py"
    script.write_text(BASELINE)
    spec = importlib.util.spec_from_file_location("baseline", script)  # the same code as the script, imported
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    p = launcher.plan(job_dir, {"spot": True}, "aws")
    payload = {"user_data": p.request.user_data, "code": launcher.pack(job_dir),
               "job_json": json.dumps({"job_id": p.job_id, "spec": p.spec.model_dump()}, indent=1).encode()}
    (tmp / "cfg.json").write_text(json.dumps(cfg))
    (tmp / "payload.json").write_text(json.dumps({**payload, "code": payload["code"].hex(), "job_json": payload["job_json"].decode()}))
    log = CallLog()

    def runner_inproc():
        launcher.launch(launcher.plan(job_dir, {"spot": True}, "aws"))

    def boto3_inproc():
        baseline.launch(cfg, payload)

    def runner_cli():
        r = subprocess.run([runner, "launch", str(job_dir), "--cloud", "aws", "--spot", "--json"], check=False, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"runner launch failed: {r.stderr.strip()[-400:]}")

    def boto3_script():
        r = subprocess.run([sys.executable, str(script), str(tmp / "cfg.json"), str(tmp / "payload.json")], check=False, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"baseline script failed: {r.stderr.strip()[-400:]}")

    variants = [("runner in-process", runner_inproc), ("boto3 in-process", boto3_inproc),
                ("runner CLI (fresh process)", runner_cli), ("boto3 script (fresh process)", boto3_script)]
    calls = {}
    for label, fn in variants:  # warm-up: server-side first-use costs, page cache, .pyc files
        log.take()
        fn()
        calls[label] = log.take()
    times: dict[str, list[float]] = {label: [] for label, _ in variants}
    for _ in range(reps):
        for label, fn in variants:
            t0 = time.perf_counter()
            fn()
            times[label].append((time.perf_counter() - t0) * 1000)
    med = {label: bl.median(ms) for label, ms in times.items()}
    print("\n## API calls per launch (counted in-process during the warm-up)\n")
    for label in ("runner in-process", "boto3 in-process"):
        print(f"- {label}: {len(calls[label])}: {', '.join(calls[label])}")
    print(f"\n## Wall time per launch, ms ({reps} runs each, interleaved; {bl.loadavg()} at the end)\n")
    pairs = {"runner in-process": "boto3 in-process", "runner CLI (fresh process)": "boto3 script (fresh process)"}
    rows = []
    for label, _ in variants:
        base = pairs.get(label)
        ratio = f"{med[label] / med[base]:.2f}x" if base else ""
        target = f"<= {TARGET}x: {bl.verdict(med[label] / med[base] <= TARGET)}" if base else "(baseline)"
        rows.append([label, f"{med[label]:.0f}", f"{bl.p90(times[label]):.0f}", f"{min(times[label]):.0f}", ratio, target])
    print(bl.table(["variant", "median", "p90", "min", "vs boto3", "target"], rows, align="lrrrrl"))
    print("\nThe runner rows include what the baseline gets for free: validating job.yaml, rendering the"
          " startup script, packing the job's folder, and (CLI) importing click, pydantic, jinja2 and boto3.")
    return 0


def _version(mod: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(mod)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
