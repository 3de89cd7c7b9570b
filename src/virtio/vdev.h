/* The device interface: what every virtio device model (blk, net, scsi ...)
 * implements, and the transport-independent queue life cycle that hosts it.
 * A device is written once against struct vio_dev_ops and never learns
 * whether vhost-user (vio serve) or virtio-pci (vio run) carries it.
 *
 * Threading: each queue belongs to one worker loop. The transport calls the
 * vio_dev_queue_* functions from its control thread; they run the queue work
 * on the worker through vio_loop_call(), so device callbacks that touch a
 * queue always run on that queue's worker. */
#ifndef VIO_VIRTIO_VDEV_H
#define VIO_VIRTIO_VDEV_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/gmem.h"
#include "core/loop.h"
#include "virtio/virtq.h"

struct vio_dev;

struct vio_dev_ops {
    const char *type;   /* "blk", shown in listings */
    uint32_t device_id; /* VIO_ID_* */
    /* Device-specific feature bits offered (the transport adds the ring and
     * version bits). */
    uint64_t (*features)(struct vio_dev *d);
    /* Size of the device's config space in bytes. */
    uint32_t (*config_size)(struct vio_dev *d);
    /* Copy config space [off, off+len) into @buf; the range is already
     * checked against config_size. */
    void (*get_config)(struct vio_dev *d, uint32_t off, void *buf, uint32_t len);
    /* Driver write to config space; NULL if every field is read-only.
     * Returns 0 or -errno. */
    int (*set_config)(struct vio_dev *d, uint32_t off, const void *buf, uint32_t len);
    /* Worker thread: a queue starts (rings validated and mapped). Set up
     * per-queue state; returns 0 or -errno (the queue then stays stopped). */
    int (*queue_start)(struct vio_dev *d, struct vio_vq *vq);
    /* Worker thread: the driver kicked; pop and handle requests. */
    void (*queue_kick)(struct vio_dev *d, struct vio_vq *vq);
    /* Worker thread: the queue has no requests in flight and stops. */
    void (*queue_stop)(struct vio_dev *d, struct vio_vq *vq);
    /* Control thread, every queue stopped: back to the power-on state. */
    void (*reset)(struct vio_dev *d);
    /* Control thread: counters and state for the control API. */
    json_t *(*stats)(struct vio_dev *d);
    /* Release everything the device owns. */
    void (*destroy)(struct vio_dev *d);
};

/* Per-queue state of the device core. */
struct vio_dev_queue {
    struct vio_vq vq;
    struct vio_dev *dev;
    struct vio_loop *loop; /* the worker that owns the queue */
    struct vio_handler kick_h;
    int kick_fd;         /* transport's eventfd, not owned */
    bool running;        /* started on the worker */
    bool enabled;        /* the driver allows processing */
    bool stopping;       /* draining before stop */
    struct vio_call *drain_call; /* stop waiting for in-flight requests */
    void *priv;          /* device's per-queue state */
};

struct vio_dev {
    const struct vio_dev_ops *ops;
    char id[32];
    uint16_t num_queues;
    uint16_t max_queue_size;
    uint16_t max_iov;      /* buffers per request the device accepts */
    uint64_t features;     /* negotiated with the driver */
    const struct vio_gmem *mem;
    struct vio_dev_queue *queues;
};

/* Fill in @d and allocate its queues. Returns 0 or -errno. */
int vio_dev_init(struct vio_dev *d, const struct vio_dev_ops *ops, const char *id,
                 uint16_t num_queues, uint16_t max_queue_size, uint16_t max_iov);
/* Free what vio_dev_init allocated (queues must be stopped). */
void vio_dev_cleanup(struct vio_dev *d);

/* Start queue @qi on its worker with the geometry already set in its vq,
 * kicks arriving on @kick_fd. Processes any requests already available if
 * the queue is enabled. Returns 0 or -errno. */
int vio_dev_queue_start(struct vio_dev *d, unsigned qi, int kick_fd);
/* Stop queue @qi: no more requests are taken, in-flight ones complete and
 * are returned to the driver, then the device's queue_stop runs. Returns
 * once the queue is stopped. No-op if not running. */
void vio_dev_queue_stop(struct vio_dev *d, unsigned qi);
/* Allow or forbid processing; enabling processes what is pending. */
void vio_dev_queue_set_enabled(struct vio_dev *d, unsigned qi, bool enabled);
/* Replace the call or error eventfd (the caller then closes the old one). */
void vio_dev_queue_set_call_fd(struct vio_dev *d, unsigned qi, int fd);
void vio_dev_queue_set_err_fd(struct vio_dev *d, unsigned qi, int fd);

/* Worker thread, called by a device after it pushed completions: publish
 * them, notify the driver, and finish a pending stop once nothing is in
 * flight. */
void vio_dev_complete(struct vio_dev *d, struct vio_vq *vq);

/* Worker thread: standard drain loop for a kick. Pops every available
 * element and hands it to @handle, with notification suppression around the
 * drain so the driver does not kick while we are busy. */
void vio_dev_drain(struct vio_vq *vq, void (*handle)(void *opaque, struct vio_vq_elem *e),
                   void *opaque);

static inline struct vio_dev_queue *vio_dev_queue_of(struct vio_vq *vq)
{
    return vio_container_of(vq, struct vio_dev_queue, vq);
}

/* True if any queue has been marked broken by a guest error. */
bool vio_dev_needs_reset(const struct vio_dev *d);

#endif
