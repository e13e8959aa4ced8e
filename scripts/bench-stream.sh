#!/usr/bin/env bash
# gocacheprog-s3 commit-stream benchmark: figures, not pass/fail.
#
#   scripts/bench-stream.sh            full run (5 versions, 20 and 50 ms; writes its section of docs/benchmarks.md)
#   scripts/bench-stream.sh --quick    short run (3 versions, 20 ms only, no mixed jobs; report on stdout)
#   scripts/bench-stream.sh --out FILE the section into FILE instead (and the chart beside it)
#
# CI never rebuilds one commit: it builds a stream of commits, each by a fresh runner. This
# plays that stream with consecutive releases of a real module (charmbracelet/bubbletea,
# pinned; its source and dependencies come once per machine from the Go module proxy, then
# every run is offline). Each release's job is `go build ./...` then `go test -run XXX ./...`.
#
# Per latency (a Garage bucket behind faultproxy at $BENCH_LATENCIES ms per round trip and
# $BENCH_BANDWIDTH_MB MB/s), one bucket prefix holds the stream; the first release only
# fills it. Then per release, every runner on a brand-new local tier / GOCACHE:
#   plain cold    plain go, empty GOCACHE (first latency only: no bucket)
#   floor         plain go on the previous release's GOCACHE (a laptop's incremental build)
#   first         the first runner of the release (the bucket has the earlier releases)
#   no-prefetch   the same with --no-prefetch, on a prefix of its own filled the same way
#   second        a second runner of the same release (the bucket has it all)
#   warm tier     the second runner's tier used again with the bucket (no transfer: session
#                 overhead), and again without the bucket (local only); plain warm: plain go
#                 on the plain cold GOCACHE again (go's own work)
# Per runner: wall, the cache program's counters (--stats-file per session: downloaded,
# wasted, objects), requests through the proxy, CPU (/usr/bin/time around the program).
#
# Then a mixed-jobs sequence on the last release at the first latency, CGO_ENABLED=1 (-race
# needs it), one fresh runner per job on one prefix: build, build again, `go test -race`,
# `go test -cover`, build and test with -tags, build, -race again. Shows what one kind of
# job costs the next (each build configuration has a manifest of its own).
#
# Last, where a second runner's time goes: on the last release at the first latency,
# repeated, plain go warm against the second runner, its tier again with and without the
# bucket, for the job and for its `go test` alone; and one traced second runner.
#
# Writes the section between the bench-stream markers of docs/benchmarks.md (the rest of
# the file is scripts/bench.sh's and stays), with a chart (docs/benchmarks-stream.svg).
#
# Env: BENCH_STREAM_MODULE (github.com/charmbracelet/bubbletea), BENCH_STREAM_VERSIONS
#   ("v1.3.6 v1.3.7 v1.3.8 v1.3.9 v1.3.10"; quick: the last three), BENCH_LATENCIES ("20 50";
#   quick "20"), BENCH_BANDWIDTH_MB (100), BENCH_STREAM_MIXED (1; quick 0), BENCH_STREAM_TAGS
#   (benchstream), BENCH_STREAM_PROFILE_REPS (3; quick 0: repetitions of the profile below),
#   BENCH_GO_TIMEOUT (1800 s per go command), CACHEPROG_BIN, FAULTPROXY_BIN,
#   KEEP_WORK_DIR=1.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=lib/benchrun.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/benchrun.sh"

QUICK=0
bench_options bench-stream.sh "$@"
bench_record_vars BENCH_STREAM_MODULE BENCH_STREAM_VERSIONS BENCH_LATENCIES BENCH_BANDWIDTH_MB \
	BENCH_STREAM_MIXED BENCH_STREAM_PROFILE_REPS BENCH_STREAM_TAGS CACHEPROG_BIN FAULTPROXY_BIN

common_init bench-stream

MODULE_PATH=${BENCH_STREAM_MODULE:-github.com/charmbracelet/bubbletea}
if [ "$QUICK" = 1 ]; then
	read -r -a VERSIONS <<<"${BENCH_STREAM_VERSIONS:-v1.3.8 v1.3.9 v1.3.10}"
	read -r -a LATENCIES <<<"${BENCH_LATENCIES:-20}"
	MIXED=${BENCH_STREAM_MIXED:-0}
	PROFILE_REPS=${BENCH_STREAM_PROFILE_REPS:-0}
