"""Disks: the scratch array (2 emulated NVMe drives, RAID0) beside the root disk, in ONE local VM run; and the paper numbers of i3en.2xlarge.

One `runner launch` of a job on local-2x4-nvme2 whose command measures, on the scratch and on the root disk:
sequential write and read with dd (1 MiB blocks, O_DIRECT, page cache dropped before each), and the pull of
the taxi inputs (jobs/taxi/make_data.py) from the store share onto each disk with cp, as the startup script
pulls a file:// store. Two rounds, root and scratch alternating, so both see the same host. Times are the
guest's clock ($EPOCHREALTIME) around each command. The startup script's own pull of the same inputs onto the
scratch (its MB/s line in startup.log) is printed beside them. Under TCG every byte costs emulated CPU, and QEMU
opens both disks with its default host cache (writeback): O_DIRECT in the guest skips the guest's page cache, not
the host's. The local numbers compare the two disks of this VM, not a real machine's.

The second table is not measured: it is what AWS publishes for i3en.2xlarge, with the page each figure is from.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import REPO, header, loadavg, table  # noqa: E402

TYPE = "local-2x4-nvme2"
# The job's command: every measurement is one RESULT line (disk, what, bytes, start, end), read back from its log.
MEASURE = r"""#!/bin/bash
set -u
MB=$1 SRC=/mnt/runner-store/data/bench-taxi
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
stamp() { echo "RESULT $1 $2 $3 $4 $EPOCHREALTIME"; }
if [ -z "${RUNNER_SCRATCH:-}" ]; then echo "NO-SCRATCH: RUNNER_SCRATCH is empty"; fi
echo "DISK root $(df --output=source / | tail -n 1) $(findmnt -no FSTYPE /)"
[ -n "${RUNNER_SCRATCH:-}" ] && echo "DISK scratch $(df --output=source "$RUNNER_SCRATCH" | tail -n 1) $(findmnt -no FSTYPE -T "$RUNNER_SCRATCH")"
cat /proc/mdstat
dirs=(root /var/tmp/bench-disks)
[ -n "${RUNNER_SCRATCH:-}" ] && dirs+=(scratch "$RUNNER_SCRATCH/bench-disks")
cat "$SRC"/* "$SRC"/*/* > /dev/null 2>&1   # the host reads the inputs once before any timed pull
for round in 1 2; do
  for ((i = 0; i < ${#dirs[@]}; i += 2)); do
    disk=${dirs[i]} dir=${dirs[i+1]}
    mkdir -p "$dir"
    drop; t0=$EPOCHREALTIME
    dd if=/dev/zero of="$dir/dd.bin" bs=1M count="$MB" oflag=direct conv=fsync status=none && stamp "$disk" write $((MB << 20)) "$t0"
    drop; t0=$EPOCHREALTIME
    dd if="$dir/dd.bin" of=/dev/null bs=1M iflag=direct status=none && stamp "$disk" read $((MB << 20)) "$t0"
    rm -f "$dir/dd.bin"
    drop; t0=$EPOCHREALTIME
    cp -r "$SRC" "$dir/taxi" && sync && stamp "$disk" pull "$(du -sb "$dir/taxi" | cut -f1)" "$t0"
    rm -rf "$dir/taxi"
  done
done
"""

# i3en.2xlarge as AWS documents it. Each figure is quoted from the page named in its row; "derived" marks arithmetic on them.
EC2_GUIDE = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide"
SRC_STORE = f"{EC2_GUIDE}/InstanceStorage.html (awsdocs/amazon-ec2-user-guide doc_source/InstanceStorage.md)"
SRC_SSD_IOPS = f"{EC2_GUIDE}/storage-optimized-instances.html (doc_source/storage-optimized-instances.md @db20d40)"
SRC_GP3 = f"{EC2_GUIDE}/ebs-volume-types.html (doc_source/ebs-volume-types.md @4f7500d)"
SRC_EBS_OPT = f"{EC2_GUIDE}/ebs-optimized.html (doc_source/ebs-optimized.md @e840de0)"
PULL_GB = 21  # the seeds' run: 250 GB of taxi CSV over 12 x i3en.2xlarge, ~21 GB per VM
PAPER = [
    ["instance store: 2 x 2500 GB NVMe SSD", "not found (AWS publishes IOPS, not MB/s)",
     "170,000 random read / 130,000 write IOPS, 4 KiB, 'up to'", "random 4 KiB x IOPS (derived): read 696, write 532 MB/s",
     f"{PULL_GB * 1000 / 532:.0f} s at the 4 KiB random-write rate (derived; sequential rates not published)",
     f"{SRC_STORE}; {SRC_SSD_IOPS}"],
    ["gp3 root volume, baseline", "125 MiB/s (131 MB/s)", "3,000 IOPS", "-",
     f"{PULL_GB * 1e9 / (125 << 20):.0f} s (derived)", SRC_GP3],
    ["gp3 root volume, 1,000 MiB/s provisioned", "1,000 MiB/s per volume (1,049 MB/s); capped by the instance's EBS bandwidth",
     "up to 16,000 IOPS per volume", "i3en.2xlarge EBS: 593.75 MB/s max (30 min per 24 h), 288.39 MB/s baseline (128 KiB I/O)",
     f"{PULL_GB * 1000 / 593.75:.0f} s for 30 min, then {PULL_GB * 1000 / 288.39:.0f} s (derived)", f"{SRC_GP3}; {SRC_EBS_OPT}"],
]


def run_vm(home: Path, rows: int, mb: int) -> dict:
    """Make the taxi inputs, launch the measuring job on TYPE, and return its log, status and wall time."""
    sys.path.insert(0, str(REPO / "jobs" / "taxi"))
    import make_data

    make_data.generate(home / "store" / "data" / "bench-taxi", files=8, rows=rows, seed=3, fmt="csv")
    job = home / "job"
    job.mkdir(parents=True, exist_ok=True)
    (job / "measure.sh").write_text(MEASURE)
    (job / "job.yaml").write_text(json.dumps({
        "name": "disks", "command": f"bash measure.sh {mb}", "inputs": {"data/bench-taxi/": "data/"},
        "instance_type": TYPE, "max_runtime": "60m", "disk_gb": 8}))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "runner", "launch", str(job), "--cloud", "local", "--wait", "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    status = json.loads(r.stdout) if r.stdout.strip() else {"state": "?", "reason": r.stderr.strip()[-400:]}
    log = ""
    if status.get("job_id"):
        log = subprocess.run([sys.executable, "-m", "runner", "logs", status["job_id"], "--all"], cwd=REPO,
                             capture_output=True, text=True, timeout=300).stdout
    return {"status": status, "log": log, "wall": wall}


def parse(log: str) -> tuple[dict, dict]:
    """RESULT lines -> {(disk, what): [MB/s per round]}; DISK lines -> {disk: 'device fstype'}."""
    rates: dict[tuple[str, str], list[float]] = {}
    disks = {}
    for line in log.splitlines():
        f = line.split()
        if len(f) == 6 and f[0] == "RESULT":
            seconds = float(f[5]) - float(f[4])
            rates.setdefault((f[1], f[2]), []).append(int(f[3]) / seconds / 1e6 if seconds > 0 else float("nan"))
        elif len(f) >= 3 and f[0] == "DISK":
            disks[f[1]] = " ".join(f[2:])
    return rates, disks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000, help="taxi rows over 8 CSV files (2M: about 175 MB)")
    ap.add_argument("--mb", type=int, default=512, help="MiB written and read by each dd")
    args = ap.parse_args()
    header(f"disks: scratch array ({TYPE}) beside the root disk, one local VM run; i3en.2xlarge on paper")
    from runner.images import images_dir

    os.environ["RUNNER_IMAGES"] = str(images_dir())  # the baked image stays where `make image` put it
    os.environ.setdefault("RUNNER_LOCAL_NVME_GIB", "2")
    print(f"- accel {os.environ.get('RUNNER_LOCAL_ACCEL', 'auto')}; {os.environ['RUNNER_LOCAL_NVME_GIB']} GiB per emulated drive "
          f"(sparse raw file), root disk: qcow2 overlay on the image; dd {args.mb} MiB; taxi: 8 CSV files, {args.rows:,} rows\n")
    with tempfile.TemporaryDirectory(prefix="bench-disks-") as tmp:
        os.environ["RUNNER_HOME"] = tmp
        vm = run_vm(Path(tmp), args.rows, args.mb)
    st = vm["status"]
    print(f"job {st.get('job_id', '?')}: {st.get('state')} in {vm['wall']:.0f} s (boot to power-off); {loadavg()}")
    if st.get("state") != "SUCCEEDED":
        print(f"reason: {st.get('reason', '')}")
    if "NO-SCRATCH" in vm["log"]:
        print("the VM set up no scratch array (RUNNER_SCRATCH empty): only the root disk was measured")
    rates, disks = parse(vm["log"])
    rows = []
    for disk, label in (("scratch", "scratch: md RAID0 over 2 emulated NVMe drives"), ("root", "root disk: virtio-blk, qcow2 overlay")):
        cells = []
        for what in ("write", "read", "pull"):
            r = rates.get((disk, what))
            cells.append(" / ".join(f"{x:.0f}" for x in r) if r else "not measured")
        rows.append([label, disks.get(disk, "-"), *cells])
    print()
    print(table(["disk", "device, filesystem", "dd write MB/s (round 1 / 2)", "dd read MB/s", "taxi pull (cp from the store) MB/s"],
                rows, align="llrrr"))
    pulled = re.search(r"runner: (pulled code and \d+ input\(s\): .*)", vm["log"])
    print(f"\nthe startup script's own pull onto the scratch, before the job: {pulled[1] if pulled else 'not found in startup.log'}")
    print()
    print("## i3en.2xlarge on paper (AWS's published figures; not measured here)\n")
    print(table(["storage", "throughput", "IOPS", "what caps it", f"{PULL_GB} GB pull at that rate", "source"], PAPER, align="llllll"))


if __name__ == "__main__":
    main()
