/* Offload finishing in software (net/offload.h): completes partial
 * checksums and cuts GSO super-frames into segments for a receiver that
 * lacks the matching VIO_NET_CAP_*. Handled: NEEDS_CSUM on any protocol;
 * GSO_TCPV4/TCPV6 (with ECN) and GSO_UDP_L4 over IPv4 or IPv6 without
 * extension headers; GSO_UDP (UFO) as IPv4 fragments when the IPv4 header
 * has no options. Refused with -EINVAL: UFO over IPv6 (it would need a
 * fragment header and a fresh fragment id), IPv6 extension headers, IPv4
 * fragments as GSO input, and anything that does not parse. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "net/offload.h"

#define F_NEEDS_CSUM VIO_NET_HDR_F_NEEDS_CSUM
#define F_DATA_VALID VIO_NET_HDR_F_DATA_VALID

#define IPV4_HLEN 20
#define IPV6_HLEN 40
#define TCP_HLEN  20
#define UDP_HLEN  8

#define PROTO_TCP 6
#define PROTO_UDP 17

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

#define IP_MF      0x2000
#define IP_OFFMASK 0x1fff

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The ones' complement sum does not depend on the byte order of the words
 * it adds except for a final byte swap (RFC 1071, 2.B), so the loop adds
 * native 32-bit words and only the folded result is put in network order. */
uint32_t vio_csum_partial(const void *data, size_t len, uint32_t sum)
{
    const uint8_t *p = data;
    uint64_t acc = 0, total;
    uint32_t w32;
    uint16_t w16;

    /* 2^32 additions of 32-bit words would be needed to overflow acc. */
    for (; len >= 4; p += 4, len -= 4) {
        memcpy(&w32, p, 4);
        acc += w32;
    }
    if (len >= 2) {
        memcpy(&w16, p, 2);
        acc += w16;
        p += 2;
        len -= 2;
    }
    if (len) {
        /* A trailing byte is the first (high-order) byte of a zero-padded
         * word: in native order that is where p[0] sits in memory. */
        w16 = 0;
        memcpy(&w16, p, 1);
        acc += w16;
    }
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    acc = ((acc & 0xff) << 8) | (acc >> 8);
#endif
    total = (uint64_t)sum + acc;
    return (uint32_t)((total & 0xffffffffu) + (total >> 32));
}

