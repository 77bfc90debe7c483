#!/usr/bin/env bash
# bench/targets.sh — throughput of `offbox backup create --to TARGET` to each off-box target
# of the test bed, and of `offbox restore --from TARGET` back, each relative to the same
# backup written to (restore read from) a local file. A measurement, not
# a test: it prints a table and fails only if its own setup fails.
#
# Usage: bench/targets.sh [SIZE_MIB]   (default 200, which fits the test bed's 256 MiB storage; a dataset of random and text files)
#
# It starts hsm-sim (SoftHSM2 token + recovery key) and tests/testbed (real servers in a
# network namespace), runs one backup per target named testbed-* in the bed's
# offbox-targets.toml (the *-small targets are skipped), then tears everything down.
# Environment: OFFBOX_BIN to use a given binary instead of `cargo build --release`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
size=${1:-200}

if [[ -z "${OFFBOX_BIN:-}" ]]; then
  (cd "$repo" && cargo build --release --quiet)
  OFFBOX_BIN="$repo/target/release/offbox"
fi
command -v bc >/dev/null || apt-get install -y -qq bc >/dev/null

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
"$repo/tests/testbed/up" "$work/bed" >/dev/null
cat "$work/bed/offbox-targets.toml" >> "$cfg"

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
timed() {
  local t0 t1 err
  t0=$(date +%s.%N)
  if ! err=$("$@" 2>&1 >/dev/null); then
    echo "FAILED: $(echo "$err" | tail -1)"
    return
  fi
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l | xargs printf '%.2f'
}

# The archive name a backup published, from its confirmation line.
published() { sed -n 's/.* as \([^ ]*\.obx\)$/\1/p' "$work/last.err" | tail -1; }

printf '%-22s %10s %10s %10s   %10s %10s %10s\n' target "backup s" MiB/s "vs local" "restore s" MiB/s "vs local"
local_s=$(timed bash -c "\"$OFFBOX_BIN\" --config \"$cfg\" backup create --kind system --source \"$data\" --output - > \"$work/local.obx\"")
local_r=$(timed "$OFFBOX_BIN" --config "$cfg" restore "$work/local.obx" --to "$work/restored-local")
printf '%-22s %10s %10.1f %10s   %10s %10.1f %10s\n' "local file" "$local_s" "$(echo "$size / $local_s" | bc -l)" "1.00" \
  "$local_r" "$(echo "$size / $local_r" | bc -l)" "1.00"
for name in $(grep -o '^\[targets\.testbed-[a-z0-9-]*\]' "$work/bed/offbox-targets.toml" | tr -d '[]' | sed 's/^targets\.//' | grep -v -e small -e denied); do
  t0=$(date +%s.%N)
  if ! "$OFFBOX_BIN" --config "$cfg" backup create --kind system --source "$data" --to "$name" \
      >/dev/null 2> "$work/last.err"; then
    printf '%-22s FAILED: %s\n' "$name" "$(tail -1 "$work/last.err")"
    continue
  fi
  s=$(echo "$(date +%s.%N) - $t0" | bc -l | xargs printf '%.2f')
  archive=$(published)
  r=$(timed "$OFFBOX_BIN" --config "$cfg" restore "$archive" --from "$name" --to "$work/restored-$name")
  rm -rf "$work/restored-$name"
  case "$r" in
    FAILED*) rr="$r" ;;
    *) rr=$(printf '%10s %10.1f %10.2f' "$r" "$(echo "$size / $r" | bc -l)" "$(echo "$local_r / $r" | bc -l)") ;;
  esac
  printf '%-22s %10s %10.1f %10.2f   %s\n' "$name" "$s" "$(echo "$size / $s" | bc -l)" "$(echo "$local_s / $s" | bc -l)" "$rr"
done
