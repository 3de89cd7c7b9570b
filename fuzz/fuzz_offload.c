/* libFuzzer target for software offload finishing (src/net/offload.c): an
 * offload header, receiver caps and a frame scattered over separately
 * allocated pieces go through vio_net_fit(); every frame it emits is read
 * whole and checked (size, offload header, checksums it claims complete,
 * segments adding up to the original payload), and a refusal emits nothing.
 *
 * Input layout:
 *   [0] flags  [1] gso_type  [2..3] hdr_len  [4..5] gso_size
 *   [6..7] csum_start  [8..9] csum_offset   (little-endian)
 *   [10] receiver caps (VIO_NET_CAP_*, low 6 bits)
 *   [11] low nibble: scatter pattern; high nibble: emit returns 1 at that
 *        (1-based) call, 0 never
 *   [12] helpers, so that the fuzzer reaches segmentation quickly: 1 set
 *        the IPv4 total length / IPv6 payload length to fit the frame, 2 the
 *        UDP length, 4 csum_start/csum_offset to the TCP/UDP checksum field
 *   then the Ethernet frame. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "net/offload.h"

#define HDR_BYTES 13

static struct vio_net_scratch scratch;

struct run {
    const struct vio_pkt *in;
    const uint8_t *frame; /* the input, linear */
    unsigned caps;
    unsigned calls;
    unsigned stop_at;
    bool passed;     /* the input itself was emitted */
    bool gso_l4;     /* TSO or USO: segments to be checked */
    uint32_t hdrlen; /* of the input, when gso_l4 */
    uint32_t got;    /* payload bytes seen in segments */
    uint8_t out[VIO_NET_MAX_FRAME];
};

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Offset and protocol of the TCP/UDP header of @f, when it is plain IP. */
static bool find_l4(const uint8_t *f, uint32_t len, uint32_t *l4, uint8_t *proto)
{
    if (len < 14)
        return false;
    if (rd16(f + 12) == VIO_ETH_P_IP && len >= 34) {
        *l4 = 14 + (f[14] & 15u) * 4;
        *proto = f[23];
    } else if (rd16(f + 12) == VIO_ETH_P_IPV6 && len >= 54) {
        *l4 = 54;
        *proto = f[20];
    } else {
        return false;
    }
    return *l4 <= len;
}

/* The TCP/UDP checksum of a complete segment verifies. */
static bool l4_csum_ok(const uint8_t *f, uint32_t len, uint32_t l4, uint8_t proto)
{
    uint32_t sum, l4len = len - l4;

    if (rd16(f + 12) == VIO_ETH_P_IPV6)
        sum = vio_csum_partial(f + 22, 32, 0);
    else
        sum = vio_csum_partial(f + 26, 8, 0);
    sum += proto + (l4len >> 16) + (l4len & 0xffff);
    return vio_csum_fold(vio_csum_partial(f + l4, l4len, sum)) == 0;
}

static int emit(void *opaque, const struct vio_pkt *p)
{
    struct run *r = opaque;
    uint8_t *f = r->out;

    r->calls++;
    if (p->len > VIO_NET_MAX_FRAME || vio_pkt_read(p, 0, f, p->len) != p->len)
        abort();
    if (vio_net_offload_check(p) != 0)
        abort();
    if (p == r->in || p->iov == r->in->iov) {
        /* Passed through: the receiver takes everything it needs. */
        r->passed = true;
        if (p->len != r->in->len || p->off.gso_type != r->in->off.gso_type ||
            ((p->off.flags ^ r->in->off.flags) & ~VIO_NET_HDR_F_DATA_VALID))
            abort();
        if ((p->off.flags & VIO_NET_HDR_F_NEEDS_CSUM) && !(r->caps & VIO_NET_CAP_CSUM))
            abort();
        if ((p->off.flags & VIO_NET_HDR_F_DATA_VALID) && !(r->caps & VIO_NET_CAP_CSUM))
            abort();
        if (memcmp(f, r->frame, p->len))
            abort();
    } else {
        if (p->iovcnt != 1 || p->off.gso_type != VIO_NET_HDR_GSO_NONE)
            abort();
        if (p->off.flags & ~VIO_NET_HDR_F_NEEDS_CSUM)
            abort();
        if (p->off.flags && !(r->caps & VIO_NET_CAP_CSUM))
            abort();
        if (r->gso_l4) {
            uint32_t l4, n = p->len - r->hdrlen;
            uint8_t proto;

            if (!p->off.flags != !(r->caps & VIO_NET_CAP_CSUM))
                abort();
            if (p->len < r->hdrlen || n > r->in->off.gso_size || !find_l4(f, p->len, &l4, &proto))
                abort();
            if (memcmp(f + r->hdrlen, r->frame + r->hdrlen + r->got, n))
                abort();
            r->got += n;
            if (rd16(f + 12) == VIO_ETH_P_IP &&
                vio_csum_fold(vio_csum_partial(f + 14, l4 - 14, 0)) != 0)
                abort();
            if (p->off.flags) {
                uint32_t at = p->off.csum_start + p->off.csum_offset;

                if (p->off.csum_start != l4)
                    abort();
                wr16(f + at, vio_csum_fold(vio_csum_partial(f + l4, p->len - l4, 0)));
            }
            if (!l4_csum_ok(f, p->len, l4, proto))
                abort();
        }
    }
    return r->calls == r->stop_at ? 1 : 0;
}

