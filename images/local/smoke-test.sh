#!/bin/bash
# Boot a local runner image once, the way the local backend will: QEMU (TCG by default, no NIC),
# direct kernel boot, a NoCloud seed whose #!/bin/bash user-data checks the baked tools and writes
# a file into the runner-store virtiofs share (fstab: /mnt/runner-store), then powers off.
# Passes when that file appears on the host and QEMU exits by itself. Prints the timings
# QEMU start -> user-data start and user-data end -> QEMU exit.
# Usage: images/local/smoke-test.sh [IMAGE.qcow2]   (default: the newest in $RUNNER_HOME/images/local)
# Env: RUNNER_HOME, ACCEL=tcg|kvm, QEMU_CPU (default max / host), TIMEOUT (s, default 900), KEEP=1.
# Needs: qemu-system-x86_64, qemu-img, cloud-localds, /usr/lib/qemu/virtiofsd (qemu-system-common).
set -euo pipefail
LOCAL=${RUNNER_IMAGES:-${RUNNER_HOME:-$HOME/.runner}/images}/local
IMG=${1:-$(find "$LOCAL" -maxdepth 1 -name 'runner-*.qcow2' | sort | tail -n 1)}
[ -s "$IMG" ] || { echo "smoke-test.sh: no image (build one: images/build.sh local)" >&2; exit 1; }
IMG=$(realpath "$IMG")
KERNEL=${IMG%.qcow2}.vmlinuz; INITRD=${IMG%.qcow2}.initrd.img
[ -s "$KERNEL" ] || KERNEL=$(dirname "$IMG")/vmlinuz
[ -s "$INITRD" ] || INITRD=$(dirname "$IMG")/initrd.img
VIRTIOFSD=${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}
ACCEL=${ACCEL:-tcg}
MEM=2048
W=$(mktemp -d "${TMPDIR:-/tmp}/runner-smoke.XXXXXX")
cleanup() {
  if [ -n "${VFSD:-}" ]; then kill "$VFSD" 2>/dev/null || true; fi   # it exits with QEMU anyway
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
mkdir -p "$W/store"

cat > "$W/user-data" <<'USERDATA'
#!/bin/bash
# smoke test: the baked tools work and the runner-store share is writable; then power off
set -u
con() { echo "$*" | tee /dev/console; }
con "USERDATA-START uptime=$(cut -d' ' -f1 /proc/uptime)"
out=/tmp/smoke.txt; ok=1
check() { if r=$("$@" 2>&1); then echo "ok   $*: $(echo "$r" | head -n 1)"; else echo "FAIL $*: $r"; ok=0; fi >> "$out"; }
check python3 -c 'import sys, duckdb, pyarrow, polars; assert sys.prefix == "/opt/runner/venv"; print(duckdb.__version__, pyarrow.__version__, polars.__version__)'
check python3 -c 'import duckdb; print(duckdb.connect().execute("select sum(i) from range(1000) t(i)").fetchone()[0])'
check s5cmd version
check aws --version
check gsutil version
check jq --version
check timeout --version
check /usr/bin/python3 -c 'import cloudinit'
check ray --version
check python3 -c 'import ray; print(ray.__version__)'
check mdadm --version
mountpoint -q /mnt/runner-store || mount /mnt/runner-store
if [ "$ok" = 1 ]; then echo "ALL-OK" >> "$out"; fi
cat "$out" > /dev/console
{ cat "$out"; echo "uptime $(cut -d' ' -f1 /proc/uptime)"; } > /mnt/runner-store/smoke.txt && sync
con "USERDATA-END uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff
USERDATA
printf 'instance-id: smoke-%s\nlocal-hostname: runner-smoke\n' "$(date +%s)" > "$W/meta-data"
cloud-localds "$W/seed.iso" "$W/user-data" "$W/meta-data"
qemu-img create -q -f qcow2 -b "$IMG" -F qcow2 "$W/disk.qcow2"

"$VIRTIOFSD" --socket-path="$W/vfsd.sock" -o source="$W/store" -o cache=none > "$W/virtiofsd.log" 2>&1 &
VFSD=$!
for _ in $(seq 50); do [ -S "$W/vfsd.sock" ] && break; sleep 0.1; done
case $ACCEL in kvm) ACC=(-accel kvm -cpu "${QEMU_CPU:-host}") ;; *) ACC=(-accel tcg -cpu "${QEMU_CPU:-max}") ;; esac
if [ "$(id -u)" = 0 ]; then NETNS=(unshare -n); else NETNS=(unshare -r -n); fi

echo "booting $IMG ($ACCEL, -nic none, virtiofs tag runner-store -> $W/store)"
us() { echo "${EPOCHREALTIME/./}"; }
T0=$(us)
set +e
"${NETNS[@]}" timeout "${TIMEOUT:-900}" qemu-system-x86_64 "${ACC[@]}" -m "$MEM" -smp 2 -no-reboot \
  -nic none -display none -monitor none -serial stdio \
  -kernel "$KERNEL" -initrd "$INITRD" -append "$(cat "$LOCAL/base/cmdline" 2>/dev/null || echo 'root=LABEL=root ro console=ttyS0 ds=nocloud')" \
  -drive file="$W/disk.qcow2",if=virtio,format=qcow2,discard=unmap \
  -drive file="$W/seed.iso",if=virtio,format=raw,readonly=on \
  -object memory-backend-memfd,id=mem,size=${MEM}M,share=on -numa node,memdev=mem \
  -chardev socket,id=vfs,path="$W/vfsd.sock" -device vhost-user-fs-pci,chardev=vfs,tag=runner-store \
  </dev/null 2>&1 | while IFS= read -r line; do
    printf '[%8d ms] %s\n' "$((($(us) - T0) / 1000))" "${line%$'\r'}"
  done > "$W/serial.log"
rc=${PIPESTATUS[0]}
set -e
T_EXIT=$((($(us) - T0) / 1000))
ms_of() { grep -m1 "$1" "$W/serial.log" | sed -E 's/^\[ *([0-9]+) ms\].*/\1/'; }
START=$(ms_of USERDATA-START); END=$(ms_of USERDATA-END)
grep -E 'USERDATA|^\[ *[0-9]+ ms\] (ok|FAIL|ALL-OK)' "$W/serial.log" | cut -c1-200 || true
echo "qemu exit status $rc after $T_EXIT ms"
[ -n "$START" ] && echo "QEMU start -> user-data start: $START ms"
[ -n "$END" ] && echo "user-data end -> QEMU exit:    $((T_EXIT - END)) ms"
echo "--- host: $W/store/smoke.txt"
cat "$W/store/smoke.txt" 2>/dev/null || true
if [ "$rc" = 0 ] && grep -qx ALL-OK "$W/store/smoke.txt" 2>/dev/null; then
  echo "smoke test: PASS"
else
  tail -n 40 "$W/serial.log"; echo "smoke test: FAIL" >&2; exit 1
fi
