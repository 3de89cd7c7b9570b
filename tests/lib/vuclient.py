"""A minimal vhost-user front-end (the driver side) for tests, Python stdlib only.

It connects to a back-end such as `vio serve`, negotiates features, shares
memfds as guest memory, drives one or more split virtqueues in that memory
and submits virtio-blk requests through them. A raw layer sends arbitrary
headers, payloads and fds, for tests that feed the back-end garbage.

    mem = GuestMemory(16 << 20)
    with VhostUserClient(sock) as c:
        c.handshake()
        c.set_mem_table(mem)
        q = c.setup_queue(0, mem, size=64)
        blk = BlkQueue(q)
        blk.write(0, b"x" * 4096)
        assert blk.read(0, 4096) == b"x" * 4096

Protocol: QEMU docs/interop/vhost-user.rst; rings: VIRTIO 1.2 section 2.7.
Ring addresses given to the back-end are front-end user addresses (the uva
declared for each region plus the offset), not guest-physical ones.
"""

import mmap
import os
import select
import socket
import struct
import time

# ---- protocol constants ----

GET_FEATURES = 1
SET_FEATURES = 2
SET_OWNER = 3
RESET_OWNER = 4
SET_MEM_TABLE = 5
SET_LOG_BASE = 6
SET_LOG_FD = 7
SET_VRING_NUM = 8
SET_VRING_ADDR = 9
SET_VRING_BASE = 10
GET_VRING_BASE = 11
SET_VRING_KICK = 12
SET_VRING_CALL = 13
SET_VRING_ERR = 14
GET_PROTOCOL_FEATURES = 15
SET_PROTOCOL_FEATURES = 16
GET_QUEUE_NUM = 17
SET_VRING_ENABLE = 18
GET_CONFIG = 24
SET_CONFIG = 25
RESET_DEVICE = 34
GET_MAX_MEM_SLOTS = 36
ADD_MEM_REG = 37
REM_MEM_REG = 38
SET_STATUS = 39
GET_STATUS = 40

FLAG_VERSION = 0x1
FLAG_REPLY = 0x4
FLAG_NEED_REPLY = 0x8

PF_MQ = 0
PF_REPLY_ACK = 3
PF_CONFIG = 9
PF_RESET_DEVICE = 13
PF_CONFIGURE_MEM_SLOTS = 15
PF_STATUS = 16

F_PROTOCOL_FEATURES = 30
VIRTIO_F_INDIRECT_DESC = 28
VIRTIO_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32

VRING_NOFD = 1 << 8
MAX_PAYLOAD = 4096

DESC_F_NEXT = 1
DESC_F_WRITE = 2
DESC_F_INDIRECT = 4

# virtio-blk (VIRTIO 1.2, 5.2)
BLK_T_IN = 0
BLK_T_OUT = 1
BLK_T_FLUSH = 4
BLK_T_GET_ID = 8
BLK_S_OK = 0
BLK_S_IOERR = 1
BLK_S_UNSUPP = 2
BLK_F_SEG_MAX = 2
BLK_F_RO = 5
BLK_F_BLK_SIZE = 6
BLK_F_FLUSH = 9

HDR = struct.Struct("<III")   # request, flags, size
STATE = struct.Struct("<II")  # vring index, num
REGION = struct.Struct("<QQQQ")  # gpa, size, uva, mmap_offset
VRING_ADDR = struct.Struct("<IIQQQQ")  # index, flags, desc, used, avail, log
CONFIG_HDR = struct.Struct("<III")  # offset, size, flags


def bit(n):
    return 1 << n


class VhostUserError(Exception):
    pass


class Closed(VhostUserError):
    """The back-end closed the connection."""


# ---- guest memory ----

