"""A store-relative input missing from a file:// store stops the launch before anything is created, naming the fix."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli

from runner import input_check
from runner.errors import NotFoundError
from runner.spec import validate


def spec(inputs: dict) -> object:
    return validate({"name": "j", "command": "true", "inputs": inputs}, "test")


def test_the_readme_quick_loop_names_the_command_then_works(runner_home):
    r = run_cli("launch", "jobs/taxi", "--cloud", "sandbox", "--follow", timeout=300)
    assert r.returncode == 66, r.stderr
    data = runner_home / "store" / "data" / "nyc-taxi"
    command = f"python3 jobs/taxi/make_data.py {shlex.quote(str(data))}"
    assert command in r.stderr
    assert "input 'data/nyc-taxi/' is not in the store" in r.stderr
    assert not runner_home.exists()  # nothing was created: no job, no sandbox, no store
    assert r.stdout == ""

    made = subprocess.run(shlex.split(command.replace("python3", shlex.quote(sys.executable), 1)), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    r = run_cli("launch", "jobs/taxi", "--cloud", "sandbox", "--follow", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "passenger_count" in r.stdout


def test_a_job_without_a_data_maker_is_told_where_the_data_goes(runner_home, make_job):
    d = make_job({"name": "nodata", "command": "ls data", "inputs": {"data/trips/": "data/", "data/one.csv": "one.csv"}})
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--json")
    assert r.returncode == 66 and r.stdout == ""
    trips = runner_home / "store" / "data" / "trips"
    assert f"no file below {trips};" in r.stderr
    assert f"mkdir -p {shlex.quote(str(trips))} && cp -r YOUR_DATA/. {shlex.quote(str(trips))}/" in r.stderr
    assert "also missing: 'data/one.csv'" in r.stderr
    assert not (runner_home / "store" / "jobs").exists()


def test_a_dry_run_still_shows_the_plan_without_the_data(runner_home):
    r = run_cli("launch", "jobs/taxi", "--cloud", "sandbox", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "DRY_RUN"


def test_a_prefix_needs_a_file_below_it(tmp_path):
    store = tmp_path / "store"
    (store / "data" / "empty" / "sub").mkdir(parents=True)
    (store / "data" / "deep" / "a" / "b").mkdir(parents=True)
    (store / "data" / "deep" / "a" / "b" / "x.csv").write_text("1\n")
    (store / "data" / "one.csv").write_text("1\n")
    (store / "data" / "link").symlink_to(store / "data" / "deep")
    s = spec({"data/empty/": "e/", "data/deep/": "d/", "data/one.csv": "o.csv", "data/none.csv": "n.csv",
              "data/link/": "l/", "s3://bucket/x/": "s/"})
    assert [u for u, _ in input_check.missing(s, f"file://{store}")] == ["data/empty/", "data/none.csv", "data/link/"]


def test_a_bucket_store_or_a_cloud_vm_is_not_checked_before_launch(tmp_path):
    assert input_check.missing(spec({"data/nowhere/": "d/"}), "s3://bucket/runner") == []
    input_check.check(spec({"data/nowhere/": "d/"}), f"file://{tmp_path}", tmp_path, "aws")  # its VM reports it


def test_the_data_maker_is_named_relative_to_where_the_user_is(tmp_path, monkeypatch):
    job = tmp_path / "jobs" / "mine"
    job.mkdir(parents=True)
    (job / "make_data.py").write_text("")
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "my store"
    with pytest.raises(NotFoundError) as e:
        input_check.check(spec({"data/x/": "x/"}), f"file://{store}", job, "local")
    assert f"python3 jobs/mine/make_data.py '{store}/data/x'" in str(e.value)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(NotFoundError) as e:
        input_check.check(spec({"data/x/": "x/"}), f"file://{store}", job, "local")
    assert f"python3 {job}/make_data.py" in str(e.value)
