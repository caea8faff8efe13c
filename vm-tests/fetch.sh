#!/usr/bin/env bash
# Fetches what the VM tests boot, from Debian's archive, into vm-tests/.cache:
#   fetch.sh kernel NAME   -> prints the path of the kernel image (vmlinuz) for NAME
#   fetch.sh busybox ARCH  -> prints the path of a static busybox for ARCH (amd64, arm64)
# Kernels come from the suites that ship them (bullseye for 5.10, bookworm for 6.1 and
# 6.12+deb12), through a private apt configuration: the machine's own sources and
# package state are left alone. What was fetched once is used again without a network.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${VM_TEST_CACHE:-$HERE/.cache}
APT_DIR=$CACHE/apt

log() { printf 'vm-test: %s\n' "$*" >&2; }

# The Debian mirrors this machine already uses (from its deb822 or one-line sources) for
# the main archive and for security updates, else Debian's own.
source_uris() {
    grep -hs -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -oE 'https?://[^ ]+'
}
mirror() {
    local m
    m=$(source_uris | grep -E '/debian/?$' | head -n1)
    echo "${m:-http://deb.debian.org/debian}"
}
security_mirror() {
    local m
    m=$(source_uris | grep -E '/debian-security/?$' | head -n1)
    echo "${m:-http://security.debian.org/debian-security}"
}

APT_OPTS=()
apt_setup() {
    [ ${#APT_OPTS[@]} -gt 0 ] && return
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial" "$APT_DIR/etc/preferences.d"
    local m s
    m=$(mirror)
    s=$(security_mirror)
    cat >"$APT_DIR/etc/sources.list" <<SOURCES
deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${m%/} bookworm main
deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${s%/} bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${m%/} bullseye main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${s%/} bullseye-security main
SOURCES
    APT_OPTS=(
        -o "Dir::Etc::sourcelist=$APT_DIR/etc/sources.list"
        -o "Dir::Etc::sourceparts=-"
        -o "Dir::Etc::preferencesparts=$APT_DIR/etc/preferences.d"
        -o "Dir::State::Lists=$APT_DIR/lists"
        -o "Dir::Cache=$APT_DIR/cache"
        -o "Dir::Cache::archives=$APT_DIR/archives"
        -o "APT::Architectures=amd64,arm64"
        -o "Debug::NoLocking=1"
        -o "APT::Sandbox::User=root"
        -o "Acquire::Languages=none"
        -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
    )
    mkdir -p "$APT_DIR/cache"
    # The package lists are fetched once; a new run reuses them (delete .cache to refresh).
    if [ ! -f "$APT_DIR/lists/.complete" ]; then
        log "fetching Debian package lists (bookworm amd64 and arm64, bullseye amd64) from $m"
        apt-get "${APT_OPTS[@]}" -qq update
        touch "$APT_DIR/lists/.complete"
    fi
}

# The newest package whose name matches REGEX (an anchored extended regex), for ARCH.
newest() {
    local regex=$1 arch=$2
    apt-cache "${APT_OPTS[@]}" -o "APT::Architecture=$arch" pkgnames 2>/dev/null \
        | grep -E "^($regex)\$" | sort -V | tail -n1
}

# Downloads package PKG for ARCH and keeps the files under KEEP (paths in the package)
# in DEST.d; the rest (a kernel's modules) is not needed and not kept.
download() {
    local pkg=$1 arch=$2 dest=$3 keep=$4
    local tmp
    tmp=$(mktemp -d "$CACHE/download.XXXXXX")
    log "downloading $pkg ($arch) from Debian"
    if (cd "$tmp" && apt-get "${APT_OPTS[@]}" -o "APT::Architecture=$arch" -qq download "$pkg:$arch") \
        && dpkg-deb -x "$tmp"/*.deb "$tmp/root" \
        && mkdir -p "$tmp/keep/$(dirname "$keep")" \
        && mv "$tmp/root/$keep" "$tmp/keep/$keep" \
        && echo "$pkg" >"$tmp/keep/.package"; then
        rm -rf "$dest.d"
        mv "$tmp/keep" "$dest.d"
        rm -rf "$tmp"
        return 0
    fi
    rm -rf "$tmp"
    return 1
}

# The kernel matrix: NAME -> architecture and package name pattern.
kernel_spec() {
    case $1 in
        5.10-amd64) echo "amd64 linux-image-5\.10\.0-[0-9]+-amd64-unsigned" ;;
        6.1-amd64) echo "amd64 linux-image-6\.1\.0-[0-9]+-amd64-unsigned" ;;
        6.12-amd64) echo "amd64 linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned" ;;
        6.1-arm64) echo "arm64 linux-image-6\.1\.0-[0-9]+-arm64-unsigned" ;;
        *) return 1 ;;
    esac
}

fetch_kernel() {
    local name=$1 spec arch regex pkg dest
    spec=$(kernel_spec "$name") || { log "unknown kernel $name (known: 5.10-amd64 6.1-amd64 6.12-amd64 6.1-arm64)"; exit 2; }
    read -r arch regex <<<"$spec"
    dest=$CACHE/kernel-$name
    if [ ! -d "$dest.d" ]; then
        apt_setup
        pkg=$(newest "$regex" "$arch")
        # Lists kept from an earlier run may name a version the archive has replaced since.
        if [ -z "$pkg" ] || ! download "$pkg" "$arch" "$dest" boot; then
            log "fetching the package lists again"
            rm -f "$APT_DIR/lists/.complete"
            APT_OPTS=()
            apt_setup
            pkg=$(newest "$regex" "$arch")
            [ -n "$pkg" ] || { log "no package matching $regex in Debian's $arch lists"; exit 1; }
            download "$pkg" "$arch" "$dest" boot
        fi
    fi
    local image
    image=$(ls "$dest.d"/boot/vmlinuz-* 2>/dev/null | head -n1)
    [ -n "$image" ] || { log "no /boot/vmlinuz-* in the package for $name"; exit 1; }
    echo "$image"
}

fetch_busybox() {
    local arch=$1
    local dest=$CACHE/busybox-$arch
    if [ ! -d "$dest.d" ]; then
        apt_setup
        if ! download busybox-static "$arch" "$dest" bin/busybox; then
            log "fetching the package lists again"
            rm -f "$APT_DIR/lists/.complete"
            APT_OPTS=()
            apt_setup
            download busybox-static "$arch" "$dest" bin/busybox
        fi
    fi
    echo "$dest.d/bin/busybox"
}

case ${1:-} in
    kernel) fetch_kernel "$2" ;;
    busybox) fetch_busybox "$2" ;;
    arch) # fetch.sh arch NAME: the Debian architecture of a kernel of the matrix
        spec=$(kernel_spec "$2") || { log "unknown kernel $2 (known: 5.10-amd64 6.1-amd64 6.12-amd64 6.1-arm64)"; exit 2; }
        echo "${spec%% *}" ;;
    package) # fetch.sh package NAME: the Debian package the cached kernel came from
        cat "$CACHE/kernel-$2.d/.package" ;;
    *) echo "usage: $0 kernel NAME | busybox ARCH | arch NAME | package NAME" >&2; exit 2 ;;
esac
