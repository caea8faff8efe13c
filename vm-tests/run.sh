#!/usr/bin/env bash
# make vm-test: the appliance on real distribution kernels under QEMU. For each kernel:
# builds the binaries for its architecture, packs an initramfs (vm-tests/init.sh as
# /init), boots it, shows the guest's console, and prints one line:
#   PASS kernel NAME (Ns)      or      FAIL kernel NAME: reason
# Exits non-zero when any kernel fails or times out.
#
# Environment:
#   VM_TEST_KERNELS  kernels to boot (default: 5.10-amd64 6.1-amd64 6.12-amd64 6.1-arm64)
#   VM_TEST_COUNT    requests traffic-gen sends in each guest (default 70)
#   VM_TEST_TIMEOUT  seconds one guest may take, boot to power-off (default 300; a
#                    guest under TCG takes 15 to 40 s)
#   VM_TEST_ACCEL    kvm or tcg to skip the detection of a working KVM
#   VM_TEST_BREAK    empty-output: empty the profiler's output before the check, to see
#                    the test fail (vm-tests/selftest.sh)
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
KERNELS=${VM_TEST_KERNELS:-5.10-amd64 6.1-amd64 6.12-amd64 6.1-arm64}
COUNT=${VM_TEST_COUNT:-70}
TIMEOUT=${VM_TEST_TIMEOUT:-300}
BREAK=${VM_TEST_BREAK:-}
PORT=8080
WORK=$ROOT/target/vm-test
CARGO=(nice -n 10 cargo)

log() { printf 'vm-test: %s\n' "$*"; }
die() { log "$*" >&2; exit 2; }

case $BREAK in "" | empty-output) ;; *) die "VM_TEST_BREAK=$BREAK: only empty-output is known" ;; esac
[ "$(id -u)" -eq 0 ] || die "packing the initramfs creates device nodes: run as root (sudo make vm-test)"
for tool in qemu-system-x86_64 qemu-system-aarch64 aarch64-linux-gnu-gcc cpio readelf; do
    command -v "$tool" >/dev/null || die "$tool is missing: run make setup"
done
mkdir -p "$WORK"

# The QEMU architecture of a kernel of the matrix (vm-tests/fetch.sh knows them).
arch_of() {
    case $("$HERE/fetch.sh" arch "$1") in
        amd64) echo x86_64 ;;
        arm64) echo aarch64 ;;
        *) return 1 ;;
    esac
}

# Builds the three binaries for ARCH; prints the directory they are in. The probe
# object is built by build.rs for the same target (aya-build passes the target's
# architecture to the probe crate as bpf_target_arch).
build() {
    local arch=$1 started=$SECONDS
    log "stage: building http-profiler, demo-server, traffic-gen for $arch" >&2
    if [ "$arch" = x86_64 ]; then
        (cd "$ROOT" && "${CARGO[@]}" build --release --locked --bins) >&2 || return 1
        echo "$ROOT/target/release"
    else
        (cd "$ROOT" && CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
            "${CARGO[@]}" build --release --locked --bins --target aarch64-unknown-linux-gnu) >&2 || return 1
        echo "$ROOT/target/aarch64-unknown-linux-gnu/release"
    fi
    log "built for $arch in $((SECONDS - started)) s" >&2
}

# Packs the initramfs for ARCH (once per run); prints its path.
initramfs() {
    local arch=$1 out=$WORK/initramfs-$1.cpio.gz bindir busybox deb_arch
    if [ ! -f "$out.done" ]; then
        bindir=$(build "$arch") || return 1
        deb_arch=$([ "$arch" = x86_64 ] && echo amd64 || echo arm64)
        busybox=$("$HERE/fetch.sh" busybox "$deb_arch") || return 1
        printf 'COUNT=%s\nPORT=%s\nFORK_COUNT=%s\nFORK_PORT=%s\nBREAK=%s\n' "$COUNT" "$PORT" 10 8081 "$BREAK" >"$WORK/vm-test.conf"
        log "stage: packing the $arch initramfs" >&2
        "$HERE/initramfs.sh" "$arch" "$bindir" "$busybox" "$HERE/init.sh" "$WORK/vm-test.conf" "$out" || return 1
        touch "$out.done"
    fi
    echo "$out"
}

