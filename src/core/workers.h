/* A pool of worker threads, each running its own event loop. Device queues
 * are spread over them; nothing on the data path is shared between workers,
 * so they take no locks. Used by vio serve (and vio run's I/O threads). */
#ifndef VIO_CORE_WORKERS_H
#define VIO_CORE_WORKERS_H

#include <pthread.h>
#include <stdint.h>

#include "core/loop.h"

struct vio_workers {
    unsigned n;
    unsigned next; /* round-robin cursor */
    struct vio_loop *loops;
    pthread_t *threads;
    unsigned started;
};

/* Start @n threads named "<prefix>N" with signals blocked. Returns 0 or
 * -errno (with none left running). */
int vio_workers_start(struct vio_workers *w, unsigned n, const char *prefix);
/* Stop and join every worker; their loops must have nothing left to do. */
void vio_workers_stop(struct vio_workers *w);
/* Make every worker busy-poll for @ns after its last event (0: sleep at
 * once); see struct vio_loop's poll_ns. */
void vio_workers_set_poll(struct vio_workers *w, uint64_t ns);
/* The next worker loop in round-robin order. */
struct vio_loop *vio_workers_next(struct vio_workers *w);

#endif
