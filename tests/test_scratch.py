"""The job's scratch: the device rules on recorded listings, and the startup script's scratch step with its tools shimmed.

No device of this host is touched: the rules run on listings (tests/data/devices/), and the step's end-to-end runs put
lsblk, findmnt, mdadm, mkfs.ext4, mount and udevadm shims first on the PATH, with device paths no host has.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from script_harness import POWEROFF, SHUTDOWN, VM, FileJob, code_tar

from runner.render import render_startup
from runner.spec import validate

DEVICES = Path(__file__).parent / "data" / "devices"
JOB = "scratch-20260101T000000Z-abcdef"
SPEC = {"name": "scratch", "command": "true"}
TIME = r"\d+\.\d s"

# listing -> (the devices used, the lines saying why a device of the cloud's kind is left alone)
EXPECTED = {
    "aws-i3en.2xlarge": (["nvme1n1", "nvme2n1"], []),
    "aws-c6id.4xlarge": (["nvme0n1"], []),
    "aws-c6i.4xlarge": ([], []),
    "gcp-n2-2-local-nvme-ssd": (["nvme0n1", "nvme0n2"], []),
    "local-2x4-nvme2": (["nvme0n1", "nvme1n1"], []),
    "hostile-aws-mounted": (["nvme2n1"], ["nvme1n1 (instance-store): mounted at /data: left alone"]),
    "hostile-aws-in-use": ([], [
        "nvme1n1 (instance-store): it has partitions or holders (nvme1n1p1): left alone",
        "nvme2n1 (instance-store): it has partitions or holders (md127): left alone",
        "nvme3n1 (instance-store): it has partitions or holders (md127): left alone",
        "nvme4n1 (instance-store): it holds xfs already: left alone",
        "nvme5n1 (instance-store): it has a dos partition table: left alone",
        "nvme6n1p1 (instance-store): not a whole disk (type part): left alone",
    ]),
    "hostile-aws-root-on-nvme": (["nvme1n1"], ["nvme0n1 (instance-store): it holds the root filesystem: left alone"]),
    "hostile-gcp-nvme-pd": ([], []),
    "hostile-local-drives": ([], [
        "nvme0n1 (runner-scratch): mounted at /mnt/x: left alone",
        "nvme1n1 (runner-scratch): it holds ext4 already: left alone",
        "nvme3n1 (runner-scratch): it reports no size: left alone",
    ]),
}


def rendered(cloud: str, spec: dict | None = None, store: str = "s3://b/runner") -> str:
    return render_startup(validate(spec or SPEC, "test"), JOB, store, cloud)


def function(script: str, name: str) -> str:
    """One shell function's text, cut out of a rendered script."""
    lines = script.splitlines()
    start = lines.index(f"{name}() {{")
    return "\n".join(lines[start:lines.index("}", start) + 1]) + "\n"


