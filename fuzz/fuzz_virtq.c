/* libFuzzer target for the split virtqueue (src/virtio/virtq.c): the input
 * is a few geometry bytes plus raw descriptor table, avail ring and indirect
 * tables in fake guest memory; the device pops, reads, writes and pushes,
 * and every iovec it is given must lie inside the guest memory it mapped.
 *
 * Input layout (all little-endian):
 *   [0] log2 of the queue size (size = 1 << (b & 15); > 256 must be refused)
 *   [1] flags: 1 EVENT_IDX, 2 INDIRECT_DESC, 4 two regions, 8 a hole between
 *       them, 16 "rebase" (fold addresses and indices into range so the
 *       fuzzer reaches deep paths quickly), 32 push in reverse order
 *   [2] max_iov (1 + b % 64)   [3] rounds (1 + b % 8)
 *   [4..5] last_avail_idx      [6..7] initial used->idx
 *   [8..9] how many bytes of indirect area follow (at most AREA_LEN)
 *   then the descriptor table (16 * size bytes), the avail ring
 *   (4 + 2 * size + 2 bytes) and the indirect area; the bytes left over
 *   are driver actions, one per round. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "ring.h"
#include "virtio/virtq.h"

#define MEM_SIZE  (64 * 1024)
#define HOLE      (8 * 1024)
#define MAX_SIZE  256
#define DESC_OFF  0
#define AVAIL_OFF 4096
#define USED_OFF  8192
#define AREA_OFF  12288
#define AREA_LEN  (20 * 1024)

#define F_EVENT_IDX 1
#define F_INDIRECT  2
#define F_SPLIT     4
#define F_HOLE      8
#define F_REBASE    16
#define F_REVERSE   32

struct input {
    const uint8_t *p;
    size_t left;
};

static size_t take(struct input *in, void *dst, size_t n)
{
    n = n < in->left ? n : in->left;
    memcpy(dst, in->p, n);
    in->p += n;
    in->left -= n;
    return n;
}

static int take_byte(struct input *in)
{
    uint8_t b;

    return take(in, &b, 1) ? b : -1;
}

/* [p, p+len) lies wholly inside one region of @m. */
static int inside_guest(const struct vio_gmem *m, const void *p, size_t len)
{
    const uint8_t *b = p;

    for (unsigned i = 0; i < m->nregions; i++) {
        const struct vio_gmem_region *r = &m->regions[i];

        if (b >= r->hva && (uint64_t)(b - r->hva) < r->size &&
            len <= r->size - (uint64_t)(b - r->hva))
            return 1;
    }
    return 0;
}

/* Everything vio_vq_pop promises about an element. */
static void check_elem(const struct vio_vq *vq, const struct vio_vq_elem *e)
{
    uint64_t out = 0, in = 0;

    if (e->id >= vq->size || !e->inflight)
        abort();
    if ((unsigned)e->out_num + e->in_num > vq->max_iov)
        abort();
    for (unsigned i = 0; i < (unsigned)e->out_num + e->in_num; i++) {
        const struct iovec *v = &e->iov[i];

        if (v->iov_len == 0 || !inside_guest(vq->mem, v->iov_base, v->iov_len))
            abort();
        if (i < e->out_num)
            out += v->iov_len;
        else
            in += v->iov_len;
    }
    if (out != e->out_len || in != e->in_len)
        abort();
}

