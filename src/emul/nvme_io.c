/* The NVMe data path (see nvme.h): PRP and PRP-list walking, completion
 * queue posting, and the I/O submission queues on worker loops: fetch
 * entries up to the doorbell tail (while the CQ has room for every command
 * in flight), check them, turn them into backend bios, kick the backend
 * once per batch, and post completions with one interrupt per batch. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "emul/nvme_int.h"

/* ---- guest memory ---- */

static uint64_t ld64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return vio_le64(v);
}

static uint32_t ld32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return vio_le32(v);
}

void nvme_cmd_decode(const uint8_t *p, struct nvme_cmd *c)
{
    uint32_t dw0 = ld32(p);

    c->opc = (uint8_t)dw0;
    c->fuse = (uint8_t)((dw0 >> 8) & 3);
    c->psdt = (uint8_t)((dw0 >> 14) & 3);
    c->cid = (uint16_t)(dw0 >> 16);
    c->nsid = ld32(p + 4);
    c->prp1 = ld64(p + 24);
    c->prp2 = ld64(p + 32);
    c->cdw10 = ld32(p + 40);
    c->cdw11 = ld32(p + 44);
    c->cdw12 = ld32(p + 48);
    c->cdw13 = ld32(p + 52);
    c->cdw14 = ld32(p + 56);
    c->cdw15 = ld32(p + 60);
}

/* Append guest range [gpa, gpa+len) to the iovec, merging with the previous
 * entry when the host memory is contiguous. */
static unsigned add_range(const struct vio_gmem *mem, uint64_t gpa, uint64_t len, struct iovec *iov,
                          uint16_t *niov)
{
    while (len) {
        uint64_t got = len;
        uint8_t *p = vio_gmem_xlate(mem, gpa, &got);

        if (!p)
            return NVME_SC_DATA_XFER_ERROR;
        if (*niov && (uint8_t *)iov[*niov - 1].iov_base + iov[*niov - 1].iov_len == p) {
            iov[*niov - 1].iov_len += got;
        } else {
            if (*niov == NVME_MAX_IOV)
                return NVME_SC_DATA_XFER_ERROR;
            iov[*niov].iov_base = p;
            iov[*niov].iov_len = got;
            (*niov)++;
        }
        gpa += got;
        len -= got;
    }
    return NVME_SC_SUCCESS;
}

unsigned nvme_map_prp(const struct vio_gmem *mem, uint64_t prp1, uint64_t prp2, uint64_t len,
                      struct iovec *iov, uint16_t *niov)
{
    uint64_t first, list;
    unsigned st;

    *niov = 0;
    if (len == 0)
        return NVME_SC_SUCCESS;
    if (len > NVME_MAX_XFER)
        return NVME_SC_INVALID_FIELD;
    /* PRP1 may start anywhere in its page (dword aligned, 1.4 4.3). */
    if (prp1 & 3)
        return NVME_SC_PRP_OFFSET_INVALID;
    first = VIO_MIN(len, NVME_PAGE - (prp1 & (NVME_PAGE - 1)));
    if ((st = add_range(mem, prp1, first, iov, niov)))
        return st;
    len -= first;
    if (!len)
        return NVME_SC_SUCCESS;
    if (len <= NVME_PAGE) {
        /* PRP2 is the second page itself. */
        if (prp2 & (NVME_PAGE - 1))
            return NVME_SC_PRP_OFFSET_INVALID;
        return add_range(mem, prp2, len, iov, niov);
    }
    /* PRP2 points to a list; a list that does not end the transfer in its
     * page continues at the page its last entry points to. MDTS bounds
     * the number of entries, so the walk is bounded too. */
    list = prp2;
    if (list & 7)
        return NVME_SC_PRP_OFFSET_INVALID;
    while (len) {
        unsigned nent = (unsigned)((NVME_PAGE - (list & (NVME_PAGE - 1))) / 8);
        const uint8_t *ents = vio_gmem_map(mem, list, (uint64_t)nent * 8);

        if (!ents)
            return NVME_SC_DATA_XFER_ERROR;
        for (unsigned i = 0; i < nent && len; i++) {
            uint64_t e = ld64(ents + 8 * i), chunk;

            if (i == nent - 1 && len > NVME_PAGE) {
                if (e & 7)
                    return NVME_SC_PRP_OFFSET_INVALID;
                list = e;
                break;
            }
            if (e & (NVME_PAGE - 1))
                return NVME_SC_PRP_OFFSET_INVALID;
            chunk = VIO_MIN(len, (uint64_t)NVME_PAGE);
            if ((st = add_range(mem, e, chunk, iov, niov)))
                return st;
            len -= chunk;
        }
    }
    return NVME_SC_SUCCESS;
}

