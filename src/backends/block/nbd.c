/* NBD block backend through libnbd: nbd://HOST[:PORT]/EXPORT and
 * nbd+unix:///EXPORT?socket=PATH. Each device queue has its own connection
 * (libnbd handle) driven asynchronously from its worker loop: the handle's
 * fd sits in the loop with the events nbd_aio_get_direction asks for.
 *
 * Several connections and flush: a virtio-blk or SCSI flush must cover
 * every write completed before it on any queue, but NBD promises that a
 * flush on one connection covers writes made on another only when the
 * server advertises multi-conn. So a writable export without multi-conn
 * serves one queue (a second queue_open fails with a message saying so);
 * read-only exports and multi-conn servers (nbdkit's file plugin, qemu-nbd
 * with a read-only export) serve any number.
 *
 * libnbd has no vectored I/O: a read or write becomes one command per iovec
 * (split at the server's maximum payload); the bio finishes when the last
 * answers. Reconnect: see the notes in remote.h and docs/ARCHITECTURE.md. */
#include <errno.h>
#include <libnbd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/block/remote.h"

#define NBD_DEFAULT_PAYLOAD (32u << 20) /* what the NBD spec lets a client assume */
#define NBD_MAX_RANGE       (1u << 30)  /* per trim / zero command */
#define NBD_OPEN_TIMEOUT_MS 5000

struct nbd_bdev {
    struct vio_bdev b;
    char *uri;
    bool can_flush, can_trim, can_zero, multi_conn;
    uint64_t export_size;               /* as the server reports it, to recognise it again */
    uint64_t max_payload;               /* bytes per read/write command */
    _Atomic(struct nbd_handle *) spare; /* the connection made at open */
    atomic_uint queues_open, queues_down;
    vio_counter_t reconnects, disconnects, connect_failures;
};

enum nq_state { NQ_DOWN, NQ_CONNECTING, NQ_UP };

struct nbd_bq {
    struct vio_rq rq;
    struct nbd_bdev *n;
    struct nbd_handle *h;
    int fd; /* registered in the loop, or -1 */
    uint32_t events;
    struct vio_handler io;
    enum nq_state state;
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int nbd_errno(void)
{
    int e = nbd_get_errno();

    return e > 0 ? -e : -EIO;
}

/* A new handle with a non-blocking connect to @uri under way. */
static struct nbd_handle *nbd_start(const char *uri, char *err, size_t errlen)
{
    struct nbd_handle *h = nbd_create();

    if (!h) {
        snprintf(err, errlen, "%s", nbd_get_error());
        return NULL;
    }
    /* Alignment is the server's call: qemu-nbd and nbdkit accept any
     * offset, and a guest's iovec boundaries are not ours to choose. */
    if (nbd_set_strict_mode(h, LIBNBD_STRICT_MASK & ~LIBNBD_STRICT_ALIGN) < 0 ||
        nbd_aio_connect_uri(h, uri) < 0) {
        snprintf(err, errlen, "%s", nbd_get_error());
        nbd_close(h);
        return NULL;
    }
    return h;
}

/* Connect and negotiate, blocking for at most @timeout_ms. */
static struct nbd_handle *nbd_connect_wait(const char *uri, int timeout_ms, char *err,
                                           size_t errlen)
{
    struct nbd_handle *h = nbd_start(uri, err, errlen);
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

    while (h && !nbd_aio_is_ready(h)) {
        uint64_t now = now_ms();

        if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
            snprintf(err, errlen, "%s", nbd_get_error());
            break;
        }
        if (now >= deadline) {
            snprintf(err, errlen, "no answer within %d ms", timeout_ms);
            break;
        }
        if (nbd_poll(h, (int)(deadline - now)) < 0) {
            snprintf(err, errlen, "%s", nbd_get_error());
            break;
        }
    }
    if (h && !nbd_aio_is_ready(h)) {
        nbd_close(h);
        h = NULL;
    }
    return h;
}

