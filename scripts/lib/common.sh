# shellcheck shell=bash
# Shared pieces of scripts/demo.sh and scripts/bench.sh: dependency checks and
# installs, the release build, a throw-away Garage on 127.0.0.1, timed
# `go build` runs, and cleanup of every process and temp dir on exit.
# Source it from a script that runs with `set -euo pipefail`.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LIB_DIR="$REPO_ROOT/scripts/lib"
export LC_ALL=C # "." as the decimal point in $EPOCHREALTIME and awk
CARGO_BIN_DIR="${CARGO_HOME:-$HOME/.cargo}/bin"
GARAGE_VERSION=2.5.0
# shellcheck source=scripts/lib/go.sh
. "$LIB_DIR/go.sh"

WORK_DIR=""
CLEANUP_PIDS=()
APT_UPDATED=0

say() { printf '%s\n' "$*"; }
note() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
	exit 1
}

# ---- lifetime -------------------------------------------------------------

# common_init NAME: temp dir + traps. Everything the script starts in the
# background is registered with track_pid and ended on exit, Ctrl-C or failure.
common_init() {
	SCRIPT_NAME=$1
	WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gocacheprog-s3-$1.XXXXXX")
	case "$WORK_DIR" in *[[:space:]]*) die "temp dir path has spaces ($WORK_DIR): set TMPDIR" ;; esac
	trap common_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

track_pid() { CLEANUP_PIDS+=("$1"); }

# stop_pid PID: TERM, wait up to 5 s, then KILL. Only our own children.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

common_cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	case "$rc" in 130 | 143) note "interrupted: stopping servers, removing $WORK_DIR" ;; esac
	for pid in "${CLEANUP_PIDS[@]}"; do stop_pid "$pid"; done
	if [ -n "$WORK_DIR" ] && [ -d "$WORK_DIR" ]; then
		if [ "${KEEP_WORK_DIR:-0}" = 1 ]; then
			note "kept $WORK_DIR"
		else
			chmod -R u+w "$WORK_DIR" 2>/dev/null || true # go's module cache is read-only
			rm -rf "$WORK_DIR"
		fi
	fi
	exit "$rc"
}

# ---- dependencies -----------------------------------------------------------

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		die "need root to run: $*"
	fi
}

