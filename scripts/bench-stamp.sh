#!/usr/bin/env bash
# What `gocacheprog-s3 stamp` does for a fresh CI runner's `go test ./...` on a real
# module whose tests read files: golang.org/x/text (pinned below) from the Go module
# proxy. Each runner is a fresh checkout (a copy with new mtimes, at the same path, as on
# CI runners) and an empty local tier, sharing a Garage bucket on 127.0.0.1. Per mode
# (with stamp, without), a first runner fills the bucket, then REPS second runners each
# time `go test ./...` (with stamp: `stamp` + `go test`) and count the packages go
# reports "(cached)". Then one more stamped runner runs a CI job (go build, go vet, go
# test) into one --stats-dir and prints `gocacheprog-s3 report`. Figures, not a test.
#
# Usage: scripts/bench-stamp.sh [REPS (3)]
# Needs the Go module proxy once (the module and its test dependencies); the timed runs
# use GOPROXY=off. Env: CACHEPROG_BIN (skip the release build), KEEP_WORK_DIR=1.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

MODULE=golang.org/x/text
VERSION=v0.44.0

common_init bench-stamp
REPS=${1:-3}
ensure_python
ensure_go
ensure_garage
build_release
go_env
export GOFLAGS=-modcacherw GOMODCACHE="$WORK_DIR/gopath/pkg/mod"

note "downloading $MODULE@$VERSION and its test dependencies from the module proxy"
src=$("$GO_BIN" mod download -json "$MODULE@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
CHECKOUT="$WORK_DIR/checkout" # one path for every runner: go's keys include it
cp -r "$src" "$CHECKOUT"
chmod -R u+w "$CHECKOUT"
(cd "$CHECKOUT" && "$GO_BIN" mod download && "$GO_BIN" list -test -deps ./... >/dev/null)
export GOPROXY=off GOSUMDB=off
garage_start

# fresh_checkout: the module copied anew (new mtimes), at least 3 s old when go runs, so
# that go's 2-second cut-off for new files is not what decides (a real checkout is older
# than that by the time the tests run).
fresh_checkout() {
	rm -rf "$CHECKOUT"
	cp -r "$src" "$CHECKOUT"
	chmod -R u+w "$CHECKOUT"
	sleep 3
}

RUN=0
# runner MODE PREFIX: one fresh runner's `[stamp +] go test ./...`; sets SECS, CACHED, OK.
runner() {
	local mode=$1 prefix=$2 start log rc=0
	RUN=$((RUN + 1))
	log="$WORK_DIR/run-$RUN.log"
	fresh_checkout
	start=$(now)
	if [ "$mode" = stamp ]; then
		"$BIN" stamp "$CHECKOUT" >>"$log"
	fi
	(cd "$CHECKOUT" && GOCACHE="$WORK_DIR/tier-$RUN" GOCACHEPROG="$BIN --prefix $prefix $BUCKET" \
		"$GO_BIN" test ./... >>"$log" 2>&1) || rc=$?
	SECS=$(elapsed "$start")
	[ "$rc" = 0 ] || {
		tail -n 30 "$log" >&2
		die "go test failed (run $RUN, $mode; log $log)"
	}
	CACHED=$(grep -c '^ok .*(cached)' "$log" || true)
	OK=$(grep -c '^ok ' "$log" || true)
}

declare -A TIMES COUNTS
for mode in stamp plain; do
	note "$mode: first runner (fills the bucket)"
	runner "$mode" "bench-$mode"
	say "$mode: first runner: $SECS s, $CACHED of $OK packages (cached)"
	TIMES[$mode]=""
	for ((i = 1; i <= REPS; i++)); do
		runner "$mode" "bench-$mode"
		say "$mode: second runner $i: $SECS s, $CACHED of $OK packages (cached)"
		TIMES[$mode]+="$SECS "
		COUNTS[$mode]="$CACHED of $OK"
		# Which packages reran, once (the tests that read files).
		if [ "$i" = 1 ]; then
			say "  reran (test time): $(grep '^ok ' "$WORK_DIR/run-$RUN.log" | grep -v '(cached)' |
				awk '{ print $2 " (" $3 ")" }' | sed "s|^$MODULE/||" | tr '\n' ' ')"
		fi
	done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ms=$(printf '%s' "${TIMES[stamp]}" | median)
mp=$(printf '%s' "${TIMES[plain]}" | median)
say ""
say "$MODULE@$VERSION, go test ./... on a fresh runner (fresh checkout, empty local tier, warm bucket),"
say "median of $REPS, $(nproc) cores, $("$GO_BIN" env GOVERSION), commit $(git -C "$REPO_ROOT" rev-parse --short HEAD):"
say "| | wall | packages (cached) |"
say "| --- | ---: | ---: |"
say "| without stamp | $mp s | ${COUNTS[plain]} |"
say "| with stamp (its own time included) | $ms s | ${COUNTS[stamp]} |"
say "stamp alone: $("$BIN" stamp "$CHECKOUT")"

# A whole job on one more fresh stamped runner, and its report.
note "a CI job: stamp, go build, go vet, go test, then report"
fresh_checkout
"$BIN" stamp "$CHECKOUT" >/dev/null
export GOCACHEPROG_S3_STATS_DIR="$WORK_DIR/job-stats"
for cmd in "build ./..." "vet ./..." "test ./..."; do
	# shellcheck disable=SC2086 # the go command's words
	(cd "$CHECKOUT" && GOCACHE="$WORK_DIR/tier-job" GOCACHEPROG="$BIN --prefix bench-stamp $BUCKET" \
		"$GO_BIN" $cmd >"$WORK_DIR/job.log" 2>&1) || die "go $cmd failed: $(tail -n 20 "$WORK_DIR/job.log")"
done
say ""
"$BIN" report
