/* libFuzzer target for the virtio-scsi controller (src/devices/scsi.c with
 * the SCSI disk of src/scsi/disk.c): the input is what a hostile driver
 * controls, descriptor chains for the control, event and two request
 * queues of a controller with LUN 0:0 on a null backend, LUN 1:5 on a
 * backend that completes bios only when the input says so (so TMFs wait
 * and requests finish out of order) and LUN 2:0 that comes and goes. The
 * harness pumps the worker loop by hand on its own thread.
 *
 * Input: byte 0 flags (1: VIRTIO_SCSI_F_HOTPLUG, 2: EVENT_IDX rings), then
 * records, each an op byte:
 *   op % 8 = 0, 1: a chain on request queue 0/1;  2: a chain on the control queue
 *     chain: byte n: 1 + (n & 7) buffers; n & 0x08: write a valid LUN address
 *     ((n >> 4) & 3 picks 0:0, 1:5, 2:0, 3:0) over the request's lun field;
 *     n & 0x40: do not kick yet. Per buffer: u16 length (% 4097), u8 flags
 *     (bit 0: device-writable). Then u16 count and that many bytes of the
 *     readable stream (the rest is zero).
 *   3: post 1 + (b & 3) event buffers of 16 bytes (b & 0x80: b & 0x1f bytes)
 *      and kick;  4: complete every held bio (b & 1: with -EIO);
 *   5: remove LUN 2:0 if present, else add it;  6: config write: offset
 *      byte, u32 value;  7: kick every queue.
 * Checks: nothing crashes or leaks; a used element names a chain the driver
 * posted and its length is within the chain's writable bytes; the device
 * wrote nothing outside writable buffers; a finished request has a valid
 * response code (and sense that matches its status), a TMF or AN reply is
 * one of the codes the spec allows, an event is a transport reset or an
 * events-missed report; once every bio is completed every request is
 * answered (no hang). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "devices/scsi.h"
#include "ring.h"

#define QSIZE  16
#define NQ     4 /* control, event, two request queues */
#define SLOT   4096u
#define MEM    (1u << 20)
#define DISK   (256u * 1024)
#define MAXBUF 8

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_virtio_scsi: " __VA_ARGS__);                                         \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* FUZZ_VIRTIO_SCSI_TRACE=1: print every used element (to check seeds). */
static bool trace;

/* ---- a backend whose bios complete when the input says so ---- */

struct held_bq;

struct held_bdev {
    struct vio_bdev b;
    struct held_bq *bqs[NQ];
};

struct held_bq {
    struct held_bdev *h;
    const struct vio_bq_cb *cb;
    void *opaque;
    unsigned depth, n;
    struct vio_bio **pending;
};

static void check_bio(const struct vio_bdev *b, const struct vio_bio *bio)
{
    uint64_t sum = 0;

    if (bio->offset > b->size || bio->len > b->size - bio->offset)
        FAIL("bio op %u [%llu, +%llu) outside the %llu-byte disk", bio->op,
             (unsigned long long)bio->offset, (unsigned long long)bio->len,
             (unsigned long long)b->size);
    if (bio->op != VIO_BIO_READ && bio->op != VIO_BIO_WRITE)
        return;
    for (unsigned i = 0; i < bio->iovcnt; i++)
        sum += bio->iov[i].iov_len;
    if (sum != bio->len)
        FAIL("bio of %llu bytes with %llu bytes of buffers", (unsigned long long)bio->len,
             (unsigned long long)sum);
}

static int held_queue_open(struct vio_bdev *b, struct vio_loop *loop, unsigned depth,
                           const struct vio_bq_cb *cb, void *opaque, struct vio_bq **out)
{
    struct held_bdev *h = (struct held_bdev *)b;
    struct held_bq *q = calloc(1, sizeof(*q));
    unsigned i;

    (void)loop;
    if (!q)
        return -ENOMEM;
    q->pending = calloc(depth, sizeof(*q->pending));
    for (i = 0; i < NQ && h->bqs[i]; i++)
        ;
    if (!q->pending || i == NQ)
        FAIL("cannot open a held queue");
    q->h = h;
    q->cb = cb;
    q->opaque = opaque;
    q->depth = depth;
    h->bqs[i] = q;
    *out = (struct vio_bq *)q;
    return 0;
}