/* Is @h, connected earlier, still the same export, usable as before? */
static bool nbd_same_export(const struct nbd_bdev *n, struct nbd_handle *h, char *err,
                            size_t errlen)
{
    int64_t size = nbd_get_size(h);

    if (size < 0 || (uint64_t)size != n->export_size) {
        snprintf(err, errlen, "the export's size changed from %llu to %lld bytes",
                 (unsigned long long)n->export_size, (long long)size);
        return false;
    }
    if (!n->b.readonly && nbd_is_read_only(h) != 0) {
        snprintf(err, errlen, "the export became read-only");
        return false;
    }
    return true;
}

static void set_state(struct nbd_bq *q, enum nq_state s)
{
    if (q->state == NQ_UP && s != NQ_UP)
        atomic_fetch_add(&q->n->queues_down, 1);
    else if (q->state != NQ_UP && s == NQ_UP)
        atomic_fetch_sub(&q->n->queues_down, 1);
    q->state = s;
}

static void nq_io(struct vio_handler *hd, uint32_t events);

/* Watch the handle's current fd for what libnbd waits for. */
static void sync_fd(struct nbd_bq *q)
{
    int fd = q->h ? nbd_aio_get_fd(q->h) : -1;
    uint32_t ev = 0;

    if (fd >= 0) {
        unsigned dir = nbd_aio_get_direction(q->h);

        if (dir & LIBNBD_AIO_DIRECTION_READ)
            ev |= EPOLLIN;
        if (dir & LIBNBD_AIO_DIRECTION_WRITE)
            ev |= EPOLLOUT;
    }
    if (fd != q->fd) {
        if (q->fd >= 0)
            vio_loop_del(q->rq.loop, &q->io);
        q->fd = -1;
        if (fd >= 0 && vio_loop_add(q->rq.loop, &q->io, fd, ev, nq_io) == 0) {
            q->fd = fd;
            q->events = ev;
        }
    } else if (fd >= 0 && ev != q->events) {
        if (vio_loop_mod(q->rq.loop, &q->io, ev) == 0)
            q->events = ev;
    }
}

/* The connection (or an attempt at one) is gone: fail what was in flight,
 * retry after the backoff. */
static void nq_down(struct nbd_bq *q, const char *why)
{
    struct nbd_bdev *n = q->n;

    if (q->fd >= 0)
        vio_loop_del(q->rq.loop, &q->io);
    q->fd = -1;
    if (q->h)
        nbd_close(q->h); /* calls no completion callback */
    q->h = NULL;
    vio_rq_fail_all(&q->rq, -VIO_REMOTE_ENOTCONN);
    if (q->state == NQ_UP) {
        vio_counter_add_shared(&n->disconnects, 1);
        vio_warn("%s: connection lost (%s); failing requests with ENOTCONN until it is back",
                 n->uri, why);
    } else {
        vio_counter_add_shared(&n->connect_failures, 1);
        if (vio_ratelimit_ok(&q->rq.rl))
            vio_warn("%s: reconnect failed: %s", n->uri, why);
    }
    set_state(q, NQ_DOWN);
    vio_rq_timer(&q->rq, vio_rq_next_backoff(&q->rq));
}

static void nq_up(struct nbd_bq *q)
{
    char err[256];

    if (!nbd_same_export(q->n, q->h, err, sizeof(err))) {
        nq_down(q, err);
        return;
    }
    vio_rq_timer(&q->rq, 0);
    q->rq.backoff_ms = VIO_REMOTE_BACKOFF_MIN_MS;
    set_state(q, NQ_UP);
    vio_counter_add_shared(&q->n->reconnects, 1);
    vio_info("%s: reconnected", q->n->uri);
    sync_fd(q);
}

