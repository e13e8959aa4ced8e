#!/usr/bin/env bash
# gocacheprog-s3 benchmark: figures, not pass/fail.
#
#   scripts/bench.sh            full run (3 repetitions; writes docs/benchmarks.md and .svg)
#   scripts/bench.sh --quick    short run (1 repetition, small workloads; report on stdout)
#   scripts/bench.sh --out FILE the report to FILE instead (and the chart to FILE's .svg)
#
# Workloads: `go build std`, and a real module with dependencies (mikefarah/yq, pinned)
# built and test-linked in its own source dir (`go build ./...` then `go test -run XXX
# ./...`, one figure). The module's source and dependencies come once per machine from
# the Go module proxy into ~/.cache/gocacheprog-s3/bench-src; timed runs are offline.
#
# Scenarios, per workload: plain GOCACHE cold and warm; through the cache, local only,
# cold and warm; with a Garage bucket on 127.0.0.1 directly, cold (empty bucket prefix
# and local tier: fills the bucket) and warm bucket + empty local tier (the CI case); the
# same two behind a latency/bandwidth proxy at each of $BENCH_LATENCIES ms per round trip
# and $BENCH_BANDWIDTH_MB MB/s; and warm bucket + empty local tier at the first latency
# with --no-prefetch (when the binary has that flag). Every scenario runs once per
# repetition, in order, before the next repetition (interleaved: drift hits all alike);
# the report shows medians and the individual runs.
#
# Per row: wall time and its ratios to plain cold and plain warm, the cache program's
# counters (summed over the go commands' sessions), its CPU time and peak RSS
# (/usr/bin/time), the prefetch counters. Also start-up time to the handshake, binary
# sizes (glibc and static musl), the proxy's own ceiling, and a targets table.
#
# Installs what it needs (garage via install-test-deps.sh, Go via lib/go.sh, time, musl
# tools), idempotent. Everything it starts is stopped on exit.
#
# Env: BENCH_REPS (3; quick 1), BENCH_LATENCIES ("20 50"), BENCH_BANDWIDTH_MB (100),
#   BENCH_STD_TARGET ("std"; quick "fmt net/http"), BENCH_MODULE (module@version; "none"
#   skips it), BENCH_MODULE_PKGS ("./..."; quick: two of its dependencies),
#   BENCH_STARTUP_N (50; quick 20), BENCH_GO_TIMEOUT (1800 s per go command),
#   BENCH_MUSL=0 (skip the musl build), FAULTPROXY_BIN=/path (skip its build), CACHEPROG_BIN=/path (skip
#   cargo build), KEEP_WORK_DIR=1 (keep the temp dir: logs, stats files, raw results),
#   BENCH_QUICK=1 (same as --quick).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=lib/benchrun.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/benchrun.sh"

QUICK=${BENCH_QUICK:-0}
bench_options bench.sh "$@"
bench_record_vars BENCH_REPS BENCH_LATENCIES BENCH_BANDWIDTH_MB BENCH_STD_TARGET BENCH_MODULE \
	BENCH_MODULE_PKGS BENCH_STARTUP_N BENCH_MUSL CACHEPROG_BIN FAULTPROXY_BIN

common_init bench

if [ "$QUICK" = 1 ]; then
	REPS=${BENCH_REPS:-1}
	read -r -a STD_PKGS <<<"${BENCH_STD_TARGET:-fmt net/http}"
	# yq is one big library (every package of it pulls in ~300): two of its dependencies,
	# built and test-linked in yq's module, keep the module path quick.
	read -r -a MOD_PKGS <<<"${BENCH_MODULE_PKGS:-github.com/spf13/cobra github.com/goccy/go-yaml}"
	STARTUP_N=${BENCH_STARTUP_N:-20}
	SELFTEST_ARGS=(--seconds 2)
else
	REPS=${BENCH_REPS:-3}
	read -r -a STD_PKGS <<<"${BENCH_STD_TARGET:-std}"
	read -r -a MOD_PKGS <<<"${BENCH_MODULE_PKGS:-./...}"
	STARTUP_N=${BENCH_STARTUP_N:-50}
	SELFTEST_ARGS=()
fi
MODULE=${BENCH_MODULE:-github.com/mikefarah/yq/v4@v4.54.3}
read -r -a LATENCIES <<<"${BENCH_LATENCIES:-20 50}"
BANDWIDTH_MB=${BENCH_BANDWIDTH_MB:-100}
case "$REPS" in '' | *[!0-9]* | 0) die "BENCH_REPS must be a positive number" ;; esac
for ms in "${LATENCIES[@]}"; do case "$ms" in '' | *[!0-9]*) die "BENCH_LATENCIES: '$ms' is not a number of ms" ;; esac; done

