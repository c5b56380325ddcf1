#!/bin/bash
# Build the local base image offline-capable: Debian bookworm + cloud kernel + cloud-init (NoCloud only)
# + sshd, with mmdebstrap -> directory -> mkfs.ext4 -d -> qcow2 (no loop mounts, no bootloader).
# Usage: images/local/build-base.sh [OUT_DIR]   (root; needs mmdebstrap, e2fsprogs, qemu-utils)
# OUT_DIR (default ${RUNNER_IMAGES:-${RUNNER_HOME:-$HOME/.runner}/images}/local/base) receives:
#   base.qcow2    whole-disk ext4 labelled "root" (no partition table): root=LABEL=root
#   vmlinuz, initrd.img, cmdline   for QEMU direct kernel boot (-kernel/-initrd/-append)
#   dpkg-status   the image's installed package set, so the host can fetch exactly the missing .debs
# cloud-init: NoCloud only, locale module off (no "locales" package; LANG=C.UTF-8), ed25519/ecdsa keys.
# Network: only mmdebstrap's apt talks to the Debian mirror. Env: MIRROR, SECURITY_MIRROR, SIZE.
# shellcheck disable=SC2016  # "$1" in the hooks is expanded by mmdebstrap, not by this shell
set -euo pipefail

OUT=${1:-${RUNNER_IMAGES:-${RUNNER_HOME:-$HOME/.runner}/images}/local/base}
SIZE=${SIZE:-4G}
KERNEL_PKG=${KERNEL_PKG:-linux-image-cloud-amd64}   # has virtiofs; no 9p
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CMDLINE="root=LABEL=root ro console=ttyS0 ds=nocloud"

[ "$(id -u)" = 0 ] || { echo "build-base.sh: must run as root (mmdebstrap --mode=root, file ownership)" >&2; exit 1; }
for t in mmdebstrap mkfs.ext4 qemu-img; do
  command -v "$t" >/dev/null || { echo "build-base.sh: missing $t (apt-get install mmdebstrap e2fsprogs qemu-utils)" >&2; exit 1; }
done

mkdir -p "$(dirname "$OUT")"
STAGE=$(mktemp -d "$OUT.tmp.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
T0=$(date +%s)
echo "== base: mmdebstrap bookworm ($KERNEL_PKG) -> $STAGE/rootfs"

PKGS=$KERNEL_PKG,initramfs-tools,systemd-sysv,udev,dbus,kmod,cloud-init,openssh-server,python3,sudo
PKGS=$PKGS,iproute2,netbase,ca-certificates,e2fsprogs,less,procps

mmdebstrap --variant=minbase --mode=root --skip=output/dev \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --include="$PKGS" \
  --customize-hook='echo runner > "$1/etc/hostname"' \
  --customize-hook='printf "127.0.0.1 localhost\n127.0.1.1 runner\n" > "$1/etc/hosts"' \
  --customize-hook='mkdir -p "$1/mnt/runner-store"' \
  --customize-hook='printf "%s\n" "LABEL=root / ext4 defaults,errors=remount-ro 0 1" "runner-store /mnt/runner-store virtiofs nofail,x-systemd.device-timeout=5s 0 0" > "$1/etc/fstab"' \
  --customize-hook='mkdir -p "$1/etc/cloud/cloud.cfg.d" && printf "datasource_list: [ NoCloud, None ]\n" > "$1/etc/cloud/cloud.cfg.d/90-runner-datasource.cfg"' \
  --customize-hook='printf "ssh_genkeytypes: [ed25519, ecdsa]\n" > "$1/etc/cloud/cloud.cfg.d/91-runner-ssh-keys.cfg"' \
  --customize-hook='printf "locale: false\n" > "$1/etc/cloud/cloud.cfg.d/92-runner-locale.cfg" && echo LANG=C.UTF-8 > "$1/etc/default/locale"' \
  --customize-hook='printf "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n" > "$1/etc/systemd/network/80-dhcp.network"' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd.service' \
  --customize-hook='mkdir -p "$1/etc/systemd/system/systemd-networkd-wait-online.service.d" && printf "[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=10\n" > "$1/etc/systemd/system/systemd-networkd-wait-online.service.d/override.conf"' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*_key* && truncate -s 0 "$1/etc/machine-id"' \
  --customize-hook='cp -L "$1/vmlinuz" "$1/initrd.img" "$1/var/lib/dpkg/status" "$1/.."/' \
  bookworm "$STAGE/rootfs" \
  "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY_MIRROR bookworm-security main"
T1=$(date +%s)

echo "== base: mkfs.ext4 -d ($SIZE) -> qcow2"
mv "$STAGE/status" "$STAGE/dpkg-status"
echo "$CMDLINE" > "$STAGE/cmdline"
mkfs.ext4 -q -L root -d "$STAGE/rootfs" "$STAGE/root.raw" "$SIZE"
qemu-img convert -f raw -O qcow2 "$STAGE/root.raw" "$STAGE/base.qcow2"
du -sh "$STAGE/rootfs" | sed 's/^/rootfs: /'
rm -rf "$STAGE/rootfs" "$STAGE/root.raw"
T2=$(date +%s)

rm -rf "$OUT"
mv "$STAGE" "$OUT"
trap - EXIT
chmod 0755 "$OUT"
ls -lh "$OUT"
echo "base: mmdebstrap $((T1 - T0)) s, mkfs+convert $((T2 - T1)) s, total $((T2 - T0)) s -> $OUT"
# self-check: the image, kernel and initrd are there and the qcow2 is sane
qemu-img check -q "$OUT/base.qcow2"
test -s "$OUT/vmlinuz" && test -s "$OUT/initrd.img" && test -s "$OUT/dpkg-status"
