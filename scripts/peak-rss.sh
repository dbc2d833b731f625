#!/usr/bin/env bash
# Builds the peak-RSS launcher (scripts/peak-rss.c) static with musl-gcc and prints its path.
# The benchmarks spawn measured commands through it so that a peak RSS is the command's own.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
out=target/bench/peak-rss
if [ ! -x "$out" ] || [ scripts/peak-rss.c -nt "$out" ]; then
    musl-gcc -static -Os -s -o "$out" scripts/peak-rss.c
fi
echo "$PWD/$out"