else
	read -r -a VERSIONS <<<"${BENCH_STREAM_VERSIONS:-v1.3.6 v1.3.7 v1.3.8 v1.3.9 v1.3.10}"
	read -r -a LATENCIES <<<"${BENCH_LATENCIES:-20 50}"
	MIXED=${BENCH_STREAM_MIXED:-1}
	PROFILE_REPS=${BENCH_STREAM_PROFILE_REPS:-3}
fi
case "$PROFILE_REPS" in '' | *[!0-9]*) die "BENCH_STREAM_PROFILE_REPS must be a number" ;; esac
BANDWIDTH_MB=${BENCH_BANDWIDTH_MB:-100}
TAGS=${BENCH_STREAM_TAGS:-benchstream}
[ "${#VERSIONS[@]}" -ge 2 ] || die "BENCH_STREAM_VERSIONS needs at least two versions (the first only fills the bucket)"
for ms in "${LATENCIES[@]}"; do case "$ms" in '' | *[!0-9]*) die "BENCH_LATENCIES: '$ms' is not a number of ms" ;; esac; done

if [ -n "$OUT_FILE" ]; then
	REPORT=$OUT_FILE
elif [ "$QUICK" = 1 ]; then
	REPORT=$WORK_DIR/benchmarks.md
else
	REPORT=$REPO_ROOT/docs/benchmarks.md
fi
CHART=${REPORT%.md}-stream.svg
META=$WORK_DIR/meta.tsv
RESULTS=$WORK_DIR/results.jsonl
: >"$META"
: >"$RESULTS"
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

# ---- tools, sources, servers ------------------------------------------------------

ensure_python
apt_ensure /usr/bin/time time
ensure_go
ensure_garage
build_release
build_proxy
go_env

declare -A SRC=()
for v in "${VERSIONS[@]}"; do
	prepare_module "$MODULE_PATH@$v" ./...
	SRC[$v]=$MOD_SRC
	warm_module_sources "$MOD_SRC" ./...
done
warm_os_cache std

garage_start
declare -A ENDPOINT=() PSTATS=()
for ms in "${LATENCIES[@]}"; do
	proxy_start "$ms" "$BANDWIDTH_MB"
	ENDPOINT[$ms]="http://127.0.0.1:$PROXY_PORT"
	PSTATS[$ms]=$PROXY_STATS
done

# ---- one runner ---------------------------------------------------------------------

TIERS=$WORK_DIR/tiers
RUN_N=0

# job_cmds JOB LOG TIER PROG: a job's go commands in the current directory; prints each
# command's wall time (one line each) on fd 3.
job_cmds() {
	local job=$1 log=$2 tier=$3 prog=$4 start
	local -a cmds
	case "$job" in
	build) cmds=("build ./..." "test -run XXX ./...") ;;
	race) cmds=("test -race -run XXX ./...") ;;
	cover) cmds=("test -cover -run XXX ./...") ;;
	tags) cmds=("build -tags $TAGS ./..." "test -tags $TAGS -run XXX ./...") ;;
	test) cmds=("test -run XXX ./...") ;;
	*) die "internal: job $job" ;;
	esac
	for c in "${cmds[@]}"; do
		start=$(now)
		# shellcheck disable=SC2086 # the command's words
		go_cmd "$log" "$tier" "$prog" $c || return
		{ elapsed_ms "$start" && echo; } >&3
	done
}

# build_stamp: $STAMP, a filter that prefixes each line with the time it arrived (C: it
# must start in a millisecond, or the first lines of a session are stamped late).
build_stamp() {
	STAMP=$WORK_DIR/stamp
	cat >"$STAMP.c" <<-'C'
		#include <stdio.h>
		#include <time.h>
		int main(void) {
			static char line[65536];
			struct timespec ts;
			while (fgets(line, sizeof line, stdin)) {
				clock_gettime(CLOCK_REALTIME, &ts);
				printf("%ld.%06ld %s", (long)ts.tv_sec, ts.tv_nsec / 1000, line);
				fflush(stdout);
			}
			return 0;
		}
	C
	cc -O2 -o "$STAMP" "$STAMP.c" || die "cannot build the line stamper ($STAMP.c)"
}