/* After libnbd ran: notice death, a finished handshake, new directions. */
static void nq_check(struct nbd_bq *q, bool hangup)
{
    if (!q->h)
        return;
    if (nbd_aio_is_dead(q->h) || nbd_aio_is_closed(q->h))
        nq_down(q, nbd_get_error() ? nbd_get_error() : "closed");
    else if (q->state == NQ_CONNECTING && nbd_aio_is_ready(q->h))
        nq_up(q);
    else if (hangup && q->state == NQ_UP)
        nq_down(q, "the socket hung up");
    else
        sync_fd(q);
}

static void nq_io(struct vio_handler *hd, uint32_t events)
{
    struct nbd_bq *q = vio_container_of(hd, struct nbd_bq, io);
    bool hangup = events & (EPOLLHUP | EPOLLERR);

    if (!q->h)
        return;
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
        (nbd_aio_get_direction(q->h) & LIBNBD_AIO_DIRECTION_READ))
        nbd_aio_notify_read(q->h);
    if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && !nbd_aio_is_dead(q->h) &&
        (nbd_aio_get_direction(q->h) & LIBNBD_AIO_DIRECTION_WRITE))
        nbd_aio_notify_write(q->h);
    nq_check(q, hangup);
    vio_rq_deliver(&q->rq, &q->n->b.stats);
}

/* Backoff over: try again. Connect timeout: give up on this attempt. */
static void nq_timer(struct vio_handler *hd, uint32_t events)
{
    struct nbd_bq *q = vio_container_of(vio_container_of(hd, struct vio_rq, th), struct nbd_bq, rq);
    char err[256];

    (void)events;
    vio_rq_timer_ack(&q->rq);
    if (q->state == NQ_CONNECTING) {
        nq_down(q, "no answer within the connect timeout");
    } else if (q->state == NQ_DOWN) {
        q->h = nbd_start(q->n->uri, err, sizeof(err));
        if (!q->h) {
            nq_down(q, err);
        } else {
            set_state(q, NQ_CONNECTING);
            vio_rq_timer(&q->rq, VIO_REMOTE_CONNECT_TIMEOUT_MS);
            nq_check(q, false);
        }
    }
    vio_rq_deliver(&q->rq, &q->n->b.stats);
}

static int chunk_done(void *user_data, int *error)
{
    struct vio_rslot *s = user_data;

    vio_rq_put(s->rq, s, *error ? -*error : 0);
    return 1; /* retire the command */
}

/* Send @s's bio as NBD commands; s->pending holds the submit reference. */
static void nq_issue(struct nbd_bq *q, struct vio_rslot *s)
{
    struct nbd_bdev *n = q->n;
    struct vio_bio *bio = s->bio;
    nbd_completion_callback cb = {.callback = chunk_done, .user_data = s};
    uint64_t off = bio->offset, left = bio->len;
    int64_t cookie = 0;

    switch (bio->op) {
    case VIO_BIO_READ:
    case VIO_BIO_WRITE:
        for (unsigned i = 0; i < bio->iovcnt && cookie >= 0; i++) {
            uint8_t *base = bio->iov[i].iov_base;
            size_t len = bio->iov[i].iov_len;

            while (len && cookie >= 0) {
                size_t c = VIO_MIN(len, n->max_payload);

                s->pending++;
                cookie = bio->op == VIO_BIO_READ ? nbd_aio_pread(q->h, base, c, off, cb, 0)
                                                 : nbd_aio_pwrite(q->h, base, c, off, cb, 0);
                base += c;
                len -= c;
                off += c;
            }
        }
        break;
    case VIO_BIO_FLUSH:
        /* Without flush the server has no volatile cache to empty. */
        if (n->can_flush) {
            s->pending++;
            cookie = nbd_aio_flush(q->h, cb, 0);
        }
        break;
    case VIO_BIO_DISCARD:
    case VIO_BIO_WRITE_ZEROES:
        if (bio->op == VIO_BIO_DISCARD && !n->can_trim)
            break; /* a hint: ignoring it loses nothing */
        if (bio->op == VIO_BIO_WRITE_ZEROES && !n->can_zero) {
            s->err = -EOPNOTSUPP;
            break;
        }
        while (left && cookie >= 0) {
            uint64_t c = VIO_MIN(left, (uint64_t)NBD_MAX_RANGE);

            s->pending++;
            if (bio->op == VIO_BIO_DISCARD)
                cookie = nbd_aio_trim(q->h, c, off, cb, 0);
            else
                cookie = nbd_aio_zero(q->h, c, off, cb,
                                      (bio->flags & VIO_BIO_F_UNMAP) ? 0 : LIBNBD_CMD_FLAG_NO_HOLE);
            left -= c;
            off += c;
        }
        break;
    default:
        s->err = -EINVAL;
        break;
    }
    if (cookie < 0) {
        /* That command was never queued: no callback will come for it. */
        s->pending--;
        if (!s->err)
            s->err = nbd_aio_is_dead(q->h) ? -VIO_REMOTE_ENOTCONN : nbd_errno();
    }
}

