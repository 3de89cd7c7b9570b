/* vhost-user front-end (see vu_frontend.h): blocking request/reply over the
 * back-end's Unix socket, on top of the shared message code in vu_msg.c.
 * Every request has a deadline; every reply is checked (reply flag, request
 * number, size, no fds) before a field of it is used, and any doubt about
 * the stream marks the connection broken rather than guessing. */
#include "vhost/vu_frontend.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "vhost/vu_msg.h"
#include "virtio/virtio.h"

/* Protocol features we use when offered. */
#define FRONT_WANTED_PF                                                                            \
    (VIO_BIT(VU_PF_MQ) | VIO_BIT(VU_PF_REPLY_ACK) | VIO_BIT(VU_PF_CONFIG) |                        \
     VIO_BIT(VU_PF_RESET_DEVICE))

/* SET_CONFIG flags value for a driver write (vs. a migration restore). */
#define FRONT_CONFIG_DRIVER_WRITE 0u

struct front_region {
    uint64_t gpa, size, uva;
};

struct vio_vu_front {
    int sock;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    unsigned timeout_ms;
    bool broken;
    uint64_t features;          /* offered, including VU_F_PROTOCOL_FEATURES */
    uint64_t protocol_features; /* negotiated */
    uint64_t acked;             /* virtio features set, without bit 30 */
    bool features_set;          /* SET_FEATURES done since connect or reset */
    unsigned num_queues;
    unsigned nregions;
    struct front_region regions[VIO_VU_FRONT_MAX_REGIONS];
    uint64_t started[VIO_VU_FRONT_MAX_QUEUES / 64]; /* queues we started, a bitmap */
};

static bool has_pf(const struct vio_vu_front *f, unsigned bit)
{
    return f->protocol_features & VIO_BIT(bit);
}

static void set_started(struct vio_vu_front *f, unsigned qi, bool on)
{
    if (on)
        f->started[qi / 64] |= VIO_BIT(qi % 64);
    else
        f->started[qi / 64] &= ~VIO_BIT(qi % 64);
}

static bool is_started(const struct vio_vu_front *f, unsigned qi)
{
    return f->started[qi / 64] & VIO_BIT(qi % 64);
}

/* Log a transport or protocol failure of @req, break the connection and
 * return @err. */
static int fail(struct vio_vu_front *f, uint32_t req, int err, const char *what)
{
    vio_warn("vhost-user %s: %s: %s (%s); the connection is now unusable, reconnect", f->path,
             vu_request_name(req), what, strerror(-err));
    f->broken = true;
    return err;
}

static int bad_reply(struct vio_vu_front *f, uint32_t req, const char *fmt, ...) VIO_PRINTF(3, 4);

/* A reply that breaks the protocol: log what was wrong, break the
 * connection, -EPROTO. */
static int bad_reply(struct vio_vu_front *f, uint32_t req, const char *fmt, ...)
{
    char why[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    vio_warn("vhost-user %s: %s: malformed reply: %s; the back-end is broken, reconnect", f->path,
             vu_request_name(req), why);
    f->broken = true;
    return -EPROTO;
}

/* Milliseconds left until @deadline (ns), at least 1 while any is left. */
static int ms_left(uint64_t deadline)
{
    uint64_t now = vio_now_ns();

    if (now >= deadline)
        return 0;
    return (int)VIO_MIN((deadline - now + 999999) / 1000000, (uint64_t)INT32_MAX);
}

/* Between requests the back-end has nothing to say: anything readable is
 * an end of stream or garbage, and it would be mistaken for the reply to the
 * next request. */
static int check_quiet(struct vio_vu_front *f, uint32_t req)
{
    struct pollfd p = {.fd = f->sock, .events = POLLIN};
    char c;
    ssize_t n;

    if (poll(&p, 1, 0) <= 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR)))
        return 0;
    n = recv(f->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return fail(f, req, n == 0 ? -ECONNRESET : -errno,
                    "the back-end closed the connection before the request");
    if (n > 0)
        return bad_reply(f, req, "the back-end sent data nobody asked for");
    return 0;
}

