/* Unit tests of the vhost-user front-end (src/vhost/vu_frontend.c), in one
 * process: against vio's own back-end (a virtio-blk device on a temp file,
 * its control loop on a thread, a worker pool) with guest memory in a memfd
 * both sides map and a small driver-side split ring written here; and
 * against a scripted fake back-end on a thread that closes early, stays
 * silent or sends malformed replies, each of which must end in an error
 * return, never a crash or a hang. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/workers.h"
#include "devices/blk.h"
#include "vhost/vu_backend.h"
#include "vhost/vu_frontend.h"
#include "vhost/vu_msg.h"
#include "virtio/virtio.h"

#define DISK_SIZE (4u << 20)
#define NQUEUES   2
#define QSIZE     64

#define T_IN        0
#define T_OUT       1
#define T_FLUSH     4
#define T_GET_ID    8
#define S_OK        0
#define BLK_F_FLUSH 9

/* Guest memory: one memfd, two regions at unrelated guest addresses so ring
 * addresses must really be translated (and fd_offset honoured). Region 0
 * holds request buffers, region 1 the rings. */
#define MEM_SIZE  (4u << 20)
#define R0_GPA    0x100000ull
#define R1_GPA    0x40000000ull
#define R_SIZE    (2u << 20)
#define SLOT_SIZE 0x40000u /* one request's header, status and data per slot */
#define NSLOTS    (R_SIZE / SLOT_SIZE)

struct gmem {
    int fd;
    uint8_t *base;
};

/* Driver side of one split ring in struct gmem. */
struct dq {
    struct gmem *m;
    uint16_t size;
    uint64_t desc, avail, used;
    uint16_t avail_idx, used_seen, next_desc;
    int kick, call, err;
};

struct fx {
    char dir[64], sock[96], disk[96];
    struct vio_dev *dev;
    struct vio_workers w;
    struct vio_loop loop;
    pthread_t thread;
    struct vio_vu_backend *be;
    struct gmem m;
    struct dq q[NQUEUES];
    struct vio_vu_front *f;
};

/* ---- guest memory and the driver-side ring ---- */

static void gmem_init(struct gmem *m)
{
    m->fd = memfd_create("vio-test-guest", MFD_CLOEXEC);
    assert_true(m->fd >= 0);
    assert_int_equal(ftruncate(m->fd, MEM_SIZE), 0);
    m->base = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
    assert_true(m->base != MAP_FAILED);
}

static void gmem_free(struct gmem *m)
{
    munmap(m->base, MEM_SIZE);
    close(m->fd);
}

static void mem_regions(struct gmem *m, struct vio_vu_mem_region r[2])
{
    r[0] = (struct vio_vu_mem_region){m->fd, 0, R0_GPA, R_SIZE, m->base};
    r[1] = (struct vio_vu_mem_region){m->fd, R_SIZE, R1_GPA, R_SIZE, m->base + R_SIZE};
}

/* Host pointer for [gpa, gpa+len); test code, so it may do the arithmetic. */
static void *gptr(struct gmem *m, uint64_t gpa, uint64_t len)
{
    if (gpa >= R0_GPA && gpa - R0_GPA + len <= R_SIZE)
        return m->base + (gpa - R0_GPA);
    if (gpa >= R1_GPA && gpa - R1_GPA + len <= R_SIZE)
        return m->base + R_SIZE + (gpa - R1_GPA);
    fail_msg("gpa 0x%llx+%llu is not test memory", (unsigned long long)gpa,
             (unsigned long long)len);
    return NULL;
}

static void dq_init(struct dq *q, struct gmem *m, uint64_t ring_gpa, uint16_t size)
{
    memset(q, 0, sizeof(*q));
    q->m = m;
    q->size = size;
    q->desc = ring_gpa;
    q->avail = ring_gpa + vio_vring_desc_size(size);
    q->used = (q->avail + vio_vring_avail_size(size) + 4095) & ~4095ull;
    memset(gptr(m, ring_gpa, q->used + vio_vring_used_size(size) - ring_gpa), 0,
           q->used + vio_vring_used_size(size) - ring_gpa);
    q->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    q->call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    q->err = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(q->kick >= 0 && q->call >= 0 && q->err >= 0);
}

static void dq_close(struct dq *q)
{
    if (q->kick > 0) {
        close(q->kick);
        close(q->call);
        close(q->err);
    }
    q->kick = q->call = q->err = 0;
}

struct buf {
    uint64_t gpa;
    uint32_t len;
    bool write; /* device-writable */
};

/* Chain @n buffers, publish the head, return it. */
static uint16_t dq_add(struct dq *q, const struct buf *b, unsigned n)
{
    uint16_t head = q->next_desc;
    struct vio_vring_desc *d = gptr(q->m, q->desc, vio_vring_desc_size(q->size));
    struct vio_vring_avail *a = gptr(q->m, q->avail, vio_vring_avail_size(q->size));

    for (unsigned i = 0; i < n; i++) {
        uint16_t k = (uint16_t)((head + i) % q->size);

        d[k].addr = vio_to_le64(b[i].gpa);
        d[k].len = vio_to_le32(b[i].len);
        d[k].flags = vio_to_le16(
            (uint16_t)((i + 1 < n ? VIO_DESC_F_NEXT : 0) | (b[i].write ? VIO_DESC_F_WRITE : 0)));
        d[k].next = vio_to_le16((uint16_t)((head + i + 1) % q->size));
    }
    q->next_desc = (uint16_t)((head + n) % q->size);
    a->ring[q->avail_idx % q->size] = vio_to_le16(head);
    q->avail_idx++;
    /* Release: the entry is visible before the index that publishes it;
     * pairs with the device's acquire after reading avail->idx. */
    __atomic_store_n(&a->idx, vio_to_le16(q->avail_idx), __ATOMIC_RELEASE);
    return head;
}

static void dq_kick(struct dq *q)
{
    vio_eventfd_signal(q->kick);
}

/* Next used element within @ms; false on timeout. */
static bool dq_used(struct dq *q, uint32_t *id, uint32_t *len, int ms)
{
    struct vio_vring_used *u = gptr(q->m, q->used, vio_vring_used_size(q->size));

    for (int waited = 0;; waited += 10) {
        struct pollfd p = {.fd = q->call, .events = POLLIN};
        /* Acquire: pairs with the device's release before storing
         * used->idx, so the element below is complete. */
        uint16_t idx = vio_le16(__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE));

        if (idx != q->used_seen) {
            struct vio_vring_used_elem e = u->ring[q->used_seen % q->size];

            q->used_seen++;
            *id = vio_le32(e.id);
            *len = vio_le32(e.len);
            return true;
        }
        if (waited >= ms)
            return false;
        poll(&p, 1, 10);
        vio_eventfd_drain(q->call);
    }
}

/* ---- virtio-blk requests through a slot of region 0 ---- */

