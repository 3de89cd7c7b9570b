"""End-to-end: QEMU TCG guests with vhost-user-scsi-pci attached to vio serve.

The guest's stock virtio_scsi and sd drivers see vio's LUNs as SCSI disks.
Each test checks what the guest sees (sysfs: vendor, model, serial, VPD
pages, discard limits), the data it writes and reads back, and afterwards
the same bytes on the host side of every backend. LUNs are added and
removed at run time with the control socket, and the guest must notice.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from guest import Guest, new_workdir, pattern_bytes  # noqa: E402
from test_blk import allocated, host_tool, make_image  # noqa: E402
from vioproc import VioServe  # noqa: E402

MiB = 1 << 20

# /sys/block/sdX/device points at H:C:T:L; find a disk by target and LUN.
LUNDEV = r"""
lundev() {
    for d in /sys/block/sd*; do
        [ -e "$d" ] || continue
        case "$(readlink "$d/device")" in
            *:0:$1:$2) echo "/dev/${d##*/}"; return 0 ;;
        esac
    done
    return 1
}
# wait_lun T L [SECONDS]: wait for the disk at T:L; its /dev path is in $DEV
wait_lun() {
    n=$(( ${3:-20} * 10 ))
    while ! lundev "$1" "$2" >/dev/null; do
        [ "$n" -le 0 ] && fail "no disk at target $1 LUN $2"
        usleep 100000
        n=$((n - 1))
    done
    DEV=$(lundev "$1" "$2")
    wait_for_dev "$DEV"
}
"""


def scsi_args(sock, queues=1, cid="c0"):
    return ["-chardev", "socket,id=%s,path=%s" % (cid, sock),
            "-device", "vhost-user-scsi-pci,chardev=%s,num_queues=%d" % (cid, queues)]


def lun_stats(vs, target, lun):
    for x in vs.ctl("scsi.luns"):
        if x["target"] == target and x["lun"] == lun:
            return x
    raise AssertionError("no LUN %d:%d in %s" % (target, lun, vs.ctl("scsi.luns")))


def test_file_luns_identity_vpd_data_discard():
    """Two targets, each with a file LUN: identity and VPD through sysfs,
    data through both request queues, discard reaching the file."""
    w = new_workdir("scsi-file")
    a, b, sock = w / "a.img", w / "b.img", str(w / "hba.sock")
    make_image(a, 64 * MiB, fill_seed=3)
    make_image(b, 32 * MiB)
    before = allocated(a)
    assert before >= 60 * MiB, "pre-filled image has only %d bytes allocated" % before
    script = LUNDEV + r"""
