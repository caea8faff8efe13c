#!/usr/bin/env bash
# Shows that each stage of scripts/nix-check.sh catches what it is there for: the
# project's Nix files pass, and a copy broken in one way fails at the stage that owns it.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
check="$root/scripts/nix-check.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0 failed=0

# A fresh copy of the repository's Nix files (and flake.lock) in $work/tree.
fresh_copy() {
    rm -rf "$work/tree"
    mkdir -p "$work/tree"
    (cd "$root" && find . -name '*.nix' -not -path './target/*' -not -path './.git/*' -print0 \
        | xargs -0 cp --parents -t "$work/tree" && cp flake.lock "$work/tree/")
}

# expect NAME STAGE: runs the check on the copy; STAGE "pass" wants success, any other
# wants a failure reported by that stage.
expect() {
    local name=$1 stage=$2 out status
    out=$(bash "$check" "$work/tree" 2>&1)
    status=$?
    if [ "$stage" = pass ]; then
        if [ $status -eq 0 ]; then
            echo "ok: $name"; passed=$((passed + 1))
        else
            echo "FAILED: $name: expected a pass, got status $status:"; echo "$out"; failed=$((failed + 1))
        fi
    elif [ $status -ne 0 ] && grep -q "nix-check: FAIL ($stage)" <<<"$out"; then
        echo "ok: $name (caught by $stage)"; passed=$((passed + 1))
    else
        echo "FAILED: $name: expected stage $stage to fail, got status $status:"; echo "$out"; failed=$((failed + 1))
    fi
}

# edit FILE PYTHON-EXPR: rewrites a file of the copy; the expression maps `s` to new text.
edit() {
    python3 - "$work/tree/$1" "$2" <<'PY'
import sys
path, expr = sys.argv[1], sys.argv[2]
s = open(path).read()
new = eval(expr)
assert new != s, f"the edit of {path} changed nothing"
open(path, "w").write(new)
PY
}

fresh_copy
expect "the project's Nix files" pass

fresh_copy
edit flake.nix 's.replace("inherit (nixpkgs) lib;", "inherit (nixpkgs) lib", 1)'
expect "a missing semicolon" parse

fresh_copy
edit nixos/module.nix 's.replace("  cfg = config.services.http-profiler;", "      cfg   =   config.services.http-profiler;", 1)'
expect "badly indented code" format

# nixpkgs-fmt's style is not alejandra's: the check is alejandra's, not any formatter's.
fresh_copy
edit nixos/module.nix 's.replace("default = [];", "default = [ ];", 1)'
expect "nixpkgs-fmt's spacing of an empty list" format
# The fix the failure names puts the copy right again.
(cd "$work/tree" && "$root/scripts/nix-fmt-check/target/release/nix-fmt-check" --write nixos/module.nix >/dev/null)
expect "the same copy after nix-fmt-check --write" pass

fresh_copy
edit nixos/vm-test.nix 's.replace("  requests = 60;", "  requests = 60;\n  unused = 1;", 1)'
expect "an unused let binding" deadnix

fresh_copy
edit flake.lock 's[:-3]'
expect "a truncated flake.lock" flake.lock

fresh_copy
edit flake.lock 's.replace("\"version\": 7", "\"version\": 6")'
expect "lock version 6" flake.lock

fresh_copy
edit flake.lock 's.replace("\"ref\": \"nixos-26.05\"", "\"ref\": \"nixos-25.11\"")'
expect "an original ref that is not flake.nix's" flake.lock

fresh_copy
edit flake.nix 's.replace("inputs = {", "inputs = {\n    flake-utils.url = \"github:numtide/flake-utils\";", 1)'
expect "an input missing from the lock" flake.lock

fresh_copy
edit flake.lock 's.replace("\"rev\": \"b8d87f76ea4e4b6f30f2e6eaf3fbb60ff7d87167\"", "\"rev\": \"main\"")'
expect "a rev that is not a commit" flake.lock

fresh_copy
edit flake.lock 's.replace("sha256-H++/2dMt+5+tErKU+t5z6c4Xedvj9w+UPQYrpygwIPw=", "sha256-AAAA")'
expect "a narHash that is not a sha256" flake.lock

echo "nix-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