static uint64_t slot_hdr(unsigned s)
{
    return R0_GPA + (uint64_t)s * SLOT_SIZE;
}
static uint64_t slot_status(unsigned s)
{
    return slot_hdr(s) + 16;
}
static uint64_t slot_data(unsigned s)
{
    return slot_hdr(s) + 4096;
}

static uint16_t blk_submit(struct dq *q, unsigned slot, uint32_t type, uint64_t sector,
                           uint32_t len)
{
    uint8_t *h = gptr(q->m, slot_hdr(slot), 16);
    uint32_t t = vio_to_le32(type);
    uint64_t s = vio_to_le64(sector);
    struct buf b[3];
    unsigned n = 0;

    assert_true(slot < NSLOTS && len <= SLOT_SIZE - 4096);
    memset(h, 0, 16);
    memcpy(h, &t, 4);
    memcpy(h + 8, &s, 8);
    *(uint8_t *)gptr(q->m, slot_status(slot), 1) = 0xee;
    b[n++] = (struct buf){slot_hdr(slot), 16, false};
    if (len)
        b[n++] = (struct buf){slot_data(slot), len, type != T_OUT};
    b[n++] = (struct buf){slot_status(slot), 1, true};
    return dq_add(q, b, n);
}

/* Wait for @head's completion; returns its status byte. */
static uint8_t blk_complete(struct dq *q, unsigned slot, uint16_t head, uint32_t *used_len)
{
    uint32_t id, len;

    if (!dq_used(q, &id, &len, 5000))
        fail_msg("no used element within 5 s");
    assert_int_equal(id, head);
    if (used_len)
        *used_len = len;
    return *(uint8_t *)gptr(q->m, slot_status(slot), 1);
}

static uint8_t blk_io(struct dq *q, uint32_t type, uint64_t sector, void *data, uint32_t len)
{
    uint16_t head;
    uint8_t st;

    if (type == T_OUT)
        memcpy(gptr(q->m, slot_data(0), len), data, len);
    head = blk_submit(q, 0, type, sector, len);
    dq_kick(q);
    st = blk_complete(q, 0, head, NULL);
    if (type != T_OUT && len)
        memcpy(data, gptr(q->m, slot_data(0), len), len);
    return st;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 9));
}

/* ---- the real back-end: vio's vhost-user back-end with virtio-blk ---- */

static void *loop_thread(void *arg)
{
    struct fx *x = arg;

    vio_log_set_thread_name("backend");
    vio_loop_run(&x->loop);
    return NULL;
}

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));
    struct vio_bdev_opts bo = {0};
    struct vio_blk_opts o = {.id = "fe0", .num_queues = NQUEUES, .serial = "front-serial"};
    struct vio_bdev *bdev;
    int fd;

    snprintf(x->dir, sizeof(x->dir), "/tmp/vio-test-vufront-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    snprintf(x->sock, sizeof(x->sock), "%s/blk.sock", x->dir);
    snprintf(x->disk, sizeof(x->disk), "%s/disk.img", x->dir);
    fd = open(x->disk, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
    close(fd);
    bo.path = x->disk;
    assert_int_equal(vio_bdev_open(&bo, &bdev), 0);
    assert_int_equal(vio_blk_create(&o, bdev, &x->dev), 0);
    assert_int_equal(vio_workers_start(&x->w, 2, "tworker"), 0);
    for (unsigned i = 0; i < NQUEUES; i++)
        x->dev->queues[i].loop = vio_workers_next(&x->w);
    assert_int_equal(vio_loop_init(&x->loop), 0);
    assert_int_equal(vio_vu_backend_create(x->dev, x->sock, &x->loop, &x->be), 0);
    assert_int_equal(pthread_create(&x->thread, NULL, loop_thread, x), 0);
    gmem_init(&x->m);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fx *x = *state;

    vio_vu_front_close(x->f);
    vio_loop_stop(&x->loop);
    pthread_join(x->thread, NULL);
    vio_vu_backend_destroy(x->be);
    vio_workers_stop(&x->w);
    x->dev->ops->destroy(x->dev);
    vio_loop_destroy(&x->loop);
    for (unsigned i = 0; i < NQUEUES; i++)
        dq_close(&x->q[i]);
    gmem_free(&x->m);
    unlink(x->disk);
    rmdir(x->dir);
    free(x);
    return 0;
}

/* The back-end takes one front-end at a time and notices a closed one on
 * its own loop, so a reconnect right after a close may be refused once. */
static int connect_retry(const char *path, struct vio_vu_front **f)
{
    int ret = -1;

    for (int i = 0; i < 50; i++) {
        ret = vio_vu_front_connect_timeout(path, 5000, f);
        if (ret != -ECONNRESET && ret != -EPIPE)
            return ret;
        if (i == 0)
            fprintf(stderr, "# reconnect refused once (previous connection not yet reaped)\n");
        usleep(20000);
    }
    return ret;
}

/* Connect, ack VERSION_1 (+FLUSH), share memory. */
static void attach(struct fx *x)
{
    struct vio_vu_mem_region r[2];
    uint64_t feat;

    assert_int_equal(connect_retry(x->sock, &x->f), 0);
    feat = vio_vu_front_features(x->f);
    assert_true(feat & VIO_BIT(VIO_F_VERSION_1));
    assert_false(feat & VIO_BIT(VU_F_PROTOCOL_FEATURES));
    assert_int_equal(
        vio_vu_front_set_features(x->f, VIO_BIT(VIO_F_VERSION_1) | (feat & VIO_BIT(BLK_F_FLUSH))),
        0);
    mem_regions(&x->m, r);
    assert_int_equal(vio_vu_front_set_mem_table(x->f, r, 2), 0);
}

static void start_q(struct fx *x, unsigned qi, uint64_t ring_gpa, uint16_t base, bool fresh)
{
    struct dq *q = &x->q[qi];

    if (fresh) {
        dq_close(q);
        dq_init(q, &x->m, ring_gpa, QSIZE);
    }
    assert_int_equal(vio_vu_front_queue_start(x->f, qi, q->size, q->desc, q->avail, q->used, base,
                                              q->kick, q->call, q->err),
                     0);
}

static void write_read_verify(struct fx *x, unsigned qi, uint64_t sector, uint32_t len,
                              unsigned seed)
{
    uint8_t *w = malloc(len), *r = malloc(len), *file = malloc(len);
    int fd;

    fill(w, len, seed);
    assert_int_equal(blk_io(&x->q[qi], T_OUT, sector, w, len), S_OK);
    memset(r, 0, len);
    assert_int_equal(blk_io(&x->q[qi], T_IN, sector, r, len), S_OK);
    assert_memory_equal(r, w, len);
    fd = open(x->disk, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, file, len, (off_t)sector * 512), (ssize_t)len);
    close(fd);
    assert_memory_equal(file, w, len);
    free(w);
    free(r);
    free(file);
}

