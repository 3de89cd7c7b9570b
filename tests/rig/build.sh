#!/bin/bash
# Build the layers of the nested test rig's L1 initramfs (see tests/rig/README.md).
#
#   tests/rig/build.sh [OUTDIR]                        (default: <repo>/build/rig)
#   tests/rig/build.sh --bin-layer OUT SRC[=DEST]...
#
# The first form builds, in OUTDIR:
#   base.cpio    busybox, /init, /lib/rig.sh, /lib/vio.sh, kvmprobe, vgtool, and
#                the kernel modules L1 needs (kvm + kvm-amd loaded at boot; tun,
#                tap, vhost, vhost_net, virtio*, vfio*, ... ready for modprobe)
#   l2.cpio      the L2 guest: /rig/l2/vmlinux, vmlinuz, initramfs.cpio.gz and
#                kernel-version, copied from the guest kit (tests/guest/build.sh)
#   qemu.cpio    qemu-system-x86_64, its shared libraries and the firmware it
#                needs for -M microvm and -M pc (the L2 reference VMM)
#   vio.cpio     $VIO_BIN (default build/release/vio) as /usr/local/bin/vio, with
#                its shared libraries; skipped with a note if VIO_BIN is unset
#                and build/release/vio does not exist
#   layers.txt   name, size and build time of each layer
#
# Layers are uncompressed newc archives: the L1 kernel unpacks them in this
# order from one concatenated initrd (tests/lib/rig.py appends a small
# per-test archive).  Uncompressed is the fastest to unpack under TCG: 127 MB
# took 1.0 s of guest time, the same data as lz4 1.05 s, zstd 1.65 s, gzip
# 1.9 s (and lz4's legacy format has no end marker, so it may only be last).
#
# Each layer is cached: it is rebuilt only when a stamp of its inputs (file
# contents of the rig sources, size+mtime of the big binaries) changes.  A run
# with nothing to do takes ~0.1 s.  VIO_RIG_REBUILD=1 forces a rebuild.
#
# --bin-layer writes one archive with the given host executables (SRC, placed
# at DEST, default the same path) and every shared library ldd finds for them,
# at the paths ldd prints, plus the dynamic loader.  Also cached by a stamp.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUSYBOX=/bin/busybox
export PATH=$PATH:/usr/sbin:/sbin

# Modules loaded by /init at boot (with dependencies): what /dev/kvm needs.
BOOT_MODULES="kvm_amd"
# Copied (with dependencies) but loaded only by a test ("modprobe NAME").
EXTRA_MODULES="tun tap vhost vhost_net vhost_vsock vhost_scsi macvtap bridge veth
               virtio_ring virtio virtio_pci virtio_mmio virtio_blk virtio_net
               virtio_console virtio_rng virtio_scsi
               vfio vfio_pci vfio_iommu_type1 nvme e1000e loop qemu_fw_cfg"
# Files the qemu layer takes from the host besides the binary and its libraries.
QEMU_BIN=${VIO_RIG_QEMU:-/usr/bin/qemu-system-x86_64}
QEMU_FIRMWARE="/usr/share/qemu/qboot.rom /usr/share/qemu/bios-microvm.bin
               /usr/share/qemu/pvh.bin /usr/share/qemu/linuxboot.bin
               /usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/kvmvapic.bin
               /usr/share/qemu/multiboot_dma.bin
               /usr/share/seabios/bios-256k.bin /usr/share/seabios/bios.bin"

log() { echo "rig-build: $*" >&2; }
die() { echo "rig-build: error: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# ---- helpers -----------------------------------------------------------------

# Archive the tree in $1 as an uncompressed, reproducible newc stream on stdout.
archive() {
    (
        cd "$1"
        find . -mindepth 1 -exec touch -h -d @0 {} +
        find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet
    )
}

# Shared objects (absolute paths) an executable needs, dynamic loader included.
# Prints nothing for a static executable; dies on an unresolved library.
shared_libs() {
    local out
    if ! out=$(ldd "$1" 2>&1); then
        case $out in
            *"not a dynamic executable"* | *"statically linked"*) return 0 ;;
        esac
        die "ldd $1 failed: $out"
    fi
    case $out in *"not found"*) die "ldd $1: unresolved libraries:
