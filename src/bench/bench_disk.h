/* vio bench blk|scsi: the block workload engine both disk drivers share.
 * It parses the common options, keeps qd requests in flight on each request
 * queue (one thread each), checks verify patterns, measures, and prints the
 * result; a driver (bench_blk.c, bench_scsi.c) only opens the device, lays
 * out its request header and response, and judges each completion. */
#ifndef VIO_BENCH_BENCH_DISK_H
#define VIO_BENCH_BENCH_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vuser/vuser.h"

enum bench_disk_rw { BD_RANDREAD, BD_RANDWRITE, BD_READ, BD_WRITE, BD_VERIFY, BD_CHECK };

struct bench_disk_cfg {
    const char *sock;
    enum bench_disk_rw rw;
    uint32_t bs;
    unsigned qd;
    unsigned queues;
    double duration; /* seconds, when count == 0 */
    double ramp;     /* seconds before counting starts */
    uint64_t count;  /* I/Os (blocks for verify/check) in all */
    uint64_t span;   /* bytes of the disk used, from offset 0 */
    uint64_t seed;
    bool poll;
    bool json;
    pid_t backend;
    unsigned target, lun; /* SCSI address (--target, --lun) */
};

/* One request slot: its header (device-readable), data buffer and
 * response/status (device-writable), all in the shared memory. */
struct bench_disk_req {
    void *hdr;
    uint8_t *data;
    void *resp;
    uint64_t hdr_gpa, data_gpa, resp_gpa;
    uint32_t id; /* unique per run: queue * qd + slot */
    uint64_t off;
    uint64_t start_ns;
    bool write;
};

/* What a driver's open() reports about the device. */
struct bench_disk_dev {
    struct vio_vuser *d;
    unsigned first_q; /* index of the first request queue */
    uint64_t size;    /* bytes */
    uint32_t block;   /* the device's logical block size: bs must be a multiple */
    size_t hdr_len;   /* request header (device-readable, before data-out) */
    size_t resp_len;  /* response or status (device-writable) */
    bool resp_first;  /* the response precedes data-in (virtio-scsi), else follows it */
    void *priv;       /* the driver's */
};

struct bench_disk_ops {
    const char *name;      /* "blk": messages, usage and the result's "bench" key */
    const char *what;      /* "virtio-blk driver of the vhost-user-blk device" */
    unsigned extra_queues; /* queues before the request queues (control, event) */
    bool addr_opts;        /* --target and --lun are accepted */
    /* Connect with @vo (filled in but for want_features; nqueues counts the
     * extra queues), fill @dev. Prints its own errors; returns 0 or -errno. */
    int (*open)(const struct bench_disk_cfg *c, struct vio_vuser_opts *vo,
                struct bench_disk_dev *dev);
    /* Write @r's header and reset its response for an I/O of c->bs bytes
     * at byte offset r->off, a write when r->write. */
    void (*prep)(const struct bench_disk_cfg *c, const struct bench_disk_dev *dev,
                 struct bench_disk_req *r);
    /* Judge a completion the device used with @len bytes: 0 when it
     * succeeded, else -EIO and a description in @why. */
    int (*check)(const struct bench_disk_cfg *c, const struct bench_disk_dev *dev,
                 const struct bench_disk_req *r, uint32_t len, char *why, size_t n);
    void (*close)(struct bench_disk_dev *dev); /* NULL: vio_vuser_close(dev->d) */
};

/* `vio bench NAME ARGS` for the driver @ops. Returns the exit code:
 * 0 success, 1 run or device failure, 2 bad command line. */
int bench_disk_main(int argc, char **argv, const struct bench_disk_ops *ops);

#endif
