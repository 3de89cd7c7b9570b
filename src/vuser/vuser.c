/* virtio-user: driver-side split rings in a host process over vhost-user.
 * See vuser.h. The ring code is the driver's half of VIRTIO 1.x 2.7: we own
 * the descriptor table and the available ring, the device owns the used
 * ring; barriers pair with the device side in virtio/virtq.c. */
#include "vuser/vuser.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "vhost/vu_frontend.h"

struct vio_vuser {
    struct vio_vu_front *front;
    int mem_fd;
    uint8_t *mem;
    uint64_t mem_size;
    uint64_t mem_used;
    unsigned nqueues;
    uint64_t offered;
    uint64_t acked;
    struct vio_vuser_vq vq[VIO_VUSER_MAX_QUEUES];
};

static inline uint16_t ld16(const uint16_t *p)
{
    return vio_le16(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline void st16(uint16_t *p, uint16_t v)
{
    __atomic_store_n(p, vio_to_le16(v), __ATOMIC_RELAXED);
}

void *vio_vuser_alloc(struct vio_vuser *d, size_t len, size_t align, uint64_t *gpa)
{
    uint64_t off = (d->mem_used + align - 1) & ~(uint64_t)(align - 1);

    if (align == 0 || !vio_is_pow2(align) || off > d->mem_size || len > d->mem_size - off)
        return NULL;
    d->mem_used = off + len;
    *gpa = VIO_VUSER_GPA_BASE + off;
    return d->mem + off;
}

void *vio_vuser_ptr(struct vio_vuser *d, uint64_t gpa, size_t len)
{
    if (gpa < VIO_VUSER_GPA_BASE)
        return NULL;
    uint64_t off = gpa - VIO_VUSER_GPA_BASE;
    if (off > d->mem_size || len > d->mem_size - off)
        return NULL;
    return d->mem + off;
}

static int vq_setup(struct vio_vuser *d, unsigned i, uint16_t size)
{
    struct vio_vuser_vq *q = &d->vq[i];
    uint64_t desc_gpa, avail_gpa, used_gpa;
    int ret;

    q->index = i;
    q->size = size;
    q->event_idx = d->acked & VIO_BIT(VIO_F_EVENT_IDX);
    q->kick_fd = q->call_fd = -1;
    q->desc = vio_vuser_alloc(d, vio_vring_desc_size(size), 4096, &desc_gpa);
    q->avail = vio_vuser_alloc(d, 6 + 2ull * size, 2, &avail_gpa);
    q->used = vio_vuser_alloc(d, 6 + 8ull * size, 4096, &used_gpa);
    if (!q->desc || !q->avail || !q->used) {
        vio_err("vio-user %u: shared memory too small for a ring of %u", i, size);
        return -ENOMEM;
    }
    q->used_event = &q->avail->ring[size];
    q->avail_event = (uint16_t *)&q->used->ring[size];
    q->chain_len = calloc(size, sizeof(*q->chain_len));
    q->cookie = calloc(size, sizeof(*q->cookie));
    if (!q->chain_len || !q->cookie)
        return -ENOMEM;
    for (uint16_t k = 0; k + 1 < size; k++)
        q->desc[k].next = vio_to_le16(k + 1);
    q->free_head = 0;
    q->num_free = size;
    q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    q->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->kick_fd < 0 || q->call_fd < 0)
        return -errno;
    ret = vio_vu_front_queue_start(d->front, i, size, desc_gpa, avail_gpa, used_gpa, 0,
                                   q->kick_fd, q->call_fd, -1);
    if (ret < 0)
        vio_err("vio-user: starting queue %u: %s", i, strerror(-ret));
    return ret;
}

int vio_vuser_open(const struct vio_vuser_opts *o, struct vio_vuser **out)
{
    struct vio_vuser *d;
    int ret;

    if (o->nqueues == 0 || o->nqueues > VIO_VUSER_MAX_QUEUES || !vio_is_pow2(o->qsize) ||
        o->qsize > VIO_VQ_MAX_SIZE || o->mem_bytes < 65536)
        return -EINVAL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->mem_fd = -1;
    for (unsigned i = 0; i < VIO_VUSER_MAX_QUEUES; i++)
        d->vq[i].kick_fd = d->vq[i].call_fd = -1;

    ret = vio_vu_front_connect(o->sock, &d->front);
    if (ret < 0)
        goto fail;
    d->offered = vio_vu_front_features(d->front);
    if (!(d->offered & VIO_BIT(VIO_F_VERSION_1))) {
        vio_err("vio-user %s: the device does not offer VIRTIO_F_VERSION_1", o->sock);
        ret = -EPROTONOSUPPORT;
        goto fail;
    }
    d->acked = (d->offered & o->want_features) | VIO_BIT(VIO_F_VERSION_1);
    if (o->event_idx)
        d->acked |= d->offered & VIO_BIT(VIO_F_EVENT_IDX);
    else
        d->acked &= ~VIO_BIT(VIO_F_EVENT_IDX);
    if (o->nqueues > vio_vu_front_num_queues(d->front)) {
        vio_err("vio-user %s: %u queues asked, the device has %u", o->sock, o->nqueues,
                vio_vu_front_num_queues(d->front));
        ret = -EINVAL;
        goto fail;
    }
    ret = vio_vu_front_set_features(d->front, d->acked);
    if (ret < 0)
        goto fail;

    d->mem_size = (o->mem_bytes + 0xfffff) & ~0xfffffull;
    d->mem_fd = memfd_create("vio-user", MFD_CLOEXEC);
    if (d->mem_fd < 0 || ftruncate(d->mem_fd, (off_t)d->mem_size) < 0) {
        ret = -errno;
        goto fail;
    }
    d->mem = mmap(NULL, d->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, d->mem_fd, 0);
    if (d->mem == MAP_FAILED) {
        d->mem = NULL;
        ret = -errno;
        goto fail;
    }
    struct vio_vu_mem_region r = {
        .fd = d->mem_fd, .gpa = VIO_VUSER_GPA_BASE, .size = d->mem_size, .hva = d->mem,
    };
    ret = vio_vu_front_set_mem_table(d->front, &r, 1);
    if (ret < 0)
        goto fail;
    d->nqueues = o->nqueues;
    for (unsigned i = 0; i < o->nqueues; i++) {
        ret = vq_setup(d, i, o->qsize);
        if (ret < 0)
            goto fail;
    }
    *out = d;
    return 0;
fail:
    vio_vuser_close(d);
    return ret;
}

void vio_vuser_close(struct vio_vuser *d)
{
    if (!d)
        return;
    for (unsigned i = 0; i < VIO_VUSER_MAX_QUEUES; i++) {
        struct vio_vuser_vq *q = &d->vq[i];
        if (d->front && i < d->nqueues && !vio_vu_front_broken(d->front))
            vio_vu_front_queue_stop(d->front, i, NULL);
        if (q->kick_fd >= 0)
            close(q->kick_fd);
        if (q->call_fd >= 0)
            close(q->call_fd);
        free(q->chain_len);
        free(q->cookie);
    }
    vio_vu_front_close(d->front);
    if (d->mem)
        munmap(d->mem, d->mem_size);
    if (d->mem_fd >= 0)
        close(d->mem_fd);
    free(d);
}

uint64_t vio_vuser_features(const struct vio_vuser *d)
{
    return d->acked;
}

uint64_t vio_vuser_offered(const struct vio_vuser *d)
{
    return d->offered;
}

unsigned vio_vuser_backend_queues(const struct vio_vuser *d)
{
    return vio_vu_front_num_queues(d->front);
}

int vio_vuser_fd(const struct vio_vuser *d)
{
    return vio_vu_front_fd(d->front);
}

int vio_vuser_get_config(struct vio_vuser *d, uint32_t off, void *buf, uint32_t len)
{
    return vio_vu_front_get_config(d->front, off, buf, len);
}

struct vio_vuser_vq *vio_vuser_vq(struct vio_vuser *d, unsigned i)
{
    return i < d->nqueues ? &d->vq[i] : NULL;
}

int vio_vuser_add(struct vio_vuser_vq *q, const struct vio_vuser_buf *b, unsigned n_out,
                  unsigned n_in, void *cookie)
{
    unsigned n = n_out + n_in;
    uint16_t head = q->free_head, i = head, last = head;

    if (n == 0)
        return -EINVAL;
    if (n > q->num_free)
        return -ENOSPC;
    for (unsigned k = 0; k < n; k++) {
        struct vio_vring_desc *d = &q->desc[i];
        d->addr = vio_to_le64(b[k].gpa);
        d->len = vio_to_le32(b[k].len);
        d->flags = vio_to_le16((k + 1 < n ? VIO_DESC_F_NEXT : 0) |
                               (k >= n_out ? VIO_DESC_F_WRITE : 0));
        last = i;
        i = vio_le16(d->next);
    }
    q->free_head = vio_le16(q->desc[last].next);
    q->num_free -= n;
    q->chain_len[head] = n;
    q->cookie[head] = cookie;
    st16(&q->avail->ring[q->avail_idx & (q->size - 1)], head);
    q->avail_idx++;
    return head;
}

void vio_vuser_kick(struct vio_vuser_vq *q)
{
    uint16_t old = q->kicked_idx, new = q->avail_idx;
    bool notify;

    if (old == new)
        return;
    /* Descriptors and ring entries before the index (pairs with the
     * device's acquire after it reads avail->idx). */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    st16(&q->avail->idx, new);
    /* Our idx store before we read whether the device wants a kick (pairs
     * with the device's full barrier after it publishes avail_event). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    q->kicked_idx = new;
    if (q->event_idx) {
        uint16_t ev = ld16(q->avail_event);
        notify = (uint16_t)(new - ev - 1) < (uint16_t)(new - old);
    } else {
        notify = !(ld16(&q->used->flags) & VIO_USED_F_NO_NOTIFY);
    }
    if (notify) {
        uint64_t one = 1;
        if (write(q->kick_fd, &one, sizeof(one)) == sizeof(one))
            q->kicks++;
    } else {
        q->kicks_saved++;
    }
}

int vio_vuser_get(struct vio_vuser_vq *q, uint32_t *len, void **cookie)
{
    if (ld16(&q->used->idx) == q->last_used)
        return 0;
    /* The used element after the index (pairs with the device's release). */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    const struct vio_vring_used_elem *e = &q->used->ring[q->last_used & (q->size - 1)];
    uint32_t id = vio_le32(e->id);
    if (id >= q->size || q->chain_len[id] == 0) {
        vio_err("vio-user queue %u: device returned bad head %u", q->index, id);
        q->last_used++;
        return -EIO;
    }
    *len = vio_le32(e->len);
    *cookie = q->cookie[id];
    /* Give the chain back to the free list. */
    uint16_t n = q->chain_len[id], last = (uint16_t)id;
    for (uint16_t k = 1; k < n; k++)
        last = vio_le16(q->desc[last].next);
    q->desc[last].next = vio_to_le16(q->free_head);
    q->free_head = (uint16_t)id;
    q->num_free += n;
    q->chain_len[id] = 0;
    q->last_used++;
    return 1;
}

void vio_vuser_set_interrupts(struct vio_vuser_vq *q, bool on)
{
    if (q->event_idx)
        st16(q->used_event, on ? q->last_used : (uint16_t)(q->last_used - 1));
    else
        st16(&q->avail->flags, on ? 0 : VIO_AVAIL_F_NO_INTERRUPT);
}

int vio_vuser_wait(struct vio_vuser_vq *q, int timeout_ms)
{
    uint64_t v;

    vio_vuser_set_interrupts(q, true);
    /* The request before the re-check (pairs with the device's barrier
     * between its used->idx store and its used_event read). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (ld16(&q->used->idx) != q->last_used)
        return 1;
    struct pollfd p = {.fd = q->call_fd, .events = POLLIN};
    q->waits++;
    int r = poll(&p, 1, timeout_ms);
    if (r < 0)
        return -errno;
    if (r == 0)
        return 0;
    if (read(q->call_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return -errno;
    return 1;
}
