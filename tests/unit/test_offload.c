/* Unit tests of software offload finishing (src/net/offload.c): checksum
 * helpers against a byte-at-a-time reference, zero-copy pass-through,
 * checksum completion, TSO/USO segmentation and UFO fragmentation of real
 * TCP/UDP over IPv4/IPv6 frames scattered at odd boundaries (every emitted
 * frame re-parsed and its checksums recomputed here), malformed input
 * refused with nothing emitted, and early stop on emit's return value. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/offload.h"

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_ECE 0x40
#define TCP_CWR 0x80

#define ALL_CAPS                                                                                   \
    (VIO_NET_CAP_CSUM | VIO_NET_CAP_TSO4 | VIO_NET_CAP_TSO6 | VIO_NET_CAP_TSO_ECN |                \
     VIO_NET_CAP_UFO | VIO_NET_CAP_USO)

static struct vio_net_scratch scratch;

/* ---- independent reference checksum: 16-bit big-endian words, one by one ---- */

/* Folded (16-bit) but not inverted ones' complement sum of @n bytes. */
static uint16_t ref_sum(const uint8_t *p, size_t n, uint16_t start)
{
    uint64_t s = start;

    for (size_t i = 0; i < n; i++)
        s += i % 2 ? p[i] : (uint64_t)p[i] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

static uint16_t ref_add(uint16_t a, uint16_t b)
{
    uint32_t s = (uint32_t)a + b;

    return (uint16_t)((s & 0xffff) + (s >> 16));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* Pseudo-header sum, built as the bytes RFC 793 / RFC 8200 describe. */
static uint16_t ref_pseudo(const uint8_t *f, uint8_t proto, uint32_t l4len)
{
    uint8_t ph[40];
    size_t n;

    if (get16(f + 12) == VIO_ETH_P_IPV6) {
        memcpy(ph, f + 14 + 8, 32);
        put32(ph + 32, l4len);
        ph[36] = ph[37] = ph[38] = 0;
        ph[39] = proto;
        n = 40;
    } else {
        memcpy(ph, f + 14 + 12, 8);
        ph[8] = 0;
        ph[9] = proto;
        put16(ph + 10, (uint16_t)l4len);
        n = 12;
    }
    return ref_sum(ph, n, 0);
}

/* Offset of the TCP/UDP header of a well-formed frame, and its protocol. */
static uint32_t l4_of(const uint8_t *f, uint8_t *proto)
{
    if (get16(f + 12) == VIO_ETH_P_IPV6) {
        *proto = f[14 + 6];
        return 14 + 40;
    }
    *proto = f[14 + 9];
    return 14 + (f[14] & 15u) * 4;
}

/* The TCP/UDP checksum of a complete frame verifies. */
static void assert_l4_csum_ok(const uint8_t *f, uint32_t len)
{
    uint8_t proto;
    uint32_t l4 = l4_of(f, &proto);
    uint16_t s = ref_add(ref_pseudo(f, proto, len - l4), ref_sum(f + l4, len - l4, 0));

    assert_int_equal(s, 0xffff);
    if (proto == 17)
        assert_int_not_equal(get16(f + l4 + 6), 0);
}

/* Complete a NEEDS_CSUM frame as a receiver would (reference arithmetic). */
static void ref_finish(uint8_t *f, uint32_t len, const struct vio_net_offload *o)
{
    uint16_t c = (uint16_t)~ref_sum(f + o->csum_start, len - o->csum_start, 0);

    put16(f + o->csum_start + o->csum_offset, c ? c : 0xffff);
}

/* ---- frames ---- */

struct spec {
    bool v6;
    uint8_t proto;     /* 6 or 17 */
    uint32_t payload;  /* bytes after the TCP/UDP header */
    unsigned ip_opts;  /* IPv4 option bytes (multiple of 4) */
    unsigned tcp_opts; /* TCP option bytes (multiple of 4) */
    uint8_t tcp_flags;
    uint32_t seq;
    uint16_t id;
    uint8_t gso_type;
    uint16_t gso_size;
};

static uint8_t payload_byte(uint32_t i)
{
    return (uint8_t)(i * 31 + (i >> 8) + 7);
}

/* Build the frame @s describes into @f as Linux would send it: NEEDS_CSUM
 * with the pseudo-header sum in the checksum field. Returns its length. */
static uint32_t build(uint8_t *f, const struct spec *s, struct vio_net_offload *off)
{
    static const uint8_t dst[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x02};
    static const uint8_t src[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x01};
    uint32_t l3 = 14, l4, l4h, len;
    uint8_t *ip = f + l3, *th;

    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    l4h = s->proto == 6 ? 20 + s->tcp_opts : 8;
    if (s->v6) {
        l4 = l3 + 40;
        len = l4 + l4h + s->payload;
        put16(f + 12, VIO_ETH_P_IPV6);
        put32(ip, 0x60000000u | 0xabcde);
        put16(ip + 4, (uint16_t)(len - l4));
        ip[6] = s->proto;
        ip[7] = 64;
        for (int i = 0; i < 16; i++) {
            ip[8 + i] = (uint8_t)(i == 0 ? 0xfd : 0x11 * i + 1);
            ip[24 + i] = (uint8_t)(i == 0 ? 0xfd : 0xff - 3 * i);
        }
    } else {
        uint32_t ihl = 20 + s->ip_opts;

        l4 = l3 + ihl;
        len = l4 + l4h + s->payload;
        put16(f + 12, VIO_ETH_P_IP);
        ip[0] = (uint8_t)(0x40 | ihl / 4);
        ip[1] = 0;
        put16(ip + 2, (uint16_t)(len - l3));
        put16(ip + 4, s->id);
        put16(ip + 6, 0x4000); /* DF */
        ip[8] = 64;
        ip[9] = s->proto;
        put16(ip + 10, 0);
        put32(ip + 12, 0x0a000001);
        put32(ip + 16, 0xc0a80102);
        memset(ip + 20, 1, s->ip_opts); /* NOPs */
        put16(ip + 10, (uint16_t)~ref_sum(ip, ihl, 0));
    }
    th = f + l4;
    if (s->proto == 6) {
        put16(th, 40000);
        put16(th + 2, 5201);
        put32(th + 4, s->seq);
        put32(th + 8, 0x11223344);
        th[12] = (uint8_t)((l4h / 4) << 4);
        th[13] = s->tcp_flags;
        put16(th + 14, 0xffff);
        put16(th + 16, 0);
        put16(th + 18, 0);
        for (unsigned i = 0; i < s->tcp_opts; i++)
            th[20 + i] = (uint8_t)(i < 2 ? 1 : 0x30 + i); /* NOP NOP then junk-ish */
        if (s->tcp_opts >= 12) {
            th[22] = 8; /* timestamp option, length 10 */
            th[23] = 10;
        }
    } else {
        put16(th, 5353);
        put16(th + 2, 4789);
        put16(th + 4, (uint16_t)(len - l4));
        put16(th + 6, 0);
    }
    for (uint32_t i = 0; i < s->payload; i++)
        f[l4 + l4h + i] = payload_byte(i);
    memset(off, 0, sizeof(*off));
    off->flags = VIO_NET_HDR_F_NEEDS_CSUM;
    off->csum_start = (uint16_t)l4;
    off->csum_offset = s->proto == 6 ? 16 : 6;
    off->hdr_len = (uint16_t)(l4 + l4h);
    off->gso_type = s->gso_type;
    off->gso_size = s->gso_size;
    put16(th + off->csum_offset, ref_pseudo(f, s->proto, len - l4));
    return len;
}

/* A frame scattered over separately allocated pieces, so that ASan sees
 * any read beyond one of them. */
struct sg {
    struct iovec iov[8192];
    unsigned n;
};

static const uint32_t odd_sizes[] = {1, 3, 7, 2, 13, 1, 29, 5, 64, 11, 997, 1, 333, 17, 4096};

/* @mode 0: one piece; 1: odd sizes; 2: single bytes for the first 100. */
static void scatter(struct sg *sg, const uint8_t *f, uint32_t len, int mode)
{
    uint32_t at = 0;

    sg->n = 0;
    for (unsigned k = 0; at < len; k++) {
        uint32_t n = mode == 0 ? len : mode == 1 ? odd_sizes[k % 15] : at < 100 ? 1 : 777;
        uint8_t *p;

        if (n > len - at)
            n = len - at;
        assert_true(sg->n < 8192);
        p = malloc(n);
        assert_non_null(p);
        memcpy(p, f + at, n);
        sg->iov[sg->n].iov_base = p;
        sg->iov[sg->n].iov_len = n;
        sg->n++;
        at += n;
    }
}

static void sg_free(struct sg *sg)
{
    for (unsigned i = 0; i < sg->n; i++)
        free(sg->iov[i].iov_base);
    sg->n = 0;
}

static struct vio_pkt pkt_of(struct sg *sg, uint32_t len, const struct vio_net_offload *off)
{
    struct vio_pkt p = {.off = *off, .iov = sg->iov, .iovcnt = sg->n, .len = len};

    return p;
}

/* ---- what vio_net_fit() emits ---- */

#define MAX_OUT 4096

struct out {
    struct vio_net_offload off;
    const struct iovec *iov;
    unsigned iovcnt;
    uint32_t len;
    uint8_t *data;
};

struct sink {
    unsigned n;
    unsigned stop_at; /* return stop_ret from this (1-based) call; 0: never */
    int stop_ret;
    struct out out[MAX_OUT];
};

static int collect(void *opaque, const struct vio_pkt *p)
{
    struct sink *s = opaque;
    struct out *o;

    assert_true(s->n < MAX_OUT);
    o = &s->out[s->n++];
    o->off = p->off;
    o->iov = p->iov;
    o->iovcnt = p->iovcnt;
    o->len = p->len;
    o->data = malloc(p->len ? p->len : 1);
    assert_non_null(o->data);
    assert_int_equal(vio_pkt_read(p, 0, o->data, p->len), p->len);
    if (s->stop_at && s->n == s->stop_at)
        return s->stop_ret;
    return 0;
}

static struct sink *sink_new(void)
{
    struct sink *s = calloc(1, sizeof(*s));

    assert_non_null(s);
    return s;
}

static void sink_free(struct sink *s)
{
    for (unsigned i = 0; i < s->n; i++)
        free(s->out[i].data);
    free(s);
}

/* Fit the frame @f (scattered per @mode) for @caps into a new sink. */
static struct sink *run_fit(const uint8_t *f, uint32_t len, const struct vio_net_offload *off,
                            unsigned caps, int mode, int expect)
{
    struct sink *s = sink_new();
    struct sg *sg = malloc(sizeof(*sg));
    struct vio_pkt p;

    assert_non_null(sg);
    scatter(sg, f, len, mode);
    p = pkt_of(sg, len, off);
    assert_int_equal(vio_net_fit(&p, caps, &scratch, collect, s), expect);
    sg_free(sg);
    free(sg);
    return s;
}

/* Check segments @s of the super-frame @f (built from @sp): headers,
 * lengths, ids, sequence numbers, flags, checksums, and the payload. When
 * @partial, each must carry NEEDS_CSUM; it is finished in place first. */
static void check_segments(const uint8_t *f, uint32_t len, const struct spec *sp, struct sink *s,
                           bool partial)
{
    uint8_t proto;
    uint32_t l4 = l4_of(f, &proto);
    uint32_t l4h = proto == 6 ? (f[l4 + 12] >> 4) * 4u : 8;
    uint32_t hl = l4 + l4h, total = len - hl, mss = sp->gso_size;
    uint32_t nseg = total ? (total + mss - 1) / mss : 1, got = 0;
    uint8_t *cat = malloc(total + 1);

    assert_non_null(cat);
    assert_int_equal(s->n, nseg);
    for (uint32_t i = 0; i < nseg; i++) {
        struct out *o = &s->out[i];
        uint8_t *g = o->data, *ip = g + 14, *th = g + l4;
        uint32_t n = o->len - hl;

        assert_int_equal(o->off.gso_type, VIO_NET_HDR_GSO_NONE);
        assert_int_equal(o->off.gso_size, 0);
        assert_int_equal(o->iovcnt, 1);
        assert_int_equal(n, i + 1 < nseg ? mss : total - got);
        /* Ethernet and the invariant parts of IP copied as they were. */
        assert_memory_equal(g, f, 14);
        if (sp->v6) {
            assert_memory_equal(ip, f + 14, 4);
            assert_int_equal(get16(ip + 4), o->len - 54);
            assert_memory_equal(ip + 6, f + 14 + 6, 34);
        } else {
            uint32_t ihl = l4 - 14;

            assert_int_equal(ip[0], f[14]);
            assert_int_equal(get16(ip + 2), o->len - 14);
            assert_int_equal(get16(ip + 4), (uint16_t)(sp->id + i));
            assert_int_equal(get16(ip + 6), 0x4000);
            assert_int_equal(ip[9], proto);
            assert_memory_equal(ip + 12, f + 14 + 12, ihl - 12);
            assert_int_equal(ref_sum(ip, ihl, 0), 0xffff);
        }
        if (partial) {
            assert_int_equal(o->off.flags, VIO_NET_HDR_F_NEEDS_CSUM);
            assert_int_equal(o->off.csum_start, l4);
            assert_int_equal(o->off.csum_offset, proto == 6 ? 16 : 6);
            /* The field holds the pseudo-header sum, as Linux leaves it. */
            assert_int_equal(get16(th + o->off.csum_offset), ref_pseudo(g, proto, o->len - l4));
            ref_finish(g, o->len, &o->off);
        } else {
            assert_int_equal(o->off.flags, 0);
        }
        assert_l4_csum_ok(g, o->len);
        if (proto == 6) {
            uint8_t want = sp->tcp_flags;

            if (i + 1 < nseg)
                want &= (uint8_t) ~(TCP_FIN | TCP_PSH);
            if (i > 0)
                want &= (uint8_t)~TCP_CWR;
            assert_memory_equal(th, f + l4, 4); /* ports */
            assert_int_equal(get32(th + 4), sp->seq + got);
            assert_memory_equal(th + 8, f + l4 + 8, 5); /* ack, data offset */
            assert_int_equal(th[13], want);
            assert_memory_equal(th + 14, f + l4 + 14, 2);
            assert_memory_equal(th + 18, f + l4 + 18, l4h - 18);
        } else {
            assert_memory_equal(th, f + l4, 4);
            assert_int_equal(get16(th + 4), o->len - l4);
        }
        memcpy(cat + got, g + hl, n);
        got += n;
    }
    assert_int_equal(got, total);
    assert_memory_equal(cat, f + hl, total);
    free(cat);
}

/* Segment @sp both ways (complete and partial checksums) over several
 * scatter patterns; the finished partial segments equal the complete ones. */
static void segment_both_ways(const struct spec *sp, unsigned extra_caps)
{
    uint8_t *f = malloc(VIO_NET_MAX_FRAME);
    struct vio_net_offload off;
    uint32_t len;

    assert_non_null(f);
    len = build(f, sp, &off);
    for (int mode = 0; mode < 3; mode++) {
        struct sink *full = run_fit(f, len, &off, extra_caps, mode, 0);
        struct sink *part = run_fit(f, len, &off, extra_caps | VIO_NET_CAP_CSUM, mode, 0);

        check_segments(f, len, sp, full, false);
        check_segments(f, len, sp, part, true);
        assert_int_equal(full->n, part->n);
        for (unsigned i = 0; i < full->n; i++) {
            assert_int_equal(full->out[i].len, part->out[i].len);
            assert_memory_equal(full->out[i].data, part->out[i].data, full->out[i].len);
        }
        sink_free(full);
        sink_free(part);
    }
    free(f);
}

/* ---- tests ---- */

static void test_csum_matches_reference(void **state)
{
    uint8_t *buf = malloc(70000);

    (void)state;
    assert_non_null(buf);
    srand(12345);
    for (size_t i = 0; i < 70000; i++)
        buf[i] = (uint8_t)rand();
    for (size_t off = 0; off < 9; off++) {
        for (size_t len = 0; len < 300; len++) {
            uint16_t want = (uint16_t)~ref_sum(buf + off, len, 0);

            assert_int_equal(vio_csum_fold(vio_csum_partial(buf + off, len, 0)), want);
        }
    }
    for (size_t len = 60000; len < 70000 - 3; len += 997) {
        uint32_t s = vio_csum_partial(buf + 3, len, 0);

        assert_int_equal(vio_csum_fold(s), (uint16_t)~ref_sum(buf + 3, len, 0));
        /* Sums chain at even boundaries. */
        s = vio_csum_partial(buf + 3 + 1000, len - 1000, vio_csum_partial(buf + 3, 1000, 0));
        assert_int_equal(vio_csum_fold(s), (uint16_t)~ref_sum(buf + 3, len, 0));
    }
    /* A starting sum near the 32-bit limit carries around, not away. */
    assert_int_equal(vio_csum_fold(vio_csum_partial(buf, 1500, 0xfffffff0u)),
                     (uint16_t)~ref_sum(buf, 1500, ref_add(0xffff, 0xfff0)));
    /* All zeros and all ones: the two zeros of ones' complement. */
    memset(buf, 0, 64);
    assert_int_equal(vio_csum_partial(buf, 64, 0), 0);
    assert_int_equal(vio_csum_fold(0), 0xffff);
    memset(buf, 0xff, 64);
    assert_int_equal(vio_csum_fold(vio_csum_partial(buf, 64, 0)), 0);
    /* RFC 1071's example: 0001 f203 f4f5 f6f7 sums to ddf2. */
    {
        static const uint8_t ex[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};

        assert_int_equal(vio_csum_fold(vio_csum_partial(ex, 8, 0)), (uint16_t)~0xddf2);
        /* Odd length: the last byte is the high half of a word. */
        assert_int_equal(vio_csum_fold(vio_csum_partial(ex, 7, 0)),
                         (uint16_t)~ref_add(0xddf2, (uint16_t)~0x00f7));
    }
    free(buf);
}

static void test_passthrough_zero_copy(void **state)
{
    uint8_t f[2000];
    struct spec sp = {.proto = 6, .payload = 1000, .tcp_flags = TCP_ACK};
    struct vio_net_offload off;
    struct sg sg1, *sg = &sg1;
    struct vio_pkt p;
    struct sink *s;
    uint32_t len;

    (void)state;
    /* A complete frame goes to anyone as it is. */
    len = build(f, &sp, &off);
    memset(&off, 0, sizeof(off));
    scatter(sg, f, len, 1);
    p = pkt_of(sg, len, &off);
    for (unsigned caps = 0; caps <= ALL_CAPS; caps++) {
        s = sink_new();
        assert_int_equal(vio_net_fit(&p, caps, &scratch, collect, s), 0);
        assert_int_equal(s->n, 1);
        assert_ptr_equal(s->out[0].iov, sg->iov);
        assert_int_equal(s->out[0].iovcnt, sg->n);
        assert_int_equal(s->out[0].len, len);
        assert_memory_equal(&s->out[0].off, &off, sizeof(off));
        sink_free(s);
    }
    sg_free(sg);

    /* A partial checksum to a receiver that takes one. */
    len = build(f, &sp, &off);
    scatter(sg, f, len, 1);
    p = pkt_of(sg, len, &off);
    s = sink_new();
    assert_int_equal(vio_net_fit(&p, VIO_NET_CAP_CSUM, &scratch, collect, s), 0);
    assert_int_equal(s->n, 1);
    assert_ptr_equal(s->out[0].iov, sg->iov);
    assert_memory_equal(&s->out[0].off, &off, sizeof(off));
    assert_memory_equal(s->out[0].data, f, len);
    sink_free(s);
    sg_free(sg);

    /* GSO super-frames to receivers with the matching capabilities. */
    {
        static const struct {
            bool v6;
            uint8_t proto, gso;
            unsigned caps;
        } cases[] = {
            {false, 6, VIO_NET_HDR_GSO_TCPV4, VIO_NET_CAP_CSUM | VIO_NET_CAP_TSO4},
            {true, 6, VIO_NET_HDR_GSO_TCPV6, VIO_NET_CAP_CSUM | VIO_NET_CAP_TSO6},
            {true, 6, VIO_NET_HDR_GSO_TCPV6 | VIO_NET_HDR_GSO_ECN,
             VIO_NET_CAP_CSUM | VIO_NET_CAP_TSO6 | VIO_NET_CAP_TSO_ECN},
            {false, 17, VIO_NET_HDR_GSO_UDP, VIO_NET_CAP_CSUM | VIO_NET_CAP_UFO},
            {true, 17, VIO_NET_HDR_GSO_UDP_L4, VIO_NET_CAP_CSUM | VIO_NET_CAP_USO},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            struct spec g = {.v6 = cases[i].v6,
                             .proto = cases[i].proto,
                             .payload = 1800,
                             .tcp_flags = TCP_ACK | TCP_CWR,
                             .gso_type = cases[i].gso,
                             .gso_size = 500};

            len = build(f, &g, &off);
            scatter(sg, f, len, 1);
            p = pkt_of(sg, len, &off);
            s = sink_new();
            assert_int_equal(vio_net_fit(&p, cases[i].caps, &scratch, collect, s), 0);
            assert_int_equal(s->n, 1);
            assert_ptr_equal(s->out[0].iov, sg->iov);
            assert_memory_equal(&s->out[0].off, &off, sizeof(off));
            sink_free(s);
            sg_free(sg);
        }
    }

    /* DATA_VALID stays with receivers that take checksum flags; others get
     * the same data, still zero copy, with flags 0. */
    len = build(f, &sp, &off);
    memset(&off, 0, sizeof(off));
    off.flags = VIO_NET_HDR_F_DATA_VALID;
    scatter(sg, f, len, 0);
    p = pkt_of(sg, len, &off);
    s = sink_new();
    assert_int_equal(vio_net_fit(&p, VIO_NET_CAP_CSUM, &scratch, collect, s), 0);
    assert_int_equal(vio_net_fit(&p, 0, &scratch, collect, s), 0);
    assert_int_equal(s->n, 2);
    assert_ptr_equal(s->out[0].iov, sg->iov);
    assert_int_equal(s->out[0].off.flags, VIO_NET_HDR_F_DATA_VALID);
    assert_ptr_equal(s->out[1].iov, sg->iov);
    assert_int_equal(s->out[1].off.flags, 0);
    sink_free(s);
    sg_free(sg);
}

static void test_csum_completion(void **state)
{
    uint8_t f[2000];
    struct vio_net_offload off;
    uint32_t len;

    (void)state;
    for (int v6 = 0; v6 < 2; v6++) {
        for (int proto = 0; proto < 2; proto++) {
            for (uint32_t pl = 0; pl < 40; pl += 13) {
                struct spec sp = {.v6 = v6,
                                  .proto = proto ? 17 : 6,
                                  .payload = 1400 + pl,
                                  .tcp_opts = 12,
                                  .tcp_flags = TCP_ACK | TCP_PSH};
                struct sink *s;
                uint8_t want[2000];

                len = build(f, &sp, &off);
                /* Linux gives hdr_len 0 for frames without GSO. */
                off.hdr_len = 0;
                memcpy(want, f, len);
                ref_finish(want, len, &off);
                for (int mode = 0; mode < 3; mode++) {
                    unsigned caps = VIO_NET_CAP_TSO4 | VIO_NET_CAP_TSO6 | VIO_NET_CAP_USO;

                    s = run_fit(f, len, &off, mode == 2 ? 0 : caps, mode, 0);
                    assert_int_equal(s->n, 1);
                    assert_int_equal(s->out[0].len, len);
                    assert_int_equal(s->out[0].iovcnt, 1);
                    assert_int_equal(s->out[0].off.flags, 0);
                    assert_int_equal(s->out[0].off.gso_type, 0);
                    assert_memory_equal(s->out[0].data, want, len);
                    assert_l4_csum_ok(s->out[0].data, len);
                    sink_free(s);
                }
            }
        }
    }

    /* A UDP sum that comes out 0 is sent as 0xffff. Make the data sum to
     * zero: the checksum of a zero last word, put into that word. */
    {
        struct spec sp = {.proto = 17, .payload = 100};
        struct sink *s;
        uint8_t tmp[2000];
        uint16_t c;

        len = build(f, &sp, &off);
        put16(f + len - 2, 0);
        memcpy(tmp, f, len);
        ref_finish(tmp, len, &off);
        c = get16(tmp + off.csum_start + 6);
        put16(f + len - 2, c);
        s = run_fit(f, len, &off, 0, 1, 0);
        assert_int_equal(s->n, 1);
        assert_int_equal(get16(s->out[0].data + off.csum_start + 6), 0xffff);
        assert_l4_csum_ok(s->out[0].data, len);
        sink_free(s);
    }

    /* Any csum_start/csum_offset inside the frame is honoured as asked,
     * even an odd one over bytes that are no known protocol. */
    {
        uint8_t raw[301], want[301];
        struct vio_net_offload o = {
            .flags = VIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 33, .csum_offset = 101};
        struct sink *s;

        for (int i = 0; i < 301; i++)
            raw[i] = (uint8_t)(i * 7 + 1);
        memcpy(want, raw, sizeof(raw));
        ref_finish(want, sizeof(want), &o);
        s = run_fit(raw, sizeof(raw), &o, 0, 1, 0);
        assert_int_equal(s->n, 1);
        assert_memory_equal(s->out[0].data, want, sizeof(want));
        sink_free(s);
    }
}

static void test_tso4_64k(void **state)
{
    struct spec sp = {.proto = 6,
                      .payload = 65535 - 20 - 4 - 20 - 12,
                      .ip_opts = 4,
                      .tcp_opts = 12,
                      .tcp_flags = TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR,
                      .seq = 0xfffff000u,
                      /* wraps */ .id = 0xfff0, /* wraps */
                      .gso_type = VIO_NET_HDR_GSO_TCPV4,
                      .gso_size = 1448};

    (void)state;
    segment_both_ways(&sp, 0);
    /* A receiver with TSO6 but not TSO4 still gets segments. */
    sp.gso_size = 1000;
    sp.tcp_flags = TCP_ACK;
    segment_both_ways(&sp, VIO_NET_CAP_TSO6 | VIO_NET_CAP_UFO | VIO_NET_CAP_USO);
}

static void test_tso6_64k_ecn(void **state)
{
    struct spec sp = {.v6 = true,
                      .proto = 6,
                      .payload = VIO_NET_MAX_FRAME - 14 - 40 - 32 - 4,
                      /* no VLAN */ .tcp_opts = 12,
                      .tcp_flags = TCP_ACK | TCP_PSH | TCP_CWR | TCP_ECE,
                      .seq = 7,
                      .gso_type = VIO_NET_HDR_GSO_TCPV6 | VIO_NET_HDR_GSO_ECN,
                      .gso_size = 1428};

    (void)state;
    /* TSO6 without TSO_ECN is not enough for an ECN super-frame. */
    segment_both_ways(&sp, VIO_NET_CAP_TSO6 | VIO_NET_CAP_TSO4);
    sp.gso_type = VIO_NET_HDR_GSO_TCPV6;
    sp.tcp_flags = TCP_ACK | TCP_FIN;
    sp.gso_size = 1;
    sp.payload = 700;
    segment_both_ways(&sp, VIO_NET_CAP_TSO4);
}

static void test_tso_small(void **state)
{
    /* Payload not more than one segment: one frame. No payload at all: one
     * frame with every flag kept. Payload a multiple of gso_size: no empty
     * tail segment. */
    static const uint32_t payloads[] = {1, 99, 100, 0, 300, 301};

    (void)state;
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        for (int v6 = 0; v6 < 2; v6++) {
            struct spec sp = {.v6 = v6,
                              .proto = 6,
                              .payload = payloads[i],
                              .tcp_flags = TCP_ACK | TCP_FIN | TCP_CWR | TCP_PSH,
                              .seq = 1,
                              .id = 9,
                              .gso_type = v6 ? VIO_NET_HDR_GSO_TCPV6 : VIO_NET_HDR_GSO_TCPV4,
                              .gso_size = 100};

            segment_both_ways(&sp, 0);
        }
    }
}

static void test_hdr_len_hint(void **state)
{
    struct spec sp = {.proto = 6,
                      .payload = 5000,
                      .tcp_flags = TCP_ACK,
                      .gso_type = VIO_NET_HDR_GSO_TCPV4,
                      .gso_size = 1448};
    uint8_t *f = malloc(VIO_NET_MAX_FRAME);
    struct vio_net_offload off;
    uint32_t len;
    struct sink *s;

    (void)state;
    assert_non_null(f);
    len = build(f, &sp, &off);
    /* Linux sends skb_headlen(), which may run into the payload. */
    off.hdr_len = 200;
    s = run_fit(f, len, &off, 0, 1, 0);
    check_segments(f, len, &sp, s, false);
    sink_free(s);
    /* A driver that leaves it 0. */
    off.hdr_len = 0;
    s = run_fit(f, len, &off, 0, 1, 0);
    check_segments(f, len, &sp, s, false);
    sink_free(s);
    free(f);
}

static void test_uso(void **state)
{
    (void)state;
    for (int v6 = 0; v6 < 2; v6++) {
        struct spec sp = {.v6 = v6,
                          .proto = 17,
                          .payload = 65535 - 40 - 8 - 21,
                          .id = 77,
                          .gso_type = VIO_NET_HDR_GSO_UDP_L4,
                          .gso_size = 1472};

        segment_both_ways(&sp, VIO_NET_CAP_UFO | VIO_NET_CAP_TSO4 | VIO_NET_CAP_TSO6);
        sp.payload = 3000;
        sp.gso_size = 1000;
        segment_both_ways(&sp, 0);
    }
}

static void test_ufo_ipv4(void **state)
{
    static const uint16_t sizes[] = {1480, 1001 /* rounded down to 1000 */, 8};
    struct spec sp = {.proto = 17, .payload = 20000, .id = 0x4242, .gso_type = VIO_NET_HDR_GSO_UDP};
    uint8_t *f = malloc(VIO_NET_MAX_FRAME), *dgram = malloc(VIO_NET_MAX_FRAME);
    struct vio_net_offload off;
    uint32_t len;

    (void)state;
    assert_non_null(f);
    assert_non_null(dgram);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        for (unsigned caps = 0; caps < 2; caps++) {
            uint32_t frag = sizes[k] & ~7u, at = 0, l4len;
            struct sink *s;

            sp.gso_size = sizes[k];
            len = build(f, &sp, &off);
            l4len = len - 34;
            s = run_fit(f, len, &off, caps ? VIO_NET_CAP_CSUM | VIO_NET_CAP_USO : 0, 1, 0);
            assert_int_equal(s->n, (l4len + frag - 1) / frag);
            for (unsigned i = 0; i < s->n; i++) {
                uint8_t *g = s->out[i].data, *ip = g + 14;
                uint32_t n = s->out[i].len - 34;
                uint16_t fo = get16(ip + 6);

                assert_int_equal(s->out[i].off.flags, 0);
                assert_int_equal(s->out[i].off.gso_type, 0);
                assert_memory_equal(g, f, 14);
                assert_int_equal(ip[0], 0x45);
                assert_int_equal(get16(ip + 2), 20 + n);
                assert_int_equal(get16(ip + 4), 0x4242);
                assert_int_equal(fo & 0x1fff, at / 8);
                assert_int_equal(!!(fo & 0x2000), i + 1 < s->n);
                assert_int_equal(fo & 0x4000, 0);
                assert_int_equal(ip[9], 17);
                assert_memory_equal(ip + 12, f + 14 + 12, 8);
                assert_int_equal(ref_sum(ip, 20, 0), 0xffff);
                assert_int_equal(n, i + 1 < s->n ? frag : l4len - at);
                memcpy(dgram + 34 + at, g + 34, n);
                at += n;
            }
            assert_int_equal(at, l4len);
            /* Reassembled: the original datagram with its checksum done. */
            memcpy(dgram, f, 34);
            put16(dgram + 16, (uint16_t)(len - 14));
            put16(dgram + 20, 0x4000);
            assert_memory_equal(dgram + 34, f + 34, 6);
            assert_memory_equal(dgram + 42, f + 42, len - 42);
            assert_l4_csum_ok(dgram, len);
            sink_free(s);
        }
    }
    /* Small enough for one frame: sent whole, checksum completed. */
    sp.payload = 100;
    sp.gso_size = 1480;
    len = build(f, &sp, &off);
    {
        struct sink *s = run_fit(f, len, &off, 0, 1, 0);

        assert_int_equal(s->n, 1);
        assert_int_equal(s->out[0].len, len);
        assert_int_equal(s->out[0].off.flags, 0);
        assert_memory_equal(s->out[0].data, f, 40);
        assert_l4_csum_ok(s->out[0].data, len);
        sink_free(s);
    }
    free(f);
    free(dgram);
}