static int nq_submit(struct vio_bq *bq, struct vio_bio *bio)
{
    struct nbd_bq *q = (struct nbd_bq *)bq;
    struct vio_rslot *s = vio_rq_get(&q->rq, bio);

    if (!s)
        return -EBUSY;
    s->pending = 1;
    if (q->state != NQ_UP)
        s->err = -VIO_REMOTE_ENOTCONN; /* fail fast while reconnecting */
    else
        nq_issue(q, s);
    vio_rq_put(&q->rq, s, 0);
    return 0;
}

static void nq_kick(struct vio_bq *bq)
{
    struct nbd_bq *q = (struct nbd_bq *)bq;

    /* The commands went out (or were queued) inside nbd_aio_*; the socket
     * may now need EPOLLOUT, or the handle may have died on the way. */
    if (q->state == NQ_UP)
        nq_check(q, false);
    vio_rq_deliver(&q->rq, &q->n->b.stats);
}

/* The connection made at open is unused yet; take it if the server did not
 * hang up on it meanwhile. */
static struct nbd_handle *take_spare(struct nbd_bdev *n)
{
    struct nbd_handle *h = atomic_exchange(&n->spare, NULL);
    struct pollfd p;

    if (!h)
        return NULL;
    p = (struct pollfd){.fd = nbd_aio_get_fd(h), .events = POLLIN | POLLRDHUP};
    if (p.fd >= 0 && nbd_aio_is_ready(h) && poll(&p, 1, 0) == 0)
        return h;
    nbd_close(h);
    return NULL;
}

static int nq_open(struct vio_bdev *b, struct vio_loop *loop, unsigned depth,
                   const struct vio_bq_cb *cb, void *opaque, struct vio_bq **out)
{
    struct nbd_bdev *n = (struct nbd_bdev *)b;
    struct nbd_bq *q;
    char err[256];
    int ret;

    if (atomic_fetch_add(&n->queues_open, 1) >= 1 && !n->multi_conn && !b->readonly) {
        atomic_fetch_sub(&n->queues_open, 1);
        vio_err("%s: the server does not offer multi-conn, so a flush on one connection might "
                "not cover writes made on another; serve this export with queues=1 (or use a "
                "server with multi-conn, e.g. nbdkit)",
                n->uri);
        return -EOPNOTSUPP;
    }
    q = calloc(1, sizeof(*q));
    if (!q) {
        ret = -ENOMEM;
        goto err_count;
    }
    q->n = n;
    q->fd = -1;
    ret = vio_rq_init(&q->rq, loop, depth, cb, opaque, nq_timer);
    if (ret < 0)
        goto err_free;
    /* Counted as down until it is up. */
    q->state = NQ_DOWN;
    atomic_fetch_add(&n->queues_down, 1);
    q->h = take_spare(n);
    if (!q->h)
        q->h = nbd_connect_wait(n->uri, VIO_REMOTE_CONNECT_TIMEOUT_MS, err, sizeof(err));
    if (q->h && nbd_same_export(n, q->h, err, sizeof(err))) {
        set_state(q, NQ_UP);
        sync_fd(q);
    } else {
        /* Not fatal: the queue starts disconnected and keeps trying. */
        if (q->h)
            nbd_close(q->h);
        q->h = NULL;
        vio_counter_add_shared(&n->connect_failures, 1);
        vio_warn("%s: cannot connect: %s; requests fail with ENOTCONN until a reconnect "
                 "succeeds",
                 n->uri, err);
        vio_rq_timer(&q->rq, vio_rq_next_backoff(&q->rq));
    }
    *out = (struct vio_bq *)q;
    return 0;

err_free:
    free(q);
err_count:
    atomic_fetch_sub(&n->queues_open, 1);
    return ret;
}

