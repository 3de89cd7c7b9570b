/* Unit tests of the virtio-scsi controller (src/devices/scsi.c) driven
 * through fake guest rings on a real worker thread, as test_blk.c does for
 * virtio-blk: config space, LUN specs, SCSI commands on file backends,
 * malformed requests, task management (also while I/O is held in flight by
 * a test-only backend), and hotplug events on the event queue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/opts.h"
#include "core/workers.h"
#include "devices/scsi.h"
#include "devices/scsi_ctl.h"
#include "ring.h"

#define QSIZE     64
#define DISK_SIZE (1 << 20)
#define NQ        3 /* control, event, one request queue */
#define CTRLQ     0
#define EVQ       1
#define REQQ      2

#define REQ_LEN  51  /* lun tag attr prio crn cdb[32] */
#define RESP_LEN 108 /* sense_len resid qualifier status response sense[96] */

#define RSP_OK                0
#define RSP_BAD_TARGET        3
#define RSP_FAILURE           9
#define RSP_FUNCTION_REJECTED 11
#define RSP_INCORRECT_LUN     12

#define TMF_ABORT_TASK      0
#define TMF_CLEAR_ACA       2
#define TMF_I_T_NEXUS_RESET 4
#define TMF_LUN_RESET       5
#define TMF_QUERY_TASK      6

#define F_HOTPLUG 1

#define EV_TRANSPORT_RESET 1
#define EV_MISSED          0x80000000u
#define EV_RESCAN          1
#define EV_REMOVED         2

/* ---- a backend that completes bios only when the test says so ---- */

struct held_bdev;

struct held_bq {
    struct held_bdev *h;
    const struct vio_bq_cb *cb;
    void *opaque;
    struct vio_bio *pending[QSIZE];
    unsigned n;
};

struct held_bdev {
    struct vio_bdev b;
    struct held_bq *bq;
    _Atomic unsigned submitted;
    struct held_bdev **owner; /* cleared on close */
};

static int held_queue_open(struct vio_bdev *b, struct vio_loop *loop, unsigned depth,
                           const struct vio_bq_cb *cb, void *opaque, struct vio_bq **out)
{
    struct held_bdev *h = vio_container_of(b, struct held_bdev, b);
    struct held_bq *q = calloc(1, sizeof(*q));

    (void)loop;
    (void)depth;
    if (!q)
        return -ENOMEM;
    q->h = h;
    q->cb = cb;
    q->opaque = opaque;
    h->bq = q;
    *out = (struct vio_bq *)q;
    return 0;
}

static void held_queue_close(struct vio_bq *bq)
{
    struct held_bq *q = (struct held_bq *)bq;

    if (q->n) { /* nothing may be in flight: the controller broke its promise */
        fprintf(stderr, "held backend queue closed with %u bios in flight\n", q->n);
        abort();
    }
    q->h->bq = NULL;
    free(q);
}

static int held_submit(struct vio_bq *bq, struct vio_bio *bio)
{
    struct held_bq *q = (struct held_bq *)bq;

    if (q->n >= QSIZE)
        return -EBUSY;
    q->pending[q->n++] = bio;
    atomic_fetch_add(&q->h->submitted, 1);
    return 0;
}

static void held_kick(struct vio_bq *bq)
{
    (void)bq;
}

static json_t *held_info(struct vio_bdev *b)
{
    (void)b;
    return json_pack("{s:s}", "type", "held");
}

static void held_close(struct vio_bdev *b)
{
    struct held_bdev *h = vio_container_of(b, struct held_bdev, b);

    if (h->owner)
        *h->owner = NULL;
    free(h);
}

static const struct vio_bdev_ops held_ops = {
    .name = "held",
    .queue_open = held_queue_open,
    .queue_close = held_queue_close,
    .submit = held_submit,
    .kick = held_kick,
    .info = held_info,
    .close = held_close,
};

static struct held_bdev *held_new(struct held_bdev **owner)
{
    struct held_bdev *h = calloc(1, sizeof(*h));

    h->b.ops = &held_ops;
    h->b.size = DISK_SIZE;
    h->b.block_size = 512;
    h->owner = owner;
    *owner = h;
    return h;
}

/* Worker: complete every held bio (reads return 0xab). */
static void held_release_fn(struct vio_call *c)
{
    struct held_bdev *h = c->arg;
    struct held_bq *q = h->bq;

    if (q && q->n) {
        unsigned n = q->n;

        q->n = 0;
        for (unsigned i = 0; i < n; i++) {
            struct vio_bio *bio = q->pending[i];

            if (bio->op == VIO_BIO_READ) {
                for (unsigned j = 0; j < bio->iovcnt; j++)
                    memset(bio->iov[j].iov_base, 0xab, bio->iov[j].iov_len);
            }
            q->cb->done(q->opaque, bio, 0);
        }
        q->cb->batch_done(q->opaque);
    }
    vio_call_done(c, 0);
}

/* ---- fixture ---- */

struct fx {
    struct test_mem m;
    struct test_ring r[NQ];
    struct vio_workers w;
    struct vio_dev *dev;
    int kick[NQ], call[NQ], err[NQ];
    char path[2][64];
    struct held_bdev *held; /* LUN 1:0 */
};

static void mktemp_disk(char *path, size_t len)
{
    int fd;

    snprintf(path, len, "/tmp/vio-test-scsi-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
    close(fd);
}

static void add_file_lun(struct fx *f, unsigned target, unsigned lun, const char *path)
{
    struct vio_bdev_opts bo = {.path = path};
    struct vio_scsi_lun_opts lo = {
        .target = (uint16_t)target, .lun = (uint16_t)lun, .disk = {.id = "t"}};
    struct vio_bdev *bdev;
    char err[256] = "";

    assert_int_equal(vio_bdev_open(&bo, &bdev), 0);
    assert_int_equal(vio_scsi_hba_add_lun(f->dev, &lo, bdev, err, sizeof(err)), 0);
}

static int add_null_lun(struct fx *f, unsigned target, unsigned lun, char *err, size_t errlen)
{
    struct vio_bdev_opts bo = {.null = true, .null_size = DISK_SIZE};
    struct vio_scsi_lun_opts lo = {
        .target = (uint16_t)target, .lun = (uint16_t)lun, .disk = {.id = "n"}};
    struct vio_bdev *bdev;

    assert_int_equal(vio_bdev_open(&bo, &bdev), 0);
    return vio_scsi_hba_add_lun(f->dev, &lo, bdev, err, errlen);
}

/* LUNs: 0:0 and 0:2 on files, 1:0 on the held backend; target 2 has none. */
static int setup_common(void **state, bool hotplug)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct vio_scsi_hba_opts o = {.id = "s0", .num_queues = 1, .queue_size = QSIZE};
    struct vio_scsi_lun_opts lo = {.target = 1, .lun = 0, .disk = {.id = "held"}};
    char err[256] = "";

    assert_int_equal(vio_scsi_hba_create(&o, &f->dev), 0);
    assert_true(vio_is_scsi_hba(f->dev));
    assert_int_equal(f->dev->num_queues, NQ);
    mktemp_disk(f->path[0], sizeof(f->path[0]));
    mktemp_disk(f->path[1], sizeof(f->path[1]));
    add_file_lun(f, 0, 0, f->path[0]);
    add_file_lun(f, 0, 2, f->path[1]);
    held_new(&f->held);
    assert_int_equal(vio_scsi_hba_add_lun(f->dev, &lo, &f->held->b, err, sizeof(err)), 0);

    tmem_init(&f->m, 8 << 20);
    assert_int_equal(vio_workers_start(&f->w, 1, "test"), 0);
    f->dev->mem = &f->m.gmem;
    f->dev->features = VIO_BIT(VIO_F_VERSION_1) | (hotplug ? VIO_BIT(F_HOTPLUG) : 0);
    for (unsigned i = 0; i < NQ; i++) {
        struct vio_vq *vq = &f->dev->queues[i].vq;

        tring_init(&f->r[i], &f->m, QSIZE);
        f->kick[i] = eventfd(0, EFD_NONBLOCK);
        f->call[i] = eventfd(0, EFD_NONBLOCK);
        f->err[i] = eventfd(0, EFD_NONBLOCK);
        f->dev->queues[i].loop = &f->w.loops[0];
        f->dev->queues[i].enabled = true;
        tring_to_vq(&f->r[i], vq, false, true);
        vq->call_fd = f->call[i];
        vq->err_fd = f->err[i];
        assert_int_equal(vio_dev_queue_start(f->dev, i, f->kick[i]), 0);
    }
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_common(state, true);
}