/* Apply the helper bits of the layout to the linear frame @f. */
static void help(uint8_t *f, uint32_t len, unsigned bits, struct vio_net_offload *o)
{
    uint32_t l4;
    uint8_t proto;

    if (!find_l4(f, len, &l4, &proto))
        return;
    if (bits & 1) {
        if (rd16(f + 12) == VIO_ETH_P_IP)
            wr16(f + 16, (uint16_t)(len - 14));
        else
            wr16(f + 18, (uint16_t)(len - 54));
    }
    if ((bits & 2) && proto == 17 && l4 + 8 <= len)
        wr16(f + l4 + 4, (uint16_t)(len - l4));
    if (bits & 4) {
        o->csum_start = (uint16_t)l4;
        o->csum_offset = proto == 17 ? 6 : 16;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vio_log_set_level(VIO_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t pieces[16][4] = {
        {0},    {1, 0},      {1, 2, 3, 0}, {7, 13, 1, 0},  {14, 20, 0}, {54, 1, 0},
        {3, 0}, {34, 21, 0}, {64, 0},      {1, 1, 1, 999}, {100, 0},    {13, 0},
        {2, 0}, {55, 5, 0},  {500, 1, 0},  {9, 0},
    };
    struct run *r;
    struct vio_pkt pkt = {0};
    struct iovec *iov;
    uint8_t *f;
    uint32_t len, at = 0;
    unsigned n = 0, k = 0;
    int ret;

    if (size < HDR_BYTES || size - HDR_BYTES > VIO_NET_MAX_FRAME)
        return 0;
    len = (uint32_t)(size - HDR_BYTES);
    r = calloc(1, sizeof(*r));
    f = malloc(len + 1);
    iov = calloc(len + 1, sizeof(*iov));
    if (!r || !f || !iov)
        abort();
    pkt.off.flags = data[0];
    pkt.off.gso_type = data[1];
    pkt.off.hdr_len = (uint16_t)(data[2] | data[3] << 8);
    pkt.off.gso_size = (uint16_t)(data[4] | data[5] << 8);
    pkt.off.csum_start = (uint16_t)(data[6] | data[7] << 8);
    pkt.off.csum_offset = (uint16_t)(data[8] | data[9] << 8);
    r->caps = data[10] & 0x3f;
    r->stop_at = data[11] >> 4;
    memcpy(f, data + HDR_BYTES, len);
    help(f, len, data[12], &pkt.off);

    /* Each piece its own allocation: reading past one is an ASan report. */
    while (at < len) {
        const uint32_t *pat = pieces[data[11] & 15];
        uint32_t want = pat[k % 4] ? pat[k % 4] : len, m = want < len - at ? want : len - at;
        uint8_t *piece = malloc(m);

        if (!piece)
            abort();
        memcpy(piece, f + at, m);
        iov[n].iov_base = piece;
        iov[n].iov_len = m;
        n++;
        at += m;
        k = pat[(k + 1) % 4] ? k + 1 : 0;
    }
    pkt.iov = iov;
    pkt.iovcnt = n;
    pkt.len = len;
    r->in = &pkt;
    r->frame = f;

    {
        unsigned g = pkt.off.gso_type & 0x7f;
        uint32_t l4;
        uint8_t proto;

        if ((g == VIO_NET_HDR_GSO_TCPV4 || g == VIO_NET_HDR_GSO_TCPV6 ||
             g == VIO_NET_HDR_GSO_UDP_L4) &&
            find_l4(f, len, &l4, &proto)) {
            r->gso_l4 = true;
            r->hdrlen = proto == 6 && l4 + 13 <= len ? l4 + (f[l4 + 12] >> 4) * 4u : l4 + 8;
        }
    }
    ret = vio_net_fit(&pkt, r->caps, &scratch, emit, r);
    if (ret == -EINVAL && r->calls)
        abort(); /* refused after emitting */
    if (ret != -EINVAL && ret != 0 && ret != 1)
        abort();
    if (ret == 1 && r->calls != r->stop_at)
        abort();
    if (ret == 0 && vio_net_offload_check(&pkt) != 0)
        abort();
    /* Segmented: the payloads add up to the original one. */
    if (ret == 0 && r->gso_l4 && !r->passed && r->got != len - r->hdrlen)
        abort();
    for (unsigned i = 0; i < n; i++)
        free(iov[i].iov_base);
    free(iov);
    free(f);
    free(r);
    return 0;
}
