/* Test helpers: fake guest memory and the driver side of a split virtqueue,
 * so unit tests and fuzzers can build well-formed and malformed rings with
 * a few calls. Test-only code: it does its own guest-address arithmetic. */
#ifndef VIO_TESTS_RING_H
#define VIO_TESTS_RING_H

#include <stdbool.h>
#include <stdint.h>

#include "core/gmem.h"
#include "virtio/virtq.h"

/* Guest-physical base of test memory: not 0, so a zeroed address is caught. */
#define TMEM_BASE 0x100000ull

struct test_mem {
    uint8_t *host;    /* one allocation backing every region */
    uint64_t size;    /* bytes of guest memory */
    uint64_t next;    /* bump allocator cursor (guest-physical) */
    struct vio_gmem gmem;
};

/* @size bytes at TMEM_BASE. With @split, two regions: the first half and
 * the second half, adjacent in guest-physical space but mapped at unrelated
 * host addresses (a buffer across the boundary must be split); with @hole
 * the second region starts @hole bytes after the first ends. */
void tmem_init(struct test_mem *m, uint64_t size);
void tmem_init_split(struct test_mem *m, uint64_t size, uint64_t hole);
void tmem_free(struct test_mem *m);
/* Allocate @len bytes aligned to @align in guest memory; returns the gpa. */
uint64_t tmem_alloc(struct test_mem *m, uint64_t len, uint64_t align);
/* Host pointer for a gpa inside test memory (aborts if outside). */
void *tmem_ptr(struct test_mem *m, uint64_t gpa);

struct tbuf {
    uint64_t gpa;
    uint32_t len;
    bool write; /* device-writable */
};

struct test_ring {
    struct test_mem *m;
    uint16_t size;
    uint64_t desc, avail, used; /* gpas */
    uint16_t avail_idx;
    uint16_t used_seen;
    uint16_t free_desc; /* next descriptor slot handed out (wraps) */
};

void tring_init(struct test_ring *r, struct test_mem *m, uint16_t size);
/* Put the ring's geometry into @vq (stopped) with the given features. */
void tring_to_vq(struct test_ring *r, struct vio_vq *vq, bool event_idx, bool indirect);
/* Write descriptor @i raw. */
void tring_set_desc(struct test_ring *r, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                    uint16_t next);
/* Write raw entry @i of an indirect table at @table_gpa. */
void tring_set_table_desc(struct test_ring *r, uint64_t table_gpa, uint16_t i, uint64_t addr,
                          uint32_t len, uint16_t flags, uint16_t next);
/* Make @head available (avail ring entry + idx). */
void tring_publish(struct test_ring *r, uint16_t head);
/* Chain @n buffers through fresh descriptors, publish, return the head. */
uint16_t tring_add(struct test_ring *r, const struct tbuf *b, unsigned n);
/* Same through an indirect table allocated in guest memory. */
uint16_t tring_add_indirect(struct test_ring *r, const struct tbuf *b, unsigned n);
/* Next used element, if any. */
bool tring_used(struct test_ring *r, uint32_t *id, uint32_t *len);
/* Raw pointers into the rings, for tests that forge fields. */
uint16_t *tring_avail_idx(struct test_ring *r);
uint16_t *tring_avail_ring(struct test_ring *r, uint16_t slot);
uint16_t *tring_used_event(struct test_ring *r);
uint16_t *tring_avail_flags(struct test_ring *r);
uint16_t tring_used_idx(struct test_ring *r);
uint16_t tring_avail_event(struct test_ring *r);
uint16_t tring_used_flags(struct test_ring *r);

#endif
