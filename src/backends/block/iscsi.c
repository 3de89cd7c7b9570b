/* iSCSI block backend through libiscsi: iscsi://[USER[%PASSWORD]@]HOST[:PORT]/TARGET-IQN/LUN.
 * Each device queue logs in its own session and drives it asynchronously
 * from its worker loop (iscsi_get_fd / iscsi_which_events / iscsi_service).
 * SYNCHRONIZE CACHE acts on the logical unit, not on one I_T nexus, so a
 * flush on one session covers writes completed on all of them: any number
 * of queues is consistent.
 *
 * A bio is one READ(16) / WRITE(16) task on the guest's own iovecs, or one
 * SYNCHRONIZE CACHE(16), or UNMAP / WRITE SAME(16) tasks (split at the
 * limits of VPD page B0) when the LUN's provisioning (READ CAPACITY(16)
 * LBPME, VPD B2) says it can.
 *
 * libiscsi's own reconnect is disabled: it re-sends the commands that were
 * in flight on the new session, possibly after the target had already
 * executed them, and it keeps them (and the guest) waiting for as long as
 * the target is away. We fail them with ENOTCONN instead, as the NBD backend
 * does (remote.h), and log in a fresh session in the background. */
#include <errno.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "backends/block/remote.h"

#define ISCSI_INITIATOR       "iqn.2026-12.io.vio:initiator"
#define ISCSI_OPEN_TIMEOUT_MS 5000
#define ISCSI_MAX_UNMAP_DESC  16

/* Guest iovecs go to libiscsi as they are. */
_Static_assert(sizeof(struct scsi_iovec) == sizeof(struct iovec) &&
                   offsetof(struct scsi_iovec, iov_base) == offsetof(struct iovec, iov_base) &&
                   offsetof(struct scsi_iovec, iov_len) == offsetof(struct iovec, iov_len),
               "struct scsi_iovec must match struct iovec");

/* State of a blocking command at open and queue_open. */
struct ic_sync {
    bool done;
    int status;
    struct scsi_task *task;
    char err[256]; /* libiscsi's error when it failed */
};

struct iscsi_bdev {
    struct vio_bdev b;
    char *uri;
    struct iscsi_url *url; /* portal, target, lun, CHAP */
    bool can_unmap, can_ws, ws_unmap;
    uint32_t max_unmap;     /* blocks per UNMAP descriptor */
    uint32_t max_unmap_bdc; /* descriptors per UNMAP */
    uint32_t max_ws;        /* blocks per WRITE SAME */
    uint8_t *zero_block;
    struct ic_sync probe; /* for probe_lun's commands */
    atomic_uint queues_open, queues_down;
    vio_counter_t reconnects, disconnects, connect_failures;
};

enum iq_state { IQ_DOWN, IQ_CONNECTING, IQ_UP };

struct iscsi_bq {
    struct vio_rq rq;
    struct iscsi_bdev *d;
    struct iscsi_context *ctx;
    int fd;
    uint32_t events;
    struct vio_handler io;
    enum iq_state state;
    bool lost;          /* a task was cancelled: the session is gone */
    int connect_status; /* -1 while a login is under way */
    char why[256];      /* what went wrong, for the log */
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* libiscsi's last error, without its trailing newline. */
static void ic_error(struct iscsi_context *ctx, char *buf, size_t len)
{
    size_t n;

    snprintf(buf, len, "%s", ctx ? iscsi_get_error(ctx) : "");
    n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '.'))
        buf[--n] = '\0';
    if (!n)
        snprintf(buf, len, "unknown error");
}

static struct iscsi_context *ic_new(const struct iscsi_bdev *d)
{
    struct iscsi_context *ctx = iscsi_create_context(ISCSI_INITIATOR);
    uint32_t rnd = (uint32_t)getpid() ^ (uint32_t)now_ms();

    if (!ctx)
        return NULL;
    /* A distinct ISID per session: two sessions of one initiator name with
     * the same ISID would make the target drop the older one. */
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) < 0) {
        /* keep the pid/time mix */
    }
    iscsi_set_isid_random(ctx, rnd, 0);
    iscsi_set_targetname(ctx, d->url->target);
    iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C);
    iscsi_set_noautoreconnect(ctx, 1);
    if (d->url->user[0])
        iscsi_set_initiator_username_pwd(ctx, d->url->user, d->url->passwd);
    return ctx;
}

