"""Which image to boot: the Packer manifest that `make image` writes, so nobody pastes ids."""

from __future__ import annotations

import json
import os
from pathlib import Path

from runner import config
from runner.errors import NotFoundError


def images_dir() -> Path:
    """$RUNNER_IMAGES, or $RUNNER_HOME/images: where `make image` puts local images and the manifest."""
    return Path(os.environ.get("RUNNER_IMAGES") or config.home() / "images").expanduser()


def manifest_path() -> Path:
    return images_dir() / "manifest.json"


def from_manifest(builder_type: str, region: str | None = None) -> str | None:
    """The newest artifact id that `builder_type` (qemu, amazon-ebs, googlecompute) recorded."""
    try:
        builds = json.loads(manifest_path().read_text()).get("builds", [])
    except (OSError, ValueError):
        return None
    for build in sorted(builds, key=lambda b: b.get("build_time", 0), reverse=True):
        if build.get("builder_type") != builder_type:
            continue
        artifact = str(build.get("artifact_id", ""))
        if builder_type == "amazon-ebs":  # "us-east-1:ami-0abc,eu-west-1:ami-0def"
            ids = dict(part.split(":", 1) for part in artifact.split(",") if ":" in part)
            artifact = ids.get(region or "", "")
        if artifact:
            return artifact
    return None


def local_image(explicit: str | None) -> Path:
    """The qcow2 to boot: --image, else the newest local build in the manifest."""
    found = explicit or from_manifest("qemu")
    if not found:
        raise NotFoundError(f"no local image in {manifest_path()}: build one with `make image` (CLOUD=local is the default)")
    path = Path(found).expanduser()
    if not path.is_file():
        raise NotFoundError(f"local image {path} does not exist: build it with `make image`, or pass --image PATH.qcow2")
    for boot_file in ("vmlinuz", "initrd.img"):
        if not (path.parent / boot_file).is_file():
            raise NotFoundError(f"{path.parent / boot_file} is missing (the image boots its kernel directly): rebuild with `make image`")
    return path
