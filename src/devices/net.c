/* virtio-net (see net.h): TX rings feed the switch, the switch's deliveries
 * fill RX rings (mergeable buffers or one big buffer), the control queue
 * answers the driver's RX-mode, MAC, VLAN, announce and MQ commands.
 * Everything runs on the switch thread. */
#include "devices/net.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "net/virtio_net.h"

#define NET_S_LINK_UP  1
#define NET_S_ANNOUNCE 2

/* Control queue classes and commands (5.1.6.5). */
#define CTRL_RX              0
#define CTRL_RX_PROMISC      0
#define CTRL_RX_NOBCAST      5
#define CTRL_MAC             1
#define CTRL_MAC_TABLE_SET   0
#define CTRL_MAC_ADDR_SET    1
#define CTRL_VLAN            2
#define CTRL_VLAN_ADD        0
#define CTRL_VLAN_DEL        1
#define CTRL_ANNOUNCE        3
#define CTRL_ANNOUNCE_ACK    0
#define CTRL_MQ              4
#define CTRL_MQ_VQ_PAIRS_SET 0
#define CTRL_OK              0
#define CTRL_ERR             1

#define NET_MTU     1500
#define NET_MAX_IOV 64
#define CTRL_MAX    512 /* largest control command we read */


struct vio_net {
    struct vio_dev dev;
    struct vio_net_port port;
    struct vio_switch *sw;
    uint16_t max_pairs;
    /* Switch thread state. */
    uint16_t pairs;       /* queue pairs the driver uses (MQ) */
    uint32_t hdr_len;     /* 10 or 12 */
    bool mrg_rxbuf;
    bool announce;
    uint8_t rx_mode;      /* CTRL_RX flags the driver set, bit per command */
    uint32_t rx_dirty;    /* RX queues with completions not yet published */
    vio_counter_t tx_bad_desc, rx_bad_desc, rx_too_big, ctrl_cmds, ctrl_errors;
    vio_counter_t pair_tx[VIO_NET_MAX_QUEUE_PAIRS], pair_rx[VIO_NET_MAX_QUEUE_PAIRS];
};

static struct vio_net *to_net(struct vio_dev *d)
{
    return vio_container_of(d, struct vio_net, dev);
}

static bool has(const struct vio_net *n, unsigned bit)
{
    return n->dev.features & VIO_BIT(bit);
}

static unsigned ctrl_queue(const struct vio_net *n)
{
    return 2u * n->max_pairs;
}

static uint64_t net_features(struct vio_dev *d)
{
    struct vio_net *n = to_net(d);
    uint64_t f = VIO_BIT(NET_F_CSUM) | VIO_BIT(NET_F_GUEST_CSUM) | VIO_BIT(NET_F_MTU) |
                 VIO_BIT(NET_F_MAC) | VIO_BIT(NET_F_GUEST_TSO4) | VIO_BIT(NET_F_GUEST_TSO6) |
                 VIO_BIT(NET_F_GUEST_ECN) | VIO_BIT(NET_F_HOST_TSO4) | VIO_BIT(NET_F_HOST_TSO6) |
                 VIO_BIT(NET_F_HOST_ECN) | VIO_BIT(NET_F_MRG_RXBUF) | VIO_BIT(NET_F_STATUS) |
                 VIO_BIT(NET_F_CTRL_VQ) | VIO_BIT(NET_F_CTRL_RX) | VIO_BIT(NET_F_CTRL_VLAN) |
                 VIO_BIT(NET_F_GUEST_ANNOUNCE) | VIO_BIT(NET_F_CTRL_MAC_ADDR);

    if (n->max_pairs > 1)
        f |= VIO_BIT(NET_F_MQ);
    return f;
}

/* struct virtio_net_config up to mtu: mac, status, max_virtqueue_pairs, mtu. */
#define NET_CONFIG_SIZE 12

static uint32_t net_config_size(struct vio_dev *d)
{
    (void)d;
    return NET_CONFIG_SIZE;
}

