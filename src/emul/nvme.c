/* The NVMe controller (see nvme.h): registers and the enable / reset /
 * shutdown state machine, the admin command set on the vCPU thread that
 * rings the admin doorbell, the life cycle of I/O queues (created and
 * deleted here, run by nvme_io.c on worker loops), asynchronous events,
 * and the PCI function for vio run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "emul/nvme_int.h"

/* Registers (1.4, 3.1). */
#define REG_CAP   0x00
#define REG_VS    0x08
#define REG_INTMS 0x0c
#define REG_INTMC 0x10
#define REG_CC    0x14
#define REG_CSTS  0x1c
#define REG_NSSR  0x20
#define REG_AQA   0x24
#define REG_ASQ   0x28
#define REG_ACQ   0x30
#define REG_DBS   0x1000

#define CC_EN          0x1u
#define CC_CSS(cc)     (((cc) >> 4) & 7)
#define CC_MPS(cc)     (((cc) >> 7) & 0xf)
#define CC_SHN(cc)     (((cc) >> 14) & 3)
#define CC_IOSQES(cc)  (((cc) >> 16) & 0xf)
#define CC_IOCQES(cc)  (((cc) >> 20) & 0xf)
#define CSTS_RDY       0x1u
#define CSTS_CFS       0x2u
#define CSTS_SHST_MASK (3u << 2)
#define CSTS_SHST_DONE (2u << 2)

#define NVME_VS_1_4 0x00010400u
#define CAP_TO      30u /* 15 s, in 500 ms units: resets drain in-flight I/O */

/* Feature identifiers. */
#define FEAT_ARB   0x01
#define FEAT_PM    0x02
#define FEAT_TMPTH 0x04
#define FEAT_ERR   0x05
#define FEAT_VWC   0x06
#define FEAT_NQ    0x07
#define FEAT_COAL  0x08
#define FEAT_IVC   0x09
#define FEAT_WA    0x0a
#define FEAT_AEC   0x0b

/* Asynchronous event: type Error, information, log page (1.4, 5.2). */
#define AEN_ERR_INVALID_DB     0x010000u /* write to an invalid doorbell register */
#define AEN_ERR_INVALID_DB_VAL 0x010100u /* invalid doorbell write value */

#define TMPTH_DEFAULT 0x0157 /* 343 K over-temperature threshold */

#define guest_err(n, ...)                                                                          \
    do {                                                                                           \
        if (vio_ratelimit_ok(&(n)->rl))                                                            \
            vio_warn(__VA_ARGS__);                                                                 \
    } while (0)

static void st16(uint8_t *p, uint16_t v)
{
    v = vio_to_le16(v);
    memcpy(p, &v, 2);
}

static void st32(uint8_t *p, uint32_t v)
{
    v = vio_to_le32(v);
    memcpy(p, &v, 4);
}

static void st64(uint8_t *p, uint64_t v)
{
    v = vio_to_le64(v);
    memcpy(p, &v, 8);
}

/* An ASCII field padded with spaces, as Identify wants them. */
static void put_str(uint8_t *p, size_t len, const char *s)
{
    size_t l = strlen(s);

    memset(p, ' ', len);
    memcpy(p, s, VIO_MIN(l, len));
}

static uint64_t cap_value(const struct vio_nvme *n)
{
    (void)n;
    return (uint64_t)VIO_NVME_MQES | 1ull << 16 /* CQR: contiguous queues */ |
           (uint64_t)CAP_TO << 24 | 1ull << 37 /* CSS: NVM command set */;
}

/* ---- asynchronous events ---- */

/* Lock held. Complete outstanding AERs with queued events while the admin
 * CQ has room. */
static void aen_flush(struct vio_nvme *n)
{
    struct nvme_cq *cq = &n->acq_q;

    if (!n->admin_ok)
        return;
    while (n->naer && n->naen && nvme_cq_room(cq) > 0) {
        uint16_t cid = n->aer_cid[--n->naer];
        uint32_t res = n->aen_queue[0];

        memmove(n->aen_queue, n->aen_queue + 1, --n->naen * sizeof(n->aen_queue[0]));
        nvme_cq_post(cq, res, 0, n->asq_q.head, cid, NVME_SC_SUCCESS);
        /* An error event stays masked until the host reads the error log. */
        if ((res & 7) == 0)
            n->err_masked = true;
    }
    nvme_cq_notify(cq);
}

/* Lock held. Record an error event for a bad doorbell write. */
static void doorbell_error(struct vio_nvme *n, uint32_t aen, uint32_t off, uint32_t val)
{
    nvme_count(&n->st.bad_doorbell, 1);
    guest_err(n, "%s: ignored doorbell write 0x%x at 0x%x (%s)", n->id, val, off,
              aen == AEN_ERR_INVALID_DB ? "no such queue" : "value out of range");
    n->err_count++;
    memset(n->err_entry, 0, sizeof(n->err_entry));
    st64(n->err_entry, n->err_count);
    st16(n->err_entry + 8, 0xffff); /* SQID: not tied to a command */
    st16(n->err_entry + 10, 0xffff);
    if (n->err_masked || n->naen == VIO_ARRAY_SIZE(n->aen_queue))
        return;
    for (unsigned i = 0; i < n->naen; i++) {
        if ((n->aen_queue[i] & 7) == 0)
            return; /* one error event at a time */
    }
    n->aen_queue[n->naen++] = aen;
    aen_flush(n);
}

/* ---- I/O queue life cycle (lock held) ---- */

static void sq_stop_finish_call(struct vio_call *c)
{
    nvme_sq_stop_finish(c->arg);
    vio_call_done(c, 0);
}

static void sq_start_call(struct vio_call *c)
{
    vio_call_done(c, nvme_sq_start(c->arg));
}

static void cq_start_call(struct vio_call *c)
{
    vio_call_done(c, nvme_cq_start(c->arg));
}

static void cq_stop_call(struct vio_call *c)
{
    nvme_cq_stop(c->arg);
    vio_call_done(c, 0);
}

static void sq_free(struct nvme_sq *sq)
{
    if (sq->efd >= 0)
        close(sq->efd);
    free(sq->reqs);
    free(sq);
}

static void cq_free(struct nvme_cq *cq)
{
    if (cq->efd >= 0)
        close(cq->efd);
    free(cq);
}