static void test_negotiation_and_config(void **state)
{
    struct fx *x = *state;
    uint64_t cap, pf;
    uint32_t blk_size;
    uint16_t nq;
    uint8_t big[256];

    assert_int_equal(connect_retry(x->sock, &x->f), 0);
    pf = vio_vu_front_protocol_features(x->f);
    assert_true(pf & VIO_BIT(VU_PF_MQ));
    assert_true(pf & VIO_BIT(VU_PF_REPLY_ACK));
    assert_true(pf & VIO_BIT(VU_PF_CONFIG));
    assert_true(pf & VIO_BIT(VU_PF_RESET_DEVICE));
    /* Offered but not wanted: not acked. */
    assert_false(pf & VIO_BIT(VU_PF_STATUS));
    assert_int_equal(vio_vu_front_num_queues(x->f), NQUEUES);
    assert_int_equal(vio_vu_front_get_config(x->f, 0, &cap, 8), 0);
    assert_int_equal(vio_le64(cap), DISK_SIZE / 512);
    /* A field at an offset: blk_size at 20, num_queues at 34. */
    assert_int_equal(vio_vu_front_get_config(x->f, 20, &blk_size, 4), 0);
    assert_int_equal(vio_le32(blk_size), 512);
    assert_int_equal(vio_vu_front_get_config(x->f, 34, &nq, 2), 0);
    assert_int_equal(vio_le16(nq), NQUEUES);
    assert_int_equal(vio_vu_front_get_config(x->f, 0, big, 256), 0);
    /* Outside the protocol's window: refused without a message. */
    assert_int_equal(vio_vu_front_get_config(x->f, 200, big, 57), -EINVAL);
    assert_int_equal(vio_vu_front_get_config(x->f, 0, big, 0), -EINVAL);
    assert_int_equal(vio_vu_front_get_config(x->f, UINT32_MAX, big, 2), -EINVAL);
    /* vio's virtio-blk config space is read-only: REPLY_ACK reports the
     * refusal and the connection stays usable. */
    assert_int_equal(vio_vu_front_set_config(x->f, 0, &cap, 8), -EREMOTEIO);
    assert_false(vio_vu_front_broken(x->f));
    assert_int_equal(vio_vu_front_get_config(x->f, 0, &cap, 8), 0);
    assert_int_equal(vio_le64(cap), DISK_SIZE / 512);
    /* Features that were not offered are refused before sending. */
    assert_int_equal(vio_vu_front_set_features(x->f, VIO_BIT(63)), -EINVAL);
    assert_int_equal(vio_vu_front_set_features(x->f, VIO_BIT(VIO_F_VERSION_1)), 0);
    assert_int_equal(vio_vu_front_acked_features(x->f), VIO_BIT(VIO_F_VERSION_1));
}

static void test_io_stop_restart(void **state)
{
    struct fx *x = *state;
    uint16_t base = 0xffff, head;
    uint32_t id, len;
    char id_buf[20];

    attach(x);
    start_q(x, 0, R1_GPA, 0, true);
    write_read_verify(x, 0, 16, 8192, 1);
    write_read_verify(x, 0, DISK_SIZE / 512 - 8, 4096, 2); /* the last 4 KiB */
    memset(id_buf, 0, sizeof(id_buf));
    assert_int_equal(blk_io(&x->q[0], T_GET_ID, 0, id_buf, sizeof(id_buf)), S_OK);
    assert_string_equal(id_buf, "front-serial");
    assert_int_equal(blk_io(&x->q[0], T_FLUSH, 0, NULL, 0), S_OK);

    /* Stop: the base is where the back-end stopped, i.e. all 6 taken. */
    assert_int_equal(vio_vu_front_queue_stop(x->f, 0, &base), 0);
    assert_int_equal(base, 6);
    /* A request made available while stopped is not touched... */
    memcpy(gptr(&x->m, slot_data(1), 4096), "stopped", 8);
    head = blk_submit(&x->q[0], 1, T_OUT, 100, 4096);
    dq_kick(&x->q[0]);
    assert_false(dq_used(&x->q[0], &id, &len, 200));
    /* ...until the queue restarts from the base. */
    start_q(x, 0, R1_GPA, base, false);
    assert_int_equal(blk_complete(&x->q[0], 1, head, NULL), S_OK);
    write_read_verify(x, 0, 200, 4096, 3);
    assert_int_equal(vio_vu_front_queue_stop(x->f, 0, &base), 0);
    assert_int_equal(base, 9);
}

static void test_two_queues_and_call_fd(void **state)
{
    struct fx *x = *state;
    int call2 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct pollfd p = {.fd = call2, .events = POLLIN};
    uint8_t buf[512];
    uint16_t head;

    attach(x);
    start_q(x, 0, R1_GPA, 0, true);
    start_q(x, 1, R1_GPA + 0x10000, 0, true);
    write_read_verify(x, 1, 64, 4096, 4);
    write_read_verify(x, 0, 72, 4096, 5);
    /* Two requests in flight on two queues at once. */
    fill(gptr(&x->m, slot_data(2), 4096), 4096, 6);
    fill(gptr(&x->m, slot_data(3), 4096), 4096, 7);
    head = blk_submit(&x->q[0], 2, T_OUT, 300, 4096);
    {
        uint16_t head1 = blk_submit(&x->q[1], 3, T_OUT, 308, 4096);

        dq_kick(&x->q[0]);
        dq_kick(&x->q[1]);
        assert_int_equal(blk_complete(&x->q[1], 3, head1, NULL), S_OK);
    }
    assert_int_equal(blk_complete(&x->q[0], 2, head, NULL), S_OK);

    /* Re-route queue 1's interrupt to a new eventfd. */
    assert_true(call2 >= 0);
    assert_int_equal(vio_vu_front_set_call_fd(x->f, 1, call2), 0);
    vio_eventfd_drain(x->q[1].call);
    head = blk_submit(&x->q[1], 0, T_IN, 64, 512);
    dq_kick(&x->q[1]);
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_int_equal(vio_eventfd_drain(x->q[1].call), 0);
    assert_int_equal(blk_complete(&x->q[1], 0, head, NULL), S_OK);
    memcpy(buf, gptr(&x->m, slot_data(0), 512), 512);
    {
        uint8_t want[512];

        fill(want, 512, 4);
        assert_memory_equal(buf, want, 512);
    }
    /* No call fd at all: the back-end completes without signalling. */
    assert_int_equal(vio_vu_front_set_call_fd(x->f, 1, -1), 0);
    write_read_verify(x, 1, 80, 512, 8);
    assert_int_equal(vio_vu_front_set_call_fd(x->f, 5, call2), -EINVAL);
    close(call2);
}

