#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make setup`: tcpdump (the packet-capture
# comparison), bpftool (kernel-side BPF run times), matplotlib for Debian's python3 (the
# plot), valgrind (the reader's instructions per exchange, counted by callgrind) and oha
# (load at fixed rates, with latency percentiles). Idempotent.
set -euo pipefail

log() { printf 'bench setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "the benchmark loads eBPF probes and runs tcpdump: run it as root (sudo make bench)"
    exit 2
fi

APT_PACKAGES=(tcpdump bpftool wrk nginx-light python3 python3-matplotlib procps valgrind)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# oha is not packaged for Debian 12; crates.io has it. Pinned so reruns measure the same
# load generator.
OHA_VERSION=1.16.0
if ! oha --version 2>/dev/null | grep -q "$OHA_VERSION"; then
    log "installing oha $OHA_VERSION with cargo (a few minutes on 2 cores)"
    nice -n 10 cargo install --locked oha --version "$OHA_VERSION"
fi
log "ready"
