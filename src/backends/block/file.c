/* File and block-device backend on io_uring (liburing): one ring per device
 * queue, owned by that queue's worker; bios become SQEs that are submitted
 * with one io_uring_enter per batch; completions arrive through an eventfd
 * in the worker loop. Optional O_DIRECT, with requests whose buffers are not
 * aligned for it going through a second, buffered descriptor.
 *
 * Rare cases are finished synchronously on the worker: short reads/writes,
 * an O_DIRECT EINVAL, and zero-range on file systems without it (tmpfs),
 * which falls back to punching a hole (reads back zero as well). */
#include "backends/block/bdev.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

struct file_bdev {
    struct vio_bdev b;
    char *path;
    int fd;  /* buffered */
    int dfd; /* O_DIRECT, or -1 */
    bool is_blkdev;
    uint32_t dio_align;
    atomic_bool no_zero_range;
};

#define FIDX_BUFFERED 0
#define FIDX_DIRECT   1

struct file_bq {
    struct file_bdev *f;
    struct io_uring ring;
    int efd;
    struct vio_handler h;
    struct vio_loop *loop;
    const struct vio_bq_cb *cb;
    void *opaque;
    unsigned queued;
    struct vio_ratelimit rl;
};

static bool bio_direct_ok(const struct file_bdev *f, const struct vio_bio *bio)
{
    uint64_t mask = f->dio_align - 1;

    if (f->dfd < 0 || (bio->offset & mask) || (bio->len & mask))
        return false;
    for (unsigned i = 0; i < bio->iovcnt; i++) {
        if (((uintptr_t)bio->iov[i].iov_base & mask) || (bio->iov[i].iov_len & mask))
            return false;
    }
    return true;
}

static int zero_mode(const struct file_bdev *f, const struct vio_bio *bio)
{
    if ((bio->flags & VIO_BIO_F_UNMAP) || atomic_load(&f->no_zero_range))
        return FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    return FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
}

/* Finish a read or write from byte @done on, with plain syscalls. */
static int finish_sync(struct file_bdev *f, const struct vio_bio *bio, uint64_t done)
{
    uint64_t skip = done;

    for (unsigned i = 0; i < bio->iovcnt; i++) {
        uint8_t *base = bio->iov[i].iov_base;
        size_t len = bio->iov[i].iov_len;

        if (skip >= len) {
            skip -= len;
            continue;
        }
        base += skip;
        len -= skip;
        skip = 0;
        while (len) {
            off_t off = (off_t)(bio->offset + done);
            ssize_t n = bio->op == VIO_BIO_READ ? pread(f->fd, base, len, off)
                                                : pwrite(f->fd, base, len, off);

            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return -errno;
            if (n == 0)
                return -EIO; /* the file shrank under us */
            base += n;
            len -= (size_t)n;
            done += (uint64_t)n;
        }
    }
    return 0;
}

static int complete_one(struct file_bq *q, struct vio_bio *bio, int res)
{
    struct file_bdev *f = q->f;

    switch (bio->op) {
    case VIO_BIO_READ:
    case VIO_BIO_WRITE:
        if (res == -EINVAL && bio_direct_ok(f, bio))
            return finish_sync(f, bio, 0); /* alignment stricter than we thought */
        if (res >= 0 && (uint64_t)res < bio->len)
            return finish_sync(f, bio, (uint64_t)res);
        return res < 0 ? res : 0;
    case VIO_BIO_FLUSH:
        if (res == 0)
            vio_bdev_count(&f->b.stats.flushes);
        return res;
    case VIO_BIO_DISCARD:
        /* Discard is a hint; a file system without hole punching loses
         * nothing by ignoring it. */
        if (res == -EOPNOTSUPP)
            res = 0;
        else if (res == 0)
            vio_bdev_count(&f->b.stats.discards);
        return res;
    case VIO_BIO_WRITE_ZEROES:
        if (res == -EOPNOTSUPP && !(zero_mode(f, bio) & FALLOC_FL_PUNCH_HOLE)) {
            atomic_store(&f->no_zero_range, true);
            res = fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            (off_t)bio->offset, (off_t)bio->len) < 0 ? -errno : 0;
        }
        if (res == 0)
            vio_bdev_count(&f->b.stats.write_zeroes);
        return res;
    }
    return -EINVAL;
}

/* Finish every completion in the ring; one batch_done for them all. */
static void reap(struct file_bq *q)
{
    unsigned total = 0;

    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;

        io_uring_for_each_cqe(&q->ring, head, cqe) {
            struct vio_bio *bio = io_uring_cqe_get_data(cqe);
            int res = complete_one(q, bio, cqe->res);

            if (res < 0) {
                vio_bdev_count(&q->f->b.stats.errors);
                if (vio_ratelimit_ok(&q->rl))
                    vio_warn("%s: I/O error op %u offset %llu len %llu: %s", q->f->path, bio->op,
                             (unsigned long long)bio->offset, (unsigned long long)bio->len,
                             strerror(-res));
            }
            q->cb->done(q->opaque, bio, res);
            n++;
        }
        if (!n)
            break;
        io_uring_cq_advance(&q->ring, n);
        total += n;
    }
    if (total)
        q->cb->batch_done(q->opaque);
}

