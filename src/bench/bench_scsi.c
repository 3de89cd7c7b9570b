/* vio bench scsi: a virtio-scsi driver in this process, over vhost-user
 * (VIRTIO 1.2, 5.6). It sets up the control, event and request queues, asks
 * the LUN its capacity (READ CAPACITY), then runs the shared engine's
 * workloads (bench_disk.c) as READ/WRITE(10) CDBs, or (16) past their
 * reach. Any command with a virtio response or a SCSI status other than
 * GOOD fails the run and is reported with its sense key and ASC/ASCQ. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/bench_disk.h"
#include "core/util.h"

#define SCSI_CTRL_Q  0
#define SCSI_EVENT_Q 1
#define SCSI_REQ_Q0  2

#define REQ_HDR       19 /* lun[8] tag[8] task_attr prio crn, then the CDB */
#define RESP_HDR      12 /* sense_len resid status_qualifier status response */
#define CDB_DEFAULT   32
#define SENSE_DEFAULT 96
#define CDB_MAX       256
#define SENSE_MAX     256

#define ST_GOOD            0x00
#define ST_CHECK_CONDITION 0x02
#define KEY_UNIT_ATTENTION 0x6
#define KEY_ILLEGAL        0x5

/* virtio_scsi_config, the fields we read (VIRTIO 1.2, 5.6.4). */
#define CFG_NUM_QUEUES 0
#define CFG_SENSE_SIZE 20
#define CFG_CDB_SIZE   24

struct scsi_priv {
    uint32_t cdb_size, sense_size;
    /* one buffer set for the commands before the run */
    uint8_t *hdr, *resp, *data;
    uint64_t hdr_gpa, resp_gpa, data_gpa;
};

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    put_be16(p, (uint16_t)(v >> 16));
    put_be16(p + 2, (uint16_t)v);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *response_name(uint8_t r)
{
    static const char *const names[] = {
        "OK",   "OVERRUN",           "ABORTED",        "BAD_TARGET",    "RESET",
        "BUSY", "TRANSPORT_FAILURE", "TARGET_FAILURE", "NEXUS_FAILURE", "FAILURE"};
    return r < VIO_ARRAY_SIZE(names) ? names[r] : "unknown";
}

static const char *status_name(uint8_t s)
{
    switch (s) {
    case 0x00:
        return "GOOD";
    case 0x02:
        return "CHECK CONDITION";
    case 0x08:
        return "BUSY";
    case 0x18:
        return "RESERVATION CONFLICT";
    case 0x28:
        return "TASK SET FULL";
    case 0x30:
        return "ACA ACTIVE";
    case 0x40:
        return "TASK ABORTED";
    default:
        return "unknown";
    }
}

static const char *key_name(uint8_t k)
{
    static const char *const names[] = {
        "NO SENSE",       "RECOVERED ERROR", "NOT READY",      "MEDIUM ERROR",
        "HARDWARE ERROR", "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
        "BLANK CHECK",    "VENDOR SPECIFIC", "COPY ABORTED",   "ABORTED COMMAND",
        "reserved",       "VOLUME OVERFLOW", "MISCOMPARE",     "COMPLETED"};
    return names[k & 0xf];
}

/* A few additional sense codes worth naming (SPC-4 Annex D). */
static const char *asc_name(uint8_t asc, uint8_t ascq)
{
    switch (asc) {
    case 0x04:
        return "logical unit not ready";
    case 0x0c:
        return "write error";
    case 0x11:
        return "unrecovered read error";
    case 0x20:
        return "invalid command operation code";
    case 0x21:
        return "logical block address out of range";
    case 0x24:
        return "invalid field in CDB";
    case 0x25:
        return "logical unit not supported";
    case 0x27:
        return "write protected";
    case 0x29:
        return "power on, reset, or bus device reset occurred";
    case 0x2a:
        return ascq == 0x09 ? "capacity data has changed" : "parameters changed";
    case 0x3f:
        return ascq == 0x0e ? "reported LUNs data has changed"
                            : "target operating conditions changed";
    case 0x44:
        return "internal target failure";
    default:
        return NULL;
    }
}

/* Sense key, ASC and ASCQ from fixed (0x70/0x71) or descriptor (0x72/0x73)
 * sense data; false when there is none. */
