#!/usr/bin/env bash
# The blog-post scenario on a fresh machine: a local OpenBao dev server, the post's secret and
# policy, `secretdrop init` rendering into a tmpfs directory, and what the pod sees.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
cargo build --release --locked --bin secretdrop --example demo >&2
exec target/release/examples/demo