/* ---- completion queues ---- */

/* A shadow doorbell (host memory, written by the driver). Pairs with the
 * driver's write barrier between updating it and reading the event index. */
static uint32_t shadow_load(const uint8_t *p)
{
    return vio_le32(__atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE));
}

static void shadow_store(uint8_t *p, uint32_t v)
{
    __atomic_store_n((uint32_t *)p, vio_to_le32(v), __ATOMIC_RELEASE);
}

unsigned nvme_cq_room(struct nvme_cq *cq)
{
    uint16_t head;
    unsigned used;

    if (cq->db_shadow) {
        uint32_t v = shadow_load(cq->db_shadow);

        if (v < cq->size) /* a bad value leaves the last good one */
            cq->shadow_head = (uint16_t)v;
        head = cq->shadow_head;
    } else {
        head = atomic_load(&cq->head);
    }
    used = (unsigned)(cq->tail + cq->size - head) % cq->size;

    return cq->size - 1u - used;
}

void nvme_cq_post(struct nvme_cq *cq, uint32_t dw0, uint16_t sqid, uint16_t sqhd, uint16_t cid,
                  unsigned status)
{
    uint8_t *e = cq->ring + (size_t)cq->tail * NVME_CQES;
    uint32_t w[3] = {vio_to_le32(dw0), 0, vio_to_le32((uint32_t)sqhd | (uint32_t)sqid << 16)};
    uint16_t sf = (uint16_t)(((status & 0xff) << 1) | ((status >> 8) & 7) << 9 | cq->phase);
    uint32_t dw3;

    /* Do Not Retry on everything but internal and media errors, which a
     * retry may get past. */
    if (status && status != NVME_SC_INTERNAL && (status >> 8) != 2)
        sf |= 0x8000;
    dw3 = vio_to_le32((uint32_t)cid | (uint32_t)sf << 16);
    memcpy(e, w, sizeof(w));
    /* The entry's body before its phase bit: pairs with the driver's read
     * barrier after it sees the new phase. */
    atomic_thread_fence(memory_order_release);
    __atomic_store_n((uint32_t *)(e + 12), dw3, __ATOMIC_RELAXED);
    if (++cq->tail == cq->size) {
        cq->tail = 0;
        cq->phase ^= 1;
    }
    cq->irq_pending = true;
}

void nvme_cq_notify(struct nvme_cq *cq)
{
    if (!cq->irq_pending)
        return;
    cq->irq_pending = false;
    if (cq->ien)
        cq->n->irq(cq->n->irq_opaque, cq->vector);
}

/* ---- I/O commands ---- */

static void complete(struct nvme_sq *sq, struct nvme_req *r, unsigned status)
{
    struct vio_nvme *n = sq->n;
    uint16_t slot = (uint16_t)(r - sq->reqs);

    if (status)
        nvme_count(&n->st.errors, 1);
    nvme_cq_post(sq->cq, 0, sq->qid, sq->head, r->cid, status);
    sq->cq->reserved--;
    r->next_free = sq->free_head;
    sq->free_head = slot;
    sq->inflight--;
}

static void submit(struct nvme_sq *sq, struct nvme_req *r)
{
    struct vio_bdev *b = sq->n->ns[r->nsi].bdev;
    int ret = b->ops->submit(sq->bq[r->nsi], &r->bio);

    if (ret < 0) {
        complete(sq, r, NVME_SC_INTERNAL);
        return;
    }
    sq->need_kick[r->nsi] = true;
}

/* Check SLBA and the 0's based NLB of @c against namespace @ns. */
static unsigned lba_range(const struct nvme_ns *ns, uint64_t slba, uint64_t nlb)
{
    if (slba >= ns->nlba || nlb > ns->nlba - slba)
        return NVME_SC_LBA_RANGE;
    return NVME_SC_SUCCESS;
}

