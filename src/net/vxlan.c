/* VXLAN uplink (RFC 7348, see vxlan.h): one non-blocking UDP socket on the
 * switch loop. Frames from the switch get the 8-byte VXLAN header and go to
 * the remote end point; datagrams from it are checked and their inner frame
 * enters the switch. */
#include "net/vxlan.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"

/* Largest datagram payload a UDP socket can hand us (IPv6 without jumbo
 * frames is the largest: 65535 - 8). */
#define RXBUF_SIZE 65536
/* Datagrams read per wakeup before the loop serves other fds. */
#define RX_BUDGET 64

struct vxlan {
    struct vio_uplink up;
    uint32_t vni;
    bool srccheck;
    struct sockaddr_storage local, remote;
    socklen_t alen;
    int fd;
    struct vio_handler h;
    uint8_t *rxbuf;
    struct vio_ratelimit rl;
    vio_counter_t drop_short, drop_bad_header, drop_wrong_vni, drop_wrong_source, drop_too_big;
    vio_counter_t send_busy, send_error;
};

/* "IPv4", "IPv4:PORT", "[IPv6]", "[IPv6]:PORT" or a bare IPv6 address. */
static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port = NULL;
    unsigned long p = VIO_VXLAN_PORT;
    size_t hlen;
    bool v6;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');

        if (!end)
            return -EINVAL;
        hlen = (size_t)(end - s - 1);
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return -EINVAL;
        s++;
        v6 = true;
    } else {
        const char *colon = strchr(s, ':');

        v6 = colon && strchr(colon + 1, ':');
        if (colon && !v6) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
        } else {
            hlen = strlen(s);
        }
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (port && (vio_uplink_parse_uint(port, 65535, &p) < 0 || p == 0))
        return -EINVAL;
    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -EINVAL;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)p);
        *len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;

        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -EINVAL;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)p);
        *len = sizeof(*a);
    }
    return 0;
}

static bool addr_unusable_remote(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);

        return a == INADDR_ANY || a == INADDR_BROADCAST || IN_MULTICAST(a);
    }
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;

    return IN6_IS_ADDR_UNSPECIFIED(a6) || IN6_IS_ADDR_MULTICAST(a6);
}

static bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(a->sin_port));
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(a->sin6_port));
    }
}

static int vxlan_deliver(struct vio_net_port *p, const struct vio_pkt *pkt)
{
    struct vxlan *vx = vio_container_of(p->opaque, struct vxlan, up);
    uint8_t hdr[VIO_VXLAN_HLEN] = {
        VIO_VXLAN_FLAG_I, 0, 0, 0, (uint8_t)(vx->vni >> 16), (uint8_t)(vx->vni >> 8),
        (uint8_t)vx->vni, 0};
    struct iovec iov[VIO_UPLINK_IOV_MAX];
    struct msghdr msg = {
        .msg_name = &vx->remote,
        .msg_namelen = vx->alen,
        .msg_iov = iov,
    };

    msg.msg_iovlen = vio_uplink_gather(&vx->up, hdr, sizeof(hdr), pkt, iov);
    if (sendmsg(vx->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
        vio_counter_add(&vx->send_busy, 1);
        return -ENOBUFS;
    }
    int err = errno;

    vio_counter_add(&vx->send_error, 1);
    if (vio_ratelimit_ok(&vx->rl))
        vio_warn("vxlan %s: sending a %u-byte frame failed: %s", p->id, pkt->len, strerror(err));
    return -err;
}

/* Check one datagram; returns the counter to bump, or NULL if it is good. */
static vio_counter_t *check(struct vxlan *vx, const uint8_t *b, ssize_t n, int flags,
                            const struct sockaddr_storage *from)
{
    if ((flags & MSG_TRUNC) || n > RXBUF_SIZE)
        return &vx->drop_too_big;
    if (vx->srccheck && !same_host(from, &vx->remote))
        return &vx->drop_wrong_source;
    if (n < VIO_VXLAN_HLEN + VIO_ETH_HLEN)
        return &vx->drop_short;
    /* RFC 7348 says to ignore the reserved bits; Linux drops a header with
     * any of them set (it could be an extension we would misread), and so
     * do we. */
    if (b[0] != VIO_VXLAN_FLAG_I || b[1] || b[2] || b[3] || b[7])
        return &vx->drop_bad_header;
    if ((uint32_t)(b[4] << 16 | b[5] << 8 | b[6]) != vx->vni)
        return &vx->drop_wrong_vni;
    return NULL;
}

static void vxlan_rx(struct vio_handler *h, uint32_t events)
{
    struct vxlan *vx = vio_container_of(h, struct vxlan, h);
    struct vio_switch *sw = vx->up.sw;

    (void)events;
    vio_switch_batch_begin(sw);
    for (int i = 0; i < RX_BUDGET; i++) {
        struct sockaddr_storage from = {.ss_family = AF_UNSPEC};
        struct iovec iov = {vx->rxbuf, RXBUF_SIZE};
        struct msghdr msg = {
            .msg_name = &from,
            .msg_namelen = sizeof(from),
            .msg_iov = &iov,
            .msg_iovlen = 1,
        };
        ssize_t n = recvmsg(vx->fd, &msg, MSG_DONTWAIT | MSG_TRUNC);
        vio_counter_t *bad;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK && vio_ratelimit_ok(&vx->rl))
                vio_warn("vxlan %s: receive failed: %s", vx->up.port.id, strerror(errno));
            break;
        }
        bad = check(vx, vx->rxbuf, n, msg.msg_flags, &from);
        if (bad) {
            vio_counter_add(bad, 1);
            continue;
        }
        struct iovec frame = {vx->rxbuf + VIO_VXLAN_HLEN, (size_t)n - VIO_VXLAN_HLEN};
        struct vio_pkt pkt = {.iov = &frame, .iovcnt = 1, .len = (uint32_t)frame.iov_len};

        vio_switch_input(&vx->up.port, &pkt);
    }
    vio_switch_batch_end(sw);
}

