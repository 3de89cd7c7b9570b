/* virtio-scsi host bus adapter (VIRTIO 1.2, 5.6). Queue 0 is the control
 * queue (task management), queue 1 the event queue (hotplug), queues 2.. the
 * request queues. A request names its LUN, carries a CDB and its data
 * buffers; the LUN's SCSI disk (scsi/disk.c) finishes it at once or turns it
 * into backend I/O on a backend queue that this request queue opens for that
 * LUN the first time it needs one.
 *
 * LUN table: VIO_SCSI_MAX_LUNS slots of atomic pointers, written only by the
 * control thread. Workers load a slot once per request. Removing a LUN
 * clears its slot, then runs a call on every running request queue's worker
 * that waits for that LUN's requests on the queue and closes its backend
 * queue; after that no worker can hold the pointer, and it is freed.
 *
 * Task management (abort task, abort task set, clear task set, LUN reset,
 * I_T nexus reset): commands already handed to a backend cannot be pulled
 * back, so the device answers only once every command of the LUN (or
 * target) on every queue has completed; the guest's buffers are then no
 * longer ours, which is what "function complete" promises. A waiting TMF
 * is parked on the control queue; workers count per-slot in-flight commands
 * and wake the control queue through an eventfd when a count drops to zero
 * while a TMF waits. */
#include "devices/scsi.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"

/* Feature bits, response codes, control and event types (VIRTIO 1.2, 5.6). */
#define SCSI_F_INOUT   0
#define SCSI_F_HOTPLUG 1
#define SCSI_F_CHANGE  2

#define S_OK                 0
#define S_OVERRUN            1
#define S_BAD_TARGET         3
#define S_FAILURE            9
#define S_FUNCTION_SUCCEEDED 10
#define S_FUNCTION_REJECTED  11
#define S_INCORRECT_LUN      12

#define T_TMF          0
#define T_AN_QUERY     1
#define T_AN_SUBSCRIBE 2

#define TMF_ABORT_TASK       0
#define TMF_ABORT_TASK_SET   1
#define TMF_CLEAR_ACA        2
#define TMF_CLEAR_TASK_SET   3
#define TMF_I_T_NEXUS_RESET  4
#define TMF_LUN_RESET        5
#define TMF_QUERY_TASK       6
#define TMF_QUERY_TASK_SET   7

#define T_NO_EVENT        0
#define T_TRANSPORT_RESET 1
#define T_EVENTS_MISSED   0x80000000u
#define EVT_RESET_RESCAN  1
#define EVT_RESET_REMOVED 2

#define CTRL_Q  0
#define EVENT_Q 1
#define REQ_Q0  2

#define CDB_DEFAULT   32
#define SENSE_DEFAULT 96
#define CDB_MAX       256
#define SENSE_MAX     256
#define REQ_HDR       19 /* lun[8] tag[8] task_attr prio crn, then the CDB */
#define RESP_HDR      12 /* sense_len resid status_qualifier status response */
#define SEG_MAX       126
#define MAX_IOV       (SEG_MAX + 8)
#define RESP_IOV      8
#define MAX_SECTORS   0xffff
#define CMD_PER_LUN   128

struct scsi_config {
    uint32_t num_queues;
    uint32_t seg_max;
    uint32_t max_sectors;
    uint32_t cmd_per_lun;
    uint32_t event_info_size;
    uint32_t sense_size;
    uint32_t cdb_size;
    uint16_t max_channel;
    uint16_t max_target;
    uint32_t max_lun;
} __attribute__((packed));
static_assert(sizeof(struct scsi_config) == 36, "virtio_scsi_config layout");

struct scsi_event {
    uint32_t event;
    uint8_t lun[8];
    uint32_t reason;
};

struct scsi_lun {
    uint16_t target, lun;
    struct vio_bdev *bdev;
    struct vio_scsi_disk *disk;
};

struct scsi_queue;

/* One LUN as seen from one request queue. */
struct scsi_lq {
    struct scsi_queue *q;
    struct scsi_lun *lun; /* while bq is open */
    struct vio_bq *bq;
    unsigned inflight;
    unsigned slot;
    bool kick;
    struct vio_call *drain_call; /* a LUN removal waiting for inflight == 0 */
};

struct scsi_req {
    struct vio_scsi_cmd cmd;
    struct vio_vq_elem *elem;
    struct scsi_lq *lq;
    struct iovec resp_iov[RESP_IOV];
    unsigned resp_iovcnt;
    uint32_t resp_len, sense_size;
    uint8_t response;
    uint8_t cdb[CDB_MAX];
    /* control queue: a parked TMF */
    uint64_t wait_mask;
    int next_tmf;
};

struct scsi_qstats {
    vio_counter_t requests, bad, tmfs, events;
};

struct scsi_queue {
    struct vio_scsi_hba *hba;
    struct vio_vq *vq;
    struct scsi_req *reqs; /* [vq->size], by element id */
    struct scsi_lq lq[VIO_SCSI_MAX_LUNS];
    uint64_t kick_mask; /* lq with bios waiting for a kick */
    struct scsi_qstats st;
    /* control queue */
    int tmf_head; /* parked TMFs, -1: none */
    struct vio_handler tmf_h;
    /* event queue */
    bool events_missed;
};

struct vio_scsi_hba {
    struct vio_dev dev;
    struct scsi_queue *queues; /* [num_queues] */
    struct scsi_lun *_Atomic slots[VIO_SCSI_MAX_LUNS];
    _Atomic uint32_t slot_inflight[VIO_SCSI_MAX_LUNS];
    _Atomic uint32_t tmf_waiting;
    _Atomic uint32_t cdb_size, sense_size;
    int tmf_efd;
    vio_counter_t luns_added, luns_removed;
};

