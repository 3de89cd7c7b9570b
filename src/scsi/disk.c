/* SCSI disk LUN emulation (see disk.h). CDB fields are read with explicit
 * big-endian helpers and checked against the capacity and the buffers
 * before any backend I/O; replies are built in a local buffer and copied
 * into the initiator's data-in buffers up to the allocation length. */
#include "scsi/disk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* Additional sense codes (ASC, ASCQ). */
#define ASC_NONE                0x00, 0x00
#define ASC_NOT_READY_INIT_REQ  0x04, 0x02
#define ASC_COMM_FAILURE        0x08, 0x00
#define ASC_WRITE_ERROR         0x0c, 0x00
#define ASC_READ_ERROR          0x11, 0x00
#define ASC_PARAM_LIST_LENGTH   0x1a, 0x00
#define ASC_INVALID_OPCODE      0x20, 0x00
#define ASC_LBA_OUT_OF_RANGE    0x21, 0x00
#define ASC_INVALID_FIELD_CDB   0x24, 0x00
#define ASC_LUN_NOT_SUPPORTED   0x25, 0x00
#define ASC_INVALID_FIELD_PARAM 0x26, 0x00
#define ASC_WRITE_PROTECTED     0x27, 0x00
#define ASC_SAVING_NOT_SUPP     0x39, 0x00

#define REPLY_MAX 512

struct vio_scsi_disk {
    struct vio_bdev *bdev;
    char vendor[9], product[17], revision[5], serial[37], id[64];
    uint64_t naa;
    uint32_t bs;
    uint64_t nblocks;
    bool stopped; /* START STOP UNIT; __atomic builtins */
    struct vio_scsi_disk_stats st;
};

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* Space-padded, not NUL-terminated (SPC-4 4.4.1). */
static void put_ascii(uint8_t *p, const char *s, size_t n)
{
    size_t l = strlen(s);

    memset(p, ' ', n);
    memcpy(p, s, l < n ? l : n);
}

