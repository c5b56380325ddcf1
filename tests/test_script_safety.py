"""The startup script against hostile stores: keys that climb out, links, a status written behind its back, a full disk."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sysconfig

import pytest
from script_harness import VM, FileJob, S3Job, code_tar, wait_for

pytest_plugins = ["test_gcp_fakes"]  # its fixtures: google, gcs_server, gcs

JOB = "safe-20260101T000000Z-abcdef"
LISTING = "find . \\( -path ./run.sh -o -path ./listing.txt \\) -prune -o \\( -type f -o -type l \\) -print | LC_ALL=C sort > listing.txt"


def climb_to(target) -> str:
    """A relative name that, joined below any folder of this host, lands on `target`."""
    return "../" * 40 + str(target).lstrip("/")


def listing(data: bytes | None) -> list[str]:
    assert data is not None, "the job wrote no listing"
    return data.decode().splitlines()


def test_s3_pull_skips_keys_that_would_land_outside_the_folder(s3, s3_server, tmp_path):
    client, bucket = s3
    job = S3Job(client, bucket, JOB)
    escape = tmp_path / "escaped"
    evil = [f"data/in/evil/{climb_to(escape)}", "data/in/./dot.csv", "data/in//abs.csv", f"jobs/{JOB}/checkpoint/{climb_to(escape)}-ck"]
    good = ["data/in/ok.csv", "data/in/sub dir/a b.csv", "data/in/q\"uote's*star?.csv", f"jobs/{JOB}/checkpoint/state.txt"]
    for key in evil + good:
        job.put(key, key.encode())
    job.put(f"jobs/{JOB}/code.tar.gz", code_tar({"run.sh": "echo hi"}))
    vm = VM(tmp_path / "vm1", job.uri, JOB).start(
        {"name": "pull", "command": f"{LISTING}; cat \"$RUNNER_CHECKPOINT_DIR/state.txt\"", "inputs": {"data/in/": "in/"},
         "outputs": ["listing.txt"]}, s3_endpoint=s3_server)
    vm.wait()
    assert not escape.exists() and not (tmp_path / "escaped-ck").exists()
    assert job.status()["state"] == "SUCCEEDED", vm.console
    assert listing(job.get("outputs/listing.txt")) == ["./in/ok.csv", "./in/q\"uote's*star?.csv", "./in/sub dir/a b.csv"]
    assert job.log("job.log") == f"jobs/{JOB}/checkpoint/state.txt".encode()  # the checkpoint's safe keys were restored
    startup = job.log("startup.log").decode()
    for key in evil:
        assert f"skipped \"s3://{bucket}/runner/{key}\"" in startup


def test_file_pull_copies_no_link_out_of_the_store(tmp_path):
    secret = tmp_path / "secret"
    (secret / "sub").mkdir(parents=True)
    (secret / "id_rsa").write_text("PRIVATE KEY")
    (secret / "sub" / "more").write_text("PRIVATE TOO")
    job = FileJob(tmp_path / "store", JOB)
    job.put("data/in/ok.csv", b"1\n")
    job.put("data/in/sub/b.csv", b"2\n")
    os.symlink(secret / "id_rsa", job.root / "data/in/key")
    os.symlink(secret, job.root / "data/in/sub/dir")
    job.put(f"jobs/{JOB}/code.tar.gz", code_tar({"run.sh": "echo hi"}))
    os.symlink(secret, job.dir / "checkpoint")  # the job's own folder, rewritten by an earlier attempt
    vm = VM(tmp_path / "vm1", job.uri, JOB).start(
        {"name": "pull", "command": f"{LISTING}; ls -A \"$RUNNER_CHECKPOINT_DIR\"", "inputs": {"data/in/": "in/"},
         "outputs": ["listing.txt"]})
    vm.wait()
    assert job.status()["state"] == "SUCCEEDED", vm.console
    assert (job.dir / "outputs" / "listing.txt").read_text().splitlines() == ["./in/ok.csv", "./in/sub/b.csv"]
    assert job.log("job.log") == b""  # the checkpoint folder stayed empty
    startup = job.log("startup.log").decode()
    assert "data/in/key" in startup and "data/in/sub/dir" in startup and f"jobs/{JOB}/checkpoint" in startup
    assert "restored the checkpoint" not in startup
    assert "PRIVATE" not in vm.console and "PRIVATE" not in startup


def test_gs_pull_skips_keys_that_would_land_outside_the_folder(gcs, google, tmp_path):
    client, bucket = gcs
    b = client.bucket(bucket)
    b.blob("runner/data/in/ok.csv").upload_from_string(b"ok\n")
    b.blob("runner/data/in/sub dir/a b.csv").upload_from_string(b"ab\n")
    evil = ["data/in/./dot.csv", "data/in//abs.csv"]  # the emulator cannot hold a '..' key; these take the same check
    for key in evil:
        b.blob(f"runner/{key}").upload_from_string(b"evil\n")
    b.blob(f"runner/jobs/{JOB}/code.tar.gz").upload_from_string(code_tar({"run.sh": "echo hi"}))
    env = {"GCE_METADATA_HOST": google.url.removeprefix("http://")}  # gsutil gets the VM's token here
    vm = VM(tmp_path / "vm1", f"gs://{bucket}/runner", JOB)
    vm.extra_path.append(sysconfig.get_path("scripts"))
    vm.start({"name": "pull", "command": LISTING, "inputs": {"data/in/": "in/"}, "outputs": ["listing.txt"]}, env=env)
    vm.wait(300)
    prefix = f"runner/jobs/{JOB}/"
    assert json.loads(b.blob(prefix + "status.json").download_as_bytes())["state"] == "SUCCEEDED", vm.console
    assert b.blob(prefix + "outputs/listing.txt").download_as_bytes().decode().splitlines() == ["./in/ok.csv", "./in/sub dir/a b.csv"]
    startup = b"".join(b.blob(o.name).download_as_bytes() for o in client.list_blobs(bucket, prefix=prefix + "logs/1/startup.log."))
    for key in evil:
        assert f"skipped \"gs://{bucket}/runner/{key}\"" in startup.decode()


def test_a_final_status_already_in_the_store_is_kept(tmp_path):
    job = FileJob(tmp_path / "store", JOB)
    job.put(f"jobs/{JOB}/code.tar.gz", code_tar({"run.sh": "echo hi"}))
    cancelled = json.dumps({"state": "CANCELLED", "exit_code": None, "reason": "cancelled by `runner cancel`"})
    # the launcher's CANCELLED lands while the job is finishing; the job then succeeds
    command = f"printf %s {shlex.quote(cancelled)} > \"$STORE_JOB/status.json\"; echo done"
    vm = VM(tmp_path / "vm1", job.uri, JOB).start({"name": "race", "command": command}, env={"STORE_JOB": str(job.dir)})
    vm.wait()
    assert job.log("job.log") == b"done\n"
    st = job.status()
    assert st["state"] == "CANCELLED" and st["reason"] == "cancelled by `runner cancel`"
    assert "status.json already says CANCELLED: keeping it" in job.log("startup.log").decode()
    assert [line.split()[0] for line in vm.power()] == ["poweroff"]  # the bootstrap schedules the failsafe; the harness runs the script itself


def test_sigterm_after_a_cancel_request_ends_cancelled(tmp_path):
    job = FileJob(tmp_path / "store", JOB)
    job.put(f"jobs/{JOB}/code.tar.gz", code_tar({"run.sh": "echo hi"}))
    vm = VM(tmp_path / "vm1", job.uri, JOB).start({"name": "long", "command": "echo started; sleep 120"})
    assert wait_for(lambda: (job.status() or {}).get("state") == "RUNNING" and job.log("job.log") == b"started\n"), vm.console
    job.put(f"jobs/{JOB}/cancel", json.dumps({"requested_at": "2026-01-01T00:00:00Z", "by": "test"}).encode())
    vm.term()
    vm.wait()
    st = job.status()
    assert st["state"] == "CANCELLED", st
    assert st["reason"] == "cancelled by `runner cancel`" and st["attempt"] == 1
    assert job.log("job.log") == b"started\n"


@pytest.fixture
def full_tmp(tmp_path):
    """The VM's tmp folder on a 64 KiB tmpfs, filled up (unmounted afterwards)."""
    tmp = tmp_path / "vm1" / "vm" / "tmp"
    tmp.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tmp)], check=True)
    try:
        with open(tmp / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    yield tmp
    subprocess.run(["umount", "-l", str(tmp)], check=True)


def test_a_full_disk_never_leaves_an_empty_or_partial_status(tmp_path, full_tmp):
    job = FileJob(tmp_path / "store", JOB)
    job.put(f"jobs/{JOB}/code.tar.gz", code_tar({"run.sh": "echo hi"}))
    vm = VM(tmp_path / "vm1", job.uri, JOB).start({"name": "fill", "command": "true"})
    vm.wait()
    assert not (job.dir / "status.json").exists()  # never an empty one: the store keeps what it had (nothing)
    assert "could not write status RUNNING" in vm.console and "could not write status FAILED" in vm.console
