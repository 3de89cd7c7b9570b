/* Frames, offload metadata and the port interface of vio's virtual network.
 *
 * Every NIC model (virtio-net, e1000) and every uplink (slirp NAT, VXLAN,
 * TAP) is a port on a switch (net/switch.h). A port hands the switch the
 * frames its owner sends with vio_switch_input() and is handed the frames
 * it receives through its ops->deliver(). Everything on the data path runs
 * on the switch's one thread, so ports and the switch take no locks; other
 * threads reach them only through vio_loop_call() on the switch loop.
 *
 * Direction names are the port owner's: "tx" is what the VM (or the
 * outside world, for an uplink) sent into the switch, "rx" what the switch
 * delivered to it. */
#ifndef VIO_NET_NET_H
#define VIO_NET_NET_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define VIO_ETH_ALEN       6
#define VIO_ETH_HLEN       14
#define VIO_ETH_MIN_FRAME  VIO_ETH_HLEN       /* no padding required from a guest */
#define VIO_ETH_P_IP       0x0800
#define VIO_ETH_P_ARP      0x0806
#define VIO_ETH_P_8021Q    0x8100
#define VIO_ETH_P_IPV6     0x86dd
/* Largest frame that crosses the switch: a 64 KiB GSO super-frame (IP
 * total length is 16 bits) plus its Ethernet and VLAN headers. */
#define VIO_NET_MAX_FRAME  (65535 + VIO_ETH_HLEN + 4)
/* Largest frame without GSO (MTU 1500 + Ethernet + VLAN tag). */
#define VIO_NET_MTU_FRAME  (1500 + VIO_ETH_HLEN + 4)

/* virtio_net_hdr flags and gso_type values (VIRTIO 1.2, 5.1.6). */
#define VIO_NET_HDR_F_NEEDS_CSUM 1
#define VIO_NET_HDR_F_DATA_VALID 2
#define VIO_NET_HDR_GSO_NONE     0
#define VIO_NET_HDR_GSO_TCPV4    1
#define VIO_NET_HDR_GSO_UDP      3
#define VIO_NET_HDR_GSO_TCPV6    4
#define VIO_NET_HDR_GSO_UDP_L4   5
#define VIO_NET_HDR_GSO_ECN      0x80

/* The offload part of a virtio_net_hdr, in host byte order. A frame with
 * flags == 0 and gso_type == GSO_NONE is complete: every checksum in it is
 * already right. NEEDS_CSUM: the 16-bit ones' complement sum of bytes
 * [csum_start, len) must be stored at csum_start + csum_offset (the field
 * holds the pseudo-header sum). GSO: one TCP (or UDP) super-frame to be cut
 * into segments of gso_size payload bytes each. */
struct vio_net_offload {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
};

/* A frame in flight through the switch: the Ethernet frame (no virtio
 * header, no VLAN tag: the switch carries the VLAN beside it) as a
 * read-only scatter list that is valid only for the call it is passed to. */
struct vio_pkt {
    struct vio_net_offload off;
    const struct iovec *iov;
    unsigned iovcnt;
    uint32_t len;
};

/* What a receiving port accepts beyond complete frames. The switch finishes
 * (checksums, segments) whatever a frame needs that the receiver lacks. */
#define VIO_NET_CAP_CSUM    (1u << 0) /* NEEDS_CSUM frames (partial checksum) */
#define VIO_NET_CAP_TSO4    (1u << 1) /* GSO_TCPV4 super-frames */
#define VIO_NET_CAP_TSO6    (1u << 2) /* GSO_TCPV6 super-frames */
#define VIO_NET_CAP_TSO_ECN (1u << 3) /* GSO with the ECN bit */
#define VIO_NET_CAP_UFO     (1u << 4) /* GSO_UDP (fragmentation offload) */
#define VIO_NET_CAP_USO     (1u << 5) /* GSO_UDP_L4 */

/* Per-port counters, written by the switch thread, read by anyone. */
struct vio_net_counters {
    _Atomic uint64_t tx_packets, tx_bytes; /* accepted from the port's owner */
    _Atomic uint64_t rx_packets, rx_bytes; /* delivered to the port's owner */
    _Atomic uint64_t tx_drop_spoof;        /* source MAC not the port's own */
    _Atomic uint64_t tx_drop_bad;          /* malformed frame or offload header */
    _Atomic uint64_t tx_drop_link_down;    /* sent while the link was down */
    _Atomic uint64_t rx_drop_full;         /* no receive buffers (or backlog full) */
    _Atomic uint64_t rx_drop_link_down;    /* arrived while the link was down */
    _Atomic uint64_t rx_drop_error;        /* the port could not take it (too big, ...) */
};

struct vio_net_port;
struct vio_switch;

struct vio_net_port_ops {
    const char *kind; /* "virtio", "e1000", "slirp", "vxlan", "tap" */
    /* Switch thread: take @pkt, already fitted to port->caps. Copy what you
     * need; the data is gone when this returns. Returns 0, or -ENOBUFS when
     * the receiver has no room (counted as rx_drop_full), or another -errno
     * (counted as rx_drop_error). */
    int (*deliver)(struct vio_net_port *p, const struct vio_pkt *pkt);
    /* Any thread, optional: add port-specific fields to a stats object. */
    void (*stats)(struct vio_net_port *p, json_t *obj);
    /* Switch thread, optional: the switch is done with a burst of frames;
     * publish what deliver() queued (e.g. notify the guest once for many
     * frames). Called after every vio_switch_input() outside a batch and at
     * vio_switch_batch_end(), for each port that took a frame since. */
    void (*flush)(struct vio_net_port *p);
};

struct vio_net_port {
    const struct vio_net_port_ops *ops;
    void *opaque;                /* the port owner's */
    char id[32];
    uint8_t mac[VIO_ETH_ALEN];   /* a VM port's own address */
    /* A VM port (true) may send only from mac and receives only frames to
     * mac, broadcast and multicast. An uplink (false) carries many
     * addresses: the switch learns them and floods unknown unicast to it. */
    bool fixed_mac;
    uint16_t vlan;               /* 0 (untagged segment) or 1..4094 */
    unsigned caps;               /* VIO_NET_CAP_*; switch thread only */
    atomic_bool link_up;
    struct vio_switch *sw;       /* set while attached */
    struct vio_net_counters c;
    /* Switch-private. */
    struct vio_net_port *next;
    struct vio_net_port *flush_next;
    bool flush_pending;
};

/* Fill in a port (link up, counters zero). @mac may be NULL for an uplink. */
void vio_net_port_init(struct vio_net_port *p, const struct vio_net_port_ops *ops, void *opaque,
                       const char *id, const uint8_t *mac, uint16_t vlan);

/* Parse "52:54:00:12:34:56". Returns 0 or -EINVAL. */
int vio_net_parse_mac(const char *s, uint8_t mac[VIO_ETH_ALEN]);
/* Format @mac into @buf (at least 18 bytes). */
void vio_net_format_mac(const uint8_t mac[VIO_ETH_ALEN], char *buf);

/* Counters and identity of a port as a JSON object (any thread). */
json_t *vio_net_port_stats(struct vio_net_port *p);

/* Copy [off, off + len) of a frame's scatter list into @buf; returns bytes
 * copied (fewer if the frame is shorter). */
size_t vio_pkt_read(const struct vio_pkt *pkt, size_t off, void *buf, size_t len);

#endif