static void test_err_fd_reaches_backend(void **state)
{
    struct fx *x = *state;
    struct buf b[] = {
        {slot_hdr(0), 16, false}, {0xdead0000000ull, 512, true}, {slot_status(0), 1, true}};
    struct pollfd p;

    attach(x);
    start_q(x, 0, R1_GPA, 0, true);
    /* A buffer outside guest memory breaks the queue: the back-end says so
     * on the error eventfd given with SET_VRING_ERR. */
    blk_submit(&x->q[0], 0, T_IN, 0, 0);
    x->q[0].next_desc = 0;
    x->q[0].avail_idx--;
    dq_add(&x->q[0], b, 3);
    dq_kick(&x->q[0]);
    p = (struct pollfd){.fd = x->q[0].err, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    /* Restarting the queue (a fresh ring) recovers it. */
    assert_int_equal(vio_vu_front_queue_stop(x->f, 0, NULL), 0);
    start_q(x, 0, R1_GPA, 0, true);
    write_read_verify(x, 0, 8, 512, 9);
}

static void test_reset_and_reconnect(void **state)
{
    struct fx *x = *state;
    struct vio_vu_mem_region r[2];
    uint8_t w[4096], rd[4096];

    attach(x);
    start_q(x, 0, R1_GPA, 0, true);
    start_q(x, 1, R1_GPA + 0x10000, 0, true);
    write_read_verify(x, 0, 40, 4096, 10);
    assert_int_equal(vio_vu_front_reset(x->f), 0);
    assert_int_equal(vio_vu_front_acked_features(x->f), 0);
    /* After a reset: features and memory again, fresh rings from 0. */
    assert_int_equal(vio_vu_front_queue_start(x->f, 0, QSIZE, x->q[0].desc, x->q[0].avail,
                                              x->q[0].used, 0, x->q[0].kick, x->q[0].call, -1),
                     -EINVAL);
    assert_int_equal(vio_vu_front_set_features(x->f, VIO_BIT(VIO_F_VERSION_1)), 0);
    mem_regions(&x->m, r);
    assert_int_equal(vio_vu_front_set_mem_table(x->f, r, 2), 0);
    start_q(x, 0, R1_GPA + 0x20000, 0, true);
    write_read_verify(x, 0, 48, 4096, 11);

    /* Reconnect: a new connection gets a fresh device, same disk. */
    vio_vu_front_close(x->f);
    x->f = NULL;
    attach(x);
    start_q(x, 0, R1_GPA, 0, true);
    fill(w, sizeof(w), 10);
    assert_int_equal(blk_io(&x->q[0], T_IN, 40, rd, sizeof(rd)), S_OK);
    assert_memory_equal(rd, w, sizeof(w));
    write_read_verify(x, 0, 56, 4096, 12);
    /* Several reconnects in a row, each usable. */
    for (int i = 0; i < 5; i++) {
        vio_vu_front_close(x->f);
        x->f = NULL;
        attach(x);
        start_q(x, 0, R1_GPA, 0, true);
        write_read_verify(x, 0, 64 + 8 * (uint64_t)i, 512, 13 + (unsigned)i);
    }
}

static void test_local_argument_checks(void **state)
{
    struct fx *x = *state;
    struct vio_vu_mem_region r[2];
    struct dq *q = &x->q[0];

    attach(x);
    dq_init(q, &x->m, R1_GPA, QSIZE);
    /* Queue index, size, alignment, kick fd. */
    assert_int_equal(vio_vu_front_queue_start(x->f, NQUEUES, QSIZE, q->desc, q->avail, q->used, 0,
                                              q->kick, q->call, -1),
                     -EINVAL);
    assert_int_equal(
        vio_vu_front_queue_start(x->f, 0, 48, q->desc, q->avail, q->used, 0, q->kick, q->call, -1),
        -EINVAL);
    assert_int_equal(vio_vu_front_queue_start(x->f, 0, QSIZE, q->desc + 8, q->avail, q->used, 0,
                                              q->kick, q->call, -1),
                     -EINVAL);
    assert_int_equal(
        vio_vu_front_queue_start(x->f, 0, QSIZE, q->desc, q->avail, q->used, 0, -1, q->call, -1),
        -EINVAL);
    /* Rings outside the memory table, or straddling its end. */
    assert_int_equal(vio_vu_front_queue_start(x->f, 0, QSIZE, 0x1000, q->avail, q->used, 0, q->kick,
                                              q->call, -1),
                     -EFAULT);
    assert_int_equal(vio_vu_front_queue_start(x->f, 0, QSIZE, q->desc, q->avail,
                                              R1_GPA + R_SIZE - 16, 0, q->kick, q->call, -1),
                     -EFAULT);
    /* Bad memory tables: none sent. */
    mem_regions(&x->m, r);
    assert_int_equal(vio_vu_front_set_mem_table(x->f, r, 0), -EINVAL);
    assert_int_equal(vio_vu_front_set_mem_table(x->f, r, 9), -EINVAL);
    r[1].gpa = R0_GPA + R_SIZE - 4096; /* overlaps region 0 */
    assert_int_equal(vio_vu_front_set_mem_table(x->f, r, 2), -EINVAL);
    mem_regions(&x->m, r);
    r[1].hva = r[0].hva; /* the same user addresses twice */
    assert_int_equal(vio_vu_front_set_mem_table(x->f, r, 2), -EINVAL);
    mem_regions(&x->m, r);
    r[0].gpa = UINT64_MAX - 4095; /* wraps */
    assert_int_equal(vio_vu_front_set_mem_table(x->f, r, 2), -EINVAL);
    mem_regions(&x->m, r);
    r[0].size = 0;
    assert_int_equal(vio_vu_front_set_mem_table(x->f, r, 2), -EINVAL);
    mem_regions(&x->m, r);
    r[0].fd = -1;
    assert_int_equal(vio_vu_front_set_mem_table(x->f, r, 2), -EINVAL);
    /* A region larger than its fd: the back-end refuses, the connection
     * survives. */
    mem_regions(&x->m, r);
    r[1].size = 64u << 20;
    assert_int_equal(vio_vu_front_set_mem_table(x->f, r, 2), -EREMOTEIO);
    assert_false(vio_vu_front_broken(x->f));
    /* A queue larger than the device allows: refused by the back-end. */
    assert_int_equal(vio_vu_front_queue_start(x->f, 0, 4096, R1_GPA, R1_GPA + 0x10000,
                                              R1_GPA + 0x20000, 0, q->kick, q->call, -1),
                     -EREMOTEIO);
    assert_false(vio_vu_front_broken(x->f));
    /* Still fine after all that. */
    start_q(x, 0, R1_GPA, 0, true);
    write_read_verify(x, 0, 8, 4096, 20);
}

/* ---- a scripted fake back-end ---- */

enum fault {
    F_NONE,
    F_CLOSE,     /* close the connection instead of replying */
    F_HALF,      /* send half a header, then close */
    F_SILENT,    /* never reply */
    F_WRONG_REQ, /* reply names another request */
    F_NO_REPLY_FLAG,
    F_SHORT,       /* 4 bytes where 8 are due */
    F_BIG,         /* GET_CONFIG: more bytes than asked for */
    F_CONFIG_ECHO, /* GET_CONFIG: right length, wrong size field */
    F_EMPTY,       /* GET_CONFIG: the empty "failed" reply */
    F_FDS,         /* an fd attached to the reply */
    F_NACK,        /* REPLY_ACK status 1 */
    F_BAD_VERSION,
    F_HUGE,      /* header announcing a 64 KiB payload */
    F_VALUE,     /* reply with fake.value instead of the right u64 */
    F_BAD_INDEX, /* GET_VRING_BASE for another ring */
    F_EXTRA,     /* a correct reply followed by an unsolicited message */
};

#define FAKE_MAX_SEEN 64

struct fake {
    char dir[64], path[96];
    int lfd;
    pthread_t thread;
    uint64_t features, pf, queues;
    uint32_t fault_req; /* request the fault applies to */
    enum fault fault;
    uint64_t value;
    /* What the front-end sent, read after the thread is joined. */
    uint32_t seen_req[FAKE_MAX_SEEN], seen_flags[FAKE_MAX_SEEN];
    uint64_t seen_u64[FAKE_MAX_SEEN];
    unsigned nseen;
    bool error; /* the fake itself failed (reported by the test) */
};

static int fake_recv(int fd, struct vu_msg *m)
{
    struct vu_reader rd;

    vu_reader_init(&rd);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ret = vu_msg_recv(fd, &rd);

        if (ret == 1) {
            memcpy(m, &rd.msg, sizeof(*m));
            return 0;
        }
        if (ret < 0)
            return ret;
        if (poll(&p, 1, 10000) <= 0)
            return -ETIMEDOUT;
    }
}

