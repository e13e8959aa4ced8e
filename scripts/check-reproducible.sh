#!/usr/bin/env bash
# Are the release archives reproducible? Clones this commit into a temp dir (another
# path), builds the given targets there from an empty target dir with scripts/dist.sh, and
# compares the archives' checksums with dist/SHA256SUMS, which must come from this same
# commit (run scripts/dist.sh first, on a clean tree).
#
#   scripts/check-reproducible.sh [TARGET...]   default: the two Linux (musl) targets
#
# The release workflow runs it; docs/development.md ("Reproducible") says which targets are checked.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
common_init check-reproducible

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
sums="$REPO_ROOT/dist/SHA256SUMS"
[ -f "$sums" ] || die "no $sums: run scripts/dist.sh first"
[ -z "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no)" ] ||
	die "the checkout has uncommitted changes: the archives cannot match a clone of the commit"

clone="$WORK_DIR/elsewhere/gocacheprog-s3"
git clone -q --no-hardlinks "$REPO_ROOT" "$clone"
git -C "$clone" checkout -q "$(git -C "$REPO_ROOT" rev-parse HEAD)"
note "building ${targets[*]} in $clone"
CARGO_TARGET_DIR="$WORK_DIR/target" DIST_DIR="$WORK_DIR/dist" "$clone/scripts/dist.sh" "${targets[@]}" >/dev/null

differ=0
while read -r sum file; do
	want=$(awk -v f="$file" '$2 == f { print $1 }' "$sums")
	if [ -z "$want" ]; then
		note "$file: not in $sums (built from another version?)"
		differ=1
	elif [ "$want" = "$sum" ]; then
		note "$file: same ($sum)"
	else
		note "$file: DIFFERS ($want in dist/, $sum from the clone)"
		differ=1
	fi
done <"$WORK_DIR/dist/SHA256SUMS"
[ "$differ" = 0 ] || die "the archives are not reproducible (KEEP_WORK_DIR=1 keeps $WORK_DIR to compare)"
say "reproducible: ${targets[*]}"
