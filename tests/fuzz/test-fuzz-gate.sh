#!/usr/bin/env bash
# `make fuzz` must fail when a fuzz target saves a failing input even though it exits 0,
# and when it runs no input at all: stand-in targets that do exactly that are run through
# the same recipe (FUZZ_BIN), and each must fail with its own message.
set -u
cd "$(dirname "$0")/../.."
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
# The recipe keeps a failing run's directory for inspection: here it goes with $fake.
export TMPDIR=$fake
mkdir -p "$fake/crash" "$fake/idle"
printf '#!/bin/sh\ntouch "$1/crash-0"\necho "Done 5 runs in 1 second(s)" >&2\n' >"$fake/crash/pipeline"
printf '#!/bin/sh\necho "Done 0 runs in 1 second(s)" >&2\n' >"$fake/idle/pipeline"
chmod +x "$fake/crash/pipeline" "$fake/idle/pipeline"
failed=0
for case in "crash:crash-0), in" "idle:ran no input"; do
    bin=${case%%:*} expect=${case#*:}
    if out=$(make --no-print-directory fuzz FUZZ_BIN="$fake/$bin" FUZZ_TARGETS=pipeline 2>&1); then
        echo "fuzz gate: FAIL: make fuzz passed a target that $bin"
        failed=1
    elif ! grep -qF -- "$expect" <<<"$out"; then
        echo "fuzz gate: FAIL: make fuzz failed for a target that $bin, without saying \"$expect\":"
        tail -n 5 <<<"$out"
        failed=1
    else
        echo "fuzz gate: a target that $bin fails make fuzz: PASS"
    fi
done
exit $failed
