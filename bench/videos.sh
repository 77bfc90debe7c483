#!/usr/bin/env bash
# bench/videos.sh — the incremental session-video backup against restic, side by side, on
# the same store and the same server. A measurement, not a test: it prints tables and fails
# only if its own setup fails.
#
# Usage: bench/videos.sh [RECORDINGS]   (default 10000)
#
# 1. A store of RECORDINGS recordings in date folders (YYYY/MM/DD/HH), sizes 1 to
#    BENCH_MAX_MB (default 50) MB, sparse: 16 KiB of random data at each end, holes between
#    (the machine has no room for hundreds of GB of real video). offbox runs with
#    compress = true here, so the holes cost CPU, not storage.
#    - first run of each tool, then a second run with nothing changed: wall time, peak RSS,
#      CPU seconds, archive/repository growth, offbox's device operations;
#    - then 100 more recordings: the third run's bytes moved / bytes added.
#    restic backs up to the same OpenSSH server over sftp (and, as the issue's reference, to
#    a local repository).
# 2. 100,000 small recordings (BENCH_CATALOGUE=N to change): the second run's peak RSS with
#    that many recordings in the catalogue, against restic's.
# 3. Already compressed data (100 x 10 MB random): compress = false (the default) against
#    compress = true: wall time, CPU seconds per GiB, archive size.
#
# It starts hsm-sim (SoftHSM2 token + recovery key) and tests/testbed (OpenSSH in a network
# namespace, on a 6 GiB tmpfs), and tears everything down at the end.
# Environment: OFFBOX_BIN=FILE (else `cargo build --release`), BENCH_MAX_MB, BENCH_CATALOGUE,
# BENCH_PARTS=123 (which parts to run).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
count=${1:-10000}
parts=${BENCH_PARTS:-123}

if [[ -z "${OFFBOX_BIN:-}" ]]; then
  (cd "$repo" && cargo build --release --quiet)
  OFFBOX_BIN="$repo/target/release/offbox"
fi
for t in bc restic jq; do command -v $t >/dev/null || apt-get install -y -qq $t >/dev/null; done
[[ -x /usr/bin/time ]] || apt-get install -y -qq time >/dev/null

