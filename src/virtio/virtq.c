/* Split-virtqueue implementation (VIRTIO 1.2, 2.7) with every rule checked:
 * avail index jumps, head and next bounds, chain length (loops), indirect
 * tables (feature, length, nesting, placement), readable-before-writable and
 * buffer addresses, which are translated through the guest memory map and
 * split where a buffer spans adjacent regions. Descriptors are copied into
 * locals once and only the copies are used. */
#include "virtio/virtq.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"

/* Compiler barrier: values copied out of shared guest memory before this
 * point are not re-read from it afterwards. */
#define vq_compiler_barrier() __asm__ __volatile__("" ::: "memory")

static inline uint16_t ring_load16(const uint16_t *p)
{
    return vio_le16(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline void ring_store16(uint16_t *p, uint16_t v)
{
    __atomic_store_n(p, vio_to_le16(v), __ATOMIC_RELAXED);
}

static inline uint16_t *used_event_ptr(struct vio_vq *vq)
{
    return &vq->avail->ring[vq->size];
}

static inline uint16_t *avail_event_ptr(struct vio_vq *vq)
{
    return (uint16_t *)&vq->used->ring[vq->size];
}

void vio_vq_init(struct vio_vq *vq, uint16_t index, uint16_t max_size, const char *name)
{
    struct vio_vq_elem *elems = vq->elems;
    struct iovec *pool = vq->iov_pool;
    uint16_t alloc_size = vq->alloc_size, max_iov = vq->max_iov;
    char saved_name[sizeof(vq->name)];

    snprintf(saved_name, sizeof(saved_name), "%s", name); /* name may be vq->name */
    memset(vq, 0, sizeof(*vq));
    /* A re-init keeps the pools; vio_vq_free releases them. */
    vq->elems = elems;
    vq->iov_pool = pool;
    vq->alloc_size = alloc_size;
    vq->max_iov = max_iov;
    vq->index = index;
    vq->max_size = max_size;
    vq->call_fd = -1;
    vq->err_fd = -1;
    vq->fault_rl = (struct vio_ratelimit)VIO_RATELIMIT_INIT;
    memcpy(vq->name, saved_name, sizeof(vq->name));
}

void vio_vq_fault(struct vio_vq *vq, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    vq->broken = true;
    if (vio_ratelimit_ok(&vq->fault_rl)) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        vio_warn("%s: guest error, queue needs reset: %s", vq->name, msg);
    }
    vio_eventfd_signal(vq->err_fd);
}

static int alloc_pool(struct vio_vq *vq, uint16_t max_iov)
{
    struct vio_vq_elem *elems;
    struct iovec *pool;

    if (vq->elems && vq->alloc_size == vq->size && vq->max_iov == max_iov)
        return 0;
    elems = calloc(vq->size, sizeof(*elems));
    pool = calloc((size_t)vq->size * max_iov, sizeof(*pool));
    if (!elems || !pool) {
        free(elems);
        free(pool);
        return -ENOMEM;
    }
    vio_vq_free(vq);
    vq->elems = elems;
    vq->iov_pool = pool;
    vq->alloc_size = vq->size;
    vq->max_iov = max_iov;
    for (unsigned i = 0; i < vq->size; i++)
        elems[i].iov = pool + (size_t)i * max_iov;
    return 0;
}

int vio_vq_start(struct vio_vq *vq, const struct vio_gmem *mem, uint16_t max_iov)
{
    uint16_t n = vq->size;
    int ret;

    if (!vio_is_pow2(n) || n > vq->max_size) {
        vio_warn("%s: queue size %u is not a power of two <= %u", vq->name, n, vq->max_size);
        return -EINVAL;
    }
    if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3)) {
        vio_warn("%s: misaligned rings desc=0x%llx avail=0x%llx used=0x%llx", vq->name,
                 (unsigned long long)vq->desc_gpa, (unsigned long long)vq->avail_gpa,
                 (unsigned long long)vq->used_gpa);
        return -EINVAL;
    }
    vq->desc = vio_gmem_map(mem, vq->desc_gpa, vio_vring_desc_size(n));
    vq->avail = vio_gmem_map(mem, vq->avail_gpa, vio_vring_avail_size(n));
    vq->used = vio_gmem_map(mem, vq->used_gpa, vio_vring_used_size(n));
    if (!vq->desc || !vq->avail || !vq->used) {
        vio_warn("%s: rings not inside guest memory desc=0x%llx avail=0x%llx used=0x%llx size=%u",
                 vq->name, (unsigned long long)vq->desc_gpa, (unsigned long long)vq->avail_gpa,
                 (unsigned long long)vq->used_gpa, n);
        ret = -EFAULT;
        goto err;
    }
    if (max_iov == 0) {
        ret = -EINVAL;
        goto err;
    }
    ret = alloc_pool(vq, max_iov);
    if (ret < 0)
        goto err;
    for (unsigned i = 0; i < n; i++)
        vq->elems[i].inflight = false;
    vq->mem = mem;
    vq->shadow_avail_idx = vq->last_avail_idx;
    vq->used_idx = ring_load16(&vq->used->idx);
    vq->used_published = vq->used_idx;
    /* Nothing new yet: no interrupt until something is used. The first
     * one after a start is always sent (the driver's state is unknown). */
    vq->signalled_used = vq->used_idx;
    vq->signalled_used_valid = false;
    vq->notify_owed = false;
    vq->inflight = 0;
    vq->broken = false;
    return 0;

