#!/bin/bash
# Create the runner's Python: a venv at /opt/runner/venv with the data stack (duckdb, pyarrow,
# polars) from requirements.txt (pinned by constraints.txt). Login shells get the venv first on
# PATH (/etc/profile.d); everything else (cloud-init user-data, systemd units, cron) finds it as
# /usr/local/bin/python3. cloud-init and other Debian tools keep using /usr/bin/python3.
# Env: OFFLINE_DIR (default /tmp/runner-offline): if $OFFLINE_DIR/wheels exists, install only
#      from those wheels (no index); else from PyPI.
#      RUNNER_SCRIPTS (default /tmp/runner-scripts): where requirements*.txt were uploaded.
set -euo pipefail
OFFLINE_DIR=${OFFLINE_DIR:-/tmp/runner-offline}
RUNNER_SCRIPTS=${RUNNER_SCRIPTS:-/tmp/runner-scripts}
VENV=/opt/runner/venv

pip_install() {   # pip_install REQUIREMENTS_FILE: exact pins, wheels only when offline
  local args=(install --no-cache-dir --disable-pip-version-check --no-input -r "$1")
  if [ -f "$RUNNER_SCRIPTS/constraints.txt" ]; then args+=(-c "$RUNNER_SCRIPTS/constraints.txt"); fi
  if [ -d "$OFFLINE_DIR/wheels" ]; then args+=(--no-index --find-links "$OFFLINE_DIR/wheels"); fi
  "$VENV/bin/pip" "${args[@]}"
}

[ -x "$VENV/bin/python3" ] || /usr/bin/python3 -m venv "$VENV"
pip_install "$RUNNER_SCRIPTS/requirements.txt"

# /usr/local/bin/python3 must run the venv. A symlink is not enough: CPython 3.11 looks for
# pyvenv.cfg next to the path it was started as (/usr/local/bin), so a symlinked venv python
# starts as the bare system python. A one-line exec wrapper keeps the venv.
for name in python3 python; do
  printf '#!/bin/sh\n# runner: the venv python (see /etc/profile.d/runner-venv.sh)\nexec %s/bin/python3 "$@"\n' "$VENV" \
    > "/usr/local/bin/$name"
  chmod 0755 "/usr/local/bin/$name"
done
for name in pip pip3; do ln -sfn "$VENV/bin/$name" "/usr/local/bin/$name"; done
cat > /etc/profile.d/runner-venv.sh <<PROFILE
# runner: the job's Python (duckdb, pyarrow, polars) and its tools come first on PATH
case ":\$PATH:" in *:$VENV/bin:*) ;; *) PATH=$VENV/bin:\$PATH; export PATH ;; esac
PROFILE

# self-check: the python found on a plain PATH (non-login shell) and in a login shell is the venv
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  python3 -c 'import sys, duckdb, pyarrow, polars; assert sys.prefix == "/opt/runner/venv", sys.prefix; print("python", sys.version.split()[0], "duckdb", duckdb.__version__, "pyarrow", pyarrow.__version__, "polars", polars.__version__)'
env -i bash -lc 'python3 -c "import duckdb; print(duckdb.connect().execute(\"select 42\").fetchone()[0])"' | grep -qx 42
/usr/bin/python3 -c 'import cloudinit' && echo "system python still serves cloud-init"
echo "30-python-venv: ok"
