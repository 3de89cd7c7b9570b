/* Unit tests of the emulated NVMe controller (src/emul/nvme.c, nvme_io.c),
 * without KVM: the test is the driver. It writes registers, lays out the
 * admin and I/O queues in a fake guest memory, rings doorbells and reads
 * completions, with a namespace on a temporary file through the io_uring
 * backend; the I/O queues' loop is pumped on the test's thread. First the
 * normal life: enable, Identify, queues, reads and writes with PRP1 only,
 * PRP1+PRP2 and PRP lists (checked in the file), flush, write zeroes,
 * deallocate, shutdown and reset. Then bad input: unknown opcodes, bad
 * queue ids, sizes, CQs and vectors, a CQ deleted under its SQ, LBAs past
 * the end, PRPs outside RAM or misaligned, transfers over MDTS, doorbells
 * for queues that do not exist or with values past the queue, a full CQ,
 * an admin queue outside RAM: each gets its status, nothing crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/block/bdev.h"
#include "core/gmem.h"
#include "core/log.h"
#include "core/loop.h"
#include "emul/nvme.h"

#define MEM_SIZE    (4u << 20)
#define ASQ_GPA     0x10000ull
#define ACQ_GPA     0x11000ull
#define SQ_GPA(q)   (0x20000ull + 0x4000ull * (q)) /* 64 entries: 4 KiB */
#define CQ_GPA(q)   (0x22000ull + 0x4000ull * (q))
#define ID_GPA      0x40000ull
#define LIST_GPA    0x50000ull /* PRP list pages */
#define BUF_GPA     0x100000ull
#define RBUF_GPA    0x200000ull
#define OUTSIDE     0x40000000ull
#define QENT        64
#define DISK_BLOCKS 2048u /* 1 MiB of 512-byte blocks */
#define NQ          2

/* Status values: (SCT << 8) | SC, as the spec lists them. */
#define S_OK         0x000
#define S_INV_OPC    0x001
#define S_INV_FIELD  0x002
#define S_XFER       0x004
#define S_INV_NS     0x00b
#define S_SEQ        0x00c
#define S_PRP_OFF    0x013
#define S_WP         0x020
#define S_LBA        0x080
#define S_CQ_INV     0x100
#define S_QID_INV    0x101
#define S_QSIZE_INV  0x102
#define S_AER_LIMIT  0x105
#define S_INV_VECTOR 0x108
#define S_INV_LOG    0x109
#define S_Q_DELETION 0x10c

struct cmd {
    uint8_t opc;
    uint32_t nsid;
    uint64_t prp1, prp2;
    uint32_t cdw10, cdw11, cdw12, cdw13;
};

struct cpl {
    uint32_t dw0;
    uint16_t sqhd, sqid, cid;
    unsigned status; /* (SCT << 8) | SC */
    bool dnr;
};

struct fx {
    uint8_t *ram;
    struct vio_gmem mem;
    struct vio_loop loop;
    struct vio_nvme *n;
    char path[64];
    int fd;
    unsigned irqs[VIO_NVME_MAX_IOQ + 1];
    /* driver state per queue id (0: admin) */
    uint16_t sq_tail[NQ + 1], cq_head[NQ + 1], qsize[NQ + 1];
    uint8_t phase[NQ + 1];
    uint16_t cid;
    uint8_t *dbs; /* shadow doorbells in use, or NULL */
};

static uint8_t *g(struct fx *f, uint64_t gpa)
{
    assert_true(gpa < MEM_SIZE);
    return f->ram + gpa;
}

