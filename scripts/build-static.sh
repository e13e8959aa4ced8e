#!/usr/bin/env bash
# The static binary: a x86_64-unknown-linux-musl release build of gocacheprog-s3 that
# needs no libc, no loader and no CA files (it carries its own roots), for scratch and
# distroless images and air-gapped hosts.
#
#   scripts/build-static.sh           build (installing the rustup target and musl-tools
#                                     when missing), check it, print its path on stdout
#
# Checks that `file` says statically linked, that `ldd` finds nothing to load, and that
# the size is within the budget docs/development.md states (STATIC_SIZE_BUDGET bytes, 3.5 MiB).
# The build is scripts/dist.sh's for that target (scripts/lib/build.sh: same flags, so
# whichever runs second is a no-op cargo build). The Dockerfile's build stage runs it.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=scripts/lib/build.sh
. "$LIB_DIR/build.sh"
SCRIPT_NAME=build-static
TARGET=x86_64-unknown-linux-musl

build_target "$TARGET"
check_binary "$TARGET" "$BIN"
printf '%s\n' "$BIN"
