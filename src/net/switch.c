/* The learning L2 switch: anti-spoofing, VLAN isolation, MAC learning for
 * uplinks, flooding, and per-receiver offload finishing. See net/switch.h
 * for the rules and the threading. */
#include "net/switch.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "net/offload.h"

/* MAC table: open addressing, linear probing, keyed by (MAC, VLAN). VM
 * ports' own addresses are static entries; uplinks' are learned. */
#define TABLE_SIZE 4096 /* a power of two */
#define TABLE_PROBE 16  /* a full neighbourhood means: do not learn */
/* Frames a port sends while the switch is delivering (an uplink like slirp
 * may answer from inside its deliver) wait here until the outer frame is
 * done, so delivery never nests. */
#define DEFER_MAX 64

struct deferred {
    struct vio_net_port *src;
    struct vio_net_offload off;
    uint32_t len;
    uint8_t *data;
};

struct mac_entry {
    uint8_t mac[VIO_ETH_ALEN];
    uint16_t vlan;
    bool used;
    bool fixed; /* a VM port's own address */
    struct vio_net_port *port;
};

struct vio_switch {
    struct vio_loop *loop;
    char name[32];
    pthread_mutex_t lock;      /* port list, for other threads; the switch
                                * thread changes it only while holding it */
    struct vio_net_port *ports;
    struct mac_entry *table;   /* [TABLE_SIZE] */
    struct vio_net_scratch *scratch;
    uint64_t learn_full;       /* addresses not learned: table neighbourhood full */
    bool busy;                 /* inside vio_switch_input */
    unsigned batch;            /* vio_switch_batch_begin depth */
    struct vio_net_port *flush_list; /* ports that took frames since the last flush */
    unsigned ndeferred;
    struct deferred deferred[DEFER_MAX];
};

/* Counters have one writer, the switch thread: a relaxed load and store,
 * not a locked add. (A locked add waits for the store buffer to drain, and
 * right after a delivery that buffer holds the frame just copied into the
 * receiver's memory: bench/net's profile had a third of the switch's time
 * on it.) Readers on other threads see whole values. */
static void count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static bool is_group(const uint8_t *mac)
{
    return mac[0] & 1;
}

static unsigned hash(const uint8_t *mac, uint16_t vlan)
{
    uint32_t h = 2166136261u;

    for (int i = 0; i < VIO_ETH_ALEN; i++)
        h = (h ^ mac[i]) * 16777619u;
    h = (h ^ vlan) * 16777619u;
    return h & (TABLE_SIZE - 1);
}

static struct mac_entry *lookup(struct vio_switch *sw, const uint8_t *mac, uint16_t vlan)
{
    unsigned h = hash(mac, vlan);

    for (unsigned i = 0; i < TABLE_PROBE; i++) {
        struct mac_entry *e = &sw->table[(h + i) & (TABLE_SIZE - 1)];

        if (!e->used)
            return NULL;
        if (e->vlan == vlan && memcmp(e->mac, mac, VIO_ETH_ALEN) == 0)
            return e;
    }
    return NULL;
}

/* Insert or update; returns the entry, or NULL if the neighbourhood is full. */
static struct mac_entry *insert(struct vio_switch *sw, const uint8_t *mac, uint16_t vlan)
{
    unsigned h = hash(mac, vlan);

    for (unsigned i = 0; i < TABLE_PROBE; i++) {
        struct mac_entry *e = &sw->table[(h + i) & (TABLE_SIZE - 1)];

        if (!e->used) {
            memcpy(e->mac, mac, VIO_ETH_ALEN);
            e->vlan = vlan;
            e->used = true;
            return e;
        }
        if (e->vlan == vlan && memcmp(e->mac, mac, VIO_ETH_ALEN) == 0)
            return e;
    }
    return NULL;
}

/* Rebuild the table from the VM ports alone (after a detach: learned
 * addresses are relearned from traffic). */
static void rebuild(struct vio_switch *sw)
{
    memset(sw->table, 0, TABLE_SIZE * sizeof(sw->table[0]));
    for (struct vio_net_port *p = sw->ports; p; p = p->next) {
        if (p->fixed_mac) {
            struct mac_entry *e = insert(sw, p->mac, p->vlan);

            if (e) {
                e->fixed = true;
                e->port = p;
            }
        }
    }
}

int vio_switch_create(struct vio_loop *loop, const char *name, struct vio_switch **out)
{
    struct vio_switch *sw = calloc(1, sizeof(*sw));

    if (!sw)
        return -ENOMEM;
    sw->table = calloc(TABLE_SIZE, sizeof(sw->table[0]));
    sw->scratch = malloc(sizeof(*sw->scratch));
    if (!sw->table || !sw->scratch) {
        free(sw->table);
        free(sw->scratch);
        free(sw);
        return -ENOMEM;
    }
    sw->loop = loop;
    snprintf(sw->name, sizeof(sw->name), "%s", name);
    pthread_mutex_init(&sw->lock, NULL);
    *out = sw;
    return 0;
}

