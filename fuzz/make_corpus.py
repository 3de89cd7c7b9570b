#!/usr/bin/env python3
"""Write the small seed corpora of the libFuzzer targets to fuzz/corpus/<target>/.

Each seed is a valid or nearly valid input in the format the target's header
comment describes, so the fuzzers start from deep paths (a whole vhost-user
session with I/O, a ring with requests) instead of from nothing.
Run from anywhere: fuzz/make_corpus.py  (rewrites the seed files, keeps others).
"""

import struct
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# ---- fuzz_opts ----

def opts():
    seeds = {
        "blk_file": "id=disk0,path=/tmp/a,,b.img,socket=/tmp/s.sock,readonly,queues=4,"
                    "queue-size=256,blksize=4K,serial=SN1",
        "blk_null": "id=n0,socket=/tmp/n.sock,backend=null,size=1G,direct=off",
        "escapes": "a=1,,,b,c=,,,,x=y=z",
        "bools": "x=on,y=off,z=yes,w=no,v=true,u=false,t=1,s=0,flag",
        "sizes": "a=0,b=18446744073709551615,c=16777215T,d=1KiB,e=2MB,f=-1",
    }
    for name, s in seeds.items():
        write("fuzz_opts", name, s)


# ---- fuzz_rpc ----

def rpc():
    seeds = {
        "request": '{"jsonrpc":"2.0","method":"device.list","params":{"id":"d0"},"id":1}',
        "error": '{"jsonrpc":"2.0","method":"device.stats","params":{"id":"x"},"id":"s"}',
        "batch": '[{"jsonrpc":"2.0","method":"x","id":1},{"jsonrpc":"2.0","method":"help"},'
                 '{"jsonrpc":"2.0","method":"nope","id":null},1,[]]',
        "notification": '{"jsonrpc":"2.0","method":"device.list","params":[1,2.5,"\\u00e9"]}',
        "bad": '{"jsonrpc":"1.0","method":7,"params":3,"id":true}',
    }
    for name, s in seeds.items():
        write("fuzz_rpc", name, s)


# ---- fuzz_virtq (layout in fuzz/fuzz_virtq.c) ----

TMEM_BASE = 0x100000
AREA = 0x3000
F_EVENT_IDX, F_INDIRECT, F_SPLIT, F_HOLE, F_REBASE, F_REVERSE = 1, 2, 4, 8, 16, 32
NEXT, WRITE, INDIRECT = 1, 2, 4


