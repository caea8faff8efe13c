#!/usr/bin/env bash
# initramfs.sh ARCH BINDIR BUSYBOX INIT CONF OUT: packs a gzipped cpio initramfs with
# busybox, the three binaries of BINDIR (stripped) and the shared libraries they need
# (found with readelf, from the host for x86_64 and from Debian's cross libc for
# aarch64), INIT as /init and CONF as /etc/vm-test.conf.
set -euo pipefail

arch=$1 bindir=$2 busybox=$3 init=$4 conf=$5 out=$6
case $arch in
    x86_64) libdirs=(/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu) strip=strip ;;
    aarch64) libdirs=(/usr/aarch64-linux-gnu/lib) strip=aarch64-linux-gnu-strip ;;
    *) echo "initramfs: unknown architecture $arch" >&2; exit 2 ;;
esac

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,lib,etc,proc,sys,dev,out,tmp}
# The kernel opens /dev/console for /init before anything is mounted.
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3
install -m 755 "$busybox" "$root/bin/busybox"
install -m 755 "$init" "$root/init"
install -m 644 "$conf" "$root/etc/vm-test.conf"

# Copies a library and, recursively, the libraries it needs.
copy_needed() {
    local elf=$1 lib path dir
    for lib in $(readelf -d "$elf" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
        [ -e "$root/lib/$lib" ] && continue
        path=
        for dir in "${libdirs[@]}"; do
            [ -e "$dir/$lib" ] && { path=$dir/$lib; break; }
        done
        [ -n "$path" ] || { echo "initramfs: $lib (needed by $elf) not found in ${libdirs[*]}" >&2; exit 1; }
        cp -L "$path" "$root/lib/$lib"
        copy_needed "$root/lib/$lib"
    done
}

for bin in http-profiler demo-server traffic-gen; do
    [ -x "$bindir/$bin" ] || { echo "initramfs: $bindir/$bin is missing" >&2; exit 1; }
    "$strip" -o "$root/bin/$bin" "$bindir/$bin"
    copy_needed "$root/bin/$bin"
    # The dynamic loader, at the path written into the binary.
    interp=$(readelf -l "$bindir/$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
    if [ -n "$interp" ] && [ ! -e "$root$interp" ]; then
        mkdir -p "$root$(dirname "$interp")"
        for dir in "${libdirs[@]}"; do
            [ -e "$dir/$(basename "$interp")" ] && { cp -L "$dir/$(basename "$interp")" "$root$interp"; break; }
        done
        [ -e "$root$interp" ] || { echo "initramfs: loader $interp not found" >&2; exit 1; }
    fi
done

(cd "$root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -1 >"$out.part"
mv "$out.part" "$out"
