/* vhost-user front-end: the VMM side of the protocol (QEMU
 * docs/interop/vhost-user.rst). `vio run` uses it to attach devices served by
 * `vio serve`, qemu-storage-daemon or any other back-end; `vio bench` to
 * drive one from a host process. Blocking calls with a timeout, so a dead
 * back-end cannot hang the caller; every reply is validated.
 *
 * Threading: a front-end is used by one thread at a time (the caller
 * serializes); there is no global state, so different front-ends may be
 * used from different threads at once.
 *
 * Errors: negative errno values, each logged with the socket path and the
 * request. A transport or protocol error (timeout, closed socket, malformed
 * reply) leaves the connection out of step with the back-end: it is marked
 * broken and every later call returns -ENOTCONN; close it and connect
 * again. A request the back-end refused through REPLY_ACK returns
 * -EREMOTEIO and the connection stays usable.
 *
 * File descriptors passed in (memory, kick, call, err) stay the caller's:
 * the back-end gets copies through SCM_RIGHTS. */
#ifndef VIO_VHOST_VU_FRONTEND_H
#define VIO_VHOST_VU_FRONTEND_H

#include <stdbool.h>
#include <stdint.h>

/* Default for every request: connect, send, and wait for the reply. */
#define VIO_VU_FRONT_TIMEOUT_MS 10000

/* Queues a front-end can address: the ring index of SET_VRING_KICK/CALL/ERR
 * is 8 bits wide. */
#define VIO_VU_FRONT_MAX_QUEUES 256

/* Regions in one memory table (SET_MEM_TABLE's limit). */
#define VIO_VU_FRONT_MAX_REGIONS 8

struct vio_vu_front;

/* Connect to the back-end listening on @path and negotiate:
 * GET_FEATURES, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES (MQ, REPLY_ACK,
 * CONFIG and RESET_DEVICE, those the back-end offers), SET_OWNER and, with
 * MQ, GET_QUEUE_NUM. A back-end that does not offer
 * VHOST_USER_F_PROTOCOL_FEATURES is refused (-EPROTONOSUPPORT): without it
 * rings cannot be enabled or disabled and nothing can be acknowledged, and
 * every maintained back-end offers it. Each request waits at most
 * VIO_VU_FRONT_TIMEOUT_MS. Returns 0 and *@out, or -errno (-ENOENT,
 * -ECONNREFUSED: nothing listening; -ETIMEDOUT; -ECONNRESET, -EPIPE: the
 * back-end closed the connection, between or inside messages; -EPROTO: a
 * malformed reply; -EREMOTEIO: SET_OWNER refused). */
int vio_vu_front_connect(const char *path, struct vio_vu_front **out);

/* The same with a timeout of @timeout_ms (> 0) per request, kept for the
 * connection's later requests too. */
int vio_vu_front_connect_timeout(const char *path, unsigned timeout_ms, struct vio_vu_front **out);

/* Change the per-request timeout (> 0) for later requests. */
void vio_vu_front_set_timeout(struct vio_vu_front *f, unsigned timeout_ms);

/* Virtio feature bits the back-end offers, without vhost-user's own
 * VHOST_USER_F_PROTOCOL_FEATURES (bit 30): what a guest can be offered. */
uint64_t vio_vu_front_features(const struct vio_vu_front *f);

/* Protocol features negotiated (VU_PF_* bits of vhost/vu_proto.h). */
uint64_t vio_vu_front_protocol_features(const struct vio_vu_front *f);

/* Queues the back-end has: GET_QUEUE_NUM's answer (capped at
 * VIO_VU_FRONT_MAX_QUEUES) with MQ, else 1. */
unsigned vio_vu_front_num_queues(const struct vio_vu_front *f);

/* Read @len bytes of the device's config space at @off into @buf. Needs
 * the CONFIG protocol feature (-ENOTSUP otherwise). The request asks for
 * [0, off+len) and copies the tail: back-ends built on libvhost-user (such
 * as qemu-storage-daemon) ignore GET_CONFIG's offset, and QEMU always sends
 * 0. off+len must be at most 256 (-EINVAL). Returns 0, -EREMOTEIO if the
 * back-end answered with its empty "failed" reply, or another -errno. */
int vio_vu_front_get_config(struct vio_vu_front *f, uint32_t off, void *buf, uint32_t len);

/* Write @len bytes from @buf at @off of the config space (a driver write;
 * not the migration flag). Needs the CONFIG protocol feature. Returns 0,
 * -EREMOTEIO if the back-end refused (only known with REPLY_ACK), or
 * -errno. */
