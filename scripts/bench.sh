#!/usr/bin/env bash
# Benchmark (not a test): secretdrop init vs bao agent on one OpenBao dev server, same run.
# Measures the static release binary that the image ships.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
bin=$(scripts/build-static.sh)
cargo build --release --locked --example bench >&2
SECRETDROP_BIN="$PWD/$bin" exec target/release/examples/bench