static bool sense_fields(const uint8_t *s, uint32_t len, uint8_t *key, uint8_t *asc, uint8_t *ascq)
{
    uint8_t code = len ? s[0] & 0x7f : 0;

    if ((code == 0x70 || code == 0x71) && len >= 14) {
        *key = s[2] & 0xf;
        *asc = s[12];
        *ascq = s[13];
        return true;
    }
    if ((code == 0x72 || code == 0x73) && len >= 4) {
        *key = s[1] & 0xf;
        *asc = s[2];
        *ascq = s[3];
        return true;
    }
    return false;
}

/* What went wrong with a command, for the callers that act on it. */
struct scsi_err {
    uint8_t response; /* virtio-scsi response, 0 OK */
    uint8_t key;      /* sense key, 0xff: none */
    uint8_t asc, ascq;
};

/* Judge a response: 0 when the command succeeded and moved @want bytes,
 * else -EIO with @why and *@e. */
static int judge(const struct scsi_priv *p, const uint8_t *resp, uint32_t used_len, uint32_t want,
                 char *why, size_t n, struct scsi_err *e)
{
    uint32_t sense_len, resid;
    uint8_t status = resp[10], response = resp[11], key, asc, ascq;

    *e = (struct scsi_err){.response = 0, .key = 0xff};
    if (used_len < RESP_HDR) {
        snprintf(why, n, "the device used only %u bytes (a response has %u)", used_len,
                 RESP_HDR + p->sense_size);
        return -EIO;
    }
    memcpy(&sense_len, resp, 4);
    memcpy(&resid, resp + 4, 4);
    sense_len = vio_le32(sense_len);
    resid = vio_le32(resid);
    if (response != 0) {
        e->response = response;
        snprintf(why, n, "virtio-scsi response %s (%u)%s", response_name(response), response,
                 response == 3 ? ": no such target" : "");
        return -EIO;
    }
    if (status != ST_GOOD) {
        int k = snprintf(why, n, "SCSI status %s (0x%02x)", status_name(status), status);
        if (sense_len > p->sense_size)
            sense_len = p->sense_size;
        if (status == ST_CHECK_CONDITION && k > 0 && (size_t)k < n &&
            sense_fields(resp + RESP_HDR, sense_len, &key, &asc, &ascq)) {
            const char *a = asc_name(asc, ascq);
            e->key = key;
            e->asc = asc;
            e->ascq = ascq;
            snprintf(why + k, n - (size_t)k, ", sense key %s (0x%x), ASC/ASCQ 0x%02x/0x%02x%s%s",
                     key_name(key), key, asc, ascq, a ? ": " : "", a ? a : "");
        } else if (status == ST_CHECK_CONDITION && k > 0 && (size_t)k < n) {
            snprintf(why + k, n - (size_t)k, ", no sense data");
        }
        return -EIO;
    }
    if (resid != 0) {
        snprintf(why, n, "short transfer: %u of %u bytes not moved (residual)", resid, want);
        return -EIO;
    }
    return 0;
}

static void put_lun(uint8_t *hdr, unsigned target, unsigned lun)
{
    memset(hdr, 0, 8);
    hdr[0] = 1;
    hdr[1] = (uint8_t)target;
    hdr[2] = (uint8_t)(lun < 256 ? 0 : 0x40 | (lun >> 8));
    hdr[3] = (uint8_t)lun;
}

/* Request header for @cdb (the rest of the CDB field is zero). */
static void put_hdr(const struct scsi_priv *p, uint8_t *hdr, const struct bench_disk_cfg *c,
                    uint64_t tag)
{
    uint64_t t = vio_to_le64(tag);

    memset(hdr, 0, REQ_HDR + p->cdb_size);
    put_lun(hdr, c->target, c->lun);
    memcpy(hdr + 8, &t, 8);
    /* task_attr 0 (SIMPLE), prio 0, crn 0 */
}

/* One command before the run, on the first request queue: wait for it (at
 * most 10 s, so a back-end that never answers is an error, not a hang). */