class Region:
    """One memfd shared with the back-end as guest-physical [gpa, gpa+size).

    @uva is the front-end user address we declare for it; it need not be
    where this process mapped the memfd, the back-end only uses it to
    translate ring addresses."""

    def __init__(self, gpa, size, uva, file_size=None, mmap_offset=0):
        self.gpa, self.size, self.uva, self.mmap_offset = gpa, size, uva, mmap_offset
        self.fd = os.memfd_create("vuclient-guest", os.MFD_CLOEXEC)
        if file_size is None:
            file_size = size + mmap_offset
        os.ftruncate(self.fd, file_size)
        # A region may be declared larger than its file (to test that the
        # back-end refuses it); we map only what exists.
        self.map = mmap.mmap(self.fd, min(size + mmap_offset, file_size)) if file_size else None

    def describe(self):
        return REGION.pack(self.gpa, self.size, self.uva, self.mmap_offset)

    def close(self):
        if self.fd >= 0:
            if self.map is not None:
                self.map.close()
            os.close(self.fd)
            self.fd = -1


class GuestMemory:
    """Guest RAM: one region, or several adjacent ones (so buffers can cross
    a region boundary). A bump allocator hands out guest-physical space."""

    def __init__(self, size=4 << 20, gpa=0x40000000, uva=0x7f1200000000, split=1):
        part = size // split
        self.regions = [Region(gpa + i * part, part, uva + i * (part + (1 << 30)))
                        for i in range(split)]
        self.base, self.end = gpa, gpa + part * split
        self.next = gpa

    def _find(self, gpa):
        for r in self.regions:
            if r.gpa <= gpa < r.gpa + r.size:
                return r
        raise VhostUserError("gpa 0x%x is outside guest memory" % gpa)

    def alloc(self, size, align=16):
        gpa = (self.next + align - 1) & ~(align - 1)
        if gpa + size > self.end:
            raise VhostUserError("guest memory exhausted")
        self.next = gpa + size
        return gpa

    def uva(self, gpa):
        r = self._find(gpa)
        return r.uva + (gpa - r.gpa)

    def write(self, gpa, data):
        data = bytes(data)
        while data:
            r = self._find(gpa)
            off = gpa - r.gpa
            n = min(len(data), r.size - off)
            r.map[r.mmap_offset + off:r.mmap_offset + off + n] = data[:n]
            gpa, data = gpa + n, data[n:]

    def read(self, gpa, size):
        out = b""
        while size:
            r = self._find(gpa)
            off = gpa - r.gpa
            n = min(size, r.size - off)
            out += r.map[r.mmap_offset + off:r.mmap_offset + off + n]
            gpa, size = gpa + n, size - n
        return out

    def pack_into(self, fmt, gpa, *values):
        self.write(gpa, struct.pack(fmt, *values))

    def unpack_from(self, fmt, gpa):
        return struct.unpack(fmt, self.read(gpa, struct.calcsize(fmt)))

    def close(self):
        for r in self.regions:
            r.close()


# ---- the connection ----

