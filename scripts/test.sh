#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (Garage,
# s3s-fs, moto, boto3, Go >= 1.24, shellcheck, pyflakes, clippy/rustfmt, the musl target
# and the MSRV toolchain; scripts/dist.sh adds the cross targets, zig, mingw-w64;
# build-cross.sh qemu-user and wine; image.sh buildah, skopeo, umoci), then checks
# formatting, lints (the scripts too), the docs, the packaged crate and the declared
# MSRV, builds the release archives of all five targets, checks the workflows, tests the
# GitHub Action and the image, runs the unit tests on Windows under wine, and runs every
# test. Idempotent; quick when everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
# shellcheck source=scripts/lib/go.sh
. scripts/lib/go.sh
ensure_go

for component in clippy rustfmt; do
	rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

cargo fmt --all -- --check
scripts/check-scripts.sh
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet
# `cargo install`: the packaged crate holds only what a build needs (no tests, test data
# or scripts; Cargo.toml's `include`) and builds on its own.
packaged=$(cargo package --locked --allow-dirty --list 2>/dev/null)
if grep -Ev '^(src/.+\.rs|Cargo\.toml|Cargo\.toml\.orig|Cargo\.lock|README\.md|LICENSE|\.cargo_vcs_info\.json)$' <<<"$packaged"; then
	echo "test.sh: the packaged crate holds the files above, which a build does not need" >&2
	exit 1
fi
cargo package --locked --allow-dirty --quiet
# The rust-version Cargo.toml declares must build what it says.
msrv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
rustup toolchain list | grep -q "^$msrv" || rustup toolchain install "$msrv" --profile minimal
cargo "+$msrv" check --locked --workspace --all-targets --quiet
# The release archives of the five targets, reproducible (scripts/dist.sh). Its binaries
# are what the tests run: the x86_64 musl one in an empty root (tests/static_binary.rs,
# through scripts/build-static.sh, then a no-op build), the others under qemu-user and
# wine or from their headers (tests/cross_*.rs; build-cross.sh installs qemu and wine).
scripts/dist.sh >/dev/null
for target in aarch64-unknown-linux-musl x86_64-pc-windows-gnu; do
	scripts/build-cross.sh "$target" >/dev/null
done
# The release workflows (actionlint), the GitHub Action on a runner laid out here against
# Garage, and the published image built from the archives with buildah and checked.
scripts/check-workflows.sh
scripts/test-action.sh
scripts/image.sh >/dev/null
# The unit tests on Windows, under wine (scripts/wine.sh, in a prefix of their own).
cargo clippy --locked --target x86_64-pc-windows-gnu --all-features --lib --bins -- -D warnings
wine_prefix=$(mktemp -d "${TMPDIR:-/tmp}/gocacheprog-s3-wine.XXXXXX")
trap 'rm -rf "$wine_prefix"' EXIT
WINEPREFIX=$wine_prefix CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$PWD/scripts/wine.sh" \
	cargo test --locked --target x86_64-pc-windows-gnu --lib
# --workspace: the fault proxy's own tests (tests/faultproxy) too.
cargo test --locked --workspace --all-targets
