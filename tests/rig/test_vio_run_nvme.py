"""End-to-end: the emulated NVMe controller of vio run under Linux's stock
nvme driver, inside the nested rig (tests/lib/rig.py).

One L2 boot with two controllers: a read-write one with two I/O queues on a
file, and a second namespace on another file (--nvme-ns), and a read-only
one. The L2 writes a pattern from both CPUs (one per
I/O queue), flushes, reads it back past the page cache, deallocates a range
with blkdiscard and reads zeroes there, and checks that the read-only
namespace refuses writes. After the L2 has powered off, the L1 script checks
the backing files: the pattern (recomputed by vgtool), its md5 against the
guest's, the discarded range, and the second namespace's data.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from rig import Rig  # noqa: E402

RUN = 'vio run --kernel "$RIG_L2_KERNEL" --cmdline "$RIG_L2_APPEND"'


def test_nvme_data_queues_discard_flush():
    script = """
truncate -s 64M /tmp/nvme.img
truncate -s 16M /tmp/ro.img
truncate -s 24M /tmp/ns2.img
must vgtool write /tmp/nvme.img 8M 1M 33
must vgtool write /tmp/ro.img 0 1M 44
run_l2 nv %s --initrd /rig/l2/nv.initrd --mem 256M --cpus 2 \\
    --nvme path=/tmp/nvme.img,queues=2,serial=vio-rw --nvme-ns nvme=nvme0,path=/tmp/ns2.img \\
    --nvme path=/tmp/ro.img,readonly,id=ro \\
    --ctl /tmp/run.sock
wait_l2_ready nv 240
vio ctl -s /tmp/run.sock device.list > /tmp/devs.json
kv ctl_nvme "$(grep -o '"type": "nvme"' /tmp/devs.json | wc -l)"
kv ctl_ioq "$(grep -o '"io_queues": [0-9]*' /tmp/devs.json | tr -d ' ' | tr '\n' ' ')"
kv ctl_shadow "$(grep -o '"shadow_doorbells": [a-z]*' /tmp/devs.json | tr -d ' ' | tr '\n' ' ')"
kv ctl_ioev "$(grep -o '"doorbell_ioeventfds": [0-9]*' /tmp/devs.json | tr -d ' ' | tr '\n' ' ')"
wait_l2_verdict nv 240
wait_l2_exit nv 30
kv nv_exit $?
kv boot_line "$(grep -o 'boot 1: .*' /tmp/nv.log)"
must vgtool verify /tmp/nvme.img 1M 4M 21
must vgtool verify /tmp/nvme.img 6M 1M 22
must vgtool zeroes /tmp/nvme.img 8M 1M
must vgtool verify /tmp/ro.img 0 1M 44
must vgtool verify /tmp/ns2.img 2M 4M 23
kv l1_md5 "$(dd if=/tmp/nvme.img bs=1M skip=1 count=4 2>/dev/null | md5sum | cut -d' ' -f1)"
pass
""" % RUN
    l2 = r"""
i=0; while [ $i -lt 300 ] && { [ ! -e /sys/block/nvme0n1 ] || [ ! -e /sys/block/nvme1n1 ]; }; do
    usleep 100000; i=$((i+1)); done
