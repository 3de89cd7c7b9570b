/* PIO/MMIO dispatch (see bus.h): a sorted range table searched by binary
 * search under a read lock. */
#include "vmm/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

int vio_bus_init(struct vio_bus *b, const char *name)
{
    memset(b, 0, sizeof(*b));
    b->name = name;
    pthread_rwlock_init(&b->lock, NULL);
    pthread_mutex_init(&b->log_lock, NULL);
    return 0;
}

void vio_bus_destroy(struct vio_bus *b)
{
    free(b->ranges);
    pthread_rwlock_destroy(&b->lock);
    pthread_mutex_destroy(&b->log_lock);
    memset(b, 0, sizeof(*b));
}

int vio_bus_add(struct vio_bus *b, uint64_t base, uint64_t len, const struct vio_io_ops *ops,
                void *opaque, const char *name)
{
    unsigned i;
    int ret = 0;

    if (len == 0 || base + len < base)
        return -EINVAL;
    pthread_rwlock_wrlock(&b->lock);
    for (i = 0; i < b->n; i++) {
        const struct vio_io_range *r = &b->ranges[i];

        if (base < r->base + r->len && r->base < base + len) {
            vio_warn("%s bus: %s at 0x%llx+0x%llx overlaps %s at 0x%llx+0x%llx", b->name, name,
                     (unsigned long long)base, (unsigned long long)len, r->name,
                     (unsigned long long)r->base, (unsigned long long)r->len);
            ret = -EEXIST;
            goto out;
        }
        if (r->base > base)
            break;
    }
    if (b->n == b->cap) {
        unsigned cap = b->cap ? b->cap * 2 : 16;
        struct vio_io_range *p = realloc(b->ranges, cap * sizeof(*p));

        if (!p) {
            ret = -ENOMEM;
            goto out;
        }
        b->ranges = p;
        b->cap = cap;
    }
    memmove(&b->ranges[i + 1], &b->ranges[i], (b->n - i) * sizeof(*b->ranges));
    b->ranges[i] = (struct vio_io_range){base, len, ops, opaque, name};
    b->n++;
out:
    pthread_rwlock_unlock(&b->lock);
    return ret;
}

int vio_bus_remove(struct vio_bus *b, uint64_t base, void *opaque)
{
    int ret = -ENOENT;

    pthread_rwlock_wrlock(&b->lock);
    for (unsigned i = 0; i < b->n; i++) {
        if (b->ranges[i].base == base && b->ranges[i].opaque == opaque) {
            memmove(&b->ranges[i], &b->ranges[i + 1], (b->n - i - 1) * sizeof(*b->ranges));
            b->n--;
            ret = 0;
            break;
        }
    }
    pthread_rwlock_unlock(&b->lock);
    return ret;
}

static void log_unclaimed(struct vio_bus *b, uint64_t addr, unsigned len, bool is_write,
                          const void *data)
{
    bool seen = false;
    uint64_t v = 0;

    pthread_mutex_lock(&b->log_lock);
    b->unclaimed++;
    for (unsigned i = 0; i < b->nlogged; i++) {
        if (b->logged[i] == addr) {
            seen = true;
            break;
        }
    }
    if (!seen && b->nlogged < VIO_BUS_LOGGED_MAX)
        b->logged[b->nlogged++] = addr;
    else
        seen = true; /* past the table: stay quiet rather than flood */
    pthread_mutex_unlock(&b->log_lock);
    if (seen)
        return;
    if (is_write) {
        memcpy(&v, data, len < sizeof(v) ? len : sizeof(v));
        vio_info("guest wrote %u byte%s at unclaimed %s address 0x%llx, value 0x%llx (ignored; "
                 "logged once)",
                 len, len == 1 ? "" : "s", b->name, (unsigned long long)addr,
                 (unsigned long long)v);
    } else {
        vio_info("guest read %u byte%s at unclaimed %s address 0x%llx (reads as all-ones; "
                 "logged once)",
                 len, len == 1 ? "" : "s", b->name, (unsigned long long)addr);
    }
}

bool vio_bus_access(struct vio_bus *b, uint64_t addr, void *data, unsigned len, bool is_write)
{
    const struct vio_io_range *r = NULL;
    unsigned lo = 0, hi;

    pthread_rwlock_rdlock(&b->lock);
    hi = b->n;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        const struct vio_io_range *m = &b->ranges[mid];

        if (addr < m->base) {
            hi = mid;
        } else if (addr - m->base >= m->len) {
            lo = mid + 1;
        } else {
            r = m;
            break;
        }
    }
    /* An access must lie wholly inside the range that claims its start. */
    if (r && len <= r->len - (addr - r->base)) {
        if (is_write) {
            if (r->ops->write)
                r->ops->write(r->opaque, addr - r->base, data, len);
        } else if (r->ops->read) {
            r->ops->read(r->opaque, addr - r->base, data, len);
        } else {
            memset(data, 0xff, len);
        }
        pthread_rwlock_unlock(&b->lock);
        return true;
    }
    pthread_rwlock_unlock(&b->lock);
    if (!is_write)
        memset(data, 0xff, len);
    log_unclaimed(b, addr, len, is_write, data);
    return false;
}
