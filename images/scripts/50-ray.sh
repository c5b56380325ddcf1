#!/bin/bash
# Install Ray into /opt/runner/venv (requirements-ray.txt, pinned by constraints.txt), so a multi-node job
# starts its cluster with `ray start` and never pip-installs Ray at boot. `ray` is linked into
# /usr/local/bin for cloud-init's plain PATH. Ray's usage reporting is off for every process on the VM
# (systemd's default environment, which cloud-init's user-data inherits, and /etc/environment for logins).
# Env: OFFLINE_DIR (default /tmp/runner-offline): if $OFFLINE_DIR/wheels exists, install only from those
#      wheels (no index); else from PyPI. RUNNER_SCRIPTS (default /tmp/runner-scripts): requirements, constraints.
set -euo pipefail
OFFLINE_DIR=${OFFLINE_DIR:-/tmp/runner-offline}
RUNNER_SCRIPTS=${RUNNER_SCRIPTS:-/tmp/runner-scripts}
VENV=/opt/runner/venv

args=(install --no-cache-dir --disable-pip-version-check --no-input -r "$RUNNER_SCRIPTS/requirements-ray.txt"
      -c "$RUNNER_SCRIPTS/constraints.txt")
if [ -d "$OFFLINE_DIR/wheels" ]; then args+=(--no-index --find-links "$OFFLINE_DIR/wheels"); fi
"$VENV/bin/pip" "${args[@]}"
ln -sfn "$VENV/bin/ray" /usr/local/bin/ray

mkdir -p /etc/systemd/system.conf.d
printf '# runner: Ray sends no usage statistics from a batch VM\n[Manager]\nDefaultEnvironment=RAY_USAGE_STATS_ENABLED=0\n' \
  > /etc/systemd/system.conf.d/runner-ray.conf
grep -qx 'RAY_USAGE_STATS_ENABLED=0' /etc/environment 2>/dev/null || echo 'RAY_USAGE_STATS_ENABLED=0' >> /etc/environment

# self-check: the pinned Ray runs from a plain PATH (as cloud-init's user-data sees it), and the venv is consistent
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
pinned=$(sed -n 's/^ray==//p' "$RUNNER_SCRIPTS/constraints.txt")
ray --version
ray --version | grep -q "version $pinned\$" || { echo "50-ray: ray is not the pinned $pinned" >&2; exit 1; }
python3 -c 'import ray, sys; assert sys.prefix == "/opt/runner/venv", sys.prefix; print("import ray:", ray.__version__)'
"$VENV/bin/pip" check
echo "50-ray: ok"
