"""End to end in the sandbox: the exact rendered startup script, run on this host."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

from conftest import ROOT, run_cli
from taxi_reference import expected_rows, make_data, reference_counts

NASTY = "it's \"quoted\" $(touch /tmp/pwned) `id` $HOME \\ \n second line ü ✓ \t end"


def store_dir(home: Path) -> Path:
    return home / "store"


def job_dir(home: Path, job_id: str) -> Path:
    return store_dir(home) / "jobs" / job_id


def launch(*args: str, env: dict | None = None):
    """`runner launch ... --json`; returns (exit code, the JSON object, stderr)."""
    r = run_cli("launch", *args, "--cloud", "sandbox", "--json", env=env)
    obj = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None
    return r.returncode, obj, r.stderr


def read_log(home: Path, job_id: str, name: str, attempt: int = 1) -> str:
    """A log as the VM shipped it: its numbered parts in order, concatenated."""
    d = job_dir(home, job_id) / "logs" / str(attempt)
    parts = sorted(p for p in d.glob(f"{name}.[0-9][0-9][0-9][0-9][0-9][0-9]")) if d.is_dir() else []
    return b"".join(p.read_bytes() for p in parts).decode()


def power_log(home: Path, job_id: str) -> list[str]:
    return (home / "sandbox" / job_id / "power.log").read_text().splitlines()


def wait_for(pred, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_taxi_end_to_end(runner_home, tmp_path):
    data = store_dir(runner_home) / "data" / "nyc-taxi"
    make_data.generate(data, files=4, rows=8000, seed=3, fmt="both")
    rc, obj, err = launch(str(ROOT / "jobs" / "taxi"), "--wait")
    assert rc == 0, err
    job_id = obj["job_id"]
    assert obj["state"] == "SUCCEEDED" and obj["exit_code"] == 0
    d = job_dir(runner_home, job_id)
    assert {"job.json", "code.tar.gz", "status.json", "instance.json", "logs", "outputs"} <= {p.name for p in d.iterdir()}
    # the result matches an independent implementation
    out = tmp_path / "got"
    r = run_cli("outputs", job_id, str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader((out / "passenger_counts.csv").read_text().splitlines()))
    assert rows[0] == ["passenger_count", "trips"]
    assert rows[1:] == expected_rows(reference_counts(data))
    # logs, status and power-off, as any machine with the store sees them
    logs = run_cli("logs", job_id)
    assert "taxi: 4 trip files" in logs.stdout
    status = json.loads(run_cli("status", job_id, "--json").stdout)
    assert status["state"] == "SUCCEEDED" and status["started_at"] and status["ended_at"]
    power = power_log(runner_home, job_id)
    assert [line.split()[0] for line in power] == ["shutdown", "poweroff"]
    assert power[0].endswith("-P +40")  # failsafe: 30 min max runtime + 10 min, scheduled first


def test_failing_job_exits_with_its_code_and_keeps_its_log(runner_home, make_job):
    d = make_job({"name": "fails", "command": "echo about to fail; echo oops >&2; exit 3"})
    rc, obj, _ = launch(str(d), "--wait")
    assert rc == 3
    assert obj["state"] == "FAILED" and obj["exit_code"] == 3 and "exited with code 3" in obj["reason"]
    assert read_log(runner_home, obj["job_id"], "job.log") == "about to fail\noops\n"
    assert [line.split()[0] for line in power_log(runner_home, obj["job_id"])] == ["shutdown", "poweroff"]


def test_missing_input_fails_clearly_and_still_powers_off(runner_home, make_job):
    # a full URI: the launcher checks only store-relative inputs, so the VM's own fetch meets the gap
    missing = f"file://{store_dir(runner_home)}/data/missing/x.csv"
    d = make_job({"name": "noinput", "command": "cat data/x.csv", "inputs": {missing: "data/x.csv"}})
    rc, obj, _ = launch(str(d), "--wait")
    assert rc == 70
    assert obj["state"] == "FAILED" and obj["exit_code"] is None
    assert "could not fetch input" in obj["reason"] and "data/missing/x.csv" in obj["reason"]
    assert [line.split()[0] for line in power_log(runner_home, obj["job_id"])] == ["shutdown", "poweroff"]
    startup = read_log(runner_home, obj["job_id"], "startup.log")
    assert "FAILED: could not fetch input" in startup


def test_env_values_arrive_byte_exact(runner_home, make_job, tmp_path):
    script = "import os, sys; sys.stdout.buffer.write(os.environb[b'NASTY'])"
    d = make_job(
        {"name": "env", "command": "python3 dump.py > nasty.txt", "env": {"NASTY": NASTY}, "outputs": ["nasty.txt"]},
        files={"dump.py": script},
    )
    flag = "line one\n'two' \"three\" $(four) `five` ✓"
    rc, obj, err = launch(str(d), "--wait", "--env", f"FLAG={flag}")
    assert rc == 0, err
    out = job_dir(runner_home, obj["job_id"]) / "outputs" / "nasty.txt"
    assert out.read_bytes() == NASTY.encode()
    assert not Path("/tmp/pwned").exists()
    d2 = make_job({"name": "env2", "command": "printf %s \"$FLAG\" > flag.txt", "outputs": ["flag.txt"]}, name="j2")
    rc, obj, err = launch(str(d2), "--wait", "--env", f"FLAG={flag}")
    assert rc == 0, err
    assert (job_dir(runner_home, obj["job_id"]) / "outputs" / "flag.txt").read_text() == flag


def test_input_prefix_and_keys_with_spaces(runner_home, make_job):
    src = store_dir(runner_home) / "data" / "trip data"
    (src / "sub dir").mkdir(parents=True)
    (src / "a file.csv").write_text("a\n")
    (src / "sub dir" / "b file.csv").write_text("b\n")
    d = make_job({
        "name": "spaces",
        "command": "cat 'in put/a file.csv' 'in put/sub dir/b file.csv' 'one.csv' > 'my out.txt'",
        "inputs": {"data/trip data/": "in put/", "data/trip data/a file.csv": "one.csv"},
        "outputs": ["my out.txt"],
    })
    rc, obj, err = launch(str(d), "--wait")
    assert rc == 0, err
    assert (job_dir(runner_home, obj["job_id"]) / "outputs" / "my out.txt").read_text() == "a\nb\na\n"


def test_missing_output_fails_a_successful_job(runner_home, make_job):
    d = make_job({"name": "noout", "command": "true", "outputs": ["result.csv"]})
    rc, obj, _ = launch(str(d), "--wait")
    assert rc == 70 and obj["state"] == "FAILED"
    assert "output result.csv (not produced)" in obj["reason"]


def test_max_runtime_times_out(runner_home, make_job):
    d = make_job({"name": "slow", "command": "echo started; sleep 60", "max_runtime": "2s"})
    t0 = time.monotonic()
    rc, obj, _ = launch(str(d), "--wait")
    assert rc == 124 and obj["state"] == "TIMED_OUT"
    assert time.monotonic() - t0 < 30
    assert read_log(runner_home, obj["job_id"], "job.log") == "started\n"


def test_logs_stream_while_the_job_runs_and_cancel(runner_home, make_job):
    d = make_job({"name": "long", "command": "echo first line; sleep 120"})
    rc, obj, err = launch(str(d))
    assert rc == 0, err
    job_id = obj["job_id"]
    assert wait_for(lambda: read_log(runner_home, job_id, "job.log") == "first line\n"), "log never reached the store"
    assert json.loads(run_cli("status", job_id, "--json").stdout)["state"] == "RUNNING"
    r = run_cli("cancel", job_id)
    assert r.returncode == 0, r.stderr
    st = json.loads(run_cli("status", job_id, "--json").stdout)
    assert st["state"] == "CANCELLED"
    inst = json.loads((job_dir(runner_home, job_id) / "instance.json").read_text())
    assert not Path(f"/proc/{inst['data']['pid']}").exists() or "Z" in Path(f"/proc/{inst['data']['pid']}/stat").read_text().split()[2]
    assert run_cli("logs", job_id).stdout == "first line\n"


def test_vm_gone_without_final_status_is_lost(runner_home, make_job):
    d = make_job({"name": "vanish", "command": "sleep 120"})
    rc, obj, _ = launch(str(d))
    job_id = obj["job_id"]
    status = job_dir(runner_home, job_id) / "status.json"
    assert wait_for(lambda: json.loads(status.read_text())["state"] == "RUNNING")
    inst = json.loads((job_dir(runner_home, job_id) / "instance.json").read_text())
    os.killpg(inst["data"]["pid"], signal.SIGKILL)  # the machine dies: no trap, no final status
    assert wait_for(lambda: json.loads(run_cli("status", job_id, "--json").stdout)["state"] == "LOST")
    r = run_cli("launch", "--help")
    assert "71 LOST" in r.stdout
