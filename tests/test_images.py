"""One image build per recipe: the recipe's digest, the stamp `make image` checks, and the prune of older images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

from runner import images


@pytest.fixture
def recipe(tmp_path):
    """A copy of images/ to change files in."""
    copy = tmp_path / "recipe"
    shutil.copytree(ROOT / "images", copy, ignore=shutil.ignore_patterns("work", "output*"))
    return copy


@pytest.fixture
def image_home(tmp_path, monkeypatch):
    """An empty $RUNNER_IMAGES."""
    d = tmp_path / "images home"
    (d / "local").mkdir(parents=True)
    monkeypatch.setenv("RUNNER_IMAGES", str(d))
    return d


def fake_image(home: Path, stamp: str) -> Path:
    """A published local build, as images/local/build.sh leaves it (a qcow2 header, kernel, initrd, manifest entry)."""
    local = home / "local"
    disk = local / f"runner-{stamp}.qcow2"
    disk.write_bytes(b"QFI\xfb" + bytes(100))
    kernel, initrd = local / f"runner-{stamp}.vmlinuz", local / f"runner-{stamp}.initrd.img"
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"initrd")
    manifest = home / "manifest.json"
    builds = json.loads(manifest.read_text())["builds"] if manifest.exists() else []
    builds.append({"builder_type": "qemu", "build_time": int(stamp), "artifact_id": str(disk),
                   "custom_data": {"kernel": str(kernel), "initrd": str(initrd)}})
    manifest.write_text(json.dumps({"builds": builds}))
    return disk


def overlay(path: Path, backing: Path) -> Path:
    """A qcow2 overlay whose header names `backing`, as the local backend makes one per VM."""
    name = str(backing).encode()
    header = bytearray(b"QFI\xfb" + (3).to_bytes(4, "big") + (104).to_bytes(8, "big") + len(name).to_bytes(4, "big"))
    header += bytes(104 - len(header)) + name
    path.write_bytes(bytes(header))
    return path


def fake_proc(root: Path, *cmdlines: list[str]) -> Path:
    """A /proc with one process per command line."""
    for pid, argv in enumerate(cmdlines, start=100):
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    return root


def test_the_digest_changes_with_a_recipe_file_and_not_otherwise(recipe, tmp_path):
    before = images.recipe_digest(recipe)
    assert images.recipe_digest(recipe) == before
    (tmp_path / "elsewhere.txt").write_text("not the recipe")
    (recipe / "README.md").write_text("docs do not shape the image")
    (recipe / "local" / "work").mkdir()
    (recipe / "local" / "work" / "packer.log").write_text("a build's leftovers")
    assert images.recipe_digest(recipe) == before
    script = recipe / "scripts" / "30-python-venv.sh"
    script.write_text(script.read_text() + "\n# one more line\n")
    changed = images.recipe_digest(recipe)
    assert changed != before
    (recipe / "scripts" / "25-new.sh").write_text("true\n")
    assert images.recipe_digest(recipe) not in (before, changed)


def test_a_renamed_recipe_file_changes_the_digest(recipe):
    before = images.recipe_digest(recipe)
    (recipe / "scripts" / "90-cleanup.sh").rename(recipe / "scripts" / "95-cleanup.sh")
    assert images.recipe_digest(recipe) != before


def test_up_to_date_needs_the_stamp_and_the_image(image_home):
    digest = images.recipe_digest(ROOT / "images")
    assert images.up_to_date(digest) is None  # no image, no stamp
    disk = fake_image(image_home, "20260101000000")
    assert images.up_to_date(digest) is None  # an image, no stamp
    assert images.main(["built", digest]) == 0
    assert images.up_to_date(digest).disk == disk
    assert images.up_to_date("0" * 64) is None  # another recipe
    disk.unlink()
    assert images.up_to_date(digest) is None  # the stamp without its image


def test_prune_keeps_the_newest_and_what_a_vm_uses(image_home, tmp_path):
    oldest, used_by_disk, used_by_kernel, older, newest = (
        fake_image(image_home, s) for s in ("20260101000000", "20260102000000", "20260103000000",
                                             "20260104000000", "20260105000000"))
    (tmp_path / "vm").mkdir()
    vm = overlay(tmp_path / "vm" / "disk.qcow2", used_by_disk)
    proc = fake_proc(
        tmp_path / "proc",
        ["qemu-system-x86_64", "-kernel", str(used_by_kernel.with_suffix(".vmlinuz")), "-drive", "file=/nowhere,if=virtio"],
        ["qemu-system-x86_64", "-drive", f"file={vm},if=virtio,format=qcow2"],
        ["bash", "-c", "sleep 1"],
    )
    gone = images.prune(keep=1, proc=proc)
    assert sorted(gone) == [oldest, older]
    left = sorted(p.name for p in (image_home / "local").iterdir())
    assert left == sorted(f"runner-{s}.{ext}" for s in ("20260102000000", "20260103000000", "20260105000000")
                          for ext in ("qcow2", "vmlinuz", "initrd.img"))
    in_manifest = [b["artifact_id"] for b in json.loads((image_home / "manifest.json").read_text())["builds"]]
    assert sorted(in_manifest) == sorted(str(d) for d in (used_by_disk, used_by_kernel, newest))
    assert images.local_image(None).disk == newest


def test_prune_leaves_other_builders_and_a_lone_image(image_home, tmp_path):
    disk = fake_image(image_home, "20260101000000")
    manifest = image_home / "manifest.json"
    data = json.loads(manifest.read_text())
    data["builds"].append({"builder_type": "amazon-ebs", "build_time": 1, "artifact_id": "us-east-1:ami-1"})
    manifest.write_text(json.dumps(data))
    assert images.prune(keep=1, proc=fake_proc(tmp_path / "proc")) == []
    assert disk.exists()
    assert images.from_manifest("amazon-ebs", "us-east-1") == "ami-1"


def test_a_comma_in_a_drive_path_is_doubled():
    assert images._drive_files("file=/a,,b/disk.qcow2,if=virtio") == ["/a,b/disk.qcow2"]


def make_image(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "image", "CLOUD=local", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


def packer_that_records(tmp_path: Path) -> tuple[Path, Path]:
    """A `packer` that only records that it was started, and fails."""
    called = tmp_path / "packer-called"
    fake = tmp_path / "packer"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> '{called}'\nexit 3\n")
    fake.chmod(0o755)
    return fake, called


def test_make_image_on_an_up_to_date_recipe_starts_nothing(image_home, tmp_path):
    disk = fake_image(image_home, "20260101000000")
    digest = images.recipe_digest(ROOT / "images")
    images.stamp_path().write_text(digest + "\n")
    fake, called = packer_that_records(tmp_path)
    r = make_image({"RUNNER_IMAGES": str(image_home), "PACKER": str(fake)})
    assert r.returncode == 0, r.stderr
    assert f"image up to date (recipe {digest[:12]}): {disk}" in r.stdout
    assert not called.exists()
    assert not (image_home / "work").exists()


def test_make_image_builds_when_the_recipe_changed_or_forced(image_home, tmp_path):
    fake_image(image_home, "20260101000000")
    env = {"RUNNER_IMAGES": str(image_home), "PACKER": str(tmp_path / "no-packer-here")}
    images.stamp_path().write_text("0" * 64 + "\n")  # an older recipe: a build starts (and stops: no packer)
    r = make_image(env)
    assert r.returncode != 0
    assert "missing" in r.stderr and "no-packer-here" in r.stderr
    assert images.stamp_path().read_text().strip() == "0" * 64  # a failed build stamps nothing
    images.stamp_path().write_text(images.recipe_digest(ROOT / "images"))
    r = make_image(env, "FORCE=1")
    assert r.returncode != 0 and "no-packer-here" in r.stderr
    assert "up to date" not in r.stdout


def test_the_backing_file_is_read_from_a_real_overlay(image_home, tmp_path):
    disk = fake_image(image_home, "20260101000000")
    vm = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", str(disk), "-F", "qcow2", str(vm), "1G"],
                   check=True)
    assert images._backing_file(vm) == str(disk)
    proc = fake_proc(tmp_path / "proc", ["qemu-system-x86_64", "-drive", f"file={vm},if=virtio,format=qcow2"])
    assert disk in images.in_use(proc)


FAKE_BUILD = """#!/bin/bash
# publishes a fake image the way images/local/build.sh does, and counts its runs
set -euo pipefail
echo run >> "$BUILDS"
n=$(wc -l < "$BUILDS")
local=$RUNNER_IMAGES/local; name=runner-2026020100000$n
printf 'QFI\\xfb' > "$local/$name.qcow2"; echo k > "$local/$name.vmlinuz"; echo i > "$local/$name.initrd.img"
python3 - "$RUNNER_IMAGES/manifest.json" "$local/$name" <<'PY'
import json, os, sys
path, stem = sys.argv[1:]
m = json.load(open(path)) if os.path.exists(path) else {"builds": []}
m["builds"].append({"builder_type": "qemu", "build_time": len(m["builds"]) + 10, "artifact_id": stem + ".qcow2",
                    "custom_data": {"kernel": stem + ".vmlinuz", "initrd": stem + ".initrd.img"}})
