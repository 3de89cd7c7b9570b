/* Null block backend: completes every operation at once without touching
 * data (reads leave the guest's buffer as it was, like qemu's null-co with
 * read-zeroes=off). It measures the device and transport alone, which is
 * what benchmarks compare. Completions are delivered from kick(), so they
 * still arrive in batches like a real backend's. */
#include "backends/block/bdev.h"

#include <errno.h>
#include <stdlib.h>

#include "core/log.h"

struct null_bq {
    struct vio_bdev *b;
    const struct vio_bq_cb *cb;
    void *opaque;
    unsigned depth, n;
    struct vio_bio **pending;
};

static int null_queue_open(struct vio_bdev *b, struct vio_loop *loop, unsigned depth,
                           const struct vio_bq_cb *cb, void *opaque, struct vio_bq **out)
{
    struct null_bq *q = calloc(1, sizeof(*q));

    (void)loop;
    if (!q)
        return -ENOMEM;
    q->pending = calloc(depth, sizeof(*q->pending));
    if (!q->pending) {
        free(q);
        return -ENOMEM;
    }
    q->b = b;
    q->cb = cb;
    q->opaque = opaque;
    q->depth = depth;
    *out = (struct vio_bq *)q;
    return 0;
}

static void null_queue_close(struct vio_bq *bq)
{
    struct null_bq *q = (struct null_bq *)bq;

    free(q->pending);
    free(q);
}

static int null_submit(struct vio_bq *bq, struct vio_bio *bio)
{
    struct null_bq *q = (struct null_bq *)bq;

    if (q->n >= q->depth)
        return -EBUSY;
    q->pending[q->n++] = bio;
    return 0;
}

static void null_kick(struct vio_bq *bq)
{
    struct null_bq *q = (struct null_bq *)bq;
    unsigned n = q->n;

    if (!n)
        return;
    q->n = 0;
    for (unsigned i = 0; i < n; i++) {
        struct vio_bio *bio = q->pending[i];

        if (bio->op == VIO_BIO_FLUSH)
            vio_bdev_count(&q->b->stats.flushes);
        else if (bio->op == VIO_BIO_DISCARD)
            vio_bdev_count(&q->b->stats.discards);
        else if (bio->op == VIO_BIO_WRITE_ZEROES)
            vio_bdev_count(&q->b->stats.write_zeroes);
        q->cb->done(q->opaque, bio, 0);
    }
    q->cb->batch_done(q->opaque);
}

static json_t *null_info(struct vio_bdev *b)
{
    return json_pack("{s:s, s:I}", "type", "null", "size", (json_int_t)b->size);
}

static void null_close(struct vio_bdev *b)
{
    free(b);
}

static const struct vio_bdev_ops null_ops = {
    .name = "null",
    .queue_open = null_queue_open,
    .queue_close = null_queue_close,
    .submit = null_submit,
    .kick = null_kick,
    .info = null_info,
    .close = null_close,
};

int vio_bdev_null_open(const struct vio_bdev_opts *o, struct vio_bdev **out)
{
    struct vio_bdev *b = calloc(1, sizeof(*b));

    if (!b)
        return -ENOMEM;
    b->ops = &null_ops;
    b->block_size = o->block_size ? o->block_size : 512;
    b->size = o->null_size ? o->null_size : (1ull << 30);
    b->size -= b->size % b->block_size;
    b->readonly = o->readonly;
    b->can_discard = true;
    b->can_write_zeroes = true;
    *out = b;
    return 0;
}
