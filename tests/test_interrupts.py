"""SIGINT and SIGTERM while runner waits on a job: the job runs on (and the cancel command is named) or is cancelled."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import ROOT, processes_with

from runner import interrupts, jobs, providers
from runner.providers import proc
from runner.providers.base import Instance, InstanceState
from runner.providers.sandbox import SandboxProvider
from runner.store import FileStore

WINDOW = 7.5  # GitHub Actions: SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that


@pytest.fixture(autouse=True)
def no_sandbox_left(runner_home):
    """Whatever a test leaves running is stopped after it."""
    yield
    sb = SandboxProvider()
    for inst in sb.find({"runner-job": "*"}):
        sb.terminate(inst)


def quiet_env(**extra: str) -> dict:
    """This environment without any CI marker, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in interrupts.CI_VARIABLES}
    return {**env, **extra}


def start(args: list[str], err: Path, env: dict) -> subprocess.Popen:
    """`runner ARGS` in a fresh process, stderr into `err` (read while it runs)."""
    return subprocess.Popen([sys.executable, "-m", "runner", *args], stdout=subprocess.PIPE, stderr=err.open("wb"),
                            env=env, cwd=ROOT)


def wait_for(pred, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := pred():
            return got
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {pred.__doc__}")


def state_of(home: Path, job_id: str) -> str | None:
    try:
        return json.loads((home / "store" / "jobs" / job_id / "status.json").read_text())["state"]
    except (OSError, ValueError, KeyError):
        return None


def running_job(home: Path) -> str:
    """The id of the one job in the store, once its script reports RUNNING."""

    def launched():
        """the CLI launched a job"""
        found = list((home / "store" / "jobs").glob("*/instance.json"))
        return found and found[0].parent.name

    job_id = wait_for(launched)

    def running():
        """the job is RUNNING"""
        return state_of(home, job_id) == "RUNNING"

    wait_for(running)
    return job_id


def sandbox_gone(job_id: str, marker: str):
    def gone():
        """the sandbox's processes are gone"""
        return not processes_with(marker) and not SandboxProvider().find({"runner-job": job_id})

    return gone


def assert_clean_exit(p: subprocess.Popen, err: Path, job_id: str) -> str:
    """The CLI returned within the window, exit 130, no click 'Aborted!', no traceback; returns its stderr."""
    assert p.wait(timeout=WINDOW) == interrupts.EXIT
    text = err.read_text()
    assert "Aborted!" not in text and "Traceback" not in text, text
    return text


def test_sigint_while_launch_waits_leaves_the_job_running_and_names_the_cancel_command(make_job, runner_home, tmp_path):
    marker = f"runner-int-{secrets.token_hex(4)}"
    d = make_job({"name": "runs-on", "command": f"echo started; sleep 1000; : {marker}"})
    err = tmp_path / "launch.err"
    p = start(["launch", str(d), "--cloud", "sandbox", "--wait"], err, quiet_env())
    job_id = running_job(runner_home)
    wait_for(lambda: processes_with(marker))  # the job's command runs
    p.send_signal(signal.SIGINT)
    text = assert_clean_exit(p, err, job_id)
    assert f"{job_id} is still running. Cancel it with: runner cancel {job_id}" in text
    assert state_of(runner_home, job_id) == "RUNNING" and processes_with(marker)
    assert [i.job_id for i in SandboxProvider().find({"runner-job": job_id})] == [job_id]
    # `runner logs --follow` of the same job: the same answer
    err2 = tmp_path / "logs.err"
    f = start(["logs", job_id, "--follow"], err2, quiet_env())
    assert f.stdout.readline() == b"started\n"
    f.send_signal(signal.SIGTERM)
    assert f"Cancel it with: runner cancel {job_id}" in assert_clean_exit(f, err2, job_id)
    assert state_of(runner_home, job_id) == "RUNNING" and processes_with(marker)


def test_sigint_with_cancel_on_interrupt_stops_even_a_job_that_ignores_sigterm_within_the_window(make_job, runner_home, tmp_path):
    """The job ignores SIGTERM, so the script's trap never ends: the CLI still returns in the window, the VM goes."""
    marker = f"runner-int-{secrets.token_hex(4)}"
    d = make_job({"name": "stubborn", "command": f"trap '' TERM; echo started; sleep 1000; : {marker}"})
    err = tmp_path / "launch.err"
    p = start(["launch", str(d), "--cloud", "sandbox", "--follow", "--cancel-on-interrupt"], err, quiet_env())
    job_id = running_job(runner_home)
    wait_for(lambda: processes_with(marker))  # the job's command runs
    p.send_signal(signal.SIGINT)
    text = assert_clean_exit(p, err, job_id)
    assert f"cancelling {job_id}" in text and f"{job_id}: CANCELLED" in text
    assert state_of(runner_home, job_id) == "CANCELLED"
    assert (runner_home / "store" / "jobs" / job_id / "cancel").exists()  # the marker that lets the VM end CANCELLED
    wait_for(sandbox_gone(job_id, marker), 30)  # the sandbox's grace (15 s) ends in a SIGKILL, after the CLI returned


def test_sigterm_in_ci_cancels_by_default(make_job, runner_home, tmp_path):
    marker = f"runner-int-{secrets.token_hex(4)}"
    d = make_job({"name": "ci-job", "command": f"echo started; sleep 1000; : {marker}"})
    err = tmp_path / "launch.err"
    p = start(["launch", str(d), "--cloud", "sandbox", "--wait", "--json"], err, quiet_env(CI="true"))
    job_id = running_job(runner_home)
    p.send_signal(signal.SIGTERM)
    assert_clean_exit(p, err, job_id)
    assert json.loads(p.stdout.read()) == {"job_id": job_id, "interrupted": "SIGTERM", "cancelled": True, "state": "CANCELLED"}
    assert state_of(runner_home, job_id) == "CANCELLED"
    wait_for(sandbox_gone(job_id, marker), 30)


@pytest.mark.parametrize(("flag", "setting", "env", "want"), [
    (None, None, {}, False),
    (None, None, {"CI": "true"}, True),
    (None, None, {"GITHUB_ACTIONS": "true"}, True),
    (None, None, {"CI": "false"}, False),
    (False, None, {"CI": "true"}, False),  # --no-cancel-on-interrupt overrides CI
    (True, False, {}, True),  # the flag beats job.yaml
    (None, True, {}, True),  # job.yaml beats the environment
    (None, False, {"GITHUB_ACTIONS": "true"}, False),
])
def test_who_decides_to_cancel(flag, setting, env, want):
    assert interrupts.should_cancel(flag, setting, env) is want


JOB = "int-20250101T000000Z-abcdef"


class SlowProvider:
    """A VM whose terminate call is hit by a second SIGTERM half way (as GitHub's follow-up signal would)."""

    name = "slow"
    calls: ClassVar[list[str]] = []

    def state(self, inst):
        return InstanceState(alive=True)

    def terminate(self, inst, wait=True):
        self.calls.append(f"start wait={wait}")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs here
        self.calls.append("done")


def test_a_second_signal_during_the_cancel_does_not_abort_the_terminate_call(runner_home, monkeypatch):
    monkeypatch.setitem(providers.PROVIDERS, "slow", "test_interrupts:SlowProvider")
    SlowProvider.calls = []
    store = FileStore(f"file://{runner_home}/store")
    jobs.write_json(store, JOB, "job.json", {"job_id": JOB, "cloud": "slow"})
    jobs.write_json(store, JOB, "instance.json", Instance("slow", "vm-1", JOB).to_json())
    jobs.write_status(store, JOB, jobs.Status(jobs.RUNNING))
    notes = []
    with pytest.raises(SystemExit) as e, interrupts.guard(store, JOB, cancel=True, note=notes.append):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the wait: interrupted at once
    assert e.value.code == interrupts.EXIT
    assert SlowProvider.calls == ["start wait=False", "done"]
    assert "runner: SIGTERM again: still cancelling (the VM is being told to stop)" in notes
    assert jobs.read_status(store, JOB).state == jobs.CANCELLED
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back as it was


LOCAL_JOB = "vm-20250101T000000Z-abcdef"


def test_a_local_vm_that_ignores_its_power_off_is_told_and_left_to_the_reaper(runner_home, tmp_path):
    """cancel(wait=False) returns once QEMU is told (the guest's 120 s grace runs on); a reaper ends it later."""
    import threading

    from runner import cancel

    d = runner_home / "local" / LOCAL_JOB
    d.mkdir(parents=True)
    stand_in = ["sh", "-c", "trap '' TERM; sleep 300"]  # QEMU whose guest does not power off
    data = {"dir": str(d), "sockets": str(tmp_path / "no-sockets"), **proc.spawn(stand_in, d, {}, d / "host.log")}
    (d / "tags.json").write_text(json.dumps({"runner-job": LOCAL_JOB}))
    (d / "instance.json").write_text(json.dumps(data))
    store = FileStore(f"file://{runner_home}/store")
    jobs.write_json(store, LOCAL_JOB, "job.json", {"job_id": LOCAL_JOB, "cloud": "local"})
    jobs.write_json(store, LOCAL_JOB, "instance.json", Instance("local", f"qemu-{data['pid']}", LOCAL_JOB, data=data).to_json())
    jobs.write_status(store, LOCAL_JOB, jobs.Status(jobs.RUNNING))
    try:
        t = threading.Thread(target=cancel.cancel, args=(store, LOCAL_JOB), kwargs={"wait": False}, daemon=True)
        t.start()
        t.join(timeout=WINDOW)
        assert not t.is_alive(), "cancel waited for the VM's grace"
        assert jobs.read_status(store, LOCAL_JOB).state == jobs.CANCELLED
        assert proc.alive(data)  # told, not killed: its grace runs on
        assert wait_for(lambda: processes_with(f'"pid": {data["pid"]}'), 20)  # the reaper (a detached process, starting) ends it later
    finally:
        proc.stop(data, grace=0.1)

    def reaper_gone():
        """the reaper saw the VM go and ended"""
        return not processes_with(f'"pid": {data["pid"]}')

    wait_for(reaper_gone, 10)


class DeniedProvider(SlowProvider):
    """A cloud that refuses the terminate call."""

    name = "denied"

    def terminate(self, inst, wait=True):
        from runner.errors import AuthError

        raise AuthError("EC2 TerminateInstances: UnauthorizedOperation")


def test_a_cancel_that_fails_still_exits_130_and_names_the_command(runner_home, monkeypatch):
    monkeypatch.setitem(providers.PROVIDERS, "denied", "test_interrupts:DeniedProvider")
    store = FileStore(f"file://{runner_home}/store")
    jobs.write_json(store, JOB, "job.json", {"job_id": JOB, "cloud": "denied"})
    jobs.write_json(store, JOB, "instance.json", Instance("denied", "vm-1", JOB).to_json())
    jobs.write_status(store, JOB, jobs.Status(jobs.RUNNING))
    notes = []
    with pytest.raises(SystemExit) as e, interrupts.guard(store, JOB, cancel=True, note=notes.append):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert e.value.code == interrupts.EXIT
    assert notes[-1] == (f"runner: could not cancel {JOB}: EC2 TerminateInstances: UnauthorizedOperation; "
                         f"it may still be running. Cancel it with: runner cancel {JOB}")
    assert jobs.read_status(store, JOB).state == jobs.RUNNING


def test_sigint_while_a_fanout_waits_cancels_every_shard_within_the_window(make_job, runner_home, tmp_path):
    """A fan-out over 3 shards: one SIGINT in CI cancels the parent and every shard; no shard's process lives on."""
    marker = f"runner-int-{secrets.token_hex(4)}"
    d = make_job({"name": "wide", "command": f"echo started; sleep 1000; : {marker}", "vms": 3,
                  "items": {"manifest": "items.txt", "fetch": False}}, files={"items.txt": "a\nb\nc\n"})
    err = tmp_path / "launch.err"
    p = start(["launch", str(d), "--cloud", "sandbox", "--wait", "--json"], err, quiet_env(GITHUB_ACTIONS="true"))
    parent = wait_for(lambda: [j.name for j in (runner_home / "store" / "jobs").glob("wide-*") if "--s" not in j.name])[0]
    from runner.fanout.ids import shard_id

    shards = [shard_id(parent, k) for k in range(3)]
    wait_for(lambda: len(processes_with(marker)) >= 3, 90)  # every shard's item runs
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=WINDOW) == interrupts.EXIT
    text = err.read_text()
    assert "Aborted!" not in text and "Traceback" not in text, text
    assert state_of(runner_home, parent) == "CANCELLED"
    assert all(state_of(runner_home, s) == "CANCELLED" for s in shards), [state_of(runner_home, s) for s in shards]
    wait_for(lambda: not processes_with(marker), 30)  # each sandbox's grace ends in a SIGKILL after the CLI returned
