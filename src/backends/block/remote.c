/* Slot pool, completion batching and backoff timer shared by the NBD and
 * iSCSI backends (see remote.h). Completions found inside library calls
 * are only recorded; vio_rq_deliver hands them over later, so a device's
 * done() never runs inside submit() or inside a library callback. */
#include "backends/block/remote.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

int vio_rq_init(struct vio_rq *q, struct vio_loop *loop, unsigned depth, const struct vio_bq_cb *cb,
                void *opaque, vio_handler_fn timer_fn)
{
    int ret;

    memset(q, 0, sizeof(*q));
    q->tfd = -1;
    q->loop = loop;
    q->cb = cb;
    q->opaque = opaque;
    q->depth = depth;
    q->rl = (struct vio_ratelimit)VIO_RATELIMIT_INIT;
    q->backoff_ms = VIO_REMOTE_BACKOFF_MIN_MS;
    q->slots = calloc(depth, sizeof(*q->slots));
    q->free_idx = calloc(depth, sizeof(*q->free_idx));
    q->done_idx = calloc(depth, sizeof(*q->done_idx));
    if (!q->slots || !q->free_idx || !q->done_idx) {
        ret = -ENOMEM;
        goto err;
    }
    for (unsigned i = 0; i < depth; i++) {
        q->free_idx[i] = depth - 1 - i;
        q->slots[i].rq = q;
    }
    q->nfree = depth;
    q->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (q->tfd < 0) {
        ret = -errno;
        goto err;
    }
    ret = vio_loop_add(loop, &q->th, q->tfd, EPOLLIN, timer_fn);
    if (ret < 0)
        goto err;
    q->timer_added = true;
    return 0;

err:
    vio_rq_fini(q);
    return ret;
}

void vio_rq_fini(struct vio_rq *q)
{
    if (q->timer_added)
        vio_loop_del(q->loop, &q->th);
    q->timer_added = false;
    if (q->tfd >= 0)
        close(q->tfd);
    q->tfd = -1;
    free(q->slots);
    free(q->free_idx);
    free(q->done_idx);
    q->slots = NULL;
    q->free_idx = q->done_idx = NULL;
}

struct vio_rslot *vio_rq_get(struct vio_rq *q, struct vio_bio *bio)
{
    struct vio_rslot *s;

    if (!q->nfree)
        return NULL;
    s = &q->slots[q->free_idx[--q->nfree]];
    s->bio = bio;
    s->pending = 0;
    s->err = 0;
    s->busy = true;
    return s;
}

void vio_rq_put(struct vio_rq *q, struct vio_rslot *s, int err)
{
    /* Already finished (failed by vio_rq_fail_all): a late answer. */
    if (!s->busy || s->pending == 0)
        return;
    if (err && !s->err)
        s->err = err;
    if (--s->pending == 0)
        q->done_idx[q->ndone++] = (unsigned)(s - q->slots);
}

void vio_rq_fail_all(struct vio_rq *q, int err)
{
    for (unsigned i = 0; i < q->depth; i++) {
        struct vio_rslot *s = &q->slots[i];

        if (s->busy && s->pending) {
            s->pending = 1;
            vio_rq_put(q, s, err);
        }
    }
}

void vio_rq_deliver(struct vio_rq *q, struct vio_bdev_stats *stats)
{
    unsigned n = 0;

    /* done() may submit new bios (which may finish at once and append to
     * the list): walk until it stays empty. */
    while (q->ndone) {
        unsigned idx = q->done_idx[--q->ndone];
        struct vio_rslot *s = &q->slots[idx];
        struct vio_bio *bio = s->bio;
        int err = s->err;

        s->busy = false;
        s->bio = NULL;
        q->free_idx[q->nfree++] = idx;
        if (err)
            vio_bdev_count(&stats->errors);
        else if (bio->op == VIO_BIO_FLUSH)
            vio_bdev_count(&stats->flushes);
        else if (bio->op == VIO_BIO_DISCARD)
            vio_bdev_count(&stats->discards);
        else if (bio->op == VIO_BIO_WRITE_ZEROES)
            vio_bdev_count(&stats->write_zeroes);
        q->cb->done(q->opaque, bio, err);
        n++;
    }
    if (n)
        q->cb->batch_done(q->opaque);
}

void vio_rq_timer(struct vio_rq *q, unsigned ms)
{
    struct itimerspec its = {
        .it_value = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000},
    };

    timerfd_settime(q->tfd, 0, &its, NULL);
}

void vio_rq_timer_ack(struct vio_rq *q)
{
    uint64_t n;

    if (read(q->tfd, &n, sizeof(n)) < 0) {
        /* EAGAIN: a re-arm raced with the expiry; nothing to consume. */
    }
}

unsigned vio_rq_next_backoff(struct vio_rq *q)
{
    unsigned ms = q->backoff_ms;

    q->backoff_ms = VIO_MIN(q->backoff_ms * 2, VIO_REMOTE_BACKOFF_MAX_MS);
    return ms;
}
