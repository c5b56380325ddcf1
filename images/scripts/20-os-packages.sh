#!/bin/bash
# Install the Debian packages the runner needs: cloud-init (runs the startup script), jq, coreutils
# (timeout), python3-venv (for /opt/runner/venv), ca-certificates, mdadm (the startup script stripes
# instance-store drives into one RAID0 scratch array); curl + unzip on cloud builds.
# mdadm is installed quiet and inert: no debconf questions, no initramfs rebuild (no root or boot array
# here), no monitor daemon, no periodic checks, no mail.
# Env: OFFLINE_DIR (default /tmp/runner-offline): if $OFFLINE_DIR/debs exists, install only the
#      .debs found there (the guest has no network; the host fetched them with apt-get download),
#      else apt-get from the network.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
OFFLINE_DIR=${OFFLINE_DIR:-/tmp/runner-offline}
APT=(apt-get -y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold --no-install-recommends)

debconf-set-selections <<'PRESEED'
mdadm mdadm/autocheck boolean false
mdadm mdadm/autoscan boolean false
mdadm mdadm/start_daemon boolean false
PRESEED
# mdadm's postinst runs update-initramfs -u: turned off while the packages go in, restored afterwards
INITRAMFS_CONF=/etc/initramfs-tools/update-initramfs.conf
if [ -f "$INITRAMFS_CONF" ]; then
  cp -p "$INITRAMFS_CONF" "$INITRAMFS_CONF.runner"
  trap 'mv -f "$INITRAMFS_CONF.runner" "$INITRAMFS_CONF"' EXIT
  sed -i 's/^update_initramfs=.*/update_initramfs=no/' "$INITRAMFS_CONF"
fi

if [ -d "$OFFLINE_DIR/debs" ]; then
  shopt -s nullglob
  debs=("$OFFLINE_DIR"/debs/*.deb)
  echo "offline: installing ${#debs[@]} local .deb file(s) from $OFFLINE_DIR/debs"
  if [ "${#debs[@]}" -gt 0 ]; then "${APT[@]}" install "${debs[@]}"; fi
else
  echo "online: apt-get from the configured mirrors"
  "${APT[@]}" update
  "${APT[@]}" install cloud-init jq coreutils python3-venv ca-certificates mdadm curl unzip
fi
# a scratch array lives as long as its VM: nothing watches, checks or mails about it
systemctl mask mdmonitor.service mdmonitor-oneshot.timer mdcheck_start.timer mdcheck_continue.timer

# self-check
cloud-init --version
jq --version
timeout --version | head -n 1
python3 -c 'import ensurepip, venv' && echo "python3-venv: ok"
mdadm --version
[ "$(systemctl is-enabled mdmonitor.service 2>/dev/null)" = masked ] || { echo "mdmonitor.service is not masked" >&2; exit 1; }
echo "20-os-packages: ok"
