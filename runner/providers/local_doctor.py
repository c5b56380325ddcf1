"""Whether KVM works on this host (a probe boot of a 512-byte guest), which accelerator a VM gets, and `runner doctor --cloud local`."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from runner import config, images
from runner.errors import RunnerError, SpecError

Check = tuple[bool, str, str]  # (ok, what was checked, what was found or how to fix it)
KVM = "/dev/kvm"
PROBE_SECONDS = 3.0
# A boot sector that writes 1 to QEMU's isa-debug-exit port: QEMU then exits with (1 << 1) | 1 = 3.
BOOT_SECTOR = bytes([0xB0, 0x01, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD])
EXIT_OK = 3
TCG = ("-accel", "tcg,thread=multi", "-cpu", "max")
KVM_ARGS = ("-accel", "kvm", "-cpu", "host")


def accel_setting() -> str:
    """$RUNNER_LOCAL_ACCEL: auto (the default: KVM where the probe passed), kvm, tcg, or a QEMU -accel value."""
    value = os.environ.get("RUNNER_LOCAL_ACCEL", "").strip() or "auto"
    if value not in ("auto", "kvm", "tcg") and not value.startswith(("kvm,", "tcg,")):
        raise SpecError(f"RUNNER_LOCAL_ACCEL={value!r} is not auto, kvm, tcg or a QEMU -accel value starting kvm, or tcg,")
    return value


def accel_args(setting: str, kvm_works: bool) -> tuple[str, ...]:
    """QEMU's -accel and -cpu options for a setting (auto: KVM only where it works)."""
    if setting == "auto":
        return KVM_ARGS if kvm_works else TCG
    if setting == "kvm":
        return KVM_ARGS
    if setting == "tcg":
        return TCG
    return ("-accel", setting, "-cpu", "host" if setting.startswith("kvm") else "max")


def probe(accel: str = "kvm", cpu: str = "host", seconds: float = PROBE_SECONDS) -> tuple[bool, str]:
    """Boot a 512-byte guest that exits at once; (True, '') when QEMU ran it, else (False, QEMU's message)."""
    if accel.startswith("kvm") and not os.access(KVM, os.R_OK | os.W_OK):
        return False, f"{KVM} is missing or not accessible"
    with tempfile.TemporaryDirectory(prefix="runner-probe-") as tmp:
        disk = Path(tmp) / "boot.img"
        disk.write_bytes(BOOT_SECTOR + bytes(510 - len(BOOT_SECTOR)) + b"\x55\xaa")
        argv = ["qemu-system-x86_64", "-accel", accel, "-cpu", cpu, "-nodefaults", "-display", "none", "-no-reboot",
                "-m", "16", "-nic", "none", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-drive", f"file={str(disk).replace(',', ',,')},format=raw,if=floppy", "-boot", "a"]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds)
        except subprocess.TimeoutExpired:
            return False, f"the probe guest did not finish within {seconds:g} s under -accel {accel}"
        except OSError as e:
            return False, str(e)
    if r.returncode == EXIT_OK:
        return True, ""
    lines = [line for line in (r.stderr or r.stdout).strip().splitlines() if line.strip()]
    return False, " / ".join(lines[-3:]) or f"QEMU exited with code {r.returncode}"


def host_key() -> dict:
    """What a cached probe result depends on: this host's kernel and QEMU."""
    try:
        qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        qemu = ""
    return {"kernel": platform.release(), "qemu": qemu.splitlines()[0] if qemu else ""}


def cache_path() -> Path:
    return config.home() / "local" / "kvm-probe.json"


def kvm_works(fresh: bool = False) -> tuple[bool, str]:
    """The KVM probe's result, cached under $RUNNER_HOME for this kernel and QEMU (`fresh`: probe again)."""
    key = host_key()
    if not fresh:
        try:
            cached = json.loads(cache_path().read_text())
            if cached.get("host") == key:
                return bool(cached["ok"]), str(cached.get("detail", ""))
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    ok, detail = probe("kvm", "host")
    cache_path().parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path().with_suffix(".tmp")
    tmp.write_text(json.dumps({"host": key, "ok": ok, "detail": detail}))
    tmp.replace(cache_path())
    return ok, detail


def chosen_accel() -> tuple[str, ...]:
    """The -accel/-cpu options a VM launched now gets."""
    setting = accel_setting()
    return accel_args(setting, setting == "auto" and kvm_works()[0])


def run() -> list[Check]:
    """`runner doctor --cloud local`: tools, image, and whether KVM works here (a probe boot)."""
    out: list[Check] = []
    tools = ("qemu-system-x86_64", "qemu-img", "cloud-localds", "unshare")
    missing = [t for t in tools if not shutil.which(t)]
    out.append((not missing, "tools", f"missing: {', '.join(missing)}: apt-get install qemu-system-x86 qemu-utils "
                "cloud-image-utils util-linux" if missing else ", ".join(tools)))
    from runner.providers.local import VIRTIOFSD

    out.append((os.access(VIRTIOFSD, os.X_OK), "virtiofsd", VIRTIOFSD if os.access(VIRTIOFSD, os.X_OK)
                else f"{VIRTIOFSD} is missing: apt-get install qemu-system-common"))
    try:
        image = images.local_image(None)
        out.append((True, "image", str(image.disk)))
    except RunnerError as e:
        out.append((False, "image", str(e)))
    try:
        setting = accel_setting()
    except SpecError as e:
        return [*out, (False, "accel", str(e))]
    ok, detail = kvm_works(fresh=True)
    if ok:
        out.append((True, "kvm", f"KVM works here: VMs run under KVM (RUNNER_LOCAL_ACCEL={setting})"))
    elif setting.startswith("kvm"):
        out.append((False, "kvm", f"KVM does not work here ({detail}): unset RUNNER_LOCAL_ACCEL (auto) or set it to tcg"))
    else:
        out.append((True, "kvm", f"KVM does not work here ({detail}): VMs run under TCG, slower (RUNNER_LOCAL_ACCEL={setting})"))
    return out
