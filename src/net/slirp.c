/* User-mode NAT uplink (see slirp.h): libslirp driven from the switch loop.
 *
 * libslirp wants a poll() loop: slirp_pollfds_fill() lists the sockets to
 * watch and a timeout, slirp_pollfds_poll() handles what poll() found and
 * runs its TCP timers. We keep those sockets in a private epoll set that
 * the switch loop watches as one fd, plus one timerfd for the timeout.
 * When either fires we poll() the listed sockets once without waiting,
 * hand the result to slirp and refill. Frames the switch delivers go to
 * slirp_input(); since that may open sockets, the port's flush() refills
 * too. libslirp's own timers (IPv6 router advertisements) get a timerfd
 * each.
 *
 * libslirp is not reentrant: a frame delivered to this port while slirp is
 * running (its send_packet reached the switch, which forwarded a frame
 * from another port back here) is queued and fed in once slirp returns. */
#include "net/slirp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libslirp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"

#define MAX_HOSTFWD   64
#define PENDING_MAX   64                  /* frames queued while slirp runs */
#define ARP_FRAME_MIN (VIO_ETH_HLEN + 28) /* Ethernet + IPv4 ARP */

struct hostfwd {
    bool udp;
    struct in_addr haddr, gaddr;
    uint16_t hport, gport;
    char text[64]; /* the rule as given, for messages */
};

struct nat;

struct nat_timer {
    struct nat *s;
    int fd;
    struct vio_handler h;
    bool by_id; /* created by timer_new_opaque: fire through slirp_handle_timer */
    SlirpTimerId id;
    SlirpTimerCb cb;
    void *cb_opaque;
    struct nat_timer *next;
};

struct fd_events {
    int fd;
    uint32_t events; /* EPOLL* */
};

struct pending {
    uint8_t *data;
    uint32_t len;
};

struct nat {
    struct vio_uplink up;
    /* Configuration. */
    struct in_addr net, mask, host, dns, dhcp;
    unsigned prefix;
    bool restricted;
    struct hostfwd *fwd;
    unsigned nfwd;
    /* Switch loop thread. */
    Slirp *slirp;
    int epfd; /* slirp's sockets */
    struct vio_handler ep_h;
    int tick_fd; /* slirp_pollfds_fill's timeout */
    struct vio_handler tick_h;
    bool watching;
    struct pollfd *pfd; /* the last fill's list; add_poll's indices point here */
    struct fd_events *want;
    int *reg; /* fds in epfd, sorted */
    unsigned npfd, nreg, cap;
    struct nat_timer *timers;
    unsigned depth; /* > 0 while inside libslirp */
    bool need_fill;
    struct pending pending[PENDING_MAX];
    unsigned npending;
    struct vio_ratelimit rl;
    vio_counter_t guest_errors, input_dropped;
};

/* ---- Driving libslirp. ---- */

static void drain_pending(struct nat *s);

static int grow(struct nat *s)
{
    unsigned cap = s->cap ? s->cap * 2 : 64;
    struct pollfd *pfd = realloc(s->pfd, cap * sizeof(*pfd));

    if (!pfd)
        return -ENOMEM;
    s->pfd = pfd;
    struct fd_events *want = realloc(s->want, cap * sizeof(*want));
    if (!want)
        return -ENOMEM;
    s->want = want;
    int *reg = realloc(s->reg, cap * sizeof(*reg));
    if (!reg)
        return -ENOMEM;
    s->reg = reg;
    s->cap = cap;
    return 0;
}

static int add_poll(int fd, int events, void *opaque)
{
    struct nat *s = opaque;
    short ev = 0;

    if (s->npfd == s->cap && grow(s) < 0)
        return -1; /* slirp skips a socket without an index */
    if (events & SLIRP_POLL_IN)
        ev |= POLLIN;
    if (events & SLIRP_POLL_OUT)
        ev |= POLLOUT;
    if (events & SLIRP_POLL_PRI)
        ev |= POLLPRI;
    s->pfd[s->npfd] = (struct pollfd){.fd = fd, .events = ev};
    return (int)s->npfd++;
}