static void ic_sync_cb(struct iscsi_context *ctx, int status, void *data, void *priv)
{
    struct ic_sync *s = priv;

    s->done = true;
    s->status = status;
    s->task = data;
    if (status != SCSI_STATUS_GOOD)
        ic_error(ctx, s->err, sizeof(s->err));
}

static int ic_wait(struct iscsi_context *ctx, struct ic_sync *s, uint64_t deadline)
{
    while (!s->done) {
        struct pollfd p = {.fd = iscsi_get_fd(ctx), .events = (short)iscsi_which_events(ctx)};
        uint64_t now = now_ms();
        int r;

        if (now >= deadline)
            return -ETIMEDOUT;
        r = poll(&p, 1, (int)VIO_MIN(deadline - now, 100u));
        if (r < 0 && errno != EINTR)
            return -errno;
        if (iscsi_service(ctx, r > 0 ? p.revents : 0) < 0 && !s->done)
            return -ENOTCONN;
    }
    return 0;
}

/* Connect and log in within @timeout_ms; NULL with @err filled on failure. */
static struct iscsi_context *ic_connect_wait(const struct iscsi_bdev *d, int timeout_ms, char *err,
                                             size_t errlen)
{
    struct iscsi_context *ctx = ic_new(d);
    struct ic_sync s = {0};
    int ret;

    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (iscsi_full_connect_async(ctx, d->url->portal, d->url->lun, ic_sync_cb, &s) < 0) {
        ic_error(ctx, err, errlen);
        goto fail;
    }
    ret = ic_wait(ctx, &s, now_ms() + (uint64_t)timeout_ms);
    if (ret == -ETIMEDOUT) {
        snprintf(err, errlen, "no answer within %d ms", timeout_ms);
        goto fail;
    }
    if (ret < 0 || s.status != SCSI_STATUS_GOOD) {
        if (s.done && s.err[0])
            snprintf(err, errlen, "%s", s.err);
        else
            ic_error(ctx, err, errlen);
        goto fail;
    }
    return ctx;

fail:
    iscsi_destroy_context(ctx);
    return NULL;
}

/* Run one task to completion; returns it (free with scsi_free_scsi_task)
 * when its status is GOOD, else NULL. A unit attention (after a login or
 * a reset) is retried. The callback's state lives in @d: a task that timed
 * out is cancelled later, when the caller destroys @ctx. */
static struct scsi_task *ic_run(struct iscsi_context *ctx, struct iscsi_bdev *d,
                                int page /* -1: READ CAPACITY(16), else a VPD page */)
{
    struct ic_sync *s = &d->probe;

    for (int attempt = 0; attempt < 3; attempt++) {
        struct scsi_task *t;
        int key;

        *s = (struct ic_sync){0};
        if (page < 0)
            t = iscsi_readcapacity16_task(ctx, d->url->lun, ic_sync_cb, s);
        else
            t = iscsi_inquiry_task(ctx, d->url->lun, 1, page, 255, ic_sync_cb, s);
        if (!t)
            return NULL;
        if (ic_wait(ctx, s, now_ms() + ISCSI_OPEN_TIMEOUT_MS) < 0)
            return NULL; /* still queued: freed with the context */
        if (s->status == SCSI_STATUS_GOOD)
            return t;
        key = t->sense.key;
        scsi_free_scsi_task(t);
        if (s->status != SCSI_STATUS_CHECK_CONDITION || key != SCSI_SENSE_UNIT_ATTENTION)
            return NULL;
    }
    return NULL;
}

static void iq_io(struct vio_handler *hd, uint32_t events);

static void sync_fd(struct iscsi_bq *q)
{
    int fd = q->ctx ? iscsi_get_fd(q->ctx) : -1;
    uint32_t ev = 0;

    if (fd >= 0) {
        int which = iscsi_which_events(q->ctx);

        ev = EPOLLRDHUP;
        if (which & POLLIN)
            ev |= EPOLLIN;
        if (which & POLLOUT)
            ev |= EPOLLOUT;
    }
    if (fd != q->fd) {
        if (q->fd >= 0)
            vio_loop_del(q->rq.loop, &q->io);
        q->fd = -1;
        if (fd >= 0 && vio_loop_add(q->rq.loop, &q->io, fd, ev, iq_io) == 0) {
            q->fd = fd;
            q->events = ev;
        }
    } else if (fd >= 0 && ev != q->events) {
        if (vio_loop_mod(q->rq.loop, &q->io, ev) == 0)
            q->events = ev;
    }
}

