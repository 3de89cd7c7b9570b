/* Guest memory map implementation. Every range check is written so it cannot
 * overflow: subtract the region start first, then compare with what is left. */
#include "core/gmem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

void vio_gmem_init(struct vio_gmem *m)
{
    memset(m, 0, sizeof(*m));
}

/* [a, a+alen) and [b, b+blen) overlap; both lengths are > 0 and neither
 * range wraps (checked by the caller). */
static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static int check_new_region(const struct vio_gmem *m, uint64_t gpa, uint64_t size, uint64_t uva)
{
    if (size == 0)
        return -EINVAL;
    if (gpa + size < gpa || (uva && uva + size < uva))
        return -EOVERFLOW;
    if (m->nregions >= VIO_GMEM_MAX_REGIONS)
        return -ENOSPC;
    for (unsigned i = 0; i < m->nregions; i++) {
        const struct vio_gmem_region *r = &m->regions[i];

        if (ranges_overlap(gpa, size, r->gpa, r->size))
            return -EEXIST;
        if (uva && r->uva && ranges_overlap(uva, size, r->uva, r->size))
            return -EEXIST;
    }
    return 0;
}

int vio_gmem_add_fd(struct vio_gmem *m, int fd, uint64_t gpa, uint64_t size, uint64_t uva,
                    uint64_t mmap_offset)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t map_off, delta, map_len;
    struct stat st;
    void *base;
    int ret;

    ret = check_new_region(m, gpa, size, uva);
    if (ret < 0)
        return ret;
    if (fstat(fd, &st) < 0)
        return -errno;
    /* A mapping past the end of the file faults with SIGBUS when touched. */
    if (!S_ISREG(st.st_mode))
        return -EBADF;
    if (mmap_offset > (uint64_t)st.st_size || size > (uint64_t)st.st_size - mmap_offset)
        return -ERANGE;
    map_off = mmap_offset & ~(uint64_t)(page - 1);
    delta = mmap_offset - map_off;
    map_len = size + delta;
    if (map_len < size || map_len > SIZE_MAX)
        return -EOVERFLOW;
    base = mmap(NULL, (size_t)map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd,
                (off_t)map_off);
    if (base == MAP_FAILED)
        return -errno;
    m->regions[m->nregions++] = (struct vio_gmem_region){
        .gpa = gpa,
        .size = size,
        .uva = uva,
        .hva = (uint8_t *)base + delta,
        .map_base = base,
        .map_len = (size_t)map_len,
    };
    return 0;
}

int vio_gmem_add_ptr(struct vio_gmem *m, void *hva, uint64_t gpa, uint64_t size, uint64_t uva)
{
    int ret = check_new_region(m, gpa, size, uva);

    if (ret < 0)
        return ret;
    if (!hva)
        return -EINVAL;
    m->regions[m->nregions++] = (struct vio_gmem_region){
        .gpa = gpa, .size = size, .uva = uva, .hva = hva};
    return 0;
}

static void unmap_region(struct vio_gmem_region *r)
{
    if (r->map_base)
        munmap(r->map_base, r->map_len);
    memset(r, 0, sizeof(*r));
}

int vio_gmem_remove(struct vio_gmem *m, uint64_t gpa, uint64_t size, uint64_t uva)
{
    for (unsigned i = 0; i < m->nregions; i++) {
        struct vio_gmem_region *r = &m->regions[i];

        if (r->gpa == gpa && r->size == size && r->uva == uva) {
            unmap_region(r);
            m->regions[i] = m->regions[m->nregions - 1];
            memset(&m->regions[m->nregions - 1], 0, sizeof(*r));
            m->nregions--;
            return 0;
        }
    }
    return -ENOENT;
}

void vio_gmem_clear(struct vio_gmem *m)
{
    for (unsigned i = 0; i < m->nregions; i++)
        unmap_region(&m->regions[i]);
    m->nregions = 0;
}

void *vio_gmem_xlate(const struct vio_gmem *m, uint64_t gpa, uint64_t *len)
{
    if (*len == 0)
        return NULL;
    for (unsigned i = 0; i < m->nregions; i++) {
        const struct vio_gmem_region *r = &m->regions[i];
        uint64_t off, left;

        if (gpa < r->gpa)
            continue;
        off = gpa - r->gpa;
        if (off >= r->size)
            continue;
        left = r->size - off;
        if (*len > left)
            *len = left;
        return r->hva + off;
    }
    return NULL;
}

int vio_gmem_uva_to_gpa(const struct vio_gmem *m, uint64_t uva, uint64_t *gpa)
{
    for (unsigned i = 0; i < m->nregions; i++) {
        const struct vio_gmem_region *r = &m->regions[i];

        if (r->uva && uva >= r->uva && uva - r->uva < r->size) {
            *gpa = r->gpa + (uva - r->uva);
            return 0;
        }
    }
    return -EFAULT;
}