static int get_revents(int idx, void *opaque)
{
    struct nat *s = opaque;
    short r;
    int ev = 0;

    if (idx < 0 || (unsigned)idx >= s->npfd)
        return 0;
    r = s->pfd[idx].revents;
    if (r & POLLIN)
        ev |= SLIRP_POLL_IN;
    if (r & POLLOUT)
        ev |= SLIRP_POLL_OUT;
    if (r & POLLPRI)
        ev |= SLIRP_POLL_PRI;
    if (r & POLLERR)
        ev |= SLIRP_POLL_ERR;
    if (r & POLLHUP)
        ev |= SLIRP_POLL_HUP;
    return ev;
}

static int cmp_fd(const void *a, const void *b)
{
    int x = ((const struct fd_events *)a)->fd, y = ((const struct fd_events *)b)->fd;

    return (x > y) - (x < y);
}

/* Make epfd watch exactly the fds of the last fill. Every wanted fd is
 * re-armed (MOD, or ADD when epoll no longer has it): slirp may have closed
 * a socket and got the same fd number for a new one, which the kernel
 * silently dropped from the set. */
static void sync_epoll(struct nat *s)
{
    unsigned n = 0, j = 0;

    for (unsigned i = 0; i < s->npfd; i++) {
        uint32_t ev = 0;

        if (s->pfd[i].events & POLLIN)
            ev |= EPOLLIN;
        if (s->pfd[i].events & POLLOUT)
            ev |= EPOLLOUT;
        if (s->pfd[i].events & POLLPRI)
            ev |= EPOLLPRI;
        s->want[n++] = (struct fd_events){s->pfd[i].fd, ev};
    }
    qsort(s->want, n, sizeof(s->want[0]), cmp_fd);
    /* Merge duplicates (one socket listed twice would be a slirp quirk). */
    unsigned m = 0;
    for (unsigned i = 0; i < n; i++) {
        if (m && s->want[m - 1].fd == s->want[i].fd)
            s->want[m - 1].events |= s->want[i].events;
        else
            s->want[m++] = s->want[i];
    }
    for (unsigned i = 0; i < m; i++) {
        struct epoll_event ev = {.events = s->want[i].events, .data.fd = s->want[i].fd};
        int fd = s->want[i].fd;

        /* Registered before but no longer wanted: remove. */
        for (; j < s->nreg && s->reg[j] < fd; j++)
            epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->reg[j], NULL);
        if (j < s->nreg && s->reg[j] == fd)
            j++;
        if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 &&
            (errno != ENOENT || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) &&
            vio_ratelimit_ok(&s->rl))
            /* The timeout (at most a second) still polls it. */
            vio_warn("slirp %s: cannot watch fd %d: %s", s->up.port.id, fd, strerror(errno));
    }
    for (; j < s->nreg; j++)
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->reg[j], NULL);
    for (unsigned i = 0; i < m; i++)
        s->reg[i] = s->want[i].fd;
    s->nreg = m;
}

static void arm_tick(struct nat *s, uint32_t timeout_ms)
{
    struct itimerspec its = {0};

    if (timeout_ms != UINT32_MAX) {
        /* A zero timeout means "now"; a zero it_value would disarm. */
        its.it_value.tv_sec = timeout_ms / 1000;
        its.it_value.tv_nsec = (long)(timeout_ms % 1000) * 1000000 + 1;
    }
    timerfd_settime(s->tick_fd, 0, &its, NULL);
}

static void refill(struct nat *s)
{
    uint32_t timeout = UINT32_MAX;

    s->need_fill = false;
    s->npfd = 0;
    s->depth++;
    slirp_pollfds_fill(s->slirp, &timeout, add_poll, s);
    s->depth--;
    sync_epoll(s);
    arm_tick(s, timeout);
}

