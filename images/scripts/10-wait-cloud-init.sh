#!/bin/bash
# Wait until cloud-init has finished the builder VM's first boot, so that nothing else holds the
# apt/dpkg lock or rewrites files while the next scripts provision the image.
# Env: none. Runs as root on every builder (qemu, amazon-ebs, googlecompute).
set -euo pipefail

if command -v cloud-init >/dev/null; then
  echo "waiting for cloud-init to finish its first boot"
  # 'status --wait' exits non-zero when a module reported an error: report it, do not fail on it
  cloud-init status --wait --long || echo "cloud-init reported a problem (see above); continuing"
else
  echo "cloud-init is not installed yet (GCE images use the guest agent); nothing to wait for"
fi

# self-check: no package manager is running any more
if pgrep -x 'apt-get|apt|dpkg|unattended-upgr' >/dev/null; then
  echo "a package manager is still running:" >&2; pgrep -a -x 'apt-get|apt|dpkg|unattended-upgr' >&2
fi
echo "10-wait-cloud-init: ok"
