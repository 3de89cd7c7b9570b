/* SCSI disk emulation: the target side of one disk LUN (SPC-4 and SBC-3
 * subsets) on a block backend (backends/block/bdev.h). A transport
 * (virtio-scsi; later others) hands it a CDB with the request's data
 * buffers; the disk either finishes the command at once (INQUIRY, MODE
 * SENSE, a bad CDB...) or turns it into backend I/O and finishes it when the
 * I/O completes. Every error ends as CHECK CONDITION with fixed-format sense
 * data (SPC-4 4.5.3).
 *
 * Commands: TEST UNIT READY, REQUEST SENSE, INQUIRY (standard data and VPD
 * pages 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2), READ CAPACITY(10) and (16),
 * READ and WRITE (6, 10, 12, 16), WRITE SAME(16) with UNMAP, UNMAP,
 * SYNCHRONIZE CACHE(10) and (16), MODE SENSE(6) and (10) (pages 0x08
 * caching, 0x0A control, 0x3F all), START STOP UNIT. REPORT LUNS belongs to
 * the target that knows every LUN (see vio_scsi_report_luns).
 *
 * Threading: a request is handled on one thread (its queue's worker); the
 * disk's configuration is read-only after creation; the "stopped" state
 * (START STOP UNIT) is an atomic. */
#ifndef VIO_SCSI_DISK_H
#define VIO_SCSI_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "backends/block/bdev.h"

/* SAM status codes. */
#define VIO_SCSI_GOOD            0x00
#define VIO_SCSI_CHECK_CONDITION 0x02

/* Sense keys. */
#define VIO_SENSE_NO_SENSE        0x0
#define VIO_SENSE_NOT_READY       0x2
#define VIO_SENSE_MEDIUM_ERROR    0x3
#define VIO_SENSE_HARDWARE_ERROR  0x4
#define VIO_SENSE_ILLEGAL_REQUEST 0x5
#define VIO_SENSE_UNIT_ATTENTION  0x6
#define VIO_SENSE_DATA_PROTECT    0x7
#define VIO_SENSE_ABORTED_COMMAND 0xb

#define VIO_SCSI_SENSE_LEN 18 /* fixed format, with 10 additional bytes */
#define VIO_SCSI_MAX_UNMAP 64 /* block descriptors per UNMAP command */

struct vio_scsi_disk_cfg {
    const char *vendor;   /* up to 8 characters (default "VIO") */
    const char *product;  /* up to 16 (default "VIRTUAL-DISK") */
    const char *revision; /* up to 4 (default the version) */
    const char *serial;   /* up to 36 (default: from the id) */
    const char *id;       /* the LUN's name, for messages and the default serial */
    uint64_t naa;         /* NAA identifier for VPD 0x83 (0: derived from the id) */
};

struct vio_scsi_disk;

/* Create a disk on @bdev (not owned). Returns 0 or -errno. */
int vio_scsi_disk_create(const struct vio_scsi_disk_cfg *cfg, struct vio_bdev *bdev,
                         struct vio_scsi_disk **out);
void vio_scsi_disk_free(struct vio_scsi_disk *d);

/* One command. The transport fills the inputs and keeps the struct (and
 * the iovecs) alive until vio_scsi_disk_exec or the completion returns it
 * finished. */
struct vio_scsi_cmd {
    /* in */
    const uint8_t *cdb;
    unsigned cdb_len;
    struct iovec *iov;       /* data buffers: device-writable for data-in
                              * commands, device-readable for data-out; the
                              * disk may shorten them in place to the
                              * transfer length */
    unsigned iovcnt;
    size_t data_len;         /* sum of the iovecs */
    bool data_in;            /* the buffers are for the device to fill */
    /* out */
    uint8_t status;
    uint8_t sense[VIO_SCSI_SENSE_LEN];
    unsigned sense_len;
    size_t residual; /* data_len minus bytes transferred */
    /* private: backend I/O in progress */
    struct vio_bio bio;
    struct iovec sub_iov[2];
    uint64_t unmap_lba[VIO_SCSI_MAX_UNMAP];
    uint32_t unmap_len[VIO_SCSI_MAX_UNMAP];
    unsigned unmap_n, unmap_next;
    uint8_t pending_op; /* 0: none */
};

/* Run @c. Returns 0 when it finished (status, sense, residual set) or 1
 * when c->bio must be submitted to the disk's backend queue; then call
 * vio_scsi_disk_bio_done with the result, which returns 0 (finished) or 1
 * (submit c->bio again: the next piece of an UNMAP). */
int vio_scsi_disk_exec(struct vio_scsi_disk *d, struct vio_scsi_cmd *c);
int vio_scsi_disk_bio_done(struct vio_scsi_disk *d, struct vio_scsi_cmd *c, int res);

/* Set CHECK CONDITION with fixed-format sense (for transports, too). */
void vio_scsi_set_sense(struct vio_scsi_cmd *c, uint8_t key, uint8_t asc, uint8_t ascq);

/* REPORT LUNS for a target whose LUNs are @luns (@n of them, each < 16384):
 * fills c's data-in buffers. Returns 0 (finished). */
int vio_scsi_report_luns(struct vio_scsi_cmd *c, const uint16_t *luns, unsigned n);

/* A command to a LUN that does not exist on a target that does: INQUIRY
 * answers "no device" (peripheral qualifier 3), anything else fails with
 * LOGICAL UNIT NOT SUPPORTED. (REPORT LUNS goes to vio_scsi_report_luns.)
 * Returns 0 (finished). */
int vio_scsi_no_lun(struct vio_scsi_cmd *c);

/* Counters, read with vio_counter_get. */
struct vio_scsi_disk_stats {
    vio_counter_t cmds, reads, writes, unmaps, syncs, check_conditions, io_errors;
};
const struct vio_scsi_disk_stats *vio_scsi_disk_stats(const struct vio_scsi_disk *d);

#endif