static unsigned io_rw(struct nvme_sq *sq, struct nvme_req *r, const struct nvme_cmd *c)
{
    struct vio_nvme *n = sq->n;
    const struct nvme_ns *ns = &n->ns[r->nsi];
    bool write = c->opc == NVME_CMD_WRITE;
    uint64_t slba = (uint64_t)c->cdw11 << 32 | c->cdw10;
    uint64_t nlb = (uint64_t)(c->cdw12 & 0xffff) + 1, len = nlb << ns->lbads;
    unsigned st;

    if (write && ns->bdev->readonly)
        return NVME_SC_NS_WRITE_PROTECTED;
    if (len > NVME_MAX_XFER)
        return NVME_SC_INVALID_FIELD;
    if ((st = lba_range(ns, slba, nlb)))
        return st;
    if ((st = nvme_map_prp(n->mem, c->prp1, c->prp2, len, r->iov, &r->niov)))
        return st;
    r->fua = write && ((c->cdw12 & (1u << 30)) || !atomic_load(&n->vwc));
    r->bio = (struct vio_bio){.op = write ? VIO_BIO_WRITE : VIO_BIO_READ,
                              .iovcnt = r->niov,
                              .iov = r->iov,
                              .offset = slba << ns->lbads,
                              .len = len};
    if (write) {
        nvme_count(&n->st.writes, 1);
        nvme_count(&n->st.write_bytes, len);
    } else {
        nvme_count(&n->st.reads, 1);
        nvme_count(&n->st.read_bytes, len);
    }
    return NVME_SC_SUCCESS;
}

static unsigned io_write_zeroes(struct nvme_sq *sq, struct nvme_req *r, const struct nvme_cmd *c)
{
    const struct nvme_ns *ns = &sq->n->ns[r->nsi];
    uint64_t slba = (uint64_t)c->cdw11 << 32 | c->cdw10;
    uint64_t nlb = (uint64_t)(c->cdw12 & 0xffff) + 1;
    unsigned st;

    if (ns->bdev->readonly)
        return NVME_SC_NS_WRITE_PROTECTED;
    if ((st = lba_range(ns, slba, nlb)))
        return st;
    if (!ns->bdev->can_write_zeroes)
        return NVME_SC_INVALID_OPCODE;
    r->bio = (struct vio_bio){.op = VIO_BIO_WRITE_ZEROES,
                              .flags = (c->cdw12 & (1u << 25)) ? VIO_BIO_F_UNMAP : 0,
                              .offset = slba << ns->lbads,
                              .len = nlb << ns->lbads};
    return NVME_SC_SUCCESS;
}

/* Read DSM range @i from the guest's list (mapped into r->iov). */
static void dsm_range(const struct nvme_req *r, unsigned i, uint64_t *slba, uint32_t *nlb)
{
    uint8_t e[16];
    size_t off = (size_t)i * 16, got = 0;

    for (unsigned k = 0; k < r->niov && got < sizeof(e); k++) {
        size_t l = r->iov[k].iov_len;

        if (off >= l) {
            off -= l;
            continue;
        }
        l = VIO_MIN(l - off, sizeof(e) - got);
        memcpy(e + got, (uint8_t *)r->iov[k].iov_base + off, l);
        got += l;
        off = 0;
    }
    *nlb = ld32(e + 4);
    *slba = ld64(e + 8);
}

/* Issue the next non-empty DSM range as a discard bio, or finish. Returns
 * NVME_SC_SUCCESS with r->bio set, or a status to complete with; *done
 * set when no range is left. */
static unsigned dsm_next(struct nvme_sq *sq, struct nvme_req *r, bool *done)
{
    const struct nvme_ns *ns = &sq->n->ns[r->nsi];

    *done = false;
    while (r->dsm_next < r->dsm_nr) {
        uint64_t slba;
        uint32_t nlb;

        /* Read once into locals: the guest may change the list meanwhile. */
        dsm_range(r, r->dsm_next++, &slba, &nlb);
        if (nlb == 0)
            continue;
        if (lba_range(ns, slba, (uint64_t)nlb - 1))
            return NVME_SC_LBA_RANGE;
        r->bio = (struct vio_bio){
            .op = VIO_BIO_DISCARD, .offset = slba << ns->lbads, .len = (uint64_t)nlb << ns->lbads};
        return NVME_SC_SUCCESS;
    }
    *done = true;
    return NVME_SC_SUCCESS;
}

