/* Unit tests of the virtio-blk device (src/devices/blk.c) on the io_uring
 * file backend, driven through a fake guest ring on a real worker thread:
 * every request type, the config space, read-only mode, and malformed
 * requests that must end in IOERR/UNSUPP or a broken queue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/workers.h"
#include "devices/blk.h"
#include "ring.h"

#define QSIZE     64
#define DISK_SIZE (1 << 20)

#define T_IN     0
#define T_OUT    1
#define T_FLUSH  4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WZ     13

#define S_OK     0
#define S_IOERR  1
#define S_UNSUPP 2

#define F_RO           5
#define F_FLUSH        9
#define F_MQ           12
#define F_DISCARD      13
#define F_WRITE_ZEROES 14

struct fx {
    struct test_mem m;
    struct test_ring r;
    struct vio_workers w;
    struct vio_dev *dev;
    int kick, call, err;
    char path[64];
    bool readonly;
};

static int setup_common(void **state, bool readonly)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct vio_bdev_opts bo = {.readonly = readonly};
    struct vio_blk_opts o = {.id = "t0", .num_queues = 1, .serial = "serial-1"};
    struct vio_bdev *bdev;
    struct vio_vq *vq;
    int fd;

    f->readonly = readonly;
    snprintf(f->path, sizeof(f->path), "/tmp/vio-test-blk-XXXXXX");
    fd = mkstemp(f->path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
    close(fd);
    bo.path = f->path;
    assert_int_equal(vio_bdev_open(&bo, &bdev), 0);
    assert_int_equal(vio_blk_create(&o, bdev, &f->dev), 0);

    tmem_init(&f->m, 8 << 20);
    tring_init(&f->r, &f->m, QSIZE);
    assert_int_equal(vio_workers_start(&f->w, 1, "test"), 0);
    f->kick = eventfd(0, EFD_NONBLOCK);
    f->call = eventfd(0, EFD_NONBLOCK);
    f->err = eventfd(0, EFD_NONBLOCK);
    f->dev->mem = &f->m.gmem;
    f->dev->features = f->dev->ops->features(f->dev) | VIO_BIT(VIO_F_VERSION_1);
    f->dev->queues[0].loop = &f->w.loops[0];
    f->dev->queues[0].enabled = true;
    vq = &f->dev->queues[0].vq;
    tring_to_vq(&f->r, vq, false, true);
    vq->call_fd = f->call;
    vq->err_fd = f->err;
    assert_int_equal(vio_dev_queue_start(f->dev, 0, f->kick), 0);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_common(state, false);
}

static int setup_ro(void **state)
{
    return setup_common(state, true);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    vio_dev_queue_stop(f->dev, 0);
    vio_workers_stop(&f->w);
    f->dev->ops->destroy(f->dev);
    close(f->kick);
    close(f->call);
    close(f->err);
    unlink(f->path);
    tmem_free(&f->m);
    free(f);
    return 0;
}

/* Wait for the next used element; fails the test after 5 s. */
static void wait_used(struct fx *f, uint32_t *id, uint32_t *len)
{
    for (int i = 0; i < 500; i++) {
        struct pollfd p = {.fd = f->call, .events = POLLIN};

        if (tring_used(&f->r, id, len))
            return;
        poll(&p, 1, 10);
        vio_eventfd_drain(f->call);
    }
    fail_msg("no used element within 5 s");
}

static void kick(struct fx *f)
{
    vio_eventfd_signal(f->kick);
}

struct req {
    uint64_t hdr, data, status;
};

static struct req make_hdr(struct fx *f, uint32_t type, uint64_t sector, uint32_t len)
{
    struct req r = {
        .hdr = tmem_alloc(&f->m, 16, 8),
        .data = len ? tmem_alloc(&f->m, len, 512) : 0,
        .status = tmem_alloc(&f->m, 1, 1),
    };
    uint32_t t = vio_to_le32(type);
    uint64_t s = vio_to_le64(sector);

    memset(tmem_ptr(&f->m, r.hdr), 0, 16);
    memcpy(tmem_ptr(&f->m, r.hdr), &t, 4);
    memcpy((uint8_t *)tmem_ptr(&f->m, r.hdr) + 8, &s, 8);
    *(uint8_t *)tmem_ptr(&f->m, r.status) = 0xee;
    return r;
}

/* Run one request of the usual shape (header, data, status) to completion.
 * @in: the data buffer is device-writable. Returns the status byte. */