static void net_get_config(struct vio_dev *d, uint32_t off, void *buf, uint32_t len)
{
    struct vio_net *n = to_net(d);
    uint8_t cfg[NET_CONFIG_SIZE];
    uint16_t status = 0, v;

    if (atomic_load(&n->port.link_up))
        status |= NET_S_LINK_UP;
    if (n->announce)
        status |= NET_S_ANNOUNCE;
    memcpy(cfg, n->port.mac, VIO_ETH_ALEN);
    v = vio_to_le16(status);
    memcpy(cfg + 6, &v, 2);
    v = vio_to_le16(n->max_pairs);
    memcpy(cfg + 8, &v, 2);
    v = vio_to_le16(NET_MTU);
    memcpy(cfg + 10, &v, 2);
    memcpy(buf, cfg + off, len);
}

/* ---- TX: guest to switch ------------------------------------------- */

static void tx_one(struct vio_net *n, struct vio_vq *vq, struct vio_vq_elem *e)
{
    struct iovec iov[NET_MAX_IOV];
    struct vio_virtio_net_hdr h = {0};
    struct vio_pkt pkt = {.iov = iov};
    size_t skip = n->hdr_len;

    if (e->out_len < n->hdr_len || e->out_len - n->hdr_len > VIO_NET_MAX_FRAME) {
        vio_counter_add(&n->tx_bad_desc, 1);
        vio_counter_add(&n->port.c.tx_drop_bad, 1);
        goto done;
    }
    vio_vq_elem_read(e, 0, &h, 10);
    pkt.off.flags = h.flags;
    pkt.off.gso_type = h.gso_type;
    pkt.off.hdr_len = vio_le16(h.hdr_len);
    pkt.off.gso_size = vio_le16(h.gso_size);
    pkt.off.csum_start = vio_le16(h.csum_start);
    pkt.off.csum_offset = vio_le16(h.csum_offset);
    /* Offloads the driver did not negotiate are not its to ask for. */
    if (((pkt.off.flags & VIO_NET_HDR_F_NEEDS_CSUM) && !has(n, NET_F_CSUM)) ||
        ((pkt.off.gso_type & ~VIO_NET_HDR_GSO_ECN) == VIO_NET_HDR_GSO_TCPV4 &&
         !has(n, NET_F_HOST_TSO4)) ||
        ((pkt.off.gso_type & ~VIO_NET_HDR_GSO_ECN) == VIO_NET_HDR_GSO_TCPV6 &&
         !has(n, NET_F_HOST_TSO6)) ||
        ((pkt.off.gso_type & VIO_NET_HDR_GSO_ECN) && !has(n, NET_F_HOST_ECN))) {
        vio_counter_add(&n->port.c.tx_drop_bad, 1);
        goto done;
    }
    pkt.off.flags &= VIO_NET_HDR_F_NEEDS_CSUM; /* DATA_VALID means nothing on TX */
    for (unsigned i = 0; i < e->out_num; i++) {
        size_t l = e->iov[i].iov_len;

        if (skip >= l) {
            skip -= l;
            continue;
        }
        iov[pkt.iovcnt].iov_base = (uint8_t *)e->iov[i].iov_base + skip;
        iov[pkt.iovcnt].iov_len = l - skip;
        pkt.iovcnt++;
        skip = 0;
    }
    pkt.len = (uint32_t)(e->out_len - n->hdr_len);
    vio_counter_add(&n->pair_tx[vq->index / 2], 1);
    vio_switch_input(&n->port, &pkt);
done:
    vio_vq_push(vq, e, 0);
}

static void tx_kick(struct vio_net *n, struct vio_vq *vq)
{
    struct vio_dev_queue *q = vio_dev_queue_of(vq);
    struct vio_vq_elem *e;

    vio_switch_batch_begin(n->sw);
    do {
        vio_vq_disable_notify(vq);
        while (q->enabled && !q->stopping && (e = vio_vq_pop(vq)))
            tx_one(n, vq, e);
        if (!q->enabled || q->stopping)
            break;
    } while (vio_vq_enable_notify(vq));
    vio_dev_complete(&n->dev, vq);
    vio_switch_batch_end(n->sw);
}

