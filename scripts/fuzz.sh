#!/usr/bin/env bash
# Coverage-guided fuzzing of the input boundaries with cargo-fuzz (libFuzzer), SECONDS per target.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      # default: 60 s each of config admission vault_response
#
# The target bodies are secretdrop::fuzz_entry (src/fuzz_entry.rs); tests/fuzz_smoke.rs runs the
# same bodies briefly in `cargo test`. Works on stable Rust: RUSTC_BOOTSTRAP=1 lets it accept the
# -Z flags cargo-fuzz passes. Findings land in fuzz/artifacts/<target>/ and are minimized with
# `cargo fuzz tmin`; the corpus grows in fuzz/corpus/<target>/ (neither is committed; the seeds
# in fuzz/seeds/<target>/ are).
#
# Environment:
#   FUZZ_SANITIZER  address (default) or none: ASan slows runs ~2x; none also builds where the
#                   ASan runtime is missing
#   FUZZ_MAX_LEN    longest input in bytes (default 16384: deep YAML nesting is quadratic in
#                   serde_yaml, and longer inputs mostly measure that)
#   FUZZ_TIMEOUT    seconds one input may take before libFuzzer calls it a hang (default 10)
#   FUZZ_JOBS       parallel fuzzing processes per target (default 1; the machines have 2 cores)
#   FUZZ_STOP       1: stop a target at its first finding; default 0 keeps going past findings
#                   (libFuzzer's fork mode), so a known bug does not hide the next one
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config admission vault_response)
sanitizer=${FUZZ_SANITIZER:-address}
max_len=${FUZZ_MAX_LEN:-16384}
timeout=${FUZZ_TIMEOUT:-10}
jobs=${FUZZ_JOBS:-1}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: cargo install cargo-fuzz --locked" >&2
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
mode=()
if [ "${FUZZ_STOP:-0}" = 1 ]; then
    # -jobs runs workers in subprocesses that log to fuzz-N.log; one job stays in the foreground.
    [ "$jobs" -le 1 ] || mode=(-jobs="$jobs" -workers="$jobs")
else
    mode=(-fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi

failed=()
for t in "${targets[@]}"; do
    corpus=fuzz/corpus/$t
    artifacts=fuzz/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    before=$(find "$artifacts" -type f | wc -l)
    echo "fuzz: $t for ${seconds}s (sanitizer $sanitizer)" >&2
    # New inputs go to the first corpus directory; the seeds are only read.
    if ! cargo fuzz run --sanitizer "$sanitizer" "$t" "$corpus" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout="$timeout" -max_len="$max_len" \
        -rss_limit_mb=4096 -dict="fuzz/dicts/$t.dict" -print_final_stats=1 "${mode[@]}"; then
        failed+=("$t")
    fi
    # Fork mode and -jobs report findings as files, not in the exit status.
    after=$(find "$artifacts" -type f | wc -l)
    if [ "$after" -gt "$before" ]; then
        [[ " ${failed[*]} " == *" $t "* ]] || failed+=("$t")
        # Minimize the newest few (fork mode saves every crashing input, duplicates included).
        for f in $(ls -t "$artifacts" | grep -v '^minimized-' | head -"${FUZZ_MINIMIZE:-3}"); do
            echo "fuzz: $t found $artifacts/$f; minimizing" >&2
            cargo fuzz tmin --sanitizer "$sanitizer" -r 2000 "$t" "$artifacts/$f" 2>&1 |
                grep -E '^(thread|panicked|CRASH_MIN|.*panicked at)' | tail -3 >&2 || true
        done
    fi
done
rm -f fuzz-*.log

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failures in ${failed[*]}; inputs in fuzz/artifacts/ (replay one with" >&2
    echo "      RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer TARGET fuzz/artifacts/TARGET/FILE)" >&2
    exit 1
fi
echo "fuzz: no failures in ${targets[*]}" >&2