static void held_queue_close(struct vio_bq *bq)
{
    struct held_bq *q = (struct held_bq *)bq;

    if (q->n)
        FAIL("backend queue closed with %u bios in flight", q->n);
    for (unsigned i = 0; i < NQ; i++)
        if (q->h->bqs[i] == q)
            q->h->bqs[i] = NULL;
    free(q->pending);
    free(q);
}

static int held_submit(struct vio_bq *bq, struct vio_bio *bio)
{
    struct held_bq *q = (struct held_bq *)bq;

    check_bio(&q->h->b, bio);
    if (q->n >= q->depth)
        return -EBUSY;
    q->pending[q->n++] = bio;
    return 0;
}

static void held_kick(struct vio_bq *bq)
{
    (void)bq;
}

static json_t *held_info(struct vio_bdev *b)
{
    (void)b;
    return json_pack("{s:s}", "type", "held");
}

static void held_close(struct vio_bdev *b)
{
    free(b);
}

static const struct vio_bdev_ops held_ops = {
    .name = "held",
    .queue_open = held_queue_open,
    .queue_close = held_queue_close,
    .submit = held_submit,
    .kick = held_kick,
    .info = held_info,
    .close = held_close,
};

/* Complete what is held now (completions may submit more: UNMAP pieces).
 * Returns how many were completed. */
static unsigned held_complete(struct held_bdev *h, int res)
{
    unsigned total = 0;

    for (unsigned i = 0; i < NQ; i++) {
        struct held_bq *q = h->bqs[i];
        struct vio_bio *done[QSIZE * 2];
        unsigned n;

        if (!q || !q->n)
            continue;
        n = q->n;
        if (n > QSIZE * 2)
            FAIL("%u bios held on one queue of %u", n, QSIZE);
        memcpy(done, q->pending, n * sizeof(*done));
        q->n = 0;
        for (unsigned j = 0; j < n; j++) {
            struct vio_bio *bio = done[j];

            if (bio->op == VIO_BIO_READ && res == 0)
                for (unsigned k = 0; k < bio->iovcnt; k++)
                    memset(bio->iov[k].iov_base, 0x5a, bio->iov[k].iov_len);
            else if (bio->op == VIO_BIO_WRITE)
                for (unsigned k = 0; k < bio->iovcnt; k++) {
                    volatile const uint8_t *p = bio->iov[k].iov_base;

                    if (bio->iov[k].iov_len)
                        (void)p[bio->iov[k].iov_len - 1];
                }
            q->cb->done(q->opaque, bio, res);
        }
        q->cb->batch_done(q->opaque);
        total += n;
    }
    return total;
}

static unsigned held_pending(const struct held_bdev *h)
{
    unsigned n = 0;

    for (unsigned i = 0; i < NQ; i++)
        if (h->bqs[i])
            n += h->bqs[i]->n;
    return n;
}

/* ---- the driver side ---- */

struct chain {
    bool used;
    unsigned n;
    uint16_t desc[MAXBUF];
    uint32_t len[MAXBUF];
    bool write[MAXBUF];
    uint64_t in_len, out_len;
};

struct fq {
    struct test_ring r;
    bool desc_busy[QSIZE];
    struct chain chains[QSIZE]; /* by head */
    int kick;
};

struct fx {
    struct test_mem m;
    struct vio_loop loop;
    struct vio_dev *dev;
    struct fq q[NQ];
    uint64_t data;   /* gpa of the buffer slots: [queue][desc] */
    uint8_t *shadow; /* what the driver wrote there */
    struct held_bdev *held;
    bool lun2;
};

static uint64_t slot_gpa(struct fx *f, unsigned qi, unsigned d)
{
    return f->data + ((uint64_t)qi * QSIZE + d) * SLOT;
}