static void completion_handler(struct vio_handler *h, uint32_t events)
{
    struct file_bq *q = vio_container_of(h, struct file_bq, h);

    (void)events;
    vio_eventfd_drain(q->efd);
    reap(q);
}

static int file_queue_open(struct vio_bdev *b, struct vio_loop *loop, unsigned depth,
                           const struct vio_bq_cb *cb, void *opaque, struct vio_bq **out)
{
    struct file_bdev *f = (struct file_bdev *)b;
    struct file_bq *q = calloc(1, sizeof(*q));
    int fds[2] = {f->fd, f->dfd >= 0 ? f->dfd : f->fd};
    int ret;

    if (!q)
        return -ENOMEM;
    q->f = f;
    q->cb = cb;
    q->opaque = opaque;
    q->loop = loop;
    q->rl = (struct vio_ratelimit)VIO_RATELIMIT_INIT;
    /* Twice the depth: every bio in flight always finds an SQE and a CQE. */
    ret = io_uring_queue_init(2 * depth, &q->ring, 0);
    if (ret < 0) {
        vio_err("%s: io_uring_queue_init(%u): %s", f->path, 2 * depth, strerror(-ret));
        goto err_free;
    }
    ret = io_uring_register_files(&q->ring, fds, 2);
    if (ret < 0)
        goto err_ring;
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0) {
        ret = -errno;
        goto err_ring;
    }
    /* Every completion signals the eventfd. Those the kernel finishes
     * inside io_uring_enter (page-cache hits, tmpfs) are also reaped by
     * file_kick right away, so they reach the guest without a trip through
     * epoll (the wake-up that follows finds nothing). Not the _async
     * variant: it signals only for io-wq completions, and O_DIRECT I/O
     * completes from interrupts, so it would never wake us. */
    ret = io_uring_register_eventfd(&q->ring, q->efd);
    if (ret < 0)
        goto err_efd;
    ret = vio_loop_add(loop, &q->h, q->efd, EPOLLIN, completion_handler);
    if (ret < 0)
        goto err_efd;
    *out = (struct vio_bq *)q;
    return 0;

err_efd:
    close(q->efd);
err_ring:
    io_uring_queue_exit(&q->ring);
err_free:
    free(q);
    return ret;
}

static void file_queue_close(struct vio_bq *bq)
{
    struct file_bq *q = (struct file_bq *)bq;

    vio_loop_del(q->loop, &q->h);
    io_uring_queue_exit(&q->ring);
    close(q->efd);
    free(q);
}

static int file_submit(struct vio_bq *bq, struct vio_bio *bio)
{
    struct file_bq *q = (struct file_bq *)bq;
    struct io_uring_sqe *sqe;
    int fidx = FIDX_BUFFERED;

    if (bio->op > VIO_BIO_WRITE_ZEROES)
        return -EINVAL;
    sqe = io_uring_get_sqe(&q->ring);
    if (!sqe) {
        io_uring_submit(&q->ring);
        q->queued = 0;
        sqe = io_uring_get_sqe(&q->ring);
        if (!sqe)
            return -EBUSY;
    }
    switch (bio->op) {
    case VIO_BIO_READ:
    case VIO_BIO_WRITE:
        if (bio_direct_ok(q->f, bio))
            fidx = FIDX_DIRECT;
        if (bio->op == VIO_BIO_READ)
            io_uring_prep_readv(sqe, fidx, bio->iov, bio->iovcnt, bio->offset);
        else
            io_uring_prep_writev(sqe, fidx, bio->iov, bio->iovcnt, bio->offset);
        break;
    case VIO_BIO_FLUSH:
        io_uring_prep_fsync(sqe, fidx, IORING_FSYNC_DATASYNC);
        break;
    case VIO_BIO_DISCARD:
        io_uring_prep_fallocate(sqe, fidx, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                (off_t)bio->offset, (off_t)bio->len);
        break;
    case VIO_BIO_WRITE_ZEROES:
        io_uring_prep_fallocate(sqe, fidx, zero_mode(q->f, bio), (off_t)bio->offset,
                                (off_t)bio->len);
        break;
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, bio);
    q->queued++;
    return 0;
}