class VhostUserClient:
    def __init__(self, path, timeout=10.0):
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.features = 0
        self.protocol_features = 0
        self.fds = []  # eventfds we own

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    # -- raw layer: anything, including what the protocol forbids --

    def send_raw(self, data, fds=()):
        """Write @data with @fds attached to its first byte."""
        data = bytes(data)
        try:
            if fds:
                n = socket.send_fds(self.sock, [data], list(fds))
                data = data[n:]
            if data:
                self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed("back-end closed the connection while we were sending: %s" % e)

    def send_msg(self, request, payload=b"", flags=FLAG_VERSION, fds=(), size=None):
        """One message; @size overrides the header's size field."""
        payload = bytes(payload)
        hdr = HDR.pack(request, flags, len(payload) if size is None else size)
        self.send_raw(hdr + payload, fds)

    def _recv_exact(self, n, timeout):
        buf = b""
        self.sock.settimeout(timeout)
        try:
            while len(buf) < n:
                chunk = self.sock.recv(n - len(buf))
                if not chunk:
                    raise Closed("back-end closed the connection")
                buf += chunk
        except ConnectionResetError:
            raise Closed("back-end reset the connection")
        except socket.timeout:
            raise VhostUserError("no reply within %.1fs" % timeout)
        finally:
            self.sock.settimeout(self.timeout)
        return buf

    def recv_msg(self, timeout=None):
        """The next message from the back-end: (request, flags, payload)."""
        t = self.timeout if timeout is None else timeout
        request, flags, size = HDR.unpack(self._recv_exact(HDR.size, t))
        if size > MAX_PAYLOAD:
            raise VhostUserError("reply with a %d-byte payload" % size)
        return request, flags, self._recv_exact(size, t) if size else b""

    def wait_closed(self, timeout=5.0):
        """True once the back-end has closed the connection (replies that
        arrive meanwhile are discarded); False if it is still open after
        @timeout seconds."""
        deadline = time.time() + timeout
        try:
            while True:
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.timeout)

    # -- request layer --

    def call(self, request, payload=b"", fds=(), reply=False, need_reply=False):
        """Send a request; with @reply return its reply payload, with
        @need_reply (REPLY_ACK) return the acknowledgement value."""
        flags = FLAG_VERSION | (FLAG_NEED_REPLY if need_reply else 0)
        self.send_msg(request, payload, flags, fds)
        if not (reply or need_reply):
            return None
        rreq, rflags, rpayload = self.recv_msg()
        if rreq != request or rflags != FLAG_VERSION | FLAG_REPLY:
            raise VhostUserError("reply to request %d has request %d flags 0x%x"
                                 % (request, rreq, rflags))
        if need_reply and not reply:
            if len(rpayload) != 8:
                raise VhostUserError("ack of %d bytes" % len(rpayload))
            return struct.unpack("<Q", rpayload)[0]
        return rpayload

    def _u64(self, request):
        p = self.call(request, reply=True)
        if len(p) != 8:
            raise VhostUserError("request %d: reply of %d bytes, expected 8" % (request, len(p)))
        return struct.unpack("<Q", p)[0]

    def get_features(self):
        return self._u64(GET_FEATURES)

    def set_features(self, features, need_reply=False):
        self.features = features
        return self.call(SET_FEATURES, struct.pack("<Q", features), need_reply=need_reply)

    def get_protocol_features(self):
        return self._u64(GET_PROTOCOL_FEATURES)

    def set_protocol_features(self, pf):
        self.protocol_features = pf
        self.call(SET_PROTOCOL_FEATURES, struct.pack("<Q", pf))

    def set_owner(self):
        self.call(SET_OWNER)

    def get_queue_num(self):
        return self._u64(GET_QUEUE_NUM)

    def get_config(self, offset, size, flags=0):
        """The reply payload's data (b"" when the back-end sent the empty
        error reply)."""
        p = self.call(GET_CONFIG, CONFIG_HDR.pack(offset, size, flags) + bytes(size), reply=True)
        if not p:
            return b""
        off, sz, _ = CONFIG_HDR.unpack_from(p)
        if (off, sz) != (offset, size) or len(p) != CONFIG_HDR.size + size:
            raise VhostUserError("GET_CONFIG reply for %d+%d is for %d+%d (%d bytes)"
                                 % (offset, size, off, sz, len(p)))
        return p[CONFIG_HDR.size:]

    def set_mem_table(self, mem, need_reply=False):
        regions = mem.regions if isinstance(mem, GuestMemory) else mem
        payload = struct.pack("<II", len(regions), 0) + b"".join(r.describe() for r in regions)
        return self.call(SET_MEM_TABLE, payload, fds=[r.fd for r in regions],
                         need_reply=need_reply)

    def set_vring_num(self, index, num, need_reply=False):
        return self.call(SET_VRING_NUM, STATE.pack(index, num), need_reply=need_reply)

    def set_vring_base(self, index, num, need_reply=False):
        return self.call(SET_VRING_BASE, STATE.pack(index, num), need_reply=need_reply)

    def set_vring_addr(self, index, desc_uva, used_uva, avail_uva, flags=0, log=0,
                       need_reply=False):
        return self.call(SET_VRING_ADDR,
                         VRING_ADDR.pack(index, flags, desc_uva, used_uva, avail_uva, log),
                         need_reply=need_reply)

    def _vring_fd(self, request, index, fd, need_reply):
        if fd is None:
            return self.call(request, struct.pack("<Q", index | VRING_NOFD),
                             need_reply=need_reply)
        return self.call(request, struct.pack("<Q", index), fds=[fd], need_reply=need_reply)

    def set_vring_kick(self, index, fd, need_reply=False):
        return self._vring_fd(SET_VRING_KICK, index, fd, need_reply)

    def set_vring_call(self, index, fd, need_reply=False):
        return self._vring_fd(SET_VRING_CALL, index, fd, need_reply)

    def set_vring_enable(self, index, enable, need_reply=False):
        return self.call(SET_VRING_ENABLE, STATE.pack(index, 1 if enable else 0),
                         need_reply=need_reply)

    def get_vring_base(self, index):
        p = self.call(GET_VRING_BASE, STATE.pack(index, 0), reply=True)
        i, num = STATE.unpack(p)
        if i != index:
            raise VhostUserError("GET_VRING_BASE reply for ring %d, asked %d" % (i, index))
        return num

    def eventfd(self):
        fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.fds.append(fd)
        return fd

    # -- the usual sequence --

    DEFAULT_FEATURES = (bit(VIRTIO_F_VERSION_1) | bit(F_PROTOCOL_FEATURES) | bit(BLK_F_FLUSH)
                        | bit(BLK_F_SEG_MAX) | bit(BLK_F_BLK_SIZE))
    DEFAULT_PF = bit(PF_MQ) | bit(PF_CONFIG) | bit(PF_REPLY_ACK)

    def handshake(self, features=DEFAULT_FEATURES, protocol_features=DEFAULT_PF):
        """GET_FEATURES, GET/SET_PROTOCOL_FEATURES, SET_OWNER, GET_QUEUE_NUM,
        GET_CONFIG, SET_FEATURES. Acks what was offered of @features and
        @protocol_features. Returns (features, queues, config bytes)."""
        offered = self.get_features()
        if not offered & bit(F_PROTOCOL_FEATURES):
            raise VhostUserError("back-end does not offer VHOST_USER_F_PROTOCOL_FEATURES")
        pf = self.get_protocol_features() & protocol_features
        self.set_protocol_features(pf)
        self.set_owner()
        queues = self.get_queue_num() if pf & bit(PF_MQ) else 1
        config = self.get_config(0, 60) if pf & bit(PF_CONFIG) else b""
        self.set_features(offered & features)
        return offered & features, queues, config

    def setup_queue(self, index, mem, size=64, base=0):
        """Lay out a split ring of @size entries in @mem and hand it to the
        back-end: NUM, BASE, ADDR, KICK, CALL, ENABLE."""
        q = Virtqueue(self, mem, index, size, event_idx=bool(self.features &
                                                              bit(VIRTIO_F_EVENT_IDX)))
        q.start(base)
        return q