/* Fold a 16-byte descriptor's fields towards useful values. */
static void rebase_desc(uint8_t *d, uint64_t span, uint16_t table_n)
{
    struct vio_vring_desc v;

    memcpy(&v, d, sizeof(v));
    v.addr = vio_to_le64(TMEM_BASE + vio_le64(v.addr) % (span + 256));
    v.len = vio_to_le32(vio_le32(v.len) % 0x4000);
    if (table_n)
        v.next = vio_to_le16((uint16_t)(vio_le16(v.next) % (table_n + 1u)));
    memcpy(d, &v, sizeof(v));
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Every malformed ring is logged as a warning; keep the fuzzer quiet. */
    vio_log_set_level(VIO_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    uint8_t hdr[10] = {0};
    struct test_mem mem;
    struct vio_vq vq;
    struct vio_vq_elem *popped[MAX_SIZE + 1];
    uint16_t n, max_iov, last_avail, used_idx, avail_idx, area_len;
    uint8_t flags, rounds;
    uint8_t *desc, *avail, *area;
    uint64_t span;

    if (take(&in, hdr, sizeof(hdr)) < sizeof(hdr))
        return 0;
    n = (uint16_t)(1u << (hdr[0] & 15));
    flags = hdr[1];
    max_iov = (uint16_t)(1 + hdr[2] % 64);
    rounds = (uint8_t)(1 + hdr[3] % 8);
    last_avail = (uint16_t)(hdr[4] | hdr[5] << 8);
    used_idx = (uint16_t)(hdr[6] | hdr[7] << 8);
    area_len = (uint16_t)(hdr[8] | hdr[9] << 8);
    if (area_len > AREA_LEN)
        area_len = AREA_LEN;

    if (flags & F_SPLIT)
        tmem_init_split(&mem, MEM_SIZE, (flags & F_HOLE) ? HOLE : 0);
    else
        tmem_init(&mem, MEM_SIZE);
    span = mem.size;
    desc = tmem_ptr(&mem, TMEM_BASE + DESC_OFF);
    avail = tmem_ptr(&mem, TMEM_BASE + AVAIL_OFF);
    area = tmem_ptr(&mem, TMEM_BASE + AREA_OFF);

    /* Rings of a queue larger than MAX_SIZE do not fit our layout; the
     * queue must refuse to start anyway, so they stay zero. */
    if (n <= MAX_SIZE) {
        take(&in, desc, vio_vring_desc_size(n));
        take(&in, avail, vio_vring_avail_size(n));
    }
    take(&in, area, area_len);
    {
        uint16_t le = vio_to_le16(used_idx);

        memcpy(tmem_ptr(&mem, TMEM_BASE + USED_OFF + 2), &le, 2);
    }
    if ((flags & F_REBASE) && n <= MAX_SIZE) {
        for (unsigned i = 0; i < n; i++)
            rebase_desc(desc + 16 * i, span, n);
        for (unsigned i = 0; i + 16 <= AREA_LEN; i += 16)
            rebase_desc(area + i, span, 0);
        for (unsigned i = 0; i < n; i++) {
            uint16_t h;

            memcpy(&h, avail + 4 + 2 * i, 2);
            h = vio_to_le16((uint16_t)(vio_le16(h) % (n + 1u)));
            memcpy(avail + 4 + 2 * i, &h, 2);
        }
        memcpy(&avail_idx, avail + 2, 2);
        avail_idx = vio_to_le16((uint16_t)(last_avail + vio_le16(avail_idx) % (n + 2u)));
        memcpy(avail + 2, &avail_idx, 2);
    }

    memset(&vq, 0, sizeof(vq));
    vio_vq_init(&vq, 0, MAX_SIZE, "fuzz");
    vq.size = n;
    vq.desc_gpa = TMEM_BASE + DESC_OFF;
    vq.avail_gpa = TMEM_BASE + AVAIL_OFF;
    vq.used_gpa = TMEM_BASE + USED_OFF;
    vq.event_idx = flags & F_EVENT_IDX;
    vq.indirect = flags & F_INDIRECT;
    vq.last_avail_idx = last_avail;
    if (vio_vq_start(&vq, &mem.gmem, max_iov) < 0) {
        if (n <= MAX_SIZE)
            abort(); /* our geometry is always valid for sizes we allow */
        goto out;
    }
    if (n > MAX_SIZE)
        abort();

    for (unsigned round = 0; round < rounds && !vq.broken; round++) {
        unsigned got = 0;
        struct vio_vq_elem *e;
        int action;

        vio_vq_disable_notify(&vq);
        while (got <= n && (e = vio_vq_pop(&vq))) {
            uint8_t buf[64];
            size_t rd, wr;

            check_elem(&vq, e);
            /* What a device does with a request: read its header, write a
             * status. */
            rd = vio_vq_elem_read(e, got, buf, sizeof(buf));
            if (rd > e->out_len || rd > sizeof(buf))
                abort();
            wr = vio_vq_elem_write(e, 0, buf, rd);
            if (wr > e->in_len)
                abort();
            popped[got++] = e;
        }
        /* A ring of n entries cannot hold more than n requests. */
        if (got > n || vq.inflight != got)
            abort();
        for (unsigned i = 0; i < got; i++) {
            struct vio_vq_elem *p = popped[(flags & F_REVERSE) ? got - 1 - i : i];

            vio_vq_push(&vq, p, (uint32_t)(p->in_len > UINT32_MAX ? UINT32_MAX : p->in_len));
            if (i & 1)
                vio_vq_flush(&vq);
        }
        if (vq.inflight != 0)
            abort();
        vio_vq_notify(&vq);
        vio_vq_enable_notify(&vq);
        /* The driver's move for the next round: publish some more entries
         * (the ring contents wrap around and are reused). */
        action = take_byte(&in);
        if (action < 0)
            break;
        memcpy(&avail_idx, avail + 2, 2);
        avail_idx = vio_to_le16((uint16_t)(vio_le16(avail_idx) + (unsigned)action % (n + 2u)));
        memcpy(avail + 2, &avail_idx, 2);
    }
    vio_vq_stop(&vq);
out:
    vio_vq_free(&vq);
    tmem_free(&mem);
    return 0;
}