rw=; ro=
for b in /sys/block/nvme*n1; do
    if [ "$(cat $b/ro)" = 1 ]; then ro=/dev/${b##*/}; else rw=/dev/${b##*/}; fi
done
[ -n "$rw" ] && [ -n "$ro" ] || fail "namespaces: $(ls /sys/block)"
kv queues "$(ls /sys/block/${rw#/dev/}/mq | wc -l)"
kv serials "$(cat /sys/class/nvme/nvme*/serial | tr -d ' ' | sort | tr '\n' ' ')"
kv model "$(cat /sys/class/nvme/nvme0/model)"
kv size "$(cat /sys/block/${rw#/dev/}/size)"
# One writer per CPU, so both I/O queues carry requests.
taskset 1 vgtool write $rw 1M 4M 21 --direct & p1=$!
taskset 2 vgtool write $rw 6M 1M 22 --direct & p2=$!
wait $p1 || fail "write on CPU 0"
wait $p2 || fail "write on CPU 1"
must vgtool flush $rw
echo 3 > /proc/sys/vm/drop_caches
must vgtool verify $rw 1M 4M 21 --direct
must vgtool verify $rw 6M 1M 22 --direct
kv md5 "$(dd if=$rw bs=1M skip=1 count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
kv discard_max "$(cat /sys/block/${rw#/dev/}/queue/discard_max_bytes)"
must vgtool verify $rw 8M 1M 33 --direct
must blkdiscard -o 8388608 -l 1048576 $rw
must vgtool zeroes $rw 8M 1M --direct
must vgtool verify $ro 0 1M 44 --direct
if vgtool write $ro 0 4K 1 --direct 2>/dev/null; then kv ro_write ok; else kv ro_write refused; fi
for c in /sys/class/nvme/nvme*; do
    [ "$(tr -d ' ' < $c/serial)" = vio-rw ] && ctrl=${c##*/}
done
kv qirqs "$(grep " ${ctrl}q[1-9]" /proc/interrupts | awk '{print $2 + $3}' | tr '\n' ' ')"
# Namespace 2 of the read-write controller: 24M, its own data.
i=0; while [ $i -lt 100 ] && ! ls -d /sys/block/nvme*n2 >/dev/null 2>&1; do
    usleep 100000; i=$((i+1)); done
ns2=$(ls -d /sys/block/nvme*n2 2>/dev/null | head -1)
[ -n "$ns2" ] || fail "no second namespace: $(ls /sys/block | tr '\n' ' ') $(dmesg | grep -i nvme | tr '\n' '|')"
kv ns2 "${ns2##*/} $(cat $ns2/size) $(tr -d ' ' < $ns2/device/serial)"
must vgtool write /dev/${ns2##*/} 2M 4M 23 --direct
must vgtool verify /dev/${ns2##*/} 2M 4M 23 --direct
kv dmesg "$(dmesg | grep -i nvme | tr '\n' '|')"
pass
"""
    with Rig(script, l2_tests={"nv": l2}, name="rig-nvme") as rig:
        r = rig.wait(480)
    logs = "\n".join("--- L2 %s ---\n%s" % (k, v[-4000:]) for k, v in r.l2_logs.items())
    assert r.passed, "rig failed: %s\n%s\n%s" % (r.reason, r.log[-3000:], logs)
    kv = r.kv
    assert kv["nv.queues"] == "2", kv
    name, size, serial = kv["nv.ns2"].split()
    assert size == str(24 << 11) and serial == "vio-rw", kv   # on the rw controller
    assert kv["boot_line"].endswith(", 2 devices"), kv   # the two NVMe controllers
    assert kv["nv.serials"].split() == ["ro", "vio-rw"], kv
    assert kv["nv.model"] == "vio NVMe controller", kv
    assert kv["nv.size"] == str(64 << 11), kv
    assert kv["nv.md5"] == kv["l1_md5"], kv
    assert int(kv["nv.discard_max"]) > 0, kv
    assert kv["nv.ro_write"] == "refused", kv
    # The driver took everything without complaint (no timeouts, resets,
    # failed Identify or feature commands).
    for bad in ("timeout", "failed", "error", "reset", "I/O"):
        assert bad not in kv["nv.dmesg"], kv["nv.dmesg"]
    # The control API lists both controllers; the guest's driver had made
    # its I/O queues by the time it was ready (one per vCPU).
    assert kv["ctl_nvme"] == "2", kv
    assert kv["ctl_ioq"].split() == ['"io_queues":2', '"io_queues":2'], kv
    # The driver set up shadow doorbells (Doorbell Buffer Config), so the
    # I/O doorbells are ioeventfds: 2 SQ + 2 CQ per controller.
    assert kv["ctl_shadow"].split() == ['"shadow_doorbells":true'] * 2, kv
    assert kv["ctl_ioev"].split() == ['"doorbell_ioeventfds":4'] * 2, kv
    assert kv["nv_exit"] == "0", "vio run exited %s\n%s" % (kv["nv_exit"], logs)
    # Each CPU's writer went through its own I/O queue and interrupt.
    qirqs = [int(x) for x in kv["nv.qirqs"].split()]
    assert len(qirqs) >= 2 and all(n > 0 for n in qirqs[:2]), kv
