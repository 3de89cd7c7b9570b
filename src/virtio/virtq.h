/* Device side of a virtqueue. The transport (vhost-user, virtio-pci) fills in
 * the queue's geometry and eventfds; the device pops validated requests,
 * pushes completions and notifies. Devices never see raw descriptors: a
 * popped element is a list of host iovecs, driver-readable ones first, each
 * wholly inside guest memory.
 *
 * Threading: after vio_vq_start() every function here is called only by the
 * thread that owns the queue (its worker). The ring layout is hidden behind
 * pop/push so packed rings can be added without touching devices. */
#ifndef VIO_VIRTIO_VIRTQ_H
#define VIO_VIRTIO_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/gmem.h"
#include "core/log.h"
#include "virtio/virtio.h"

/* A popped request. Valid from vio_vq_pop() until vio_vq_push(). */
struct vio_vq_elem {
    uint16_t id;      /* head descriptor index: names the request in the used ring */
    uint16_t out_num; /* iov[0 .. out_num) are driver-readable (device reads) */
    uint16_t in_num;  /* iov[out_num .. out_num+in_num) are device-writable */
    bool inflight;
    uint64_t out_len; /* total readable bytes */
    uint64_t in_len;  /* total writable bytes */
    struct iovec *iov;
};

struct vio_vq {
    /* Geometry and signalling, set by the transport while the queue is
     * stopped. */
    uint16_t index;
    uint16_t size;           /* entries, a power of two */
    uint16_t max_size;       /* largest size the device accepts */
    uint64_t desc_gpa, avail_gpa, used_gpa;
    bool event_idx;          /* VIRTIO_F_EVENT_IDX negotiated */
    bool indirect;           /* VIRTIO_F_INDIRECT_DESC negotiated */
    uint16_t last_avail_idx; /* next avail entry to take; the vhost-user base */
    int call_fd;             /* eventfd: used buffers for the driver, or -1 */
    int err_fd;              /* eventfd: queue broken, needs reset, or -1 */
    char name[40];           /* "disk0 q1", for logs */

    /* Runtime state, owned by the worker after vio_vq_start(). */
    const struct vio_gmem *mem;
    struct vio_vring_desc *desc;
    struct vio_vring_avail *avail;
    struct vio_vring_used *used;
    uint16_t shadow_avail_idx; /* last avail->idx read */
    uint16_t used_idx;         /* next used slot (may be ahead of used->idx) */
    uint16_t used_published;   /* value last stored in used->idx */
    uint16_t signalled_used;   /* used_idx at the last notification */
    bool signalled_used_valid;
    bool notify_owed; /* a notification was due while call_fd was -1 */
    bool broken; /* the guest broke the ring rules; nothing more is popped */
    uint16_t inflight; /* popped, not yet pushed */
    uint16_t max_iov;  /* iovecs per request */
    uint16_t alloc_size;
    struct vio_vq_elem *elems; /* [size], indexed by head */
    struct iovec *iov_pool;    /* [size * max_iov] */
    struct vio_ratelimit fault_rl;
};

/* Set a stopped queue to its reset state (no rings, no fds, size 0).
 * @max_size bounds what the driver may ask for. */
void vio_vq_init(struct vio_vq *vq, uint16_t index, uint16_t max_size, const char *name);

/* Validate the geometry against @mem and map the rings: size a power of two
 * within max_size, rings aligned (16/2/4) and wholly inside one region each.
 * @max_iov is how many buffers one request may use. Reads used->idx so a
 * restarted queue continues where it stopped. Allocates the element pool
 * (start-up only, never on the data path). Returns 0 or -errno with a logged
 * reason; the queue stays stopped on error. */
int vio_vq_start(struct vio_vq *vq, const struct vio_gmem *mem, uint16_t max_iov);

/* Forget the rings (the device must have drained in-flight requests). The
 * element pool is kept for the next start. */
void vio_vq_stop(struct vio_vq *vq);

/* Free the element pool. */
void vio_vq_free(struct vio_vq *vq);

/* True while the queue has rings mapped. */
static inline bool vio_vq_started(const struct vio_vq *vq)
{
    return vq->desc != NULL;
}

/* Take the next available request. Returns NULL when there is none, or when
 * the chain breaks the rules; then the queue is marked broken (see
 * vio_vq_fault) and returns NULL until restarted. */
struct vio_vq_elem *vio_vq_pop(struct vio_vq *vq);

/* Give back the element popped last, unused: the next pop returns it
 * again. Several may be given back, in the reverse order of their pops (a
 * device that needs more buffers than are available for one request). */
void vio_vq_unpop(struct vio_vq *vq, struct vio_vq_elem *e);

/* Return @e to the driver with @len bytes written to its writable buffers.
 * Not visible to the driver until vio_vq_flush() or vio_vq_notify(). */
void vio_vq_push(struct vio_vq *vq, struct vio_vq_elem *e, uint32_t len);

/* Publish pushed elements (store used->idx). */
void vio_vq_flush(struct vio_vq *vq);

/* Publish pushed elements and signal call_fd if the driver asked for it
 * (VIRTIO_F_EVENT_IDX or the NO_INTERRUPT flag). */
void vio_vq_notify(struct vio_vq *vq);

/* Replace the call eventfd; a notification that fell due while there was
 * none is delivered now. */
void vio_vq_set_call_fd(struct vio_vq *vq, int fd);
/* Replace the error eventfd; signalled at once if the queue is broken. */
void vio_vq_set_err_fd(struct vio_vq *vq, int fd);

/* Ask the driver not to kick while we are draining the ring. */
void vio_vq_disable_notify(struct vio_vq *vq);

/* Ask the driver to kick for new buffers. Returns true if buffers arrived
 * meanwhile, in which case the caller must pop again. */
bool vio_vq_enable_notify(struct vio_vq *vq);

/* The driver broke the rules: mark the queue broken, log why (rate-limited)
 * and signal err_fd so the transport can set DEVICE_NEEDS_RESET. */
void vio_vq_fault(struct vio_vq *vq, const char *fmt, ...) VIO_PRINTF(2, 3);

/* Copy up to @len bytes from the readable part of @e starting at byte @skip
 * into @buf. Returns the number of bytes copied. */
size_t vio_vq_elem_read(const struct vio_vq_elem *e, size_t skip, void *buf, size_t len);

/* Copy @len bytes into the writable part of @e starting at byte @skip.
 * Returns the number of bytes copied. */
size_t vio_vq_elem_write(const struct vio_vq_elem *e, size_t skip, const void *buf, size_t len);

#endif
