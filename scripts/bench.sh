#!/usr/bin/env bash
# Benchmark (not a test): secretdrop init vs bao agent on one OpenBao dev server, same run.
# Measures the static release binary that the image ships. Peak RSS is each command's own:
# both are spawned through scripts/peak-rss.c (built here, static), never straight from the
# benchmark process, whose size the kernel would fold into theirs; the run prints a control.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
bin=$(scripts/build-static.sh)
PEAK_RSS_BIN=$(scripts/peak-rss.sh)
export PEAK_RSS_BIN
cargo build --release --locked --example bench >&2
SECRETDROP_BIN="$(realpath "$bin")" exec "${CARGO_TARGET_DIR:-target}"/release/examples/bench