static unsigned io_dsm(struct nvme_sq *sq, struct nvme_req *r, const struct nvme_cmd *c, bool *done)
{
    const struct nvme_ns *ns = &sq->n->ns[r->nsi];
    unsigned nr = (c->cdw10 & 0xff) + 1, st;

    *done = true;
    /* Only the deallocate attribute does anything; the hints are hints. */
    if (!(c->cdw11 & (1u << 2)))
        return NVME_SC_SUCCESS;
    if (ns->bdev->readonly)
        return NVME_SC_NS_WRITE_PROTECTED;
    if ((st = nvme_map_prp(sq->n->mem, c->prp1, c->prp2, (uint64_t)nr * 16, r->iov, &r->niov)))
        return st;
    if (!ns->bdev->can_discard)
        return NVME_SC_SUCCESS;
    r->dsm_next = 0;
    r->dsm_nr = (uint16_t)nr;
    return dsm_next(sq, r, done);
}

/* Execute one fetched command in slot @r. */
static void io_exec(struct nvme_sq *sq, struct nvme_req *r, const struct nvme_cmd *c)
{
    struct vio_nvme *n = sq->n;
    bool done = false;
    unsigned st;

    nvme_count(&n->st.io_cmds, 1);
    r->cid = c->cid;
    r->opc = c->opc;
    r->fua = false;
    r->niov = 0;
    r->dsm_nr = r->dsm_next = 0;
    if (c->fuse || c->psdt) {
        st = NVME_SC_INVALID_FIELD; /* no fused commands, no SGLs */
        goto out;
    }
    switch (c->opc) {
    case NVME_CMD_FLUSH:
    case NVME_CMD_WRITE:
    case NVME_CMD_READ:
    case NVME_CMD_WRITE_ZEROES:
    case NVME_CMD_DSM:
        break;
    default:
        st = NVME_SC_INVALID_OPCODE;
        goto out;
    }
    if (c->nsid == 0 || c->nsid > n->nns) {
        st = NVME_SC_INVALID_NS;
        goto out;
    }
    r->nsi = c->nsid - 1;
    switch (c->opc) {
    case NVME_CMD_FLUSH:
        r->bio = (struct vio_bio){.op = VIO_BIO_FLUSH};
        st = NVME_SC_SUCCESS;
        break;
    case NVME_CMD_WRITE:
    case NVME_CMD_READ:
        st = io_rw(sq, r, c);
        break;
    case NVME_CMD_WRITE_ZEROES:
        st = io_write_zeroes(sq, r, c);
        break;
    default:
        st = io_dsm(sq, r, c, &done);
        break;
    }
    if (st == NVME_SC_SUCCESS && !done) {
        submit(sq, r);
        return;
    }
out:
    complete(sq, r, st);
}

static void bio_done(void *opaque, struct vio_bio *bio, int res)
{
    struct nvme_sq *sq = opaque;
    struct nvme_req *r = vio_container_of(bio, struct nvme_req, bio);
    unsigned st = NVME_SC_SUCCESS;
    bool done;

    if (res < 0) {
        if (vio_ratelimit_ok(&sq->rl))
            vio_warn("%s: queue %u: backend error on opcode 0x%02x: %s", sq->n->id, sq->qid, r->opc,
                     strerror(-res));
        st = r->opc == NVME_CMD_READ    ? NVME_SC_UNRECOVERED_READ
             : r->opc == NVME_CMD_WRITE ? NVME_SC_WRITE_FAULT
                                        : NVME_SC_INTERNAL;
        complete(sq, r, st);
        return;
    }
    if (r->fua && bio->op == VIO_BIO_WRITE) {
        /* Force Unit Access, or no write cache: make it durable first. */
        r->bio = (struct vio_bio){.op = VIO_BIO_FLUSH};
        submit(sq, r);
        return;
    }
    if (r->opc == NVME_CMD_DSM) {
        st = dsm_next(sq, r, &done);
        if (st == NVME_SC_SUCCESS && !done) {
            submit(sq, r);
            return;
        }
    }
    complete(sq, r, st);
}

