/* virtio-console device (VIRTIO 1.2, 5.3), single port (hvc0 in Linux):
 * what the guest writes goes to an output fd, what arrives on an input fd
 * goes to the guest. */
#ifndef VIO_DEVICES_CONSOLE_H
#define VIO_DEVICES_CONSOLE_H

#include "virtio/vdev.h"

/* @in_fd (non-blocking, may be -1) and @out_fd (may be -1) become the
 * device's. */
int vio_console_create(const char *id, int in_fd, int out_fd, struct vio_dev **out);

#endif