/* Lock held. Make a doorbell register of I/O queue @qid (@cq: its head
 * doorbell) a KVM ioeventfd on @fd (assign) or trap it again. Only while
 * shadow doorbells are in use: the value written is then not needed, and
 * the write wakes the worker without a trip through this process. A
 * failure leaves the doorbell trapped, which works too. */
static void set_ioeventfd(struct vio_nvme *n, unsigned qid, bool cq, int fd, bool *state,
                          bool assign)
{
    struct kvm_ioeventfd e = {
        .addr = n->bar0 + REG_DBS + 8ull * qid + (cq ? 4 : 0),
        .len = 4,
        .fd = fd,
        .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
    };

    if (*state == assign || (assign && (!n->on_pci || !n->bar0_mapped)))
        return;
    if (ioctl(n->vm->vm_fd, KVM_IOEVENTFD, &e) < 0 && assign) {
        vio_warn("%s: ioeventfd for the doorbell at 0x%llx: %s (it stays trapped)", n->id,
                 (unsigned long long)e.addr, strerror(errno));
        return;
    }
    *state = assign;
}

static void sq_shadow_call(struct vio_call *c)
{
    struct nvme_sq *sq = c->arg;

    nvme_sq_set_shadow(sq, sq->n->dbs + 8 * sq->qid, sq->n->eis + 8 * sq->qid);
    vio_call_done(c, 0);
}

static void cq_shadow_call(struct vio_call *c)
{
    struct nvme_cq *cq = c->arg;

    nvme_cq_set_shadow(cq, cq->n->dbs + 8 * cq->qid + 4, cq->n->eis + 8 * cq->qid + 4);
    vio_call_done(c, 0);
}

/* Lock held. Switch an I/O queue to the shadow doorbells in n->dbs/eis. */
static void sq_shadow_on(struct vio_nvme *n, struct nvme_sq *sq)
{
    struct vio_call c = {.fn = sq_shadow_call, .arg = sq};

    vio_loop_call(sq->cq->loop, &c);
    set_ioeventfd(n, sq->qid, false, sq->efd, &sq->ioeventfd, true);
}

static void cq_shadow_on(struct vio_nvme *n, struct nvme_cq *cq)
{
    struct vio_call c = {.fn = cq_shadow_call, .arg = cq};

    vio_loop_call(cq->loop, &c);
    set_ioeventfd(n, cq->qid, true, cq->efd, &cq->ioeventfd, true);
}

/* Take I/O SQ @qid out of the table, let its commands finish, free it. */
static void sq_delete(struct vio_nvme *n, uint16_t qid)
{
    struct nvme_sq *sq = n->sq[qid];
    struct vio_call c = {.arg = sq};

    pthread_rwlock_wrlock(&n->qlock);
    n->sq[qid] = NULL;
    pthread_rwlock_unlock(&n->qlock);
    set_ioeventfd(n, qid, false, sq->efd, &sq->ioeventfd, false);
    c.fn = nvme_sq_stop_begin;
    vio_loop_call(sq->cq->loop, &c);
    c.fn = sq_stop_finish_call;
    vio_loop_call(sq->cq->loop, &c);
    sq->cq->nsq--;
    sq_free(sq);
}

static void cq_delete(struct vio_nvme *n, uint16_t qid)
{
    struct nvme_cq *cq = n->cq[qid];
    struct vio_call c = {.fn = cq_stop_call, .arg = cq};

    pthread_rwlock_wrlock(&n->qlock);
    n->cq[qid] = NULL;
    pthread_rwlock_unlock(&n->qlock);
    set_ioeventfd(n, qid, true, cq->efd, &cq->ioeventfd, false);
    vio_loop_call(cq->loop, &c);
    cq_free(cq);
}

static void delete_io_queues(struct vio_nvme *n)
{
    for (unsigned q = 1; q <= n->max_ioq; q++) {
        if (n->sq[q])
            sq_delete(n, (uint16_t)q);
    }
    for (unsigned q = 1; q <= n->max_ioq; q++) {
        if (n->cq[q])
            cq_delete(n, (uint16_t)q);
    }
}

static void features_reset(struct vio_nvme *n)
{
    n->feat_arb = 0;
    n->feat_pm = 0;
    n->feat_tmpth = TMPTH_DEFAULT;
    n->feat_err = 0;
    n->feat_coal = 0;
    n->feat_wa = 0;
    n->feat_aec = 0;
    for (unsigned i = 0; i <= VIO_NVME_MAX_IOQ; i++)
        n->feat_ivc[i] = i;
    atomic_store(&n->vwc, true);
    n->nq_set = false;
    n->io_created = false;
}

/* Lock held. Back to the state after a controller reset (CC.EN = 0):
 * every I/O queue deleted (their commands finish first), the admin queue
 * forgotten, outstanding AERs dropped. */
static void ctrl_reset(struct vio_nvme *n)
{
    delete_io_queues(n);
    n->dbs = n->eis = NULL;
    n->admin_ok = false;
    n->naer = n->naen = 0;
    n->err_masked = false;
    n->asq_tail = 0;
    memset(&n->asq_q, 0, sizeof(n->asq_q));
    memset(&n->acq_q, 0, sizeof(n->acq_q));
    features_reset(n);
    n->csts = 0;
}

/* Lock held. CC.EN 0 -> 1: check and map the admin queue pair. */
static void ctrl_enable(struct vio_nvme *n)
{
    uint32_t sqs = (n->aqa & 0xfff) + 1, cqs = ((n->aqa >> 16) & 0xfff) + 1;
    const char *why = NULL;
    uint8_t *sq = NULL, *cq = NULL;

    if (CC_MPS(n->cc) != 0)
        why = "memory page size other than 4 KiB (CC.MPS)";
    else if (CC_CSS(n->cc) != 0)
        why = "command set other than NVM (CC.CSS)";
    else if (sqs < 2 || cqs < 2)
        why = "admin queue of one entry (AQA)";
    else if ((n->asq | n->acq) & (NVME_PAGE - 1))
        why = "admin queue not page aligned (ASQ/ACQ)";
    else if (!(sq = vio_gmem_map(n->mem, n->asq, (uint64_t)sqs * NVME_SQES)) ||
             !(cq = vio_gmem_map(n->mem, n->acq, (uint64_t)cqs * NVME_CQES)))
        why = "admin queue outside guest RAM (ASQ/ACQ)";
    if (why) {
        /* Nothing can report it in a queue: controller fatal status. */
        guest_err(n, "%s: cannot enable: %s", n->id, why);
        n->csts |= CSTS_CFS;
        return;
    }
    n->asq_q =
        (struct nvme_sq){.n = n, .qid = 0, .size = (uint16_t)sqs, .ring = sq, .cq = &n->acq_q};
    n->acq_q = (struct nvme_cq){.n = n,
                                .qid = 0,
                                .size = (uint16_t)cqs,
                                .ring = cq,
                                .phase = 1,
                                .ien = true,
                                .vector = 0,
                                .efd = -1};
    n->asq_tail = 0;
    n->admin_ok = true;
    n->csts = CSTS_RDY;
}

