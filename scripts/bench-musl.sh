#!/usr/bin/env bash
# The static musl binary against the glibc one where the cache program works hardest:
# a warm `go build std` from a Garage bucket on 127.0.0.1 onto an empty local tier
# (64 prefetch workers decoding, hashing and writing). Alternates the two binaries,
# REPS runs each, and prints the median wall time and the cache program's CPU time.
# Figures, not a test: musl's own allocator is slow under threads, which is why the
# static build uses mimalloc (docs/development.md, "Dependencies"); MUSL_BIN compares any other build.
#
# Usage: scripts/bench-musl.sh [REPS (5)]
# Env: CACHEPROG_BIN (the glibc binary), MUSL_BIN (the static one: skips scripts/build-static.sh).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

common_init bench-musl
REPS=${1:-5}
ensure_python
ensure_go
ensure_garage
apt_ensure /usr/bin/time time
build_release
declare -A BINS=([glibc]=$BIN [musl]=${MUSL_BIN:-$("$REPO_ROOT/scripts/build-static.sh")})
go_env
garage_start
warm_os_cache std

note "filling the bucket (a cold go build std)"
timed_go_build "$WORK_DIR/fill" "$BIN $BUCKET" std

# Each run: a fresh tier (tiers are not deleted until the end: on journal-less ext4,
# files created soon after a mass delete cost seconds), the program under /usr/bin/time.
declare -A WALL=() CPU=()
for ((r = 1; r <= REPS; r++)); do
	for kind in glibc musl; do
		run="$WORK_DIR/$kind-$r"
		mkdir -p "$run"
		printf '#!/bin/sh\nexec /usr/bin/time -o %s/time.txt -f "%%U %%S" %s "$@"\n' "$run" "${BINS[$kind]}" >"$run/wrap.sh"
		chmod +x "$run/wrap.sh"
		sync
		timed_go_build "$run/tier" "$run/wrap.sh $BUCKET" std
		WALL[$kind]+="$LAST_SECS "
		CPU[$kind]+="$(awk '{ printf "%.2f", $1 + $2 }' "$run/time.txt") "
		note "run $r $kind: $LAST_SECS s wall, $(awk '{ printf "%.2f", $1 + $2 }' "$run/time.txt") s CPU"
	done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
say "warm go build std from Garage on 127.0.0.1, empty local tier, $REPS runs each ($(nproc) cores, $(git -C "$REPO_ROOT" rev-parse --short HEAD)):"
for kind in glibc musl; do
	say "  $kind: wall median $(median <<<"${WALL[$kind]}") s (runs ${WALL[$kind]% }), cache program CPU median $(median <<<"${CPU[$kind]}") s"
done