static struct vio_scsi_hba *to_hba(struct vio_dev *d)
{
    return vio_container_of(d, struct vio_scsi_hba, dev);
}

static const struct vio_dev_ops scsi_ops;

bool vio_is_scsi_hba(const struct vio_dev *d)
{
    return d->ops == &scsi_ops;
}

/* The LUN address of an event. Linux reads bytes 2-3 as the LUN number the
 * way REPORT LUNS encodes it: peripheral addressing (byte 2 zero) below
 * 256, flat space (0x40) above. */
static void encode_lun(uint8_t lun[8], unsigned target, unsigned l)
{
    memset(lun, 0, 8);
    lun[0] = 1;
    lun[1] = (uint8_t)target;
    lun[2] = (uint8_t)(l < 256 ? 0 : 0x40 | (l >> 8));
    lun[3] = (uint8_t)l;
}

/* Decode the virtio LUN address. Returns false if it is malformed. */
static bool decode_lun(const uint8_t lun[8], unsigned *target, unsigned *l)
{
    if (lun[0] != 1 || (lun[2] >> 6) > 1 || lun[4] || lun[5] || lun[6] || lun[7])
        return false;
    *target = lun[1];
    *l = ((lun[2] & 0x3fu) << 8) | lun[3];
    return true;
}

static struct scsi_lun *slot_get(struct vio_scsi_hba *hba, unsigned i)
{
    return atomic_load_explicit(&hba->slots[i], memory_order_acquire);
}

/* The LUN (target, lun) and its slot, or NULL and -1; and whether the
 * target has any LUN. Each slot is loaded once: a worker uses the pointer
 * it got, never a second load that a removal may have cleared. */
static struct scsi_lun *find_lun(struct vio_scsi_hba *hba, unsigned target, unsigned l,
                                 int *slot, bool *target_exists)
{
    struct scsi_lun *found = NULL;

    *slot = -1;
    *target_exists = false;
    for (unsigned i = 0; i < VIO_SCSI_MAX_LUNS; i++) {
        struct scsi_lun *x = slot_get(hba, i);

        if (!x || x->target != target)
            continue;
        *target_exists = true;
        if (x->lun == l) {
            found = x;
            *slot = (int)i;
        }
    }
    return found;
}

/* ---- request queues -------------------------------------------------------- */

static void write_resp(struct scsi_req *r, uint32_t off, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    for (unsigned i = 0; i < r->resp_iovcnt && len; i++) {
        size_t n;

        if (off >= r->resp_iov[i].iov_len) {
            off -= (uint32_t)r->resp_iov[i].iov_len;
            continue;
        }
        n = VIO_MIN(len, r->resp_iov[i].iov_len - off);
        memcpy((uint8_t *)r->resp_iov[i].iov_base + off, p, n);
        p += n;
        len -= n;
        off = 0;
    }
}

/* Write the response and return the request to the driver. */
static void finish_req(struct scsi_queue *q, struct scsi_req *r)
{
    struct vio_scsi_cmd *c = &r->cmd;
    uint8_t hdr[RESP_HDR];
    uint32_t sense_len = VIO_MIN(c->sense_len, r->sense_size);
    uint32_t resid = (uint32_t)VIO_MIN(c->residual, (size_t)UINT32_MAX);
    uint64_t in_bytes = 0;

    if (r->response != S_OK) {
        sense_len = 0;
        resid = (uint32_t)VIO_MIN(c->data_len, (size_t)UINT32_MAX);
    }
    memset(hdr, 0, sizeof(hdr));
    sense_len = vio_to_le32(sense_len);
    resid = vio_to_le32(resid);
    memcpy(hdr, &sense_len, 4);
    memcpy(hdr + 4, &resid, 4);
    sense_len = vio_le32(sense_len);
    hdr[10] = r->response == S_OK ? c->status : 0;
    hdr[11] = r->response;
    write_resp(r, 0, hdr, sizeof(hdr));
    if (sense_len)
        write_resp(r, RESP_HDR, c->sense, sense_len);
    if (r->response == S_OK && c->data_in)
        in_bytes = c->data_len - VIO_MIN(c->residual, c->data_len);
    vio_vq_push(q->vq, r->elem, (uint32_t)VIO_MIN(r->resp_len + in_bytes, (uint64_t)UINT32_MAX));
}

static void lq_put(struct scsi_lq *lq)
{
    struct vio_scsi_hba *hba = lq->q->hba;

    lq->inflight--;
    if (atomic_fetch_sub(&hba->slot_inflight[lq->slot], 1) == 1 &&
        atomic_load(&hba->tmf_waiting))
        vio_eventfd_signal(hba->tmf_efd);
    if (lq->inflight == 0 && lq->drain_call) {
        struct vio_call *c = lq->drain_call;

        lq->drain_call = NULL;
        vio_call_done(c, 0);
    }
}

static void bio_done(void *opaque, struct vio_bio *bio, int res);
static void bio_batch_done(void *opaque);

static const struct vio_bq_cb scsi_bq_cb = {
    .done = bio_done,
    .batch_done = bio_batch_done,
};

/* Submit the command's bio on its LUN queue; finish it if that fails. */
static void submit(struct scsi_queue *q, struct scsi_req *r)
{
    struct scsi_lq *lq = r->lq;
    int ret;

    for (;;) {
        ret = lq->lun->bdev->ops->submit(lq->bq, &r->cmd.bio);
        if (ret == 0) {
            lq->kick = true;
            q->kick_mask |= 1ull << lq->slot;
            return;
        }
        /* Not queued: finish with the error (or go on with the next piece
         * of an UNMAP). */
        if (vio_scsi_disk_bio_done(lq->lun->disk, &r->cmd, ret) == 0)
            break;
    }
    lq_put(lq);
    finish_req(q, r);
}