err:
    vq->desc = NULL;
    vq->avail = NULL;
    vq->used = NULL;
    return ret;
}

void vio_vq_stop(struct vio_vq *vq)
{
    vq->desc = NULL;
    vq->avail = NULL;
    vq->used = NULL;
    vq->mem = NULL;
}

void vio_vq_free(struct vio_vq *vq)
{
    free(vq->elems);
    free(vq->iov_pool);
    vq->elems = NULL;
    vq->iov_pool = NULL;
    vq->alloc_size = 0;
}

static void read_desc(const struct vio_vring_desc *src, struct vio_vring_desc *d)
{
    /* memcpy: indirect tables need not be aligned. */
    memcpy(d, src, sizeof(*d));
    vq_compiler_barrier();
    d->addr = vio_le64(d->addr);
    d->len = vio_le32(d->len);
    d->flags = vio_le16(d->flags);
    d->next = vio_le16(d->next);
}

/* Append guest buffer [addr, addr+len) to @e, split at region boundaries. */
static int map_buffer(struct vio_vq *vq, struct vio_vq_elem *e, unsigned *niov, uint64_t addr,
                      uint32_t len)
{
    uint64_t left = len, start = addr;

    while (left) {
        uint64_t n = left;
        void *p;

        if (*niov >= vq->max_iov) {
            vio_vq_fault(vq, "request at head %u needs more than %u buffers", e->id, vq->max_iov);
            return -E2BIG;
        }
        p = vio_gmem_xlate(vq->mem, addr, &n);
        if (!p) {
            vio_vq_fault(vq, "buffer 0x%llx+%u at head %u is outside guest memory (at 0x%llx)",
                         (unsigned long long)start, len, e->id, (unsigned long long)addr);
            return -EFAULT;
        }
        e->iov[*niov].iov_base = p;
        e->iov[*niov].iov_len = (size_t)n;
        (*niov)++;
        addr += n;
        left -= n;
    }
    return 0;
}