# trace_wrapper RUN_DIR: like `wrapper`, with -v=3 and every line of the program's stderr
# stamped with the time it arrived (RUN_DIR/trace.log; "<time> start <pid>" first).
trace_wrapper() {
	local w="$1/trace.sh"
	cat >"$w" <<-WRAP
		#!/usr/bin/env bash
		echo "\$EPOCHREALTIME start \$\$" >>$1/trace.log
		exec /usr/bin/time -a -o $1/time.txt -f '%M %U %S' $BIN -v=3 --stats-file $1/stats-\$\$.json "\$@" 2> >(exec $STAMP >>$1/trace.log)
	WRAP
	chmod +x "$w"
	printf '%s' "$w"
}

# runner SECTION NET COLUMN VERSION JOB TIER MODE [PREFIX [FLAGS...]]: one timed runner.
# MODE: plain (no cache program), local (local tier only), bucket (PREFIX at NET ms) or
# trace (bucket, with trace_wrapper). TIER is used as it is (the caller makes it fresh or
# not). Appends a line to $RESULTS, with the repetition $REP.
REP=0
runner() {
	local section=$1 net=$2 column=$3 version=$4 job=$5 tier=$6 mode=$7 prefix=${8:-} dir prog="" \
		start secs rc=0 load req0=0 req1=0 cmd_walls
	shift 7
	[ $# -eq 0 ] || shift
	RUN_N=$((RUN_N + 1))
	dir="$WORK_DIR/runs/$RUN_N-$section-$net-$version-$column"
	fresh_dir "$dir"
	mkdir -p "$tier"
	case "$mode" in
	plain) ;;
	local) prog=$(wrapper "$dir") ;;
	bucket) prog="$(wrapper "$dir") --endpoint ${ENDPOINT[$net]} --prefix $prefix${*:+ $*} $BUCKET" ;;
	trace) prog="$(trace_wrapper "$dir") --endpoint ${ENDPOINT[$net]} --prefix $prefix${*:+ $*} $BUCKET" ;;
	esac
	case "$mode" in bucket | trace) req0=$(proxy_requests "${PSTATS[$net]}") ;; esac
	sync
	load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
	start=$(now)
	(cd "${SRC[$version]}" && mod_env && job_cmds "$job" "$dir/go.log" "$tier" "$prog" 3>"$dir/cmd-walls.txt") || rc=$?
	secs=$(elapsed_ms "$start")
	if [ "$rc" != 0 ]; then
		tail -n 30 "$dir/go.log" >&2
		die "$section / $net ms / $version / $column: go failed (exit $rc; GOCACHEPROG='$prog'; log $dir/go.log)"
	fi
	if [ "$mode" = bucket ] || [ "$mode" = trace ]; then
		sleep 0.3 # the proxy rewrites its counters within 100 ms
		req1=$(proxy_requests "${PSTATS[$net]}")
	fi
	cmd_walls=$(paste -sd, "$dir/cmd-walls.txt")
	printf '{"n":%d,"section":"%s","net":"%s","column":"%s","version":"%s","job":"%s","mode":"%s","wall":%s,"cmd_walls":[%s],"load":%s,"requests":%d,"rep":%d,"dir":"%s"}\n' \
		"$RUN_N" "$section" "$net" "$column" "$version" "$job" "$mode" "$secs" "$cmd_walls" "$load" "$((req1 - req0))" "$REP" "$dir" >>"$RESULTS"
	note "$(printf '%-6s %3s ms  %-8s %-7s %-12s %8s s' "$section" "$net" "$version" "$job" "$column" "$secs")"
}

# ---- the stream ----------------------------------------------------------------------

GO_VERSION=$(GOTOOLCHAIN=local "$GO_BIN" env GOVERSION)
COMMIT=$(binary_commit)
note "$GO_VERSION, $(nproc) cores, binary $BIN ($COMMIT); $MODULE_PATH ${VERSIONS[*]}; latencies ${LATENCIES[*]} ms; work dir $WORK_DIR"
# Tiers stay until the end (see scripts/bench.sh: on this machine's journal-less ext4 a
# mass delete slows the file creations of the next 30 s).
RUNS_START=$(now)
first_net=${LATENCIES[0]}
for net in "${LATENCIES[@]}"; do
	prev=
	for v in "${VERSIONS[@]}"; do
		t="$TIERS/$net-$v"
		if [ "$net" = "$first_net" ]; then
			runner stream "$net" plain_cold "$v" build "$t-plain" plain
			[ -z "$prev" ] || runner stream "$net" floor "$v" build "$TIERS/$net-$prev-plain" plain
			runner stream "$net" plain_warm "$v" build "$t-plain" plain
		fi
		if [ -z "$prev" ]; then
			runner stream "$net" seed "$v" build "$t-seed" bucket "stream-$net"
			runner stream "$net" seed_nopf "$v" build "$t-seed-nopf" bucket "stream-$net-nopf" --no-prefetch
		else
			runner stream "$net" first "$v" build "$t-first" bucket "stream-$net"
			runner stream "$net" nopf "$v" build "$t-nopf" bucket "stream-$net-nopf" --no-prefetch
			runner stream "$net" second "$v" build "$t-second" bucket "stream-$net"
			runner stream "$net" warm_tier "$v" build "$t-second" bucket "stream-$net"
			runner stream "$net" local_warm "$v" build "$t-second" local
		fi
		prev=$v
	done
