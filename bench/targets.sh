#!/usr/bin/env bash
# bench/targets.sh — throughput of `offbox backup create --to TARGET` to each off-box target
# of the test bed, and of `offbox restore --from TARGET` back, each relative to the same
# backup written to (restore read from) a local file. A measurement, not
# a test: it prints a table and fails only if its own setup fails.
#
# Usage: bench/targets.sh [SIZE_MIB]   (default 200, which fits the test bed's 256 MiB storage; a dataset of random and text files)
#
# It starts hsm-sim (SoftHSM2 token + recovery key) and tests/testbed (real servers in a
# network namespace, SeaweedFS for s3:// included), runs one backup per target named
# testbed-* in the bed's offbox-targets.toml (the *-small targets are skipped), then tears
# everything down. Each backup's peak RSS (offbox's, from /usr/bin/time) is printed too.
# Environment:
#   OFFBOX_BIN=FILE     use this binary instead of `cargo build --release`
#   BENCH_TARGETS=RE    only the targets whose name matches this grep -E pattern (e.g. s3)
#   BENCH_S3=0          leave SeaweedFS out of the bed (it needs tests/deps.sh's venv)
#   BENCH_PIN=1         pin the servers (every process of the bed's namespace, and what they
#                       fork) to CPU 1 and the client side (offbox, ssh, the peers) to CPU 0,
#                       so that a client's figures are its own and not the server's share of
#                       the two cores
#   BENCH_SSH_ROUNDS=N  then N more backups to ssh:// and through the OpenSSH pipe,
#                       alternating, with their medians, ranges and ratio
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
size=${1:-200}

if [[ -z "${OFFBOX_BIN:-}" ]]; then
  (cd "$repo" && cargo build --release --quiet)
  OFFBOX_BIN="$repo/target/release/offbox"
fi
command -v bc >/dev/null || apt-get install -y -qq bc >/dev/null
[[ -x /usr/bin/time ]] || apt-get install -y -qq time >/dev/null

work=$(mktemp -d /tmp/offbox-bench-targets.XXXXXX)
cleanup() {
  "$repo/tests/testbed/down" "$work/bed" >/dev/null 2>&1 || true
  "$repo/hsm-sim/down" "$work/sim" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

OFFBOX_BIN="$OFFBOX_BIN" "$repo/hsm-sim/up" "$work/sim" >/dev/null 2>&1
# shellcheck disable=SC1091
source "$work/sim/env"
cfg="$work/sim/offbox.toml"
TESTBED_S3=$([[ "${BENCH_S3:-1}" == 0 ]] || echo 1) "$repo/tests/testbed/up" "$work/bed" >/dev/null
cat "$work/bed/offbox-targets.toml" >> "$cfg"
pin=()
if [[ "${BENCH_PIN:-0}" == 1 ]]; then
  ns=$(sed -n 's/^TESTBED_NS=//p' "$work/bed/targets.env")
  for p in $(ip netns pids "$ns"); do taskset -a -p -c 1 "$p" >/dev/null; done
  pin=(taskset -c 0)
  echo "servers pinned to CPU 1, clients to CPU 0"
fi

data="$work/data"; mkdir -p "$data"
python3 - "$data" "$size" <<'PY'
import os, sys
root, mib = sys.argv[1], int(sys.argv[2])
half = (mib << 20) // 2
with open(os.path.join(root, "random.bin"), "wb") as f:
    for _ in range(half // (1 << 20)):
        f.write(os.urandom(1 << 20))
line = b"2026-11-23T02:30:00Z audit session opened user=u%05d host=h%03d\n"
with open(os.path.join(root, "audit.log"), "wb") as f:
    n = 0
    i = 0
    while n < half:
        b = line % (i % 99991, i % 997)
        f.write(b)
        n += len(b)
        i += 1
PY

# timed CMD...: runs it, prints wall seconds; on failure prints FAILED and the error.
# Its stderr is kept in $work/last.err, its peak RSS (MiB, the largest process) in
# $work/rss, and its CPU seconds (user + system, children included: a pipeline's ssh, the
# ssh:// target's ssh) per GiB of the dataset in $work/cpu.
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  if ! /usr/bin/time -f '%M %U %S' -o "$work/time.out" "${pin[@]}" "$@" >/dev/null 2> "$work/last.err"; then
    echo "FAILED: $(tail -1 "$work/last.err")"
    return
  fi
  t1=$(date +%s.%N)
  read -r kib user sys < <(tail -1 "$work/time.out")
  echo "$kib / 1024" | bc -l | xargs printf '%.1f' > "$work/rss"
  echo "($user + $sys) * 1024 / $size" | bc -l | xargs printf '%.2f' > "$work/cpu"
  echo "$t1 - $t0" | bc -l | xargs printf '%.2f'
}

# The archive name a backup published, from its confirmation line.
published() { sed -n 's/.* as \([^ ]*\.obx\)$/\1/p' "$work/last.err" | tail -1; }

printf '%-22s %10s %10s %10s %8s %8s   %10s %10s %10s %8s\n' target "backup s" MiB/s "vs local" "RSS MiB" "CPU s/GiB" "restore s" MiB/s "vs local" "CPU s/GiB"
local_s=$(timed bash -c "exec \"$OFFBOX_BIN\" --config \"$cfg\" backup create --kind system --source \"$data\" --output - > \"$work/local.obx\"")
local_rss=$(cat "$work/rss"); local_cpu=$(cat "$work/cpu")
sync
local_r=$(timed "$OFFBOX_BIN" --config "$cfg" restore "$work/local.obx" --to "$work/restored-local")
printf '%-22s %10s %10.1f %10s %8s %8s   %10s %10.1f %10s %8s\n' "local file" "$local_s" "$(echo "$size / $local_s" | bc -l)" "1.00" "$local_rss" "$local_cpu" \
  "$local_r" "$(echo "$size / $local_r" | bc -l)" "1.00" "$(cat "$work/cpu")"
for name in $(grep -o '^\[targets\.testbed-[a-z0-9-]*\]' "$work/bed/offbox-targets.toml" | tr -d '[]' | sed 's/^targets\.//' | grep -v -e small -e denied | grep -E "${BENCH_TARGETS:-.}"); do
  s=$(timed "$OFFBOX_BIN" --config "$cfg" backup create --kind system --source "$data" --to "$name")
  case "$s" in
    FAILED*) printf '%-22s %s\n' "$name" "$s"; continue ;;
  esac
  rss=$(cat "$work/rss"); cpu=$(cat "$work/cpu")
  archive=$(published)
  sync
  r=$(timed "$OFFBOX_BIN" --config "$cfg" restore "$archive" --from "$name" --to "$work/restored-$name")
  rm -rf "$work/restored-$name"
  case "$r" in
    FAILED*) rr="$r" ;;
    *) rr=$(printf '%10s %10.1f %10.2f %8s' "$r" "$(echo "$size / $r" | bc -l)" "$(echo "$local_r / $r" | bc -l)" "$(cat "$work/cpu")") ;;
  esac
  printf '%-22s %10s %10.1f %10.2f %8s %8s   %s\n' "$name" "$s" "$(echo "$size / $s" | bc -l)" "$(echo "$local_s / $s" | bc -l)" "$rss" "$cpu" "$rr"