/* Send bytes as they are; the front-end having closed already is fine. */
static void raw_send(struct fake *fk, int fd, const void *buf, size_t n)
{
    ssize_t got = send(fd, buf, n, MSG_NOSIGNAL);

    if (got != (ssize_t)n && !(got < 0 && (errno == EPIPE || errno == ECONNRESET)))
        fk->error = true;
}

static void fake_serve(struct fake *fk, int fd)
{
    for (;;) {
        struct vu_msg m, r;
        bool reply = false;
        enum fault fault;
        int efd = -1;

        if (fake_recv(fd, &m) < 0)
            return;
        if (fk->nseen < FAKE_MAX_SEEN) {
            fk->seen_req[fk->nseen] = m.hdr.request;
            fk->seen_flags[fk->nseen] = m.hdr.flags;
            fk->seen_u64[fk->nseen] = m.hdr.size >= 8 ? m.payload.u64 : 0;
            fk->nseen++;
        }
        vu_msg_close_fds(&m);
        fault = m.hdr.request == fk->fault_req ? fk->fault : F_NONE;
        memset(&r, 0, sizeof(r));
        r.hdr.request = m.hdr.request;
        r.hdr.flags = VU_VERSION | VU_FLAG_REPLY;
        switch (m.hdr.request) {
        case VU_GET_FEATURES:
        case VU_GET_PROTOCOL_FEATURES:
        case VU_GET_QUEUE_NUM:
            r.hdr.size = 8;
            r.payload.u64 = m.hdr.request == VU_GET_FEATURES            ? fk->features
                            : m.hdr.request == VU_GET_PROTOCOL_FEATURES ? fk->pf
                                                                        : fk->queues;
            reply = true;
            break;
        case VU_GET_CONFIG:
            r.hdr.size = m.hdr.size;
            r.payload.config = m.payload.config;
            for (unsigned i = 0; i < VU_MAX_CONFIG_SIZE; i++)
                r.payload.config.data[i] = (uint8_t)(0xa0 + i);
            reply = true;
            break;
        case VU_GET_VRING_BASE:
            r.hdr.size = sizeof(struct vu_vring_state);
            r.payload.state.index = m.payload.state.index;
            r.payload.state.num = 7;
            reply = true;
            break;
        default:
            if (m.hdr.flags & VU_FLAG_NEED_REPLY) {
                r.hdr.size = 8;
                r.payload.u64 = 0;
                reply = true;
            }
        }
        switch (fault) {
        case F_NONE:
            break;
        case F_CLOSE:
            return;
        case F_HALF:
            raw_send(fk, fd, &r.hdr, 6);
            return;
        case F_SILENT:
            reply = false;
            break;
        case F_WRONG_REQ:
            r.hdr.request =
                m.hdr.request == VU_GET_FEATURES ? VU_GET_PROTOCOL_FEATURES : VU_GET_FEATURES;
            break;
        case F_NO_REPLY_FLAG:
            r.hdr.flags = VU_VERSION;
            break;
        case F_SHORT:
            r.hdr.size = 4;
            break;
        case F_BIG:
            r.hdr.size += 16;
            break;
        case F_CONFIG_ECHO:
            r.payload.config.size -= 1;
            break;
        case F_EMPTY:
            r.hdr.size = 0;
            break;
        case F_FDS:
            efd = eventfd(0, EFD_CLOEXEC);
            break;
        case F_NACK:
            r.payload.u64 = 1;
            break;
        case F_BAD_VERSION:
            r.hdr.flags = 2 | VU_FLAG_REPLY;
            break;
        case F_HUGE:
            r.hdr.size = 65536;
            raw_send(fk, fd, &r.hdr, sizeof(r.hdr));
            reply = false;
            break;
        case F_VALUE:
            r.payload.u64 = fk->value;
            break;
        case F_BAD_INDEX:
            r.payload.state.index += 1;
            break;
        case F_EXTRA: {
            /* Reply and an extra message in one write, so the extra one is
             * surely waiting when the next request goes out. */
            uint8_t two[2 * (sizeof(struct vu_hdr) + 8)];
            size_t one = sizeof(struct vu_hdr) + r.hdr.size;

            memcpy(two, &r, one);
            memcpy(two + one, &r, one);
            raw_send(fk, fd, two, 2 * one);
            reply = false;
            break;
        }
        }
        /* The front-end may already have given up and closed: fine. */
        if (reply) {
            int ret = vu_msg_send(fd, &r, efd >= 0 ? &efd : NULL, efd >= 0 ? 1 : 0);

            if (ret < 0 && ret != -EPIPE && ret != -ECONNRESET)
                fk->error = true;
        }
        if (efd >= 0)
            close(efd);
    }
}

static void *fake_thread(void *arg)
{
    struct fake *fk = arg;
    struct pollfd p = {.fd = fk->lfd, .events = POLLIN};
    int fd;

    vio_log_set_thread_name("fake");
    if (poll(&p, 1, 10000) != 1) {
        fk->error = true;
        return NULL;
    }
    fd = accept4(fk->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        fk->error = true;
        return NULL;
    }
    fake_serve(fk, fd);
    close(fd);
    return NULL;
}

static struct fake *fake_new(void)
{
    struct fake *fk = calloc(1, sizeof(*fk));