def desc(addr, length, flags, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def virtq_input(log2, flags, descs, heads, area=b"", actions=b"", max_iov=16, rounds=2,
                last_avail=0, used_idx=0):
    n = 1 << log2
    hdr = bytes([log2, flags, max_iov - 1, rounds - 1]) + \
        struct.pack("<HHH", last_avail, used_idx, len(area))
    table = b"".join(descs).ljust(16 * n, b"\0")
    avail = struct.pack("<HH", 0, (last_avail + len(heads)) & 0xffff)
    ring = [0] * n
    for i, h in enumerate(heads):
        ring[(last_avail + i) % n] = h
    avail += struct.pack("<%dH" % n, *ring) + struct.pack("<H", 0)
    return hdr + table + avail + area + actions


def virtq():
    data = TMEM_BASE + 0x9000
    # Two requests: header, data, status; a read with its data writable.
    write("fuzz_virtq", "chains", virtq_input(3, F_EVENT_IDX, [
        desc(data, 16, NEXT, 1), desc(data + 0x100, 512, NEXT, 2), desc(data + 0x400, 1, WRITE),
        desc(data + 0x10, 16, NEXT, 4), desc(data + 0x600, 512, WRITE | NEXT, 5),
        desc(data + 0x401, 1, WRITE),
    ], [0, 3], actions=b"\x02\x01"))
    # An indirect table in the indirect area.
    table = desc(data, 16, NEXT, 1) + desc(data + 0x200, 4096, WRITE | NEXT, 2) + \
        desc(data + 0x1400, 1, WRITE)
    write("fuzz_virtq", "indirect", virtq_input(2, F_INDIRECT, [
        desc(TMEM_BASE + AREA, len(table), INDIRECT),
    ], [0], area=table))
    # Two regions: a buffer across the boundary at 32 KiB must be split.
    write("fuzz_virtq", "split", virtq_input(4, F_SPLIT | F_REVERSE, [
        desc(data, 16, NEXT, 1), desc(TMEM_BASE + 0x7f00, 0x200, WRITE | NEXT, 2),
        desc(data + 0x300, 1, WRITE),
    ], [0, 0], max_iov=4))
    # A loop, and wrapped indices.
    write("fuzz_virtq", "loop", virtq_input(1, F_SPLIT | F_HOLE, [
        desc(data, 16, NEXT, 1), desc(data, 16, NEXT, 0),
    ], [0], last_avail=0xffff, used_idx=0xfffe))
    # Rebased random-ish bytes.
    write("fuzz_virtq", "rebase",
          bytes([5, F_REBASE | F_INDIRECT | F_EVENT_IDX, 8, 3, 0, 0, 0, 0, 0, 1])
          + bytes((i * 37 + 11) & 0xff for i in range(1200)))


# ---- fuzz_vu_msg (script format in fuzz/fuzz_vu_msg.c) ----

VU_VERSION, NEED_REPLY = 1, 8
GPA, UVA, MEM_PAGES = 0x40000000, 0x7f1200000000, 4
QSIZE = 8
DESC_OFF, AVAIL_OFF, USED_OFF = 0x0, 0x100, 0x200
PF = (1 << 0) | (1 << 3) | (1 << 9) | (1 << 13) | (1 << 15) | (1 << 16)
FEATURES = (1 << 32) | (1 << 30) | (1 << 9) | (1 << 28) | (1 << 29)


def msg(req, payload=b"", flags=VU_VERSION):
    return struct.pack("<III", req, flags, len(payload)) + payload


def op_send(data):
    return bytes([0]) + struct.pack("<H", len(data)) + data


def op_memfd(pages, content):
    return bytes([1, pages - 1]) + struct.pack("<H", len(content)) + content


def op_eventfd():
    return bytes([2])


def op_poke(idx, off, data):
    return bytes([3, idx]) + struct.pack("<HB", off, len(data)) + data


def op_kick(idx):
    return bytes([4, idx])


def discard_memory():
    """Rings with a discard and a write-zeroes (with unmap) request."""
    mem = bytearray(0x380)
    hdr_d, hdr_z, status, seg_d, seg_z = 0x300, 0x310, 0x320, 0x330, 0x340
    struct.pack_into("<IIQ", mem, hdr_d, 11, 0, 0)
    struct.pack_into("<IIQ", mem, hdr_z, 13, 0, 0)
    struct.pack_into("<QII", mem, seg_d, 8, 8, 0)
    struct.pack_into("<QII", mem, seg_z, 16, 8, 1)
    chain = [desc(GPA + hdr_d, 16, NEXT, 1), desc(GPA + seg_d, 16, NEXT, 2),
             desc(GPA + status, 1, WRITE),
             desc(GPA + hdr_z, 16, NEXT, 4), desc(GPA + seg_z, 16, NEXT, 5),
             desc(GPA + status + 1, 1, WRITE)]
    for i, d in enumerate(chain):
        mem[DESC_OFF + 16 * i:DESC_OFF + 16 * i + 16] = d
    struct.pack_into("<HHHH", mem, AVAIL_OFF, 0, 2, 0, 3)
    return bytes(mem)


def guest_memory(indirect=False):
    """Rings of QSIZE entries with a write and a read of sector 0. Only the
    rings and headers are sent; the rest of the memfd (the data) is zero."""
    mem = bytearray(0x380)
    hdr_w, hdr_r, status, table = 0x300, 0x310, 0x320, 0x340
    data_w, data_r = 0x400, 0x800
    struct.pack_into("<IIQ", mem, hdr_w, 1, 0, 0)
    struct.pack_into("<IIQ", mem, hdr_r, 0, 0, 0)
    if indirect:
        for i, d in enumerate([desc(GPA + hdr_w, 16, NEXT, 1), desc(GPA + data_w, 512, NEXT, 2),
                               desc(GPA + status, 1, WRITE)]):
            mem[table + 16 * i:table + 16 * i + 16] = d
        mem[DESC_OFF:DESC_OFF + 16] = desc(GPA + table, 48, INDIRECT)
        heads = [0]
    else:
        chain = [desc(GPA + hdr_w, 16, NEXT, 1), desc(GPA + data_w, 512, NEXT, 2),
                 desc(GPA + status, 1, WRITE),
                 desc(GPA + hdr_r, 16, NEXT, 4), desc(GPA + data_r, 512, WRITE | NEXT, 5),
                 desc(GPA + status + 1, 1, WRITE)]
        for i, d in enumerate(chain):
            mem[DESC_OFF + 16 * i:DESC_OFF + 16 * i + 16] = d
        heads = [0, 3]
    struct.pack_into("<HH", mem, AVAIL_OFF, 0, len(heads))
    for i, h in enumerate(heads):
        struct.pack_into("<H", mem, AVAIL_OFF + 4 + 2 * i, h)
    return bytes(mem)


def session(indirect=False, extra=b"", memory=None, features=FEATURES):
    s = b""
    s += op_send(msg(1))                                   # GET_FEATURES
    s += op_send(msg(15))                                  # GET_PROTOCOL_FEATURES
    s += op_send(msg(16, struct.pack("<Q", PF)))           # SET_PROTOCOL_FEATURES
    s += op_send(msg(3))                                   # SET_OWNER
    s += op_send(msg(17))                                  # GET_QUEUE_NUM
    s += op_send(msg(24, struct.pack("<III", 0, 72, 0) + bytes(72)))  # GET_CONFIG
    s += op_send(msg(2, struct.pack("<Q", features)))      # SET_FEATURES
    s += op_memfd(MEM_PAGES, memory if memory is not None else guest_memory(indirect))
    s += op_send(msg(5, struct.pack("<II", 1, 0) +         # SET_MEM_TABLE
                     struct.pack("<QQQQ", GPA, MEM_PAGES * 4096, UVA, 0)))
    s += op_send(msg(8, struct.pack("<II", 0, QSIZE)))     # SET_VRING_NUM
    s += op_send(msg(10, struct.pack("<II", 0, 0)))        # SET_VRING_BASE
    s += op_send(msg(9, struct.pack("<IIQQQQ", 0, 0, UVA + DESC_OFF, UVA + USED_OFF,
                                    UVA + AVAIL_OFF, 0)))  # SET_VRING_ADDR
    s += op_eventfd()
    s += op_send(msg(12, struct.pack("<Q", 0)))            # SET_VRING_KICK
    s += op_eventfd()
    s += op_send(msg(13, struct.pack("<Q", 0)))            # SET_VRING_CALL
    s += op_send(msg(18, struct.pack("<II", 0, 1)))        # SET_VRING_ENABLE
    s += op_kick(0)
    s += extra
    s += op_send(msg(11, struct.pack("<II", 0, 0)))        # GET_VRING_BASE
    return s


def vu_msg():
    write("fuzz_vu_msg", "session", session())
    write("fuzz_vu_msg", "indirect", session(indirect=True))
    # More requests published by poking the avail ring, then a kick.
    write("fuzz_vu_msg", "poke", session(extra=op_poke(0, AVAIL_OFF + 2, struct.pack("<HH", 3, 0))
                                         + op_kick(0)))
    # Failing requests that ask for an ack, a memory slot added and removed.
    extra = op_send(msg(8, struct.pack("<II", 0, 3), VU_VERSION | NEED_REPLY))
    extra += op_send(msg(24, struct.pack("<III", 250, 10, 0) + bytes(10)))
    extra += op_memfd(1, b"")
    extra += op_send(msg(37, struct.pack("<Q", 0) + struct.pack("<QQQQ", 0x1000, 4096, 0x5000, 0)))
    extra += op_send(msg(38, struct.pack("<Q", 0) + struct.pack("<QQQQ", 0x1000, 4096, 0x5000, 0)))
    extra += op_send(msg(36)) + op_send(msg(40)) + op_send(msg(39, struct.pack("<Q", 15)))
    write("fuzz_vu_msg", "acks_and_slots", session(extra=extra))
    # A message split across writes, then a reset, a refused second
    # front-end and a reconnect.
    m = msg(1)
    write("fuzz_vu_msg", "split_reconnect",
          op_send(m[:5]) + bytes([5]) + op_send(m[5:]) + bytes([6, 1]) + bytes([6, 0])
          + session(extra=op_send(msg(34))))
    # Discard and write zeroes, negotiated.
    write("fuzz_vu_msg", "discard",
          session(memory=discard_memory(), features=FEATURES | (1 << 13) | (1 << 14)))


# ---- fuzz_offload (layout in fuzz/fuzz_offload.c) ----

def csum16(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s


def offload_frame(v6, proto, payload, tcp_flags=0x18):
    """An Ethernet frame as Linux sends it with NEEDS_CSUM; returns it and
    the offset of its TCP/UDP header."""
    eth = bytes.fromhex("525400123402525400123401") + struct.pack("!H", 0x86dd if v6 else 0x0800)
    data = bytes((i * 31 + 7) & 0xff for i in range(payload))
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", 40000, 5201, 1000, 1, 5 << 4, tcp_flags, 65535, 0, 0)
    else:
        l4 = struct.pack("!HHHH", 5353, 4789, 8 + payload, 0)
    l4len = len(l4) + payload
    if v6:
        src, dst = bytes(range(0xf0, 0x100)), bytes(range(16))
        ip = struct.pack("!IHBB", 0x60000000, l4len, proto, 64) + src + dst
        pseudo = src + dst + struct.pack("!II", l4len, proto)
    else:
        src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + l4len, 0x1234, 0x4000, 64, proto, 0) + src + dst
        ip = ip[:10] + struct.pack("!H", 0xffff - csum16(ip)) + ip[12:]
        pseudo = src + dst + struct.pack("!BBH", 0, proto, l4len)
    at = 16 if proto == 6 else 6
    l4 = l4[:at] + struct.pack("!H", csum16(pseudo)) + l4[at + 2:]
    return eth + ip + l4 + data, len(eth) + len(ip), len(eth) + len(ip) + len(l4)


def offload_input(frame, l4, hdr_len, gso_type, gso_size, caps, flags=1, scatter=3, helpers=0,
                  csum_offset=None):
    if csum_offset is None:
        csum_offset = 6 if gso_type in (3, 5) else 16
    return struct.pack("<BBHHHHBBB", flags, gso_type, hdr_len, gso_size, l4, csum_offset, caps,
                       scatter, helpers) + frame


def offload():
    f, l4, hl = offload_frame(False, 6, 300, 0x99)  # FIN PSH ACK CWR
    write("fuzz_offload", "tso4", offload_input(f, l4, hl, 1, 100, 0))
    write("fuzz_offload", "tso4_partial", offload_input(f, l4, hl, 1, 77, 1, scatter=9))
    write("fuzz_offload", "tso4_stop", offload_input(f, l4, hl, 1, 50, 0, scatter=0x22))
    f, l4, hl = offload_frame(True, 6, 250, 0xd0)
    write("fuzz_offload", "tso6_ecn", offload_input(f, l4, hl, 0x84, 100, 1 | 4, scatter=5))
    write("fuzz_offload", "tso6_pass", offload_input(f, l4, hl, 0x84, 100, 0x3f))
    f, l4, hl = offload_frame(False, 17, 260)
    write("fuzz_offload", "uso4", offload_input(f, l4, hl, 5, 100, 0, scatter=7))
    write("fuzz_offload", "ufo4", offload_input(f, l4, hl, 3, 96, 1, scatter=1))
    f, l4, hl = offload_frame(True, 17, 260)
    write("fuzz_offload", "uso6", offload_input(f, l4, hl, 5, 64, 1, scatter=13))
    f, l4, hl = offload_frame(False, 6, 40)
    write("fuzz_offload", "csum_tcp4", offload_input(f, l4, 0, 0, 0, 0, scatter=2))
    f, l4, hl = offload_frame(True, 17, 41)
    write("fuzz_offload", "csum_udp6", offload_input(f, l4, 0, 0, 0, 0, scatter=11))
    # Lengths left for the helpers to fix, as a mutated frame would have them.
    f, l4, hl = offload_frame(False, 6, 120)
    f = f[:16] + b"\0\0" + f[18:]
    write("fuzz_offload", "tso4_helped", offload_input(f, 0, 0, 1, 40, 0, helpers=7))


# ---- fuzz_virtio_scsi (layout in fuzz/fuzz_virtio_scsi.c) ----

VS_LUNS = {(0, 0): 0, (1, 5): 1, (2, 0): 2, (3, 0): 3}


def vs_lun(target, lun):
    return bytes([1, target, 0x40 | (lun >> 8), lun & 0xff, 0, 0, 0, 0])


def vs_req(target, lun, cdb, data=b""):
    return vs_lun(target, lun) + struct.pack("<QBBB", 0x5a, 0, 0, 0) + cdb.ljust(32, b"\0") + data


def vs_chain(q, bufs, content, lun=None, kick=True):
    """q: 0/1 request queue, "ctrl"; bufs: (length, writable) pairs."""
    op = 2 if q == "ctrl" else q
    n = (len(bufs) - 1) | (0 if kick else 0x40)
    if lun is not None:
        n |= 0x08 | VS_LUNS[lun] << 4
    out = bytes([op, n])
    for length, w in bufs:
        out += struct.pack("<HB", length, 1 if w else 0)
    return out + struct.pack("<H", len(content)) + content


def vs_rw10(write, lba, blocks):
    return bytes([0x2a if write else 0x28, 0]) + struct.pack(">IBH", lba, 0, blocks) + b"\0"


def vs_tmf(subtype, target, lun):
    return struct.pack("<II", 0, subtype) + vs_lun(target, lun) + struct.pack("<Q", 0x5a)


def virtio_scsi():
    t = "fuzz_virtio_scsi"
    complete, complete_eio, hotplug, kick_all = b"\x04\x00", b"\x04\x01", b"\x05", b"\x07"
    inquiry = bytes([0x12, 0, 0, 0, 96, 0])
    write(t, "inquiry", b"\x01" + vs_chain(0, [(51, 0), (108, 1), (96, 1)],
                                                        vs_req(0, 0, inquiry)))
    write(t, "write_read", b"\x01" +
          vs_chain(0, [(51, 0), (1024, 0), (108, 1)], vs_req(1, 5, vs_rw10(True, 0, 2),
                                                              b"\x11" * 1024)) + complete +
          vs_chain(1, [(51, 0), (108, 1), (512, 1), (512, 1)],
                   vs_req(1, 5, vs_rw10(False, 0, 2))) + complete_eio +
          vs_chain(0, [(51, 0), (108, 1), (4096, 1)], vs_req(0, 0, vs_rw10(False, 7, 1))))
    write(t, "tmf_wait", b"\x00" +
          vs_chain(0, [(51, 0), (512, 0), (108, 1)], vs_req(1, 5, vs_rw10(True, 3, 1),
                                                             b"\x22" * 512)) +
          vs_chain(1, [(51, 0), (108, 1), (512, 1)], vs_req(1, 5, vs_rw10(False, 3, 1))) +
          vs_chain("ctrl", [(24, 0), (1, 1)], vs_tmf(5, 1, 5)) +
          vs_chain("ctrl", [(24, 0), (1, 1)], vs_tmf(0, 1, 5)) +
          vs_chain("ctrl", [(24, 0), (1, 1)], vs_tmf(4, 1, 0)) +
          vs_chain("ctrl", [(24, 0), (1, 1)], vs_tmf(5, 0, 0)) +
          vs_chain("ctrl", [(24, 0), (1, 1)], vs_tmf(2, 0, 0)) + complete)
    write(t, "hotplug", b"\x01" + b"\x03\x03" + hotplug + hotplug +
          vs_chain(0, [(51, 0), (108, 1), (36, 1)], vs_req(2, 0, bytes([0x12, 0, 0, 0, 36, 0]))) +
          hotplug + b"\x03\x00" + hotplug + b"\x03\x85")
    report = bytes([0xa0, 0, 0, 0, 0, 0]) + struct.pack(">I", 1024) + b"\0\0"
    write(t, "report_luns", b"\x00" +
          vs_chain(1, [(51, 0), (108, 1), (1024, 1)], vs_req(0, 1, report)) +
          vs_chain(0, [(51, 0), (108, 1)], vs_req(3, 0, b"\0" * 6)) +
          vs_chain(0, [(51, 0), (108, 1)], vs_req(0, 1, b"\0" * 6)))
    # cdb_size 16, sense_size 32: a 35-byte header and a 44-byte response.
    write(t, "config", b"\x00" + b"\x06\x18" + struct.pack("<I", 16) +
          b"\x06\x14" + struct.pack("<I", 32) +
          vs_chain(0, [(35, 0), (44, 1), (96, 1)], vs_req(0, 0, inquiry)[:35]) +
          b"\x06\x14" + struct.pack("<I", 7))
    write(t, "an_query", b"\x00" +
          vs_chain("ctrl", [(16, 0), (5, 1)], struct.pack("<I", 1) + vs_lun(0, 0) +
                   struct.pack("<I", 0xff)) +
          vs_chain("ctrl", [(16, 0), (5, 1)], struct.pack("<I", 9) + vs_lun(0, 0)) +
          vs_chain("ctrl", [(12, 0), (1, 1)], vs_tmf(5, 0, 0)[:12]))
    params = struct.pack(">HH4x", 6 + 32, 32) + struct.pack(">QI4x", 0, 8) + \
        struct.pack(">QI4x", 100, 16)
    unmap = bytes([0x42, 0, 0, 0, 0, 0, 0]) + struct.pack(">H", len(params)) + b"\0"
    write(t, "unmap", b"\x00" +
          vs_chain(0, [(51, 0), (len(params), 0), (108, 1)], vs_req(1, 5, unmap, params)) +
          complete + complete +
          vs_chain(1, [(51, 0), (len(params), 0), (108, 1)], vs_req(1, 5, unmap, params)) +
          vs_chain("ctrl", [(24, 0), (1, 1)], vs_tmf(1, 1, 5)) + complete_eio + complete)
    write(t, "bad_shapes", b"\x02" +
          vs_chain(0, [(51, 0), (512, 0), (108, 1), (512, 1)],
                   vs_req(0, 0, vs_rw10(True, 0, 1))) +
          vs_chain(0, [(40, 0), (108, 1)], vs_req(0, 0, inquiry)) +
          vs_chain(1, [(51, 0)] + [(20, 1)] * 7, vs_req(0, 0, inquiry)) +
          vs_chain(0, [(51, 0), (100, 1)], vs_req(0, 0, inquiry)) + kick_all)


def main():
    opts()
    rpc()
    virtq()
    vu_msg()
    offload()
    virtio_scsi()
    for d in sorted(CORPUS.iterdir()):
        print("%s: %d seeds" % (d.relative_to(CORPUS.parent), len(list(d.iterdir()))))


if __name__ == "__main__":
    main()
