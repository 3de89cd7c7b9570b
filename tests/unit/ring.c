/* Fake guest memory and driver-side split rings for tests (see ring.h). */
#include "ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static uint8_t *map_anon(uint64_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        perror("mmap");
        abort();
    }
    return p;
}

void tmem_init(struct test_mem *m, uint64_t size)
{
    memset(m, 0, sizeof(*m));
    m->host = map_anon(size);
    m->size = size;
    m->next = TMEM_BASE;
    vio_gmem_init(&m->gmem);
    if (vio_gmem_add_ptr(&m->gmem, m->host, TMEM_BASE, size, 0) < 0)
        abort();
}

void tmem_init_split(struct test_mem *m, uint64_t size, uint64_t hole)
{
    uint64_t half = size / 2;
    uint8_t *second;

    memset(m, 0, sizeof(*m));
    /* The second half lives one page past the first in the host, so host
     * addresses are not contiguous even when guest addresses are. */
    m->host = map_anon(size + 4096);
    second = m->host + half + 4096;
    m->size = size;
    m->next = TMEM_BASE;
    vio_gmem_init(&m->gmem);
    if (vio_gmem_add_ptr(&m->gmem, m->host, TMEM_BASE, half, 0) < 0 ||
        vio_gmem_add_ptr(&m->gmem, second, TMEM_BASE + half + hole, half, 0) < 0)
        abort();
    m->size = size + hole; /* gpa span, for tmem_ptr */
}

void tmem_free(struct test_mem *m)
{
    /* Both layouts come from one mapping; the split one is a page longer
     * (and m->size may include a hole, which is never more than the map). */
    uint64_t len = m->gmem.nregions > 1 ? m->gmem.regions[0].size * 2 + 4096 : m->size;

    vio_gmem_clear(&m->gmem);
    munmap(m->host, len);
    memset(m, 0, sizeof(*m));
}

void *tmem_ptr(struct test_mem *m, uint64_t gpa)
{
    uint64_t len = 1;
    void *p = vio_gmem_xlate(&m->gmem, gpa, &len);

    if (!p) {
        fprintf(stderr, "tmem_ptr: gpa 0x%llx outside test memory\n", (unsigned long long)gpa);
        abort();
    }
    return p;
}

uint64_t tmem_alloc(struct test_mem *m, uint64_t len, uint64_t align)
{
    uint64_t gpa = (m->next + align - 1) & ~(align - 1);

    if (gpa + len > TMEM_BASE + m->size) {
        fprintf(stderr, "tmem_alloc: test memory exhausted\n");
        abort();
    }
    m->next = gpa + len;
    return gpa;
}

void tring_init(struct test_ring *r, struct test_mem *m, uint16_t size)
{
    memset(r, 0, sizeof(*r));
    r->m = m;
    r->size = size;
    r->desc = tmem_alloc(m, vio_vring_desc_size(size), 16);
    r->avail = tmem_alloc(m, vio_vring_avail_size(size), 2);
    r->used = tmem_alloc(m, vio_vring_used_size(size), 4);
    memset(tmem_ptr(m, r->desc), 0, vio_vring_desc_size(size));
    memset(tmem_ptr(m, r->avail), 0, vio_vring_avail_size(size));
    memset(tmem_ptr(m, r->used), 0, vio_vring_used_size(size));
}

void tring_to_vq(struct test_ring *r, struct vio_vq *vq, bool event_idx, bool indirect)
{
    vq->size = r->size;
    vq->desc_gpa = r->desc;
    vq->avail_gpa = r->avail;
    vq->used_gpa = r->used;
    vq->event_idx = event_idx;
    vq->indirect = indirect;
}

void tring_set_desc(struct test_ring *r, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                    uint16_t next)
{
    struct vio_vring_desc d = {vio_to_le64(addr), vio_to_le32(len), vio_to_le16(flags),
                               vio_to_le16(next)};

    memcpy((uint8_t *)tmem_ptr(r->m, r->desc) + 16u * i, &d, sizeof(d));
}

