#!/bin/bash
# runner startup script for job taxi-20260101T000000Z-abcdef on aws (the bootstrap fetches it from the store).
# Pulls the code and inputs from the store (no file lands outside its folder), runs the job, ships its
# log to the store as numbered parts, uploads the outputs, writes the final status (never over another
# final one) and powers the machine off, whatever happens.
# Rendered by runner; every value below is shell-quoted.
# shellcheck disable=SC2016,SC2317,SC2329  # quoted values are literal on purpose; trap handlers run indirectly
set -uo pipefail
umask 022

JOB_ID=taxi-20260101T000000Z-abcdef
JOB_URI=gs://my-bucket/runner/jobs/taxi-20260101T000000Z-abcdef
ATTEMPT=1
MAX_RUNTIME=7200
LOG_EVERY=5
S3_ENDPOINT=''
INTERRUPTION=''
METADATA_URL=''
ROOT=${RUNNER_VM_ROOT:-/var/lib/runner}
WORK=$ROOT/work
LOGS=$ROOT/logs
TMP=$ROOT/tmp
CHECKPOINT=$ROOT/checkpoint
SHIP=$TMP/ship
NOTICE=$TMP/preempted  # stays on the root disk when TMP moves to the scratch: the watcher and the trap agree on it
SCRATCH=$ROOT          # the scratch's mount point when there is one (RUNNER_SCRATCH)
LOG_URI=$JOB_URI/logs/$ATTEMPT
FINAL=" SUCCEEDED FAILED TIMED_OUT PREEMPTED CANCELLED LOST "

STEP=start
STATE=""
EXIT_CODE=null
REASON=""
STARTED_AT=null
PHASE=pulling
JOBPID=""
PUSHER=""
WATCHER=""
PROG=""
PULL_T0=""
PULL_RATE=null
PUSHED=null
PUSH_US=0
PUSH_RATE=null