static void set_state(struct iscsi_bq *q, enum iq_state s)
{
    if (q->state == IQ_UP && s != IQ_UP)
        atomic_fetch_add(&q->d->queues_down, 1);
    else if (q->state != IQ_UP && s == IQ_UP)
        atomic_fetch_sub(&q->d->queues_down, 1);
    q->state = s;
}

static void iq_down(struct iscsi_bq *q, const char *why)
{
    struct iscsi_bdev *d = q->d;
    char msg[256];

    snprintf(msg, sizeof(msg), "%s", why ? why : "");
    if (q->fd >= 0)
        vio_loop_del(q->rq.loop, &q->io);
    q->fd = -1;
    if (q->ctx) {
        /* Cancels every task still queued: each callback fails its bio. */
        iscsi_destroy_context(q->ctx);
        q->ctx = NULL;
    }
    vio_rq_fail_all(&q->rq, -VIO_REMOTE_ENOTCONN);
    q->lost = false;
    if (q->state == IQ_UP) {
        vio_counter_add_shared(&d->disconnects, 1);
        vio_warn("%s: session lost (%s); failing requests with ENOTCONN until it is back", d->uri,
                 msg);
    } else {
        vio_counter_add_shared(&d->connect_failures, 1);
        if (vio_ratelimit_ok(&q->rq.rl))
            vio_warn("%s: reconnect failed: %s", d->uri, msg);
    }
    set_state(q, IQ_DOWN);
    vio_rq_timer(&q->rq, vio_rq_next_backoff(&q->rq));
}

static void iq_connect_cb(struct iscsi_context *ctx, int status, void *data, void *priv)
{
    struct iscsi_bq *q = priv;

    (void)data;
    q->connect_status = status;
    /* Now, before libiscsi overwrites it with its reconnect complaint. */
    if (status != SCSI_STATUS_GOOD)
        ic_error(ctx, q->why, sizeof(q->why));
}

/* After libiscsi ran: a finished login, a lost session, new events. */
static void iq_check(struct iscsi_bq *q, bool hangup, bool service_failed)
{
    if (!q->ctx)
        return;
    if (q->state == IQ_CONNECTING) {
        if (q->connect_status == SCSI_STATUS_GOOD) {
            vio_rq_timer(&q->rq, 0);
            q->rq.backoff_ms = VIO_REMOTE_BACKOFF_MIN_MS;
            set_state(q, IQ_UP);
            vio_counter_add_shared(&q->d->reconnects, 1);
            vio_info("%s: reconnected", q->d->uri);
        } else if (q->connect_status >= 0 || service_failed || hangup) {
            if (q->connect_status < 0)
                ic_error(q->ctx, q->why, sizeof(q->why));
            iq_down(q, q->why);
            return;
        }
    } else if (q->state == IQ_UP && (q->lost || hangup || service_failed)) {
        if (service_failed || q->lost)
            ic_error(q->ctx, q->why, sizeof(q->why));
        else
            snprintf(q->why, sizeof(q->why), "the target hung up");
        iq_down(q, q->why);
        return;
    }
    sync_fd(q);
}

static void iq_io(struct vio_handler *hd, uint32_t events)
{
    struct iscsi_bq *q = vio_container_of(hd, struct iscsi_bq, io);
    bool hangup = events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP);
    int revents = 0;
    int ret;

    if (!q->ctx)
        return;
    /* Answers that arrived before a hang-up are read first: those bios did
     * finish on the target. The hang-up itself is ours to handle. */
    if (events & (EPOLLIN | EPOLLRDHUP))
        revents |= POLLIN;
    if (events & EPOLLOUT)
        revents |= POLLOUT;
    if (q->state == IQ_CONNECTING && (events & (EPOLLHUP | EPOLLERR)))
        revents |= POLLOUT; /* let libiscsi read the failed connect's SO_ERROR */
    ret = iscsi_service(q->ctx, revents);
    iq_check(q, hangup, ret < 0);
    vio_rq_deliver(&q->rq, &q->d->b.stats);
}

