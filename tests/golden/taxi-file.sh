#!/bin/bash
# runner startup script for job taxi-20260101T000000Z-abcdef on aws.
# Pulls the code and inputs from the store, runs the job, streams its log to the store,
# uploads the outputs, writes the final status and powers the machine off, whatever happens.
# Rendered by runner; every value below is shell-quoted.
# shellcheck disable=SC2016,SC2317,SC2329  # quoted values are literal on purpose; trap handlers run indirectly
set -uo pipefail
umask 022

JOB_ID=taxi-20260101T000000Z-abcdef
JOB_URI='file:///var/lib/runner store/jobs/taxi-20260101T000000Z-abcdef'
MAX_RUNTIME=1800
LOG_EVERY=5
S3_ENDPOINT=''
INTERRUPTION=''
METADATA_URL=''
ROOT=${RUNNER_VM_ROOT:-/var/lib/runner}
WORK=$ROOT/work
LOGS=$ROOT/logs
TMP=$ROOT/tmp
CHECKPOINT=$ROOT/checkpoint

STEP=start
STATE=""
EXIT_CODE=null
REASON=""
STARTED_AT=null
JOBPID=""
PUSHER=""
WATCHER=""

now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
say() { printf '%s runner: %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$LOGS/startup.log"; }
json_str() {
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\r'/}; s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# --- transfers: one function per direction; the scheme picks the tool baked into the image
# s5cmd retries by itself with exponential backoff; 3 keeps an unreachable store from stalling minutes
s3() { s5cmd --retry-count 3 ${S3_ENDPOINT:+--endpoint-url "$S3_ENDPOINT"} "$@"; }
# gs: the baked gsutil. On GCE (or with a metadata server named in GCE_METADATA_HOST) it signs in as
# the VM's service account itself: the guest agent writes that into /etc/boto.cfg, maybe too late.
gs() {
  if [ -n "${GCE_METADATA_HOST:-}" ] || grep -qs Google /sys/class/dmi/id/product_name; then
    set -- -o GoogleCompute:service_account=default "$@"
  fi
  GCE_METADATA_ROOT=${GCE_METADATA_ROOT:-${GCE_METADATA_HOST:-metadata.google.internal}} gsutil -q "$@"
}
# fetch SRC_URI DEST_PATH: one object, or every object below a prefix ending in '/'
fetch() {
  local src=$1 dest=$2
  case $src in
    file://*/) mkdir -p "$dest" && cp -R -- "${src#file://}." "$dest/" ;;
    file://*) mkdir -p "$(dirname "$dest")" && cp -- "${src#file://}" "$dest" ;;
    s3://*/) mkdir -p "$dest" && s3 cp "$src*" "$dest/" ;;
    s3://*) mkdir -p "$(dirname "$dest")" && s3 cp --raw "$src" "$dest" ;;
    gs://*/) mkdir -p "$dest" && gs -m rsync -r "$src" "$dest/" &&
      { [ -n "$(ls -A "$dest")" ] || { echo "no object below $src" >&2; return 1; }; } ;;
    gs://*) mkdir -p "$(dirname "$dest")" && gs cp "$src" "$dest" ;;
    *) echo "unknown URI scheme: $src" >&2; return 2 ;;
  esac
}
# push SRC_PATH DEST_URI: a file, or a folder's files below a prefix ending in '/'
push() {
  local src=$1 dest=$2 d
  if [ -d "$src" ]; then
    case $dest in
      file://*) d=${dest#file://}; mkdir -p "$d" && cp -R -- "$src/." "$d/" ;;
      s3://*) s3 cp "${src%/}/" "${dest%/}/" ;;
      gs://*) gs -m rsync -r "${src%/}/" "${dest%/}/" ;;
    esac
    return
  fi
  case $dest in
    file://*) d=${dest#file://}; mkdir -p "$(dirname "$d")" && cp -- "$src" "$d.part" && mv -f -- "$d.part" "$d" ;;
    s3://*) s3 cp --raw "$src" "$dest" ;;
    gs://*) gs cp "$src" "$dest" ;;
    *) echo "unknown URI scheme: $dest" >&2; return 2 ;;
  esac
}
# retry N CMD...: N tries, waiting 1, 2, 4... seconds between them
retry() {
  local n=$1 i=1 wait=1; shift
  until "$@"; do
    [ "$i" -ge "$n" ] && return 1
    sleep "$wait"; i=$((i + 1)); wait=$((wait * 2))
  done
}

