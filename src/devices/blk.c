/* virtio-blk: parses and checks each request (header, ranges, lengths,
 * direction, read-only), turns it into one backend bio, and completes it
 * with a status byte. Requests are drained from the ring in a batch, handed
 * to the backend with one kick, and completed in batches with one guest
 * notification per batch. Guest-caused errors fail the request with
 * IOERR/UNSUPP; a request with nowhere to put a status breaks the queue. */
#include "devices/blk.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* Request types, status values and feature bits (VIRTIO 1.2, 5.2). */
#define BLK_T_IN           0
#define BLK_T_OUT          1
#define BLK_T_FLUSH        4
#define BLK_T_GET_ID       8
#define BLK_T_DISCARD      11
#define BLK_T_WRITE_ZEROES 13

#define BLK_S_OK     0
#define BLK_S_IOERR  1
#define BLK_S_UNSUPP 2

#define BLK_F_SEG_MAX      2
#define BLK_F_RO           5
#define BLK_F_BLK_SIZE     6
#define BLK_F_FLUSH        9
#define BLK_F_TOPOLOGY     10
#define BLK_F_MQ           12
#define BLK_F_DISCARD      13
#define BLK_F_WRITE_ZEROES 14

#define BLK_ID_BYTES    20
#define SECTOR_SHIFT    9
#define BLK_SEG_MAX     126 /* data buffers per request we advertise */
/* Header + data + status, and room for buffers split across regions. */
#define BLK_MAX_IOV     (BLK_SEG_MAX + 2 + 8)
/* Largest discard / write-zeroes we accept in one request (sectors). */
#define BLK_MAX_DISCARD_SECTORS (UINT32_MAX >> SECTOR_SHIFT)

struct blk_config {
    uint64_t capacity;
    uint32_t size_max;
    uint32_t seg_max;
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors;
    uint32_t blk_size;
    uint8_t physical_block_exp;
    uint8_t alignment_offset;
    uint16_t min_io_size;
    uint32_t opt_io_size;
    uint8_t writeback;
    uint8_t unused0;
    uint16_t num_queues;
    uint32_t max_discard_sectors;
    uint32_t max_discard_seg;
    uint32_t discard_sector_alignment;
    uint32_t max_write_zeroes_sectors;
    uint32_t max_write_zeroes_seg;
    uint8_t write_zeroes_may_unmap;
    uint8_t unused1[3];
    uint32_t max_secure_erase_sectors;
    uint32_t max_secure_erase_seg;
    uint32_t secure_erase_sector_alignment;
} __attribute__((packed));
static_assert(sizeof(struct blk_config) == 72, "virtio_blk_config layout");

struct blk_outhdr {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
};

struct blk_discard_seg {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};
#define BLK_SEG_F_UNMAP 1u

/* Per-queue counters; they outlive queue restarts and reconnects. */
struct blk_qstats {
    vio_counter_t requests, reads, writes, flushes, discards, write_zeroes, get_id;
    vio_counter_t read_bytes, write_bytes, errors, unsupported;
};

struct blk_req {
    struct vio_bio bio;
    struct vio_vq_elem *elem;
    uint8_t *status;
    uint32_t used_len; /* bytes written to the guest, status excluded */
    uint32_t type;
};

struct blk_queue {
    struct vio_blk *blk;
    struct vio_vq *vq;
    struct vio_bq *bq;
    struct blk_req *reqs; /* [vq->size], indexed by element id */
    struct blk_qstats st;
};

struct vio_blk {
    struct vio_dev dev;
    struct vio_bdev *bdev;
    uint64_t capacity; /* 512-byte sectors */
    char serial[BLK_ID_BYTES + 1];
    struct blk_queue *queues; /* [num_queues] */
};

static struct vio_blk *to_blk(struct vio_dev *d)
{
    return vio_container_of(d, struct vio_blk, dev);
}

static bool has_feature(const struct vio_blk *blk, unsigned bit)
{
    return blk->dev.features & VIO_BIT(bit);
}