static void iq_timer(struct vio_handler *hd, uint32_t events)
{
    struct iscsi_bq *q =
        vio_container_of(vio_container_of(hd, struct vio_rq, th), struct iscsi_bq, rq);

    (void)events;
    vio_rq_timer_ack(&q->rq);
    if (q->state == IQ_CONNECTING) {
        iq_down(q, "no answer within the connect timeout");
    } else if (q->state == IQ_DOWN) {
        q->ctx = ic_new(q->d);
        q->connect_status = -1;
        if (!q->ctx) {
            iq_down(q, "out of memory");
        } else if (iscsi_full_connect_async(q->ctx, q->d->url->portal, q->d->url->lun,
                                            iq_connect_cb, q) < 0) {
            ic_error(q->ctx, q->why, sizeof(q->why));
            iq_down(q, q->why);
        } else {
            set_state(q, IQ_CONNECTING);
            vio_rq_timer(&q->rq, VIO_REMOTE_CONNECT_TIMEOUT_MS);
            iq_check(q, false, false);
        }
    }
    vio_rq_deliver(&q->rq, &q->d->b.stats);
}

static int task_errno(struct scsi_task *t, int status)
{
    switch (status) {
    case SCSI_STATUS_GOOD:
        return 0;
    case SCSI_STATUS_CANCELLED:
    case SCSI_STATUS_ERROR:
        return -VIO_REMOTE_ENOTCONN;
    case SCSI_STATUS_TIMEOUT:
        return -ETIMEDOUT;
    case SCSI_STATUS_CHECK_CONDITION:
        switch (t ? t->sense.key : SCSI_SENSE_NO_SENSE) {
        case SCSI_SENSE_ILLEGAL_REQUEST:
            return t->sense.ascq == SCSI_SENSE_ASCQ_INVALID_OPERATION_CODE ? -EOPNOTSUPP : -EINVAL;
        case SCSI_SENSE_DATA_PROTECTION:
            return -EROFS;
        case SCSI_SENSE_NOT_READY:
        case SCSI_SENSE_UNIT_ATTENTION:
            return -EAGAIN;
        default:
            return -EIO;
        }
    case SCSI_STATUS_BUSY:
    case SCSI_STATUS_TASK_SET_FULL:
        return -EBUSY;
    default:
        return -EIO;
    }
}

static void task_done(struct iscsi_context *ctx, int status, void *data, void *priv)
{
    struct vio_rslot *s = priv;
    struct iscsi_bq *q = vio_container_of(s->rq, struct iscsi_bq, rq);
    struct scsi_task *t = data;
    int err = task_errno(t, status);

    (void)ctx;
    if (status == SCSI_STATUS_CANCELLED || status == SCSI_STATUS_ERROR)
        q->lost = true;
    if (err && err != -VIO_REMOTE_ENOTCONN && t && vio_ratelimit_ok(&q->rq.rl))
        vio_warn("%s: op %u at %llu: SCSI status 0x%x sense %s (%s)", q->d->uri, s->bio->op,
                 (unsigned long long)s->bio->offset, status, scsi_sense_key_str(t->sense.key),
                 scsi_sense_ascq_str(t->sense.ascq));
    if (t)
        scsi_free_scsi_task(t);
    vio_rq_put(s->rq, s, err);
}