# apt_ensure CMD PACKAGE: install the Debian package when CMD is missing.
apt_ensure() {
	command -v "$1" >/dev/null 2>&1 && return 0
	command -v apt-get >/dev/null || die "$1 is missing and there is no apt-get: install $2 by hand"
	if [ "$APT_UPDATED" = 0 ]; then
		note "apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		APT_UPDATED=1
	fi
	note "apt-get install $2"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

ensure_python() { apt_ensure python3 python3; }

# crate_version: the version Cargo.toml declares (the archives' and the image's).
crate_version() { sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO_ROOT/Cargo.toml" | head -n 1; }

# ensure_garage: sets GARAGE_BIN (garage 2.5.0; built with cargo if missing).
ensure_garage() {
	local g
	export PATH="$PATH:$CARGO_BIN_DIR"
	g=$(command -v garage 2>/dev/null || true)
	if [ -z "$g" ] || ! "$g" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
		note "garage $GARAGE_VERSION missing: installing it (cargo install, ~10 min on 2 cores)"
		bash "$REPO_ROOT/scripts/install-test-deps.sh" --only garage >&2
		g=$(command -v garage) || die "garage still not found after install-test-deps.sh"
	fi
	GARAGE_BIN=$g
}

# build_release: sets BIN. CACHEPROG_BIN=/path skips the build (use that binary).
build_release() {
	if [ -n "${CACHEPROG_BIN:-}" ]; then
		BIN=$CACHEPROG_BIN
	else
		export PATH="$PATH:$CARGO_BIN_DIR"
		command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"
		command -v cc >/dev/null || apt_ensure cc build-essential
		note "cargo build --release"
		(cd "$REPO_ROOT" && cargo build --release --quiet) >&2 || die "cargo build --release failed"
		BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/gocacheprog-s3"
		case "$BIN" in /*) ;; *) BIN="$REPO_ROOT/$BIN" ;; esac
	fi
	[ -x "$BIN" ] || die "no binary at $BIN"
	case "$BIN" in *[[:space:]]*) die "binary path has spaces ($BIN): GOCACHEPROG can't take it" ;; esac
}

# ---- garage -----------------------------------------------------------------

rand_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# garage_start: a single-node Garage on 127.0.0.1 with free ports, its data
# and log in $WORK_DIR/garage, a key and an empty bucket "cache". Exports the
# AWS_* variables for it; sets S3_PORT, BUCKET, GARAGE_LOG.
garage_start() {
	local dir="$WORK_DIR/garage" attempt ports s3 rpc admin rc=1
	BUCKET=cache
	GARAGE_LOG="$dir/garage.log"
	AWS_ACCESS_KEY_ID="GK$(rand_hex 12)"
	AWS_SECRET_ACCESS_KEY=$(rand_hex 32)
	export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION=garage
	unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_DEFAULT_REGION
	for attempt in 1 2 3; do
		rm -rf "$dir"
		mkdir -p "$dir"
		ports=$(python3 "$LIB_DIR/benchutil.py" free-ports 3)
		read -r s3 rpc admin <<<"$ports"
		sed -e "s|@DIR@|$dir|g" -e "s|@REPLICATION@|1|" -e "s|@RPC_PORT@|$rpc|g" -e "s|@S3_PORT@|$s3|" \
			-e "s|@ADMIN_PORT@|$admin|" -e "s|@RPC_SECRET@|$(rand_hex 32)|" \
			"$LIB_DIR/garage.toml.in" >"$dir/garage.toml"
		GARAGE_DEFAULT_ACCESS_KEY=$AWS_ACCESS_KEY_ID GARAGE_DEFAULT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
			GARAGE_DEFAULT_BUCKET=$BUCKET RUST_LOG=garage=warn \
			"$GARAGE_BIN" -c "$dir/garage.toml" server --single-node --default-bucket \
			</dev/null >"$GARAGE_LOG" 2>&1 &
		GARAGE_PID=$!
		track_pid "$GARAGE_PID"
		# Garage creates the key and bucket before it opens the S3 port, so any
		# HTTP answer there (403 to an unsigned GET) means ready.
		rc=0
		python3 "$LIB_DIR/benchutil.py" wait-http "$s3" "/$BUCKET" "$GARAGE_PID" 30 || rc=$?
		[ "$rc" = 0 ] && break
		stop_pid "$GARAGE_PID"
		if [ "$rc" = 2 ] && grep -qi "in use" "$GARAGE_LOG"; then
			note "garage: port taken, retrying ($attempt)"
			continue
		fi
		break
	done
	if [ "$rc" != 0 ]; then
		tail -n 20 "$GARAGE_LOG" >&2 || true
		die "garage did not start (rc $rc, log above)"
	fi
	S3_PORT=$s3
	export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$S3_PORT"
}

# build_proxy: sets PROXY_BIN (the dev binary faultproxy, built from this tree's
# tests/faultproxy crate, a workspace member).
build_proxy() {
	if [ -n "${FAULTPROXY_BIN:-}" ]; then
		PROXY_BIN=$FAULTPROXY_BIN
	else
		note "cargo build --release -p faultproxy"
		(cd "$REPO_ROOT" && cargo build --release --quiet -p faultproxy) >&2 ||
			die "could not build the faultproxy dev binary"
		PROXY_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/faultproxy"
		case "$PROXY_BIN" in /*) ;; *) PROXY_BIN="$REPO_ROOT/$PROXY_BIN" ;; esac
	fi
	[ -x "$PROXY_BIN" ] || die "no faultproxy binary at $PROXY_BIN"
}

# proxy_start DELAY_MS BANDWIDTH_MB: faultproxy ($PROXY_BIN) from 127.0.0.1:<free port>
# to Garage ($S3_PORT) adding DELAY_MS per round trip and capping each direction at
# BANDWIDTH_MB MB/s; sets PROXY_PORT and PROXY_STATS (its counters, for proxy_requests).
proxy_start() {
	local ms=$1 mbps=$2 out="$WORK_DIR/proxy-$1.out" err="$WORK_DIR/proxy-$1.err" pid i
	: >"$out"
	PROXY_STATS="$WORK_DIR/proxy-$1.stats"
	"$PROXY_BIN" --upstream "$S3_PORT" --listen 0 --delay-ms "$ms" --bandwidth-mbps "$mbps" \
		--parent-pid $$ --max-seconds 14400 --stats-file "$PROXY_STATS" </dev/null >"$out" 2>"$err" &
	pid=$!
	track_pid "$pid"
	PROXY_PORT=
	for ((i = 0; i < 100; i++)); do # up to 10 s
		PROXY_PORT=$(awk '$1 == "ready" { print $2; exit }' "$out" 2>/dev/null || true)
		[ -n "$PROXY_PORT" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$PROXY_PORT" ] || die "proxy ($ms ms) did not start: $(cat "$err")"
}

# proxy_requests STATS_FILE: the requests the proxy has forwarded so far (it rewrites the
# file within 100 ms of a change: wait that long after a run before reading).
proxy_requests() { awk '{ for (i = 1; i < NF; i++) if ($i == "requests") { print $(i + 1); exit } }' "$1" 2>/dev/null || echo 0; }

# ---- go builds --------------------------------------------------------------

# go_env: the clean, reproducible environment for every go command here.
go_env() {
	mkdir -p "$WORK_DIR/gopath" "$WORK_DIR/gotmp"
	export GOTOOLCHAIN=local CGO_ENABLED=0 GOPATH="$WORK_DIR/gopath" GOENV=off GOFLAGS=
	unset GOCACHEPROG GOROOT GOOS GOARCH GOEXPERIMENT
}

# warm_os_cache TARGETS...: read GOROOT's sources and tools and run `go list`
# once, so the first timed build does not also pay for cold disk reads.
warm_os_cache() {
	local goroot
	goroot=$("$GO_BIN" env GOROOT)
	find "$goroot/src" "$goroot/pkg/tool" -type f -print0 2>/dev/null | xargs -0 cat >/dev/null 2>&1 || true
	GOCACHE="$WORK_DIR/list-cache" "$GO_BIN" list -deps "$@" >/dev/null 2>&1 || true
}

now() { printf '%s' "$EPOCHREALTIME"; }
# elapsed START: seconds since START with 2 decimals.
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# timed_go_build GOCACHE_DIR GOCACHEPROG_VALUE TARGETS...: runs
# `go build TARGETS` (GOCACHEPROG unset when the value is empty) and sets
# LAST_SECS. Go's output goes to $WORK_DIR/go-N.log; on failure it is shown.
GO_RUNS=0
timed_go_build() {
	local cache=$1 prog=$2 start log rc=0
	shift 2
	GO_RUNS=$((GO_RUNS + 1))
	log="$WORK_DIR/go-$GO_RUNS.log"
	mkdir -p "$cache"
	start=$(now)
	if [ -n "$prog" ]; then
		GOCACHE="$cache" GOCACHEPROG="$prog" "$GO_BIN" build "$@" >"$log" 2>&1 || rc=$?
	else
		GOCACHE="$cache" "$GO_BIN" build "$@" >"$log" 2>&1 || rc=$?
	fi
	# shellcheck disable=SC2034 # read by the caller
	LAST_SECS=$(elapsed "$start")
	if [ "$rc" != 0 ]; then
		tail -n 30 "$log" >&2
		die "go build $* failed (exit $rc; GOCACHEPROG='$prog')"
	fi
}

# ratio A B: A/B with 1 decimal ("-" if B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.1f", a / b }'; }
