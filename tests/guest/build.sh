#!/bin/bash
# Build the vio test guest: a Debian kernel plus a busybox initramfs.
#
#   tests/guest/build.sh [OUTDIR]        (default: <repo>/build/guest)
#
# Produces in OUTDIR:
#   vmlinuz              Debian generic-flavour kernel (linux-image-amd64's dependency)
#   vmlinux              the same kernel uncompressed (ELF with a PVH entry note):
#                        QEMU boots it directly, skipping the slow in-guest
#                        XZ decompression under TCG (about 2-4 s per boot)
#   initramfs.cpio.gz    busybox userland, /init, /lib/vio.sh, /bin/vgtool, modules
#   vgtool-host          the same vgtool, built for the host
#   kernel-version       uname -r of the guest kernel
#   modules.list         boot modules, in load order
#   cache/               the downloaded .deb and its unpacked tree (reused)
#
# Cached: when nothing that goes into the guest changed, a run only compares a
# hash of the inputs with OUTDIR/.stamp and exits.  Delete OUTDIR (or set
# VIO_GUEST_REBUILD=1) to rebuild from scratch; set VIO_GUEST_KERNEL_PKG to
# use a specific linux-image package instead of linux-image-amd64's current one.
set -euo pipefail

# Modules loaded at boot by /init, with all their dependencies (resolved by
# kmod, including soft dependencies).  Names that are built into the kernel
# are skipped.  Add names here to extend the guest (e.g. "virtio_gpu").
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
         virtio_blk virtio_scsi virtio_net virtio_console virtio_rng
         scsi_mod sd_mod nvme e1000 e1000e tun vhost_net"
# Modules copied into the initramfs (with dependencies) but not loaded at
# boot; a test loads them with "modprobe NAME" (e.g. "kvm kvm_amd vfio_pci").
EXTRA_MODULES=""

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${1:-$REPO/build/guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CACHE=$OUT/cache
BUSYBOX=/bin/busybox

log() { echo "guest-build: $*" >&2; }
die() { echo "guest-build: error: $*" >&2; exit 1; }

outputs_present() {
    [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/vmlinux" ] && [ -s "$OUT/initramfs.cpio.gz" ] &&
        [ -x "$OUT/vgtool-host" ] && [ -s "$OUT/kernel-version" ]
}

# Everything the result depends on, except the kernel package (resolved only
# when something else forces a rebuild; see the header).
input_hash() {
    {
        cat "$HERE/build.sh" "$HERE/init" "$HERE/vio.sh" "$HERE/vgtool.c"
        echo "MODULES=$MODULES EXTRA=$EXTRA_MODULES KPKG=${VIO_GUEST_KERNEL_PKG:-}"
        stat -L -c '%s %Y' "$BUSYBOX" 2>/dev/null || true
    } | sha256sum | cut -d' ' -f1
}

# ---- fast path -------------------------------------------------------------
if [ -z "${VIO_GUEST_REBUILD:-}" ] && [ -f "$OUT/.stamp" ] && outputs_present &&
    [ "$(cat "$OUT/.stamp")" = "$(input_hash)" ]; then
    exit 0
fi

# Serialise concurrent builds into the same OUTDIR, then look again.
exec 9>"$OUT/.lock"
flock 9
if [ -z "${VIO_GUEST_REBUILD:-}" ] && [ -f "$OUT/.stamp" ] && outputs_present &&
    [ "$(cat "$OUT/.stamp")" = "$(input_hash)" ]; then
    exit 0
fi
rm -f "$OUT/.stamp"
trap 'rm -rf "$OUT/stage.tmp" "$OUT"/*.tmp' EXIT

# ---- host tools --------------------------------------------------------------
apt_updated=
apt_update_once() {
    if [ -z "$apt_updated" ]; then
        log "apt-get update"
        apt-get update -qq >&2 || die "apt-get update failed"
        apt_updated=1
    fi
}

missing=()
pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
pkg_installed busybox-static || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
command -v depmod >/dev/null && command -v modprobe >/dev/null || missing+=(kmod)
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v qemu-img >/dev/null || missing+=(qemu-utils)
command -v gcc >/dev/null || missing+=(gcc)
command -v xz >/dev/null || missing+=(xz-utils)
[ -f /usr/include/stdio.h ] && [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}) and not root to install them"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
        apt_update_once
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
            die "apt-get install ${missing[*]} failed"
    fi
fi
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found (package busybox-static)"
# depmod/modprobe live in /sbin, which may not be on a non-root PATH.
export PATH=$PATH:/usr/sbin:/sbin

# ---- kernel package --------------------------------------------------------
mkdir -p "$CACHE"
kpkg=${VIO_GUEST_KERNEL_PKG:-}
if [ -z "$kpkg" ]; then
    resolve() {
        apt-cache depends linux-image-amd64 2>/dev/null |
            sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
    }
    kpkg=$(resolve)
    if [ -z "$kpkg" ]; then
        apt_update_once
        kpkg=$(resolve)
    fi
    [ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 with apt-cache depends"
fi
case $kpkg in
    *cloud*) die "$kpkg is the -cloud flavour; the generic flavour is needed" ;;
    linux-image-*) ;;
    *) die "unexpected kernel package name '$kpkg'" ;;
