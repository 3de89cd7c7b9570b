/* TAP uplink: the switch joins a host network interface through
 * /dev/net/tun (IFF_TAP | IFF_NO_PI), so the host stack, a bridge or a
 * physical NIC beyond it sees the guests' frames.
 *
 * Spec: type=tap,id=ID,ifname=NAME[,vlan=N][,offload=on|off]
 *   ifname   the interface (1..15 characters, no '/', ':' or blanks); an
 *            existing persistent tap is attached, otherwise a new one is
 *            created and goes away with the uplink. It is not brought up:
 *            that, addresses and bridging are the host's business.
 *   offload  on (default): frames carry a virtio_net_hdr (IFF_VNET_HDR),
 *            so partial checksums and TCP segmentation pass through both
 *            ways (caps CSUM, TSO4, TSO6, TSO_ECN); off: complete frames only.
 * Needs CAP_NET_ADMIN (or a persistent tap owned by the caller). A write the
 * kernel cannot take right now (EAGAIN) is dropped and counted as write_busy
 * in the port's stats (with write_error, read_error, read_bad). */
#ifndef VIO_NET_TAP_H
#define VIO_NET_TAP_H

#include "net/uplink.h"

extern const struct vio_uplink_ops vio_tap_uplink_ops;

#endif