/* Receive one whole message before @deadline. */
static int recv_msg(struct vio_vu_front *f, uint32_t req, struct vu_msg *out, uint64_t deadline)
{
    struct vu_reader rd;

    vu_reader_init(&rd);
    for (;;) {
        struct pollfd p = {.fd = f->sock, .events = POLLIN};
        int ret = vu_msg_recv(f->sock, &rd), ms;

        if (ret == 1) {
            memcpy(out, &rd.msg, sizeof(*out));
            return 0;
        }
        if (ret == -ECONNRESET || ret == -EPIPE)
            return fail(f, req, ret, "the back-end closed the connection instead of replying");
        if (ret == -EPROTO || ret == -EMSGSIZE)
            return bad_reply(f, req, "%s",
                             ret == -EPROTO ? "bad version flags or file descriptors"
                                            : "payload larger than the protocol allows");
        if (ret < 0)
            return fail(f, req, ret, "cannot read the reply");
        ms = ms_left(deadline);
        if (ms == 0) {
            char what[64];

            snprintf(what, sizeof(what), "no reply within %u ms", f->timeout_ms);
            return fail(f, req, -ETIMEDOUT, what);
        }
        ret = poll(&p, 1, ms);
        if (ret < 0 && errno != EINTR)
            return fail(f, req, -errno, "cannot wait for the reply");
    }
}

/* Send request @req with @size payload bytes and @nfds fds. With @reply,
 * the request has a reply of its own: it is received into @reply and its
 * header checked (the caller checks the payload). Without, and with
 * REPLY_ACK negotiated, the request asks for an acknowledgement and
 * returns only once the back-end accepted it (-EREMOTEIO if it did not). */
static int transact(struct vio_vu_front *f, uint32_t req, const void *payload, uint32_t size,
                    const int *fds, unsigned nfds, struct vu_msg *reply)
{
    bool ack = !reply && has_pf(f, VU_PF_REPLY_ACK);
    uint64_t deadline = vio_now_ns() + (uint64_t)f->timeout_ms * 1000000ull;
    struct vu_msg m, tmp;
    int ret;

    if (f->broken) {
        vio_warn("vhost-user %s: %s: not sent, the connection broke earlier; reconnect", f->path,
                 vu_request_name(req));
        return -ENOTCONN;
    }
    ret = check_quiet(f, req);
    if (ret < 0)
        return ret;
    memset(&m.hdr, 0, sizeof(m.hdr));
    m.hdr.request = req;
    m.hdr.flags = VU_VERSION | (ack ? VU_FLAG_NEED_REPLY : 0);
    m.hdr.size = size;
    if (size)
        memcpy(m.payload.raw, payload, size);
    ret = vu_msg_send(f->sock, &m, fds, nfds);
    if (ret < 0)
        return fail(f, req, ret == -EAGAIN ? -ETIMEDOUT : ret, "cannot send the request");
    if (!reply && !ack)
        return 0;
    if (!reply)
        reply = &tmp;
    ret = recv_msg(f, req, reply, deadline);
    if (ret < 0)
        return ret;
    if (reply->nfds) {
        vu_msg_close_fds(reply);
        return bad_reply(f, req, "it carries file descriptors");
    }
    if (!(reply->hdr.flags & VU_FLAG_REPLY))
        return bad_reply(f, req, "the reply flag is not set (flags 0x%x)", reply->hdr.flags);
    if (reply->hdr.request != req)
        return bad_reply(f, req, "it answers request %u (%s)", reply->hdr.request,
                         vu_request_name(reply->hdr.request));
    if (!ack)
        return 0;
    if (reply->hdr.size != sizeof(uint64_t))
        return bad_reply(f, req, "the acknowledgement has %u bytes, not 8", reply->hdr.size);
    if (reply->payload.u64 != 0) {
        vio_warn("vhost-user %s: %s: the back-end refused the request (status %llu); see its log",
                 f->path, vu_request_name(req), (unsigned long long)reply->payload.u64);
        return -EREMOTEIO;
    }
    return 0;
}

