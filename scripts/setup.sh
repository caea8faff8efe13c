#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian or Ubuntu machine.
# Idempotent: every step checks first, so a second run does nothing and takes seconds.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root to install packages (try: sudo make setup)"
        exit 2
    fi
}

# Debian packages: bpftool for the tests' program checks; curl, nginx, wrk and node as
# test peers; python3 for the integration tests and their peers; libcap2-bin (capsh) to run
# the profiler with only the NixOS service's capabilities; nix-bin for make nix-check.
APT_PACKAGES=(bpftool curl python3 python3-pytest iproute2 procps make gcc util-linux nginx-light wrk nodejs libcap2-bin nix-bin)

missing_apt=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_apt+=("$p")
done
if [ ${#missing_apt[@]} -gt 0 ]; then
    need_root
    log "installing Debian packages: ${missing_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
fi

# VM tests (make vm-test): QEMU for x86_64 and aarch64 guests, the aarch64 cross
# compiler and Debian's arm64 libc for the cross-built userspace, cpio for the initramfs.
VM_APT_PACKAGES=(qemu-system-x86 qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils cpio gzip)
missing_vm=()
for p in "${VM_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_vm+=("$p")
done
if [ ${#missing_vm[@]} -gt 0 ]; then
    need_root
    log "installing Debian packages for the VM tests: ${missing_vm[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing_vm[@]}" >/dev/null
fi

# The integration tests run under whichever python3 comes first on PATH; a python3 that
# is not Debian's (pyenv, a venv) does not see python3-pytest and gets pytest from PyPI.
if ! python3 -m pytest --version >/dev/null 2>&1; then
    log "installing pytest for $(command -v python3)"
    python3 -m pip install --quiet pytest
fi

if ! command -v rustup >/dev/null 2>&1; then
    log "rustup is missing: install it from your distribution or rustup.rs, then run make setup again"
    exit 2
fi

# The probe crate is built with nightly (-Z build-std=core for bpfel-unknown-none).
if ! rustup toolchain list | grep -q '^nightly'; then
    log "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    log "adding rust-src to nightly"
    rustup component add rust-src --toolchain nightly
fi
for c in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
        log "adding $c to the default toolchain"
        rustup component add "$c"
    fi
done

# The VM tests cross-build the userspace for their aarch64 guest.
if ! rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$'; then
    log "adding the aarch64-unknown-linux-gnu target (VM tests)"
    rustup target add aarch64-unknown-linux-gnu
fi

# bpf-linker must link the same LLVM major version as the rustc that compiles the probe.
# No packaged LLVM matches rustc's, but every rustup toolchain ships its own libLLVM,
# which bpf-linker links dynamically.
BPF_LINKER_VERSION=0.13.0
sysroot=$(rustc +nightly --print sysroot)
llvm_major=$(rustc +nightly -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
llvm_prefix=/opt/rust-llvm-$llvm_major
libllvm=$(ls "$sysroot"/lib/libLLVM.so.* 2>/dev/null | head -n1 || true)
if [ -z "$libllvm" ]; then
    log "no libLLVM in $sysroot/lib: run 'rustup component add llvm-tools --toolchain nightly' and retry"
    exit 2
fi

linker_ok() {
    command -v bpf-linker >/dev/null 2>&1 || return 1
    bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION" || return 1
    [ -f "$llvm_prefix/.built-for" ] && [ "$(cat "$llvm_prefix/.built-for")" = "$libllvm" ]
}

if ! linker_ok; then
    need_root
    log "building bpf-linker $BPF_LINKER_VERSION against rustc's LLVM $llvm_major (a few minutes)"
    mkdir -p "$llvm_prefix/lib"
    ln -sf "$libllvm" "$llvm_prefix/lib/"
    ln -sf "$libllvm" "$llvm_prefix/lib/libLLVM.so"
    LLVM_PREFIX=$llvm_prefix cargo install --locked --force bpf-linker --version "$BPF_LINKER_VERSION" \
        --no-default-features --features "llvm-$llvm_major"
    echo "$libllvm" >"$llvm_prefix/.built-for"
fi

# Nix file checks (make nix-check): nix-bin (above) parses .nix files and evaluates
# flake.nix's inputs (nixpkgs itself cannot be had here); deadnix comes from crates.io,
# pinned. statix is on no registry reachable here: `nix flake check` runs it.
deadnix_version=1.3.1
have=$(deadnix --version 2>/dev/null || true) # not `| grep -q`: SIGPIPE under pipefail
if [[ "$have" != *"$deadnix_version"* ]]; then
    log "installing deadnix $deadnix_version (cargo install, a few minutes)"
    cargo install --locked --force deadnix --version "$deadnix_version"
fi
# The formatting check: alejandra's library in a small binary of our own (alejandra's
# command-line tool is not installable from crates.io). cargo builds it once (under a
# minute) and then only checks that it is up to date; scripts/nix-check.sh runs it there.
fmt_check_dir=$(cd "$(dirname "$0")" && pwd)/nix-fmt-check
cargo build --quiet --release --locked --manifest-path "$fmt_check_dir/Cargo.toml" \
    --target-dir "$fmt_check_dir/target"
# Fuzzing (make fuzz) and the dependency audit (make audit). Built from crates.io; on a
# 2-core machine cargo-fuzz takes about 3 minutes, cargo-audit considerably longer.
CARGO_FUZZ_VERSION=0.13.2
CARGO_AUDIT_VERSION=0.22.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked --force cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
if ! cargo audit --version 2>/dev/null | grep -q "$CARGO_AUDIT_VERSION"; then
    log "installing cargo-audit $CARGO_AUDIT_VERSION"
    cargo install --locked --force cargo-audit --version "$CARGO_AUDIT_VERSION"
fi

# aya attaches tracepoints through tracefs, which is not mounted on every machine.
if [ ! -e /sys/kernel/tracing/events ] && [ "$(id -u)" -eq 0 ]; then
    log "mounting tracefs on /sys/kernel/tracing"
    mount -t tracefs nodev /sys/kernel/tracing || log "could not mount tracefs (the profiler will say so)"
fi

log "ready"