static int setup_nohotplug(void **state)
{
    return setup_common(state, false);
}

static void held_release(struct fx *f)
{
    struct vio_call c = {.fn = held_release_fn, .arg = f->held};

    if (f->held)
        vio_loop_call(&f->w.loops[0], &c);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    held_release(f);
    for (unsigned i = 0; i < NQ; i++)
        vio_dev_queue_stop(f->dev, i);
    vio_workers_stop(&f->w);
    f->dev->ops->destroy(f->dev);
    assert_null(f->held); /* the controller closed it */
    for (unsigned i = 0; i < NQ; i++) {
        close(f->kick[i]);
        close(f->call[i]);
        close(f->err[i]);
    }
    unlink(f->path[0]);
    unlink(f->path[1]);
    tmem_free(&f->m);
    free(f);
    return 0;
}

/* Next used element of queue @qi within @ms milliseconds. */
static bool poll_used(struct fx *f, unsigned qi, uint32_t *id, uint32_t *len, int ms)
{
    for (int t = 0; t <= ms; t += 10) {
        struct pollfd p = {.fd = f->call[qi], .events = POLLIN};

        if (tring_used(&f->r[qi], id, len))
            return true;
        poll(&p, 1, 10);
        vio_eventfd_drain(f->call[qi]);
    }
    return tring_used(&f->r[qi], id, len);
}

static void wait_used(struct fx *f, unsigned qi, uint32_t *id, uint32_t *len)
{
    if (!poll_used(f, qi, id, len, 5000))
        fail_msg("no used element on queue %u within 5 s", qi);
}

static void kick(struct fx *f, unsigned qi)
{
    vio_eventfd_signal(f->kick[qi]);
}

static void mklun(uint8_t l[8], unsigned target, unsigned lun)
{
    memset(l, 0, 8);
    l[0] = 1;
    l[1] = (uint8_t)target;
    l[2] = (uint8_t)(0x40 | (lun >> 8));
    l[3] = (uint8_t)lun;
}

/* ---- request queue helpers ---- */

struct cmd {
    uint8_t lun[8];
    uint8_t cdb[32];
    const void *out; /* data-out */
    uint32_t out_len;
    uint32_t in_len;   /* data-in */
    uint32_t hdr_len;  /* 0: REQ_LEN */
    uint32_t resp_len; /* 0: RESP_LEN */
};

struct pending {
    uint64_t hdr, dout, resp, din;
    uint32_t resp_len, in_len;
};

struct resp {
    uint32_t sense_len, resid, used;
    uint8_t status, response;
    uint8_t sense[96];
    uint8_t *data; /* in_len bytes, malloc'd; free with resp_free */
};

static struct pending cmd_submit(struct fx *f, const struct cmd *c)
{
    struct pending p = {0};
    uint32_t hdr_len = c->hdr_len ? c->hdr_len : REQ_LEN;
    struct tbuf b[4];
    unsigned n = 0;
    uint8_t hdr[REQ_LEN] = {0};

    p.resp_len = c->resp_len ? c->resp_len : RESP_LEN;
    p.in_len = c->in_len;
    memcpy(hdr, c->lun, 8);
    hdr[8] = 0x5a; /* tag */
    memcpy(hdr + 19, c->cdb, 32);
    p.hdr = tmem_alloc(&f->m, REQ_LEN, 8);
    memcpy(tmem_ptr(&f->m, p.hdr), hdr, REQ_LEN);
    b[n++] = (struct tbuf){p.hdr, hdr_len, false};
    if (c->out_len) {
        p.dout = tmem_alloc(&f->m, c->out_len, 512);
        memcpy(tmem_ptr(&f->m, p.dout), c->out, c->out_len);
        b[n++] = (struct tbuf){p.dout, c->out_len, false};
    }
    p.resp = tmem_alloc(&f->m, p.resp_len, 8);
    memset(tmem_ptr(&f->m, p.resp), 0xee, p.resp_len);
    b[n++] = (struct tbuf){p.resp, p.resp_len, true};
    if (c->in_len) {
        p.din = tmem_alloc(&f->m, c->in_len, 512);
        memset(tmem_ptr(&f->m, p.din), 0xdd, c->in_len);
        b[n++] = (struct tbuf){p.din, c->in_len, true};
    }
    tring_add(&f->r[REQQ], b, n);
    kick(f, REQQ);
    return p;
}

static void cmd_collect(struct fx *f, const struct pending *p, uint32_t used, struct resp *r)
{
    const uint8_t *rp = tmem_ptr(&f->m, p->resp);
    uint16_t qual;

    memset(r, 0, sizeof(*r));
    r->used = used;
    memcpy(&r->sense_len, rp, 4);
    memcpy(&r->resid, rp + 4, 4);
    r->sense_len = vio_le32(r->sense_len);
    r->resid = vio_le32(r->resid);
    memcpy(&qual, rp + 8, 2);
    assert_int_equal(qual, 0);
    r->status = rp[10];
    r->response = rp[11];
    memcpy(r->sense, rp + 12, VIO_MIN(p->resp_len - 12, 96u));
    if (p->in_len) {
        r->data = malloc(p->in_len);
        memcpy(r->data, tmem_ptr(&f->m, p->din), p->in_len);
    }
}

static uint8_t do_cmd(struct fx *f, const struct cmd *c, struct resp *r)
{
    struct pending p = cmd_submit(f, c);
    uint32_t id, len;

    wait_used(f, REQQ, &id, &len);
    cmd_collect(f, &p, len, r);
    return r->response;
}

static void resp_free(struct resp *r)
{
    free(r->data);
    r->data = NULL;
}

static struct cmd rw10(unsigned target, unsigned lun, bool write, uint32_t lba, uint16_t blocks)
{
    struct cmd c = {0};

