/* vhost-user back-end: exposes one vio device on one Unix socket so that a
 * front-end (QEMU, Cloud Hypervisor, vio run, vio bench) drives it. One
 * front-end at a time per device; after it disconnects, cleanly or not, the
 * device is drained and reset and the next front-end gets a fresh device.
 *
 * Threading: everything here runs on the control loop; queue work runs on
 * the device's worker loops (see vdev.h). A protocol error drops only the
 * offending connection. */
#ifndef VIO_VHOST_VU_BACKEND_H
#define VIO_VHOST_VU_BACKEND_H

#include <jansson.h>

#include "core/loop.h"
#include "virtio/vdev.h"

struct vio_vu_backend;

/* Listen on @socket_path (a stale socket file is replaced) and serve @dev,
 * whose queues must already have worker loops assigned. Returns 0 or -errno
 * with a logged reason. */
int vio_vu_backend_create(struct vio_dev *dev, const char *socket_path, struct vio_loop *loop,
                          struct vio_vu_backend **out);

/* Disconnect the front-end (completing in-flight requests), stop listening,
 * remove the socket file, free. The device itself is not destroyed. */
void vio_vu_backend_destroy(struct vio_vu_backend *b);

/* Connection state for the control API. */
json_t *vio_vu_backend_info(struct vio_vu_backend *b);

#endif