/* ---- admin commands (lock held) ---- */

/* Fill the command's data buffer of @len bytes with the @buflen bytes of
 * @buf, then zeroes. */
static unsigned to_guest(struct vio_nvme *n, const struct nvme_cmd *c, const void *buf,
                         size_t buflen, uint64_t len)
{
    struct iovec iov[NVME_MAX_IOV];
    uint16_t niov;
    unsigned st = nvme_map_prp(n->mem, c->prp1, c->prp2, len, iov, &niov);
    size_t off = 0;

    if (st)
        return st;
    for (unsigned i = 0; i < niov; i++) {
        size_t l = iov[i].iov_len, k = off < buflen ? VIO_MIN(l, buflen - off) : 0;

        memcpy(iov[i].iov_base, (const uint8_t *)buf + off, k);
        memset((uint8_t *)iov[i].iov_base + k, 0, l - k);
        off += l;
    }
    return NVME_SC_SUCCESS;
}

static void id_ctrl(struct vio_nvme *n, uint8_t *d)
{
    char nqn[128];

    st16(d + 0, 0x1af4); /* VID */
    st16(d + 2, 0x1af4); /* SSVID */
    put_str(d + 4, 20, n->serial);
    put_str(d + 24, 40, "vio NVMe controller");
    put_str(d + 64, 8, VIO_VERSION);
    d[72] = 6; /* RAB: 64 commands */
    d[77] = VIO_NVME_MDTS;
    st16(d + 78, 0); /* CNTLID */
    st32(d + 80, NVME_VS_1_4);
    d[111] = 1;             /* CNTRLTYPE: I/O controller */
    st16(d + 256, 1u << 8); /* OACS: Doorbell Buffer Config */
    d[258] = 3;             /* ACL: 4 Aborts */
    d[259] = NVME_AERL;
    d[260] = 0x03;                    /* FRMW: one slot, read-only */
    d[261] = 0;                       /* LPA */
    d[262] = 0;                       /* ELPE: one error log entry */
    st16(d + 266, TMPTH_DEFAULT);     /* WCTEMP */
    st16(d + 268, 0x0173);            /* CCTEMP */
    d[512] = 0x66;                    /* SQES: 64 bytes */
    d[513] = 0x44;                    /* CQES: 16 bytes */
    st32(d + 516, n->nns);            /* NN */
    st16(d + 520, 1u << 2 | 1u << 3); /* ONCS: Dataset Management, Write Zeroes */
    d[524] = 0x01 | 2u << 1;          /* VWC present; Flush of all namespaces not supported */
    snprintf(nqn, sizeof(nqn), "nqn.2026-12.io.vio:nvme:%s", n->serial);
    memcpy(d + 768, nqn, strlen(nqn));
    st16(d + 2048, 2500); /* PSD0: 25 W */
}

/* FNV-1a over @serial, seeded by @k (namespace identifiers). */
static uint64_t serial_hash(const char *serial, unsigned k)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (0x9e3779b97f4a7c15ull * (k + 1));

    for (const char *p = serial; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    return h;
}

static void id_ns(struct vio_nvme *n, unsigned nsi, uint8_t *d)
{
    const struct nvme_ns *ns = &n->ns[nsi];

    st64(d + 0, ns->nlba);  /* NSZE */
    st64(d + 8, ns->nlba);  /* NCAP */
    st64(d + 16, ns->nlba); /* NUSE */
    d[25] = 0;              /* NLBAF: one format */
    d[26] = 0;              /* FLBAS: format 0 */
    /* DLFEAT: deallocated blocks read as zeroes, Write Zeroes may
     * deallocate. */
    d[33] = ns->bdev->can_discard ? 0x09 : 0;
    d[99] = ns->bdev->readonly ? 1 : 0; /* NSATTR: write protected */
    /* NGUID and EUI-64: hashes of the whole serial, the last byte XOR the
     * namespace id, so they differ between namespaces and (but for a hash
     * collision) between controllers: Linux refuses a namespace whose ids
     * another one already has. */
    for (unsigned k = 0; k < 3; k++) {
        uint64_t h = serial_hash(n->serial, k);

        for (unsigned i = 0; i < 8; i++)
            d[104 + 8 * k + i] = (uint8_t)(h >> (8 * i));
    }
    d[104 + 15] ^= (uint8_t)(nsi + 1);
    d[120] = 0x02; /* EUI-64: locally administered */
    d[120 + 7] ^= (uint8_t)(nsi + 1);
    d[128 + 2] = (uint8_t)ns->lbads; /* LBAF0: LBADS, no metadata */
}

static unsigned adm_identify(struct vio_nvme *n, const struct nvme_cmd *c)
{
    uint8_t d[4096];
    unsigned cns = c->cdw10 & 0xff;

    memset(d, 0, sizeof(d));
    switch (cns) {
    case 0x00: /* namespace */
        if (c->nsid == 0 || c->nsid > n->nns)
            return NVME_SC_INVALID_NS;
        id_ns(n, c->nsid - 1, d);
        break;
    case 0x01:
        id_ctrl(n, d);
        break;
    case 0x02: /* active namespace IDs above NSID */
        if (c->nsid >= 0xfffffffeu)
            return NVME_SC_INVALID_NS;
        for (unsigned i = c->nsid, k = 0; i < n->nns; i++, k++)
            st32(d + 4 * k, i + 1);
        break;
    case 0x03: { /* namespace identification descriptors: the NGUID */
        uint8_t nsd[4096] = {0};

        if (c->nsid == 0 || c->nsid > n->nns)
            return NVME_SC_INVALID_NS;
        id_ns(n, c->nsid - 1, nsd);
        d[0] = 2;  /* NIDT: NGUID */
        d[1] = 16; /* NIDL */
        memcpy(d + 4, nsd + 104, 16);
        break;
    }
    default:
        return NVME_SC_INVALID_FIELD;
    }
    return to_guest(n, c, d, sizeof(d), sizeof(d));
}