static void nq_close(struct vio_bq *bq)
{
    struct nbd_bq *q = (struct nbd_bq *)bq;

    if (q->fd >= 0)
        vio_loop_del(q->rq.loop, &q->io);
    if (q->h) {
        /* Polite: NBD_CMD_DISC if it can go out now; the server copes with
         * a plain close as well. */
        nbd_aio_disconnect(q->h, 0);
        nbd_close(q->h);
    }
    if (q->state != NQ_UP)
        atomic_fetch_sub(&q->n->queues_down, 1);
    atomic_fetch_sub(&q->n->queues_open, 1);
    vio_rq_fini(&q->rq);
    free(q);
}

static json_t *nbd_info(struct vio_bdev *b)
{
    struct nbd_bdev *n = (struct nbd_bdev *)b;
    unsigned open = atomic_load(&n->queues_open), down = atomic_load(&n->queues_down);

    return json_pack("{s:s, s:s, s:b, s:I, s:i, s:b, s:b, s:b, s:b, s:i, s:i, s:I, s:I, s:I, "
                     "s:I, s:I, s:I, s:I}",
                     "type", "nbd", "uri", n->uri, "readonly", b->readonly, "size",
                     (json_int_t)b->size, "block_size", (int)b->block_size, "multi_conn",
                     n->multi_conn, "can_flush", n->can_flush, "can_trim", n->can_trim, "connected",
                     down == 0, "queues", (int)open, "queues_connected", (int)(open - down),
                     "reconnects", (json_int_t)vio_counter_get(&n->reconnects), "disconnects",
                     (json_int_t)vio_counter_get(&n->disconnects), "connect_failures",
                     (json_int_t)vio_counter_get(&n->connect_failures), "errors",
                     (json_int_t)vio_counter_get(&b->stats.errors), "flushes",
                     (json_int_t)vio_counter_get(&b->stats.flushes), "discards",
                     (json_int_t)vio_counter_get(&b->stats.discards), "write_zeroes",
                     (json_int_t)vio_counter_get(&b->stats.write_zeroes));
}

static void nbd_bdev_close(struct vio_bdev *b)
{
    struct nbd_bdev *n = (struct nbd_bdev *)b;
    struct nbd_handle *h = atomic_exchange(&n->spare, NULL);

    if (h) {
        nbd_aio_disconnect(h, 0);
        nbd_close(h);
    }
    free(n->uri);
    free(n);
}

static const struct vio_bdev_ops nbd_ops = {
    .name = "nbd",
    .queue_open = nq_open,
    .queue_close = nq_close,
    .submit = nq_submit,
    .kick = nq_kick,
    .info = nbd_info,
    .close = nbd_bdev_close,
};

/* Catch the mistakes libnbd's messages explain least well. */
static const char *nbd_uri_problem(const char *uri)
{
    if (strncmp(uri, "nbd://", 6) == 0) {
        const char *host = uri + 6;

        if (*host == '\0' || *host == '/' || *host == ':' || *host == '?')
            return "no host (expected nbd://HOST[:PORT]/EXPORT)";
        return NULL;
    }
    if (strncmp(uri, "nbd+unix://", 11) == 0) {
        const char *q = strchr(uri, '?');

        if (!q || (!strstr(q, "?socket=") && !strstr(q, "&socket=")))
            return "no socket (expected nbd+unix:///EXPORT?socket=PATH)";
        return NULL;
    }
    return "unsupported scheme (expected nbd:// or nbd+unix://)";
}