static void finish(struct blk_queue *q, struct blk_req *r, uint8_t status)
{
    if (status == BLK_S_IOERR)
        vio_counter_add(&q->st.errors, 1);
    else if (status == BLK_S_UNSUPP)
        vio_counter_add(&q->st.unsupported, 1);
    *r->status = status;
    vio_vq_push(q->vq, r->elem, r->used_len + 1);
}

/* Take the last writable byte of @e as the status byte. */
static uint8_t *take_status(struct vio_vq_elem *e)
{
    struct iovec *last;

    if (e->in_num == 0)
        return NULL;
    last = &e->iov[e->out_num + e->in_num - 1];
    last->iov_len--;
    e->in_len--;
    if (last->iov_len == 0)
        e->in_num--;
    return (uint8_t *)last->iov_base + last->iov_len;
}

/* Drop the first @n readable bytes (the header) from @e's iovecs, in place.
 * Returns the index of the first iovec holding data. */
static unsigned skip_out(struct vio_vq_elem *e, size_t n)
{
    unsigned i = 0;

    while (i < e->out_num && n >= e->iov[i].iov_len) {
        n -= e->iov[i].iov_len;
        i++;
    }
    if (n) {
        e->iov[i].iov_base = (uint8_t *)e->iov[i].iov_base + n;
        e->iov[i].iov_len -= n;
    }
    return i;
}

static bool range_ok(const struct vio_blk *blk, uint64_t sector, uint64_t bytes)
{
    if (bytes & ((1u << SECTOR_SHIFT) - 1))
        return false;
    if (sector > blk->capacity)
        return false;
    return (bytes >> SECTOR_SHIFT) <= blk->capacity - sector;
}

static void submit(struct blk_queue *q, struct blk_req *r)
{
    int ret = q->blk->bdev->ops->submit(q->bq, &r->bio);

    if (ret < 0)
        finish(q, r, BLK_S_IOERR);
}

static void handle_rw(struct blk_queue *q, struct blk_req *r, uint64_t sector)
{
    struct vio_blk *blk = q->blk;
    struct vio_vq_elem *e = r->elem;
    bool is_read = r->type == BLK_T_IN;
    uint64_t len;

    if (is_read) {
        /* Header only in the readable part; data in the writable part. */
        len = e->in_len;
        if (e->out_len != sizeof(struct blk_outhdr))
            goto ioerr;
        r->bio.iov = e->iov + e->out_num;
        r->bio.iovcnt = e->in_num;
        r->used_len = (uint32_t)VIO_MIN(len, UINT32_MAX - 1);
        vio_counter_add(&q->st.reads, 1);
    } else {
        unsigned first = skip_out(e, sizeof(struct blk_outhdr));

        len = e->out_len - sizeof(struct blk_outhdr);
        if (e->in_len != 0)
            goto ioerr; /* only the status byte may be writable */
        if (blk->bdev->readonly)
            goto ioerr;
        r->bio.iov = e->iov + first;
        r->bio.iovcnt = (uint16_t)(e->out_num - first);
        vio_counter_add(&q->st.writes, 1);
    }
    if (!range_ok(blk, sector, len) || len > UINT32_MAX)
        goto ioerr;
    if (len == 0) {
        finish(q, r, BLK_S_OK);
        return;
    }
    r->bio.op = is_read ? VIO_BIO_READ : VIO_BIO_WRITE;
    r->bio.flags = 0;
    r->bio.offset = sector << SECTOR_SHIFT;
    r->bio.len = len;
    submit(q, r);
    return;

ioerr:
    finish(q, r, BLK_S_IOERR);
}

