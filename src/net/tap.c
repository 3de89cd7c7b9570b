/* TAP uplink (see tap.h): a non-blocking /dev/net/tun fd on the switch
 * loop. With offload=on every frame is preceded by a virtio_net_hdr, so
 * partial checksums and GSO super-frames cross in both directions without
 * being finished in software. */
#include "net/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"

#define TUN_PATH  "/dev/net/tun"
#define RX_BUDGET 64

/* The legacy virtio_net_hdr that IFF_VNET_HDR puts before each frame, in
 * host byte order (the kernel's default on a little-endian host). */
struct tap_vnet_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
};
_Static_assert(sizeof(struct tap_vnet_hdr) == 10, "virtio_net_hdr is 10 bytes");

#define TAP_CAPS (VIO_NET_CAP_CSUM | VIO_NET_CAP_TSO4 | VIO_NET_CAP_TSO6 | VIO_NET_CAP_TSO_ECN)

struct tap {
    struct vio_uplink up;
    char ifname[IFNAMSIZ];
    bool offload;
    size_t hdrlen; /* 0 or sizeof(struct tap_vnet_hdr) */
    int fd;
    struct vio_handler h;
    bool watching;
    uint8_t *rxbuf; /* hdrlen + VIO_NET_MAX_FRAME */
    struct vio_ratelimit rl;
    vio_counter_t read_error, read_bad, write_busy, write_error;
    /* TCP super-frames (virtio_net_hdr gso_type set) read from the host
     * and written to it: offload at work, whole across the tap. */
    vio_counter_t tx_gso, rx_gso;
};

static bool valid_ifname(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= IFNAMSIZ || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (; *s; s++) {
        if (*s == '/' || *s == ':' || *s <= ' ' || *s == 0x7f)
            return false;
    }
    return true;
}

static int tap_deliver(struct vio_net_port *p, const struct vio_pkt *pkt)
{
    struct tap *t = vio_container_of(p->opaque, struct tap, up);
    struct tap_vnet_hdr hdr = {
        .flags = pkt->off.flags,
        .gso_type = pkt->off.gso_type,
        .hdr_len = pkt->off.hdr_len,
        .gso_size = pkt->off.gso_size,
        .csum_start = pkt->off.csum_start,
        .csum_offset = pkt->off.csum_offset,
    };
    struct iovec iov[VIO_UPLINK_IOV_MAX];
    unsigned n = vio_uplink_gather(&t->up, &hdr, t->hdrlen, pkt, iov);

    if (writev(t->fd, iov, (int)n) >= 0) {
        if (hdr.gso_type != VIO_NET_HDR_GSO_NONE)
            vio_counter_add(&t->rx_gso, 1);
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        vio_counter_add(&t->write_busy, 1);
        return -ENOBUFS;
    }
    int err = errno;

    vio_counter_add(&t->write_error, 1);
    if (vio_ratelimit_ok(&t->rl))
        vio_warn("tap %s (%s): writing a %u-byte frame failed: %s", p->id, t->ifname, pkt->len,
                 strerror(err));
    return -err;
}

static void tap_rx(struct vio_handler *h, uint32_t events)
{
    struct tap *t = vio_container_of(h, struct tap, h);
    size_t size = t->hdrlen + VIO_NET_MAX_FRAME;

    (void)events;
    vio_switch_batch_begin(t->up.sw);
    for (int i = 0; i < RX_BUDGET; i++) {
        ssize_t n = read(t->fd, t->rxbuf, size);
        struct tap_vnet_hdr hdr = {0};

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            vio_counter_add(&t->read_error, 1);
            if (errno == EBADFD || errno == EIO || errno == ENXIO) {
                /* The interface went away: the fd would poll ready forever. */
                vio_err("tap %s (%s): interface gone (%s); the uplink stops receiving",
                        t->up.port.id, t->ifname, strerror(errno));
                vio_loop_del(t->up.loop, &t->h);
                t->watching = false;
            } else if (vio_ratelimit_ok(&t->rl)) {
                vio_warn("tap %s (%s): read failed: %s", t->up.port.id, t->ifname, strerror(errno));
            }
            break;
        }
        if ((size_t)n < t->hdrlen + VIO_ETH_HLEN || (size_t)n > size) {
            vio_counter_add(&t->read_bad, 1);
            continue;
        }
        if (t->hdrlen)
            memcpy(&hdr, t->rxbuf, sizeof(hdr));
        if (hdr.gso_type != VIO_NET_HDR_GSO_NONE)
            vio_counter_add(&t->tx_gso, 1);
        struct iovec frame = {t->rxbuf + t->hdrlen, (size_t)n - t->hdrlen};
        struct vio_pkt pkt = {
            .off =
                {
                    /* DATA_VALID only spares a receiver a check it can do. */
                    .flags = hdr.flags & (uint8_t)~VIO_NET_HDR_F_DATA_VALID,
                    .gso_type = hdr.gso_type,
                    .hdr_len = hdr.hdr_len,
                    .gso_size = hdr.gso_size,
                    .csum_start = hdr.csum_start,
                    .csum_offset = hdr.csum_offset,
                },
            .iov = &frame,
            .iovcnt = 1,
            .len = (uint32_t)frame.iov_len,
        };

        vio_switch_input(&t->up.port, &pkt);
    }
    vio_switch_batch_end(t->up.sw);
}

static void tap_stats(struct vio_net_port *p, json_t *o)
{
    struct tap *t = vio_container_of(p->opaque, struct tap, up);

    json_object_set_new(o, "ifname", json_string(t->ifname));
    json_object_set_new(o, "offload", json_boolean(t->offload));
#define C(name) json_object_set_new(o, #name, json_integer((json_int_t)vio_counter_get(&t->name)))
    C(read_error);
    C(read_bad);
    C(write_busy);
    C(write_error);
    C(tx_gso);
    C(rx_gso);
#undef C
}

