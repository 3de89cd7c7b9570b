/* iscsi_read: a second iSCSI initiator for end-to-end tests. Logs in to
 * an iSCSI LUN with libiscsi's synchronous API (none of vio's code) and
 * copies LEN bytes from byte OFFSET to stdout, so a test can compare what a
 * guest wrote through vio with what the SAN target holds.
 *
 *   iscsi_read iscsi://HOST[:PORT]/IQN/LUN OFFSET LEN > out
 *
 * OFFSET and LEN must be multiples of the LUN's block size. Exit 0 on
 * success, 1 with a message on stderr otherwise. */
#include <inttypes.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (256u * 1024u)

int main(int argc, char **argv)
{
    struct iscsi_context *iscsi = NULL;
    struct iscsi_url *url = NULL;
    struct scsi_task *task;
    struct scsi_readcapacity16 *rc16;
    uint64_t off, len;
    uint32_t bs;
    int ret = 1;

    if (argc != 4) {
        fprintf(stderr, "usage: iscsi_read iscsi://HOST[:PORT]/IQN/LUN OFFSET LEN\n");
        return 1;
    }
    off = strtoull(argv[2], NULL, 0);
    len = strtoull(argv[3], NULL, 0);
    iscsi = iscsi_create_context("iqn.2026-12.io.vio:iscsi-read");
    if (!iscsi) {
        fprintf(stderr, "iscsi_read: cannot create a libiscsi context\n");
        return 1;
    }
    url = iscsi_parse_full_url(iscsi, argv[1]);
    if (!url) {
        fprintf(stderr, "iscsi_read: %s: %s\n", argv[1], iscsi_get_error(iscsi));
        goto out;
    }
    iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
    iscsi_set_targetname(iscsi, url->target);
    if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
        fprintf(stderr, "iscsi_read: login to %s: %s\n", argv[1], iscsi_get_error(iscsi));
        goto out;
    }
    task = iscsi_readcapacity16_sync(iscsi, url->lun);
    if (!task || task->status != SCSI_STATUS_GOOD ||
        !(rc16 = scsi_datain_unmarshall(task))) {
        fprintf(stderr, "iscsi_read: READ CAPACITY(16): %s\n", iscsi_get_error(iscsi));
        goto out;
    }
    bs = rc16->block_length;
    scsi_free_scsi_task(task);
    if (!bs || off % bs || len % bs) {
        fprintf(stderr, "iscsi_read: offset and length must be multiples of %u\n", bs);
        goto out;
    }
    while (len) {
        uint32_t n = len < CHUNK ? (uint32_t)len : CHUNK;

        task = iscsi_read16_sync(iscsi, url->lun, off / bs, n, bs, 0, 0, 0, 0, 0);
        if (!task || task->status != SCSI_STATUS_GOOD || task->datain.size != (int)n) {
            fprintf(stderr, "iscsi_read: READ(16) at %" PRIu64 ": %s\n", off,
                    iscsi_get_error(iscsi));
            if (task)
                scsi_free_scsi_task(task);
            goto out;
        }
        if (fwrite(task->datain.data, 1, n, stdout) != n) {
            scsi_free_scsi_task(task);
            goto out;
        }
        scsi_free_scsi_task(task);
        off += n;
        len -= n;
    }
    ret = 0;
out:
    if (url)
        iscsi_destroy_url(url);
    iscsi_logout_sync(iscsi);
    iscsi_destroy_context(iscsi);
    return ret;
}
