/* vhost-user back-end protocol handling (QEMU docs/interop/vhost-user.rst).
 * Every message is checked against a table (payload size, fd count, the
 * protocol feature it needs) before its handler sees it; handlers then check
 * values (ring index, sizes, addresses). Anything that changes what a running
 * queue uses (memory table, features, ring geometry, kick fd) first stops the
 * affected queues, which drains their in-flight requests, applies the
 * change, and restarts them. */
#include "vhost/vu_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "vhost/vu_msg.h"

/* Messages handled per wake-up of one connection, so one busy front-end
 * cannot starve the others on the control loop. */
#define VU_MSGS_PER_WAKE 64

#define VU_SUPPORTED_PF                                                                            \
    (VIO_BIT(VU_PF_MQ) | VIO_BIT(VU_PF_REPLY_ACK) | VIO_BIT(VU_PF_CONFIG) |                        \
     VIO_BIT(VU_PF_RESET_DEVICE) | VIO_BIT(VU_PF_CONFIGURE_MEM_SLOTS) | VIO_BIT(VU_PF_STATUS))

struct vu_ring {
    uint64_t desc_uva, avail_uva, used_uva;
    bool addr_set;
    int kick_fd, call_fd, err_fd;
    bool was_running; /* set while quiesced */
};

struct vio_vu_backend {
    struct vio_dev *dev;
    struct vio_loop *loop;
    char *path;
    int listen_fd;
    struct vio_handler listen_h;
    int conn_fd;
    struct vio_handler conn_h;
    struct vu_reader rd;
    uint64_t features;          /* acked by the front-end */
    uint64_t protocol_features; /* acked by the front-end */
    bool pf_negotiated;         /* SET_PROTOCOL_FEATURES seen */
    /* ADD_MEM_REG of a region already mapped: QEMU's multi-queue net sends
     * each region once per queue pair on one connection. Counted here so
     * the region goes only with its last REM_MEM_REG. */
    unsigned mem_extra_refs[VIO_GMEM_MAX_REGIONS];
    uint8_t status;
    struct vio_gmem mem;
    struct vu_ring *rings; /* [dev->num_queues] */
    unsigned connections;
    unsigned drops;
    char last_drop[160];
};

/* A handler fills @reply and returns 1 when the request has its own reply
 * body, 0 on success without one, or -errno. */
typedef int (*vu_handler_fn)(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply);

struct vu_request_desc {
    vu_handler_fn fn;
    uint32_t min_size, max_size; /* payload bytes */
    uint8_t min_fds, max_fds;
    int8_t need_pf; /* protocol feature the request needs, or -1 */
};

static uint64_t offered_features(struct vio_vu_backend *b)
{
    return b->dev->ops->features(b->dev) | VIO_BIT(VIO_F_VERSION_1) |
           VIO_BIT(VIO_F_INDIRECT_DESC) | VIO_BIT(VIO_F_EVENT_IDX) |
           VIO_BIT(VU_F_PROTOCOL_FEATURES);
}