static unsigned adm_create_cq(struct vio_nvme *n, const struct nvme_cmd *c)
{
    uint16_t qid = (uint16_t)c->cdw10, size = (uint16_t)((c->cdw10 >> 16) + 1);
    bool pc = c->cdw11 & 1, ien = c->cdw11 & 2;
    uint16_t iv = (uint16_t)(c->cdw11 >> 16);
    struct nvme_cq *cq;
    struct vio_call call = {.fn = cq_start_call};
    uint8_t *ring;

    if (qid == 0 || qid > n->max_ioq || n->cq[qid])
        return NVME_SC_QID_INVALID;
    if ((c->cdw10 >> 16) == 0 || (c->cdw10 >> 16) > VIO_NVME_MQES)
        return NVME_SC_QSIZE_INVALID;
    if (!pc || CC_IOCQES(n->cc) != 4 || (c->prp1 & (NVME_PAGE - 1)))
        return NVME_SC_INVALID_FIELD;
    if (ien && iv > n->max_ioq)
        return NVME_SC_INVALID_VECTOR;
    ring = vio_gmem_map(n->mem, c->prp1, (uint64_t)size * NVME_CQES);
    if (!ring)
        return NVME_SC_INVALID_FIELD;
    cq = calloc(1, sizeof(*cq));
    if (!cq)
        return NVME_SC_INTERNAL;
    *cq = (struct nvme_cq){.n = n,
                           .qid = qid,
                           .size = size,
                           .vector = iv,
                           .ien = ien,
                           .ring = ring,
                           .phase = 1,
                           .loop = n->loops[(qid - 1u) % n->nloops]};
    cq->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    call.arg = cq;
    if (cq->efd < 0 || vio_loop_call(cq->loop, &call) < 0) {
        cq_free(cq);
        return NVME_SC_INTERNAL;
    }
    if (n->dbs)
        cq_shadow_on(n, cq);
    pthread_rwlock_wrlock(&n->qlock);
    n->cq[qid] = cq;
    pthread_rwlock_unlock(&n->qlock);
    n->io_created = true;
    return NVME_SC_SUCCESS;
}

static unsigned adm_create_sq(struct vio_nvme *n, const struct nvme_cmd *c)
{
    uint16_t qid = (uint16_t)c->cdw10, size = (uint16_t)((c->cdw10 >> 16) + 1);
    uint16_t cqid = (uint16_t)(c->cdw11 >> 16);
    bool pc = c->cdw11 & 1;
    struct vio_call call = {.fn = sq_start_call};
    struct nvme_sq *sq;
    uint8_t *ring;

    if (qid == 0 || qid > n->max_ioq || n->sq[qid])
        return NVME_SC_QID_INVALID;
    if ((c->cdw10 >> 16) == 0 || (c->cdw10 >> 16) > VIO_NVME_MQES)
        return NVME_SC_QSIZE_INVALID;
    if (cqid == 0 || cqid > n->max_ioq || !n->cq[cqid])
        return NVME_SC_CQ_INVALID;
    if (!pc || CC_IOSQES(n->cc) != 6 || (c->prp1 & (NVME_PAGE - 1)))
        return NVME_SC_INVALID_FIELD;
    ring = vio_gmem_map(n->mem, c->prp1, (uint64_t)size * NVME_SQES);
    if (!ring)
        return NVME_SC_INVALID_FIELD;
    sq = calloc(1, sizeof(*sq));
    if (!sq)
        return NVME_SC_INTERNAL;
    *sq = (struct nvme_sq){.n = n,
                           .qid = qid,
                           .size = size,
                           .ring = ring,
                           .cq = n->cq[cqid],
                           .rl = VIO_RATELIMIT_INIT};
    sq->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    sq->reqs = calloc(size, sizeof(*sq->reqs));
    call.arg = sq;
    if (sq->efd < 0 || !sq->reqs || vio_loop_call(sq->cq->loop, &call) < 0) {
        sq_free(sq);
        return NVME_SC_INTERNAL;
    }
    for (unsigned i = 0; i < size; i++)
        sq->reqs[i].sq = sq;
    sq->cq->nsq++;
    if (n->dbs)
        sq_shadow_on(n, sq);
    pthread_rwlock_wrlock(&n->qlock);
    n->sq[qid] = sq;
    pthread_rwlock_unlock(&n->qlock);
    n->io_created = true;
    return NVME_SC_SUCCESS;
}

static unsigned adm_delete_sq(struct vio_nvme *n, const struct nvme_cmd *c)
{
    uint16_t qid = (uint16_t)c->cdw10;

    if (qid == 0 || qid > n->max_ioq || !n->sq[qid])
        return NVME_SC_QID_INVALID;
    sq_delete(n, qid);
    return NVME_SC_SUCCESS;
}

static unsigned adm_delete_cq(struct vio_nvme *n, const struct nvme_cmd *c)
{
    uint16_t qid = (uint16_t)c->cdw10;

    if (qid == 0 || qid > n->max_ioq || !n->cq[qid])
        return NVME_SC_QID_INVALID;
    if (n->cq[qid]->nsq)
        return NVME_SC_INVALID_QUEUE_DELETION;
    cq_delete(n, qid);
    return NVME_SC_SUCCESS;
}

