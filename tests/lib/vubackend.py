"""A minimal vhost-user back-end (the device side) for tests, Python stdlib only.

It listens on a Unix socket, answers the front-end's set-up (features,
protocol features with REPLY_ACK, memory table, rings, eventfds), maps the
shared memory, and then lets the test act as a misbehaving device: read what
the driver posted, write any used entries and buffer contents, and signal
the call eventfd. For testing front-ends (vio's vhost-user uplink, vio
bench) against a peer that lies.

Protocol: QEMU docs/interop/vhost-user.rst; rings: VIRTIO 1.2 section 2.7.
"""

import array
import mmap
import os
import socket
import struct
import threading

GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE = 15, 16, 17, 18
GET_CONFIG = 24

F_PROTOCOL_FEATURES = 1 << 30
PF_MQ, PF_REPLY_ACK = 1 << 0, 1 << 3
FLAG_VERSION, FLAG_REPLY, FLAG_NEED_REPLY = 0x1, 0x4, 0x8
HDR = struct.Struct("<III")


class Ring:
    def __init__(self, be, index):
        self.be, self.index = be, index
        self.num = 0
        self.desc = self.used = self.avail = None   # front-end user addresses
        self.kick = self.call = None
        self.enabled = False
        self.last_avail = 0
        self.used_idx = 0

    # Ring memory, through the front-end's user addresses.
    def avail_idx(self):
        return self.be.u16(self.avail + 2)

    def avail_head(self, slot):
        return self.be.u16(self.avail + 4 + 2 * (slot % self.num))

    def desc_entry(self, i):
        return struct.unpack("<QIHH", self.be.read_uva(self.desc + 16 * i, 16))

    def take(self):
        """The next available chain's head and its first buffer (gpa, len),
        or None."""
        if self.last_avail == self.avail_idx():
            return None
        head = self.avail_head(self.last_avail)
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        addr, length, _flags, _next = self.desc_entry(head)
        return head, addr, length

    def push_used(self, head, length):
        slot = self.used_idx % self.num
        self.be.write_uva(self.used + 4 + 8 * slot, struct.pack("<II", head, length))
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        self.be.write_uva(self.used + 2, struct.pack("<H", self.used_idx))

    def notify(self):
        os.write(self.call, struct.pack("<Q", 1))


class EvilBackend:
    """Serve one front-end on @path in a thread; the test then drives the
    rings by hand (Ring.take, Ring.push_used, write_gpa, Ring.notify)."""

    def __init__(self, path, features, queues=2, reply_ack=True):
        self.path = str(path)
        self.features = features | F_PROTOCOL_FEATURES
        self.queues = queues
        self.pf = PF_MQ | (PF_REPLY_ACK if reply_ack else 0)
        self.regions = []   # (gpa, size, uva, mmap)
        self.rings = [Ring(self, i) for i in range(queues)]
        self.acked = None
        self.error = None
        self.ready = threading.Event()
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.srv.bind(self.path)
        self.srv.listen(1)
        self.conn = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    # ---- memory ----
    def _find(self, addr, size, key):
        for gpa, rsize, uva, m in self.regions:
            base = gpa if key == "gpa" else uva
            if base <= addr and addr + size <= base + rsize:
                return m, addr - base
        raise ValueError("address %#x+%d outside the memory table" % (addr, size))

    def read_uva(self, uva, size):
        m, off = self._find(uva, size, "uva")
        return bytes(m[off:off + size])

    def write_uva(self, uva, data):
        m, off = self._find(uva, len(data), "uva")
        m[off:off + len(data)] = data

    def write_gpa(self, gpa, data):
        m, off = self._find(gpa, len(data), "gpa")
        m[off:off + len(data)] = data

    def u16(self, uva):
        return struct.unpack("<H", self.read_uva(uva, 2))[0]

    # ---- protocol ----
    def _recv(self):
        hdr, anc, _mflags, _addr = self.conn.recvmsg(HDR.size, socket.CMSG_SPACE(8 * 4))
        if len(hdr) < HDR.size:
            return None
        fdl = []
        req, flags, size = HDR.unpack(hdr)
        payload = b""
        while len(payload) < size:
            chunk = self.conn.recv(size - len(payload))
            if not chunk:
                return None
            payload += chunk
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(data[:len(data) - (len(data) % a.itemsize)])
                fdl.extend(a)
        return req, flags, payload, fdl

    def _reply(self, req, payload):
        self.conn.sendall(HDR.pack(req, FLAG_VERSION | FLAG_REPLY, len(payload)) + payload)

    def _serve(self):
        try:
            self.conn, _ = self.srv.accept()
            while True:
                m = self._recv()
                if m is None:
                    return
                self._handle(*m)
        except Exception as e:  # noqa: B902 - the test reads it
            self.error = e

    def _handle(self, req, flags, payload, fds):
        ack = True
        if req == GET_FEATURES:
            self._reply(req, struct.pack("<Q", self.features))
            return
        if req == GET_PROTOCOL_FEATURES:
            self._reply(req, struct.pack("<Q", self.pf))
            return
        if req == GET_QUEUE_NUM:
            self._reply(req, struct.pack("<Q", self.queues))
            return
        if req == SET_FEATURES:
            self.acked = struct.unpack("<Q", payload[:8])[0]
        elif req == SET_MEM_TABLE:
            n = struct.unpack("<I", payload[:4])[0]
            for i in range(n):
                gpa, size, uva, off = struct.unpack("<QQQQ", payload[8 + 32 * i:40 + 32 * i])
                m = mmap.mmap(fds[i], size + off, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
                self.regions.append((gpa, size, uva, memoryview(m)[off:off + size]))
                os.close(fds[i])
        elif req == SET_VRING_NUM:
            i, num = struct.unpack("<II", payload[:8])
            self.rings[i].num = num
        elif req == SET_VRING_BASE:
            i, num = struct.unpack("<II", payload[:8])
            self.rings[i].last_avail = num
        elif req == SET_VRING_ADDR:
            i, _f, desc, used, avail, _log = struct.unpack("<IIQQQQ", payload[:40])
            r = self.rings[i]
            r.desc, r.used, r.avail = desc, used, avail
        elif req in (SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR):
            v = struct.unpack("<Q", payload[:8])[0]
            fd = fds[0] if fds else None
            r = self.rings[v & 0xFF]
            if req == SET_VRING_KICK:
                r.kick = fd
            elif req == SET_VRING_CALL:
                r.call = fd
            elif fd is not None:
                os.close(fd)
        elif req == SET_VRING_ENABLE:
            i, num = struct.unpack("<II", payload[:8])
            self.rings[i].enabled = bool(num)
            if all(r.enabled for r in self.rings):
                self.ready.set()
        elif req == GET_VRING_BASE:
            i = struct.unpack("<I", payload[:4])[0]
            self._reply(req, struct.pack("<II", i, self.rings[i].last_avail))
            return
        elif req in (SET_OWNER, SET_PROTOCOL_FEATURES, RESET_OWNER):
            pass
        else:
            ack = False
        if flags & FLAG_NEED_REPLY:
            self._reply(req, struct.pack("<Q", 0 if ack else 1))

    def close(self):
        for s in (self.conn, self.srv):
            try:
                if s:
                    s.close()
            except OSError:
                pass
        try:
            os.unlink(self.path)
        except OSError:
            pass
