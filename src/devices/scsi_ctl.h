/* Control requests for virtio-scsi controllers (scsi.luns, scsi.lun.add,
 * scsi.lun.remove), shared by vio serve and vio run: each program only says
 * how to find a controller by its id. Control thread only. */
#ifndef VIO_DEVICES_SCSI_CTL_H
#define VIO_DEVICES_SCSI_CTL_H

#include <jansson.h>
#include <stddef.h>

#include "core/rpc.h"
#include "virtio/vdev.h"

/* The SCSI controller called @id, or NULL. */
typedef struct vio_dev *(*vio_scsi_find_fn)(void *opaque, const char *id);

/* Add the LUN a --lun spec ("hba=ID,path=...,target=N,lun=N,...") describes
 * to the controller @find returns for its hba=. Returns 0, -ENOENT (no such
 * controller) or another -errno, with a message in @err. */
int vio_scsi_ctl_add(const char *spec, vio_scsi_find_fn find, void *opaque, char *err,
                     size_t errlen);

/* Whether @spec puts its LUN at controller @hba, @target, @lun. */
bool vio_scsi_ctl_spec_is(const char *spec, const char *hba, unsigned target, unsigned lun);

/* Append @d's LUNs, each with "hba": its id, to @list. */
void vio_scsi_ctl_list(struct vio_dev *d, json_t *list);

/* scsi.lun.add {"spec": SPEC}: returns {"added": SPEC} or fails @err. */
json_t *vio_scsi_rpc_lun_add(json_t *params, vio_scsi_find_fn find, void *opaque,
                             struct vio_rpc_error *err);
/* scsi.lun.remove {"hba": ID, "lun": N[, "target": N]}: returns
 * {"hba", "target", "lun"} or fails @err. */
json_t *vio_scsi_rpc_lun_remove(json_t *params, vio_scsi_find_fn find, void *opaque,
                                struct vio_rpc_error *err);

#endif