    assert_non_null(fk);
    snprintf(fk->dir, sizeof(fk->dir), "/tmp/vio-test-vufake-XXXXXX");
    assert_non_null(mkdtemp(fk->dir));
    snprintf(fk->path, sizeof(fk->path), "%s/fake.sock", fk->dir);
    fk->features = VIO_BIT(VIO_F_VERSION_1) | VIO_BIT(VU_F_PROTOCOL_FEATURES);
    fk->pf = VIO_BIT(VU_PF_MQ) | VIO_BIT(VU_PF_REPLY_ACK) | VIO_BIT(VU_PF_CONFIG);
    fk->queues = 2;
    fk->lfd = -1;
    return fk;
}

static void fake_listen(struct fake *fk, bool do_listen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    memcpy(sa.sun_path, fk->path, strlen(fk->path));
    fk->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fk->lfd >= 0);
    assert_int_equal(bind(fk->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    if (do_listen) {
        assert_int_equal(listen(fk->lfd, 1), 0);
        assert_int_equal(pthread_create(&fk->thread, NULL, fake_thread, fk), 0);
    }
}

static void fake_start(struct fake *fk, uint32_t req, enum fault fault)
{
    fk->fault_req = req;
    fk->fault = fault;
    fake_listen(fk, true);
}

/* Join the fake (the front-end must be closed) and free it. */
static void fake_end(struct fake *fk, bool started)
{
    bool error;

    if (started)
        pthread_join(fk->thread, NULL);
    if (fk->lfd >= 0)
        close(fk->lfd);
    unlink(fk->path);
    rmdir(fk->dir);
    error = fk->error;
    free(fk);
    assert_false(error);
}

/* Connect to a fake with @fault on @req; returns connect's result and
 * leaves the front-end in *@out on success. */
static int fake_connect(struct fake *fk, uint32_t req, enum fault fault, struct vio_vu_front **out)
{
    uint64_t t0;
    int ret;

    fake_start(fk, req, fault);
    t0 = vio_now_ns();
    ret = vio_vu_front_connect_timeout(fk->path, 300, out);
    /* No case may wait much longer than one timeout. */
    assert_true(vio_now_ns() - t0 < 3000000000ull);
    return ret;
}

static void test_nothing_listening(void **state)
{
    struct fake *fk = fake_new();
    struct vio_vu_front *f = NULL;
    char long_path[200];

    (void)state;
    assert_int_equal(vio_vu_front_connect(fk->path, &f), -ENOENT);
    /* A socket file nobody listens on. */
    fake_listen(fk, false);
    assert_int_equal(vio_vu_front_connect(fk->path, &f), -ECONNREFUSED);
    assert_null(f);
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[sizeof(long_path) - 1] = 0;
    assert_int_equal(vio_vu_front_connect(long_path, &f), -ENAMETOOLONG);
    assert_int_equal(vio_vu_front_connect_timeout(fk->path, 0, &f), -EINVAL);
    fake_end(fk, false);
}

/* Every way a handshake can go wrong, each with the error it must give. */
static void test_handshake_faults(void **state)
{
    static const struct {
        uint32_t req;
        enum fault fault;
        int err;
    } cases[] = {
        {VU_GET_FEATURES, F_CLOSE, -ECONNRESET},
        {VU_GET_PROTOCOL_FEATURES, F_CLOSE, -ECONNRESET},
        {VU_SET_OWNER, F_CLOSE, -ECONNRESET},
        {VU_GET_FEATURES, F_HALF, -EPIPE},
        {VU_GET_FEATURES, F_SILENT, -ETIMEDOUT},
        {VU_SET_OWNER, F_SILENT, -ETIMEDOUT},
        {VU_GET_QUEUE_NUM, F_SILENT, -ETIMEDOUT},
        {VU_GET_FEATURES, F_WRONG_REQ, -EPROTO},
        {VU_GET_PROTOCOL_FEATURES, F_WRONG_REQ, -EPROTO},
        {VU_SET_OWNER, F_WRONG_REQ, -EPROTO},
        {VU_GET_FEATURES, F_NO_REPLY_FLAG, -EPROTO},
        {VU_SET_OWNER, F_NO_REPLY_FLAG, -EPROTO},
        {VU_GET_FEATURES, F_SHORT, -EPROTO},
        {VU_GET_QUEUE_NUM, F_SHORT, -EPROTO},
        {VU_SET_OWNER, F_SHORT, -EPROTO},
        {VU_GET_FEATURES, F_FDS, -EPROTO},
        {VU_SET_OWNER, F_NACK, -EREMOTEIO},
        {VU_GET_FEATURES, F_BAD_VERSION, -EPROTO},
        {VU_GET_PROTOCOL_FEATURES, F_HUGE, -EPROTO},
        {VU_GET_QUEUE_NUM, F_EXTRA, -EPROTO}, /* caught by the next request */
        {VU_SET_PROTOCOL_FEATURES, F_EXTRA, -EPROTO},
    };

    (void)state;
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(cases); i++) {
        struct fake *fk = fake_new();
        struct vio_vu_front *f = NULL;
        int ret;

        if (cases[i].req == VU_SET_PROTOCOL_FEATURES)
            fk->pf &= ~VIO_BIT(VU_PF_REPLY_ACK); /* no ack: nothing else to corrupt */
        ret = fake_connect(fk, cases[i].req, cases[i].fault, &f);
        if (ret == 0 && cases[i].fault == F_EXTRA) {
            /* The stray message surfaces at the next request. */
            uint8_t c;

            ret = vio_vu_front_get_config(f, 0, &c, 1);
            assert_true(vio_vu_front_broken(f));
            assert_int_equal(vio_vu_front_get_config(f, 0, &c, 1), -ENOTCONN);
        }
        if (ret != cases[i].err)
            fail_msg("case %u (%s, fault %d): got %d (%s), want %d", i,
                     vu_request_name(cases[i].req), cases[i].fault, ret, strerror(-ret),
                     cases[i].err);
        vio_vu_front_close(f);
        fake_end(fk, true);
    }
}

static void test_handshake_values(void **state)
{
    struct vio_vu_front *f = NULL;
    struct fake *fk;

    (void)state;
    /* No VHOST_USER_F_PROTOCOL_FEATURES: refused. */
    fk = fake_new();
    fk->features = VIO_BIT(VIO_F_VERSION_1);
    assert_int_equal(fake_connect(fk, 0, F_NONE, &f), -EPROTONOSUPPORT);
    fake_end(fk, true);
    /* Zero queues is nonsense. */
    fk = fake_new();
    fk->value = 0;
    assert_int_equal(fake_connect(fk, VU_GET_QUEUE_NUM, F_VALUE, &f), -EPROTO);
    fake_end(fk, true);
    /* More queues than the protocol can address: capped. */
    fk = fake_new();
    fk->value = 100000;
    assert_int_equal(fake_connect(fk, VU_GET_QUEUE_NUM, F_VALUE, &f), 0);
    assert_int_equal(vio_vu_front_num_queues(f), VIO_VU_FRONT_MAX_QUEUES);
    vio_vu_front_close(f);
    fake_end(fk, true);
    /* Without MQ there is one queue and GET_QUEUE_NUM is not asked. */
    fk = fake_new();
    fk->pf = VIO_BIT(VU_PF_REPLY_ACK);
    assert_int_equal(fake_connect(fk, 0, F_NONE, &f), 0);
    assert_int_equal(vio_vu_front_num_queues(f), 1);
    assert_int_equal(vio_vu_front_get_config(f, 0, &fk->value, 1), -ENOTSUP);
    vio_vu_front_close(f);
    f = NULL;
    fake_end(fk, true);
}

