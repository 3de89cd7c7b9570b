/* Small helpers shared by every vio source file: array sizes, container_of,
 * min/max, branch hints and little-endian accessors for guest-visible fields.
 * Header-only; nothing here allocates or does I/O. */
#ifndef VIO_CORE_UTIL_H
#define VIO_CORE_UTIL_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

#define VIO_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define vio_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define VIO_MIN(a, b)     ((a) < (b) ? (a) : (b))
#define VIO_MAX(a, b)     ((a) > (b) ? (a) : (b))
#define vio_likely(x)     __builtin_expect(!!(x), 1)
#define vio_unlikely(x)   __builtin_expect(!!(x), 0)
#define VIO_UNUSED        __attribute__((unused))
#define VIO_PRINTF(f, a)  __attribute__((format(printf, f, a)))

/* Guest-visible ring and config fields are little-endian (VIRTIO 1.x). Every
 * access to them goes through these, so a big-endian host would only need
 * these lines changed. */
static inline uint16_t vio_le16(uint16_t v)
{
    return le16toh(v);
}
static inline uint32_t vio_le32(uint32_t v)
{
    return le32toh(v);
}
static inline uint64_t vio_le64(uint64_t v)
{
    return le64toh(v);
}
static inline uint16_t vio_to_le16(uint16_t v)
{
    return htole16(v);
}
static inline uint32_t vio_to_le32(uint32_t v)
{
    return htole32(v);
}
static inline uint64_t vio_to_le64(uint64_t v)
{
    return htole64(v);
}

static inline int vio_is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

/* Counters written by one thread (the queue's worker) and read by another
 * (the control thread). Relaxed atomics: no ordering is needed, only
 * untorn 64-bit values. */
typedef _Atomic uint64_t vio_counter_t;
static inline void vio_counter_add(vio_counter_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}
/* For a counter more than one thread writes (a SCSI LUN served by several
 * request queues, a remote backend's per-queue connections, an NVMe
 * controller's queues): one atomic add, so no update is lost. */
static inline void vio_counter_add_shared(vio_counter_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}
static inline uint64_t vio_counter_get(const vio_counter_t *c)
{
    return atomic_load_explicit((vio_counter_t *)c, memory_order_relaxed);
}

/* Parse "123", "64K", "512M", "2G", "1T" (binary units). Returns 0 or -EINVAL. */
int vio_parse_size(const char *s, uint64_t *out);

/* Current CLOCK_MONOTONIC time in nanoseconds. */
uint64_t vio_now_ns(void);

#endif