static uint8_t do_req(struct fx *f, uint32_t type, uint64_t sector, void *data, uint32_t len,
                      bool in, uint32_t *used_len)
{
    struct req r = make_hdr(f, type, sector, len);
    struct tbuf b[3];
    unsigned n = 0;
    uint32_t id, ulen;

    if (len && !in)
        memcpy(tmem_ptr(&f->m, r.data), data, len);
    b[n++] = (struct tbuf){r.hdr, 16, false};
    if (len)
        b[n++] = (struct tbuf){r.data, len, in};
    b[n++] = (struct tbuf){r.status, 1, true};
    tring_add(&f->r, b, n);
    kick(f);
    wait_used(f, &id, &ulen);
    if (used_len)
        *used_len = ulen;
    if (len && in)
        memcpy(data, tmem_ptr(&f->m, r.data), len);
    return *(uint8_t *)tmem_ptr(&f->m, r.status);
}

static uint8_t do_discard(struct fx *f, uint32_t type, uint64_t sector, uint32_t n,
                          uint32_t flags, unsigned nsegs)
{
    struct req r = make_hdr(f, type, 0, 0);
    uint64_t seg = tmem_alloc(&f->m, 16 * nsegs, 8);
    struct tbuf b[] = {{r.hdr, 16, false}, {seg, 16 * nsegs, false}, {r.status, 1, true}};
    uint32_t id, len;

    for (unsigned i = 0; i < nsegs; i++) {
        uint64_t s = vio_to_le64(sector);
        uint32_t num = vio_to_le32(n), fl = vio_to_le32(flags);
        uint8_t *p = (uint8_t *)tmem_ptr(&f->m, seg) + 16 * i;

        memcpy(p, &s, 8);
        memcpy(p + 8, &num, 4);
        memcpy(p + 12, &fl, 4);
    }
    tring_add(&f->r, b, 3);
    kick(f);
    wait_used(f, &id, &len);
    return *(uint8_t *)tmem_ptr(&f->m, r.status);
}