    mklun(c.lun, target, lun);
    c.cdb[0] = write ? 0x2a : 0x28;
    c.cdb[2] = (uint8_t)(lba >> 24);
    c.cdb[3] = (uint8_t)(lba >> 16);
    c.cdb[4] = (uint8_t)(lba >> 8);
    c.cdb[5] = (uint8_t)lba;
    c.cdb[7] = (uint8_t)(blocks >> 8);
    c.cdb[8] = (uint8_t)blocks;
    return c;
}

static struct cmd inquiry(unsigned target, unsigned lun, uint16_t alloc)
{
    struct cmd c = {0};

    mklun(c.lun, target, lun);
    c.cdb[0] = 0x12;
    c.cdb[3] = (uint8_t)(alloc >> 8);
    c.cdb[4] = (uint8_t)alloc;
    c.in_len = alloc;
    return c;
}

static struct cmd tur(unsigned target, unsigned lun)
{
    struct cmd c = {0};

    mklun(c.lun, target, lun);
    return c; /* opcode 0 */
}

static void file_read(const char *path, uint64_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

/* ---- control queue helpers ---- */

/* Post a control request: @out_len bytes (type, subtype, lun, tag...) and
 * @in_len writable bytes pre-filled with 0xee. Returns the response gpa. */
static uint64_t ctrl_submit(struct fx *f, const void *req, uint32_t out_len, uint32_t in_len)
{
    uint64_t o = tmem_alloc(&f->m, out_len, 8), i = tmem_alloc(&f->m, in_len, 8);
    struct tbuf b[] = {{o, out_len, false}, {i, in_len, true}};

    memcpy(tmem_ptr(&f->m, o), req, out_len);
    memset(tmem_ptr(&f->m, i), 0xee, in_len);
    tring_add(&f->r[CTRLQ], b, 2);
    kick(f, CTRLQ);
    return i;
}

static void tmf_req(uint8_t req[24], uint32_t subtype, unsigned target, unsigned lun)
{
    uint32_t t = 0, s = vio_to_le32(subtype);

    memset(req, 0, 24);
    memcpy(req, &t, 4);
    memcpy(req + 4, &s, 4);
    mklun(req + 8, target, lun);
    req[16] = 0x5a; /* tag */
}

static uint8_t do_tmf(struct fx *f, uint32_t subtype, unsigned target, unsigned lun)
{
    uint8_t req[24];
    uint64_t resp;
    uint32_t id, len;

    tmf_req(req, subtype, target, lun);
    resp = ctrl_submit(f, req, sizeof(req), 1);
    wait_used(f, CTRLQ, &id, &len);
    assert_int_equal(len, 1);
    return *(uint8_t *)tmem_ptr(&f->m, resp);
}

/* ---- event queue helpers ---- */

static uint64_t post_event_buf(struct fx *f)
{
    uint64_t e = tmem_alloc(&f->m, 16, 8);
    struct tbuf b = {e, 16, true};

    memset(tmem_ptr(&f->m, e), 0xee, 16);
    tring_add(&f->r[EVQ], &b, 1);
    return e;
}

struct event {
    uint32_t event, reason;
    uint8_t lun[8];
};

static struct event read_event(struct fx *f, uint64_t gpa)
{
    const uint8_t *p = tmem_ptr(&f->m, gpa);
    struct event e;

    memcpy(&e.event, p, 4);
    memcpy(e.lun, p + 4, 8);
    memcpy(&e.reason, p + 12, 4);
    e.event = vio_le32(e.event);
    e.reason = vio_le32(e.reason);
    return e;
}

/* ---- tests: config space and LUN management ---- */

static uint32_t cfg32(struct fx *f, uint32_t off)
{
    uint32_t v;

    f->dev->ops->get_config(f->dev, off, &v, 4);
    return vio_le32(v);
}

static int set_cfg32(struct fx *f, uint32_t off, uint32_t v)
{
    v = vio_to_le32(v);
    return f->dev->ops->set_config(f->dev, off, &v, 4);
}

static void test_config_space(void **state)
{
    struct fx *f = *state;
    uint8_t cfg[36];
    uint16_t max_target;
    uint32_t v;

    assert_int_equal(f->dev->ops->config_size(f->dev), 36);
    f->dev->ops->get_config(f->dev, 0, cfg, sizeof(cfg));
    memcpy(&max_target, cfg + 30, 2);
    assert_int_equal(cfg32(f, 0), 1); /* num_queues */
    assert_true(cfg32(f, 4) >= 1);    /* seg_max */
    assert_true(cfg32(f, 4) + 2 <= f->dev->max_iov);
    assert_true(cfg32(f, 8) >= 1);               /* max_sectors */
    assert_true(cfg32(f, 12) >= 1);              /* cmd_per_lun */
    assert_int_equal(cfg32(f, 16), 16);          /* event_info_size */
    assert_int_equal(cfg32(f, 20), 96);          /* sense_size */
    assert_int_equal(cfg32(f, 24), 32);          /* cdb_size */
    assert_int_equal(cfg[28] | cfg[29] << 8, 0); /* max_channel */
    assert_int_equal(vio_le16(max_target), 255);
    assert_int_equal(cfg32(f, 32), 16383);

    /* sense_size and cdb_size are writable within range. */
    assert_int_equal(set_cfg32(f, 20, 18), 0);
    assert_int_equal(cfg32(f, 20), 18);
    assert_int_equal(set_cfg32(f, 20, 17), -EINVAL);
    assert_int_equal(set_cfg32(f, 20, 100000), -EINVAL);
    assert_int_equal(cfg32(f, 20), 18);
    assert_int_equal(set_cfg32(f, 24, 6), 0);
    assert_int_equal(set_cfg32(f, 24, 5), -EINVAL);
    assert_int_equal(set_cfg32(f, 24, 0), -EINVAL);
    assert_int_equal(set_cfg32(f, 24, 4096), -EINVAL);
    assert_int_equal(cfg32(f, 24), 6);
    /* Read-only fields. */
    assert_int_equal(set_cfg32(f, 0, 4), -EINVAL);
    assert_int_equal(set_cfg32(f, 4, 1), -EINVAL);
    assert_int_equal(set_cfg32(f, 32, 1), -EINVAL);
    v = vio_to_le32(64);
    assert_int_equal(f->dev->ops->set_config(f->dev, 20, &v, 2), -EINVAL);
    assert_int_equal(cfg32(f, 0), 1);
    assert_int_equal(cfg32(f, 32), 16383);
    /* Reset brings the defaults back. */
    f->dev->ops->reset(f->dev);
    assert_int_equal(cfg32(f, 20), 96);
    assert_int_equal(cfg32(f, 24), 32);
}

/* A driver that set cdb_size 16 and sense_size 32 sends 35-byte requests
 * and gets 44-byte responses. */
static void test_config_resized_request(void **state)
{
    struct fx *f = *state;
    struct cmd c = inquiry(0, 0, 36);
    struct resp r;

    assert_int_equal(set_cfg32(f, 24, 16), 0);
    assert_int_equal(set_cfg32(f, 20, 32), 0);
    c.hdr_len = 19 + 16;
    c.resp_len = 12 + 32;
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.used, 44 + 36);
    assert_int_equal(r.data[0], 0x00);
    resp_free(&r);
    /* A TUR on a missing LUN: sense cut to what fits is still 18 bytes. */
    c = tur(0, 1);
    c.hdr_len = 35;
    c.resp_len = 44;
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 2);
    assert_int_equal(r.sense_len, 18);
    assert_int_equal(r.sense[2] & 0xf, 5);
}

