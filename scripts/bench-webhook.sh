#!/usr/bin/env bash
# Benchmark (not a test): webhook admission latency at 500 requests/s over TLS, and its RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
bin=$(scripts/build-static.sh)
cargo build --release --locked --example bench_webhook >&2
SECRETDROP_BIN="$PWD/$bin" exec target/release/examples/bench_webhook
