"""The vhost-user uplink against a lying peer: a Python back-end
(tests/lib/vubackend.py) that `vio serve --uplink type=vhost-user` drives as
its virtio-net device. The test then plays a misbehaving device on the
uplink's receive ring: used lengths shorter than a header or longer than the
buffer, num_buffers of 0, a packet whose num_buffers promises more buffers
than it delivers, a head index outside the ring, a merged frame longer than
any Ethernet frame. Each is dropped and counted (rx_bad), vio serve keeps
running, and a good frame afterwards still goes through the switch.
"""

import os
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import vioproc  # noqa: E402
from vubackend import EvilBackend  # noqa: E402

F_VERSION_1 = 1 << 32
F_MRG_RXBUF = 1 << 15
F_CSUM, F_GUEST_CSUM = 1 << 0, 1 << 1
MAC1 = "52:54:00:00:00:01"
QSIZE = 64
RX_LEN = 4096   # the uplink's receive buffers with MRG_RXBUF


def wait_for(cond, what, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def hdr(num_buffers):
    return struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, num_buffers)


def test_lying_peer_is_counted_and_survived():
    base = Path(os.environ.get("VIO_TEST_WORKDIR", vioproc.REPO / "build" / "test-work"))
    wd = base / "vu_uplink_peer"
    wd.mkdir(parents=True, exist_ok=True)
    evil_sock = wd / "evil.sock"
    be = EvilBackend(evil_sock, F_VERSION_1 | F_MRG_RXBUF | F_CSUM | F_GUEST_CSUM)
    try:
        with vioproc.VioServe(["--net", "id=q,socket=%s/q.sock,mac=%s" % (wd, MAC1),
                               "--uplink", "type=vhost-user,id=up,socket=%s,queue-size=%d"
                               % (evil_sock, QSIZE)], workdir=wd) as vs:
            assert be.ready.wait(10), "the uplink never enabled its rings (%s)" % be.error
            rx = be.rings[0]
            wait_for(lambda: rx.avail_idx() == QSIZE, "the uplink to post its receive buffers")

            def up():
                return {p["id"]: p for p in vs.ctl("net.ports")}["up"]

            def step(n_bad, action):
                action()
                rx.notify()
                wait_for(lambda: up()["rx_bad"] >= n_bad, "rx_bad to reach %d" % n_bad)
                assert vs.alive(), vs.tail()

            frame = b"\xff" * 6 + bytes.fromhex("525400000099") + b"\x08\x00" + b"\x00" * 46

            def short():
                h, gpa, _ = rx.take()
                rx.push_used(h, 5)

            def too_long():
                h, gpa, _ = rx.take()
                be.write_gpa(gpa, hdr(1) + frame)
                rx.push_used(h, RX_LEN + 100)

            def zero_buffers():
                h, gpa, _ = rx.take()
                be.write_gpa(gpa, hdr(0) + frame)
                rx.push_used(h, 12 + len(frame))

            def promises_more():
                h, gpa, _ = rx.take()
                be.write_gpa(gpa, hdr(3) + frame)
                rx.push_used(h, 12 + len(frame))

            def bad_head():
                rx.take()
                rx.push_used(9999, 100)

            def merged_too_long():
                n = 17    # 17 x 4 KiB > the largest Ethernet frame
                for k in range(n):
                    h, gpa, _ = rx.take()
                    if k == 0:
                        be.write_gpa(gpa, hdr(n) + frame)
                    rx.push_used(h, RX_LEN)

            step(1, short)
            step(2, too_long)
            step(3, zero_buffers)
            step(4, promises_more)
            step(5, bad_head)
            step(6, merged_too_long)
            assert up()["tx_packets"] == 0, up()

            # An honest frame still goes through (a broadcast: to port q).
            def good():
                h, gpa, _ = rx.take()
                be.write_gpa(gpa, hdr(1) + frame)
                rx.push_used(h, 12 + len(frame))
            good()
            rx.notify()
            wait_for(lambda: up()["tx_packets"] == 1, "the good frame to enter the switch")
            u = up()
            assert u["rx_bad"] == 6 and u["peer_gone"] is False, u
            assert "dropped a received frame" in vs.log(), vs.tail()
        assert be.error is None, be.error
    finally:
        be.close()
