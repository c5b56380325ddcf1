"""Which image to boot: the Packer manifest that `make image` writes, so nobody pastes ids."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from runner import config
from runner.errors import NotFoundError


def images_dir() -> Path:
    """$RUNNER_IMAGES, or $RUNNER_HOME/images: where `make image` puts local images and the manifest."""
    return Path(os.environ.get("RUNNER_IMAGES") or config.home() / "images").expanduser()


def manifest_path() -> Path:
    return images_dir() / "manifest.json"


def _builds(builder_type: str) -> list[dict]:
    """The manifest's builds of one builder type, newest first."""
    try:
        builds = json.loads(manifest_path().read_text()).get("builds", [])
    except (OSError, ValueError):
        return []
    return sorted((b for b in builds if b.get("builder_type") == builder_type), key=lambda b: b.get("build_time", 0), reverse=True)


def from_manifest(builder_type: str, region: str | None = None) -> str | None:
    """The newest artifact id that `builder_type` (qemu, amazon-ebs, googlecompute) recorded."""
    for build in _builds(builder_type):
        artifact = str(build.get("artifact_id", ""))
        if builder_type == "amazon-ebs":  # "us-east-1:ami-0abc,eu-west-1:ami-0def"
            ids = dict(part.split(":", 1) for part in artifact.split(",") if ":" in part)
            artifact = ids.get(region or "", "")
        if artifact:
            return artifact
    return None


def gce_image_from_manifest() -> str | None:
    """The newest GCE image: projects/P/global/images/NAME with P the project that built it, or its bare name."""
    for build in _builds("googlecompute"):
        name = str(build.get("artifact_id", ""))
        data = build.get("custom_data")
        project = str(data.get("gcp_project") or "") if isinstance(data, dict) else ""
        if name:
            return f"projects/{project}/global/images/{name}" if project else name
    return None


@dataclass(frozen=True)
class LocalImage:
    """A baked local image: its disk, and the kernel and initrd it boots directly (it has no bootloader)."""

    disk: Path
    kernel: Path
    initrd: Path
    cmdline: str = "root=LABEL=root ro console=ttyS0 ds=nocloud"


def local_image(explicit: str | None) -> LocalImage:
    """The image to boot: --image PATH.qcow2 (kernel and initrd beside it), else the newest local build."""
    builds = [b for b in _builds("qemu") if Path(str(b.get("artifact_id", ""))).is_file()]
    if explicit:
        disk = Path(explicit).expanduser()
        data = next((b.get("custom_data", {}) for b in builds if Path(b["artifact_id"]) == disk), {})
    elif builds:
        disk, data = Path(builds[0]["artifact_id"]), builds[0].get("custom_data", {})
    else:
        raise NotFoundError(f"no local image in {manifest_path()}: build one with `make image` (CLOUD=local is the default)")
    if not disk.is_file():
        raise NotFoundError(f"local image {disk} does not exist: build it with `make image`, or pass --image PATH.qcow2")
    image = LocalImage(
        disk, Path(data.get("kernel") or disk.parent / "vmlinuz"), Path(data.get("initrd") or disk.parent / "initrd.img"),
        data.get("kernel_cmdline") or LocalImage.cmdline,
    )
    for boot_file in (image.kernel, image.initrd):
        if not boot_file.is_file():
            raise NotFoundError(f"{boot_file} is missing (the image boots its kernel directly): rebuild with `make image`")
    return image