static int walk_chain(struct vio_vq *vq, uint16_t head, struct vio_vq_elem *e)
{
    const struct vio_vring_desc *table = vq->desc;
    uint32_t table_n = vq->size;
    uint32_t i = head;
    uint32_t budget = vq->size; /* descriptors left before we call it a loop */
    bool indirect = false, writable = false, first = true;
    unsigned niov = 0;
    int ret;

    e->out_num = e->in_num = 0;
    e->out_len = e->in_len = 0;
    for (;;) {
        struct vio_vring_desc d;

        if (budget == 0) {
            vio_vq_fault(vq, "descriptor chain at head %u is longer than %u (loop?)", head,
                         indirect ? table_n : vq->size);
            return -ELOOP;
        }
        budget--;
        read_desc(&table[i], &d);

        if (d.flags & VIO_DESC_F_INDIRECT) {
            if (!vq->indirect) {
                vio_vq_fault(vq, "indirect descriptor at head %u without VIRTIO_F_INDIRECT_DESC",
                             head);
                return -EINVAL;
            }
            if (indirect) {
                vio_vq_fault(vq, "nested indirect table at head %u", head);
                return -EINVAL;
            }
            if (!first || (d.flags & VIO_DESC_F_NEXT)) {
                vio_vq_fault(vq, "indirect descriptor at head %u is not alone in its chain",
                             head);
                return -EINVAL;
            }
            if (d.len == 0 || d.len % sizeof(struct vio_vring_desc) ||
                d.len / sizeof(struct vio_vring_desc) > VIO_VQ_MAX_SIZE) {
                vio_vq_fault(vq, "indirect table at head %u has bad length %u", head, d.len);
                return -EINVAL;
            }
            table = vio_gmem_map(vq->mem, d.addr, d.len);
            if (!table) {
                vio_vq_fault(vq, "indirect table 0x%llx+%u at head %u is outside guest memory",
                             (unsigned long long)d.addr, d.len, head);
                return -EFAULT;
            }
            table_n = d.len / sizeof(struct vio_vring_desc);
            budget = table_n;
            indirect = true;
            first = false;
            i = 0;
            continue;
        }
        first = false;

        if (d.flags & VIO_DESC_F_WRITE) {
            writable = true;
        } else if (writable) {
            vio_vq_fault(vq, "readable descriptor after a writable one at head %u", head);
            return -EINVAL;
        }
        if (d.len) {
            unsigned before = niov;

            ret = map_buffer(vq, e, &niov, d.addr, d.len);
            if (ret < 0)
                return ret;
            if (d.flags & VIO_DESC_F_WRITE) {
                e->in_num += (uint16_t)(niov - before);
                e->in_len += d.len;
            } else {
                e->out_num += (uint16_t)(niov - before);
                e->out_len += d.len;
            }
        }
        if (!(d.flags & VIO_DESC_F_NEXT))
            return 0;
        if (d.next >= table_n) {
            vio_vq_fault(vq, "next index %u out of range %u at head %u", d.next, table_n, head);
            return -EINVAL;
        }
        i = d.next;
    }
}

struct vio_vq_elem *vio_vq_pop(struct vio_vq *vq)
{
    struct vio_vq_elem *e;
    uint16_t head;

    if (vq->broken || !vq->desc)
        return NULL;
    if (vq->last_avail_idx == vq->shadow_avail_idx) {
        uint16_t idx = ring_load16(&vq->avail->idx);
        uint16_t pending = (uint16_t)(idx - vq->last_avail_idx);

        if (pending > vq->size) {
            vio_vq_fault(vq, "avail index %u is %u ahead of %u, more than the queue size %u", idx,
                         pending, vq->last_avail_idx, vq->size);
            return NULL;
        }
        vq->shadow_avail_idx = idx;
        if (pending == 0)
            return NULL;
        /* Acquire: read ring entries only after seeing the index; pairs with
         * the driver's write barrier between filling the ring and idx. */
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
    }
    head = ring_load16(&vq->avail->ring[vq->last_avail_idx & (vq->size - 1)]);
    if (head >= vq->size) {
        vio_vq_fault(vq, "head index %u out of range %u", head, vq->size);
        return NULL;
    }
    e = &vq->elems[head];
    if (e->inflight) {
        vio_vq_fault(vq, "head %u made available again while still in use", head);
        return NULL;
    }
    e->id = head;
    if (walk_chain(vq, head, e) < 0)
        return NULL;
    vq->last_avail_idx++;
    e->inflight = true;
    vq->inflight++;
    return e;
}

void vio_vq_unpop(struct vio_vq *vq, struct vio_vq_elem *e)
{
    if (!e->inflight)
        return;
    e->inflight = false;
    vq->inflight--;
    vq->last_avail_idx--;
}

void vio_vq_push(struct vio_vq *vq, struct vio_vq_elem *e, uint32_t len)
{
    struct vio_vring_used_elem u = {
        .id = vio_to_le32(e->id),
        .len = vio_to_le32(len),
    };

    if (!e->inflight)
        return;
    e->inflight = false;
    vq->inflight--;
    if (!vq->used)
        return;
    memcpy(&vq->used->ring[vq->used_idx & (vq->size - 1)], &u, sizeof(u));
    vq->used_idx++;
}

