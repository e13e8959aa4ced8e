# shellcheck shell=bash
# Timed go runs for scripts/bench.sh and scripts/bench-stream.sh: a module's source from
# the Go module proxy (once per machine, then offline), the GOCACHEPROG wrapper that
# records the cache program's stats and CPU per session, and one bounded go command.
# Source it after lib/common.sh (it uses WORK_DIR, GO_BIN, BIN, die, note).

SRC_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/gocacheprog-s3/bench-src"
MODCACHE=$SRC_CACHE/gomodcache
GO_TIMEOUT=${BENCH_GO_TIMEOUT:-1800}

# mod_env: the environment of every go command on a module: its own module cache,
# offline, go.sum as shipped.
mod_env() { export GOMODCACHE="$MODCACHE" GOFLAGS=-mod=readonly GOPROXY=off GOSUMDB=off; }

# prepare_module MODULE@VERSION PKGS...: sets MOD_SRC, a writable copy of the module's
# source whose dependencies are all in $MODCACHE, and checks that PKGS (and their tests)
# resolve offline. Only the first run on a machine uses the network (the Go module proxy;
# no checksum database: the module's own go.sum is the reference).
prepare_module() {
	local module=$1 path=${1%@*} version=${1##*@} dir tmp empty
	shift
	{ [ "$path" != "$module" ] && [ -n "$version" ]; } || die "a benchmark module must be module@version, not '$module'"
	MOD_SRC="$SRC_CACHE/$path@$version"
	case "$MOD_SRC" in *[[:space:]]*) die "module source path has spaces ($MOD_SRC)" ;; esac
	if [ "$(cat "$MOD_SRC/.bench-ready" 2>/dev/null || true)" = "$module" ]; then
		note "module $module: source in $MOD_SRC"
	else
		note "module $module: fetching its source and dependencies (once per machine) into $SRC_CACHE"
		mkdir -p "$MODCACHE" "$WORK_DIR/empty"
		empty="$WORK_DIR/empty"
		dir=$(cd "$empty" && GOMODCACHE="$MODCACHE" GOFLAGS='' GOPROXY=https://proxy.golang.org GOSUMDB=off \
			"$GO_BIN" mod download -json "$module" | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error", "no Dir")))') ||
			die "go mod download $module failed"
		tmp="$MOD_SRC.tmp"
		chmod -R u+w "$tmp" 2>/dev/null || true
		rm -rf "$tmp" "$MOD_SRC"
		mkdir -p "$(dirname "$MOD_SRC")"
		cp -R "$dir" "$tmp"
		chmod -R u+w "$tmp"
		(cd "$tmp" && GOMODCACHE="$MODCACHE" GOFLAGS=-mod=readonly GOPROXY=https://proxy.golang.org GOSUMDB=off \
			"$GO_BIN" mod download) >&2 || die "go mod download (dependencies of $module) failed"
		mv "$tmp" "$MOD_SRC"
		printf '%s\n' "$module" >"$MOD_SRC/.bench-ready"
	fi
	# go's module index does not cache directories modified in the last little while.
	find "$MOD_SRC" -exec touch -h -d '2 hours ago' {} +
	# Everything the timed builds need must be there without the network.
	if ! (cd "$MOD_SRC" && mod_env && "$GO_BIN" list -deps -test "$@" >/dev/null 2>"$WORK_DIR/mod-list.err"); then
		tail -n 5 "$WORK_DIR/mod-list.err" >&2
		if grep -q 'requires go' "$WORK_DIR/mod-list.err"; then
			die "module $module needs a newer go than $GO_BIN (above)"
		fi
		die "module $module does not resolve offline in $MOD_SRC (above; remove that directory to fetch it again)"
	fi
}

# warm_module_sources DIR PKGS...: read the packages' sources once, so the first timed
# build does not also pay for cold disk reads.
warm_module_sources() {
	local src=$1
	shift
	(cd "$src" && mod_env && GOCACHE="$WORK_DIR/list-cache" "$GO_BIN" list -deps -test -f '{{.Dir}}' "$@") |
		sort -u | while read -r d; do
		[ -z "$d" ] || find "$d" -maxdepth 1 -type f -exec cat {} + >/dev/null 2>&1 || true
	done
}

# wrapper RUN_DIR: a GOCACHEPROG wrapper that runs the binary under /usr/bin/time (one
# "%M %U %S" line per session appended to RUN_DIR/time.txt) with a stats file per session.
wrapper() {
	local w="$1/wrap.sh"
	cat >"$w" <<-WRAP
		#!/bin/sh
		exec /usr/bin/time -a -o $1/time.txt -f '%M %U %S' $BIN --stats-file $1/stats-\$\$.json "\$@"
	WRAP
	chmod +x "$w"
	printf '%s' "$w"
}

# go_cmd LOG TIER PROG ARGS...: one go command (GOCACHEPROG=PROG unless PROG is empty),
# bounded by $GO_TIMEOUT.
go_cmd() {
	local log=$1 tier=$2 prog=$3
	shift 3
	printf '+ go %s\n' "$*" >>"$log"
	if [ -n "$prog" ]; then
		GOCACHE="$tier" GOCACHEPROG="$prog" timeout --foreground -k 10 "$GO_TIMEOUT" "$GO_BIN" "$@" >>"$log" 2>&1
	else
		GOCACHE="$tier" timeout --foreground -k 10 "$GO_TIMEOUT" "$GO_BIN" "$@" >>"$log" 2>&1
	fi
}

# elapsed_ms START: seconds since START with 3 decimals (a warm std build is ~0.2 s).
elapsed_ms() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }

