/* Block backends: where a block device's sectors live (a file or block
 * device through io_uring, a null sink for benchmarks, an NBD export
 * through libnbd, an iSCSI LUN through libiscsi).
 * Devices (virtio-blk, SCSI LUNs, NVMe namespaces) talk only to this ops
 * table.
 *
 * I/O is asynchronous and per queue: each device queue opens its own backend
 * queue on its worker loop, submits bios (which only queue them), calls
 * kick once per batch, and gets completions through callbacks on the same
 * worker, followed by one batch_done. No allocation on the data path. */
#ifndef VIO_BACKENDS_BLOCK_BDEV_H
#define VIO_BACKENDS_BLOCK_BDEV_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/loop.h"
#include "core/util.h"

enum vio_bio_op {
    VIO_BIO_READ,
    VIO_BIO_WRITE,
    VIO_BIO_FLUSH,
    VIO_BIO_DISCARD,
    VIO_BIO_WRITE_ZEROES,
};

#define VIO_BIO_F_UNMAP 1u /* write zeroes may deallocate */

/* One backend operation, embedded in the device's request. The iovecs stay
 * valid until completion. */
struct vio_bio {
    uint8_t op;
    uint8_t flags;
    uint16_t iovcnt;
    const struct iovec *iov;
    uint64_t offset; /* bytes */
    uint64_t len;    /* bytes; for READ/WRITE the sum of the iovecs */
};

struct vio_bq_cb {
    /* @res: 0 on success or -errno. */
    void (*done)(void *opaque, struct vio_bio *bio, int res);
    /* After a run of done() calls. */
    void (*batch_done)(void *opaque);
};

struct vio_bdev;
struct vio_bq; /* a backend queue, private to each backend */

struct vio_bdev_ops {
    const char *name;
    /* Worker thread. Open a queue able to hold @depth bios in flight. */
    int (*queue_open)(struct vio_bdev *b, struct vio_loop *loop, unsigned depth,
                      const struct vio_bq_cb *cb, void *opaque, struct vio_bq **out);
    /* Worker thread; nothing may be in flight. */
    void (*queue_close)(struct vio_bq *q);
    /* Queue @bio. Returns 0 (done() will be called) or -errno (it won't).
     * Always follow a batch of submits with kick(). */
    int (*submit)(struct vio_bq *q, struct vio_bio *bio);
    /* Hand everything queued to the kernel/server in one go. May complete
     * requests (done(), batch_done()) before it returns. */
    void (*kick)(struct vio_bq *q);
    /* Backend-specific JSON (type, path, counters). */
    json_t *(*info)(struct vio_bdev *b);
    void (*close)(struct vio_bdev *b);
};

struct vio_bdev_stats {
    vio_counter_t flushes;      /* completed flush operations (fdatasync) */
    vio_counter_t discards;     /* completed deallocations (hole punches) */
    vio_counter_t write_zeroes; /* completed zeroing operations */
    vio_counter_t errors;
};

struct vio_bdev {
    const struct vio_bdev_ops *ops;
    uint64_t size;       /* bytes */
    uint32_t block_size; /* logical block size, a power of two >= 512 */
    bool readonly;
    bool can_discard;
    bool can_write_zeroes;
    /* Backend queues it can serve at once, 0 for any number (an NBD export
     * without multi-conn: 1). Devices check it when they are created. */
    unsigned max_queues;
    struct vio_bdev_stats stats; /* updated with atomic adds from any worker */
};

/* What the command line says about a backend. */
struct vio_bdev_opts {
    const char *path;    /* file or block device, or an nbd://, nbd+unix:// or
                          * iscsi:// URI; NULL with null=true */
    bool null;           /* the null backend */
    uint64_t null_size;  /* size of the null device */
    bool readonly;
    bool direct;         /* O_DIRECT */
    uint32_t block_size; /* 0: backend default */
};

/* Open a backend. Returns 0 or -errno with a logged message naming the
 * path and what to do. */
int vio_bdev_open(const struct vio_bdev_opts *o, struct vio_bdev **out);

int vio_bdev_file_open(const struct vio_bdev_opts *o, struct vio_bdev **out);
int vio_bdev_null_open(const struct vio_bdev_opts *o, struct vio_bdev **out);
/* Network backends: connect (blocking, a few seconds at most) and read the
 * size and capabilities. A lost connection fails the bios in flight and
 * those submitted while it is down with -ENOTCONN and is re-established in
 * the background. */
int vio_bdev_nbd_open(const struct vio_bdev_opts *o, struct vio_bdev **out);
int vio_bdev_iscsi_open(const struct vio_bdev_opts *o, struct vio_bdev **out);

static inline void vio_bdev_count(vio_counter_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

#endif