/* Expect -EINVAL from vio_net_fit() for every caps value, with nothing
 * emitted; @check_too: vio_net_offload_check() refuses it as well. */
static void expect_bad(const uint8_t *f, uint32_t len, const struct vio_net_offload *off,
                       bool check_too, const char *what)
{
    struct sg *sg = malloc(sizeof(*sg));

    assert_non_null(sg);
    scatter(sg, f, len, 1);
    for (unsigned caps = 0; caps <= ALL_CAPS; caps++) {
        struct sink *s = sink_new();
        struct vio_pkt p = pkt_of(sg, len, off);
        int ret = vio_net_fit(&p, caps, &scratch, collect, s);

        if (ret != -EINVAL || s->n)
            fail_msg("%s: caps %#x: fit returned %d with %u frames", what, caps, ret, s->n);
        sink_free(s);
    }
    if (check_too) {
        struct vio_pkt p = pkt_of(sg, len, off);

        if (vio_net_offload_check(&p) != -EINVAL)
            fail_msg("%s: check accepted it", what);
    }
    sg_free(sg);
    free(sg);
}

/* Expect -EINVAL from vio_net_fit() wherever it has to finish the frame. */
static void expect_bad_finish(const uint8_t *f, uint32_t len, const struct vio_net_offload *off,
                              const char *what)
{
    struct sink *s = run_fit(f, len, off, 0, 1, -EINVAL);

    if (s->n)
        fail_msg("%s: emitted %u frames", what, s->n);
    sink_free(s);
    s = run_fit(f, len, off, VIO_NET_CAP_CSUM, 2, -EINVAL);
    if (s->n)
        fail_msg("%s: emitted %u frames", what, s->n);
    sink_free(s);
}

