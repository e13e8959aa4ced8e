# shellcheck shell=bash
# The release build of one target, shared by scripts/dist.sh and scripts/build-static.sh
# so both make the same binary with the same flags (cargo then builds it once, and the
# binary the tests run is the one the archives ship). Source it after scripts/lib/common.sh.
#
# Which C toolchain builds a target's C code (ring, mimalloc under musl) and links it,
# chosen by measurement (docs/development.md, "Release archives, the Action and the image"):
#   x86_64-unknown-linux-musl   musl-gcc (Debian's musl-tools): static-pie, as before
#   aarch64-unknown-linux-musl  zig (PyPI's ziglang) driven by cargo-zigbuild: Debian has
#                               no aarch64 musl cross compiler
#   *-apple-darwin              zig: the only cross linker for Mach-O here (no SDK needed:
#                               the binary links libSystem and libiconv only)
#   x86_64-pc-windows-gnu       Debian's mingw-w64 (what rustup's windows-gnu target expects)
#
# Reproducible: paths are remapped (the checkout, the cargo home, the target dir),
# SOURCE_DATE_EPOCH is fixed (mimalloc's C code holds __DATE__) and Mach-O binaries are
# stripped at the link, so two clean builds of a commit give the same bytes wherever the
# checkout is (scripts/check-reproducible.sh).

DIST_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl x86_64-apple-darwin aarch64-apple-darwin
	x86_64-pc-windows-gnu)
ZIG_VERSION=0.17.0
CARGO_ZIGBUILD_VERSION=0.24.0
ZIG_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/gocacheprog-s3/ziglang-$ZIG_VERSION"
# Every shipped binary stays within this (docs/development.md, "Static binary and container").
SIZE_BUDGET=${STATIC_SIZE_BUDGET:-3670016}

# target_builder TARGET: musl-gcc, zig or mingw (see above); fails for other targets.
target_builder() {
	case "$1" in
	x86_64-unknown-linux-musl) echo musl-gcc ;;
	aarch64-unknown-linux-musl | x86_64-apple-darwin | aarch64-apple-darwin) echo zig ;;
	x86_64-pc-windows-gnu) echo mingw ;;
	*) return 1 ;;
	esac
}

# binary_name TARGET
binary_name() { case "$1" in *-windows-*) echo gocacheprog-s3.exe ;; *) echo gocacheprog-s3 ;; esac }

ensure_rust_target() {
	if command -v rustup >/dev/null; then
		if ! rustup target list --installed | grep -qx "$1"; then
			note "rustup target add $1"
			rustup target add "$1" >&2
		fi
	else
		note "no rustup: assuming the toolchain has the $1 standard library"
	fi
}

# ensure_zig: zig from PyPI (pip --target into $ZIG_DIR: no venv, no PEP 668 trouble) and
# cargo-zigbuild from crates.io, both pinned; exports what cargo-zigbuild needs to find
# this zig and no other.
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
		[ "$("$zig" version 2>/dev/null)" = "$ZIG_VERSION" ] || die "installed ziglang but $zig does not run"
	fi
	# cargo-zigbuild tries `python3 -m ziglang` first: make that this one.
	export PYTHONPATH="$ZIG_DIR${PYTHONPATH:+:$PYTHONPATH}" CARGO_ZIGBUILD_ZIG_PATH="$zig"
	if ! cargo-zigbuild --version 2>/dev/null | grep -q " $CARGO_ZIGBUILD_VERSION\$"; then
		command -v cc >/dev/null || apt_ensure cc build-essential
		note "cargo install cargo-zigbuild $CARGO_ZIGBUILD_VERSION"
		cargo install cargo-zigbuild --version "$CARGO_ZIGBUILD_VERSION" --locked --quiet >&2 ||
			die "cargo install cargo-zigbuild failed"
	fi
}

