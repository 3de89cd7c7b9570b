"""End-to-end tests of vio serve's switch and virtio-net ports without VMs:
Python vhost-user drivers (tests/lib/vuclient.py) play the guests, send good
and malformed frames, and read what the switch delivers, against vio built
with ASan. Covers the switch's rules (anti-spoofing, VLANs, unicast and
broadcast delivery), bad frames and offload headers, lying descriptor
chains, a port that never refills its receive ring, and the software
segmentation of TSO super-frames for a receiver without TSO.
"""

import os
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import vioproc  # noqa: E402
import vuclient as vu  # noqa: E402

# virtio-net feature bits
NET_F_CSUM, NET_F_GUEST_CSUM, NET_F_MAC = 0, 1, 5
NET_F_GUEST_TSO4, NET_F_HOST_TSO4, NET_F_MRG_RXBUF = 7, 11, 15
HDR = struct.Struct("<BBHHHHH")  # flags gso_type hdr_len gso_size csum_start csum_offset nbuf
HDR_LEN = 12
BCAST = b"\xff" * 6
BASE = vu.bit(vu.VIRTIO_F_VERSION_1) | vu.bit(vu.F_PROTOCOL_FEATURES) | vu.bit(NET_F_MRG_RXBUF)


def mac(i):
    return bytes([0x52, 0x54, 0, 0, 0, i])


def mac_s(i):
    return ":".join("%02x" % b for b in mac(i))


def frame(dst, src, payload=b"", etype=0x88b5):
    return dst + src + struct.pack(">H", etype) + payload


def csum(data, start=0):
    if len(data) % 2:
        data += b"\0"
    s = start + sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s


def tcp4_frame(dst, src, payload, seq=1000):
    """A TCP/IPv4 frame with a correct IP header checksum and the TCP
    checksum field holding the pseudo-header sum (as Linux sends with
    NEEDS_CSUM)."""
    tcp_len = 20 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 1, 0x4000, 64, 6, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    ip = ip[:10] + struct.pack("!H", 0xffff - csum(ip)) + ip[12:]
    pseudo = csum(ip[12:20] + struct.pack("!BBH", 0, 6, tcp_len))
    tcp = struct.pack("!HHIIBBHHH", 40000, 5000, seq, 1, 5 << 4, 0x18, 65535, pseudo, 0)
    return frame(dst, src, ip + tcp + payload, 0x0800)


class Port:
    """One vhost-user driver on one --net port: RX ring 0, TX ring 1."""

    def __init__(self, sock, features=BASE, rx_buffers=32, buf_size=2048):
        self.mem = vu.GuestMemory(8 << 20)
        self.c = vu.VhostUserClient(sock)
        self.features, _, _ = self.c.handshake(features=features)
        self.c.set_mem_table(self.mem)
        self.rx = self.c.setup_queue(0, self.mem, size=256)
        self.tx = self.c.setup_queue(1, self.mem, size=256)
        self.buf_size = buf_size
        self.rx_bufs = {}
        self.tx_bufs = {}
        for _ in range(rx_buffers):
            self.post_rx()
        # A request with a reply: vio has handled every message before it
        # (ring enables included) when this returns.
        self.c.get_features()

    def close(self):
        self.c.close()

    def post_rx(self, size=None, writable=True):
        size = size or self.buf_size
        gpa = self.mem.alloc(size)
        head = self.rx.add([(gpa, size, writable)])
        self.rx_bufs[head] = gpa
        self.rx.kick()
        return head

    def send_raw(self, bufs):
        """Send one TX chain of byte strings (each its own descriptor)."""
        descs = []
        for b in bufs:
            gpa = self.mem.alloc(max(1, len(b)))
            self.mem.write(gpa, b)
            descs.append((gpa, len(b), False))
        self.tx.add(descs)
        self.tx.kick()

    def send(self, frm, flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0,
             csum_offset=0, split=None):
        hdr = HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, 0)
        data = hdr + frm
        if split:
            self.send_raw([data[i:i + split] for i in range(0, len(data), split)])
        else:
            self.send_raw([data])

    def tx_done(self, count, timeout=10):
        return self.tx.wait_used(count, timeout)

    def recv(self, timeout=3.0):
        """Frames delivered so far (waiting up to @timeout for the first):
        [(hdr tuple, frame bytes)]. Refills one buffer per buffer used."""
        deadline = time.time() + timeout
        out, used = [], []
        while True:
            used += self.rx.poll_used()
            if used or time.time() > deadline:
                break
            time.sleep(0.02)
        time.sleep(0.05)
        used += self.rx.poll_used()
        i = 0
        while i < len(used):
            head, length = used[i]
            data = self.mem.read(self.rx_bufs.pop(head), length)
            hdr = HDR.unpack(data[:HDR_LEN])
            body = data[HDR_LEN:]
            for _ in range(hdr[6] - 1):
                i += 1
                h2, l2 = used[i]
                body += self.mem.read(self.rx_bufs.pop(h2), l2)
            out.append((hdr, body))
            i += 1
        for _ in range(len(used)):
            self.post_rx()
        return out