static void run_sq(struct nvme_sq *sq);

static void bio_batch_done(void *opaque)
{
    struct nvme_sq *sq = opaque;

    run_sq(sq);
}

static const struct vio_bq_cb nvme_bq_cb = {.done = bio_done, .batch_done = bio_batch_done};

static void kick_backends(struct nvme_sq *sq)
{
    struct vio_nvme *n = sq->n;

    for (unsigned i = 0; i < n->nns; i++) {
        if (sq->need_kick[i]) {
            sq->need_kick[i] = false;
            n->ns[i].bdev->ops->kick(sq->bq[i]);
        }
    }
}

/* True if the CQ can take one more command; otherwise marks the CQ as
 * stalled (its head doorbell then wakes us) and checks again, so a head
 * update that raced with the check is not lost. */
static bool cq_has_room(struct nvme_cq *cq)
{
    if (cq->reserved < nvme_cq_room(cq))
        return true;
    atomic_store(&cq->stalled, true);
    /* With shadow doorbells the driver writes the head register only when
     * it passes the event index: ask for the next move. */
    if (cq->ei_shadow) {
        shadow_store(cq->ei_shadow, cq->shadow_head);
        atomic_thread_fence(memory_order_seq_cst);
    }
    /* seq_cst store then load, against the doorbell's store of the head
     * then load of stalled. */
    return cq->reserved < nvme_cq_room(cq);
}

/* The driver's tail: the shadow doorbell when there is one (a value past
 * the queue counts as no new entries), else the doorbell register. */
static uint16_t sq_tail(struct nvme_sq *sq)
{
    if (sq->db_shadow) {
        uint32_t v = shadow_load(sq->db_shadow);

        if (v < sq->size)
            return (uint16_t)v;
        if (vio_ratelimit_ok(&sq->rl))
            vio_warn("%s: queue %u: shadow tail %u past the queue's %u entries: ignored", sq->n->id,
                     sq->qid, v, sq->size);
        return sq->head;
    }
    /* Pairs with the release store of the doorbell. */
    return atomic_load_explicit(&sq->tail, memory_order_acquire);
}

/* Fetch and execute up to a queue's worth of entries per pass; if more
 * are waiting after that, the queue signals itself so other queues on the
 * loop get their turn. Re-entered from backend completions (kick may
 * complete inline): then it only notes that another pass is due. */
static void run_sq(struct nvme_sq *sq)
{
    struct nvme_cq *cq = sq->cq;
    bool more = false;

    if (sq->in_run) {
        sq->again = true;
        return;
    }
    sq->in_run = true;
    do {
        sq->again = false;
        for (unsigned budget = sq->size; !sq->stopping; budget--) {
            uint16_t tail = sq_tail(sq);
            struct nvme_cmd c;
            struct nvme_req *r;

            if (sq->head == tail && sq->ei_shadow) {
                /* Caught up: tell the driver to ring for anything newer,
                 * then look once more for entries that raced with it
                 * (full fence: store of the index, load of the tail). */
                shadow_store(sq->ei_shadow, tail);
                atomic_thread_fence(memory_order_seq_cst);
                tail = sq_tail(sq);
            }
            if (sq->head == tail)
                break;
            if (!budget) {
                more = true;
                break;
            }
            if (sq->free_head == NVME_NO_SLOT || !cq_has_room(cq))
                break; /* a completion or the CQ head doorbell resumes us */
            nvme_cmd_decode(sq->ring + (size_t)sq->head * NVME_SQES, &c);
            if (++sq->head == sq->size)
                sq->head = 0;
            r = &sq->reqs[sq->free_head];
            sq->free_head = r->next_free;
            sq->inflight++;
            cq->reserved++;
            io_exec(sq, r, &c);
        }
        kick_backends(sq);
    } while (sq->again);
    sq->in_run = false;
    nvme_cq_notify(cq);
    if (more)
        vio_eventfd_signal(sq->efd);
    if (sq->drain_call && sq->inflight == 0) {
        struct vio_call *c = sq->drain_call;

        sq->drain_call = NULL;
        vio_call_done(c, 0);
    }
}

