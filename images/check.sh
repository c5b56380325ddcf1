#!/bin/bash
# CI check of images/, offline and without credentials:
#   packer fmt -check  every template (images/*.pkr.hcl and images/plugins/*.pkr.hcl)
#   packer validate    the full validate of all three sources (amazon-ebs, googlecompute, qemu),
#                      with dummy values for the paths and the GCP project; no -syntax-only needed
#   ShellCheck         every images/**/*.sh
# Written for Debian's packer 1.6.6 (it bundles the builders). A newer packer needs its plugins
# installed first (packer init images/plugins). Env: PACKER (default packer).
set -euo pipefail
IMAGES=$(cd "$(dirname "$0")" && pwd)
PACKER=${PACKER:-packer}
export CHECKPOINT_DISABLE=1 PACKER_NO_COLOR=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# no network at all for packer when the host allows a private namespace (root, or user namespaces)
NETNS=()
if unshare -n true 2>/dev/null; then NETNS=(unshare -n); elif unshare -r -n true 2>/dev/null; then NETNS=(unshare -r -n); fi
fail=0

echo "== packer fmt -check ($("$PACKER" version | head -n 1))"
for d in "$IMAGES" "$IMAGES/plugins"; do
  "$PACKER" fmt -check -diff "$d" || { echo "packer fmt: $d needs 'packer fmt'" >&2; fail=1; }
done

echo "== packer validate (all sources, dummy values)"
mkdir -p "$tmp/base" "$tmp/work/cidata" "$tmp/offline"
touch "$tmp/base/base.qcow2" "$tmp/base/vmlinuz" "$tmp/base/initrd.img" "$tmp/work/cidata/user-data" "$tmp/work/cidata/meta-data"
ssh-keygen -q -t ed25519 -N '' -f "$tmp/work/id_ed25519"
if (cd "$tmp" && "${NETNS[@]}" "$PACKER" validate \
      -var gcp_project_id=ci-dummy-project \
      -var qemu_base_dir="$tmp/base" -var qemu_work_dir="$tmp/work" \
      -var qemu_output_dir="$tmp/output" -var offline_dir="$tmp/offline" \
      -var manifest_path="$tmp/manifest.json" "$IMAGES") > "$tmp/validate.log" 2>&1; then
  echo "packer validate: ok (amazon-ebs.runner, googlecompute.runner, qemu.runner)"
else
  cat "$tmp/validate.log" >&2; fail=1
fi

echo "== shellcheck"
mapfile -d '' scripts < <(find "$IMAGES" -name '*.sh' -print0 | sort -z)
if shellcheck "${scripts[@]}"; then echo "shellcheck: ok (${#scripts[@]} scripts)"; else fail=1; fi

[ "$fail" = 0 ] && echo "images/check.sh: all ok"
exit "$fail"