write_status() {
  local ended=null
  case $1 in RUNNING) ;; *) ended=$(json_str "$(now)") ;; esac
  printf '{"state": "%s", "exit_code": %s, "reason": %s, "started_at": %s, "ended_at": %s, "updated_at": "%s", "host": %s}\n' \
    "$1" "$EXIT_CODE" "$(json_str "$REASON")" "$STARTED_AT" "$ended" "$(now)" "$(json_str "$(hostname)")" > "$TMP/status.json"
  retry 3 push "$TMP/status.json" "$JOB_URI/status.json" >> "$LOGS/startup.log" 2>&1 || say "could not write status $1 to the store"
}
push_logs() {
  local f
  for f in "$LOGS"/*.log; do
    [ -e "$f" ] && push "$f" "$JOB_URI/logs/$(basename "$f")" >> "$TMP/push.log" 2>&1
  done
}
log_pusher() {
  while sleep "$LOG_EVERY"; do push_logs; done
}
# interruption_notice: prints the cloud's notice that this spot VM is being taken back, if any
# metadata PATH: a value from the cloud's metadata server (AWS: IMDSv2, a token first; GCP: the flavor header)
metadata() {
  local token
  case $INTERRUPTION in
    aws)
      token=$(curl -sf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$METADATA_URL/latest/api/token") &&
        curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" "$METADATA_URL/latest/$1" ;;
    gcp) curl -sf -m 2 -H 'Metadata-Flavor: Google' "$METADATA_URL/computeMetadata/v1/$1" ;;
    *) return 1 ;;
  esac
}
interruption_notice() {
  case $INTERRUPTION in
    aws) metadata meta-data/spot/instance-action ;;
    gcp) [ "$(metadata instance/preempted)" = TRUE ] && echo "instance/preempted is TRUE" ;;
    *) return 1 ;;
  esac
}
# secret REF: a secret's value, fetched here on the VM by name (user-data never holds a secret)
secret() {
  local ref=$1 token
  case $ref in
    aws-ssm:*)
      [ -n "${AWS_REGION:-${AWS_DEFAULT_REGION:-}}" ] || AWS_DEFAULT_REGION=$(metadata meta-data/placement/region) || return 1
      AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-} aws ssm get-parameter --name "${ref#aws-ssm:}" --with-decryption \
        --query Parameter.Value --output text ;;
    gcp-sm:*)
      ref=${ref#gcp-sm:}; [[ $ref == */versions/* ]] || ref=$ref/versions/latest
      token=$(metadata instance/service-accounts/default/token | jq -r .access_token) &&
        curl -sf -m 30 -H "Authorization: Bearer $token" "${RUNNER_GCP_SECRETS_URL:-https://secretmanager.googleapis.com}/v1/$ref:access" |
        jq -er .payload.data | base64 -d ;;
    *) echo "unknown secret reference: $ref" >&2; return 2 ;;
  esac
}
interruption_watcher() {
  local notice
  while sleep 2; do
    if notice=$(interruption_notice); then
      say "interruption notice: $notice"
      printf '%s\n' "$notice" > "$TMP/preempted"
      kill -TERM "$$"
      return
    fi
  done
}

finish() {
  local rc=$?
  trap - EXIT TERM INT
  [ -n "$PUSHER" ] && kill "$PUSHER" 2>/dev/null
  [ -n "$WATCHER" ] && kill "$WATCHER" 2>/dev/null
  if [ -d "$CHECKPOINT" ] && [ -n "$(ls -A "$CHECKPOINT")" ]; then
    retry 3 push "$CHECKPOINT" "$JOB_URI/checkpoint/" >> "$LOGS/startup.log" 2>&1 || say "could not save the checkpoint"
  fi
  if [ -z "$STATE" ]; then
    STATE=FAILED
    [ -n "$REASON" ] || REASON="startup script stopped in step '$STEP' (exit $rc)"
  fi
  say "job $STATE${REASON:+: $REASON}"
  retry 3 push_logs
  write_status "$STATE"
  say "powering off"
  poweroff
  exit 0
}
on_term() {
  if [ -e "$TMP/preempted" ]; then
    STATE=PREEMPTED; REASON="spot interruption in step '$STEP': $(head -c 300 "$TMP/preempted")"
  else
    REASON="the machine is shutting down (SIGTERM) in step '$STEP'"
  fi
  if [ -n "$JOBPID" ]; then
    kill -TERM -- "-$JOBPID" 2>/dev/null
    wait "$JOBPID" 2>/dev/null
  fi
  exit 143
}
fail() { REASON=$1; exit 1; }

mkdir -p "$WORK" "$LOGS" "$TMP" "$CHECKPOINT"
trap finish EXIT
trap on_term TERM INT

# Failsafe that does not depend on this script: power off at max runtime plus 10 minutes.
shutdown -P "+$(( (MAX_RUNTIME + 600 + 59) / 60 ))" >> "$LOGS/startup.log" 2>&1 || say "could not schedule the failsafe shutdown"

STARTED_AT=$(json_str "$(now)")
say "job $JOB_ID starting on $(hostname)"
write_status RUNNING
log_pusher & PUSHER=$!
[ -n "$INTERRUPTION" ] && { interruption_watcher & WATCHER=$!; }

STEP=pull
say "pulling code and 2 input(s)"
pids=() what=()
retry 3 fetch "$JOB_URI/code.tar.gz" "$TMP/code.tar.gz" > "$TMP/pull-0.log" 2>&1 & pids+=($!); what+=("code $JOB_URI/code.tar.gz")
retry 3 fetch 'file:///var/lib/runner store/data/nyc-taxi/' "$WORK"/data/ > "$TMP/pull-1.log" 2>&1 & pids+=($!); what+=('input file:///var/lib/runner store/data/nyc-taxi/')
retry 3 fetch 's3://nyc-tlc/trip data/yellow_tripdata_2024-01.parquet' "$WORK"/data/jan.parquet > "$TMP/pull-2.log" 2>&1 & pids+=($!); what+=('input s3://nyc-tlc/trip data/yellow_tripdata_2024-01.parquet')
for n in "${!pids[@]}"; do
  if ! wait "${pids[$n]}"; then
    cat "$TMP/pull-$n.log" >> "$LOGS/startup.log"
    fail "could not fetch ${what[$n]}: $(tail -n 1 "$TMP/pull-$n.log")"
  fi
done
tar -xzf "$TMP/code.tar.gz" -C "$WORK" || fail "could not unpack the job's code"
if fetch "$JOB_URI/checkpoint/" "$CHECKPOINT" > "$TMP/pull-checkpoint.log" 2>&1; then
  say "restored the checkpoint of an earlier attempt"
fi

STEP=secrets
DB_PASSWORD=$(retry 3 secret aws-ssm:/prod/db-password 2>> "$LOGS/startup.log") || fail 'could not fetch secret DB_PASSWORD from aws-ssm:/prod/db-password'
export DB_PASSWORD
API_KEY=$(retry 3 secret gcp-sm:projects/p/secrets/api-key 2>> "$LOGS/startup.log") || fail 'could not fetch secret API_KEY from gcp-sm:projects/p/secrets/api-key'
export API_KEY
STEP=run
cd "$WORK" || fail "no work dir $WORK"
export RUNNER_JOB_ID=$JOB_ID RUNNER_WORK_DIR=$WORK RUNNER_CHECKPOINT_DIR=$CHECKPOINT PYTHONUNBUFFERED=${PYTHONUNBUFFERED:-1}
export NASTY='it'"'"'s "quoted" $(rm -rf /) `id` $HOME \ 
 second line ü ✓'
export THREADS=8
say "running: "'python3 taxi.py data passenger_counts.csv'
T0=$(date +%s)
setsid timeout --signal=TERM --kill-after=30 "$MAX_RUNTIME" bash -c 'python3 taxi.py data passenger_counts.csv' < /dev/null >> "$LOGS/job.log" 2>&1 &
JOBPID=$!
wait "$JOBPID"
rc=$?
JOBPID=""
EXIT_CODE=$rc
if [ "$(( $(date +%s) - T0 ))" -ge "$MAX_RUNTIME" ] && { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; }; then
  STATE=TIMED_OUT; REASON="ran past max runtime ($MAX_RUNTIME s) and was stopped"
elif [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then
  REASON="the job was killed by signal $((rc - 128)) (SIG$(kill -l $((rc - 128))))"
elif [ "$rc" -ne 0 ]; then
  REASON="the job exited with code $rc"
fi
say "job command exited with code $rc"

STEP=outputs
missing=()
if [ -e passenger_counts.csv ]; then
  retry 3 push passenger_counts.csv 'file:///var/lib/runner store/jobs/taxi-20260101T000000Z-abcdef/outputs/passenger_counts.csv' >> "$LOGS/startup.log" 2>&1 || missing+=('upload of passenger_counts.csv to file:///var/lib/runner store/jobs/taxi-20260101T000000Z-abcdef/outputs/passenger_counts.csv')
else
  missing+=('output passenger_counts.csv (not produced)')
fi
if [ -e plots/ ]; then
  retry 3 push plots/ 's3://results/taxi plots/' >> "$LOGS/startup.log" 2>&1 || missing+=('upload of plots/ to s3://results/taxi plots/')
else
  missing+=('output plots/ (not produced)')
fi
if [ "$rc" -eq 0 ] && [ "${#missing[@]}" -gt 0 ]; then
  STATE=FAILED; REASON="the job succeeded but failed: ${missing[*]}"
fi
if [ -z "$STATE" ]; then
  if [ "$rc" -eq 0 ]; then STATE=SUCCEEDED; else STATE=FAILED; fi
fi
exit 0