static void bio_done(void *opaque, struct vio_bio *bio, int res)
{
    struct scsi_lq *lq = opaque;
    struct scsi_req *r = vio_container_of(bio, struct scsi_req, cmd.bio);

    if (vio_scsi_disk_bio_done(lq->lun->disk, &r->cmd, res) == 1) {
        submit(lq->q, r); /* the next piece; kicked in batch_done */
        return;
    }
    lq_put(lq);
    finish_req(lq->q, r);
}

static void kick_lqs(struct scsi_queue *q)
{
    while (q->kick_mask) {
        unsigned i = (unsigned)__builtin_ctzll(q->kick_mask);
        struct scsi_lq *lq = &q->lq[i];

        q->kick_mask &= ~(1ull << i);
        if (lq->kick && lq->bq) {
            lq->kick = false;
            lq->lun->bdev->ops->kick(lq->bq);
        }
    }
}

static void bio_batch_done(void *opaque)
{
    struct scsi_lq *lq = opaque;

    kick_lqs(lq->q);
    vio_dev_complete(&lq->q->hba->dev, lq->q->vq);
}

/* Worker: the LUN queue for slot @i, opened on first use. */
static struct scsi_lq *lq_get(struct scsi_queue *q, unsigned i, struct scsi_lun *lun)
{
    struct scsi_lq *lq = &q->lq[i];
    struct vio_dev_queue *dq = vio_dev_queue_of(q->vq);
    int ret;

    if (lq->bq)
        return lq;
    ret = lun->bdev->ops->queue_open(lun->bdev, dq->loop, q->vq->size, &scsi_bq_cb, lq, &lq->bq);
    if (ret < 0) {
        vio_warn("%s: cannot open a backend queue for LUN %u:%u: %s", q->vq->name, lun->target,
                 lun->lun, strerror(-ret));
        lq->bq = NULL;
        return NULL;
    }
    lq->lun = lun;
    return lq;
}

static void lq_close(struct scsi_lq *lq)
{
    if (!lq->bq)
        return;
    lq->lun->bdev->ops->queue_close(lq->bq);
    lq->bq = NULL;
    lq->lun = NULL;
    lq->kick = false;
}

/* Drop the first @n bytes of iovecs [*first, *first + *cnt) in place. */
static void skip_iov(struct iovec *iov, unsigned *first, unsigned *cnt, size_t n)
{
    while (*cnt && n >= iov[*first].iov_len) {
        n -= iov[*first].iov_len;
        (*first)++;
        (*cnt)--;
    }
    if (n && *cnt) {
        iov[*first].iov_base = (uint8_t *)iov[*first].iov_base + n;
        iov[*first].iov_len -= n;
    }
}

/* REPORT LUNS: every LUN of @target. */
static void report_luns(struct vio_scsi_hba *hba, struct vio_scsi_cmd *c, unsigned target)
{
    uint16_t luns[VIO_SCSI_MAX_LUNS];
    unsigned n = 0;

    for (unsigned i = 0; i < VIO_SCSI_MAX_LUNS; i++) {
        struct scsi_lun *x = slot_get(hba, i);

        if (x && x->target == target)
            luns[n++] = x->lun;
    }
    vio_scsi_report_luns(c, luns, n);
}

static void handle_cmd(void *opaque, struct vio_vq_elem *e)
{
    struct scsi_queue *q = opaque;
    struct vio_scsi_hba *hba = q->hba;
    struct scsi_req *r = &q->reqs[e->id];
    struct vio_scsi_cmd *c = &r->cmd;
    uint32_t cdb_size = atomic_load_explicit(&hba->cdb_size, memory_order_relaxed);
    uint32_t req_len = REQ_HDR + cdb_size;
    uint8_t hdr[REQ_HDR];
    unsigned out_first = 0, out_cnt = e->out_num, in_first = e->out_num, in_cnt = e->in_num;
    unsigned target, l;
    struct scsi_lun *lun;
    bool target_exists;
    int slot;

    vio_counter_add(&q->st.requests, 1);
    r->elem = e;
    r->lq = NULL;
    r->sense_size = atomic_load_explicit(&hba->sense_size, memory_order_relaxed);
    r->resp_len = RESP_HDR + r->sense_size;
    r->response = S_OK;
    memset(c, 0, offsetof(struct vio_scsi_cmd, bio));

    /* The response: the first resp_len writable bytes. */
    if (e->in_len < r->resp_len) {
        vio_vq_fault(q->vq, "request at head %u: %llu writable bytes, the response needs %u",
                     e->id, (unsigned long long)e->in_len, r->resp_len);
        vio_vq_push(q->vq, e, 0);
        return;
    }
    r->resp_iovcnt = 0;
    for (unsigned i = 0, left = r->resp_len; left; i++) {
        struct iovec *v = &e->iov[e->out_num + i];
        size_t n = VIO_MIN(v->iov_len, (size_t)left);

        if (r->resp_iovcnt == RESP_IOV) {
            vio_vq_fault(q->vq, "request at head %u: response split over more than %d buffers",
                         e->id, RESP_IOV);
            vio_vq_push(q->vq, e, 0);
            return;
        }
        r->resp_iov[r->resp_iovcnt++] = (struct iovec){v->iov_base, n};
        left -= (unsigned)n;
    }
    if (e->out_len < req_len) {
        vio_counter_add(&q->st.bad, 1);
        r->response = S_FAILURE;
        goto finish;
    }
    vio_vq_elem_read(e, 0, hdr, sizeof(hdr));
    vio_vq_elem_read(e, REQ_HDR, r->cdb, cdb_size);
    skip_iov(e->iov, &out_first, &out_cnt, req_len);
    skip_iov(e->iov, &in_first, &in_cnt, r->resp_len);
    c->cdb = r->cdb;
    c->cdb_len = cdb_size;
    if (e->out_len > req_len && e->in_len > r->resp_len) {
        /* Bidirectional commands need VIRTIO_SCSI_F_INOUT, not offered. */
        vio_counter_add(&q->st.bad, 1);
        r->response = S_FAILURE;
        goto finish;
    }
    if (e->in_len > r->resp_len) {
        c->iov = e->iov + in_first;
        c->iovcnt = in_cnt;
        c->data_len = e->in_len - r->resp_len;
        c->data_in = true;
    } else {
        c->iov = e->iov + out_first;
        c->iovcnt = out_cnt;
        c->data_len = e->out_len - req_len;
        c->data_in = false;
    }
    if (!decode_lun(hdr, &target, &l)) {
        r->response = S_BAD_TARGET;
        goto finish;
    }
    lun = find_lun(hba, target, l, &slot, &target_exists);
    if (!target_exists) {
        r->response = S_BAD_TARGET;
        goto finish;
    }
    if (cdb_size >= 1 && r->cdb[0] == 0xa0) {
        report_luns(hba, c, target);
        goto finish;
    }
    if (!lun) {
        vio_scsi_no_lun(c);
        goto finish;
    }
    if (vio_scsi_disk_exec(lun->disk, c) == 0)
        goto finish;
    r->lq = lq_get(q, (unsigned)slot, lun);
    if (!r->lq) {
        vio_scsi_set_sense(c, VIO_SENSE_HARDWARE_ERROR, 0x44, 0x00); /* internal failure */
        goto finish;
    }
    r->lq->inflight++;
    atomic_fetch_add(&hba->slot_inflight[slot], 1);
    submit(q, r);
    return;

finish:
    finish_req(q, r);
}