void vio_vq_flush(struct vio_vq *vq)
{
    if (!vq->used || vq->used_idx == vq->used_published)
        return;
    /* Release: the used elements above become visible before the index;
     * pairs with the driver's read barrier after it reads used->idx. */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    ring_store16(&vq->used->idx, vq->used_idx);
    vq->used_published = vq->used_idx;
}

static bool should_notify(struct vio_vq *vq)
{
    uint16_t old = vq->signalled_used;
    bool valid = vq->signalled_used_valid;

    if (old == vq->used_idx)
        return false; /* nothing used since the last notification */
    vq->signalled_used = vq->used_idx;
    vq->signalled_used_valid = true;
    /* Full barrier: our used->idx store must be visible before we read the
     * driver's suppression state; pairs with the driver's full barrier
     * between writing used_event/flags and re-reading used->idx. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!vq->event_idx)
        return !(ring_load16(&vq->avail->flags) & VIO_AVAIL_F_NO_INTERRUPT);
    return !valid || vio_vring_need_event(ring_load16(used_event_ptr(vq)), vq->used_idx, old);
}

void vio_vq_notify(struct vio_vq *vq)
{
    if (!vq->used)
        return;
    vio_vq_flush(vq);
    if (!should_notify(vq))
        return;
    if (vq->call_fd >= 0)
        vio_eventfd_signal(vq->call_fd);
    else
        vq->notify_owed = true; /* the transport has not given us a call fd yet */
}

void vio_vq_set_call_fd(struct vio_vq *vq, int fd)
{
    vq->call_fd = fd;
    if (fd >= 0 && vq->notify_owed) {
        vq->notify_owed = false;
        vio_eventfd_signal(fd);
    }
}

void vio_vq_set_err_fd(struct vio_vq *vq, int fd)
{
    vq->err_fd = fd;
    /* A queue that broke before the transport gave us the fd still says so. */
    if (vq->broken)
        vio_eventfd_signal(fd);
}

void vio_vq_disable_notify(struct vio_vq *vq)
{
    /* With EVENT_IDX the stale avail_event already suppresses kicks until we
     * move it in vio_vq_enable_notify. */
    if (!vq->used || vq->event_idx)
        return;
    ring_store16(&vq->used->flags, VIO_USED_F_NO_NOTIFY);
}

bool vio_vq_enable_notify(struct vio_vq *vq)
{
    if (!vq->used || vq->broken)
        return false;
    if (vq->event_idx)
        ring_store16(avail_event_ptr(vq), vq->last_avail_idx);
    else
        ring_store16(&vq->used->flags, 0);
    /* Full barrier: publish the re-enabled notification before re-reading
     * avail->idx; pairs with the driver's barrier between writing avail->idx
     * and reading our flags/avail_event. Otherwise a buffer added right now
     * could be missed by both sides. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return ring_load16(&vq->avail->idx) != vq->last_avail_idx;
}

size_t vio_vq_elem_read(const struct vio_vq_elem *e, size_t skip, void *buf, size_t len)
{
    size_t done = 0;

    for (unsigned i = 0; i < e->out_num && done < len; i++) {
        size_t l = e->iov[i].iov_len;

        if (skip >= l) {
            skip -= l;
            continue;
        }
        l = VIO_MIN(l - skip, len - done);
        memcpy((uint8_t *)buf + done, (uint8_t *)e->iov[i].iov_base + skip, l);
        done += l;
        skip = 0;
    }
    return done;
}

size_t vio_vq_elem_write(const struct vio_vq_elem *e, size_t skip, const void *buf, size_t len)
{
    size_t done = 0;

    for (unsigned i = e->out_num; i < (unsigned)e->out_num + e->in_num && done < len; i++) {
        size_t l = e->iov[i].iov_len;

        if (skip >= l) {
            skip -= l;
            continue;
        }
        l = VIO_MIN(l - skip, len - done);
        memcpy((uint8_t *)e->iov[i].iov_base + skip, (const uint8_t *)buf + done, l);
        done += l;
        skip = 0;
    }
    return done;
}
