#!/usr/bin/env bash
# Builds every cargo-fuzz target of offbox and runs each for a while on a scratch copy of its
# committed seed corpus (fuzz/corpus/<target>/), so that the committed corpora never grow.
# Fails when a target does not build, or on any crash, leak, timeout or out-of-memory.
#
# Usage: bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default 30 s, all targets)
#        bash fuzz/run.sh --build-only
# Env:   FUZZ_ARGS     extra libFuzzer flags (for example "-runs=10000000" with 0 seconds)
#        FUZZ_LOG_DIR  keep each target's libFuzzer log there (default: a scratch dir, removed)
#        FUZZ_BUILD_ARGS  extra `cargo fuzz build/run` options (for example "--dev": a faster
#                      build, slower runs)
#        FUZZ_SEED     libFuzzer's random seed (default 0: a new one each run). CI sets a
#                      fixed seed so that its gate is reproducible; long runs explore.
#
# cargo-fuzz needs nightly rustc flags (-Zsanitizer=address); on the stable toolchain they
# are enabled with RUSTC_BOOTSTRAP=1, for this build only (docs/fuzzing.md). cargo-fuzz is
# installed from crates.io when missing. Crash inputs land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

build_only=0
secs=30
if [ "${1:-}" = "--build-only" ]; then
  build_only=1
  shift
elif [ -n "${1:-}" ]; then
  secs=$1
  shift
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

echo "fuzz: building all targets"
start=$(date +%s)
# shellcheck disable=SC2086
if ! cargo fuzz build --fuzz-dir . ${FUZZ_BUILD_ARGS:-}; then
  echo "fuzz: FAILED: a fuzz target does not build (fuzz/fuzz_targets/)" >&2
  exit 1
fi
echo "fuzz: built in $(( $(date +%s) - start )) s"
[ "$build_only" = 1 ] && exit 0

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir .)
fi

# Scratch: corpus copies, and the unpack target's restore directories (tmpfs when there).
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
scratch=$(mktemp -d "$base/offbox-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export OFFBOX_FUZZ_SCRATCH=$scratch

# Longest input per target: room for a few segments and a signature (archives), for a 64 KiB
# tar stream (unpack); text parsers need less. Larger inputs only slow the runs down.
max_len() {
  case $1 in
    header | segments | trailer) echo 16384 ;;
    unpack) echo 65536 ;;
    *) echo 4096 ;;
  esac
}

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$scratch/corpus/$t" "artifacts/$t"
  [ -d "corpus/$t" ] && cp -R "corpus/$t/." "$scratch/corpus/$t/"
  log=${FUZZ_LOG_DIR:-$scratch}/$t.log
  mkdir -p "$(dirname "$log")"
  if [ "$secs" = 0 ]; then echo "fuzz: $t (${FUZZ_ARGS:-no limit})"; else echo "fuzz: $t for ${secs} s"; fi
  # -timeout: seconds per input; -rss_limit_mb: memory; leaks are reported by LeakSanitizer.
  # shellcheck disable=SC2086
  if cargo fuzz run --fuzz-dir . ${FUZZ_BUILD_ARGS:-} "$t" "$scratch/corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
      -seed="${FUZZ_SEED:-0}" -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1; then
    grep -E '^Done|stat::number_of_executed_units|stat::peak_rss_mb' "$log" || true
    grep -E '^#[0-9]+' "$log" | tail -n 1 || true
  else
    echo "fuzz: FAILED: $t (the input is in fuzz/artifacts/$t/; the log's cause, then its end)" >&2
    grep -m 5 -E 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$log" >&2 || true
    grep -m 5 -A 3 'panicked at' "$log" >&2 || true
    tail -n 40 "$log" >&2
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED targets: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} target(s) ran without a crash, leak or timeout"
