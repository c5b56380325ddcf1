"""A real VM: the baked local image booted under QEMU runs the taxi job and powers itself off."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from taxi_reference import expected_rows, make_data, reference_counts

pytestmark = pytest.mark.vm
# Where the image is built once and kept between runs (make image honours RUNNER_IMAGES).
IMAGES = Path(os.environ.get("RUNNER_IMAGES") or Path.home() / ".runner" / "images")


@pytest.fixture(scope="session")
def local_image():
    """The local image: `make image` builds it once per recipe and returns at once when it is up to date."""
    from runner import images

    os.environ["RUNNER_IMAGES"] = str(IMAGES)
    subprocess.run(["make", "--no-print-directory", "image", "CLOUD=local"], cwd=ROOT, check=True)
    return images.local_image(None)


@pytest.fixture
def vm_env(local_image, monkeypatch):
    monkeypatch.setenv("RUNNER_IMAGES", str(IMAGES))
    return {"RUNNER_IMAGES": str(IMAGES)}


def test_taxi_in_a_real_vm(vm_env, runner_home, tmp_path):
    data = runner_home / "store" / "data" / "nyc-taxi"
    make_data.generate(data, files=4, rows=20000, seed=11, fmt="both")
    r = run_cli("launch", str(ROOT / "jobs" / "taxi"), "--cloud", "local", "--type", "local-2x4", "--wait", "--json",
                timeout=900)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    job_id = job["job_id"]
    assert job["state"] == "SUCCEEDED" and job["exit_code"] == 0
    out = tmp_path / "out"
    assert run_cli("outputs", job_id, str(out)).returncode == 0
    rows = list(csv.reader((out / "passenger_counts.csv").read_text().splitlines()))
    assert rows[0] == ["passenger_count", "trips"] and rows[1:] == expected_rows(reference_counts(data))
    logs = run_cli("logs", job_id, "--all").stdout
    assert "taxi: 4 trip files" in logs  # the job's own output
    assert "==> console.log <==" in logs and "Linux version" in logs  # the VM's serial console
    assert "reboot: Power down" in logs  # the guest powered itself off ...
    inst = json.loads((runner_home / "store" / "jobs" / job_id / "instance.json").read_text())
    host_log = (Path(inst["data"]["dir"]) / "host.log").read_text()
    assert "qemu exited with code 0" in host_log  # ... and QEMU exited
    assert not (Path(inst["data"]["dir"]) / "disk.qcow2").exists()


def test_one_vm_confined_striped_and_failing(vm_env, runner_home, make_job):
    """One boot (each costs minutes under TCG) shows three things of a local-2x4-nvme2 VM: it sees and writes its own
    folder and its inputs only; its work dir is on one md RAID0 over both emulated NVMe drives; a job exiting 5 ends
    FAILED with code 5, its outputs still uploaded."""
    store = runner_home / "store"
    (store / "data" / "in").mkdir(parents=True)
    (store / "data" / "in" / "a.csv").write_text("a\n")
    (store / "data" / "secret.txt").write_text("not for the vm\n")
    other = store / "jobs" / "other-20260101T000000Z-abcdef"
    other.mkdir(parents=True)
    (other / "status.json").write_text('{"state": "SUCCEEDED"}')
    s = "/mnt/runner-store"
    tries = {"input": f"{s}/data/in/evil.txt", "other job": f"{other.as_posix().replace(str(store), s)}/status.json",
             "store root": f"{s}/evil.txt"}
    cmd = "cat in/a.csv; " + " ".join(
        f"if (echo x > {path}) 2>/dev/null; then echo 'WROTE {what}'; else echo 'refused {what}'; fi;"
        for what, path in tries.items()
    ) + f" ls -A {s} {s}/jobs {s}/data; echo done > out.txt; "
    cmd += ('df --output=source,target "$RUNNER_WORK_DIR"; cat /proc/mdstat; echo "scratch=$RUNNER_SCRATCH"; '
            'echo "work=$RUNNER_WORK_DIR"; python3 -c "import duckdb, ray, sys; sys.exit(5)"')
    d = make_job({"name": "confined", "command": cmd, "inputs": {"data/in/": "in/"}, "outputs": ["out.txt"]})
    r = run_cli("launch", str(d), "--cloud", "local", "--type", "local-2x4-nvme2", "--wait", "--json", timeout=900)
    assert r.returncode == 5, r.stderr
    job = json.loads(r.stdout)
    job_id = job["job_id"]
    assert job["state"] == "FAILED" and job["exit_code"] == 5  # the image's duckdb and Ray import: only the exit fails
    log = run_cli("logs", job_id).stdout
    # confined: its own folder and its inputs, nothing else of the store
    assert log.startswith("a\n") and "WROTE" not in log
    assert all(f"refused {what}" in log for what in tries)
    listing = log.split("refused store root\n", 1)[1].split("Filesystem", 1)[0]
    assert "other-" not in listing and "secret.txt" not in listing and job_id in listing
    assert (other / "status.json").read_text() == '{"state": "SUCCEEDED"}'
    assert not (store / "data" / "in" / "evil.txt").exists() and not (store / "evil.txt").exists()
    assert (store / "jobs" / job_id / "outputs" / "out.txt").read_text() == "done\n"
    assert "runner home/local" not in Path("/proc/self/mountinfo").read_text()  # the host's mount table is untouched
    # striped: the work dir is on an md RAID0 over both drives, under RUNNER_SCRATCH
    lines = log.splitlines()
    source, target = lines[lines.index(next(line for line in lines if line.startswith("Filesystem"))) + 1].split()
    md = source.removeprefix("/dev/")
    assert source.startswith("/dev/md"), log
    array = next(line for line in lines if line.startswith(f"{md} :"))
    assert "active raid0" in array, log
    assert sorted(re.findall(r"\b(nvme\d+n1)\[\d+\]", array)) == ["nvme0n1", "nvme1n1"], log
    scratch = next(line for line in lines if line.startswith("scratch=")).removeprefix("scratch=")
    work = next(line for line in lines if line.startswith("work=")).removeprefix("work=")
    assert scratch and (scratch == target or scratch.startswith(target + "/")) and work.startswith(scratch + "/"), log
    inst = json.loads((store / "jobs" / job_id / "instance.json").read_text())
    assert not list(Path(inst["data"]["dir"]).glob("nvme*.raw"))  # the drives went with the VM


def test_taxi_fanout_over_two_real_vms(vm_env, runner_home, tmp_path):
    """Two small VMs, each seeing its own shard folder and its parent's items/, reduce/ and outputs/ only."""
    data = runner_home / "store" / "data" / "nyc-taxi"
    make_data.generate(data, files=4, rows=20000, seed=11, fmt="both")
    r = run_cli("launch", str(ROOT / "jobs" / "taxi-fanout"), "--cloud", "local", "--type", "local-1x2", "--vms", "2",
                "--wait", "--json", "-q", timeout=1200)
    assert r.returncode == 0, r.stderr + r.stdout
    job = json.loads(r.stdout)
    assert job["state"] == "SUCCEEDED" and job["items"]["done"] == job["items"]["total"] == 4
    assert len(job["shards"]) == 2
    out = tmp_path / "out"
    assert run_cli("outputs", job["job_id"], str(out)).returncode == 0
    rows = list(csv.reader((out / "passenger_counts.csv").read_text().splitlines()))
    assert rows[0] == ["passenger_count", "trips"] and rows[1:] == expected_rows(reference_counts(data))
    for k in (0, 1):  # each shard was a VM of its own that powered itself off
        assert "reboot: Power down" in run_cli("logs", job["job_id"], "--shard", str(k), "--all").stdout