uint16_t vio_csum_fold(uint32_t sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* A computed checksum of 0 goes on the wire as 0xffff: the same value in
 * ones' complement, and for UDP 0 would mean "no checksum". */
static uint16_t csum_nonzero(uint32_t sum)
{
    uint16_t c = vio_csum_fold(sum);

    return c ? c : 0xffff;
}

/* What @o asks of a receiver, as VIO_NET_CAP_* bits (@o already checked). */
static unsigned needs(const struct vio_net_offload *o)
{
    unsigned n = 0;

    if (o->flags & F_NEEDS_CSUM)
        n |= VIO_NET_CAP_CSUM;
    switch (o->gso_type & ~VIO_NET_HDR_GSO_ECN) {
    case VIO_NET_HDR_GSO_TCPV4:
        n |= VIO_NET_CAP_TSO4;
        break;
    case VIO_NET_HDR_GSO_TCPV6:
        n |= VIO_NET_CAP_TSO6;
        break;
    case VIO_NET_HDR_GSO_UDP:
        n |= VIO_NET_CAP_UFO;
        break;
    case VIO_NET_HDR_GSO_UDP_L4:
        n |= VIO_NET_CAP_USO;
        break;
    }
    if (o->gso_type & VIO_NET_HDR_GSO_ECN)
        n |= VIO_NET_CAP_TSO_ECN;
    return n;
}

int vio_net_offload_check(const struct vio_pkt *pkt)
{
    const struct vio_net_offload *o = &pkt->off;
    unsigned gso = o->gso_type & ~VIO_NET_HDR_GSO_ECN;
    size_t have = 0;

    if (pkt->len > VIO_NET_MAX_FRAME)
        return -EINVAL;
    /* The scatter list must hold the whole frame (it may hold more). */
    for (unsigned i = 0; i < pkt->iovcnt && have < pkt->len; i++)
        have += pkt->iov[i].iov_len;
    if (have < pkt->len)
        return -EINVAL;
    if (o->flags & ~(F_NEEDS_CSUM | F_DATA_VALID))
        return -EINVAL;
    if (o->hdr_len > pkt->len)
        return -EINVAL;
    if ((o->flags & F_NEEDS_CSUM) && (uint32_t)o->csum_start + o->csum_offset + 2 > pkt->len)
        return -EINVAL;
    switch (gso) {
    case VIO_NET_HDR_GSO_NONE:
        /* ECN qualifies a GSO type; on its own it means nothing. */
        return o->gso_type == VIO_NET_HDR_GSO_NONE ? 0 : -EINVAL;
    case VIO_NET_HDR_GSO_TCPV4:
    case VIO_NET_HDR_GSO_TCPV6:
        break;
    case VIO_NET_HDR_GSO_UDP:
    case VIO_NET_HDR_GSO_UDP_L4:
        if (o->gso_type & VIO_NET_HDR_GSO_ECN)
            return -EINVAL;
        break;
    default:
        return -EINVAL;
    }
    /* VIRTIO 1.2, 5.1.6.2.1: a GSO frame also carries NEEDS_CSUM. */
    if (!o->gso_size || !(o->flags & F_NEEDS_CSUM))
        return -EINVAL;
    return 0;
}

/* The headers of a GSO super-frame, as found in the frame itself. */
struct hdrs {
    bool v6;
    uint8_t proto;     /* PROTO_TCP or PROTO_UDP */
    uint32_t l4;       /* offset of the TCP/UDP header */
    uint32_t payload;  /* offset of the payload: the real header length */
    uint16_t csum_off; /* the checksum field within the TCP/UDP header */
};

/* Parse Ethernet, IP and TCP/UDP headers of the linear frame @f for the GSO
 * type of @o, and check them against the frame and against what the guest
 * said in @o (csum_start/offset exactly, hdr_len as a hint that may cover
 * more than the headers but not less). */
static int parse_hdrs(const uint8_t *f, uint32_t len, const struct vio_net_offload *o,
                      struct hdrs *h)
{
    unsigned gso = o->gso_type & ~VIO_NET_HDR_GSO_ECN;
    const uint8_t *ip = f + VIO_ETH_HLEN;
    uint8_t want =
        gso == VIO_NET_HDR_GSO_TCPV4 || gso == VIO_NET_HDR_GSO_TCPV6 ? PROTO_TCP : PROTO_UDP;

    if (len < VIO_ETH_HLEN)
        return -EINVAL;
    switch (rd16(f + 12)) {
    case VIO_ETH_P_IP: {
        uint32_t ihl;

        if (gso == VIO_NET_HDR_GSO_TCPV6 || len < VIO_ETH_HLEN + IPV4_HLEN || ip[0] >> 4 != 4)
            return -EINVAL;
        ihl = (ip[0] & 15u) * 4;
        if (ihl < IPV4_HLEN || VIO_ETH_HLEN + ihl > len || rd16(ip + 2) != len - VIO_ETH_HLEN)
            return -EINVAL;
        /* Already a fragment: there is no whole datagram to cut. */
        if (rd16(ip + 6) & (IP_MF | IP_OFFMASK))
            return -EINVAL;
        h->v6 = false;
        h->proto = ip[9];
        h->l4 = VIO_ETH_HLEN + ihl;
        break;
    }
    case VIO_ETH_P_IPV6:
        if (gso == VIO_NET_HDR_GSO_TCPV4 || len < VIO_ETH_HLEN + IPV6_HLEN || ip[0] >> 4 != 6 ||
            rd16(ip + 4) != len - VIO_ETH_HLEN - IPV6_HLEN)
            return -EINVAL;
        h->v6 = true;
        h->proto = ip[6]; /* an extension header is refused here */
        h->l4 = VIO_ETH_HLEN + IPV6_HLEN;
        break;
    default:
        return -EINVAL;
    }
    if (h->proto != want)
        return -EINVAL;
    if (want == PROTO_TCP) {
        uint32_t doff;

        if (h->l4 + TCP_HLEN > len)
            return -EINVAL;
        doff = (f[h->l4 + 12] >> 4) * 4u;
        if (doff < TCP_HLEN || h->l4 + doff > len)
            return -EINVAL;
        h->payload = h->l4 + doff;
        h->csum_off = 16;
    } else {
        if (h->l4 + UDP_HLEN > len || rd16(f + h->l4 + 4) != len - h->l4)
            return -EINVAL;
        h->payload = h->l4 + UDP_HLEN;
        h->csum_off = 6;
    }
    if (o->csum_start != h->l4 || o->csum_offset != h->csum_off)
        return -EINVAL;
    if (o->hdr_len && o->hdr_len < h->payload)
        return -EINVAL;
    return 0;
}

/* The pseudo-header sum of frame @f (laid out as @h) for @l4len bytes of
 * TCP/UDP header and payload. */
static uint32_t pseudo_sum(const uint8_t *f, const struct hdrs *h, uint32_t l4len)
{
    const uint8_t *ip = f + VIO_ETH_HLEN;
    uint32_t sum = h->v6 ? vio_csum_partial(ip + 8, 32, 0) : vio_csum_partial(ip + 12, 8, 0);

    return sum + h->proto + (l4len >> 16) + (l4len & 0xffff);
}

static void ipv4_fix_csum(uint8_t *ip, uint32_t ihl)
{
    wr16(ip + 10, 0);
    wr16(ip + 10, vio_csum_fold(vio_csum_partial(ip, ihl, 0)));
}

static int emit_linear(uint8_t *data, uint32_t len, const struct vio_net_offload *off,
                       int (*emit)(void *opaque, const struct vio_pkt *out), void *opaque)
{
    struct iovec iov = {.iov_base = data, .iov_len = len};
    struct vio_pkt out = {.off = *off, .iov = &iov, .iovcnt = 1, .len = len};

    return emit(opaque, &out);
}

/* NEEDS_CSUM without GSO: the field already holds the pseudo-header sum. */
static int fit_csum(uint8_t *f, uint32_t len, const struct vio_net_offload *o,
                    int (*emit)(void *opaque, const struct vio_pkt *out), void *opaque)
{
    const struct vio_net_offload done = {0};
    uint32_t start = o->csum_start;

    wr16(f + start + o->csum_offset, csum_nonzero(vio_csum_partial(f + start, len - start, 0)));
    return emit_linear(f, len, &done, emit, opaque);
}

/* TSO and USO: each segment is the headers plus gso_size payload bytes,
 * with lengths, IPv4 id, TCP sequence and flags, and checksums its own. */
static int fit_segments(const uint8_t *f, uint32_t len, const struct vio_net_offload *o,
                        const struct hdrs *h, unsigned caps, uint8_t *seg,
                        int (*emit)(void *opaque, const struct vio_pkt *out), void *opaque)
{
    uint8_t *ip = seg + VIO_ETH_HLEN, *l4 = seg + h->l4, *field = l4 + h->csum_off;
    uint32_t total = len - h->payload, mss = o->gso_size;
    uint32_t nseg = total ? (total + mss - 1) / mss : 1;
    uint32_t seq = h->proto == PROTO_TCP ? rd32(f + h->l4 + 4) : 0;
    uint8_t tcp_flags = h->proto == PROTO_TCP ? f[h->l4 + 13] : 0;
    uint16_t id = h->v6 ? 0 : rd16(f + VIO_ETH_HLEN + 4);
    bool partial = caps & VIO_NET_CAP_CSUM;
    struct vio_net_offload off = {0};

    if (partial) {
        off.flags = F_NEEDS_CSUM;
        off.csum_start = (uint16_t)h->l4;
        off.csum_offset = h->csum_off;
    }
    memcpy(seg, f, h->payload);
    for (uint32_t i = 0; i < nseg; i++) {
        uint32_t at = i * mss, n = total - at < mss ? total - at : mss;
        uint32_t l4len = h->payload - h->l4 + n, seglen = h->payload + n;
        uint32_t sum;
        int ret;

        memcpy(seg + h->payload, f + h->payload + at, n);
        if (h->v6) {
            wr16(ip + 4, (uint16_t)(seglen - VIO_ETH_HLEN - IPV6_HLEN));
        } else {
            wr16(ip + 2, (uint16_t)(seglen - VIO_ETH_HLEN));
            wr16(ip + 4, (uint16_t)(id + i));
            ipv4_fix_csum(ip, h->l4 - VIO_ETH_HLEN);
        }
        if (h->proto == PROTO_TCP) {
            uint8_t fl = tcp_flags;

            wr32(l4 + 4, seq + at);
            if (i + 1 < nseg)
                fl &= (uint8_t) ~(TCP_FIN | TCP_PSH);
            if (i > 0)
                fl &= (uint8_t)~TCP_CWR;
            l4[13] = fl;
        } else {
            wr16(l4 + 4, (uint16_t)l4len);
        }
        sum = pseudo_sum(seg, h, l4len);
        if (partial) {
            /* As Linux leaves it: the folded, uninverted pseudo-header sum. */
            wr16(field, (uint16_t)~vio_csum_fold(sum));
        } else {
            wr16(field, 0);
            wr16(field, csum_nonzero(vio_csum_partial(l4, l4len, sum)));
        }
        ret = emit_linear(seg, seglen, &off, emit, opaque);
        if (ret)
            return ret;
    }
    return 0;
}

/* UFO: one UDP datagram, its checksum completed over the whole of it, sent
 * as IPv4 fragments of at most gso_size bytes (rounded down to the 8-byte
 * unit of fragment offsets). All fragments share the datagram's id. */
static int fit_ufo(uint8_t *f, uint32_t len, const struct vio_net_offload *o, const struct hdrs *h,
                   uint8_t *seg, int (*emit)(void *opaque, const struct vio_pkt *out), void *opaque)
{
    const struct vio_net_offload done = {0};
    uint32_t l4len = len - h->l4, frag = o->gso_size & ~7u;
    uint8_t *ip = seg + VIO_ETH_HLEN;

    /* Options would have to be sorted into copied and first-fragment-only. */
    if (h->v6 || h->l4 != VIO_ETH_HLEN + IPV4_HLEN)
        return -EINVAL;
    if (l4len > o->gso_size && !frag)
        return -EINVAL;
    wr16(f + h->l4 + 6, 0);
    wr16(f + h->l4 + 6, csum_nonzero(vio_csum_partial(f + h->l4, l4len, pseudo_sum(f, h, l4len))));
    if (l4len <= o->gso_size)
        return emit_linear(f, len, &done, emit, opaque);
    memcpy(seg, f, h->l4);
    for (uint32_t at = 0; at < l4len; at += frag) {
        uint32_t n = l4len - at < frag ? l4len - at : frag;
        int ret;

        memcpy(seg + h->l4, f + h->l4 + at, n);
        wr16(ip + 2, (uint16_t)(IPV4_HLEN + n));
        /* DF is dropped: the sender asked for exactly this fragmentation. */
        wr16(ip + 6, (uint16_t)((at >> 3) | (at + n < l4len ? IP_MF : 0)));
        ipv4_fix_csum(ip, IPV4_HLEN);
        ret = emit_linear(seg, h->l4 + n, &done, emit, opaque);
        if (ret)
            return ret;
    }
    return 0;
}

int vio_net_fit(const struct vio_pkt *pkt, unsigned caps, struct vio_net_scratch *scratch,
                int (*emit)(void *opaque, const struct vio_pkt *out), void *opaque)
{
    const struct vio_net_offload *o = &pkt->off;
    uint8_t *f = scratch->frame;
    struct hdrs h;
    int ret;

    ret = vio_net_offload_check(pkt);
    if (ret < 0)
        return ret;
    if (!(needs(o) & ~caps)) {
        /* Zero copy. DATA_VALID is for receivers that take checksum
         * flags at all (virtio: flags stay 0 without GUEST_CSUM). */
        if ((o->flags & F_DATA_VALID) && !(caps & VIO_NET_CAP_CSUM)) {
            struct vio_pkt plain = *pkt;

            plain.off.flags &= (uint8_t)~F_DATA_VALID;
            return emit(opaque, &plain);
        }
        return emit(opaque, pkt);
    }
    if (vio_pkt_read(pkt, 0, f, pkt->len) != pkt->len)
        return -EINVAL;
    if (o->gso_type == VIO_NET_HDR_GSO_NONE)
        return fit_csum(f, pkt->len, o, emit, opaque);
    ret = parse_hdrs(f, pkt->len, o, &h);
    if (ret < 0)
        return ret;
    if ((o->gso_type & ~VIO_NET_HDR_GSO_ECN) == VIO_NET_HDR_GSO_UDP)
        return fit_ufo(f, pkt->len, o, &h, scratch->seg, emit, opaque);
    return fit_segments(f, pkt->len, o, &h, caps, scratch->seg, emit, opaque);
}
