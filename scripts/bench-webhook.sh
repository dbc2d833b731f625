#!/usr/bin/env bash
# Benchmark (not a test): webhook admission latency over TLS, its CPU per request and its RSS.
# RATES (default 500) and RATE_SECONDS (default 10) choose the open-loop rates; several rates also
# give the capacity at p99 < 10 ms, e.g. RATES=1000,2000,3000,4000,5000 scripts/bench-webhook.sh
# (not SECONDS: bash keeps its own variable of that name).
# SECRETDROP_BIN picks the binary (default: the static build, made here).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
bin=${SECRETDROP_BIN:-$(realpath "$(scripts/build-static.sh)")}
cargo build --release --locked --example bench_webhook >&2
SECRETDROP_BIN="$bin" exec "${CARGO_TARGET_DIR:-target}"/release/examples/bench_webhook