now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
say() { printf '%s runner: %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$LOGS/startup.log"; }
json_str() {
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\r'/}; s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}
sum() { awk '{s+=$1}END{printf "%.0f\n",s}'; }
bytes() { find "$@" -type f -printf '%s\n' | sum; }
usec() { local d=$(( ${EPOCHREALTIME/[.,]/} - ${1/[.,]/} )); echo $((d > 0 ? d : 1)); }
secs() { local d; d=$(usec "$1"); printf '%d.%d' $((d / 1000000)) $((d / 100000 % 10)); }
per_us() { awk -v b="$1" -v u="$2" 'BEGIN { printf "%.0f\n", b * 1e6 / (u > 0 ? u : 1) }'; }
per_s() { per_us "$1" "$(usec "$2")"; }
human() {
  local b=$1 d=1 u=B x
  for x in kB MB GB TB; do [ "$b" -ge $((d * 1000)) ] && d=$((d * 1000)) u=$x; done
  if [ "$u" = B ]; then echo "$b B"; else printf '%d.%d %s\n' $((b / d)) $((b * 10 / d % 10)) "$u"; fi
}
moved() {
  local us r
  us=$(usec "$2") r=$(( $1 * 10 / us ))
  if [ "$r" -ge 100 ]; then r="$((r / 10)) MB/s"; elif [ "$r" -ge 10 ]; then r="$((r / 10)).$((r % 10)) MB/s"; else r="$(( $1 * 1000 / us )) kB/s"; fi
  echo "$(human "$1") in $(secs "$2") s, $r"
}

transfer_sizes() {
  local n=$1 s p
  [[ $n =~ ^[1-9][0-9]{0,4}$ ]] || n=1
  s=$((8 * n)) p=$((n < 32 ? n : 32))
  S3_PARTS=$((n < 5 ? 5 : n > 32 ? 32 : n))
  S3_WORKERS=$((32 * n < 256 ? 256 : 32 * n > 4096 ? 4096 : 32 * n))
  GS_PROCS=$p
  GS_THREADS=$(((s + p - 1) / p)); GS_THREADS=$((GS_THREADS < 5 ? 5 : GS_THREADS > 32 ? 32 : GS_THREADS))
  GS_SLICES=$((n < 4 ? 4 : n > 32 ? 32 : n))
}
transfer_sizes "$(nproc 2> /dev/null)"
s3() {
  local o=(--retry-count 3 --numworkers "$S3_WORKERS" ${S3_ENDPOINT:+--endpoint-url "$S3_ENDPOINT"})
  if [ "${1:-}" = cp ]; then shift; s5cmd "${o[@]}" cp --concurrency "$S3_PARTS" "$@"; else s5cmd "${o[@]}" "$@"; fi
}
gs() {
  if [ -n "${GCE_METADATA_HOST:-}" ] || grep -qs Google /sys/class/dmi/id/product_name; then
    set -- -o GoogleCompute:service_account=default "$@"
  fi
  GCE_METADATA_ROOT=${GCE_METADATA_ROOT:-${GCE_METADATA_HOST:-metadata.google.internal}} gsutil -q \
    -o "GSUtil:parallel_process_count=$GS_PROCS" -o "GSUtil:parallel_thread_count=$GS_THREADS" \
    -o GSUtil:sliced_object_download_threshold=150M -o "GSUtil:sliced_object_download_max_components=$GS_SLICES" "$@"
}

CLOUD=aws
SCRATCH_MNT=$ROOT/scratch
scratch_plan() {
  jq -c --arg cloud "$1" --arg root "$2" --argjson ids "$3" '
    def tree: ., (.children[]? | tree);
    def trim: gsub("^\\s+|\\s+$"; "");
    def kind:
      if $cloud == "aws" then (if (.model // "" | trim) == "Amazon EC2 NVMe Instance Storage" then "instance-store" else empty end)
      elif $cloud == "gcp" then (.path as $p
        | if any($ids | to_entries[]; .value == $p and (.key | test("^google-local-(nvme-)?ssd-[0-9]+$"))) then "local SSD" else empty end)
      elif $cloud == "local" then (if (.serial // "" | trim | startswith("runner-scratch")) then "runner-scratch" else empty end)
      else empty end;
    def why:
      [tree | .mountpoints[]?, .mountpoint? | strings] as $mounted
      | if .type != "disk" then "not a whole disk (type \(.type))"
        elif any(tree; .path == $root) then "it holds the root filesystem"
        elif ($mounted | length) > 0 then "mounted at \($mounted | join(", "))"
        elif (.children // []) != [] then "it has partitions or holders (\([.children[].name] | join(", ")))"
        elif .fstype != null then "it holds \(.fstype) already"
        elif .pttype != null then "it has a \(.pttype) partition table"
        elif ((.size // 0) | tonumber) <= 0 then "it reports no size"
        elif (.path | test("^/dev/[A-Za-z0-9._/-]+$") | not) then "its path \(.path | tojson) is not a plain /dev path"
        else empty end;
    [.blockdevices[]? | . as $d | kind as $k | {name, path, size: ((.size // 0) | tonumber), kind: $k, why: ([$d | why] | first)}]
    | {use: map(select(.why == null) | del(.why)), skip: map(select(.why != null) | "\(.name) (\(.kind)): \(.why): left alone")}'
}
by_id() {
  local l
  for l in /dev/disk/by-id/*; do
    [ -L "$l" ] && printf '%s\t%s\n' "${l##*/}" "$(readlink -f -- "$l")"
  done | jq -Rn '[inputs | split("\t") | {(.[0]): .[1]}] | add // {}'
}
scratch() {
  local t0=$EPOCHREALTIME t plan devs n what dev md=/dev/md/runner-scratch layout="" ids
  ids=$(by_id) || ids={}
  plan=$(lsblk -J -b -o NAME,PATH,TYPE,MODEL,SERIAL,SIZE,MOUNTPOINTS,FSTYPE,PTTYPE,PKNAME | scratch_plan "$CLOUD" "$(findmnt -no SOURCE /)" "$ids") ||
    { say "scratch: could not list the block devices: the work dir stays on the root disk"; return 1; }
  jq -r '.skip[]' <<< "$plan" | while IFS= read -r t; do say "scratch: $t"; done
  mapfile -t devs < <(jq -r '.use[].path' <<< "$plan")
  n=${#devs[@]}
  if [ "$n" -eq 0 ]; then
    say "scratch: no instance storage found (in $(secs "$t0") s): the work dir stays on the root disk"; return 1
  fi
  what=$(jq -r '"\(.use | length) \(.use[0].kind) device\(if (.use | length) > 1 then "s" else "" end) (\([.use[] | "\(.name) \(.size / 1e9 | round) GB"] | join(", ")))"' <<< "$plan")
  say "scratch: found $what in $(secs "$t0") s"
  dev=${devs[0]}
  if [ "$n" -gt 1 ] && ! command -v mdadm > /dev/null; then
    say "scratch: mdadm is not installed: using ${devs[0]} alone, not all $n devices"
  elif [ "$n" -gt 1 ]; then
    t=$EPOCHREALTIME
    if ! timeout 120 mdadm --create "$md" --level=0 --raid-devices="$n" --run "${devs[@]}" < /dev/null >> "$LOGS/startup.log" 2>&1; then
      say "scratch: mdadm could not stripe ${devs[*]}: the work dir stays on the root disk"; return 1
    fi
    if command -v udevadm > /dev/null; then timeout 30 udevadm settle; fi
    dev=$md layout="RAID0 $(readlink -f -- "$md" 2> /dev/null || echo "$md"), "
    say "scratch: RAID0 $md over $n devices in $(secs "$t") s"
  fi
  t=$EPOCHREALTIME
  if ! timeout 600 mkfs.ext4 -q -F -m 0 -E lazy_itable_init=1,lazy_journal_init=1,nodiscard -L runner-scratch "$dev" < /dev/null >> "$LOGS/startup.log" 2>&1; then
    say "scratch: mkfs.ext4 failed on $dev: the work dir stays on the root disk"; return 1
  fi
  say "scratch: ext4 on $dev in $(secs "$t") s"
  t=$EPOCHREALTIME
  if ! { mkdir -p "$SCRATCH_MNT" && timeout 60 mount -o noatime "$dev" "$SCRATCH_MNT" >> "$LOGS/startup.log" 2>&1; }; then
    say "scratch: could not mount $dev at $SCRATCH_MNT: the work dir stays on the root disk"; return 1
  fi
  say "scratch: mounted $dev at $SCRATCH_MNT in $(secs "$t") s"
  say "scratch: $what -> ${layout:-$dev, }ext4, $SCRATCH_MNT in $(secs "$t0") s"
}

plan() {
  jq -nr --arg src "$1" --arg dest "$2" --arg tool "$3" --argjson parts "$S3_PARTS" '[inputs | select(endswith("/") | not) | {k: ., rel: ltrimstr($src)}
    | .ok = ((.k | startswith($src)) and (.rel | explode | all(. > 31)) and (.rel | split("/") | all(. != "" and . != "." and . != ".."))
      and ($tool == "s3" or (.rel | test("[*?\\[\\]]") | not)))] as $all
    | ($all[] | select(.ok | not) | "# skipped \(.k | tojson): its name is not a plain path below \($src)"),
    if $tool == "s3" then $all[] | select(.ok) | "cp --concurrency \($parts) --raw \(.k | @sh) \("\($dest)/\(.rel)" | @sh)"
    else $all | map(select(.ok) | .d = ("\($dest)/\(.rel)" | sub("/[^/]*$"; ""))) | group_by(.d)[] | [.[0].d] + map(.k) | join("\t") end'
}
fetch() {
  local src=$1 dest=${2%/} s=${1#file://} w=${3:-/dev/null} p f g
  case $src in
    file://*/) s=${s%/}
      [ -d "$s" ] && [ ! -L "$s" ] || { say "refusing $src: not a folder (a link?)"; return 1; }
      (cd "$s" && find . -mindepth 1 ! -type d ! -type f -printf '%P\n') | while IFS= read -r f; do say "skipped $src$f: not a file or folder"; done
      [ -n "$(cd "$s" && find . -type f -print -quit)" ] || { echo "no object below $src" >&2; return 1; }
      mkdir -p "$dest" && (cd "$s" && find . -type f -print0 | xargs -0r cp --parents -t "$dest" --) ;;
    file://*) [ -f "$s" ] && [ ! -L "$s" ] || { echo "no file $src (or it is a link)" >&2; return 1; }
      mkdir -p "$(dirname "$dest")" && cp -- "$s" "$dest" ;;
    s3://*/|gs://*/) p=$(mktemp "$TMP/plan.XXXXXX") || return 1
      case $src in
        s3://*) s3 --json ls "$src*" | jq -c 'select(.type=="file")' > "$p.l"; jq .size "$p.l" | sum > "$w"; jq .key "$p.l" ;;
        *) gs ls -l "$src**" | grep ' gs:' > "$p.l"; sum < "$p.l" > "$w"; grep -o 'gs:.*' "$p.l" | jq -R . ;;
      esac | plan "$src" "$dest" "${src%%:*}" > "$p"
      sed -n 's/^# //p' "$p" | while IFS= read -r f; do say "$f"; done
      grep -q '^[^#]' "$p" || { echo "no object below $src" >&2; return 1; }
      mkdir -p "$dest" || return 1
      case $src in
        s3://*) s3 run "$p" ;;
        *) grep -v '^#' "$p" | while IFS=$'\t' read -r -a g; do
          mkdir -p "${g[0]}" && printf '%s\n' "${g[@]:1}" | gs -m cp -I "${g[0]}/" || exit 1
        done ;;
      esac ;;
    s3://*) mkdir -p "$(dirname "$dest")" && s3 cp --raw "$src" "$dest" ;;
    gs://*) mkdir -p "$(dirname "$dest")" && gs cp "$src" "$dest" ;;
    *) echo "unknown URI scheme: $src" >&2; return 2 ;;
  esac
}
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
    file://*) d=${dest#file://}; mkdir -p "$(dirname "$d")" || return 1
      cp -- "$src" "$(dirname "$d")/.${d##*/}.part" && mv -f -- "$(dirname "$d")/.${d##*/}.part" "$d" ;;
    s3://*) s3 cp --raw "$src" "$dest" ;;
    gs://*) gs cp "$src" "$dest" ;;
    *) echo "unknown URI scheme: $dest" >&2; return 2 ;;
  esac
}
pull() {
  local z=$TMP/pull-$1 t0=$EPOCHREALTIME what=input
  [ "$1" = 0 ] && what=code
  retry 3 fetch "$2" "$3" "$z.size" > "$z.log" 2>&1 || return 1
  [ -s "$z.size" ] || bytes "$3" > "$z.size"
  say "pulled $what $2: $(moved "$(bytes "$3")" "$t0")"
}
pulled() { GOT=$(bytes "$WORK" "$TMP/code.tar.gz") WANT=$(cat "$TMP"/*.size 2>/dev/null | sum); PULL_RATE=$(per_s "$GOT" "$PULL_T0"); }
timed() {
  local t0=$EPOCHREALTIME b
  retry 3 "$@" >> "$LOGS/startup.log" 2>&1 || return 1
  b=$(bytes "$2") PUSH_US=$((PUSH_US + $(usec "$t0"))) PUSHED=$((${PUSHED/null/0} + b))
  say "pushed $2 to $3: $(moved "$b" "$t0")"
}
retry() {
  local n=$1 i=1 wait=1; shift
  until "$@"; do
    [ "$i" -ge "$n" ] && return 1
    sleep "$wait"; i=$((i + 1)); wait=$((wait * 2))
  done
}

stored_state() {
  rm -f "$TMP/stored.json"
  fetch "$JOB_URI/status.json" "$TMP/stored.json" > /dev/null 2>&1 && jq -r '.state | strings' "$TMP/stored.json" 2>/dev/null | head -c 20
}
write_status() {
  local ended=null f=$TMP/status.json.new have
  [ "$1" = RUNNING ] || ended=$(json_str "$(now)")
  have=$(stored_state)
  if [[ $have =~ ^[A-Z_]+$ && $FINAL == *" $have "* ]]; then
    say "status.json already says $have: keeping it"; return 0
  fi
  rm -f "$f"
  if printf '{"state":"%s","exit_code":%s,"reason":%s,"started_at":%s,"ended_at":%s,"updated_at":"%s","host":%s,"attempt":%s,"phase":"%s","bytes_done":%s,"bytes_total":%s,"bytes_per_s":%s,"pushed_bytes":%s,"pushed_bytes_per_s":%s}\n' \
    "$1" "$EXIT_CODE" "$(json_str "$REASON")" "$STARTED_AT" "$ended" "$(now)" "$(json_str "$(hostname)")" "$ATTEMPT" \
    "$PHASE" "${GOT:-null}" "${WANT:-null}" "$PULL_RATE" "$PUSHED" "$PUSH_RATE" > "$f" &&
    jq -e .state "$f" > /dev/null 2>&1; then
    retry 3 push "$f" "$JOB_URI/status.json" >> "$LOGS/startup.log" 2>&1 || say "could not write status $1 to the store"
  else
    say "could not write status $1: $TMP is full or not writable; the store keeps the status it has"
  fi
}
ship_log() {
  local name=$1 st=$SHIP/$1 part="" seq off size
  while :; do
    for part in "$st".part.*; do [ -e "$part" ] || part=""; break; done
    if [ -z "$part" ]; then
      seq=0 off=0
      if [ -e "$st.next" ]; then read -r seq off < "$st.next" || return 1; fi
      size=$(stat -c %s -- "$LOGS/$name") || return 1
      [ "$size" -gt "$off" ] || return 0
      { tail -c +"$((off + 1))" -- "$LOGS/$name" | head -c "$((size - off))"; } > "$st.cut"
      [ "$(stat -c %s -- "$st.cut")" -eq "$((size - off))" ] && mv -f -- "$st.cut" "$st.part.$seq.$size" || return 1
      part=$st.part.$seq.$size
    fi
    seq=${part##*.part.}; size=${seq#*.}; seq=${seq%.*}
    push "$part" "$LOG_URI/$name.$(printf %06d "$seq")" || return 1
    { printf '%s %s\n' "$((seq + 1))" "$size" > "$st.next.new" && mv -f -- "$st.next.new" "$st.next" && rm -f -- "$part"; } || return 1
  done
}
ship_logs() {
  local f rc=0
  for f in "$LOGS"/*.log; do
    if [ -e "$f" ]; then ship_log "${f##*/}" >> "$TMP/push.log" 2>&1 || rc=1; fi
  done
  return "$rc"
}
log_pusher() {
  local stop=0
  trap 'stop=1' TERM
  while [ "$stop" = 0 ]; do
    sleep "$LOG_EVERY" & wait $!
    if [ "$stop" = 1 ]; then kill $! 2>/dev/null; break; fi
    ship_logs
  done
}
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
      printf '%s\n' "$notice" > "$NOTICE"
      kill -TERM "$$"
      return
    fi
  done
}

finish() {
  local rc=$?
  trap - EXIT
  trap '' TERM INT
  [ -n "$WATCHER" ] && kill "$WATCHER" 2>/dev/null
  [ -n "$PROG" ] && { : > "$TMP/pulled"; wait "$PROG"; } 2>/dev/null  # told by a file: its status write under way ends first
  if [ -n "$PUSHER" ]; then  # let a push under way finish (a minute at most): the pushes below must not race it
    kill "$PUSHER" 2>/dev/null
    { sleep 60; kill -KILL "$PUSHER"; } > /dev/null 2>&1 & guard=$!
    wait "$PUSHER" 2>/dev/null
    kill "$guard" 2>/dev/null
  fi
  if [ -d "$CHECKPOINT" ] && [ -n "$(ls -A "$CHECKPOINT")" ]; then
    timed push "$CHECKPOINT" "$JOB_URI/checkpoint/" || say "could not save the checkpoint"
  fi
  [ "$PUSHED" = null ] || PUSH_RATE=$(per_us "$PUSHED" "$PUSH_US")
  if [ -z "$STATE" ]; then
    STATE=FAILED
    [ -n "$REASON" ] || REASON="startup script stopped in step '$STEP' (exit $rc)"
  fi
  say "job $STATE${REASON:+: $REASON}"
  retry 3 ship_logs
  PHASE="powering off"
  write_status "$STATE"
  ship_logs
  say "powering off"
  poweroff
  exit 0
}
on_term() {
  if [ -e "$NOTICE" ]; then
    STATE=PREEMPTED; REASON="spot interruption in step '$STEP': $(head -c 300 "$NOTICE")"
  elif fetch "$JOB_URI/cancel" "$TMP/cancel" > /dev/null 2>&1; then
    STATE=CANCELLED; REASON="cancelled by \`runner cancel\`"
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
step() { STEP=$1 PHASE=$2; write_status RUNNING; }

mkdir -p "$WORK" "$LOGS" "$TMP" "$CHECKPOINT" "$SHIP"
trap finish EXIT
trap on_term TERM INT

STARTED_AT=$(json_str "$(now)")
say "job $JOB_ID starting on $(hostname), attempt $ATTEMPT"
if fetch "$JOB_URI/cancel" "$TMP/cancel" > /dev/null 2>&1; then
  STATE=CANCELLED; REASON="cancelled by \`runner cancel\` before it started"; exit 0
fi
write_status RUNNING
log_pusher & PUSHER=$!
[ -n "$INTERRUPTION" ] && { interruption_watcher & WATCHER=$!; }

STEP=scratch
say "transfers sized for $(nproc) vCPUs: s5cmd --numworkers $S3_WORKERS, cp --concurrency $S3_PARTS; gsutil $GS_PROCS processes x $GS_THREADS threads, objects over 150 MiB in up to $GS_SLICES slices"
if scratch && mkdir -p "$SCRATCH_MNT/work" "$SCRATCH_MNT/tmp" "$SCRATCH_MNT/checkpoint"; then
  SCRATCH=$SCRATCH_MNT WORK=$SCRATCH_MNT/work TMP=$SCRATCH_MNT/tmp CHECKPOINT=$SCRATCH_MNT/checkpoint
  say "work dir, inputs, outputs, temp files and checkpoint on the scratch: $WORK"
fi
STEP=pull
say "pulling code and 0 input(s)"
PULL_T0=$EPOCHREALTIME
pids=() what=()
pull 0 "$JOB_URI/code.tar.gz" "$TMP/code.tar.gz" & pids+=($!); what+=("code $JOB_URI/code.tar.gz")
{ last=$SECONDS; until [ -e "$TMP/pulled" ]; do sleep 0.2; if (( SECONDS - last >= LOG_EVERY )) && [ ! -e "$TMP/pulled" ]; then last=$SECONDS; pulled; write_status RUNNING; fi; done; } & PROG=$!
for n in "${!pids[@]}"; do
  if ! wait "${pids[$n]}"; then
    cat "$TMP/pull-$n.log" >> "$LOGS/startup.log"
    fail "could not fetch ${what[$n]}: $(tail -n 1 "$TMP/pull-$n.log")"
  fi
done
: > "$TMP/pulled"; wait "$PROG"; PROG=""  # a status write under way ends first
pulled
say "pulled code and 0 input(s): $(moved "$GOT" "$PULL_T0")"
tar -xzf "$TMP/code.tar.gz" -C "$WORK" || fail "could not unpack the job's code"
T_CK=$EPOCHREALTIME
if fetch "$JOB_URI/checkpoint/" "$CHECKPOINT" > "$TMP/pull-checkpoint.log" 2>&1; then
  say "restored the checkpoint of an earlier attempt: $(moved "$(bytes "$CHECKPOINT")" "$T_CK")"
fi

STEP=secrets
step run running
cd "$WORK" || fail "no work dir $WORK"
{ declare -p S3_ENDPOINT TMP LOGS JOB_URI S3_WORKERS S3_PARTS GS_PROCS GS_THREADS GS_SLICES; declare -f now say json_str sum s3 gs plan fetch push retry; } > "$TMP/fns.sh"
export RUNNER_FUNCTIONS=$TMP/fns.sh RUNNER_SCRATCH=$SCRATCH RUNNER_JOB_ID=$JOB_ID RUNNER_ATTEMPT=$ATTEMPT RUNNER_WORK_DIR=$WORK RUNNER_CHECKPOINT_DIR=$CHECKPOINT PYTHONUNBUFFERED=${PYTHONUNBUFFERED:-1}
say "running: "true
T0=$(date +%s)
setsid timeout --signal=TERM --kill-after=30 "$MAX_RUNTIME" bash -c true < /dev/null >> "$LOGS/job.log" 2>&1 &
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

step outputs uploading
missing=()
if [ "$rc" -eq 0 ] && [ "${#missing[@]}" -gt 0 ]; then
  STATE=FAILED; REASON="the job succeeded but failed: ${missing[*]}"
fi
if [ -z "$STATE" ]; then
  if [ "$rc" -eq 0 ]; then STATE=SUCCEEDED; else STATE=FAILED; fi
fi
exit 0
