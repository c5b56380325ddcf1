"""The local backend without booting a guest: it acts only on its own VMs, and a VM that dies at once says why."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run_cli

from runner.errors import NotOwnedError
from runner.providers import proc
from runner.providers.base import Instance
from runner.providers.local import LocalProvider

JOB = "vm-20260101T000000Z-abcdef"


@pytest.fixture
def recorded_vm(runner_home, tmp_path):
    """A stand-in for a VM's supervisor, recorded as the local backend records the VMs it starts."""
    d = runner_home / "local" / JOB
    d.mkdir(parents=True)
    data = {"dir": str(d), "sockets": str(tmp_path / "no-sockets"), **proc.spawn(["sleep", "300"], d, {}, d / "host.log")}
    (d / "tags.json").write_text(json.dumps({"runner-job": JOB}))
    (d / "instance.json").write_text(json.dumps(data))
    yield Instance("local", f"qemu-{data['pid']}", JOB, "localhost", data)
    proc.stop(data, grace=0.1)


def test_a_forged_instance_without_a_record_is_left_alone(victim, tmp_path):
    forged = Instance("local", f"qemu-{victim['pid']}", JOB, "localhost", {**victim, "sockets": str(tmp_path)})
    with pytest.raises(NotOwnedError, match="left alone"):
        LocalProvider().terminate(forged)
    assert proc.alive(victim)
    assert LocalProvider().state(forged).alive is False


def test_only_the_backends_own_record_is_acted_on(recorded_vm, victim, runner_home):
    lp = LocalProvider()
    for forged in (
        Instance("local", f"qemu-{victim['pid']}", JOB, data=victim),
        Instance("local", recorded_vm.id, JOB, data=victim),  # the right id, another pid
        Instance("local", "qemu-1", JOB, data={"pid": 1, "start": proc.start_time(1)}),
        Instance("local", recorded_vm.id, "../local/" + JOB, data=recorded_vm.data),
    ):
        if forged.id == recorded_vm.id and forged.job_id == JOB:
            assert lp.state(forged).alive  # the record decides, not the data the store handed in
            continue
        with pytest.raises(NotOwnedError, match="left alone"):
            lp.terminate(forged)
    assert proc.alive(victim) and proc.alive(dict(recorded_vm.data))
    (runner_home / "local" / JOB / "tags.json").write_text(json.dumps({"runner-job": "other"}))
    with pytest.raises(NotOwnedError, match=f"lacks the tag runner-job={JOB}"):
        lp.terminate(recorded_vm)
    assert proc.alive(dict(recorded_vm.data))
    (runner_home / "local" / JOB / "tags.json").write_text(json.dumps({"runner-job": JOB}))
    lp.terminate(Instance("local", recorded_vm.id, JOB, data=victim))  # acts on the recorded pid, not the forged one
    assert not proc.alive(dict(recorded_vm.data)) and proc.alive(victim)