done

# The peer for ssh://: OpenSSH's own pipe, `offbox backup create --output - | ssh host
# 'cat > f'` and `ssh host cat f | offbox restore -`, with the same key, pinned host key
# and cipher as offbox's ssh://, to the same server.
if grep -q '^\[targets\.testbed-ssh\]' "$work/bed/offbox-targets.toml" && [[ testbed-ssh =~ ${BENCH_TARGETS:-.} ]]; then
  # shellcheck disable=SC1091
  source "$work/bed/targets.env"
  hostpart=${SSH_URL#ssh://}; userhost=${hostpart%%/*}; rdir=/${hostpart#*/}
  sshc="ssh -F none -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$SSH_KNOWN_HOSTS -o IdentitiesOnly=yes -i $SSH_IDENTITY -c aes128-gcm@openssh.com $userhost"
  s=$(timed bash -c "set -o pipefail; \"$OFFBOX_BIN\" --config \"$cfg\" backup create --kind system --source \"$data\" --output - | $sshc 'cat > $rdir/pipe.obx'")
  case "$s" in
    FAILED*) printf '%-22s %s\n' "OpenSSH pipe" "$s" ;;
    *)
      rss=$(cat "$work/rss"); cpu=$(cat "$work/cpu")
      sync
      r=$(timed bash -c "set -o pipefail; $sshc 'cat $rdir/pipe.obx' | \"$OFFBOX_BIN\" --config \"$cfg\" restore - --to \"$work/restored-pipe\"")
      rm -rf "$work/restored-pipe"
      case "$r" in
        FAILED*) rr="$r" ;;
        *) rr=$(printf '%10s %10.1f %10.2f %8s' "$r" "$(echo "$size / $r" | bc -l)" "$(echo "$local_r / $r" | bc -l)" "$(cat "$work/cpu")") ;;
      esac
      printf '%-22s %10s %10.1f %10.2f %8s %8s   %s\n' "OpenSSH pipe" "$s" "$(echo "$size / $s" | bc -l)" "$(echo "$local_s / $s" | bc -l)" "$rss" "$cpu" "$rr"
      $sshc "rm -f $rdir/pipe.obx" 2>/dev/null || true
      ;;
  esac