/* ---- RX: switch to guest ------------------------------------------- */

static bool queue_ready(struct vio_net *n, unsigned qi)
{
    struct vio_dev_queue *q = &n->dev.queues[qi];

    return q->running && q->enabled && !q->stopping && !q->vq.broken && vio_vq_started(&q->vq);
}

/* The same flow always lands on the same queue: hash IPv4/IPv6 addresses
 * and, for TCP and UDP, the ports. */
static unsigned rx_queue_pick(struct vio_net *n, const struct vio_pkt *pkt)
{
    uint8_t h[VIO_ETH_HLEN + 40 + 4];
    size_t got;
    uint32_t x = 0;
    unsigned pairs, pick;

    /* With our control queue the driver says how many pairs it uses; a
     * vhost-user front-end keeps the control queue and enables only the
     * rings of the pairs in use. */
    pairs = n->dev.queues[ctrl_queue(n)].running ? n->pairs : n->max_pairs;
    if (pairs <= 1)
        return 0;
    got = vio_pkt_read(pkt, 0, h, sizeof(h));
    if (got >= VIO_ETH_HLEN + 20 && h[12] == 0x08 && h[13] == 0x00) {
        unsigned ihl = (h[VIO_ETH_HLEN] & 0xf) * 4u;
        uint8_t proto = h[VIO_ETH_HLEN + 9];

        for (unsigned i = 12; i < 20; i++)
            x = x * 31 + h[VIO_ETH_HLEN + i];
        if ((proto == 6 || proto == 17) && got >= VIO_ETH_HLEN + ihl + 4)
            for (unsigned i = 0; i < 4; i++)
                x = x * 31 + h[VIO_ETH_HLEN + ihl + i];
    } else if (got >= VIO_ETH_HLEN + 40 && h[12] == 0x86 && h[13] == 0xdd) {
        for (unsigned i = 8; i < 40; i++)
            x = x * 31 + h[VIO_ETH_HLEN + i];
    }
    x ^= x >> 16;
    pick = x % pairs;
    for (unsigned i = 0; i < pairs; i++, pick = (pick + 1) % pairs) {
        if (queue_ready(n, 2 * pick))
            return pick;
    }
    return 0;
}

/* Copy @len bytes of the frame from @poff into @e's writable part at @eoff. */
static void copy_to_elem(struct vio_vq_elem *e, size_t eoff, const struct vio_pkt *pkt,
                         size_t poff, size_t len)
{
    for (unsigned i = 0; i < pkt->iovcnt && len; i++) {
        size_t l = pkt->iov[i].iov_len, n;

        if (poff >= l) {
            poff -= l;
            continue;
        }
        n = VIO_MIN(l - poff, len);
        vio_vq_elem_write(e, eoff, (const uint8_t *)pkt->iov[i].iov_base + poff, n);
        eoff += n;
        len -= n;
        poff = 0;
    }
}

