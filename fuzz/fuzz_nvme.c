/* libFuzzer target for the emulated NVMe controller (src/emul/nvme.c,
 * nvme_io.c): the input is what a hostile driver controls. Byte 0 says how
 * many 256-byte blocks of guest memory follow (placed at 0x7000, past the
 * queues: PRP lists, DSM ranges, data); the rest is a series of records,
 * each a kind byte then either a 64-byte submission queue entry for the
 * admin queue (odd kind) or I/O queue 1 (even), or (kind >= 0x80) a
 * register/doorbell write of 2 offset and 4 value bytes. Doorbell Buffer
 * Config is pointed at pages the harness keeps queue 1's shadow values in.
 * The controller is enabled with one I/O queue pair on a null namespace
 * first. Every completion must carry a status of a known type and the id
 * of the queue it came from, and no queue may complete more commands than
 * were submitted to it. */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/block/bdev.h"
#include "core/gmem.h"
#include "core/log.h"
#include "core/loop.h"
#include "emul/nvme.h"

#define RAM_SIZE 0x10000u
#define ASQ      0x1000u
#define ACQ      0x2000u
#define SQ1      0x3000u
#define CQ1      0x4000u
#define QENT     16u
#define DBS      0x5000u /* shadow doorbells, kept by the harness for queue 1 */
#define EIS      0x6000u
#define FREE_MEM 0x7000u

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t ram[RAM_SIZE];

struct q {
    uint64_t sq, cq;
    uint16_t tail, head;
    uint8_t phase;
    unsigned submitted, completed;
};

static void irq(void *opaque, uint16_t vector)
{
    (void)opaque;
    assert(vector <= 2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vio_log_set_level(VIO_LOG_ERROR);
    return 0;
}

static void st32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void wr(struct vio_nvme *n, uint32_t off, uint32_t v)
{
    vio_nvme_reg_write(n, off, v, 4);
}

/* Reap every new completion of queue @qi (0 admin, 1 I/O). */
static void reap(struct vio_nvme *n, struct q *q, unsigned qi)
{
    for (;;) {
        uint8_t *e = ram + q->cq + (uint64_t)q->head * 16;
        uint32_t dw3;
        unsigned sct;

        memcpy(&dw3, e + 12, 4);
        if ((dw3 >> 16 & 1) != q->phase)
            return;
        sct = (dw3 >> 25) & 7;
        assert(sct <= 2);
        assert(e[10] == qi && e[11] == 0);
        q->completed++;
        assert(q->completed <= q->submitted);
        if (++q->head == QENT) {
            q->head = 0;
            q->phase ^= 1;
        }
        if (qi)
            memcpy(ram + DBS + 8 * qi + 4, &(uint32_t){q->head}, 4);
        wr(n, 0x1000 + 8 * qi + 4, q->head);
    }
}

static void pump(struct vio_loop *l)
{
    for (int i = 0; i < 64 && vio_loop_run_once(l, 0) > 0; i++)
        ;
}

static void cmd(struct vio_nvme *n, struct vio_loop *l, struct q *q, unsigned qi,
                const uint8_t *sqe)
{
    uint8_t *e = ram + q->sq + (uint64_t)q->tail * 64;

    memcpy(e, sqe, 64);
    q->tail = (uint16_t)((q->tail + 1) % QENT);
    q->submitted++; /* Asynchronous Event Requests may never complete */
    if (qi)
        memcpy(ram + DBS + 8 * qi, &(uint32_t){q->tail}, 4);
    wr(n, 0x1000 + 8 * qi, q->tail);
    pump(l);
    reap(n, q, qi);
}

static uint64_t ld64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
}

/* Admin commands that would pull the harness's own queues from under it
 * (delete queue 1, put a queue or command data on its rings, tie another
 * SQ to CQ 1) are not sent: the checks above rely on those rings. */
