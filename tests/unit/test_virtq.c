/* Unit tests of the split virtqueue (src/virtio/virtq.c): well-formed chains
 * come out as correct iovecs, and every kind of malformed ring breaks the
 * queue (with the error eventfd signalled) instead of crashing or hanging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/loop.h"
#include "ring.h"
#include "virtio/virtq.h"

#define QSIZE   16
#define MAX_IOV 8

struct fixture {
    struct test_mem m;
    struct test_ring r;
    struct vio_vq vq;
    int call_fd, err_fd;
};

static int setup_with(void **state, bool split, uint64_t hole)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (split)
        tmem_init_split(&f->m, 1 << 20, hole);
    else
        tmem_init(&f->m, 1 << 20);
    tring_init(&f->r, &f->m, QSIZE);
    vio_vq_init(&f->vq, 0, 256, "test q0");
    tring_to_vq(&f->r, &f->vq, false, true);
    f->call_fd = eventfd(0, EFD_NONBLOCK);
    f->err_fd = eventfd(0, EFD_NONBLOCK);
    f->vq.call_fd = f->call_fd;
    f->vq.err_fd = f->err_fd;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, false, 0);
}

static int setup_split(void **state)
{
    return setup_with(state, true, 0);
}

static int setup_hole(void **state)
{
    return setup_with(state, true, 1 << 16);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    vio_vq_free(&f->vq);
    tmem_free(&f->m);
    close(f->call_fd);
    close(f->err_fd);
    free(f);
    return 0;
}

static void start(struct fixture *f)
{
    assert_int_equal(vio_vq_start(&f->vq, &f->m.gmem, MAX_IOV), 0);
}

static bool fd_signalled(int fd)
{
    return vio_eventfd_drain(fd) > 0;
}

/* The queue must be broken, the error fd signalled, and nothing more popped. */
static void expect_fault(struct fixture *f)
{
    assert_null(vio_vq_pop(&f->vq));
    assert_true(f->vq.broken);
    assert_true(fd_signalled(f->err_fd));
    assert_null(vio_vq_pop(&f->vq));
}

static void test_start_rejects_bad_geometry(void **state)
{
    struct fixture *f = *state;

    f->vq.size = 12; /* not a power of two */
    assert_int_equal(vio_vq_start(&f->vq, &f->m.gmem, MAX_IOV), -EINVAL);
    f->vq.size = 512; /* above max_size 256 */
    assert_int_equal(vio_vq_start(&f->vq, &f->m.gmem, MAX_IOV), -EINVAL);
    f->vq.size = 0;
    assert_int_equal(vio_vq_start(&f->vq, &f->m.gmem, MAX_IOV), -EINVAL);
    f->vq.size = QSIZE;
    f->vq.desc_gpa = f->r.desc + 8; /* misaligned */
    assert_int_equal(vio_vq_start(&f->vq, &f->m.gmem, MAX_IOV), -EINVAL);
    f->vq.desc_gpa = 0x1000; /* below guest memory */
    assert_int_equal(vio_vq_start(&f->vq, &f->m.gmem, MAX_IOV), -EFAULT);
    /* used ring running off the end of memory */
    f->vq.desc_gpa = f->r.desc;
    f->vq.used_gpa = TMEM_BASE + (1 << 20) - 64;
    assert_int_equal(vio_vq_start(&f->vq, &f->m.gmem, MAX_IOV), -EFAULT);
    assert_false(vio_vq_started(&f->vq));
    f->vq.used_gpa = f->r.used;
    start(f);
    assert_true(vio_vq_started(&f->vq));
}

static void test_pop_simple_chain(void **state)
{
    struct fixture *f = *state;
    uint64_t hdr = tmem_alloc(&f->m, 16, 8), data = tmem_alloc(&f->m, 4096, 8),
             st = tmem_alloc(&f->m, 1, 1);
    struct tbuf b[] = {{hdr, 16, false}, {data, 4096, true}, {st, 1, true}};
    struct vio_vq_elem *e;
    uint32_t id, len;
    uint16_t head;

    start(f);
    assert_null(vio_vq_pop(&f->vq));
    head = tring_add(&f->r, b, 3);
    e = vio_vq_pop(&f->vq);
    assert_non_null(e);
    assert_int_equal(e->id, head);
    assert_int_equal(e->out_num, 1);
    assert_int_equal(e->in_num, 2);
    assert_int_equal(e->out_len, 16);
    assert_int_equal(e->in_len, 4097);
    assert_ptr_equal(e->iov[0].iov_base, tmem_ptr(&f->m, hdr));
    assert_ptr_equal(e->iov[1].iov_base, tmem_ptr(&f->m, data));
    assert_int_equal(e->iov[1].iov_len, 4096);
    assert_ptr_equal(e->iov[2].iov_base, tmem_ptr(&f->m, st));
    assert_int_equal(f->vq.inflight, 1);
    assert_null(vio_vq_pop(&f->vq));

    vio_vq_push(&f->vq, e, 4097);
    assert_false(tring_used(&f->r, &id, &len)); /* not published yet */
    vio_vq_notify(&f->vq);
    assert_true(tring_used(&f->r, &id, &len));
    assert_int_equal(id, head);
    assert_int_equal(len, 4097);
    assert_true(fd_signalled(f->call_fd));
    assert_int_equal(f->vq.inflight, 0);
    assert_false(f->vq.broken);
}