static void test_add_lun_errors(void **state)
{
    struct fx *f = *state;
    char err[256];
    unsigned added = 0;

    err[0] = 0;
    assert_int_equal(add_null_lun(f, 0, 0, err, sizeof(err)), -EEXIST);
    assert_non_null(strstr(err, "0:0"));
    err[0] = 0;
    assert_int_equal(add_null_lun(f, 256, 0, err, sizeof(err)), -EINVAL);
    assert_true(strlen(err) > 0);
    err[0] = 0;
    assert_int_equal(add_null_lun(f, 0, 16384, err, sizeof(err)), -EINVAL);
    assert_true(strlen(err) > 0);
    /* 3 LUNs exist; fill up to 64, then the 65th is refused. */
    for (unsigned i = 0; i < VIO_SCSI_MAX_LUNS - 3; i++) {
        assert_int_equal(add_null_lun(f, 10 + i / 8, i % 8, err, sizeof(err)), 0);
        added++;
    }
    err[0] = 0;
    assert_int_equal(add_null_lun(f, 200, 0, err, sizeof(err)), -ENOSPC);
    assert_non_null(strstr(err, "64"));
    {
        json_t *l = vio_scsi_hba_luns(f->dev);

        assert_int_equal(json_array_size(l), VIO_SCSI_MAX_LUNS);
        json_decref(l);
    }
    /* Freeing one slot makes room again. */
    assert_int_equal(vio_scsi_hba_remove_lun(f->dev, 10, 0), 0);
    assert_int_equal(vio_scsi_hba_remove_lun(f->dev, 10, 0), -ENOENT);
    assert_int_equal(add_null_lun(f, 200, 0, err, sizeof(err)), 0);
    (void)added;
}

static int spec(struct fx *f, const char *s, char *err, size_t errlen)
{
    struct vio_opts o;
    int ret;

    err[0] = 0;
    ret = vio_opts_parse(s, &o, err, errlen);
    assert_int_equal(ret, 0);
    ret = vio_scsi_hba_add_lun_spec(f->dev, &o, err, errlen);
    vio_opts_free(&o);
    return ret;
}

static void test_add_lun_spec(void **state)
{
    struct fx *f = *state;
    char s[512], err[256], path[64];
    struct cmd c;
    struct resp r;

    mktemp_disk(path, sizeof(path));
    snprintf(s, sizeof(s),
             "target=4,lun=7,path=%s,vendor=ACME,product=P1,serial=S9,"
             "wwn=0x6001405abcdef012",
             path);
    assert_int_equal(spec(f, s, err, sizeof(err)), 0);
    c = inquiry(4, 7, 36);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.data[0], 0);
    assert_memory_equal(r.data + 8, "ACME    ", 8);
    assert_memory_equal(r.data + 16, "P1              ", 16);
    resp_free(&r);

    assert_int_equal(spec(f, "target=3,lun=0", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "path="));
    snprintf(s, sizeof(s), "target=3,path=%s,vendor=ABCDEFGHI", path);
    assert_int_equal(spec(f, s, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "vendor="));
    snprintf(s, sizeof(s), "target=3,path=%s,wwn=0x5001405abcdef012", path);
    assert_int_equal(spec(f, s, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "NAA 6"));
    snprintf(s, sizeof(s), "target=3,path=%s,wwn=6001405abcdef012", path);
    assert_int_equal(spec(f, s, err, sizeof(err)), -EINVAL);
    snprintf(s, sizeof(s), "target=3,path=%s,colour=blue", path);
    assert_true(spec(f, s, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "colour"));
    snprintf(s, sizeof(s), "target=3,lun=16384,path=%s", path);
    assert_true(spec(f, s, err, sizeof(err)) < 0);
    assert_true(strlen(err) > 0);
    snprintf(s, sizeof(s), "target=4,lun=7,path=%s", path);
    assert_int_equal(spec(f, s, err, sizeof(err)), -EEXIST);
    assert_non_null(strstr(err, "4:7"));
    assert_int_equal(spec(f, "target=3,path=/nonexistent/dir/disk.img", err, sizeof(err)) < 0, 1);
    assert_non_null(strstr(err, "/nonexistent/dir/disk.img"));
    /* None of the failures left a LUN behind on target 3. */
    c = tur(3, 0);
    assert_int_equal(do_cmd(f, &c, &r), RSP_BAD_TARGET);
    unlink(path);
}

static void test_spec_too_many_luns(void **state)
{
    struct fx *f = *state;
    char s[512], err[256];

    for (unsigned i = 0; i < VIO_SCSI_MAX_LUNS - 3; i++) {
        snprintf(s, sizeof(s), "target=20,lun=%u,path=%s,readonly", i, f->path[0]);
        assert_int_equal(spec(f, s, err, sizeof(err)), 0);
    }
    snprintf(s, sizeof(s), "target=21,lun=0,path=%s", f->path[0]);
    assert_int_equal(spec(f, s, err, sizeof(err)), -ENOSPC);
    assert_non_null(strstr(err, "64 LUNs"));
}

static json_t *find_lun(json_t *list, int target, int lun)
{
    size_t i;
    json_t *x;

    json_array_foreach(list, i, x)
    {
        if (json_integer_value(json_object_get(x, "target")) == target &&
            json_integer_value(json_object_get(x, "lun")) == lun)
            return x;
    }
    return NULL;
}

static void test_luns_json(void **state)
{
    struct fx *f = *state;
    uint8_t buf[4096];
    struct cmd c;
    struct resp r;
    json_t *l, *x;

    memset(buf, 0x42, sizeof(buf));
    c = rw10(0, 2, true, 8, 8);
    c.out = buf;
    c.out_len = sizeof(buf);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    c = rw10(0, 2, false, 8, 8);
    c.in_len = sizeof(buf);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    resp_free(&r);
    c = tur(0, 2);
    c.cdb[0] = 0xff; /* invalid opcode: a check condition */
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 2);

    l = vio_scsi_hba_luns(f->dev);
    assert_int_equal(json_array_size(l), 3);
    x = find_lun(l, 0, 2);
    assert_non_null(x);
    assert_string_equal(json_string_value(json_object_get(json_object_get(x, "backend"), "type")),
                        "file");
    assert_int_equal(json_integer_value(json_object_get(x, "size_bytes")), DISK_SIZE);
    assert_int_equal(json_integer_value(json_object_get(x, "block_size")), 512);
    assert_int_equal(json_integer_value(json_object_get(x, "writes")), 1);
    assert_int_equal(json_integer_value(json_object_get(x, "reads")), 1);
    assert_int_equal(json_integer_value(json_object_get(x, "commands")), 3);
    assert_int_equal(json_integer_value(json_object_get(x, "check_conditions")), 1);
    assert_int_equal(json_integer_value(json_object_get(x, "inflight")), 0);
    x = find_lun(l, 0, 0);
    assert_non_null(x);
    assert_int_equal(json_integer_value(json_object_get(x, "writes")), 0);
    assert_int_equal(json_integer_value(json_object_get(x, "commands")), 0);
    x = find_lun(l, 1, 0);
    assert_non_null(x);
    assert_string_equal(json_string_value(json_object_get(json_object_get(x, "backend"), "type")),
                        "held");
    json_decref(l);
}