static void req_queue_kick(struct scsi_queue *q)
{
    vio_dev_drain(q->vq, handle_cmd, q);
    kick_lqs(q);
    vio_dev_complete(&q->hba->dev, q->vq);
}

/* ---- control queue ----------------------------------------------------------- */

static bool tmf_ready(struct vio_scsi_hba *hba, uint64_t mask)
{
    for (unsigned i = 0; i < VIO_SCSI_MAX_LUNS; i++) {
        if ((mask & (1ull << i)) && atomic_load(&hba->slot_inflight[i]))
            return false;
    }
    return true;
}

static void tmf_reply(struct scsi_queue *q, struct vio_vq_elem *e, uint8_t response)
{
    vio_vq_elem_write(e, 0, &response, 1);
    vio_vq_push(q->vq, e, 1);
}

/* Answer the parked TMFs whose commands have all completed. */
static void tmf_poll(struct scsi_queue *q)
{
    struct vio_scsi_hba *hba = q->hba;
    int *link = &q->tmf_head;

    while (*link >= 0) {
        struct scsi_req *r = &q->reqs[*link];

        if (!tmf_ready(hba, r->wait_mask)) {
            link = &r->next_tmf;
            continue;
        }
        *link = r->next_tmf;
        atomic_fetch_sub(&hba->tmf_waiting, 1);
        tmf_reply(q, r->elem, S_OK);
    }
}

static void tmf_wake(struct vio_handler *h, uint32_t events)
{
    struct scsi_queue *q = vio_container_of(h, struct scsi_queue, tmf_h);

    (void)events;
    vio_eventfd_drain(h->fd);
    tmf_poll(q);
    vio_dev_complete(&q->hba->dev, q->vq);
}

static void handle_tmf(struct scsi_queue *q, struct vio_vq_elem *e)
{
    struct vio_scsi_hba *hba = q->hba;
    struct scsi_req *r = &q->reqs[e->id];
    uint8_t req[24];
    uint32_t subtype;
    unsigned target, l;
    bool target_exists;
    uint64_t mask = 0;
    int slot;

    vio_counter_add(&q->st.tmfs, 1);
    if (vio_vq_elem_read(e, 0, req, sizeof(req)) != sizeof(req)) {
        vio_counter_add(&q->st.bad, 1);
        tmf_reply(q, e, S_FAILURE);
        return;
    }
    memcpy(&subtype, req + 4, 4);
    subtype = vio_le32(subtype);
    if (!decode_lun(req + 8, &target, &l)) {
        tmf_reply(q, e, S_BAD_TARGET);
        return;
    }
    find_lun(hba, target, l, &slot, &target_exists);
    if (!target_exists) {
        tmf_reply(q, e, S_BAD_TARGET);
        return;
    }
    switch (subtype) {
    case TMF_ABORT_TASK:
    case TMF_ABORT_TASK_SET:
    case TMF_CLEAR_TASK_SET:
    case TMF_LUN_RESET:
        if (slot < 0) {
            tmf_reply(q, e, S_INCORRECT_LUN);
            return;
        }
        mask = 1ull << slot;
        break;
    case TMF_I_T_NEXUS_RESET:
        for (unsigned i = 0; i < VIO_SCSI_MAX_LUNS; i++) {
            struct scsi_lun *x = slot_get(hba, i);

            if (x && x->target == target)
                mask |= 1ull << i;
        }
        break;
    case TMF_CLEAR_ACA:
    case TMF_QUERY_TASK:
    case TMF_QUERY_TASK_SET:
    default:
        /* No ACA, and no per-task tracking to answer queries with. */
        tmf_reply(q, e, S_FUNCTION_REJECTED);
        return;
    }
    r->elem = e;
    r->wait_mask = mask;
    /* Park first, then look: a worker that drops a count to zero after our
     * look sees tmf_waiting and wakes us. */
    atomic_fetch_add(&hba->tmf_waiting, 1);
    r->next_tmf = q->tmf_head;
    q->tmf_head = e->id;
    tmf_poll(q);
}