static void test_pop_indirect(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 100, 8), c = tmem_alloc(&f->m, 200, 8);
    struct tbuf b[] = {{a, 100, false}, {c, 200, true}};
    struct vio_vq_elem *e;

    start(f);
    tring_add_indirect(&f->r, b, 2);
    e = vio_vq_pop(&f->vq);
    assert_non_null(e);
    assert_int_equal(e->out_num, 1);
    assert_int_equal(e->in_num, 1);
    assert_int_equal(e->out_len, 100);
    assert_int_equal(e->in_len, 200);
    assert_ptr_equal(e->iov[1].iov_base, tmem_ptr(&f->m, c));
}

static void test_indirect_without_feature(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 100, 8);
    struct tbuf b[] = {{a, 100, false}};

    f->vq.indirect = false;
    start(f);
    tring_add_indirect(&f->r, b, 1);
    expect_fault(f);
}

static void test_nested_indirect(void **state)
{
    struct fixture *f = *state;
    uint64_t t1 = tmem_alloc(&f->m, 16, 16), t2 = tmem_alloc(&f->m, 16, 16);
    uint64_t a = tmem_alloc(&f->m, 64, 8);

    start(f);
    tring_set_table_desc(&f->r, t2, 0, a, 64, 0, 0);
    tring_set_table_desc(&f->r, t1, 0, t2, 16, VIO_DESC_F_INDIRECT, 0);
    tring_set_desc(&f->r, 0, t1, 16, VIO_DESC_F_INDIRECT, 0);
    tring_publish(&f->r, 0);
    expect_fault(f);
}

static void test_indirect_with_next(void **state)
{
    struct fixture *f = *state;
    uint64_t t = tmem_alloc(&f->m, 16, 16), a = tmem_alloc(&f->m, 64, 8);

    start(f);
    tring_set_table_desc(&f->r, t, 0, a, 64, 0, 0);
    tring_set_desc(&f->r, 0, t, 16, VIO_DESC_F_INDIRECT | VIO_DESC_F_NEXT, 1);
    tring_set_desc(&f->r, 1, a, 64, 0, 0);
    tring_publish(&f->r, 0);
    expect_fault(f);
}

static void test_indirect_not_first(void **state)
{
    struct fixture *f = *state;
    uint64_t t = tmem_alloc(&f->m, 16, 16), a = tmem_alloc(&f->m, 64, 8);

    start(f);
    tring_set_table_desc(&f->r, t, 0, a, 64, 0, 0);
    tring_set_desc(&f->r, 0, a, 64, VIO_DESC_F_NEXT, 1);
    tring_set_desc(&f->r, 1, t, 16, VIO_DESC_F_INDIRECT, 0);
    tring_publish(&f->r, 0);
    expect_fault(f);
}

static void test_indirect_bad_length(void **state)
{
    struct fixture *f = *state;
    uint64_t t = tmem_alloc(&f->m, 64, 16);

    start(f);
    tring_set_desc(&f->r, 0, t, 24, VIO_DESC_F_INDIRECT, 0); /* not a multiple of 16 */
    tring_publish(&f->r, 0);
    expect_fault(f);
}

static void test_indirect_zero_length(void **state)
{
    struct fixture *f = *state;
    uint64_t t = tmem_alloc(&f->m, 64, 16);

    start(f);
    tring_set_desc(&f->r, 0, t, 0, VIO_DESC_F_INDIRECT, 0);
    tring_publish(&f->r, 0);
    expect_fault(f);
}

static void test_indirect_outside_memory(void **state)
{
    struct fixture *f = *state;

    start(f);
    tring_set_desc(&f->r, 0, TMEM_BASE + (1 << 20) - 16, 32, VIO_DESC_F_INDIRECT, 0);
    tring_publish(&f->r, 0);
    expect_fault(f);
}

