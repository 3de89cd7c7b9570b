/* virtio-net wire definitions shared by the device (devices/net.c) and the
 * driver side (the vhost-user uplink, vio bench): feature bits and the
 * per-frame header (VIRTIO 1.2, 5.1.3 and 5.1.6). Little-endian fields. */
#ifndef VIO_NET_VIRTIO_NET_H
#define VIO_NET_VIRTIO_NET_H

#include <stdint.h>

#define NET_F_CSUM           0
#define NET_F_GUEST_CSUM     1
#define NET_F_MTU            3
#define NET_F_MAC            5
#define NET_F_GUEST_TSO4     7
#define NET_F_GUEST_TSO6     8
#define NET_F_GUEST_ECN      9
#define NET_F_HOST_TSO4      11
#define NET_F_HOST_TSO6      12
#define NET_F_HOST_ECN       13
#define NET_F_MRG_RXBUF      15
#define NET_F_STATUS         16
#define NET_F_CTRL_VQ        17
#define NET_F_CTRL_RX        18
#define NET_F_CTRL_VLAN      19
#define NET_F_GUEST_ANNOUNCE 21
#define NET_F_MQ             22
#define NET_F_CTRL_MAC_ADDR  23

/* struct virtio_net_hdr with num_buffers: always this size with VERSION_1. */
struct vio_virtio_net_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
    uint16_t num_buffers; /* only with MRG_RXBUF or VERSION_1 */
} __attribute__((packed));
_Static_assert(sizeof(struct vio_virtio_net_hdr) == 12, "virtio_net_hdr_v1 is 12 bytes");

#endif