static uint8_t *shadow_of(struct fx *f, unsigned qi, unsigned d)
{
    return f->shadow + ((size_t)qi * QSIZE + d) * SLOT;
}

static void pump(struct fx *f)
{
    for (int i = 0; i < 64 && vio_loop_run_once(&f->loop, 0) > 0; i++)
        ;
}

static uint32_t ld32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return vio_le32(v);
}

/* Gather the first @len writable bytes of chain @c into @out. */
static void gather_in(struct fx *f, unsigned qi, const struct chain *c, uint8_t *out, uint32_t len)
{
    uint32_t got = 0;

    for (unsigned i = 0; i < c->n && got < len; i++) {
        uint32_t k;

        if (!c->write[i])
            continue;
        k = c->len[i] < len - got ? c->len[i] : len - got;
        memcpy(out + got, tmem_ptr(&f->m, slot_gpa(f, qi, c->desc[i])), k);
        got += k;
    }
}

static void check_request(struct fx *f, unsigned qi, const struct chain *c, uint32_t len)
{
    uint8_t r[12 + 256];
    uint32_t sense_len;
    uint8_t status, response;

    if (len == 0)
        return; /* a broken queue's element */
    if (len < 12 + 18)
        FAIL("request q%u: used length %u shorter than any response", qi, len);
    gather_in(f, qi, c, r, len < sizeof(r) ? len : sizeof(r));
    sense_len = ld32(r);
    status = r[10];
    response = r[11];
    if (r[8] || r[9])
        FAIL("request q%u: status qualifier %02x%02x", qi, r[9], r[8]);
    if (response != 0 && response != 3 && response != 9)
        FAIL("request q%u: response %u", qi, response);
    if (response != 0) {
        if (status || sense_len)
            FAIL("request q%u: response %u with status %u, sense %u", qi, response, status,
                 sense_len);
        return;
    }
    if (status == 0) {
        if (sense_len)
            FAIL("request q%u: GOOD with %u bytes of sense", qi, sense_len);
    } else if (status == 2) {
        if (sense_len != 18 || r[12] != 0x70 || (r[14] & 0xf) == 0)
            FAIL("request q%u: CHECK CONDITION with bad sense (len %u, %02x %02x)", qi, sense_len,
                 r[12], r[14]);
    } else {
        FAIL("request q%u: status %u", qi, status);
    }
    if (ld32(r + 4) > c->in_len + c->out_len)
        FAIL("request q%u: residual %u larger than the data buffers", qi, ld32(r + 4));
}

static void check_ctrl(struct fx *f, const struct chain *c, uint32_t len)
{
    uint8_t r[5];

    if (len == 0)
        return;
    gather_in(f, 0, c, r, len < 5 ? len : 5);
    if (len == 1) {
        if (r[0] != 0 && r[0] != 3 && r[0] != 9 && r[0] != 11 && r[0] != 12)
            FAIL("control: response %u", r[0]);
    } else if (len == 5) {
        if (ld32(r) != 0 || r[4] != 0)
            FAIL("control: AN reply %08x %u", ld32(r), r[4]);
    } else {
        FAIL("control: used length %u", len);
    }
}

static void check_event(struct fx *f, const struct chain *c, uint32_t len)
{
    uint8_t e[16];
    uint32_t ev, reason;

    if (len == 0)
        return;
    if (len != 16)
        FAIL("event: used length %u", len);
    gather_in(f, 1, c, e, 16);
    ev = ld32(e);
    reason = ld32(e + 12);
    if ((ev & ~0x80000000u) == 1) {
        if ((reason != 1 && reason != 2) || e[0 + 4] != 1)
            FAIL("event: transport reset with reason %u, lun[0] %u", reason, e[4]);
    } else if (ev != 0x80000000u) {
        FAIL("event: type %08x", ev);
    }
}

