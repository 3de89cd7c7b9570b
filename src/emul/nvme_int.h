/* NVMe controller internals shared by nvme.c (registers, admin commands,
 * queue life cycle, PCI function) and nvme_io.c (PRPs, I/O commands and
 * the queue engine on worker loops). Names and values follow the NVMe 1.4
 * base specification; nothing here is for other users. */
#ifndef VIO_EMUL_NVME_INT_H
#define VIO_EMUL_NVME_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/log.h"
#include "emul/nvme.h"
#include "vmm/msix.h"

#define NVME_PAGE     4096u /* CAP.MPSMIN = MPSMAX = 0 */
#define NVME_MAX_XFER (NVME_PAGE << VIO_NVME_MDTS)
/* A transfer that starts mid-page touches one page more; region splits
 * may add a few. */
#define NVME_MAX_IOV   (NVME_MAX_XFER / NVME_PAGE + 4)
#define NVME_SQES      64
#define NVME_CQES      16
#define NVME_AERL      3    /* 0's based: 4 outstanding AERs */
#define NVME_ADMIN_MAX 4096 /* AQA: 12-bit 0's based sizes */
#define NVME_DSM_MAX   256  /* ranges per Dataset Management command */
#define NVME_NO_SLOT   0xffff

/* Status values: (SCT << 8) | SC. */
enum {
    NVME_SC_SUCCESS = 0x000,
    NVME_SC_INVALID_OPCODE = 0x001,
    NVME_SC_INVALID_FIELD = 0x002,
    NVME_SC_DATA_XFER_ERROR = 0x004,
    NVME_SC_INTERNAL = 0x006,
    NVME_SC_ABORT_SQ_DELETED = 0x008,
    NVME_SC_INVALID_NS = 0x00b,
    NVME_SC_CMD_SEQ_ERROR = 0x00c,
    NVME_SC_PRP_OFFSET_INVALID = 0x013,
    NVME_SC_NS_WRITE_PROTECTED = 0x020,
    NVME_SC_LBA_RANGE = 0x080,
    NVME_SC_CQ_INVALID = 0x100,
    NVME_SC_QID_INVALID = 0x101,
    NVME_SC_QSIZE_INVALID = 0x102,
    NVME_SC_AER_LIMIT = 0x105,
    NVME_SC_INVALID_VECTOR = 0x108,
    NVME_SC_INVALID_LOG_PAGE = 0x109,
    NVME_SC_INVALID_QUEUE_DELETION = 0x10c,
    NVME_SC_FEAT_NOT_SAVEABLE = 0x10d,
    NVME_SC_WRITE_FAULT = 0x280,
    NVME_SC_UNRECOVERED_READ = 0x281,
};

/* Admin opcodes. */
enum {
    NVME_ADM_DELETE_SQ = 0x00,
    NVME_ADM_CREATE_SQ = 0x01,
    NVME_ADM_GET_LOG = 0x02,
    NVME_ADM_DELETE_CQ = 0x04,
    NVME_ADM_CREATE_CQ = 0x05,
    NVME_ADM_IDENTIFY = 0x06,
    NVME_ADM_ABORT = 0x08,
    NVME_ADM_SET_FEATURES = 0x09,
    NVME_ADM_GET_FEATURES = 0x0a,
    NVME_ADM_AER = 0x0c,
    NVME_ADM_KEEP_ALIVE = 0x18,
    NVME_ADM_DBBUF = 0x7c,
};

/* NVM command set opcodes. */
enum {
    NVME_CMD_FLUSH = 0x00,
    NVME_CMD_WRITE = 0x01,
    NVME_CMD_READ = 0x02,
    NVME_CMD_WRITE_ZEROES = 0x08,
    NVME_CMD_DSM = 0x09,
};

/* A submission queue entry, converted from little-endian once. */
struct nvme_cmd {
    uint8_t opc, fuse, psdt;
    uint16_t cid;
    uint32_t nsid;
    uint64_t prp1, prp2;
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};

struct nvme_ns {
    struct vio_bdev *bdev;
    uint64_t nlba;  /* blocks */
    unsigned lbads; /* log2 of the block size */
};

struct nvme_sq;

struct nvme_req {
    struct vio_bio bio;
    struct nvme_sq *sq;
    unsigned nsi; /* namespace index */
    uint16_t cid;
    uint16_t next_free;
    uint8_t opc;
    bool fua;
    /* Dataset Management: ranges still to deallocate, read one at a time
     * from the guest's list (iov). */
    uint16_t dsm_next, dsm_nr;
    uint16_t niov;
    struct iovec iov[NVME_MAX_IOV];
};

struct nvme_cq {
    struct vio_nvme *n;
    uint16_t qid, size, vector;
    bool ien;
    uint8_t *ring;         /* size * 16 bytes of guest memory */
    struct vio_loop *loop; /* I/O CQs: the worker that posts to it */
    /* Owner only (the worker; for the admin CQ the controller lock). */
    uint16_t tail;
    uint8_t phase;
    unsigned reserved; /* commands fetched, not yet posted */
    bool irq_pending;
    struct nvme_sq *sqs; /* bound SQs, linked through cq_next */
    /* Written by the head doorbell. */
    _Atomic uint16_t head;
    atomic_bool stalled; /* an SQ waits for room */
    int efd;             /* wakes the stalled SQs */
    struct vio_handler h;
    unsigned nsq; /* SQs bound (controller lock) */
    /* Shadow doorbell and event index (Doorbell Buffer Config), or NULL;
     * set on the worker. */
    uint8_t *db_shadow, *ei_shadow;
    uint16_t shadow_head; /* last valid head read from the shadow */
    bool ioeventfd;       /* the head doorbell is a KVM ioeventfd (lock) */
};

