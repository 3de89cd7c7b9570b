/* epoll loop with a wake eventfd that carries stop requests and cross-thread
 * calls (see loop.h). */
#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

uint64_t vio_eventfd_drain(int fd)
{
    uint64_t v = 0;

    if (fd >= 0 && read(fd, &v, sizeof(v)) != sizeof(v))
        v = 0;
    return v;
}

void vio_eventfd_signal(int fd)
{
    uint64_t one = 1;

    /* EAGAIN means the counter is saturated: the peer is already signalled. */
    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        vio_log_once(VIO_LOG_WARN, "eventfd write failed: %s", strerror(errno));
}

static void run_calls(struct vio_loop *l)
{
    struct vio_call *list, *next;

    pthread_mutex_lock(&l->lock);
    list = l->calls;
    l->calls = NULL;
    pthread_mutex_unlock(&l->lock);
    /* The list was pushed LIFO; reverse it so calls run in order. */
    struct vio_call *rev = NULL;
    for (; list; list = next) {
        next = list->next;
        list->next = rev;
        rev = list;
    }
    for (; rev; rev = next) {
        next = rev->next;
        rev->fn(rev);
    }
}

static void wake_handler(struct vio_handler *h, uint32_t events)
{
    struct vio_loop *l = vio_container_of(h, struct vio_loop, wake_h);

    (void)events;
    vio_eventfd_drain(h->fd);
    run_calls(l);
}

int vio_loop_init(struct vio_loop *l)
{
    int ret;

    memset(l, 0, sizeof(*l));
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        return -errno;
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->wake_fd < 0) {
        ret = -errno;
        goto err_epoll;
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    ret = vio_loop_add(l, &l->wake_h, l->wake_fd, EPOLLIN, wake_handler);
    if (ret < 0)
        goto err_wake;
    return 0;

err_wake:
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    close(l->wake_fd);
err_epoll:
    close(l->epfd);
    l->epfd = -1;
    return ret;
}

void vio_loop_destroy(struct vio_loop *l)
{
    if (l->epfd < 0)
        return;
    close(l->wake_fd);
    close(l->epfd);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    l->epfd = -1;
}

int vio_loop_add(struct vio_loop *l, struct vio_handler *h, int fd, uint32_t events,
                 vio_handler_fn fn)
{
    struct epoll_event ev = {.events = events, .data.ptr = h};

    h->fd = fd;
    h->fn = fn;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

int vio_loop_mod(struct vio_loop *l, struct vio_handler *h, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = h};

    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, h->fd, &ev) < 0)
        return -errno;
    return 0;
}

void vio_loop_del(struct vio_loop *l, struct vio_handler *h)
{
    if (h->fd >= 0)
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, h->fd, NULL);
    for (int i = 0; i < l->nevents; i++) {
        if (l->events[i].data.ptr == h)
            l->events[i].data.ptr = NULL;
    }
}

bool vio_loop_is_current(const struct vio_loop *l)
{
    return l->thread_set && pthread_equal(l->thread, pthread_self());
}

int vio_loop_run_once(struct vio_loop *l, int timeout_ms)
{
    int n = epoll_wait(l->epfd, l->events, VIO_LOOP_MAX_EVENTS, timeout_ms);

    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    l->nevents = n;
    for (int i = 0; i < n; i++) {
        struct vio_handler *h = l->events[i].data.ptr;

        if (h)
            h->fn(h, l->events[i].events);
    }
    l->nevents = 0;
    return n;
}

int vio_loop_run(struct vio_loop *l)
{
    uint64_t last_event = 0;

    l->thread = pthread_self();
    l->thread_set = true;
    while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
        uint64_t poll_ns = __atomic_load_n(&l->poll_ns, __ATOMIC_RELAXED);
        bool polling = poll_ns && vio_now_ns() - last_event < poll_ns;
        int n = vio_loop_run_once(l, polling ? 0 : -1);

        if (n < 0)
            return n;
        if (n > 0 && poll_ns)
            last_event = vio_now_ns();
    }
    /* Calls queued while stopping still get run so no caller waits forever. */
    run_calls(l);
    return 0;
}

void vio_loop_stop(struct vio_loop *l)
{
    __atomic_store_n(&l->stop, true, __ATOMIC_RELEASE);
    vio_eventfd_signal(l->wake_fd);
}

int vio_loop_call(struct vio_loop *l, struct vio_call *c)
{
    c->done = false;
    c->ret = 0;
    c->loop = l;
    if (!l->thread_set || vio_loop_is_current(l)) {
        c->fn(c);
        if (!c->done) {
            /* A deferred completion needs the loop to run; from the loop's
             * own thread that would wait forever. */
            vio_err("internal error: deferred vio_loop_call on the loop's own thread");
            abort();
        }
        return c->ret;
    }
    pthread_mutex_lock(&l->lock);
    c->next = l->calls;
    l->calls = c;
    pthread_mutex_unlock(&l->lock);
    vio_eventfd_signal(l->wake_fd);
    pthread_mutex_lock(&l->lock);
    while (!c->done)
        pthread_cond_wait(&l->cond, &l->lock);
    pthread_mutex_unlock(&l->lock);
    return c->ret;
}

void vio_call_done(struct vio_call *c, int ret)
{
    struct vio_loop *l = c->loop;

    pthread_mutex_lock(&l->lock);
    c->ret = ret;
    c->done = true;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}