int vio_bdev_nbd_open(const struct vio_bdev_opts *o, struct vio_bdev **out)
{
    struct nbd_bdev *n;
    struct nbd_handle *h;
    const char *problem = nbd_uri_problem(o->path);
    char err[256];
    int64_t size, minbs, maxbs;
    int ret;

    if (problem) {
        vio_err("%s: bad NBD URI: %s", o->path, problem);
        return -EINVAL;
    }
    if (o->direct) {
        vio_err("%s: direct applies to files only; drop it for NBD", o->path);
        return -EINVAL;
    }
    n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->uri = strdup(o->path);
    if (!n->uri) {
        ret = -ENOMEM;
        goto err_free;
    }
    h = nbd_connect_wait(o->path, NBD_OPEN_TIMEOUT_MS, err, sizeof(err));
    if (!h) {
        ret = -ENOTCONN;
        vio_err("%s: cannot connect to the NBD server: %s (is it running, and is the export "
                "name right?)",
                o->path, err);
        goto err_free;
    }
    size = nbd_get_size(h);
    minbs = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
    maxbs = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
    n->export_size = size > 0 ? (uint64_t)size : 0;
    n->b.readonly = o->readonly || nbd_is_read_only(h) == 1;
    if (!o->readonly && n->b.readonly)
        vio_info("%s: the server exports it read-only; serving it read-only", o->path);
    n->can_flush = nbd_can_flush(h) == 1;
    n->can_trim = nbd_can_trim(h) == 1;
    n->can_zero = nbd_can_zero(h) == 1;
    n->multi_conn = nbd_can_multi_conn(h) == 1;
    n->b.max_queues = n->multi_conn || n->b.readonly ? 0 : 1;
    n->max_payload = maxbs > 0 ? (uint64_t)maxbs : NBD_DEFAULT_PAYLOAD;
    n->max_payload = VIO_MIN(n->max_payload, (uint64_t)NBD_DEFAULT_PAYLOAD);
    n->b.block_size = 512;
    if (minbs > 512) {
        if (minbs > 65536 || !vio_is_pow2((uint64_t)minbs)) {
            ret = -EINVAL;
            vio_err("%s: the server's minimum block size %lld is not a power of two up to 64 KiB",
                    o->path, (long long)minbs);
            goto err_close;
        }
        n->b.block_size = (uint32_t)minbs;
    }
    if (o->block_size) {
        if (o->block_size < n->b.block_size) {
            ret = -EINVAL;
            vio_err("%s: blksize=%u is below the server's minimum block size %u", o->path,
                    o->block_size, n->b.block_size);
            goto err_close;
        }
        n->b.block_size = o->block_size;
    }
    n->max_payload -= n->max_payload % n->b.block_size;
    n->b.size = n->export_size - n->export_size % n->b.block_size;
    if (n->b.size == 0) {
        ret = -EINVAL;
        vio_err("%s: the export is smaller than one %u-byte block", o->path, n->b.block_size);
        goto err_close;
    }
    if (n->b.size != n->export_size)
        vio_warn("%s: size %llu is not a multiple of %u; the last %llu bytes are not served",
                 o->path, (unsigned long long)n->export_size, n->b.block_size,
                 (unsigned long long)(n->export_size - n->b.size));
    n->b.ops = &nbd_ops;
    n->b.can_discard = n->can_trim;
    n->b.can_write_zeroes = n->can_zero;
    atomic_store(&n->spare, h);
    *out = &n->b;
    return 0;

err_close:
    nbd_close(h);
err_free:
    free(n->uri);
    free(n);
    return ret;
}
