/* Uplinks: switch ports that lead out of the virtual network (user-mode NAT
 * through libslirp, a VXLAN tunnel, a host TAP interface, a port of another
 * switch over vhost-user), all created from one "type=...,id=...,key=value"
 * spec. Each type lives in its own file (slirp.c, vxlan.c, tap.c,
 * vuser_uplink.c) behind struct vio_uplink_ops; this header is
 * the public entry point and, below it, what those files share.
 *
 * Spec keys common to every type:
 *   type=slirp|vxlan|tap|vhost-user   which uplink
 *   id=NAME                the switch port id (1..31 characters)
 *   vlan=N                 VLAN of the port, 0 (untagged, default) .. 4094
 * Type-specific keys are documented in slirp.h, vxlan.h, tap.h and
 * vuser_uplink.h. */
#ifndef VIO_NET_UPLINK_H
#define VIO_NET_UPLINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/opts.h"
#include "net/net.h"
#include "net/switch.h"

struct vio_uplink;

/* Create the uplink described by @spec and attach it to @sw. Any thread
 * (setup runs on the switch loop through vio_loop_call). Errors are logged
 * naming the spec. Returns 0, -EINVAL for a bad spec, or another -errno
 * (a busy port, a missing /dev/net/tun, ...). *out is set only on success. */
int vio_uplink_create(struct vio_switch *sw, const char *spec, struct vio_uplink **out);
/* Detach from the switch, stop, close and free (any thread; NULL is fine). */
void vio_uplink_destroy(struct vio_uplink *u);
/* The switch port of @u (for counters: vio_net_port_stats). */
struct vio_net_port *vio_uplink_port(struct vio_uplink *u);

/* ---- For the uplink implementations only. ---- */

/* What the generic parser hands a type's create function. */
struct vio_uplink_args {
    const char *spec; /* the whole spec, for messages */
    const char *id;
    uint16_t vlan;
};

struct vio_uplink_ops {
    const char *type;
    /* Parse the type's keys from @o (vio_uplink_check_unused() once all are
     * read), open what needs no loop (sockets, fds) and return the uplink
     * with vio_uplink_init() done. Returns 0 or -errno, logged. */
    int (*create)(const struct vio_uplink_args *a, struct vio_opts *o, struct vio_uplink **out);
    /* Switch loop thread, after the port is attached: start watching fds.
     * Returns 0 or -errno, logged; on failure stop() is not called. */
    int (*start)(struct vio_uplink *u);
    /* Switch loop thread, after the port is detached: stop watching and
     * drop everything that belongs to the loop. */
    void (*stop)(struct vio_uplink *u);
    /* Any thread: close and free (after stop(), or when start never ran). */
    void (*free)(struct vio_uplink *u);
};

struct vio_uplink {
    const struct vio_uplink_ops *ops;
    struct vio_net_port port;
    struct vio_switch *sw;
    struct vio_loop *loop;
    /* VIO_NET_MAX_FRAME bytes: a frame delivered in pieces is gathered here
     * when the type needs it whole (or has too many pieces). */
    uint8_t *linear;
};

/* Fill in @u's common part and allocate its linear buffer; @pops are the
 * port's ops and @caps its VIO_NET_CAP_* set. Returns 0 or -ENOMEM. */
int vio_uplink_init(struct vio_uplink *u, const struct vio_uplink_ops *ops,
                    const struct vio_net_port_ops *pops, const struct vio_uplink_args *a,
                    unsigned caps);
/* Free what vio_uplink_init() allocated. */
void vio_uplink_release(struct vio_uplink *u);

/* Log and return -EINVAL if @o holds a key nobody read. */
int vio_uplink_check_unused(const struct vio_uplink_args *a, const struct vio_opts *o);

/* A decimal number in [0, max] with nothing around it (no sign, no suffix).
 * Returns 0 or -EINVAL. */
int vio_uplink_parse_uint(const char *s, unsigned long max, unsigned long *out);

/* Most pieces a frame may have and still go out with one writev/sendmsg
 * next to a header; more are gathered into u->linear first. */
#define VIO_UPLINK_IOV_MAX 64

/* Build an iovec array for writev/sendmsg: @hdr (if @hdrlen) then the
 * frame. @iov has room for VIO_UPLINK_IOV_MAX entries. Returns the count. */
unsigned vio_uplink_gather(struct vio_uplink *u, const void *hdr, size_t hdrlen,
                           const struct vio_pkt *pkt, struct iovec *iov);
/* The frame as one contiguous buffer: its own memory when it is in one
 * piece, else a copy in u->linear. */
const uint8_t *vio_uplink_linear(struct vio_uplink *u, const struct vio_pkt *pkt);

#endif
