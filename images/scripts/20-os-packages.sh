#!/bin/bash
# Install the Debian packages the runner needs: cloud-init (runs the startup script), jq, coreutils
# (timeout), python3-venv (for /opt/runner/venv), ca-certificates; curl + unzip on cloud builds.
# Env: OFFLINE_DIR (default /tmp/runner-offline): if $OFFLINE_DIR/debs exists, install only the
#      .debs found there (the guest has no network; the host fetched them with apt-get download),
#      else apt-get from the network.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
OFFLINE_DIR=${OFFLINE_DIR:-/tmp/runner-offline}
APT=(apt-get -y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold --no-install-recommends)

if [ -d "$OFFLINE_DIR/debs" ]; then
  shopt -s nullglob
  debs=("$OFFLINE_DIR"/debs/*.deb)
  echo "offline: installing ${#debs[@]} local .deb file(s) from $OFFLINE_DIR/debs"
  if [ "${#debs[@]}" -gt 0 ]; then "${APT[@]}" install "${debs[@]}"; fi
else
  echo "online: apt-get from the configured mirrors"
  "${APT[@]}" update
  "${APT[@]}" install cloud-init jq coreutils python3-venv ca-certificates curl unzip
fi

# self-check
cloud-init --version
jq --version
timeout --version | head -n 1
python3 -c 'import ensurepip, venv' && echo "python3-venv: ok"
echo "20-os-packages: ok"