static void handle_discard(struct blk_queue *q, struct blk_req *r)
{
    struct vio_blk *blk = q->blk;
    struct vio_vq_elem *e = r->elem;
    bool zeroes = r->type == BLK_T_WRITE_ZEROES;
    struct blk_discard_seg seg;
    uint32_t flags, n;
    uint64_t sector;

    if (!has_feature(blk, zeroes ? BLK_F_WRITE_ZEROES : BLK_F_DISCARD)) {
        finish(q, r, BLK_S_UNSUPP);
        return;
    }
    vio_counter_add(zeroes ? &q->st.write_zeroes : &q->st.discards, 1);
    /* We advertise one segment per request. */
    if (e->out_len != sizeof(struct blk_outhdr) + sizeof(seg) || e->in_len != 0 ||
        blk->bdev->readonly)
        goto ioerr;
    vio_vq_elem_read(e, sizeof(struct blk_outhdr), &seg, sizeof(seg));
    sector = vio_le64(seg.sector);
    n = vio_le32(seg.num_sectors);
    flags = vio_le32(seg.flags);
    /* Unmap is meaningful only for write zeroes; other bits are reserved. */
    if ((flags & ~BLK_SEG_F_UNMAP) || (!zeroes && (flags & BLK_SEG_F_UNMAP))) {
        finish(q, r, BLK_S_UNSUPP);
        return;
    }
    if (n > BLK_MAX_DISCARD_SECTORS || !range_ok(blk, sector, (uint64_t)n << SECTOR_SHIFT))
        goto ioerr;
    if (n == 0) {
        finish(q, r, BLK_S_OK);
        return;
    }
    r->bio.op = zeroes ? VIO_BIO_WRITE_ZEROES : VIO_BIO_DISCARD;
    r->bio.flags = (flags & BLK_SEG_F_UNMAP) ? VIO_BIO_F_UNMAP : 0;
    r->bio.iov = NULL;
    r->bio.iovcnt = 0;
    r->bio.offset = sector << SECTOR_SHIFT;
    r->bio.len = (uint64_t)n << SECTOR_SHIFT;
    submit(q, r);
    return;

ioerr:
    finish(q, r, BLK_S_IOERR);
}

static void handle_request(void *opaque, struct vio_vq_elem *e)
{
    struct blk_queue *q = opaque;
    struct vio_blk *blk = q->blk;
    struct blk_req *r = &q->reqs[e->id];
    struct blk_outhdr hdr;
    uint64_t sector;

    vio_counter_add(&q->st.requests, 1);
    r->elem = e;
    r->used_len = 0;
    r->status = take_status(e);
    if (!r->status) {
        vio_vq_fault(q->vq, "request at head %u has no writable status byte", e->id);
        vio_vq_push(q->vq, e, 0);
        return;
    }
    if (vio_vq_elem_read(e, 0, &hdr, sizeof(hdr)) != sizeof(hdr)) {
        finish(q, r, BLK_S_IOERR);
        return;
    }
    r->type = vio_le32(hdr.type);
    sector = vio_le64(hdr.sector);
    switch (r->type) {
    case BLK_T_IN:
    case BLK_T_OUT:
        handle_rw(q, r, sector);
        break;
    case BLK_T_FLUSH:
        vio_counter_add(&q->st.flushes, 1);
        if (!has_feature(blk, BLK_F_FLUSH)) {
            finish(q, r, BLK_S_UNSUPP);
            break;
        }
        r->bio = (struct vio_bio){.op = VIO_BIO_FLUSH};
        submit(q, r);
        break;
    case BLK_T_GET_ID:
        vio_counter_add(&q->st.get_id, 1);
        r->used_len = (uint32_t)vio_vq_elem_write(e, 0, blk->serial,
                                                  VIO_MIN(e->in_len, (uint64_t)BLK_ID_BYTES));
        finish(q, r, BLK_S_OK);
        break;
    case BLK_T_DISCARD:
    case BLK_T_WRITE_ZEROES:
        handle_discard(q, r);
        break;
    default:
        finish(q, r, BLK_S_UNSUPP);
        break;
    }
}

static void bio_done(void *opaque, struct vio_bio *bio, int res)
{
    struct blk_queue *q = opaque;
    struct blk_req *r = vio_container_of(bio, struct blk_req, bio);

    if (res == 0) {
        if (bio->op == VIO_BIO_READ)
            vio_counter_add(&q->st.read_bytes, bio->len);
        else if (bio->op == VIO_BIO_WRITE)
            vio_counter_add(&q->st.write_bytes, bio->len);
    }
    finish(q, r, res == 0 ? BLK_S_OK : BLK_S_IOERR);
}

static void bio_batch_done(void *opaque)
{
    struct blk_queue *q = opaque;

    vio_dev_complete(&q->blk->dev, q->vq);
}

static const struct vio_bq_cb blk_bq_cb = {
    .done = bio_done,
    .batch_done = bio_batch_done,
};

