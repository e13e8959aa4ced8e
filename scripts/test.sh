#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (Garage,
# s3s-fs, moto, boto3, Go >= 1.24, clippy/rustfmt), then checks formatting and lints and
# runs every test. Idempotent; quick when everything is already installed.
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
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