static unsigned adm_get_log(struct vio_nvme *n, const struct nvme_cmd *c)
{
    uint8_t d[512];
    unsigned lid = c->cdw10 & 0xff;
    bool rae = c->cdw10 & (1u << 15);
    uint64_t len = ((uint64_t)(c->cdw10 >> 16 | (c->cdw11 & 0xffff) << 16) + 1) * 4;
    uint64_t off = (uint64_t)c->cdw13 << 32 | c->cdw12, plen;

    memset(d, 0, sizeof(d));
    switch (lid) {
    case 0x01: /* error information: one entry */
        plen = 64;
        memcpy(d, n->err_entry, 64);
        if (!rae)
            n->err_masked = false;
        break;
    case 0x02: { /* SMART / health, controller-wide */
        uint64_t rd = vio_counter_get(&n->st.read_bytes), wr = vio_counter_get(&n->st.write_bytes);

        plen = 512;
        st16(d + 1, 0x0140); /* composite temperature: 320 K */
        d[3] = 100;          /* available spare */
        d[4] = 10;           /* threshold */
        /* Data units: thousands of 512-byte units, rounded up. */
        st64(d + 32, (rd / 512 + 999) / 1000);
        st64(d + 48, (wr / 512 + 999) / 1000);
        st64(d + 64, vio_counter_get(&n->st.reads));
        st64(d + 80, vio_counter_get(&n->st.writes));
        st64(d + 112, 1);            /* power cycles */
        st64(d + 176, n->err_count); /* error log entries */
        break;
    }
    case 0x03: /* firmware slots: slot 1 active */
        plen = 512;
        d[0] = 1;
        put_str(d + 8, 8, VIO_VERSION);
        break;
    default:
        return NVME_SC_INVALID_LOG_PAGE;
    }
    if (off & 3 || off >= plen || len > NVME_MAX_XFER)
        return NVME_SC_INVALID_FIELD;
    return to_guest(n, c, d + off, plen - off, len);
}

static unsigned adm_features(struct vio_nvme *n, const struct nvme_cmd *c, bool set, uint32_t *res)
{
    unsigned fid = c->cdw10 & 0xff, sel = (c->cdw10 >> 8) & 7;
    uint32_t v = c->cdw11, *slot = NULL;

    if (set && (c->cdw10 & (1u << 31)))
        return NVME_SC_FEAT_NOT_SAVEABLE;
    if (!set && sel > 3)
        return NVME_SC_INVALID_FIELD;
    if (!set && sel == 3) {
        /* Supported capabilities: everything changeable, nothing saveable. */
        switch (fid) {
        case FEAT_ARB:
        case FEAT_PM:
        case FEAT_TMPTH:
        case FEAT_ERR:
        case FEAT_VWC:
        case FEAT_NQ:
        case FEAT_COAL:
        case FEAT_IVC:
        case FEAT_WA:
        case FEAT_AEC:
            *res = 1u << 2;
            return NVME_SC_SUCCESS;
        default:
            return NVME_SC_INVALID_FIELD;
        }
    }
    switch (fid) {
    case FEAT_ARB:
        slot = &n->feat_arb;
        break;
    case FEAT_PM:
        if (set && (v & 0x1f) != 0)
            return NVME_SC_INVALID_FIELD; /* power state 0 only */
        slot = &n->feat_pm;
        break;
    case FEAT_TMPTH:
        /* One threshold (composite, over-temperature) is kept; the others
         * report the default. */
        if (((v >> 16) & 0xf) != 0 || ((v >> 20) & 3) != 0) {
            if (set)
                return NVME_SC_INVALID_FIELD;
            *res = TMPTH_DEFAULT;
            return NVME_SC_SUCCESS;
        }
        slot = &n->feat_tmpth;
        v &= 0xffff;
        break;
    case FEAT_ERR:
        slot = &n->feat_err;
        break;
    case FEAT_VWC:
        if (set)
            atomic_store(&n->vwc, v & 1);
        *res = sel == 1 ? 1 : atomic_load(&n->vwc);
        return NVME_SC_SUCCESS;
    case FEAT_NQ: {
        uint32_t alloc = (n->max_ioq - 1) | (n->max_ioq - 1) << 16;

        if (set) {
            if ((v & 0xffff) == 0xffff || (v >> 16) == 0xffff)
                return NVME_SC_INVALID_FIELD;
            if (n->io_created)
                return NVME_SC_CMD_SEQ_ERROR;
            n->nq_set = true;
        }
        *res = alloc;
        return NVME_SC_SUCCESS;
    }
    case FEAT_COAL:
        slot = &n->feat_coal;
        break;
    case FEAT_IVC: {
        uint16_t iv = (uint16_t)v;

        if (iv > n->max_ioq)
            return NVME_SC_INVALID_FIELD;
        slot = &n->feat_ivc[iv];
        v &= 0x1ffff;
        break;
    }
    case FEAT_WA:
        slot = &n->feat_wa;
        break;
    case FEAT_AEC:
        slot = &n->feat_aec;
        break;
    default:
        return NVME_SC_INVALID_FIELD;
    }
    if (set)
        *slot = v;
    if (sel == 1) /* default */
        *res = fid == FEAT_TMPTH ? TMPTH_DEFAULT : fid == FEAT_IVC ? (v & 0xffff) : 0;
    else
        *res = *slot;
    return NVME_SC_SUCCESS;
}

/* Doorbell Buffer Config (1.4, 5.7): PRP1 the shadow doorbells, PRP2 the
 * event indexes, one page each, laid out like the doorbell registers. */
static unsigned adm_dbbuf(struct vio_nvme *n, const struct nvme_cmd *c)
{
    uint8_t *dbs, *eis;

    if ((c->prp1 | c->prp2) & (NVME_PAGE - 1))
        return NVME_SC_INVALID_FIELD;
    dbs = vio_gmem_map(n->mem, c->prp1, NVME_PAGE);
    eis = vio_gmem_map(n->mem, c->prp2, NVME_PAGE);
    if (!dbs || !eis || dbs == eis)
        return NVME_SC_INVALID_FIELD;
    n->dbs = dbs;
    n->eis = eis;
    for (unsigned q = 1; q <= n->max_ioq; q++) {
        if (n->cq[q])
            cq_shadow_on(n, n->cq[q]);
    }
    for (unsigned q = 1; q <= n->max_ioq; q++) {
        if (n->sq[q])
            sq_shadow_on(n, n->sq[q]);
    }
    return NVME_SC_SUCCESS;
}

/* Execute admin command @c. Returns its status; *post false for a
 * command that completes later (AER). */