static bool has_pf(const struct vio_vu_backend *b, unsigned bit)
{
    return b->protocol_features & VIO_BIT(bit);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Take fd @i of @m: the message no longer closes it. */
static int take_fd(struct vu_msg *m, unsigned i)
{
    int fd = m->fds[i];

    m->fds[i] = -1;
    return fd;
}

static int ring_start(struct vio_vu_backend *b, unsigned i)
{
    struct vu_ring *r = &b->rings[i];
    struct vio_dev_queue *q = &b->dev->queues[i];
    struct vio_vq *vq = &q->vq;
    int ret;

    if (r->kick_fd < 0 || !r->addr_set || b->mem.nregions == 0) {
        vio_warn("%s: cannot start queue %u: %s", b->dev->id, i,
                 r->kick_fd < 0 ? "no kick fd" : !r->addr_set ? "no ring addresses" : "no memory");
        return -EINVAL;
    }
    if (vio_gmem_uva_to_gpa(&b->mem, r->desc_uva, &vq->desc_gpa) < 0 ||
        vio_gmem_uva_to_gpa(&b->mem, r->avail_uva, &vq->avail_gpa) < 0 ||
        vio_gmem_uva_to_gpa(&b->mem, r->used_uva, &vq->used_gpa) < 0) {
        vio_warn("%s: queue %u ring addresses desc=0x%llx avail=0x%llx used=0x%llx are not in "
                 "any memory region",
                 b->dev->id, i, (unsigned long long)r->desc_uva,
                 (unsigned long long)r->avail_uva, (unsigned long long)r->used_uva);
        return -EFAULT;
    }
    vq->event_idx = b->features & VIO_BIT(VIO_F_EVENT_IDX);
    vq->indirect = b->features & VIO_BIT(VIO_F_INDIRECT_DESC);
    vq->call_fd = r->call_fd;
    vq->err_fd = r->err_fd;
    /* Without protocol features a ring is enabled as soon as it starts. */
    if (!(b->features & VIO_BIT(VU_F_PROTOCOL_FEATURES)))
        q->enabled = true;
    ret = vio_dev_queue_start(b->dev, i, r->kick_fd);
    if (ret < 0)
        vio_warn("%s: queue %u did not start: %s", b->dev->id, i, strerror(-ret));
    return ret;
}

/* Stop every running queue and remember which ones ran. */
static void quiesce(struct vio_vu_backend *b)
{
    for (unsigned i = 0; i < b->dev->num_queues; i++) {
        if (b->dev->queues[i].running) {
            b->rings[i].was_running = true;
            vio_dev_queue_stop(b->dev, i);
        }
    }
}

/* Restart the queues quiesce() stopped. A queue that no longer validates
 * (its memory was removed) stays stopped, with a logged reason. */
static void resume(struct vio_vu_backend *b)
{
    for (unsigned i = 0; i < b->dev->num_queues; i++) {
        if (b->rings[i].was_running) {
            b->rings[i].was_running = false;
            ring_start(b, i);
        }
    }
}

static void reset_rings(struct vio_vu_backend *b)
{
    for (unsigned i = 0; i < b->dev->num_queues; i++) {
        struct vu_ring *r = &b->rings[i];
        struct vio_dev_queue *q = &b->dev->queues[i];

        vio_dev_queue_stop(b->dev, i);
        close_fd(&r->kick_fd);
        close_fd(&r->call_fd);
        close_fd(&r->err_fd);
        r->addr_set = false;
        r->was_running = false;
        q->enabled = false;
        vio_vq_init(&q->vq, (uint16_t)i, b->dev->max_queue_size, q->vq.name);
    }
}

static void reset_device(struct vio_vu_backend *b)
{
    reset_rings(b);
    if (b->dev->ops->reset)
        b->dev->ops->reset(b->dev);
    b->dev->features = 0;
    b->features = 0;
    b->status = 0;
}

static void disconnect(struct vio_vu_backend *b, const char *why)
{
    if (b->conn_fd < 0)
        return;
    reset_device(b);
    vio_gmem_clear(&b->mem);
    b->protocol_features = 0;
    b->pf_negotiated = false;
    memset(b->mem_extra_refs, 0, sizeof(b->mem_extra_refs));
    vio_loop_del(b->loop, &b->conn_h);
    close_fd(&b->conn_fd);
    vu_msg_close_fds(&b->rd.msg);
    vu_reader_init(&b->rd);
    vio_info("%s: front-end disconnected (%s); ready for the next one", b->dev->id, why);
}

/* ---- request handlers ---- */

static int reply_u64(struct vu_msg *reply, uint64_t v)
{
    reply->hdr.size = sizeof(uint64_t);
    reply->payload.u64 = v;
    return 1;
}

static int check_ring_index(struct vio_vu_backend *b, uint32_t index)
{
    if (index >= b->dev->num_queues) {
        vio_warn("%s: ring index %u out of range (%u queues)", b->dev->id, index,
                 b->dev->num_queues);
        return -EINVAL;
    }
    return 0;
}

static int h_get_features(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    (void)m;
    return reply_u64(reply, offered_features(b));
}

static int h_set_features(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    uint64_t v = m->payload.u64, extra = v & ~offered_features(b);

    (void)reply;
    if (extra) {
        vio_warn("%s: front-end acked features 0x%llx that were not offered", b->dev->id,
                 (unsigned long long)extra);
        return -EINVAL;
    }
    quiesce(b);
    b->features = v;
    b->dev->features = v;
    resume(b);
    return 0;
}

static int h_nop(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    (void)b;
    (void)m;
    (void)reply;
    return 0;
}

static int h_reset_owner(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    (void)m;
    (void)reply;
    /* Deprecated; the spec recommends treating it as "disable all rings". */
    for (unsigned i = 0; i < b->dev->num_queues; i++)
        vio_dev_queue_stop(b->dev, i);
    return 0;
}

static int h_get_protocol_features(struct vio_vu_backend *b, struct vu_msg *m,
                                   struct vu_msg *reply)
{
    (void)b;
    (void)m;
    return reply_u64(reply, VU_SUPPORTED_PF);
}

static int h_set_protocol_features(struct vio_vu_backend *b, struct vu_msg *m,
                                   struct vu_msg *reply)
{
    uint64_t v = m->payload.u64;

    (void)reply;
    if (v & ~VU_SUPPORTED_PF) {
        vio_warn("%s: front-end acked protocol features 0x%llx that were not offered",
                 b->dev->id, (unsigned long long)(v & ~VU_SUPPORTED_PF));
        return -EINVAL;
    }
    b->protocol_features = v;
    b->pf_negotiated = true;
    return 0;
}

static int h_set_mem_table(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    const struct vu_mem_table *t = &m->payload.mem;
    struct vio_gmem fresh;
    int ret;

    (void)reply;
    if (t->nregions == 0 || t->nregions > VU_MEM_TABLE_MAX_REGIONS ||
        m->hdr.size < 8 + t->nregions * sizeof(struct vu_mem_region) ||
        m->nfds != t->nregions) {
        vio_warn("%s: SET_MEM_TABLE with %u regions, %u bytes and %u fds is malformed",
                 b->dev->id, t->nregions, m->hdr.size, m->nfds);
        return -EINVAL;
    }
    /* Map the whole new table before touching the old one. */
    vio_gmem_init(&fresh);
    for (unsigned i = 0; i < t->nregions; i++) {
        const struct vu_mem_region *r = &t->regions[i];

        ret = vio_gmem_add_fd(&fresh, m->fds[i], r->gpa, r->size, r->uva, r->mmap_offset);
        if (ret < 0) {
            vio_warn("%s: memory region %u (gpa 0x%llx size 0x%llx offset 0x%llx) rejected: %s",
                     b->dev->id, i, (unsigned long long)r->gpa, (unsigned long long)r->size,
                     (unsigned long long)r->mmap_offset, strerror(-ret));
            vio_gmem_clear(&fresh);
            return ret;
        }
    }
    quiesce(b);
    vio_gmem_clear(&b->mem);
    b->mem = fresh;
    memset(b->mem_extra_refs, 0, sizeof(b->mem_extra_refs));
    resume(b);
    return 0;
}

static int h_add_mem_reg(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    const struct vu_mem_region *r = &m->payload.mem_single.region;
    int ret;

    (void)reply;
    for (unsigned i = 0; i < b->mem.nregions; i++) {
        const struct vio_gmem_region *g = &b->mem.regions[i];

        if (g->gpa == r->gpa && g->size == r->size && g->uva == r->uva) {
            b->mem_extra_refs[i]++;
            return 0;
        }
    }
    quiesce(b);
    ret = vio_gmem_add_fd(&b->mem, m->fds[0], r->gpa, r->size, r->uva, r->mmap_offset);
    resume(b);
    if (ret < 0)
        vio_warn("%s: memory region (gpa 0x%llx size 0x%llx) rejected: %s", b->dev->id,
                 (unsigned long long)r->gpa, (unsigned long long)r->size, strerror(-ret));
    return ret;
}

static int h_rem_mem_reg(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    const struct vu_mem_region *r = &m->payload.mem_single.region;
    int ret;

    (void)reply;
    for (unsigned i = 0; i < b->mem.nregions; i++) {
        const struct vio_gmem_region *g = &b->mem.regions[i];

        if (g->gpa == r->gpa && g->size == r->size && g->uva == r->uva) {
            unsigned last = b->mem.nregions - 1;

            if (b->mem_extra_refs[i]) {
                b->mem_extra_refs[i]--;
                return 0;
            }
            /* vio_gmem_remove moves the last region into the hole. */
            b->mem_extra_refs[i] = b->mem_extra_refs[last];
            b->mem_extra_refs[last] = 0;
            break;
        }
    }
    quiesce(b);
    ret = vio_gmem_remove(&b->mem, r->gpa, r->size, r->uva);
    resume(b);
    if (ret < 0)
        vio_warn("%s: no memory region gpa 0x%llx size 0x%llx to remove", b->dev->id,
                 (unsigned long long)r->gpa, (unsigned long long)r->size);
    return ret;
}

static int h_get_max_mem_slots(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    (void)b;
    (void)m;
    return reply_u64(reply, VIO_GMEM_MAX_REGIONS);
}

/* Apply @fn to ring @i with the ring stopped, restarting it if it ran. */
static int reconfigure_ring(struct vio_vu_backend *b, unsigned i,
                            int (*fn)(struct vio_vu_backend *b, unsigned i, struct vu_msg *m),
                            struct vu_msg *m)
{
    bool was = b->dev->queues[i].running;
    int ret;

    if (was)
        vio_dev_queue_stop(b->dev, i);
    ret = fn(b, i, m);
    if (was && b->rings[i].kick_fd >= 0) {
        int r2 = ring_start(b, i);

        if (ret == 0)
            ret = r2;
    }
    return ret;
}

static int apply_num(struct vio_vu_backend *b, unsigned i, struct vu_msg *m)
{
    uint32_t num = m->payload.state.num;
    struct vio_vq *vq = &b->dev->queues[i].vq;

    if (!vio_is_pow2(num) || num > vq->max_size) {
        vio_warn("%s: queue %u size %u is not a power of two <= %u", b->dev->id, i, num,
                 vq->max_size);
        return -EINVAL;
    }
    vq->size = (uint16_t)num;
    return 0;
}

static int apply_base(struct vio_vu_backend *b, unsigned i, struct vu_msg *m)
{
    uint32_t num = m->payload.state.num;

    if (num > UINT16_MAX) {
        vio_warn("%s: queue %u base %u does not fit a split ring", b->dev->id, i, num);
        return -EINVAL;
    }
    b->dev->queues[i].vq.last_avail_idx = (uint16_t)num;
    return 0;
}

static int apply_addr(struct vio_vu_backend *b, unsigned i, struct vu_msg *m)
{
    const struct vu_vring_addr *a = &m->payload.addr;
    struct vu_ring *r = &b->rings[i];

    r->desc_uva = a->desc;
    r->avail_uva = a->avail;
    r->used_uva = a->used;
    r->addr_set = true;
    return 0;
}

static int h_set_vring_num(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    (void)reply;
    if (check_ring_index(b, m->payload.state.index) < 0)
        return -EINVAL;
    return reconfigure_ring(b, m->payload.state.index, apply_num, m);
}

static int h_set_vring_base(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    (void)reply;
    if (check_ring_index(b, m->payload.state.index) < 0)
        return -EINVAL;
    return reconfigure_ring(b, m->payload.state.index, apply_base, m);
}

static int h_set_vring_addr(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    (void)reply;
    if (check_ring_index(b, m->payload.addr.index) < 0)
        return -EINVAL;
    return reconfigure_ring(b, m->payload.addr.index, apply_addr, m);
}

static int h_get_vring_base(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    uint32_t i = m->payload.state.index;
    struct vu_ring *r;

    if (check_ring_index(b, i) < 0)
        return -EINVAL;
    r = &b->rings[i];
    /* Stopping drains the queue: every request taken is back in the used
     * ring, so the base is exact. */
    vio_dev_queue_stop(b->dev, i);
    close_fd(&r->kick_fd);
    vio_dev_queue_set_call_fd(b->dev, i, -1);
    close_fd(&r->call_fd);
    reply->hdr.size = sizeof(struct vu_vring_state);
    reply->payload.state.index = i;
    reply->payload.state.num = b->dev->queues[i].vq.last_avail_idx;
    return 1;
}

/* Validate the u64 payload of SET_VRING_KICK/CALL/ERR; returns the ring
 * index and whether an fd came with it. */
static int vring_fd_arg(struct vio_vu_backend *b, struct vu_msg *m, unsigned *index, bool *has_fd)
{
    uint64_t v = m->payload.u64;

    if (v & ~(uint64_t)(VU_VRING_IDX_MASK | VU_VRING_NOFD)) {
        vio_warn("%s: %s payload 0x%llx has reserved bits set", b->dev->id,
                 vu_request_name(m->hdr.request), (unsigned long long)v);
        return -EINVAL;
    }
    *index = (unsigned)(v & VU_VRING_IDX_MASK);
    *has_fd = !(v & VU_VRING_NOFD);
    if (check_ring_index(b, *index) < 0)
        return -EINVAL;
    if (*has_fd != (m->nfds == 1)) {
        vio_warn("%s: %s for ring %u says %s fd but carries %u", b->dev->id,
                 vu_request_name(m->hdr.request), *index, *has_fd ? "an" : "no", m->nfds);
        return -EINVAL;
    }
    return 0;
}

static int h_set_vring_kick(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    unsigned i;
    bool has_fd;
    int ret = vring_fd_arg(b, m, &i, &has_fd);

    (void)reply;
    if (ret < 0)
        return ret;
    if (!has_fd) {
        vio_warn("%s: ring %u: polling without a kick fd is not supported", b->dev->id, i);
        return -ENOTSUP;
    }
    vio_dev_queue_stop(b->dev, i);
    close_fd(&b->rings[i].kick_fd);
    b->rings[i].kick_fd = take_fd(m, 0);
    /* The spec starts a ring on its first kick; starting now is the same,
     * since a start processes whatever is already available. */
    return ring_start(b, i);
}

static int h_set_vring_call(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    bool is_err = m->hdr.request == VU_SET_VRING_ERR;
    unsigned i;
    bool has_fd;
    int ret = vring_fd_arg(b, m, &i, &has_fd);
    int fd, *slot;

    (void)reply;
    if (ret < 0)
        return ret;
    fd = has_fd ? take_fd(m, 0) : -1;
    slot = is_err ? &b->rings[i].err_fd : &b->rings[i].call_fd;
    if (is_err)
        vio_dev_queue_set_err_fd(b->dev, i, fd);
    else
        vio_dev_queue_set_call_fd(b->dev, i, fd);
    close_fd(slot);
    *slot = fd;
    return 0;
}

static int h_get_queue_num(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    (void)m;
    return reply_u64(reply, b->dev->num_queues);
}

static int h_set_vring_enable(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    const struct vu_vring_state *s = &m->payload.state;

    (void)reply;
    if (check_ring_index(b, s->index) < 0)
        return -EINVAL;
    /* QEMU's net front-end enables rings once protocol features are
     * negotiated, before SET_FEATURES acks VHOST_USER_F_PROTOCOL_FEATURES. */
    if (s->num > 1 ||
        (!(b->features & VIO_BIT(VU_F_PROTOCOL_FEATURES)) && !b->pf_negotiated)) {
        vio_warn("%s: SET_VRING_ENABLE %u for ring %u %s", b->dev->id, s->num, s->index,
                 s->num > 1 ? "is not 0 or 1" : "without VHOST_USER_F_PROTOCOL_FEATURES");
        return -EINVAL;
    }
    vio_dev_queue_set_enabled(b->dev, s->index, s->num == 1);
    return 0;
}

static int h_get_config(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    const struct vu_config *c = &m->payload.config;
    uint32_t have = b->dev->ops->config_size(b->dev);

    reply->payload.config = (struct vu_config){.offset = c->offset, .size = c->size,
                                               .flags = c->flags};
    if (m->hdr.size != VU_CONFIG_HDR_SIZE + c->size || c->size > VU_MAX_CONFIG_SIZE ||
        c->offset > VU_MAX_CONFIG_SIZE - c->size) {
        vio_warn("%s: GET_CONFIG offset %u size %u (message %u bytes) is out of range",
                 b->dev->id, c->offset, c->size, m->hdr.size);
        reply->hdr.size = 0; /* an empty reply is the protocol's error */
        return 1;
    }
    /* Fields past our config space read as zero: features we lack. */
    if (c->offset < have)
        b->dev->ops->get_config(b->dev, c->offset, reply->payload.config.data,
                                VIO_MIN(c->size, have - c->offset));
    reply->hdr.size = VU_CONFIG_HDR_SIZE + c->size;
    return 1;
}

static int h_set_config(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    const struct vu_config *c = &m->payload.config;
    uint32_t have = b->dev->ops->config_size(b->dev);

    (void)reply;
    if (m->hdr.size != VU_CONFIG_HDR_SIZE + c->size || c->offset > have ||
        c->size > have - c->offset) {
        vio_warn("%s: SET_CONFIG offset %u size %u is out of range", b->dev->id, c->offset,
                 c->size);
        return -EINVAL;
    }
    if (c->flags == 1)
        return 0; /* live-migration restore: our config is derived, not stored */
    if (!b->dev->ops->set_config) {
        vio_warn("%s: SET_CONFIG offset %u: the config space is read-only", b->dev->id,
                 c->offset);
        return -EPERM;
    }
    return b->dev->ops->set_config(b->dev, c->offset, c->data, c->size);
}

static int h_reset_device(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    (void)m;
    (void)reply;
    reset_device(b);
    return 0;
}

static int h_set_status(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    (void)reply;
    if (m->payload.u64 > 0xff) {
        vio_warn("%s: SET_STATUS 0x%llx is not a status byte", b->dev->id,
                 (unsigned long long)m->payload.u64);
        return -EINVAL;
    }
    b->status = (uint8_t)m->payload.u64;
    return 0;
}

static int h_get_status(struct vio_vu_backend *b, struct vu_msg *m, struct vu_msg *reply)
{
    (void)m;
    return reply_u64(reply, b->status | (vio_dev_needs_reset(b->dev) ? VIO_STATUS_NEEDS_RESET : 0));
}

#define U64 sizeof(uint64_t), sizeof(uint64_t)
#define STATE sizeof(struct vu_vring_state), sizeof(struct vu_vring_state)
#define MEMREG sizeof(struct vu_mem_single), sizeof(struct vu_mem_single)

static const struct vu_request_desc requests[VU_REQUEST_MAX] = {
    [VU_GET_FEATURES] = {h_get_features, 0, 0, 0, 0, -1},
    [VU_SET_FEATURES] = {h_set_features, U64, 0, 0, -1},
    [VU_SET_OWNER] = {h_nop, 0, 0, 0, 0, -1},
    [VU_RESET_OWNER] = {h_reset_owner, 0, 0, 0, 0, -1},
    [VU_SET_MEM_TABLE] = {h_set_mem_table, 8 + sizeof(struct vu_mem_region),
                          sizeof(struct vu_mem_table), 1, VU_MEM_TABLE_MAX_REGIONS, -1},
    [VU_SET_VRING_NUM] = {h_set_vring_num, STATE, 0, 0, -1},
    [VU_SET_VRING_ADDR] = {h_set_vring_addr, sizeof(struct vu_vring_addr),
                           sizeof(struct vu_vring_addr), 0, 0, -1},
    [VU_SET_VRING_BASE] = {h_set_vring_base, STATE, 0, 0, -1},
    [VU_GET_VRING_BASE] = {h_get_vring_base, STATE, 0, 0, -1},
    [VU_SET_VRING_KICK] = {h_set_vring_kick, U64, 0, 1, -1},
    [VU_SET_VRING_CALL] = {h_set_vring_call, U64, 0, 1, -1},
    [VU_SET_VRING_ERR] = {h_set_vring_call, U64, 0, 1, -1},
    [VU_GET_PROTOCOL_FEATURES] = {h_get_protocol_features, 0, 0, 0, 0, -1},
    [VU_SET_PROTOCOL_FEATURES] = {h_set_protocol_features, U64, 0, 0, -1},
    [VU_GET_QUEUE_NUM] = {h_get_queue_num, 0, 0, 0, 0, VU_PF_MQ},
    [VU_SET_VRING_ENABLE] = {h_set_vring_enable, STATE, 0, 0, -1},
    [VU_GET_CONFIG] = {h_get_config, VU_CONFIG_HDR_SIZE, sizeof(struct vu_config), 0, 0,
                       VU_PF_CONFIG},
    [VU_SET_CONFIG] = {h_set_config, VU_CONFIG_HDR_SIZE, sizeof(struct vu_config), 0, 0,
                       VU_PF_CONFIG},
    [VU_RESET_DEVICE] = {h_reset_device, 0, 0, 0, 0, VU_PF_RESET_DEVICE},
    [VU_GET_MAX_MEM_SLOTS] = {h_get_max_mem_slots, 0, 0, 0, 0, VU_PF_CONFIGURE_MEM_SLOTS},
    [VU_ADD_MEM_REG] = {h_add_mem_reg, MEMREG, 1, 1, VU_PF_CONFIGURE_MEM_SLOTS},
    [VU_REM_MEM_REG] = {h_rem_mem_reg, MEMREG, 0, 1, VU_PF_CONFIGURE_MEM_SLOTS},
    [VU_SET_STATUS] = {h_set_status, U64, 0, 0, VU_PF_STATUS},
    [VU_GET_STATUS] = {h_get_status, 0, 0, 0, 0, VU_PF_STATUS},
};

/* Handle one message. Returns 0, or -errno when the connection must go
 * (with *why set). */
static int dispatch(struct vio_vu_backend *b, struct vu_msg *m, char *why, size_t why_len)
{
    uint32_t req = m->hdr.request;
    const char *name = vu_request_name(req);
    const struct vu_request_desc *d = req < VU_REQUEST_MAX ? &requests[req] : NULL;
    struct vu_msg reply;
    bool want_ack;
    int ret;

    vio_debug("%s: %s size %u fds %u", b->dev->id, name, m->hdr.size, m->nfds);
    if (!d || !d->fn) {
        snprintf(why, why_len, "unsupported request %u (%s)", req, name);
        return -ENOTSUP;
    }
    if (m->hdr.size < d->min_size || m->hdr.size > d->max_size) {
        snprintf(why, why_len, "%s with a %u-byte payload (expected %u..%u)", name, m->hdr.size,
                 d->min_size, d->max_size);
        return -EINVAL;
    }
    if (m->nfds < d->min_fds || m->nfds > d->max_fds) {
        snprintf(why, why_len, "%s with %u fds (expected %u..%u)", name, m->nfds, d->min_fds,
                 d->max_fds);
        return -EINVAL;
    }
    if (d->need_pf >= 0 && !has_pf(b, (unsigned)d->need_pf)) {
        snprintf(why, why_len, "%s without protocol feature %d negotiated", name, d->need_pf);
        return -EPROTO;
    }
    memset(&reply.hdr, 0, sizeof(reply.hdr));
    ret = d->fn(b, m, &reply);
    want_ack = (m->hdr.flags & VU_FLAG_NEED_REPLY) && has_pf(b, VU_PF_REPLY_ACK);
    if (ret == 1 || want_ack) {
        if (ret != 1)
            reply_u64(&reply, ret < 0 ? 1 : 0);
        reply.hdr.request = req;
        reply.hdr.flags = VU_VERSION | VU_FLAG_REPLY;
        if (b->conn_fd >= 0) {
            int err = vu_msg_send(b->conn_fd, &reply, NULL, 0);

            if (err < 0) {
                snprintf(why, why_len, "cannot send the %s reply: %s", name, strerror(-err));
                return err;
            }
        }
        return 0; /* an acknowledged failure keeps the connection */
    }
    if (ret < 0) {
        snprintf(why, why_len, "%s failed: %s", name, strerror(-ret));
        return ret;
    }
    return 0;
}

static void conn_handler(struct vio_handler *h, uint32_t events)
{
    struct vio_vu_backend *b = vio_container_of(h, struct vio_vu_backend, conn_h);

    char why[160] = "";

    (void)events;
    for (unsigned n = 0; n < VU_MSGS_PER_WAKE && b->conn_fd >= 0; n++) {
        int ret = vu_msg_recv(b->conn_fd, &b->rd);

        if (ret == 0)
            return;
        if (ret < 0) {
            if (ret == -ECONNRESET) {
                disconnect(b, "connection closed");
            } else {
                snprintf(why, sizeof(why), "bad message: %s",
                         ret == -EPIPE ? "connection closed in the middle of a message"
                                       : strerror(-ret));
                goto drop;
            }
            return;
        }
        ret = dispatch(b, &b->rd.msg, why, sizeof(why));
        vu_msg_close_fds(&b->rd.msg);
        vu_reader_init(&b->rd);
        if (ret < 0)
            goto drop;
    }
    return;

drop:
    b->drops++;
    snprintf(b->last_drop, sizeof(b->last_drop), "%s", why);
    vio_warn("%s: dropping front-end connection: %s", b->dev->id, why);
    disconnect(b, "protocol error");
}

static void listen_handler(struct vio_handler *h, uint32_t events)
{
    struct vio_vu_backend *b = vio_container_of(h, struct vio_vu_backend, listen_h);
    int fd, ret;

    (void)events;
    fd = accept4(b->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR)
            vio_warn("%s: accept on %s: %s", b->dev->id, b->path, strerror(errno));
        return;
    }
    if (b->conn_fd >= 0) {
        vio_warn("%s: refusing a second front-end on %s: one is already connected", b->dev->id,
                 b->path);
        close(fd);
        return;
    }
    vu_reader_init(&b->rd);
    ret = vio_loop_add(b->loop, &b->conn_h, fd, EPOLLIN, conn_handler);
    if (ret < 0) {
        vio_warn("%s: cannot watch the new connection: %s", b->dev->id, strerror(-ret));
        close(fd);
        return;
    }
    b->conn_fd = fd;
    b->connections++;
    vio_info("%s: front-end connected on %s", b->dev->id, b->path);
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, ret;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        vio_err("socket path %s is longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path));
    /* Replace a stale socket left by an earlier run, never another file. */
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            vio_err("%s exists and is not a socket; not replacing it", path);
            return -EEXIST;
        }
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
        ret = -errno;
        vio_err("cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return ret;
    }
    return fd;
}

