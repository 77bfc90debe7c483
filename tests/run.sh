#!/usr/bin/env bash
# tests/run.sh — the test command: installs what the tests need, then runs every test
# (unit, format vectors, and the integration suites against real SoftHSM2 and swtpm).
#
# Usage: tests/run.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh
# The rescue kit (no default features: no TPM, no transports) for tests/rescue_kit.rs.
cargo build --quiet --no-default-features --bin offbox
mkdir -p target/rescue-kit && cp target/debug/offbox target/rescue-kit/offbox
export OFFBOX_RESCUE_BIN="$PWD/target/rescue-kit/offbox"
cargo build --quiet --all-targets
# Every suite runs even after one fails, so that one run shows every failure.
cargo test --all-targets --no-fail-fast "$@" 2>&1