class Switch:
    """vio serve with --net ports p1..pN (MAC 52:54:00:00:00:0i)."""

    def __init__(self, name, vlans, queue_size=256):
        base = Path(os.environ.get("VIO_TEST_WORKDIR", vioproc.REPO / "build" / "test-work"))
        self.wd = base / ("net_vu_" + name)
        self.wd.mkdir(parents=True, exist_ok=True)
        args = []
        self.socks = {}
        for i, vlan in enumerate(vlans, 1):
            sock = str(self.wd / ("p%d.sock" % i))
            self.socks[i] = sock
            args += ["--net", "id=p%d,socket=%s,mac=%s,vlan=%d,queue-size=%d"
                     % (i, sock, mac_s(i), vlan, queue_size)]
        self.vs = vioproc.VioServe(args, workdir=self.wd)
        self.opened = []

    def __enter__(self):
        self.vs.start()
        for s in self.socks.values():
            self.vs.wait_socket(s)
        return self

    def __exit__(self, *exc):
        for p in self.opened:
            p.close()
        self.vs.__exit__(*exc)

    def port(self, i, **kw):
        p = Port(self.socks[i], **kw)
        self.opened.append(p)
        return p

    def counters(self, i):
        return {p["id"]: p for p in self.vs.ctl("net.ports")}["p%d" % i]


def test_unicast_broadcast_and_isolation():
    with Switch("basic", vlans=[0, 0, 7]) as sw:
        a, b, c = sw.port(1), sw.port(2), sw.port(3)
        a.send(frame(BCAST, mac(1), b"hello all"))
        a.send(frame(mac(2), mac(1), b"to b"))
        a.send(frame(mac(9), mac(1), b"to nobody"))     # unknown unicast: no uplink
        a.send(frame(mac(3), mac(1), b"to c, other vlan"))
        a.tx_done(4)
        got = [f for _, f in b.recv()]
        assert got == [frame(BCAST, mac(1), b"hello all"), frame(mac(2), mac(1), b"to b")], got
        assert c.recv(0.5) == [], "a frame crossed from VLAN 0 into VLAN 7"
        b.send(frame(mac(1), mac(2), b"reply"))
        b.tx_done(1)
        assert [f for _, f in a.recv()] == [frame(mac(1), mac(2), b"reply")]
        ca = sw.counters(1)
        assert ca["tx_packets"] == 4 and ca["rx_packets"] == 1, ca
        assert sw.counters(2)["rx_packets"] == 2
        assert sw.counters(3)["rx_packets"] == 0


