#!/usr/bin/env bash
# The GitHub Action (action.yml) on this machine: a runner's environment laid out by hand
# (RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP, GITHUB_ENV, GITHUB_PATH, GITHUB_EVENT_NAME,
# GITHUB_EVENT_PATH, ...), the release served from dist/ by python's http.server on
# 127.0.0.1 (a port chosen at run time), and action.yml's steps run as the runner runs
# them (scripts/lib/action_step.py). Then real go builds with what the action exported
# (PATH from GITHUB_PATH, GOCACHEPROG from GITHUB_ENV) against a Garage bucket:
#   - a push: the binary on PATH, GOCACHEPROG read-write with the inputs; a build fills
#     the bucket, a build on an empty local tier gets every output from it;
#   - a pull request from a fork: --read-only (the build reads the bucket, uploads nothing);
#     from the same repository, or with read-only: false, not; read-only: true always;
#   - a damaged archive: refused, nothing installed, nothing exported;
#   - a runner with no archive (RUNNER_ARCH=X86): refused with its name.
#
#   scripts/test-action.sh     needs dist/ with the x86_64 Linux archive (runs
#                              scripts/dist.sh for it when missing)
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
common_init test-action
ensure_python
ensure_go
ensure_garage
go_env
python3 -c 'import yaml' 2>/dev/null || die "python3 has no yaml module (scripts/install-test-deps.sh installs it with moto)"

version=$(crate_version)
dist=${DIST_DIR:-$REPO_ROOT/dist}
archive="gocacheprog-s3-$version-x86_64-unknown-linux-musl.tar.gz"
if ! grep -q " $archive\$" "$dist/SHA256SUMS" 2>/dev/null; then
	note "no $archive in $dist/SHA256SUMS: scripts/dist.sh x86_64-unknown-linux-musl"
	"$REPO_ROOT/scripts/dist.sh" x86_64-unknown-linux-musl >/dev/null
fi
! command -v gocacheprog-s3 >/dev/null || die "gocacheprog-s3 is on PATH already ($(command -v gocacheprog-s3)): the test could not tell"

# The release as GitHub serves it (GITHUB_SERVER_URL/<repo>/releases/download/v<version>),
# and a copy whose archive was damaged on the way.
www="$WORK_DIR/www"
release="$www/example/gocacheprog-s3/releases/download/v$version"
mkdir -p "$release" "$www/damaged"
cp "$dist/$archive" "$dist/SHA256SUMS" "$release/"
cp "$dist/$archive" "$dist/SHA256SUMS" "$www/damaged/"
printf 'x' >>"$www/damaged/$archive"
python3 -u -m http.server --bind 127.0.0.1 --directory "$www" 0 >"$WORK_DIR/http.log" 2>&1 &
track_pid $!
port=
for ((i = 0; i < 300; i++)); do # up to 30 s (a loaded runner starts python slowly)
	port=$(sed -n 's/.*Serving HTTP on [0-9.]* port \([0-9]*\).*/\1/p' "$WORK_DIR/http.log")
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || die "http.server did not start: $(cat "$WORK_DIR/http.log")"

garage_start
endpoint=$AWS_ENDPOINT_URL_S3
# The credentials come from the job's environment; bucket, endpoint and region from the inputs.
unset AWS_ENDPOINT_URL_S3 AWS_REGION
export AWS_EC2_METADATA_DISABLED=true

# run_action NAME EVENT_NAME HEAD_REPO [INPUT=VALUE...]: the action's steps in a fresh
# runner layout $WORK_DIR/NAME (HEAD_REPO: the pull request's head repository); sets RC.
run_action() {
	local event=$2 head=$3 runner="$WORK_DIR/$1"
	shift 3
	mkdir -p "$runner/temp"
	: >"$runner/env"
	: >"$runner/path"
	: >"$runner/output"
	cat >"$runner/event.json" <<-EOF
		{"action": "opened", "pull_request": {"number": 7,
		  "head": {"ref": "topic", "repo": {"full_name": "$head"}},
		  "base": {"ref": "main", "repo": {"full_name": "example/gocacheprog-s3"}}}}
	EOF
	[ "$event" = push ] && echo '{"ref": "refs/heads/main"}' >"$runner/event.json"
	RC=0
	RUNNER_OS=${RUNNER_OS:-Linux} RUNNER_ARCH=${RUNNER_ARCH:-X64} RUNNER_TEMP="$runner/temp" \
		GITHUB_ENV="$runner/env" GITHUB_PATH="$runner/path" GITHUB_OUTPUT="$runner/output" \
		GITHUB_EVENT_NAME="$event" GITHUB_EVENT_PATH="$runner/event.json" \
		GITHUB_SERVER_URL="http://127.0.0.1:$port" GITHUB_ACTION_REPOSITORY=example/gocacheprog-s3 \
		GITHUB_ACTION_PATH="$REPO_ROOT" \
		python3 "$LIB_DIR/action_step.py" "$REPO_ROOT/action.yml" "$@" >"$runner/log" 2>&1 || RC=$?
}

