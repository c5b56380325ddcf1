"""Progress while waiting: the phases the startup script records in status.json, and the line `--wait` draws."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT
from script_harness import VM, S3Job, code_tar

from runner import jobs
from runner.progress import ConsoleTail, Phase, Progress, console_line, describe, phase_of
from runner.providers.base import InstanceState
from runner.store import open_store

JOB = "prog-20260101T000000Z-abcdef"
PHASE_RE = re.compile(r"\| (booting|pulling|running|uploading|powering off)\b")


# --- the script: each phase in status.json, read back from a versioned bucket

def test_status_json_holds_each_phase_in_order_with_the_pulls_bytes(s3, s3_server, tmp_path):
    client, bucket = s3
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    job = S3Job(client, bucket, JOB)
    code = code_tar({"run.sh": "cat data/in/a.bin data/in/b.bin data/one.bin > out.bin\n"})
    job.put(f"jobs/{JOB}/code.tar.gz", code)
    job.put("data/in/a.bin", b"a" * 1000)
    job.put("data/in/b.bin", b"b" * 234)
    job.put("data/in/sub/../evil.bin", b"e" * 7)  # listed, so expected; never pulled (not a plain path)
    job.put("data/one.bin", b"o" * 50)
    spec = {"name": "prog", "command": "bash run.sh", "inputs": {"data/in/": "data/in/", "data/one.bin": "data/one.bin"},
            "outputs": {"out.bin": None}}
    vm = VM(tmp_path / "vm", job.uri, JOB).start(spec, s3_endpoint=s3_server)
    vm.wait()
    key = f"runner/jobs/{JOB}/status.json"
    found = client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    written = [json.loads(client.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read())
               for v in found][::-1]  # S3 lists a key's versions newest first
    written = [s for s in written if "phase" in s]  # the launcher writes none; this test runs no launcher
    phases = [(s["state"], s["phase"]) for s in written]
    assert [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]] == [  # a long pull writes its bytes again
        ("RUNNING", "pulling"), ("RUNNING", "running"), ("RUNNING", "uploading"), ("SUCCEEDED", "powering off")], vm.console
    assert written[0]["bytes_done"] is None and written[0]["bytes_total"] is None  # nothing is known as the pull starts
    done = 1000 + 234 + 50 + len(code)
    for s in written[phases.index(("RUNNING", "running")):]:
        assert (s["bytes_done"], s["bytes_total"]) == (done, done + 7)


SLOW_S5CMD = """#!/bin/bash
# the copy of a listed prefix (s5cmd run) takes 4 s more; everything else as it is
[[ " $* " == *" run "* ]] && sleep 4
exec REAL "$@"
"""


def test_a_long_pull_writes_its_bytes_while_it_runs(s3, s3_server, tmp_path):
    """While a prefix is still being copied, status.json already holds what was listed and what has landed."""
    client, bucket = s3
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    job = S3Job(client, bucket, JOB)
    code = code_tar({"run.sh": "true\n"})
    job.put(f"jobs/{JOB}/code.tar.gz", code)
    job.put("data/in/a.bin", b"a" * 1000)
    job.put("data/one.bin", b"o" * 50)
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "s5cmd").write_text(SLOW_S5CMD.replace("REAL", shutil.which("s5cmd")))
    (shim / "s5cmd").chmod(0o755)
    spec = {"name": "prog", "command": "bash run.sh", "inputs": {"data/in/": "data/in/", "data/one.bin": "data/one.bin"}}
    vm = VM(tmp_path / "vm", job.uri, JOB, extra_path=[shim]).start(spec, s3_endpoint=s3_server)
    vm.wait()
    key = f"runner/jobs/{JOB}/status.json"
    versions = client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    written = [json.loads(client.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read()) for v in versions]
    mid = [s for s in written if s.get("phase") == "pulling" and s.get("bytes_total") is not None]
    assert mid, [(s.get("phase"), s.get("bytes_done"), s.get("bytes_total")) for s in written]
    total = 1000 + 50 + len(code)
    assert all(s["bytes_total"] <= total and s["bytes_done"] < total for s in mid)  # the prefix had not landed yet
    assert any(s["bytes_total"] >= 1000 for s in mid)  # its listing had


# --- the pieces, without a backend

def test_phase_of_takes_only_a_known_phase_and_whole_byte_counts():
    assert phase_of({"phase": "pulling", "bytes_done": 10, "bytes_total": 20}) == Phase("pulling", 10, 20)
    assert phase_of({"phase": "\x1b[2Jrm -rf", "bytes_done": True, "bytes_total": -1}) == Phase()
    assert phase_of({"phase": "running", "bytes_done": "10", "bytes_total": 2.5}) == Phase("running")
    assert phase_of(["not", "an", "object"]) == Phase()


def test_console_line_is_the_last_line_printable_and_trimmed():
    console = "[    1.234567] Run /init as init process\r\n[\x1b[0;32m  OK  \x1b[0m] Started \x07Journal Service.\n\n"
    assert console_line(console) == "[  OK  ] Started Journal Service."
    assert console_line("[    2.000001] " + "x" * 200) == "x" * 57 + "..."
    assert console_line("") == ""


def test_describe_boot_shows_the_clouds_vm_state_or_the_console(tmp_path):
    provisioning = jobs.Status(jobs.PROVISIONING)
    key, text = describe(JOB, provisioning, Phase(), "pending", 75.0, 0.0123)
    assert key == (jobs.PROVISIONING, "booting")
    assert text == f"{JOB}: PROVISIONING | booting (pending) | 1:15 | $0.0123"
    running = jobs.Status(jobs.RUNNING)
    _, text = describe(JOB, running, Phase("running", 2048, 4096), "ignored once the script writes", 3661.0, None)
    assert text == f"{JOB}: RUNNING | running (pulled 2.0 KB of 4.0 KB) | 1:01:01"
    assert describe(JOB, running, Phase(), "", 1.0, None)[0] == (jobs.RUNNING, "")


def test_the_pull_and_push_rates_show_when_status_json_has_them():
    record = {"phase": "pulling", "bytes_done": 5 << 30, "bytes_total": 20 << 30, "bytes_per_s": 1_760_000_000,
              "pushed_bytes": None, "pushed_bytes_per_s": None}
    assert phase_of(record) == Phase("pulling", 5 << 30, 20 << 30, 1_760_000_000)
    running = jobs.Status(jobs.RUNNING)
    assert describe(JOB, running, phase_of(record), "", 12.0, None)[1] == f"{JOB}: RUNNING | pulling (5.0 GB of 20.0 GB at 1760 MB/s) | 0:12"
    record.update(phase="running", bytes_done=20 << 30, bytes_per_s=2_500_000)
    assert describe(JOB, running, phase_of(record), "", 12.0, None)[1] == f"{JOB}: RUNNING | running (pulled 20.0 GB of 20.0 GB at 2.5 MB/s) | 0:12"
    record.update(phase="powering off", pushed_bytes=3 << 20, pushed_bytes_per_s=300_000_000)
    done = jobs.Status(jobs.SUCCEEDED)
    assert describe(JOB, done, phase_of(record), "", 60.0, None)[1] == f"{JOB}: SUCCEEDED | powering off (pushed 3.0 MB at 300 MB/s) | 1:00"
    assert describe(JOB, running, Phase("pulling", 1, 2, 999), "", 1.0, None)[1] == f"{JOB}: RUNNING | pulling (1 B of 2 B at 1 kB/s) | 0:01"
    assert phase_of({"phase": "running", "bytes_per_s": "fast", "pushed_bytes": -1, "pushed_bytes_per_s": True}) == Phase("running")


def test_console_tail_reads_the_store_console_as_it_grows(tmp_path):
    store = open_store(f"file://{tmp_path}/store")
    tail = ConsoleTail(store, JOB)
    assert tail.poll() == ""  # no console yet
    key = jobs.job_key(JOB, "logs", "console.log")
    store.put_bytes(key, b"SeaBIOS (version 1.16)\n[    0.000000] Linux version 6.1\n")
    assert tail.poll() == "Linux version 6.1"
    store.put_bytes(key, b"SeaBIOS (version 1.16)\n[    0.000000] Linux version 6.1\n[    3.1] systemd[1]: Reached target")
    assert tail.poll() == "systemd[1]: Reached target"


def test_without_a_terminal_one_line_per_phase_change():
    err = io.StringIO()
    progress = Progress(err, live=False)
    for key, text in [(("PROVISIONING", "booting"), "a"), (("PROVISIONING", "booting"), "a2"), (("RUNNING", "pulling"), "b"),
                      (("RUNNING", "pulling"), "b2"), (("RUNNING", "running"), "c"), (("SUCCEEDED", "powering off"), "d")]:
        progress.update(key, text)
    progress.close()
    assert err.getvalue() == "a\nb\nc\nd\n"


def test_on_a_terminal_the_line_is_redrawn_in_place_and_cleared_around_the_log():
    err, out = io.StringIO(), io.BytesIO()
    progress = Progress(err, live=True, width=20)
    progress.update(("RUNNING", "running"), "a line longer than the terminal")
    log = progress.guard(out)
    log.write(b"half a line")
    log.flush()
    progress.update(("RUNNING", "running"), "not drawn mid-line")
    log.write(b" ends\n")
    log.flush()
    progress.close()
    assert out.getvalue() == b"half a line ends\n"
    assert err.getvalue() == "\r\x1b[Ka line longer than \r\x1b[K" + "\r\x1b[Knot drawn mid-line\r\x1b[K"


# --- end to end in the sandbox: each phase held by a gate the test opens once it has seen that phase

def gated_job(make_job, tmp_path, runner_home) -> tuple[Path, dict]:
    """A job whose pull, run and upload each wait for a gate file; a `cp` on the PATH that holds the copies."""
    gates = tmp_path / "gates"
    gates.mkdir()
    data = runner_home / "store" / "data" / "slow"
    data.mkdir(parents=True)
    (data / "gate-pull.bin").write_bytes(b"x" * 1024)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "cp").write_text(f"""#!/bin/bash
