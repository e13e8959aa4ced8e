#!/usr/bin/env bash
# gocacheprog-s3 benchmark: figures, not pass/fail. In one run, for
# `go build $BENCH_TARGET` (default std):
#   - plain GOCACHE, cold and warm;
#   - through the cache, local only, cold and warm (warm vs plain warm = the
#     protocol overhead);
#   - through the cache with a Garage bucket on 127.0.0.1, cold (fills the
#     bucket) and warm from the bucket on an empty local tier: Garage directly,
#     and through lib/latency_proxy.py at 0 ms and at a simulated round trip
#     (default 20 ms);
#   - peak RSS of the cache program in each of those builds (/usr/bin/time);
#   - start-up time to the handshake line (N spawns, median and p90);
#   - the binary's size.
# Prints a markdown table at the end. ~10-15 min for std on 2 cores.
#
# Env: BENCH_TARGET="std" (space-separated packages), BENCH_QUICK=1 (target
# "fmt net/http", 1 warm run: a fast check), BENCH_WARM_RUNS=3 (warm builds
# repeated, the median shown), BENCH_LATENCY_MS=20, BENCH_STARTUP_N=50,
# KEEP_WORK_DIR=1 (keep temp dir and logs), CACHEPROG_BIN=/path (skip cargo build).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

common_init bench
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	DEFAULT_TARGET="fmt net/http"
	DEFAULT_RUNS=1
else
	DEFAULT_TARGET=std
	DEFAULT_RUNS=3
fi
read -r -a TARGET <<<"${BENCH_TARGET:-$DEFAULT_TARGET}"
WARM_RUNS=${BENCH_WARM_RUNS:-$DEFAULT_RUNS}
LATENCY_MS=${BENCH_LATENCY_MS:-20}
STARTUP_N=${BENCH_STARTUP_N:-50}

ensure_python
apt_ensure /usr/bin/time time
ensure_go
ensure_garage
build_release
go_env
garage_start
GARAGE_ENDPOINT=$AWS_ENDPOINT_URL_S3
U=$LIB_DIR/benchutil.py

GO_VERSION=$(GOTOOLCHAIN=local "$GO_BIN" env GOVERSION)
COMMIT=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO_ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
	COMMIT="$COMMIT+dirty"
fi
note "go build ${TARGET[*]} with $GO_VERSION, $(nproc) cores, binary $BIN ($COMMIT)"
note "warm runs: $WARM_RUNS each; simulated latency: $LATENCY_MS ms; work dir $WORK_DIR"
warm_os_cache "${TARGET[@]}"

# ---- one measured build ----------------------------------------------------

declare -A TIMES=() # key -> space-separated wall times
ROWS=()             # keys in table order
declare -A LABEL=()

