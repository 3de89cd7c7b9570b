/* Unit tests of the event loop (src/core/loop.c) and worker pool: handlers,
 * removal during dispatch, cross-thread calls completed now or later, and
 * stopping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/workers.h"

struct counter {
    struct vio_handler h;
    struct vio_loop *loop;
    int hits;
    struct counter *victim; /* removed by this handler when it runs */
};

static void count_handler(struct vio_handler *h, uint32_t events)
{
    struct counter *c = (struct counter *)h;

    (void)events;
    vio_eventfd_drain(h->fd);
    c->hits++;
    if (c->victim) {
        vio_loop_del(c->loop, &c->victim->h);
        c->victim = NULL;
    }
    vio_loop_stop(c->loop);
}

static void test_handler_removed_during_dispatch(void **state)
{
    struct vio_loop l;
    struct counter a = {.loop = &l}, b = {.loop = &l};
    int fa = eventfd(0, EFD_NONBLOCK), fb = eventfd(0, EFD_NONBLOCK);

    (void)state;
    assert_int_equal(vio_loop_init(&l), 0);
    assert_int_equal(vio_loop_add(&l, &a.h, fa, EPOLLIN, count_handler), 0);
    assert_int_equal(vio_loop_add(&l, &b.h, fb, EPOLLIN, count_handler), 0);
    /* Both are ready in the same batch; whichever runs first removes the
     * other, which then must not run. */
    a.victim = &b;
    b.victim = &a;
    vio_eventfd_signal(fa);
    vio_eventfd_signal(fb);
    assert_int_equal(vio_loop_run(&l), 0);
    assert_int_equal(a.hits + b.hits, 1);
    vio_loop_destroy(&l);
    close(fa);
    close(fb);
}

struct call_arg {
    struct vio_call c;
    pthread_t ran_on;
    int order;
    int *seq;
};

static void record_fn(struct vio_call *c)
{
    struct call_arg *a = (struct call_arg *)c;

    a->ran_on = pthread_self();
    a->order = (*a->seq)++;
    vio_call_done(c, 42);
}

static void test_call_runs_on_worker(void **state)
{
    struct vio_workers w;
    int seq = 0;
    struct call_arg a = {.c = {.fn = record_fn}, .seq = &seq};

    (void)state;
    assert_int_equal(vio_workers_start(&w, 2, "t"), 0);
    assert_int_equal(vio_loop_call(&w.loops[1], &a.c), 42);
    assert_true(pthread_equal(a.ran_on, w.threads[1]));
    assert_false(pthread_equal(a.ran_on, pthread_self()));
    vio_workers_stop(&w);
}

static void test_call_inline_without_thread(void **state)
{
    struct vio_loop l;
    int seq = 0;
    struct call_arg a = {.c = {.fn = record_fn}, .seq = &seq};

    (void)state;
    assert_int_equal(vio_loop_init(&l), 0);
    assert_int_equal(vio_loop_call(&l, &a.c), 42);
    assert_true(pthread_equal(a.ran_on, pthread_self()));
    vio_loop_destroy(&l);
}

/* A call completed later, from an fd handler on the same loop. */
struct deferred {
    struct vio_call c;
    struct vio_handler h;
    struct vio_call *pending;
    int fd;
};

static void defer_fn(struct vio_call *c)
{
    struct deferred *d = (struct deferred *)c;

    d->pending = c;
    vio_eventfd_signal(d->fd); /* the "drain" finishes on a later event */
}

static void finish_handler(struct vio_handler *h, uint32_t events)
{
    struct deferred *d = vio_container_of(h, struct deferred, h);

    (void)events;
    vio_eventfd_drain(h->fd);
    if (d->pending) {
        struct vio_call *c = d->pending;

        d->pending = NULL;
        vio_call_done(c, 7);
    }
}

struct add_arg {
    struct vio_call c;
    struct deferred *d;
    struct vio_loop *l;
};

static void add_fn(struct vio_call *c)
{
    struct add_arg *a = (struct add_arg *)c;

    vio_call_done(c, vio_loop_add(a->l, &a->d->h, a->d->fd, EPOLLIN, finish_handler));
}

static void test_call_completed_later(void **state)
{
    struct vio_workers w;
    struct deferred d = {.c = {.fn = defer_fn}};
    struct add_arg add = {.c = {.fn = add_fn}, .d = &d};

    (void)state;
    d.fd = eventfd(0, EFD_NONBLOCK);
    assert_int_equal(vio_workers_start(&w, 1, "t"), 0);
    add.l = &w.loops[0];
    assert_int_equal(vio_loop_call(&w.loops[0], &add.c), 0);
    assert_int_equal(vio_loop_call(&w.loops[0], &d.c), 7);
    vio_workers_stop(&w);
    close(d.fd);
}

struct racer {
    struct vio_loop *l;
    int *seq;
    int n;
};

static void *call_many(void *p)
{
    struct racer *r = p;

    for (int i = 0; i < r->n; i++) {
        struct call_arg a = {.c = {.fn = record_fn}, .seq = r->seq};

        if (vio_loop_call(r->l, &a.c) != 42)
            return (void *)1;
    }
    return NULL;
}

static void test_calls_from_many_threads(void **state)
{
    struct vio_workers w;
    pthread_t t[4];
    int seq = 0;
    struct racer r;

    (void)state;
    assert_int_equal(vio_workers_start(&w, 1, "t"), 0);
    r = (struct racer){.l = &w.loops[0], .seq = &seq, .n = 500};
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, call_many, &r);
    for (int i = 0; i < 4; i++) {
        void *ret;

        pthread_join(t[i], &ret);
        assert_null(ret);
    }
    /* seq is only touched on the worker thread: no lost updates. */
    assert_int_equal(seq, 2000);
    vio_workers_stop(&w);
}

static void test_workers_round_robin(void **state)
{
    struct vio_workers w;

    (void)state;
    assert_int_equal(vio_workers_start(&w, 3, "t"), 0);
    assert_ptr_equal(vio_workers_next(&w), &w.loops[0]);
    assert_ptr_equal(vio_workers_next(&w), &w.loops[1]);
    assert_ptr_equal(vio_workers_next(&w), &w.loops[2]);
    assert_ptr_equal(vio_workers_next(&w), &w.loops[0]);
    vio_workers_stop(&w);
    assert_int_equal(vio_workers_start(&w, 0, "t"), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handler_removed_during_dispatch),
        cmocka_unit_test(test_call_runs_on_worker),
        cmocka_unit_test(test_call_inline_without_thread),
        cmocka_unit_test(test_call_completed_later),
        cmocka_unit_test(test_calls_from_many_threads),
        cmocka_unit_test(test_workers_round_robin),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
