"""End-to-end: QEMU TCG guests with vhost-user-blk-pci attached to vio serve.

Each test starts its own vio serve (the ASan build, so memory errors that a
real guest provokes fail the test), boots guests whose /test.sh does the
I/O with vgtool, and checks the result from both sides: the guest's verdict
and the backing file on the host.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from guest import Guest, build_guest, new_workdir  # noqa: E402
from vioproc import VioServe  # noqa: E402

MiB = 1 << 20


def blk_args(sock, queues=1, cid="c0"):
    return ["-chardev", "socket,id=%s,path=%s" % (cid, sock),
            "-device", "vhost-user-blk-pci,chardev=%s,num-queues=%d" % (cid, queues)]


def make_image(path, size, fill_seed=None):
    """A sparse image, or one fully written with vgtool's pattern."""
    with open(path, "wb") as f:
        f.truncate(size)
    if fill_seed is not None:
        host_tool("write", path, "0", str(size), str(fill_seed))
        os.sync()


def host_tool(*args):
    tool = str(build_guest().vgtool_host)
    p = subprocess.run([tool] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise AssertionError("vgtool-host %s: %s" % (" ".join(map(str, args)),
                                                     p.stdout.decode(errors="replace")))
    return p.stdout.decode()


def allocated(path):
    return os.stat(path).st_blocks * 512


def run_guest(script, args, name, smp=2, timeout=240):
    with Guest(script, args=args, name=name, smp=smp) as g:
        r = g.wait(timeout=timeout)
    assert r.passed, "guest %s failed: %s\n%s" % (name, r.reason, r.log[-3000:])
    return r


def queue_counts(vs, dev, key):
    return [q[key] for q in vs.stats(dev)["queues"]]


# Offsets chosen to cross 1 MiB boundaries and reach the end of the disk.
WRITE_RANGES = [(0, 8 * MiB, False), (50 * MiB + 4096, 8 * MiB, True),
                (123 * MiB + 512, 8 * MiB, False), (248 * MiB, 8 * MiB, True)]


def test_write_verify_32m():
    w = new_workdir("blk-32m")
    img, sock = w / "disk.img", str(w / "disk.sock")
    make_image(img, 256 * MiB)
    lines = ["wait_for_dev /dev/vda",
             'kv size "$(vgtool size /dev/vda)"']
    for i, (off, ln, direct) in enumerate(WRITE_RANGES):
        d = " --direct" if direct else ""
        lines.append("must vgtool write /dev/vda %d %d %d%s" % (off, ln, 100 + i, d))
    lines.append("must vgtool flush /dev/vda")
    lines.append("echo 3 > /proc/sys/vm/drop_caches")
    for i, (off, ln, direct) in enumerate(WRITE_RANGES):
        lines.append("must vgtool verify /dev/vda %d %d %d --direct" % (off, ln, 100 + i))
    lines.append("pass")
    with VioServe(["--blk", "id=d0,path=%s,socket=%s,queues=1" % (img, sock)],
                  workdir=w / "vio") as vs:
        r = run_guest("\n".join(lines), blk_args(sock), "blk-32m-guest")
        assert r.kv["size"] == str(256 * MiB), r.kv
        st = vs.stats("d0")
        written = sum(q["write_bytes"] for q in st["queues"])
        assert written >= 32 * MiB, "device counted %d bytes written" % written
        assert sum(q["errors"] for q in st["queues"]) == 0, st
    # The guest has powered off: the bytes must be in the file.
    for i, (off, ln, _) in enumerate(WRITE_RANGES):
        host_tool("verify", img, off, ln, 100 + i)
    host_tool("zeroes", img, 8 * MiB, 42 * MiB)


def test_clean_reconnect_sees_data():
    """A guest powers off; the next guest on the same device reads its data."""
    w = new_workdir("blk-again")
    img, sock = w / "disk.img", str(w / "disk.sock")
    make_image(img, 64 * MiB)
    first = """
wait_for_dev /dev/vda
must vgtool write /dev/vda 3M 20M 55 --direct
pass
"""
    second = """
wait_for_dev /dev/vda
must vgtool verify /dev/vda 3M 20M 55 --direct
must vgtool write /dev/vda 30M 4M 56
must vgtool flush /dev/vda
pass
"""
    with VioServe(["--blk", "id=d0,path=%s,socket=%s,queues=2" % (img, sock)],
                  workdir=w / "vio") as vs:
        run_guest(first, blk_args(sock, queues=2), "blk-again-1")
        run_guest(second, blk_args(sock, queues=1), "blk-again-2")
        dev = vs.ctl("device.list")[0]
        assert dev["connections"] == 2 and dev["dropped_connections"] == 0, dev
    host_tool("verify", img, 30 * MiB, 4 * MiB, 56)


def test_two_queues_two_cpus():
    w = new_workdir("blk-2q")
    img, sock = w / "disk.img", str(w / "disk.sock")
    make_image(img, 64 * MiB)
    script = """
wait_for_dev /dev/vda
kv hwq "$(ls /sys/block/vda/mq | wc -l)"
taskset -c 0 vgtool write /dev/vda 0 16M 7 --direct & p0=$!
taskset -c 1 vgtool write /dev/vda 32M 16M 8 --direct & p1=$!
wait $p0 || fail "writer on cpu0 failed"
wait $p1 || fail "writer on cpu1 failed"
taskset -c 1 vgtool verify /dev/vda 0 16M 7 --direct & p0=$!
taskset -c 0 vgtool verify /dev/vda 32M 16M 8 --direct & p1=$!
wait $p0 || fail "verify of cpu0's data failed"
wait $p1 || fail "verify of cpu1's data failed"
pass
"""
    with VioServe(["--blk", "id=d0,path=%s,socket=%s,queues=2" % (img, sock)],
                  workdir=w / "vio") as vs:
        r = run_guest(script, blk_args(sock, queues=2), "blk-2q-guest", smp=2)
        assert r.kv["hwq"] == "2", "guest sees %s hardware queues" % r.kv["hwq"]
        writes = queue_counts(vs, "d0", "writes")
        assert all(n > 0 for n in writes), "writes per queue: %s" % writes
        assert vs.ctl("server.info")["workers"] == 2
    host_tool("verify", img, 0, 16 * MiB, 7)
    host_tool("verify", img, 32 * MiB, 16 * MiB, 8)


def test_two_guests_two_devices():
    w = new_workdir("blk-2g")
    imgs = [w / "a.img", w / "b.img"]
    socks = [str(w / "a.sock"), str(w / "b.sock")]
    for img in imgs:
        make_image(img, 64 * MiB)
    args = []
    for i, (img, sock) in enumerate(zip(imgs, socks)):
        # One device with O_DIRECT, one through the page cache.
        args += ["--blk", "id=d%d,path=%s,socket=%s%s" % (i, img, sock, ",direct" if i else "")]
    scripts = ["""
wait_for_dev /dev/vda
must vgtool write /dev/vda 4M 24M %d
must vgtool flush /dev/vda
must vgtool verify /dev/vda 4M 24M %d --direct
pass
""" % (s, s) for s in (31, 32)]
    with VioServe(args, workdir=w / "vio") as vs:
        guests = [Guest(scripts[i], args=blk_args(socks[i]), name="blk-2g-guest%d" % i)
                  for i in range(2)]
        try:
            for g in guests:
                g.start()
            results = [g.wait(timeout=300) for g in guests]
        finally:
            for g in guests:
                g.kill()
        for i, r in enumerate(results):
            assert r.passed, "guest %d: %s\n%s" % (i, r.reason, r.log[-2000:])
        devs = {d["id"]: d for d in vs.ctl("device.list")}
        assert devs["d0"]["connections"] == 1 and devs["d1"]["connections"] == 1, devs
        assert vs.stats("d1")["backend"]["direct"] is True
        for i in range(2):
            assert sum(queue_counts(vs, "d%d" % i, "write_bytes")) >= 24 * MiB
    # Each guest's data landed on its own disk only.
    host_tool("verify", imgs[0], 4 * MiB, 24 * MiB, 31)
    host_tool("verify", imgs[1], 4 * MiB, 24 * MiB, 32)


def test_flush_discard_write_zeroes():
    w = new_workdir("blk-fdz")
    img, sock = w / "disk.img", str(w / "disk.sock")
    make_image(img, 64 * MiB, fill_seed=5)
    before = allocated(img)
    assert before >= 60 * MiB, "pre-filled image has only %d bytes allocated" % before
    script = """
wait_for_dev /dev/vda
kv discard_max "$(cat /sys/block/vda/queue/discard_max_bytes)"
kv wz_max "$(cat /sys/block/vda/queue/write_zeroes_max_bytes)"
must vgtool write /dev/vda 0 1M 6
must vgtool flush /dev/vda
must vgtool discard /dev/vda 8M 32M
must vgtool zeroout /dev/vda 48M 8M
echo 3 > /proc/sys/vm/drop_caches
must vgtool zeroes /dev/vda 48M 8M
must vgtool verify /dev/vda 0 1M 6 --direct
pass
"""
    with VioServe(["--blk", "id=d0,path=%s,socket=%s" % (img, sock)],
                  workdir=w / "vio") as vs:
        assert vs.stats("d0")["backend"]["flushes"] == 0
        r = run_guest(script, blk_args(sock), "blk-fdz-guest")
        assert int(r.kv["discard_max"]) > 0, "guest did not enable discard: %s" % r.kv
        assert int(r.kv["wz_max"]) > 0, "guest did not enable write zeroes: %s" % r.kv
        st = vs.stats("d0")
        assert st["backend"]["flushes"] >= 1, "no fdatasync reached the file: %s" % st["backend"]
        assert sum(q["flushes"] for q in st["queues"]) >= 1
        assert st["backend"]["discards"] >= 1, st["backend"]
        assert st["backend"]["write_zeroes"] >= 1, st["backend"]
    after = allocated(img)
    # 32 MiB were discarded; write-zeroes may also deallocate its 8 MiB.
    assert after <= before - 30 * MiB, \
        "allocated size went from %d to %d: discard did not punch holes" % (before, after)
    host_tool("verify", img, 0, 1 * MiB, 6)
    host_tool("zeroes", img, 8 * MiB, 32 * MiB)
    host_tool("zeroes", img, 48 * MiB, 8 * MiB)
    # Outside the ranges the original pattern is intact.
    host_tool("verify", img, 1 * MiB, 7 * MiB, 5)
    host_tool("verify", img, 40 * MiB, 8 * MiB, 5)
    host_tool("verify", img, 56 * MiB, 8 * MiB, 5)


def test_readonly_device():
    # Linux honours VIRTIO_BLK_F_RO in its block layer, so the guest's writes
    # fail before reaching us; the device's own rejection of a write that
    # does arrive is covered by the unit test test_blk/test_readonly.
    w = new_workdir("blk-ro")
    img, sock = w / "disk.img", str(w / "disk.sock")
    make_image(img, 32 * MiB, fill_seed=9)
    digest = subprocess.run(["sha256sum", str(img)], stdout=subprocess.PIPE).stdout.split()[0]
    script = """
wait_for_dev /dev/vda
kv ro "$(cat /sys/block/vda/ro)"
vgtool write /dev/vda 0 1M 1 2>/dev/null
kv write_rc $?
vgtool write /dev/vda 0 1M 1 --direct 2>/dev/null
kv direct_write_rc $?
vgtool discard /dev/vda 0 1M 2>/dev/null
kv discard_rc $?
must vgtool verify /dev/vda 0 32M 9 --direct
pass
"""
    with VioServe(["--blk", "id=d0,path=%s,socket=%s,readonly" % (img, sock)],
                  workdir=w / "vio") as vs:
        r = run_guest(script, blk_args(sock), "blk-ro-guest")
        assert r.kv["ro"] == "1", r.kv
        assert r.kv["write_rc"] != "0", "a write to a read-only disk succeeded"
        assert r.kv["direct_write_rc"] != "0", "an O_DIRECT write succeeded: %s" % r.kv
        assert r.kv["discard_rc"] != "0", r.kv
        st = vs.stats("d0")
        assert st["readonly"] is True
        assert sum(q["write_bytes"] for q in st["queues"]) == 0
    after = subprocess.run(["sha256sum", str(img)], stdout=subprocess.PIPE).stdout.split()[0]
    assert after == digest, "the read-only image changed"


def test_guest_killed_mid_write_then_reconnect():
    w = new_workdir("blk-kill")
    img, sock = w / "disk.img", str(w / "disk.sock")
    make_image(img, 128 * MiB)
    writer = """
wait_for_dev /dev/vda
kv writing 1
i=0
while true; do
    vgtool write /dev/vda $(( (i % 8) * 8 ))M 8M $i --direct || fail "write $i"
    i=$((i + 1))
done
"""
    checker = """
wait_for_dev /dev/vda
must vgtool write /dev/vda 100M 16M 77 --direct
must vgtool verify /dev/vda 100M 16M 77 --direct
pass
"""
    with VioServe(["--blk", "id=d0,path=%s,socket=%s,queues=2" % (img, sock)],
                  workdir=w / "vio") as vs:
        g = Guest(writer, args=blk_args(sock, queues=2), name="blk-kill-writer")
        try:
            g.start()
            g.wait_kv("writing", timeout=120)
            # Let writes be in flight, then kill QEMU without any clean-up.
            deadline = time.time() + 30
            while sum(queue_counts(vs, "d0", "writes")) < 20 and time.time() < deadline:
                time.sleep(0.2)
            assert sum(queue_counts(vs, "d0", "writes")) >= 20, "the writer never got going"
        finally:
            g.kill()
        # vio notices the disconnect, drains, and waits for the next front-end.
        deadline = time.time() + 10
        while vs.ctl("device.list")[0]["connected"] and time.time() < deadline:
            time.sleep(0.1)
        dev = vs.ctl("device.list")[0]
        assert not dev["connected"], "vio still thinks the killed guest is connected"
        assert vs.alive()
        run_guest(checker, blk_args(sock, queues=2), "blk-kill-checker")
        assert vs.ctl("device.list")[0]["connections"] == 2
    host_tool("verify", img, 100 * MiB, 16 * MiB, 77)


def test_sigterm_during_io_exits_cleanly():
    w = new_workdir("blk-term")
    img, sock = w / "disk.img", str(w / "disk.sock")
    make_image(img, 64 * MiB)
    writer = """
wait_for_dev /dev/vda
kv writing 1
i=0
while true; do
    vgtool write /dev/vda 0 8M $i --direct || break
    i=$((i + 1))
done
pass
"""
    vs = VioServe(["--blk", "id=d0,path=%s,socket=%s" % (img, sock)], workdir=w / "vio")
    vs.start()
    g = Guest(writer, args=blk_args(sock), name="blk-term-guest")
    try:
        g.start()
        g.wait_kv("writing", timeout=120)
        deadline = time.time() + 30
        while sum(queue_counts(vs, "d0", "writes")) < 10 and time.time() < deadline:
            time.sleep(0.2)
        t0 = time.time()
        code = vs.stop(timeout=20)  # raises on a non-zero exit or sanitizer report
        assert code == 0
        assert time.time() - t0 < 20
        assert "shutting down" in vs.log() and "stopped" in vs.log(), vs.tail()
    finally:
        g.kill()
        if vs.alive():
            vs.proc.kill()
