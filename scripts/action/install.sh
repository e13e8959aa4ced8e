#!/usr/bin/env bash
# The GitHub Action's one step (action.yml runs it; scripts/test-action.sh tests it with a
# runner's environment laid out by hand): download the release archive for this runner,
# check it against the release's SHA256SUMS, put the binary on PATH (GITHUB_PATH) and
# export GOCACHEPROG (GITHUB_ENV) for the job's later steps.
#
# Inputs, as action.yml passes them:
#   GCP_BUCKET GCP_PREFIX GCP_REGION GCP_ENDPOINT   the cache's settings (all optional:
#                                      without a bucket it is a local-only cache)
#   GCP_READ_ONLY     auto (default): --read-only for a pull request from a fork (its head
#                     repository is not the base one); true; false
#   GCP_VERSION       default: the version in the action's own Cargo.toml (the action's tag)
#   GCP_DOWNLOAD_URL  default: $GITHUB_SERVER_URL/<action repository>/releases/download/v<version>
#   GCP_ACTION_REPOSITORY, GCP_ACTION_PATH   where the action comes from
# The runner's: RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP, GITHUB_PATH, GITHUB_ENV,
# GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_SERVER_URL, GITHUB_OUTPUT (optional).
set -euo pipefail

fail() {
	echo "::error title=gocacheprog-s3::$*"
	exit 1
}

# The archive for this runner (RUNNER_OS, RUNNER_ARCH). Windows on ARM64 runs the x64
# binary under Windows' own emulation.
case "${RUNNER_OS:-}/${RUNNER_ARCH:-}" in
Linux/X64) target=x86_64-unknown-linux-musl ;;
Linux/ARM64) target=aarch64-unknown-linux-musl ;;
macOS/X64) target=x86_64-apple-darwin ;;
macOS/ARM64) target=aarch64-apple-darwin ;;
Windows/X64 | Windows/ARM64) target=x86_64-pc-windows-gnu ;;
*) fail "no release archive for RUNNER_OS=${RUNNER_OS:-} RUNNER_ARCH=${RUNNER_ARCH:-} (there are Linux, macOS and Windows on X64 and ARM64)" ;;
esac

version=${GCP_VERSION:-}
version=${version#v}
if [ -z "$version" ]; then
	manifest="${GCP_ACTION_PATH:-$(dirname "$0")/../..}/Cargo.toml"
	version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$manifest" 2>/dev/null | head -n 1)
	[ -n "$version" ] || fail "no version input and no version in $manifest"
fi
base=${GCP_DOWNLOAD_URL:-${GITHUB_SERVER_URL:-https://github.com}/${GCP_ACTION_REPOSITORY:?the action repository}/releases/download/v$version}
base=${base%/}
case "$target" in *-windows-*) ext=zip exe=gocacheprog-s3.exe ;; *) ext=tar.gz exe=gocacheprog-s3 ;; esac
archive="gocacheprog-s3-$version-$target.$ext"

# Download and check.
dir="${RUNNER_TEMP:?}/gocacheprog-s3-$version-$target"
rm -rf "$dir"
mkdir -p "$dir/bin"
fetch() { curl --fail --silent --show-error --location --retry 3 --output "$dir/$1" "$base/$1"; }
fetch SHA256SUMS || fail "could not download $base/SHA256SUMS"
fetch "$archive" || fail "could not download $base/$archive"
want=$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1 }' "$dir/SHA256SUMS")
[ -n "$want" ] || fail "$archive is not listed in $base/SHA256SUMS"
if command -v sha256sum >/dev/null; then
	got=$(sha256sum "$dir/$archive" | awk '{ print $1 }')
else
	got=$(shasum -a 256 "$dir/$archive" | awk '{ print $1 }')
fi
if [ "$got" != "$want" ]; then
	rm -rf "$dir"
	fail "$archive has SHA-256 $got, but SHA256SUMS says $want: not installed (a damaged or altered download)"
fi
case "$ext" in
zip)
	if command -v unzip >/dev/null; then
		unzip -q -o "$dir/$archive" "$exe" -d "$dir/bin"
	else
		powershell -NoProfile -Command "Expand-Archive -Force -LiteralPath '$dir/$archive' -DestinationPath '$dir/bin'"
	fi
	;;
*) tar -xzf "$dir/$archive" -C "$dir/bin" "$exe" ;;
esac
rm -f "$dir/$archive"
installed=$("$dir/bin/$exe" --version) || fail "$dir/bin/$exe does not run on this runner"

# Read-only for pull requests from forks: their code is not the team's.
from_fork() {
	case "${GITHUB_EVENT_NAME:-}" in pull_request | pull_request_target) ;; *) return 1 ;; esac
	local repos
	if command -v jq >/dev/null; then
		repos=$(jq -r '"\(.pull_request.head.repo.full_name // "") \(.pull_request.base.repo.full_name // "")"' \
			"${GITHUB_EVENT_PATH:?}") || return 0
	elif command -v python3 >/dev/null; then
		repos=$(python3 -c 'import json, sys
pr = json.load(open(sys.argv[1])).get("pull_request") or {}
name = lambda side: ((pr.get(side) or {}).get("repo") or {}).get("full_name") or ""
print(name("head"), name("base"))' "${GITHUB_EVENT_PATH:?}") || return 0
	else
		echo "::notice title=gocacheprog-s3::neither jq nor python3 to read the event: treating the pull request as from a fork"
		return 0
	fi
	# A deleted fork has no head repository: still a fork.
	local head=${repos% *} base=${repos#* }
	[ -z "$head" ] || [ "$head" != "$base" ]
}
case "${GCP_READ_ONLY:-auto}" in
true) read_only=true ;;
false) read_only=false ;;
auto) if from_fork; then read_only=true; else read_only=false; fi ;;
*) fail "read-only is auto, true or false, not '${GCP_READ_ONLY}'" ;;
esac

# GOCACHEPROG is split on spaces by go: no value may hold one (or a quote).
prog=gocacheprog-s3
[ "$read_only" = true ] && prog+=" --read-only"
for pair in "--prefix:${GCP_PREFIX:-}" "--region:${GCP_REGION:-}" "--endpoint:${GCP_ENDPOINT:-}" "bucket:${GCP_BUCKET:-}"; do
	flag=${pair%%:*} value=${pair#*:}
	[ -n "$value" ] || continue
	case "$value" in *[[:space:]\"\']*) fail "${flag#--} '$value' holds a space or a quote" ;; esac
	if [ "$flag" = bucket ]; then prog+=" $value"; else prog+=" $flag $value"; fi
done

bin_dir="$dir/bin"
# Windows' PATH in Windows' spelling (Git Bash's cygpath), not D:\a\_temp/...
command -v cygpath >/dev/null && bin_dir=$(cygpath -w "$bin_dir")
echo "$bin_dir" >>"${GITHUB_PATH:?}"
echo "GOCACHEPROG=$prog" >>"${GITHUB_ENV:?}"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
	{
		echo "path=$dir/bin/$exe"
		echo "read-only=$read_only"
	} >>"$GITHUB_OUTPUT"
fi
echo "$installed ($target) in $dir/bin; GOCACHEPROG=$prog"