/* A request whose reply is one u64 (GET_FEATURES and the like). */
static int get_u64(struct vio_vu_front *f, uint32_t req, uint64_t *out)
{
    struct vu_msg reply;
    int ret = transact(f, req, NULL, 0, NULL, 0, &reply);

    if (ret < 0)
        return ret;
    if (reply.hdr.size != sizeof(uint64_t))
        return bad_reply(f, req, "%u payload bytes instead of 8", reply.hdr.size);
    *out = reply.payload.u64;
    return 0;
}

static int send_u64(struct vio_vu_front *f, uint32_t req, uint64_t v, const int *fds, unsigned nfds)
{
    return transact(f, req, &v, sizeof(v), fds, nfds, NULL);
}

static int send_state(struct vio_vu_front *f, uint32_t req, unsigned qi, uint32_t num)
{
    struct vu_vring_state s = {.index = qi, .num = num};

    return transact(f, req, &s, sizeof(s), NULL, 0, NULL);
}

static int negotiate(struct vio_vu_front *f)
{
    uint64_t pf, queues;
    int ret;

    ret = get_u64(f, VU_GET_FEATURES, &f->features);
    if (ret < 0)
        return ret;
    if (!(f->features & VIO_BIT(VU_F_PROTOCOL_FEATURES))) {
        vio_err("vhost-user %s: the back-end does not offer VHOST_USER_F_PROTOCOL_FEATURES "
                "(features 0x%llx); vio needs it to enable rings and have requests "
                "acknowledged: use a newer back-end",
                f->path, (unsigned long long)f->features);
        return -EPROTONOSUPPORT;
    }
    ret = get_u64(f, VU_GET_PROTOCOL_FEATURES, &pf);
    if (ret < 0)
        return ret;
    pf &= FRONT_WANTED_PF;
    /* No ack for this one: REPLY_ACK is not in force until it is set. */
    ret = send_u64(f, VU_SET_PROTOCOL_FEATURES, pf, NULL, 0);
    if (ret < 0)
        return ret;
    f->protocol_features = pf;
    ret = transact(f, VU_SET_OWNER, NULL, 0, NULL, 0, NULL);
    if (ret < 0)
        return ret;
    f->num_queues = 1;
    if (has_pf(f, VU_PF_MQ)) {
        ret = get_u64(f, VU_GET_QUEUE_NUM, &queues);
        if (ret < 0)
            return ret;
        if (queues == 0)
            return bad_reply(f, VU_GET_QUEUE_NUM, "the back-end has 0 queues");
        if (queues > VIO_VU_FRONT_MAX_QUEUES) {
            vio_warn("vhost-user %s: the back-end has %llu queues; using the first %u", f->path,
                     (unsigned long long)queues, VIO_VU_FRONT_MAX_QUEUES);
            queues = VIO_VU_FRONT_MAX_QUEUES;
        }
        f->num_queues = (unsigned)queues;
    }
    vio_debug("vhost-user %s: connected: features 0x%llx, protocol features 0x%llx, %u queue(s)",
              f->path, (unsigned long long)f->features, (unsigned long long)pf, f->num_queues);
    return 0;
}

