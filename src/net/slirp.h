/* User-mode NAT uplink through libslirp: the guests behind the switch get
 * DHCP, DNS and outbound TCP/UDP/ICMP through the host's sockets, with no
 * privileges and no host interface.
 *
 * Spec: type=slirp,id=ID[,vlan=N][,net=A.B.C.D/LEN][,restrict=on|off]
 *       [,hostfwd=RULE[;RULE...]]
 *   net       the virtual network, default 10.0.2.0/24 (LEN 1..27); the
 *             gateway is .2 (it stands for the host's loopback: a guest
 *             reaching 10.0.2.2:P reaches 127.0.0.1:P), DNS is .3, DHCP
 *             hands out .15 to .30
 *   restrict  on: isolate the network (libslirp's restricted mode): guests
 *             still get DHCP and are reachable through hostfwd, but nothing
 *             they send leaves it (no connections out, not even to the host)
 *   hostfwd   port forwards into the network, PROTO:[HOSTIP]:HOSTPORT-
 *             [GUESTIP]:GUESTPORT with PROTO tcp or udp; an empty HOSTIP
 *             listens on every host address (as QEMU does), an empty GUESTIP
 *             is the first DHCP address (.15). Several rules are separated
 *             by ';' because a spec key may appear only once:
 *             hostfwd=tcp:127.0.0.1:2222-:22;udp::5353-10.0.2.15:53
 * IPv4 only: the NAT ignores IPv6 frames (and NC-SI). The port accepts
 * complete frames only (caps 0). */
#ifndef VIO_NET_SLIRP_H
#define VIO_NET_SLIRP_H

#include "net/uplink.h"

extern const struct vio_uplink_ops vio_slirp_uplink_ops;

#endif