def plan(listing: dict, cloud: str | None = None) -> dict:
    """The rendered script's scratch_plan run on a recorded listing (for its own cloud unless told)."""
    cloud = cloud or listing["cloud"]
    fn = function(rendered(cloud), "scratch_plan")
    r = subprocess.run(["bash", "-c", fn + 'scratch_plan "$@"', "bash", cloud, listing["root"], json.dumps(listing["by_id"])],
                       input=json.dumps(listing["lsblk"]), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def load(name: str) -> dict:
    return json.loads((DEVICES / f"{name}.json").read_text())


def test_every_listing_has_its_expectation():
    assert sorted(p.stem for p in DEVICES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_rules_on_a_listing(name):
    used, skipped = EXPECTED[name]
    got = plan(load(name))
    assert [d["name"] for d in got["use"]] == used
    assert got["skip"] == skipped
    for d in got["use"]:
        assert d["path"] == f"/dev/{d['name']}" and d["size"] > 0


def test_the_sizes_and_kinds_the_log_names():
    i3en = plan(load("aws-i3en.2xlarge"))["use"]
    assert [(d["size"], d["kind"]) for d in i3en] == [(2500 * 10**9, "instance-store")] * 2
    assert [(d["size"], d["kind"]) for d in plan(load("aws-c6id.4xlarge"))["use"]] == [(950 * 10**9, "instance-store")]
    assert {d["kind"] for d in plan(load("gcp-n2-2-local-nvme-ssd"))["use"]} == {"local SSD"}
    assert {d["kind"] for d in plan(load("local-2x4-nvme2"))["use"]} == {"runner-scratch"}


@pytest.mark.parametrize("name", ["aws-i3en.2xlarge", "gcp-n2-2-local-nvme-ssd", "local-2x4-nvme2"])
def test_each_cloud_takes_only_its_own_kind(name):
    listing = load(name)
    for cloud in {"aws", "gcp", "local"} - {listing["cloud"]}:
        assert plan(listing, cloud) == {"use": [], "skip": []}, cloud


def test_an_ebs_volume_is_never_used_even_blank():
    listing = load("aws-c6i.4xlarge")
    blank = listing["lsblk"]["blockdevices"][1]
    assert blank["model"] == "Amazon Elastic Block Store" and "children" not in blank and blank["fstype"] is None
    assert plan(listing)["use"] == []


def test_older_lsblk_sizes_as_strings_and_a_single_mountpoint():
    listing = load("hostile-aws-mounted")
    for d in listing["lsblk"]["blockdevices"]:
        d["size"] = str(d["size"])
        d["mountpoint"] = d.pop("mountpoints")[0]
    got = plan(listing)
    assert [d["name"] for d in got["use"]] == ["nvme2n1"] and got["use"][0]["size"] == 2500 * 10**9
    assert got["skip"] == ["nvme1n1 (instance-store): mounted at /data: left alone"]


def test_the_sandbox_script_has_no_device_step():
    sandbox = rendered("sandbox")
    for word in ("mdadm", "mkfs", "lsblk", "findmnt", "mount -o", "scratch_plan", "SCRATCH_MNT"):
        assert word not in sandbox, word
    assert "RUNNER_SCRATCH=$SCRATCH" in sandbox and "SCRATCH=$ROOT " in sandbox
    for cloud in ("aws", "gcp", "local"):
        text = rendered(cloud)
        assert f"CLOUD={cloud}\n" in text and "mdadm --create" in text and "mkfs.ext4" in text and "\nif scratch &&" in text


# --- the scratch step end to end, on this host, with every device tool shimmed

SHIM = """#!/bin/bash
echo "{name} $*" >> {dir}/calls.log
{body}
"""
BODIES = {
    "lsblk": "cat {dir}/lsblk.json",
    "findmnt": "echo /dev/vda",
    "mdadm": "exit 0",
    "mkfs.ext4": "exit \"$(cat {dir}/mkfs.rc 2> /dev/null || echo 0)\"",
    "mount": "exit 0",
    "udevadm": "exit 0",
}
DRIVES = {"blockdevices": [
    {"name": "vda", "path": "/dev/vda", "type": "disk", "model": None, "serial": None, "size": 20 << 30, "mountpoints": ["/"],
     "fstype": "ext4", "pttype": None, "pkname": None},
    *({"name": f"runner-test-{c}", "path": f"/dev/runner-test-{c}", "type": "disk", "model": "QEMU NVMe Ctrl",
       "serial": f"runner-scratch-{i}", "size": 4 * 10**9, "mountpoints": [None], "fstype": None, "pttype": None, "pkname": None}
      for i, c in enumerate("ab")),
]}
JOB_COMMAND = 'printf "%s\\n" "$PWD" "$RUNNER_SCRATCH" "$RUNNER_WORK_DIR" "$RUNNER_CHECKPOINT_DIR" > where.txt; cat data/in.txt >> where.txt'


def tool_farm(dest: Path, without: set[str]) -> Path:
    """This host's PATH as one folder of links, less the named tools (so 'not installed' holds on any host)."""
    dest.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            p = os.path.join(d, name)
            if name not in without and not (dest / name).exists() and os.path.isfile(p) and os.access(p, os.X_OK):
                (dest / name).symlink_to(p)
    return dest


def run_scratch(tmp_path: Path, listing: dict, mdadm: bool = True, mkfs_rc: int = 0) -> tuple[FileJob, Path, str]:
    """The startup script rendered for a local VM, run here: (its store folder, its VM root, the device tools' calls)."""
    shims = tmp_path / "shims"
    shims.mkdir()
    for name, body in BODIES.items():
        if name == "mdadm" and not mdadm:
            continue
        (shims / name).write_text(SHIM.format(name=name, dir=tmp_path, body=body.format(dir=tmp_path)))
        (shims / name).chmod(0o755)
    for name, text in (("poweroff", POWEROFF), ("shutdown", SHUTDOWN)):
        (shims / name).write_text(text.format(dir=tmp_path))
        (shims / name).chmod(0o755)
    (tmp_path / "lsblk.json").write_text(json.dumps(listing))
    (tmp_path / "mkfs.rc").write_text(str(mkfs_rc))
    farm = tool_farm(tmp_path / "farm", without=set(BODIES) | {"poweroff", "shutdown"})
    path = f"{shims}:{farm}"
    for name in BODIES:  # the device tools this run may call resolve to the shims, or (mdadm) to nothing
        found = shutil.which(name, path=path)
        assert found == (str(shims / name) if name != "mdadm" or mdadm else None), (name, found)
    job = FileJob(tmp_path / "store", JOB)
    job.put(f"jobs/{JOB}/code.tar.gz", code_tar({"run.sh": "true\n"}))
    job.put("data/in.txt", b"the input\n")
    spec = {"name": "scratch", "command": JOB_COMMAND, "inputs": {"data/in.txt": "data/in.txt"}, "outputs": {"where.txt": None}}
    script = tmp_path / "startup.sh"
    script.write_text(rendered("local", spec, job.uri))
    root = tmp_path / "vm"
    env = {**os.environ, "PATH": path, "RUNNER_VM_ROOT": str(root)}
    with open(tmp_path / "console.log", "wb") as console:
        proc = subprocess.Popen(["bash", str(script)], stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        try:
            proc.wait(120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    calls = (tmp_path / "calls.log").read_text() if (tmp_path / "calls.log").exists() else ""
    return job, root, calls


def tools(calls: str) -> list[str]:
    """The device tools called after the listing (lsblk and findmnt run side by side, in either order, first)."""
    names = [c.split()[0] for c in calls.splitlines()]
    assert sorted(names[:2]) == ["findmnt", "lsblk"], names
    return names[2:]


def where(job: FileJob) -> list[str]:
    return (job.dir / "outputs" / "where.txt").read_text().splitlines()


def test_two_drives_are_striped_formatted_and_mounted_and_the_job_works_there(tmp_path):
    job, root, calls = run_scratch(tmp_path, DRIVES)
    log = job.log("startup.log").decode()
    assert job.status()["state"] == "SUCCEEDED", log
    mnt, md = f"{root}/scratch", "/dev/md/runner-scratch"
    assert tools(calls) == ["mdadm", "udevadm", "mkfs.ext4", "mount"]
    assert [c for c in calls.splitlines() if not c.startswith(("lsblk", "findmnt", "udevadm"))] == [
        f"mdadm --create {md} --level=0 --raid-devices=2 --run /dev/runner-test-a /dev/runner-test-b",
        f"mkfs.ext4 -q -F -m 0 -E lazy_itable_init=1,lazy_journal_init=1,nodiscard -L runner-scratch {md}",
        f"mount -o noatime {md} {mnt}",
    ]
    assert where(job) == [f"{mnt}/work", mnt, f"{mnt}/work", f"{mnt}/checkpoint", "the input"]
    assert (root / "scratch" / "work" / "data" / "in.txt").read_text() == "the input\n"
    assert not (root / "work" / "data").exists()  # nothing pulled onto the root disk
    devices, m, d = map(re.escape, ("2 runner-scratch devices (runner-test-a 4 GB, runner-test-b 4 GB)", md, mnt))
    for pattern in (f"scratch: found {devices} in {TIME}", f"scratch: RAID0 {m} over 2 devices in {TIME}",
                    f"scratch: ext4 on {m} in {TIME}", f"scratch: mounted {m} at {d} in {TIME}",
                    f"scratch: {devices} -> RAID0 {m}, ext4, {d} in {TIME}"):
        assert re.search(pattern, log), (pattern, log)
    assert f"work dir, inputs, outputs, temp files and checkpoint on the scratch: {mnt}/work" in log


def test_without_mdadm_the_first_drive_alone(tmp_path):
    job, root, calls = run_scratch(tmp_path, DRIVES, mdadm=False)
    log = job.log("startup.log").decode()
    assert job.status()["state"] == "SUCCEEDED", log
    assert not [c for c in calls.splitlines() if c.startswith("mdadm")]
    assert "mkfs.ext4 -q -F -m 0 -E lazy_itable_init=1,lazy_journal_init=1,nodiscard -L runner-scratch /dev/runner-test-a\n" in calls
    assert "scratch: mdadm is not installed: using /dev/runner-test-a alone, not all 2 devices" in log
    assert re.search(rf"scratch: 2 runner-scratch devices \(.*\) -> /dev/runner-test-a, ext4, {re.escape(str(root))}/scratch in {TIME}", log), log
    assert where(job)[:2] == [f"{root}/scratch/work", f"{root}/scratch"]


def test_a_failed_mkfs_leaves_the_job_on_the_root_disk(tmp_path):
    job, root, calls = run_scratch(tmp_path, DRIVES, mkfs_rc=1)
    log = job.log("startup.log").decode()
    assert job.status()["state"] == "SUCCEEDED", log
    assert tools(calls) == ["mdadm", "udevadm", "mkfs.ext4"]  # no mount
    assert "scratch: mkfs.ext4 failed on /dev/md/runner-scratch: the work dir stays on the root disk" in log
    assert where(job) == [f"{root}/work", str(root), f"{root}/work", f"{root}/checkpoint", "the input"]


def test_no_drive_the_root_disk_as_before(tmp_path):
    listing = {"blockdevices": [DRIVES["blockdevices"][0]]}
    job, root, calls = run_scratch(tmp_path, listing)
    log = job.log("startup.log").decode()
    assert job.status()["state"] == "SUCCEEDED", log
    assert tools(calls) == []
    assert re.search(rf"scratch: no instance storage found \(in {TIME}\): the work dir stays on the root disk", log), log
    assert where(job)[:2] == [f"{root}/work", str(root)]


def test_the_sandbox_job_sees_its_own_folder_as_scratch(tmp_path):
    job = FileJob(tmp_path / "store", JOB)
    job.put(f"jobs/{JOB}/code.tar.gz", code_tar({"run.sh": "true\n"}))
    job.put("data/in.txt", b"the input\n")
    spec = {"name": "scratch", "command": JOB_COMMAND, "inputs": {"data/in.txt": "data/in.txt"}, "outputs": {"where.txt": None}}
    vm = VM(tmp_path / "vm", job.uri, JOB).start(spec)
    vm.wait()
    assert where(job) == [f"{vm.root}/work", str(vm.root), f"{vm.root}/work", f"{vm.root}/checkpoint", "the input"]
    assert "scratch:" not in job.log("startup.log").decode()
