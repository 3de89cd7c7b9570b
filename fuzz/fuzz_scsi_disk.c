/* libFuzzer target for the SCSI disk emulation (src/scsi/disk.c): the input
 * is a command as an initiator sends it. Byte 0 picks the buffer layout
 * (data direction, buffer length, how it is split over iovecs, read-only
 * and discard capabilities), the next bytes are the CDB (up to 32), the rest
 * the data-out buffer. Every command must end GOOD or CHECK CONDITION with
 * fixed-format sense, any bio it asks for must lie inside the disk and its
 * buffers, and completing it (also with an error) must finish it. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "scsi/disk.h"

#define NBLOCKS 4096u
#define BUFLEN  (64 * 1024)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vio_log_set_level(VIO_LOG_ERROR);
    return 0;
}

static void check_done(const struct vio_scsi_cmd *c)
{
    assert(c->status == VIO_SCSI_GOOD || c->status == VIO_SCSI_CHECK_CONDITION);
    if (c->status == VIO_SCSI_CHECK_CONDITION) {
        assert(c->sense_len == VIO_SCSI_SENSE_LEN && c->sense[0] == 0x70);
        assert(c->sense[2] != 0);
    } else {
        assert(c->sense_len == 0);
    }
    assert(c->residual <= c->data_len);
}

static void check_bio(const struct vio_scsi_cmd *c, const struct vio_bdev *b)
{
    assert(c->bio.op <= VIO_BIO_WRITE_ZEROES);
    assert(c->bio.offset <= b->size && c->bio.len <= b->size - c->bio.offset);
    if (c->bio.op == VIO_BIO_READ || c->bio.op == VIO_BIO_WRITE) {
        uint64_t sum = 0;
        assert(c->bio.iovcnt <= c->iovcnt);
        for (unsigned i = 0; i < c->bio.iovcnt; i++)
            sum += c->bio.iov[i].iov_len;
        assert(sum == c->bio.len && sum <= c->data_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[BUFLEN];
    struct vio_bdev b = {.size = (uint64_t)NBLOCKS * 512, .block_size = 512};
    struct vio_scsi_disk_cfg cfg = {.id = "fuzz"};
    struct vio_scsi_disk *d;
    struct vio_scsi_cmd c;
    struct iovec iov[3];
    uint8_t cdb[32];

    if (size < 2)
        return 0;
    uint8_t mode = data[0];
    unsigned cdb_len = 6 + (data[1] % 27);
    data += 2;
    size -= 2;
    if (size < cdb_len)
        return 0;
    memcpy(cdb, data, cdb_len);
    data += cdb_len;
    size -= cdb_len;
    b.readonly = mode & 0x01;
    b.can_discard = mode & 0x02;
    b.can_write_zeroes = mode & 0x04;
    bool in = mode & 0x08;
    size_t len = (mode & 0x10) ? BUFLEN : (size < BUFLEN ? size : BUFLEN);
    memset(buf, 0, len);
    if (!in)
        memcpy(buf, data, size < len ? size : len);
    if (vio_scsi_disk_create(&cfg, &b, &d) < 0)
        return 0;
    memset(&c, 0, sizeof(c));
    /* Split the buffer in up to three pieces. */
    size_t a = (mode & 0x20) ? len / 3 : len, bsz = (mode & 0x40) ? (len - a) / 2 : len - a;
    iov[0] = (struct iovec){buf, a};
    iov[1] = (struct iovec){buf + a, bsz};
    iov[2] = (struct iovec){buf + a + bsz, len - a - bsz};
    c.cdb = cdb;
    c.cdb_len = cdb_len;
    c.iov = iov;
    c.iovcnt = 3;
    c.data_len = len;
    c.data_in = in;
    int r = vio_scsi_disk_exec(d, &c);
    for (int rounds = 0; r == 1; rounds++) {
        assert(rounds <= VIO_SCSI_MAX_UNMAP);
        check_bio(&c, &b);
        /* Fail the I/O now and then: it must still end. */
        r = vio_scsi_disk_bio_done(d, &c, (mode & 0x80) && rounds == 0 ? -EIO : 0);
    }
    assert(r == 0);
    check_done(&c);
    vio_scsi_disk_free(d);
    return 0;
}