static void test_bad_offload_header(void **state)
{
    struct spec tcp4 = {.proto = 6,
                        .payload = 3000,
                        .tcp_flags = TCP_ACK,
                        .gso_type = VIO_NET_HDR_GSO_TCPV4,
                        .gso_size = 1448};
    uint8_t *f = malloc(VIO_NET_MAX_FRAME + 64);
    struct vio_net_offload off, o;
    uint32_t len;

    (void)state;
    assert_non_null(f);
    len = build(f, &tcp4, &off);

    o = off;
    o.gso_size = 0;
    expect_bad(f, len, &o, true, "gso_size 0");
    o = off;
    o.flags = 0;
    expect_bad(f, len, &o, true, "GSO without NEEDS_CSUM");
    o = off;
    o.flags |= 4;
    expect_bad(f, len, &o, true, "unknown flag");
    o = off;
    o.flags = 0x80;
    o.gso_type = 0;
    expect_bad(f, len, &o, true, "unknown flag, no GSO");
    for (unsigned t = 0; t < 256; t++) {
        unsigned base = t & 0x7f;

        if (base == 1 || base == 3 || base == 4 || base == 5 || (base == 0 && t == 0))
            continue;
        o = off;
        o.gso_type = (uint8_t)t;
        expect_bad(f, len, &o, true, "unknown gso_type");
    }
    o = off;
    o.gso_type = VIO_NET_HDR_GSO_UDP_L4 | VIO_NET_HDR_GSO_ECN;
    expect_bad(f, len, &o, true, "ECN on UDP");
    o = off;
    o.csum_start = (uint16_t)(len - 1);
    o.csum_offset = 0;
    expect_bad(f, len, &o, true, "csum_start at the last byte");
    o = off;
    o.gso_type = 0;
    o.csum_start = (uint16_t)(len - 17);
    o.csum_offset = 16;
    expect_bad(f, len, &o, true, "csum field one byte beyond");
    o.csum_offset = 0xffff;
    o.csum_start = 0xffff;
    expect_bad(f, len, &o, true, "csum_start + offset overflowing 16 bits");
    o = off;
    o.hdr_len = (uint16_t)(len + 1);
    expect_bad(f, len, &o, true, "hdr_len beyond the frame");

    /* Too long, and a scatter list shorter than the length it claims. */
    {
        struct sg *sg = malloc(sizeof(*sg));
        struct sink *s = sink_new();
        struct vio_pkt p;
        struct vio_net_offload none = {0};

        assert_non_null(sg);
        memset(f, 0, VIO_NET_MAX_FRAME + 1);
        scatter(sg, f, VIO_NET_MAX_FRAME + 1, 1);
        p = pkt_of(sg, VIO_NET_MAX_FRAME + 1, &none);
        assert_int_equal(vio_net_offload_check(&p), -EINVAL);
        assert_int_equal(vio_net_fit(&p, ALL_CAPS, &scratch, collect, s), -EINVAL);
        p.len--;
        assert_int_equal(vio_net_offload_check(&p), 0);
        sg_free(sg);
        len = build(f, &tcp4, &off);
        scatter(sg, f, len, 1);
        p = pkt_of(sg, len + 1, &none);
        assert_int_equal(vio_net_offload_check(&p), -EINVAL);
        assert_int_equal(vio_net_fit(&p, ALL_CAPS, &scratch, collect, s), -EINVAL);
        p = pkt_of(sg, len + 1, &off);
        assert_int_equal(vio_net_fit(&p, 0, &scratch, collect, s), -EINVAL);
        assert_int_equal(s->n, 0);
        sink_free(s);
        sg_free(sg);
        free(sg);
    }

    /* The check reads no frame data: a scatter list of no readable bytes. */
    {
        struct iovec iov = {.iov_base = NULL, .iov_len = 4000};
        struct vio_pkt p = {.off = off, .iov = &iov, .iovcnt = 1, .len = 3100};

        assert_int_equal(vio_net_offload_check(&p), 0);
    }
    free(f);
}

