#!/usr/bin/env bash
# A release binary of gocacheprog-s3 for another platform, for the tests that run it
# under qemu-user or wine, or read its header (tests/cross_*.rs).
#
#   scripts/build-cross.sh TARGET     builds, prints the binary's path on stdout
#
# TARGET: aarch64-unknown-linux-musl, x86_64-apple-darwin, aarch64-apple-darwin or
# x86_64-pc-windows-gnu. The build is scripts/dist.sh's (scripts/lib/build.sh: the same
# toolchain and flags, so the tests run the shipped binary and cargo builds it once).
# Also installs what the tests run the binaries with: qemu-user-static (aarch64) and
# wine64 (Windows), when missing.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=scripts/lib/build.sh
. "$LIB_DIR/build.sh"
SCRIPT_NAME="build-cross"

target=${1:?usage: scripts/build-cross.sh TARGET}
case "$target" in
x86_64-pc-windows-gnu)
	apt_ensure wine wine
	apt_ensure /usr/lib/wine/wine64 wine64
	;;
aarch64-unknown-linux-musl) apt_ensure qemu-aarch64-static qemu-user-static ;;
x86_64-apple-darwin | aarch64-apple-darwin) ;;
*) die "unknown target $target (aarch64-unknown-linux-musl, x86_64-apple-darwin, aarch64-apple-darwin, x86_64-pc-windows-gnu)" ;;
esac
build_target "$target"
note "$BIN: $(stat -c %s "$BIN") bytes"
printf '%s\n' "$BIN"
