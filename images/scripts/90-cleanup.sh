#!/bin/bash
# Leave the image clean for its first real boot: drop the upload dirs, apt caches and lists, logs,
# ssh host keys and the machine id; reset cloud-init (clean --logs) so every VM built from the image
# runs its own user-data; trim free blocks so the image stays small.
# Env: OFFLINE_DIR, RUNNER_SCRIPTS (removed), PACKER_BUILDER_TYPE (set by Packer).
set -euo pipefail
OFFLINE_DIR=${OFFLINE_DIR:-/tmp/runner-offline}
RUNNER_SCRIPTS=${RUNNER_SCRIPTS:-/tmp/runner-scripts}

rm -rf "$OFFLINE_DIR" "$RUNNER_SCRIPTS" /tmp/runner-boot /root/.cache /var/cache/pip
apt-get clean
rm -rf /var/lib/apt/lists/*
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
find /var/log -type f -exec truncate -s 0 {} +
journalctl --rotate >/dev/null 2>&1 || true
journalctl --vacuum-time=1s >/dev/null 2>&1 || true
rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub   # regenerated per instance at first boot
truncate -s 0 /etc/machine-id
# the cloud builders stop the VM through the API: their ssh key can go now.
# qemu still needs its session for the shutdown command, which deletes the whole build user.
if [ "${PACKER_BUILDER_TYPE:-}" != qemu ]; then
  rm -f /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys
fi
cloud-init clean --logs
sync
fstrim -av || true

# self-check
test ! -e /var/lib/cloud/instance
test ! -e "$OFFLINE_DIR"
test ! -s /etc/machine-id
df -h /
echo "90-cleanup: ok"