int vio_vu_front_set_config(struct vio_vu_front *f, uint32_t off, const void *buf, uint32_t len);

/* Acknowledge @features (a subset of vio_vu_front_features(), else
 * -EINVAL with nothing sent); VHOST_USER_F_PROTOCOL_FEATURES is added.
 * Returns 0, -EREMOTEIO if refused, or -errno. */
int vio_vu_front_set_features(struct vio_vu_front *f, uint64_t features);

/* Virtio features last acknowledged with vio_vu_front_set_features (0 after
 * a reset). */
uint64_t vio_vu_front_acked_features(const struct vio_vu_front *f);

/* One piece of guest memory: @size bytes of @fd from @fd_offset, at
 * guest-physical @gpa, mapped in this process at @hva. @hva is the "user
 * address" the protocol uses for ring addresses. */
struct vio_vu_mem_region {
    int fd;
    uint64_t fd_offset;
    uint64_t gpa;
    uint64_t size;
    void *hva;
};

/* Share guest memory: SET_MEM_TABLE with @n (1..VIO_VU_FRONT_MAX_REGIONS)
 * regions, replacing the previous table. Regions must be non-empty, must
 * not wrap around or overlap (in guest-physical or our address space) and
 * need an fd (-EINVAL otherwise, nothing sent). The table is kept to
 * translate ring addresses in vio_vu_front_queue_start. Returns 0,
 * -EREMOTEIO if refused, or -errno. */
int vio_vu_front_set_mem_table(struct vio_vu_front *f, const struct vio_vu_mem_region *r,
                               unsigned n);

/* Start queue @qi, after vio_vu_front_set_features (-EINVAL before) and
 * with a memory table, with a split ring of @size entries (a power of two up to
 * 32768) whose descriptor table, available and used rings are at the given
 * guest-physical addresses (aligned 16, 2 and 4, each wholly inside one
 * region of the memory table: -EINVAL/-EFAULT otherwise, nothing sent).
 * The back-end starts at avail index @base. Sends SET_VRING_NUM, _BASE,
 * _ADDR (with our user addresses), _CALL (no fd if @call_fd < 0: the
 * back-end will not signal), _ERR (if @err_fd >= 0), _KICK (@kick_fd >= 0
 * is required) and SET_VRING_ENABLE 1. CALL and ERR go before KICK because
 * some back-ends start the ring on KICK. Returns 0, -EREMOTEIO if the
 * back-end refused a step, or -errno. */
int vio_vu_front_queue_start(struct vio_vu_front *f, unsigned qi, uint16_t size, uint64_t desc_gpa,
                             uint64_t avail_gpa, uint64_t used_gpa, uint16_t base, int kick_fd,
                             int call_fd, int err_fd);

/* Stop queue @qi: SET_VRING_ENABLE 0, then GET_VRING_BASE, after which the
 * back-end takes nothing more from the ring (vio serve also finishes the
 * requests in flight before it answers; other back-ends may not). *@base (if not NULL) gets the
 * avail index where the back-end stopped: pass it to vio_vu_front_queue_start to resume. Works on a
 * queue that was never started. Returns 0 or -errno. */
int vio_vu_front_queue_stop(struct vio_vu_front *f, unsigned qi, uint16_t *base);

/* Replace queue @qi's call eventfd (re-routing an interrupt), or, with
 * @call_fd < 0, tell the back-end not to signal. Returns 0, -EREMOTEIO if
 * refused, or -errno. */
int vio_vu_front_set_call_fd(struct vio_vu_front *f, unsigned qi, int call_fd);

/* Reset the device: RESET_DEVICE when negotiated, else stop every queue
 * this front-end started. Acked features go back to 0. Before starting
 * queues again, send the features and the memory table again (a back-end
 * may drop them on reset). Returns 0 or -errno. */
int vio_vu_front_reset(struct vio_vu_front *f);

/* The connection's socket, to watch (poll for POLLIN/POLLHUP) for the
 * back-end going away: outside a call the back-end sends nothing, so any
 * readability means it closed or misbehaves. Do not read or write it. */
int vio_vu_front_fd(const struct vio_vu_front *f);

/* True once a transport or protocol error has broken the connection. */
bool vio_vu_front_broken(const struct vio_vu_front *f);

/* Close the connection (the back-end then resets its device) and free
 * @f. NULL is allowed. The back-end has its own mapping of guest memory and
 * may still finish requests into it after the close; stop the queues first
 * to have it let go of the rings. */
void vio_vu_front_close(struct vio_vu_front *f);

#endif