struct nvme_sq {
    struct vio_nvme *n;
    struct nvme_cq *cq;
    uint16_t qid, size;
    uint8_t *ring;         /* size * 64 bytes of guest memory */
    _Atomic uint16_t tail; /* written by the tail doorbell */
    int efd;
    struct vio_handler h;
    /* Worker only. */
    uint16_t head;
    struct vio_bq *bq[VIO_NVME_MAX_NS];
    bool need_kick[VIO_NVME_MAX_NS];
    struct nvme_req *reqs; /* [size] */
    uint16_t free_head;
    unsigned inflight;
    bool in_run, again, stopping;
    struct vio_call *drain_call;
    struct nvme_sq *cq_next;
    struct vio_ratelimit rl;
    uint8_t *db_shadow, *ei_shadow; /* as in nvme_cq */
    bool ioeventfd;
};

struct vio_nvme {
    char id[32];
    char serial[VIO_NVME_SERIAL_LEN + 1];
    const struct vio_gmem *mem;
    vio_nvme_irq_fn irq;
    void *irq_opaque;
    struct nvme_ns ns[VIO_NVME_MAX_NS];
    unsigned nns;
    struct vio_loop *loops[VIO_NVME_MAX_IOQ];
    unsigned nloops;
    unsigned max_ioq;

    /* Registers, the admin queue pair, features, AERs; taken by admin
     * commands and register accesses (vCPU threads). */
    pthread_mutex_t lock;
    uint32_t cc, csts, aqa, intms;
    uint64_t asq, acq;
    bool admin_ok; /* enabled with a usable admin queue pair */
    struct nvme_sq asq_q;
    struct nvme_cq acq_q;
    uint16_t asq_tail;
    bool nq_set;     /* Number of Queues may be set once */
    bool io_created; /* an I/O queue was created since reset */
    uint32_t feat_arb, feat_pm, feat_tmpth, feat_err, feat_coal, feat_wa, feat_aec;
    uint32_t feat_ivc[VIO_NVME_MAX_IOQ + 1];
    uint16_t aer_cid[NVME_AERL + 1];
    unsigned naer;
    uint32_t aen_queue[8]; /* events waiting for an AER */
    unsigned naen;
    bool err_masked; /* until the host reads the error log */
    uint64_t err_count;
    uint8_t err_entry[64];
    struct vio_ratelimit rl;

    /* I/O queue tables: read-locked by doorbell writes, write-locked while
     * a queue is added or removed (under the controller lock). */
    pthread_rwlock_t qlock;
    struct nvme_sq *sq[VIO_NVME_MAX_IOQ + 1];
    struct nvme_cq *cq[VIO_NVME_MAX_IOQ + 1];

    atomic_bool vwc; /* volatile write cache enabled */
    /* Doorbell Buffer Config: host pages of shadow doorbells and event
     * indexes for the I/O queues, or NULL (lock). */
    uint8_t *dbs, *eis;
    struct {
        vio_counter_t admin_cmds, io_cmds, read_bytes, write_bytes, reads, writes;
        vio_counter_t errors, bad_doorbell;
    } st;

    /* PCI function (vio run). */
    struct vio_vm *vm;
    uint64_t bar0;
    bool bar0_mapped;
    struct vio_pci_dev pdev;
    struct vio_msix msix;
    bool on_pci, msix_ok;
};

/* Controller counters are shared by every worker: atomic adds. */
static inline void nvme_count(vio_counter_t *c, uint64_t v)
{
    vio_counter_add_shared(c, v);
}

/* nvme_io.c */

/* Map a transfer of @len bytes (at most NVME_MAX_XFER) described by @prp1
 * and @prp2 into @iov (NVME_MAX_IOV entries). Returns NVME_SC_SUCCESS,
 * NVME_SC_PRP_OFFSET_INVALID for a misaligned entry or list pointer, or
 * NVME_SC_DATA_XFER_ERROR for memory outside guest RAM. */
unsigned nvme_map_prp(const struct vio_gmem *mem, uint64_t prp1, uint64_t prp2, uint64_t len,
                      struct iovec *iov, uint16_t *niov);
/* Decode the 64-byte SQ entry at @p. */
void nvme_cmd_decode(const uint8_t *p, struct nvme_cmd *c);
/* Post a completion to @cq (its owner's thread; never when full). */
void nvme_cq_post(struct nvme_cq *cq, uint32_t dw0, uint16_t sqid, uint16_t sqhd, uint16_t cid,
                  unsigned status);
/* Free entries of @cq (its owner's thread). */
unsigned nvme_cq_room(struct nvme_cq *cq);
/* Raise @cq's vector if a completion was posted since the last call. */
void nvme_cq_notify(struct nvme_cq *cq);

/* Worker side of an I/O SQ: set up (backend queues, kick handler, bound to
 * its CQ), stop (no more fetching, in-flight commands finish first) and
 * release. Run on the queue's loop through vio_loop_call (see nvme.c). */
int nvme_sq_start(struct nvme_sq *sq);
void nvme_sq_stop_begin(struct vio_call *c);
void nvme_sq_stop_finish(struct nvme_sq *sq);
int nvme_cq_start(struct nvme_cq *cq);
void nvme_cq_stop(struct nvme_cq *cq);
/* On the queue's loop: start using shadow doorbell @db and event index
 * @ei (host pointers into the Doorbell Buffer Config pages). */
void nvme_sq_set_shadow(struct nvme_sq *sq, uint8_t *db, uint8_t *ei);
void nvme_cq_set_shadow(struct nvme_cq *cq, uint8_t *db, uint8_t *ei);

#endif