/* ---- tests: the control requests (scsi_ctl.c) ---- */

static struct vio_dev *find_s0(void *opaque, const char *id)
{
    struct fx *f = opaque;

    return strcmp(id, f->dev->id) == 0 ? f->dev : NULL;
}

static void test_ctl_requests(void **state)
{
    struct fx *f = *state;
    struct vio_rpc_error e;
    char s[256], err[256], path[64];
    json_t *p, *r, *l;

    mktemp_disk(path, sizeof(path));
    /* Add: by spec, through the RPC; bad params and specs are refused. */
    snprintf(s, sizeof(s), "hba=s0,target=2,lun=9,path=%s", path);
    p = json_pack("{s:s}", "spec", s);
    memset(&e, 0, sizeof(e));
    r = vio_scsi_rpc_lun_add(p, find_s0, f, &e);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "added")), s);
    json_decref(r);
    memset(&e, 0, sizeof(e));
    assert_null(vio_scsi_rpc_lun_add(p, find_s0, f, &e)); /* 2:9 exists */
    assert_int_equal(e.code, VIO_RPC_INVALID_PARAMS);
    assert_non_null(strstr(e.message, "2:9"));
    json_decref(p);
    const char *bad_params[] = {"[]", "{}", "{\"spec\": 5}", "{\"spec\": \"x\", \"more\": 1}"};
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(bad_params); i++) {
        p = json_loads(bad_params[i], JSON_DECODE_ANY, NULL);
        memset(&e, 0, sizeof(e));
        assert_null(vio_scsi_rpc_lun_add(p, find_s0, f, &e));
        assert_int_equal(e.code, VIO_RPC_INVALID_PARAMS);
        json_decref(p);
    }
    assert_null(vio_scsi_rpc_lun_add(NULL, find_s0, f, &e));
    snprintf(s, sizeof(s), "hba=nope,lun=1,path=%s", path);
    assert_int_equal(vio_scsi_ctl_add(s, find_s0, f, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "no such SCSI controller"));
    snprintf(s, sizeof(s), "lun=1,path=%s", path);
    assert_int_equal(vio_scsi_ctl_add(s, find_s0, f, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "hba=ID is required"));
    assert_true(vio_scsi_ctl_add("hba=s0,,,=", find_s0, f, err, sizeof(err)) < 0);

    /* List: every LUN tagged with its controller. */
    l = json_array();
    vio_scsi_ctl_list(f->dev, l);
    assert_int_equal(json_array_size(l), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "hba")), "s0");
    json_decref(l);

    /* Which spec names a LUN (defaults: target 0, lun 0). */
    assert_true(vio_scsi_ctl_spec_is("hba=s0,target=2,lun=9,path=x", "s0", 2, 9));
    assert_true(vio_scsi_ctl_spec_is("hba=s0,path=x", "s0", 0, 0));
    assert_false(vio_scsi_ctl_spec_is("hba=s0,lun=9,path=x", "s0", 2, 9));
    assert_false(vio_scsi_ctl_spec_is("hba=s1,target=2,lun=9,path=x", "s0", 2, 9));
    assert_false(vio_scsi_ctl_spec_is("path=x", "s0", 0, 0));
    assert_false(vio_scsi_ctl_spec_is("hba=s0,lun=x", "s0", 0, 0));
    assert_false(vio_scsi_ctl_spec_is("hba=s0,=", "s0", 0, 0));

    /* Remove: bad params, a missing controller or LUN, then the LUN. */
    const char *bad_remove[] = {"{}", "{\"hba\": \"s0\"}", "{\"hba\": 1, \"lun\": 1}",
                                "{\"hba\": \"s0\", \"lun\": -1}",
                                "{\"hba\": \"s0\", \"lun\": 16384}",
                                "{\"hba\": \"s0\", \"lun\": \"9x\"}",
                                "{\"hba\": \"s0\", \"lun\": 9, \"target\": 256}"};
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(bad_remove); i++) {
        p = json_loads(bad_remove[i], 0, NULL);
        memset(&e, 0, sizeof(e));
        assert_null(vio_scsi_rpc_lun_remove(p, find_s0, f, &e));
        assert_int_equal(e.code, VIO_RPC_INVALID_PARAMS);
        json_decref(p);
    }
    p = json_pack("{s:s, s:i}", "hba", "nope", "lun", 9);
    assert_null(vio_scsi_rpc_lun_remove(p, find_s0, f, &e));
    assert_int_equal(e.code, VIO_RPC_NOT_FOUND);
    json_decref(p);
    p = json_pack("{s:s, s:i}", "hba", "s0", "lun", 9); /* target 0 has no LUN 9 */
    assert_null(vio_scsi_rpc_lun_remove(p, find_s0, f, &e));
    assert_int_equal(e.code, VIO_RPC_NOT_FOUND);
    assert_non_null(strstr(e.message, "0:9"));
    json_decref(p);
    p = json_pack("{s:s, s:s, s:i}", "hba", "s0", "lun", "9", "target", 2);
    r = vio_scsi_rpc_lun_remove(p, find_s0, f, &e);
    assert_non_null(r);
    assert_int_equal(json_integer_value(json_object_get(r, "target")), 2);
    assert_int_equal(json_integer_value(json_object_get(r, "lun")), 9);
    json_decref(r);
    json_decref(p);
    l = vio_scsi_hba_luns(f->dev);
    assert_int_equal(json_array_size(l), 3);
    json_decref(l);
    unlink(path);
}

/* ---- tests: SCSI commands ---- */

static void test_write_read(void **state)
{
    struct fx *f = *state;
    uint8_t out[8192], disk[8192];
    struct cmd c;
    struct resp r;

    for (unsigned i = 0; i < sizeof(out); i++)
        out[i] = (uint8_t)(i * 7 + 3);
    c = rw10(0, 0, true, 100, 16);
    c.out = out;
    c.out_len = sizeof(out);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.resid, 0);
    assert_int_equal(r.sense_len, 0);
    assert_int_equal(r.used, RESP_LEN);
    file_read(f->path[0], 100 * 512, disk, sizeof(disk));
    assert_memory_equal(disk, out, sizeof(out));
    /* The other LUN's file is untouched. */
    file_read(f->path[1], 100 * 512, disk, sizeof(disk));
    assert_int_equal(disk[0], 0);

    c = rw10(0, 0, false, 100, 16);
    c.in_len = sizeof(out);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.resid, 0);
    assert_int_equal(r.used, RESP_LEN + sizeof(out));
    assert_memory_equal(r.data, out, sizeof(out));
    resp_free(&r);

    /* A short transfer: one block into a 4 KiB buffer leaves a residual,
     * and the bytes past the transfer are not written. */
    c = rw10(0, 0, false, 101, 1);
    c.in_len = 4096;
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.resid, 4096 - 512);
    assert_int_equal(r.used, RESP_LEN + 512);
    assert_memory_equal(r.data, out + 512, 512);
    assert_int_equal(r.data[512], 0xdd);
    resp_free(&r);
}