def test_spoofed_source_is_dropped_and_counted():
    with Switch("spoof", vlans=[0, 0]) as sw:
        a, b = sw.port(1), sw.port(2)
        a.send(frame(mac(2), mac(5), b"spoofed"))       # someone else's address
        a.send(frame(mac(2), mac(2), b"as b"))          # the receiver's own
        a.send(frame(mac(2), b"\x01" + mac(1)[1:], b"group source"))
        a.send(frame(mac(2), mac(1), b"honest"))
        a.tx_done(4)
        assert [f for _, f in b.recv()] == [frame(mac(2), mac(1), b"honest")]
        ca = sw.counters(1)
        assert ca["tx_drop_spoof"] == 2 and ca["tx_drop_bad"] == 1 and ca["tx_packets"] == 1, ca


def test_bad_frames_and_lying_chains_are_dropped_others_flow():
    with Switch("bad", vlans=[0, 0]) as sw:
        a, b = sw.port(1), sw.port(2)
        bad = 0
        a.send_raw([b"\0" * 4]); bad += 1                                   # shorter than the header
        a.send(b""); bad += 1                                               # header, no frame
        a.send(mac(2) + mac(1)); bad += 1                                   # 12-byte frame
        a.send(frame(mac(2), mac(1), b"x" * 70000)); bad += 1               # over 64 KiB
        a.send(frame(mac(2), mac(1), b"\x81\x00" + b"x" * 60, 0x8100)); bad += 1  # VLAN tag
        a.send(tcp4_frame(mac(2), mac(1), b"y" * 100), flags=1,             # CSUM not negotiated
               csum_start=34, csum_offset=16); bad += 1
        a.send(tcp4_frame(mac(2), mac(1), b"y" * 100), gso_type=1, gso_size=0); bad += 1
        a.send(frame(mac(2), mac(1), b"z" * 50), gso_type=9, gso_size=100); bad += 1
        a.tx_done(bad)
        a.send(frame(mac(2), mac(1), b"still works"), split=5)
        a.tx_done(1)
        assert [f for _, f in b.recv()] == [frame(mac(2), mac(1), b"still works")]
        ca = sw.counters(1)
        assert ca["tx_drop_bad"] == bad and ca["tx_packets"] == 1, ca
        assert sw.vs.alive()


def test_bad_offload_headers_with_offloads_negotiated():
    feats = BASE | vu.bit(NET_F_CSUM) | vu.bit(NET_F_HOST_TSO4) | vu.bit(NET_F_GUEST_CSUM)
    with Switch("badoff", vlans=[0, 0]) as sw:
        a, b = sw.port(1, features=feats), sw.port(2)
        f = tcp4_frame(mac(2), mac(1), b"q" * 200)
        a.send(f, flags=1, csum_start=len(f), csum_offset=16)        # start past the end
        a.send(f, flags=1, csum_start=34, csum_offset=len(f))        # offset past the end
        a.send(f, gso_type=1, gso_size=0, flags=1, csum_start=34, csum_offset=16)
        a.send(frame(mac(2), mac(1), b"not ip" * 30), gso_type=1, gso_size=100, flags=1,
               csum_start=14, csum_offset=16)                         # TSO on a non-IP frame
        a.tx_done(4)
        a.send(f, flags=1, csum_start=34, csum_offset=16)            # a good one
        a.tx_done(1)
        got = b.recv()
        assert len(got) == 1, got
        hdr, body = got[0]
        # b did not negotiate GUEST_CSUM: the switch completed the checksum.
        assert hdr[0] & 1 == 0, hdr
        assert csum(body[34:], csum(body[26:34] + struct.pack("!BBH", 0, 6, len(body) - 34))) \
            == 0xffff, "TCP checksum wrong after completion"
        # Three are refused on arrival (offsets outside the frame, a zero
        # segment size); TSO on a non-IP frame passes the header check but
        # cannot be segmented for b: also counted on the sender.
        ca = sw.counters(1)
        assert ca["tx_drop_bad"] == 4 and ca["tx_packets"] == 2, ca
        assert sw.counters(2)["rx_drop_error"] == 0, sw.counters(2)


