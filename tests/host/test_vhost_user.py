"""End-to-end tests of `vio serve`'s vhost-user back-end without VMs: a Python
front-end (tests/lib/vuclient.py) does I/O, feeds malformed messages, connects
twice and disconnects mid-I/O, against vio built with ASan (build/asan/vio or $VIO_BIN).

Every test starts its own vio serve with two virtio-blk devices, "a" and "b",
on two files and two sockets; leaving the server checks that vio exits
cleanly and that its log has no sanitizer report.
"""

import os
import random
import select
import socket
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import vioproc  # noqa: E402
import vuclient as vu  # noqa: E402

DISK = 16 << 20
SECTOR = 512


class Server:
    """vio serve with devices a and b; use as a context manager."""

    def __init__(self, name, extra_args=()):
        self.name = name
        self.vs = None
        self.extra = list(extra_args)

    def __enter__(self):
        base = Path(os.environ.get("VIO_TEST_WORKDIR", vioproc.REPO / "build" / "test-work"))
        wd = base / ("vhost_user_" + self.name)
        wd.mkdir(parents=True, exist_ok=True)
        self.img = {d: wd / ("%s.img" % d) for d in "ab"}
        self.sock = {d: str(wd / ("%s.sock" % d)) for d in "ab"}
        for d in "ab":
            with open(self.img[d], "wb") as f:
                f.truncate(DISK)
        args = []
        for d in "ab":
            args += ["--blk", "id=%s,path=%s,socket=%s" % (d, self.img[d], self.sock[d])]
        self.vs = vioproc.VioServe(args + ["--workers", "2"] + self.extra,
                                   name="vhost_user_" + self.name, workdir=wd)
        self.vs.start()
        for d in "ab":
            self.vs.wait_socket(self.sock[d])
        return self

    def __exit__(self, exc_type, exc, tb):
        return self.vs.__exit__(exc_type, exc, tb)

    def dev(self, dev_id):
        for d in self.vs.ctl("device.list"):
            if d["id"] == dev_id:
                return d
        raise AssertionError("device.list has no device %s" % dev_id)

    def queue_stats(self, dev_id):
        return self.vs.stats(dev_id)["queues"][0]

    def wait_disconnected(self, dev_id, timeout=10.0):
        """Wait until vio has finished with the last front-end of @dev_id."""
        deadline = time.time() + timeout
        while self.dev(dev_id)["connected"]:
            if time.time() > deadline:
                raise AssertionError("%s still connected after %.0fs" % (dev_id, timeout))
            time.sleep(0.01)

    def check_alive(self):
        if not self.vs.alive():
            raise AssertionError("vio serve died:\n" + self.vs.tail(40))


def pattern(seed, size):
    return random.Random(seed).randbytes(size)


def check_io(srv, dev_id, seed=1):
    """A new front-end on @dev_id can handshake, write, read back and leave."""
    c, mem, blk = vu.connect_blk(srv.sock[dev_id], mem_size=4 << 20, qsize=16, max_io=64 * 1024)
    try:
        data = pattern(seed, 8192)
        sector = (seed % 64) * 16
        blk.write(sector, data)
        got = blk.read(sector, len(data))
        if got != data:
            raise AssertionError("%s: read back differs from what was written" % dev_id)
    finally:
        c.close()
        mem.close()
    srv.wait_disconnected(dev_id)


# ---- (a) data round trip and counters ----

def crossing_io(blk, mem, sector, data):
    """Write @data from, and read it back into, a buffer that starts in the
    first memory region and ends in the second (vio must split it)."""
    boundary = mem.regions[1].gpa
    buf = boundary - len(data) // 2 - 100
    hdr = mem.alloc(32, 16)
    status = hdr + 16
    q = blk.q
    for rtype, writable in ((vu.BLK_T_OUT, False), (vu.BLK_T_IN, True)):
        mem.pack_into("<IIQ", hdr, rtype, 0, sector)
        mem.write(status, b"\xff")
        mem.write(buf, data if rtype == vu.BLK_T_OUT else bytes(len(data)))
        head = q.add([(hdr, 16, False), (buf, len(data), writable), (status, 1, True)])
        q.kick()
        used = q.wait_used(1)
        assert used == [(head, len(data) + 1 if writable else 1)], used
        assert mem.read(status, 1) == b"\0", "crossing request failed: %r" % mem.read(status, 1)
    assert mem.read(buf, len(data)) == data, "read into a crossing buffer differs"