work=$(mktemp -d /tmp/offbox-bench-videos.XXXXXX)
cleanup() {
  "$repo/tests/testbed/down" "$work/bed" >/dev/null 2>&1 || true
  "$repo/hsm-sim/down" "$work/sim" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

OFFBOX_BIN="$OFFBOX_BIN" "$repo/hsm-sim/up" "$work/sim" >/dev/null 2>&1
# shellcheck disable=SC1091
source "$work/sim/env"
export OFFBOX_STATE_DIR="$work/state"
cfg="$work/sim/offbox.toml"
TESTBED_S3=0 TESTBED_DATA_MB=6144 "$repo/tests/testbed/up" "$work/bed" >/dev/null
# shellcheck disable=SC1091
source "$work/bed/targets.env"
hostpart=${SSH_URL#ssh://}; userhost=${hostpart%%/*}; rdir=/${hostpart#*/}
base_cfg=$(cat "$cfg")
# configure SOURCE COMPRESS: the config with [videos] over SOURCE and the bed's ssh target.
configure() {
  printf '%s\n\n[videos]\nenabled = true\nsources = ["%s"]\nsettle_secs = 0\ncompress = %s\nfull_every = 1000\n\n%s\n' \
    "$base_cfg" "$1" "$2" "$(cat "$work/bed/offbox-targets.toml")" > "$cfg"
}
export RESTIC_PASSWORD=bench-only-password
restic_sftp="sftp:$userhost:$rdir/restic"
restic_ssh="ssh -F none -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$SSH_KNOWN_HOSTS -o IdentitiesOnly=yes -i $SSH_IDENTITY $userhost -s sftp"

# timed CMD...: runs it; prints "wall_s rss_mib cpu_s"; its stdout is kept in $work/out.
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  if ! /usr/bin/time -f '%M %U %S' -o "$work/time.out" "$@" > "$work/out" 2> "$work/err"; then
    echo "FAILED: $* : $(tail -3 "$work/err")" >&2
    exit 1
  fi
  t1=$(date +%s.%N)
  read -r kib user sys < <(tail -1 "$work/time.out")
  printf '%.2f %.1f %.2f\n' "$(echo "$t1 - $t0" | bc -l)" "$(echo "$kib / 1024" | bc -l)" "$(echo "$user + $sys" | bc -l)"
}

offbox_run() { timed "$OFFBOX_BIN" --config "$cfg" --json backup create --kind videos --to testbed-ssh "$@"; }
field() { jq -r ".summary.$1" "$work/out"; }   # the backup summary is flattened into it
remote_bytes() { du -sb "$SSH_DATA_DIR/$1" 2>/dev/null | cut -f1; }

# gen DIR COUNT MAX_MB SEED: sparse recordings in date folders.
gen() {
  python3 - "$@" <<'PY'
import os, random, sys
root, n, max_mb, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)
for i in range(n):
    d = os.path.join(root, "2026", "%02d" % (1 + (i // 3000) % 12), "%02d" % (1 + (i // 100) % 28), "%02d" % (i % 24))
    os.makedirs(d, exist_ok=True)
    size = rnd.randint(1, max_mb) * 1000 * 1000
    p = os.path.join(d, "session-%d-%06d.mp4" % (seed, i))
    with open(p, "wb") as f:
        f.write(os.urandom(16384))
        f.seek(size - 16384)
        f.write(os.urandom(16384))
    t = 1_790_000_000 + i
    os.utime(p, (t, t))
PY
}

row() { printf '%-40s %9s %9s %9s %12s %s\n' "$@"; }

if [[ $parts == *1* ]]; then
  store="$work/store"; mkdir -p "$store"
  gen "$store" "$count" "${BENCH_MAX_MB:-50}" 1
  apparent=$(find "$store" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f\n", s}')
  configure "$store" true
  echo "== 1. $count recordings, $(echo "$apparent / 1000000000" | bc) GB apparent (sparse), offbox to ssh://, restic to sftp: and to a local repository"
  row "run" "wall s" "RSS MiB" "CPU s" "sent bytes" "notes"
  read -r w r c < <(offbox_run)
  row "offbox first run (full)" "$w" "$r" "$c" "$(field bytes_out)" "device ops $(field device_operations)"
  read -r w r c < <(offbox_run)
  o2=$w
  row "offbox second run (nothing changed)" "$w" "$r" "$c" "$(field bytes_out)" "stored $(field stored), device ops $(field device_operations)"
  rm -f "$OFFBOX_STATE_DIR"/videos/*.catalogue
  read -r w r c < <(offbox_run)
  row "offbox run without catalogue" "$w" "$r" "$c" "$(field bytes_out)" "stored $(field stored), device ops $(field device_operations)"
  timed restic -o sftp.command="$restic_ssh" -r "$restic_sftp" init >/dev/null
  before=$(remote_bytes restic)
  read -r w r c < <(timed restic -o sftp.command="$restic_ssh" -r "$restic_sftp" backup -q "$store")
  row "restic sftp first run" "$w" "$r" "$c" "$(( $(remote_bytes restic) - ${before:-0} ))" ""
  before=$(remote_bytes restic)
  read -r w r c < <(timed restic -o sftp.command="$restic_ssh" -r "$restic_sftp" backup -q "$store")
  r2=$w
  row "restic sftp second run" "$w" "$r" "$c" "$(( $(remote_bytes restic) - before ))" ""
  timed restic -r "$work/restic-local" init >/dev/null
  timed restic -r "$work/restic-local" backup -q "$store" >/dev/null
  read -r w r c < <(timed restic -r "$work/restic-local" backup -q "$store")
  row "restic local second run" "$w" "$r" "$c" "" ""
  printf 'second run: offbox %.2f s, restic (sftp) %.2f s: offbox takes %.2fx restic'"'"'s time\n' "$o2" "$r2" "$(echo "$o2 / $r2" | bc -l)"
  mkdir -p "$work/add"; gen "$work/add" 100 "${BENCH_MAX_MB:-50}" 2
  added=$(find "$work/add" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f\n", s}')
  cp -a --sparse=always "$work/add/." "$store/"
  read -r w r c < <(offbox_run)
  row "offbox third run (+100 recordings)" "$w" "$r" "$c" "$(field bytes_out)" "stored $(field stored) = $(field stored_bytes) bytes of $added added: recording bytes moved/added = $(echo "$(field stored_bytes) / $added" | bc -l | xargs printf '%.3f'), archive/added = $(echo "$(field bytes_out) / $added" | bc -l | xargs printf '%.5f')"
  before=$(remote_bytes restic)
  read -r w r c < <(timed restic -o sftp.command="$restic_ssh" -r "$restic_sftp" backup -q "$store")
  row "restic sftp third run" "$w" "$r" "$c" "$(( $(remote_bytes restic) - before ))" ""
  rm -rf "$store" "$work/add" "$work/restic-local" "$SSH_DATA_DIR"/* "$OFFBOX_STATE_DIR/videos"
fi

if [[ $parts == *2* ]]; then
  n=${BENCH_CATALOGUE:-100000}
  store="$work/small"; mkdir -p "$store"
  python3 - "$store" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "2026", "%02d" % (1 + i // 10000), "%03d" % (i % 1000))
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "session-%07d.mp4" % i)
    with open(p, "wb") as f:
        f.write(os.urandom(512))
    os.utime(p, (1_790_000_000 + i, 1_790_000_000 + i))
PY
  configure "$store" false
  echo "== 2. $n recordings in the catalogue"
  row "run" "wall s" "RSS MiB" "CPU s" "sent bytes" "notes"
  read -r w r c < <(offbox_run)
  row "offbox first run" "$w" "$r" "$c" "$(field bytes_out)" ""
  read -r w r c < <(offbox_run)
  row "offbox second run" "$w" "$r" "$c" "$(field bytes_out)" "catalogue $(du -b "$OFFBOX_STATE_DIR"/videos/*.catalogue | cut -f1) bytes"
  timed restic -o sftp.command="$restic_ssh" -r "$restic_sftp" init >/dev/null
  timed restic -o sftp.command="$restic_ssh" -r "$restic_sftp" backup -q "$store" >/dev/null
  read -r w r c < <(timed restic -o sftp.command="$restic_ssh" -r "$restic_sftp" backup -q "$store")
  row "restic sftp second run" "$w" "$r" "$c" "" ""
  rm -rf "$store" "$SSH_DATA_DIR"/* "$OFFBOX_STATE_DIR/videos"
fi

if [[ $parts == *3* ]]; then
  store="$work/random"; mkdir -p "$store"
  for i in $(seq 1 100); do head -c 10000000 /dev/urandom > "$store/rec-$i.mp4"; done
  gib=$(echo "1000000000 / 1073741824" | bc -l)
  echo "== 3. already compressed data: 100 x 10 MB random"
  row "mode" "wall s" "RSS MiB" "CPU s/GiB" "archive bytes" ""
  for mode in false true; do
    configure "$store" $mode
    rm -rf "$OFFBOX_STATE_DIR/videos"
    read -r w r c < <(offbox_run --full)
    row "compress = $mode" "$w" "$r" "$(echo "$c / $gib" | bc -l | xargs printf '%.2f')" "$(field bytes_out)" ""
    rm -f "$SSH_DATA_DIR"/offbox-*
  done
fi