def test_tso_superframe_segmented_only_for_receivers_without_tso():
    feats = BASE | vu.bit(NET_F_CSUM) | vu.bit(NET_F_HOST_TSO4)
    tso_rx = BASE | vu.bit(NET_F_GUEST_CSUM) | vu.bit(NET_F_GUEST_TSO4)
    payload = bytes(range(256)) * 80          # 20480 bytes
    with Switch("tso", vlans=[0, 0, 0]) as sw:
        a = sw.port(1, features=feats)
        plain = sw.port(2)                    # no offloads: gets segments
        tso = sw.port(3, features=tso_rx, rx_buffers=64)   # gets the super-frame
        for dst, rx in ((mac(2), plain), (mac(3), tso)):
            f = tcp4_frame(dst, mac(1), payload)
            a.send(f, flags=1, gso_type=1, hdr_len=54, gso_size=1448, csum_start=34,
                   csum_offset=16, split=4000)
            a.tx_done(1)
            got = rx.recv()
            if rx is plain:
                assert len(got) == (len(payload) + 1447) // 1448, len(got)
                data, seq = b"", 1000
                for hdr, body in got:
                    assert hdr[1] == 0 and len(body) <= 1514, (hdr, len(body))
                    ip, tcp = body[14:34], body[34:54]
                    assert csum(ip) == 0xffff, "IPv4 header checksum"
                    tot = struct.unpack("!H", ip[2:4])[0]
                    assert tot == len(body) - 14
                    pseudo = csum(ip[12:20] + struct.pack("!BBH", 0, 6, tot - 20))
                    assert csum(body[34:], pseudo) == 0xffff, "TCP checksum"
                    assert struct.unpack("!I", tcp[4:8])[0] == seq
                    seq += len(body) - 54
                    data += body[54:]
                assert data == payload
            else:
                assert len(got) == 1, len(got)
                hdr, body = got[0]
                assert hdr[1] == 1 and hdr[3] == 1448 and hdr[0] & 1, hdr
                assert body == f
        assert sw.counters(2)["rx_drop_error"] == 0 and sw.counters(3)["rx_drop_error"] == 0


def test_receiver_that_never_refills_does_not_stop_others():
    with Switch("norefill", vlans=[0, 0, 0]) as sw:
        a, b = sw.port(1), sw.port(2, rx_buffers=200)
        dead = sw.port(3, rx_buffers=4)       # takes four frames, then never refills
        n = 50
        for i in range(n):
            a.send(frame(BCAST, mac(1), b"bcast %d" % i))
        a.tx_done(n, timeout=20)
        got = b.recv()
        assert len(got) == n, len(got)
        cd = sw.counters(3)
        assert cd["rx_packets"] == 4 and cd["rx_drop_full"] == n - 4, cd
        a.send(frame(mac(2), mac(1), b"after"))
        a.tx_done(1)
        assert [f for _, f in b.recv()] == [frame(mac(2), mac(1), b"after")]


def test_receive_buffers_of_the_wrong_kind_break_only_that_port():
    with Switch("rxbad", vlans=[0, 0, 0]) as sw:
        a, b = sw.port(1), sw.port(2)
        c = sw.port(3, rx_buffers=0)
        c.post_rx(writable=False)             # a device-readable receive buffer
        a.send(frame(BCAST, mac(1), b"x" * 100))
        a.tx_done(1)
        assert len(b.recv()) == 1
        cc = sw.counters(3)
        assert cc["rx_packets"] == 0 and cc["rx_drop_error"] == 1, cc
        st = sw.vs.ctl("device.stats", {"id": "p3"})
        assert st["needs_reset"] and st["rx_bad_desc"] == 1, st
        a.send(frame(mac(2), mac(1), b"fine"))
        a.tx_done(1)
        assert [f for _, f in b.recv()] == [frame(mac(2), mac(1), b"fine")]


