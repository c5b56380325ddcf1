"""Which image to boot: the Packer manifest that `make image` writes, so nobody pastes ids."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from runner import config
from runner.errors import NotFoundError, RunnerError

# Files under images/ that do not shape the local image: docs, CI checks, the boot test, the dispatcher
NOT_RECIPE = frozenset({"README.md", "check.sh", "build.sh", "local/smoke-test.sh"})


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
        raise NotFoundError(f"no local image in {manifest_path()}: build one with `make image CLOUD=local`")
    if not disk.is_file():
        raise NotFoundError(f"local image {disk} does not exist: build it with `make image CLOUD=local`, or pass --image PATH.qcow2")
    image = LocalImage(
        disk, Path(data.get("kernel") or disk.parent / "vmlinuz"), Path(data.get("initrd") or disk.parent / "initrd.img"),
        data.get("kernel_cmdline") or LocalImage.cmdline,
    )
    for boot_file in (image.kernel, image.initrd):
        if not boot_file.is_file():
            raise NotFoundError(f"{boot_file} is missing (the image boots its kernel directly): rebuild with `make image CLOUD=local FORCE=1`")
    return image


def recipe_digest(recipe: Path) -> str:
    """sha256 over the names and bytes of the files under `recipe` (images/) that shape the local image."""
    h = hashlib.sha256()
    for f in sorted(p for p in recipe.rglob("*") if p.is_file()):
        rel = f.relative_to(recipe).as_posix()
        *dirs, name = Path(rel).parts
        if rel in NOT_RECIPE or name.startswith(".") or any(_not_recipe_dir(d) for d in dirs):
            continue
        h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _not_recipe_dir(name: str) -> bool:
    """Hidden folders, caches and what a build leaves under images/ (work/, output*/)."""
    return name.startswith((".", "output")) or name in ("work", "__pycache__")


def stamp_path() -> Path:
    """Where the digest of the recipe the newest local image was built from is kept."""
    return images_dir() / "local" / "recipe.sha256"


def up_to_date(digest: str) -> LocalImage | None:
    """The newest local image when it was built from recipe `digest`, else None."""
    try:
        if stamp_path().read_text().strip() != digest:
            return None
        return local_image(None)
    except (OSError, NotFoundError):
        return None


def _image_files(disk: Path) -> list[Path]:
    """The qcow2 of a local build and the kernel and initrd published beside it."""
    stem = disk.name.removesuffix(".qcow2")
    return [disk, disk.with_name(f"{stem}.vmlinuz"), disk.with_name(f"{stem}.initrd.img")]


def _backing_file(qcow2: Path) -> str:
    """The backing file a qcow2 header names, or ''."""
    try:
        with open(qcow2, "rb") as f:
            head = f.read(20)
            if len(head) < 20 or head[:4] != b"QFI\xfb":
                return ""
            offset, size = int.from_bytes(head[8:16], "big"), int.from_bytes(head[16:20], "big")
            if not offset or not 0 < size <= 4096:
                return ""
            f.seek(offset)
            return f.read(size).decode(errors="replace")
    except OSError:
        return ""


def _drive_files(arg: str) -> list[str]:
    """The file= paths of one QEMU option value (commas in a path are doubled)."""
    found = []
    for field in arg.replace(",,", "\0").split(","):
        if field.startswith("file="):
            found.append(field[5:].replace("\0", ","))
    return found


def in_use(proc: Path = Path("/proc")) -> set[Path]:
    """Files a running process names on its command line, and the backing files of the qcow2 disks it names."""
    used: set[Path] = set()
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        for arg in args:
            for name in [arg, *_drive_files(arg)]:
                if name.startswith("/"):
                    used.add(Path(name))
                    if name.endswith(".qcow2") and (backing := _backing_file(Path(name))):
                        used.add((Path(name).parent / backing) if not backing.startswith("/") else Path(backing))
    return used


def prune(keep: int = 1, proc: Path = Path("/proc")) -> list[Path]:
    """Delete local images but the newest `keep` and any a running VM uses; their manifest entries go too."""
    local = images_dir() / "local"
    disks = sorted(local.glob("runner-*.qcow2"), key=lambda p: p.name, reverse=True)  # runner-<UTC timestamp>
    used = {p.resolve() for p in in_use(proc) if p.exists()}
    gone = []
    for disk in disks[keep:]:
        files = _image_files(disk)
        if any(f.resolve() in used for f in files if f.exists()):
            continue
        for f in files:
            f.unlink(missing_ok=True)
        gone.append(disk)
    if gone:
        _drop_from_manifest({str(d) for d in gone})
    return gone


def _drop_from_manifest(disks: set[str]) -> None:
    path = manifest_path()
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    builds = manifest.get("builds", [])
    manifest["builds"] = [b for b in builds if not (b.get("builder_type") == "qemu" and b.get("artifact_id") in disks)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    """images/build.sh's steps: `digest RECIPE`, `check DIGEST` (exit 0: up to date), `built DIGEST` (stamp, prune)."""
    if len(argv) != 2 or argv[0] not in ("digest", "check", "built"):
        raise RunnerError(f"usage: python3 -m runner.images digest IMAGES_DIR | check DIGEST | built DIGEST (got {argv})")
    command, value = argv
    if command == "digest":
        print(recipe_digest(Path(value)))
        return 0
    if command == "check":
        image = up_to_date(value)
        if image is None:
            return 1
        print(f"image up to date (recipe {value[:12]}): {image.disk}")
        return 0
    local_image(None)  # the build published an image: fail loudly if it cannot be found
    stamp_path().write_text(value + "\n")
    for disk in prune():
        print(f"pruned the older image {disk}")
    print(f"recipe {value[:12]} stamped in {stamp_path()}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RunnerError as e:
        print(f"runner.images: {e}", file=sys.stderr)
        sys.exit(2)