static unsigned admin_exec(struct vio_nvme *n, const struct nvme_cmd *c, uint32_t *res, bool *post)
{
    *res = 0;
    *post = true;
    nvme_count(&n->st.admin_cmds, 1);
    if (c->fuse || c->psdt)
        return NVME_SC_INVALID_FIELD;
    switch (c->opc) {
    case NVME_ADM_DELETE_SQ:
        return adm_delete_sq(n, c);
    case NVME_ADM_CREATE_SQ:
        return adm_create_sq(n, c);
    case NVME_ADM_GET_LOG:
        return adm_get_log(n, c);
    case NVME_ADM_DELETE_CQ:
        return adm_delete_cq(n, c);
    case NVME_ADM_CREATE_CQ:
        return adm_create_cq(n, c);
    case NVME_ADM_IDENTIFY:
        return adm_identify(n, c);
    case NVME_ADM_ABORT:
        *res = 1; /* not aborted: commands here finish on their own */
        return NVME_SC_SUCCESS;
    case NVME_ADM_SET_FEATURES:
        return adm_features(n, c, true, res);
    case NVME_ADM_GET_FEATURES:
        return adm_features(n, c, false, res);
    case NVME_ADM_AER:
        if (n->naer > NVME_AERL)
            return NVME_SC_AER_LIMIT;
        n->aer_cid[n->naer++] = c->cid;
        *post = false;
        return NVME_SC_SUCCESS;
    case NVME_ADM_DBBUF:
        return adm_dbbuf(n, c);
    case NVME_ADM_KEEP_ALIVE:
        return NVME_SC_SUCCESS;
    default:
        return NVME_SC_INVALID_OPCODE;
    }
}

/* Lock held. Run admin commands up to the tail while the CQ has room. */
static void admin_run(struct vio_nvme *n)
{
    struct nvme_sq *sq = &n->asq_q;
    struct nvme_cq *cq = &n->acq_q;

    while (n->admin_ok && sq->head != n->asq_tail && nvme_cq_room(cq) > 0) {
        struct nvme_cmd c;
        uint32_t res;
        unsigned st;
        bool post;

        nvme_cmd_decode(sq->ring + (size_t)sq->head * NVME_SQES, &c);
        if (++sq->head == sq->size)
            sq->head = 0;
        st = admin_exec(n, &c, &res, &post);
        if (st)
            nvme_count(&n->st.errors, 1);
        if (post)
            nvme_cq_post(cq, res, 0, sq->head, c.cid, st);
    }
    aen_flush(n);
    nvme_cq_notify(cq);
}

/* ---- registers ---- */

static void write_cc(struct vio_nvme *n, uint32_t val)
{
    uint32_t old = n->cc;

    n->cc = val;
    if ((old & CC_EN) && !(val & CC_EN)) {
        ctrl_reset(n);
        return;
    }
    if (!(old & CC_EN) && (val & CC_EN) && !(n->csts & CSTS_CFS))
        ctrl_enable(n);
    if (CC_SHN(val) && !CC_SHN(old)) {
        /* Shutdown: let every command in flight finish; the queues are
         * gone afterwards (a host must reset before using us again). */
        delete_io_queues(n);
        n->csts = (n->csts & ~CSTS_SHST_MASK) | CSTS_SHST_DONE;
    } else if (!CC_SHN(val)) {
        n->csts &= ~CSTS_SHST_MASK;
    }
}

/* A doorbell write (@off from 0x1000). */
static void doorbell(struct vio_nvme *n, uint32_t off, uint32_t val)
{
    unsigned qid = off / 8;
    bool cq_db = off & 4;

    if (qid == 0) {
        pthread_mutex_lock(&n->lock);
        if (!n->admin_ok) {
            doorbell_error(n, AEN_ERR_INVALID_DB, REG_DBS + off, val);
        } else if (val >= (cq_db ? n->acq_q.size : n->asq_q.size)) {
            doorbell_error(n, AEN_ERR_INVALID_DB_VAL, REG_DBS + off, val);
        } else if (cq_db) {
            atomic_store(&n->acq_q.head, (uint16_t)val);
            admin_run(n); /* room again for stalled commands and events */
        } else {
            n->asq_tail = (uint16_t)val;
            admin_run(n);
        }
        pthread_mutex_unlock(&n->lock);
        return;
    }
    pthread_rwlock_rdlock(&n->qlock);
    if (qid <= n->max_ioq && cq_db && n->cq[qid] && val < n->cq[qid]->size) {
        struct nvme_cq *cq = n->cq[qid];

        /* seq_cst: against the worker's store of stalled, then load of
         * the head (cq_has_room). */
        atomic_store(&cq->head, (uint16_t)val);
        if (atomic_load(&cq->stalled))
            vio_eventfd_signal(cq->efd);
        pthread_rwlock_unlock(&n->qlock);
        return;
    }
    if (qid <= n->max_ioq && !cq_db && n->sq[qid] && val < n->sq[qid]->size) {
        struct nvme_sq *sq = n->sq[qid];

        /* Pairs with the worker's acquire load in run_sq. */
        atomic_store_explicit(&sq->tail, (uint16_t)val, memory_order_release);
        vio_eventfd_signal(sq->efd);
        pthread_rwlock_unlock(&n->qlock);
        return;
    }
    {
        bool exists = qid <= n->max_ioq && (cq_db ? n->cq[qid] != NULL : n->sq[qid] != NULL);

        pthread_rwlock_unlock(&n->qlock);
        pthread_mutex_lock(&n->lock);
        doorbell_error(n, exists ? AEN_ERR_INVALID_DB_VAL : AEN_ERR_INVALID_DB, REG_DBS + off, val);
        pthread_mutex_unlock(&n->lock);
    }
}

uint64_t vio_nvme_reg_read(struct vio_nvme *n, uint32_t off, unsigned len)
{
    uint64_t v = 0;

    if ((len != 4 && len != 8) || (off & (len - 1)) || off >= REG_DBS)
        return 0; /* doorbells are write-only */
    pthread_mutex_lock(&n->lock);
    switch (off & ~7u) {
    case REG_CAP:
        v = cap_value(n);
        break;
    case REG_VS: /* and INTMS */
        v = NVME_VS_1_4 | (uint64_t)n->intms << 32;
        break;
    case REG_INTMC: /* and CC */
        v = n->intms | (uint64_t)n->cc << 32;
        break;
    case 0x18: /* reserved, CSTS */
        v = (uint64_t)n->csts << 32;
        break;
    case REG_NSSR: /* NSSR reads 0, AQA */
        v = (uint64_t)n->aqa << 32;
        break;
    case REG_ASQ:
        v = n->asq;
        break;
    case REG_ACQ:
        v = n->acq;
        break;
    default:
        v = 0;
        break;
    }
    pthread_mutex_unlock(&n->lock);
    if (len == 4)
        v = (off & 4) ? v >> 32 : (uint32_t)v;
    return v;
}