static bool harmless(const uint8_t *sqe)
{
    uint8_t opc = sqe[0];
    uint16_t qid = (uint16_t)(sqe[40] | sqe[41] << 8), cqid = (uint16_t)(sqe[46] | sqe[47] << 8);
    uint64_t prp1 = ld64(sqe + 24), prp2 = ld64(sqe + 32);
    uint32_t numdl = (uint32_t)(sqe[42] | sqe[43] << 8), numdu = (uint32_t)(sqe[44] | sqe[45] << 8);

    if ((opc == 0x00 || opc == 0x04) && qid == 1)
        return false;
    if ((opc == 0x01 || opc == 0x05) && prp1 < FREE_MEM)
        return false;
    if (opc == 0x01 && cqid == 1)
        return false;
    if ((opc == 0x06 || opc == 0x02) && (prp1 < FREE_MEM || prp2 < FREE_MEM))
        return false;
    if (opc == 0x02 && (numdl | numdu) >= 2048) /* more than two pages: a PRP list */
        return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vio_bdev_opts bo = {.null = true, .null_size = 1u << 20};
    struct vio_nvme_opts o = {.id = "fz", .queues = 2, .nns = 1, .nloops = 1};
    struct q aq = {.sq = ASQ, .cq = ACQ, .phase = 1}, iq = {.sq = SQ1, .cq = CQ1, .phase = 1};
    struct vio_gmem mem;
    struct vio_loop loop;
    struct vio_nvme *n;
    uint8_t sqe[64];
    size_t memlen;

    if (size < 1)
        return 0;
    memlen = (size_t)data[0] * 256;
    data++;
    size--;
    if (memlen > size)
        memlen = size;
    if (memlen > RAM_SIZE - FREE_MEM)
        memlen = RAM_SIZE - FREE_MEM;
    memset(ram, 0, sizeof(ram));
    memcpy(ram + FREE_MEM, data, memlen);
    data += memlen;
    size -= memlen;
    vio_gmem_init(&mem);
    if (vio_gmem_add_ptr(&mem, ram, 0, RAM_SIZE, 0) < 0 || vio_loop_init(&loop) < 0)
        abort();
    if (vio_bdev_open(&bo, &o.ns[0]) < 0)
        abort();
    o.loops[0] = &loop;
    if (vio_nvme_new(&o, &mem, irq, NULL, &n) < 0)
        abort();
    wr(n, 0x24, (QENT - 1) << 16 | (QENT - 1));
    vio_nvme_reg_write(n, 0x28, ASQ, 8);
    vio_nvme_reg_write(n, 0x30, ACQ, 8);
    wr(n, 0x14, 1 | 6u << 16 | 4u << 20);
    assert(vio_nvme_reg_read(n, 0x1c, 4) == 1);
    /* Create CQ 1 and SQ 1. */
    memset(sqe, 0, sizeof(sqe));
    sqe[0] = 0x05;
    st32(sqe + 24, CQ1);
    st32(sqe + 40, (QENT - 1) << 16 | 1);
    st32(sqe + 44, 1u << 16 | 3);
    cmd(n, &loop, &aq, 0, sqe);
    sqe[0] = 0x01;
    st32(sqe + 24, SQ1);
    st32(sqe + 44, 1u << 16 | 1);
    cmd(n, &loop, &aq, 0, sqe);
    assert(aq.completed == 2);

    while (size >= 1) {
        uint8_t kind = data[0];

        data++;
        size--;
        if (kind & 0x80) {
            /* A register or doorbell write: 2 bytes offset, 4 bytes value. */
            uint32_t off, val;

            if (size < 6)
                break;
            off = (uint32_t)(data[0] | data[1] << 8) & 0x3ffc;
            memcpy(&val, data + 2, 4);
            data += 6;
            size -= 6;
            /* Keep the admin queue's own registers: the harness's view of
             * the queues must stay right for the checks above. */
            if (off == 0x14 || off == 0x24 || (off >= 0x28 && off < 0x38) ||
                (off >= 0x1000 && off < 0x1010))
                continue;
            wr(n, off, val);
            pump(&loop);
            continue;
        }
        if (size < 64)
            break;
        memcpy(sqe, data, 64);
        data += 64;
        size -= 64;
        if (kind & 1) {
            if (!harmless(sqe))
                continue;
            if (sqe[0] == 0x7c) { /* shadow doorbells: where the harness keeps them */
                memset(sqe + 24, 0, 16);
                st32(sqe + 24, DBS);
                st32(sqe + 32, EIS);
            }
            cmd(n, &loop, &aq, 0, sqe);
        } else {
            cmd(n, &loop, &iq, 1, sqe);
        }
    }
    pump(&loop);
    reap(n, &iq, 1);
    vio_nvme_free(n);
    vio_loop_destroy(&loop);
    return 0;
}
