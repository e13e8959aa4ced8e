#!/usr/bin/env bash
# The release archives: one per target in dist/, plus dist/SHA256SUMS.
#
#   scripts/dist.sh [TARGET...]     default: all of them (scripts/lib/build.sh, DIST_TARGETS)
#
#   dist/gocacheprog-s3-<version>-<target>.tar.gz   (.zip for Windows), each holding the
#   binary (gocacheprog-s3, or gocacheprog-s3.exe), README.md and LICENSE, flat
#   dist/SHA256SUMS                                 every archive of <version> in dist/
#
# Prints one line per target on stdout: `<target> <binary> <archive>` (absolute paths;
# the tests run the binaries from there). Installs what a target needs when missing (the
# rustup target, musl-tools, mingw-w64, zig and cargo-zigbuild: scripts/lib/build.sh).
# Reproducible: a commit gives the same archives on every run and checkout (the Linux
# ones are checked by scripts/check-reproducible.sh): paths remapped, and the archives'
# entries sorted, owned by 0:0, with fixed modes and times: SOURCE_DATE_EPOCH, else the
# last commit that changed what is built (scripts/lib/build.sh). DIST_DIR moves the output.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=scripts/lib/build.sh
. "$LIB_DIR/build.sh"
common_init dist

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${DIST_TARGETS[@]}")
for target in "${targets[@]}"; do
	target_builder "$target" >/dev/null || die "unknown target $target (known: ${DIST_TARGETS[*]})"
done

version=$(crate_version)
[ -n "$version" ] || die "no version in Cargo.toml"
SOURCE_DATE_EPOCH=$(build_epoch)
[ -n "$SOURCE_DATE_EPOCH" ] || die "not a git checkout: set SOURCE_DATE_EPOCH (the build's and the archives' time)"
export SOURCE_DATE_EPOCH
dist=${DIST_DIR:-$REPO_ROOT/dist}
mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
apt_ensure zip zip

# package TARGET BIN: writes the target's archive; sets ARCHIVE.
package() {
	local target=$1 bin=$2 name stage
	name="gocacheprog-s3-$version-$target"
	stage="$WORK_DIR/$target"
	rm -rf "$stage"
	mkdir -p "$stage"
	cp "$bin" "$stage/$(binary_name "$target")"
	cp "$REPO_ROOT/README.md" "$REPO_ROOT/LICENSE" "$stage/"
	chmod 0644 "$stage/README.md" "$stage/LICENSE"
	chmod 0755 "$stage/$(binary_name "$target")"
	touch -d "@$SOURCE_DATE_EPOCH" "$stage"/*
	case "$target" in
	*-windows-*)
		ARCHIVE="$dist/$name.zip"
		rm -f "$ARCHIVE"
		# -X: no uid/gid or extra time fields; zip stores local time: UTC.
		(cd "$stage" && TZ=UTC zip -q -X -9 "$ARCHIVE.tmp" LICENSE README.md "$(binary_name "$target")")
		;;
	*)
		ARCHIVE="$dist/$name.tar.gz"
		tar --create --format=ustar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 \
			--numeric-owner -C "$stage" LICENSE README.md "$(binary_name "$target")" |
			gzip -n -9 >"$ARCHIVE.tmp"
		;;
	esac
	mv "$ARCHIVE.tmp" "$ARCHIVE"
}

for target in "${targets[@]}"; do
	start=$SECONDS
	build_target "$target"
	check_binary "$target" "$BIN"
	package "$target" "$BIN"
	note "$target: $(stat -c %s "$ARCHIVE") bytes in $(basename "$ARCHIVE") ($((SECONDS - start)) s)"
	printf '%s %s %s\n' "$target" "$BIN" "$ARCHIVE"
done

# Every archive of this version in dist/, whichever run made it.
(
	cd "$dist"
	find . -maxdepth 1 -type f \( -name "gocacheprog-s3-$version-*.tar.gz" -o -name "gocacheprog-s3-$version-*.zip" \) \
		-printf '%f\n' | LC_ALL=C sort | xargs -r sha256sum >SHA256SUMS.tmp
	mv SHA256SUMS.tmp SHA256SUMS
)
note "$dist/SHA256SUMS: $(wc -l <"$dist/SHA256SUMS") archives of $version"