# ---- a split virtqueue, driver side ----

class Virtqueue:
    def __init__(self, client, mem, index, size, event_idx=False):
        self.c, self.mem, self.index, self.size = client, mem, index, size
        self.event_idx = event_idx
        self.desc = mem.alloc(16 * size, 16)
        self.avail = mem.alloc(4 + 2 * size + 2, 2)
        self.used = mem.alloc(4 + 8 * size + 2, 4)
        mem.write(self.desc, bytes(16 * size))
        mem.write(self.avail, bytes(4 + 2 * size + 2))
        mem.write(self.used, bytes(4 + 8 * size + 2))
        self.free = list(range(size))
        self.chains = {}  # head -> descriptor indices
        self.avail_idx = 0
        self.last_used = 0
        self.kick_fd = client.eventfd()
        self.call_fd = client.eventfd()

    def start(self, base=0):
        c = self.c
        self.avail_idx = self.last_used = base
        self.mem.pack_into("<H", self.avail + 2, base & 0xffff)
        self.mem.pack_into("<H", self.used + 2, base & 0xffff)
        c.set_vring_num(self.index, self.size)
        c.set_vring_base(self.index, base)
        c.set_vring_addr(self.index, self.mem.uva(self.desc), self.mem.uva(self.used),
                         self.mem.uva(self.avail))
        c.set_vring_kick(self.index, self.kick_fd)
        c.set_vring_call(self.index, self.call_fd)
        c.set_vring_enable(self.index, True)

    def add(self, bufs):
        """Make a chain of (gpa, len, device_writable) buffers available.
        Returns its head descriptor index."""
        if len(bufs) > len(self.free):
            raise VhostUserError("ring full")
        idx = [self.free.pop(0) for _ in bufs]
        for i, (gpa, length, writable) in enumerate(bufs):
            flags = (DESC_F_WRITE if writable else 0) | (DESC_F_NEXT if i + 1 < len(bufs) else 0)
            nxt = idx[i + 1] if i + 1 < len(bufs) else 0
            self.mem.pack_into("<QIHH", self.desc + 16 * idx[i], gpa, length, flags, nxt)
        head = idx[0]
        self.chains[head] = idx
        self.mem.pack_into("<H", self.avail + 4 + 2 * (self.avail_idx % self.size), head)
        # Ring entry before index: the mmap stores are done in program order.
        self.avail_idx = (self.avail_idx + 1) & 0xffff
        self.mem.pack_into("<H", self.avail + 2, self.avail_idx)
        return head

    def add_indirect(self, table, bufs):
        """Make (gpa, len, device_writable) buffers available through one
        ring descriptor pointing at an indirect table written at @table."""
        if not self.free:
            raise VhostUserError("ring full")
        for i, (gpa, length, writable) in enumerate(bufs):
            flags = (DESC_F_WRITE if writable else 0) | (DESC_F_NEXT if i + 1 < len(bufs) else 0)
            self.mem.pack_into("<QIHH", table + 16 * i, gpa, length, flags, i + 1)
        head = self.free.pop(0)
        self.mem.pack_into("<QIHH", self.desc + 16 * head, table, 16 * len(bufs),
                           DESC_F_INDIRECT, 0)
        self.chains[head] = [head]
        self.mem.pack_into("<H", self.avail + 4 + 2 * (self.avail_idx % self.size), head)
        self.avail_idx = (self.avail_idx + 1) & 0xffff
        self.mem.pack_into("<H", self.avail + 2, self.avail_idx)
        return head

    def kick(self):
        os.eventfd_write(self.kick_fd, 1)

    def used_idx(self):
        return self.mem.unpack_from("<H", self.used + 2)[0]

    def poll_used(self):
        """Used elements not seen yet: [(head, len)]; their descriptors are
        freed."""
        out = []
        while self.last_used != self.used_idx():
            slot = self.last_used % self.size
            head, length = self.mem.unpack_from("<II", self.used + 4 + 8 * slot)
            if head not in self.chains:
                raise VhostUserError("used ring returns head %d that is not in flight" % head)
            self.free.extend(self.chains.pop(head))
            out.append((head, length))
            self.last_used = (self.last_used + 1) & 0xffff
        if self.event_idx:
            self.mem.pack_into("<H", self.avail + 4 + 2 * self.size, self.last_used)
        return out

    def wait_used(self, count=1, timeout=10.0):
        """Wait on the call eventfd until @count elements were used. Elements
        that show up in the used ring without an interrupt within @timeout
        are an error too: a driver sleeping on the interrupt would hang."""
        got = self.poll_used()
        deadline = time.time() + timeout
        while len(got) < count:
            left = deadline - time.time()
            r, _, _ = select.select([self.call_fd], [], [], max(0.0, left))
            if not r:
                got += self.poll_used()
                raise VhostUserError(
                    "ring %d: %d of %d requests completed within %.0fs (used idx %d)%s"
                    % (self.index, len(got), count, timeout, self.used_idx(),
                       "; the rest arrived without an interrupt" if len(got) >= count else ""))
            try:
                os.eventfd_read(self.call_fd)
            except BlockingIOError:
                pass
            got += self.poll_used()
        return got