/* Lock held. A 32-bit register write. */
static void reg_write32(struct vio_nvme *n, uint32_t off, uint32_t val)
{
    bool en = n->cc & CC_EN;

    switch (off) {
    case REG_INTMS:
        n->intms |= val;
        break;
    case REG_INTMC:
        n->intms &= ~val;
        break;
    case REG_CC:
        write_cc(n, val);
        break;
    case REG_AQA:
        if (!en)
            n->aqa = val & 0x0fff0fff;
        break;
    case REG_ASQ:
    case REG_ASQ + 4:
    case REG_ACQ:
    case REG_ACQ + 4: {
        uint64_t *r = off < REG_ACQ ? &n->asq : &n->acq;

        if (en)
            break; /* fixed while enabled */
        if (off & 4)
            *r = (*r & 0xffffffffull) | (uint64_t)val << 32;
        else
            *r = (*r & ~0xffffffffull) | (val & ~0xfffu);
        break;
    }
    default:
        break; /* read-only, reserved; NSSR unsupported (CAP.NSSRS = 0) */
    }
}

void vio_nvme_reg_write(struct vio_nvme *n, uint32_t off, uint64_t val, unsigned len)
{
    if ((len != 4 && len != 8) || (off & (len - 1)))
        return;
    if (off >= REG_DBS) {
        if (len == 4) /* doorbells are 32-bit registers */
            doorbell(n, off - REG_DBS, (uint32_t)val);
        return;
    }
    pthread_mutex_lock(&n->lock);
    reg_write32(n, off, (uint32_t)val);
    if (len == 8)
        reg_write32(n, off + 4, (uint32_t)(val >> 32));
    pthread_mutex_unlock(&n->lock);
}

/* ---- the model ---- */

int vio_nvme_new(const struct vio_nvme_opts *o, const struct vio_gmem *mem, vio_nvme_irq_fn irq,
                 void *irq_opaque, struct vio_nvme **out)
{
    const char *serial = o->serial ? o->serial : o->id;
    struct vio_nvme *n;
    int ret = -EINVAL;

    if (o->queues == 0 || o->queues > VIO_NVME_MAX_IOQ) {
        vio_err("%s: queues must be 1..%d, got %u", o->id, VIO_NVME_MAX_IOQ, o->queues);
        goto fail_ns;
    }
    if (o->nns == 0 || o->nns > VIO_NVME_MAX_NS || o->nloops == 0 || o->nloops > VIO_NVME_MAX_IOQ) {
        vio_err("%s: 1..%d namespaces and worker loops needed", o->id, VIO_NVME_MAX_NS);
        goto fail_ns;
    }
    if (strlen(serial) > VIO_NVME_SERIAL_LEN || strspn(serial, "0123456789abcdefghijklmnopqrst"
                                                               "uvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                               "-_.") != strlen(serial)) {
        vio_err("%s: serial '%s': up to %d letters, digits, '-', '_' or '.'", o->id, serial,
                VIO_NVME_SERIAL_LEN);
        goto fail_ns;
    }
    for (unsigned i = 0; i < o->nns; i++) {
        uint32_t bs = o->ns[i]->block_size;

        if (bs < 512 || bs > 65536 || !vio_is_pow2(bs) || o->ns[i]->size < bs) {
            vio_err("%s: namespace %u: block size %u must be a power of two in 512..65536", o->id,
                    i + 1, bs);
            goto fail_ns;
        }
    }
    n = calloc(1, sizeof(*n));
    if (!n) {
        ret = -ENOMEM;
        goto fail_ns;
    }
    snprintf(n->id, sizeof(n->id), "%s", o->id);
    snprintf(n->serial, sizeof(n->serial), "%s", serial);
    n->mem = mem;
    n->irq = irq;
    n->irq_opaque = irq_opaque;
    n->max_ioq = o->queues;
    n->nns = o->nns;
    for (unsigned i = 0; i < o->nns; i++) {
        struct vio_bdev *b = o->ns[i];

        n->ns[i].bdev = b;
        n->ns[i].lbads = (unsigned)__builtin_ctz(b->block_size);
        n->ns[i].nlba = b->size >> n->ns[i].lbads;
    }
    n->nloops = o->nloops;
    memcpy(n->loops, o->loops, o->nloops * sizeof(o->loops[0]));
    n->rl = (struct vio_ratelimit)VIO_RATELIMIT_INIT;
    pthread_mutex_init(&n->lock, NULL);
    pthread_rwlock_init(&n->qlock, NULL);
    features_reset(n);
    *out = n;
    return 0;

fail_ns:
    for (unsigned i = 0; i < o->nns && i < VIO_NVME_MAX_NS; i++)
        if (o->ns[i])
            o->ns[i]->ops->close(o->ns[i]);
    return ret;
}

void vio_nvme_free(struct vio_nvme *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->lock);
    ctrl_reset(n);
    pthread_mutex_unlock(&n->lock);
    for (unsigned i = 0; i < n->nns; i++)
        n->ns[i].bdev->ops->close(n->ns[i].bdev);
    pthread_rwlock_destroy(&n->qlock);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

void vio_nvme_get_stats(struct vio_nvme *n, struct vio_nvme_stats *s)
{
    s->admin_cmds = vio_counter_get(&n->st.admin_cmds);
    s->io_cmds = vio_counter_get(&n->st.io_cmds);
    s->read_bytes = vio_counter_get(&n->st.read_bytes);
    s->write_bytes = vio_counter_get(&n->st.write_bytes);
    s->errors = vio_counter_get(&n->st.errors);
    s->bad_doorbell = vio_counter_get(&n->st.bad_doorbell);
}

const char *vio_nvme_id(const struct vio_nvme *n)
{
    return n->id;
}

json_t *vio_nvme_info(struct vio_nvme *n)
{
    struct vio_nvme_stats s;
    json_t *ns = json_array();
    unsigned nsq = 0, nioev = 0;
    bool shadow;

    vio_nvme_get_stats(n, &s);
    for (unsigned i = 0; i < n->nns; i++)
        json_array_append_new(ns, n->ns[i].bdev->ops->info(n->ns[i].bdev));
    pthread_mutex_lock(&n->lock);
    for (unsigned q = 1; q <= n->max_ioq; q++) {
        nsq += n->sq[q] != NULL;
        nioev += (n->sq[q] && n->sq[q]->ioeventfd) + (n->cq[q] && n->cq[q]->ioeventfd);
    }
    shadow = n->dbs != NULL;
    pthread_mutex_unlock(&n->lock);
    return json_pack("{s:s, s:s, s:i, s:s, s:i, s:i, s:b, s:i, s:I, s:I, s:I, s:I, s:I, s:I, "
                     "s:o}",
                     "id", n->id, "type", "nvme", "pci_slot", n->on_pci ? (int)n->pdev.slot : -1,
                     "serial", n->serial, "io_queues_max", (int)n->max_ioq, "io_queues", (int)nsq,
                     "shadow_doorbells", shadow, "doorbell_ioeventfds", (int)nioev, "admin_cmds",
                     (json_int_t)s.admin_cmds, "io_cmds", (json_int_t)s.io_cmds, "read_bytes",
                     (json_int_t)s.read_bytes, "write_bytes", (json_int_t)s.write_bytes, "errors",
                     (json_int_t)s.errors, "bad_doorbell", (json_int_t)s.bad_doorbell, "namespaces",
                     ns);
}

/* ---- the PCI function ---- */

#define BAR_MSIX      4
#define MSIX_BAR_SIZE 0x1000
#define MSIX_PBA_OFF  0x800

static void pci_irq(void *opaque, uint16_t vector)
{
    struct vio_nvme *n = opaque;

    vio_msix_notify(&n->msix, vector);
}

static void bar0_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    uint64_t v = vio_nvme_reg_read(opaque, (uint32_t)off, len);

    memcpy(data, &v, len);
}