/* Queue @s's bio as tasks; s->pending holds the submit reference. */
static void iq_issue(struct iscsi_bq *q, struct vio_rslot *s)
{
    struct iscsi_bdev *d = q->d;
    struct vio_bio *bio = s->bio;
    uint32_t bs = d->b.block_size;
    uint64_t lba = bio->offset / bs, nb = bio->len / bs;
    int lun = d->url->lun;
    struct scsi_task *t = NULL;
    bool failed = false;

    if ((bio->offset | bio->len) % bs) {
        s->err = -EINVAL;
        return;
    }
    switch (bio->op) {
    case VIO_BIO_READ:
    case VIO_BIO_WRITE:
        if (bio->len > UINT32_MAX) {
            s->err = -EINVAL;
            return;
        }
        s->pending++;
        if (bio->op == VIO_BIO_READ)
            t = iscsi_read16_task(q->ctx, lun, lba, (uint32_t)bio->len, (int)bs, 0, 0, 0, 0, 0,
                                  task_done, s);
        else
            t = iscsi_write16_task(q->ctx, lun, lba, NULL, (uint32_t)bio->len, (int)bs, 0, 0, 0, 0,
                                   0, task_done, s);
        if (!t) {
            failed = true;
            break;
        }
        /* Before the next iscsi_service: nothing has been sent yet. */
        if (bio->op == VIO_BIO_READ)
            scsi_task_set_iov_in(t, (struct scsi_iovec *)bio->iov, bio->iovcnt);
        else
            scsi_task_set_iov_out(t, (struct scsi_iovec *)bio->iov, bio->iovcnt);
        break;
    case VIO_BIO_FLUSH:
        s->pending++;
        failed = !iscsi_synchronizecache16_task(q->ctx, lun, 0, 0, 0, 0, task_done, s);
        break;
    case VIO_BIO_DISCARD:
        if (!d->can_unmap)
            break; /* a hint: ignoring it loses nothing */
        while (nb && !failed) {
            struct unmap_list list[ISCSI_MAX_UNMAP_DESC];
            int n = 0;

            while (nb && n < (int)d->max_unmap_bdc) {
                uint32_t c = (uint32_t)VIO_MIN(nb, (uint64_t)d->max_unmap);

                list[n++] = (struct unmap_list){.lba = lba, .num = c};
                lba += c;
                nb -= c;
            }
            s->pending++;
            failed = !iscsi_unmap_task(q->ctx, lun, 0, 0, list, n, task_done, s);
        }
        break;
    case VIO_BIO_WRITE_ZEROES:
        if (!d->can_ws) {
            s->err = -EOPNOTSUPP;
            break;
        }
        while (nb && !failed) {
            uint32_t c = (uint32_t)VIO_MIN(nb, (uint64_t)d->max_ws);
            int unmap = (bio->flags & VIO_BIO_F_UNMAP) && d->ws_unmap;

            s->pending++;
            failed = !iscsi_writesame16_task(q->ctx, lun, lba, d->zero_block, bs, c, 0, unmap, 0, 0,
                                             task_done, s);
            lba += c;
            nb -= c;
        }
        break;
    default:
        s->err = -EINVAL;
        break;
    }
    if (failed) {
        /* Never queued: no callback will come for it. */
        s->pending--;
        if (!s->err)
            s->err = -ENOMEM;
    }
}

static int iq_submit(struct vio_bq *bq, struct vio_bio *bio)
{
    struct iscsi_bq *q = (struct iscsi_bq *)bq;
    struct vio_rslot *s = vio_rq_get(&q->rq, bio);

    if (!s)
        return -EBUSY;
    s->pending = 1;
    if (q->state != IQ_UP)
        s->err = -VIO_REMOTE_ENOTCONN;
    else
        iq_issue(q, s);
    vio_rq_put(&q->rq, s, 0);
    return 0;
}

static void iq_kick(struct vio_bq *bq)
{
    struct iscsi_bq *q = (struct iscsi_bq *)bq;

    /* The tasks sit in libiscsi's out-queue: write what the socket takes
     * now (one pass for the batch) and wait for EPOLLOUT for the rest. */
    if (q->state == IQ_UP && (iscsi_which_events(q->ctx) & POLLOUT)) {
        int ret = iscsi_service(q->ctx, POLLOUT);

        iq_check(q, false, ret < 0);
    } else if (q->state == IQ_UP) {
        sync_fd(q);
    }
    vio_rq_deliver(&q->rq, &q->d->b.stats);
}

static int iq_open(struct vio_bdev *b, struct vio_loop *loop, unsigned depth,
                   const struct vio_bq_cb *cb, void *opaque, struct vio_bq **out)
{
    struct iscsi_bdev *d = (struct iscsi_bdev *)b;
    struct iscsi_bq *q = calloc(1, sizeof(*q));
    char err[256];
    int ret;

    if (!q)
        return -ENOMEM;
    q->d = d;
    q->fd = -1;
    ret = vio_rq_init(&q->rq, loop, depth, cb, opaque, iq_timer);
    if (ret < 0) {
        free(q);
        return ret;
    }
    atomic_fetch_add(&d->queues_open, 1);
    atomic_fetch_add(&d->queues_down, 1);
    q->state = IQ_DOWN;
    q->ctx = ic_connect_wait(d, VIO_REMOTE_CONNECT_TIMEOUT_MS, err, sizeof(err));
    if (q->ctx) {
        set_state(q, IQ_UP);
        sync_fd(q);
    } else {
        /* Not fatal: the queue starts disconnected and keeps trying. */
        vio_counter_add_shared(&d->connect_failures, 1);
        vio_warn("%s: cannot log in: %s; requests fail with ENOTCONN until a reconnect "
                 "succeeds",
                 d->uri, err);
        vio_rq_timer(&q->rq, vio_rq_next_backoff(&q->rq));
    }
    *out = (struct vio_bq *)q;
    return 0;
}