# ---- virtio-blk over a queue ----

class BlkError(VhostUserError):
    def __init__(self, status, what):
        super().__init__("%s: status %d" % (what, status))
        self.status = status


class BlkQueue:
    """virtio-blk requests through @q. Each descriptor slot has its own
    header, status byte, indirect table and data buffer of @max_io bytes in
    guest memory. With @indirect (VIRTIO_F_INDIRECT_DESC must have been
    negotiated) a request takes one ring descriptor instead of three."""

    SLOT = 128  # header 16, status at 16, indirect table (3 * 16) at 64

    def __init__(self, q, max_io=128 * 1024, indirect=False):
        self.q, self.mem = q, q.mem
        self.max_io = max_io
        self.indirect = indirect
        self.hdrs = self.mem.alloc(self.SLOT * q.size, 16)
        self.data = self.mem.alloc(max_io * q.size, 4096)
        self.pending = {}  # head -> (type, data gpa, read_len, status gpa)

    def submit(self, rtype, sector=0, data=None, read_len=0, indirect=None):
        """Queue one request without kicking. Returns its head."""
        indirect = self.indirect if indirect is None else indirect
        if len(self.q.free) < (1 if indirect else 3):
            raise VhostUserError("ring full")
        slot = self.q.free[0]
        hdr = self.hdrs + self.SLOT * slot
        status = hdr + 16
        buf = self.data + self.max_io * slot
        self.mem.pack_into("<IIQ", hdr, rtype, 0, sector)
        self.mem.write(status, b"\xff")
        bufs = [(hdr, 16, False)]
        if data:
            if len(data) > self.max_io:
                raise VhostUserError("request larger than max_io")
            self.mem.write(buf, data)
            bufs.append((buf, len(data), False))
        elif read_len:
            bufs.append((buf, read_len, True))
        bufs.append((status, 1, True))
        head = self.q.add_indirect(hdr + 64, bufs) if indirect else self.q.add(bufs)
        if head != slot:
            raise AssertionError("descriptor allocation changed under us")
        self.pending[head] = (rtype, buf, read_len, status)
        return head

    def complete(self, used):
        """Results of used elements: {head: (status, used_len, data)}."""
        out = {}
        for head, length in used:
            rtype, buf, read_len, status = self.pending.pop(head)
            st = self.mem.read(status, 1)[0]
            data = self.mem.read(buf, read_len) if read_len else b""
            out[head] = (st, length, data)
        return out

    def run(self, rtype, sector=0, data=None, read_len=0, timeout=10.0):
        head = self.submit(rtype, sector, data, read_len)
        self.q.kick()
        return self.complete(self.q.wait_used(1, timeout))[head]

    def _ok(self, res, what):
        if res[0] != BLK_S_OK:
            raise BlkError(res[0], what)
        return res

    def write(self, sector, data):
        self._ok(self.run(BLK_T_OUT, sector, data=data), "write at sector %d" % sector)

    def read(self, sector, size):
        st, length, data = self._ok(self.run(BLK_T_IN, sector, read_len=size),
                                    "read at sector %d" % sector)
        if length != size + 1:
            raise VhostUserError("read of %d bytes reported %d used bytes" % (size, length))
        return data

    def flush(self):
        self._ok(self.run(BLK_T_FLUSH), "flush")

    def get_id(self):
        st, length, data = self._ok(self.run(BLK_T_GET_ID, read_len=20), "get-id")
        return data[:max(0, length - 1)].rstrip(b"\0")


def connect_blk(path, mem_size=8 << 20, qsize=64, max_io=64 * 1024, split=1, **handshake):
    """Connect, handshake, share memory, set up queue 0: (client, mem, BlkQueue)."""
    c = VhostUserClient(path)
    try:
        c.handshake(**handshake)
        mem = GuestMemory(mem_size, split=split)
        c.set_mem_table(mem)
        q = c.setup_queue(0, mem, size=qsize)
        return c, mem, BlkQueue(q, max_io=max_io)
    except BaseException:
        c.close()
        raise