static void file_read(struct fx *f, uint64_t off, void *buf, size_t len)
{
    int fd = open(f->path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void file_fill(struct fx *f, uint64_t off, int byte, size_t len)
{
    int fd = open(f->path, O_WRONLY);
    char *buf = malloc(len);

    memset(buf, byte, len);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
    assert_int_equal(fsync(fd), 0);
    close(fd);
    free(buf);
}

static uint64_t file_blocks(struct fx *f)
{
    struct stat st;

    assert_int_equal(stat(f->path, &st), 0);
    return (uint64_t)st.st_blocks;
}

static json_int_t queue_stat(struct fx *f, const char *key)
{
    json_t *s = f->dev->ops->stats(f->dev);
    json_int_t v = json_integer_value(json_object_get(json_array_get(json_object_get(s, "queues"), 0), key));

    json_decref(s);
    return v;
}

static json_int_t backend_stat(struct fx *f, const char *key)
{
    json_t *s = f->dev->ops->stats(f->dev);
    json_int_t v = json_integer_value(json_object_get(json_object_get(s, "backend"), key));

    json_decref(s);
    return v;
}

static void test_config_space(void **state)
{
    struct fx *f = *state;
    uint8_t cfg[72];
    uint64_t cap;
    uint32_t seg_max, blk_size, max_discard_seg;
    uint16_t nq;

    assert_int_equal(f->dev->ops->config_size(f->dev), 72);
    f->dev->ops->get_config(f->dev, 0, cfg, sizeof(cfg));
    memcpy(&cap, cfg, 8);
    memcpy(&seg_max, cfg + 12, 4);
    memcpy(&blk_size, cfg + 20, 4);
    memcpy(&nq, cfg + 34, 2);
    memcpy(&max_discard_seg, cfg + 40, 4);
    assert_int_equal(vio_le64(cap), DISK_SIZE / 512);
    assert_true(vio_le32(seg_max) >= 1);
    assert_int_equal(vio_le32(blk_size), 512);
    assert_int_equal(vio_le16(nq), 1);
    assert_int_equal(vio_le32(max_discard_seg), 1);
    assert_int_equal(cfg[56], 1); /* write_zeroes_may_unmap */
    /* A partial read at an offset gives the same bytes. */
    f->dev->ops->get_config(f->dev, 20, cfg, 4);
    assert_int_equal(vio_le32(*(uint32_t *)cfg), 512);
}

static void test_features(void **state)
{
    struct fx *f = *state;
    uint64_t feat = f->dev->ops->features(f->dev);

    assert_true(feat & VIO_BIT(F_FLUSH));
    assert_true(feat & VIO_BIT(F_MQ));
    assert_true(feat & VIO_BIT(F_DISCARD));
    assert_true(feat & VIO_BIT(F_WRITE_ZEROES));
    assert_false(feat & VIO_BIT(F_RO));
}

static void test_write_read_roundtrip(void **state)
{
    struct fx *f = *state;
    uint8_t out[8192], in[8192], disk[8192];
    uint32_t used;

    for (unsigned i = 0; i < sizeof(out); i++)
        out[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(do_req(f, T_OUT, 100, out, sizeof(out), false, &used), S_OK);
    assert_int_equal(used, 1);
    memset(in, 0, sizeof(in));
    assert_int_equal(do_req(f, T_IN, 100, in, sizeof(in), true, &used), S_OK);
    assert_int_equal(used, sizeof(in) + 1);
    assert_memory_equal(in, out, sizeof(out));
    file_read(f, 100 * 512, disk, sizeof(disk));
    assert_memory_equal(disk, out, sizeof(out));
    assert_int_equal(queue_stat(f, "write_bytes"), sizeof(out));
    assert_int_equal(queue_stat(f, "read_bytes"), sizeof(in));
    assert_int_equal(queue_stat(f, "requests"), 2);
    assert_int_equal(queue_stat(f, "errors"), 0);
}

static void test_last_sector(void **state)
{
    struct fx *f = *state;
    uint8_t buf[512] = {1, 2, 3};

    assert_int_equal(do_req(f, T_OUT, DISK_SIZE / 512 - 1, buf, 512, false, NULL), S_OK);
    assert_int_equal(do_req(f, T_IN, DISK_SIZE / 512 - 1, buf, 512, true, NULL), S_OK);
    assert_int_equal(buf[2], 3);
}

static void test_get_id(void **state)
{
    struct fx *f = *state;
    char id[20];
    uint32_t used;

    memset(id, 'x', sizeof(id));
    assert_int_equal(do_req(f, T_GET_ID, 0, id, sizeof(id), true, &used), S_OK);
    assert_int_equal(used, 21);
    assert_string_equal(id, "serial-1");
}

static void test_flush_reaches_backend(void **state)
{
    struct fx *f = *state;

    assert_int_equal(backend_stat(f, "flushes"), 0);
    assert_int_equal(do_req(f, T_FLUSH, 0, NULL, 0, false, NULL), S_OK);
    assert_int_equal(backend_stat(f, "flushes"), 1);
    assert_int_equal(queue_stat(f, "flushes"), 1);
}

static void test_discard_punches_hole(void **state)
{
    struct fx *f = *state;
    uint8_t buf[65536];
    uint64_t before;

    file_fill(f, 0, 0x5a, 256 * 1024);
    before = file_blocks(f);
    assert_true(before >= 256 * 1024 / 512);
    assert_int_equal(do_discard(f, T_DISCARD, 0, 256 * 1024 / 512, 0, 1), S_OK);
    assert_true(file_blocks(f) < before);
    assert_int_equal(do_req(f, T_IN, 0, buf, sizeof(buf), true, NULL), S_OK);
    for (unsigned i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(backend_stat(f, "discards"), 1);
}

static void test_write_zeroes(void **state)
{
    struct fx *f = *state;
    uint8_t buf[4096];

    file_fill(f, 4096, 0x77, 8192);
    assert_int_equal(do_discard(f, T_WZ, 8, 8, 0, 1), S_OK);
    assert_int_equal(do_req(f, T_IN, 8, buf, sizeof(buf), true, NULL), S_OK);
    for (unsigned i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(do_req(f, T_IN, 16, buf, sizeof(buf), true, NULL), S_OK);
    assert_int_equal(buf[0], 0x77); /* outside the range: untouched */
    /* With the unmap flag, too. */
    assert_int_equal(do_discard(f, T_WZ, 16, 8, 1, 1), S_OK);
    assert_int_equal(do_req(f, T_IN, 16, buf, sizeof(buf), true, NULL), S_OK);
    assert_int_equal(buf[100], 0);
}

static void test_out_of_range(void **state)
{
    struct fx *f = *state;
    uint8_t buf[1024] = {0};

    assert_int_equal(do_req(f, T_IN, DISK_SIZE / 512 - 1, buf, 1024, true, NULL), S_IOERR);
    assert_int_equal(do_req(f, T_OUT, DISK_SIZE / 512, buf, 512, false, NULL), S_IOERR);
    assert_int_equal(do_req(f, T_IN, UINT64_MAX, buf, 512, true, NULL), S_IOERR);
    assert_int_equal(do_req(f, T_OUT, UINT64_MAX / 512 + 1, buf, 512, false, NULL), S_IOERR);
    assert_int_equal(do_discard(f, T_DISCARD, DISK_SIZE / 512 - 4, 8, 0, 1), S_IOERR);
    assert_int_equal(do_discard(f, T_WZ, UINT64_MAX - 2, 8, 0, 1), S_IOERR);
    assert_int_equal(queue_stat(f, "errors"), 6);
}

static void test_unaligned_length(void **state)
{
    struct fx *f = *state;
    uint8_t buf[700] = {0};

    assert_int_equal(do_req(f, T_IN, 0, buf, 700, true, NULL), S_IOERR);
    assert_int_equal(do_req(f, T_OUT, 0, buf, 100, false, NULL), S_IOERR);
}

static void test_unknown_type(void **state)
{
    struct fx *f = *state;
    uint8_t buf[512];

    assert_int_equal(do_req(f, 99, 0, buf, 512, true, NULL), S_UNSUPP);
    assert_int_equal(do_req(f, 14 /* secure erase */, 0, buf, 512, false, NULL), S_UNSUPP);
    assert_int_equal(queue_stat(f, "unsupported"), 2);
}

static void test_short_header(void **state)
{
    struct fx *f = *state;
    struct req r = make_hdr(f, T_IN, 0, 0);
    struct tbuf b[] = {{r.hdr, 8, false}, {r.status, 1, true}};
    uint32_t id, len;

    tring_add(&f->r, b, 2);
    kick(f);
    wait_used(f, &id, &len);
    assert_int_equal(*(uint8_t *)tmem_ptr(&f->m, r.status), S_IOERR);
    assert_false(f->dev->queues[0].vq.broken);
}

static void test_no_status_byte_breaks_queue(void **state)
{
    struct fx *f = *state;
    struct req r = make_hdr(f, T_OUT, 0, 512);
    struct tbuf b[] = {{r.hdr, 16, false}, {r.data, 512, false}};
    uint32_t id, len;
    uint8_t buf[512];

    tring_add(&f->r, b, 2);
    kick(f);
    wait_used(f, &id, &len);
    assert_int_equal(len, 0);
    assert_true(vio_eventfd_drain(f->err) > 0);
    assert_true(vio_dev_needs_reset(f->dev));
    /* Nothing more is processed until the queue is reset. */
    tring_add(&f->r, b, 2);
    kick(f);
    usleep(100000);
    assert_false(tring_used(&f->r, &id, &len));
    (void)buf;
}

static void test_read_with_extra_readable(void **state)
{
    struct fx *f = *state;
    struct req r = make_hdr(f, T_IN, 0, 512);
    uint64_t extra = tmem_alloc(&f->m, 64, 8);
    struct tbuf b[] = {{r.hdr, 16, false}, {extra, 64, false}, {r.data, 512, true},
                       {r.status, 1, true}};
    uint32_t id, len;

    tring_add(&f->r, b, 4);
    kick(f);
    wait_used(f, &id, &len);
    assert_int_equal(*(uint8_t *)tmem_ptr(&f->m, r.status), S_IOERR);
}

static void test_write_with_writable_data(void **state)
{
    struct fx *f = *state;
    struct req r = make_hdr(f, T_OUT, 0, 512);
    struct tbuf b[] = {{r.hdr, 16, false}, {r.data, 512, true}, {r.status, 1, true}};
    uint32_t id, len;

    tring_add(&f->r, b, 3);
    kick(f);
    wait_used(f, &id, &len);
    assert_int_equal(*(uint8_t *)tmem_ptr(&f->m, r.status), S_IOERR);
}

static void test_discard_malformed(void **state)
{
    struct fx *f = *state;

    assert_int_equal(do_discard(f, T_DISCARD, 0, 8, 0, 2), S_IOERR);  /* two segments */
    assert_int_equal(do_discard(f, T_DISCARD, 0, 8, 1, 1), S_UNSUPP); /* unmap on discard */
    assert_int_equal(do_discard(f, T_WZ, 0, 8, 6, 1), S_UNSUPP);      /* reserved flags */
    assert_int_equal(do_discard(f, T_DISCARD, 0, 0, 0, 1), S_OK);     /* empty: nothing */
}

static void test_arbitrary_framing(void **state)
{
    struct fx *f = *state;
    /* Header split over two buffers; data and status in one buffer. */
    uint64_t h1 = tmem_alloc(&f->m, 6, 2), h2 = tmem_alloc(&f->m, 10, 2);
    uint64_t ds = tmem_alloc(&f->m, 1024 + 1, 512);
    uint8_t hdr[16] = {0}, out[1024];
    struct tbuf b[] = {{h1, 6, false}, {h2, 10, false}, {ds, 1025, true}};
    uint32_t id, len;

    for (unsigned i = 0; i < sizeof(out); i++)
        out[i] = (uint8_t)(i ^ 0x3c);
    file_fill(f, 0, 0, 4096);
    {
        int fd = open(f->path, O_WRONLY);

        assert_int_equal(pwrite(fd, out, sizeof(out), 2 * 512), (ssize_t)sizeof(out));
        close(fd);
    }
    hdr[0] = T_IN;
    hdr[8] = 2; /* sector 2 */
    memcpy(tmem_ptr(&f->m, h1), hdr, 6);
    memcpy(tmem_ptr(&f->m, h2), hdr + 6, 10);
    tring_add(&f->r, b, 3);
    kick(f);
    wait_used(f, &id, &len);
    assert_int_equal(len, 1025);
    assert_int_equal(((uint8_t *)tmem_ptr(&f->m, ds))[1024], S_OK);
    assert_memory_equal(tmem_ptr(&f->m, ds), out, sizeof(out));
}

static void test_indirect_request(void **state)
{
    struct fx *f = *state;
    struct req r = make_hdr(f, T_OUT, 40, 1024);
    struct tbuf b[] = {{r.hdr, 16, false}, {r.data, 512, false}, {r.data + 512, 512, false},
                       {r.status, 1, true}};
    uint8_t disk[1024];
    uint32_t id, len;

    memset(tmem_ptr(&f->m, r.data), 0xa5, 1024);
    tring_add_indirect(&f->r, b, 4);
    kick(f);
    wait_used(f, &id, &len);
    assert_int_equal(*(uint8_t *)tmem_ptr(&f->m, r.status), S_OK);
    file_read(f, 40 * 512, disk, sizeof(disk));
    assert_int_equal(disk[0], 0xa5);
    assert_int_equal(disk[1023], 0xa5);
}

static void test_many_in_flight_then_stop(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;
    unsigned n = QSIZE / 3, got = 0;

    for (unsigned i = 0; i < n; i++) {
        struct req r = make_hdr(f, T_OUT, i * 8, 4096);
        struct tbuf b[] = {{r.hdr, 16, false}, {r.data, 4096, false}, {r.status, 1, true}};

        memset(tmem_ptr(&f->m, r.data), (int)i, 4096);
        tring_add(&f->r, b, 3);
    }
    kick(f);
    /* Stopping waits until every request taken has been completed. */
    vio_dev_queue_stop(f->dev, 0);
    assert_int_equal(f->dev->queues[0].vq.inflight, 0);
    while (tring_used(&f->r, &id, &len))
        got++;
    assert_int_equal(got, f->dev->queues[0].vq.last_avail_idx);
    /* Restart from where it stopped: the rest is processed. */
    assert_int_equal(vio_dev_queue_start(f->dev, 0, f->kick), 0);
    for (; got < n; got++)
        wait_used(f, &id, &len);
    for (unsigned i = 0; i < n; i++) {
        uint8_t b;

        file_read(f, (uint64_t)i * 4096 + 100, &b, 1);
        assert_int_equal(b, (uint8_t)i);
    }
}

static void test_readonly(void **state)
{
    struct fx *f = *state;
    uint8_t buf[512], disk[512];
    uint64_t feat = f->dev->ops->features(f->dev);

    assert_true(feat & VIO_BIT(F_RO));
    assert_false(feat & VIO_BIT(F_DISCARD));
    assert_false(feat & VIO_BIT(F_WRITE_ZEROES));
    memset(buf, 0x11, sizeof(buf));
    assert_int_equal(do_req(f, T_OUT, 0, buf, 512, false, NULL), S_IOERR);
    file_read(f, 0, disk, sizeof(disk));
    assert_int_equal(disk[0], 0);
    assert_int_equal(do_discard(f, T_DISCARD, 0, 8, 0, 1), S_UNSUPP);
    assert_int_equal(do_discard(f, T_WZ, 0, 8, 0, 1), S_UNSUPP);
    assert_int_equal(do_req(f, T_IN, 0, buf, 512, true, NULL), S_OK);
    assert_int_equal(do_req(f, T_FLUSH, 0, NULL, 0, false, NULL), S_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_read_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_sector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_reaches_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard_punches_hole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unaligned_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_status_byte_breaks_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_with_extra_readable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_with_writable_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arbitrary_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_in_flight_then_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup_ro, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
