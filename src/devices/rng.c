/* virtio-rng (see rng.h). One request queue; each request is filled up to
 * 64 KiB, so one request cannot keep the worker busy for long. */
#include "devices/rng.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/log.h"

#define RNG_MAX_REQ (64 * 1024)

struct vio_rng {
    struct vio_dev dev;
    vio_counter_t requests, bytes;
};

static void handle(void *opaque, struct vio_vq_elem *e)
{
    struct vio_rng *r = opaque;
    struct vio_vq *vq = &r->dev.queues[0].vq;
    size_t total = 0;

    for (unsigned i = e->out_num; i < (unsigned)e->out_num + e->in_num && total < RNG_MAX_REQ;
         i++) {
        size_t want = VIO_MIN(e->iov[i].iov_len, RNG_MAX_REQ - total), got = 0;

        while (got < want) {
            ssize_t n = getrandom((uint8_t *)e->iov[i].iov_base + got, want - got, 0);

            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        total += got;
        if (got < want)
            break;
    }
    vio_counter_add(&r->requests, 1);
    vio_counter_add(&r->bytes, total);
    vio_vq_push(vq, e, (uint32_t)total);
}

static void rng_kick(struct vio_dev *d, struct vio_vq *vq)
{
    vio_dev_drain(vq, handle, d);
    vio_dev_complete(d, vq);
}

static int rng_queue_start(struct vio_dev *d, struct vio_vq *vq)
{
    (void)d;
    (void)vq;
    return 0;
}

static void rng_queue_stop(struct vio_dev *d, struct vio_vq *vq)
{
    (void)d;
    (void)vq;
}

static uint64_t rng_features(struct vio_dev *d)
{
    (void)d;
    return 0;
}

static uint32_t rng_config_size(struct vio_dev *d)
{
    (void)d;
    return 0;
}

static void rng_get_config(struct vio_dev *d, uint32_t off, void *buf, uint32_t len)
{
    (void)d;
    (void)off;
    memset(buf, 0, len);
}

static json_t *rng_stats(struct vio_dev *d)
{
    struct vio_rng *r = vio_container_of(d, struct vio_rng, dev);

    return json_pack("{s:I, s:I}", "requests", (json_int_t)vio_counter_get(&r->requests),
                     "bytes", (json_int_t)vio_counter_get(&r->bytes));
}

static void rng_destroy(struct vio_dev *d)
{
    struct vio_rng *r = vio_container_of(d, struct vio_rng, dev);

    vio_dev_cleanup(d);
    free(r);
}

static const struct vio_dev_ops rng_ops = {
    .type = "rng",
    .device_id = VIO_ID_RNG,
    .features = rng_features,
    .config_size = rng_config_size,
    .get_config = rng_get_config,
    .queue_start = rng_queue_start,
    .queue_kick = rng_kick,
    .queue_stop = rng_queue_stop,
    .stats = rng_stats,
    .destroy = rng_destroy,
};

int vio_rng_create(const char *id, struct vio_dev **out)
{
    struct vio_rng *r = calloc(1, sizeof(*r));
    int ret;

    if (!r)
        return -ENOMEM;
    ret = vio_dev_init(&r->dev, &rng_ops, id, 1, 256, 16);
    if (ret < 0) {
        free(r);
        return ret;
    }
    *out = &r->dev;
    return 0;
}