static void input(struct nat *s, const uint8_t *data, uint32_t len)
{
    s->depth++;
    slirp_input(s->slirp, data, (int)len);
    s->depth--;
    s->need_fill = true;
}

static void drain_pending(struct nat *s)
{
    /* Frames fed here may queue more behind them; the loop takes those too. */
    for (unsigned i = 0; i < s->npending; i++) {
        input(s, s->pending[i].data, s->pending[i].len);
        free(s->pending[i].data);
        s->pending[i].data = NULL;
    }
    s->npending = 0;
}

static void run_pass(struct nat *s)
{
    int err = 0;

    if (s->npfd && poll(s->pfd, s->npfd, 0) < 0) {
        /* EINTR: nothing is known to be ready; other errors tell slirp. */
        for (unsigned i = 0; i < s->npfd; i++)
            s->pfd[i].revents = 0;
        err = errno != EINTR;
    }
    s->depth++;
    slirp_pollfds_poll(s->slirp, err, get_revents, s);
    s->depth--;
    drain_pending(s);
    refill(s);
}

static void on_sockets(struct vio_handler *h, uint32_t events)
{
    struct nat *s = vio_container_of(h, struct nat, ep_h);

    (void)events;
    vio_switch_batch_begin(s->up.sw);
    run_pass(s);
    vio_switch_batch_end(s->up.sw);
}

static void on_tick(struct vio_handler *h, uint32_t events)
{
    struct nat *s = vio_container_of(h, struct nat, tick_h);

    (void)events;
    vio_eventfd_drain(h->fd); /* a timerfd reads like an eventfd: 8 bytes */
    vio_switch_batch_begin(s->up.sw);
    run_pass(s);
    vio_switch_batch_end(s->up.sw);
}

/* ---- libslirp callbacks (switch loop thread). ---- */

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
    struct nat *s = opaque;
    struct iovec iov = {(void *)buf, len};
    struct vio_pkt pkt = {.iov = &iov, .iovcnt = 1, .len = (uint32_t)len};

    if (len > VIO_NET_MAX_FRAME)
        return -1;
    vio_switch_input(&s->up.port, &pkt);
    return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
    struct nat *s = opaque;

    vio_counter_add(&s->guest_errors, 1);
    if (vio_ratelimit_ok(&s->rl))
        vio_warn("slirp %s: guest error: %s", s->up.port.id, msg);
}

static int64_t cb_clock_get_ns(void *opaque)
{
    (void)opaque;
    return (int64_t)vio_now_ns();
}

static void on_timer(struct vio_handler *h, uint32_t events)
{
    struct nat_timer *t = vio_container_of(h, struct nat_timer, h);
    struct nat *s = t->s;

    (void)events;
    vio_eventfd_drain(h->fd);
    vio_switch_batch_begin(s->up.sw);
    s->depth++;
    /* The callback may free t (timer_free): t is not touched after it. */
    if (t->by_id)
        slirp_handle_timer(s->slirp, t->id, t->cb_opaque);
    else
        t->cb(t->cb_opaque);
    s->depth--;
    drain_pending(s);
    refill(s);
    vio_switch_batch_end(s->up.sw);
}

static struct nat_timer *timer_create_common(struct nat *s)
{
    struct nat_timer *t = calloc(1, sizeof(*t));

    if (!t)
        goto err;
    t->s = s;
    t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (t->fd < 0)
        goto err_free;
    if (vio_loop_add(s->up.loop, &t->h, t->fd, EPOLLIN, on_timer) < 0)
        goto err_close;
    t->next = s->timers;
    s->timers = t;
    return t;

err_close:
    close(t->fd);
err_free:
    free(t);
err:
    vio_err("slirp %s: cannot create a timer: %s", s->up.port.id, strerror(errno));
    return NULL;
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
    struct nat_timer *t = timer_create_common(opaque);

    if (t) {
        t->cb = cb;
        t->cb_opaque = cb_opaque;
    }
    return t;
}