static void vxlan_stats(struct vio_net_port *p, json_t *o)
{
    struct vxlan *vx = vio_container_of(p->opaque, struct vxlan, up);
    char buf[INET6_ADDRSTRLEN + 10];

    json_object_set_new(o, "vni", json_integer(vx->vni));
    format_addr(&vx->local, buf, sizeof(buf));
    json_object_set_new(o, "local", json_string(buf));
    format_addr(&vx->remote, buf, sizeof(buf));
    json_object_set_new(o, "remote", json_string(buf));
#define C(name) json_object_set_new(o, #name, json_integer((json_int_t)vio_counter_get(&vx->name)))
    C(drop_short);
    C(drop_bad_header);
    C(drop_wrong_vni);
    C(drop_wrong_source);
    C(drop_too_big);
    C(send_busy);
    C(send_error);
#undef C
}

static const struct vio_net_port_ops vxlan_port_ops = {
    .kind = "vxlan",
    .deliver = vxlan_deliver,
    .stats = vxlan_stats,
};

static int open_socket(struct vxlan *vx, const char *spec)
{
    int family = vx->local.ss_family, one = 1, rcvbuf = 1 << 20;
    char buf[INET6_ADDRSTRLEN + 10];
    int ret;

    vx->fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (vx->fd < 0) {
        ret = -errno;
        vio_err("uplink '%s': cannot create a UDP socket: %s", spec, strerror(-ret));
        return ret;
    }
    /* Frames of a full MTU plus 50 bytes of encapsulation exceed a 1500-byte
     * path: let the kernel fragment them, as Linux's own VXLAN does by
     * default, instead of refusing them (EMSGSIZE). */
    if (family == AF_INET) {
        int v = IP_PMTUDISC_DONT;

        setsockopt(vx->fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof(v));
    } else {
        int v = IPV6_PMTUDISC_DONT;

        setsockopt(vx->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        setsockopt(vx->fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, sizeof(v));
    }
    /* A bigger queue absorbs bursts; failing to get it is not fatal. */
    setsockopt(vx->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (bind(vx->fd, (struct sockaddr *)&vx->local, vx->alen) < 0) {
        ret = -errno;
        format_addr(&vx->local, buf, sizeof(buf));
        vio_err("uplink '%s': cannot bind UDP %s: %s%s", spec, buf, strerror(-ret),
                ret == -EADDRINUSE      ? " (another tunnel or Linux vxlan device uses it?)"
                : ret == -EADDRNOTAVAIL ? " (not an address of this host)"
                                        : "");
        close(vx->fd);
        vx->fd = -1;
        return ret;
    }
    return 0;
}

static int vxlan_create(const struct vio_uplink_args *a, struct vio_opts *o,
                        struct vio_uplink **out)
{
    const char *vni = vio_opts_get(o, "vni"), *local = vio_opts_get(o, "local");
    const char *remote = vio_opts_get(o, "remote");
    socklen_t rlen = 0;
    unsigned long v;
    char err[160];
    struct vxlan *vx;
    int ret;

    vx = calloc(1, sizeof(*vx));
    if (!vx)
        return -ENOMEM;
    vx->fd = -1;
    vx->rl = (struct vio_ratelimit)VIO_RATELIMIT_INIT;
    ret = -EINVAL;
    if (!vni || !local || !remote) {
        vio_err("uplink '%s': vxlan needs vni=, local= and remote= (missing %s)", a->spec,
                !vni     ? "vni"
                : !local ? "local"
                         : "remote");
        goto err;
    }
    if (vio_uplink_parse_uint(vni, VIO_VXLAN_VNI_MAX, &v) < 0) {
        vio_err("uplink '%s': vni=%s: expected a number from 0 to %u", a->spec, vni,
                VIO_VXLAN_VNI_MAX);
        goto err;
    }
    vx->vni = (uint32_t)v;
    if (parse_addr(local, &vx->local, &vx->alen) < 0) {
        vio_err("uplink '%s': local=%s: expected IPv4[:PORT] or [IPv6][:PORT]", a->spec, local);
        goto err;
    }
    if (parse_addr(remote, &vx->remote, &rlen) < 0) {
        vio_err("uplink '%s': remote=%s: expected IPv4[:PORT] or [IPv6][:PORT]", a->spec, remote);
        goto err;
    }
    if (vx->remote.ss_family != vx->local.ss_family) {
        vio_err("uplink '%s': local=%s and remote=%s are not both IPv4 or both IPv6", a->spec,
                local, remote);
        goto err;
    }
    if (addr_unusable_remote(&vx->remote)) {
        vio_err("uplink '%s': remote=%s: need one unicast address (no wildcard, broadcast or "
                "multicast)",
                a->spec, remote);
        goto err;
    }
    if (vio_opts_bool(o, "srccheck", true, &vx->srccheck, err, sizeof(err)) < 0) {
        vio_err("uplink '%s': %s", a->spec, err);
        goto err;
    }
    ret = vio_uplink_check_unused(a, o);
    if (ret < 0)
        goto err;
    ret = vio_uplink_init(&vx->up, &vio_vxlan_uplink_ops, &vxlan_port_ops, a, 0);
    if (ret < 0)
        goto err;
    vx->rxbuf = malloc(RXBUF_SIZE);
    if (!vx->rxbuf) {
        ret = -ENOMEM;
        goto err_release;
    }
    ret = open_socket(vx, a->spec);
    if (ret < 0)
        goto err_rxbuf;
    *out = &vx->up;
    return 0;

err_rxbuf:
    free(vx->rxbuf);
err_release:
    vio_uplink_release(&vx->up);
err:
    free(vx);
    return ret;
}

static int vxlan_start(struct vio_uplink *u)
{
    struct vxlan *vx = vio_container_of(u, struct vxlan, up);
    int ret = vio_loop_add(u->loop, &vx->h, vx->fd, EPOLLIN, vxlan_rx);

    if (ret < 0)
        vio_err("vxlan %s: cannot watch its socket: %s", u->port.id, strerror(-ret));
    return ret;
}

static void vxlan_stop(struct vio_uplink *u)
{
    struct vxlan *vx = vio_container_of(u, struct vxlan, up);

    vio_loop_del(u->loop, &vx->h);
}

static void vxlan_free(struct vio_uplink *u)
{
    struct vxlan *vx = vio_container_of(u, struct vxlan, up);

    if (vx->fd >= 0)
        close(vx->fd);
    free(vx->rxbuf);
    vio_uplink_release(u);
    free(vx);
}

const struct vio_uplink_ops vio_vxlan_uplink_ops = {
    .type = "vxlan",
    .create = vxlan_create,
    .start = vxlan_start,
    .stop = vxlan_stop,
    .free = vxlan_free,
};