static void blk_queue_kick(struct vio_dev *d, struct vio_vq *vq)
{
    struct blk_queue *q = vio_dev_queue_of(vq)->priv;

    vio_dev_drain(vq, handle_request, q);
    to_blk(d)->bdev->ops->kick(q->bq);
    /* Requests finished without the backend (errors, GET_ID). */
    vio_dev_complete(d, vq);
}

static int blk_queue_start(struct vio_dev *d, struct vio_vq *vq)
{
    struct vio_blk *blk = to_blk(d);
    struct blk_queue *q = &blk->queues[vq->index];
    struct vio_dev_queue *dq = vio_dev_queue_of(vq);
    int ret;

    q->reqs = calloc(vq->size, sizeof(*q->reqs));
    if (!q->reqs)
        return -ENOMEM;
    ret = blk->bdev->ops->queue_open(blk->bdev, dq->loop, vq->size, &blk_bq_cb, q, &q->bq);
    if (ret < 0) {
        free(q->reqs);
        q->reqs = NULL;
        return ret;
    }
    q->vq = vq;
    dq->priv = q;
    return 0;
}

static void blk_queue_stop(struct vio_dev *d, struct vio_vq *vq)
{
    struct blk_queue *q = &to_blk(d)->queues[vq->index];

    q->blk->bdev->ops->queue_close(q->bq);
    q->bq = NULL;
    free(q->reqs);
    q->reqs = NULL;
    vio_dev_queue_of(vq)->priv = NULL;
}

static uint64_t blk_features(struct vio_dev *d)
{
    struct vio_blk *blk = to_blk(d);
    uint64_t f = VIO_BIT(BLK_F_SEG_MAX) | VIO_BIT(BLK_F_BLK_SIZE) | VIO_BIT(BLK_F_FLUSH) |
                 VIO_BIT(BLK_F_TOPOLOGY) | VIO_BIT(BLK_F_MQ);

    if (blk->bdev->readonly) {
        f |= VIO_BIT(BLK_F_RO);
    } else {
        if (blk->bdev->can_discard)
            f |= VIO_BIT(BLK_F_DISCARD);
        if (blk->bdev->can_write_zeroes)
            f |= VIO_BIT(BLK_F_WRITE_ZEROES);
    }
    return f;
}

static uint32_t blk_config_size(struct vio_dev *d)
{
    (void)d;
    return sizeof(struct blk_config);
}

static void blk_get_config(struct vio_dev *d, uint32_t off, void *buf, uint32_t len)
{
    struct vio_blk *blk = to_blk(d);
    uint32_t bs = blk->bdev->block_size;
    uint32_t bs_sectors = bs >> SECTOR_SHIFT;
    struct blk_config c = {
        .capacity = vio_to_le64(blk->capacity),
        .seg_max = vio_to_le32(BLK_SEG_MAX),
        .blk_size = vio_to_le32(bs),
        .physical_block_exp = 0,
        .min_io_size = vio_to_le16((uint16_t)bs_sectors),
        .opt_io_size = vio_to_le32(bs_sectors),
        .writeback = 1,
        .num_queues = vio_to_le16(d->num_queues),
        .max_discard_sectors = vio_to_le32(BLK_MAX_DISCARD_SECTORS),
        .max_discard_seg = vio_to_le32(1),
        .discard_sector_alignment = vio_to_le32(bs_sectors),
        .max_write_zeroes_sectors = vio_to_le32(BLK_MAX_DISCARD_SECTORS),
        .max_write_zeroes_seg = vio_to_le32(1),
        .write_zeroes_may_unmap = 1,
    };

    memcpy(buf, (uint8_t *)&c + off, len);
}