# Sets QEMU to the command line for ARCH with ACCEL, booting KERNEL with INITRD.
qemu_cmd() {
    local arch=$1 accel=$2 kernel=$3 initrd=$4
    if [ "$arch" = x86_64 ]; then
        # An x86 kernel patches its own code live (static keys, when tracepoints are
        # turned on, or when its clock turns out unstable): a breakpoint byte first, the
        # rest, then the first byte, with IPIs between. QEMU's multi-threaded TCG does not
        # keep the other vCPU's translated code in step with that: guests oopsed on "int3"
        # or locked up at random, during boot or as the profiler attached (one guest in
        # about twenty); a guest turning tracepoints on and off in a loop while its other
        # vCPU started programs in a loop failed in 6 of 7 boots of 5.10, 6.1 and 6.12,
        # each within 50 rounds. One thread running both vCPUs in turn never did (200 rounds in each of
        # 4 boots). Real hardware and KVM order this themselves.
        [ "$accel" = tcg ] && accel=tcg,thread=single
        QEMU=(qemu-system-x86_64 -accel "$accel" -cpu "$([ "$accel" = kvm ] && echo host || echo qemu64)"
            -append "console=ttyS0 panic=-1 quiet")
    else
        QEMU=(qemu-system-aarch64 -M virt -cpu cortex-a57 -accel tcg -append "console=ttyAMA0 panic=-1 quiet")
    fi
    QEMU+=(-m 1024 -smp 2 -nographic -no-reboot -nic none -kernel "$kernel" -initrd "$initrd")
}

# Whether KVM really works here: /dev/kvm can exist while a guest under it hangs in
# its firmware. Boots KERNEL with a one-line init under KVM and waits a short time.
kvm_works() {
    local kernel=$1 dir=$WORK/kvm-probe
    [ -w /dev/kvm ] || return 1
    rm -rf "$dir" && mkdir -p "$dir/root/bin" "$dir/root/dev"
    install -m 755 "$("$HERE/fetch.sh" busybox amd64)" "$dir/root/bin/busybox"
    mknod -m 600 "$dir/root/dev/console" c 5 1
    printf '#!/bin/busybox sh\necho KVM-PROBE-OK\n/bin/busybox poweroff -f\n' >"$dir/root/init"
    chmod 755 "$dir/root/init"
    (cd "$dir/root" && find . | cpio --quiet -o -H newc -R 0:0) | gzip -1 >"$dir/initrd"
    qemu_cmd x86_64 kvm "$kernel" "$dir/initrd"
    timeout 20 "${QEMU[@]}" </dev/null >"$dir/console" 2>&1
    grep -q KVM-PROBE-OK "$dir/console"
}

# How the profiler must say it hooks data syscalls on kernel NAME: at exit only from 5.15
# (arguments from the saved registers), with enter hooks too before.
data_hooks() {
    case $1 in
        5.10-*) echo "data syscalls are hooked at entry too" ;;
        *) echo "data syscalls are hooked at exit only" ;;
    esac
}

# Whether the profiler must say it reads kernel memory by plain loads on kernel NAME:
# from 6.2, which has the kfunc bpf_rdonly_cast; by helper calls before.
plain_loads() {
    case $1 in
        5.* | 6.1-*) return 1 ;;
        *) return 0 ;;
    esac
}

# The first sign of the guest's kernel failing in CONSOLE (an oops, a BUG, a soft
# lockup, an RCU stall, a panic), as ", guest kernel: <line>", or nothing: a guest that
# hangs or dies says why in the FAIL line itself.
guest_crash() {
    local line
    line=$(grep -a -m 1 -E 'Oops|BUG:|soft lockup|rcu_.*detected stall|rcu: INFO|Kernel panic' "$1" |
        sed 's/^\[ *[0-9.]*\] //' | cut -c 1-120)
    [ -n "$line" ] && printf ', guest kernel: %s' "$line"
}

# Boots one kernel; prints its result line; returns non-zero on failure.
run_kernel() {
    local line
    line=$(boot_kernel "$1" | tee -a /dev/stderr | grep -E '^(PASS|FAIL) kernel ' | tail -n 1)
    echo "${line:-FAIL kernel $1: the runner stopped}"
}