def test_bad_net_specs_are_refused(tmp_path=None):
    import subprocess
    vio = vioproc.vio_bin()
    cases = [
        ("id=p1,socket=/tmp/x.sock", "mac="),
        ("id=p1,socket=/tmp/x.sock,mac=01:00:5e:00:00:01", "unicast"),
        ("id=p1,socket=/tmp/x.sock,mac=52:54:00:00:00:zz", "mac="),
        ("id=p1,socket=/tmp/x.sock,mac=52:54:00:00:00:01,vlan=4095", "vlan"),
        ("id=p1,socket=/tmp/x.sock,mac=52:54:00:00:00:01,queues=0", "queues"),
        ("id=p1,socket=/tmp/x.sock,mac=52:54:00:00:00:01,queue-size=100", "power of two"),
        ("id=p1,socket=/tmp/x.sock,mac=52:54:00:00:00:01,colour=red", "colour"),
        ("socket=/tmp/x.sock,mac=52:54:00:00:00:01", "id="),
    ]
    for spec, needle in cases:
        p = subprocess.run([vio, "serve", "--net", spec], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
        out = p.stdout.decode(errors="replace")
        assert p.returncode != 0 and needle in out, (spec, p.returncode, out)
    # Two ports with one MAC in one VLAN.
    p = subprocess.run([vio, "serve", "--net", "id=p1,socket=/tmp/vio-t1.sock,mac=52:54:00:00:00:01",
                        "--net", "id=p2,socket=/tmp/vio-t2.sock,mac=52:54:00:00:00:01"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    assert p.returncode != 0 and b"exists" in p.stdout, p.stdout


def test_ctl_port_requests_bad_and_good():
    with Switch("ctl", vlans=[0]) as sw:
        vs = sw.vs
        for params, needle in [({}, "spec"), ({"spec": 5}, "spec"),
                               ({"spec": "id=p9,socket=%s,mac=52:54:00:00:00:01"
                                 % (sw.wd / "p9.sock")}, "exists"),
                               ({"spec": "id=p1,socket=/tmp/other.sock,mac=52:54:00:00:00:09"},
                                "exists"),
                               ({"spec": "nonsense"}, "")]:
            try:
                vs.ctl("net.port.add", params)
            except vioproc.VioError as e:
                assert needle in str(e), (params, str(e))
            else:
                raise AssertionError("net.port.add %r succeeded" % params)
        for method, params in [("net.port.remove", {"id": "nope"}),
                               ("net.port.remove", {}),
                               ("net.port.link", {"id": "p1", "up": "yes"}),
                               ("net.port.link", {"id": "nope", "up": True})]:
            try:
                vs.ctl(method, params)
            except vioproc.VioError:
                pass
            else:
                raise AssertionError("%s %r succeeded" % (method, params))
        sock = str(sw.wd / "p5.sock")
        vs.ctl("net.port.add", {"spec": "id=p5,socket=%s,mac=%s" % (sock, mac_s(5))})
        a, e = sw.port(1), Port(sock)
        sw.opened.append(e)
        a.send(frame(mac(5), mac(1), b"to the new port"))
        a.tx_done(1)
        assert [f for _, f in e.recv()] == [frame(mac(5), mac(1), b"to the new port")]
        vs.ctl("net.port.link", {"id": "p5", "up": False})
        a.send(frame(mac(5), mac(1), b"link is down"))
        a.tx_done(1)
        assert e.recv(0.5) == []
        assert sw.counters(5)["rx_drop_link_down"] == 1
        e.close()
        sw.opened.remove(e)
        vs.ctl("net.port.remove", {"id": "p5"})
        assert "p5" not in {p["id"] for p in vs.ctl("net.ports")}
        assert not os.path.exists(sock)
