#!/bin/bash
# Local (qemu) images only: copy the image's own kernel and initrd to /tmp/runner-boot so Packer can
# download them next to the qcow2 (the local VM boots them directly: -kernel/-initrd/-append).
# Env: none.
set -euo pipefail
out=/tmp/runner-boot
mkdir -p "$out"
cp -L /vmlinuz "$out/vmlinuz"
cp -L /initrd.img "$out/initrd.img"
chmod 0644 "$out"/*
# self-check: they match the running kernel
[ "$(readlink -f /vmlinuz)" = "/boot/vmlinuz-$(uname -r)" ] || echo "note: /vmlinuz is not the running kernel ($(uname -r))"
ls -l "$out"
echo "80-export-boot-files: ok"