esac

kver_pkg=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
if [ -z "$kver_pkg" ]; then
    apt_update_once
    kver_pkg=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
fi
[ -n "$kver_pkg" ] || die "apt-cache knows no version of $kpkg"
deb=$CACHE/${kpkg}_${kver_pkg//:/%3a}_amd64.deb
if [ ! -s "$deb" ]; then
    log "downloading $kpkg $kver_pkg"
    # The package name is exact (never a pattern): a glob would fetch every version.
    (cd "$CACHE" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" >&2) ||
        die "apt-get download $kpkg failed"
    [ -s "$deb" ] || die "apt-get download did not produce $deb"
fi

# Unpack once per .deb, and index the whole module tree with depmod so kmod
# can resolve dependencies, soft dependencies and aliases for us.
kroot=$CACHE/root-$(basename "$deb" .deb)
if [ ! -f "$kroot/.done" ]; then
    log "unpacking $(basename "$deb")"
    rm -rf "$kroot" "$kroot.tmp"
    mkdir -p "$kroot.tmp"
    dpkg-deb -x "$deb" "$kroot.tmp"
    kv=$(ls "$kroot.tmp/lib/modules")
    [ "$(echo "$kv" | wc -l)" = 1 ] || die "expected one module tree in $deb"
    depmod -b "$kroot.tmp" "$kv"
    touch "$kroot.tmp/.done"
    mv "$kroot.tmp" "$kroot"
    # Older unpacked kernels are no longer needed.
    for old in "$CACHE"/root-*; do
        [ "$old" = "$kroot" ] || rm -rf "$old"
    done
fi
kver=$(ls "$kroot/lib/modules")
kmods=$kroot/lib/modules/$kver
[ -f "$kroot/boot/vmlinuz-$kver" ] || die "no vmlinuz-$kver in $deb"

# ---- module closure ----------------------------------------------------------
# Print the module files (relative to $kmods) needed for "$@", in load order.
module_closure() {
    local m line path out
    for m in "$@"; do
        if ! out=$(modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>&1); then
            log "warning: module $m not found in $kver, skipped"
            continue
        fi
        while read -r line; do
            case $line in
                insmod\ *)
                    path=${line#insmod }
                    path=${path%% *}
                    echo "${path#"$kmods"/}"
                    ;;
                builtin\ *) log "note: ${line#builtin } is built into $kver" ;;
            esac
        done <<<"$out"
    done | awk '!seen[$0]++'
}
# shellcheck disable=SC2086
boot_list=$(module_closure $MODULES)
# shellcheck disable=SC2086
extra_list=$(module_closure $EXTRA_MODULES)

# ---- initramfs tree ----------------------------------------------------------
stage=$OUT/stage.tmp
rm -rf "$stage"
mkdir -p "$stage"
(
    cd "$stage"
    mkdir -p bin sbin usr/bin usr/sbin lib etc proc sys dev tmp run root mnt var/log
    ln -s ../run var/run
    cp "$BUSYBOX" bin/busybox
    # Applet links at their usual places, all pointing at /bin/busybox.
    "$BUSYBOX" --list-full | while read -r app; do
        case $app in */*) ;; *) continue ;; esac
        [ -e "$app" ] || [ -L "$app" ] || ln -s /bin/busybox "$app"
    done
    # The kernel opens /dev/console before /init runs (devtmpfs comes later).
    mknod -m 600 dev/console c 5 1
    mknod -m 666 dev/null c 1 3
    install -m 0755 "$HERE/init" init
    install -m 0644 "$HERE/vio.sh" lib/vio.sh
    printf 'root:x:0:0:root:/root:/bin/sh\n' >etc/passwd
    printf 'root:x:0:\n' >etc/group
    printf 'vio-guest\n' >etc/hostname
    printf '127.0.0.1 localhost vio-guest\n' >etc/hosts
)

gcc -static -O2 -Wall -Wextra -Werror -o "$stage/bin/vgtool" "$HERE/vgtool.c"
strip "$stage/bin/vgtool" 2>/dev/null || true
gcc -O2 -Wall -Wextra -Werror -o "$OUT/vgtool-host.tmp" "$HERE/vgtool.c"

mdst=$stage/lib/modules/$kver
mkdir -p "$mdst"
# Debian signs its modules.  The guest kernel does not enforce signatures,
# and checking them costs ~5 ms per module under TCG, so drop them (the kernel
# then only notes an "E" taint, at a log level "quiet" hides).
SIG_MAGIC='~Module signature appended~'
strip_module_signature() {
    local f=$1 size siglen
    [ "$(tail -c 28 "$f")" = "$SIG_MAGIC" ] || return 0
    size=$(stat -c %s "$f")
    # struct module_signature (12 bytes) precedes the magic; sig_len is its
    # last field, a big-endian u32.
    siglen=$(od -An -tu1 -j $((size - 32)) -N 4 "$f" |
        awk '{ print (($1 * 256 + $2) * 256 + $3) * 256 + $4 }')
    truncate -s $((size - 28 - 12 - siglen)) "$f"
}
# shellcheck disable=SC2086  # the lists are whitespace-separated on purpose
printf '%s\n' $boot_list $extra_list | awk 'NF && !seen[$0]++' | while read -r rel; do
    mkdir -p "$mdst/$(dirname "$rel")"
    cp "$kmods/$rel" "$mdst/$rel"
    strip_module_signature "$mdst/$rel"
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "$kmods/$f" ] && cp "$kmods/$f" "$mdst/$f"
done
depmod -b "$stage" "$kver"
# /init loads these by name, in this order, with busybox modprobe -a.
for rel in $boot_list; do
    m=${rel##*/}
    echo "${m%.ko}"
done >"$stage/lib/vio-modules.list"

# ---- archive -----------------------------------------------------------------
(
    cd "$stage"
    find . -mindepth 1 -exec touch -h -d @0 {} +
    find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet
) | gzip -n -9 >"$OUT/initramfs.cpio.gz.tmp"

cp "$kroot/boot/vmlinuz-$kver" "$OUT/vmlinuz.tmp"
# Uncompressed kernel for PVH boot: the bzImage payload is one XZ stream.
grep -q '^CONFIG_PVH=y' "$kroot/boot/config-$kver" || die "$kver lacks CONFIG_PVH"
xzoff=$(LC_ALL=C grep -abo -m1 -P '\xfd7zXZ\x00' "$OUT/vmlinuz.tmp" | head -n1 | cut -d: -f1 || true)
[ -n "$xzoff" ] || die "no XZ payload in vmlinuz-$kver"
# (xz stops reading at the end of the stream: keep tail's SIGPIPE out of pipefail)
xz -dc --single-stream < <(tail -c +$((xzoff + 1)) "$OUT/vmlinuz.tmp") >"$OUT/vmlinux.tmp"
[ "$(head -c 4 "$OUT/vmlinux.tmp")" = $'\x7fELF' ] || die "vmlinux extracted from vmlinuz-$kver is not ELF"
# shellcheck disable=SC2086
printf '%s\n' $boot_list >"$OUT/modules.list.tmp"
echo "$kver" >"$OUT/kernel-version.tmp"
echo "$kpkg $kver_pkg" >"$OUT/kernel-package"
for f in vmlinuz vmlinux initramfs.cpio.gz vgtool-host modules.list kernel-version; do
    mv -f "$OUT/$f.tmp" "$OUT/$f"
done
rm -rf "$stage"
input_hash >"$OUT/.stamp"
log "built $OUT/initramfs.cpio.gz ($(du -k "$OUT/initramfs.cpio.gz" | cut -f1) KiB, kernel $kver, $(echo "$boot_list" | wc -w) boot modules)"