static void handle_ctrl(void *opaque, struct vio_vq_elem *e)
{
    struct scsi_queue *q = opaque;
    uint8_t resp[5] = {0};
    uint32_t type;

    vio_counter_add(&q->st.requests, 1);
    if (vio_vq_elem_read(e, 0, &type, 4) != 4 || e->in_len < 1) {
        vio_vq_fault(q->vq, "control request at head %u is too short", e->id);
        vio_vq_push(q->vq, e, 0);
        return;
    }
    switch (vio_le32(type)) {
    case T_TMF:
        handle_tmf(q, e);
        break;
    case T_AN_QUERY:
    case T_AN_SUBSCRIBE:
        /* No asynchronous notifications: event_actual 0, response OK. */
        if (e->out_len < 16 || e->in_len < sizeof(resp)) {
            vio_counter_add(&q->st.bad, 1);
            tmf_reply(q, e, S_FAILURE);
            break;
        }
        vio_vq_elem_write(e, 0, resp, sizeof(resp));
        vio_vq_push(q->vq, e, sizeof(resp));
        break;
    default:
        vio_counter_add(&q->st.bad, 1);
        tmf_reply(q, e, S_FAILURE);
        break;
    }
}

/* ---- event queue ------------------------------------------------------------- */

/* Worker of the event queue: deliver one event, or remember that one was
 * lost for want of a buffer (the driver then rescans everything). */
static void post_event(struct scsi_queue *q, uint32_t event, unsigned target, unsigned l,
                       uint32_t reason)
{
    struct vio_dev_queue *dq = vio_dev_queue_of(q->vq);
    struct scsi_event ev;
    struct vio_vq_elem *e;

    if (!dq->enabled || q->vq->broken) {
        q->events_missed = true;
        return;
    }
    e = vio_vq_pop(q->vq);
    /* Ask for a kick when buffers come; take one that came meanwhile. */
    if (!e && vio_vq_enable_notify(q->vq))
        e = vio_vq_pop(q->vq);
    if (!e) {
        q->events_missed = true;
        return;
    }
    if (q->events_missed)
        event |= T_EVENTS_MISSED;
    memset(&ev, 0, sizeof(ev));
    ev.event = vio_to_le32(event);
    if ((event & ~T_EVENTS_MISSED) != T_NO_EVENT)
        encode_lun(ev.lun, target, l);
    ev.reason = vio_to_le32(reason);
    if (e->in_len < sizeof(ev)) {
        vio_vq_fault(q->vq, "event buffer at head %u has %llu writable bytes, needs %zu", e->id,
                     (unsigned long long)e->in_len, sizeof(ev));
        vio_vq_push(q->vq, e, 0);
        vio_dev_complete(&q->hba->dev, q->vq);
        return;
    }
    q->events_missed = false;
    vio_counter_add(&q->st.events, 1);
    vio_vq_elem_write(e, 0, &ev, sizeof(ev));
    vio_vq_push(q->vq, e, sizeof(ev));
    vio_dev_complete(&q->hba->dev, q->vq);
}

static void event_queue_kick(struct scsi_queue *q)
{
    vio_vq_enable_notify(q->vq);
    if (q->events_missed)
        post_event(q, T_NO_EVENT, 0, 0, 0);
}

struct event_call {
    struct vio_call call;
    struct scsi_queue *q;
    unsigned target, lun;
    uint32_t reason;
};

static void event_fn(struct vio_call *c)
{
    struct event_call *ec = c->arg;

    if (vio_vq_started(ec->q->vq))
        post_event(ec->q, T_TRANSPORT_RESET, ec->target, ec->lun, ec->reason);
    vio_call_done(c, 0);
}

/* Control thread: tell a running driver that (target, lun) came or went. */
static void notify_hotplug(struct vio_scsi_hba *hba, unsigned target, unsigned l, uint32_t reason)
{
    struct vio_dev_queue *dq = &hba->dev.queues[EVENT_Q];
    struct event_call ec = {.call = {.fn = event_fn}, .q = &hba->queues[EVENT_Q],
                            .target = target, .lun = l, .reason = reason};

    if (!(hba->dev.features & VIO_BIT(SCSI_F_HOTPLUG)) || !dq->running)
        return;
    ec.call.arg = &ec;
    vio_loop_call(dq->loop, &ec.call);
}

/* ---- queue life cycle ---------------------------------------------------------- */

static void scsi_queue_kick(struct vio_dev *d, struct vio_vq *vq)
{
    struct scsi_queue *q = vio_dev_queue_of(vq)->priv;

    if (vq->index == CTRL_Q) {
        vio_dev_drain(vq, handle_ctrl, q);
        vio_dev_complete(d, vq);
    } else if (vq->index == EVENT_Q) {
        event_queue_kick(q);
    } else {
        req_queue_kick(q);
    }
}

static int scsi_queue_start(struct vio_dev *d, struct vio_vq *vq)
{
    struct vio_scsi_hba *hba = to_hba(d);
    struct scsi_queue *q = &hba->queues[vq->index];
    struct vio_dev_queue *dq = vio_dev_queue_of(vq);
    int ret;

    q->reqs = calloc(vq->size, sizeof(*q->reqs));
    if (!q->reqs)
        return -ENOMEM;
    q->vq = vq;
    q->tmf_head = -1;
    q->kick_mask = 0;
    if (vq->index == CTRL_Q) {
        ret = vio_loop_add(dq->loop, &q->tmf_h, hba->tmf_efd, EPOLLIN, tmf_wake);
        if (ret < 0) {
            free(q->reqs);
            q->reqs = NULL;
            return ret;
        }
    }
    dq->priv = q;
    return 0;
}

