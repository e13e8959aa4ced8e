#!/usr/bin/env bash
# The published image: the Dockerfile's `release` stage (FROM scratch, /gocacheprog-s3
# only, the entrypoint) for linux/amd64 and linux/arm64, built by buildah (daemonless,
# vfs storage in a temp dir, no registry needed) from the binaries in the release
# archives, into an OCI layout holding both: dist/image, tagged with the version.
# Then checked with other tools: skopeo reads each platform's config (os, architecture,
# entrypoint, one layer), umoci unpacks each into a root filesystem that must hold
# exactly /gocacheprog-s3, byte for byte the archive's binary; the amd64 one runs from
# that empty root (chroot), the arm64 one under qemu-aarch64 when it is installed.
#
#   scripts/image.sh     needs dist/ with both Linux archives (runs scripts/dist.sh for
#                        them when missing); prints the layout's path
#
# The release workflow pushes the layout to GHCR with `skopeo copy --all`.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=scripts/lib/build.sh
. "$LIB_DIR/build.sh"
common_init image
apt_ensure buildah buildah
apt_ensure skopeo skopeo
apt_ensure umoci umoci

version=$(crate_version)
dist=${DIST_DIR:-$REPO_ROOT/dist}
declare -A target=([amd64]=x86_64-unknown-linux-musl [arm64]=aarch64-unknown-linux-musl)
for arch in amd64 arm64; do
	if ! grep -q " gocacheprog-s3-$version-${target[$arch]}.tar.gz\$" "$dist/SHA256SUMS" 2>/dev/null; then
		note "no ${target[$arch]} archive in $dist/SHA256SUMS: scripts/dist.sh ${target[$arch]}"
		"$REPO_ROOT/scripts/dist.sh" "${target[$arch]}" >/dev/null
	fi
done
epoch=$(build_epoch)
[ -n "$epoch" ] || die "not a git checkout: set SOURCE_DATE_EPOCH (the image's creation time)"

# The build context: the Dockerfile and each platform's binary, out of its checked archive.
context="$WORK_DIR/context"
for arch in amd64 arm64; do
	archive="gocacheprog-s3-$version-${target[$arch]}.tar.gz"
	(cd "$dist" && grep " $archive\$" SHA256SUMS | sha256sum --quiet -c -) || die "$archive does not match SHA256SUMS"
	mkdir -p "$context/linux/$arch"
	tar -xzf "$dist/$archive" -C "$context/linux/$arch" gocacheprog-s3
done

bh=(buildah --storage-driver vfs --root "$WORK_DIR/storage" --runroot "$WORK_DIR/run")
"${bh[@]}" manifest create gocacheprog-s3-list >/dev/null
for arch in amd64 arm64; do
	note "buildah bud --target release --platform linux/$arch"
	"${bh[@]}" bud --quiet --target release --platform "linux/$arch" --timestamp "$epoch" --identity-label=false \
		--build-arg "VERSION=$version" -f "$REPO_ROOT/Dockerfile" -t "gocacheprog-s3-$arch" "$context" >/dev/null ||
		die "buildah bud for linux/$arch failed"
	"${bh[@]}" manifest add gocacheprog-s3-list "gocacheprog-s3-$arch" >/dev/null
done
layout="$dist/image"
rm -rf "$layout"
"${bh[@]}" manifest push --quiet --all gocacheprog-s3-list "oci:$layout:$version" >/dev/null ||
	die "buildah manifest push to $layout failed"

# The checks, per platform.
for arch in amd64 arm64; do
	config=$(skopeo inspect --override-os linux --override-arch "$arch" --config "oci:$layout:$version")
	python3 - "$arch" "$config" <<-'EOF' || die "the linux/$arch image's config is not what the Dockerfile says"
		import json, sys
		arch, config = sys.argv[1], json.loads(sys.argv[2])
		want = {"os": "linux", "architecture": arch, "Entrypoint": ["/gocacheprog-s3"], "layers": 1}
		got = {"os": config["os"], "architecture": config["architecture"],
		       "Entrypoint": config["config"].get("Entrypoint"), "layers": len(config["rootfs"]["diff_ids"])}
		if got != want:
		    sys.exit(f"linux/{arch}: {got}, not {want}")
	EOF
	# umoci unpacks one manifest: copy this platform's out of the index first.
	skopeo copy --quiet --override-os linux --override-arch "$arch" "oci:$layout:$version" "oci:$WORK_DIR/one-$arch:$arch"
	umoci unpack --image "$WORK_DIR/one-$arch:$arch" "$WORK_DIR/bundle-$arch" >/dev/null
	rootfs="$WORK_DIR/bundle-$arch/rootfs"
	found=$(cd "$rootfs" && find . -mindepth 1 | sort | tr '\n' ' ')
	[ "$found" = "./gocacheprog-s3 " ] || die "the linux/$arch image holds: $found (only ./gocacheprog-s3 expected)"
	cmp -s "$rootfs/gocacheprog-s3" "$context/linux/$arch/gocacheprog-s3" ||
		die "the linux/$arch image's binary is not the archive's"
	ran=
	if [ "$arch" = amd64 ] && [ "$(uname -m)" = x86_64 ] && [ "$(id -u)" = 0 ]; then
		ran=$(chroot "$rootfs" /gocacheprog-s3 --version) || die "the amd64 image's binary does not run alone in its root"
	elif [ "$arch" = arm64 ] && command -v qemu-aarch64-static >/dev/null; then
		ran=$(qemu-aarch64-static "$rootfs/gocacheprog-s3" --version) || die "the arm64 image's binary does not run under qemu"
	fi
	if [ -n "$ran" ]; then
		[ "$ran" = "gocacheprog-s3 $version" ] || die "linux/$arch: --version says '$ran'"
	else
		note "linux/$arch: not run here (needs root on x86_64, or qemu-aarch64-static)"
	fi
	note "linux/$arch: manifest $(skopeo inspect --format "{{.Digest}}" "oci:$WORK_DIR/one-$arch:$arch"), /gocacheprog-s3 only${ran:+, runs: $ran}"
done
printf '%s\n' "$layout"
