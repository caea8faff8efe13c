#!/usr/bin/env bash
# Checks the Nix files without nixpkgs (which cannot be fetched here): every .nix file
# parses, is formatted as alejandra formats it (scripts/nix-fmt-check), deadnix finds
# nothing unused, and flake.lock matches flake.nix. statix is not published on any registry these machines reach, so
# it runs in `nix flake check` (checks.<system>.nix-lint) instead.
# Usage: nix-check.sh [DIR] (default: the repository root). Exits non-zero on the first
# failing stage, and names it.
set -euo pipefail

dir=${1:-$(cd "$(dirname "$0")/.." && pwd)}
here=$(cd "$(dirname "$0")" && pwd)
# Nix's default configuration names a build group this machine need not have.
export NIX_CONFIG="build-users-group ="

fail() { echo "nix-check: FAIL ($1): $2" >&2; exit 1; }

mapfile -t files < <(cd "$dir" && find . -name '*.nix' -not -path './target/*' -not -path './.git/*' | sort)
[ ${#files[@]} -gt 0 ] || fail parse "no .nix files under $dir"

for f in "${files[@]}"; do
    (cd "$dir" && nix-instantiate --parse "$f" >/dev/null) || fail parse "$f does not parse"
done
echo "nix-check: ${#files[@]} files parse"

# Built by scripts/setup.sh (every make target runs it).
fmt_check="$here/nix-fmt-check/target/release/nix-fmt-check"
[ -x "$fmt_check" ] || fail format "$fmt_check is missing: run scripts/setup.sh (or make setup)"
(cd "$dir" && "$fmt_check" "${files[@]}") || fail format "the files above are not formatted as alejandra formats them"
echo "nix-check: formatting clean ($("$fmt_check" --version))"

(cd "$dir" && deadnix --fail "${files[@]}") || fail deadnix "unused bindings above"
echo "nix-check: deadnix clean"

python3 "$here/check-flake-lock.py" "$dir" || fail flake.lock "see above"