static void test_indirect_loop(void **state)
{
    struct fixture *f = *state;
    uint64_t t = tmem_alloc(&f->m, 32, 16), a = tmem_alloc(&f->m, 64, 8);

    start(f);
    tring_set_table_desc(&f->r, t, 0, a, 64, VIO_DESC_F_NEXT, 1);
    tring_set_table_desc(&f->r, t, 1, a, 64, VIO_DESC_F_NEXT, 0);
    tring_set_desc(&f->r, 0, t, 32, VIO_DESC_F_INDIRECT, 0);
    tring_publish(&f->r, 0);
    expect_fault(f);
}

static void test_indirect_next_out_of_table(void **state)
{
    struct fixture *f = *state;
    uint64_t t = tmem_alloc(&f->m, 32, 16), a = tmem_alloc(&f->m, 64, 8);

    start(f);
    tring_set_table_desc(&f->r, t, 0, a, 64, VIO_DESC_F_NEXT, 2);
    tring_set_table_desc(&f->r, t, 1, a, 64, 0, 0);
    tring_set_desc(&f->r, 0, t, 32, VIO_DESC_F_INDIRECT, 0);
    tring_publish(&f->r, 0);
    expect_fault(f);
}

static void test_descriptor_loop(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);

    start(f);
    tring_set_desc(&f->r, 0, a, 64, VIO_DESC_F_NEXT, 1);
    tring_set_desc(&f->r, 1, a, 64, VIO_DESC_F_NEXT, 0);
    tring_publish(&f->r, 0);
    expect_fault(f);
}

static void test_self_loop(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);

    start(f);
    tring_set_desc(&f->r, 3, a, 0, VIO_DESC_F_NEXT, 3); /* zero length, no buffers */
    tring_publish(&f->r, 3);
    expect_fault(f);
}

static void test_chain_longer_than_queue(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);

    /* Every descriptor is used once, yet the chain never ends: the last
     * one points back to the start. The length limit catches it. */
    start(f);
    for (uint16_t i = 0; i < QSIZE; i++)
        tring_set_desc(&f->r, i, a, 0, VIO_DESC_F_NEXT, (uint16_t)((i + 1) % QSIZE));
    tring_publish(&f->r, 0);
    expect_fault(f);
}

static void test_next_out_of_range(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);

    start(f);
    tring_set_desc(&f->r, 0, a, 64, VIO_DESC_F_NEXT, QSIZE);
    tring_publish(&f->r, 0);
    expect_fault(f);
}

static void test_head_out_of_range(void **state)
{
    struct fixture *f = *state;

    start(f);
    tring_publish(&f->r, QSIZE + 3);
    expect_fault(f);
}

static void test_avail_idx_jump(void **state)
{
    struct fixture *f = *state;

    start(f);
    *tring_avail_idx(&f->r) = vio_to_le16(QSIZE + 1);
    expect_fault(f);
}

static void test_avail_idx_full_queue_ok(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);

    /* Exactly a queue's worth of entries is legal. */
    start(f);
    for (uint16_t i = 0; i < QSIZE; i++) {
        tring_set_desc(&f->r, i, a, 64, 0, 0);
        tring_publish(&f->r, i);
    }
    for (unsigned i = 0; i < QSIZE; i++)
        assert_non_null(vio_vq_pop(&f->vq));
    assert_null(vio_vq_pop(&f->vq));
    assert_false(f->vq.broken);
}

static void test_readable_after_writable(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);
    struct tbuf b[] = {{a, 16, true}, {a + 16, 16, false}};

    start(f);
    tring_add(&f->r, b, 2);
    expect_fault(f);
}

static void test_buffer_outside_memory(void **state)
{
    struct fixture *f = *state;
    struct tbuf b[] = {{0x1000, 16, false}};

    start(f);
    tring_add(&f->r, b, 1);
    expect_fault(f);
}

static void test_buffer_runs_past_end(void **state)
{
    struct fixture *f = *state;
    struct tbuf b[] = {{TMEM_BASE + (1 << 20) - 8, 16, false}};

    start(f);
    tring_add(&f->r, b, 1);
    expect_fault(f);
}

static void test_buffer_address_wraps(void **state)
{
    struct fixture *f = *state;
    struct tbuf b[] = {{UINT64_MAX - 7, 4096, true}};

    start(f);
    tring_add(&f->r, b, 1);
    expect_fault(f);
}

