/* virtio-rng device (VIRTIO 1.2, 5.4): fills the guest's buffers with bytes
 * from the host kernel's getrandom(). */
#ifndef VIO_DEVICES_RNG_H
#define VIO_DEVICES_RNG_H

#include "virtio/vdev.h"

int vio_rng_create(const char *id, struct vio_dev **out);

#endif