static json_t *blk_stats(struct vio_dev *d)
{
    struct vio_blk *blk = to_blk(d);
    json_t *queues = json_array();

    for (unsigned i = 0; i < d->num_queues; i++) {
        const struct blk_qstats *s = &blk->queues[i].st;

        json_array_append_new(
            queues,
            json_pack("{s:i, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                      "queue", (int)i, "running", d->queues[i].running, "requests",
                      (json_int_t)vio_counter_get(&s->requests), "reads",
                      (json_int_t)vio_counter_get(&s->reads), "writes",
                      (json_int_t)vio_counter_get(&s->writes), "flushes",
                      (json_int_t)vio_counter_get(&s->flushes), "discards",
                      (json_int_t)vio_counter_get(&s->discards), "write_zeroes",
                      (json_int_t)vio_counter_get(&s->write_zeroes), "get_id",
                      (json_int_t)vio_counter_get(&s->get_id), "read_bytes",
                      (json_int_t)vio_counter_get(&s->read_bytes), "write_bytes",
                      (json_int_t)vio_counter_get(&s->write_bytes), "errors",
                      (json_int_t)vio_counter_get(&s->errors), "unsupported",
                      (json_int_t)vio_counter_get(&s->unsupported)));
    }
    return json_pack("{s:I, s:b, s:s, s:o, s:o}", "capacity_bytes",
                     (json_int_t)(blk->capacity << SECTOR_SHIFT), "readonly",
                     blk->bdev->readonly, "serial", blk->serial, "backend",
                     blk->bdev->ops->info(blk->bdev), "queues", queues);
}

static void blk_destroy(struct vio_dev *d)
{
    struct vio_blk *blk = to_blk(d);

    blk->bdev->ops->close(blk->bdev);
    free(blk->queues);
    vio_dev_cleanup(d);
    free(blk);
}

static const struct vio_dev_ops blk_ops = {
    .type = "blk",
    .device_id = VIO_ID_BLOCK,
    .features = blk_features,
    .config_size = blk_config_size,
    .get_config = blk_get_config,
    .queue_start = blk_queue_start,
    .queue_kick = blk_queue_kick,
    .queue_stop = blk_queue_stop,
    .stats = blk_stats,
    .destroy = blk_destroy,
};

int vio_blk_create(const struct vio_blk_opts *o, struct vio_bdev *bdev, struct vio_dev **out)
{
    struct vio_blk *blk;
    const char *serial = o->serial ? o->serial : o->id;
    uint16_t qsize = o->queue_size ? o->queue_size : VIO_BLK_DEFAULT_QUEUE_SIZE;
    int ret;

    if (o->num_queues == 0 || o->num_queues > VIO_BLK_MAX_QUEUES) {
        vio_err("%s: queues must be 1..%d, got %u", o->id, VIO_BLK_MAX_QUEUES, o->num_queues);
        return -EINVAL;
    }
    if (!vio_is_pow2(qsize)) {
        vio_err("%s: queue-size must be a power of two, got %u", o->id, qsize);
        return -EINVAL;
    }
    if (strlen(serial) > BLK_ID_BYTES) {
        vio_err("%s: serial '%s' is longer than %d bytes", o->id, serial, BLK_ID_BYTES);
        return -EINVAL;
    }
    if (bdev->max_queues && o->num_queues > bdev->max_queues) {
        vio_err("%s: the backend serves only %u queue%s (an NBD server without multi-conn): "
                "use queues=%u", o->id, bdev->max_queues, bdev->max_queues == 1 ? "" : "s",
                bdev->max_queues);
        return -EINVAL;
    }
    if (bdev->block_size < 512 || bdev->block_size > 65536 || !vio_is_pow2(bdev->block_size)) {
        vio_err("%s: block size %u must be a power of two in 512..65536", o->id,
                bdev->block_size);
        return -EINVAL;
    }
    blk = calloc(1, sizeof(*blk));
    if (!blk)
        return -ENOMEM;
    blk->queues = calloc(o->num_queues, sizeof(*blk->queues));
    if (!blk->queues) {
        ret = -ENOMEM;
        goto err_free;
    }
    ret = vio_dev_init(&blk->dev, &blk_ops, o->id, o->num_queues, qsize, BLK_MAX_IOV);
    if (ret < 0)
        goto err_free;
    for (unsigned i = 0; i < o->num_queues; i++)
        blk->queues[i].blk = blk;
    blk->bdev = bdev;
    blk->capacity = bdev->size >> SECTOR_SHIFT;
    snprintf(blk->serial, sizeof(blk->serial), "%s", serial);
    *out = &blk->dev;
    return 0;

err_free:
    free(blk->queues);
    free(blk);
    return ret;
}