static void bar0_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    uint64_t v = 0;

    memcpy(&v, data, len);
    vio_nvme_reg_write(opaque, (uint32_t)off, v, len);
}

static void msix_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct vio_nvme *n = opaque;

    if (off < MSIX_PBA_OFF)
        vio_msix_table_read(&n->msix, off, data, len);
    else
        vio_msix_pba_read(&n->msix, off - MSIX_PBA_OFF, data, len);
}

static void msix_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct vio_nvme *n = opaque;

    if (off < MSIX_PBA_OFF)
        vio_msix_table_write(&n->msix, off, data, len);
}

static const struct vio_io_ops bar0_ops = {.read = bar0_read, .write = bar0_write};
static const struct vio_io_ops msix_ops = {.read = msix_read, .write = msix_write};

static void cfg_written(struct vio_pci_dev *d, unsigned off, unsigned len)
{
    struct vio_nvme *n = d->opaque;

    if (off < n->msix.cap + 4u && off + len > n->msix.cap)
        vio_msix_cfg_written(&n->msix);
}

/* The guest moved BAR0: the doorbell ioeventfds move with it. */
static void bar_mapped(struct vio_pci_dev *d, unsigned bar, uint64_t addr, bool mapped)
{
    struct vio_nvme *n = d->opaque;

    if (bar != 0)
        return;
    pthread_mutex_lock(&n->lock);
    for (unsigned q = 1; q <= n->max_ioq; q++) {
        if (n->sq[q])
            set_ioeventfd(n, q, false, n->sq[q]->efd, &n->sq[q]->ioeventfd, false);
        if (n->cq[q])
            set_ioeventfd(n, q, true, n->cq[q]->efd, &n->cq[q]->ioeventfd, false);
    }
    n->bar0 = addr;
    n->bar0_mapped = mapped;
    for (unsigned q = 1; n->dbs && q <= n->max_ioq; q++) {
        if (n->sq[q])
            set_ioeventfd(n, q, false, n->sq[q]->efd, &n->sq[q]->ioeventfd, true);
        if (n->cq[q])
            set_ioeventfd(n, q, true, n->cq[q]->efd, &n->cq[q]->ioeventfd, true);
    }
    pthread_mutex_unlock(&n->lock);
}

static const struct vio_pci_dev_ops nvme_pci_ops = {.bar_mapped = bar_mapped,
                                                    .cfg_written = cfg_written};

int vio_nvme_create(const struct vio_nvme_opts *o, struct vio_vm *vm, struct vio_pci *pci,
                    struct vio_nvme **out)
{
    struct vio_nvme *n;
    int ret;

    ret = vio_nvme_new(o, &vm->gmem, pci_irq, NULL, &n);
    if (ret < 0)
        return ret;
    n->irq_opaque = n;
    n->vm = vm;
    /* No vendor of our own: the id space vio's virtio devices use, with a
     * device id outside virtio's. Linux binds nvme by class 01/08/02. */
    ret = vio_pci_dev_init(pci, &n->pdev, o->id, 0x1af4, 0x10f0, 0x010802, 0, 0x1af4, 0x10f0,
                           &nvme_pci_ops, n);
    if (ret < 0) {
        vio_err("%s: no free PCI slot", o->id);
        goto fail;
    }
    n->on_pci = true;
    ret = vio_msix_init(&n->msix, vm, &n->pdev, n->max_ioq + 1, BAR_MSIX, 0, MSIX_PBA_OFF);
    if (ret < 0) {
        vio_err("%s: MSI-X: %s", o->id, strerror(-ret));
        goto fail;
    }
    n->msix_ok = true;
    if ((ret = vio_pci_dev_add_bar(&n->pdev, BAR_MSIX, MSIX_BAR_SIZE, &msix_ops, n)) < 0 ||
        (ret = vio_pci_dev_add_bar(&n->pdev, 0, VIO_NVME_BAR0_SIZE, &bar0_ops, n)) < 0) {
        vio_err("%s: BARs: %s", o->id, strerror(-ret));
        goto fail;
    }
    *out = n;
    return 0;

fail:
    vio_nvme_destroy(n);
    return ret;
}

void vio_nvme_destroy(struct vio_nvme *n)
{
    if (!n)
        return;
    if (n->on_pci)
        vio_pci_dev_remove(&n->pdev);
    /* Queues first: their workers raise vectors until they are gone. */
    pthread_mutex_lock(&n->lock);
    ctrl_reset(n);
    pthread_mutex_unlock(&n->lock);
    if (n->msix_ok)
        vio_msix_destroy(&n->msix);
    vio_nvme_free(n);
}
