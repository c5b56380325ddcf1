"""Secrets are referenced by name and fetched on the VM: the value never travels in user-data."""

from __future__ import annotations

import json

from conftest import run_cli
from fake_metadata import FakeMetadata

SECRET = "s3cr3t 'value' $(nope) ✓"


def test_aws_ssm_secret_is_fetched_on_the_vm(s3, make_job, monkeypatch):
    import boto3

    _, bucket = s3
    monkeypatch.setenv("RUNNER_STORE", f"s3://{bucket}/runner")
    boto3.client("ssm").put_parameter(Name="/prod/db-password", Value=SECRET, Type="SecureString")
    d = make_job({"name": "ssm", "command": 'printf %s "$DB_PASSWORD" > got.txt', "outputs": ["got.txt"],
                  "secrets": {"DB_PASSWORD": "aws-ssm:/prod/db-password"}})
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--wait", "--json")
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    s3c = boto3.client("s3")
    got = s3c.get_object(Bucket=bucket, Key=f"runner/jobs/{job_id}/outputs/got.txt")["Body"].read().decode()
    assert got == SECRET
    user_data = s3c.get_object(Bucket=bucket, Key=f"runner/jobs/{job_id}/user-data")["Body"].read().decode()
    script = s3c.get_object(Bucket=bucket, Key=f"runner/jobs/{job_id}/startup.sh")["Body"].read().decode()
    assert "s3cr3t" not in user_data + script and "aws-ssm:/prod/db-password" in script


def test_gcp_secret_manager_secret_is_fetched_on_the_vm(make_job, runner_home):
    meta = FakeMetadata(secrets={"projects/p/secrets/api-key/versions/latest": SECRET})
    d = make_job({"name": "gsm", "command": 'printf %s "$API_KEY" > got.txt', "outputs": ["got.txt"],
                  "secrets": {"API_KEY": "gcp-sm:projects/p/secrets/api-key"}})
    env = {"RUNNER_SANDBOX_INTERRUPTION": "gcp", "RUNNER_SANDBOX_METADATA_URL": meta.url, "RUNNER_GCP_SECRETS_URL": meta.url}
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--wait", "--json", env=env)
    meta.close()
    assert r.returncode == 0, r.stderr
    job = runner_home / "store" / "jobs" / json.loads(r.stdout)["job_id"]
    assert (job / "outputs" / "got.txt").read_text() == SECRET
    assert "s3cr3t" not in (job / "user-data").read_text()


def test_a_missing_secret_fails_before_the_job_runs(make_job, runner_home):
    meta = FakeMetadata()
    d = make_job({"name": "nosecret", "command": "echo ran", "secrets": {"API_KEY": "gcp-sm:projects/p/secrets/absent"}})
    env = {"RUNNER_SANDBOX_INTERRUPTION": "gcp", "RUNNER_SANDBOX_METADATA_URL": meta.url, "RUNNER_GCP_SECRETS_URL": meta.url}
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--wait", "--json", env=env)
    meta.close()
    assert r.returncode == 70
    result = json.loads(r.stdout)
    assert result["state"] == "FAILED" and "could not fetch secret API_KEY from gcp-sm:projects/p/secrets/absent" in result["reason"]
    job = runner_home / "store" / "jobs" / result["job_id"]
    assert (job / "logs").is_dir() and not list((job / "logs").glob("*/job.log.*"))  # the command never ran
    assert "\nran\n" not in "\n" + run_cli("logs", result["job_id"]).stdout  # the command's own output line