int vio_vu_front_connect_timeout(const char *path, unsigned timeout_ms, struct vio_vu_front **out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    struct vio_vu_front *f;
    int ret;

    if (!path || timeout_ms == 0)
        return -EINVAL;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        vio_err("vhost-user socket path %s is longer than %zu bytes", path,
                sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    memcpy(sa.sun_path, path, strlen(path));
    snprintf(f->path, sizeof(f->path), "%s", path);
    f->timeout_ms = timeout_ms;
    f->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->sock < 0) {
        ret = -errno;
        vio_err("vhost-user %s: cannot create a socket: %s", path, strerror(errno));
        goto err_free;
    }
    /* Bounds connect() (a back-end that never accepts, with a full
     * backlog) and every send; receives are bounded by poll(). */
    if (setsockopt(f->sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
        ret = -errno;
        vio_err("vhost-user %s: cannot set the socket timeout: %s", path, strerror(errno));
        goto err_close;
    }
    if (connect(f->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        ret = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
        vio_err("vhost-user %s: cannot connect: %s%s", path, strerror(-ret),
                ret == -ENOENT || ret == -ECONNREFUSED
                    ? " (is the back-end, e.g. vio serve or qemu-storage-daemon, running?)"
                    : "");
        goto err_close;
    }
    ret = negotiate(f);
    if (ret < 0) {
        vio_err("vhost-user %s: negotiation with the back-end failed: %s", path, strerror(-ret));
        goto err_close;
    }
    *out = f;
    return 0;

err_close:
    close(f->sock);
err_free:
    free(f);
    return ret;
}

int vio_vu_front_connect(const char *path, struct vio_vu_front **out)
{
    return vio_vu_front_connect_timeout(path, VIO_VU_FRONT_TIMEOUT_MS, out);
}

void vio_vu_front_set_timeout(struct vio_vu_front *f, unsigned timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};

    if (timeout_ms == 0)
        return;
    f->timeout_ms = timeout_ms;
    if (setsockopt(f->sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        vio_warn("vhost-user %s: cannot change the socket timeout: %s", f->path, strerror(errno));
}

uint64_t vio_vu_front_features(const struct vio_vu_front *f)
{
    return f->features & ~VIO_BIT(VU_F_PROTOCOL_FEATURES);
}

uint64_t vio_vu_front_protocol_features(const struct vio_vu_front *f)
{
    return f->protocol_features;
}

uint64_t vio_vu_front_acked_features(const struct vio_vu_front *f)
{
    return f->acked;
}

unsigned vio_vu_front_num_queues(const struct vio_vu_front *f)
{
    return f->num_queues;
}

int vio_vu_front_fd(const struct vio_vu_front *f)
{
    return f->sock;
}

bool vio_vu_front_broken(const struct vio_vu_front *f)
{
    return f->broken;
}

/* Config accesses are limited to the protocol's 256-byte window. */
static int check_config_range(struct vio_vu_front *f, uint32_t req, uint32_t off, uint32_t len)
{
    if (!has_pf(f, VU_PF_CONFIG)) {
        vio_warn("vhost-user %s: %s: the back-end did not offer the CONFIG protocol feature",
                 f->path, vu_request_name(req));
        return -ENOTSUP;
    }
    if (len == 0 || len > VU_MAX_CONFIG_SIZE || off > VU_MAX_CONFIG_SIZE - len) {
        vio_warn("vhost-user %s: %s: offset %u length %u is outside the %u-byte config space",
                 f->path, vu_request_name(req), off, len, VU_MAX_CONFIG_SIZE);
        return -EINVAL;
    }
    return 0;
}

int vio_vu_front_get_config(struct vio_vu_front *f, uint32_t off, void *buf, uint32_t len)
{
    struct vu_config c;
    struct vu_msg reply;
    uint32_t want;
    int ret = check_config_range(f, VU_GET_CONFIG, off, len);

    if (ret < 0)
        return ret;
    want = off + len;
    memset(&c, 0, sizeof(c));
    c.offset = 0;
    c.size = want;
    ret = transact(f, VU_GET_CONFIG, &c, VU_CONFIG_HDR_SIZE + want, NULL, 0, &reply);
    if (ret < 0)
        return ret;
    if (reply.hdr.size == 0) {
        vio_warn("vhost-user %s: GET_CONFIG of %u bytes: the back-end could not read its config "
                 "space (empty reply)",
                 f->path, want);
        return -EREMOTEIO;
    }
    if (reply.hdr.size != VU_CONFIG_HDR_SIZE + want)
        return bad_reply(f, VU_GET_CONFIG, "%u payload bytes for a %u-byte config read",
                         reply.hdr.size, want);
    if (reply.payload.config.offset != 0 || reply.payload.config.size != want)
        return bad_reply(f, VU_GET_CONFIG, "it describes offset %u size %u, not 0 and %u",
                         reply.payload.config.offset, reply.payload.config.size, want);
    memcpy(buf, reply.payload.config.data + off, len);
    return 0;
}

int vio_vu_front_set_config(struct vio_vu_front *f, uint32_t off, const void *buf, uint32_t len)
{
    struct vu_config c;
    int ret = check_config_range(f, VU_SET_CONFIG, off, len);

    if (ret < 0)
        return ret;
    memset(&c, 0, sizeof(c));
    c.offset = off;
    c.size = len;
    c.flags = FRONT_CONFIG_DRIVER_WRITE;
    memcpy(c.data, buf, len);
    return transact(f, VU_SET_CONFIG, &c, VU_CONFIG_HDR_SIZE + len, NULL, 0, NULL);
}

int vio_vu_front_set_features(struct vio_vu_front *f, uint64_t features)
{
    uint64_t extra = features & ~vio_vu_front_features(f);
    int ret;

    if (extra) {
        vio_warn("vhost-user %s: SET_FEATURES: features 0x%llx were not offered (offered 0x%llx)",
                 f->path, (unsigned long long)extra, (unsigned long long)vio_vu_front_features(f));
        return -EINVAL;
    }
    ret = send_u64(f, VU_SET_FEATURES, features | VIO_BIT(VU_F_PROTOCOL_FEATURES), NULL, 0);
    if (ret == 0) {
        f->acked = features;
        f->features_set = true;
    }
    return ret;
}

/* Overflow-safe: the last byte of a non-empty range, or false if it wraps. */
static bool range_last(uint64_t start, uint64_t size, uint64_t *last)
{
    if (size == 0 || size - 1 > UINT64_MAX - start)
        return false;
    *last = start + (size - 1);
    return true;
}

static bool overlap(uint64_t a, uint64_t a_last, uint64_t b, uint64_t b_last)
{
    return a <= b_last && b <= a_last;
}

int vio_vu_front_set_mem_table(struct vio_vu_front *f, const struct vio_vu_mem_region *r,
                               unsigned n)
{
    struct vu_mem_table t;
    int fds[VIO_VU_FRONT_MAX_REGIONS];
    int ret;

    if (!r || n == 0 || n > VIO_VU_FRONT_MAX_REGIONS) {
        vio_warn("vhost-user %s: SET_MEM_TABLE: %u regions (1..%u allowed)", f->path, n,
                 VIO_VU_FRONT_MAX_REGIONS);
        return -EINVAL;
    }
    memset(&t, 0, sizeof(t));
    t.nregions = n;
    for (unsigned i = 0; i < n; i++) {
        uint64_t uva = (uint64_t)(uintptr_t)r[i].hva, last, ulast;

        if (r[i].fd < 0 || !r[i].hva || !range_last(r[i].gpa, r[i].size, &last) ||
            !range_last(uva, r[i].size, &ulast)) {
            vio_warn("vhost-user %s: SET_MEM_TABLE: region %u (fd %d gpa 0x%llx size 0x%llx hva "
                     "%p) is empty, wraps around or has no fd or mapping",
                     f->path, i, r[i].fd, (unsigned long long)r[i].gpa,
                     (unsigned long long)r[i].size, r[i].hva);
            return -EINVAL;
        }
        for (unsigned j = 0; j < i; j++) {
            uint64_t jlast = t.regions[j].gpa + (t.regions[j].size - 1);
            uint64_t julast = t.regions[j].uva + (t.regions[j].size - 1);

            if (overlap(r[i].gpa, last, t.regions[j].gpa, jlast) ||
                overlap(uva, ulast, t.regions[j].uva, julast)) {
                vio_warn("vhost-user %s: SET_MEM_TABLE: regions %u and %u overlap", f->path, j, i);
                return -EINVAL;
            }
        }
        t.regions[i] = (struct vu_mem_region){
            .gpa = r[i].gpa, .size = r[i].size, .uva = uva, .mmap_offset = r[i].fd_offset};
        fds[i] = r[i].fd;
    }
    ret = transact(f, VU_SET_MEM_TABLE, &t, 8 + n * (uint32_t)sizeof(struct vu_mem_region), fds, n,
                   NULL);
    if (ret < 0)
        return ret;
    for (unsigned i = 0; i < n; i++)
        f->regions[i] =
            (struct front_region){t.regions[i].gpa, t.regions[i].size, t.regions[i].uva};
    f->nregions = n;
    return 0;
}

/* Our user address for [gpa, gpa+len), which must lie in one region. */
static int gpa_to_uva(const struct vio_vu_front *f, uint64_t gpa, uint64_t len, uint64_t *uva)
{
    for (unsigned i = 0; i < f->nregions; i++) {
        const struct front_region *r = &f->regions[i];
        uint64_t off;

        if (gpa < r->gpa)
            continue;
        off = gpa - r->gpa;
        if (off >= r->size || len > r->size - off)
            continue;
        *uva = r->uva + off;
        return 0;
    }
    return -EFAULT;
}

static int check_queue(struct vio_vu_front *f, uint32_t req, unsigned qi)
{
    if (qi >= f->num_queues) {
        vio_warn("vhost-user %s: %s: queue %u does not exist (the back-end has %u)", f->path,
                 vu_request_name(req), qi, f->num_queues);
        return -EINVAL;
    }
    return 0;
}

static uint64_t vring_fd_payload(unsigned qi, int fd)
{
    return (uint64_t)qi | (fd < 0 ? VU_VRING_NOFD : 0);
}

static int send_vring_fd(struct vio_vu_front *f, uint32_t req, unsigned qi, int fd)
{
    return send_u64(f, req, vring_fd_payload(qi, fd), fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
}

int vio_vu_front_queue_start(struct vio_vu_front *f, unsigned qi, uint16_t size, uint64_t desc_gpa,
                             uint64_t avail_gpa, uint64_t used_gpa, uint16_t base, int kick_fd,
                             int call_fd, int err_fd)
{
    struct vu_vring_addr a = {.index = qi};
    uint64_t desc, avail, used;
    int ret = check_queue(f, VU_SET_VRING_NUM, qi);

    if (ret < 0)
        return ret;
    /* Rings can be enabled only once VHOST_USER_F_PROTOCOL_FEATURES is
     * acked, which SET_FEATURES does. */
    if (!f->features_set) {
        vio_warn("vhost-user %s: queue %u: features must be set (vio_vu_front_set_features) "
                 "before a queue starts",
                 f->path, qi);
        return -EINVAL;
    }
    if (!vio_is_pow2(size) || kick_fd < 0 || (desc_gpa & 15) || (avail_gpa & 1) || (used_gpa & 3)) {
        vio_warn("vhost-user %s: queue %u: size %u must be a power of two, the rings aligned "
                 "(desc 0x%llx to 16, avail 0x%llx to 2, used 0x%llx to 4) and a kick fd given",
                 f->path, qi, size, (unsigned long long)desc_gpa, (unsigned long long)avail_gpa,
                 (unsigned long long)used_gpa);
        return -EINVAL;
    }
    if (gpa_to_uva(f, desc_gpa, vio_vring_desc_size(size), &desc) < 0 ||
        gpa_to_uva(f, avail_gpa, vio_vring_avail_size(size), &avail) < 0 ||
        gpa_to_uva(f, used_gpa, vio_vring_used_size(size), &used) < 0) {
        vio_warn("vhost-user %s: queue %u: rings desc 0x%llx avail 0x%llx used 0x%llx (size %u) "
                 "are not each inside one region of the memory table (%u regions)",
                 f->path, qi, (unsigned long long)desc_gpa, (unsigned long long)avail_gpa,
                 (unsigned long long)used_gpa, size, f->nregions);
        return -EFAULT;
    }
    a.desc = desc;
    a.avail = avail;
    a.used = used;
    /* From the first message on the back-end may hold ring state: a reset
     * must stop this queue even if a later step fails. */
    set_started(f, qi, true);
    if ((ret = send_state(f, VU_SET_VRING_NUM, qi, size)) < 0 ||
        (ret = send_state(f, VU_SET_VRING_BASE, qi, base)) < 0 ||
        (ret = transact(f, VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0, NULL)) < 0 ||
        (ret = send_vring_fd(f, VU_SET_VRING_CALL, qi, call_fd)) < 0 ||
        (err_fd >= 0 && (ret = send_vring_fd(f, VU_SET_VRING_ERR, qi, err_fd)) < 0) ||
        (ret = send_vring_fd(f, VU_SET_VRING_KICK, qi, kick_fd)) < 0 ||
        (ret = send_state(f, VU_SET_VRING_ENABLE, qi, 1)) < 0)
        vio_warn("vhost-user %s: queue %u did not start: %s", f->path, qi, strerror(-ret));
    return ret;
}

int vio_vu_front_queue_stop(struct vio_vu_front *f, unsigned qi, uint16_t *base)
{
    struct vu_vring_state s = {.index = qi};
    struct vu_msg reply;
    int ret = check_queue(f, VU_GET_VRING_BASE, qi), ret2;

    if (ret < 0)
        return ret;
    /* A refused disable is not fatal: GET_VRING_BASE is what stops the
     * ring, so it is sent regardless. */
    ret = send_state(f, VU_SET_VRING_ENABLE, qi, 0);
    if (f->broken)
        return ret;
    ret2 = transact(f, VU_GET_VRING_BASE, &s, sizeof(s), NULL, 0, &reply);
    if (ret2 < 0)
        return ret2;
    if (reply.hdr.size != sizeof(struct vu_vring_state))
        return bad_reply(f, VU_GET_VRING_BASE, "%u payload bytes instead of %zu", reply.hdr.size,
                         sizeof(struct vu_vring_state));
    if (reply.payload.state.index != qi || reply.payload.state.num > UINT16_MAX)
        return bad_reply(f, VU_GET_VRING_BASE, "ring %u base %u for a request about ring %u",
                         reply.payload.state.index, reply.payload.state.num, qi);
    set_started(f, qi, false);
    if (base)
        *base = (uint16_t)reply.payload.state.num;
    return ret;
}

int vio_vu_front_set_call_fd(struct vio_vu_front *f, unsigned qi, int call_fd)
{
    int ret = check_queue(f, VU_SET_VRING_CALL, qi);

    if (ret < 0)
        return ret;
    return send_vring_fd(f, VU_SET_VRING_CALL, qi, call_fd);
}

int vio_vu_front_reset(struct vio_vu_front *f)
{
    int ret = 0;

    if (has_pf(f, VU_PF_RESET_DEVICE)) {
        ret = transact(f, VU_RESET_DEVICE, NULL, 0, NULL, 0, NULL);
        if (ret == 0)
            memset(f->started, 0, sizeof(f->started));
    } else {
        for (unsigned qi = 0; qi < f->num_queues; qi++) {
            int r;

            if (!is_started(f, qi))
                continue;
            r = vio_vu_front_queue_stop(f, qi, NULL);
            if (r < 0 && ret == 0)
                ret = r;
            if (f->broken)
                break;
        }
    }
    if (ret == 0) {
        f->acked = 0;
        f->features_set = false;
    }
    return ret;
}

void vio_vu_front_close(struct vio_vu_front *f)
{
    if (!f)
        return;
    close(f->sock);
    free(f);
}