static void file_kick(struct vio_bq *bq)
{
    struct file_bq *q = (struct file_bq *)bq;
    int ret;

    if (q->queued) {
        ret = io_uring_submit(&q->ring);
        if (ret < 0 && vio_ratelimit_ok(&q->rl))
            vio_err("%s: io_uring_submit: %s", q->f->path, strerror(-ret));
        q->queued = 0;
    }
    /* Completions the submits of this batch (here, or in file_submit when
     * the SQ was full) finished inline: to the guest now, not after the
     * next epoll round. */
    if (io_uring_cq_ready(&q->ring))
        reap(q);
}

static json_t *file_info(struct vio_bdev *b)
{
    struct file_bdev *f = (struct file_bdev *)b;

    return json_pack("{s:s, s:s, s:b, s:b, s:I, s:i, s:I, s:I, s:I, s:I}", "type", "file",
                     "path", f->path, "direct", f->dfd >= 0, "readonly", b->readonly, "size",
                     (json_int_t)b->size, "block_size", (int)b->block_size, "flushes",
                     (json_int_t)vio_counter_get(&b->stats.flushes), "discards",
                     (json_int_t)vio_counter_get(&b->stats.discards), "write_zeroes",
                     (json_int_t)vio_counter_get(&b->stats.write_zeroes), "errors",
                     (json_int_t)vio_counter_get(&b->stats.errors));
}

static void file_close(struct vio_bdev *b)
{
    struct file_bdev *f = (struct file_bdev *)b;

    if (f->dfd >= 0)
        close(f->dfd);
    close(f->fd);
    free(f->path);
    free(f);
}

static const struct vio_bdev_ops file_ops = {
    .name = "file",
    .queue_open = file_queue_open,
    .queue_close = file_queue_close,
    .submit = file_submit,
    .kick = file_kick,
    .info = file_info,
    .close = file_close,
};

int vio_bdev_file_open(const struct vio_bdev_opts *o, struct vio_bdev **out)
{
    struct file_bdev *f = calloc(1, sizeof(*f));
    int flags = O_CLOEXEC | (o->readonly ? O_RDONLY : O_RDWR);
    struct stat st;
    uint64_t size;
    int ret;

    if (!f)
        return -ENOMEM;
    f->dfd = -1;
    f->path = strdup(o->path);
    if (!f->path) {
        ret = -ENOMEM;
        goto err_free;
    }
    f->fd = open(o->path, flags);
    if (f->fd < 0) {
        ret = -errno;
        vio_err("%s: cannot open%s: %s%s", o->path, o->readonly ? " read-only" : "",
                strerror(errno),
                (!o->readonly && (errno == EACCES || errno == EROFS))
                    ? " (add ,readonly to serve it read-only)"
                    : "");
        goto err_free;
    }
    if (fstat(f->fd, &st) < 0) {
        ret = -errno;
        goto err_close;
    }
    if (S_ISBLK(st.st_mode)) {
        int lbs = 512;

        f->is_blkdev = true;
        if (ioctl(f->fd, BLKGETSIZE64, &size) < 0 || ioctl(f->fd, BLKSSZGET, &lbs) < 0) {
            ret = -errno;
            vio_err("%s: cannot read block device geometry: %s", o->path, strerror(errno));
            goto err_close;
        }
        f->b.block_size = (uint32_t)lbs;
    } else if (S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
        f->b.block_size = 512;
    } else {
        ret = -EINVAL;
        vio_err("%s: not a regular file or block device", o->path);
        goto err_close;
    }
    if (o->block_size) {
        if (o->block_size < f->b.block_size) {
            ret = -EINVAL;
            vio_err("%s: blksize=%u is below the device's logical block size %u", o->path,
                    o->block_size, f->b.block_size);
            goto err_close;
        }
        f->b.block_size = o->block_size;
    }
    f->b.size = size - size % f->b.block_size;
    if (f->b.size == 0) {
        ret = -EINVAL;
        vio_err("%s: smaller than one %u-byte block; give it a size first (truncate -s 1G %s)",
                o->path, f->b.block_size, o->path);
        goto err_close;
    }
    if (size != f->b.size)
        vio_warn("%s: size %llu is not a multiple of %u; the last %llu bytes are not served",
                 o->path, (unsigned long long)size, f->b.block_size,
                 (unsigned long long)(size - f->b.size));
    f->dio_align = f->b.block_size;
    if (o->direct) {
        f->dfd = open(o->path, flags | O_DIRECT);
        if (f->dfd < 0) {
            ret = -errno;
            vio_err("%s: cannot open with O_DIRECT: %s (drop the direct option on this file "
                    "system)",
                    o->path, strerror(errno));
            goto err_close;
        }
    }
    f->b.ops = &file_ops;
    f->b.readonly = o->readonly;
    f->b.can_discard = true;
    f->b.can_write_zeroes = true;
    *out = &f->b;
    return 0;

err_close:
    close(f->fd);
err_free:
    free(f->path);
    free(f);
    return ret;
}