static int sync_cmd(const struct bench_disk_cfg *c, struct bench_disk_dev *dev, const uint8_t *cdb,
                    unsigned cdb_len, uint32_t in_len, char *why, size_t n, struct scsi_err *e)
{
    struct scsi_priv *p = dev->priv;
    struct vio_vuser_vq *q = vio_vuser_vq(dev->d, dev->first_q);
    struct vio_vuser_buf b[3] = {{p->hdr_gpa, REQ_HDR + p->cdb_size},
                                 {p->resp_gpa, RESP_HDR + p->sense_size},
                                 {p->data_gpa, in_len}};
    uint64_t deadline = vio_now_ns() + 10ull * 1000000000ull;
    uint32_t len;
    void *cookie;
    int ret;

    *e = (struct scsi_err){.key = 0xff};
    put_hdr(p, p->hdr, c, 0);
    memcpy(p->hdr + REQ_HDR, cdb, cdb_len);
    memset(p->resp, 0xff, RESP_HDR + p->sense_size);
    ret = vio_vuser_add(q, b, 1, in_len ? 2 : 1, p);
    if (ret < 0) {
        snprintf(why, n, "cannot queue the command: %s", strerror(-ret));
        return ret;
    }
    vio_vuser_kick(q);
    while ((ret = vio_vuser_get(q, &len, &cookie)) == 0) {
        if (vio_now_ns() >= deadline) {
            snprintf(why, n, "no answer in 10 s");
            return -ETIMEDOUT;
        }
        /* The back-end closing the connection ends the wait too. */
        struct pollfd pf = {.fd = vio_vuser_fd(dev->d), .events = POLLIN};
        if (poll(&pf, 1, 0) > 0) {
            snprintf(why, n, "the back-end closed the connection");
            return -ECONNRESET;
        }
        ret = vio_vuser_wait(q, 100);
        if (ret < 0) {
            snprintf(why, n, "waiting: %s", strerror(-ret));
            return ret;
        }
    }
    if (ret < 0) {
        snprintf(why, n, "bad completion");
        return ret;
    }
    return judge(p, p->resp, len, in_len, why, n, e);
}

/* The LUN's size and block length: READ CAPACITY(16), or (10) where (16)
 * is not supported. A pending UNIT ATTENTION (a real target's first answer
 * after a reset) is cleared by asking again. */
static int read_capacity(const struct bench_disk_cfg *c, struct bench_disk_dev *dev, char *why,
                         size_t n, struct scsi_err *e)
{
    struct scsi_priv *p = dev->priv;
    uint8_t cdb16[16] = {0x9e, 0x10}, cdb10[10] = {0x25};
    bool use16 = true;
    int ret = -EIO;

    put_be32(cdb16 + 10, 32);
    for (int tries = 0; tries < 4; tries++) {
        memset(p->data, 0, 32);
        if (use16)
            ret = sync_cmd(c, dev, cdb16, sizeof(cdb16), 32, why, n, e);
        else
            ret = sync_cmd(c, dev, cdb10, sizeof(cdb10), 8, why, n, e);
        if (ret == 0)
            break;
        if (e->key == KEY_UNIT_ATTENTION)
            continue;
        if (e->key == KEY_ILLEGAL && use16 && (e->asc == 0x20 || e->asc == 0x24)) {
            use16 = false; /* invalid opcode or field: try (10) */
            continue;
        }
        return ret;
    }
    if (ret < 0)
        return ret;
    uint64_t last;
    uint32_t blen;
    if (use16) {
        last = (uint64_t)be32(p->data) << 32 | be32(p->data + 4);
        blen = be32(p->data + 8);
    } else {
        last = be32(p->data);
        blen = be32(p->data + 4);
    }
    if (blen < 512 || blen > (1u << 20) || (blen & (blen - 1))) {
        snprintf(why, n, "READ CAPACITY reports a block length of %u bytes", blen);
        return -EIO;
    }
    dev->block = blen;
    dev->size = (last + 1) * blen;
    return 0;
}

