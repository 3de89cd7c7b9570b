/* vhost-user uplink: the switch joins a virtio-net port served by someone
 * else over vhost-user (usually a port of `vio serve`'s switch), acting as
 * that port's virtio driver from this process (vuser/vuser.h). So `vio run`
 * guests, whatever their NIC model, can sit on one shared `vio serve` switch,
 * which then enforces that port's MAC and VLAN on everything they send.
 *
 * Spec: type=vhost-user,id=ID,socket=PATH[,vlan=N][,queue-size=N]
 *   socket      the vhost-user-net socket to connect to (at start; it must be
 *               listening then)
 *   queue-size  ring entries, a power of two 64..1024 (default 256)
 * Offloads are those both sides take: partial checksums and TSO pass through
 * whole when the peer offers them. Frames the peer cannot take right now
 * (its receive ring is full) are dropped and counted as the port's
 * rx_drop_full; the port's stats add tx_ring_full, rx_bad and peer_gone. */
#ifndef VIO_NET_VUSER_UPLINK_H
#define VIO_NET_VUSER_UPLINK_H

#include "net/uplink.h"

extern const struct vio_uplink_ops vio_vuser_uplink_ops;

#endif
