#!/usr/bin/env bash
# Builds the release binary the distroless image ships: static (musl, no dynamic loader),
# stripped, size-checked. The tests run this script and distroless.Dockerfile runs it too, so
# what is tested is what is shipped.
#
# Output: target/static/secretdrop (under $CARGO_TARGET_DIR when that is set). Fails if the binary is dynamic or larger than MAX_BYTES.
# ARCH=aarch64 (or x86_64) builds for that architecture instead, into target/static/ARCH/secretdrop
# when it is not this machine's: a cross build whose C compiler and linker is Zig's (`zig cc`,
# from PyPI's ziglang, pinned below), which carries musl for every architecture.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_BYTES=${MAX_BYTES:-$((5 * 1024 * 1024))}
host=$(uname -m)
arch=${ARCH:-$host}
case "$arch" in
    x86_64|aarch64) ;;
    *) echo "build-static: ARCH=$arch: allowed are x86_64, aarch64" >&2; exit 2 ;;
esac
target="${arch}-unknown-linux-musl"
ZIGLANG_VERSION=0.17.1

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "build-static: adding Rust target $target" >&2
    rustup target add "$target" >&2
fi
if [ "$arch" != "$host" ]; then
    python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('ziglang') != '$ZIGLANG_VERSION')" 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "ziglang==$ZIGLANG_VERSION" >&2
    cc_var="CC_${target//-/_}"
    export "$cc_var=$PWD/scripts/zig-cc"
    export "AR_${target//-/_}=$PWD/scripts/zig-ar"
    export "CARGO_TARGET_$(tr '[:lower:]-' '[:upper:]_' <<<"$target")_LINKER=$PWD/scripts/zig-cc"
    export ZIG_TARGET="${arch}-linux-musl"
elif ! command -v musl-gcc >/dev/null 2>&1; then
    # ring's C and assembly parts need a musl C compiler.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "build-static: installing musl-tools" >&2
        apt-get install -y -qq musl-tools >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq musl-tools >/dev/null; }
    else
        echo "build-static: musl-gcc not found; install your distribution's musl-tools" >&2
        exit 1
    fi
fi

# Run from `cargo test`, the environment carries the outer crate's CARGO_MANIFEST_DIR,
# CARGO_PKG_*...; ring's build script would see them change and force a full rebuild.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^CARGO_(MANIFEST_|PKG_|CRATE_|BIN_|PRIMARY_|TARGET_TMPDIR)' || true)

if [ "$arch" = "$host" ]; then
    export "CC_${target//-/_}=musl-gcc"
fi
# The static build allocates with mimalloc (src/main.rs; musl's own allocator cost 1.7x the
# CPU of glibc's per webhook request, docs/benchmarks.md). Arenas are committed as they are
# used, not eagerly: eager commit kept 33-47 MiB resident in the webhook under load, 6 MiB
# without. (Its purge delay has no build-time default; src/main.rs sets it.) Arenas are reserved
# 64 MiB at a time rather than 1 GiB: a short-lived `init` then initialises a far smaller arena
# bitmap at start (about 40 fewer page faults, a fifth of its own CPU before the first request;
# docs/benchmarks.md), and a larger process simply reserves more arenas.
cflags_var="CFLAGS_${target//-/_}"
export "$cflags_var=-DMI_DEFAULT_ARENA_EAGER_COMMIT=0 -DMI_DEFAULT_ARENA_RESERVE=65536L -fno-asynchronous-unwind-tables -fno-unwind-tables"
# Size (docs/benchmarks.md has the bytes of each): with panic = "abort" nothing unwinds, so no
# unwind tables for our code (a panic's backtrace, with RUST_BACKTRACE set, stops at the
# standard library's frames); and relocations packed (RELR), which musl's static-PIE start-up
# applies, so the binary stays position-independent (ASLR).
rustflags_var="CARGO_TARGET_$(tr '[:lower:]-' '[:upper:]_' <<<"$target")_RUSTFLAGS"
if [ "$arch" = "$host" ]; then
    export "$rustflags_var=-C force-unwind-tables=no -C link-arg=-Wl,-z,pack-relative-relocs"
else
    # Zig's linker brings musl's start files itself: Rust's own would be linked twice.
    export "$rustflags_var=-C force-unwind-tables=no -C link-self-contained=no"
fi
cargo build --release --locked --target "$target" >&2

out=${CARGO_TARGET_DIR:-target}
if [ "$arch" = "$host" ]; then
    dest=$out/static
else
    dest=$out/static/$arch
fi
mkdir -p "$dest"
cp "$out/$target/release/secretdrop" "$dest/secretdrop"
bin=$dest/secretdrop

if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
    echo "build-static: $bin is dynamically linked" >&2
    exit 1
fi
if readelf -S "$bin" | grep -q '\.symtab'; then
    echo "build-static: $bin is not stripped" >&2
    exit 1
fi
size=$(stat -c %s "$bin")
echo "build-static: $bin $size bytes ($(awk "BEGIN{printf \"%.2f\", $size/1048576}") MiB, limit $(awk "BEGIN{printf \"%.2f\", $MAX_BYTES/1048576}") MiB)" >&2
if [ "$size" -gt "$MAX_BYTES" ]; then
    echo "build-static: binary is larger than the limit" >&2
    exit 1
fi
echo "$bin"
