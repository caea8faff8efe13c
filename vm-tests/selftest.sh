#!/usr/bin/env bash
# The VM test must fail when the profiler is broken. Boots one kernel with
# VM_TEST_BREAK=empty-output (the profiler's output is emptied before the check, as if it
# had written nothing) and passes only if the runner then reports FAIL for that kernel
# because the check found nothing, after the guest got through its traffic.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(dirname "$HERE")/target/vm-test
KERNEL=6.1-amd64

# The matrix run just before found out whether KVM works; no need to probe again.
if [ -z "${VM_TEST_ACCEL:-}" ] && [ -f "$WORK/accel" ]; then
    export VM_TEST_ACCEL=$(cat "$WORK/accel")
fi
out=$(VM_TEST_BREAK=empty-output VM_TEST_KERNELS=$KERNEL VM_TEST_COUNT=7 "$HERE/run.sh" 2>&1)
status=$?
printf '%s\n' "$out" | sed 's/^/  [self-test] /'

problems=()
[ "$status" -eq 1 ] || problems+=("the runner exited $status, not 1")
grep -q "^FAIL kernel $KERNEL: check: FAIL " <<<"$out" || problems+=("no 'FAIL kernel $KERNEL: check: FAIL' line")
grep -q "problem: no HTTP message with port 8080 in the capture" <<<"$out" || problems+=("the check did not report the empty capture")
grep -q "traffic-gen: 7 requests in .*7 ok, 0 errors" <<<"$out" || problems+=("the guest did not get through its traffic: the failure is not the check's")
grep -q "^PASS kernel" <<<"$out" && problems+=("a PASS line for a broken profiler")

if [ ${#problems[@]} -eq 0 ]; then
    echo "vm-test self-test: PASS (an empty capture makes the VM test fail on $KERNEL)"
    exit 0
fi
for p in "${problems[@]}"; do echo "vm-test self-test: $p"; done
echo "vm-test self-test: FAIL"
exit 1
