"""A local VM's share of the store: its own job's folder read-write, its inputs read-only, nothing else."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.providers import local_share

JOB = "vm-20260101T000000Z-abcdef"
OTHER = "other-20260101T000000Z-123456"


@pytest.fixture
def store(tmp_path) -> Path:
    s = tmp_path / "store"
    for rel, text in {f"jobs/{JOB}/job.json": "{}", f"jobs/{OTHER}/status.json": "theirs", "data/in/a.csv": "a\n",
                      "data/one.csv": "1\n", "data/private/key": "secret", "elsewhere.txt": "x"}.items():
        (s / rel).parent.mkdir(parents=True, exist_ok=True)
        (s / rel).write_text(text)
    return s


@pytest.mark.parametrize("bad", ["/etc/", "../x", "data/../../etc/", "data/./in/", "", ".", "data\\in", "a\nb"])
def test_a_mount_that_is_not_a_plain_store_path_is_refused(store, bad):
    with pytest.raises(SpecError, match="input path"):
        local_share.plan(store, JOB, [bad])


def test_a_missing_input_or_a_link_out_of_the_store_is_refused(store, tmp_path):
    with pytest.raises(SpecError, match="does not exist in the store"):
        local_share.plan(store, JOB, ["data/missing/"])
    (tmp_path / "outside").mkdir()
    (store / "data" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(SpecError, match="leads out of the store"):
        local_share.plan(store, JOB, ["data/link/"])


def test_the_plan_binds_inputs_read_only_and_the_job_folder_last(store):
    binds = local_share.plan(store, JOB, ["data/one.csv", "data/in/", "data/in/a.csv"])
    assert [(b.target, b.writable) for b in binds] == [
        ("data/in", False), ("data/one.csv", False), ("data/in/a.csv", False), (f"jobs/{JOB}", True)]


def test_in_its_namespace_the_share_is_writable_only_in_the_jobs_folder(store, tmp_path):
    """The mounts for real (in a mount namespace of their own), with a shell standing in for virtiofsd."""
    share = tmp_path / "share"
    binds = local_share.plan(store, JOB, ["data/in/", "data/one.csv"])
    local_share.prepare(share, binds)
    probe = (
        'cd "$1"; for f in jobs/' + JOB + '/new.txt data/in/evil.txt data/one.csv jobs/' + OTHER + '/x evil.txt; do '
        'if (echo w > "$f") 2>/dev/null; then echo "wrote $f"; else echo "refused $f"; fi; done; '
        'ls -A . jobs data; cat data/in/a.csv'
    )
    script = local_share.script(share, binds, ["bash", "-c", probe, "probe", str(share)])
    before = Path("/proc/self/mountinfo").read_text()
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"wrote jobs/{JOB}/new.txt" in r.stdout
    for refused in ("data/in/evil.txt", "data/one.csv", f"jobs/{OTHER}/x", "evil.txt"):
        assert f"refused {refused}" in r.stdout
    listing = r.stdout.split("refused evil.txt\n", 1)[1]
    assert OTHER not in listing and "private" not in listing and "elsewhere.txt" not in listing and "a\n" in listing
    assert (store / "jobs" / JOB / "new.txt").read_text() == "w\n"
    assert not (store / "data" / "in" / "evil.txt").exists() and (store / "data" / "one.csv").read_text() == "1\n"
    assert Path("/proc/self/mountinfo").read_text() == before  # nothing changed in the host's mount table
    assert os.listdir(share / "jobs") == [JOB]