# exported NAME: the GOCACHEPROG the action wrote to NAME's GITHUB_ENV.
exported() { sed -n 's/^GOCACHEPROG=//p' "$WORK_DIR/$1/env"; }

# go_build_with NAME GOCACHE STATS: go build of the module with PATH and GOCACHEPROG as
# NAME's GITHUB_PATH and GITHUB_ENV say (the runner prepends each GITHUB_PATH line).
go_build_with() {
	local runner="$WORK_DIR/$1" path=$PATH line
	while read -r line; do path="$line:$path"; done <"$runner/path"
	[ "$(PATH=$path command -v gocacheprog-s3)" = "$(head -n 1 "$runner/path")/gocacheprog-s3" ] ||
		die "$1: gocacheprog-s3 on the runner's PATH is not the one the action installed"
	(cd "$WORK_DIR/module" && PATH=$path GOCACHE="$2" GOCACHEPROG="$(exported "$1")" \
		GOCACHEPROG_S3_STATS_FILE="$3" "$GO_BIN" build -o /dev/null .) >"$runner/go.log" 2>&1 ||
		{
			cat "$runner/go.log" >&2
			die "$1: go build with GOCACHEPROG='$(exported "$1")' failed"
		}
}

stat_of() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# failed NAME MESSAGE: the action's log for NAME, then stop.
failed() {
	sed 's/^/  | /' "$WORK_DIR/$1/log" >&2
	die "$1: $2"
}

mkdir -p "$WORK_DIR/module"
printf 'module example.com/hello\n\ngo 1.24\n' >"$WORK_DIR/module/go.mod"
cat >"$WORK_DIR/module/main.go" <<'EOF'
package main

import (
	"fmt"
	"net/url"
	"strings"
)

func main() {
	u, _ := url.Parse("s3://cache/go-cache")
	fmt.Println(strings.ToUpper(u.Host))
}
EOF

inputs=(bucket="$BUCKET" endpoint="$endpoint" region=garage prefix=action-test)
passed=0

# A push: read-write, the inputs in GOCACHEPROG, the binary on PATH.
run_action push push "" "${inputs[@]}"
[ "$RC" = 0 ] || failed push "the action failed (exit $RC)"
want="gocacheprog-s3 --prefix action-test --region garage --endpoint $endpoint $BUCKET"
[ "$(exported push)" = "$want" ] || failed push "GOCACHEPROG is '$(exported push)', not '$want'"
grep -qx "read-only=false" "$WORK_DIR/push/output" || failed push "no read-only=false output"
go_build_with push "$WORK_DIR/gocache-1" "$WORK_DIR/push-1.json"
puts=$(stat_of "$WORK_DIR/push-1.json" puts)
uploads=$(stat_of "$WORK_DIR/push-1.json" uploads)
{ [ "$puts" -gt 0 ] && [ "$uploads" = "$puts" ]; } || die "push: the first build put $puts outputs and uploaded $uploads"
go_build_with push "$WORK_DIR/gocache-2" "$WORK_DIR/push-2.json"
hits=$(stat_of "$WORK_DIR/push-2.json" remote_hits)
[ "$hits" -gt 0 ] || die "push: a build on an empty local tier got nothing from the bucket"
note "push: GOCACHEPROG='$(exported push)'; $uploads outputs uploaded, $hits from the bucket on an empty tier"
passed=$((passed + 1))

# A pull request from a fork: --read-only by default; the build reads, uploads nothing.
run_action fork pull_request someone/gocacheprog-s3 "${inputs[@]}"
[ "$RC" = 0 ] || failed fork "the action failed (exit $RC)"
case "$(exported fork)" in "gocacheprog-s3 --read-only "*) true ;; *) false ;; esac || failed fork "a fork's pull request got GOCACHEPROG='$(exported fork)', without --read-only"
go_build_with fork "$WORK_DIR/gocache-3" "$WORK_DIR/fork.json"
{ [ "$(stat_of "$WORK_DIR/fork.json" uploads)" = 0 ] && [ "$(stat_of "$WORK_DIR/fork.json" remote_hits)" -gt 0 ]; } ||
	die "fork: a read-only build uploaded $(stat_of "$WORK_DIR/fork.json" uploads) and hit $(stat_of "$WORK_DIR/fork.json" remote_hits)"
note "fork: GOCACHEPROG='$(exported fork)'; nothing uploaded, $(stat_of "$WORK_DIR/fork.json" remote_hits) from the bucket"
passed=$((passed + 1))

