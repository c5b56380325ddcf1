"""The CLI as a user and a CI pipeline meet it: help, errors, exit codes, JSON, nothing half-created."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, run_cli


def test_help_imports_no_cloud_sdk_jinja_or_ray():
    code = (
        "import sys; from click.testing import CliRunner; from runner.cli import main;"
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'google', 'jinja2', 'pydantic', 'ray')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_command_has_help():
    for cmd in ("launch", "render", "logs", "status", "cancel", "outputs"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and "Usage: python -m runner" in r.stdout.replace("runner.cli", "runner")


def test_bad_spec_creates_nothing(make_job, runner_home):
    d = make_job({"name": "bad", "command": "true", "max_runtim": "1h"})
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--wait")
    assert r.returncode == 2
    assert "unknown field 'max_runtim' (did you mean 'max_runtime'?)" in r.stderr
    assert not runner_home.exists() or not any(runner_home.rglob("*.json"))


def test_bad_flag_value_is_blamed_on_the_command_line(make_job, runner_home):
    d = make_job({"name": "ok", "command": "true"})
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--max-runtime", "forever")
    assert r.returncode == 2 and "command line: field 'max_runtime': 'forever' is not a duration" in r.stderr
    r = run_cli("launch", str(d), "--cloud", "azure")
    assert r.returncode == 2 and "'azure' is not one of" in r.stderr
    r = run_cli("launch", str(d), "--env", "NOVALUE")
    assert r.returncode == 2 and "--env 'NOVALUE': expected KEY=VALUE" in r.stderr
    assert not runner_home.exists() or not any(runner_home.rglob("*.json"))


def test_dry_run_shows_the_plan_and_creates_nothing(make_job, runner_home):
    d = make_job({"name": "plan", "command": "true"})
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--type", "c6i.32xlarge", "--spot", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["state"] == "DRY_RUN" and plan["instance_type"] == "c6i.32xlarge" and plan["spot"] is True
    assert plan["job_id"].startswith("plan-")
    assert not runner_home.exists() or not any(runner_home.rglob("*"))


def test_render_prints_the_script(make_job):
    d = make_job({"name": "render", "command": "echo hi", "env": {"A": "b c"}})
    r = run_cli("render", str(d), "--cloud", "sandbox", "--max-runtime", "5m")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("#!/bin/bash\n")
    assert "export A='b c'\n" in r.stdout and "MAX_RUNTIME=300\n" in r.stdout


def test_status_table_newest_first_and_unknown_jobs(make_job, runner_home):
    r = run_cli("status")
    assert r.returncode == 0 and "no jobs in" in r.stderr
    d = make_job({"name": "quick", "command": "true"})
    ids = []
    for _ in range(2):
        r = run_cli("launch", str(d), "--cloud", "sandbox", "--wait", "--json")
        assert r.returncode == 0, r.stderr
        ids.append(json.loads(r.stdout)["job_id"])
    table = run_cli("status").stdout.splitlines()
    assert table[0].split()[:4] == ["JOB", "STATE", "EXIT", "COST"]
    listed = [line.split()[0] for line in table[1:-1]]
    assert sorted(listed, reverse=True) == listed and set(listed) == set(ids)
    assert all(line.split()[1:4] == ["SUCCEEDED", "0", "0.0000"] for line in table[1:-1])  # the sandbox is free
    assert table[-1].split()[0] == "total" and "(2 of 2 jobs priced)" in table[-1]
    rows = json.loads(run_cli("status", "--json").stdout)
    assert {row["job_id"] for row in rows} == set(ids)
    r = run_cli("status", "quick-20200101T000000Z-abcdef")
    assert r.returncode == 66 and "no job 'quick-20200101T000000Z-abcdef'" in r.stderr
    r = run_cli("logs", "../../etc/passwd")
    assert r.returncode == 2 and "is not a job id" in r.stderr


def test_launch_without_wait_returns_the_job_id_at_once(make_job, runner_home):
    d = make_job({"name": "detached", "command": "sleep 2"})
    r = run_cli("launch", str(d), "--cloud", "sandbox")
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    assert job_id.startswith("detached-") and f"runner logs {job_id} --follow" in r.stderr
    r = run_cli("logs", job_id, "--follow")
    assert r.returncode == 0
    assert json.loads(run_cli("status", job_id, "--json").stdout)["state"] == "SUCCEEDED"


def test_follow_prints_the_log_and_exits_with_the_job_code(make_job):
    d = make_job({"name": "follow", "command": "for i in 1 2 3; do echo line $i; done; exit 4"})
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--follow")
    assert r.returncode == 4
    assert r.stdout == "line 1\nline 2\nline 3\n"
    assert "FAILED (exit 4)" in r.stderr


def test_runner_home_redirects_all_state(make_job, tmp_path):
    d = make_job({"name": "home", "command": "true"})
    other = tmp_path / "elsewhere"
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--wait", env={"RUNNER_HOME": str(other)})
    assert r.returncode == 0, r.stderr
    assert len(list((other / "store" / "jobs").iterdir())) == 1
    assert (ROOT / "jobs" / "taxi" / "job.yaml").exists()