static void sq_kick(struct vio_handler *h, uint32_t events)
{
    struct nvme_sq *sq = vio_container_of(h, struct nvme_sq, h);

    (void)events;
    vio_eventfd_drain(sq->efd);
    run_sq(sq);
}

static void cq_wake(struct vio_handler *h, uint32_t events)
{
    struct nvme_cq *cq = vio_container_of(h, struct nvme_cq, h);

    (void)events;
    vio_eventfd_drain(cq->efd);
    atomic_store(&cq->stalled, false);
    for (struct nvme_sq *sq = cq->sqs; sq; sq = sq->cq_next)
        run_sq(sq);
}

/* ---- queue life cycle on the worker ---- */

int nvme_cq_start(struct nvme_cq *cq)
{
    return vio_loop_add(cq->loop, &cq->h, cq->efd, EPOLLIN, cq_wake);
}

void nvme_cq_stop(struct nvme_cq *cq)
{
    vio_loop_del(cq->loop, &cq->h);
}

int nvme_sq_start(struct nvme_sq *sq)
{
    struct vio_nvme *n = sq->n;
    unsigned i;
    int ret;

    sq->free_head = 0;
    for (unsigned k = 0; k < sq->size; k++)
        sq->reqs[k].next_free = k + 1u < sq->size ? (uint16_t)(k + 1) : NVME_NO_SLOT;
    for (i = 0; i < n->nns; i++) {
        struct vio_bdev *b = n->ns[i].bdev;

        ret = b->ops->queue_open(b, sq->cq->loop, sq->size, &nvme_bq_cb, sq, &sq->bq[i]);
        if (ret < 0)
            goto fail;
    }
    ret = vio_loop_add(sq->cq->loop, &sq->h, sq->efd, EPOLLIN, sq_kick);
    if (ret < 0)
        goto fail;
    sq->cq_next = sq->cq->sqs;
    sq->cq->sqs = sq;
    return 0;

fail:
    while (i-- > 0)
        n->ns[i].bdev->ops->queue_close(sq->bq[i]);
    return ret;
}

void nvme_sq_set_shadow(struct nvme_sq *sq, uint8_t *db, uint8_t *ei)
{
    sq->db_shadow = db;
    sq->ei_shadow = ei;
    run_sq(sq); /* updates the event index, takes what is there */
}

void nvme_cq_set_shadow(struct nvme_cq *cq, uint8_t *db, uint8_t *ei)
{
    uint32_t v = shadow_load(db);

    /* Start from the register's head unless the shadow has a valid one. */
    cq->shadow_head = v < cq->size ? (uint16_t)v : atomic_load(&cq->head);
    cq->db_shadow = db;
    cq->ei_shadow = ei;
    shadow_store(ei, cq->shadow_head);
    atomic_store(&cq->stalled, false);
    for (struct nvme_sq *sq = cq->sqs; sq; sq = sq->cq_next)
        run_sq(sq);
}

void nvme_sq_stop_begin(struct vio_call *c)
{
    struct nvme_sq *sq = c->arg;

    sq->stopping = true;
    vio_loop_del(sq->cq->loop, &sq->h);
    if (sq->inflight == 0) {
        vio_call_done(c, 0);
        return;
    }
    if (!sq->cq->loop->thread_set) {
        /* Nobody else runs this loop (tests): pump it here. */
        while (sq->inflight)
            vio_loop_run_once(sq->cq->loop, 100);
        vio_call_done(c, 0);
        return;
    }
    sq->drain_call = c; /* finished by run_sq after the last completion */
}

void nvme_sq_stop_finish(struct nvme_sq *sq)
{
    struct vio_nvme *n = sq->n;

    for (unsigned i = 0; i < n->nns; i++)
        n->ns[i].bdev->ops->queue_close(sq->bq[i]);
    for (struct nvme_sq **p = &sq->cq->sqs; *p; p = &(*p)->cq_next) {
        if (*p == sq) {
            *p = sq->cq_next;
            break;
        }
    }
    /* Completions posted while draining. */
    nvme_cq_notify(sq->cq);
}
