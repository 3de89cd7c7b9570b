"""End-to-end: virtio-scsi under vio run, inside the nested rig.

One L2 guest gets two SCSI controllers: vio run's in-process virtio-scsi
(--scsi with two --lun disks) and a vio serve controller in L1 reached over
vhost-user (--vhost-user-scsi). The stock virtio_scsi and sd drivers see
three disks; the L2 writes, reads back and verifies data on each, and L1
checks the same bytes in the backing files after the L2 has powered off.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from rig import Rig  # noqa: E402

RUN = 'vio run --kernel "$RIG_L2_BZIMAGE" --cmdline "$RIG_L2_APPEND"'


def test_in_process_and_vhost_user_scsi_disks():
    script = """
truncate -s 48M /tmp/l0.img
truncate -s 40M /tmp/l3.img
truncate -s 56M /tmp/remote.img
vio serve --scsi id=rh,socket=/tmp/rh.sock,queues=2 --lun hba=rh,lun=1,path=/tmp/remote.img \\
    --ctl /tmp/serve.sock >/tmp/serve.log 2>&1 &
serve_pid=$!
i=0; while [ ! -S /tmp/rh.sock ] && [ $i -lt 50 ]; do usleep 100000; i=$((i+1)); done
run_l2 scsi %s --initrd /rig/l2/scsi.initrd --mem 256M --cpus 2 \\
    --scsi id=h0,queues=2 --lun hba=h0,lun=0,path=/tmp/l0.img,serial=LOCAL-0 \\
    --lun hba=h0,lun=3,path=/tmp/l3.img,vendor=VIOTEST \\
    --vhost-user-scsi socket=/tmp/rh.sock,queues=2 --ctl /tmp/run.sock
wait_l2_verdict scsi 200
wait_l2_exit scsi 30
kv scsi_exit $?
must vgtool verify /tmp/l0.img 1M 8M 31
must vgtool verify /tmp/l3.img 3M 6M 32
must vgtool verify /tmp/remote.img 5M 8M 33
must vgtool zeroes /tmp/l0.img 9M 4M
vio ctl -s /tmp/serve.sock luns > /tmp/luns.json
kv remote_writes "$(grep -o '"writes": [0-9]*' /tmp/luns.json | awk '{s += $2} END {print s}')"
kill -TERM $serve_pid
wait $serve_pid
kv serve_exit $?
pass
""" % RUN
    l2 = r"""
# Disks by size: 48M and 40M in process, 56M from vio serve.
bysize() {
    for d in /sys/block/sd*; do
        [ "$(cat $d/size)" = "$1" ] && { echo "/dev/${d##*/}"; return 0; }
    done
    return 1
}
n=0
while [ "$(ls -d /sys/block/sd* 2>/dev/null | wc -l)" -lt 3 ]; do
    [ $n -ge 200 ] && fail "only $(ls /sys/block | tr '\n' ' ') after 20 s"
    usleep 100000; n=$((n+1))
done
L0=$(bysize 98304) || fail "no 48M disk"
L3=$(bysize 81920) || fail "no 40M disk"
R=$(bysize 114688) || fail "no 56M disk"
for d in $L0 $L3 $R; do wait_for_dev $d; done
kv l0_serial "$(tail -c +5 /sys/block/${L0##*/}/device/vpd_pg80)"
kv l3_vendor "$(cat /sys/block/${L3##*/}/device/vendor)"
kv l0_hwq "$(ls /sys/block/${L0##*/}/mq | wc -l)"
must vgtool write $L0 1M 8M 31 --direct
must vgtool write $L3 3M 6M 32 --direct
must vgtool write $R 5M 8M 33 --direct
for d in $L0 $L3 $R; do must vgtool flush $d; done
echo 3 > /proc/sys/vm/drop_caches
must vgtool verify $L0 1M 8M 31 --direct
must vgtool verify $L3 3M 6M 32 --direct
must vgtool verify $R 5M 8M 33 --direct
pass
"""
    with Rig(script, l2_tests={"scsi": l2}, name="rig-scsi") as rig:
        r = rig.wait(600)
    logs = "\n".join("--- L2 %s ---\n%s" % (k, v[-3000:]) for k, v in r.l2_logs.items())
    assert r.passed, "rig failed: %s\n%s\n%s" % (r.reason, r.log[-3000:], logs)
    kv = r.kv
    assert kv["scsi_exit"] == "0" and kv["serve_exit"] == "0", kv
    assert kv["scsi.l0_serial"].strip() == "LOCAL-0", kv
    assert kv["scsi.l3_vendor"].strip() == "VIOTEST", kv
    assert kv["scsi.l0_hwq"] == "2", kv
    assert int(kv["remote_writes"]) > 0, kv