boot_kernel() {
    local name=$1 arch kernel initrd accel started console result elapsed
    started=$SECONDS
    arch=$(arch_of "$name")
    kernel=$("$HERE/fetch.sh" kernel "$name") || { echo "FAIL kernel $name: could not fetch the kernel"; return 1; }
    initrd=$(initramfs "$arch") || { echo "FAIL kernel $name: could not build or pack the $arch userspace"; return 1; }
    accel=tcg
    if [ "$arch" = x86_64 ] && [ "$(uname -m)" = x86_64 ]; then
        accel=$KVM_ACCEL
    fi
    console=$WORK/console-$name.log
    log "stage: booting $(cat "$(dirname "$(dirname "$kernel")")/.package") ($arch, $accel); console follows"
    local boot_started=$SECONDS
    # The console as the guest prints it, without the firmware's terminal escapes.
    qemu_cmd "$arch" "$accel" "$kernel" "$initrd"
    timeout "$TIMEOUT" "${QEMU[@]}" </dev/null 2>&1 \
        | tr -d '\r' | sed -u 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' | tee "$console" | sed -u "s/^/  [$name] /"
    local status=${PIPESTATUS[0]}
    elapsed=$((SECONDS - boot_started))
    result=$(grep -a '^VM-TEST-RESULT ' "$console" | tail -n 1)
    log "$name: boot and test took $elapsed s (fetch and build before it: $((boot_started - started)) s)"
    case $result in
        "VM-TEST-RESULT PASS"*)
            local hooks
            hooks=$(data_hooks "$name")
            if ! grep -aq "$hooks" "$console"; then
                echo "FAIL kernel $name: the profiler did not log \"$hooks\", the way this kernel hooks data syscalls"
                return 1
            fi
            local loads="read kernel memory by plain loads"
            if plain_loads "$name" && ! grep -aq "$loads" "$console"; then
                echo "FAIL kernel $name: the profiler did not log \"$loads\" on a kernel with bpf_rdonly_cast"
                return 1
            elif ! plain_loads "$name" && grep -aq "$loads" "$console"; then
                echo "FAIL kernel $name: the profiler logged \"$loads\" on a kernel without bpf_rdonly_cast"
                return 1
            fi
            echo "PASS kernel $name (${elapsed}s)"
            return 0
            ;;
        "VM-TEST-RESULT FAIL "*)
            echo "FAIL kernel $name: ${result#VM-TEST-RESULT FAIL }"
            ;;
        *)
            local crash
            crash=$(guest_crash "$console")
            if [ "$status" -eq 124 ]; then
                echo "FAIL kernel $name: timed out after ${TIMEOUT}s (last stage: $(grep -a 'vm-test: stage:' "$console" | tail -n 1 | sed 's/.*stage: //'))${crash}"
            else
                echo "FAIL kernel $name: the guest stopped without a result (QEMU exit $status)${crash}; see $console"
            fi
            ;;
    esac
    return 1
}

for k in $KERNELS; do arch_of "$k" >/dev/null || exit 2; done
rm -f "$WORK"/initramfs-*.done "$WORK/accel"
matrix_started=$SECONDS
KVM_ACCEL=${VM_TEST_ACCEL:-}
if [ -z "$KVM_ACCEL" ]; then
    KVM_ACCEL=tcg
    for k in $KERNELS; do
        if [ "$(arch_of "$k")" = x86_64 ] && [ "$(uname -m)" = x86_64 ]; then
            log "stage: checking whether KVM really works (a short boot of $k under KVM)"
            if kvm_works "$("$HERE/fetch.sh" kernel "$k")"; then KVM_ACCEL=kvm; fi
            log "x86_64 guests run under $KVM_ACCEL"
            echo "$KVM_ACCEL" >"$WORK/accel"
            break
        fi
    done
fi

results=()
failed=0
for k in $KERNELS; do
    line=$(run_kernel "$k")
    case $line in PASS*) ;; *) failed=$((failed + 1)) ;; esac
    results+=("$line")
done

log "results ($(wc -w <<<"$KERNELS") kernels in $((SECONDS - matrix_started)) s, $failed failed):"
for r in "${results[@]}"; do echo "$r"; done
[ "$failed" -eq 0 ]
