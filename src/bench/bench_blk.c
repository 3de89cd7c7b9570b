/* vio bench blk: a virtio-blk driver in this process, over vhost-user (VIRTIO
 * 1.2, 5.2). The workloads, the verify pattern and the measuring are the
 * shared engine's (bench_disk.c); this file lays out a virtio-blk request
 * (16-byte header, data, one status byte) and reads the disk's size. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/bench_disk.h"
#include "core/util.h"

#define BLK_T_IN    0
#define BLK_T_OUT   1
#define BLK_F_FLUSH 9
#define BLK_F_MQ    12
#define SECTOR      512u

struct blk_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

static int blk_open(const struct bench_disk_cfg *c, struct vio_vuser_opts *vo,
                    struct bench_disk_dev *dev)
{
    uint64_t sectors = 0;
    int ret;

    vo->want_features = VIO_BIT(BLK_F_FLUSH) | (c->queues > 1 ? VIO_BIT(BLK_F_MQ) : 0);
    ret = vio_vuser_open(vo, &dev->d);
    if (ret < 0) {
        fprintf(stderr, "vio bench blk: %s: %s\n", c->sock, strerror(-ret));
        return ret;
    }
    dev->first_q = 0;
    dev->block = SECTOR;
    dev->hdr_len = sizeof(struct blk_hdr);
    dev->resp_len = 1;
    dev->resp_first = false;
    ret = vio_vuser_get_config(dev->d, 0, &sectors, sizeof(sectors));
    if (ret < 0) {
        if (!c->span) {
            fprintf(stderr, "vio bench blk: cannot read the disk size (%s): give --span\n",
                    strerror(-ret));
            vio_vuser_close(dev->d);
            return ret;
        }
        dev->size = c->span; /* trust the user */
    } else {
        dev->size = vio_le64(sectors) * SECTOR;
    }
    return 0;
}

static void blk_prep(const struct bench_disk_cfg *c, const struct bench_disk_dev *dev,
                     struct bench_disk_req *r)
{
    struct blk_hdr *h = r->hdr;

    (void)c;
    (void)dev;
    h->type = vio_to_le32(r->write ? BLK_T_OUT : BLK_T_IN);
    h->reserved = 0;
    h->sector = vio_to_le64(r->off / SECTOR);
    *(uint8_t *)r->resp = 0xff;
}

static int blk_check(const struct bench_disk_cfg *c, const struct bench_disk_dev *dev,
                     const struct bench_disk_req *r, uint32_t len, char *why, size_t n)
{
    uint8_t status = *(const uint8_t *)r->resp;

    (void)c;
    (void)dev;
    (void)len;
    if (status == 0)
        return 0;
    snprintf(why, n, "status %u", status);
    return -EIO;
}

static const struct bench_disk_ops blk_ops = {
    .name = "blk",
    .what = "virtio-blk driver of the vhost-user-blk device",
    .open = blk_open,
    .prep = blk_prep,
    .check = blk_check,
};

int vio_bench_blk_main(int argc, char **argv)
{
    return bench_disk_main(argc, argv, &blk_ops);
}
