/* vhost-user uplink (see vuser_uplink.h): this process is the virtio-net
 * driver of a port served elsewhere. Frames the switch delivers go out on
 * the port's transmit queue (copied into shared buffers, kicked once per
 * switch batch); frames the port receives come back on its receive queue,
 * whose call eventfd the switch loop watches. Everything runs on the switch
 * loop thread. What the peer writes into our memory (used lengths, headers,
 * buffer counts) is checked before use, like any guest input. */
#include "net/vuser_uplink.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "core/loop.h"
#include "net/offload.h"
#include "net/virtio_net.h"
#include "vuser/vuser.h"


#define HDR_LEN   ((uint32_t)sizeof(struct vio_virtio_net_hdr))
#define RXQ       0
#define TXQ       1
#define RX_BUDGET 256 /* used buffers per wake-up before yielding the loop */


struct vu_up {
    struct vio_uplink up;
    char *sock;
    uint16_t qsize;
    struct vio_vuser *d;
    struct vio_vuser_vq *rxq, *txq;
    bool mrg;
    uint32_t rx_len, tx_len;
    struct vio_vuser_buf *rxb, *txb;
    uint16_t *tx_free;
    unsigned tx_nfree;
    bool tx_pending;
    uint8_t *frame; /* a merged receive frame */
    struct vio_handler rx_h, sock_h;
    bool watching;
    bool gone;
    struct vio_ratelimit rl;
    vio_counter_t tx_ring_full, rx_bad;
};

static void reclaim_tx(struct vu_up *s)
{
    uint32_t len;
    void *cookie;

    while (vio_vuser_get(s->txq, &len, &cookie) > 0)
        s->tx_free[s->tx_nfree++] = (uint16_t)((struct vio_vuser_buf *)cookie - s->txb);
}

static int vu_deliver(struct vio_net_port *p, const struct vio_pkt *pkt)
{
    struct vu_up *s = vio_container_of(p->opaque, struct vu_up, up);
    struct vio_virtio_net_hdr h = {
        .flags = pkt->off.flags,
        .gso_type = pkt->off.gso_type,
        .hdr_len = vio_to_le16(pkt->off.hdr_len),
        .gso_size = vio_to_le16(pkt->off.gso_size),
        .csum_start = vio_to_le16(pkt->off.csum_start),
        .csum_offset = vio_to_le16(pkt->off.csum_offset),
    };

    if (s->gone)
        return -ENETDOWN;
    if (pkt->len > s->tx_len - HDR_LEN)
        return -EMSGSIZE;
    reclaim_tx(s);
    if (!s->tx_nfree) {
        vio_counter_add(&s->tx_ring_full, 1);
        return -ENOBUFS;
    }
    unsigned i = s->tx_free[--s->tx_nfree];
    uint8_t *buf = vio_vuser_ptr(s->d, s->txb[i].gpa, s->tx_len);
    memcpy(buf, &h, HDR_LEN);
    vio_pkt_read(pkt, 0, buf + HDR_LEN, pkt->len);
    struct vio_vuser_buf b = {s->txb[i].gpa, HDR_LEN + pkt->len};
    if (vio_vuser_add(s->txq, &b, 1, 0, &s->txb[i]) < 0) {
        s->tx_free[s->tx_nfree++] = (uint16_t)i; /* cannot happen: one slot per buffer */
        return -ENOBUFS;
    }
    s->tx_pending = true;
    return 0;
}

static void vu_flush(struct vio_net_port *p)
{
    struct vu_up *s = vio_container_of(p->opaque, struct vu_up, up);

    if (s->tx_pending)
        vio_vuser_kick(s->txq);
    s->tx_pending = false;
}

static void rx_repost(struct vu_up *s, struct vio_vuser_buf *b)
{
    vio_vuser_add(s->rxq, b, 0, 1, b);
}

static void rx_bad(struct vu_up *s, const char *why, unsigned long v)
{
    vio_counter_add(&s->rx_bad, 1);
    if (vio_ratelimit_ok(&s->rl))
        vio_warn("vhost-user uplink %s (%s): dropped a received frame: %s (%lu)", s->up.port.id,
                 s->sock, why, v);
}