static void scsi_queue_stop(struct vio_dev *d, struct vio_vq *vq)
{
    struct vio_scsi_hba *hba = to_hba(d);
    struct scsi_queue *q = &hba->queues[vq->index];
    struct vio_dev_queue *dq = vio_dev_queue_of(vq);

    if (vq->index == CTRL_Q)
        vio_loop_del(dq->loop, &q->tmf_h);
    for (unsigned i = 0; i < VIO_SCSI_MAX_LUNS; i++)
        lq_close(&q->lq[i]);
    free(q->reqs);
    q->reqs = NULL;
    dq->priv = NULL;
}

static void scsi_reset(struct vio_dev *d)
{
    struct vio_scsi_hba *hba = to_hba(d);

    atomic_store(&hba->cdb_size, CDB_DEFAULT);
    atomic_store(&hba->sense_size, SENSE_DEFAULT);
    hba->queues[EVENT_Q].events_missed = false;
}

/* F_CHANGE lets us report parameter changes (we have none to report yet);
 * QEMU's vhost-user-scsi acks it whether offered or not. */
static uint64_t scsi_features(struct vio_dev *d)
{
    (void)d;
    return VIO_BIT(SCSI_F_HOTPLUG) | VIO_BIT(SCSI_F_CHANGE);
}

static uint32_t scsi_config_size(struct vio_dev *d)
{
    (void)d;
    return sizeof(struct scsi_config);
}

static void scsi_get_config(struct vio_dev *d, uint32_t off, void *buf, uint32_t len)
{
    struct vio_scsi_hba *hba = to_hba(d);
    struct scsi_config c = {
        .num_queues = vio_to_le32(d->num_queues - REQ_Q0),
        .seg_max = vio_to_le32(SEG_MAX),
        .max_sectors = vio_to_le32(MAX_SECTORS),
        .cmd_per_lun = vio_to_le32(CMD_PER_LUN),
        .event_info_size = vio_to_le32(sizeof(struct scsi_event)),
        .sense_size = vio_to_le32(atomic_load(&hba->sense_size)),
        .cdb_size = vio_to_le32(atomic_load(&hba->cdb_size)),
        .max_channel = 0,
        .max_target = vio_to_le16(VIO_SCSI_MAX_TARGET),
        .max_lun = vio_to_le32(VIO_SCSI_MAX_LUN),
    };

    memcpy(buf, (uint8_t *)&c + off, len);
}

/* The driver may set sense_size and cdb_size; the rest is read-only. */
static int scsi_set_config(struct vio_dev *d, uint32_t off, const void *buf, uint32_t len)
{
    struct vio_scsi_hba *hba = to_hba(d);
    uint32_t v;

    if (len != 4 || (off != offsetof(struct scsi_config, sense_size) &&
                     off != offsetof(struct scsi_config, cdb_size)))
        return -EINVAL;
    memcpy(&v, buf, 4);
    v = vio_le32(v);
    if (off == offsetof(struct scsi_config, sense_size)) {
        if (v < 18 || v > SENSE_MAX)
            return -EINVAL;
        atomic_store(&hba->sense_size, v);
    } else {
        if (v < 6 || v > CDB_MAX)
            return -EINVAL;
        atomic_store(&hba->cdb_size, v);
    }
    return 0;
}

static json_t *lun_info(struct scsi_lun *x, uint32_t inflight)
{
    const struct vio_scsi_disk_stats *s = vio_scsi_disk_stats(x->disk);

    return json_pack("{s:i, s:i, s:I, s:i, s:b, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i}",
                     "target", x->target, "lun", x->lun, "size_bytes", (json_int_t)x->bdev->size,
                     "block_size", (int)x->bdev->block_size, "readonly", x->bdev->readonly,
                     "backend", x->bdev->ops->info(x->bdev), "commands",
                     (json_int_t)vio_counter_get(&s->cmds), "reads",
                     (json_int_t)vio_counter_get(&s->reads), "writes",
                     (json_int_t)vio_counter_get(&s->writes), "unmaps",
                     (json_int_t)vio_counter_get(&s->unmaps), "syncs",
                     (json_int_t)vio_counter_get(&s->syncs), "check_conditions",
                     (json_int_t)vio_counter_get(&s->check_conditions), "io_errors",
                     (json_int_t)vio_counter_get(&s->io_errors), "inflight", (int)inflight);
}

json_t *vio_scsi_hba_luns(struct vio_dev *d)
{
    struct vio_scsi_hba *hba = to_hba(d);
    json_t *list = json_array();

    for (unsigned i = 0; i < VIO_SCSI_MAX_LUNS; i++) {
        struct scsi_lun *x = slot_get(hba, i);

        if (x)
            json_array_append_new(list, lun_info(x, atomic_load(&hba->slot_inflight[i])));
    }
    return list;
}

static json_t *scsi_stats(struct vio_dev *d)
{
    struct vio_scsi_hba *hba = to_hba(d);
    json_t *queues = json_array();

    for (unsigned i = 0; i < d->num_queues; i++) {
        const struct scsi_qstats *s = &hba->queues[i].st;

        json_array_append_new(
            queues, json_pack("{s:i, s:s, s:b, s:I, s:I, s:I, s:I}", "queue", (int)i, "role",
                              i == CTRL_Q ? "control" : i == EVENT_Q ? "event" : "request",
                              "running", d->queues[i].running, "requests",
                              (json_int_t)vio_counter_get(&s->requests), "bad",
                              (json_int_t)vio_counter_get(&s->bad), "tmfs",
                              (json_int_t)vio_counter_get(&s->tmfs), "events",
                              (json_int_t)vio_counter_get(&s->events)));
    }
    return json_pack("{s:o, s:o, s:I, s:I}", "luns", vio_scsi_hba_luns(d), "queues", queues,
                     "luns_added", (json_int_t)vio_counter_get(&hba->luns_added),
                     "luns_removed", (json_int_t)vio_counter_get(&hba->luns_removed));
}