/* Take back every used element, checking it. */
static void reap(struct fx *f)
{
    for (unsigned qi = 0; qi < NQ; qi++) {
        struct fq *q = &f->q[qi];
        uint32_t id, len;

        while (tring_used(&q->r, &id, &len)) {
            struct chain *c;

            if (id >= QSIZE || !q->chains[id].used)
                FAIL("q%u: used id %u was not posted", qi, id);
            c = &q->chains[id];
            if (trace) {
                uint8_t r[12] = {0};

                gather_in(f, qi, c, r, len < 12 ? len : 12);
                fprintf(stderr, "used q%u id %u len %u: %02x %02x .. %02x %02x\n", qi, id, len,
                        r[0], r[1], r[10], r[11]);
            }
            if (len > c->in_len)
                FAIL("q%u: used length %u, only %llu writable bytes", qi, len,
                     (unsigned long long)c->in_len);
            for (unsigned i = 0; i < c->n; i++) {
                const uint8_t *p = tmem_ptr(&f->m, slot_gpa(f, qi, c->desc[i]));
                uint32_t from = c->write[i] ? c->len[i] : 0;

                if (memcmp(p + from, shadow_of(f, qi, c->desc[i]) + from, SLOT - from))
                    FAIL("q%u: the device wrote outside the writable buffers", qi);
            }
            if (qi >= 2)
                check_request(f, qi, c, len);
            else if (qi == 0)
                check_ctrl(f, c, len);
            else
                check_event(f, c, len);
            for (unsigned i = 0; i < c->n; i++)
                q->desc_busy[c->desc[i]] = false;
            c->used = false;
        }
    }
}

/* Build and publish a chain of @n buffers; the readable stream gets
 * @content. Returns false if the ring has no room. */
static bool post_chain(struct fx *f, unsigned qi, unsigned n, const uint32_t *len,
                       const bool *write, const uint8_t *content, size_t clen)
{
    struct fq *q = &f->q[qi];
    uint16_t d[MAXBUF];
    unsigned k = 0;
    struct chain *c;
    size_t off = 0;

    for (unsigned i = 0; i < QSIZE && k < n; i++)
        if (!q->desc_busy[i])
            d[k++] = (uint16_t)i;
    if (k < n)
        return false;
    c = &q->chains[d[0]];
    if (c->used)
        FAIL("q%u: free descriptor %u heads a posted chain", qi, d[0]);
    memset(c, 0, sizeof(*c));
    c->used = true;
    c->n = n;
    for (unsigned i = 0; i < n; i++) {
        uint8_t *p = tmem_ptr(&f->m, slot_gpa(f, qi, d[i]));
        uint16_t flags =
            (uint16_t)((write[i] ? VIO_DESC_F_WRITE : 0) | (i + 1 < n ? VIO_DESC_F_NEXT : 0));

        memset(p, 0xee, SLOT);
        if (!write[i] && off < clen) {
            size_t m = clen - off < len[i] ? clen - off : len[i];

            memcpy(p, content + off, m);
            off += m;
        }
        memcpy(shadow_of(f, qi, d[i]), p, SLOT);
        q->desc_busy[d[i]] = true;
        c->desc[i] = d[i];
        c->len[i] = len[i];
        c->write[i] = write[i];
        if (write[i])
            c->in_len += len[i];
        else
            c->out_len += len[i];
        tring_set_desc(&q->r, d[i], slot_gpa(f, qi, d[i]), len[i], flags, i + 1 < n ? d[i + 1] : 0);
    }
    tring_publish(&q->r, d[0]);
    return true;
}

struct input {
    const uint8_t *p;
    size_t left;
};

static bool take(struct input *in, void *dst, size_t n)
{
    if (in->left < n)
        return false;
    memcpy(dst, in->p, n);
    in->p += n;
    in->left -= n;
    return true;
}

static const uint8_t lun_addr[4][2] = {{0, 0}, {1, 5}, {2, 0}, {3, 0}};

