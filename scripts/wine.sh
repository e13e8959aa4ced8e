#!/usr/bin/env bash
# Runs a Windows program under wine (Debian's wine64) in the prefix $WINEPREFIX, made
# when missing, then stops that prefix's wineserver so that no wine process is left.
# tests/cross_windows.rs runs the Windows binary through it, and scripts/test.sh the
# Windows unit tests (as cargo's runner for x86_64-pc-windows-gnu).
#
#   WINEPREFIX=/tmp/a-dir-of-its-own scripts/wine.sh PROGRAM.exe ARGS...
#
# One program at a time per prefix (the end of one stops the prefix's wineserver).
# Debian bookworm's wine 8 lacks bcryptprimitives.dll, which Rust's std imports (for
# ProcessPrng): a prefix without one gets a shim built from tests/tools/bcryptprimitives.c
# with mingw-w64 (Windows 10+ and wine 9+ have their own).
set -euo pipefail
: "${WINEPREFIX:?set WINEPREFIX to a directory of its own}"
export WINEPREFIX WINEDEBUG=${WINEDEBUG:--all}
repo=$(cd "$(dirname "$0")/.." && pwd)
fail() {
	echo "wine.sh: $*" >&2
	exit 125
}
command -v wine >/dev/null || fail "wine is missing: scripts/build-cross.sh x86_64-pc-windows-gnu installs it"
if [ ! -f "$WINEPREFIX/system.reg" ]; then
	# No Mono or Gecko: nothing here needs .NET or HTML, and their installers would ask.
	WINEDLLOVERRIDES="mscoree,mshtml=" timeout 300 wine wineboot --init >/dev/null 2>&1 ||
		fail "wineboot --init in $WINEPREFIX failed or took over 300 s"
	timeout 60 wineserver --wait || true
fi
dll="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -e "$dll" ]; then
	command -v x86_64-w64-mingw32-gcc >/dev/null || fail "x86_64-w64-mingw32-gcc is missing (Debian gcc-mingw-w64-x86-64)"
	x86_64-w64-mingw32-gcc -shared -O2 -s -o "$dll" "$repo/tests/tools/bcryptprimitives.c" -ladvapi32 ||
		fail "could not build the bcryptprimitives.dll shim"
fi
rc=0
wine "$@" || rc=$?
wineserver --kill 2>/dev/null || true
exit "$rc"