json.dump(m, open(path, "w"))
PY
"""


def test_build_sh_stamps_after_a_build_prunes_and_then_skips(image_home, tmp_path):
    recipe = tmp_path / "checkout" / "images"
    shutil.copytree(ROOT / "images", recipe, ignore=shutil.ignore_patterns("work", "output*"))
    (recipe / "local" / "build.sh").write_text(FAKE_BUILD)
    old = fake_image(image_home, "20260101000000")
    builds = tmp_path / "builds.txt"
    env = {**os.environ, "RUNNER_IMAGES": str(image_home), "BUILDS": str(builds),
           "PYTHONPATH": str(ROOT)}  # the copy has no runner/ beside it

    def build(**extra) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(recipe / "build.sh"), "local"], capture_output=True, text=True,
                              env={**env, **extra}, timeout=60)

    r = build()
    assert r.returncode == 0, r.stderr
    digest = images.recipe_digest(recipe)
    assert images.stamp_path().read_text().strip() == digest
    newest = image_home / "local" / "runner-20260201000001.qcow2"
    assert f"pruned the older image {old}" in r.stdout and not old.exists()
    assert images.local_image(None).disk == newest

    r = build()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"image up to date (recipe {digest[:12]}): {newest}"
    assert builds.read_text().count("run") == 1

    r = build(FORCE="1")
    assert r.returncode == 0, r.stderr
    assert builds.read_text().count("run") == 2
    assert sorted(p.name for p in (image_home / "local").glob("*.qcow2")) == ["runner-20260201000002.qcow2"]

    (recipe / "scripts" / "90-cleanup.sh").write_text("# changed\n")
    r = build()
    assert r.returncode == 0 and builds.read_text().count("run") == 3
    assert images.stamp_path().read_text().strip() == images.recipe_digest(recipe) != digest
