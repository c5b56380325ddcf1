"""The local VM: what our startup script adds to a boot, beside the same image booting a bare user-data.

Same image, same run: (a) a user-data that only marks its start and powers off; (b) `runner launch`
of a job whose command is `true`. Times are the guest's uptime stamps on the serial console
(cloud-init and the kernel print them), so both boots are measured on one clock.
Target: our script adds <= 3 s before the job starts and <= 5 s after it ends.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import REPO, header, loadavg, machine, table, verdict  # noqa: E402

STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]")
BARE = "#!/bin/bash\necho BARE-START\necho BARE-END\npoweroff\n"  # stdout reaches the console with uptime stamps, as ours


def uptime_of(console: str, marker: str) -> float | None:
    """The guest uptime on the first console line containing `marker`."""
    for line in console.splitlines():
        m = STAMP.match(line)
        if m and marker in line:
            return float(m[1])
    return None


def wait_gone(provider, inst, limit: float = 900) -> float:
    t0 = time.monotonic()
    while provider.state(inst).alive and time.monotonic() - t0 < limit:
        time.sleep(0.5)
    return time.monotonic() - t0


def bare_boot(home: Path) -> dict:
    """Boot the image with a user-data that only powers off."""
    from runner.providers.base import LaunchRequest
    from runner.providers.local import LocalProvider

    provider = LocalProvider()
    job_id = "bare-20260101T000000Z-000000"
    t0 = time.monotonic()
    inst = provider.launch(LaunchRequest(job_id=job_id, user_data=BARE, instance_type="local-2x4", spot=False,
                                         disk_gb=8, max_runtime=3600))
    wait_gone(provider, inst)
    wall = time.monotonic() - t0
    console = (home / "store" / "jobs" / job_id / "logs" / "console.log").read_text(errors="replace")
    return {"start": uptime_of(console, "BARE-START"), "end": uptime_of(console, "BARE-END"),
            "off": uptime_of(console, "reboot: Power down"), "wall": wall}


def runner_boot(home: Path) -> dict:
    """`runner launch` of a job whose command is `true`."""
    job = home / "job"
    job.mkdir(parents=True, exist_ok=True)
    (job / "job.yaml").write_text(json.dumps({"name": "noop", "command": "true"}))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "runner", "launch", str(job), "--cloud", "local", "--wait", "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - t0
    job_id = json.loads(r.stdout)["job_id"]
    console = (home / "store" / "jobs" / job_id / "logs" / "console.log").read_text(errors="replace")
    return {"start": uptime_of(console, "runner: job "), "job": uptime_of(console, "runner: running:"),
            "done": uptime_of(console, "job command exited"), "off": uptime_of(console, "reboot: Power down"),
            "wall": wall, "state": json.loads(r.stdout)["state"]}


def main() -> None:
    header("local VM: startup script overhead beside a bare boot (same image, same run)")
    print(f"{machine()}; load {loadavg()}; accel {os.environ.get('RUNNER_LOCAL_ACCEL', 'auto')}")
    from runner.images import images_dir

    os.environ["RUNNER_IMAGES"] = str(images_dir())  # the baked image stays where `make image` put it
    with tempfile.TemporaryDirectory(prefix="bench-vm-") as tmp:
        os.environ["RUNNER_HOME"] = tmp
        bare = bare_boot(Path(tmp))
        ours = runner_boot(Path(tmp))
    before = ours["job"] - bare["start"]
    after = (ours["off"] - ours["done"]) - (bare["off"] - bare["end"])
    print(table(["boot", "user-data starts (uptime s)", "job starts", "job ends", "power down", "wall s"], [
        ["bare user-data (poweroff only)", f"{bare['start']:.1f}", "-", f"{bare['end']:.1f}", f"{bare['off']:.1f}", f"{bare['wall']:.1f}"],
        [f"runner, job `true` ({ours['state']})", f"{ours['start']:.1f}", f"{ours['job']:.1f}", f"{ours['done']:.1f}",
         f"{ours['off']:.1f}", f"{ours['wall']:.1f}"],
    ]))
    print()
    print(table(["added by the startup script", "seconds", "target"], [
        ["before the job starts (job start - bare user-data start)", f"{before:.1f}", f"<= 3 s: {verdict(before <= 3)}"],
        ["after it ends ((power down - job end) - (bare power down - bare end))", f"{after:.1f}", f"<= 5 s: {verdict(after <= 5)}"],
    ]))


if __name__ == "__main__":
    main()
