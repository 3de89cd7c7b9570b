/* Guest memory map: the regions of a guest's physical address space that
 * this process has mapped, and the one bounds-checked translation from a
 * guest-physical range to a host pointer. No other code does arithmetic on
 * guest addresses; everything that touches guest memory comes through here.
 *
 * A map is changed only while no queue is using it (the transports stop
 * their queues first), so lookups take no lock. */
#ifndef VIO_CORE_GMEM_H
#define VIO_CORE_GMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* vhost-user allows up to 509 slots; 32 is what we advertise and plenty for
 * every front-end seen so far. */
#define VIO_GMEM_MAX_REGIONS 32

struct vio_gmem_region {
    uint64_t gpa;  /* guest-physical start */
    uint64_t size; /* bytes */
    uint64_t uva;  /* front-end's user address (vhost-user rings), or 0 */
    uint8_t *hva;  /* host address of gpa */
    void *map_base; /* what we mmap()ed, or NULL if the caller owns the mapping */
    size_t map_len;
};

struct vio_gmem {
    unsigned nregions;
    struct vio_gmem_region regions[VIO_GMEM_MAX_REGIONS];
};

void vio_gmem_init(struct vio_gmem *m);

/* Map @size bytes of @fd at @mmap_offset as guest-physical @gpa (front-end
 * address @uva). Rejects empty, overflowing or overlapping ranges, fds that
 * are too small for the range (touching such a mapping would SIGBUS) and a
 * full table. Returns 0 or -errno; on error nothing is mapped. The fd is not
 * kept. */
int vio_gmem_add_fd(struct vio_gmem *m, int fd, uint64_t gpa, uint64_t size, uint64_t uva,
                    uint64_t mmap_offset);

/* Add memory the caller has already mapped (vio run's own RAM, tests). Same
 * checks as vio_gmem_add_fd; the mapping is not unmapped by this map. */
int vio_gmem_add_ptr(struct vio_gmem *m, void *hva, uint64_t gpa, uint64_t size, uint64_t uva);

/* Remove the region that matches @gpa, @size and @uva exactly. Returns 0 or
 * -ENOENT. */
int vio_gmem_remove(struct vio_gmem *m, uint64_t gpa, uint64_t size, uint64_t uva);

/* Unmap and forget every region. */
void vio_gmem_clear(struct vio_gmem *m);

/* The translation. Returns the host address of guest-physical @gpa if it
 * lies in a region, and sets *@len to how many of the *@len bytes asked for
 * are contiguous in that region (at least 1). Returns NULL if @gpa is not
 * mapped or *@len is 0. Callers that need a range split across adjacent
 * regions call it again for the rest. */
void *vio_gmem_xlate(const struct vio_gmem *m, uint64_t gpa, uint64_t *len);

/* Host address of [gpa, gpa+len) if the whole range is inside one region,
 * else NULL. For rings and other structures that must be contiguous. */
static inline void *vio_gmem_map(const struct vio_gmem *m, uint64_t gpa, uint64_t len)
{
    uint64_t got = len;
    void *p = vio_gmem_xlate(m, gpa, &got);

    return (p && got == len) ? p : NULL;
}

/* Convert a front-end user address to a guest-physical address using the
 * region table (vhost-user ring addresses). Returns 0 or -EFAULT. */
int vio_gmem_uva_to_gpa(const struct vio_gmem *m, uint64_t uva, uint64_t *gpa);

#endif