wait_lun 0 0; A=$DEV
wait_lun 1 2; B=$DEV
sa=${A##*/}
sb=${B##*/}
kv vendor_b "$(cat /sys/block/$sb/device/vendor)"
kv model_b "$(cat /sys/block/$sb/device/model)"
kv serial_a "$(tail -c +5 /sys/block/$sa/device/vpd_pg80)"
kv serial_b "$(tail -c +5 /sys/block/$sb/device/vpd_pg80)"
kv wwid_b "$(cat /sys/block/$sb/device/wwid)"
# sysfs reports size 0 for these binary files: read them.
for p in 80 83 b0 b1 b2; do
    [ "$(head -c 4 /sys/block/$sa/device/vpd_pg$p | wc -c)" = 4 ] || fail "no VPD page $p"
done
kv rotational "$(cat /sys/block/$sa/queue/rotational)"
kv discard_max "$(cat /sys/block/$sa/queue/discard_max_bytes)"
kv size_a "$(vgtool size $A)"
kv size_b "$(vgtool size $B)"
kv hwq "$(ls /sys/block/$sa/mq | wc -l)"
taskset -c 0 vgtool write $A 1M 6M 21 --direct & p0=$!
taskset -c 1 vgtool write $B 5M 6M 22 --direct & p1=$!
wait $p0 || fail "write to LUN 0:0 failed"
wait $p1 || fail "write to LUN 1:2 failed"
must vgtool flush $A
must vgtool flush $B
echo 3 > /proc/sys/vm/drop_caches
must vgtool verify $A 1M 6M 21 --direct
must vgtool verify $B 5M 6M 22 --direct
must vgtool discard $A 16M 32M
must vgtool zeroes $A 16M 32M --direct
pass
"""
    args = ["--scsi", "id=h0,socket=%s,queues=2" % sock,
            "--lun", "hba=h0,target=0,lun=0,path=%s,serial=SER-A0" % a,
            "--lun", "hba=h0,target=1,lun=2,path=%s,vendor=ACME,product=SAN-VOLUME,"
                     "serial=SER-B12,wwn=0x6001405abcdef123" % b]
    with VioServe(args, workdir=w / "vio") as vs:
        with Guest(script, args=scsi_args(sock, queues=2), name="scsi-file-guest", smp=2) as g:
            r = g.wait(timeout=240)
        assert r.passed, "guest failed: %s\n%s" % (r.reason, r.log[-3000:])
        kv = r.kv
        assert kv["vendor_b"].strip() == "ACME" and kv["model_b"].strip() == "SAN-VOLUME", kv
        assert kv["serial_a"].strip() == "SER-A0" and kv["serial_b"].strip() == "SER-B12", kv
        assert kv["wwid_b"].strip() == "naa.6001405abcdef123", kv
        assert kv["rotational"] == "0", kv
        assert int(kv["discard_max"]) > 0, kv
        assert kv["size_a"] == str(64 * MiB) and kv["size_b"] == str(32 * MiB), kv
        assert kv["hwq"] == "2", kv
        st = lun_stats(vs, 0, 0)
        assert st["unmaps"] >= 1 and st["backend"]["discards"] >= 1, st
        assert st["writes"] > 0 and st["io_errors"] == 0, st
        dev = vs.stats("h0")
        req_q = [q for q in dev["queues"] if q["role"] == "request"]
        assert len(req_q) == 2 and all(q["requests"] > 0 for q in req_q), dev["queues"]
    host_tool("verify", a, 1 * MiB, 6 * MiB, 21)
    host_tool("verify", b, 5 * MiB, 6 * MiB, 22)
    host_tool("zeroes", a, 16 * MiB, 32 * MiB)
    # Outside the discarded range the pre-filled pattern is untouched.
    host_tool("verify", a, 48 * MiB, 16 * MiB, 3)
    after = allocated(a)
    assert after <= before - 30 * MiB, "discard freed only %d bytes" % (before - after)


def test_lun_hotplug_and_unplug():
    """A LUN added with the control socket appears in the running guest,
    takes data, and disappears cleanly when removed."""
    w = new_workdir("scsi-hotplug")
    a, c, sock = w / "a.img", w / "c.img", str(w / "hba.sock")
    make_image(a, 16 * MiB)
    make_image(c, 24 * MiB)
    script = LUNDEV + r"""
wait_lun 0 0; A=$DEV
kv phase booted
wait_lun 0 5 60; C=$DEV
kv size_c "$(vgtool size $C)"
must vgtool write $C 2M 4M 77 --direct
must vgtool flush $C
must vgtool verify $C 2M 4M 77 --direct
kv phase written
n=600
while lundev 0 5 >/dev/null; do
    [ "$n" -le 0 ] && fail "LUN 0:5 still present after removal"
    usleep 100000
    n=$((n - 1))
done
[ -e "$C" ] && fail "$C still exists"
must vgtool write $A 0 1M 9 --direct
must vgtool verify $A 0 1M 9 --direct
kv phase removed
pass
"""
    args = ["--scsi", "id=h0,socket=%s" % sock, "--lun", "hba=h0,lun=0,path=%s" % a]
    with VioServe(args, workdir=w / "vio") as vs:
        with Guest(script, args=scsi_args(sock), name="scsi-hotplug-guest") as g:
            g.wait_for(r"VIO-KV phase=booted", timeout=120)
            res = vs.ctl("scsi.lun.add", {"spec": "hba=h0,lun=5,path=%s" % c})
            assert "added" in res, res
            g.wait_for(r"VIO-KV phase=written", timeout=120)
            luns = {(x["target"], x["lun"]) for x in vs.ctl("scsi.luns")}
            assert luns == {(0, 0), (0, 5)}, luns
            vs.ctl("scsi.lun.remove", {"hba": "h0", "lun": 5})
            r = g.wait(timeout=120)
        assert r.passed, "guest failed: %s\n%s" % (r.reason, r.log[-3000:])
        assert r.kv["size_c"] == str(24 * MiB), r.kv
        luns = [(x["target"], x["lun"]) for x in vs.ctl("scsi.luns")]
        assert luns == [(0, 0)], luns
        st = vs.stats("h0")
        assert st["luns_added"] == 2 and st["luns_removed"] == 1, st
        ev = [q for q in st["queues"] if q["role"] == "event"][0]
        assert ev["events"] >= 2, ev
    host_tool("verify", c, 2 * MiB, 4 * MiB, 77)
    with open(c, "rb") as f:
        f.seek(2 * MiB)
        assert f.read(4096) == pattern_bytes(77, 2 * MiB, 4096)


def read_nbd(uri, off, length, out):
    """Read an NBD export with qemu-img (a second NBD client). qemu-img dd
    counts the skipped blocks in count=."""
    import subprocess
    p = subprocess.run(["qemu-img", "dd", "-f", "raw", "-O", "raw", "bs=1M",
                        "skip=%d" % (off // MiB), "count=%d" % ((off + length) // MiB),
                        "if=" + uri, "of=%s" % out], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    assert p.returncode == 0, "qemu-img dd %s: %s" % (uri, p.stdout.decode(errors="replace"))
    return Path(out).read_bytes()


def read_iscsi(uri, off, length):
    """Read an iSCSI LUN with tests/tools/iscsi_read (libiscsi, a second
    initiator)."""
    import subprocess
    from vioproc import REPO
    tool = REPO / "build" / "asan" / "tests" / "tools" / "iscsi_read"
    assert tool.exists(), "%s is missing: run make build" % tool
    p = subprocess.run([str(tool), uri, str(off), str(length)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, "iscsi_read %s: %s" % (uri, p.stderr.decode(errors="replace"))
    return p.stdout


def test_file_nbd_and_iscsi_luns():
    """One controller, three disks: a file, an NBD export (qemu-nbd on a Unix
    socket) and an iSCSI LUN on a SAN target (tgtd on loopback). The guest
    writes and verifies each; afterwards the bytes are read back from the
    file, from the NBD export and through a second iSCSI initiator."""
    from sanpeers import QemuNbd, tgtd_for
    w = new_workdir("scsi-san")
    f_img, n_img, i_img = w / "file.img", w / "nbd.img", w / "iscsi.img"
    make_image(f_img, 64 * MiB)
    make_image(n_img, 48 * MiB)
    make_image(i_img, 40 * MiB)
    nsock, sock = str(w / "nbd.sock"), str(w / "hba.sock")
    nbd_uri = "nbd+unix:///exp?socket=%s" % nsock
    script = LUNDEV + r"""
wait_lun 0 0; F=$DEV
wait_lun 0 1; N=$DEV
wait_lun 0 2; I=$DEV
kv sizes "$(vgtool size $F) $(vgtool size $N) $(vgtool size $I)"
kv vendor_i "$(cat /sys/block/${I##*/}/device/vendor)"
must vgtool write $F 2M 8M 41 --direct
must vgtool write $N 3M 8M 42 --direct
must vgtool write $I 4M 8M 43 --direct
for d in $F $N $I; do must vgtool flush $d; done
echo 3 > /proc/sys/vm/drop_caches
must vgtool verify $F 2M 8M 41 --direct
must vgtool verify $N 3M 8M 42 --direct
must vgtool verify $I 4M 8M 43 --direct
pass
"""
    with QemuNbd(n_img, w / "qemu-nbd.log", sock=nsock).start() as nbd, \
            tgtd_for(w, i_img).start() as tgt:
        args = ["--scsi", "id=h0,socket=%s" % sock,
                "--lun", "hba=h0,lun=0,path=%s" % f_img,
                "--lun", "hba=h0,lun=1,path=%s" % nbd_uri,
                "--lun", "hba=h0,lun=2,path=%s" % tgt.uri()]
        with VioServe(args, workdir=w / "vio") as vs:
            with Guest(script, args=scsi_args(sock), name="scsi-san-guest") as g:
                r = g.wait(timeout=300)
            assert r.passed, "guest failed: %s\n%s" % (r.reason, r.log[-3000:])
            assert r.kv["sizes"] == "%d %d %d" % (64 * MiB, 48 * MiB, 40 * MiB), r.kv
            luns = {x["lun"]: x for x in vs.ctl("scsi.luns")}
            assert luns[1]["backend"]["type"] == "nbd", luns[1]
            assert luns[2]["backend"]["type"] == "iscsi", luns[2]
            for x in luns.values():
                assert x["writes"] > 0 and x["io_errors"] == 0, x
        # vio serve has stopped; the servers still run: read through them.
        got = read_nbd(nbd_uri, 3 * MiB, 8 * MiB, w / "nbd-back.raw")
        assert got == pattern_bytes(42, 3 * MiB, 8 * MiB), "NBD export differs from the guest's data"
        got = read_iscsi(tgt.uri(), 4 * MiB, 8 * MiB)
        assert got == pattern_bytes(43, 4 * MiB, 8 * MiB), "iSCSI LUN differs from the guest's data"
    host_tool("verify", f_img, 2 * MiB, 8 * MiB, 41)
    host_tool("verify", n_img, 3 * MiB, 8 * MiB, 42)
    host_tool("verify", i_img, 4 * MiB, 8 * MiB, 43)


def test_nbd_server_restart_mid_io():
    """The NBD server dies while the guest writes and comes back 3 s later.
    The guest sees errors (or retries), never silent corruption: every chunk
    it writes is retried until it succeeds (it keeps writing until a pass
    has met the outage), and all of it verifies in the guest and on the
    host afterwards."""
    import time
    from sanpeers import QemuNbd
    w = new_workdir("scsi-nbd-restart")
    img, nsock, sock = w / "nbd.img", str(w / "nbd.sock"), str(w / "hba.sock")
    make_image(img, 64 * MiB)
    script = LUNDEV + r"""
wait_lun 0 0; N=$DEV
kv phase writing
# Write the 40 MiB again and again (the same bytes) until a pass has run
# into the outage and got through it: a fast guest would otherwise finish
# before the server dies and meet the outage in the verify instead.
fails=0
passes=0
while [ $fails -eq 0 ]; do
    [ $passes -ge 600 ] && fail "the NBD server never went away during $passes passes"
    off=0
    while [ $off -lt 40 ]; do
        tries=0
        until vgtool write $N ${off}M 1M 61 --direct 2>/dev/null; do
            fails=$((fails + 1)); tries=$((tries + 1))
            [ $tries -ge 150 ] && fail "chunk at ${off}M never succeeded"
            usleep 200000
        done
        off=$((off + 1))
    done
    passes=$((passes + 1))
done
kv write_failures $fails
kv write_passes $passes
until vgtool flush $N 2>/dev/null; do usleep 200000; done
echo 3 > /proc/sys/vm/drop_caches
must vgtool verify $N 0 40M 61 --direct
pass
"""
    nbd = QemuNbd(img, w / "qemu-nbd.log", sock=nsock).start()
    try:
        args = ["--scsi", "id=h0,socket=%s" % sock,
                "--lun", "hba=h0,lun=0,path=nbd+unix:///exp?socket=%s" % nsock]
        with VioServe(args, workdir=w / "vio") as vs:
            with Guest(script, args=scsi_args(sock), name="scsi-nbd-restart-guest") as g:
                g.wait_for(r"VIO-KV phase=writing", timeout=120)
                time.sleep(0.5)
                nbd.kill()
                time.sleep(3)
                nbd.start()
                r = g.wait(timeout=300)
            assert r.passed, "guest failed: %s\n%s" % (r.reason, r.log[-3000:])
            x = vs.ctl("scsi.luns")[0]
            b = x["backend"]
            assert b["reconnects"] >= 1, "the backend never reconnected: %s" % b
            # The outage was seen: commands failed and the guest retried them.
            assert x["io_errors"] >= 1 and int(r.kv["write_failures"]) >= 1, (x, r.kv)
    finally:
        nbd.kill()
    host_tool("verify", img, 0, 40 * MiB, 61)


def test_lun_reset_waits_for_stalled_io():
    """A LUN reset (task management) while a frozen NBD server holds a
    write: vio answers the reset only once the write has really completed
    (the server thaws 6 s later), so the guest can never see the reset done
    while its old command may still land. The data verifies."""
    import signal
    import time
    from sanpeers import QemuNbd
    w = new_workdir("scsi-tmf")
    img, nsock, sock = w / "nbd.img", str(w / "nbd.sock"), str(w / "hba.sock")
    make_image(img, 32 * MiB)
    script = LUNDEV + r"""
wait_lun 0 0; N=$DEV
must vgtool write $N 0 4M 70 --direct
kv phase stall
sleep 1
vgtool write $N 4M 4M 71 --direct & wp=$!
sleep 1
ms=$(vgtool scsi-reset $N) || fail "LUN reset failed"
kv reset_ms "$ms"
kill -0 $wp 2>/dev/null && kv writer_after_reset running
wait $wp || log "the write failed across the reset; writing again"
must vgtool write $N 4M 4M 71 --direct
must vgtool flush $N
echo 3 > /proc/sys/vm/drop_caches
must vgtool verify $N 0 4M 70 --direct
must vgtool verify $N 4M 4M 71 --direct
pass
"""
    nbd = QemuNbd(img, w / "qemu-nbd.log", sock=nsock).start()
    try:
        args = ["--scsi", "id=h0,socket=%s" % sock,
                "--lun", "hba=h0,lun=0,path=nbd+unix:///exp?socket=%s" % nsock]
        with VioServe(args, workdir=w / "vio") as vs:
            with Guest(script, args=scsi_args(sock), name="scsi-tmf-guest") as g:
                g.wait_for(r"VIO-KV phase=stall", timeout=120)
                os.kill(nbd.proc.pid, signal.SIGSTOP)
                time.sleep(6)
                os.kill(nbd.proc.pid, signal.SIGCONT)
                r = g.wait(timeout=300)
            assert r.passed, "guest failed: %s\n%s" % (r.reason, r.log[-3000:])
            ctrl = [q for q in vs.stats("h0")["queues"] if q["role"] == "control"][0]
            assert ctrl["tmfs"] >= 1, "the reset sent no task management: %s" % ctrl
            # The reset was issued ~4 s before the server thawed; answered
            # at once it would take milliseconds.
            assert int(r.kv["reset_ms"]) >= 2000, "LUN reset answered while the write was held: %s" % r.kv
    finally:
        nbd.kill()
    host_tool("verify", img, 0, 4 * MiB, 70)
    host_tool("verify", img, 4 * MiB, 4 * MiB, 71)