static const struct vio_net_port_ops tap_port_ops = {
    .kind = "tap",
    .deliver = tap_deliver,
    .stats = tap_stats,
};

static int open_tap(struct tap *t, const char *spec)
{
    struct ifreq ifr;
    int ret;

    t->fd = open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (t->fd < 0) {
        ret = -errno;
        vio_err("uplink '%s': cannot open %s: %s%s", spec, TUN_PATH, strerror(-ret),
                ret == -ENOENT || ret == -ENODEV  ? " (load the tun module: modprobe tun)"
                : ret == -EACCES || ret == -EPERM ? " (needs root or CAP_NET_ADMIN)"
                                                  : "");
        return ret;
    }
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", t->ifname);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (t->offload ? IFF_VNET_HDR : 0);
    if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
        ret = -errno;
        vio_err("uplink '%s': cannot attach to tap %s: %s%s", spec, t->ifname, strerror(-ret),
                ret == -EPERM    ? " (needs CAP_NET_ADMIN, or a persistent tap owned by this user)"
                : ret == -EBUSY  ? " (already attached, by this or another process)"
                : ret == -EINVAL ? " (it exists but is not a tap, or its flags differ; try "
                                   "offload=off)"
                                 : "");
        goto err;
    }
    /* The kernel may have filled in a pattern such as "tap%d". */
    memcpy(t->ifname, ifr.ifr_name, IFNAMSIZ - 1);
    t->ifname[IFNAMSIZ - 1] = '\0';
    if (t->offload) {
        int sz = (int)sizeof(struct tap_vnet_hdr);

        if (ioctl(t->fd, TUNSETVNETHDRSZ, &sz) < 0) {
            ret = -errno;
            vio_err("uplink '%s': tap %s refuses a %d-byte virtio_net_hdr: %s (try offload=off)",
                    spec, t->ifname, sz, strerror(-ret));
            goto err;
        }
        /* What we accept from the host: it may then hand us partial
         * checksums and TCP super-frames. Without it we still receive
         * complete frames and may still send offloaded ones. */
        if (ioctl(t->fd, TUNSETOFFLOAD,
                  (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)) < 0)
            vio_warn("uplink '%s': tap %s: TUNSETOFFLOAD failed (%s); the host will send "
                     "complete frames",
                     spec, t->ifname, strerror(errno));
        t->hdrlen = sizeof(struct tap_vnet_hdr);
    }
    return 0;

err:
    close(t->fd);
    t->fd = -1;
    return ret;
}

static int tap_create(const struct vio_uplink_args *a, struct vio_opts *o, struct vio_uplink **out)
{
    const char *ifname = vio_opts_get(o, "ifname");
    char err[160];
    struct tap *t;
    int ret;

    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->fd = -1;
    t->rl = (struct vio_ratelimit)VIO_RATELIMIT_INIT;
    ret = -EINVAL;
    if (!ifname) {
        vio_err("uplink '%s': tap needs ifname= (the host interface name)", a->spec);
        goto err;
    }
    if (!valid_ifname(ifname)) {
        vio_err("uplink '%s': ifname=%s: expected 1 to %d characters without '/', ':' or blanks",
                a->spec, ifname, IFNAMSIZ - 1);
        goto err;
    }
    snprintf(t->ifname, sizeof(t->ifname), "%s", ifname);
    if (vio_opts_bool(o, "offload", true, &t->offload, err, sizeof(err)) < 0) {
        vio_err("uplink '%s': %s", a->spec, err);
        goto err;
    }
    ret = vio_uplink_check_unused(a, o);
    if (ret < 0)
        goto err;
    ret = vio_uplink_init(&t->up, &vio_tap_uplink_ops, &tap_port_ops, a, t->offload ? TAP_CAPS : 0);
    if (ret < 0)
        goto err;
    t->rxbuf = malloc(sizeof(struct tap_vnet_hdr) + VIO_NET_MAX_FRAME);
    if (!t->rxbuf) {
        ret = -ENOMEM;
        goto err_release;
    }
    ret = open_tap(t, a->spec);
    if (ret < 0)
        goto err_rxbuf;
    *out = &t->up;
    return 0;

err_rxbuf:
    free(t->rxbuf);
err_release:
    vio_uplink_release(&t->up);
err:
    free(t);
    return ret;
}

static int tap_start(struct vio_uplink *u)
{
    struct tap *t = vio_container_of(u, struct tap, up);
    int ret = vio_loop_add(u->loop, &t->h, t->fd, EPOLLIN, tap_rx);

    if (ret < 0) {
        vio_err("tap %s (%s): cannot watch its fd: %s", u->port.id, t->ifname, strerror(-ret));
        return ret;
    }
    t->watching = true;
    return 0;
}

static void tap_stop(struct vio_uplink *u)
{
    struct tap *t = vio_container_of(u, struct tap, up);

    if (t->watching)
        vio_loop_del(u->loop, &t->h);
    t->watching = false;
}

static void tap_free(struct vio_uplink *u)
{
    struct tap *t = vio_container_of(u, struct tap, up);

    if (t->fd >= 0)
        close(t->fd);
    free(t->rxbuf);
    vio_uplink_release(u);
    free(t);
}

const struct vio_uplink_ops vio_tap_uplink_ops = {
    .type = "tap",
    .create = tap_create,
    .start = tap_start,
    .stop = tap_stop,
    .free = tap_free,
};
