"""Shared helpers for the benchmarks in bench/: statistics, Markdown tables, tool lookup, servers.

Not a test helper: nothing here asserts anything. Every benchmark prints what it measured.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p90(xs: list[float]) -> float:
    """90th percentile (linear interpolation between order statistics, as numpy's default)."""
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    k = 0.9 * (len(s) - 1)
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def table(headers: list[str], rows: list[list[object]], align: str | None = None) -> str:
    """A Markdown table; `align` is one of 'l'/'r' per column (default: text left, numbers right)."""
    cells = [[str(c) for c in r] for r in rows]
    if align is None:
        align = "".join(
            "r" if rows and all(isinstance(r[i], (int, float)) or _numeric(str(r[i])) for r in rows) else "l"
            for i in range(len(headers))
        )
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(vals):
        return "| " + " | ".join(v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(vals, widths, align, strict=True)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align, strict=True)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in cells])


def _numeric(s: str) -> bool:
    try:
        float(s.rstrip("x%").replace(",", ""))
        return True
    except ValueError:
        return False


def is_pyenv_shim(path: str | None) -> bool:
    """A pyenv shim: a bash script that runs `pyenv exec NAME` (which then finds the real NAME)."""
    if not path:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(1000)
    except OSError:
        return False
    return head.startswith(b"#!") and (b"libexec/pyenv" in head or b"pyenv exec" in head)


def pyenv_shim(name: str) -> str | None:
    """A pyenv shim for `name` on PATH, if any (under `pyenv exec` the real bin/ comes first on PATH,
    so shutil.which finds the real script; an interactive shell here finds the shim)."""
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK) and is_pyenv_shim(p):
            return p
    return None


def scripts_dir() -> Path:
    """Where this interpreter's console scripts are installed (the venv's or pyenv version's bin/)."""
    return Path(sysconfig.get_path("scripts"))


def real_script(name: str) -> str | None:
    """The console script itself, bypassing a pyenv shim: this interpreter's scripts dir, else PATH."""
    p = scripts_dir() / name
    if p.is_file() and os.access(p, os.X_OK):
        return str(p)
    found = shutil.which(name)
    return None if found is None or is_pyenv_shim(found) else found


def describe_path(path: str | None) -> str:
    """`path` and what it is (pyenv shim, Python console script, native binary)."""
    if not path:
        return "(not found)"
    if is_pyenv_shim(path):
        return f"{path} (pyenv shim: a bash script that execs the real one)"
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            first = f.readline(300)
    except OSError:
        return path
    if head == b"\x7fELF":
        return f"{path} (native binary)"
    if first.startswith(b"#!") and b"python" in first:
        return f"{path} (Python console script: {first[2:].decode().strip()})"
    return path


def first_line(cmd: list[str]) -> str:
    """The first non-empty line a command prints (stdout, else stderr); '?' if it cannot run."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"? ({e.__class__.__name__})"
    for text in (r.stdout, r.stderr):
        for ln in text.splitlines():
            if ln.strip():
                return ln.strip()
    return "?"


def machine() -> str:
    os_name = "?"
    try:
        for ln in Path("/etc/os-release").read_text().splitlines():
            if ln.startswith("PRETTY_NAME="):
                os_name = ln.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return f"{os_name}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()} ({sys.executable})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def stop(proc: subprocess.Popen | None) -> None:
    """End a server this benchmark started (by its own pid), politely first."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def balanced_orders(n: int) -> list[list[int]]:
    """Orders of n clients in which each client runs in each position, and right after each other
    client, equally often (a Williams Latin square: n orders for even n, 2n for odd n)."""
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(x + i) % n for x in first] for i in range(n)]
    return rows if n % 2 == 0 else rows + [r[::-1] for r in rows]


def import_times(argv: list[str], env: dict | None = None) -> dict[str, float]:
    """Modules a fresh `python -X importtime ARGV...` imports -> cumulative ms (as importtime prints them)."""
    r = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, capture_output=True, text=True, check=False)
    mods = {}
    for ln in r.stderr.splitlines():
        if ln.startswith("import time:") and ln.count("|") == 2:
            _, cum, name = (x.strip() for x in ln.split(":", 1)[1].split("|"))
            if cum.isdigit():
                mods[name] = int(cum) / 1000
    return mods


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def header(title: str) -> None:
    print(f"# {title}\n")
    print(f"- machine: {machine()}")
    print(f"- run at: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {loadavg()}")


def loadavg() -> str:
    """The 1-minute load average: other work on this 2-core machine skews every number."""
    try:
        return f"load average {Path('/proc/loadavg').read_text().split()[0]} (1 min)"
    except OSError:
        return "load average ?"