static void lun_free(struct scsi_lun *x)
{
    vio_scsi_disk_free(x->disk);
    x->bdev->ops->close(x->bdev);
    free(x);
}

static void scsi_destroy(struct vio_dev *d)
{
    struct vio_scsi_hba *hba = to_hba(d);

    for (unsigned i = 0; i < VIO_SCSI_MAX_LUNS; i++) {
        struct scsi_lun *x = slot_get(hba, i);

        if (x)
            lun_free(x);
    }
    if (hba->tmf_efd >= 0)
        close(hba->tmf_efd);
    free(hba->queues);
    vio_dev_cleanup(d);
    free(hba);
}

static const struct vio_dev_ops scsi_ops = {
    .type = "scsi",
    .device_id = VIO_ID_SCSI,
    .features = scsi_features,
    .config_size = scsi_config_size,
    .get_config = scsi_get_config,
    .set_config = scsi_set_config,
    .queue_start = scsi_queue_start,
    .queue_kick = scsi_queue_kick,
    .queue_stop = scsi_queue_stop,
    .reset = scsi_reset,
    .stats = scsi_stats,
    .destroy = scsi_destroy,
};

int vio_scsi_hba_create(const struct vio_scsi_hba_opts *o, struct vio_dev **out)
{
    struct vio_scsi_hba *hba;
    uint16_t qsize = o->queue_size ? o->queue_size : VIO_SCSI_DEFAULT_QUEUE_SIZE;
    int ret;

    if (o->num_queues == 0 || o->num_queues > VIO_SCSI_MAX_QUEUES) {
        vio_err("%s: queues must be 1..%d, got %u", o->id, VIO_SCSI_MAX_QUEUES, o->num_queues);
        return -EINVAL;
    }
    if (!vio_is_pow2(qsize)) {
        vio_err("%s: queue-size must be a power of two, got %u", o->id, qsize);
        return -EINVAL;
    }
    hba = calloc(1, sizeof(*hba));
    if (!hba)
        return -ENOMEM;
    hba->tmf_efd = -1;
    hba->queues = calloc(o->num_queues + REQ_Q0, sizeof(*hba->queues));
    if (!hba->queues) {
        ret = -ENOMEM;
        goto err;
    }
    hba->tmf_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (hba->tmf_efd < 0) {
        ret = -errno;
        goto err;
    }
    ret = vio_dev_init(&hba->dev, &scsi_ops, o->id, (uint16_t)(o->num_queues + REQ_Q0), qsize,
                       MAX_IOV);
    if (ret < 0)
        goto err;
    for (unsigned i = 0; i < (unsigned)o->num_queues + REQ_Q0; i++) {
        hba->queues[i].hba = hba;
        hba->queues[i].tmf_head = -1;
        for (unsigned j = 0; j < VIO_SCSI_MAX_LUNS; j++) {
            hba->queues[i].lq[j].q = &hba->queues[i];
            hba->queues[i].lq[j].slot = j;
        }
    }
    atomic_store(&hba->cdb_size, CDB_DEFAULT);
    atomic_store(&hba->sense_size, SENSE_DEFAULT);
    *out = &hba->dev;
    return 0;

err:
    if (hba->tmf_efd >= 0)
        close(hba->tmf_efd);
    free(hba->queues);
    free(hba);
    return ret;
}

/* ---- LUNs at run time ------------------------------------------------------------ */

int vio_scsi_hba_add_lun(struct vio_dev *d, const struct vio_scsi_lun_opts *o,
                         struct vio_bdev *bdev, char *err, size_t errlen)
{
    struct vio_scsi_hba *hba = to_hba(d);
    struct scsi_lun *x = NULL;
    bool target_exists;
    int free_slot = -1, slot, ret;

    if (o->target > VIO_SCSI_MAX_TARGET || o->lun > VIO_SCSI_MAX_LUN) {
        snprintf(err, errlen, "target must be 0..%d and lun 0..%d", VIO_SCSI_MAX_TARGET,
                 VIO_SCSI_MAX_LUN);
        ret = -EINVAL;
        goto fail;
    }
    if (bdev->max_queues && bdev->max_queues < (unsigned)d->num_queues - REQ_Q0) {
        snprintf(err, errlen,
                 "the backend serves only %u queue%s (an NBD server without multi-conn) and "
                 "%s has %u request queues: give the controller queues=%u",
                 bdev->max_queues, bdev->max_queues == 1 ? "" : "s", d->id,
                 d->num_queues - REQ_Q0, bdev->max_queues);
        ret = -EINVAL;
        goto fail;
    }
    if (find_lun(hba, o->target, o->lun, &slot, &target_exists)) {
        snprintf(err, errlen, "%s already has LUN %u:%u", d->id, o->target, o->lun);
        ret = -EEXIST;
        goto fail;
    }
    for (unsigned i = 0; i < VIO_SCSI_MAX_LUNS && free_slot < 0; i++) {
        if (!slot_get(hba, i))
            free_slot = (int)i;
    }
    if (free_slot < 0) {
        snprintf(err, errlen, "%s has %d LUNs, the most it can hold", d->id, VIO_SCSI_MAX_LUNS);
        ret = -ENOSPC;
        goto fail;
    }
    x = calloc(1, sizeof(*x));
    if (!x) {
        snprintf(err, errlen, "out of memory");
        ret = -ENOMEM;
        goto fail;
    }
    x->target = o->target;
    x->lun = o->lun;
    x->bdev = bdev;
    ret = vio_scsi_disk_create(&o->disk, bdev, &x->disk);
    if (ret < 0) {
        snprintf(err, errlen, "cannot make a disk of the backend (size %llu, block size %u)",
                 (unsigned long long)bdev->size, bdev->block_size);
        goto fail;
    }
    atomic_store(&hba->slot_inflight[free_slot], 0);
    atomic_store_explicit(&hba->slots[free_slot], x, memory_order_release);
    vio_counter_add(&hba->luns_added, 1);
    notify_hotplug(hba, o->target, o->lun, EVT_RESET_RESCAN);
    return 0;

fail:
    free(x);
    bdev->ops->close(bdev);
    return ret;
}

