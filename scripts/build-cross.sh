#!/usr/bin/env bash
# A release binary of gocacheprog-s3 for another platform, for the tests that run it
# under qemu-user or wine, or read its header (tests/cross_*.rs).
#
#   scripts/build-cross.sh TARGET     builds, prints the binary's path on stdout
#
# TARGET: aarch64-unknown-linux-musl, x86_64-apple-darwin, aarch64-apple-darwin or
# x86_64-pc-windows-gnu. Installs what it needs when missing (idempotent): the rustup
# target, and the C toolchain for ring's and mimalloc's C code and the link:
#   *-windows-gnu          Debian's mingw-w64 (what rustup's windows-gnu target expects)
#   aarch64-*-linux-musl   zig (PyPI's ziglang) through cargo-zigbuild: Debian has no
#   *-apple-darwin         aarch64 musl cross compiler, nor a Mach-O linker
# and what the tests run the binaries with: qemu-user-static (aarch64), wine64 (Windows).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
SCRIPT_NAME="build-cross"
ZIG_VERSION=0.17.0
CARGO_ZIGBUILD_VERSION=0.24.0
ZIG_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/gocacheprog-s3/ziglang-$ZIG_VERSION"

target=${1:?usage: scripts/build-cross.sh TARGET}
export PATH="$PATH:$CARGO_BIN_DIR"
command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"
command -v cc >/dev/null || apt_ensure cc build-essential # build scripts run on the host

ensure_zig() {
	local zig="$ZIG_DIR/ziglang/zig"
	if ! { [ -x "$zig" ] && [ "$("$zig" version 2>/dev/null)" = "$ZIG_VERSION" ]; }; then
		ensure_python
		note "pip install ziglang==$ZIG_VERSION into $ZIG_DIR"
		rm -rf "$ZIG_DIR"
		mkdir -p "$ZIG_DIR"
		PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
			--target "$ZIG_DIR" "ziglang==$ZIG_VERSION" >&2 ||
			PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
				--break-system-packages --target "$ZIG_DIR" "ziglang==$ZIG_VERSION" >&2 ||
			die "pip install ziglang==$ZIG_VERSION failed"
	fi
	# cargo-zigbuild tries `python3 -m ziglang` first: make that this one.
	export PYTHONPATH="$ZIG_DIR${PYTHONPATH:+:$PYTHONPATH}" CARGO_ZIGBUILD_ZIG_PATH="$zig"
	if ! cargo-zigbuild --version 2>/dev/null | grep -q " $CARGO_ZIGBUILD_VERSION\$"; then
		note "cargo install cargo-zigbuild $CARGO_ZIGBUILD_VERSION"
		cargo install cargo-zigbuild --version "$CARGO_ZIGBUILD_VERSION" --locked --quiet >&2 ||
			die "cargo install cargo-zigbuild failed"
	fi
}

build=(cargo build)
name=gocacheprog-s3
case "$target" in
x86_64-pc-windows-gnu)
	apt_ensure x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64
	apt_ensure wine wine
	apt_ensure /usr/lib/wine/wine64 wine64
	name=gocacheprog-s3.exe
	;;
aarch64-unknown-linux-musl)
	ensure_zig
	apt_ensure qemu-aarch64-static qemu-user-static
	build=(cargo zigbuild)
	;;
x86_64-apple-darwin | aarch64-apple-darwin)
	ensure_zig
	build=(cargo zigbuild)
	;;
*) die "unknown target $target (aarch64-unknown-linux-musl, x86_64-apple-darwin, aarch64-apple-darwin, x86_64-pc-windows-gnu)" ;;
esac
if ! rustup target list --installed | grep -qx "$target"; then
	note "rustup target add $target"
	rustup target add "$target" >&2
fi

note "${build[*]} --release --target $target"
(
	cd "$REPO_ROOT"
	case "$target" in # rustc's own minimums; zig's default would be the newest macOS
	x86_64-apple-darwin) export MACOSX_DEPLOYMENT_TARGET=10.12 ;;
	aarch64-apple-darwin) export MACOSX_DEPLOYMENT_TARGET=11.0 ;;
	esac
	"${build[@]}" --release --locked --quiet --target "$target" --bin gocacheprog-s3
) >&2 || die "${build[*]} --target $target failed"
bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$target/release/$name"
case "$bin" in /*) ;; *) bin="$REPO_ROOT/$bin" ;; esac
[ -f "$bin" ] || die "no binary at $bin"
note "$bin: $(stat -c %s "$bin") bytes"
printf '%s\n' "$bin"