def test_io_round_trip():
    with Server("roundtrip") as srv:
        # Two memory regions, adjacent in guest-physical space, so some data
        # buffers cross a region boundary and must be split by vio.
        c, mem, blk = vu.connect_blk(
            srv.sock["a"], mem_size=12 << 20, qsize=64, max_io=128 * 1024, split=2,
            features=vu.VhostUserClient.DEFAULT_FEATURES | vu.bit(vu.VIRTIO_F_INDIRECT_DESC))
        try:
            dev = srv.dev("a")
            assert dev["connected"] and dev["memory_regions"] == 2, dev
            # Config space: capacity in 512-byte sectors.
            cap = struct.unpack("<Q", c.get_config(0, 8))[0]
            assert cap == DISK // SECTOR, "capacity %d sectors, expected %d" % (cap, DISK // SECTOR)
            assert blk.get_id() == b"a"

            # One at a time, then 32 at once with a single kick.
            writes = {}
            for i in range(8):
                writes[i * 256] = pattern(100 + i, 128 * 1024)
                blk.write(i * 256, writes[i * 256])
            heads = []
            for i in range(40):
                sector = 4096 + i * 128
                writes[sector] = pattern(200 + i, 64 * 1024)
                # Alternately through indirect tables and plain chains.
                heads.append(blk.submit(vu.BLK_T_OUT, sector, data=writes[sector],
                                        indirect=i % 5 != 0))
            blk.q.kick()
            res = blk.complete(blk.q.wait_used(40))
            assert sorted(res) == sorted(heads)
            assert all(r[0] == vu.BLK_S_OK and r[1] == 1 for r in res.values()), res
            # Data buffers that cross from one region into the next.
            writes[12000] = pattern(300, 20480)
            crossing_io(blk, mem, 12000, writes[12000])
            blk.flush()
            nbytes = sum(len(d) for d in writes.values())
            for sector, data in writes.items():
                got = blk.read(sector, len(data))
                assert got == data, "data at sector %d differs" % sector
            # The host file holds what the guest wrote.
            with open(srv.img["a"], "rb") as f:
                for sector, data in writes.items():
                    f.seek(sector * SECTOR)
                    assert f.read(len(data)) == data, "file differs at sector %d" % sector
            # Errors: a read past the end, an unknown request type.
            st, _, _ = blk.run(vu.BLK_T_IN, DISK // SECTOR, read_len=SECTOR)
            assert st == vu.BLK_S_IOERR, "read past the end gave status %d" % st
            st, _, _ = blk.run(99, 0, read_len=SECTOR)
            assert st == vu.BLK_S_UNSUPP, "request type 99 gave status %d" % st

            q = srv.queue_stats("a")
            want = {"writes": 49, "reads": 51, "flushes": 1, "get_id": 1,
                    "write_bytes": nbytes, "read_bytes": nbytes + len(writes[12000]), "errors": 1,
                    "unsupported": 1, "requests": 49 + 51 + 1 + 1 + 1}
            for k, v in want.items():
                assert q[k] == v, "device.stats %s = %s, expected %s (%s)" % (k, q[k], v, q)
            assert q["running"] is True
            # The other device saw nothing.
            assert srv.queue_stats("b")["requests"] == 0

            # GET_VRING_BASE stops the ring and returns the next avail index.
            base = c.get_vring_base(0)
            assert base == blk.q.avail_idx, "vring base %d, driver made %d available" % (
                base, blk.q.avail_idx)
            assert srv.queue_stats("a")["running"] is False
        finally:
            c.close()
            mem.close()
        srv.wait_disconnected("a")
        dev = srv.dev("a")
        assert dev["dropped_connections"] == 0 and dev["connections"] == 1, dev
        srv.check_alive()


# ---- (b) malformed messages ----

def _efd():
    return os.eventfd(0, os.EFD_CLOEXEC)


def _mem_table(regions, nregions=None):
    return struct.pack("<II", len(regions) if nregions is None else nregions, 0) + \
        b"".join(vu.REGION.pack(*r) for r in regions)


def _memfd(size):
    fd = os.memfd_create("bad-guest", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    return fd


class Bad:
    """One malformed input: @send(client, fds) does the damage after
    @setup(client) ran; @reason is expected in last_drop_reason."""

    def __init__(self, name, send, reason, setup=None):
        self.name, self.send, self.reason, self.setup = name, send, reason, setup


def _handshake(c):
    c.handshake()


def _with_queue_geometry(c):
    c.handshake()
    mem = vu.GuestMemory(1 << 20)
    c._bad_mem = mem
    c.set_mem_table(mem)
    c.set_vring_num(0, 64)
    c.set_vring_base(0, 0)


def _kick_msg(c, fds):
    c.send_msg(vu.SET_VRING_KICK, struct.pack("<Q", 0), fds=[fds(_efd())])


def _addr_then_kick(desc, used, avail):
    def send(c, fds):
        c.set_vring_addr(0, desc, used, avail)
        _kick_msg(c, fds)
    return send


def _random_bytes(seed):
    def send(c, fds):
        data = random.Random(seed).randbytes(256 + seed * 300)
        # A random header whose version bits happen to be 1 would leave vio
        # waiting for the payload; force them off so the test is exact.
        flags = struct.unpack_from("<I", data, 4)[0] & ~3
        c.send_raw(data[:4] + struct.pack("<I", flags | 2) + data[8:])
    return send


def _big_region(c, fds):
    mem_fd = fds(_memfd(1 << 20))
    c.send_msg(vu.SET_MEM_TABLE, _mem_table([(0, 2 << 20, 0x7f0000000000, 0)]), fds=[mem_fd])


UVA = 0x7f0000000000
MB = 1 << 20

BAD = [
    # framing
    Bad("size field over 4096", lambda c, fds: c.send_msg(vu.GET_FEATURES, size=4097),
        "Message too long"),
    Bad("size field 0xffffffff", lambda c, fds: c.send_msg(vu.GET_FEATURES, size=0xffffffff),
        "Message too long"),
    Bad("version 0", lambda c, fds: c.send_msg(vu.GET_FEATURES, flags=0), "Protocol error"),
    Bad("version 2", lambda c, fds: c.send_msg(vu.GET_FEATURES, flags=2), "Protocol error"),
    Bad("version 3 with need-reply", lambda c, fds: c.send_msg(vu.GET_FEATURES, flags=0xb),
        "Protocol error"),
    Bad("random bytes 1", _random_bytes(1), "Protocol error"),
    Bad("random bytes 2", _random_bytes(2), "Protocol error"),
    Bad("random bytes 3", _random_bytes(3), "Protocol error"),
    # unknown and unsupported requests
    Bad("request 0", lambda c, fds: c.send_msg(0), "unsupported request 0"),
    Bad("request 41", lambda c, fds: c.send_msg(41), "unsupported request 41"),
    Bad("request 1000", lambda c, fds: c.send_msg(1000, bytes(8)), "unsupported request 1000"),
    Bad("request 0xffffffff", lambda c, fds: c.send_msg(0xffffffff), "unsupported request"),
    Bad("SET_LOG_BASE", lambda c, fds: c.send_msg(vu.SET_LOG_BASE, bytes(16)),
        "unsupported request 6"),
    # payload sizes
    Bad("GET_FEATURES with a payload", lambda c, fds: c.send_msg(vu.GET_FEATURES, bytes(8)),
        "8-byte payload"),
    Bad("SET_FEATURES 4 bytes", lambda c, fds: c.send_msg(vu.SET_FEATURES, bytes(4)),
        "4-byte payload"),
    Bad("SET_FEATURES 16 bytes", lambda c, fds: c.send_msg(vu.SET_FEATURES, bytes(16)),
        "16-byte payload"),
    Bad("SET_VRING_NUM 4 bytes", lambda c, fds: c.send_msg(vu.SET_VRING_NUM, bytes(4)),
        "4-byte payload"),
    Bad("SET_VRING_ADDR 16 bytes", lambda c, fds: c.send_msg(vu.SET_VRING_ADDR, bytes(16)),
        "16-byte payload"),
    Bad("SET_VRING_ADDR 48 bytes", lambda c, fds: c.send_msg(vu.SET_VRING_ADDR, bytes(48)),
        "48-byte payload"),
    Bad("GET_CONFIG 8 bytes", lambda c, fds: c.send_msg(vu.GET_CONFIG, bytes(8)),
        "8-byte payload", setup=_handshake),
    Bad("SET_MEM_TABLE 4000 bytes", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, bytes(4000), fds=[fds(_memfd(MB))]), "4000-byte payload"),
    # fd counts
    Bad("SET_FEATURES with an fd", lambda c, fds: c.send_msg(
        vu.SET_FEATURES, bytes(8), fds=[fds(_efd())]), "1 fds"),
    Bad("GET_FEATURES with 3 fds", lambda c, fds: c.send_msg(
        vu.GET_FEATURES, fds=[fds(_efd()) for _ in range(3)]), "3 fds"),
    Bad("SET_MEM_TABLE without fds", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(0, MB, UVA, 0)])), "0 fds"),
    Bad("SET_MEM_TABLE 2 regions 1 fd", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(0, MB, UVA, 0), (MB, MB, UVA + MB, 0)]),
        fds=[fds(_memfd(MB))]), "SET_MEM_TABLE failed"),
    Bad("9 fds", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(i * MB, MB, UVA + i * MB, 0) for i in range(8)]),
        fds=[fds(_memfd(MB)) for _ in range(9)]), "Protocol error"),
    Bad("12 fds on GET_FEATURES", lambda c, fds: c.send_msg(
        vu.GET_FEATURES, fds=[fds(_efd()) for _ in range(12)]), "Protocol error"),
    Bad("SET_VRING_KICK without fd or NOFD", lambda c, fds: c.send_msg(
        vu.SET_VRING_KICK, struct.pack("<Q", 0)), "SET_VRING_KICK failed", setup=_handshake),
    Bad("SET_VRING_CALL NOFD with an fd", lambda c, fds: c.send_msg(
        vu.SET_VRING_CALL, struct.pack("<Q", vu.VRING_NOFD), fds=[fds(_efd())]),
        "SET_VRING_CALL failed", setup=_handshake),
    Bad("SET_VRING_CALL reserved bits", lambda c, fds: c.send_msg(
        vu.SET_VRING_CALL, struct.pack("<Q", 1 << 40), fds=[fds(_efd())]),
        "SET_VRING_CALL failed", setup=_handshake),
    # memory tables
    Bad("zero regions (8-byte payload)", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, struct.pack("<II", 0, 0), fds=[fds(_memfd(MB))]), "8-byte payload"),
    Bad("zero regions (count 0)", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(0, MB, UVA, 0)], nregions=0), fds=[fds(_memfd(MB))]),
        "SET_MEM_TABLE failed"),
    Bad("9 regions", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(i * MB, MB, UVA + i * MB, 0) for i in range(9)]),
        fds=[fds(_memfd(MB)) for _ in range(8)]), "296-byte payload"),
    Bad("count 9, 8 regions", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(i * MB, MB, UVA + i * MB, 0) for i in range(8)],
                                     nregions=9), fds=[fds(_memfd(MB)) for _ in range(8)]),
        "SET_MEM_TABLE failed"),
    Bad("regions overlap by gpa", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(0, 2 * MB, UVA, 0), (MB, 2 * MB, UVA + 4 * MB, 0)]),
        fds=[fds(_memfd(2 * MB)), fds(_memfd(2 * MB))]), "File exists"),
    Bad("regions overlap by uva", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(0, MB, UVA, 0), (8 * MB, MB, UVA + MB // 2, 0)]),
        fds=[fds(_memfd(MB)), fds(_memfd(MB))]), "File exists"),
    Bad("region larger than its memfd", _big_region, "SET_MEM_TABLE failed"),
    Bad("region offset past its memfd", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(0, MB, UVA, 2 * MB)]), fds=[fds(_memfd(2 * MB))]),
        "SET_MEM_TABLE failed"),
    Bad("region gpa + size wraps", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(2 ** 64 - MB // 2, MB, UVA, 0)]),
        fds=[fds(_memfd(MB))]), "SET_MEM_TABLE failed"),
    Bad("region size 0", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(0, 0, UVA, 0)]), fds=[fds(_memfd(MB))]),
        "SET_MEM_TABLE failed"),
    Bad("an eventfd as memory", lambda c, fds: c.send_msg(
        vu.SET_MEM_TABLE, _mem_table([(0, 4096, UVA, 0)]), fds=[fds(_efd())]),
        "SET_MEM_TABLE failed"),
    # rings
    Bad("ring index 1 of 1", lambda c, fds: c.set_vring_num(1, 64), "SET_VRING_NUM failed"),
    Bad("ring index 0xffffffff", lambda c, fds: c.set_vring_base(0xffffffff, 0),
        "SET_VRING_BASE failed"),
    Bad("GET_VRING_BASE ring 7", lambda c, fds: c.send_msg(vu.GET_VRING_BASE,
                                                          vu.STATE.pack(7, 0)),
        "GET_VRING_BASE failed"),
    Bad("SET_VRING_KICK ring 200", lambda c, fds: c.send_msg(
        vu.SET_VRING_KICK, struct.pack("<Q", 200), fds=[fds(_efd())]), "SET_VRING_KICK failed"),
    Bad("queue size 100", lambda c, fds: c.set_vring_num(0, 100), "SET_VRING_NUM failed"),
    Bad("queue size 0", lambda c, fds: c.set_vring_num(0, 0), "SET_VRING_NUM failed"),
    Bad("queue size 2048", lambda c, fds: c.set_vring_num(0, 2048), "SET_VRING_NUM failed"),
    Bad("vring base 0x10000", lambda c, fds: c.set_vring_base(0, 0x10000),
        "SET_VRING_BASE failed"),
    Bad("rings outside memory, then kick", _addr_then_kick(0x1000, 0x2000, 0x3000),
        "SET_VRING_KICK failed", setup=_with_queue_geometry),
    Bad("desc table past the end of memory, then kick",
        _addr_then_kick(0x7f1200000000 + MB - 512, 0x7f1200000000, 0x7f1200000000 + 0x4000),
        "SET_VRING_KICK failed", setup=_with_queue_geometry),
    Bad("misaligned desc table, then kick",
        _addr_then_kick(0x7f1200000000 + 8, 0x7f1200000000 + 0x2000,
                        0x7f1200000000 + 0x4000),
        "SET_VRING_KICK failed", setup=_with_queue_geometry),
    Bad("kick before any ring address", lambda c, fds: _kick_msg(c, fds),
        "SET_VRING_KICK failed", setup=_with_queue_geometry),
    Bad("SET_VRING_ENABLE 2", lambda c, fds: c.send_msg(
        vu.SET_VRING_ENABLE, vu.STATE.pack(0, 2)), "SET_VRING_ENABLE failed", setup=_handshake),
    Bad("SET_VRING_ENABLE before features", lambda c, fds: c.set_vring_enable(0, True),
        "SET_VRING_ENABLE failed"),
    # features
    Bad("GET_QUEUE_NUM without MQ", lambda c, fds: c.send_msg(vu.GET_QUEUE_NUM),
        "without protocol feature 0"),
    Bad("SET_STATUS without STATUS", lambda c, fds: c.send_msg(vu.SET_STATUS, bytes(8)),
        "without protocol feature 16", setup=_handshake),
    Bad("unoffered feature bit 63", lambda c, fds: c.set_features(1 << 63),
        "SET_FEATURES failed"),
    Bad("unoffered protocol feature bit 1", lambda c, fds: c.set_protocol_features(2),
        "SET_PROTOCOL_FEATURES failed"),
    Bad("SET_CONFIG on a read-only config", lambda c, fds: c.send_msg(
        vu.SET_CONFIG, vu.CONFIG_HDR.pack(0, 8, 0) + bytes(8)), "SET_CONFIG failed",
        setup=_handshake),
    Bad("SET_CONFIG size mismatch", lambda c, fds: c.send_msg(
        vu.SET_CONFIG, vu.CONFIG_HDR.pack(0, 8, 0) + bytes(4)), "SET_CONFIG failed",
        setup=_handshake),
]