fi

# The peer for s3://: boto3 (the AWS SDK for Python, from the test bed's venv) uploading the
# local archive file to the same bucket in the same 16 MiB parts, one part in flight (as
# offbox) and four. No client can beat the server it talks to: these rows say what any
# client gets from it here.
if grep -q '^\[targets\.testbed-s3\]' "$work/bed/offbox-targets.toml" && [[ testbed-s3 =~ ${BENCH_TARGETS:-.} ]]; then
  # shellcheck disable=SC1091
  source "$work/bed/targets.env"
  for inflight in 1 4; do
    s=$(timed env S3_URL="$S3_URL" KEY="$S3_ACCESS_KEY" SECRET_FILE="$S3_SECRET_FILE" BUCKET="$S3_BUCKET" \
      N="$inflight" FILE="$work/local.obx" "$S3_PYTHON" -c '
import os, boto3
from boto3.s3.transfer import TransferConfig
s3 = boto3.client("s3", endpoint_url=os.environ["S3_URL"], region_name="us-east-1",
                  aws_access_key_id=os.environ["KEY"],
                  aws_secret_access_key=open(os.environ["SECRET_FILE"]).read().strip())
n = int(os.environ["N"])
cfg = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=n, use_threads=n > 1)
s3.upload_file(os.environ["FILE"], os.environ["BUCKET"], "bench/boto3-%d.obx" % n, Config=cfg)
')
    case "$s" in
      FAILED*) printf '%-22s %s\n' "boto3, $inflight in flight" "$s" ;;
      *) printf '%-22s %10s %10.1f %10.2f %8s %8s   (uploads the finished archive; no packing)\n' "boto3, $inflight in flight" "$s" \
           "$(echo "$size / $s" | bc -l)" "$(echo "$local_s / $s" | bc -l)" "$(cat "$work/rss")" "$(cat "$work/cpu")" ;;
    esac
  done
fi

# BENCH_SSH_ROUNDS=N: N more backups to ssh:// and through the OpenSSH pipe, alternating,
# and their medians and ranges (one run of ~1 s varies by ±15 % on this machine; the
# ratio of the medians is the figure to quote).
rounds=${BENCH_SSH_ROUNDS:-0}
if [[ "$rounds" -gt 0 ]] && grep -q '^\[targets\.testbed-ssh\]' "$work/bed/offbox-targets.toml"; then
  # shellcheck disable=SC1091
  source "$work/bed/targets.env"
  hostpart=${SSH_URL#ssh://}; userhost=${hostpart%%/*}; rdir=/${hostpart#*/}
  sshc="ssh -F none -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$SSH_KNOWN_HOSTS -o IdentitiesOnly=yes -i $SSH_IDENTITY -c aes128-gcm@openssh.com $userhost"
  : > "$work/rounds"
  for _ in $(seq "$rounds"); do
    s=$(timed "$OFFBOX_BIN" --config "$cfg" backup create --kind system --source "$data" --to testbed-ssh)
    echo "ssh $s $(cat "$work/cpu")" >> "$work/rounds"
    $sshc "rm -f $rdir/*.obx" 2>/dev/null || true
    s=$(timed bash -c "set -o pipefail; \"$OFFBOX_BIN\" --config \"$cfg\" backup create --kind system --source \"$data\" --output - | $sshc 'cat > $rdir/pipe.obx'")
    echo "pipe $s $(cat "$work/cpu")" >> "$work/rounds"
    $sshc "rm -f $rdir/pipe.obx" 2>/dev/null || true
  done
  python3 - "$work/rounds" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    who, wall, cpu = line.split()[:3]
    if wall.startswith("FAILED"):
        print(who, "FAILED"); continue
    rows.setdefault(who, ([], []))
    rows[who][0].append(float(wall)); rows[who][1].append(float(cpu))
for who, (w, c) in rows.items():
    print(f"{who:5} backup, {len(w)} rounds: median {statistics.median(w):.3f} s ({min(w):.3f}-{max(w):.3f}), CPU median {statistics.median(c):.2f} s/GiB ({min(c):.2f}-{max(c):.2f})")
if "ssh" in rows and "pipe" in rows:
    ws, cs = statistics.median(rows["ssh"][0]), statistics.median(rows["ssh"][1])
    wp, cp = statistics.median(rows["pipe"][0]), statistics.median(rows["pipe"][1])
    print(f"ssh:// backup vs the OpenSSH pipe: {wp / ws:.2f}x its speed at {cs / cp:.2f}x its CPU (medians)")
PY
fi