for a in "$@"; do case $a in *gate-pull*) g=pull ;; *gate-upload*) g=upload ;; esac; done
if [ -n "${{g:-}}" ]; then while [ ! -e {gates}/"$g" ]; do sleep 0.05; done; fi
exec {shutil.which("cp")} "$@"
""")
    (tools / "cp").chmod(0o755)
    command = f"while [ ! -e {gates}/run ]; do sleep 0.05; done; echo hello; echo world > gate-upload.txt; echo world"
    job = make_job({"name": "prog", "command": command, "inputs": {"data/slow/": "data/"}, "outputs": {"gate-upload.txt": None}})
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}
    return job, {"gates": gates, "env": env}


def drive(argv: list[str], env: dict, gates: Path, err_fd: int, proc: subprocess.Popen) -> str:
    """Read the launcher's stderr; open each phase's gate once that phase shows; return all of it."""
    seen, text, deadline = [], b"", time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([err_fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(err_fd, 4096)
            except OSError:  # the pty's other end is closed
                chunk = b""
            if not chunk:
                return text.decode()
            text += chunk
            for phase in PHASE_RE.findall(text.decode(errors="replace")):
                if phase in ("pulling", "running", "uploading") and phase not in seen:
                    seen.append(phase)
                    (gates / {"pulling": "pull", "running": "run", "uploading": "upload"}[phase]).touch()
    proc.kill()
    raise AssertionError(f"{argv} did not end; its stderr so far: {text!r}")


def phases_in(text: str) -> list[str]:
    """The phases shown, each once, in order; booting dropped (the sandbox may write its first status before any poll)."""
    order = []
    for p in PHASE_RE.findall(text):
        if p != "booting" and (not order or order[-1] != p):
            order.append(p)
    return order


def test_on_a_terminal_stderr_holds_the_phases_in_order_and_stdout_only_the_log(make_job, tmp_path, runner_home):
    job, g = gated_job(make_job, tmp_path, runner_home)
    argv = [sys.executable, "-m", "runner", "launch", str(job), "--cloud", "sandbox", "--follow"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=g["env"], cwd=ROOT)
    os.close(slave)
    try:
        err = drive(argv, g["env"], g["gates"], master, proc)
    finally:
        os.close(master)
    out = proc.stdout.read()
    assert proc.wait() == 0, err
    assert out == b"hello\nworld\n"
    assert phases_in(err) == ["pulling", "running", "uploading", "powering off"], err
    assert "\r\x1b[K" in err  # redrawn in place
    assert re.search(r"running \(pulled 1\.\d KB of 1\.\d KB at \d+(\.\d)? [kM]B/s\)", err) and "$0.0000" in err  # the input and the code
    assert len([line for line in err.split("\n") if PHASE_RE.search(line)]) == 1  # every phase drawn over one line


def test_without_a_terminal_one_line_per_phase_and_stdout_only_the_log(make_job, tmp_path, runner_home):
    job, g = gated_job(make_job, tmp_path, runner_home)
    argv = [sys.executable, "-m", "runner", "launch", str(job), "--cloud", "sandbox", "--follow"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=g["env"], cwd=ROOT)
    err = drive(argv, g["env"], g["gates"], proc.stderr.fileno(), proc)
    out = proc.stdout.read()
    assert proc.wait() == 0, err
    assert out == b"hello\nworld\n"
    lines = [line for line in err.splitlines() if PHASE_RE.search(line) and "booting" not in line]
    assert [PHASE_RE.search(line)[1] for line in lines] == ["pulling", "running", "uploading", "powering off"], err
    assert len(lines) == len(set(lines)) == len(phases_in(err))
    assert "\x1b" not in err and "\r" not in err


def test_quiet_drops_the_line(make_job):
    job = make_job({"name": "prog", "command": "echo hello"})
    r = subprocess.run([sys.executable, "-m", "runner", "launch", str(job), "--cloud", "sandbox", "--follow", "--quiet"],
                       capture_output=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello\n"
    assert not PHASE_RE.search(r.stderr.decode()) and b"SUCCEEDED" in r.stderr


def test_a_cloud_vm_state_is_the_boot_detail():
    assert describe(JOB, jobs.Status(jobs.PENDING), Phase(), InstanceState(True, "STAGING").reason, 0.0, None)[1] == \
        f"{JOB}: PENDING | booting (STAGING) | 0:00"
