#!/usr/bin/env bash
# tests/run.sh — the test command: installs what the tests need, then runs every test
# (unit, format vectors, and the integration suites against real SoftHSM2 and swtpm).
#
# Usage: tests/run.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh
# The builds show cargo's progress: the first one takes a few minutes.
step() { printf '\n== tests/run.sh: %s\n' "$*" >&2; }
step "build the rescue kit (no default features: no TPM, no transports) for tests/rescue_kit.rs"
cargo build --no-default-features --bin offbox
mkdir -p target/rescue-kit && cp target/debug/offbox target/rescue-kit/offbox
export OFFBOX_RESCUE_BIN="$PWD/target/rescue-kit/offbox"
step "build offbox and every test"
cargo build --all-targets
# Every suite runs even after one fails, so that one run shows every failure.
status=0
step "unit, vector and integration tests"
cargo test --all-targets --no-fail-fast "$@" 2>&1 || status=$?
# --all-targets leaves the doc-tests out; they run on their own (without the extra
# arguments, which may select targets that --doc cannot be mixed with).
step "doc-tests"
cargo test --doc --no-fail-fast 2>&1 || status=$?
exit "$status"