static int net_deliver(struct vio_net_port *port, const struct vio_pkt *pkt)
{
    struct vio_net *n = port->opaque;
    struct vio_vq_elem *elems[NET_MAX_IOV];
    struct vio_virtio_net_hdr h = {0};
    unsigned qi, nelem = 0;
    size_t need = n->hdr_len + pkt->len, have = 0, pos = 0;
    struct vio_vq *vq;

    qi = 2 * rx_queue_pick(n, pkt);
    if (!queue_ready(n, qi))
        return -ENOBUFS;
    vq = &n->dev.queues[qi].vq;
    if (pkt->len > (pkt->off.gso_type ? VIO_NET_MAX_FRAME : VIO_NET_MTU_FRAME)) {
        vio_counter_add(&n->rx_too_big, 1);
        return -EMSGSIZE;
    }
    while (have < need) {
        struct vio_vq_elem *e;

        if (nelem == VIO_ARRAY_SIZE(elems) || (nelem && !n->mrg_rxbuf) || !(e = vio_vq_pop(vq)))
            break;
        elems[nelem++] = e;
        if (e->out_num || e->in_len < (nelem == 1 ? n->hdr_len : 1)) {
            /* A receive buffer the device cannot write into. */
            vio_counter_add(&n->rx_bad_desc, 1);
            vio_vq_fault(vq, "receive buffer %u: %u readable, %llu writable bytes", e->id,
                         e->out_num, (unsigned long long)e->in_len);
            break;
        }
        have += e->in_len;
    }
    if (have < need) {
        while (nelem)
            vio_vq_unpop(vq, elems[--nelem]);
        if (vq->broken)
            return -EIO;
        /* Ask for a kick so the next refill is noticed promptly. */
        return -ENOBUFS;
    }

    h.flags = pkt->off.flags;
    h.gso_type = pkt->off.gso_type;
    h.hdr_len = vio_to_le16(pkt->off.hdr_len);
    h.gso_size = vio_to_le16(pkt->off.gso_size);
    h.csum_start = vio_to_le16(pkt->off.csum_start);
    h.csum_offset = vio_to_le16(pkt->off.csum_offset);
    h.num_buffers = vio_to_le16((uint16_t)nelem);
    for (unsigned i = 0; i < nelem; i++) {
        size_t room = elems[i]->in_len, off = 0, n_copy;

        if (i == 0) {
            vio_vq_elem_write(elems[0], 0, &h, n->hdr_len);
            off = n->hdr_len;
        }
        n_copy = VIO_MIN(room - off, pkt->len - pos);
        copy_to_elem(elems[i], off, pkt, pos, n_copy);
        pos += n_copy;
        vio_vq_push(vq, elems[i], (uint32_t)(off + n_copy));
    }
    n->rx_dirty |= 1u << (qi / 2);
    vio_counter_add(&n->pair_rx[qi / 2], 1);
    return 0;
}

static void net_flush(struct vio_net_port *port)
{
    struct vio_net *n = port->opaque;
    uint32_t dirty = n->rx_dirty;

    n->rx_dirty = 0;
    for (unsigned i = 0; dirty; i++, dirty >>= 1) {
        if ((dirty & 1) && vio_vq_started(&n->dev.queues[2 * i].vq))
            vio_dev_complete(&n->dev, &n->dev.queues[2 * i].vq);
    }
}

/* ---- control queue ------------------------------------------------- */

static uint8_t ctrl_cmd(struct vio_net *n, uint8_t cls, uint8_t cmd, const uint8_t *data,
                        size_t len)
{
    switch (cls) {
    case CTRL_RX:
        if (!has(n, NET_F_CTRL_RX) || cmd > CTRL_RX_NOBCAST || len < 1)
            return CTRL_ERR;
        /* Recorded; the switch's isolation rules decide what arrives. */
        if (data[0])
            n->rx_mode |= (uint8_t)(1u << cmd);
        else
            n->rx_mode &= (uint8_t)~(1u << cmd);
        return CTRL_OK;
    case CTRL_MAC:
        if (cmd == CTRL_MAC_TABLE_SET)
            return CTRL_OK; /* filters: the port gets its own unicast only anyway */
        if (cmd == CTRL_MAC_ADDR_SET && has(n, NET_F_CTRL_MAC_ADDR) && len == VIO_ETH_ALEN)
            /* The operator fixed the port's address; the guest may not
             * change it (anti-spoofing), only confirm it. */
            return memcmp(data, n->port.mac, VIO_ETH_ALEN) == 0 ? CTRL_OK : CTRL_ERR;
        return CTRL_ERR;
    case CTRL_VLAN:
        if (!has(n, NET_F_CTRL_VLAN) || (cmd != CTRL_VLAN_ADD && cmd != CTRL_VLAN_DEL) ||
            len != 2)
            return CTRL_ERR;
        return CTRL_OK; /* ports are access ports: tagged frames never pass */
    case CTRL_ANNOUNCE:
        if (!has(n, NET_F_GUEST_ANNOUNCE) || cmd != CTRL_ANNOUNCE_ACK)
            return CTRL_ERR;
        n->announce = false;
        return CTRL_OK;
    case CTRL_MQ: {
        uint16_t pairs;

        if (!has(n, NET_F_MQ) || cmd != CTRL_MQ_VQ_PAIRS_SET || len != 2)
            return CTRL_ERR;
        pairs = (uint16_t)(data[0] | data[1] << 8);
        if (pairs < 1 || pairs > n->max_pairs)
            return CTRL_ERR;
        n->pairs = pairs;
        return CTRL_OK;
    }
    default:
        return CTRL_ERR;
    }
}