int vio_vu_backend_create(struct vio_dev *dev, const char *socket_path, struct vio_loop *loop,
                          struct vio_vu_backend **out)
{
    struct vio_vu_backend *b = calloc(1, sizeof(*b));
    int ret;

    if (!b)
        return -ENOMEM;
    b->dev = dev;
    b->loop = loop;
    b->conn_fd = -1;
    vio_gmem_init(&b->mem);
    dev->mem = &b->mem;
    b->path = strdup(socket_path);
    b->rings = calloc(dev->num_queues, sizeof(*b->rings));
    if (!b->path || !b->rings) {
        ret = -ENOMEM;
        goto err;
    }
    for (unsigned i = 0; i < dev->num_queues; i++) {
        b->rings[i].kick_fd = -1;
        b->rings[i].call_fd = -1;
        b->rings[i].err_fd = -1;
    }
    ret = listen_unix(socket_path);
    if (ret < 0)
        goto err;
    b->listen_fd = ret;
    ret = vio_loop_add(loop, &b->listen_h, b->listen_fd, EPOLLIN, listen_handler);
    if (ret < 0)
        goto err_sock;
    *out = b;
    return 0;

err_sock:
    close(b->listen_fd);
    unlink(socket_path);
err:
    dev->mem = NULL;
    free(b->rings);
    free(b->path);
    free(b);
    return ret;
}

void vio_vu_backend_destroy(struct vio_vu_backend *b)
{
    if (!b)
        return;
    disconnect(b, "server shutting down");
    vio_loop_del(b->loop, &b->listen_h);
    close(b->listen_fd);
    unlink(b->path);
    b->dev->mem = NULL;
    free(b->rings);
    free(b->path);
    free(b);
}

json_t *vio_vu_backend_info(struct vio_vu_backend *b)
{
    char feat[24], pfeat[24];

    snprintf(feat, sizeof(feat), "0x%llx", (unsigned long long)b->features);
    snprintf(pfeat, sizeof(pfeat), "0x%llx", (unsigned long long)b->protocol_features);
    return json_pack("{s:s, s:b, s:i, s:i, s:s, s:s, s:s, s:i, s:i, s:b}", "socket", b->path,
                     "connected", b->conn_fd >= 0, "connections", (int)b->connections,
                     "dropped_connections", (int)b->drops, "last_drop_reason", b->last_drop,
                     "features", feat, "protocol_features", pfeat, "status", (int)b->status,
                     "memory_regions", (int)b->mem.nregions, "needs_reset",
                     vio_dev_needs_reset(b->dev));
}