static void ascii_field(char *dst, size_t size, const char *src, const char *def)
{
    const char *s = src && *src ? src : def;
    size_t i, j = 0;

    /* Printable ASCII only (SPC-4 4.4.1); anything else becomes '_'. */
    for (i = 0; s[i] && j + 1 < size; i++)
        dst[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '_';
    dst[j] = '\0';
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

int vio_scsi_disk_create(const struct vio_scsi_disk_cfg *cfg, struct vio_bdev *bdev,
                         struct vio_scsi_disk **out)
{
    struct vio_scsi_disk *d;
    char defserial[37];

    if (!bdev || bdev->block_size < 512 || !vio_is_pow2(bdev->block_size) ||
        bdev->size < bdev->block_size)
        return -EINVAL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->bdev = bdev;
    d->bs = bdev->block_size;
    d->nblocks = bdev->size / bdev->block_size;
    ascii_field(d->id, sizeof(d->id), cfg->id, "lun");
    snprintf(defserial, sizeof(defserial), "VIO%016llx", (unsigned long long)fnv1a(d->id));
    ascii_field(d->vendor, sizeof(d->vendor), cfg->vendor, "VIO");
    ascii_field(d->product, sizeof(d->product), cfg->product, "VIRTUAL-DISK");
    ascii_field(d->revision, sizeof(d->revision), cfg->revision, VIO_VERSION);
    ascii_field(d->serial, sizeof(d->serial), cfg->serial, defserial);
    /* NAA 6 (IEEE registered extended) with a locally made-up identity. */
    d->naa = cfg->naa ? cfg->naa : (0x6ull << 60) | (fnv1a(d->serial) & 0x0fffffffffffffffull);
    *out = d;
    return 0;
}

void vio_scsi_disk_free(struct vio_scsi_disk *d)
{
    free(d);
}

const struct vio_scsi_disk_stats *vio_scsi_disk_stats(const struct vio_scsi_disk *d)
{
    return &d->st;
}

void vio_scsi_set_sense(struct vio_scsi_cmd *c, uint8_t key, uint8_t asc, uint8_t ascq)
{
    memset(c->sense, 0, sizeof(c->sense));
    c->sense[0] = 0x70; /* current error, fixed format */
    c->sense[2] = key & 0x0f;
    c->sense[7] = VIO_SCSI_SENSE_LEN - 8;
    c->sense[12] = asc;
    c->sense[13] = ascq;
    c->sense_len = VIO_SCSI_SENSE_LEN;
    c->status = VIO_SCSI_CHECK_CONDITION;
}

static int fail(struct vio_scsi_disk *d, struct vio_scsi_cmd *c, uint8_t key, uint8_t asc,
                uint8_t ascq)
{
    if (d)
        vio_counter_add_shared(&d->st.check_conditions, 1);
    vio_scsi_set_sense(c, key, asc, ascq);
    c->residual = c->data_len;
    return 0;
}

static int good(struct vio_scsi_cmd *c, size_t transferred)
{
    c->status = VIO_SCSI_GOOD;
    c->sense_len = 0;
    c->residual = c->data_len - transferred;
    return 0;
}

/* Copy @len bytes of @buf into the data-in buffers; returns bytes copied. */
static size_t to_iov(struct vio_scsi_cmd *c, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t done = 0;

    if (!c->data_in)
        return 0;
    for (unsigned i = 0; i < c->iovcnt && done < len; i++) {
        size_t n = c->iov[i].iov_len < len - done ? c->iov[i].iov_len : len - done;
        memcpy(c->iov[i].iov_base, p + done, n);
        done += n;
    }
    return done;
}

/* Copy up to @len bytes of the data-out buffers into @buf. */
static size_t from_iov(const struct vio_scsi_cmd *c, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t done = 0;

    if (c->data_in)
        return 0;
    for (unsigned i = 0; i < c->iovcnt && done < len; i++) {
        size_t n = c->iov[i].iov_len < len - done ? c->iov[i].iov_len : len - done;
        memcpy(p + done, c->iov[i].iov_base, n);
        done += n;
    }
    return done;
}

/* Reply @len bytes of @buf, cut to the allocation length @alloc. */
static int reply(struct vio_scsi_cmd *c, const void *buf, size_t len, size_t alloc)
{
    return good(c, to_iov(c, buf, len < alloc ? len : alloc));
}

static unsigned cdb_size(uint8_t op)
{
    switch (op >> 5) {
    case 0:
        return 6;
    case 1:
    case 2:
        return 10;
    case 4:
        return 16;
    case 5:
        return 12;
    default:
        return 0; /* reserved or vendor-specific groups */
    }
}

/* ---- INQUIRY ---- */

static size_t vpd_page(struct vio_scsi_disk *d, uint8_t page, uint8_t *r)
{
    size_t n;

    r[0] = 0x00; /* direct-access block device */
    r[1] = page;
    switch (page) {
    case 0x00: {
        static const uint8_t pages[] = {0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2};
        memcpy(r + 4, pages, sizeof(pages));
        n = sizeof(pages);
        break;
    }
    case 0x80:
        n = strlen(d->serial);
        memcpy(r + 4, d->serial, n);
        break;
    case 0x83: {
        uint8_t *p = r + 4;
        /* NAA, binary, associated with the LUN. */
        p[0] = 0x01;
        p[1] = 0x03;
        p[3] = 8;
        put64(p + 4, d->naa);
        p += 12;
        /* T10 vendor identification, ASCII: vendor then serial. */
        size_t sl = strlen(d->serial);
        p[0] = 0x02;
        p[1] = 0x01;
        p[3] = (uint8_t)(8 + sl);
        put_ascii(p + 4, d->vendor, 8);
        memcpy(p + 12, d->serial, sl);
        p += 12 + sl;
        n = (size_t)(p - (r + 4));
        break;
    }
    case 0xb0: {
        /* Block limits. */
        memset(r + 4, 0, 0x3c);
        r[4] = 0x01;                            /* WSNZ: WRITE SAME of 0 blocks is refused */
        put32(r + 8, (uint32_t)((4u << 20) / d->bs));  /* maximum transfer length */
        put32(r + 12, (uint32_t)((128u << 10) / d->bs)); /* optimal transfer length */
        if (d->bdev->can_discard) {
            put32(r + 20, 0xffffffffu);         /* maximum unmap LBA count */
            put32(r + 24, VIO_SCSI_MAX_UNMAP);  /* maximum unmap descriptors */
            put32(r + 28, 1);                   /* optimal unmap granularity */
        }
        put64(r + 36, 0xffffffffull);           /* maximum WRITE SAME length */
        n = 0x3c;
        break;
    }
    case 0xb1:
        /* Block device characteristics: not rotating, form factor unknown. */
        memset(r + 4, 0, 0x3c);
        put16(r + 4, 0x0001);
        n = 0x3c;
        break;
    case 0xb2:
        /* Logical block provisioning: UNMAP and WRITE SAME(16) with UNMAP
         * when the backend can deallocate; deallocated blocks read zero. */
        memset(r + 4, 0, 4);
        if (d->bdev->can_discard) {
            r[5] = 0x80 | 0x40 | 0x04; /* LBPU, LBPWS, LBPRZ */
            r[6] = 0x02;               /* thin provisioned */
        }
        n = 4;
        break;
    default:
        return 0;
    }
    put16(r + 2, (uint16_t)n);
    return n + 4;
}

static int inquiry(struct vio_scsi_disk *d, struct vio_scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    uint8_t r[REPLY_MAX];
    size_t alloc = be16(cdb + 3), n;

    memset(r, 0, sizeof(r));
    if (cdb[1] & 0x01) {
        n = vpd_page(d, cdb[2], r);
        if (!n)
            return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return reply(c, r, n, alloc);
    }
    if (cdb[2] != 0 || (cdb[1] & 0xfe))
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
    r[0] = 0x00;        /* connected direct-access block device */
    r[2] = 0x06;        /* SPC-4 */
    r[3] = 0x12;        /* HiSup, response data format 2 */
    r[4] = 36 - 5;      /* additional length */
    r[7] = 0x02;        /* CmdQue */
    put_ascii(r + 8, d->vendor, 8);
    put_ascii(r + 16, d->product, 16);
    put_ascii(r + 32, d->revision, 4);
    return reply(c, r, 36, alloc);
}

/* ---- MODE SENSE ---- */

static size_t mode_pages(struct vio_scsi_disk *d, uint8_t page, bool changeable, uint8_t *p)
{
    size_t n = 0;

    if (page == 0x08 || page == 0x3f) {
        /* Caching: write cache enabled (the backend is write-back; SYNCHRONIZE
         * CACHE flushes it). Nothing is changeable. */
        p[n] = 0x08;
        p[n + 1] = 0x12;
        memset(p + n + 2, 0, 0x12);
        if (!changeable)
            p[n + 2] = 0x04; /* WCE */
        n += 2 + 0x12;
    }
    if (page == 0x0a || page == 0x3f) {
        /* Control: defaults. */
        p[n] = 0x0a;
        p[n + 1] = 0x0a;
        memset(p + n + 2, 0, 0x0a);
        n += 2 + 0x0a;
    }
    (void)d;
    return n;
}

static int mode_sense(struct vio_scsi_disk *d, struct vio_scsi_cmd *c, bool ten)
{
    const uint8_t *cdb = c->cdb;
    bool dbd = cdb[1] & 0x08;
    uint8_t pc = cdb[2] >> 6, page = cdb[2] & 0x3f;
    size_t alloc = ten ? be16(cdb + 7) : cdb[4];
    size_t hdr = ten ? 8 : 4, n;
    uint8_t r[REPLY_MAX];

    if (pc == 3)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPP);
    if (cdb[3] != 0 || (page != 0x08 && page != 0x0a && page != 0x3f))
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
    memset(r, 0, sizeof(r));
    n = hdr;
    if (!dbd) {
        /* One short block descriptor. */
        uint32_t blocks = d->nblocks > 0xffffff ? 0xffffff : (uint32_t)d->nblocks;
        put32(r + n, blocks); /* density code 0 in the top byte */
        put32(r + n + 4, d->bs & 0xffffff);
        n += 8;
    }
    n += mode_pages(d, page, pc == 1, r + n);
    if (ten) {
        put16(r, (uint16_t)(n - 2));
        r[3] = d->bdev->readonly ? 0x80 : 0;
        put16(r + 6, dbd ? 0 : 8);
    } else {
        r[0] = (uint8_t)(n - 1);
        r[2] = d->bdev->readonly ? 0x80 : 0;
        r[3] = dbd ? 0 : 8;
    }
    return reply(c, r, n, alloc);
}

/* ---- READ CAPACITY ---- */

static int read_capacity(struct vio_scsi_disk *d, struct vio_scsi_cmd *c, bool sixteen)
{
    uint8_t r[32];

    memset(r, 0, sizeof(r));
    if (!sixteen) {
        put32(r, d->nblocks - 1 > 0xffffffffull ? 0xffffffffu : (uint32_t)(d->nblocks - 1));
        put32(r + 4, d->bs);
        return reply(c, r, 8, 8);
    }
    put64(r, d->nblocks - 1);
    put32(r + 8, d->bs);
    if (d->bdev->can_discard)
        r[14] = 0x80 | 0x40; /* LBPME, LBPRZ */
    return reply(c, r, 32, be32(c->cdb + 10));
}

/* ---- data transfer ---- */

static bool not_ready(struct vio_scsi_disk *d)
{
    return __atomic_load_n(&d->stopped, __ATOMIC_RELAXED);
}

/* Cut the data buffers to exactly @bytes (the rest is residual). Returns
 * false when they hold fewer than @bytes. */
static bool fit_iov(struct vio_scsi_cmd *c, uint64_t bytes)
{
    uint64_t left = bytes;
    unsigned i;

    if (c->data_len < bytes)
        return false;
    for (i = 0; i < c->iovcnt && left; i++) {
        if (c->iov[i].iov_len >= left) {
            c->iov[i].iov_len = (size_t)left;
            left = 0;
        } else {
            left -= c->iov[i].iov_len;
        }
    }
    c->bio.iov = c->iov;
    c->bio.iovcnt = (uint16_t)i;
    return left == 0;
}

static int rw(struct vio_scsi_disk *d, struct vio_scsi_cmd *c, bool write)
{
    const uint8_t *cdb = c->cdb;
    uint64_t lba;
    uint32_t n;

    switch (cdb[0]) {
    case 0x08: /* READ(6) */
    case 0x0a: /* WRITE(6) */
        lba = (uint64_t)(cdb[1] & 0x1f) << 16 | be16(cdb + 2);
        n = cdb[4] ? cdb[4] : 256;
        break;
    case 0x28:
    case 0x2a:
        lba = be32(cdb + 2);
        n = be16(cdb + 7);
        break;
    case 0xa8:
    case 0xaa:
        lba = be32(cdb + 2);
        n = be32(cdb + 6);
        break;
    default: /* 0x88, 0x8a */
        lba = be64(cdb + 2);
        n = be32(cdb + 10);
        break;
    }
    if (not_ready(d))
        return fail(d, c, VIO_SENSE_NOT_READY, ASC_NOT_READY_INIT_REQ);
    if (lba > d->nblocks || n > d->nblocks - lba)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    if (write && d->bdev->readonly)
        return fail(d, c, VIO_SENSE_DATA_PROTECT, ASC_WRITE_PROTECTED);
    if (n == 0)
        return good(c, 0);
    uint64_t bytes = (uint64_t)n * d->bs;
    /* The buffers must go the right way and hold the whole transfer. */
    if (c->data_in == write || c->iovcnt > UINT16_MAX || !fit_iov(c, bytes))
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
    c->bio.op = write ? VIO_BIO_WRITE : VIO_BIO_READ;
    c->bio.flags = 0;
    c->bio.offset = lba * d->bs;
    c->bio.len = bytes;
    c->residual = c->data_len - bytes;
    c->pending_op = cdb[0];
    vio_counter_add_shared(write ? &d->st.writes : &d->st.reads, 1);
    return 1;
}

static int range_bio(struct vio_scsi_disk *d, struct vio_scsi_cmd *c, uint8_t op, uint8_t flags,
                     uint64_t lba, uint64_t n)
{
    c->bio = (struct vio_bio){.op = op, .flags = flags, .offset = lba * d->bs, .len = n * d->bs};
    return 1;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static int write_same16(struct vio_scsi_disk *d, struct vio_scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    bool unmap = cdb[1] & 0x08;
    uint64_t lba = be64(cdb + 2);
    uint32_t n = be32(cdb + 10);
    uint8_t block[4096];

    if (not_ready(d))
        return fail(d, c, VIO_SENSE_NOT_READY, ASC_NOT_READY_INIT_REQ);
    if (d->bdev->readonly)
        return fail(d, c, VIO_SENSE_DATA_PROTECT, ASC_WRITE_PROTECTED);
    /* ANCHOR, PBDATA and LBDATA are not supported; WSNZ: n must be > 0. */
    if ((cdb[1] & 0x16) || n == 0)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
    if (lba > d->nblocks || n > d->nblocks - lba)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    /* One block of data-out: only a block of zeros can be repeated. */
    if (d->bs > sizeof(block) || c->data_in || from_iov(c, block, d->bs) != d->bs ||
        !all_zero(block, d->bs))
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
    if (unmap && !d->bdev->can_discard)
        unmap = false; /* zeroing is what the initiator is owed either way */
    if (!d->bdev->can_write_zeroes && !unmap)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
    c->residual = c->data_len - d->bs;
    c->pending_op = cdb[0];
    vio_counter_add_shared(&d->st.unmaps, unmap);
    return range_bio(d, c, VIO_BIO_WRITE_ZEROES, unmap ? VIO_BIO_F_UNMAP : 0, lba, n);
}

static int unmap_next(struct vio_scsi_disk *d, struct vio_scsi_cmd *c)
{
    while (c->unmap_next < c->unmap_n && c->unmap_len[c->unmap_next] == 0)
        c->unmap_next++;
    if (c->unmap_next == c->unmap_n) {
        c->pending_op = 0;
        return good(c, c->data_len);
    }
    unsigned i = c->unmap_next++;
    return range_bio(d, c, VIO_BIO_DISCARD, 0, c->unmap_lba[i], c->unmap_len[i]);
}

static int unmap(struct vio_scsi_disk *d, struct vio_scsi_cmd *c)
{
    uint8_t p[8 + 16 * VIO_SCSI_MAX_UNMAP];
    size_t plen = be16(c->cdb + 7), got;

    if (!d->bdev->can_discard)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    if (not_ready(d))
        return fail(d, c, VIO_SENSE_NOT_READY, ASC_NOT_READY_INIT_REQ);
    if (d->bdev->readonly)
        return fail(d, c, VIO_SENSE_DATA_PROTECT, ASC_WRITE_PROTECTED);
    if (c->cdb[1] & 0x01) /* ANCHOR */
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
    if (plen == 0)
        return good(c, 0);
    if (plen < 8 || plen > sizeof(p) || c->data_in)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
    got = from_iov(c, p, plen);
    if (got < plen)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
    size_t dlen = be16(p + 2);
    if (be16(p) < 6 || (size_t)be16(p) + 2 > plen || dlen % 16 || dlen + 8 > plen ||
        dlen / 16 > VIO_SCSI_MAX_UNMAP)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
    c->unmap_n = (unsigned)(dlen / 16);
    c->unmap_next = 0;
    for (unsigned i = 0; i < c->unmap_n; i++) {
        uint64_t lba = be64(p + 8 + 16 * i);
        uint32_t n = be32(p + 16 + 16 * i);
        if (lba > d->nblocks || n > d->nblocks - lba)
            return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        c->unmap_lba[i] = lba;
        c->unmap_len[i] = n;
    }
    c->pending_op = c->cdb[0];
    vio_counter_add_shared(&d->st.unmaps, 1);
    return unmap_next(d, c);
}

/* ---- the rest ---- */

int vio_scsi_report_luns(struct vio_scsi_cmd *c, const uint16_t *luns, unsigned n)
{
    const uint8_t *cdb = c->cdb;
    uint32_t alloc;
    uint8_t r[8 + 8 * 256];

    if (c->cdb_len < 12 || cdb[0] != 0xa0)
        return fail(NULL, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
    alloc = be32(cdb + 6);
    /* SPC-4: an allocation length under 16 is an error; select reports 0-2
     * are all served the same list. */
    if (alloc < 16 || cdb[2] > 2)
        return fail(NULL, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
    if (n > 256)
        n = 256;
    memset(r, 0, sizeof(r));
    put32(r, 8 * n);
    for (unsigned i = 0; i < n; i++) {
        uint16_t l = luns[i] & 0x3fff;
        /* Peripheral addressing below 256, flat space above (SAM-5 4.7). */
        r[8 + 8 * i] = l < 256 ? 0 : (uint8_t)(0x40 | (l >> 8));
        r[9 + 8 * i] = (uint8_t)l;
    }
    return reply(c, r, 8 + 8 * (size_t)n, alloc);
}

int vio_scsi_no_lun(struct vio_scsi_cmd *c)
{
    /* Standard INQUIRY data of "no device here": peripheral qualifier 3,
     * device type 0x1f (SPC-4 6.6.2). */
    uint8_t inq[36] = {0x7f, 0, 0x06, 0x02, 31};

    if (c->cdb_len >= 6 && c->cdb[0] == 0x12 && !(c->cdb[1] & 1) && c->cdb[2] == 0) {
        if (!c->data_in && c->data_len)
            return fail(NULL, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return reply(c, inq, sizeof(inq), be16(c->cdb + 3));
    }
    return fail(NULL, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
}

int vio_scsi_disk_exec(struct vio_scsi_disk *d, struct vio_scsi_cmd *c)
{
    unsigned need;

    c->pending_op = 0;
    c->sense_len = 0;
    c->residual = c->data_len;
    vio_counter_add_shared(&d->st.cmds, 1);
    if (!c->cdb || c->cdb_len == 0)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    need = cdb_size(c->cdb[0]);
    if (need == 0)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    if (c->cdb_len < need)
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
    switch (c->cdb[0]) {
    case 0x00: /* TEST UNIT READY */
        if (not_ready(d))
            return fail(d, c, VIO_SENSE_NOT_READY, ASC_NOT_READY_INIT_REQ);
        return good(c, 0);
    case 0x03: { /* REQUEST SENSE: nothing deferred to report */
        uint8_t r[VIO_SCSI_SENSE_LEN] = {0x70, 0, VIO_SENSE_NO_SENSE, 0, 0, 0, 0,
                                         VIO_SCSI_SENSE_LEN - 8};
        if (c->cdb[1] & 0x01) /* DESC: descriptor format not supported */
            return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return reply(c, r, sizeof(r), c->cdb[4]);
    }
    case 0x12:
        return inquiry(d, c);
    case 0x1a:
        return mode_sense(d, c, false);
    case 0x5a:
        return mode_sense(d, c, true);
    case 0x1b: /* START STOP UNIT */
        if ((c->cdb[4] & 0xf0) != 0) /* power conditions: not supported */
            return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        __atomic_store_n(&d->stopped, !(c->cdb[4] & 0x01), __ATOMIC_RELAXED);
        return good(c, 0);
    case 0x25:
        return read_capacity(d, c, false);
    case 0x9e:
        if ((c->cdb[1] & 0x1f) == 0x10)
            return read_capacity(d, c, true);
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
    case 0x08:
    case 0x28:
    case 0xa8:
    case 0x88:
        return rw(d, c, false);
    case 0x0a:
    case 0x2a:
    case 0xaa:
    case 0x8a:
        return rw(d, c, true);
    case 0x35: /* SYNCHRONIZE CACHE(10) */
    case 0x91: /* (16) */
        if (not_ready(d))
            return fail(d, c, VIO_SENSE_NOT_READY, ASC_NOT_READY_INIT_REQ);
        c->pending_op = c->cdb[0];
        vio_counter_add_shared(&d->st.syncs, 1);
        return range_bio(d, c, VIO_BIO_FLUSH, 0, 0, 0);
    case 0x93:
        return write_same16(d, c);
    case 0x42:
        return unmap(d, c);
    default:
        return fail(d, c, VIO_SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    }
}

static bool is_link_error(int res)
{
    return res == -ENOTCONN || res == -ECONNRESET || res == -ECONNREFUSED || res == -EPIPE ||
           res == -ETIMEDOUT || res == -ESHUTDOWN || res == -EHOSTUNREACH;
}

int vio_scsi_disk_bio_done(struct vio_scsi_disk *d, struct vio_scsi_cmd *c, int res)
{
    uint8_t op = c->pending_op;

    if (res < 0) {
        vio_counter_add_shared(&d->st.io_errors, 1);
        c->pending_op = 0;
        /* A remote backend lost its server: nothing reached the medium, or
         * what did is not known to have. ABORTED COMMAND lets the initiator
         * retry once the backend has reconnected. */
        if (is_link_error(res))
            return fail(d, c, VIO_SENSE_ABORTED_COMMAND, ASC_COMM_FAILURE);
        if (op == 0x08 || op == 0x28 || op == 0xa8 || op == 0x88)
            return fail(d, c, VIO_SENSE_MEDIUM_ERROR, ASC_READ_ERROR);
        return fail(d, c, VIO_SENSE_MEDIUM_ERROR, ASC_WRITE_ERROR);
    }
    if (op == 0x42)
        return unmap_next(d, c);
    c->pending_op = 0;
    c->status = VIO_SCSI_GOOD;
    c->sense_len = 0;
    if (op == 0x35 || op == 0x91)
        c->residual = c->data_len;
    return 0;
}