static bool op_chain(struct fx *f, struct input *in, unsigned qi)
{
    uint8_t hdr, content[4096 * 2];
    uint32_t len[MAXBUF];
    bool write[MAXBUF];
    uint16_t clen;
    unsigned n;

    if (!take(in, &hdr, 1))
        return false;
    n = 1 + (hdr & 7);
    for (unsigned i = 0; i < n; i++) {
        uint8_t b[3];

        if (!take(in, b, 3))
            return false;
        len[i] = (uint32_t)(b[0] | b[1] << 8) % (SLOT + 1);
        write[i] = b[2] & 1;
    }
    if (!take(in, &clen, 2))
        return false;
    clen = vio_le16(clen);
    if (clen > sizeof(content))
        clen = sizeof(content);
    if (clen > in->left)
        clen = (uint16_t)in->left;
    memset(content, 0, sizeof(content));
    take(in, content, clen);
    if (hdr & 0x08) {
        const uint8_t *a = lun_addr[(hdr >> 4) & 3];
        unsigned off = qi == 0 ? 8 : 0;

        content[off] = 1;
        content[off + 1] = a[0];
        content[off + 2] = 0x40;
        content[off + 3] = a[1];
        memset(content + off + 4, 0, 4);
        if (clen < off + 8)
            clen = (uint16_t)(off + 8);
    }
    if (post_chain(f, qi, n, len, write, content, clen) && !(hdr & 0x40))
        vio_eventfd_signal(f->q[qi].kick);
    return true;
}

static bool op_events(struct fx *f, struct input *in)
{
    uint8_t b;
    uint32_t len;
    bool w = true;

    if (!take(in, &b, 1))
        return false;
    len = (b & 0x80) ? (b & 0x1f) : 16;
    for (unsigned i = 0; i < 1u + (b & 3); i++)
        post_chain(f, 1, 1, &len, &w, NULL, 0);
    vio_eventfd_signal(f->q[1].kick);
    return true;
}

static int add_lun2(struct fx *f)
{
    struct vio_bdev_opts bo = {.null = true, .null_size = DISK};
    struct vio_scsi_lun_opts lo = {.target = 2, .lun = 0, .disk = {.id = "l2"}};
    struct vio_bdev *b;
    char err[256];

    if (vio_bdev_open(&bo, &b) < 0)
        FAIL("null backend");
    return vio_scsi_hba_add_lun(f->dev, &lo, b, err, sizeof(err));
}

static void op_hotplug(struct fx *f)
{
    if (f->lun2) {
        if (vio_scsi_hba_remove_lun(f->dev, 2, 0) != 0)
            FAIL("remove LUN 2:0");
        f->lun2 = false;
    } else {
        if (add_lun2(f) != 0)
            FAIL("add LUN 2:0");
        f->lun2 = true;
    }
}

static bool op_config(struct fx *f, struct input *in)
{
    uint8_t b[5];
    uint32_t v, sense, cdb;

    if (!take(in, b, 5))
        return false;
    memcpy(&v, b + 1, 4);
    f->dev->ops->set_config(f->dev, b[0] % 33, &v, 4);
    f->dev->ops->get_config(f->dev, 20, &sense, 4);
    f->dev->ops->get_config(f->dev, 24, &cdb, 4);
    sense = vio_le32(sense);
    cdb = vio_le32(cdb);
    if (sense < 18 || sense > 256 || cdb < 6 || cdb > 256)
        FAIL("config: sense_size %u, cdb_size %u", sense, cdb);
    return true;
}