static void test_inquiry(void **state)
{
    struct fx *f = *state;
    struct cmd c = inquiry(0, 0, 96);
    struct resp r;

    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.data[0], 0x00); /* a connected direct-access device */
    assert_true(r.data[4] + 5 <= 96);
    assert_int_equal(r.resid, 96 - (r.data[4] + 5));
    resp_free(&r);

    /* A LUN that does not exist on a target that does. */
    c = inquiry(0, 1, 36);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.data[0], 0x7f);
    resp_free(&r);
    /* LUN numbers in peripheral addressing (byte 2 zero) work too. */
    c = inquiry(0, 2, 36);
    c.lun[2] = 0;
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.data[0], 0x00);
    resp_free(&r);
}

static void test_missing_lun_and_target(void **state)
{
    struct fx *f = *state;
    struct cmd c = tur(0, 1);
    struct resp r;

    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 2); /* CHECK CONDITION */
    assert_int_equal(r.sense_len, 18);
    assert_int_equal(r.sense[0], 0x70);
    assert_int_equal(r.sense[2] & 0xf, 5);
    assert_int_equal(r.sense[12], 0x25);

    /* Target 2 has no LUNs: every command, REPORT LUNS included. */
    c = tur(2, 0);
    assert_int_equal(do_cmd(f, &c, &r), RSP_BAD_TARGET);
    assert_int_equal(r.status, 0);
    c = inquiry(2, 0, 36);
    assert_int_equal(do_cmd(f, &c, &r), RSP_BAD_TARGET);
    assert_int_equal(r.resid, 36);
    assert_int_equal(r.data[0], 0xdd);
    resp_free(&r);
    c = rw10(255, 0, false, 0, 1);
    c.in_len = 512;
    assert_int_equal(do_cmd(f, &c, &r), RSP_BAD_TARGET);
    resp_free(&r);

    /* Malformed LUN addresses. */
    c = tur(0, 0);
    c.lun[0] = 0;
    assert_int_equal(do_cmd(f, &c, &r), RSP_BAD_TARGET);
    c = tur(0, 0);
    c.lun[0] = 2;
    assert_int_equal(do_cmd(f, &c, &r), RSP_BAD_TARGET);
    for (unsigned i = 4; i < 8; i++) {
        c = tur(0, 0);
        c.lun[i] = 1;
        assert_int_equal(do_cmd(f, &c, &r), RSP_BAD_TARGET);
    }
    c = tur(0, 0);
    c.lun[2] = 0x80; /* logical unit addressing: not ours */
    assert_int_equal(do_cmd(f, &c, &r), RSP_BAD_TARGET);
    /* The well-formed address still works. */
    c = tur(0, 0);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 0);
}

static void test_report_luns(void **state)
{
    struct fx *f = *state;
    struct cmd c = {0};
    struct resp r;
    char err[256];
    bool seen[3] = {false};

    assert_int_equal(add_null_lun(f, 0, 300, err, sizeof(err)), 0);
    mklun(c.lun, 0, 1); /* any LUN of the target, even a missing one */
    c.cdb[0] = 0xa0;
    c.cdb[9] = 0; /* allocation length 1024 */
    c.cdb[8] = 4;
    c.in_len = 1024;
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.data[0] << 24 | r.data[1] << 16 | r.data[2] << 8 | r.data[3], 3 * 8);
    for (unsigned i = 0; i < 3; i++) {
        const uint8_t *e = r.data + 8 + 8 * i;

        for (unsigned j = 2; j < 8; j++)
            assert_int_equal(e[j], 0);
        if (e[0] == 0 && e[1] == 0)
            seen[0] = true;
        else if (e[0] == 0 && e[1] == 2)
            seen[1] = true;
        else if (e[0] == 0x41 && e[1] == 300 - 256)
            seen[2] = true;
        else
            fail_msg("unexpected LUN entry %02x %02x", e[0], e[1]);
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    assert_int_equal(r.resid, 1024 - 32);
    resp_free(&r);

    /* Target 1 has exactly LUN 0. */
    mklun(c.lun, 1, 0);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.data[3], 8);
    assert_int_equal(r.data[8], 0);
    assert_int_equal(r.data[9], 0);
    resp_free(&r);
}

static void test_bidirectional_fails(void **state)
{
    struct fx *f = *state;
    uint8_t out[512] = {1};
    struct cmd c = rw10(0, 0, true, 0, 1);
    struct resp r;
    uint8_t disk[512];

    c.out = out;
    c.out_len = sizeof(out);
    c.in_len = 512;
    assert_int_equal(do_cmd(f, &c, &r), RSP_FAILURE);
    assert_int_equal(r.data[0], 0xdd);
    resp_free(&r);
    file_read(f->path[0], 0, disk, sizeof(disk));
    assert_int_equal(disk[0], 0);
    assert_false(vio_dev_needs_reset(f->dev));
}

static void test_short_header_fails(void **state)
{
    struct fx *f = *state;
    struct cmd c = inquiry(0, 0, 36);
    struct resp r;

    c.hdr_len = REQ_LEN - 1;
    assert_int_equal(do_cmd(f, &c, &r), RSP_FAILURE);
    assert_int_equal(r.data[0], 0xdd);
    resp_free(&r);
    c.hdr_len = 8;
    assert_int_equal(do_cmd(f, &c, &r), RSP_FAILURE);
    resp_free(&r);
    assert_false(vio_dev_needs_reset(f->dev));
    /* The queue goes on. */
    c = tur(0, 0);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
}

static void test_short_response_breaks_queue(void **state)
{
    struct fx *f = *state;
    uint64_t hdr = tmem_alloc(&f->m, REQ_LEN, 8), resp = tmem_alloc(&f->m, 256, 8);
    struct tbuf b[] = {{hdr, REQ_LEN, false}, {resp, RESP_LEN - 8, true}};
    uint8_t *h = tmem_ptr(&f->m, hdr), *p = tmem_ptr(&f->m, resp);
    uint32_t id, len;

    memset(h, 0, REQ_LEN);
    mklun(h, 0, 0);
    h[19] = 0x12;
    h[23] = 36;
    memset(p, 0xcc, 256);
    tring_add(&f->r[REQQ], b, 2);
    kick(f, REQQ);
    wait_used(f, REQQ, &id, &len);
    assert_int_equal(len, 0);
    assert_true(vio_eventfd_drain(f->err[REQQ]) > 0);
    assert_true(vio_dev_needs_reset(f->dev));
    for (unsigned i = 0; i < 256; i++)
        assert_int_equal(p[i], 0xcc);
    /* Nothing more is processed on that queue. */
    b[1].len = RESP_LEN;
    tring_add(&f->r[REQQ], b, 2);
    kick(f, REQQ);
    assert_false(poll_used(f, REQQ, &id, &len, 100));
}

/* ---- tests: control queue ---- */