if [ -n "$OUT_FILE" ]; then
	REPORT=$OUT_FILE
elif [ "$QUICK" = 1 ]; then
	REPORT=$WORK_DIR/benchmarks.md
else
	REPORT=$REPO_ROOT/docs/benchmarks.md
fi
mkdir -p "$(dirname "$REPORT")"
CHART=${REPORT%.md}.svg
[ "$CHART" != "$REPORT" ] || CHART=$REPORT.svg
META=$WORK_DIR/meta.tsv
RESULTS=$WORK_DIR/results.jsonl
: >"$META"
: >"$RESULTS"
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

# ---- tools ----------------------------------------------------------------------

ensure_python
apt_ensure /usr/bin/time time
ensure_go
ensure_garage
build_release

build_proxy

# build_musl: the static binary's size, or "-" and why. Never fatal.
MUSL_TARGET=x86_64-unknown-linux-musl
build_musl() {
	local log="$WORK_DIR/musl-build.log" bin targets
	MUSL_SIZE="-"
	if [ "${BENCH_MUSL:-1}" = 0 ]; then
		MUSL_WHY="not built (BENCH_MUSL=0)"
		return 0
	fi
	if ! command -v rustup >/dev/null; then
		MUSL_WHY="not built: no rustup to add the $MUSL_TARGET target"
		return 0
	fi
	targets=$(rustup target list --installed 2>/dev/null || true)
	if ! grep -qx "$MUSL_TARGET" <<<"$targets"; then
		note "rustup target add $MUSL_TARGET"
		if ! rustup target add "$MUSL_TARGET" >"$log" 2>&1; then
			MUSL_WHY="not built: rustup target add $MUSL_TARGET failed ($(tail -n 1 "$log"))"
			note "$MUSL_WHY"
			return 0
		fi
	fi
	if ! command -v musl-gcc >/dev/null 2>&1 && ! (apt_ensure musl-gcc musl-tools) >>"$log" 2>&1; then
		MUSL_WHY="not built: musl-tools (musl-gcc, for ring's C code) could not be installed"
		note "$MUSL_WHY"
		return 0
	fi
	note "cargo build --release --target $MUSL_TARGET"
	if ! (cd "$REPO_ROOT" && cargo build --release --quiet --target "$MUSL_TARGET" --bin gocacheprog-s3) >>"$log" 2>&1; then
		MUSL_WHY="not built: cargo build --target $MUSL_TARGET failed ($(grep -m1 '^error' "$log" || tail -n 1 "$log"))"
		note "$MUSL_WHY"
		return 0
	fi
	bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$MUSL_TARGET/release/gocacheprog-s3"
	case "$bin" in /*) ;; *) bin="$REPO_ROOT/$bin" ;; esac
	MUSL_SIZE=$(stat -c %s "$bin")
	MUSL_WHY=""
}
build_musl

# (Captured first: `grep -q` on a pipe could end the writer early, and pipefail would
# then read that as "absent".)
NO_PREFETCH=0
BIN_HELP=$("$BIN" --help 2>&1 || true)
case "$BIN_HELP" in *--no-prefetch*) NO_PREFETCH=1 ;; esac

go_env

# ---- the module's source, once per machine ----------------------------------------

MOD_SRC=
WORKLOADS=(std)
if [ "$MODULE" != none ]; then
	prepare_module "$MODULE" "${MOD_PKGS[@]}"
	WORKLOADS+=(mod)
fi

# ---- servers ----------------------------------------------------------------------

garage_start
GARAGE_ENDPOINT=$AWS_ENDPOINT_URL_S3

declare -A ENDPOINT=([lo]=$GARAGE_ENDPOINT)
NETS=(lo)
for ms in "${LATENCIES[@]}"; do
	[ -z "${ENDPOINT[d$ms]:-}" ] || continue
	proxy_start "$ms" "$BANDWIDTH_MB"
	ENDPOINT[d$ms]="http://127.0.0.1:$PROXY_PORT"
	NETS+=("d$ms")
done

# ---- scenarios ----------------------------------------------------------------------

BW_LABEL="$BANDWIDTH_MB MB/s"
declare -A SC_LABEL=() SC_SHORT=() SC_GROUP=()
SCENARIOS=()
scenario() { # scenario KEY GROUP LABEL SHORT_LABEL (the chart's)
	SCENARIOS+=("$1")
	SC_GROUP[$1]=$2
	SC_LABEL[$1]=$3
	SC_SHORT[$1]=$4
}
scenario plain_cold plain "plain GOCACHE, cold" "plain go, cold"
scenario plain_warm plain "plain GOCACHE, warm" "plain go, warm"
scenario local_cold local "cache, local only, cold" "local tier, cold"
scenario local_warm local "cache, local only, warm" "local tier, warm"
scenario lo_cold bucket "bucket on loopback, cold (fills the bucket)" "loopback, cold"
scenario lo_warm bucket "bucket on loopback, warm bucket, empty local tier" "loopback, warm bucket"
for net in "${NETS[@]:1}"; do
	ms=${net#d}
	scenario "${net}_cold" proxy "bucket at $ms ms + $BW_LABEL, cold (fills the bucket)" "$ms ms, cold"
	scenario "${net}_warm" proxy "bucket at $ms ms + $BW_LABEL, warm bucket, empty local tier" "$ms ms, warm bucket"
	if [ "$NO_PREFETCH" = 1 ] && [ "$net" = "${NETS[1]}" ]; then
		scenario "${net}_nopf" noprefetch "bucket at $ms ms + $BW_LABEL, warm bucket, empty local tier, --no-prefetch" \
			"$ms ms, warm bucket, no prefetch"
	fi
done

declare -A WL_LABEL=([std]="go build ${STD_PKGS[*]}" [mod]="${MODULE}: go build ${MOD_PKGS[*]} + go test -run XXX ${MOD_PKGS[*]}")
declare -A WL_SHORT=([std]="go build ${STD_PKGS[*]}" [mod]="${MODULE#github.com/}: go build + go test -run XXX")
[ "${MOD_PKGS[*]}" = "./..." ] || WL_SHORT[mod]="${WL_SHORT[mod]} (a subset)"
declare -A WL_CMDS=([std]=1 [mod]=2)

# workload WL LOG TIER PROG: the workload's go commands.
workload() {
	case "$1" in
	std) (cd "$WORK_DIR" && go_cmd "$2" "$3" "$4" build "${STD_PKGS[@]}") ;;
	mod) (cd "$MOD_SRC" && mod_env && go_cmd "$2" "$3" "$4" build "${MOD_PKGS[@]}" &&
		go_cmd "$2" "$3" "$4" test -run XXX "${MOD_PKGS[@]}") ;;
	esac
}

TIERS=$WORK_DIR/tiers

# run_scenario WL SC REP: one timed run; appends a line to $RESULTS.
run_scenario() {
	local wl=$1 sc=$2 rep=$3 dir tier prog="" net start rc=0 secs load
	dir="$WORK_DIR/runs/$wl/$sc-$rep"
	fresh_dir "$dir"
	case "$sc" in
	plain_cold | plain_warm) tier="$TIERS/$wl-plain-$rep" ;;
	local_cold | local_warm)
		tier="$TIERS/$wl-local-$rep"
		prog=$(wrapper "$dir")
		;;
	*) # a bucket row: always on a brand-new local tier
		net=${sc%_*}
		tier="$TIERS/$wl-$sc-$rep"
		prog="$(wrapper "$dir") --endpoint ${ENDPOINT[$net]} --prefix bench-$wl-$net-$rep"
		[ "${sc##*_}" != nopf ] || prog="$prog --no-prefetch"
		prog="$prog $BUCKET"
		;;
	esac
	case "$sc" in
	plain_warm | local_warm) [ -d "$tier" ] || die "internal: $wl $sc before its cold run" ;;
	*) fresh_dir "$tier" ;;
	esac
	sync
	load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
	start=$(now)
	workload "$wl" "$dir/go.log" "$tier" "$prog" || rc=$?
	secs=$(elapsed_ms "$start")
	if [ "$rc" != 0 ]; then
		tail -n 30 "$dir/go.log" >&2
		die "$wl / $sc / repetition $rep: go failed (exit $rc; GOCACHEPROG='$prog'; log $dir/go.log)"
	fi
	printf '{"workload":"%s","scenario":"%s","label":"%s","short":"%s","group":"%s","rep":%d,"wall":%s,"load":%s,"dir":"%s","cmds":%d}\n' \
		"$wl" "$sc" "${SC_LABEL[$sc]}" "${SC_SHORT[$sc]}" "${SC_GROUP[$sc]}" "$rep" "$secs" "$load" "$dir" "${WL_CMDS[$wl]}" >>"$RESULTS"
	note "$(printf 'rep %d  %-4s %-84s %8s s' "$rep" "$wl" "${SC_LABEL[$sc]}" "$secs")"
	# Tiers stay until the end (the work dir goes on exit): this machine's ext4 has no
	# journal, and there every inode created within 30 s of a mass delete costs a scan of
	# the recently deleted ones (the kernel's recently_deleted), which made the run after
	# an `rm -rf` of a 170 MB tier spend 2-3 s of system time creating files. The `sync`
	# before each run keeps their dirty pages from flushing mid-run.
}

# warm_sources WL: read the workload's sources once, so the first timed build does not
# also pay for cold disk reads.
warm_sources() {
	case "$1" in
	std) warm_os_cache "${STD_PKGS[@]}" ;;
	mod) warm_module_sources "$MOD_SRC" "${MOD_PKGS[@]}" ;;
	esac
}

GO_VERSION=$(GOTOOLCHAIN=local "$GO_BIN" env GOVERSION)
COMMIT=$(binary_commit)
note "$GO_VERSION, $(nproc) cores, binary $BIN ($COMMIT)"
note "workloads: ${WORKLOADS[*]}; $REPS repetition(s) of ${#SCENARIOS[@]} scenarios; work dir $WORK_DIR"
for wl in "${WORKLOADS[@]}"; do warm_sources "$wl"; done

# ---- start-up and the proxy's ceiling (before the builds: nothing else running) ----------

note "start-up: $STARTUP_N spawns, local only and with a bucket"
mkdir -p "$WORK_DIR/startup"
read -r SU_LOCAL_MED SU_LOCAL_P90 SU_LOCAL_EXIT < <(GOCACHE="$WORK_DIR/startup" python3 "$LIB_DIR/benchutil.py" startup "$STARTUP_N" "$BIN")
read -r SU_REMOTE_MED SU_REMOTE_P90 SU_REMOTE_EXIT < <(GOCACHE="$WORK_DIR/startup" python3 "$LIB_DIR/benchutil.py" startup "$STARTUP_N" "$BIN" --prefix bench-startup "$BUCKET")

note "faultproxy selftest ${SELFTEST_ARGS[*]}"
if timeout -k 5 120 "$PROXY_BIN" selftest "${SELFTEST_ARGS[@]}" >"$WORK_DIR/selftest.out" 2>"$WORK_DIR/selftest.err"; then
	PROXY_CEILING=$(python3 "$LIB_DIR/benchutil.py" proxy-ceiling "$WORK_DIR/selftest.out")
else
	PROXY_CEILING="- (faultproxy selftest failed: $(tail -n 1 "$WORK_DIR/selftest.err"))"
fi

# ---- the runs ---------------------------------------------------------------------------

RUNS_START=$(now)
for ((rep = 1; rep <= REPS; rep++)); do
	for wl in "${WORKLOADS[@]}"; do
		for sc in "${SCENARIOS[@]}"; do
			run_scenario "$wl" "$sc" "$rep"
		done
		rm -rf "$TIERS"
	done
done

# ---- report -----------------------------------------------------------------------------

mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB (%d bytes)", b / 1048576, b }'; }
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta runs_seconds "$(elapsed "$RUNS_START")"
meta nproc "$(nproc)"
meta command "$COMMAND_LINE"
meta quick "$QUICK"
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
RAM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)
meta machine "$(nproc) cores ($CPU_MODEL), $RAM RAM, $(uname -sr)"
meta machine_short "$(nproc) cores"
meta go "$GO_VERSION ($GO_BIN), GOTOOLCHAIN=local, CGO_ENABLED=0"
meta go_short "$GO_VERSION"
meta commit "$COMMIT"
if [ -n "${CACHEPROG_BIN:-}" ]; then
	meta binary "\`$BIN\` (CACHEPROG_BIN: not built by this run)"
else
	meta binary "release build, \`${BIN#"$REPO_ROOT"/}\`"
fi
meta garage "$GARAGE_VERSION"
LAT_TEXT=$(printf '%s ms, ' "${LATENCIES[@]}")
LAT_TEXT=${LAT_TEXT%, }
meta proxy "faultproxy (\`cargo build --release -p faultproxy\`): $LAT_TEXT per round trip, $BANDWIDTH_MB MB/s (\`--bandwidth-mbps $BANDWIDTH_MB\`)"
meta proxy_ceiling "$PROXY_CEILING"
meta reps "$REPS"
meta latencies "${LATENCIES[*]}"
meta bandwidth_label "$BW_LABEL"
meta startup "local only: $SU_LOCAL_MED ms median, $SU_LOCAL_P90 ms p90; with a bucket: $SU_REMOTE_MED ms median, $SU_REMOTE_P90 ms p90 ($STARTUP_N spawns each); exit after stdin closes: $SU_LOCAL_EXIT / $SU_REMOTE_EXIT ms"
if [ "$MUSL_SIZE" = "-" ]; then
	meta size "glibc release: $(mib "$(stat -c %s "$BIN")"); static musl: - ($MUSL_WHY)"
else
	meta size "glibc release: $(mib "$(stat -c %s "$BIN")"); static musl ($MUSL_TARGET): $(mib "$MUSL_SIZE")"
fi
meta target_workload std
for wl in "${WORKLOADS[@]}"; do
	meta "workload.$wl.label" "${WL_LABEL[$wl]}"
	meta "workload.$wl.short" "${WL_SHORT[$wl]}"
done
meta workload.std.desc "In an empty directory. One go command, so one cache-program session per run."
if [ "$MODULE" != none ]; then
	meta workload.mod.desc "In the module's source directory (a copy of its module zip, dependencies from a local GOMODCACHE, GOFLAGS=-mod=readonly GOPROXY=off GOSUMDB=off): \`go build ${MOD_PKGS[*]}\` then \`go test -run XXX ${MOD_PKGS[*]}\` (test binaries linked and started), timed together; two go commands, so two sessions per run, their counters summed."
fi
meta how.1 "Wall time: from the start of a run's first go command to the end of its last, \`sync\` before each run; sources were read once beforehand so no run pays for cold disk reads; no tier is deleted before the end (on this machine's journal-less ext4, files created within 30 s of a mass delete cost seconds of system time)."
meta how.2 "Cold runs start from nothing each repetition: a new GOCACHE / local tier, and for bucket rows a new key prefix (\`--prefix bench-<workload>-<network>-<repetition>\`). \"Warm bucket, empty local tier\" runs use the prefix the same repetition's cold run of the same network filled, on a brand-new empty local tier (the manifest that cold run left serves the prefetch). Plain warm and local warm reuse the same repetition's cold directory."
meta how.3 "Counters: the cache program's \`--stats-file\` JSON, one file per session, summed per run; CPU s is user+sys of the cache program (\`/usr/bin/time -f '%M %U %S'\` around it), summed over the sessions; peak RSS is the largest session's. Per row: median over the repetitions (peak RSS: the largest)."
meta how.4 "Ratios are of medians: × plain cold and × plain warm of the same workload in the same run. Gets etc. are counted by the cache program; plain rows have none."
meta how.5 "The cache program, Garage and the proxy talk only to 127.0.0.1. faultproxy delays each direction by half the round trip, the first data of a new connection by one more round trip (the TCP handshake), and caps each direction at $BANDWIDTH_MB MB/s (10^6 bytes/s) with a token bucket shared by all connections. Its ceiling is measured by \`faultproxy selftest ${SELFTEST_ARGS[*]}\` once per run, before the builds."
[ "$NO_PREFETCH" = 1 ] || meta note.1 "The binary has no --no-prefetch flag (\`$BIN --help\`): the --no-prefetch row was skipped."
[ "$QUICK" = 0 ] || meta note.3 "Quick run (--quick): small workloads and one repetition; a check that every scenario and the report work, not figures to quote."

chart_ref=$(basename "$CHART")
python3 "$LIB_DIR/benchreport.py" "$META" "$RESULTS" "$REPORT" "$WORK_DIR/summary.json" "$chart_ref"
python3 "$LIB_DIR/benchchart.py" "$WORK_DIR/summary.json" "$CHART"
python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "$CHART" || die "the chart $CHART is not well-formed XML"
say ""
cat "$REPORT"
note "report: $REPORT; chart: $CHART"
[ "$REPORT" != "$WORK_DIR/benchmarks.md" ] || [ "${KEEP_WORK_DIR:-0}" = 1 ] ||
	note "(quick run: both are removed with the work dir; --out FILE or KEEP_WORK_DIR=1 keeps them)"