static void st32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void st64(uint8_t *p, uint64_t v)
{
    st32(p, (uint32_t)v);
    st32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint64_t ld64(const uint8_t *p)
{
    return ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

static void on_irq(void *opaque, uint16_t vector)
{
    struct fx *f = opaque;

    assert_true(vector <= VIO_NVME_MAX_IOQ);
    f->irqs[vector]++;
}

static struct vio_bdev *open_file(struct fx *f, bool readonly)
{
    struct vio_bdev_opts bo = {.path = f->path, .readonly = readonly};
    struct vio_bdev *b;

    assert_int_equal(vio_bdev_open(&bo, &b), 0);
    return b;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct vio_nvme_opts o = {
        .id = "nv0", .serial = "SN-TEST-1", .queues = NQ, .nns = 1, .nloops = 1};

    assert_non_null(f);
    f->ram = calloc(1, MEM_SIZE);
    assert_non_null(f->ram);
    vio_gmem_init(&f->mem);
    assert_int_equal(vio_gmem_add_ptr(&f->mem, f->ram, 0, MEM_SIZE, 0), 0);
    assert_int_equal(vio_loop_init(&f->loop), 0);
    snprintf(f->path, sizeof(f->path), "/tmp/vio-test-nvme-XXXXXX");
    f->fd = mkstemp(f->path);
    assert_true(f->fd >= 0);
    assert_int_equal(ftruncate(f->fd, (off_t)DISK_BLOCKS * 512), 0);
    o.ns[0] = open_file(f, false);
    o.loops[0] = &f->loop;
    assert_int_equal(vio_nvme_new(&o, &f->mem, on_irq, f, &f->n), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    vio_nvme_free(f->n);
    vio_loop_destroy(&f->loop);
    close(f->fd);
    unlink(f->path);
    free(f->ram);
    free(f);
    return 0;
}

/* ---- driver helpers ---- */

static uint32_t rd(struct fx *f, uint32_t off)
{
    return (uint32_t)vio_nvme_reg_read(f->n, off, 4);
}

static void wr(struct fx *f, uint32_t off, uint32_t v)
{
    vio_nvme_reg_write(f->n, off, v, 4);
}

static void pump(struct fx *f)
{
    for (int i = 0; i < 1000 && vio_loop_run_once(&f->loop, 0) > 0; i++)
        ;
}

static void enable(struct fx *f)
{
    wr(f, 0x24, (QENT - 1) << 16 | (QENT - 1)); /* AQA */
    vio_nvme_reg_write(f->n, 0x28, ASQ_GPA, 8);
    vio_nvme_reg_write(f->n, 0x30, ACQ_GPA, 8);
    wr(f, 0x14, 1 | 6u << 16 | 4u << 20); /* CC: EN, IOSQES 64, IOCQES 16 */
    assert_int_equal(rd(f, 0x1c) & 3, 1); /* RDY, no CFS */
    f->qsize[0] = QENT;
    f->sq_tail[0] = f->cq_head[0] = 0;
    f->phase[0] = 1;
    memset(g(f, ACQ_GPA), 0, QENT * 16);
}

static uint64_t sq_gpa(unsigned q)
{
    return q ? SQ_GPA(q) : ASQ_GPA;
}

static uint64_t cq_gpa(unsigned q)
{
    return q ? CQ_GPA(q) : ACQ_GPA;
}

/* Put @c in SQ @q without ringing; returns its command id. */
static uint16_t put(struct fx *f, unsigned q, const struct cmd *c)
{
    uint8_t *e = g(f, sq_gpa(q) + (uint64_t)f->sq_tail[q] * 64);
    uint16_t cid = ++f->cid;

    memset(e, 0, 64);
    st32(e, c->opc | (uint32_t)cid << 16);
    st32(e + 4, c->nsid);
    st64(e + 24, c->prp1);
    st64(e + 32, c->prp2);
    st32(e + 40, c->cdw10);
    st32(e + 44, c->cdw11);
    st32(e + 48, c->cdw12);
    st32(e + 52, c->cdw13);
    f->sq_tail[q] = (uint16_t)((f->sq_tail[q] + 1) % f->qsize[q]);
    return cid;
}

static void ring(struct fx *f, unsigned q)
{
    if (f->dbs && q)
        st32(f->dbs + 8 * q, f->sq_tail[q]);
    wr(f, 0x1000 + 8 * q, f->sq_tail[q]);
}

/* Take the next completion from CQ @q if there is one. */
static bool reap(struct fx *f, unsigned q, struct cpl *out)
{
    uint8_t *e = g(f, cq_gpa(q) + (uint64_t)f->cq_head[q] * 16);
    uint32_t dw3 = ld32(e + 12);

    if ((dw3 >> 16 & 1) != f->phase[q])
        return false;
    out->dw0 = ld32(e);
    out->sqhd = ld16(e + 8);
    out->sqid = ld16(e + 10);
    out->cid = (uint16_t)dw3;
    out->status = ((dw3 >> 17) & 0xff) | ((dw3 >> 25) & 7) << 8;
    out->dnr = dw3 >> 31;
    if (++f->cq_head[q] == f->qsize[q]) {
        f->cq_head[q] = 0;
        f->phase[q] ^= 1;
    }
    if (f->dbs && q)
        st32(f->dbs + 8 * q + 4, f->cq_head[q]);
    wr(f, 0x1000 + 8 * q + 4, f->cq_head[q]);
    return true;
}

/* Submit @c on queue @q and wait for its completion. */
static struct cpl run(struct fx *f, unsigned q, const struct cmd *c)
{
    struct cpl p;
    uint16_t cid = put(f, q, c);

    ring(f, q);
    for (int i = 0; i < 2000; i++) {
        if (reap(f, q, &p)) {
            assert_int_equal(p.cid, cid);
            assert_int_equal(p.sqid, q);
            return p;
        }
        vio_loop_run_once(&f->loop, 10);
    }
    fail_msg("no completion for opcode 0x%02x on queue %u", c->opc, q);
    return p;
}

static unsigned admin(struct fx *f, const struct cmd *c)
{
    return run(f, 0, c).status;
}

static void create_pair(struct fx *f, unsigned q, uint16_t size)
{
    struct cmd cq = {.opc = 0x05,
                     .prp1 = CQ_GPA(q),
                     .cdw10 = (uint32_t)(size - 1) << 16 | q,
                     .cdw11 = (uint32_t)q << 16 | 3};
    struct cmd sq = {.opc = 0x01,
                     .prp1 = SQ_GPA(q),
                     .cdw10 = (uint32_t)(size - 1) << 16 | q,
                     .cdw11 = (uint32_t)q << 16 | 1};

    memset(g(f, CQ_GPA(q)), 0, (size_t)size * 16);
    assert_int_equal(admin(f, &cq), S_OK);
    assert_int_equal(admin(f, &sq), S_OK);
    f->qsize[q] = size;
    f->sq_tail[q] = f->cq_head[q] = 0;
    f->phase[q] = 1;
}

static struct cmd rw(uint8_t opc, uint64_t slba, unsigned nblocks, uint64_t prp1, uint64_t prp2)
{
    return (struct cmd){.opc = opc,
                        .nsid = 1,
                        .prp1 = prp1,
                        .prp2 = prp2,
                        .cdw10 = (uint32_t)slba,
                        .cdw11 = (uint32_t)(slba >> 32),
                        .cdw12 = nblocks - 1};
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + seed * 13 + (i >> 9));
}

/* ---- the normal life ---- */

static void test_registers_and_identify(void **state)
{
    struct fx *f = *state;
    uint64_t cap = vio_nvme_reg_read(f->n, 0, 8);
    uint8_t *d = g(f, ID_GPA);
    struct cmd c = {.opc = 0x06, .prp1 = ID_GPA};

    assert_int_equal(cap & 0xffff, VIO_NVME_MQES);
    assert_true(cap >> 16 & 1);              /* CQR */
    assert_true(cap >> 37 & 1);              /* NVM command set */
    assert_int_equal((cap >> 32) & 0xf, 0);  /* doorbell stride 4 */
    assert_int_equal((cap >> 48) & 0xff, 0); /* 4 KiB pages only */
    assert_int_equal(rd(f, 0x08), 0x00010400);
    assert_int_equal(rd(f, 0x1c), 0); /* not ready before enable */
    enable(f);

    c.cdw10 = 1; /* controller */
    assert_int_equal(admin(f, &c), S_OK);
    assert_memory_equal(d + 4, "SN-TEST-1           ", 20);
    assert_int_equal(d[77], VIO_NVME_MDTS);
    assert_int_equal(d[512], 0x66);
    assert_int_equal(d[513], 0x44);
    assert_int_equal(ld32(d + 516), 1);         /* NN */
    assert_int_equal(ld16(d + 520) & 0xc, 0xc); /* DSM, Write Zeroes */
    assert_true(d[524] & 1);                    /* volatile write cache */
    assert_int_equal(ld32(d + 80), 0x00010400);
    assert_int_equal(ld16(d + 256), 1u << 8); /* OACS: Doorbell Buffer Config */

    memset(d, 0xee, 4096);
    c.cdw10 = 0; /* namespace 1 */
    c.nsid = 1;
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(ld64(d), DISK_BLOCKS); /* NSZE */
    assert_int_equal(d[128 + 2], 9);        /* LBADS: 512 */
    assert_int_equal(d[99], 0);             /* not write protected */

    c.cdw10 = 2; /* active namespace list */
    c.nsid = 0;
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(ld32(d), 1);
    assert_int_equal(ld32(d + 4), 0);
    c.nsid = 1; /* those above 1: none */
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(ld32(d), 0);

    c.cdw10 = 3; /* descriptors: an NGUID */
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(d[0], 2);
    assert_int_equal(d[1], 16);

    c.cdw10 = 0x10; /* allocated namespace list: not supported */
    assert_int_equal(admin(f, &c), S_INV_FIELD);
    c.cdw10 = 0;
    c.nsid = 2;
    assert_int_equal(admin(f, &c), S_INV_NS);
    c.nsid = 0;
    assert_int_equal(admin(f, &c), S_INV_NS);
    c.cdw10 = 1;
    c.prp1 = OUTSIDE;
    assert_int_equal(admin(f, &c), S_XFER);
    c.prp1 = ID_GPA + 0x800; /* straddles a page: PRP2 needed and misaligned */
    c.prp2 = ID_GPA + 0x1004;
    assert_int_equal(admin(f, &c), S_PRP_OFF);

    /* Unknown admin opcodes, also I/O ones on the admin queue. */
    c = (struct cmd){.opc = 0x80};
    assert_int_equal(admin(f, &c), S_INV_OPC);
    c.opc = 0x81;
    assert_int_equal(admin(f, &c), S_INV_OPC);
    c.opc = 0x7d;
    assert_int_equal(admin(f, &c), S_INV_OPC);
    assert_true(f->irqs[0] > 0);
}

static void test_features_logs_aer(void **state)
{
    struct fx *f = *state;
    struct cmd c = {.opc = 0x09, .cdw10 = 0x07, .cdw11 = 7u << 16 | 7};
    struct cpl p;
    uint8_t *d = g(f, ID_GPA);

    enable(f);
    p = run(f, 0, &c); /* Number of Queues: 8 asked, NQ allocated */
    assert_int_equal(p.status, S_OK);
    assert_int_equal(p.dw0, (NQ - 1) | (NQ - 1) << 16);
    c.cdw11 = 0xffff;
    assert_int_equal(admin(f, &c), S_INV_FIELD);
    c = (struct cmd){.opc = 0x09, .cdw10 = 0x06, .cdw11 = 0}; /* write cache off */
    assert_int_equal(admin(f, &c), S_OK);
    c.opc = 0x0a;
    p = run(f, 0, &c);
    assert_int_equal(p.status, S_OK);
    assert_int_equal(p.dw0, 0);
    c = (struct cmd){.opc = 0x09, .cdw10 = 0x06, .cdw11 = 1};
    assert_int_equal(admin(f, &c), S_OK);
    c = (struct cmd){.opc = 0x09, .cdw10 = 0x06 | 1u << 31, .cdw11 = 1}; /* save */
    assert_int_equal(admin(f, &c), 0x10d);
    c = (struct cmd){.opc = 0x0a, .cdw10 = 0x0c}; /* APST: not supported */
    assert_int_equal(admin(f, &c), S_INV_FIELD);
    c = (struct cmd){.opc = 0x09, .cdw10 = 0x02, .cdw11 = 3}; /* power state 3 */
    assert_int_equal(admin(f, &c), S_INV_FIELD);

    /* Log pages: SMART, firmware, error; unknown ones. */
    c = (struct cmd){.opc = 0x02, .prp1 = ID_GPA, .cdw10 = 0x02 | 127u << 16};
    memset(d, 0xee, 512);
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(d[3], 100);
    c.cdw10 = 0x03 | 127u << 16;
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(d[0], 1);
    c.cdw10 = 0x01 | 15u << 16;
    assert_int_equal(admin(f, &c), S_OK);
    c.cdw10 = 0xc0 | 15u << 16;
    assert_int_equal(admin(f, &c), S_INV_LOG);
    c.cdw10 = 0x02 | 127u << 16;
    c.cdw12 = 1024; /* offset past the page */
    assert_int_equal(admin(f, &c), S_INV_FIELD);

    c = (struct cmd){.opc = 0x08, .cdw10 = 1u << 16 | 5}; /* abort: not aborted */
    p = run(f, 0, &c);
    assert_int_equal(p.status, S_OK);
    assert_int_equal(p.dw0 & 1, 1);
    c = (struct cmd){.opc = 0x18}; /* keep alive */
    assert_int_equal(admin(f, &c), S_OK);

    /* AERs stay outstanding; a fifth is over the limit. */
    for (int i = 0; i < 4; i++) {
        c = (struct cmd){.opc = 0x0c};
        put(f, 0, &c);
    }
    ring(f, 0);
    assert_false(reap(f, 0, &p));
    c = (struct cmd){.opc = 0x0c};
    assert_int_equal(admin(f, &c), S_AER_LIMIT);
    /* A doorbell for a queue that does not exist completes one. */
    wr(f, 0x1000 + 8 * 2, 1);
    assert_true(reap(f, 0, &p));
    assert_int_equal(p.status, S_OK);
    assert_int_equal(p.dw0, 0x010000); /* error, invalid doorbell register, error log */
    /* Masked until the error log is read. */
    wr(f, 0x1000 + 8 * 7 + 4, 1);
    assert_false(reap(f, 0, &p));
    c = (struct cmd){.opc = 0x02, .prp1 = ID_GPA, .cdw10 = 0x01 | 15u << 16};
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(ld64(d), 2); /* error count */
    /* A value past the admin queue's size. */
    wr(f, 0x1000, 1000);
    assert_true(reap(f, 0, &p));
    assert_int_equal(p.dw0, 0x010100); /* invalid doorbell write value */
    {
        struct vio_nvme_stats s;

        vio_nvme_get_stats(f->n, &s);
        assert_int_equal(s.bad_doorbell, 3);
    }
}

static void test_queue_create_delete(void **state)
{
    struct fx *f = *state;
    struct cmd c;

    enable(f);
    /* CQ: qid 0, beyond the maximum, size 1, size over MQES, PC=0, bad
     * vector, outside RAM, misaligned. */
    c = (struct cmd){.opc = 0x05, .prp1 = CQ_GPA(1), .cdw10 = 15u << 16 | 0, .cdw11 = 1u << 16 | 3};
    assert_int_equal(admin(f, &c), S_QID_INV);
    c.cdw10 = 15u << 16 | (NQ + 1);
    assert_int_equal(admin(f, &c), S_QID_INV);
    c.cdw10 = 0u << 16 | 1;
    assert_int_equal(admin(f, &c), S_QSIZE_INV);
    c.cdw10 = (uint32_t)(VIO_NVME_MQES + 1) << 16 | 1;
    assert_int_equal(admin(f, &c), S_QSIZE_INV);
    c.cdw10 = 15u << 16 | 1;
    c.cdw11 = 1u << 16 | 2; /* PC = 0 */
    assert_int_equal(admin(f, &c), S_INV_FIELD);
    c.cdw11 = (uint32_t)(NQ + 1) << 16 | 3;
    assert_int_equal(admin(f, &c), S_INV_VECTOR);
    c.cdw11 = 1u << 16 | 3;
    c.prp1 = OUTSIDE;
    assert_int_equal(admin(f, &c), S_INV_FIELD);
    c.prp1 = MEM_SIZE - 0x1000; /* runs off the end of RAM */
    c.cdw10 = 1023u << 16 | 1;
    assert_int_equal(admin(f, &c), S_INV_FIELD);
    c.prp1 = CQ_GPA(1) + 8;
    c.cdw10 = 15u << 16 | 1;
    assert_int_equal(admin(f, &c), S_INV_FIELD);

    /* SQ on a CQ that does not exist. */
    c = (struct cmd){.opc = 0x01, .prp1 = SQ_GPA(1), .cdw10 = 15u << 16 | 1, .cdw11 = 1u << 16 | 1};
    assert_int_equal(admin(f, &c), S_CQ_INV);

    create_pair(f, 1, 16);
    /* Again: the ids are taken. */
    c = (struct cmd){.opc = 0x05, .prp1 = CQ_GPA(1), .cdw10 = 15u << 16 | 1, .cdw11 = 1u << 16 | 3};
    assert_int_equal(admin(f, &c), S_QID_INV);
    c = (struct cmd){.opc = 0x01, .prp1 = SQ_GPA(1), .cdw10 = 15u << 16 | 1, .cdw11 = 1u << 16 | 1};
    assert_int_equal(admin(f, &c), S_QID_INV);
    /* SQ: qid 0, over the maximum, size 1, size over MQES, CQ 0. */
    c.cdw10 = 15u << 16 | 0;
    assert_int_equal(admin(f, &c), S_QID_INV);
    c.cdw10 = 15u << 16 | (NQ + 1);
    assert_int_equal(admin(f, &c), S_QID_INV);
    c.cdw10 = 0u << 16 | 2;
    assert_int_equal(admin(f, &c), S_QSIZE_INV);
    c.cdw10 = (uint32_t)(VIO_NVME_MQES + 1) << 16 | 2;
    assert_int_equal(admin(f, &c), S_QSIZE_INV);
    c.cdw10 = 15u << 16 | 2;
    c.cdw11 = 0u << 16 | 1;
    assert_int_equal(admin(f, &c), S_CQ_INV);
    c.cdw11 = 9u << 16 | 1;
    assert_int_equal(admin(f, &c), S_CQ_INV);
    /* Number of Queues after queues exist. */
    c = (struct cmd){.opc = 0x09, .cdw10 = 0x07, .cdw11 = 0};
    assert_int_equal(admin(f, &c), S_SEQ);

    /* A CQ with an SQ on it stays. */
    c = (struct cmd){.opc = 0x04, .cdw10 = 1};
    assert_int_equal(admin(f, &c), S_Q_DELETION);
    c = (struct cmd){.opc = 0x00, .cdw10 = 1};
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(admin(f, &c), S_QID_INV);
    c.cdw10 = 0;
    assert_int_equal(admin(f, &c), S_QID_INV);
    c = (struct cmd){.opc = 0x04, .cdw10 = 1};
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(admin(f, &c), S_QID_INV);
    c.cdw10 = 0xffff;
    assert_int_equal(admin(f, &c), S_QID_INV);
    /* And back, both pairs. */
    create_pair(f, 1, 16);
    create_pair(f, 2, 64);
}

static void check_file(struct fx *f, uint64_t off, const uint8_t *want, size_t len)
{
    uint8_t *buf = malloc(len);

    assert_non_null(buf);
    assert_int_equal(pread(f->fd, buf, len, (off_t)off), (ssize_t)len);
    assert_memory_equal(buf, want, len);
    free(buf);
}

static void test_read_write_prp(void **state)
{
    struct fx *f = *state;
    uint8_t *w = g(f, BUF_GPA), *r = g(f, RBUF_GPA);
    uint8_t *list = g(f, LIST_GPA);
    uint8_t first[4096];
    struct cmd c;

    enable(f);
    create_pair(f, 1, 16);
    create_pair(f, 2, 64);

    /* PRP1 only: 4 KiB at LBA 8, on queue 1. */
    fill(w, 4096, 1);
    memcpy(first, w, sizeof(first));
    c = rw(0x01, 8, 8, BUF_GPA, 0);
    assert_int_equal(run(f, 1, &c).status, S_OK);
    check_file(f, 8 * 512, w, 4096);
    c = rw(0x02, 8, 8, RBUF_GPA, 0);
    assert_int_equal(run(f, 1, &c).status, S_OK);
    assert_memory_equal(r, w, 4096);
    assert_true(f->irqs[1] > 0);

    /* PRP1 + PRP2: 6 KiB starting mid-page (PRP1 at +0x800), on queue 2. */
    fill(w + 0x800, 6144, 2);
    c = rw(0x01, 100, 12, BUF_GPA + 0x800, BUF_GPA + 0x2000);
    memcpy(w + 0x2000, w + 0x1000, 0x1000); /* the second page is elsewhere */
    assert_int_equal(run(f, 2, &c).status, S_OK);
    {
        uint8_t want[6144];

        memcpy(want, w + 0x800, 2048);
        memcpy(want + 2048, w + 0x2000, 4096);
        check_file(f, 100 * 512, want, sizeof(want));
        memset(r, 0, 0x4000);
        c = rw(0x02, 100, 12, RBUF_GPA + 0x800, RBUF_GPA + 0x3000);
        assert_int_equal(run(f, 2, &c).status, S_OK);
        assert_memory_equal(r + 0x800, want, 2048);
        assert_memory_equal(r + 0x3000, want + 2048, 4096);
    }
    assert_true(f->irqs[2] > 0);

    /* A PRP list: 64 KiB in 16 pages scattered in reverse order, the list
     * starting mid-page. */
    {
        uint8_t want[65536];
        uint8_t *l = list + 0x100;

        fill(want, sizeof(want), 3);
        memcpy(w, want, 4096); /* PRP1: page 0 at BUF_GPA */
        for (unsigned i = 1; i < 16; i++) {
            uint64_t pg = BUF_GPA + 0x10000 + (uint64_t)(16 - i) * 0x1000;

            memcpy(g(f, pg), want + i * 4096, 4096);
            st64(l + 8 * (i - 1), pg);
        }
        c = rw(0x01, 300, 128, BUF_GPA, LIST_GPA + 0x100);
        assert_int_equal(run(f, 1, &c).status, S_OK);
        check_file(f, 300 * 512, want, sizeof(want));
        /* Read it back through a list that spans two list pages: PRP1 at
         * +0x200, so 17 pages; the first list page holds 3 entries. */
        l = list + 0x1000 - 3 * 8;
        for (unsigned i = 0; i < 2; i++)
            st64(l + 8 * i, RBUF_GPA + 0x1000 * (i + 1));
        st64(l + 16, LIST_GPA + 0x2000); /* the chain to the next list page */
        for (unsigned i = 2; i < 16; i++)
            st64(list + 0x2000 + 8 * (i - 2), RBUF_GPA + 0x1000 * (i + 1));
        memset(r, 0, 0x12000);
        c = rw(0x02, 300, 128, RBUF_GPA + 0x200, LIST_GPA + 0x1000 - 3 * 8);
        assert_int_equal(run(f, 2, &c).status, S_OK);
        assert_memory_equal(r + 0x200, want, sizeof(want));
    }

    /* Flush, Write Zeroes, deallocate. */
    c = (struct cmd){.opc = 0x00, .nsid = 1};
    assert_int_equal(run(f, 1, &c).status, S_OK);
    c = rw(0x08, 8, 4, 0, 0);
    assert_int_equal(run(f, 1, &c).status, S_OK);
    {
        uint8_t zero[2048] = {0};

        check_file(f, 8 * 512, zero, sizeof(zero));
        check_file(f, 12 * 512, first + 2048, 2048); /* the rest untouched */
    }
    st32(list, 0);
    st32(list + 4, 16);  /* NLB */
    st64(list + 8, 300); /* SLBA */
    st32(list + 16, 0);
    st32(list + 20, 0); /* an empty range is skipped */
    st64(list + 24, 0);
    c = (struct cmd){.opc = 0x09, .nsid = 1, .prp1 = LIST_GPA, .cdw10 = 1, .cdw11 = 1u << 2};
    assert_int_equal(run(f, 2, &c).status, S_OK);
    {
        uint8_t zero[8192] = {0};

        check_file(f, 300 * 512, zero, sizeof(zero));
    }
    /* FUA write with the write cache on, and a write with it off. */
    c = rw(0x01, 0, 1, BUF_GPA, 0);
    c.cdw12 |= 1u << 30;
    assert_int_equal(run(f, 1, &c).status, S_OK);
    c = (struct cmd){.opc = 0x09, .cdw10 = 0x06, .cdw11 = 0};
    assert_int_equal(admin(f, &c), S_OK);
    c = rw(0x01, 1, 1, BUF_GPA, 0);
    assert_int_equal(run(f, 2, &c).status, S_OK);
    {
        struct vio_nvme_stats s;

        vio_nvme_get_stats(f->n, &s);
        assert_true(s.write_bytes >= 4096 + 6144 + 65536);
        assert_int_equal(s.errors, 0);
    }
}

static void test_bad_io(void **state)
{
    struct fx *f = *state;
    uint8_t *list = g(f, LIST_GPA);
    struct cpl p;
    struct cmd c;

    enable(f);
    create_pair(f, 1, 16);
    c = (struct cmd){.opc = 0x7f, .nsid = 1};
    p = run(f, 1, &c);
    assert_int_equal(p.status, S_INV_OPC);
    assert_true(p.dnr);
    c.opc = 0x06; /* an admin opcode on an I/O queue */
    assert_int_equal(run(f, 1, &c).status, S_INV_OPC);
    c = rw(0x02, 0, 1, RBUF_GPA, 0);
    c.nsid = 0;
    assert_int_equal(run(f, 1, &c).status, S_INV_NS);
    c.nsid = 2;
    assert_int_equal(run(f, 1, &c).status, S_INV_NS);
    c.nsid = 0xffffffff; /* flush of every namespace: not supported */
    c.opc = 0x00;
    assert_int_equal(run(f, 1, &c).status, S_INV_NS);
    /* LBA ranges: the last block is fine, one past is not, nor a range
     * that wraps. */
    c = rw(0x02, DISK_BLOCKS - 1, 1, RBUF_GPA, 0);
    assert_int_equal(run(f, 1, &c).status, S_OK);
    c = rw(0x02, DISK_BLOCKS - 1, 2, RBUF_GPA, 0);
    assert_int_equal(run(f, 1, &c).status, S_LBA);
    c = rw(0x01, DISK_BLOCKS, 1, RBUF_GPA, 0);
    assert_int_equal(run(f, 1, &c).status, S_LBA);
    c = rw(0x08, UINT64_MAX, 2, 0, 0);
    assert_int_equal(run(f, 1, &c).status, S_LBA);
    /* Over MDTS (128 KiB). */
    c = rw(0x02, 0, 257, RBUF_GPA, LIST_GPA);
    assert_int_equal(run(f, 1, &c).status, S_INV_FIELD);
    /* PRPs: outside RAM, PRP2 outside RAM, PRP2 misaligned, a list
     * outside RAM, a misaligned list pointer and list entry. */
    c = rw(0x02, 0, 1, OUTSIDE, 0);
    assert_int_equal(run(f, 1, &c).status, S_XFER);
    c = rw(0x02, 0, 1, MEM_SIZE - 256, MEM_SIZE); /* runs off the end of RAM */
    assert_int_equal(run(f, 1, &c).status, S_XFER);
    c = rw(0x02, 0, 16, RBUF_GPA, OUTSIDE);
    assert_int_equal(run(f, 1, &c).status, S_XFER);
    c = rw(0x02, 0, 16, RBUF_GPA, RBUF_GPA + 0x1010);
    assert_int_equal(run(f, 1, &c).status, S_PRP_OFF);
    c = rw(0x02, 0, 24, RBUF_GPA, OUTSIDE);
    assert_int_equal(run(f, 1, &c).status, S_XFER);
    c = rw(0x02, 0, 24, RBUF_GPA, LIST_GPA + 4);
    assert_int_equal(run(f, 1, &c).status, S_PRP_OFF);
    st64(list, RBUF_GPA + 0x1000);
    st64(list + 8, RBUF_GPA + 0x2008); /* misaligned entry */
    c = rw(0x02, 0, 24, RBUF_GPA, LIST_GPA);
    assert_int_equal(run(f, 1, &c).status, S_PRP_OFF);
    st64(list + 8, OUTSIDE);
    assert_int_equal(run(f, 1, &c).status, S_XFER);
    c = rw(0x02, 0, 1, RBUF_GPA + 2, 0); /* PRP1 not dword aligned */
    assert_int_equal(run(f, 1, &c).status, S_PRP_OFF);
    /* Fused and SGL commands. */
    c = rw(0x02, 0, 1, RBUF_GPA, 0);
    c.opc = 0x02;
    {
        uint16_t cid = put(f, 1, &c);
        uint8_t *e = g(f, SQ_GPA(1) + (uint64_t)((f->sq_tail[1] + 15) % 16) * 64);

        e[1] = 0x40; /* PSDT: SGL */
        ring(f, 1);
        for (int i = 0; i < 100 && !reap(f, 1, &p); i++)
            vio_loop_run_once(&f->loop, 10);
        assert_int_equal(p.cid, cid);
        assert_int_equal(p.status, S_INV_FIELD);
    }
    /* DSM: a range past the end, and a list outside RAM. */
    st32(list + 4, 8);
    st64(list + 8, DISK_BLOCKS - 4);
    c = (struct cmd){.opc = 0x09, .nsid = 1, .prp1 = LIST_GPA, .cdw10 = 0, .cdw11 = 1u << 2};
    assert_int_equal(run(f, 1, &c).status, S_LBA);
    c.prp1 = OUTSIDE;
    assert_int_equal(run(f, 1, &c).status, S_XFER);
    /* Still working. */
    c = rw(0x02, 0, 8, RBUF_GPA, 0);
    assert_int_equal(run(f, 1, &c).status, S_OK);
}

static void test_doorbells_and_full_cq(void **state)
{
    struct fx *f = *state;
    struct vio_nvme_stats s0, s1;
    struct cpl p;
    struct cmd c;

    enable(f);
    create_pair(f, 1, 4); /* three usable entries */
    vio_nvme_get_stats(f->n, &s0);
    /* Tail past the queue, head past the queue, queues that do not exist,
     * offsets far past the doorbells, 8-byte and 2-byte writes. */
    wr(f, 0x1000 + 8, 4);
    wr(f, 0x1000 + 8 + 4, 9);
    wr(f, 0x1000 + 8 * 2, 0);
    wr(f, 0x1000 + 8 * 2 + 4, 0);
    wr(f, 0x1000 + 8 * 64, 0);
    wr(f, 0x3ffc, 0);
    vio_nvme_reg_write(f->n, 0x1008, 1, 8);
    vio_nvme_reg_write(f->n, 0x1008, 1, 2);
    pump(f);
    vio_nvme_get_stats(f->n, &s1);
    assert_int_equal(s1.bad_doorbell - s0.bad_doorbell, 6);
    assert_int_equal(s1.io_cmds, s0.io_cmds);

    /* Six reads on a queue of four whose CQ holds three: the controller
     * stops at a full CQ and goes on when the head doorbell frees it. */
    for (int round = 0; round < 2; round++) {
        c = rw(0x02, 0, 1, RBUF_GPA, 0);
        for (int i = 0; i < 3; i++)
            put(f, 1, &c);
        ring(f, 1);
        pump(f);
        for (int i = 0; i < 3; i++) {
            assert_true(reap(f, 1, &p));
            assert_int_equal(p.status, S_OK);
        }
        assert_false(reap(f, 1, &p));
    }
    /* More entries than the CQ can hold at once. */
    c = rw(0x02, 0, 1, RBUF_GPA, 0);
    {
        struct cmd big = {
            .opc = 0x05, .prp1 = CQ_GPA(2), .cdw10 = 1u << 16 | 2, .cdw11 = 2u << 16 | 3};
        struct cmd sq = {
            .opc = 0x01, .prp1 = SQ_GPA(2), .cdw10 = 15u << 16 | 2, .cdw11 = 2u << 16 | 1};

        memset(g(f, CQ_GPA(2)), 0, 64);
        assert_int_equal(admin(f, &big), S_OK); /* CQ of two: one usable entry */
        assert_int_equal(admin(f, &sq), S_OK);
        f->qsize[2] = 16;
        f->sq_tail[2] = 0;
        for (int i = 0; i < 5; i++)
            put(f, 2, &c);
        ring(f, 2);
        pump(f);
        f->qsize[2] = 2; /* the driver's view of the CQ */
        f->phase[2] = 1;
        f->cq_head[2] = 0;
        for (int i = 0; i < 5; i++) {
            assert_true(reap(f, 2, &p));
            assert_int_equal(p.status, S_OK);
            assert_false(reap(f, 2, &p)); /* the next one only after the head moved */
            pump(f);
        }
    }
}

static void test_reset_shutdown_fatal(void **state)
{
    struct fx *f = *state;
    struct vio_nvme_stats s0, s1;
    struct cmd c;

    enable(f);
    create_pair(f, 1, 16);
    c = rw(0x01, 0, 8, BUF_GPA, 0);
    put(f, 1, &c);
    ring(f, 1);                               /* in flight when the shutdown comes */
    wr(f, 0x14, rd(f, 0x14) | 1u << 14);      /* CC.SHN: normal */
    assert_int_equal(rd(f, 0x1c) & 0xc, 0x8); /* SHST: complete */
    /* Disable: not ready, queues gone. */
    wr(f, 0x14, 0);
    assert_int_equal(rd(f, 0x1c), 0);
    vio_nvme_get_stats(f->n, &s0);
    wr(f, 0x1000 + 8, 1);
    vio_nvme_get_stats(f->n, &s1);
    assert_int_equal(s1.bad_doorbell, s0.bad_doorbell + 1);
    /* Back again, the queues can be made anew. */
    enable(f);
    create_pair(f, 1, 16);
    c = rw(0x02, 0, 8, RBUF_GPA, 0);
    assert_int_equal(run(f, 1, &c).status, S_OK);
    /* An admin queue outside RAM: controller fatal, not ready. */
    wr(f, 0x14, 0);
    vio_nvme_reg_write(f->n, 0x28, OUTSIDE, 8);
    wr(f, 0x14, 1 | 6u << 16 | 4u << 20);
    assert_int_equal(rd(f, 0x1c) & 3, 2);
    wr(f, 0x14, 0);
    assert_int_equal(rd(f, 0x1c), 0);
    /* The offset bits of ASQ are reserved; one entry and 8 KiB pages are
     * fatal too. */
    vio_nvme_reg_write(f->n, 0x28, ASQ_GPA + 0x80, 8);
    assert_int_equal(vio_nvme_reg_read(f->n, 0x28, 8), ASQ_GPA);
    wr(f, 0x24, 0);
    wr(f, 0x14, 1 | 6u << 16 | 4u << 20);
    assert_int_equal(rd(f, 0x1c) & 3, 2);
    wr(f, 0x14, 0);
    wr(f, 0x24, (QENT - 1) << 16 | (QENT - 1));
    wr(f, 0x14, 1 | 1u << 7 | 6u << 16 | 4u << 20);
    assert_int_equal(rd(f, 0x1c) & 3, 2);
    wr(f, 0x14, 0);
    /* ASQ cannot move while enabled. */
    enable(f);
    vio_nvme_reg_write(f->n, 0x28, OUTSIDE, 8);
    assert_int_equal(vio_nvme_reg_read(f->n, 0x28, 8), ASQ_GPA);
    /* Odd register accesses read zero and change nothing. */
    assert_int_equal(vio_nvme_reg_read(f->n, 0x1000, 4), 0);
    assert_int_equal(vio_nvme_reg_read(f->n, 0x15, 4), 0);
    assert_int_equal(vio_nvme_reg_read(f->n, 0x14, 2), 0);
    vio_nvme_reg_write(f->n, 0x14, 0, 2);
    assert_int_equal(rd(f, 0x1c) & 1, 1);
}

#define DBS_GPA 0x60000ull
#define EIS_GPA 0x61000ull

static void test_shadow_doorbells(void **state)
{
    struct fx *f = *state;
    uint8_t *ei = g(f, EIS_GPA);
    struct cmd c = {.opc = 0x7c, .prp1 = DBS_GPA, .prp2 = EIS_GPA + 8};
    struct cpl p;

    enable(f);
    create_pair(f, 1, 16);                       /* made before the shadow buffers: switched over */
    assert_int_equal(admin(f, &c), S_INV_FIELD); /* misaligned */
    c.prp2 = OUTSIDE;
    assert_int_equal(admin(f, &c), S_INV_FIELD);
    c.prp2 = DBS_GPA;
    assert_int_equal(admin(f, &c), S_INV_FIELD); /* one page for both */
    c.prp2 = EIS_GPA;
    memset(ei, 0xff, 4096);
    assert_int_equal(admin(f, &c), S_OK);
    f->dbs = g(f, DBS_GPA);
    assert_int_equal(ld32(ei + 8), 0);     /* SQ 1: caught up at 0 */
    assert_int_equal(ld32(ei + 8 + 4), 0); /* CQ 1: head 0 */

    /* The shadow tail counts, not the value written to the register. */
    c = rw(0x02, 0, 1, RBUF_GPA, 0);
    put(f, 1, &c);
    put(f, 1, &c);
    st32(f->dbs + 8, f->sq_tail[1]);
    wr(f, 0x1000 + 8, 0);
    pump(f);
    for (int i = 0; i < 2; i++) {
        assert_true(reap(f, 1, &p));
        assert_int_equal(p.status, S_OK);
    }
    assert_false(reap(f, 1, &p));
    assert_int_equal(ld32(ei + 8), 2); /* the event index follows */
    /* A shadow tail past the queue is not taken; a good one then is. */
    put(f, 1, &c);
    st32(f->dbs + 8, 100);
    wr(f, 0x1000 + 8, 0);
    pump(f);
    assert_false(reap(f, 1, &p));
    ring(f, 1);
    pump(f);
    assert_true(reap(f, 1, &p));
    assert_int_equal(p.status, S_OK);
    assert_int_equal(ld32(ei + 8), 3);

    /* A queue made afterwards uses them from the start; its CQ of two
     * entries fills, and only the shadow head lets it go on. */
    {
        struct cmd cq = {
            .opc = 0x05, .prp1 = CQ_GPA(2), .cdw10 = 1u << 16 | 2, .cdw11 = 2u << 16 | 3};
        struct cmd sq = {
            .opc = 0x01, .prp1 = SQ_GPA(2), .cdw10 = 15u << 16 | 2, .cdw11 = 2u << 16 | 1};

        memset(g(f, CQ_GPA(2)), 0, 64);
        assert_int_equal(admin(f, &cq), S_OK);
        assert_int_equal(admin(f, &sq), S_OK);
        f->qsize[2] = 16;
        f->sq_tail[2] = 0;
        for (int i = 0; i < 3; i++)
            put(f, 2, &c);
        ring(f, 2);
        pump(f);
        f->qsize[2] = 2;
        f->phase[2] = 1;
        f->cq_head[2] = 0;
        assert_int_equal(ld32(ei + 16 + 4), 0); /* stalled: ring when the head moves */
        /* The register alone does not free the entry. */
        wr(f, 0x1000 + 16 + 4, 1);
        pump(f);
        assert_int_equal(ld32(g(f, CQ_GPA(2) + 16 + 12)) >> 16 & 1, 0); /* slot 1 not posted */
        assert_true(reap(f, 2, &p)); /* writes shadow head 1 and rings */
        pump(f);
        assert_true(reap(f, 2, &p));
        pump(f);
        assert_true(reap(f, 2, &p));
        assert_int_equal(p.status, S_OK);
    }
    /* A reset forgets the buffers: the register counts again. */
    wr(f, 0x14, 0);
    f->dbs = NULL;
    enable(f);
    create_pair(f, 1, 16);
    c = rw(0x02, 0, 1, RBUF_GPA, 0);
    assert_int_equal(run(f, 1, &c).status, S_OK);
}

static void test_readonly_namespace(void **state)
{
    struct fx *f = *state;
    struct vio_nvme_opts o = {.id = "ro", .queues = 1, .nns = 1, .nloops = 1};
    struct vio_nvme *rw_ctrl = f->n;
    struct cmd c;

    o.ns[0] = open_file(f, true);
    o.loops[0] = &f->loop;
    assert_int_equal(vio_nvme_new(&o, &f->mem, on_irq, f, &f->n), 0);
    enable(f);
    c = (struct cmd){.opc = 0x06, .nsid = 1, .prp1 = ID_GPA};
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(g(f, ID_GPA)[99] & 1, 1); /* write protected */
    create_pair(f, 1, 16);
    c = rw(0x01, 0, 1, BUF_GPA, 0);
    assert_int_equal(run(f, 1, &c).status, S_WP);
    c = rw(0x08, 0, 1, 0, 0);
    assert_int_equal(run(f, 1, &c).status, S_WP);
    c = (struct cmd){.opc = 0x09, .nsid = 1, .prp1 = LIST_GPA, .cdw11 = 1u << 2};
    assert_int_equal(run(f, 1, &c).status, S_WP);
    c = rw(0x02, 0, 1, RBUF_GPA, 0);
    assert_int_equal(run(f, 1, &c).status, S_OK);
    vio_nvme_free(f->n);
    f->n = rw_ctrl;

    /* Bad options. */
    o.queues = 0;
    o.ns[0] = open_file(f, true);
    assert_int_equal(vio_nvme_new(&o, &f->mem, on_irq, f, &f->n), -EINVAL);
    o.queues = 1;
    o.serial = "has a space";
    o.ns[0] = open_file(f, true);
    assert_int_equal(vio_nvme_new(&o, &f->mem, on_irq, f, &f->n), -EINVAL);
    f->n = rw_ctrl;
}

/* The NGUID and EUI-64 of namespace @nsid of the current controller (from
 * Identify Namespace, and the NGUID again from the descriptor list). */
static void ns_ids(struct fx *f, uint32_t nsid, uint8_t nguid[16], uint8_t eui[8])
{
    uint8_t *d = g(f, ID_GPA);
    struct cmd c = {.opc = 0x06, .nsid = nsid, .prp1 = ID_GPA};

    assert_int_equal(admin(f, &c), S_OK);
    memcpy(nguid, d + 104, 16);
    memcpy(eui, d + 120, 8);
    c.cdw10 = 3;
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(d[0], 2);
    assert_memory_equal(d + 4, nguid, 16);
}

/* Linux refuses a namespace whose NGUID or EUI-64 another namespace has,
 * in its subsystem or anywhere: every namespace's ids differ, also between
 * controllers whose serials differ only past the 16th character. */
static void test_namespace_ids_are_unique(void **state)
{
    struct fx *f = *state;
    struct vio_nvme_opts o = {.id = "two", .serial = "controller-number-01", .queues = 1,
                              .nns = 2, .nloops = 1};
    struct vio_nvme *first = f->n;
    uint8_t ng[3][16], eu[3][8];

    o.ns[0] = open_file(f, false);
    o.ns[1] = open_file(f, true);
    o.loops[0] = &f->loop;
    assert_int_equal(vio_nvme_new(&o, &f->mem, on_irq, f, &f->n), 0);
    enable(f);
    struct cmd c = {.opc = 0x06, .cdw10 = 1, .prp1 = ID_GPA};
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(ld32(g(f, ID_GPA) + 516), 2); /* NN */
    c = (struct cmd){.opc = 0x06, .cdw10 = 2, .prp1 = ID_GPA};
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(ld32(g(f, ID_GPA)), 1);
    assert_int_equal(ld32(g(f, ID_GPA) + 4), 2);
    assert_int_equal(ld32(g(f, ID_GPA) + 8), 0);
    ns_ids(f, 1, ng[0], eu[0]);
    ns_ids(f, 2, ng[1], eu[1]);
    assert_int_equal(g(f, ID_GPA)[99] & 1, 0); /* descriptor page, not Identify */
    c = (struct cmd){.opc = 0x06, .nsid = 2, .prp1 = ID_GPA};
    assert_int_equal(admin(f, &c), S_OK);
    assert_int_equal(g(f, ID_GPA)[99] & 1, 1); /* namespace 2 is write protected */
    c.nsid = 3;
    assert_int_equal(admin(f, &c), S_INV_NS);
    vio_nvme_free(f->n);

    o.serial = "controller-number-02";
    o.nns = 1;
    o.ns[0] = open_file(f, false);
    assert_int_equal(vio_nvme_new(&o, &f->mem, on_irq, f, &f->n), 0);
    enable(f);
    ns_ids(f, 1, ng[2], eu[2]);
    vio_nvme_free(f->n);
    f->n = first;
    for (unsigned a = 0; a < 3; a++) {
        assert_int_equal(eu[a][0] & 0x02, 0x02); /* locally administered */
        for (unsigned b = a + 1; b < 3; b++) {
            assert_memory_not_equal(ng[a], ng[b], 16);
            assert_memory_not_equal(eu[a], eu[b], 8);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registers_and_identify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_namespace_ids_are_unique, setup, teardown),
        cmocka_unit_test_setup_teardown(test_features_logs_aer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_create_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_write_prp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_io, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doorbells_and_full_cq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_shutdown_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shadow_doorbells, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_namespace, setup, teardown),
    };

    vio_log_set_level(VIO_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