static void test_bad_frames(void **state)
{
    uint8_t *f = malloc(VIO_NET_MAX_FRAME);
    struct vio_net_offload off, o;
    uint32_t len;
    struct spec tcp4 = {.proto = 6,
                        .payload = 3000,
                        .tcp_flags = TCP_ACK,
                        .gso_type = VIO_NET_HDR_GSO_TCPV4,
                        .gso_size = 1448};
    struct spec tcp6 = tcp4, udp4 = {.proto = 17,
                                     .payload = 3000,
                                     .gso_type = VIO_NET_HDR_GSO_UDP_L4,
                                     .gso_size = 1000};

    (void)state;
    assert_non_null(f);
    tcp6.v6 = true;
    tcp6.gso_type = VIO_NET_HDR_GSO_TCPV6;

#define FRESH(sp) (len = build(f, &(sp), &off), o = off)
    FRESH(tcp4);
    o.gso_type = VIO_NET_HDR_GSO_TCPV6;
    expect_bad_finish(f, len, &o, "TCPV6 on an IPv4 frame");
    FRESH(tcp6);
    o.gso_type = VIO_NET_HDR_GSO_TCPV4;
    expect_bad_finish(f, len, &o, "TCPV4 on an IPv6 frame");
    FRESH(tcp4);
    o.gso_type = VIO_NET_HDR_GSO_UDP_L4;
    o.csum_offset = 6;
    expect_bad_finish(f, len, &o, "USO on a TCP frame");
    FRESH(udp4);
    o.gso_type = VIO_NET_HDR_GSO_TCPV4;
    expect_bad_finish(f, len, &o, "TSO on a UDP frame");

    FRESH(tcp4);
    put16(f + 12, VIO_ETH_P_ARP);
    expect_bad_finish(f, len, &o, "not IP");
    FRESH(tcp4);
    put16(f + 12, VIO_ETH_P_8021Q);
    expect_bad_finish(f, len, &o, "VLAN tag");
    FRESH(tcp4);
    f[14] = 0x65;
    expect_bad_finish(f, len, &o, "IPv4 ethertype, version 6");
    FRESH(tcp4);
    f[14] = 0x44;
    expect_bad_finish(f, len, &o, "IPv4 ihl 4");
    FRESH(tcp4);
    f[14] = 0x4f;
    expect_bad_finish(f, len, &o, "IPv4 ihl 15 runs into TCP (csum_start disagrees)");
    FRESH(tcp4);
    put16(f + 16, (uint16_t)(len - 14 + 1));
    expect_bad_finish(f, len, &o, "IPv4 total length one more than the frame");
    put16(f + 16, (uint16_t)(len - 14 - 1));
    expect_bad_finish(f, len, &o, "IPv4 total length one less than the frame");
    FRESH(tcp4);
    put16(f + 20, 0x2000);
    expect_bad_finish(f, len, &o, "IPv4 MF set");
    put16(f + 20, 0x0001);
    expect_bad_finish(f, len, &o, "IPv4 fragment offset");
    FRESH(tcp6);
    put16(f + 18, (uint16_t)(len - 54 - 1));
    expect_bad_finish(f, len, &o, "IPv6 payload length");
    FRESH(tcp6);
    f[14] = 0x40;
    expect_bad_finish(f, len, &o, "IPv6 ethertype, version 4");
    FRESH(tcp6);
    f[20] = 0; /* hop-by-hop options */
    expect_bad_finish(f, len, &o, "IPv6 extension header");

    FRESH(tcp4);
    f[34 + 12] = 0x40;
    expect_bad_finish(f, len, &o, "TCP data offset 4");
    FRESH(tcp4);
    o.csum_start = 35;
    expect_bad_finish(f, len, &o, "csum_start not at TCP");
    FRESH(tcp4);
    o.csum_offset = 6;
    expect_bad_finish(f, len, &o, "csum_offset not the TCP checksum");
    FRESH(tcp4);
    o.hdr_len = 53;
    expect_bad_finish(f, len, &o, "hdr_len ends inside the TCP header");
    FRESH(udp4);
    put16(f + 34 + 4, (uint16_t)(len - 34 - 2));
    expect_bad_finish(f, len, &o, "UDP length");

    /* Truncated: each header cut short, lengths otherwise consistent. */
    {
        struct spec t = tcp4;

        t.payload = 0;
        FRESH(t);
        f[34 + 12] = 0xf0; /* 60-byte TCP header in a 20-byte one */
        expect_bad_finish(f, len, &o, "TCP header beyond the frame");
        FRESH(t);
        o.hdr_len = 0;
        len = 34 + 18;
        put16(f + 16, (uint16_t)(len - 14));
        o.csum_offset = 16;
        expect_bad_finish(f, len, &o, "TCP header 18 bytes");
        FRESH(t);
        len = 30;
        o.csum_start = 14;
        o.csum_offset = 0;
        o.hdr_len = 0;
        expect_bad_finish(f, len, &o, "IPv4 header truncated");
        len = 13;
        o.csum_start = 0;
        expect_bad_finish(f, len, &o, "shorter than Ethernet");
    }
    {
        struct spec t = tcp6;

        t.payload = 0;
        FRESH(t);
        len = 50;
        o.csum_start = 14;
        o.csum_offset = 0;
        o.hdr_len = 0;
        expect_bad_finish(f, len, &o, "IPv6 header truncated");
    }
    {
        struct spec t = udp4;

        t.payload = 0;
        FRESH(t);
        len = 34 + 7;
        o.csum_offset = 4;
        o.hdr_len = 0;
        put16(f + 16, (uint16_t)(len - 14));
        expect_bad_finish(f, len, &o, "UDP header truncated");
    }

    /* UFO over IPv6 and with IPv4 options is refused; USO is not. */
    {
        struct spec t = udp4;

        t.v6 = true;
        t.gso_type = VIO_NET_HDR_GSO_UDP;
        FRESH(t);
        expect_bad_finish(f, len, &o, "UFO over IPv6");
        t.v6 = false;
        t.ip_opts = 8;
        FRESH(t);
        expect_bad_finish(f, len, &o, "UFO with IPv4 options");
        t.ip_opts = 0;
        t.gso_size = 7;
        FRESH(t);
        expect_bad_finish(f, len, &o, "UFO gso_size under one fragment unit");
    }
#undef FRESH
    free(f);
}

