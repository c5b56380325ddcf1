"""A cost ceiling becomes a runtime limit; status shows cost; a preempted job is relaunched and resumes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_cli
from fake_metadata import FakeMetadata

from runner import cost
from runner.errors import SpecError

pytest_plugins = ["aws_fixtures"]


def test_cost_arithmetic():
    assert cost.so_far(2.0, "2026-01-01T00:00:00Z", "2026-01-01T01:30:00Z") == pytest.approx(3.0)
    assert cost.so_far(None, "2026-01-01T00:00:00Z", None) is None
    assert cost.runtime_for(1.0, 0.5, "aws", "m6i.large") == 7200
    assert cost.runtime_for(1.0, 0.0, "sandbox", "sandbox") is None  # free: no limit
    with pytest.raises(SpecError, match="no price is known for x1.big on aws"):
        cost.runtime_for(1.0, None, "aws", "x1.big")
    with pytest.raises(SpecError, match="buys only 36 s"):
        cost.runtime_for(0.001, 0.1, "aws", "m6i.large")


def test_max_cost_becomes_the_runtime_limit_on_aws(aws, make_job):
    d = make_job({"name": "capped", "command": "true", "max_runtime": "2h", "instance_type": "m6i.large"})
    plan = json.loads(run_cli("launch", str(d), "--cloud", "aws", "--dry-run", "--json", "--max-cost", "0.048").stdout)
    assert plan["usd_per_hour"] == 0.096 and plan["max_runtime_s"] == 1800  # 0.048 USD at 0.096 USD/h
    script = run_cli("render", str(d), "--cloud", "aws", "--max-cost", "0.048").stdout
    assert "MAX_RUNTIME=1800\n" in script
    plan = json.loads(run_cli("launch", str(d), "--cloud", "aws", "--dry-run", "--json", "--max-cost", "100").stdout)
    assert plan["max_runtime_s"] == 7200  # the ceiling is above the runtime limit: the runtime limit stays


def test_max_cost_on_the_seeds_own_type(aws, make_job):
    d = make_job({"name": "seeds", "command": "true", "max_runtime": "4h", "instance_type": "i3en.2xlarge"})
    r = run_cli("launch", str(d), "--cloud", "aws", "--dry-run", "--json", "--max-cost", "0.904")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["usd_per_hour"] == 0.904 and plan["max_runtime_s"] == 3600


def test_status_shows_cost_so_far_and_total(make_job, runner_home):
    d = make_job({"name": "priced", "command": "true"})
    job_id = json.loads(run_cli("launch", str(d), "--cloud", "sandbox", "--wait", "--json").stdout)["job_id"]
    jobs = runner_home / "store" / "jobs" / job_id
    record = json.loads((jobs / "job.json").read_text())
    (jobs / "job.json").write_text(json.dumps({**record, "usd_per_hour": 3.6}))
    status = json.loads((jobs / "status.json").read_text())
    (jobs / "status.json").write_text(json.dumps({**status, "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:10:00Z"}))
    one = json.loads(run_cli("status", job_id, "--json").stdout)
    assert one["usd_per_hour"] == 3.6 and one["cost_usd"] == pytest.approx(0.6)
    table = run_cli("status").stdout.splitlines()
    assert table[1].split()[3] == "0.6000" and table[-1].split()[:2] == ["total", "0.6000"]


def test_preempted_job_is_relaunched_and_resumes_from_its_checkpoint(make_job, runner_home):
    meta = FakeMetadata()
    command = (
        'if [ -f "$RUNNER_CHECKPOINT_DIR/step" ]; then echo "resumed at $(cat "$RUNNER_CHECKPOINT_DIR/step")"; exit 0; fi; '
        'echo 41 > "$RUNNER_CHECKPOINT_DIR/step"; echo working; sleep 600'
    )
    d = make_job({"name": "resume", "command": command, "spot": True, "retries": 2})
    env = {"RUNNER_SANDBOX_INTERRUPTION": "aws", "RUNNER_SANDBOX_METADATA_URL": meta.url}
    proc = subprocess.Popen([sys.executable, "-m", "runner", "launch", str(d), "--cloud", "sandbox", "--wait", "--json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, **env})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("working" in p.read_text() for p in runner_home.glob("store/jobs/*/logs/1/job.log.*")):
        time.sleep(0.2)
    meta.interrupt(times=1)  # the first VM is taken back; the relaunched one is not
    out, err = proc.communicate(timeout=120)
    meta.close()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["state"] == "SUCCEEDED"
    assert "preempted; relaunching (attempt 2 of 3)" in err
    jobs = runner_home / "store" / "jobs" / result["job_id"]
    assert run_cli("logs", result["job_id"]).stdout == "working\nresumed at 41\n"  # each attempt's log, in order
    assert not (jobs / "logs" / "attempt-1").exists()  # each attempt logs under its own prefix: nothing is copied
    assert json.loads((jobs / "instance.json").read_text())["attempt"] == 2
