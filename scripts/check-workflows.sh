#!/usr/bin/env bash
# actionlint over .github/workflows (with shellcheck over their run: scripts). Installs
# the pinned actionlint with `go install` into ~/.cache/gocacheprog-s3 (once) and
# Debian's shellcheck when missing.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
SCRIPT_NAME=check-workflows
ACTIONLINT_VERSION=v1.7.12
dir="${XDG_CACHE_HOME:-$HOME/.cache}/gocacheprog-s3/actionlint-$ACTIONLINT_VERSION"

apt_ensure shellcheck shellcheck
if ! [ -x "$dir/actionlint" ]; then
	ensure_go
	note "go install github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
	mkdir -p "$dir"
	(cd / && GOBIN="$dir" GOFLAGS='' GOTOOLCHAIN=local "$GO_BIN" install \
		"github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION") >&2 ||
		die "go install actionlint failed"
fi
cd "$REPO_ROOT"
"$dir/actionlint" -shellcheck "$(command -v shellcheck)" .github/workflows/*.yml
note "actionlint $ACTIONLINT_VERSION: .github/workflows clean"