class BackgroundIo(threading.Thread):
    """A front-end on device b doing write/read/compare until stopped."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv = srv
        self.stop_ev = threading.Event()
        self.ops = 0
        self.error = None

    def run(self):
        try:
            c, mem, blk = vu.connect_blk(self.srv.sock["b"], mem_size=4 << 20, qsize=32,
                                         max_io=32 * 1024)
            try:
                i = 0
                while not self.stop_ev.is_set():
                    data = pattern(1000 + i, 16384)
                    sector = (i % 512) * 32
                    blk.write(sector, data)
                    if blk.read(sector, len(data)) != data:
                        raise AssertionError("b: read back differs at sector %d" % sector)
                    i += 1
                    self.ops = i
            finally:
                c.close()
                mem.close()
        except BaseException as e:  # noqa: B902 - reported by the main thread
            self.error = e


def test_malformed_messages():
    with Server("malformed") as srv:
        bg = BackgroundIo(srv)
        bg.start()
        try:
            deadline = time.time() + 10
            while bg.ops == 0 and bg.error is None and time.time() < deadline:
                time.sleep(0.01)
            assert bg.ops > 0, "device b never completed an I/O: %s" % bg.error
            check_io(srv, "a", seed=0)
            for n, bad in enumerate(BAD):
                before = srv.dev("a")
                owned = []

                def fds(fd, owned=owned):
                    owned.append(fd)
                    return fd

                c = vu.VhostUserClient(srv.sock["a"])
                try:
                    if bad.setup:
                        bad.setup(c)
                    try:
                        bad.send(c, fds)
                    except vu.Closed:
                        pass  # vio may close while we are still sending
                    closed = c.wait_closed(10)
                finally:
                    c.close()
                    for fd in owned:
                        os.close(fd)
                    if hasattr(c, "_bad_mem"):
                        c._bad_mem.close()
                if not closed:
                    raise AssertionError("%s: vio did not drop the connection" % bad.name)
                srv.check_alive()
                after = srv.dev("a")
                assert after["dropped_connections"] == before["dropped_connections"] + 1, \
                    "%s: dropped_connections %d -> %d" % (
                        bad.name, before["dropped_connections"], after["dropped_connections"])
                assert bad.reason in after["last_drop_reason"], \
                    "%s: last_drop_reason is %r, expected it to mention %r" % (
                        bad.name, after["last_drop_reason"], bad.reason)
                assert not after["connected"], "%s: still connected" % bad.name
                # A well-behaved front-end is served right after.
                check_io(srv, "a", seed=n + 1)
                # Device b kept going meanwhile.
                if bg.error:
                    raise AssertionError("device b failed during %r: %s" % (bad.name, bg.error))
            # b progressed during the barrage and never lost its connection.
            ops = bg.ops
            time.sleep(0.2)
            assert bg.ops > ops and bg.error is None, "device b stalled: %s" % bg.error
        finally:
            bg.stop_ev.set()
            bg.join(30)
        if bg.error:
            raise AssertionError("device b failed: %s" % bg.error)
        b = srv.dev("b")
        assert b["dropped_connections"] == 0 and b["connections"] == 1, b
        a = srv.dev("a")
        assert a["dropped_connections"] == len(BAD), a
        srv.check_alive()


def test_eof_mid_message():
    """A header announcing a payload, part of it, then end of stream: the
    connection goes away and the device is ready for the next front-end."""
    with Server("eof") as srv:
        for cut in (0, 4):
            c = vu.VhostUserClient(srv.sock["a"])
            c.handshake()
            c.send_raw(vu.HDR.pack(vu.SET_FEATURES, vu.FLAG_VERSION, 8) + bytes(cut))
            c.sock.shutdown(socket.SHUT_WR)
            assert c.wait_closed(10), "vio kept a connection whose peer half-closed mid-message"
            c.close()
            srv.wait_disconnected("a")
            check_io(srv, "a", seed=cut)
        # Only the header's first bytes.
        c = vu.VhostUserClient(srv.sock["a"])
        c.send_raw(vu.HDR.pack(vu.GET_FEATURES, vu.FLAG_VERSION, 0)[:7])
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed(10)
        c.close()
        srv.wait_disconnected("a")
        check_io(srv, "a", seed=9)
        srv.check_alive()


def test_eof_mid_message_counts_as_drop():
    """A message cut short by end of stream is a protocol violation, like any
    other malformed message: it should show in dropped_connections and
    last_drop_reason rather than pass as an orderly disconnect."""
    with Server("eof_drop") as srv:
        c = vu.VhostUserClient(srv.sock["a"])
        c.send_raw(vu.HDR.pack(vu.SET_FEATURES, vu.FLAG_VERSION, 8) + bytes(4))
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed(10)
        c.close()
        srv.wait_disconnected("a")
        a = srv.dev("a")
        assert a["dropped_connections"] == 1 and a["last_drop_reason"], \
            "a message truncated by EOF was not counted as a drop: %s" % a


# ---- (c) one front-end per device ----

def test_second_frontend_refused():
    with Server("second") as srv:
        c1, mem1, blk1 = vu.connect_blk(srv.sock["a"], mem_size=4 << 20, qsize=16)
        try:
            blk1.write(0, pattern(1, 4096))
            for _ in range(3):
                c2 = vu.VhostUserClient(srv.sock["a"])
                try:
                    # Refused: closed before or after it says anything.
                    try:
                        c2.send_msg(vu.GET_FEATURES)
                    except vu.Closed:
                        pass
                    assert c2.wait_closed(10), "a second front-end on one device was served"
                finally:
                    c2.close()
            # The first one did not notice.
            data = pattern(2, 65536)
            blk1.write(64, data)
            assert blk1.read(64, len(data)) == data
            assert blk1.read(0, 4096) == pattern(1, 4096)
            dev = srv.dev("a")
            assert dev["connected"] and dev["connections"] == 1, dev
            assert dev["dropped_connections"] == 0, dev
            # The other device is free.
            check_io(srv, "b", seed=3)
        finally:
            c1.close()
            mem1.close()
        srv.wait_disconnected("a")
        check_io(srv, "a", seed=4)


# ---- (d) disconnect with requests in flight ----

def test_disconnect_mid_io():
    with Server("midio") as srv:
        for rnd in range(4):
            c, mem, blk = vu.connect_blk(
                srv.sock["a"], mem_size=12 << 20, qsize=128, max_io=64 * 1024,
                features=vu.VhostUserClient.DEFAULT_FEATURES | vu.bit(vu.VIRTIO_F_INDIRECT_DESC))
            # Fill the ring with writes over half the disk, kick, vanish.
            for i in range(128):
                blk.submit(vu.BLK_T_OUT, i * 128, data=pattern(rnd * 1000 + i, 64 * 1024),
                           indirect=True)
            blk.q.kick()
            if rnd % 2:
                time.sleep(0.001 * rnd)
            c.close()
            mem.close()
            srv.wait_disconnected("a")
            srv.check_alive()
            # The next front-end gets a fresh device that works.
            c, mem, blk = vu.connect_blk(srv.sock["a"], mem_size=8 << 20, qsize=64,
                                         max_io=64 * 1024)
            try:
                written = {}
                for i in range(0, 128, 7):
                    written[i * 128] = pattern(50000 + rnd * 1000 + i, 64 * 1024)
                    blk.write(i * 128, written[i * 128])
                for sector, data in written.items():
                    assert blk.read(sector, len(data)) == data, "round %d: sector %d" % (
                        rnd, sector)
                blk.flush()
            finally:
                c.close()
                mem.close()
            srv.wait_disconnected("a")
            with open(srv.img["a"], "rb") as f:
                for sector, data in written.items():
                    f.seek(sector * SECTOR)
                    assert f.read(len(data)) == data, "file differs at sector %d" % sector
        dev = srv.dev("a")
        assert dev["connections"] == 8 and dev["dropped_connections"] == 0, dev
        assert srv.queue_stats("a")["requests"] >= 4 * (19 + 19 + 1)
        srv.check_alive()


# ---- (e) REPLY_ACK ----

def test_reply_ack():
    with Server("ack") as srv:
        c = vu.VhostUserClient(srv.sock["a"])
        try:
            c.handshake()
            assert c.protocol_features & vu.bit(vu.PF_REPLY_ACK)
            # Failing requests that asked for an ack: a non-zero ack, and the
            # connection stays.
            assert c.set_vring_num(0, 100, need_reply=True) != 0
            assert c.set_vring_num(5, 64, need_reply=True) != 0
            assert c.set_vring_base(0, 1 << 20, need_reply=True) != 0
            bad = vu.Region(0x40000000, 2 << 20, 0x7f1200000000, file_size=1 << 20)
            try:
                assert c.set_mem_table([bad], need_reply=True) != 0
            finally:
                bad.close()
            assert c.call(vu.SET_VRING_ENABLE, vu.STATE.pack(0, 7), need_reply=True) != 0
            # Succeeding ones get zero.
            assert c.set_vring_num(0, 64, need_reply=True) == 0
            assert c.set_vring_base(0, 0, need_reply=True) == 0
            mem = vu.GuestMemory(4 << 20)
            try:
                assert c.set_mem_table(mem, need_reply=True) == 0
                q = c.setup_queue(0, mem, size=32)
                blk = vu.BlkQueue(q, max_io=32 * 1024)
                data = pattern(7, 32768)
                blk.write(8, data)
                assert blk.read(8, len(data)) == data
                # Requests that have their own reply ignore NEED_REPLY.
                p = c.call(vu.GET_FEATURES, need_reply=True, reply=True)
                assert len(p) == 8 and struct.unpack("<Q", p)[0] & vu.bit(vu.VIRTIO_F_VERSION_1)
            finally:
                c.close()
                mem.close()
        finally:
            c.close()
        srv.wait_disconnected("a")
        dev = srv.dev("a")
        assert dev["dropped_connections"] == 0, dev
        # Without REPLY_ACK negotiated, NEED_REPLY is ignored and a failure
        # drops the connection.
        c = vu.VhostUserClient(srv.sock["a"])
        try:
            c.handshake(protocol_features=vu.bit(vu.PF_MQ))
            c.send_msg(vu.SET_VRING_NUM, vu.STATE.pack(0, 100),
                       flags=vu.FLAG_VERSION | vu.FLAG_NEED_REPLY)
            assert c.wait_closed(10)
        finally:
            c.close()
        assert srv.dev("a")["dropped_connections"] == 1
        check_io(srv, "a")


# ---- (f) GET_CONFIG ranges ----

def test_get_config_ranges():
    with Server("config") as srv:
        c, mem, blk = vu.connect_blk(srv.sock["a"], mem_size=4 << 20, qsize=16)
        try:
            full = c.get_config(0, 72)
            assert struct.unpack_from("<Q", full)[0] == DISK // SECTOR
            # Within the limit but past our config space: zeros.
            tail = c.get_config(64, 32)
            assert tail == full[64:72] + bytes(24), tail
            assert c.get_config(200, 56) == bytes(56)
            # Out of range: an empty reply, the connection stays.
            for off, size in ((250, 10), (0, 257), (256, 1), (0xffffffff, 1), (1, 0xffffffff)):
                p = c.call(vu.GET_CONFIG, vu.CONFIG_HDR.pack(off, size, 0) + bytes(min(size, 64)),
                           reply=True)
                assert p == b"", "GET_CONFIG %d+%d replied %d bytes" % (off, size, len(p))
            # A size field that does not match the message.
            p = c.call(vu.GET_CONFIG, vu.CONFIG_HDR.pack(0, 8, 0) + bytes(16), reply=True)
            assert p == b""
            data = pattern(11, 4096)
            blk.write(0, data)
            assert blk.read(0, 4096) == data
        finally:
            c.close()
            mem.close()
        srv.wait_disconnected("a")
        assert srv.dev("a")["dropped_connections"] == 0


# ---- ring stop/restart, memory changes, guest errors ----

def _wait_irq(fd, timeout=10.0):
    """The back-end signalled @fd (an eventfd) within @timeout."""
    r, _, _ = select.select([fd], [], [], timeout)
    if not r:
        return False
    os.eventfd_read(fd)
    return True


def test_ring_stop_and_restart():
    """QEMU's stop/cont: disable, GET_VRING_BASE, then NUM/BASE/ADDR/KICK/CALL
    and enable again; a request made available while the ring was stopped
    is processed after the restart, with an interrupt."""
    with Server("restart") as srv:
        c, mem, blk = vu.connect_blk(srv.sock["a"], mem_size=4 << 20, qsize=32)
        try:
            q = blk.q
            for rnd in range(3):
                data = pattern(rnd, 8192)
                blk.write(rnd * 16, data)
                c.set_vring_enable(0, False)
                base = c.get_vring_base(0)
                assert base == q.avail_idx, (base, q.avail_idx)
                assert srv.queue_stats("a")["running"] is False
                # Made available while stopped: nothing happens yet.
                head = blk.submit(vu.BLK_T_IN, rnd * 16, read_len=len(data))
                q.kick()
                time.sleep(0.1)
                assert q.poll_used() == [], "a stopped ring was processed"
                q.kick_fd, q.call_fd = c.eventfd(), c.eventfd()
                c.set_vring_num(0, q.size)
                c.set_vring_base(0, base)
                c.set_vring_addr(0, mem.uva(q.desc), mem.uva(q.used), mem.uva(q.avail))
                c.set_vring_kick(0, q.kick_fd)
                c.set_vring_call(0, q.call_fd)
                c.set_vring_enable(0, True)
                # wait_used insists on an interrupt for the completion (an
                # extra one at the restart is harmless).
                res = blk.complete(q.wait_used(1))
                assert res[head][0] == vu.BLK_S_OK and res[head][2] == data
        finally:
            c.close()
            mem.close()
        srv.wait_disconnected("a")
        assert srv.dev("a")["dropped_connections"] == 0


def test_memory_table_changes():
    """SET_MEM_TABLE again while a ring runs (as on memory hotplug), and
    memory slots added and removed with CONFIGURE_MEM_SLOTS."""
    pf = vu.VhostUserClient.DEFAULT_PF | vu.bit(vu.PF_CONFIGURE_MEM_SLOTS) | vu.bit(vu.PF_STATUS)
    with Server("memtable") as srv:
        c, mem, blk = vu.connect_blk(srv.sock["a"], mem_size=4 << 20, qsize=32,
                                     protocol_features=pf)
        extra = vu.Region(0x80000000, 1 << 20, 0x7f5500000000)
        try:
            assert c.protocol_features & vu.bit(vu.PF_CONFIGURE_MEM_SLOTS)
            blk.write(0, pattern(1, 4096))
            c.set_mem_table(mem)
            assert srv.dev("a")["memory_regions"] == 1
            assert blk.read(0, 4096) == pattern(1, 4096), "I/O after SET_MEM_TABLE again"
            slots = struct.unpack("<Q", c.call(vu.GET_MAX_MEM_SLOTS, reply=True))[0]
            assert slots >= 8, slots
            # A new slot, and a request whose data lives in it.
            c.call(vu.ADD_MEM_REG, struct.pack("<Q", 0) + extra.describe(), fds=[extra.fd])
            assert srv.dev("a")["memory_regions"] == 2
            hdr = mem.alloc(32)
            mem.pack_into("<IIQ", hdr, vu.BLK_T_OUT, 0, 64)
            mem.write(hdr + 16, b"\xff")
            extra.map[0:4096] = pattern(2, 4096)
            h = blk.q.add([(hdr, 16, False), (extra.gpa, 4096, False), (hdr + 16, 1, True)])
            blk.q.kick()
            assert blk.q.wait_used(1) == [(h, 1)] and mem.read(hdr + 16, 1) == b"\0"
            assert blk.read(64, 4096) == pattern(2, 4096)
            # Removing a slot that is not there fails; removing it works.
            wrong = vu.REGION.pack(extra.gpa, extra.size * 2, extra.uva, 0)
            assert c.call(vu.REM_MEM_REG, struct.pack("<Q", 0) + wrong, need_reply=True) != 0
            assert srv.dev("a")["memory_regions"] == 2
            c.call(vu.REM_MEM_REG, struct.pack("<Q", 0) + extra.describe())
            assert srv.dev("a")["memory_regions"] == 1
            assert blk.read(0, 4096) == pattern(1, 4096)
            # Now the same request is a guest error: the ring is broken and
            # the device needs a reset, the connection stays.
            h = blk.q.add([(hdr, 16, False), (extra.gpa, 4096, False), (hdr + 16, 1, True)])
            blk.q.kick()
            deadline = time.time() + 10
            while not srv.dev("a")["needs_reset"] and time.time() < deadline:
                time.sleep(0.01)
            assert srv.dev("a")["needs_reset"], "a buffer in removed memory did not break the ring"
            status = struct.unpack("<Q", c.call(vu.GET_STATUS, reply=True))[0]
            assert status & 0x40, "GET_STATUS 0x%x lacks NEEDS_RESET" % status
            assert blk.q.poll_used() == []
            assert srv.dev("a")["connected"] and srv.dev("a")["dropped_connections"] == 0
        finally:
            c.close()
            mem.close()
            extra.close()
        srv.wait_disconnected("a")
        # The next front-end gets a device without the broken state.
        assert not srv.dev("a")["needs_reset"]
        check_io(srv, "a")


def test_guest_error_needs_reset():
    """Bad descriptor chains break only their ring: the error eventfd fires,
    NEEDS_RESET shows, other devices and the next front-end are fine."""
    bad_chains = [
        # buffer outside guest memory
        lambda blk, hdr: [(hdr, 16, False), (0x10, 4096, False), (hdr + 16, 1, True)],
        # readable after writable
        lambda blk, hdr: [(hdr, 16, False), (hdr + 16, 1, True), (blk.data, 512, False)],
        # no writable status byte
        lambda blk, hdr: [(hdr, 16, False), (blk.data, 512, False)],
    ]
    with Server("guesterr") as srv:
        for n, chain in enumerate(bad_chains):
            c, mem, blk = vu.connect_blk(srv.sock["a"], mem_size=4 << 20, qsize=32)
            try:
                err = c.eventfd()
                # With an ack, so the fd is in place before the bad request.
                assert c.call(vu.SET_VRING_ERR, struct.pack("<Q", 0), fds=[err],
                              need_reply=True) == 0
                blk.write(0, pattern(n, 4096))
                hdr = mem.alloc(32)
                mem.pack_into("<IIQ", hdr, vu.BLK_T_OUT, 0, 8)
                blk.q.add(chain(blk, hdr))
                blk.q.kick()
                assert _wait_irq(err), "case %d: the error eventfd was not signalled" % n
                assert srv.dev("a")["needs_reset"]
                assert srv.dev("a")["connected"]
                check_io(srv, "b", seed=n)
            finally:
                c.close()
                mem.close()
            srv.wait_disconnected("a")
            check_io(srv, "a", seed=n)
        assert srv.dev("a")["dropped_connections"] == 0
        assert not srv.dev("b")["needs_reset"]


def test_reconfigure_under_io():
    """Memory table and features set again and again (each one stops, drains
    and restarts the ring) while another thread keeps requests in flight:
    every request completes, with an interrupt, and the data is right."""
    with Server("reconf") as srv:
        c, mem, blk = vu.connect_blk(srv.sock["a"], mem_size=8 << 20, qsize=64,
                                     max_io=64 * 1024)
        stop = threading.Event()
        errors, done = [], [0]

        def io():
            try:
                i = 0
                while not stop.is_set():
                    batch = {}
                    for j in range(8):
                        seed = i * 8 + j
                        sector = (seed % 256) * 128
                        batch[blk.submit(vu.BLK_T_OUT, sector, data=pattern(seed, 65536))] = (
                            sector, seed)
                    blk.q.kick()
                    res = blk.complete(blk.q.wait_used(8))
                    if sorted(res) != sorted(batch) or any(r[0] != vu.BLK_S_OK
                                                           for r in res.values()):
                        raise AssertionError("writes failed: %s" % res)
                    for sector, seed in batch.values():
                        if blk.read(sector, 65536) != pattern(seed, 65536):
                            raise AssertionError("sector %d differs" % sector)
                    i += 1
                    done[0] = i
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(e)

        t = threading.Thread(target=io, daemon=True)
        t.start()
        try:
            for k in range(100):
                assert c.set_mem_table(mem, need_reply=True) == 0
                assert c.set_features(c.features, need_reply=True) == 0
                if k % 4 == 0:
                    assert c.call(vu.SET_VRING_ENABLE, vu.STATE.pack(0, 1),
                                  need_reply=True) == 0
                if errors:
                    break
                time.sleep(0.002)
        finally:
            stop.set()
            t.join(60)
        try:
            if errors:
                raise AssertionError("I/O during reconfiguration failed: %s" % errors[0])
            assert done[0] > 5, "only %d rounds of I/O during reconfiguration" % done[0]
            # The data on disk is what the last round wrote.
            data = pattern(123456, 65536)
            blk.write(0, data)
            assert blk.read(0, 65536) == data
        finally:
            c.close()
            mem.close()
        srv.wait_disconnected("a")
        assert srv.dev("a")["dropped_connections"] == 0


def test_restart_without_protocol_features_interrupts():
    """A front-end without VHOST_USER_F_PROTOCOL_FEATURES (rings enabled as
    soon as they start) restarts a stopped ring in QEMU's order: NUM, BASE,
    ADDR, KICK, then CALL. A request made available while the ring was
    stopped must still be signalled on the call fd. The spec starts a ring
    on its first kick, not on SET_VRING_KICK; a back-end that processes the
    ring at SET_VRING_KICK, before the call fd is installed, completes the
    request without an interrupt and the driver waits forever."""
    with Server("legacy") as srv:
        c = vu.VhostUserClient(srv.sock["a"])
        mem = vu.GuestMemory(4 << 20)
        try:
            assert c.get_features() & vu.bit(vu.VIRTIO_F_VERSION_1)
            c.set_owner()
            c.set_features(vu.bit(vu.VIRTIO_F_VERSION_1))
            c.set_mem_table(mem)
            q = vu.Virtqueue(c, mem, 0, 32)

            def start(base):
                c.set_vring_num(0, q.size)
                c.set_vring_base(0, base)
                c.set_vring_addr(0, mem.uva(q.desc), mem.uva(q.used), mem.uva(q.avail))
                c.set_vring_kick(0, q.kick_fd)
                # The front-end takes its time between the two messages.
                time.sleep(0.2)
                c.set_vring_call(0, q.call_fd)

            start(0)
            blk = vu.BlkQueue(q, max_io=8192)
            blk.write(0, pattern(5, 4096))
            base = c.get_vring_base(0)
            head = blk.submit(vu.BLK_T_IN, 0, read_len=4096)
            q.kick_fd, q.call_fd = c.eventfd(), c.eventfd()
            start(base)
            irq = _wait_irq(q.call_fd, 5)
            res = blk.complete(q.poll_used())
            assert head in res and res[head][2] == pattern(5, 4096), res
            assert irq, "the request was completed without an interrupt on the call fd"
        finally:
            c.close()
            mem.close()
