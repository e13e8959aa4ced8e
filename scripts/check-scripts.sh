#!/usr/bin/env bash
# The scripts get the care src/ gets: shellcheck over every shell script (following the
# files they source) and pyflakes over every Python script, the test tools included.
# scripts/install-test-deps.sh installs both (Debian's shellcheck and pyflakes3).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
SCRIPT_NAME=check-scripts
cd "$REPO_ROOT"

for tool in shellcheck pyflakes3; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: run scripts/install-test-deps.sh"
done
mapfile -t shell < <(find scripts -name '*.sh' | sort)
mapfile -t python < <(find scripts tests -name '*.py' -not -path '*/target/*' | sort)
shellcheck -x "${shell[@]}" .ci/run
pyflakes3 "${python[@]}"
note "shellcheck: ${#shell[@]} shell scripts and .ci/run clean; pyflakes: ${#python[@]} Python scripts clean"