static void setup(struct fx *f, uint8_t flags)
{
    struct vio_scsi_hba_opts o = {.id = "fz", .num_queues = 2, .queue_size = QSIZE};
    struct vio_bdev_opts bo = {.null = true, .null_size = DISK};
    struct vio_scsi_lun_opts lo = {.target = 0, .lun = 0, .disk = {.id = "l0"}};
    struct vio_bdev *b;
    char err[256];

    memset(f, 0, sizeof(*f));
    tmem_init(&f->m, MEM);
    for (unsigned i = 0; i < NQ; i++)
        tring_init(&f->q[i].r, &f->m, QSIZE);
    f->data = tmem_alloc(&f->m, (uint64_t)NQ * QSIZE * SLOT, SLOT);
    f->shadow = calloc(NQ * QSIZE, SLOT);
    if (!f->shadow || vio_loop_init(&f->loop) < 0 || vio_scsi_hba_create(&o, &f->dev) < 0)
        FAIL("setup");
    if (vio_bdev_open(&bo, &b) < 0 || vio_scsi_hba_add_lun(f->dev, &lo, b, err, sizeof(err)) < 0)
        FAIL("LUN 0:0: %s", err);
    f->held = calloc(1, sizeof(*f->held));
    f->held->b.ops = &held_ops;
    f->held->b.size = DISK;
    f->held->b.block_size = 512;
    f->held->b.can_discard = true;
    f->held->b.can_write_zeroes = true;
    lo.target = 1;
    lo.lun = 5;
    lo.disk.id = "l1";
    if (vio_scsi_hba_add_lun(f->dev, &lo, &f->held->b, err, sizeof(err)) < 0)
        FAIL("LUN 1:5: %s", err);
    if (add_lun2(f) < 0)
        FAIL("LUN 2:0");
    f->lun2 = true;
    f->dev->mem = &f->m.gmem;
    f->dev->features = VIO_BIT(VIO_F_VERSION_1) | ((flags & 1) ? VIO_BIT(1) : 0);
    for (unsigned i = 0; i < NQ; i++) {
        struct vio_vq *vq = &f->dev->queues[i].vq;

        f->q[i].kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (f->q[i].kick < 0)
            FAIL("eventfd");
        f->dev->queues[i].loop = &f->loop;
        f->dev->queues[i].enabled = true;
        tring_to_vq(&f->q[i].r, vq, flags & 2, false);
        vq->call_fd = -1;
        vq->err_fd = -1;
        if (vio_dev_queue_start(f->dev, i, f->q[i].kick) < 0)
            FAIL("start q%u", i);
    }
}

static void teardown(struct fx *f)
{
    /* Everything the backend holds completes; then nothing may stay in
     * flight: parked TMFs are answered, requests returned. */
    for (int i = 0; i < 64 && held_pending(f->held); i++) {
        held_complete(f->held, 0);
        pump(f);
    }
    pump(f);
    reap(f);
    if (held_pending(f->held))
        FAIL("bios still held after 64 rounds of completions");
    for (unsigned i = 0; i < NQ; i++)
        if (f->dev->queues[i].vq.inflight)
            FAIL("q%u: %u requests never answered after every bio completed", i,
                 f->dev->queues[i].vq.inflight);
    for (unsigned i = 0; i < NQ; i++)
        vio_dev_queue_stop(f->dev, i);
    f->dev->ops->destroy(f->dev);
    for (unsigned i = 0; i < NQ; i++)
        close(f->q[i].kick);
    vio_loop_destroy(&f->loop);
    free(f->shadow);
    tmem_free(&f->m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    trace = getenv("FUZZ_VIRTIO_SCSI_TRACE") != NULL;
    vio_log_set_level(trace ? VIO_LOG_DEBUG : VIO_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fx f;
    struct input in = {data, size};
    uint8_t flags, op;

    if (!take(&in, &flags, 1))
        return 0;
    setup(&f, flags);
    for (unsigned rec = 0; rec < 256 && take(&in, &op, 1); rec++) {
        bool ok = true;

        switch (op % 8) {
        case 0:
        case 1:
            ok = op_chain(&f, &in, 2 + (op & 1));
            break;
        case 2:
            ok = op_chain(&f, &in, 0);
            break;
        case 3:
            ok = op_events(&f, &in);
            break;
        case 4: {
            uint8_t b = 0;

            take(&in, &b, 1);
            held_complete(f.held, (b & 1) ? -EIO : 0);
            break;
        }
        case 5:
            op_hotplug(&f);
            break;
        case 6:
            ok = op_config(&f, &in);
            break;
        default:
            for (unsigned i = 0; i < NQ; i++)
                vio_eventfd_signal(f.q[i].kick);
            break;
        }
        pump(&f);
        reap(&f);
        if (!ok)
            break;
    }
    teardown(&f);
    return 0;
}
