#!/usr/bin/env bash
# The static binary: a x86_64-unknown-linux-musl release build of gocacheprog-s3 that
# needs no libc, no loader and no CA files (it carries its own roots), for scratch and
# distroless images and air-gapped hosts.
#
#   scripts/build-static.sh           build (installing the rustup target and musl-tools
#                                     when missing), check it, print its path on stdout
#
# Checks that `file` says statically linked, that `ldd` finds nothing to load, and that
# the size is within the budget the README states (STATIC_SIZE_BUDGET bytes, 3.5 MiB).
# Idempotent: a second run is a no-op cargo build. The Dockerfile's build stage runs it.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
SCRIPT_NAME=build-static
TARGET=x86_64-unknown-linux-musl
BUDGET=${STATIC_SIZE_BUDGET:-3670016}

export PATH="$PATH:$CARGO_BIN_DIR"
command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"
if command -v rustup >/dev/null; then
	if ! rustup target list --installed | grep -qx "$TARGET"; then
		note "rustup target add $TARGET"
		rustup target add "$TARGET" >&2
	fi
else
	note "no rustup: assuming the toolchain has the $TARGET standard library"
fi
# ring's C code is compiled with musl-gcc.
apt_ensure musl-gcc musl-tools
apt_ensure file file
command -v cc >/dev/null || apt_ensure cc build-essential

note "cargo build --release --target $TARGET"
(cd "$REPO_ROOT" && cargo build --release --locked --quiet --target "$TARGET" --bin gocacheprog-s3) >&2 ||
	die "cargo build --target $TARGET failed"
BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$TARGET/release/gocacheprog-s3"
case "$BIN" in /*) ;; *) BIN="$REPO_ROOT/$BIN" ;; esac
[ -x "$BIN" ] || die "no binary at $BIN"

described=$(file -b "$BIN")
case "$described" in
*"statically linked"* | *"static-pie linked"*) ;;
*) die "$BIN is not static: file says: $described" ;;
esac
# ldd exits non-zero on a static binary; only what it prints matters.
loader=$(ldd "$BIN" 2>&1 || true)
case "$loader" in
*"not a dynamic executable"* | *"statically linked"*) ;;
*) die "$BIN loads shared libraries: ldd says: $loader" ;;
esac
size=$(stat -c %s "$BIN")
[ "$size" -le "$BUDGET" ] || die "$BIN is $size bytes, over the $BUDGET-byte budget (README, \"Static binary\")"
note "$BIN: $size bytes (budget $BUDGET), $described"
printf '%s\n' "$BIN"
