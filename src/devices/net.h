/* virtio-net: the paravirtual NIC, written once against struct vio_dev_ops
 * and hosted by vhost-user (vio serve) or virtio-pci (vio run). The device
 * is a port on a switch (net/switch.h); all of its queues run on the
 * switch's thread, so a frame goes from the sender's guest memory to the
 * receiver's in one copy with no locks.
 *
 * Features: VERSION_1, MAC, STATUS, MRG_RXBUF, CSUM/GUEST_CSUM, HOST_ and
 * GUEST_TSO4/TSO6/ECN, MQ with CTRL_VQ (RX mode, MAC table, VLAN filter,
 * announce), MTU. Queue layout: rx0, tx0, rx1, tx1, ..., then the control
 * queue (used only when the transport hands it to us: QEMU's vhost-user
 * front-end keeps the control queue to itself). */
#ifndef VIO_DEVICES_NET_H
#define VIO_DEVICES_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "net/net.h"
#include "net/switch.h"
#include "virtio/vdev.h"

#define VIO_NET_MAX_QUEUE_PAIRS    16
#define VIO_NET_DEFAULT_QUEUE_SIZE 256

struct vio_net_dev_opts {
    const char *id;
    uint8_t mac[VIO_ETH_ALEN];
    uint16_t vlan;        /* 0 or 1..4094 */
    uint16_t queue_pairs; /* 1..VIO_NET_MAX_QUEUE_PAIRS */
    uint16_t queue_size;  /* largest ring the driver may use */
};

/* Create the device and attach its port to @sw; its queues are assigned to
 * the switch's loop. Returns 0 or -errno. The device's ops->destroy
 * detaches it. */
int vio_net_dev_create(const struct vio_net_dev_opts *o, struct vio_switch *sw,
                       struct vio_dev **out);
/* The device's switch port (for counters and link state). */
struct vio_net_port *vio_net_dev_port(struct vio_dev *d);
/* True if @d is a virtio-net device made by vio_net_dev_create. */
bool vio_is_net_dev(const struct vio_dev *d);

#endif