static int scsi_open(const struct bench_disk_cfg *c, struct vio_vuser_opts *vo,
                     struct bench_disk_dev *dev)
{
    struct scsi_priv *p;
    uint32_t v;
    char why[256];
    struct scsi_err e;
    int ret;

    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    dev->priv = p;
    /* No hotplug or INOUT: the event queue is set up but never filled. */
    vo->want_features = 0;
    ret = vio_vuser_open(vo, &dev->d);
    if (ret < 0) {
        if (ret == -EINVAL)
            fprintf(stderr,
                    "vio bench scsi: %s: cannot set up the control, event and %u "
                    "request queues: --queues %u needs a controller with at least %u "
                    "(queues=N of vio serve --scsi)\n",
                    c->sock, c->queues, c->queues, c->queues);
        else
            fprintf(stderr, "vio bench scsi: %s: %s\n", c->sock, strerror(-ret));
        goto fail;
    }
    dev->first_q = SCSI_REQ_Q0;
    dev->resp_first = true;
    p->cdb_size = CDB_DEFAULT;
    p->sense_size = SENSE_DEFAULT;
    /* The device's current sizes (a back-end without the CONFIG protocol
     * feature has the defaults of a reset device). */
    if (vio_vuser_get_config(dev->d, CFG_NUM_QUEUES, &v, 4) == 0 && vio_le32(v) < c->queues) {
        fprintf(stderr,
                "vio bench scsi: --queues %u, but the controller has %u request "
                "queues\n",
                c->queues, vio_le32(v));
        ret = -EINVAL;
        goto fail;
    }
    if (vio_vuser_get_config(dev->d, CFG_CDB_SIZE, &v, 4) == 0) {
        v = vio_le32(v);
        if (v < 16 || v > CDB_MAX) {
            fprintf(stderr, "vio bench scsi: the controller's cdb_size %u is not 16..%u\n", v,
                    CDB_MAX);
            ret = -EPROTO;
            goto fail;
        }
        p->cdb_size = v;
    }
    if (vio_vuser_get_config(dev->d, CFG_SENSE_SIZE, &v, 4) == 0) {
        v = vio_le32(v);
        if (v > SENSE_MAX) {
            fprintf(stderr, "vio bench scsi: the controller's sense_size %u is over %u\n", v,
                    SENSE_MAX);
            ret = -EPROTO;
            goto fail;
        }
        p->sense_size = v;
    }
    dev->hdr_len = REQ_HDR + p->cdb_size;
    dev->resp_len = RESP_HDR + p->sense_size;
    p->hdr = vio_vuser_alloc(dev->d, dev->hdr_len, 64, &p->hdr_gpa);
    p->resp = vio_vuser_alloc(dev->d, dev->resp_len, 64, &p->resp_gpa);
    p->data = vio_vuser_alloc(dev->d, 4096, 4096, &p->data_gpa);
    if (!p->hdr || !p->resp || !p->data) {
        fprintf(stderr, "vio bench scsi: out of shared memory\n");
        ret = -ENOMEM;
        goto fail;
    }
    ret = read_capacity(c, dev, why, sizeof(why), &e);
    if (ret < 0) {
        fprintf(stderr, "vio bench scsi: %s: target %u LUN %u: READ CAPACITY failed: %s\n", c->sock,
                c->target, c->lun, why);
        if (e.response == 3 || (e.key == KEY_ILLEGAL && e.asc == 0x25))
            fprintf(stderr,
                    "vio bench scsi: no such %s on the controller: give the "
                    "--target and --lun of one of its LUNs (vio ctl luns)\n",
                    e.response == 3 ? "target" : "LUN");
        goto fail;
    }
    return 0;
fail:
    vio_vuser_close(dev->d);
    dev->d = NULL;
    free(p);
    dev->priv = NULL;
    return ret;
}

static void scsi_close(struct bench_disk_dev *dev)
{
    vio_vuser_close(dev->d);
    free(dev->priv);
}

static void scsi_prep(const struct bench_disk_cfg *c, const struct bench_disk_dev *dev,
                      struct bench_disk_req *r)
{
    const struct scsi_priv *p = dev->priv;
    uint8_t *h = r->hdr, *cdb = h + REQ_HDR;
    uint64_t lba = r->off / dev->block;
    uint32_t nblk = c->bs / dev->block;

    put_hdr(p, h, c, r->id);
    if (lba <= UINT32_MAX && nblk <= UINT16_MAX) {
        cdb[0] = r->write ? 0x2a : 0x28; /* WRITE(10), READ(10) */
        put_be32(cdb + 2, (uint32_t)lba);
        put_be16(cdb + 7, (uint16_t)nblk);
    } else {
        cdb[0] = r->write ? 0x8a : 0x88; /* WRITE(16), READ(16) */
        put_be32(cdb + 2, (uint32_t)(lba >> 32));
        put_be32(cdb + 6, (uint32_t)lba);
        put_be32(cdb + 10, nblk);
    }
    /* Not what a device would write: a response it never wrote is an error. */
    memset(r->resp, 0xff, RESP_HDR);
}

static int scsi_check(const struct bench_disk_cfg *c, const struct bench_disk_dev *dev,
                      const struct bench_disk_req *r, uint32_t len, char *why, size_t n)
{
    struct scsi_err e;

    return judge(dev->priv, r->resp, len, c->bs, why, n, &e);
}

static const struct bench_disk_ops scsi_ops = {
    .name = "scsi",
    .what = "virtio-scsi driver of the vhost-user-scsi controller",
    .extra_queues = SCSI_REQ_Q0,
    .addr_opts = true,
    .open = scsi_open,
    .prep = scsi_prep,
    .check = scsi_check,
    .close = scsi_close,
};

int vio_bench_scsi_main(int argc, char **argv)
{
    return bench_disk_main(argc, argv, &scsi_ops);
}
