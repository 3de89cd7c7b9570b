/* What the network block backends (NBD, iSCSI) share: a fixed pool of bio
 * slots per queue (a bio may become several server commands), a list of
 * finished slots handed to the device in one batch, and a timerfd for the
 * reconnect backoff and the connect timeout. Worker thread only; nothing
 * here allocates after vio_rq_init. */
#ifndef VIO_BACKENDS_BLOCK_REMOTE_H
#define VIO_BACKENDS_BLOCK_REMOTE_H

#include "backends/block/bdev.h"
#include "core/log.h"

/* The errno of every bio failed because the connection is down: the one
 * that was in flight when it broke (its outcome on the server is unknown)
 * and the ones submitted while reconnecting. */
#define VIO_REMOTE_ENOTCONN ENOTCONN

#define VIO_REMOTE_BACKOFF_MIN_MS     100
#define VIO_REMOTE_BACKOFF_MAX_MS     2000
#define VIO_REMOTE_CONNECT_TIMEOUT_MS 3000

struct vio_rslot {
    struct vio_bio *bio;
    unsigned pending; /* server commands not yet answered, plus one while
                       * submit() is still issuing them */
    struct vio_rq *rq;
    int err; /* first error, 0 if none */
    bool busy;
};

struct vio_rq {
    struct vio_loop *loop;
    const struct vio_bq_cb *cb;
    void *opaque;
    unsigned depth;
    struct vio_rslot *slots; /* [depth] */
    unsigned *free_idx;      /* stack of free slots */
    unsigned nfree;
    unsigned *done_idx; /* finished, not yet handed to the device */
    unsigned ndone;
    int tfd;
    struct vio_handler th;
    bool timer_added;
    unsigned backoff_ms;
    struct vio_ratelimit rl;
};

/* Allocate the slots for @depth bios and the timerfd, registered with
 * @timer_fn. Returns 0 or -errno. */
int vio_rq_init(struct vio_rq *q, struct vio_loop *loop, unsigned depth, const struct vio_bq_cb *cb,
                void *opaque, vio_handler_fn timer_fn);
/* Undo vio_rq_init; no bio may be in flight. */
void vio_rq_fini(struct vio_rq *q);

/* A slot for @bio, or NULL if @depth bios are already in flight. */
struct vio_rslot *vio_rq_get(struct vio_rq *q, struct vio_bio *bio);
/* One server command of @s finished with @err (0 or -errno); when it was
 * the last, the slot goes to the done list. */
void vio_rq_put(struct vio_rq *q, struct vio_rslot *s, int err);
/* Fail every slot still waiting for the server with @err. */
void vio_rq_fail_all(struct vio_rq *q, int err);
/* Hand finished slots to the device: done() each, then one batch_done().
 * Counts errors in @stats. */
void vio_rq_deliver(struct vio_rq *q, struct vio_bdev_stats *stats);

/* Arm the timer to fire once after @ms (0: disarm). */
void vio_rq_timer(struct vio_rq *q, unsigned ms);
/* Consume a timer expiry (in the timer handler). */
void vio_rq_timer_ack(struct vio_rq *q);
/* The next reconnect delay: doubles from the minimum to the maximum. */
unsigned vio_rq_next_backoff(struct vio_rq *q);

#endif
