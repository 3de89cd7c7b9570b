/* VIRTIO 1.2 constants and ring layouts shared by every device and transport.
 * Our own definitions (not <linux/virtio_*.h>) so the guest-visible layout is
 * spelled out in one place; all multi-byte fields are little-endian. */
#ifndef VIO_VIRTIO_VIRTIO_H
#define VIO_VIRTIO_VIRTIO_H

#include <stdint.h>

/* Device status bits (VIRTIO 1.2, 2.1). */
#define VIO_STATUS_ACKNOWLEDGE 1u
#define VIO_STATUS_DRIVER      2u
#define VIO_STATUS_DRIVER_OK   4u
#define VIO_STATUS_FEATURES_OK 8u
#define VIO_STATUS_NEEDS_RESET 64u
#define VIO_STATUS_FAILED      128u

/* Reserved (device-independent) feature bits (VIRTIO 1.2, 6). */
#define VIO_F_INDIRECT_DESC  28
#define VIO_F_EVENT_IDX      29
#define VIO_F_VERSION_1      32
#define VIO_F_ACCESS_PLATFORM 33
#define VIO_F_RING_PACKED    34
#define VIO_F_IN_ORDER       35

#define VIO_BIT(n) (1ull << (n))

/* Device IDs (VIRTIO 1.2, 5). */
#define VIO_ID_NET     1
#define VIO_ID_BLOCK   2
#define VIO_ID_CONSOLE 3
#define VIO_ID_RNG     4
#define VIO_ID_SCSI    8
#define VIO_ID_GPU     16

/* Split virtqueue (VIRTIO 1.2, 2.7). */
#define VIO_DESC_F_NEXT     1
#define VIO_DESC_F_WRITE    2
#define VIO_DESC_F_INDIRECT 4

#define VIO_AVAIL_F_NO_INTERRUPT 1
#define VIO_USED_F_NO_NOTIFY     1

/* Largest split-ring size the spec allows. */
#define VIO_VQ_MAX_SIZE 32768

struct vio_vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vio_vring_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[]; /* [size], then used_event */
};

struct vio_vring_used_elem {
    uint32_t id;
    uint32_t len;
};

struct vio_vring_used {
    uint16_t flags;
    uint16_t idx;
    struct vio_vring_used_elem ring[]; /* [size], then avail_event */
};

/* Byte sizes of the three split-ring areas for a queue of @n entries,
 * including the event-index fields. */
static inline uint64_t vio_vring_desc_size(uint32_t n)
{
    return 16ull * n;
}
static inline uint64_t vio_vring_avail_size(uint32_t n)
{
    return 4ull + 2ull * n + 2;
}
static inline uint64_t vio_vring_used_size(uint32_t n)
{
    return 4ull + 8ull * n + 2;
}

/* VIRTIO 1.2 2.7.10: "notify if new_idx has passed event_idx since old". */
static inline int vio_vring_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

#endif