@pytest.fixture
def fake_image(runner_home, monkeypatch):
    """A manifest naming a disk and boot files that QEMU never gets to read (it fails first)."""
    d = runner_home / "images" / "local"
    d.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d / "disk.qcow2"), "1G"], check=True)
    (d / "vmlinuz").write_bytes(b"not a kernel")
    (d / "initrd.img").write_bytes(b"not an initrd")
    manifest = {"builds": [{"builder_type": "qemu", "artifact_id": str(d / "disk.qcow2"), "build_time": 1,
                            "custom_data": {"kernel": str(d / "vmlinuz"), "initrd": str(d / "initrd.img")}}]}
    (runner_home / "images" / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.delenv("RUNNER_IMAGES", raising=False)
    return d


def test_a_vm_that_qemu_cannot_start_says_why(fake_image, make_job, runner_home):
    d = make_job({"name": "badaccel", "command": "echo never"})
    r = run_cli("launch", str(d), "--cloud", "local", "--wait", "--json", env={"RUNNER_LOCAL_ACCEL": "tcg,no-such-prop=1"},
                timeout=120)
    obj = json.loads(r.stdout.strip().splitlines()[-1])
    assert obj["state"] == "LOST"
    assert "Property 'tcg-accel.no-such-prop' not found" in obj["reason"]
    status = json.loads(run_cli("status", obj["job_id"], "--json").stdout)
    assert "tcg-accel.no-such-prop" in status["reason"]
    console = runner_home / "store" / "jobs" / obj["job_id"] / "logs" / "console.log"
    assert "tcg-accel.no-such-prop" in console.read_text()
    assert "tcg-accel.no-such-prop" in run_cli("logs", obj["job_id"], "--all").stdout


def test_an_unknown_accel_setting_is_refused_before_launch(fake_image, make_job, runner_home):
    d = make_job({"name": "badaccel", "command": "echo never"})
    r = run_cli("launch", str(d), "--cloud", "local", "--json", env={"RUNNER_LOCAL_ACCEL": "warp-drive"})
    assert r.returncode == 2 and "RUNNER_LOCAL_ACCEL='warp-drive'" in r.stderr
    assert not (runner_home / "store" / "jobs").exists() or not any((runner_home / "store" / "jobs").iterdir())


def test_kvm_probe_and_auto(runner_home, monkeypatch):
    from runner.providers import local_doctor

    assert local_doctor.probe("tcg", "max") == (True, "")
    ok, detail = local_doctor.probe("tcg,no-such-prop=1", "max")
    assert not ok and "no-such-prop" in detail
    assert local_doctor.accel_args("auto", True) == local_doctor.KVM_ARGS
    assert local_doctor.accel_args("auto", False) == local_doctor.TCG
    assert local_doctor.accel_args("kvm", False) == local_doctor.KVM_ARGS  # asked for: QEMU says what fails
    calls = []
    monkeypatch.setattr(local_doctor, "probe", lambda *a: calls.append(a) or (False, "no KVM here"))
    assert local_doctor.kvm_works() == (False, "no KVM here") and local_doctor.kvm_works() == (False, "no KVM here")
    assert len(calls) == 1  # cached under $RUNNER_HOME ...
    cache = json.loads(local_doctor.cache_path().read_text())
    cache["host"]["qemu"] = "QEMU emulator version 0.1"
    local_doctor.cache_path().write_text(json.dumps(cache))
    local_doctor.kvm_works()
    assert len(calls) == 2  # ... for this kernel and QEMU only
    monkeypatch.setenv("RUNNER_LOCAL_ACCEL", "auto")
    assert local_doctor.chosen_accel() == local_doctor.TCG


def test_doctor_says_whether_kvm_works(runner_home):
    r = run_cli("doctor", "--cloud", "local")
    lines = {line.split()[1]: line for line in r.stdout.splitlines() if len(line.split()) > 1}
    assert "kvm" in lines and "KVM" in lines["kvm"]
    assert lines["kvm"].startswith("OK")  # auto: without KVM the VM runs under TCG, still a working setup
    assert "image" in lines
    assert Path(runner_home / "local" / "kvm-probe.json").is_file()


def test_local_types_with_emulated_nvme_drives():
    from runner.errors import SpecError
    from runner.providers.local import LocalType, parse_type

    assert parse_type("local-2x4") == LocalType(2, 4, 0)
    assert parse_type("local-2x4-nvme2") == LocalType(2, 4, 2)
    assert parse_type("local-1x2-nvme8").nvme == 8
    for bad in ("local-2x4-nvme0", "local-2x4-nvme9", "local-2x4-nvme12"):
        with pytest.raises(SpecError, match=rf"{bad!r} asks for \d+ NVMe drives: use 1 to 8"):
            parse_type(bad)
    for bad in ("local-2x4-nvme", "local-2x4-nvme2\n", "local-2x4-ssd2", "local-2x4nvme2", "local-2x4-nvme-2"):
        with pytest.raises(SpecError, match="is not a local type: .*local-<vCPUs>x<GiB>-nvme<N>"):
            parse_type(bad)


def test_nvme_drive_size_setting(monkeypatch):
    from runner.errors import SpecError
    from runner.providers.local import nvme_gib

    monkeypatch.delenv("RUNNER_LOCAL_NVME_GIB", raising=False)
    assert nvme_gib() == 2
    monkeypatch.setenv("RUNNER_LOCAL_NVME_GIB", "16")
    assert nvme_gib() == 16
    for bad in ("0", "1.5", "-1", "2G", "4096"):
        monkeypatch.setenv("RUNNER_LOCAL_NVME_GIB", bad)
        with pytest.raises(SpecError, match=rf"RUNNER_LOCAL_NVME_GIB={bad!r} is not a whole number of GiB from 1 to 1024"):
            nvme_gib()


def test_drives_are_fresh_sparse_files(tmp_path):
    from runner.providers.local import create_drives, nvme_drives

    drives = nvme_drives(tmp_path, 2)
    assert [p.name for p in drives] == ["nvme0.raw", "nvme1.raw"]
    drives[0].write_bytes(b"an earlier attempt's data")
    create_drives(drives, 3)
    for p in drives:
        assert p.stat().st_size == 3 << 30 and p.stat().st_blocks == 0
        with open(p, "rb") as f:
            assert f.read(64) == bytes(64)


def test_qemu_attaches_each_drive_as_an_nvme_device_with_its_serial(tmp_path):
    """The argv given to a real QEMU (paused before any guest code runs): NVMe controllers, their serials, their files."""
    from runner.providers.local import create_drives, nvme_args, nvme_drives

    d = tmp_path / "a,dir"  # a comma in the path: QEMU's option syntax doubles it
    d.mkdir()
    drives = nvme_drives(d, 2)
    create_drives(drives, 1)
    args = nvme_args(drives)
    assert args[:4] == ["-drive", f"file={str(drives[0]).replace(',', ',,')},if=none,format=raw,id=scratch0",
                        "-device", "nvme,serial=runner-scratch-0,drive=scratch0"]
    qmp = [{"execute": "qmp_capabilities"}, {"execute": "human-monitor-command", "arguments": {"command-line": "info qtree"}},
           {"execute": "query-block"}, {"execute": "quit"}]
    r = subprocess.run(["qemu-system-x86_64", "-S", "-nodefaults", "-nic", "none", "-accel", "tcg", "-display", "none",
                        "-qmp", "stdio", *args], input="".join(json.dumps(c) + "\n" for c in qmp),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    answers = [json.loads(line)["return"] for line in r.stdout.splitlines() if '"return"' in line]
    devices, props = [], {}
    for line in answers[1].splitlines():  # info qtree: a "dev: TYPE, id ..." line, then its properties "key = value"
        line = line.strip()
        if line.startswith("dev: "):
            props = {"type": line[5:].split(",")[0]}
            devices.append(props)
        elif " = " in line:
            props.setdefault(*line.split(" = ", 1))
    assert sorted((p["drive"], p["serial"]) for p in devices if p["type"] == "nvme") == [
        ('"scratch0"', '"runner-scratch-0"'), ('"scratch1"', '"runner-scratch-1"')]
    assert {(b["device"], b["inserted"]["file"], b["inserted"]["drv"]) for b in answers[2]} == {
        ("scratch0", str(drives[0]), "raw"), ("scratch1", str(drives[1]), "raw")}


def test_a_bad_nvme_type_or_size_is_refused_before_launch(fake_image, make_job, runner_home):
    d = make_job({"name": "nvme", "command": "echo never"})
    r = run_cli("launch", str(d), "--cloud", "local", "--type", "local-2x4-nvme9", "--json")
    assert r.returncode == 2 and "'local-2x4-nvme9' asks for 9 NVMe drives: use 1 to 8" in r.stderr
    r = run_cli("launch", str(d), "--cloud", "local", "--type", "local-2x4-nvme2", "--json", env={"RUNNER_LOCAL_NVME_GIB": "lots"})
    assert r.returncode == 2 and "RUNNER_LOCAL_NVME_GIB='lots'" in r.stderr
    assert not (runner_home / "store" / "jobs").exists() or not any((runner_home / "store" / "jobs").iterdir())
    assert not (runner_home / "local").exists() or not any((runner_home / "local").glob("*/nvme*.raw"))


def test_a_vms_drives_are_attached_and_deleted_with_its_overlay(fake_image, make_job, runner_home):
    d = make_job({"name": "nvme", "command": "echo never"})
    r = run_cli("launch", str(d), "--cloud", "local", "--type", "local-1x1-nvme2", "--wait", "--json", timeout=120,
                env={"RUNNER_LOCAL_ACCEL": "tcg,no-such-prop=1", "RUNNER_LOCAL_NVME_GIB": "1"})
    assert r.stdout.strip(), r.stderr
    obj = json.loads(r.stdout.strip().splitlines()[-1])
    assert obj["state"] == "LOST"
    vm = runner_home / "local" / obj["job_id"]
    run_sh = (vm / "run.sh").read_text()
    for k in (0, 1):
        assert f"-drive 'file={vm}/nvme{k}.raw,if=none,format=raw,id=scratch{k}' -device nvme,serial=runner-scratch-{k},drive=scratch{k}" in run_sh
    assert f"rm -f '{vm}/disk.qcow2' '{vm}/nvme0.raw' '{vm}/nvme1.raw'" in run_sh
    assert not list(vm.glob("nvme*.raw")) and not (vm / "disk.qcow2").exists()


def test_a_local_cluster_too_big_for_the_host_is_refused_before_anything_starts(fake_image, make_job, runner_home):
    d = make_job({"name": "ray", "command": "python3 -c 'import ray'", "nodes": 64})
    r = run_cli("launch", str(d), "--cloud", "local", "--type", "local-1x2")
    assert r.returncode == 2 and "nodes: 64 local VMs of 2 GiB each need 128 GiB" in r.stderr, r.stderr
    assert not (runner_home / "store" / "jobs").exists() and not (runner_home / "local" / "net").exists()


def test_each_node_of_a_local_cluster_gets_the_jobs_link_and_its_address(fake_image, make_job, runner_home):
    """QEMU fails at once here (a bad accel property), after the plan is on disk: each node's NIC, seed and hub."""
    from runner.cluster import ids
    from runner.providers import local_net

    d = make_job({"name": "ray", "command": "python3 -c 'import ray'", "nodes": 2})
    r = run_cli("launch", str(d), "--cloud", "local", "--type", "local-1x1", "--wait", "--json", "-q", timeout=180,
                env={"RUNNER_LOCAL_ACCEL": "tcg,no-such-prop=1"})
    job = json.loads(r.stdout.strip().splitlines()[-1])
    assert job["state"] == "LOST", r.stderr
    record = json.loads((runner_home / "store" / "jobs" / job["job_id"] / "job.json").read_text())
    network = record["cluster"]["network"]
    prefix = network.split("private network ", 1)[1].split(".0/24", 1)[0]
    assert local_net.PREFIX_RE.match(prefix) and "between the job's VMs alone" in network
    sockets = set()
    for k in (0, 1):
        vm = runner_home / "local" / ids.node_id(job["job_id"], k)
        run_sh = (vm / "run.sh").read_text()
        assert "-nic none" in run_sh and run_sh.count("-netdev") == 1
        netdev = run_sh.split("-netdev ", 1)[1].split(" -device", 1)[0].strip("'")
        local = netdev.split("local.path=", 1)[1].split(",", 1)[0]
        sockets.add(Path(local).parent)
        assert Path(local).name == f"vm{k}.sock" and netdev.endswith(f"remote.path={Path(local).parent}/hub.sock")
        assert "virtio-net-pci,netdev=cluster,mac=52:54:" in run_sh
        assert f'addresses: ["{prefix}.{k + 2}/24"]' in (vm / "network-config").read_text()
    assert len(sockets) == 1  # one link for the job's two nodes
    parent_net = runner_home / "local" / "net" / f"{job['job_id']}.json"
    deadline = time.monotonic() + 30  # both VMs are gone: the hub ends, with the reservation and the sockets
    while parent_net.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not parent_net.exists() and not next(iter(sockets)).exists()