static void ctrl_one(void *opaque, struct vio_vq_elem *e)
{
    struct vio_net *n = opaque;
    struct vio_vq *vq = &n->dev.queues[ctrl_queue(n)].vq;
    uint8_t buf[CTRL_MAX], ack = CTRL_ERR;
    size_t len;

    vio_counter_add(&n->ctrl_cmds, 1);
    if (e->in_len < 1) {
        vio_counter_add(&n->ctrl_errors, 1);
        vio_vq_fault(vq, "control command %u has no room for its ack", e->id);
        vio_vq_push(vq, e, 0);
        return;
    }
    len = vio_vq_elem_read(e, 0, buf, sizeof(buf));
    if (len >= 2 && e->out_len <= sizeof(buf))
        ack = ctrl_cmd(n, buf[0], buf[1], buf + 2, len - 2);
    if (ack != CTRL_OK) {
        vio_counter_add(&n->ctrl_errors, 1);
        vio_debug("%s: control class %u command %u (%zu bytes) refused", n->dev.id,
                  len ? buf[0] : 0, len > 1 ? buf[1] : 0, len);
    }
    vio_vq_elem_write(e, 0, &ack, 1);
    vio_vq_push(vq, e, 1);
}

/* ---- vio_dev_ops ---------------------------------------------------- */

static int net_queue_start(struct vio_dev *d, struct vio_vq *vq)
{
    struct vio_net *n = to_net(d);
    unsigned caps = 0;

    /* Negotiated features are fixed while queues run: derive the data
     * path's view of them here (switch thread). */
    n->mrg_rxbuf = has(n, NET_F_MRG_RXBUF);
    n->hdr_len = (n->mrg_rxbuf || has(n, VIO_F_VERSION_1)) ? 12 : 10;
    if (has(n, NET_F_GUEST_CSUM)) {
        caps |= VIO_NET_CAP_CSUM;
        if (has(n, NET_F_GUEST_TSO4))
            caps |= VIO_NET_CAP_TSO4;
        if (has(n, NET_F_GUEST_TSO6))
            caps |= VIO_NET_CAP_TSO6;
        if (has(n, NET_F_GUEST_ECN))
            caps |= VIO_NET_CAP_TSO_ECN;
    }
    n->port.caps = caps;
    if (!has(n, NET_F_MQ))
        n->pairs = 1;
    (void)vq;
    return 0;
}

static void net_queue_kick(struct vio_dev *d, struct vio_vq *vq)
{
    struct vio_net *n = to_net(d);

    if (vq->index == ctrl_queue(n)) {
        vio_dev_drain(vq, ctrl_one, n);
        vio_dev_complete(d, vq);
    } else if (vq->index & 1) {
        tx_kick(n, vq);
    }
    /* An RX kick means fresh buffers; frames that found none were dropped
     * (and counted), so there is nothing to resume. */
}

static void net_queue_stop(struct vio_dev *d, struct vio_vq *vq)
{
    struct vio_net *n = to_net(d);

    if (!(vq->index & 1) && vq->index != ctrl_queue(n))
        n->rx_dirty &= ~(1u << (vq->index / 2));
}

struct reset_call {
    struct vio_call call;
    struct vio_net *n;
};

static void reset_fn(struct vio_call *c)
{
    struct vio_net *n = vio_container_of(c, struct reset_call, call)->n;

    n->pairs = 1;
    n->rx_mode = 0;
    n->announce = false;
    n->rx_dirty = 0;
    n->port.caps = 0;
    vio_call_done(c, 0);
}