static void test_buffer_split_across_regions(void **state)
{
    struct fixture *f = *state;
    uint64_t boundary = TMEM_BASE + (1 << 19);
    struct tbuf b[] = {{boundary - 100, 300, true}};
    struct vio_vq_elem *e;

    start(f);
    tring_add(&f->r, b, 1);
    e = vio_vq_pop(&f->vq);
    assert_non_null(e);
    assert_int_equal(e->in_num, 2);
    assert_int_equal(e->in_len, 300);
    assert_int_equal(e->iov[0].iov_len, 100);
    assert_int_equal(e->iov[1].iov_len, 200);
    assert_ptr_equal(e->iov[0].iov_base, tmem_ptr(&f->m, boundary - 100));
    assert_ptr_equal(e->iov[1].iov_base, tmem_ptr(&f->m, boundary));
    /* The host addresses are not contiguous: a single iovec would be wrong. */
    assert_ptr_not_equal((uint8_t *)e->iov[0].iov_base + 100, e->iov[1].iov_base);
}

static void test_buffer_straddles_hole(void **state)
{
    struct fixture *f = *state;
    uint64_t end = TMEM_BASE + (1 << 19);
    struct tbuf b[] = {{end - 100, 300, true}};

    start(f);
    tring_add(&f->r, b, 1);
    expect_fault(f);
}

static void test_too_many_buffers(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64 * (MAX_IOV + 1), 8);
    struct tbuf b[MAX_IOV + 1];

    for (unsigned i = 0; i <= MAX_IOV; i++)
        b[i] = (struct tbuf){a + 64 * i, 64, false};
    start(f);
    tring_add(&f->r, b, MAX_IOV + 1);
    expect_fault(f);
}

static void test_zero_length_descriptors_skipped(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);
    struct tbuf b[] = {{a, 0, false}, {a, 64, false}, {0, 0, true}};
    struct vio_vq_elem *e;

    start(f);
    tring_add(&f->r, b, 3);
    e = vio_vq_pop(&f->vq);
    assert_non_null(e);
    assert_int_equal(e->out_num, 1);
    assert_int_equal(e->in_num, 0);
    assert_int_equal(e->out_len, 64);
}

static void test_head_reused_in_flight(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);

    start(f);
    tring_set_desc(&f->r, 5, a, 64, 0, 0);
    tring_publish(&f->r, 5);
    assert_non_null(vio_vq_pop(&f->vq));
    tring_publish(&f->r, 5); /* same head while the first is still ours */
    expect_fault(f);
}

static void test_restart_after_fault(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);
    struct vio_vq_elem *e;

    start(f);
    tring_publish(&f->r, QSIZE); /* bad head */
    expect_fault(f);
    /* A reset (stop, fix the ring, start at a new base) works again. */
    vio_vq_stop(&f->vq);
    f->vq.last_avail_idx = f->r.avail_idx;
    start(f);
    assert_false(f->vq.broken);
    tring_set_desc(&f->r, 2, a, 64, 0, 0);
    tring_publish(&f->r, 2);
    e = vio_vq_pop(&f->vq);
    assert_non_null(e);
    assert_int_equal(e->id, 2);
}

static void test_restart_keeps_used_idx(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);
    struct tbuf b[] = {{a, 64, true}};
    uint32_t id, len;

    start(f);
    for (int i = 0; i < 3; i++) {
        tring_add(&f->r, b, 1);
        vio_vq_push(&f->vq, vio_vq_pop(&f->vq), 64);
    }
    vio_vq_notify(&f->vq);
    vio_vq_stop(&f->vq);
    start(f); /* like a vhost-user reconnect with base 3 */
    tring_add(&f->r, b, 1);
    vio_vq_push(&f->vq, vio_vq_pop(&f->vq), 7);
    vio_vq_notify(&f->vq);
    assert_int_equal(tring_used_idx(&f->r), 4);
    for (int i = 0; i < 4; i++)
        assert_true(tring_used(&f->r, &id, &len));
    assert_int_equal(len, 7);
}

static void test_no_interrupt_flag(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);
    struct tbuf b[] = {{a, 64, true}};

    start(f);
    *tring_avail_flags(&f->r) = vio_to_le16(VIO_AVAIL_F_NO_INTERRUPT);
    tring_add(&f->r, b, 1);
    vio_vq_push(&f->vq, vio_vq_pop(&f->vq), 1);
    vio_vq_notify(&f->vq);
    assert_int_equal(tring_used_idx(&f->r), 1);
    assert_false(fd_signalled(f->call_fd));
    *tring_avail_flags(&f->r) = 0;
    tring_add(&f->r, b, 1);
    vio_vq_push(&f->vq, vio_vq_pop(&f->vq), 1);
    vio_vq_notify(&f->vq);
    assert_true(fd_signalled(f->call_fd));
    /* Nothing new: no second interrupt. */
    vio_vq_notify(&f->vq);
    assert_false(fd_signalled(f->call_fd));
}