/* One received packet starting with used buffer @b of @len bytes. */
static void rx_packet(struct vu_up *s, struct vio_vuser_buf *b, uint32_t len)
{
    struct vio_virtio_net_hdr h;
    uint8_t *p = vio_vuser_ptr(s->d, b->gpa, s->rx_len);
    unsigned nb = 1;
    uint32_t total;
    struct iovec iov;

    if (len < HDR_LEN + VIO_ETH_HLEN || len > s->rx_len) {
        rx_repost(s, b);
        rx_bad(s, "bad used length", len);
        return;
    }
    memcpy(&h, p, HDR_LEN);
    if (s->mrg)
        nb = vio_le16(h.num_buffers);
    if (nb == 0 || nb > s->qsize) {
        rx_repost(s, b);
        rx_bad(s, "bad num_buffers", nb);
        return;
    }
    total = len - HDR_LEN;
    iov = (struct iovec){p + HDR_LEN, total};
    if (nb > 1) {
        memcpy(s->frame, p + HDR_LEN, total);
        rx_repost(s, b);
        b = NULL;
        for (unsigned k = 1; k < nb; k++) {
            uint32_t l;
            void *cookie;
            if (vio_vuser_get(s->rxq, &l, &cookie) <= 0) {
                rx_bad(s, "packet ends before its num_buffers", nb);
                return;
            }
            struct vio_vuser_buf *nbuf = cookie;
            uint8_t *q = vio_vuser_ptr(s->d, nbuf->gpa, s->rx_len);
            bool ok = l <= s->rx_len && total + l <= VIO_NET_MAX_FRAME;
            if (ok)
                memcpy(s->frame + total, q, l);
            rx_repost(s, nbuf);
            if (!ok) {
                rx_bad(s, "frame too long", (unsigned long)total + l);
                /* The rest of this packet's buffers still come back. */
                for (k++; k < nb && vio_vuser_get(s->rxq, &l, &cookie) > 0; k++)
                    rx_repost(s, cookie);
                return;
            }
            total += l;
        }
        iov = (struct iovec){s->frame, total};
    }
    struct vio_pkt pkt = {
        .off =
            {
                .flags = h.flags & (uint8_t)~VIO_NET_HDR_F_DATA_VALID,
                .gso_type = h.gso_type,
                .hdr_len = vio_le16(h.hdr_len),
                .gso_size = vio_le16(h.gso_size),
                .csum_start = vio_le16(h.csum_start),
                .csum_offset = vio_le16(h.csum_offset),
            },
        .iov = &iov,
        .iovcnt = 1,
        .len = total,
    };
    vio_switch_input(&s->up.port, &pkt);
    if (b)
        rx_repost(s, b);
}

static void vu_rx(struct vio_handler *hd, uint32_t events)
{
    struct vu_up *s = vio_container_of(hd, struct vu_up, rx_h);
    unsigned n = 0;
    uint32_t len;
    void *cookie;
    int r;

    (void)events;
    vio_switch_batch_begin(s->up.sw);
    for (;;) {
        while (n < RX_BUDGET && (r = vio_vuser_get(s->rxq, &len, &cookie)) != 0) {
            n++;
            if (r > 0)
                rx_packet(s, cookie, len);
            else
                rx_bad(s, "bad used element", 0);
        }
        vio_vuser_kick(s->rxq);
        if (n >= RX_BUDGET) {
            /* Come back after the loop's other work. */
            uint64_t one = 1;
            if (write(s->rxq->call_fd, &one, sizeof(one)) < 0)
                vio_err("vhost-user uplink %s: eventfd write failed", s->up.port.id);
            break;
        }
        /* Interrupts on, then look once more: nothing slips between. */
        if (vio_vuser_wait(s->rxq, 0) <= 0)
            break;
    }
    vio_switch_batch_end(s->up.sw);
}