# fresh_dir DIR: DIR, empty (go's module cache files are read-only).
fresh_dir() {
	chmod -R u+w "$1" 2>/dev/null || true
	rm -rf "$1"
	mkdir -p "$1"
}

# binary_commit: the short commit of the tree the binary was built from, "+dirty" when
# src/ or Cargo.* have uncommitted changes.
binary_commit() {
	local c
	c=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	[ -z "$(git -C "$REPO_ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] || c="$c+dirty"
	printf '%s' "$c"
}

# bench_usage: the running benchmark script's usage (its header's lines 2-6).
bench_usage() {
	local script=${BASH_SOURCE[-1]}
	sed -n '2,6p' "$script" | sed 's/^# \{0,1\}//'
	echo "(see the header of $script for the BENCH_* variables)"
}

# bench_options SCRIPT ARGS...: the benchmarks' shared command line: --quick (QUICK=1; the
# caller sets its default), --out FILE (OUT_FILE, made absolute), -h; COMMAND_LINE records
# the run for the report.
# shellcheck disable=SC2034 # QUICK and OUT_FILE are read by the calling script
bench_options() {
	COMMAND_LINE="scripts/$1${2:+ ${*:2}}"
	shift
	OUT_FILE=
	while [ $# -gt 0 ]; do
		case "$1" in
		--quick) QUICK=1 ;;
		--out)
			[ $# -ge 2 ] || {
				bench_usage >&2
				exit 2
			}
			OUT_FILE=$2
			shift
			;;
		--out=*) OUT_FILE=${1#--out=} ;;
		-h | --help)
			bench_usage
			exit 0
			;;
		*)
			bench_usage >&2
			exit 2
			;;
		esac
		shift
	done
	if [ -n "$OUT_FILE" ]; then
		mkdir -p "$(dirname "$OUT_FILE")"
		OUT_FILE="$(cd "$(dirname "$OUT_FILE")" && pwd)/$(basename "$OUT_FILE")"
	fi
}

# bench_record_vars VAR...: each of these variables that is set, in front of COMMAND_LINE.
bench_record_vars() {
	local v
	for v in "$@"; do
		[ -z "${!v:-}" ] || COMMAND_LINE="$v=${!v} $COMMAND_LINE"
	done
}
