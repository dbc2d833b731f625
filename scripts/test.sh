#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (OpenBao, hadolint,
# kubectl, moto, the musl target), checks formatting and lints, then runs every test against a
# real OpenBao and PostgreSQL.
#
# Prerequisites from the distribution (Debian package names; installed here with apt-get when
# run as root, otherwise named and the script stops): a Rust toolchain (rustup), python3 with
# pip and venv support (python3-pip), openssl, curl, util-linux (unshare, mount), binutils
# (readelf), gcc, postgresql (initdb and postgres; PG_BIN_DIR may point at their directory), and
# qemu-user (qemu-aarch64 runs the aarch64 static build in tests/static_binary.rs),
# docker-registry (the image registry of tests/registry.rs and tests/webhook_synced.rs) and
# apache2-utils (htpasswd, for that registry's Basic auth).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in cargo python3 openssl curl unshare mount readelf cc qemu-aarch64 docker-registry \
    htpasswd; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
python3 -m pip --version >/dev/null 2>&1 || missing+=(pip)
pg_found() {
    [ -n "${PG_BIN_DIR:-}" ] && [ -x "$PG_BIN_DIR/initdb" ] && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && return 0
    command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]
}
pg_found || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    declare -A package=([python3]=python3 [pip]=python3-pip [openssl]=openssl [curl]=curl
        [unshare]=util-linux [mount]=mount [readelf]=binutils [cc]=gcc [postgresql]=postgresql
        [qemu-aarch64]=qemu-user [docker-registry]=docker-registry [htpasswd]=apache2-utils)
    packages=()
    for m in "${missing[@]}"; do
        if [ "$m" = cargo ]; then
            echo "test.sh: cargo not found: install a Rust toolchain (rustup)" >&2
            exit 1
        fi
        packages+=("${package[$m]}")
    done
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: apt-get install ${packages[*]}" >&2
        apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null && apt-get install -y -qq "${packages[@]}" >/dev/null; }
    else
        echo "test.sh: missing ${missing[*]}; install (Debian names): ${packages[*]}" >&2
        exit 1
    fi
fi

source scripts/tools.sh
scripts/build-static.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
# Each test process keeps its scratch directory (server logs, keys) for inspection until the
# next run sweeps it; after a green run there is nothing to inspect.
for d in "${TMPDIR:-/tmp}"/secretdrop-harness-*; do
    [ -d "$d" ] || continue
    pid=${d##*/secretdrop-harness-}
    kill -0 "$pid" 2>/dev/null || rm -rf "$d"
done
