/* I/O buses of the VMM: the port-I/O space and the MMIO space. Devices
 * register address ranges with read/write callbacks; vCPU threads dispatch
 * their PIO and MMIO exits here. An access nobody claims reads as all-ones
 * and is otherwise ignored, and is logged once per address.
 *
 * Threading: dispatch runs on any vCPU thread concurrently; registration
 * (PCI BAR moves happen on vCPU threads too) takes the write lock. */
#ifndef VIO_VMM_BUS_H
#define VIO_VMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct vio_io_ops {
    /* @off is relative to the registered base; @len is 1, 2, 4 or 8. */
    void (*read)(void *opaque, uint64_t off, void *data, unsigned len);
    void (*write)(void *opaque, uint64_t off, const void *data, unsigned len);
};

struct vio_io_range {
    uint64_t base, len;
    const struct vio_io_ops *ops;
    void *opaque;
    const char *name;
};

#define VIO_BUS_LOGGED_MAX 64

struct vio_bus {
    const char *name; /* "pio" or "mmio" */
    pthread_rwlock_t lock;
    struct vio_io_range *ranges; /* sorted by base, non-overlapping */
    unsigned n, cap;
    /* Addresses of unclaimed accesses already logged. */
    pthread_mutex_t log_lock;
    uint64_t logged[VIO_BUS_LOGGED_MAX];
    unsigned nlogged;
    uint64_t unclaimed; /* count of unclaimed accesses */
};

int vio_bus_init(struct vio_bus *b, const char *name);
void vio_bus_destroy(struct vio_bus *b);

/* Claim [base, base+len). Returns 0, -EEXIST if it overlaps a range, or
 * -EINVAL for an empty or wrapping range. */
int vio_bus_add(struct vio_bus *b, uint64_t base, uint64_t len, const struct vio_io_ops *ops,
                void *opaque, const char *name);
/* Release the range registered at @base by @opaque. Returns 0 or -ENOENT. */
int vio_bus_remove(struct vio_bus *b, uint64_t base, void *opaque);

/* Dispatch one access. Returns true if a device claimed it. */
bool vio_bus_access(struct vio_bus *b, uint64_t addr, void *data, unsigned len, bool is_write);

#endif
