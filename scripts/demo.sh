#!/usr/bin/env bash
# The CSI walkthrough scenario (docs/architecture.md) on a fresh machine: a local OpenBao dev
# server and its Vault-side setup, `secretdrop init` rendering into a tmpfs directory, what the
# pod sees, then `secretdrop sidecar` rotating a changed secret. Everything it writes (the demo
# directory on /dev/shm, the harness's temporary files) is removed on exit, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
cargo build --release --locked --bin secretdrop --example demo >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/secretdrop-demo.XXXXXX")
demo_pid=
cleanup() {
    if [ -n "$demo_pid" ]; then
        kill "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
    rm -rf "$work" /dev/shm/secretdrop-demo
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# In a session of its own, so Ctrl-C reaches this script alone: the OpenBao server the demo
# started would otherwise stop on the same SIGINT while the demo still talks to it (a panic on
# the screen). cleanup stops the demo; its servers die with it.
TMPDIR="$work" setsid "${CARGO_TARGET_DIR:-target}"/release/examples/demo &
demo_pid=$!
wait "$demo_pid"
