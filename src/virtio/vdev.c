/* Device core: queue start/stop/drain on worker loops for any device and any
 * transport (see vdev.h). */
#include "virtio/vdev.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

int vio_dev_init(struct vio_dev *d, const struct vio_dev_ops *ops, const char *id,
                 uint16_t num_queues, uint16_t max_queue_size, uint16_t max_iov)
{
    memset(d, 0, sizeof(*d));
    if (num_queues == 0 || max_iov == 0 || !vio_is_pow2(max_queue_size))
        return -EINVAL;
    d->ops = ops;
    snprintf(d->id, sizeof(d->id), "%s", id);
    d->num_queues = num_queues;
    d->max_queue_size = max_queue_size;
    d->max_iov = max_iov;
    d->queues = calloc(num_queues, sizeof(*d->queues));
    if (!d->queues)
        return -ENOMEM;
    for (unsigned i = 0; i < num_queues; i++) {
        char name[40];

        snprintf(name, sizeof(name), "%s q%u", d->id, i);
        vio_vq_init(&d->queues[i].vq, (uint16_t)i, max_queue_size, name);
        d->queues[i].kick_fd = -1;
        d->queues[i].dev = d;
    }
    return 0;
}

void vio_dev_cleanup(struct vio_dev *d)
{
    if (!d->queues)
        return;
    for (unsigned i = 0; i < d->num_queues; i++)
        vio_vq_free(&d->queues[i].vq);
    free(d->queues);
    d->queues = NULL;
}

bool vio_dev_needs_reset(const struct vio_dev *d)
{
    for (unsigned i = 0; i < d->num_queues; i++) {
        /* Written by the worker; an untorn read is all we need. */
        if (__atomic_load_n(&d->queues[i].vq.broken, __ATOMIC_RELAXED))
            return true;
    }
    return false;
}

void vio_dev_drain(struct vio_vq *vq, void (*handle)(void *opaque, struct vio_vq_elem *e),
                   void *opaque)
{
    struct vio_dev_queue *q = vio_dev_queue_of(vq);
    struct vio_vq_elem *e;

    do {
        vio_vq_disable_notify(vq);
        while (q->enabled && !q->stopping && (e = vio_vq_pop(vq)))
            handle(opaque, e);
        if (!q->enabled || q->stopping)
            return;
    } while (vio_vq_enable_notify(vq));
}

static void kick_handler(struct vio_handler *h, uint32_t events)
{
    struct vio_dev_queue *q = vio_container_of(h, struct vio_dev_queue, kick_h);

    (void)events;
    vio_eventfd_drain(h->fd);
    if (q->enabled && !q->stopping && !q->vq.broken)
        q->dev->ops->queue_kick(q->dev, &q->vq);
}

/* A queue operation run on the queue's worker. */
struct queue_op {
    struct vio_call call;
    struct vio_dev_queue *q;
    int fd;
    bool flag;
};

static int queue_call(struct vio_dev_queue *q, void (*fn)(struct vio_call *), int fd, bool flag)
{
    struct queue_op op = {.call = {.fn = fn}, .q = q, .fd = fd, .flag = flag};

    op.call.arg = &op;
    return vio_loop_call(q->loop, &op.call);
}

static void start_fn(struct vio_call *c)
{
    struct queue_op *op = c->arg;
    struct vio_dev_queue *q = op->q;
    struct vio_dev *d = q->dev;
    int ret;

    ret = vio_vq_start(&q->vq, d->mem, d->max_iov);
    if (ret < 0)
        goto out;
    ret = d->ops->queue_start(d, &q->vq);
    if (ret < 0) {
        vio_warn("%s: device could not start the queue: %s", q->vq.name, strerror(-ret));
        goto err_vq;
    }
    ret = vio_loop_add(q->loop, &q->kick_h, op->fd, EPOLLIN, kick_handler);
    if (ret < 0) {
        vio_warn("%s: cannot watch kick fd %d: %s", q->vq.name, op->fd, strerror(-ret));
        goto err_dev;
    }
    q->kick_fd = op->fd;
    q->running = true;
    q->stopping = false;
    /* Requests made available before the start were never kicked for. */
    if (q->enabled)
        d->ops->queue_kick(d, &q->vq);
    vio_call_done(c, 0);
    return;

err_dev:
    d->ops->queue_stop(d, &q->vq);
err_vq:
    vio_vq_stop(&q->vq);
out:
    vio_call_done(c, ret);
}