static void vu_unwatch(struct vu_up *s)
{
    if (!s->watching)
        return;
    vio_loop_del(s->up.loop, &s->rx_h);
    vio_loop_del(s->up.loop, &s->sock_h);
    s->watching = false;
}

static void vu_sock_event(struct vio_handler *hd, uint32_t events)
{
    struct vu_up *s = vio_container_of(hd, struct vu_up, sock_h);

    (void)events;
    /* Outside a request the back-end sends nothing: it closed or broke. */
    vio_err("vhost-user uplink %s: %s closed the connection; the uplink is down", s->up.port.id,
            s->sock);
    s->gone = true;
    vu_unwatch(s);
}

static void vu_stats(struct vio_net_port *p, json_t *o)
{
    struct vu_up *s = vio_container_of(p->opaque, struct vu_up, up);

    json_object_set_new(o, "socket", json_string(s->sock));
    json_object_set_new(o, "features", json_integer((json_int_t)vio_vuser_features(s->d)));
    json_object_set_new(o, "peer_gone", json_boolean(s->gone));
    json_object_set_new(o, "tx_ring_full",
                        json_integer((json_int_t)vio_counter_get(&s->tx_ring_full)));
    json_object_set_new(o, "rx_bad", json_integer((json_int_t)vio_counter_get(&s->rx_bad)));
}

static const struct vio_net_port_ops vu_port_ops = {
    .kind = "vhost-user",
    .deliver = vu_deliver,
    .stats = vu_stats,
    .flush = vu_flush,
};

static unsigned caps_of(uint64_t f)
{
    unsigned c = 0;

    if (f & VIO_BIT(NET_F_CSUM)) {
        c |= VIO_NET_CAP_CSUM;
        if (f & VIO_BIT(NET_F_HOST_TSO4))
            c |= VIO_NET_CAP_TSO4;
        if (f & VIO_BIT(NET_F_HOST_TSO6))
            c |= VIO_NET_CAP_TSO6;
        if (f & VIO_BIT(NET_F_HOST_ECN))
            c |= VIO_NET_CAP_TSO_ECN;
    }
    return c;
}

static void vu_free_bufs(struct vu_up *s)
{
    free(s->rxb);
    free(s->txb);
    free(s->tx_free);
    free(s->frame);
    free(s->sock);
}