static void test_tmf_basic(void **state)
{
    struct fx *f = *state;
    uint8_t req[24];
    uint64_t resp;
    uint32_t id, len;

    assert_int_equal(do_tmf(f, TMF_LUN_RESET, 0, 0), RSP_OK);
    assert_int_equal(do_tmf(f, TMF_ABORT_TASK, 0, 2), RSP_OK);
    assert_int_equal(do_tmf(f, TMF_I_T_NEXUS_RESET, 0, 0), RSP_OK);
    assert_int_equal(do_tmf(f, TMF_LUN_RESET, 0, 1), RSP_INCORRECT_LUN);
    assert_int_equal(do_tmf(f, TMF_ABORT_TASK, 0, 1), RSP_INCORRECT_LUN);
    assert_int_equal(do_tmf(f, TMF_LUN_RESET, 2, 0), RSP_BAD_TARGET);
    assert_int_equal(do_tmf(f, TMF_ABORT_TASK, 7, 3), RSP_BAD_TARGET);
    assert_int_equal(do_tmf(f, TMF_CLEAR_ACA, 0, 0), RSP_FUNCTION_REJECTED);
    assert_int_equal(do_tmf(f, TMF_QUERY_TASK, 0, 0), RSP_FUNCTION_REJECTED);
    assert_int_equal(do_tmf(f, 99, 0, 0), RSP_FUNCTION_REJECTED);

    /* Malformed LUN address. */
    tmf_req(req, TMF_LUN_RESET, 0, 0);
    req[8] = 0;
    resp = ctrl_submit(f, req, 24, 1);
    wait_used(f, CTRLQ, &id, &len);
    assert_int_equal(*(uint8_t *)tmem_ptr(&f->m, resp), RSP_BAD_TARGET);

    /* Too short. */
    tmf_req(req, TMF_LUN_RESET, 0, 0);
    resp = ctrl_submit(f, req, 16, 1);
    wait_used(f, CTRLQ, &id, &len);
    assert_int_equal(len, 1);
    assert_int_equal(*(uint8_t *)tmem_ptr(&f->m, resp), RSP_FAILURE);
    assert_false(vio_dev_needs_reset(f->dev));
}

static void test_ctrl_an_and_unknown(void **state)
{
    struct fx *f = *state;
    uint8_t req[16] = {0};
    uint32_t t = vio_to_le32(1), ev = vio_to_le32(0xffffffff), id, len;
    const uint8_t *p;
    uint64_t resp;

    memcpy(req, &t, 4);
    mklun(req + 4, 0, 0);
    memcpy(req + 12, &ev, 4);
    resp = ctrl_submit(f, req, 16, 5);
    wait_used(f, CTRLQ, &id, &len);
    assert_int_equal(len, 5);
    p = tmem_ptr(&f->m, resp);
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(p[i], 0); /* event_actual 0, response OK */
    /* AN_SUBSCRIBE answers the same. */
    t = vio_to_le32(2);
    memcpy(req, &t, 4);
    resp = ctrl_submit(f, req, 16, 5);
    wait_used(f, CTRLQ, &id, &len);
    assert_int_equal(len, 5);
    assert_int_equal(((uint8_t *)tmem_ptr(&f->m, resp))[4], RSP_OK);
    /* Unknown type. */
    t = vio_to_le32(7);
    memcpy(req, &t, 4);
    resp = ctrl_submit(f, req, 16, 5);
    wait_used(f, CTRLQ, &id, &len);
    assert_int_equal(*(uint8_t *)tmem_ptr(&f->m, resp), RSP_FAILURE);
    assert_false(vio_dev_needs_reset(f->dev));
}

static void wait_submitted(struct fx *f, unsigned n)
{
    for (int i = 0; i < 500 && atomic_load(&f->held->submitted) < n; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&f->held->submitted), n);
}

static void test_lun_reset_waits_for_inflight(void **state)
{
    struct fx *f = *state;
    uint8_t out[1024], req[24];
    struct cmd c = rw10(1, 0, true, 0, 2);
    struct pending p;
    struct resp r;
    uint64_t tmf, tmf2;
    uint32_t id, len;

    memset(out, 0x11, sizeof(out));
    c.out = out;
    c.out_len = sizeof(out);
    p = cmd_submit(f, &c);
    wait_submitted(f, 1);
    tmf_req(req, TMF_LUN_RESET, 1, 0);
    tmf = ctrl_submit(f, req, 24, 1);
    tmf_req(req, TMF_I_T_NEXUS_RESET, 1, 0);
    tmf2 = ctrl_submit(f, req, 24, 1);
    /* Neither the command nor the resets are answered while I/O is held. */
    assert_false(poll_used(f, CTRLQ, &id, &len, 200));
    assert_false(tring_used(&f->r[REQQ], &id, &len));
    assert_int_equal(*(uint8_t *)tmem_ptr(&f->m, tmf), 0xee);
    {
        json_t *l = vio_scsi_hba_luns(f->dev);

        assert_int_equal(json_integer_value(json_object_get(find_lun(l, 1, 0), "inflight")), 1);
        json_decref(l);
    }
    /* A reset of another LUN does not wait. */
    assert_int_equal(do_tmf(f, TMF_LUN_RESET, 0, 0), RSP_OK);

    held_release(f);
    wait_used(f, REQQ, &id, &len);
    cmd_collect(f, &p, len, &r);
    assert_int_equal(r.response, RSP_OK);
    assert_int_equal(r.status, 0);
    wait_used(f, CTRLQ, &id, &len);
    assert_int_equal(len, 1);
    wait_used(f, CTRLQ, &id, &len);
    assert_int_equal(*(uint8_t *)tmem_ptr(&f->m, tmf), RSP_OK);
    assert_int_equal(*(uint8_t *)tmem_ptr(&f->m, tmf2), RSP_OK);
    /* Idle now: answered at once. */
    assert_int_equal(do_tmf(f, TMF_LUN_RESET, 1, 0), RSP_OK);
}

/* ---- tests: hotplug events ---- */

static void test_hotplug_add_remove(void **state)
{
    struct fx *f = *state;
    uint64_t ev[3];
    struct event e;
    struct cmd c;
    struct resp r;
    char err[256];
    uint32_t id, len;

    for (unsigned i = 0; i < 3; i++)
        ev[i] = post_event_buf(f);
    kick(f, EVQ);
    assert_false(poll_used(f, EVQ, &id, &len, 50));

    assert_int_equal(add_null_lun(f, 3, 4000, err, sizeof(err)), 0);
    wait_used(f, EVQ, &id, &len);
    assert_int_equal(len, 16);
    e = read_event(f, ev[0]);
    assert_int_equal(e.event, EV_TRANSPORT_RESET);
    assert_int_equal(e.reason, EV_RESCAN);
    assert_int_equal(e.lun[0], 1);
    assert_int_equal(e.lun[1], 3);
    assert_int_equal(e.lun[2], 0x40 | (4000 >> 8));
    assert_int_equal(e.lun[3], 4000 & 0xff);
    for (unsigned i = 4; i < 8; i++)
        assert_int_equal(e.lun[i], 0);
    c = inquiry(3, 4000, 36);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.data[0], 0);
    resp_free(&r);

    assert_int_equal(vio_scsi_hba_remove_lun(f->dev, 3, 4000), 0);
    wait_used(f, EVQ, &id, &len);
    e = read_event(f, ev[1]);
    assert_int_equal(e.event, EV_TRANSPORT_RESET);
    assert_int_equal(e.reason, EV_REMOVED);
    assert_int_equal(e.lun[1], 3);
    assert_int_equal(e.lun[3], 4000 & 0xff);
    c = tur(3, 4000);
    assert_int_equal(do_cmd(f, &c, &r), RSP_BAD_TARGET);

    /* Removing one LUN of a target with others: the LUN is gone, the
     * target stays. */
    assert_int_equal(vio_scsi_hba_remove_lun(f->dev, 0, 2), 0);
    wait_used(f, EVQ, &id, &len);
    e = read_event(f, ev[2]);
    assert_int_equal(e.reason, EV_REMOVED);
    assert_int_equal(e.lun[1], 0);
    assert_int_equal(e.lun[3], 2);
    c = inquiry(0, 2, 36);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.data[0], 0x7f);
    resp_free(&r);
    c = tur(0, 2);
    assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
    assert_int_equal(r.status, 2);
    assert_int_equal(r.sense[12], 0x25);
    assert_int_equal(vio_scsi_hba_remove_lun(f->dev, 0, 2), -ENOENT);
    assert_false(vio_dev_needs_reset(f->dev));
}