int vio_dev_queue_start(struct vio_dev *d, unsigned qi, int kick_fd)
{
    struct vio_dev_queue *q = &d->queues[qi];

    if (q->running)
        return -EBUSY;
    if (kick_fd < 0 || !q->loop || !d->mem)
        return -EINVAL;
    return queue_call(q, start_fn, kick_fd, false);
}

static void stop_begin_fn(struct vio_call *c)
{
    struct queue_op *op = c->arg;
    struct vio_dev_queue *q = op->q;

    vio_loop_del(q->loop, &q->kick_h);
    q->kick_fd = -1;
    q->stopping = true;
    if (q->vq.inflight == 0) {
        vio_call_done(c, 0);
        return;
    }
    /* Completed by vio_dev_complete once the last request is returned. */
    q->drain_call = c;
}

static void stop_finish_fn(struct vio_call *c)
{
    struct queue_op *op = c->arg;
    struct vio_dev_queue *q = op->q;

    vio_vq_flush(&q->vq);
    q->dev->ops->queue_stop(q->dev, &q->vq);
    vio_vq_stop(&q->vq);
    q->running = false;
    q->stopping = false;
    vio_call_done(c, 0);
}

void vio_dev_queue_stop(struct vio_dev *d, unsigned qi)
{
    struct vio_dev_queue *q = &d->queues[qi];

    if (!q->running)
        return;
    /* Two steps: the drain may end inside a backend completion callback,
     * where the backend queue must not be torn down; the finish runs as a
     * fresh call on the worker. */
    queue_call(q, stop_begin_fn, -1, false);
    queue_call(q, stop_finish_fn, -1, false);
}

void vio_dev_complete(struct vio_dev *d, struct vio_vq *vq)
{
    struct vio_dev_queue *q = vio_dev_queue_of(vq);

    (void)d;
    vio_vq_notify(vq);
    if (q->drain_call && vq->inflight == 0) {
        struct vio_call *c = q->drain_call;

        q->drain_call = NULL;
        vio_call_done(c, 0);
    }
}

static void set_enabled_fn(struct vio_call *c)
{
    struct queue_op *op = c->arg;
    struct vio_dev_queue *q = op->q;
    bool was = q->enabled;

    q->enabled = op->flag;
    if (q->enabled && !was && q->running && !q->stopping && !q->vq.broken)
        q->dev->ops->queue_kick(q->dev, &q->vq);
    vio_call_done(c, 0);
}

void vio_dev_queue_set_enabled(struct vio_dev *d, unsigned qi, bool enabled)
{
    struct vio_dev_queue *q = &d->queues[qi];

    if (!q->running) {
        q->enabled = enabled;
        return;
    }
    queue_call(q, set_enabled_fn, -1, enabled);
}

static void set_call_fn(struct vio_call *c)
{
    struct queue_op *op = c->arg;

    if (op->flag)
        vio_vq_set_err_fd(&op->q->vq, op->fd);
    else
        vio_vq_set_call_fd(&op->q->vq, op->fd);
    vio_call_done(c, 0);
}

void vio_dev_queue_set_call_fd(struct vio_dev *d, unsigned qi, int fd)
{
    struct vio_dev_queue *q = &d->queues[qi];

    if (!q->running)
        q->vq.call_fd = fd;
    else
        queue_call(q, set_call_fn, fd, false);
}

void vio_dev_queue_set_err_fd(struct vio_dev *d, unsigned qi, int fd)
{
    struct vio_dev_queue *q = &d->queues[qi];

    if (!q->running)
        q->vq.err_fd = fd;
    else
        queue_call(q, set_call_fn, fd, true);
}