void vio_switch_destroy(struct vio_switch *sw)
{
    if (!sw)
        return;
    if (sw->ports)
        vio_warn("switch %s destroyed with port %s still attached", sw->name, sw->ports->id);
    pthread_mutex_destroy(&sw->lock);
    free(sw->table);
    free(sw->scratch);
    free(sw);
}

struct vio_loop *vio_switch_loop(struct vio_switch *sw)
{
    return sw->loop;
}

struct attach_call {
    struct vio_call call;
    struct vio_switch *sw;
    struct vio_net_port *port;
};

static void attach_fn(struct vio_call *c)
{
    struct attach_call *a = vio_container_of(c, struct attach_call, call);
    struct vio_switch *sw = a->sw;
    struct vio_net_port *p = a->port;

    int ret = 0;

    for (struct vio_net_port *q = sw->ports; q; q = q->next) {
        if (strcmp(q->id, p->id) == 0 ||
            (p->fixed_mac && q->fixed_mac && q->vlan == p->vlan &&
             memcmp(q->mac, p->mac, VIO_ETH_ALEN) == 0)) {
            ret = -EEXIST;
            goto out;
        }
    }
    if (p->fixed_mac) {
        struct mac_entry *e = lookup(sw, p->mac, p->vlan);

        /* A VM port's address beats one learned from an uplink. */
        if (!e)
            e = insert(sw, p->mac, p->vlan);
        if (!e) {
            ret = -ENOSPC;
            goto out;
        }
        e->fixed = true;
        e->port = p;
    }
    pthread_mutex_lock(&sw->lock);
    p->next = sw->ports;
    sw->ports = p;
    p->sw = sw;
    pthread_mutex_unlock(&sw->lock);
out:
    vio_call_done(c, ret);
}

int vio_switch_attach(struct vio_switch *sw, struct vio_net_port *p)
{
    struct attach_call a = {.call.fn = attach_fn, .sw = sw, .port = p};
    int ret = vio_loop_call(sw->loop, &a.call);

    if (ret == -EEXIST)
        vio_err("switch %s: port %s: id or MAC already in use in its VLAN", sw->name, p->id);
    else if (ret < 0)
        vio_err("switch %s: cannot attach port %s: %s", sw->name, p->id, strerror(-ret));
    else
        vio_debug("switch %s: port %s (%s) attached", sw->name, p->id, p->ops->kind);
    return ret;
}

static void detach_fn(struct vio_call *c)
{
    struct attach_call *a = vio_container_of(c, struct attach_call, call);
    struct vio_switch *sw = a->sw;

    pthread_mutex_lock(&sw->lock);
    for (struct vio_net_port **pp = &sw->ports; *pp; pp = &(*pp)->next) {
        if (*pp == a->port) {
            *pp = a->port->next;
            break;
        }
    }
    a->port->next = NULL;
    for (struct vio_net_port **pp = &sw->flush_list; *pp; pp = &(*pp)->flush_next) {
        if (*pp == a->port) {
            *pp = a->port->flush_next;
            break;
        }
    }
    a->port->flush_pending = false;
    a->port->sw = NULL;
    pthread_mutex_unlock(&sw->lock);
    rebuild(sw);
    vio_call_done(c, 0);
}

void vio_switch_detach(struct vio_net_port *p)
{
    struct attach_call a = {.call.fn = detach_fn, .port = p};

    if (!p->sw)
        return;
    a.sw = p->sw;
    vio_loop_call(a.sw->loop, &a.call);
}

struct vio_net_port *vio_switch_find(struct vio_switch *sw, const char *id)
{
    struct vio_net_port *found = NULL;

    pthread_mutex_lock(&sw->lock);
    for (struct vio_net_port *p = sw->ports; p; p = p->next) {
        if (strcmp(p->id, id) == 0) {
            found = p;
            break;
        }
    }
    pthread_mutex_unlock(&sw->lock);
    return found;
}

void vio_switch_foreach(struct vio_switch *sw, void (*fn)(struct vio_net_port *p, void *opaque),
                        void *opaque)
{
    pthread_mutex_lock(&sw->lock);
    for (struct vio_net_port *p = sw->ports; p; p = p->next)
        fn(p, opaque);
    pthread_mutex_unlock(&sw->lock);
}

static int emit_one(void *opaque, const struct vio_pkt *pkt)
{
    struct vio_net_port *p = opaque;
    int ret = p->ops->deliver(p, pkt);

    if (ret == 0) {
        count(&p->c.rx_packets, 1);
        count(&p->c.rx_bytes, pkt->len);
        if (p->ops->flush && !p->flush_pending) {
            p->flush_pending = true;
            p->flush_next = p->sw->flush_list;
            p->sw->flush_list = p;
        }
    } else if (ret == -ENOBUFS) {
        count(&p->c.rx_drop_full, 1);
    } else {
        count(&p->c.rx_drop_error, 1);
    }
    /* One segment lost does not stop the others. */
    return 0;
}

