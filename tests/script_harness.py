"""Runs the rendered startup script on this host as a VM would, with a store of the test's choosing.

On a VM the bootstrap (user-data) fetches this script from the store and runs it; here it runs directly
(tests/test_render.py runs the bootstrap itself).

The sandbox backend does the same through `runner launch`; this harness calls the script directly so a
test can pick the VM's root (a tiny disk), the attempt, the log interval and the tools on its PATH.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.render import render_startup
from runner.spec import validate

PART = re.compile(r"(?P<name>.+)\.(?P<seq>[0-9]{6})")
POWEROFF = '#!/bin/bash\necho "poweroff $*" >> {dir}/power.log\nkill -KILL 0\n'
SHUTDOWN = '#!/bin/bash\necho "shutdown $*" >> {dir}/power.log\n'


def code_tar(files: dict[str, str | bytes]) -> bytes:
    """A job folder packed as the launcher packs it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class VM:
    """One run of the startup script: its folder, its process and its store (as a store URI)."""

    dir: Path
    store: str
    job_id: str
    proc: subprocess.Popen | None = None
    extra_path: list[Path] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.dir / "vm"

    @property
    def console(self) -> str:
        return (self.dir / "console.log").read_text(errors="replace")

    def power(self) -> list[str]:
        p = self.dir / "power.log"
        return p.read_text().splitlines() if p.exists() else []

    def start(self, spec: dict, attempt: int = 1, log_interval: int = 1, s3_endpoint: str = "", env: dict | None = None) -> VM:
        script = render_startup(validate(spec, "test"), self.job_id, self.store, "sandbox", s3_endpoint=s3_endpoint,
                                attempt=attempt, log_interval=log_interval)
        bin_dir = self.dir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name, text in (("poweroff", POWEROFF), ("shutdown", SHUTDOWN)):
            (bin_dir / name).write_text(text.format(dir=self.dir))
            (bin_dir / name).chmod(0o755)
        (self.dir / "user-data").write_text(script)
        path = ":".join(str(p) for p in [*self.extra_path, bin_dir]) + ":" + os.environ["PATH"]
        full_env = {**os.environ, "RUNNER_VM_ROOT": str(self.root), "PATH": path, **(env or {})}
        with open(self.dir / "console.log", "wb") as console:
            self.proc = subprocess.Popen(["bash", str(self.dir / "user-data")], stdin=subprocess.DEVNULL, stdout=console,
                                         stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
        return self

    def wait(self, timeout: float = 120) -> None:
        """Until the script has powered the machine off (its shim ends every process of the script)."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        finally:
            self.kill()
        assert [line.split()[0] for line in self.power()] == ["poweroff"], self.console  # the bootstrap schedules the failsafe

    def term(self) -> None:
        """A cloud's shutdown: SIGTERM to every process of the machine's script."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


def wait_for(pred, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


class FileJob:
    """A job's folder in a file:// store."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.root, self.job_id = root, job_id
        self.dir = root / "jobs" / job_id

    @property
    def uri(self) -> str:
        return f"file://{self.root}"

    def put(self, key: str, data: bytes) -> None:
        p = self.root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def status(self) -> dict | None:
        p = self.dir / "status.json"
        return json.loads(p.read_bytes()) if p.exists() else None

    def parts(self, name: str, attempt: int = 1) -> list[tuple[str, bytes]]:
        """The log parts of `name` in SEQ order: (key below logs/, bytes)."""
        d = self.dir / "logs" / str(attempt)
        found = sorted(p.name for p in d.iterdir() if (m := PART.fullmatch(p.name)) and m["name"] == name) if d.is_dir() else []
        return [(f"{attempt}/{n}", (d / n).read_bytes()) for n in found]

    def log(self, name: str, attempt: int = 1) -> bytes:
        return b"".join(data for _, data in self.parts(name, attempt))


class S3Job:
    """A job's folder in an s3:// store (a moto bucket)."""

    def __init__(self, client, bucket: str, job_id: str, prefix: str = "runner") -> None:
        self.client, self.bucket, self.job_id, self.prefix = client, bucket, job_id, prefix

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}", Body=data)

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/jobs/{self.job_id}/{key}")["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def status(self) -> dict | None:
        data = self.get("status.json")
        return None if data is None else json.loads(data)

    def parts(self, name: str, attempt: int = 1) -> list[tuple[str, bytes]]:
        base = f"{self.prefix}/jobs/{self.job_id}/logs/"
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{base}{attempt}/")
        keys = sorted(o["Key"][len(base):] for o in listing.get("Contents", []))
        found = [k for k in keys if (m := PART.fullmatch(k.split("/", 1)[1])) and m["name"] == name]
        return [(k, self.get(f"logs/{k}") or b"") for k in found]

    def log(self, name: str, attempt: int = 1) -> bytes:
        return b"".join(data for _, data in self.parts(name, attempt))