static void test_hotplug_events_missed(void **state)
{
    struct fx *f = *state;
    uint64_t ev;
    struct event e;
    char err[256];
    uint32_t id, len;

    /* No buffer: the event is lost. */
    assert_int_equal(add_null_lun(f, 5, 1, err, sizeof(err)), 0);
    assert_false(poll_used(f, EVQ, &id, &len, 100));
    ev = post_event_buf(f);
    kick(f, EVQ);
    wait_used(f, EVQ, &id, &len);
    assert_int_equal(len, 16);
    e = read_event(f, ev);
    assert_true(e.event & EV_MISSED);
    /* The next event is an ordinary one. */
    ev = post_event_buf(f);
    kick(f, EVQ);
    assert_false(poll_used(f, EVQ, &id, &len, 50));
    assert_int_equal(vio_scsi_hba_remove_lun(f->dev, 5, 1), 0);
    wait_used(f, EVQ, &id, &len);
    e = read_event(f, ev);
    assert_int_equal(e.event, EV_TRANSPORT_RESET);
    assert_int_equal(e.reason, EV_REMOVED);
    assert_int_equal(e.lun[1], 5);
}

/* A buffer posted but not kicked is still found when an event comes. */
static void test_hotplug_buffer_without_kick(void **state)
{
    struct fx *f = *state;
    uint64_t ev = post_event_buf(f);
    struct event e;
    char err[256];
    uint32_t id, len;

    assert_int_equal(add_null_lun(f, 6, 0, err, sizeof(err)), 0);
    wait_used(f, EVQ, &id, &len);
    e = read_event(f, ev);
    assert_int_equal(e.event, EV_TRANSPORT_RESET);
    assert_int_equal(e.reason, EV_RESCAN);
}

static void test_short_event_buffer_breaks_queue(void **state)
{
    struct fx *f = *state;
    uint64_t e = tmem_alloc(&f->m, 32, 8);
    struct tbuf b = {e, 8, true};
    char err[256];
    uint32_t id, len;

    memset(tmem_ptr(&f->m, e), 0xcc, 32);
    tring_add(&f->r[EVQ], &b, 1);
    kick(f, EVQ);
    assert_int_equal(add_null_lun(f, 6, 0, err, sizeof(err)), 0);
    /* add_lun returns after the event call ran on the worker. */
    assert_true(vio_eventfd_drain(f->err[EVQ]) > 0);
    assert_true(vio_dev_needs_reset(f->dev));
    if (tring_used(&f->r[EVQ], &id, &len))
        assert_int_equal(len, 0);
    for (unsigned i = 0; i < 32; i++)
        assert_int_equal(((uint8_t *)tmem_ptr(&f->m, e))[i], 0xcc);
    /* Commands still work: only the event queue is broken. */
    {
        struct cmd c = inquiry(6, 0, 36);
        struct resp r;

        assert_int_equal(do_cmd(f, &c, &r), RSP_OK);
        assert_int_equal(r.data[0], 0);
        resp_free(&r);
    }
}

static void test_no_hotplug_no_events(void **state)
{
    struct fx *f = *state;
    char err[256];
    uint32_t id, len;

    post_event_buf(f);
    kick(f, EVQ);
    assert_int_equal(add_null_lun(f, 5, 1, err, sizeof(err)), 0);
    assert_int_equal(vio_scsi_hba_remove_lun(f->dev, 5, 1), 0);
    assert_false(poll_used(f, EVQ, &id, &len, 100));
}

struct remove_thread {
    struct fx *f;
    unsigned target, lun;
    int ret;
    atomic_bool done;
};

static void *remove_main(void *arg)
{
    struct remove_thread *t = arg;

    t->ret = vio_scsi_hba_remove_lun(t->f->dev, t->target, t->lun);
    atomic_store(&t->done, true);
    return NULL;
}

static void test_remove_waits_for_inflight(void **state)
{
    struct fx *f = *state;
    uint64_t ev = post_event_buf(f);
    struct remove_thread t = {.f = f, .target = 1, .lun = 0};
    struct cmd c = rw10(1, 0, false, 4, 2);
    struct pending p;
    struct resp r;
    struct event e;
    pthread_t th;
    uint32_t id, len;

    kick(f, EVQ);
    c.in_len = 1024;
    p = cmd_submit(f, &c);
    wait_submitted(f, 1);
    assert_int_equal(pthread_create(&th, NULL, remove_main, &t), 0);
    usleep(200000);
    assert_false(atomic_load(&t.done));
    assert_false(tring_used(&f->r[EVQ], &id, &len));
    assert_false(tring_used(&f->r[REQQ], &id, &len));
    /* New commands no longer reach the LUN while it drains. */
    {
        struct cmd t2 = tur(1, 0);
        struct resp r2;

        assert_int_equal(do_cmd(f, &t2, &r2), RSP_BAD_TARGET);
    }
    held_release(f);
    pthread_join(th, NULL);
    assert_int_equal(t.ret, 0);
    assert_null(f->held); /* closed by the controller */
    wait_used(f, REQQ, &id, &len);
    cmd_collect(f, &p, len, &r);
    assert_int_equal(r.response, RSP_OK);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.data[0], 0xab);
    assert_int_equal(r.data[1023], 0xab);
    resp_free(&r);
    wait_used(f, EVQ, &id, &len);
    e = read_event(f, ev);
    assert_int_equal(e.reason, EV_REMOVED);
    assert_int_equal(e.lun[1], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_resized_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_lun_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_lun_spec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spec_too_many_luns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_luns_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctl_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inquiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_lun_and_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_luns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bidirectional_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_header_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_response_breaks_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tmf_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctrl_an_and_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lun_reset_waits_for_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hotplug_add_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hotplug_events_missed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hotplug_buffer_without_kick, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_event_buffer_breaks_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_hotplug_no_events, setup_nohotplug, teardown),
        cmocka_unit_test_setup_teardown(test_remove_waits_for_inflight, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