# prog KEY ARGS...: the GOCACHEPROG value for scenario KEY: a wrapper that runs
# the binary under /usr/bin/time (peak RSS appended to rss-KEY; nothing on
# stdout but the program's own), with --stats-file stats-KEY.json.
prog() {
	local key=$1 wrapper="$WORK_DIR/wrap-$1.sh"
	shift
	printf '#!/bin/sh\nexec /usr/bin/time -a -o %s -f %%M %s "$@"\n' "$WORK_DIR/rss-$key" "$BIN" >"$wrapper"
	chmod +x "$wrapper"
	printf '%s --stats-file %s' "$wrapper" "$WORK_DIR/stats-$key.json"
	[ $# = 0 ] || printf ' %s' "$@"
}

# run KEY LABEL CACHE_DIR PROG: one timed build (PROG "" = plain go).
run() {
	local key=$1
	if [ -z "${LABEL[$key]:-}" ]; then
		LABEL[$key]=$2
		ROWS+=("$key")
	fi
	timed_go_build "$3" "$4" "${TARGET[@]}"
	TIMES[$key]="${TIMES[$key]:-} $LAST_SECS"
	note "$(printf '%-44s %7s s' "$2" "$LAST_SECS")"
}

median() { tr ' ' '\n' <<<"$1" | awk 'NF' | sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
med() { median "${TIMES[$1]:-}"; }

# ---- the builds -------------------------------------------------------------

run plain_cold "plain GOCACHE, cold" "$WORK_DIR/plain" ""
for ((i = 1; i <= WARM_RUNS; i++)); do
	run plain_warm "plain GOCACHE, warm" "$WORK_DIR/plain" ""
done

P=$(prog local_cold)
run local_cold "cache, local only, cold" "$WORK_DIR/local" "$P"
P=$(prog local_warm)
for ((i = 1; i <= WARM_RUNS; i++)); do
	run local_warm "cache, local only, warm" "$WORK_DIR/local" "$P"
done

# The bucket three ways, each under its own key prefix so each cold build starts
# empty: Garage directly (what a Garage user sees on loopback: Garage leaves Nagle
# on, so responses of ~4-64 KB arrive ~40 ms late to any client), and through
# lib/latency_proxy.py (which acknowledges at once, removing that artefact) at 0 ms
# and at $LATENCY_MS ms per round trip.
remote_pair() { # remote_pair KEY LABEL
	local key=$1 label=$2 p
	p=$(prog "${key}_cold" --prefix "bench-${key}" "$BUCKET")
	run "${key}_cold" "cache + bucket ${label}, cold (fills bucket)" "$WORK_DIR/${key}-fill" "$p"
	p=$(prog "${key}_warm" --prefix "bench-${key}" "$BUCKET")
	for ((i = 1; i <= WARM_RUNS; i++)); do
		run "${key}_warm" "cache + bucket ${label}, warm from bucket" "$WORK_DIR/${key}-empty-$i" "$p"
	done
}

start_proxy() { # start_proxy MS: sets PROXY_PID, PROXY_PORT
	local out="$WORK_DIR/proxy-$1.out" i
	: >"$out" # exists before the proxy's shell has opened it
	python3 "$LIB_DIR/latency_proxy.py" --listen 0 --upstream "$S3_PORT" --delay-ms "$1" \
		--parent-pid $$ --max-seconds 7200 </dev/null >"$out" 2>"$WORK_DIR/proxy-$1.err" &
	PROXY_PID=$!
	track_pid "$PROXY_PID"
	PROXY_PORT=
	for ((i = 0; i < 100; i++)); do # up to 10 s
		PROXY_PORT=$(awk '$1 == "ready" { print $2 }' "$out" 2>/dev/null || true)
		[ -n "$PROXY_PORT" ] && break
		kill -0 "$PROXY_PID" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$PROXY_PORT" ] || die "latency proxy did not start: $(cat "$WORK_DIR/proxy-$1.err")"
}

export AWS_ENDPOINT_URL_S3=$GARAGE_ENDPOINT
remote_pair rdirect "Garage direct"
for ms in 0 "$LATENCY_MS"; do
	start_proxy "$ms"
	export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$PROXY_PORT"
	remote_pair "r${ms}" "${ms} ms"
	stop_pid "$PROXY_PID"
done
export AWS_ENDPOINT_URL_S3=$GARAGE_ENDPOINT

# ---- start-up ---------------------------------------------------------------

note "start-up: $STARTUP_N spawns, local only and with a bucket"
mkdir -p "$WORK_DIR/startup"
read -r SU_LOCAL_MED SU_LOCAL_P90 SU_LOCAL_EXIT < <(GOCACHE="$WORK_DIR/startup" python3 "$U" startup "$STARTUP_N" "$BIN")
read -r SU_REMOTE_MED SU_REMOTE_P90 SU_REMOTE_EXIT < <(GOCACHE="$WORK_DIR/startup" python3 "$U" startup "$STARTUP_N" "$BIN" --prefix bench-startup "$BUCKET")
SIZE_BYTES=$(stat -c %s "$BIN")

# ---- report -----------------------------------------------------------------

cell() { # cell KEY COUNTER
	if [ -f "$WORK_DIR/stats-$1.json" ]; then python3 "$U" stat "$WORK_DIR/stats-$1.json" "$2"; else echo "-"; fi
}
mbytes() { # mbytes KEY COUNTER
	if [ -f "$WORK_DIR/stats-$1.json" ]; then
		awk -v b="$(cell "$1" "$2")" 'BEGIN { printf "%.1f", b / 1e6 }'
	else echo "-"; fi
}
rss() { if [ -f "$WORK_DIR/rss-$1" ]; then python3 "$U" peak-rss "$WORK_DIR/rss-$1"; else echo "-"; fi; }

say ""
say "## gocacheprog-s3 benchmark: go build ${TARGET[*]}"
say ""
say "$GO_VERSION, $(nproc) cores, gocacheprog-s3 $COMMIT, Garage $GARAGE_VERSION on 127.0.0.1;"
say "warm rows: median of $WARM_RUNS run(s); counters from the last run of each row."
say ""
say "| build | wall s | runs | gets | local hits | bucket hits | misses | uploads | MB up | MB down | peak RSS MiB |"
say "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for key in "${ROWS[@]}"; do
	say "| ${LABEL[$key]} | $(med "$key") | ${TIMES[$key]# } | $(cell "$key" gets) | $(cell "$key" local_hits) | $(cell "$key" remote_hits) | $(cell "$key" misses) | $(cell "$key" uploads) | $(mbytes "$key" bytes_uploaded) | $(mbytes "$key" bytes_downloaded) | $(rss "$key") |"
done
say ""
say "| figure | value |"
say "|---|---:|"
say "| protocol overhead: warm local through cache / plain warm | $(ratio "$(med local_warm)" "$(med plain_warm)")x |"
say "| cold through cache (local only) / plain cold | $(ratio "$(med local_cold)" "$(med plain_cold)")x |"
say "| cold through cache + bucket (Garage direct) / plain cold | $(ratio "$(med rdirect_cold)" "$(med plain_cold)")x |"
say "| cold through cache + bucket 0 ms / plain cold | $(ratio "$(med r0_cold)" "$(med plain_cold)")x |"
say "| cold through cache + bucket ${LATENCY_MS} ms / plain cold | $(ratio "$(med "r${LATENCY_MS}_cold")" "$(med plain_cold)")x |"
say "| plain cold / warm from bucket, Garage direct (speed-up) | $(ratio "$(med plain_cold)" "$(med rdirect_warm)")x |"
say "| plain cold / warm from bucket 0 ms (speed-up) | $(ratio "$(med plain_cold)" "$(med r0_warm)")x |"
say "| plain cold / warm from bucket ${LATENCY_MS} ms (speed-up) | $(ratio "$(med plain_cold)" "$(med "r${LATENCY_MS}_warm")")x |"
say "| start-up to handshake, local only: median / p90 | $SU_LOCAL_MED / $SU_LOCAL_P90 ms |"
say "| start-up to handshake, with bucket: median / p90 | $SU_REMOTE_MED / $SU_REMOTE_P90 ms |"
say "| exit after stdin closes (median, local only / with bucket) | $SU_LOCAL_EXIT / $SU_REMOTE_EXIT ms |"
say "| binary size | $(awk -v b="$SIZE_BYTES" 'BEGIN { printf "%.2f MiB (%d bytes)", b / 1048576, b }') |"