void tring_set_table_desc(struct test_ring *r, uint64_t table_gpa, uint16_t i, uint64_t addr,
                          uint32_t len, uint16_t flags, uint16_t next)
{
    struct vio_vring_desc d = {vio_to_le64(addr), vio_to_le32(len), vio_to_le16(flags),
                               vio_to_le16(next)};

    memcpy(tmem_ptr(r->m, table_gpa + 16u * i), &d, sizeof(d));
}

uint16_t *tring_avail_idx(struct test_ring *r)
{
    return (uint16_t *)tmem_ptr(r->m, r->avail + 2);
}

uint16_t *tring_avail_flags(struct test_ring *r)
{
    return (uint16_t *)tmem_ptr(r->m, r->avail);
}

uint16_t *tring_avail_ring(struct test_ring *r, uint16_t slot)
{
    return (uint16_t *)tmem_ptr(r->m, r->avail + 4 + 2u * slot);
}

uint16_t *tring_used_event(struct test_ring *r)
{
    return tring_avail_ring(r, r->size);
}

uint16_t tring_used_idx(struct test_ring *r)
{
    return vio_le16(*(uint16_t *)tmem_ptr(r->m, r->used + 2));
}

uint16_t tring_used_flags(struct test_ring *r)
{
    return vio_le16(*(uint16_t *)tmem_ptr(r->m, r->used));
}

uint16_t tring_avail_event(struct test_ring *r)
{
    return vio_le16(*(uint16_t *)tmem_ptr(r->m, r->used + 4 + 8u * r->size));
}

void tring_publish(struct test_ring *r, uint16_t head)
{
    *tring_avail_ring(r, r->avail_idx % r->size) = vio_to_le16(head);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    r->avail_idx++;
    *tring_avail_idx(r) = vio_to_le16(r->avail_idx);
}

uint16_t tring_add(struct test_ring *r, const struct tbuf *b, unsigned n)
{
    uint16_t head = r->free_desc % r->size;

    for (unsigned i = 0; i < n; i++) {
        uint16_t cur = (uint16_t)((head + i) % r->size);
        uint16_t flags = (b[i].write ? VIO_DESC_F_WRITE : 0) | (i + 1 < n ? VIO_DESC_F_NEXT : 0);

        tring_set_desc(r, cur, b[i].gpa, b[i].len, flags, (uint16_t)((cur + 1) % r->size));
    }
    r->free_desc = (uint16_t)(r->free_desc + n);
    tring_publish(r, head);
    return head;
}

uint16_t tring_add_indirect(struct test_ring *r, const struct tbuf *b, unsigned n)
{
    uint64_t table = tmem_alloc(r->m, 16ull * n, 16);
    uint16_t head = r->free_desc % r->size;

    for (unsigned i = 0; i < n; i++) {
        uint16_t flags = (b[i].write ? VIO_DESC_F_WRITE : 0) | (i + 1 < n ? VIO_DESC_F_NEXT : 0);

        tring_set_table_desc(r, table, (uint16_t)i, b[i].gpa, b[i].len, flags,
                             (uint16_t)(i + 1));
    }
    tring_set_desc(r, head, table, (uint32_t)(16 * n), VIO_DESC_F_INDIRECT, 0);
    r->free_desc++;
    tring_publish(r, head);
    return head;
}

bool tring_used(struct test_ring *r, uint32_t *id, uint32_t *len)
{
    struct vio_vring_used_elem e;

    if (tring_used_idx(r) == r->used_seen)
        return false;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    memcpy(&e, tmem_ptr(r->m, r->used + 4 + 8u * (r->used_seen % r->size)), sizeof(e));
    r->used_seen++;
    *id = vio_le32(e.id);
    *len = vio_le32(e.len);
    return true;
}