# build_epoch: SOURCE_DATE_EPOCH when set, else the time of the last commit that changed
# what is built (so a commit of docs or scripts rebuilds nothing); empty outside git.
build_epoch() {
	if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
		printf '%s\n' "$SOURCE_DATE_EPOCH"
	else
		git -C "$REPO_ROOT" log -1 --format=%ct -- Cargo.toml Cargo.lock src 2>/dev/null || true
	fi
}

# target_dir: cargo's target directory, absolute.
target_dir() {
	local dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
	case "$dir" in /*) ;; *) dir="$REPO_ROOT/$dir" ;; esac
	printf '%s\n' "$dir"
}

# build_target TARGET: the release build of gocacheprog-s3 for TARGET (installing the
# rustup target and the C toolchain when missing); sets BIN to the binary's path.
build_target() {
	local target=$1 builder tdir home flags cflags cargo_cmd=(cargo build) tu epoch
	builder=$(target_builder "$target") || die "unknown target $target (known: ${DIST_TARGETS[*]})"
	export PATH="$PATH:$CARGO_BIN_DIR"
	command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"
	ensure_rust_target "$target"
	case "$builder" in
	musl-gcc) apt_ensure musl-gcc musl-tools ;;
	mingw) apt_ensure x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64 ;;
	zig)
		ensure_zig
		cargo_cmd=(cargo zigbuild)
		;;
	esac
	command -v cc >/dev/null || apt_ensure cc build-essential # build scripts run on the host
	tdir=$(target_dir)
	home=$(cd "${CARGO_HOME:-$HOME/.cargo}" 2>/dev/null && pwd -P || echo "${CARGO_HOME:-$HOME/.cargo}")
	# The last prefix that matches wins: the target dir may lie inside the checkout.
	flags="--remap-path-prefix=$REPO_ROOT=/src"$'\x1f'"--remap-path-prefix=$home=/cargo"
	flags+=$'\x1f'"--remap-path-prefix=$tdir=/target"
	# zig's Mach-O linker derives LC_UUID from what it writes, symbol table included
	# (object paths), before rustc strips it: strip at the link, or the UUID (and the
	# arm64 signature over it) follows the target dir.
	case "$target" in *-apple-darwin) flags+=$'\x1f'"-Clink-arg=-s" ;; esac
	epoch=$(build_epoch)
	[ -n "$epoch" ] || note "not a git checkout and no SOURCE_DATE_EPOCH: the binary holds today's date"
	cflags="-ffile-prefix-map=$REPO_ROOT=/src -ffile-prefix-map=$home=/cargo -ffile-prefix-map=$tdir=/target"
	# __DATE__ and __TIME__ (mimalloc's) from the epoch, spelled out: zig caches compiled C
	# by its arguments, not by SOURCE_DATE_EPOCH. cc-rs splits CFLAGS on spaces: no spaces.
	if [ -n "$epoch" ]; then
		cflags+=" -Wno-builtin-macro-redefined -D__DATE__=\"$(date -u -d "@$epoch" +%Y-%m-%d)\""
		cflags+=" -D__TIME__=\"$(date -u -d "@$epoch" +%H:%M:%S)\""
	fi
	tu=${target//-/_}
	note "${cargo_cmd[*]} --release --target $target ($builder)"
	(
		cd "$REPO_ROOT"
		export CARGO_ENCODED_RUSTFLAGS="$flags" "CFLAGS_$tu=$cflags"
		unset RUSTFLAGS
		if [ -n "$epoch" ]; then export SOURCE_DATE_EPOCH="$epoch"; else unset SOURCE_DATE_EPOCH; fi
		case "$target" in # rustc's own minimums; zig's default would be the newest macOS
		x86_64-apple-darwin) export MACOSX_DEPLOYMENT_TARGET=10.12 ;;
		aarch64-apple-darwin) export MACOSX_DEPLOYMENT_TARGET=11.0 ;;
		esac
		"${cargo_cmd[@]}" --release --locked --quiet --target "$target" --bin gocacheprog-s3
	) >&2 || die "${cargo_cmd[*]} --target $target failed"
	BIN="$tdir/$target/release/$(binary_name "$target")"
	[ -x "$BIN" ] || die "no binary at $BIN"
	case "$BIN" in *[[:space:]]*) die "binary path has spaces ($BIN): GOCACHEPROG can't take it" ;; esac
}

# check_binary TARGET BIN: BIN is an executable for TARGET (what file(1) says), static
# (no loader, no libc) for the musl targets, and within $SIZE_BUDGET.
check_binary() {
	local target=$1 bin=$2 described want loader size
	apt_ensure file file
	described=$(file -b "$bin")
	case "$target" in
	x86_64-unknown-linux-musl) want="ELF 64-bit LSB*x86-64*" ;;
	aarch64-unknown-linux-musl) want="ELF 64-bit LSB*ARM aarch64*" ;;
	x86_64-apple-darwin) want="Mach-O 64-bit x86_64 executable*" ;;
	aarch64-apple-darwin) want="Mach-O 64-bit arm64 executable*" ;;
	x86_64-pc-windows-gnu) want="PE32+ executable*x86-64*" ;;
	esac
	# shellcheck disable=SC2254 # $want is a pattern
	case "$described" in $want) ;; *) die "$bin is not a $target executable: file says: $described" ;; esac
	case "$target" in
	*-linux-musl)
		case "$described" in
		*"statically linked"* | *"static-pie linked"*) ;;
		*) die "$bin is not static: file says: $described" ;;
		esac
		# ldd exits non-zero on a static binary; only what it prints matters.
		loader=$(ldd "$bin" 2>&1 || true)
		case "$loader" in
		*"not a dynamic executable"* | *"statically linked"*) ;;
		*) die "$bin loads shared libraries: ldd says: $loader" ;;
		esac
		;;
	esac
	# Apple Silicon runs no unsigned code: the linker signs it (ad hoc); each page's hash
	# in the signature must match the page, or macOS kills the program at its start.
	if [ "$target" = aarch64-apple-darwin ]; then
		python3 - "$bin" <<-'EOF' || die "$bin: no valid code signature (macOS on arm64 would kill it)"
			import hashlib, struct, sys
			data = open(sys.argv[1], "rb").read()
			ncmds, offset, sig = struct.unpack_from("<I", data, 16)[0], 32, None
			for _ in range(ncmds):
			    cmd, size = struct.unpack_from("<II", data, offset)
			    if cmd == 0x1D:  # LC_CODE_SIGNATURE
			        sig = struct.unpack_from("<I", data, offset + 8)[0]
			    offset += size
			if sig is None:
			    sys.exit("no LC_CODE_SIGNATURE")
			magic, _, count = struct.unpack_from(">III", data, sig)
			assert magic == 0xFADE0CC0, "not an embedded signature"
			for i in range(count):
			    _, blob = struct.unpack_from(">II", data, sig + 12 + 8 * i)
			    cd = sig + blob
			    if struct.unpack_from(">I", data, cd)[0] != 0xFADE0C02:  # CodeDirectory
			        continue
			    hash_off, _, _, slots, limit = struct.unpack_from(">IIIII", data, cd + 16)
			    hash_size, hash_type, _, page_log = struct.unpack_from(">BBBB", data, cd + 36)
			    assert hash_type == 2 and hash_size == 32, "not SHA-256"
			    page = 1 << page_log
			    for n in range(slots):
			        want = data[cd + hash_off + n * 32 : cd + hash_off + (n + 1) * 32]
			        got = hashlib.sha256(data[n * page : min((n + 1) * page, limit)]).digest()
			        if got != want:
			            sys.exit(f"page {n}: the signature's hash does not match")
			    sys.exit(0)
			sys.exit("no CodeDirectory")
		EOF
	fi
	size=$(stat -c %s "$bin")
	[ "$size" -le "$SIZE_BUDGET" ] ||
		die "$bin is $size bytes, over the $SIZE_BUDGET-byte budget (docs/development.md, \"Static binary and container\")"
	note "$bin: $size bytes (budget $SIZE_BUDGET), $described"
}