done

# ---- mixed jobs ------------------------------------------------------------------------

MIXED_JOBS=(build build race cover tags build race)
if [ "$MIXED" = 1 ]; then
	v=${VERSIONS[-1]}
	i=0
	for job in "${MIXED_JOBS[@]}"; do
		i=$((i + 1))
		CGO_ENABLED=1 runner mixed "$first_net" "$i" "$v" "$job" "$TIERS/mixed-$i" bucket "mixed-$first_net"
	done
fi

# ---- where a second runner's time goes ----------------------------------------------------

# On the last release at the first latency, the bucket holding the whole stream: each
# repetition runs, in order, plain go warm, the second runner (fresh tier), its tier again
# with the bucket (as is, without the listing, without prefetch, without both) and local only; the same for `go test -run XXX ./...` alone (one go command
# instead of two); then one traced second runner (stamped -v=3 log: listing, downloads).
if [ "$PROFILE_REPS" -gt 0 ]; then
	build_stamp
	v=${VERSIONS[-1]}
	for ((REP = 1; REP <= PROFILE_REPS; REP++)); do
		for job in build test; do
			t="$TIERS/profile-$REP-$job"
			runner profile "$first_net" "plain_warm" "$v" "$job" "$TIERS/$first_net-$v-plain" plain
			runner profile "$first_net" "second" "$v" "$job" "$t" bucket "stream-$first_net"
			runner profile "$first_net" "warm_tier" "$v" "$job" "$t" bucket "stream-$first_net"
			# The same session without its start-up work, one part at a time.
			runner profile "$first_net" "warm_nolist" "$v" "$job" "$t" bucket "stream-$first_net" --fast-miss-max-keys 0
			runner profile "$first_net" "warm_nopf" "$v" "$job" "$t" bucket "stream-$first_net" --no-prefetch
			runner profile "$first_net" "warm_bare" "$v" "$job" "$t" bucket "stream-$first_net" --no-prefetch --fast-miss-max-keys 0
			runner profile "$first_net" "local_warm" "$v" "$job" "$t" local
		done
	done
	REP=0
	runner profile "$first_net" "trace" "$v" build "$TIERS/profile-trace" trace "stream-$first_net"
fi

# ---- report --------------------------------------------------------------------------------

meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta runs_seconds "$(elapsed "$RUNS_START")"
meta nproc "$(nproc)"
meta command "$COMMAND_LINE"
meta quick "$QUICK"
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
meta machine "$(nproc) cores ($CPU_MODEL), $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)"
meta go "$GO_VERSION, GOTOOLCHAIN=local, CGO_ENABLED=0 (the mixed jobs: 1)"
meta commit "$COMMIT"
meta garage "$GARAGE_VERSION"
meta module "$MODULE_PATH"
meta versions "${VERSIONS[*]}"
meta latencies "${LATENCIES[*]}"
meta bandwidth "$BANDWIDTH_MB"
meta tags "$TAGS"
meta mixed_jobs "${MIXED_JOBS[*]}"

python3 "$LIB_DIR/streamreport.py" "$META" "$RESULTS" "$REPORT" "$CHART"
python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "$CHART" || die "the chart $CHART is not well-formed XML"
say ""
python3 "$LIB_DIR/streamreport.py" --section "$REPORT"
note "report: $REPORT (the bench-stream section); chart: $CHART"
[ "$REPORT" != "$WORK_DIR/benchmarks.md" ] || [ "${KEEP_WORK_DIR:-0}" = 1 ] ||
	note "(quick run: both are removed with the work dir; --out FILE or KEEP_WORK_DIR=1 keeps them)"