struct drain_call {
    struct vio_call call;
    struct scsi_lq *lq;
};

/* Worker: wait until the LUN has nothing in flight on this queue. */
static void drain_fn(struct vio_call *c)
{
    struct drain_call *dc = c->arg;

    if (dc->lq->inflight == 0) {
        vio_call_done(c, 0);
        return;
    }
    dc->lq->drain_call = c; /* completed by lq_put */
}

/* Worker, as a fresh call (the drain may end inside a backend callback). */
static void close_fn(struct vio_call *c)
{
    struct drain_call *dc = c->arg;

    lq_close(dc->lq);
    dc->lq->q->kick_mask &= ~(1ull << dc->lq->slot);
    vio_call_done(c, 0);
}

int vio_scsi_hba_remove_lun(struct vio_dev *d, unsigned target, unsigned l)
{
    struct vio_scsi_hba *hba = to_hba(d);
    bool target_exists;
    int slot;
    struct scsi_lun *x = find_lun(hba, target, l, &slot, &target_exists);

    if (!x)
        return -ENOENT;
    atomic_store_explicit(&hba->slots[slot], NULL, memory_order_release);
    for (unsigned i = REQ_Q0; i < d->num_queues; i++) {
        struct vio_dev_queue *dq = &d->queues[i];
        struct drain_call dc = {.lq = &hba->queues[i].lq[slot]};

        if (!dq->running)
            continue;
        dc.call.arg = &dc;
        dc.call.fn = drain_fn;
        vio_loop_call(dq->loop, &dc.call);
        dc.call = (struct vio_call){.fn = close_fn, .arg = &dc};
        vio_loop_call(dq->loop, &dc.call);
    }
    vio_counter_add(&hba->luns_removed, 1);
    notify_hotplug(hba, target, l, EVT_RESET_REMOVED);
    lun_free(x);
    return 0;
}

int vio_scsi_hba_add_lun_spec(struct vio_dev *d, struct vio_opts *o, char *err, size_t errlen)
{
    struct vio_bdev_opts bo = {0};
    struct vio_scsi_lun_opts lo = {0};
    struct vio_bdev *bdev;
    uint64_t target, lun, blksize, wwn = 0;
    const char *wwn_s;
    char id[64];
    int ret;

    bo.path = vio_opts_get(o, "path");
    lo.disk.serial = vio_opts_get(o, "serial");
    lo.disk.vendor = vio_opts_get(o, "vendor");
    lo.disk.product = vio_opts_get(o, "product");
    wwn_s = vio_opts_get(o, "wwn");
    if ((ret = vio_opts_size(o, "target", 0, 0, VIO_SCSI_MAX_TARGET, &target, err, errlen)) < 0 ||
        (ret = vio_opts_size(o, "lun", 0, 0, VIO_SCSI_MAX_LUN, &lun, err, errlen)) < 0 ||
        (ret = vio_opts_size(o, "blksize", 0, 0, 65536, &blksize, err, errlen)) < 0 ||
        (ret = vio_opts_bool(o, "readonly", false, &bo.readonly, err, errlen)) < 0 ||
        (ret = vio_opts_bool(o, "direct", false, &bo.direct, err, errlen)) < 0)
        return ret;
    if (!bo.path || !*bo.path) {
        snprintf(err, errlen, "path= is required: a file, a block device, nbd://... or "
                              "iscsi://...");
        return -EINVAL;
    }
    if (blksize && (!vio_is_pow2(blksize) || blksize < 512)) {
        snprintf(err, errlen, "blksize=%llu: must be a power of two >= 512",
                 (unsigned long long)blksize);
        return -EINVAL;
    }
    if ((lo.disk.vendor && strlen(lo.disk.vendor) > 8) ||
        (lo.disk.product && strlen(lo.disk.product) > 16) ||
        (lo.disk.serial && strlen(lo.disk.serial) > 36)) {
        snprintf(err, errlen, "vendor= is at most 8 characters, product= 16, serial= 36");
        return -EINVAL;
    }
    if (wwn_s) {
        char *end;

        errno = 0;
        wwn = strtoull(wwn_s, &end, 16);
        if (strncmp(wwn_s, "0x", 2) != 0 || errno || *end || (wwn >> 60) != 6) {
            snprintf(err, errlen, "wwn=%s: expected an NAA 6 identifier like 0x6001405...",
                     wwn_s);
            return -EINVAL;
        }
    }
    if ((ret = vio_opts_check_unused(o, err, errlen)) < 0)
        return ret;
    bo.block_size = (uint32_t)blksize;
    ret = vio_bdev_open(&bo, &bdev);
    if (ret < 0) {
        snprintf(err, errlen, "cannot open %s: %s", bo.path, strerror(-ret));
        return ret;
    }
    snprintf(id, sizeof(id), "%s-%u-%u", d->id, (unsigned)target, (unsigned)lun);
    lo.target = (uint16_t)target;
    lo.lun = (uint16_t)lun;
    lo.disk.id = id;
    lo.disk.naa = wwn;
    return vio_scsi_hba_add_lun(d, &lo, bdev, err, errlen);
}