static void iq_close(struct vio_bq *bq)
{
    struct iscsi_bq *q = (struct iscsi_bq *)bq;

    if (q->fd >= 0)
        vio_loop_del(q->rq.loop, &q->io);
    if (q->ctx)
        iscsi_destroy_context(q->ctx); /* nothing is in flight: no callbacks */
    if (q->state != IQ_UP)
        atomic_fetch_sub(&q->d->queues_down, 1);
    atomic_fetch_sub(&q->d->queues_open, 1);
    vio_rq_fini(&q->rq);
    free(q);
}

static json_t *iscsi_info(struct vio_bdev *b)
{
    struct iscsi_bdev *d = (struct iscsi_bdev *)b;
    unsigned open = atomic_load(&d->queues_open), down = atomic_load(&d->queues_down);

    return json_pack("{s:s, s:s, s:b, s:I, s:i, s:b, s:b, s:b, s:i, s:i, s:I, s:I, s:I, s:I, "
                     "s:I, s:I, s:I}",
                     "type", "iscsi", "uri", d->uri, "readonly", b->readonly, "size",
                     (json_int_t)b->size, "block_size", (int)b->block_size, "unmap", d->can_unmap,
                     "write_same", d->can_ws, "connected", down == 0, "queues", (int)open,
                     "queues_connected", (int)(open - down), "reconnects",
                     (json_int_t)vio_counter_get(&d->reconnects), "disconnects",
                     (json_int_t)vio_counter_get(&d->disconnects), "connect_failures",
                     (json_int_t)vio_counter_get(&d->connect_failures), "errors",
                     (json_int_t)vio_counter_get(&b->stats.errors), "flushes",
                     (json_int_t)vio_counter_get(&b->stats.flushes), "discards",
                     (json_int_t)vio_counter_get(&b->stats.discards), "write_zeroes",
                     (json_int_t)vio_counter_get(&b->stats.write_zeroes));
}

static void iscsi_bdev_close(struct vio_bdev *b)
{
    struct iscsi_bdev *d = (struct iscsi_bdev *)b;

    if (d->url)
        iscsi_destroy_url(d->url);
    free(d->zero_block);
    free(d->uri);
    free(d);
}

static const struct vio_bdev_ops iscsi_ops = {
    .name = "iscsi",
    .queue_open = iq_open,
    .queue_close = iq_close,
    .submit = iq_submit,
    .kick = iq_kick,
    .info = iscsi_info,
    .close = iscsi_bdev_close,
};

/* Parse @uri with libiscsi; NULL with a logged message if it is wrong. */
static struct iscsi_url *parse_uri(const char *uri)
{
    struct iscsi_context *ctx = iscsi_create_context(ISCSI_INITIATOR);
    const char *rest = uri + strlen("iscsi://");
    const char *slash = strchr(rest, '/');
    struct iscsi_url *url = NULL;

    if (!ctx)
        return NULL;
    if (slash == rest || *rest == '\0') {
        vio_err("%s: bad iSCSI URI: no host (expected iscsi://HOST[:PORT]/TARGET-IQN/LUN)", uri);
    } else if (!slash ||
               (strncmp(slash + 1, "iqn.", 4) != 0 && strncmp(slash + 1, "eui.", 4) != 0 &&
                strncmp(slash + 1, "naa.", 4) != 0)) {
        vio_err("%s: bad iSCSI URI: no target name (iqn.*, eui.* or naa.*) after the host "
                "(expected iscsi://HOST[:PORT]/TARGET-IQN/LUN)",
                uri);
    } else if (!strchr(slash + 1, '/')) {
        vio_err("%s: bad iSCSI URI: no LUN after the target name (expected "
                "iscsi://HOST[:PORT]/TARGET-IQN/LUN)",
                uri);
    } else {
        url = iscsi_parse_full_url(ctx, uri);
        if (!url) {
            char err[256];

            ic_error(ctx, err, sizeof(err));
            vio_err("%s: bad iSCSI URI: %s", uri, err);
        }
    }
    iscsi_destroy_context(ctx);
    return url;
}

