/* virtio-user: the driver side of virtio in a host process, over
 * vhost-user. A process maps its own memory (one memfd, shared with the
 * back-end), negotiates features, lays out split rings in that memory and
 * then adds buffers, kicks, and collects used buffers by polling or by
 * waiting on the call eventfd, exactly as a guest driver would. `vio bench`
 * drives devices with it; a test or a container can use it to reach a
 * `vio serve` device (or qemu-storage-daemon, or DPDK) without a VM.
 *
 * Memory: one region of @mem_bytes at driver "physical" address
 * VIO_VUSER_GPA_BASE; vio_vuser_alloc hands out pieces of it for rings and
 * buffers (never freed before close). Rings follow the VIRTIO 1.x split
 * layout (2.7), with EVENT_IDX (2.7.7-2.7.10) when the back-end offers it.
 *
 * Threading: a queue is used by one thread at a time; different queues of
 * one device may be used by different threads. Setup and close are not
 * thread-safe. Errors: negative errno; setup failures are logged. */
#ifndef VIO_VUSER_VUSER_H
#define VIO_VUSER_VUSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/virtio.h"

#define VIO_VUSER_GPA_BASE 0x100000000ull
#define VIO_VUSER_MAX_QUEUES 64

struct vio_vuser;

/* One piece of a request: @len bytes at driver address @gpa. */
struct vio_vuser_buf {
    uint64_t gpa;
    uint32_t len;
};

/* Driver side of one split ring. Fields are private to vuser.c except as
 * read-only statistics. */
struct vio_vuser_vq {
    unsigned index;
    uint16_t size;
    struct vio_vring_desc *desc;
    struct vio_vring_avail *avail;
    struct vio_vring_used *used;
    uint16_t *used_event;  /* in the avail ring, after ring[size] */
    uint16_t *avail_event; /* in the used ring, after ring[size] */
    bool event_idx;
    uint16_t free_head;   /* first free descriptor (chained by .next) */
    uint16_t num_free;
    uint16_t avail_idx;   /* next avail index we publish */
    uint16_t kicked_idx;  /* avail index at the last notification decision */
    uint16_t last_used;   /* next used index we consume */
    uint16_t *chain_len;  /* [size] descriptors in the chain at each head */
    void **cookie;        /* [size] caller's value per head */
    int kick_fd;
    int call_fd;
    uint64_t kicks;       /* eventfd writes */
    uint64_t kicks_saved; /* notifications the back-end told us to skip */
    uint64_t waits;       /* sleeps on the call eventfd */
};

/* Connect to the back-end at @sock, offer it @want & (its features) plus
 * VERSION_1 (required) and EVENT_IDX (when offered and @event_idx), share
 * @mem_bytes of memory, and start @nqueues queues of @qsize entries (a
 * power of two). Returns 0 and *@out, or -errno. */
struct vio_vuser_opts {
    const char *sock;
    uint64_t mem_bytes;
    uint64_t want_features;
    unsigned nqueues;
    uint16_t qsize;
    bool event_idx;
};
int vio_vuser_open(const struct vio_vuser_opts *o, struct vio_vuser **out);

/* Stop the queues, close the connection and unmap the memory. NULL ok. */
void vio_vuser_close(struct vio_vuser *d);

/* Features acknowledged (virtio bits only). */
uint64_t vio_vuser_features(const struct vio_vuser *d);
/* Features the back-end offered. */
uint64_t vio_vuser_offered(const struct vio_vuser *d);
/* Queues the back-end has (GET_QUEUE_NUM, or 1). */
unsigned vio_vuser_backend_queues(const struct vio_vuser *d);

/* The vhost-user connection's socket, to watch for the back-end going away
 * (see vio_vu_front_fd): readable outside a request means it closed. */
int vio_vuser_fd(const struct vio_vuser *d);

/* Read the device's config space (needs the CONFIG protocol feature). */
int vio_vuser_get_config(struct vio_vuser *d, uint32_t off, void *buf, uint32_t len);

/* @len bytes aligned to @align (a power of two) of shared memory; *@gpa
 * gets the driver address. NULL when the memory is used up. */
void *vio_vuser_alloc(struct vio_vuser *d, size_t len, size_t align, uint64_t *gpa);
/* Host pointer for a driver address inside the shared memory, else NULL. */
void *vio_vuser_ptr(struct vio_vuser *d, uint64_t gpa, size_t len);

struct vio_vuser_vq *vio_vuser_vq(struct vio_vuser *d, unsigned i);

/* Put a chain of @n_out device-readable then @n_in device-writable buffers
 * in the ring (not yet visible to the device: see vio_vuser_kick).
 * Returns the head index, or -ENOSPC when descriptors are short, -EINVAL
 * on an empty chain. */
int vio_vuser_add(struct vio_vuser_vq *q, const struct vio_vuser_buf *b, unsigned n_out,
                  unsigned n_in, void *cookie);

/* Publish what was added and notify the back-end if it asked to be. */
void vio_vuser_kick(struct vio_vuser_vq *q);

/* Take one used buffer: returns 1 with *@len (bytes written by the device)
 * and *@cookie, or 0 when none is ready. */
int vio_vuser_get(struct vio_vuser_vq *q, uint32_t *len, void **cookie);

/* Sleep until the device has used something (or @timeout_ms passes: 0 is
 * returned then, 1 when something is ready, -errno on error). Asks the
 * device for an interrupt first, and checks the ring again so none is
 * missed. */
int vio_vuser_wait(struct vio_vuser_vq *q, int timeout_ms);

/* Ask the device not to interrupt (polling mode) or to interrupt again. */
void vio_vuser_set_interrupts(struct vio_vuser_vq *q, bool on);

#endif