static void *cb_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
    struct nat_timer *t = timer_create_common(opaque);

    if (t) {
        t->by_id = true;
        t->id = id;
        t->cb_opaque = cb_opaque;
    }
    return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
    struct nat *s = opaque;
    struct nat_timer *t = timer;

    if (!t)
        return;
    for (struct nat_timer **pp = &s->timers; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    vio_loop_del(s->up.loop, &t->h);
    close(t->fd);
    free(t);
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
    struct nat_timer *t = timer;
    /* An absolute CLOCK_MONOTONIC time, the clock of cb_clock_get_ns. */
    struct itimerspec its = {0};

    (void)opaque;
    if (!t)
        return;
    if (expire_ms <= 0) {
        its.it_value.tv_nsec = 1; /* long past: fire now */
    } else {
        its.it_value.tv_sec = expire_ms / 1000;
        its.it_value.tv_nsec = (long)(expire_ms % 1000) * 1000000;
        if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(t->fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* slirp's sockets are found through slirp_pollfds_fill; these only matter
 * on Windows. */
static void cb_register_poll_fd(int fd, void *opaque)
{
    (void)fd;
    (void)opaque;
}

static void cb_unregister_poll_fd(int fd, void *opaque)
{
    (void)fd;
    (void)opaque;
}

static void cb_notify(void *opaque)
{
    struct nat *s = opaque;

    s->need_fill = true;
}

static void cb_init_completed(Slirp *slirp, void *opaque)
{
    (void)slirp;
    (void)opaque;
}

static const SlirpCb callbacks = {
    .send_packet = cb_send_packet,
    .guest_error = cb_guest_error,
    .clock_get_ns = cb_clock_get_ns,
    .timer_new = cb_timer_new,
    .timer_free = cb_timer_free,
    .timer_mod = cb_timer_mod,
    .register_poll_fd = cb_register_poll_fd,
    .unregister_poll_fd = cb_unregister_poll_fd,
    .notify = cb_notify,
    .init_completed = cb_init_completed,
    .timer_new_opaque = cb_timer_new_opaque,
};

/* ---- The switch port. ---- */

static int nat_deliver(struct vio_net_port *p, const struct vio_pkt *pkt)
{
    struct nat *s = vio_container_of(p->opaque, struct nat, up);
    const uint8_t *data;
    uint8_t type[2];
    uint16_t ethertype;

    if (!s->slirp)
        return -ENETDOWN;
    /* Only what this NAT serves (it has no IPv6 and no NC-SI); an ARP
     * frame too short for its header is refused here because some libslirp
     * versions read the header without checking the length. */
    if (pkt->len < VIO_ETH_HLEN || vio_pkt_read(pkt, 12, type, 2) != 2)
        return 0;
    ethertype = (uint16_t)(type[0] << 8 | type[1]);
    if (ethertype == VIO_ETH_P_ARP ? pkt->len < ARP_FRAME_MIN : ethertype != VIO_ETH_P_IP)
        return 0;
    if (s->depth) {
        struct pending *q;

        if (s->npending == PENDING_MAX) {
            vio_counter_add(&s->input_dropped, 1);
            return -ENOBUFS;
        }
        q = &s->pending[s->npending];
        q->data = malloc(pkt->len ? pkt->len : 1);
        if (!q->data) {
            vio_counter_add(&s->input_dropped, 1);
            return -ENOBUFS;
        }
        q->len = (uint32_t)vio_pkt_read(pkt, 0, q->data, pkt->len);
        s->npending++;
        return 0;
    }
    data = vio_uplink_linear(&s->up, pkt);
    input(s, data, pkt->len);
    drain_pending(s);
    return 0;
}

/* slirp_input may have opened sockets: watch them before sleeping. */
static void nat_flush(struct vio_net_port *p)
{
    struct nat *s = vio_container_of(p->opaque, struct nat, up);

    /* Inside libslirp the running pass refills when it ends. */
    if (s->slirp && !s->depth && s->need_fill)
        refill(s);
}

static void nat_stats(struct vio_net_port *p, json_t *o)
{
    struct nat *s = vio_container_of(p->opaque, struct nat, up);
    char net[INET_ADDRSTRLEN + 4];

    inet_ntop(AF_INET, &s->net, net, INET_ADDRSTRLEN);
    snprintf(net + strlen(net), sizeof(net) - strlen(net), "/%u", s->prefix);
    json_object_set_new(o, "net", json_string(net));
    json_object_set_new(o, "hostfwd", json_integer(s->nfwd));
    json_object_set_new(o, "guest_errors",
                        json_integer((json_int_t)vio_counter_get(&s->guest_errors)));
    json_object_set_new(o, "input_dropped",
                        json_integer((json_int_t)vio_counter_get(&s->input_dropped)));
}

static const struct vio_net_port_ops nat_port_ops = {
    .kind = "slirp",
    .deliver = nat_deliver,
    .stats = nat_stats,
    .flush = nat_flush,
};

/* ---- Spec parsing. ---- */

static int parse_net(struct nat *s, const char *v)
{
    char buf[INET_ADDRSTRLEN];
    const char *slash = strchr(v, '/');
    unsigned long len;
    size_t n;

    if (!slash || (n = (size_t)(slash - v)) == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, v, n);
    buf[n] = '\0';
    /* At least 32 addresses: .2 (host), .3 (DNS) and the 16 DHCP leases
     * from .15 must fit below the broadcast address. */
    if (inet_pton(AF_INET, buf, &s->net) != 1 || vio_uplink_parse_uint(slash + 1, 27, &len) < 0 ||
        len == 0)
        return -EINVAL;
    s->prefix = (unsigned)len;
    s->mask.s_addr = htonl(~0u << (32 - len));
    return 0;
}

static struct in_addr net_plus(const struct nat *s, uint32_t n)
{
    return (struct in_addr){htonl(ntohl(s->net.s_addr) + n)};
}

/* "[ADDR]:PORT" with an empty ADDR allowed; @text is modified. */
static int parse_endpoint(char *text, struct in_addr *addr, bool *any, uint16_t *port)
{
    char *colon = strrchr(text, ':');
    unsigned long p;

    if (!colon)
        return -EINVAL;
    *colon = '\0';
    if (vio_uplink_parse_uint(colon + 1, 65535, &p) < 0 || p == 0)
        return -EINVAL;
    *port = (uint16_t)p;
    *any = text[0] == '\0';
    if (*any)
        addr->s_addr = 0;
    else if (inet_pton(AF_INET, text, addr) != 1)
        return -EINVAL;
    return 0;
}

/* One rule, "tcp:HOSTIP:HOSTPORT-GUESTIP:GUESTPORT"; @rule is modified. */
static int parse_rule(struct nat *s, const char *spec, char *rule, struct hostfwd *f)
{
    char *colon = strchr(rule, ':'), *dash;
    bool any;
    uint32_t g, host_part;

    snprintf(f->text, sizeof(f->text), "%s", rule);
    if (!colon)
        goto bad;
    *colon = '\0';
    if (strcmp(rule, "tcp") == 0)
        f->udp = false;
    else if (strcmp(rule, "udp") == 0)
        f->udp = true;
    else
        goto bad;
    dash = strchr(colon + 1, '-');
    if (!dash)
        goto bad;
    *dash = '\0';
    if (parse_endpoint(colon + 1, &f->haddr, &any, &f->hport) < 0)
        goto bad;
    if (parse_endpoint(dash + 1, &f->gaddr, &any, &f->gport) < 0)
        goto bad;
    if (any)
        f->gaddr = s->dhcp;
    g = ntohl(f->gaddr.s_addr);
    host_part = g & ~ntohl(s->mask.s_addr);
    if ((f->gaddr.s_addr & s->mask.s_addr) != s->net.s_addr || host_part == 0 ||
        host_part == ~ntohl(s->mask.s_addr) || f->gaddr.s_addr == s->host.s_addr ||
        f->gaddr.s_addr == s->dns.s_addr) {
        char net[INET_ADDRSTRLEN];

        inet_ntop(AF_INET, &s->net, net, sizeof(net));
        vio_err("uplink '%s': hostfwd %s: the guest address must be a guest's address in "
                "%s/%u (not the gateway or DNS)",
                spec, f->text, net, s->prefix);
        return -EINVAL;
    }
    return 0;

bad:
    vio_err("uplink '%s': hostfwd rule '%s': expected tcp|udp:[HOSTIP]:HOSTPORT-[GUESTIP]:"
            "GUESTPORT, rules separated by ';'",
            spec, f->text);
    return -EINVAL;
}

static int parse_hostfwd(struct nat *s, const char *spec, const char *v)
{
    char *copy = strdup(v), *rule, *save = NULL;
    int ret = 0;

    if (!copy)
        return -ENOMEM;
    s->fwd = calloc(MAX_HOSTFWD, sizeof(*s->fwd));
    if (!s->fwd) {
        ret = -ENOMEM;
        goto out;
    }
    /* strtok_r would skip empty rules silently; an empty rule is a typo. */
    for (rule = copy;; rule = save) {
        save = strchr(rule, ';');
        if (save)
            *save++ = '\0';
        if (!*rule) {
            vio_err("uplink '%s': hostfwd has an empty rule (stray ';'?)", spec);
            ret = -EINVAL;
            goto out;
        }
        if (s->nfwd == MAX_HOSTFWD) {
            vio_err("uplink '%s': more than %d hostfwd rules", spec, MAX_HOSTFWD);
            ret = -EINVAL;
            goto out;
        }
        ret = parse_rule(s, spec, rule, &s->fwd[s->nfwd]);
        if (ret < 0)
            goto out;
        s->nfwd++;
        if (!save)
            break;
    }
out:
    free(copy);
    return ret;
}

static int nat_create(const struct vio_uplink_args *a, struct vio_opts *o, struct vio_uplink **out)
{
    const char *net = vio_opts_get(o, "net"), *fwd = vio_opts_get(o, "hostfwd");
    char err[160];
    struct nat *s;
    int ret;

    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->epfd = s->tick_fd = -1;
    s->rl = (struct vio_ratelimit)VIO_RATELIMIT_INIT;
    ret = -EINVAL;
    if (parse_net(s, net ? net : "10.0.2.0/24") < 0) {
        vio_err("uplink '%s': net=%s: expected A.B.C.D/LEN with LEN 1 to 27", a->spec, net);
        goto err;
    }
    if (s->net.s_addr & ~s->mask.s_addr) {
        struct in_addr fixed = {s->net.s_addr & s->mask.s_addr};
        char buf[INET_ADDRSTRLEN];

        inet_ntop(AF_INET, &fixed, buf, sizeof(buf));
        vio_err("uplink '%s': net=%s has host bits set (did you mean %s/%u?)", a->spec, net, buf,
                s->prefix);
        goto err;
    }
    s->host = net_plus(s, 2);
    s->dns = net_plus(s, 3);
    s->dhcp = net_plus(s, 15);
    if (vio_opts_bool(o, "restrict", false, &s->restricted, err, sizeof(err)) < 0) {
        vio_err("uplink '%s': %s", a->spec, err);
        goto err;
    }
    if (fwd) {
        ret = parse_hostfwd(s, a->spec, fwd);
        if (ret < 0)
            goto err_fwd;
    }
    ret = vio_uplink_check_unused(a, o);
    if (ret < 0)
        goto err_fwd;
    ret = vio_uplink_init(&s->up, &vio_slirp_uplink_ops, &nat_port_ops, a, 0);
    if (ret < 0)
        goto err_fwd;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (s->epfd < 0 || s->tick_fd < 0 || grow(s) < 0) {
        ret = -errno;
        vio_err("uplink '%s': cannot set up polling: %s", a->spec, strerror(-ret));
        goto err_fds;
    }
    *out = &s->up;
    return 0;

err_fds:
    if (s->epfd >= 0)
        close(s->epfd);
    if (s->tick_fd >= 0)
        close(s->tick_fd);
    free(s->pfd);
    free(s->want);
    free(s->reg);
    vio_uplink_release(&s->up);
err_fwd:
    free(s->fwd);
err:
    free(s);
    return ret;
}

/* ---- Life cycle on the switch loop. ---- */

static void nat_stop(struct vio_uplink *u);

static int nat_start(struct vio_uplink *u)
{
    struct nat *s = vio_container_of(u, struct nat, up);
    SlirpConfig cfg = {
        .version = SLIRP_CONFIG_VERSION_MAX >= 4 ? 4 : SLIRP_CONFIG_VERSION_MAX,
        .restricted = s->restricted,
        .in_enabled = true,
        .vnetwork = s->net,
        .vnetmask = s->mask,
        .vhost = s->host,
        .vdhcp_start = s->dhcp,
        .vnameserver = s->dns,
        /* 10.0.2.2 is the host's loopback: the documented way in. */
        .disable_host_loopback = false,
    };
    int ret;

    ret = vio_loop_add(u->loop, &s->ep_h, s->epfd, EPOLLIN, on_sockets);
    if (ret == 0) {
        ret = vio_loop_add(u->loop, &s->tick_h, s->tick_fd, EPOLLIN, on_tick);
        if (ret < 0)
            vio_loop_del(u->loop, &s->ep_h);
    }
    if (ret < 0) {
        vio_err("slirp %s: cannot watch its fds: %s", u->port.id, strerror(-ret));
        return ret;
    }
    s->watching = true;
    s->slirp = slirp_new(&cfg, &callbacks, s);
    if (!s->slirp) {
        vio_err("slirp %s: libslirp %s refused its configuration", u->port.id,
                slirp_version_string());
        ret = -EINVAL;
        goto err;
    }
    for (unsigned i = 0; i < s->nfwd; i++) {
        struct hostfwd *f = &s->fwd[i];

        errno = 0;
        if (slirp_add_hostfwd(s->slirp, f->udp, f->haddr, f->hport, f->gaddr, f->gport) < 0) {
            ret = errno ? -errno : -EADDRINUSE;
            vio_err("slirp %s: hostfwd %s: cannot listen on the host port: %s%s", u->port.id,
                    f->text, strerror(-ret),
                    ret == -EADDRINUSE      ? " (in use by another program?)"
                    : ret == -EADDRNOTAVAIL ? " (not an address of this host)"
                    : ret == -EACCES        ? " (ports below 1024 need privileges)"
                                            : "");
            goto err;
        }
    }
    refill(s);
    return 0;

err:
    nat_stop(u);
    return ret;
}

static void nat_stop(struct vio_uplink *u)
{
    struct nat *s = vio_container_of(u, struct nat, up);

    if (s->slirp) {
        s->depth++;
        slirp_cleanup(s->slirp);
        s->depth--;
        s->slirp = NULL;
    }
    while (s->timers)
        cb_timer_free(s->timers, s);
    if (s->watching) {
        vio_loop_del(u->loop, &s->ep_h);
        vio_loop_del(u->loop, &s->tick_h);
        s->watching = false;
    }
    for (unsigned i = 0; i < s->npending; i++)
        free(s->pending[i].data);
    s->npending = 0;
    s->npfd = s->nreg = 0;
}

static void nat_free(struct vio_uplink *u)
{
    struct nat *s = vio_container_of(u, struct nat, up);

    close(s->epfd);
    close(s->tick_fd);
    free(s->pfd);
    free(s->want);
    free(s->reg);
    free(s->fwd);
    vio_uplink_release(u);
    free(s);
}

const struct vio_uplink_ops vio_slirp_uplink_ops = {
    .type = "slirp",
    .create = nat_create,
    .start = nat_start,
    .stop = nat_stop,
    .free = nat_free,
};