static void test_disable_enable_notify(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);
    struct tbuf b[] = {{a, 64, true}};

    start(f);
    vio_vq_disable_notify(&f->vq);
    assert_int_equal(tring_used_flags(&f->r), VIO_USED_F_NO_NOTIFY);
    assert_false(vio_vq_enable_notify(&f->vq));
    assert_int_equal(tring_used_flags(&f->r), 0);
    tring_add(&f->r, b, 1);
    assert_true(vio_vq_enable_notify(&f->vq)); /* a buffer arrived meanwhile */
}

static void test_event_idx(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);
    struct tbuf b[] = {{a, 64, true}};
    struct vio_vq_elem *e[4];

    f->vq.event_idx = true;
    start(f);
    for (int i = 0; i < 4; i++)
        tring_add(&f->r, b, 1);
    for (int i = 0; i < 4; i++)
        e[i] = vio_vq_pop(&f->vq);
    /* The driver wants an interrupt only once used idx passes 2. */
    *tring_used_event(&f->r) = vio_to_le16(2);
    vio_vq_push(&f->vq, e[0], 1);
    vio_vq_notify(&f->vq); /* first notification is always sent */
    assert_true(fd_signalled(f->call_fd));
    vio_vq_push(&f->vq, e[1], 1);
    vio_vq_notify(&f->vq); /* used idx 2: not past event 2 */
    assert_false(fd_signalled(f->call_fd));
    vio_vq_push(&f->vq, e[2], 1);
    vio_vq_notify(&f->vq); /* used idx 3 passes 2 */
    assert_true(fd_signalled(f->call_fd));
    vio_vq_push(&f->vq, e[3], 1);
    vio_vq_notify(&f->vq); /* event still 2: already passed */
    assert_false(fd_signalled(f->call_fd));
    /* enable_notify publishes avail_event = what we consumed. */
    assert_false(vio_vq_enable_notify(&f->vq));
    assert_int_equal(tring_avail_event(&f->r), 4);
    /* disable_notify with EVENT_IDX leaves the used flags alone. */
    vio_vq_disable_notify(&f->vq);
    assert_int_equal(tring_used_flags(&f->r), 0);
}

static void test_elem_read_write(void **state)
{
    struct fixture *f = *state;
    uint64_t o1 = tmem_alloc(&f->m, 3, 1), o2 = tmem_alloc(&f->m, 5, 1);
    uint64_t i1 = tmem_alloc(&f->m, 2, 1), i2 = tmem_alloc(&f->m, 6, 1);
    struct tbuf b[] = {{o1, 3, false}, {o2, 5, false}, {i1, 2, true}, {i2, 6, true}};
    struct vio_vq_elem *e;
    char buf[16] = {0};

    memcpy(tmem_ptr(&f->m, o1), "abc", 3);
    memcpy(tmem_ptr(&f->m, o2), "defgh", 5);
    start(f);
    tring_add(&f->r, b, 4);
    e = vio_vq_pop(&f->vq);
    assert_non_null(e);
    assert_int_equal(vio_vq_elem_read(e, 2, buf, 4), 4);
    assert_memory_equal(buf, "cdef", 4);
    assert_int_equal(vio_vq_elem_read(e, 6, buf, 10), 2); /* only 8 readable */
    assert_int_equal(vio_vq_elem_write(e, 1, "XYZW", 4), 4);
    assert_memory_equal(tmem_ptr(&f->m, i1), "\0X", 2);
    assert_memory_equal(tmem_ptr(&f->m, i2), "YZW", 3);
    assert_int_equal(vio_vq_elem_write(e, 7, "12345", 5), 1); /* 8 writable */
}

static void test_pop_after_stop(void **state)
{
    struct fixture *f = *state;
    uint64_t a = tmem_alloc(&f->m, 64, 8);
    struct tbuf b[] = {{a, 64, false}};

    start(f);
    vio_vq_stop(&f->vq);
    tring_add(&f->r, b, 1);
    assert_null(vio_vq_pop(&f->vq));
    assert_false(f->vq.broken);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_rejects_bad_geometry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pop_simple_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pop_indirect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_without_feature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_indirect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_with_next, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_not_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_bad_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_zero_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_outside_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_next_out_of_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_descriptor_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_longer_than_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_avail_idx_jump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_avail_idx_full_queue_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readable_after_writable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_outside_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_runs_past_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_address_wraps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_split_across_regions, setup_split,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_buffer_straddles_hole, setup_hole, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_length_descriptors_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_reused_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_after_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_used_idx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_interrupt_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disable_enable_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elem_read_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pop_after_stop, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
