/* virtio-blk device model (VIRTIO 1.2, 5.2) on a block backend. Hosted by
 * any transport through struct vio_dev. */
#ifndef VIO_DEVICES_BLK_H
#define VIO_DEVICES_BLK_H

#include <stdint.h>

#include "backends/block/bdev.h"
#include "virtio/vdev.h"

struct vio_blk_opts {
    const char *id;      /* device name, also the default serial */
    uint16_t num_queues; /* request queues */
    uint16_t queue_size; /* largest queue the driver may set up, power of two */
    const char *serial;  /* GET_ID string, at most 20 bytes; NULL: id */
};

#define VIO_BLK_DEFAULT_QUEUE_SIZE 1024 /* largest queue accepted unless set */
#define VIO_BLK_MAX_QUEUES         64

/* Create a virtio-blk device serving @bdev (which it then owns). Returns 0
 * or -errno with a logged reason. */
int vio_blk_create(const struct vio_blk_opts *o, struct vio_bdev *bdev, struct vio_dev **out);

#endif