/* The handshake in order, the right protocol features acked, and
 * need_reply on every request without a reply of its own. */
static void test_handshake_messages(void **state)
{
    static const uint32_t want[] = {VU_GET_FEATURES,          VU_GET_PROTOCOL_FEATURES,
                                    VU_SET_PROTOCOL_FEATURES, VU_SET_OWNER,
                                    VU_GET_QUEUE_NUM,         VU_SET_FEATURES};
    struct fake *fk = fake_new();
    struct vio_vu_front *f = NULL;

    (void)state;
    fk->pf = ~0ull; /* everything: only what we want may be acked */
    assert_int_equal(fake_connect(fk, 0, F_NONE, &f), 0);
    assert_int_equal(vio_vu_front_set_features(f, VIO_BIT(VIO_F_VERSION_1)), 0);
    vio_vu_front_close(f);
    pthread_join(fk->thread, NULL);
    assert_int_equal(fk->nseen, VIO_ARRAY_SIZE(want));
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(want); i++)
        assert_int_equal(fk->seen_req[i], want[i]);
    assert_int_equal(fk->seen_u64[2], VIO_BIT(VU_PF_MQ) | VIO_BIT(VU_PF_REPLY_ACK) |
                                          VIO_BIT(VU_PF_CONFIG) | VIO_BIT(VU_PF_RESET_DEVICE));
    assert_int_equal(fk->seen_flags[2] & VU_FLAG_NEED_REPLY, 0);
    assert_int_equal(fk->seen_flags[3], VU_VERSION | VU_FLAG_NEED_REPLY); /* SET_OWNER */
    assert_int_equal(fk->seen_flags[4], VU_VERSION);                      /* has a reply */
    assert_int_equal(fk->seen_flags[5], VU_VERSION | VU_FLAG_NEED_REPLY); /* SET_FEATURES */
    assert_int_equal(fk->seen_u64[5], VIO_BIT(VIO_F_VERSION_1) | VIO_BIT(VU_F_PROTOCOL_FEATURES));
    fake_end(fk, false);

    /* Without REPLY_ACK nothing asks for one. */
    fk = fake_new();
    fk->pf = VIO_BIT(VU_PF_MQ);
    assert_int_equal(fake_connect(fk, 0, F_NONE, &f), 0);
    assert_int_equal(vio_vu_front_set_features(f, 0), 0);
    vio_vu_front_close(f);
    pthread_join(fk->thread, NULL);
    for (unsigned i = 0; i < fk->nseen; i++)
        assert_int_equal(fk->seen_flags[i], VU_VERSION);
    fake_end(fk, false);
}

/* Faults in replies after a good handshake. */
static void test_request_faults(void **state)
{
    static const struct {
        uint32_t req;
        enum fault fault;
        int err;
        bool broken;
    } cases[] = {
        {VU_GET_CONFIG, F_BIG, -EPROTO, true},
        {VU_GET_CONFIG, F_SHORT, -EPROTO, true},
        {VU_GET_CONFIG, F_CONFIG_ECHO, -EPROTO, true},
        {VU_GET_CONFIG, F_EMPTY, -EREMOTEIO, false},
        {VU_GET_CONFIG, F_SILENT, -ETIMEDOUT, true},
        {VU_GET_CONFIG, F_CLOSE, -ECONNRESET, true},
        {VU_GET_CONFIG, F_NO_REPLY_FLAG, -EPROTO, true},
        {VU_GET_CONFIG, F_WRONG_REQ, -EPROTO, true},
        {VU_GET_CONFIG, F_HUGE, -EPROTO, true},
        {VU_SET_CONFIG, F_NACK, -EREMOTEIO, false},
        {VU_SET_CONFIG, F_SHORT, -EPROTO, true},
        {VU_SET_FEATURES, F_NACK, -EREMOTEIO, false},
        {VU_SET_MEM_TABLE, F_NACK, -EREMOTEIO, false},
        {VU_SET_MEM_TABLE, F_SILENT, -ETIMEDOUT, true},
        {VU_SET_VRING_KICK, F_NACK, -EREMOTEIO, false},
        {VU_SET_VRING_ENABLE, F_CLOSE, -ECONNRESET, true},
        {VU_GET_VRING_BASE, F_BAD_INDEX, -EPROTO, true},
        {VU_GET_VRING_BASE, F_SHORT, -EPROTO, true},
        {VU_GET_VRING_BASE, F_VALUE, -EPROTO, true}, /* base 0x10000 */
        {VU_GET_VRING_BASE, F_FDS, -EPROTO, true},
    };
    struct gmem m;

    (void)state;
    gmem_init(&m);
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(cases); i++) {
        struct fake *fk = fake_new();
        struct vio_vu_front *f = NULL;
        struct vio_vu_mem_region r[2];
        uint8_t cfg[16] = {0};
        uint16_t base = 0;
        int ret = 0, efd = eventfd(0, EFD_CLOEXEC);

        fk->value = (0x10000ull << 32) | 1; /* GET_VRING_BASE: ring 1, base 0x10000 */
        assert_int_equal(fake_connect(fk, cases[i].req, cases[i].fault, &f), 0);
        mem_regions(&m, r);
        switch (cases[i].req) {
        case VU_GET_CONFIG:
            ret = vio_vu_front_get_config(f, 4, cfg, 8);
            break;
        case VU_SET_CONFIG:
            ret = vio_vu_front_set_config(f, 4, cfg, 8);
            break;
        case VU_SET_FEATURES:
            ret = vio_vu_front_set_features(f, VIO_BIT(VIO_F_VERSION_1));
            break;
        case VU_SET_MEM_TABLE:
            ret = vio_vu_front_set_mem_table(f, r, 2);
            break;
        default:
            assert_int_equal(vio_vu_front_set_features(f, VIO_BIT(VIO_F_VERSION_1)), 0);
            assert_int_equal(vio_vu_front_set_mem_table(f, r, 2), 0);
            ret = vio_vu_front_queue_start(f, 1, 16, R1_GPA, R1_GPA + 256, R1_GPA + 4096, 0, efd,
                                           efd, efd);
            if (ret == 0)
                ret = vio_vu_front_queue_stop(f, 1, &base);
        }
        if (ret != cases[i].err || vio_vu_front_broken(f) != cases[i].broken)
            fail_msg("case %u (%s, fault %d): got %d (%s), broken %d; want %d, broken %d", i,
                     vu_request_name(cases[i].req), cases[i].fault, ret, strerror(-ret),
                     vio_vu_front_broken(f), cases[i].err, cases[i].broken);
        /* A broken connection refuses everything; a refused request
         * leaves it usable. */
        ret = vio_vu_front_set_features(f, VIO_BIT(VIO_F_VERSION_1));
        if (cases[i].broken)
            assert_int_equal(ret, -ENOTCONN);
        else if (cases[i].req != VU_SET_FEATURES)
            assert_int_equal(ret, 0);
        vio_vu_front_close(f);
        close(efd);
        fake_end(fk, true);
    }
    gmem_free(&m);
}