# The other read-only cases: what GOCACHEPROG says.
run_action fork-target pull_request_target someone/gocacheprog-s3 bucket=b
{ [ "$RC" = 0 ] && [ "$(exported fork-target)" = "gocacheprog-s3 --read-only b" ]; } || failed fork-target "pull_request_target from a fork: '$(exported fork-target)'"
run_action same-repo pull_request example/gocacheprog-s3 bucket=b
{ [ "$RC" = 0 ] && [ "$(exported same-repo)" = "gocacheprog-s3 b" ]; } || failed same-repo "a pull request from the repository itself: '$(exported same-repo)'"
run_action fork-rw pull_request someone/gocacheprog-s3 bucket=b read-only=false
{ [ "$RC" = 0 ] && [ "$(exported fork-rw)" = "gocacheprog-s3 b" ]; } || failed fork-rw "read-only: false: '$(exported fork-rw)'"
run_action push-ro push "" bucket=b read-only=true
{ [ "$RC" = 0 ] && [ "$(exported push-ro)" = "gocacheprog-s3 --read-only b" ]; } || failed push-ro "read-only: true: '$(exported push-ro)'"
run_action local-only push ""
{ [ "$RC" = 0 ] && [ "$(exported local-only)" = "gocacheprog-s3" ]; } || failed local-only "no inputs: '$(exported local-only)'"
run_action spaced push "" bucket="my bucket"
{ [ "$RC" != 0 ] && grep -q "holds a space" "$WORK_DIR/spaced/log"; } || failed spaced "a bucket with a space was taken"
passed=$((passed + 6))

# A damaged download: refused; nothing installed, nothing on PATH, no GOCACHEPROG.
run_action damaged push "" "${inputs[@]}" download-url="http://127.0.0.1:$port/damaged"
[ "$RC" != 0 ] || failed damaged "a damaged archive was installed"
grep -q "SHA256SUMS says" "$WORK_DIR/damaged/log" || failed damaged "no checksum message"
{ [ ! -s "$WORK_DIR/damaged/path" ] && [ ! -s "$WORK_DIR/damaged/env" ]; } || failed damaged "the action exported something"
[ -z "$(find "$WORK_DIR/damaged/temp" -name "gocacheprog-s3*" -type f)" ] || failed damaged "a binary was left in RUNNER_TEMP"
note "damaged: $(grep -o 'has SHA-256.*' "$WORK_DIR/damaged/log")"
passed=$((passed + 1))

# A runner without an archive.
RUNNER_ARCH=X86 run_action x86 push "" "${inputs[@]}"
{ [ "$RC" != 0 ] && grep -q "RUNNER_ARCH=X86" "$WORK_DIR/x86/log"; } || failed x86 "RUNNER_ARCH=X86 was not refused by name"
passed=$((passed + 1))

# The README's one-line installs for Linux and macOS ("Install"), pointed at this server:
# they install the binary from a good release, and nothing from a damaged one.
readme_line() { grep -m 1 "^t=gocacheprog-s3-$version-$1.tar.gz; curl " "$REPO_ROOT/README.md"; }
for t in x86_64-unknown-linux-musl aarch64-apple-darwin; do
	line=$(readme_line "$t") || die "README: no one-line install of $version for $t (the version in the README is not Cargo.toml's?)"
	grep -q " gocacheprog-s3-$version-$t.tar.gz\$" "$dist/SHA256SUMS" || {
		note "README line for $t: no archive in dist/ to try it on (scripts/dist.sh $t)"
		continue
	}
	cp "$dist/gocacheprog-s3-$version-$t.tar.gz" "$release/"
	cp "$dist/gocacheprog-s3-$version-$t.tar.gz" "$www/damaged/"
	printf 'x' >>"$www/damaged/gocacheprog-s3-$version-$t.tar.gz"
	for where in good damaged; do
		url="http://127.0.0.1:$port/example/gocacheprog-s3/releases/download/v$version"
		[ "$where" = damaged ] && url="http://127.0.0.1:$port/damaged"
		mkdir -p "$WORK_DIR/readme-$t-$where"
		rc=0
		(cd "$WORK_DIR/readme-$t-$where" &&
			bash -euo pipefail -c "${line//"https://github.com/OWNER/gocacheprog-s3/releases/download/v$version"/"$url"}") \
			>"$WORK_DIR/readme-$t-$where.log" 2>&1 || rc=$?
		got="$WORK_DIR/readme-$t-$where/gocacheprog-s3"
		if [ "$where" = good ]; then
			tar -xzOf "$dist/gocacheprog-s3-$version-$t.tar.gz" gocacheprog-s3 >"$WORK_DIR/want-$t"
			{ [ "$rc" = 0 ] && cmp -s "$got" "$WORK_DIR/want-$t"; } ||
				die "README's line for $t did not install the archive's binary: $(cat "$WORK_DIR/readme-$t-$where.log")"
		else
			{ [ "$rc" != 0 ] && [ ! -e "$got" ]; } || die "README's line for $t installed from a damaged archive"
		fi
	done
	passed=$((passed + 1))
done
[ "$("$WORK_DIR/readme-x86_64-unknown-linux-musl-good/gocacheprog-s3" --version)" = "gocacheprog-s3 $version" ] ||
	die "the binary the README's line installed does not run"

say "test-action: $passed passed, 0 failed"
