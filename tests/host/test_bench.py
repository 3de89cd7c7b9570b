"""Correctness of `vio bench`, the virtio driver in a host process
(src/vuser/vuser.c, src/bench/), against two independent vhost-user
back-ends: `vio serve` and qemu-storage-daemon (block), and `vio serve`'s
switch (net).

What passing proves: data written through the driver lands in the back-end's
image file at the right offsets (the test recomputes the pattern in Python
and reads the file after the back-end stops), data written on the host is
read back correctly ("check"), a corrupted word is reported, the measuring
output is well-formed (counts, ordered percentiles, back-end CPU), and frames
sent on one switch port arrive whole at another (with and without TSO), while
frames with a forged source MAC are dropped by the switch. Bad command lines
and dead sockets give clear errors. Timings are never asserted.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import vioproc  # noqa: E402
from test_vu_frontend import QemuStorageDaemon  # noqa: E402

DISK = 16 << 20
M64 = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def pattern(seed, off, length):
    """What `vio bench blk --rw verify|check --seed SEED` puts at byte
    offset @off: word at offset o is splitmix64(seed + o/8), little-endian."""
    return b"".join(struct.pack("<Q", splitmix64(seed + (off + k) // 8))
                    for k in range(0, length, 8))


def workdir(name):
    base = Path(os.environ.get("VIO_TEST_WORKDIR", vioproc.REPO / "build" / "test-work"))
    wd = base / ("bench_" + name)
    if wd.exists():
        shutil.rmtree(wd)
    wd.mkdir(parents=True)
    return wd


def bench(*args, timeout=120):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=66",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=67")
    p = subprocess.run([vioproc.vio_bin(), "bench"] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=timeout)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    for m in vioproc.SANITIZER_MARKERS:
        assert m not in err, "sanitizer report from vio bench:\n" + err[-4000:]
    return p.returncode, out, err


def bench_json(*args, expect_rc=0, timeout=120):
    rc, out, err = bench(*args, "--json", timeout=timeout)
    assert rc == expect_rc, "vio bench exited %d (expected %d):\n%s\n%s" % (rc, expect_rc,
                                                                             out, err)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, "expected one JSON line:\n" + out
    return json.loads(lines[0]), err


def image(path, data=None):
    with open(path, "wb") as f:
        f.truncate(DISK)
        if data:
            f.write(data)


def check_image(path, seed, nbytes):
    with open(path, "rb") as f:
        img = f.read()
    assert len(img) == DISK
    want = pattern(seed, 0, nbytes)
    if img[:nbytes] != want:
        first = next(i for i in range(nbytes) if img[i] != want[i])
        raise AssertionError("image differs from the pattern at byte %d" % first)
    assert img[nbytes:] == bytes(DISK - nbytes), "bytes past the written blocks changed"


def test_verify_through_vio_serve_lands_in_the_file():
    wd = workdir("verify_vio")
    img, sock = wd / "disk.img", wd / "blk.sock"
    image(img)
    with vioproc.VioServe(["--blk", "id=d0,socket=%s,path=%s,queues=2" % (sock, img)],
                          workdir=wd) as vs:
        vs.wait_socket(str(sock))
        r, _ = bench_json("blk", "--socket", sock, "--rw", "verify", "--count", 1024, "--qd", 16,
                          "--queues", 2, "--seed", 42)
        assert r["verified"] == 1024 and r["mismatches"] == 0 and r["errors"] == 0, r
        assert r["ios"] == 2048, r   # 1024 writes, then 1024 reads
    check_image(img, 42, 1024 * 4096)


def test_verify_and_check_against_qemu_storage_daemon():
    wd = workdir("verify_qsd")
    img, sock = wd / "disk.img", wd / "qsd.sock"
    image(img)
    with QemuStorageDaemon(img, sock, wd, queues=2):
        r, _ = bench_json("blk", "--socket", sock, "--rw", "verify", "--count", 512, "--qd", 8,
                          "--queues", 2, "--seed", 7, "--bs", "8k")
        assert r["verified"] == 512 and r["mismatches"] == 0 and r["errors"] == 0, r
    check_image(img, 7, 512 * 8192)


def test_check_reads_host_data_and_reports_corruption():
    wd = workdir("check")
    img, sock = wd / "disk.img", wd / "blk.sock"
    nbytes = 256 * 4096
    data = bytearray(pattern(9, 0, nbytes))
    image(img, bytes(data))
    with vioproc.VioServe(["--blk", "id=d0,socket=%s,path=%s" % (sock, img)], workdir=wd) as vs:
        vs.wait_socket(str(sock))
        r, _ = bench_json("blk", "--socket", sock, "--rw", "check", "--count", 256, "--qd", 4,
                          "--seed", 9)
        assert r["verified"] == 256 and r["mismatches"] == 0, r
        # The wrong seed matches nothing.
        r, err = bench_json("blk", "--socket", sock, "--rw", "check", "--count", 16, "--seed", 10,
                            expect_rc=1)
        assert r["verified"] == 0 and r["mismatches"] == 16, r
        # One flipped byte on the host is one mismatch, named by its block.
        data[100 * 4096 + 123] ^= 0xFF
        with open(img, "r+b") as f:
            f.write(data)
        r, err = bench_json("blk", "--socket", sock, "--rw", "check", "--count", 256, "--qd", 4,
                            "--seed", 9, expect_rc=1)
        assert r["mismatches"] == 1 and r["verified"] == 255, r
        assert "offset %d does not match" % (100 * 4096) in err, err


def test_measuring_output():
    wd = workdir("measure")
    sock = wd / "null.sock"
    with vioproc.VioServe(["--blk", "id=n0,socket=%s,backend=null,size=64M,queues=2" % sock],
                          workdir=wd) as vs:
        vs.wait_socket(str(sock))
        pid = vs.proc.pid
        for rw in ("randread", "randwrite", "read", "write"):
            r, _ = bench_json("blk", "--socket", sock, "--rw", rw, "--qd", 4, "--queues", 2,
                              "--duration", "0.5", "--backend-pid", pid)
            assert r["rw"] == rw and r["qd"] == 4 and r["queues"] == 2, r
            assert r["ios"] > 0 and r["errors"] == 0, r
            assert 0.4 < r["seconds"] < 30, r
            assert r["lat_p50_us"] <= r["lat_p99_us"] <= r["lat_p999_us"] <= r["lat_max_us"], r
            assert r["backend_cpu_s"] >= 0, r
        # A fixed count is exact; --poll drives the ring without interrupts.
        r, _ = bench_json("blk", "--socket", sock, "--count", 1000, "--qd", 32, "--poll",
                          "--bs", "128k", "--rw", "read")
        assert r["ios"] == 1000 and r["waits"] == 0, r
        st = vs.stats("n0")
    assert st, st


def test_bad_command_lines():
    cases = [
        (["blk"], "--socket PATH is required"),
        (["blk", "--socket", "x", "--rw", "sideways"], "unknown --rw"),
        (["blk", "--socket", "x", "--bs", "1000"], "multiple of 512"),
        (["blk", "--socket", "x", "--qd", "0"], "--qd must be"),
        (["blk", "--socket", "x", "--qd", "100000"], "--qd must be"),
        (["blk", "--socket", "x", "--duration", "-3"], "bad time"),
        (["blk", "--socket", "x", "--count", "10", "--ramp", "1"], "--ramp goes with"),
        (["blk", "--socket", "x", "stray"], "unexpected argument"),
        (["net", "--tx", "a"], "--tx PATH and --rx PATH are required"),
        (["net", "--tx", "a", "--rx", "b", "--size", "20"], "--size must be"),
        (["net", "--tx", "a", "--rx", "b", "--size", "9000"], "need --tso"),
        (["net", "--tx", "a", "--rx", "b", "--rx-mac", "01:00:5e:00:00:01"], "bad unicast MAC"),
        (["net", "--tx", "a", "--rx", "b", "--rx-mac", "52:54:00:00:00:01"], "must differ"),
        (["net", "--tx", "a", "--rx", "b", "--queue-size", "100"], "power of two"),
        (["sideways"], "unknown workload"),
    ]
    for args, msg in cases:
        rc, out, err = bench(*args)
        assert rc == 2, (args, rc, out, err)
        assert msg in err, (args, err)


def test_dead_socket_is_a_clear_error():
    wd = workdir("dead")
    rc, out, err = bench("blk", "--socket", wd / "nobody.sock", "--duration", "0.1")
    assert rc == 1, (rc, out, err)
    assert "nobody.sock" in err and "No such file" in err, err
    rc, out, err = bench("net", "--tx", wd / "a.sock", "--rx", wd / "b.sock", "--duration", "0.1")
    assert rc == 1 and "a.sock" in err, (rc, err)


MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"


def net_ports(vs):
    return {p["id"]: p for p in vs.ctl("net.ports")}


def test_net_frames_cross_the_switch():
    wd = workdir("net")
    s1, s2 = wd / "p1.sock", wd / "p2.sock"
    with vioproc.VioServe(["--net", "id=p1,socket=%s,mac=%s" % (s1, MAC1),
                           "--net", "id=p2,socket=%s,mac=%s" % (s2, MAC2)], workdir=wd) as vs:
        vs.wait_socket(str(s2))
        for extra in ([], ["--size", 1514], ["--size", 65549, "--tso"]):
            before = net_ports(vs)
            r, _ = bench_json("net", "--tx", s1, "--rx", s2, "--tx-mac", MAC1, "--rx-mac", MAC2,
                              "--duration", "0.5", "--ramp", "0.2", "--backend-pid", vs.proc.pid,
                              *extra)
            after = net_ports(vs)
            assert r["rx_packets"] > 0 and r["rx_bad"] == 0, r
            size = int(extra[1]) if extra else 60
            # Whole frames arrive: every received byte is a full frame.
            assert r["rx_gbit_s"] > 0, r
            sent = after["p1"]["tx_packets"] - before["p1"]["tx_packets"]
            got = after["p2"]["rx_packets"] - before["p2"]["rx_packets"]
            assert sent >= r["tx_packets"] and got >= r["rx_packets"], (r, before, after)
            assert after["p1"]["tx_drop_spoof"] == 0 and after["p1"]["tx_drop_bad"] == 0, after
            if size > 1514:
                # Not segmented on the way: the receiver takes TSO frames.
                rx_bytes = after["p2"]["rx_bytes"] - before["p2"]["rx_bytes"]
                assert rx_bytes >= got * size, (rx_bytes, got, size)


def test_net_forged_source_mac_is_dropped():
    wd = workdir("net_spoof")
    s1, s2 = wd / "p1.sock", wd / "p2.sock"
    with vioproc.VioServe(["--net", "id=p1,socket=%s,mac=%s" % (s1, MAC1),
                           "--net", "id=p2,socket=%s,mac=%s" % (s2, MAC2)], workdir=wd) as vs:
        vs.wait_socket(str(s2))
        r, err = bench_json("net", "--tx", s1, "--rx", s2, "--tx-mac", "52:54:00:00:00:99",
                            "--rx-mac", MAC2, "--duration", "0.3", "--ramp", "0.1",
                            expect_rc=1)
        assert r["tx_packets"] > 0 and r["rx_packets"] == 0, r
        assert "nothing arrived" in err, err
        p = net_ports(vs)
        assert p["p1"]["tx_drop_spoof"] >= r["tx_packets"], p
        assert p["p2"]["rx_packets"] == 0, p


def test_vhost_user_uplink_joins_two_switches():
    """A second vio serve reaches the first one's port p1 through a
    vhost-user uplink (it is p1's virtio driver). Frames cross both ways,
    whole (TSO too), and the first switch still enforces p1's MAC on them."""
    wd = workdir("vu_uplink")
    p1, p2, q = wd / "p1.sock", wd / "p2.sock", wd / "q.sock"
    MAC3 = "52:54:00:00:00:03"
    with vioproc.VioServe(["--net", "id=p1,socket=%s,mac=%s" % (p1, MAC1),
                           "--net", "id=p2,socket=%s,mac=%s" % (p2, MAC2)],
                          workdir=wd / "a") as a:
        a.wait_socket(str(p2))
        with vioproc.VioServe(["--net", "id=q,socket=%s,mac=%s" % (q, MAC1),
                               "--net", "id=q3,socket=%s/q3.sock,mac=%s" % (wd, MAC3),
                               "--uplink", "type=vhost-user,id=up,socket=%s" % p1],
                              workdir=wd / "b") as b:
            b.wait_socket(str(q))
            up = net_ports(b)["up"]
            assert up["kind"] == "vhost-user" and up["peer_gone"] is False, up
            # b's port q -> b's switch -> uplink -> a's p1 -> a's switch -> p2
            for extra in ([], ["--size", 65549, "--tso"]):
                r, _ = bench_json("net", "--tx", q, "--tx-mac", MAC1, "--rx", p2,
                                  "--rx-mac", MAC2, "--duration", "0.5", "--ramp", "0.2",
                                  *extra)
                assert r["rx_packets"] > 0 and r["rx_bad"] == 0, r
            # and back: a's p2 -> p1 -> uplink -> b's switch -> q
            r, _ = bench_json("net", "--tx", p2, "--tx-mac", MAC2, "--rx", q, "--rx-mac", MAC1,
                              "--duration", "0.5", "--ramp", "0.2")
            assert r["rx_packets"] > 0 and r["rx_bad"] == 0, r
            pa, pb = net_ports(a), net_ports(b)
            assert pa["p1"]["tx_packets"] > 0 and pa["p1"]["rx_packets"] > 0, pa
            assert pb["up"]["tx_packets"] > 0 and pb["up"]["rx_packets"] > 0, pb
            assert pb["up"]["rx_bad"] == 0, pb
            assert pa["p1"]["tx_drop_spoof"] == 0, pa
            # A port of b with another MAC sends through the uplink, but a's
            # switch only lets p1's MAC out of p1.
            r, _ = bench_json("net", "--tx", "%s/q3.sock" % wd, "--tx-mac", MAC3, "--rx", p2,
                              "--rx-mac", MAC2, "--duration", "0.3", "--ramp", "0.1",
                              expect_rc=1)
            assert r["tx_packets"] > 0 and r["rx_packets"] == 0, r
            assert net_ports(a)["p1"]["tx_drop_spoof"] > 0, net_ports(a)
        # b stopped: a's p1 is free again; a stops cleanly.
    # The peer going away is noticed and reported, not fatal.
    with vioproc.VioServe(["--net", "id=p1,socket=%s,mac=%s" % (p1, MAC1)],
                          workdir=wd / "c") as c:
        c.wait_socket(str(p1))
        b = vioproc.VioServe(["--net", "id=q,socket=%s,mac=%s" % (q, MAC1),
                              "--uplink", "type=vhost-user,id=up,socket=%s" % p1],
                             workdir=wd / "d").start()
        try:
            b.wait_socket(str(q))
            c.stop()
            deadline = time.time() + 10
            while not net_ports(b)["up"]["peer_gone"] and time.time() < deadline:
                time.sleep(0.1)
            assert net_ports(b)["up"]["peer_gone"] is True, net_ports(b)
            assert "closed the connection; the uplink is down" in b.log(), b.tail()
        finally:
            b.stop()


def test_vhost_user_uplink_bad_specs():
    wd = workdir("vu_uplink_bad")
    cases = [
        ("type=vhost-user,id=up", "needs socket=PATH"),
        ("type=vhost-user,id=up,socket=%s/nobody.sock" % wd, "nobody.sock"),
        ("type=vhost-user,id=up,socket=/x,queue-size=100", "power of two"),
        ("type=vhost-user,id=up,socket=/x,colour=red", "colour"),
    ]
    for spec, msg in cases:
        p = subprocess.run([vioproc.vio_bin(), "serve", "--uplink", spec],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode(errors="replace")
        assert p.returncode != 0 and msg in out, (spec, p.returncode, out)
        assert "AddressSanitizer" not in out and "runtime error" not in out, out
