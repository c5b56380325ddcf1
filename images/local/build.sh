#!/bin/bash
# Build the local runner image, offline:
#   1 base       images/local/build-base.sh, only if the base image is missing (REBUILD_BASE=1 forces it)
#   2 downloads  wheels and .debs fetched on the host (images/local/fetch-offline.sh)
#   3 packer     packer build -only=qemu.runner in a network namespace with loopback only; the guest
#                runs the same provisioning scripts as the cloud builds, from the uploaded files
#   4 publish    $RUNNER_HOME/images/local/runner-<ts>.qcow2 (+ .vmlinuz, .initrd.img; vmlinuz and
#                initrd.img link to the newest) and its entry in $RUNNER_HOME/images/manifest.json
# Usage: images/local/build.sh [extra packer -var arguments...]
# Env: RUNNER_HOME (default ~/.runner), PACKER (default packer), ACCEL=tcg|kvm (default tcg),
#      REBUILD_BASE=1, KEEP_WORK=1 (keep the work dir after a successful build).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IMAGES=$(dirname "$HERE")
RI=${RUNNER_IMAGES:-${RUNNER_HOME:-$HOME/.runner}/images}   # where images and the manifest live
LOCAL=$RI/local
BASE=$LOCAL/base
MANIFEST=$RI/manifest.json
PACKER=${PACKER:-packer}
ACCEL=${ACCEL:-tcg}
NAME=runner-$(date -u +%Y%m%d%H%M%S)
WORK=$RI/work/$NAME

for t in "$PACKER" qemu-system-x86_64 qemu-img ssh-keygen unshare ip python3; do
  command -v "$t" >/dev/null || { echo "build.sh: missing $t (see images/README.md, host packages)" >&2; exit 1; }
done
command -v xorriso >/dev/null || command -v genisoimage >/dev/null || command -v mkisofs >/dev/null ||
  { echo "build.sh: packer's cd_files needs xorriso or genisoimage" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then NETNS=(unshare -n); else NETNS=(unshare -r -n); fi

declare -A TOOK
T_ALL=$(date +%s)
phase() { echo; echo "==== [$(date -u +%H:%M:%S)] $*"; T_PHASE=$(date +%s); }
took() { TOOK[$1]=$(($(date +%s) - T_PHASE)); echo "==== $1: ${TOOK[$1]} s"; }

mkdir -p "$LOCAL" "$WORK"
echo "building $NAME (work dir $WORK)"

phase "1/4 base image"
if [ "${REBUILD_BASE:-0}" = 1 ] || [ ! -s "$BASE/base.qcow2" ] || [ ! -s "$BASE/dpkg-status" ]; then
  "$HERE/build-base.sh" "$BASE"
else
  echo "using $BASE (REBUILD_BASE=1 to rebuild)"
fi
took base

phase "2/4 downloads on the host (wheels, .debs)"
"$HERE/fetch-offline.sh" "$BASE" "$WORK/offline"
took downloads

phase "3/4 packer build -only=qemu.runner (no network: unshare -n, restricted user net)"
mkdir -p "$WORK/cidata" "$WORK/tmp"
ssh-keygen -q -t ed25519 -N '' -C "packer-$NAME" -f "$WORK/id_ed25519"
cat > "$WORK/cidata/user-data" <<USERDATA
#cloud-config
users:
  - name: packer
    sudo: ALL=(ALL) NOPASSWD:ALL
    shell: /bin/bash
    lock_passwd: true
    ssh_authorized_keys:
      - $(cat "$WORK/id_ed25519.pub")
USERDATA
printf 'instance-id: %s\nlocal-hostname: runner\n' "packer-$NAME" > "$WORK/cidata/meta-data"
# TMPDIR: packer 1.6.6 leaves its cd_files staging dirs there; PACKER_CACHE_DIR: else ./packer_cache
export CHECKPOINT_DISABLE=1 PACKER_NO_COLOR=1 TMPDIR=$WORK/tmp PACKER_CACHE_DIR=$WORK/packer_cache
export PACKER_LOG=1 PACKER_LOG_PATH=$WORK/packer.log
"${NETNS[@]}" sh -c 'ip link set lo up && exec "$@"' sh \
  "$PACKER" build -timestamp-ui -only=qemu.runner \
    -var "image_name=$NAME" \
    -var "manifest_path=$MANIFEST" \
    -var "qemu_base_dir=$BASE" \
    -var "qemu_work_dir=$WORK" \
    -var "qemu_output_dir=$WORK/output" \
    -var "offline_dir=$WORK/offline" \
    -var "qemu_accelerator=$ACCEL" \
    -var "qemu_cpu=$([ "$ACCEL" = kvm ] && echo host || echo max)" \
    "$@" "$IMAGES"
took packer

phase "4/4 publish"
QCOW2=$LOCAL/$NAME.qcow2
KERNEL=$LOCAL/$NAME.vmlinuz
INITRD=$LOCAL/$NAME.initrd.img
mv "$WORK/output/$NAME.qcow2" "$QCOW2"
mv "$WORK/output/vmlinuz" "$KERNEL"
mv "$WORK/output/initrd.img" "$INITRD"
ln -sfn "$NAME.vmlinuz" "$LOCAL/vmlinuz"
ln -sfn "$NAME.initrd.img" "$LOCAL/initrd.img"
# the qemu builder records artifact_id "VM" and the work-dir paths: point the entry at the published files
python3 - "$MANIFEST" "$QCOW2" "$KERNEL" "$INITRD" <<'PY'
import json, os, sys
path, qcow2, kernel, initrd = sys.argv[1:5]
with open(path) as f:
    m = json.load(f)
for b in reversed(m["builds"]):
    if b.get("packer_run_uuid") == m.get("last_run_uuid") and b.get("builder_type") == "qemu":
        b["artifact_id"] = qcow2
        b["files"] = [{"name": p, "size": os.path.getsize(p)} for p in (qcow2, kernel, initrd)]
        b["custom_data"] = {**(b.get("custom_data") or {}), "kernel": kernel, "initrd": initrd}
        break
else:
    sys.exit(f"no qemu build of the last run in {path}")
with open(path + ".tmp", "w") as f:
    json.dump(m, f, indent=2)
os.replace(path + ".tmp", path)
PY
qemu-img check -q "$QCOW2"
took publish

if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
echo
echo "image:    $QCOW2 ($(du -h "$QCOW2" | cut -f1) on disk, $(qemu-img info --output=json "$QCOW2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"] >> 30)') GiB virtual)"
echo "kernel:   $KERNEL"
echo "initrd:   $INITRD"
echo "cmdline:  $(cat "$BASE/cmdline")"
echo "manifest: $MANIFEST"
echo "timings:  base ${TOOK[base]} s, downloads ${TOOK[downloads]} s, packer ${TOOK[packer]} s, publish ${TOOK[publish]} s, total $(($(date +%s) - T_ALL)) s"
