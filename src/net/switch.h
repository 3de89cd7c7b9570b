/* The learning L2 switch that VM ports and uplinks share (vio serve's
 * --net ports, vio run's NICs, --uplink slirp/vxlan/tap).
 *
 * Isolation rules (docs/ARCHITECTURE.md, "Virtual network"):
 *  - a VM port (fixed_mac) may send only with its own source MAC; anything
 *    else is dropped and counted as tx_drop_spoof;
 *  - a VM port receives only unicast to its own MAC, broadcast and
 *    multicast, and only from its own VLAN;
 *  - uplinks (no fixed MAC) have the source MACs of their frames learned
 *    per VLAN; a learned address never overrides a VM port's own;
 *  - unicast to an unknown address is flooded to the uplinks of the
 *    sender's VLAN only; broadcast and multicast go to every other port of
 *    the VLAN.
 * Frames are forwarded with their offload metadata untouched when the
 * receiver accepts it, and finished (checksummed, segmented) only for the
 * receivers that need it (net/offload.h).
 *
 * Threading: one thread, the switch loop's, runs all of the data path and
 * owns the port list and the MAC table. attach/detach/set_link may be
 * called from any thread; they run on the switch loop. */
#ifndef VIO_NET_SWITCH_H
#define VIO_NET_SWITCH_H

#include "core/loop.h"
#include "net/net.h"

struct vio_switch;

/* A switch whose data path runs on @loop. Returns 0 or -errno. */
int vio_switch_create(struct vio_loop *loop, const char *name, struct vio_switch **out);
/* Free the switch; every port must be detached. */
void vio_switch_destroy(struct vio_switch *sw);
struct vio_loop *vio_switch_loop(struct vio_switch *sw);

/* Attach @p (any thread). Fails with -EEXIST if a port with the same id,
 * or a VM port with the same MAC in the same VLAN, is attached. */
int vio_switch_attach(struct vio_switch *sw, struct vio_net_port *p);
/* Detach @p (any thread); when this returns the switch no longer touches
 * it and its learned addresses are forgotten. */
void vio_switch_detach(struct vio_net_port *p);
/* Find an attached port by id (any thread; the pointer stays valid only
 * while the caller prevents the port's removal). */
struct vio_net_port *vio_switch_find(struct vio_switch *sw, const char *id);
/* Call @fn for every attached port, on the switch thread. */
void vio_switch_foreach(struct vio_switch *sw, void (*fn)(struct vio_net_port *p, void *opaque),
                        void *opaque);

/* Switch thread: a frame @src's owner sent. Checks it (size, offload
 * header, anti-spoofing, link), learns, and forwards it. Never fails: a
 * frame that cannot go anywhere is dropped and counted. */
void vio_switch_input(struct vio_net_port *src, const struct vio_pkt *pkt);
/* Switch thread: bracket a burst of vio_switch_input() calls (a drained TX
 * ring, a socket read loop) so receivers are flushed once at the end
 * rather than after every frame. Brackets may nest. */
void vio_switch_batch_begin(struct vio_switch *sw);
void vio_switch_batch_end(struct vio_switch *sw);

#endif