static int vu_create(const struct vio_uplink_args *a, struct vio_opts *o, struct vio_uplink **out)
{
    const char *sock = vio_opts_get(o, "socket");
    const char *qs = vio_opts_get(o, "queue-size");
    unsigned long qsize = 256;
    struct vu_up *s;
    int ret = -EINVAL;

    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->rl = (struct vio_ratelimit)VIO_RATELIMIT_INIT;
    if (!sock || !*sock) {
        vio_err("uplink '%s': vhost-user needs socket=PATH (a vhost-user-net socket)", a->spec);
        goto err;
    }
    if (qs && (vio_uplink_parse_uint(qs, 1024, &qsize) < 0 || qsize < 64 ||
               (qsize & (qsize - 1)))) {
        vio_err("uplink '%s': queue-size=%s: expected a power of two, 64..1024", a->spec, qs);
        goto err;
    }
    ret = vio_uplink_check_unused(a, o);
    if (ret < 0)
        goto err;
    s->qsize = (uint16_t)qsize;
    s->sock = strdup(sock);
    s->rxb = calloc(qsize, sizeof(*s->rxb));
    s->txb = calloc(qsize, sizeof(*s->txb));
    s->tx_free = calloc(qsize, sizeof(*s->tx_free));
    s->frame = malloc(VIO_NET_MAX_FRAME);
    if (!s->sock || !s->rxb || !s->txb || !s->tx_free || !s->frame) {
        ret = -ENOMEM;
        goto err;
    }
    s->tx_len = (HDR_LEN + VIO_NET_MAX_FRAME + 63) & ~63u;
    struct vio_vuser_opts vo = {
        .sock = sock,
        .mem_bytes = qsize * (s->tx_len + (HDR_LEN + VIO_NET_MAX_FRAME + 63ull)) + (2 << 20),
        .want_features = VIO_BIT(NET_F_CSUM) | VIO_BIT(NET_F_GUEST_CSUM) |
                         VIO_BIT(NET_F_GUEST_TSO4) | VIO_BIT(NET_F_GUEST_TSO6) |
                         VIO_BIT(NET_F_GUEST_ECN) | VIO_BIT(NET_F_HOST_TSO4) |
                         VIO_BIT(NET_F_HOST_TSO6) | VIO_BIT(NET_F_HOST_ECN) |
                         VIO_BIT(NET_F_MRG_RXBUF),
        .nqueues = 2,
        .qsize = s->qsize,
        .event_idx = true,
    };
    ret = vio_vuser_open(&vo, &s->d);
    if (ret < 0) {
        vio_err("uplink '%s': cannot drive %s: %s", a->spec, sock, strerror(-ret));
        goto err;
    }
    uint64_t f = vio_vuser_features(s->d);
    s->mrg = f & VIO_BIT(NET_F_MRG_RXBUF);
    s->rx_len = s->mrg ? 4096 : HDR_LEN + VIO_NET_MAX_FRAME;
    s->rxq = vio_vuser_vq(s->d, RXQ);
    s->txq = vio_vuser_vq(s->d, TXQ);
    for (unsigned i = 0; i < qsize; i++) {
        if (!vio_vuser_alloc(s->d, s->tx_len, 64, &s->txb[i].gpa) ||
            !vio_vuser_alloc(s->d, s->rx_len, 64, &s->rxb[i].gpa)) {
            vio_err("uplink '%s': out of shared memory", a->spec);
            ret = -ENOMEM;
            goto err_dev;
        }
        s->txb[i].len = s->tx_len;
        s->rxb[i].len = s->rx_len;
        s->tx_free[s->tx_nfree++] = (uint16_t)i;
    }
    ret = vio_uplink_init(&s->up, &vio_vuser_uplink_ops, &vu_port_ops, a, caps_of(f));
    if (ret < 0)
        goto err_dev;
    *out = &s->up;
    return 0;

err_dev:
    vio_vuser_close(s->d);
err:
    vu_free_bufs(s);
    free(s);
    return ret;
}

static int vu_start(struct vio_uplink *u)
{
    struct vu_up *s = vio_container_of(u, struct vu_up, up);
    int ret;

    for (unsigned i = 0; i < s->qsize; i++)
        rx_repost(s, &s->rxb[i]);
    vio_vuser_kick(s->rxq);
    /* Transmit completions are collected when sending: no interrupts. */
    vio_vuser_set_interrupts(s->txq, false);
    ret = vio_loop_add(u->loop, &s->rx_h, s->rxq->call_fd, EPOLLIN, vu_rx);
    if (ret == 0) {
        ret = vio_loop_add(u->loop, &s->sock_h, vio_vuser_fd(s->d), EPOLLIN, vu_sock_event);
        if (ret < 0)
            vio_loop_del(u->loop, &s->rx_h);
    }
    if (ret < 0) {
        vio_err("vhost-user uplink %s: cannot watch its fds: %s", u->port.id, strerror(-ret));
        return ret;
    }
    s->watching = true;
    /* Anything that arrived before we watched. */
    vu_rx(&s->rx_h, EPOLLIN);
    return 0;
}

static void vu_stop(struct vio_uplink *u)
{
    vu_unwatch(vio_container_of(u, struct vu_up, up));
}

static void vu_free(struct vio_uplink *u)
{
    struct vu_up *s = vio_container_of(u, struct vu_up, up);

    vio_vuser_close(s->d);
    vu_free_bufs(s);
    vio_uplink_release(u);
    free(s);
}

const struct vio_uplink_ops vio_vuser_uplink_ops = {
    .type = "vhost-user",
    .create = vu_create,
    .start = vu_start,
    .stop = vu_stop,
    .free = vu_free,
};
