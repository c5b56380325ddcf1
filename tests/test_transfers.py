"""Transfers sized to the VM's vCPUs, and the size, time and rate of every pull and push in startup.log and status.json."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from script_harness import VM, FileJob, S3Job, code_tar

from runner.render import render_bootstrap, render_startup
from runner.spec import validate

JOB = "rates-20260101T000000Z-abcdef"
RATE = r"\d+(\.\d)? [kMGT]?B in \d+\.\d s, \d+(\.\d)? [kM]B/s"
SPEC = {"name": "rates", "command": "mkdir -p plots && head -c 3000 data/one.bin > out.bin && cp data/in/a.bin plots/a.bin",
        "inputs": {"data/in/": "data/in/", "data/one.bin": "data/one.bin"}, "outputs": {"out.bin": None, "plots/": None}}


def sizes(n: str) -> tuple[int, ...]:
    """The rendered transfer_sizes for `n` vCPUs: s5cmd's workers and parts, gsutil's processes, threads and slices."""
    script = render_startup(validate({"name": "s", "command": "true"}, "test"), JOB, "s3://b", "sandbox").splitlines()
    start = script.index("transfer_sizes() {")
    fn = "\n".join(script[start:script.index("}", start) + 1])
    out = subprocess.run(["bash", "-c", fn + '\ntransfer_sizes "$1"; echo "$S3_WORKERS $S3_PARTS $GS_PROCS $GS_THREADS $GS_SLICES"', "bash", n],
                         capture_output=True, text=True, check=True).stdout
    return tuple(int(x) for x in out.split())


@pytest.mark.parametrize("n, want", [
    ("1", (256, 5, 1, 8, 4)), ("2", (256, 5, 2, 8, 4)), ("8", (256, 8, 8, 8, 8)), ("16", (512, 16, 16, 8, 16)),
    ("32", (1024, 32, 32, 8, 32)), ("64", (2048, 32, 32, 16, 32)), ("128", (4096, 32, 32, 32, 32)), ("192", (4096, 32, 32, 32, 32)),
    ("", (256, 5, 1, 8, 4)), ("8; rm -rf /", (256, 5, 1, 8, 4)), ("999999", (256, 5, 1, 8, 4)),
])
def test_transfer_sizes_follow_the_vcpus(n, want):
    assert sizes(n) == want


def test_the_bootstrap_sizes_its_tools_too():
    boot = render_bootstrap(JOB, "s3://b", "aws", 1800)
    assert 'transfer_sizes "$(nproc 2> /dev/null)"' in boot and '--numworkers "$S3_WORKERS"' in boot
    assert "GSUtil:parallel_thread_count=$GS_THREADS" in boot


def rate_lines(log: str, uri_root: str) -> None:
    """Every pull and push of SPEC is in the log with its size, time and a numeric rate."""
    for pattern in (rf"pulled code {uri_root}/jobs/{JOB}/code\.tar\.gz: {RATE}\n",
                    rf"pulled input {uri_root}/data/in/: {RATE}\n",
                    rf"pulled input {uri_root}/data/one\.bin: {RATE}\n",
                    rf"pulled code and 2 input\(s\): {RATE}\n",
                    rf"pushed out\.bin to {uri_root}/jobs/{JOB}/outputs/out\.bin: 3\.0 kB in \d+\.\d s, \d+(\.\d)? [kM]B/s\n",
                    rf"pushed plots/ to {uri_root}/jobs/{JOB}/outputs/plots/: 1\.0 kB in \d+\.\d s, \d+(\.\d)? [kM]B/s\n",
                    r"transfers sized for \d+ vCPUs: s5cmd --numworkers \d+, cp --concurrency \d+; gsutil \d+ processes x \d+ threads"):
        assert re.search(pattern, log), (pattern, log)


def final_rates(status: dict, pulled: int) -> None:
    assert (status["state"], status["bytes_done"], status["bytes_total"]) == ("SUCCEEDED", pulled, pulled), status
    assert isinstance(status["bytes_per_s"], int) and status["bytes_per_s"] > 0
    assert status["pushed_bytes"] == 3000 + 1000
    assert isinstance(status["pushed_bytes_per_s"], int) and status["pushed_bytes_per_s"] > 0


def test_a_file_store_run_logs_every_transfer_with_its_rate(tmp_path):
    job = FileJob(tmp_path / "store", JOB)
    code = code_tar({"run.sh": "true\n"})
    job.put(f"jobs/{JOB}/code.tar.gz", code)
    job.put("data/in/a.bin", b"a" * 1000)
    job.put("data/in/b.bin", b"b" * 234)
    job.put("data/one.bin", b"o" * 5000)
    vm = VM(tmp_path / "vm", job.uri, JOB).start(SPEC)
    vm.wait()
    log = job.log("startup.log").decode()
    rate_lines(log, re.escape(job.uri))
    final_rates(job.status(), len(code) + 1000 + 234 + 5000)


S5CMD = """#!/bin/bash
echo "s5cmd $*" >> {log}
if [[ " $* " == *" run "* ]]; then sed 's/^/  run: /' "${{@: -1}}" >> {log}; fi
exec {real} "$@"
"""


def test_an_s3_store_run_sizes_s5cmd_to_the_vcpus_and_logs_every_rate(s3, s3_server, tmp_path):
    client, bucket = s3
    job = S3Job(client, bucket, JOB)
    code = code_tar({"run.sh": "true\n"})
    job.put(f"jobs/{JOB}/code.tar.gz", code)
    job.put("data/in/a.bin", b"a" * 1000)
    job.put("data/in/b.bin", b"b" * 234)
    job.put("data/one.bin", b"o" * 5000)
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "nproc").write_text("#!/bin/bash\necho 12\n")  # a 12-vCPU VM: 384 workers, 12 parts per object
    (shims / "s5cmd").write_text(S5CMD.format(log=tmp_path / "s5cmd.log", real=shutil.which("s5cmd")))
    for f in shims.iterdir():
        f.chmod(0o755)
    vm = VM(tmp_path / "vm", job.uri, JOB, extra_path=[shims]).start(SPEC, s3_endpoint=s3_server)
    vm.wait()
    log = job.log("startup.log").decode()
    rate_lines(log, re.escape(job.uri))
    assert "transfers sized for 12 vCPUs: s5cmd --numworkers 384, cp --concurrency 12; gsutil 12 processes x 8 threads" in log
    final_rates(job.status(), len(code) + 1000 + 234 + 5000)
    calls = (tmp_path / "s5cmd.log").read_text().splitlines()
    commands = [c for c in calls if c.startswith("s5cmd ")]
    assert commands and all(c.startswith("s5cmd --retry-count 3 --numworkers 384 --endpoint-url ") for c in commands), commands
    copies = [c for c in commands if " cp " in c]
    assert copies and all(" cp --concurrency 12 " in c for c in copies), copies
    listed = [c for c in calls if c.startswith("  run: ")]
    assert len(listed) == 2 and all(c.startswith("  run: cp --concurrency 12 --raw ") for c in listed), listed
