#!/usr/bin/env bash
# How long `gocacheprog-s3 prune` takes to empty a prefix of N small objects in a
# Garage bucket behind faultproxy (a round trip of DELAY ms, 100 MB/s). Figures, not a
# test; the result goes on stdout.
#
# Usage: scripts/bench-prune.sh [OBJECTS (5000)] [DELAY_MS (20)]
# Installs what it needs (garage, boto3 via install-test-deps.sh). Env: CACHEPROG_BIN,
# FAULTPROXY_BIN (skip their builds).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

common_init bench-prune
OBJECTS=${1:-5000}
DELAY_MS=${2:-20}
ensure_python
python3 -c 'import boto3' 2>/dev/null || bash "$REPO_ROOT/scripts/install-test-deps.sh" --only moto >&2
ensure_garage
build_release
build_proxy
garage_start
proxy_start "$DELAY_MS" 100

# The objects go straight to Garage (not through the proxy): only prune is timed.
note "putting $OBJECTS objects under prunebench/"
python3 - "$AWS_ENDPOINT_URL_S3" "$BUCKET" "$OBJECTS" <<'PY'
import sys, boto3, concurrent.futures as cf
endpoint, bucket, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="garage")
def put(i):
    s3.put_object(Bucket=bucket, Key="prunebench/%064x" % i, Body=b"x" * 100)
with cf.ThreadPoolExecutor(32) as pool:
    list(pool.map(put, range(n)))
PY

start=$(now)
AWS_ENDPOINT_URL_S3="http://127.0.0.1:$PROXY_PORT" "$BIN" prune --prefix prunebench --unused-for 0s "$BUCKET" \
	>/dev/null 2>"$WORK_DIR/prune.err" || die "prune failed: $(cat "$WORK_DIR/prune.err")"
secs=$(elapsed "$start")
left=$(python3 - "$AWS_ENDPOINT_URL_S3" "$BUCKET" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="garage")
print(s3.list_objects_v2(Bucket=sys.argv[2], Prefix="prunebench/").get("KeyCount", 0))
PY
)
[ "$left" = 0 ] || die "prune left $left objects"
say "prune --unused-for 0s of $OBJECTS objects, Garage behind $DELAY_MS ms: $secs s ($(nproc) cores, $(git -C "$REPO_ROOT" rev-parse --short HEAD))"
