/* virtio-scsi host bus adapter (VIRTIO 1.2, 5.6): one controller with many
 * targets and LUNs, each LUN a SCSI disk (scsi/disk.h) on its own block
 * backend. Hosted by any transport through struct vio_dev: vhost-user-scsi
 * in vio serve, virtio-pci in vio run.
 *
 * LUNs are added and removed at run time from the control thread; a
 * running driver that negotiated VIRTIO_SCSI_F_HOTPLUG hears about it on
 * the event queue (transport reset events, "rescan" and "removed"). */
#ifndef VIO_DEVICES_SCSI_H
#define VIO_DEVICES_SCSI_H

#include <stddef.h>
#include <stdint.h>

#include "backends/block/bdev.h"
#include "core/opts.h"
#include "scsi/disk.h"
#include "virtio/vdev.h"

#define VIO_SCSI_MAX_QUEUES        16   /* request queues */
#define VIO_SCSI_DEFAULT_QUEUE_SIZE 1024
#define VIO_SCSI_MAX_LUNS          64   /* LUNs per controller, all targets */
#define VIO_SCSI_MAX_TARGET        255
#define VIO_SCSI_MAX_LUN           16383

struct vio_scsi_hba_opts {
    const char *id;
    uint16_t num_queues; /* request queues; the device adds control + event */
    uint16_t queue_size; /* largest queue the driver may set up, power of two */
};

/* Create a controller with no LUNs. Returns 0 or -errno (logged). */
int vio_scsi_hba_create(const struct vio_scsi_hba_opts *o, struct vio_dev **out);
bool vio_is_scsi_hba(const struct vio_dev *d);

struct vio_scsi_lun_opts {
    uint16_t target; /* 0..VIO_SCSI_MAX_TARGET */
    uint16_t lun;    /* 0..VIO_SCSI_MAX_LUN */
    struct vio_scsi_disk_cfg disk;
};

/* Control thread. Add a disk LUN on @bdev, which the controller owns from
 * then on (also on failure). A running driver is told (hotplug). Returns 0,
 * or -EEXIST / -ENOSPC / -EINVAL / -ENOMEM with a message in @err. */
int vio_scsi_hba_add_lun(struct vio_dev *d, const struct vio_scsi_lun_opts *o,
                         struct vio_bdev *bdev, char *err, size_t errlen);

/* Control thread. Remove a LUN: no new commands reach it, commands in
 * flight complete, the driver is told, the backend is closed. Returns 0 or
 * -ENOENT. */
int vio_scsi_hba_remove_lun(struct vio_dev *d, unsigned target, unsigned lun);

/* Control thread. The LUNs with their backends and counters. */
json_t *vio_scsi_hba_luns(struct vio_dev *d);

/* Parse the LUN keys of a --lun spec from @o (target=, lun=, path=,
 * readonly, direct, blksize=, serial=, vendor=, product=, wwn=), open the
 * backend and add the LUN. Keys other parts of the spec use (hba=) must be
 * consumed by the caller first; unknown keys are an error. Returns 0 or
 * -errno with a message in @err. */
int vio_scsi_hba_add_lun_spec(struct vio_dev *d, struct vio_opts *o, char *err, size_t errlen);

#endif
