#!/bin/bash
# Build the runner image for one target and record it in $RUNNER_HOME/images/manifest.json
# (Packer's manifest post-processor: the launcher reads the artifact id from there).
# Usage: images/build.sh local|aws|gcp [packer -var k=v ...]     (or CLOUD=local|aws|gcp images/build.sh)
#   local  offline qcow2 for the local QEMU backend (images/local/build.sh)
#   aws    amazon-ebs.runner: an AMI in $AWS_REGION (default us-east-1); needs AWS credentials
#   gcp    googlecompute.runner: an image in family "runner" of $GCP_PROJECT; needs gcloud auth
# The cloud builds start a VM in that cloud and install from the network.
# Env: PACKER, RUNNER_HOME, RUNNER_IMAGES, PYTHON, FORCE=1 (local: build even when the recipe is unchanged).
set -euo pipefail
IMAGES=$(cd "$(dirname "$0")" && pwd)
CLOUD=${CLOUD:-}
case ${1:-} in local|aws|gcp) CLOUD=$1; shift ;; CLOUD=*) CLOUD=${1#CLOUD=}; shift ;; esac
PACKER=${PACKER:-packer}
MANIFEST=${RUNNER_IMAGES:-${RUNNER_HOME:-$HOME/.runner}/images}/manifest.json
export CHECKPOINT_DISABLE=1

# The local image is built once per recipe: the digest of images/ (runner/images.py) is stamped after a
# successful build, a build with the same digest is skipped (FORCE=1 builds anyway), and older images are pruned.
local_image() {
  local images=(env "PYTHONPATH=$(dirname "$IMAGES")${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" -m runner.images)
  local digest
  # One build at a time: a second caller (make test's early build, then the VM tests' own) waits, then finds it done.
  mkdir -p "$(dirname "$MANIFEST")"
  exec 9> "$(dirname "$MANIFEST")/.local-build.lock"
  flock 9
  digest=$("${images[@]}" digest "$IMAGES")
  if [ "${FORCE:-0}" != 1 ] && "${images[@]}" check "$digest"; then return 0; fi
  "$IMAGES/local/build.sh" "$@"
  "${images[@]}" built "$digest"
}

case $CLOUD in
  local) local_image "$@"; exit ;;
  aws) ONLY=amazon-ebs.runner; VARS=(-var "aws_region=${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}") ;;
  gcp)
    ONLY=googlecompute.runner
    [ -n "${GCP_PROJECT:-}" ] || { echo "images/build.sh gcp: set GCP_PROJECT (the project that owns the image)" >&2; exit 2; }
    VARS=(-var "gcp_project_id=$GCP_PROJECT") ;;
  *) echo "usage: images/build.sh local|aws|gcp [packer -var k=v ...]" >&2; exit 2 ;;
esac

# Packer >= 1.10 no longer bundles the builders: install them (1.6.6 bundles them and has no init)
version=$("$PACKER" version | head -n 1 | sed 's/^Packer v//')
if [ "$(printf '%s\n' 1.10.0 "$version" | sort -V | head -n 1)" = 1.10.0 ]; then
  "$PACKER" init "$IMAGES/plugins"
fi
mkdir -p "$(dirname "$MANIFEST")"
T0=$(date +%s)
"$PACKER" build -timestamp-ui -only="$ONLY" -var "manifest_path=$MANIFEST" "${VARS[@]}" "$@" "$IMAGES"
echo "packer build $ONLY: $(($(date +%s) - T0)) s; artifact recorded in $MANIFEST"