static void deliver(struct vio_switch *sw, struct vio_net_port *src, struct vio_net_port *p,
                    const struct vio_pkt *pkt)
{
    if (!atomic_load_explicit(&p->link_up, memory_order_relaxed)) {
        count(&p->c.rx_drop_link_down, 1);
        return;
    }
    /* A frame whose headers do not bear out its offload request can be
     * passed on to a receiver that takes it as it is, but not finished:
     * that is the sender's fault. */
    if (vio_net_fit(pkt, p->caps, sw->scratch, emit_one, p) < 0)
        count(&src->c.tx_drop_bad, 1);
}

static void forward(struct vio_switch *sw, struct vio_net_port *src, const struct vio_pkt *pkt);

static void flush_all(struct vio_switch *sw)
{
    while (sw->flush_list) {
        struct vio_net_port *p = sw->flush_list;

        sw->flush_list = p->flush_next;
        p->flush_next = NULL;
        p->flush_pending = false;
        p->ops->flush(p);
    }
}

static void defer(struct vio_switch *sw, struct vio_net_port *src, const struct vio_pkt *pkt)
{
    struct deferred *d;

    if (sw->ndeferred == DEFER_MAX || pkt->len > VIO_NET_MAX_FRAME) {
        count(&src->c.tx_drop_bad, 1);
        return;
    }
    d = &sw->deferred[sw->ndeferred];
    d->data = malloc(pkt->len ? pkt->len : 1);
    if (!d->data) {
        count(&src->c.tx_drop_bad, 1);
        return;
    }
    d->len = (uint32_t)vio_pkt_read(pkt, 0, d->data, pkt->len);
    d->off = pkt->off;
    d->src = src;
    sw->ndeferred++;
}

void vio_switch_input(struct vio_net_port *src, const struct vio_pkt *pkt)
{
    struct vio_switch *sw = src->sw;

    if (!sw)
        return;
    if (sw->busy) {
        defer(sw, src, pkt);
        return;
    }
    sw->busy = true;
    forward(sw, src, pkt);
    /* Deferred frames may defer more; they go in order. */
    for (unsigned i = 0; i < sw->ndeferred; i++) {
        struct deferred *d = &sw->deferred[i];
        struct iovec iov = {d->data, d->len};
        struct vio_pkt p = {.off = d->off, .iov = &iov, .iovcnt = 1, .len = d->len};

        if (d->src->sw == sw)
            forward(sw, d->src, &p);
        free(d->data);
        d->data = NULL;
    }
    sw->ndeferred = 0;
    sw->busy = false;
    if (!sw->batch)
        flush_all(sw);
}

void vio_switch_batch_begin(struct vio_switch *sw)
{
    sw->batch++;
}

void vio_switch_batch_end(struct vio_switch *sw)
{
    if (sw->batch && --sw->batch == 0)
        flush_all(sw);
}

static void forward(struct vio_switch *sw, struct vio_net_port *src, const struct vio_pkt *pkt)
{
    uint8_t eth[VIO_ETH_HLEN];
    const uint8_t *dst = eth, *smac = eth + 6;
    struct mac_entry *e;
    uint16_t type;

    if (pkt->len < VIO_ETH_HLEN || pkt->len > VIO_NET_MAX_FRAME ||
        vio_pkt_read(pkt, 0, eth, sizeof(eth)) != sizeof(eth) ||
        vio_net_offload_check(pkt) < 0) {
        count(&src->c.tx_drop_bad, 1);
        return;
    }
    type = (uint16_t)(eth[12] << 8 | eth[13]);
    /* Ports are access ports: a tag from outside could hop VLANs. A group
     * source address is never legitimate. */
    if (type == VIO_ETH_P_8021Q || is_group(smac)) {
        count(&src->c.tx_drop_bad, 1);
        return;
    }
    if (!atomic_load_explicit(&src->link_up, memory_order_relaxed)) {
        count(&src->c.tx_drop_link_down, 1);
        return;
    }
    if (src->fixed_mac) {
        if (memcmp(smac, src->mac, VIO_ETH_ALEN) != 0) {
            count(&src->c.tx_drop_spoof, 1);
            return;
        }
    } else {
        e = lookup(sw, smac, src->vlan);
        if (e && e->fixed) {
            /* Someone outside claims a VM port's address. */
            count(&src->c.tx_drop_spoof, 1);
            return;
        }
        if (!e)
            e = insert(sw, smac, src->vlan);
        if (e)
            e->port = src;
        else
            sw->learn_full++;
    }
    count(&src->c.tx_packets, 1);
    count(&src->c.tx_bytes, pkt->len);

    if (!is_group(dst)) {
        e = lookup(sw, dst, src->vlan);
        if (e) {
            if (e->port != src)
                deliver(sw, src, e->port, pkt);
            return;
        }
    }
    /* Broadcast and multicast to every other port of the VLAN; unknown
     * unicast only to its uplinks (a VM port would drop it anyway). */
    for (struct vio_net_port *p = sw->ports; p; p = p->next) {
        if (p == src || p->vlan != src->vlan)
            continue;
        if (!is_group(dst) && p->fixed_mac)
            continue;
        deliver(sw, src, p, pkt);
    }
}