static void net_reset(struct vio_dev *d)
{
    struct reset_call r = {.call.fn = reset_fn, .n = to_net(d)};

    vio_loop_call(vio_switch_loop(r.n->sw), &r.call);
}

static json_t *net_stats(struct vio_dev *d)
{
    struct vio_net *n = to_net(d);
    json_t *o = json_object();
    json_t *pairs = json_array();

    json_object_set_new(o, "port", vio_net_port_stats(&n->port));
    for (unsigned i = 0; i < n->max_pairs; i++)
        json_array_append_new(pairs, json_pack("{s:I, s:I, s:b, s:b}", "tx_frames",
                                               (json_int_t)vio_counter_get(&n->pair_tx[i]),
                                               "rx_frames",
                                               (json_int_t)vio_counter_get(&n->pair_rx[i]),
                                               "rx_enabled", n->dev.queues[2 * i].enabled,
                                               "tx_enabled", n->dev.queues[2 * i + 1].enabled));
    json_object_set_new(o, "queue_pairs", json_integer(n->max_pairs));
    json_object_set_new(o, "pairs", pairs);
    json_object_set_new(o, "tx_bad_desc", json_integer((json_int_t)vio_counter_get(&n->tx_bad_desc)));
    json_object_set_new(o, "rx_bad_desc", json_integer((json_int_t)vio_counter_get(&n->rx_bad_desc)));
    json_object_set_new(o, "rx_too_big", json_integer((json_int_t)vio_counter_get(&n->rx_too_big)));
    json_object_set_new(o, "ctrl_commands", json_integer((json_int_t)vio_counter_get(&n->ctrl_cmds)));
    json_object_set_new(o, "ctrl_errors", json_integer((json_int_t)vio_counter_get(&n->ctrl_errors)));
    return o;
}

static void net_destroy(struct vio_dev *d)
{
    struct vio_net *n = to_net(d);

    vio_switch_detach(&n->port);
    vio_dev_cleanup(d);
    free(n);
}

static const struct vio_dev_ops net_ops = {
    .type = "net",
    .device_id = VIO_ID_NET,
    .features = net_features,
    .config_size = net_config_size,
    .get_config = net_get_config,
    .queue_start = net_queue_start,
    .queue_kick = net_queue_kick,
    .queue_stop = net_queue_stop,
    .reset = net_reset,
    .stats = net_stats,
    .destroy = net_destroy,
};

static const struct vio_net_port_ops port_ops = {
    .kind = "virtio",
    .deliver = net_deliver,
    .flush = net_flush,
};

int vio_net_dev_create(const struct vio_net_dev_opts *o, struct vio_switch *sw,
                       struct vio_dev **out)
{
    struct vio_net *n;
    uint16_t qsize = o->queue_size ? o->queue_size : VIO_NET_DEFAULT_QUEUE_SIZE;
    int ret;

    if (o->queue_pairs < 1 || o->queue_pairs > VIO_NET_MAX_QUEUE_PAIRS || o->vlan > 4094 ||
        (o->mac[0] & 1))
        return -EINVAL;
    n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    ret = vio_dev_init(&n->dev, &net_ops, o->id, (uint16_t)(2 * o->queue_pairs + 1), qsize,
                       NET_MAX_IOV);
    if (ret < 0) {
        free(n);
        return ret;
    }
    n->sw = sw;
    n->max_pairs = o->queue_pairs;
    n->pairs = 1;
    n->hdr_len = 12;
    for (unsigned q = 0; q < n->dev.num_queues; q++)
        n->dev.queues[q].loop = vio_switch_loop(sw);
    vio_net_port_init(&n->port, &port_ops, n, o->id, o->mac, o->vlan);
    ret = vio_switch_attach(sw, &n->port);
    if (ret < 0) {
        vio_dev_cleanup(&n->dev);
        free(n);
        return ret;
    }
    *out = &n->dev;
    return 0;
}

struct vio_net_port *vio_net_dev_port(struct vio_dev *d)
{
    return &to_net(d)->port;
}

bool vio_is_net_dev(const struct vio_dev *d)
{
    return d->ops == &net_ops;
}
