#!/usr/bin/env bash
# Install the Debian 12 packages vio needs to build, test and demo, if any
# is missing. Runs as root on a fresh machine (make demo / make test call
# it); as another user it only lists what is missing.
set -euo pipefail

PKGS=(
    # build
    gcc libc6-dev make pkg-config meson ninja-build
    liburing-dev libjansson-dev libslirp-dev libglib2.0-dev libnbd-dev libiscsi-dev
    # unit tests and fuzzing
    libcmocka-dev clang libclang-rt-14-dev acpica-tools
    # end-to-end tests: QEMU as the real client, guest kit, Python harness
    python3 qemu-system-x86 qemu-system-data qemu-system-common qemu-utils
    busybox-static cpio kmod iproute2
    # SAN peers for the virtual HBA tests: an iSCSI target and its tools, an NBD server
    tgt libiscsi-bin nbdkit
)
# `deps.sh bench`: also what the bench/ scripts compare against and plot with
# (fio for host-native I/O, DPDK's testpmd, gnuplot).
if [ "${1:-}" = bench ]; then
    PKGS+=(fio gnuplot-nox dpdk dpdk-dev)
fi

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "vio: missing packages: ${missing[*]}" >&2
    echo "vio: run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "vio: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
