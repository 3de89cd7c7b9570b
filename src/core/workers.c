/* Worker thread pool (see workers.h). */
#include "core/workers.h"

#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct worker_arg {
    struct vio_loop *loop;
    char name[16];
    sem_t ready;
};

static void *worker_main(void *p)
{
    struct worker_arg *a = p;
    struct vio_loop *loop = a->loop;
    int ret;

    vio_log_set_thread_name(a->name);
    pthread_setname_np(pthread_self(), a->name);
    /* Known as the loop's thread before anyone can call into the loop, so
     * cross-thread calls are queued rather than run inline. */
    loop->thread = pthread_self();
    loop->thread_set = true;
    sem_post(&a->ready); /* a is the starter's from here on */
    ret = vio_loop_run(loop);
    if (ret < 0)
        vio_err("worker loop failed: %s", strerror(-ret));
    return NULL;
}

int vio_workers_start(struct vio_workers *w, unsigned n, const char *prefix)
{
    sigset_t all, old;
    int ret = 0;

    memset(w, 0, sizeof(*w));
    if (n == 0)
        return -EINVAL;
    w->loops = calloc(n, sizeof(*w->loops));
    w->threads = calloc(n, sizeof(*w->threads));
    if (!w->loops || !w->threads) {
        ret = -ENOMEM;
        goto err;
    }
    w->n = n;
    /* Workers never take signals; the control thread handles them. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned i = 0; i < n; i++) {
        struct worker_arg a = {.loop = &w->loops[i]};

        ret = vio_loop_init(&w->loops[i]);
        if (ret < 0)
            break;
        snprintf(a.name, sizeof(a.name), "%s%u", prefix, i);
        sem_init(&a.ready, 0, 0);
        ret = -pthread_create(&w->threads[i], NULL, worker_main, &a);
        if (ret < 0) {
            sem_destroy(&a.ready);
            vio_loop_destroy(&w->loops[i]);
            break;
        }
        while (sem_wait(&a.ready) < 0 && errno == EINTR)
            ;
        sem_destroy(&a.ready);
        w->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret < 0)
        goto err;
    return 0;

err:
    vio_workers_stop(w);
    return ret;
}

void vio_workers_stop(struct vio_workers *w)
{
    for (unsigned i = 0; i < w->started; i++)
        vio_loop_stop(&w->loops[i]);
    for (unsigned i = 0; i < w->started; i++) {
        pthread_join(w->threads[i], NULL);
        vio_loop_destroy(&w->loops[i]);
    }
    free(w->loops);
    free(w->threads);
    memset(w, 0, sizeof(*w));
}

struct vio_loop *vio_workers_next(struct vio_workers *w)
{
    struct vio_loop *l = &w->loops[w->next];

    w->next = (w->next + 1) % w->n;
    return l;
}

void vio_workers_set_poll(struct vio_workers *w, uint64_t ns)
{
    for (unsigned i = 0; i < w->n; i++)
        __atomic_store_n(&w->loops[i].poll_ns, ns, __ATOMIC_RELAXED);
}
