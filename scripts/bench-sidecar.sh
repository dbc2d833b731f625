#!/usr/bin/env bash
# Benchmark (not a test): secretdrop sidecar vs resident bao agent, same secrets, same OpenBao:
# requests over a simulated pod hour, idle CPU and wake-ups, steady-state RSS. About 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
bin=$(scripts/build-static.sh)
cargo build --release --locked --example bench_sidecar >&2
SECRETDROP_BIN="$(realpath "$bin")" exec "${CARGO_TARGET_DIR:-target}"/release/examples/bench_sidecar
