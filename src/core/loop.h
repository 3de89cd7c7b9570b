/* The epoll event loop every vio thread runs. Handlers are embedded in their
 * owners' structs (no allocation per fd). Other threads reach a loop only
 * through vio_loop_call(), which runs a function on the loop's own thread;
 * that is how the control thread changes state that a worker owns. */
#ifndef VIO_CORE_LOOP_H
#define VIO_CORE_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "core/util.h"

struct vio_handler;
typedef void (*vio_handler_fn)(struct vio_handler *h, uint32_t events);

/* Embed in the owning object; recover the owner with vio_container_of. */
struct vio_handler {
    int fd;
    vio_handler_fn fn;
};

/* A cross-thread call. The function runs on the loop thread and must call
 * vio_call_done() exactly once, either before returning or later (for
 * example when a queue has drained). */
struct vio_call {
    void (*fn)(struct vio_call *c);
    void *arg;
    int ret;
    bool done;
    struct vio_call *next;
    struct vio_loop *loop;
};

#define VIO_LOOP_MAX_EVENTS 64

struct vio_loop {
    int epfd;
    int wake_fd; /* eventfd: stop requests and pending calls */
    struct vio_handler wake_h;
    bool stop;
    /* Busy-poll (epoll_wait with no timeout) for this long after the last
     * event before sleeping: lower latency for a CPU. 0: never. Atomic. */
    uint64_t poll_ns;
    pthread_t thread;
    bool thread_set;
    /* Events of the batch being dispatched; vio_loop_del clears entries of
     * a removed handler so none is called after removal. */
    struct epoll_event events[VIO_LOOP_MAX_EVENTS];
    int nevents;
    pthread_mutex_t lock; /* protects calls and call completion */
    pthread_cond_t cond;
    struct vio_call *calls;
};

/* Create the epoll instance. Returns 0 or -errno. */
int vio_loop_init(struct vio_loop *l);
/* Close the loop's fds. The loop must not be running. */
void vio_loop_destroy(struct vio_loop *l);

/* Watch @fd for @events (EPOLLIN...) calling @fn. Loop thread only, or
 * before the loop runs. Returns 0 or -errno. */
int vio_loop_add(struct vio_loop *l, struct vio_handler *h, int fd, uint32_t events,
                 vio_handler_fn fn);
int vio_loop_mod(struct vio_loop *l, struct vio_handler *h, uint32_t events);
/* Stop watching; safe to call from a handler, including for itself. */
void vio_loop_del(struct vio_loop *l, struct vio_handler *h);

/* Dispatch events until vio_loop_stop(). Records the calling thread as the
 * loop thread. Returns 0, or -errno if epoll fails. */
int vio_loop_run(struct vio_loop *l);
/* Wait up to @timeout_ms (-1: forever) and dispatch one batch of events.
 * Returns how many were ready, or -errno. For tests and fuzzers that pump
 * a loop by hand on the calling thread. */
int vio_loop_run_once(struct vio_loop *l, int timeout_ms);
/* Ask the loop to return from vio_loop_run. Any thread; async-signal-safe. */
void vio_loop_stop(struct vio_loop *l);

/* Run c->fn on the loop thread and wait until it calls vio_call_done().
 * Runs inline when called on the loop thread itself or when the loop has no
 * thread yet. Returns c->ret. */
int vio_loop_call(struct vio_loop *l, struct vio_call *c);
/* Complete a call with result @ret; wakes the waiting thread. */
void vio_call_done(struct vio_call *c, int ret);

/* True if the caller is the thread running @l. */
bool vio_loop_is_current(const struct vio_loop *l);

/* Read and discard an eventfd's counter. Returns the counter or 0. */
uint64_t vio_eventfd_drain(int fd);
/* Add 1 to an eventfd's counter; ignores fd < 0. */
void vio_eventfd_signal(int fd);

#endif