/* Config reads ask for [0, off+len) and copy the tail; a good stop returns
 * the fake's base. */
static void test_fake_config_and_base(void **state)
{
    struct fake *fk = fake_new();
    struct vio_vu_front *f = NULL;
    struct vio_vu_mem_region r[2];
    struct gmem m;
    uint8_t cfg[8];
    uint16_t base = 0;
    int efd = eventfd(0, EFD_CLOEXEC);

    (void)state;
    gmem_init(&m);
    fk->pf |= VIO_BIT(VU_PF_RESET_DEVICE);
    assert_int_equal(fake_connect(fk, 0, F_NONE, &f), 0);
    assert_int_equal(vio_vu_front_get_config(f, 10, cfg, 8), 0);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(cfg[i], 0xa0 + 10 + i);
    mem_regions(&m, r);
    assert_int_equal(vio_vu_front_set_mem_table(f, r, 2), 0);
    /* Queues start only after SET_FEATURES. */
    assert_int_equal(
        vio_vu_front_queue_start(f, 0, 16, R1_GPA, R1_GPA + 256, R1_GPA + 4096, 3, efd, -1, -1),
        -EINVAL);
    assert_int_equal(vio_vu_front_set_features(f, VIO_BIT(VIO_F_VERSION_1)), 0);
    assert_int_equal(
        vio_vu_front_queue_start(f, 0, 16, R1_GPA, R1_GPA + 256, R1_GPA + 4096, 3, efd, -1, -1), 0);
    assert_int_equal(vio_vu_front_queue_stop(f, 0, &base), 0);
    assert_int_equal(base, 7);
    assert_int_equal(vio_vu_front_reset(f), 0);
    vio_vu_front_close(f);
    pthread_join(fk->thread, NULL);
    /* The queue start sequence, the call fd without an fd, the reset. */
    {
        static const uint32_t want[] = {VU_GET_CONFIG,       VU_SET_MEM_TABLE,  VU_SET_FEATURES,
                                        VU_SET_VRING_NUM,    VU_SET_VRING_BASE, VU_SET_VRING_ADDR,
                                        VU_SET_VRING_CALL,   VU_SET_VRING_KICK, VU_SET_VRING_ENABLE,
                                        VU_SET_VRING_ENABLE, VU_GET_VRING_BASE, VU_RESET_DEVICE};
        unsigned first = 5; /* after the handshake */

        assert_int_equal(fk->nseen, first + VIO_ARRAY_SIZE(want));
        for (unsigned i = 0; i < VIO_ARRAY_SIZE(want); i++)
            assert_int_equal(fk->seen_req[first + i], want[i]);
        assert_int_equal(fk->seen_u64[first + 4], 3ull << 32);    /* BASE: ring 0, 3 */
        assert_int_equal(fk->seen_u64[first + 6], VU_VRING_NOFD); /* CALL, ring 0, no fd */
        assert_int_equal(fk->seen_u64[first + 7], 0);             /* KICK, ring 0 */
        assert_int_equal(fk->seen_u64[first + 8], 1ull << 32);    /* ENABLE: ring 0, 1 */
        assert_int_equal(fk->seen_u64[first + 9], 0);             /* ENABLE: ring 0, 0 */
    }
    fake_end(fk, false);
    close(efd);
    gmem_free(&m);
}

/* Without REPLY_ACK a request has no reply in which a stray message could
 * show up: it must be noticed before the request goes out. */
static void test_stray_message_without_ack(void **state)
{
    struct fake *fk = fake_new();
    struct vio_vu_front *f = NULL;

    (void)state;
    fk->pf = VIO_BIT(VU_PF_MQ);
    assert_int_equal(fake_connect(fk, VU_GET_QUEUE_NUM, F_EXTRA, &f), 0);
    assert_int_equal(vio_vu_front_set_features(f, VIO_BIT(VIO_F_VERSION_1)), -EPROTO);
    assert_true(vio_vu_front_broken(f));
    vio_vu_front_close(f);
    fake_end(fk, true);
}

/* Without RESET_DEVICE a reset stops the queues still started, and only
 * those. */
static void test_reset_without_reset_device(void **state)
{
    struct fake *fk = fake_new();
    struct vio_vu_front *f = NULL;
    struct vio_vu_mem_region r[2];
    struct gmem m;
    int efd = eventfd(0, EFD_CLOEXEC);
    unsigned first;

    (void)state;
    gmem_init(&m);
    assert_int_equal(fake_connect(fk, 0, F_NONE, &f), 0);
    mem_regions(&m, r);
    assert_int_equal(vio_vu_front_set_features(f, VIO_BIT(VIO_F_VERSION_1)), 0);
    assert_int_equal(vio_vu_front_set_mem_table(f, r, 2), 0);
    assert_int_equal(
        vio_vu_front_queue_start(f, 0, 16, R1_GPA, R1_GPA + 256, R1_GPA + 4096, 0, efd, efd, -1),
        0);
    assert_int_equal(vio_vu_front_queue_start(f, 1, 16, R1_GPA + 8192, R1_GPA + 8192 + 256,
                                              R1_GPA + 12288, 0, efd, efd, -1),
                     0);
    assert_int_equal(vio_vu_front_queue_stop(f, 0, NULL), 0);
    first = fk->nseen; /* the fake has answered everything so far */
    assert_int_equal(vio_vu_front_reset(f), 0);
    vio_vu_front_close(f);
    pthread_join(fk->thread, NULL);
    assert_int_equal(fk->nseen, first + 2);
    assert_int_equal(fk->seen_req[first], VU_SET_VRING_ENABLE);
    assert_int_equal(fk->seen_u64[first], 1); /* ring 1, num 0 */
    assert_int_equal(fk->seen_req[first + 1], VU_GET_VRING_BASE);
    assert_int_equal(fk->seen_u64[first + 1], 1);
    fake_end(fk, false);
    close(efd);
    gmem_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_negotiation_and_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_stop_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_queues_and_call_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_fd_reaches_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_and_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_argument_checks, setup, teardown),
        cmocka_unit_test(test_nothing_listening),
        cmocka_unit_test(test_handshake_faults),
        cmocka_unit_test(test_handshake_values),
        cmocka_unit_test(test_handshake_messages),
        cmocka_unit_test(test_request_faults),
        cmocka_unit_test(test_fake_config_and_base),
        cmocka_unit_test(test_stray_message_without_ack),
        cmocka_unit_test(test_reset_without_reset_device),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