$(grep 'not found' <<<"$out")" ;; esac
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
}

# Stamp of files by path, size and mtime (cheap: no content hashing).
stat_stamp() {
    local f
    for f in "$@"; do
        stat -L -c '%n %s %Y' "$f" 2>/dev/null || echo "$f missing"
    done
}

# stage_bins STAGE SRC[=DEST]...: copy executables and their libraries into STAGE.
stage_bins() {
    local stage=$1 spec src dest lib libs
    shift
    for spec in "$@"; do
        src=${spec%%=*}
        dest=$src
        case $spec in *=*) dest=${spec#*=} ;; esac
        case $dest in /*) ;; *) die "destination $dest must be an absolute path" ;; esac
        mkdir -p "$stage$(dirname "$dest")"
        cp -L "$src" "$stage$dest"
        chmod 0755 "$stage$dest"
        libs=$(shared_libs "$src") || exit 1
        for lib in $libs; do
            [ -e "$stage$lib" ] && continue
            mkdir -p "$stage$(dirname "$lib")"
            cp -L "$lib" "$stage$lib"
        done
    done
}

# The stamp of executables: specs, and size+mtime of them and their libraries.
bins_stamp() {
    local spec src libs all=
    for spec in "$@"; do
        src=${spec%%=*}
        if [ ! -f "$src" ] || [ ! -x "$src" ]; then
            die "$src is not an executable file"
        fi
        libs=$(shared_libs "$src") || exit 1
        all="$all $src $libs"
    done
    # shellcheck disable=SC2086  # paths without spaces
    { echo "$*"; stat_stamp $all; } | sha256sum | cut -d' ' -f1
}

# bin_layer OUT SRC[=DEST]...: see the header.  Rebuilt only if the stamp changed.
bin_layer() {
    local out=$1 stage stamp
    shift
    [ $# -gt 0 ] || die "--bin-layer needs at least one executable"
    stamp=$(bins_stamp "$@")
    if [ -z "${VIO_RIG_REBUILD:-}" ] && [ -s "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    mkdir -p "$(dirname "$out")"
    stage=$(mktemp -d "$out.stage.XXXXXX")
    stage_bins "$stage" "$@"
    archive "$stage" >"$out.tmp"
    rm -rf "$stage"
    mv -f "$out.tmp" "$out"
    echo "$stamp" >"$out.stamp"
}

if [ "${1:-}" = "--bin-layer" ]; then
    shift
    [ $# -ge 2 ] || die "usage: build.sh --bin-layer OUT SRC[=DEST]..."
    out=$1
    shift
    case $out in /*) ;; *) out=$PWD/$out ;; esac
    trap 'rm -rf "$out".stage.* "$out.tmp"' EXIT
    mkdir -p "$(dirname "$out")"
    exec 9>"$out.lock"
    flock 9
    bin_layer "$out" "$@"
    exit 0
fi

OUT=${1:-$REPO/build/rig}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
GUEST_DIR=${VIO_GUEST_DIR:-$REPO/build/guest}

exec 9>"$OUT/.lock"
flock 9
trap 'rm -rf "$OUT"/*.stage.* "$OUT"/*.tmp' EXIT

# ---- the guest kit: L1 and L2 kernel, modules tree, L2 initramfs ---------------
bash "$REPO/tests/guest/build.sh" "$GUEST_DIR" >&2 || die "tests/guest/build.sh failed"
kver=$(cat "$GUEST_DIR/kernel-version")
kroot=
for d in "$GUEST_DIR"/cache/root-*; do
    if [ -f "$d/.done" ] && [ -d "$d/lib/modules/$kver" ]; then
        kroot=$d
    fi
done
[ -n "$kroot" ] || die "no unpacked kernel $kver under $GUEST_DIR/cache"
kmods=$kroot/lib/modules/$kver

record() {  # NAME START_MS: one line of layers.txt
    local f=$OUT/$1.cpio
    local kib=$(( $(stat -c %s "$f") / 1024 ))
    sed -i "/^$1 /d" "$OUT/layers.txt" 2>/dev/null || true
    printf '%s %d KiB built in %d ms (%s)\n' "$1" "$kib" "$(( $(now_ms) - $2 ))" "$(date -u +%FT%TZ)" >>"$OUT/layers.txt"
    log "built $1.cpio ($kib KiB, $(( $(now_ms) - $2 )) ms)"
}

fresh() {  # NAME STAMP: is the layer up to date?
    [ -z "${VIO_RIG_REBUILD:-}" ] && [ -s "$OUT/$1.cpio" ] && [ "$(cat "$OUT/$1.stamp" 2>/dev/null)" = "$2" ]
}

# ---- base layer --------------------------------------------------------------
module_closure() {  # module names -> module files relative to $kmods, load order
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
            esac
        done <<<"$out"
    done | awk '!seen[$0]++'
}

SIG_MAGIC='~Module signature appended~'
strip_module_signature() {  # as tests/guest/build.sh: checking costs boot time
    local f=$1 size siglen
    [ "$(tail -c 28 "$f")" = "$SIG_MAGIC" ] || return 0
    size=$(stat -c %s "$f")
    siglen=$(od -An -tu1 -j $((size - 32)) -N 4 "$f" |
        awk '{ print (($1 * 256 + $2) * 256 + $3) * 256 + $4 }')
    truncate -s $((size - 28 - 12 - siglen)) "$f"
}

base_stamp=$( {
    cat "$HERE/build.sh" "$HERE/init" "$HERE/rig.sh" "$HERE/kvmprobe.c" \
        "$REPO/tests/guest/vio.sh" "$REPO/tests/guest/vgtool.c"
    echo "BOOT=$BOOT_MODULES EXTRA=$EXTRA_MODULES"
    cat "$GUEST_DIR/kernel-package" "$GUEST_DIR/kernel-version"
    stat_stamp "$BUSYBOX"
} | sha256sum | cut -d' ' -f1)

if ! fresh base "$base_stamp"; then
    t0=$(now_ms)
    [ -x "$BUSYBOX" ] || die "$BUSYBOX not found (package busybox-static)"
    stage=$OUT/base.stage.d
    rm -rf "$stage"
    mkdir -p "$stage"
    (
        cd "$stage"
        mkdir -p bin sbin usr/bin usr/sbin usr/local/bin lib lib64 etc proc sys dev tmp run \
            root mnt var/log rig
        ln -s ../run var/run
        cp "$BUSYBOX" bin/busybox
        "$BUSYBOX" --list-full | while read -r app; do
            case $app in */*) ;; *) continue ;; esac
            [ -e "$app" ] || [ -L "$app" ] || ln -s /bin/busybox "$app"
        done
        mknod -m 600 dev/console c 5 1
        mknod -m 666 dev/null c 1 3
        install -m 0755 "$HERE/init" init
        install -m 0644 "$HERE/rig.sh" lib/rig.sh
        install -m 0644 "$REPO/tests/guest/vio.sh" lib/vio.sh
        printf 'root:x:0:0:root:/root:/bin/sh\n' >etc/passwd
        printf 'root:x:0:\n' >etc/group
        printf 'vio-rig\n' >etc/hostname
        printf '127.0.0.1 localhost vio-rig\n' >etc/hosts
    )
    gcc -static -O2 -Wall -Wextra -Werror -o "$stage/usr/local/bin/kvmprobe" "$HERE/kvmprobe.c"
    gcc -static -O2 -Wall -Wextra -Werror -o "$stage/usr/local/bin/vgtool" "$REPO/tests/guest/vgtool.c"
    strip "$stage/usr/local/bin/kvmprobe" "$stage/usr/local/bin/vgtool"

    # shellcheck disable=SC2086  # whitespace-separated lists
    boot_list=$(module_closure $BOOT_MODULES)
    # shellcheck disable=SC2086
    extra_list=$(module_closure $EXTRA_MODULES)
    mdst=$stage/lib/modules/$kver
    mkdir -p "$mdst"
    # shellcheck disable=SC2086
    printf '%s\n' $boot_list $extra_list | awk 'NF && !seen[$0]++' | while read -r rel; do
        mkdir -p "$mdst/$(dirname "$rel")"
        cp "$kmods/$rel" "$mdst/$rel"
        strip_module_signature "$mdst/$rel"
    done
    for f in modules.order modules.builtin modules.builtin.modinfo; do
        [ -f "$kmods/$f" ] && cp "$kmods/$f" "$mdst/$f"
    done
    depmod -b "$stage" "$kver"
    for rel in $boot_list; do
        m=${rel##*/}
        echo "${m%.ko}"
    done >"$stage/lib/rig-modules.list"
    echo "$kver" >"$stage/rig/kernel-version"

    archive "$stage" >"$OUT/base.cpio.tmp"
    rm -rf "$stage"
    mv -f "$OUT/base.cpio.tmp" "$OUT/base.cpio"
    echo "$base_stamp" >"$OUT/base.stamp"
    record base "$t0"
fi

# ---- l2 layer ----------------------------------------------------------------
l2_files="$GUEST_DIR/vmlinux $GUEST_DIR/vmlinuz $GUEST_DIR/initramfs.cpio.gz $GUEST_DIR/kernel-version"
# shellcheck disable=SC2086
l2_stamp=$( { echo l2-v1; stat_stamp $l2_files; } | sha256sum | cut -d' ' -f1)
if ! fresh l2 "$l2_stamp"; then
    t0=$(now_ms)
    stage=$OUT/l2.stage.d
    rm -rf "$stage"
    mkdir -p "$stage/rig/l2"
    # shellcheck disable=SC2086
    cp $l2_files "$stage/rig/l2/"
    archive "$stage" >"$OUT/l2.cpio.tmp"
    rm -rf "$stage"
    mv -f "$OUT/l2.cpio.tmp" "$OUT/l2.cpio"
    echo "$l2_stamp" >"$OUT/l2.stamp"
    record l2 "$t0"
fi

# ---- qemu layer --------------------------------------------------------------
[ -x "$QEMU_BIN" ] || die "$QEMU_BIN not found (package qemu-system-x86)"
# shellcheck disable=SC2086
qemu_bins=$(bins_stamp "$QEMU_BIN=/usr/bin/qemu-system-x86_64") || exit 1
# shellcheck disable=SC2086  # a list of paths
qemu_stamp=$( { echo "qemu-v1 $qemu_bins"; stat_stamp $QEMU_FIRMWARE; } | sha256sum | cut -d' ' -f1)
if ! fresh qemu "$qemu_stamp"; then
    t0=$(now_ms)
    stage=$OUT/qemu.stage.d
    rm -rf "$stage"
    mkdir -p "$stage"
    stage_bins "$stage" "$QEMU_BIN=/usr/bin/qemu-system-x86_64"
    for f in $QEMU_FIRMWARE; do
        if [ -e "$f" ]; then
            mkdir -p "$stage$(dirname "$f")"
            cp -L "$f" "$stage$f"
        else
            log "note: firmware $f not found, skipped"
        fi
    done
    archive "$stage" >"$OUT/qemu.cpio.tmp"
    rm -rf "$stage"
    mv -f "$OUT/qemu.cpio.tmp" "$OUT/qemu.cpio"
    echo "$qemu_stamp" >"$OUT/qemu.stamp"
    record qemu "$t0"
fi

# ---- vio layer ---------------------------------------------------------------
vio_bin=${VIO_BIN:-$REPO/build/release/vio}
if [ -f "$vio_bin" ]; then
    t0=$(now_ms)
    before=$(stat -c %y "$OUT/vio.cpio" 2>/dev/null || true)
    bin_layer "$OUT/vio.cpio" "$vio_bin=/usr/local/bin/vio"
    [ "$before" = "$(stat -c %y "$OUT/vio.cpio")" ] || record vio "$t0"
elif [ -n "${VIO_BIN:-}" ]; then
    die "VIO_BIN=$VIO_BIN does not exist"
else
    log "note: $vio_bin not built yet, no vio layer"
fi
