/* Modern virtio-pci transport (VIRTIO 1.2, 4.1) for vio run. The PCI side
 * (capabilities, common configuration, ISR, notifications through
 * ioeventfds, MSI-X through irqfds) is here; what sits behind it is a
 * backend: an in-process vio device (vpci_local.c) or a device served over
 * vhost-user by another process (vpci_vhost.c). Either way queue kicks go
 * from KVM straight to whoever processes the queue, and interrupts straight
 * from there to KVM. */
#ifndef VIO_VMM_VIRTIO_PCI_H
#define VIO_VMM_VIRTIO_PCI_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"
#include "vmm/msix.h"
#include "vmm/pci.h"

/* A queue as the driver configured it, handed to the backend at start. */
struct vio_vpci_qcfg {
    uint16_t size;
    uint64_t desc, avail, used; /* guest-physical */
    int kick_fd;                /* ioeventfd */
    int call_fd;                /* the MSI-X vector's eventfd, or -1 */
    int err_fd;                 /* signalled when the queue needs a reset */
};

struct vio_vpci_backend_ops {
    uint64_t (*features)(void *be); /* everything offered, VERSION_1 included */
    uint16_t (*num_queues)(void *be);
    uint16_t (*max_queue_size)(void *be);
    uint32_t (*config_size)(void *be);
    void (*config_read)(void *be, uint32_t off, void *buf, uint32_t len);
    void (*config_write)(void *be, uint32_t off, const void *buf, uint32_t len);
    int (*set_features)(void *be, uint64_t features);
    /* Start a queue; returns 0 or -errno (the device then needs a reset). */
    int (*queue_start)(void *be, unsigned qi, const struct vio_vpci_qcfg *q);
    void (*queue_stop)(void *be, unsigned qi);
    void (*set_call_fd)(void *be, unsigned qi, int fd);
    /* Back to the power-on state (every queue stopped). */
    void (*reset)(void *be);
    json_t *(*stats)(void *be); /* may be NULL */
    void (*destroy)(void *be);
};

struct vio_vpci;

/* Put a virtio-pci device for @be (owned from now on, destroyed on error
 * too) on @pci, as virtio device @device_id; @type names it in listings. The error
 * eventfd of its queues is watched on @ctl (the control loop), where a
 * broken queue sets DEVICE_NEEDS_RESET and raises the config interrupt.
 * Returns 0 or -errno. */
int vio_vpci_create(struct vio_vm *vm, struct vio_pci *pci, struct vio_loop *ctl,
                    const char *id, const char *type, uint32_t device_id,
                    const struct vio_vpci_backend_ops *ops, void *be, struct vio_vpci **out);
/* Stop the queues, remove the device, destroy the backend. */
void vio_vpci_destroy(struct vio_vpci *v);

const char *vio_vpci_id(const struct vio_vpci *v);
/* State and counters for the control API. */
json_t *vio_vpci_info(struct vio_vpci *v);

#endif
