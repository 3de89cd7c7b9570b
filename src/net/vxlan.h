/* VXLAN uplink (RFC 7348): the switch's frames travel in UDP datagrams to
 * one remote tunnel end point, such as a Linux "ip link add ... type vxlan"
 * interface or another vio.
 *
 * Spec: type=vxlan,id=ID,vni=N,local=ADDR,remote=ADDR[,vlan=N][,srccheck=on|off]
 *   vni       the 24-bit network identifier, 0..16777215, both ends alike
 *   local     the address (and port) the tunnel socket binds
 *   remote    where frames are sent
 *             ADDR is IPv4[:PORT], [IPv6][:PORT] or a bare IPv6 address;
 *             PORT defaults to 4789 (the IANA VXLAN port); local and
 *             remote must be of the same family
 *   srccheck  on (default): accept datagrams only from remote's address (any
 *             source port: Linux picks one per flow)
 * Received datagrams must carry the I flag, the configured VNI and zero in
 * every reserved bit (as Linux's driver requires); others are dropped and
 * counted in the port's stats (drop_short, drop_bad_header, drop_wrong_vni,
 * drop_wrong_source, drop_too_big; send_busy and send_error count frames
 * the socket would not take). The port accepts complete frames only. */
#ifndef VIO_NET_VXLAN_H
#define VIO_NET_VXLAN_H

#include "net/uplink.h"

#define VIO_VXLAN_PORT    4789
#define VIO_VXLAN_HLEN    8
#define VIO_VXLAN_FLAG_I  0x08 /* first byte: the VNI is valid */
#define VIO_VXLAN_VNI_MAX 0xffffffu

extern const struct vio_uplink_ops vio_vxlan_uplink_ops;

#endif
