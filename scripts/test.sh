#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (OpenBao, hadolint,
# the musl target), checks formatting and lints, then runs every test against a real OpenBao.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
scripts/build-static.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
