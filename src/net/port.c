/* Port basics shared by every NIC model and uplink: initialisation, MAC
 * address text, counters as JSON, reading a frame's scatter list. */
#include "net/net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"

void vio_net_port_init(struct vio_net_port *p, const struct vio_net_port_ops *ops, void *opaque,
                       const char *id, const uint8_t *mac, uint16_t vlan)
{
    memset(p, 0, sizeof(*p));
    p->ops = ops;
    p->opaque = opaque;
    snprintf(p->id, sizeof(p->id), "%s", id);
    if (mac) {
        memcpy(p->mac, mac, VIO_ETH_ALEN);
        p->fixed_mac = true;
    }
    p->vlan = vlan;
    atomic_init(&p->link_up, true);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int vio_net_parse_mac(const char *s, uint8_t mac[VIO_ETH_ALEN])
{
    for (int i = 0; i < VIO_ETH_ALEN; i++) {
        int hi = hexval(s[0]), lo = hi < 0 ? -1 : hexval(s[1]);

        if (hi < 0 || lo < 0)
            return -EINVAL;
        mac[i] = (uint8_t)(hi << 4 | lo);
        s += 2;
        if (i < VIO_ETH_ALEN - 1 && *s++ != ':')
            return -EINVAL;
    }
    return *s ? -EINVAL : 0;
}

void vio_net_format_mac(const uint8_t mac[VIO_ETH_ALEN], char *buf)
{
    snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
             mac[5]);
}

static uint64_t rd(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

json_t *vio_net_port_stats(struct vio_net_port *p)
{
    struct vio_net_counters *c = &p->c;
    json_t *o = json_object();
    char mac[18];

    json_object_set_new(o, "id", json_string(p->id));
    json_object_set_new(o, "kind", json_string(p->ops->kind));
    if (p->fixed_mac) {
        vio_net_format_mac(p->mac, mac);
        json_object_set_new(o, "mac", json_string(mac));
    }
    json_object_set_new(o, "vlan", json_integer(p->vlan));
    json_object_set_new(o, "link", json_string(atomic_load(&p->link_up) ? "up" : "down"));
    json_object_set_new(o, "tx_packets", json_integer((json_int_t)rd(&c->tx_packets)));
    json_object_set_new(o, "tx_bytes", json_integer((json_int_t)rd(&c->tx_bytes)));
    json_object_set_new(o, "rx_packets", json_integer((json_int_t)rd(&c->rx_packets)));
    json_object_set_new(o, "rx_bytes", json_integer((json_int_t)rd(&c->rx_bytes)));
    json_object_set_new(o, "tx_drop_spoof", json_integer((json_int_t)rd(&c->tx_drop_spoof)));
    json_object_set_new(o, "tx_drop_bad", json_integer((json_int_t)rd(&c->tx_drop_bad)));
    json_object_set_new(o, "tx_drop_link_down",
                        json_integer((json_int_t)rd(&c->tx_drop_link_down)));
    json_object_set_new(o, "rx_drop_full", json_integer((json_int_t)rd(&c->rx_drop_full)));
    json_object_set_new(o, "rx_drop_link_down",
                        json_integer((json_int_t)rd(&c->rx_drop_link_down)));
    json_object_set_new(o, "rx_drop_error", json_integer((json_int_t)rd(&c->rx_drop_error)));
    if (p->ops->stats)
        p->ops->stats(p, o);
    return o;
}

size_t vio_pkt_read(const struct vio_pkt *pkt, size_t off, void *buf, size_t len)
{
    uint8_t *out = buf;
    size_t done = 0;

    for (unsigned i = 0; i < pkt->iovcnt && done < len; i++) {
        size_t n = pkt->iov[i].iov_len;

        if (off >= n) {
            off -= n;
            continue;
        }
        n = VIO_MIN(n - off, len - done);
        memcpy(out + done, (const uint8_t *)pkt->iov[i].iov_base + off, n);
        done += n;
        off = 0;
    }
    return done;
}