static void test_emit_stops(void **state)
{
    struct spec sp = {.proto = 6,
                      .payload = 10000,
                      .tcp_flags = TCP_ACK,
                      .gso_type = VIO_NET_HDR_GSO_TCPV4,
                      .gso_size = 1000};
    uint8_t *f = malloc(VIO_NET_MAX_FRAME);
    struct vio_net_offload off;
    struct sg *sg = malloc(sizeof(*sg));
    struct vio_pkt p;
    uint32_t len;

    (void)state;
    assert_non_null(f);
    assert_non_null(sg);
    len = build(f, &sp, &off);
    scatter(sg, f, len, 1);
    p = pkt_of(sg, len, &off);
    for (unsigned caps = 0; caps < 2; caps++) {
        struct sink *s = sink_new();

        s->stop_at = 3;
        s->stop_ret = 7;
        assert_int_equal(vio_net_fit(&p, caps, &scratch, collect, s), 7);
        assert_int_equal(s->n, 3);
        sink_free(s);
        s = sink_new();
        s->stop_at = 1;
        s->stop_ret = -ENOBUFS;
        assert_int_equal(vio_net_fit(&p, caps | VIO_NET_CAP_TSO4, &scratch, collect, s),
                         caps ? -ENOBUFS : -ENOBUFS);
        assert_int_equal(s->n, 1);
        sink_free(s);
    }
    sg_free(sg);

    /* UFO fragments and checksum completion stop the same way. */
    {
        struct spec u = {
            .proto = 17, .payload = 5000, .gso_type = VIO_NET_HDR_GSO_UDP, .gso_size = 1480};
        struct sink *s = sink_new();

        len = build(f, &u, &off);
        scatter(sg, f, len, 1);
        p = pkt_of(sg, len, &off);
        s->stop_at = 2;
        s->stop_ret = 1;
        assert_int_equal(vio_net_fit(&p, 0, &scratch, collect, s), 1);
        assert_int_equal(s->n, 2);
        sink_free(s);
        sg_free(sg);
        s = sink_new();
        off.gso_type = 0;
        off.gso_size = 0;
        s->stop_at = 1;
        s->stop_ret = -EIO;
        u.gso_type = 0;
        len = build(f, &u, &off);
        scatter(sg, f, len, 0);
        p = pkt_of(sg, len, &off);
        assert_int_equal(vio_net_fit(&p, 0, &scratch, collect, s), -EIO);
        assert_int_equal(s->n, 1);
        sink_free(s);
        sg_free(sg);
    }
    free(sg);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csum_matches_reference),
        cmocka_unit_test(test_passthrough_zero_copy),
        cmocka_unit_test(test_csum_completion),
        cmocka_unit_test(test_tso4_64k),
        cmocka_unit_test(test_tso6_64k_ecn),
        cmocka_unit_test(test_tso_small),
        cmocka_unit_test(test_hdr_len_hint),
        cmocka_unit_test(test_uso),
        cmocka_unit_test(test_ufo_ipv4),
        cmocka_unit_test(test_bad_offload_header),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_emit_stops),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