/* Size, block size and provisioning from READ CAPACITY(16), VPD B0, B2. */
static int probe_lun(struct iscsi_bdev *d, struct iscsi_context *ctx, const struct vio_bdev_opts *o)
{
    struct scsi_task *t = ic_run(ctx, d, -1);
    struct scsi_readcapacity16 *rc;
    uint64_t nblocks;
    bool lbpme, lbpu = false, lbpws = false;

    rc = t ? scsi_datain_unmarshall(t) : NULL;
    if (!rc) {
        char err[256];

        ic_error(ctx, err, sizeof(err));
        vio_err("%s: READ CAPACITY(16) failed: %s", d->uri, err);
        if (t)
            scsi_free_scsi_task(t);
        return -EIO;
    }
    nblocks = rc->returned_lba + 1;
    d->b.block_size = rc->block_length;
    lbpme = rc->lbpme;
    scsi_free_scsi_task(t);
    if (d->b.block_size < 512 || d->b.block_size > 65536 || !vio_is_pow2(d->b.block_size)) {
        vio_err("%s: unsupported logical block size %u", d->uri, d->b.block_size);
        return -EINVAL;
    }
    if (o->block_size && o->block_size != d->b.block_size) {
        vio_err("%s: blksize=%u differs from the LUN's logical block size %u; drop blksize", d->uri,
                o->block_size, d->b.block_size);
        return -EINVAL;
    }
    d->b.size = nblocks * d->b.block_size;
    if (lbpme) {
        t = ic_run(ctx, d, SCSI_INQUIRY_PAGECODE_LOGICAL_BLOCK_PROVISIONING);
        if (t) {
            struct scsi_inquiry_logical_block_provisioning *lbp = scsi_datain_unmarshall(t);

            if (lbp) {
                lbpu = lbp->lbpu;
                lbpws = lbp->lbpws;
            }
            scsi_free_scsi_task(t);
        }
    }
    d->max_unmap = d->max_unmap_bdc = d->max_ws = 0;
    t = ic_run(ctx, d, SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS);
    if (t) {
        struct scsi_inquiry_block_limits *bl = scsi_datain_unmarshall(t);

        if (bl) {
            d->max_unmap = bl->max_unmap;
            d->max_unmap_bdc = bl->max_unmap_bdc;
            d->max_ws = (uint32_t)VIO_MIN(bl->max_ws_len, (uint64_t)UINT32_MAX);
        }
        scsi_free_scsi_task(t);
    }
    /* UNMAP needs LBPU and a non-zero descriptor limit; WRITE SAME(16) of
     * zeroes is plain SBC, advertised by its length limit or by LBPWS. */
    d->can_unmap = lbpu && d->max_unmap && d->max_unmap_bdc;
    d->max_unmap_bdc = VIO_MIN(d->max_unmap_bdc, (uint32_t)ISCSI_MAX_UNMAP_DESC);
    d->can_ws = d->max_ws > 0 || lbpws;
    d->ws_unmap = lbpws;
    if (!d->max_ws || d->max_ws == UINT32_MAX)
        d->max_ws = (1u << 30) / d->b.block_size; /* keep each task's work bounded */
    return 0;
}

int vio_bdev_iscsi_open(const struct vio_bdev_opts *o, struct vio_bdev **out)
{
    struct iscsi_bdev *d;
    struct iscsi_context *ctx;
    char err[256];
    int ret;

    if (o->direct) {
        vio_err("%s: direct applies to files only; drop it for iSCSI", o->path);
        return -EINVAL;
    }
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->uri = strdup(o->path);
    d->url = parse_uri(o->path);
    if (!d->uri || !d->url) {
        ret = d->uri ? -EINVAL : -ENOMEM;
        goto err_free;
    }
    ctx = ic_connect_wait(d, ISCSI_OPEN_TIMEOUT_MS, err, sizeof(err));
    if (!ctx) {
        ret = -ENOTCONN;
        vio_err("%s: cannot log in to the iSCSI target: %s (is the target running, and are the "
                "target name and LUN right?)",
                o->path, err);
        goto err_free;
    }
    ret = probe_lun(d, ctx, o);
    iscsi_destroy_context(ctx);
    if (ret < 0)
        goto err_free;
    d->zero_block = calloc(1, d->b.block_size);
    if (!d->zero_block) {
        ret = -ENOMEM;
        goto err_free;
    }
    d->b.ops = &iscsi_ops;
    d->b.readonly = o->readonly;
    d->b.can_discard = d->can_unmap;
    d->b.can_write_zeroes = d->can_ws;
    *out = &d->b;
    return 0;

err_free:
    iscsi_bdev_close(&d->b);
    return ret;
}
