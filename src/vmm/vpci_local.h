/* virtio-pci backends: an in-process vio device (its queues run on vio
 * run's I/O threads) or a device served over vhost-user by another process
 * (vio serve, qemu-storage-daemon). */
#ifndef VIO_VMM_VPCI_LOCAL_H
#define VIO_VMM_VPCI_LOCAL_H

#include "virtio/vdev.h"
#include "vmm/virtio_pci.h"

/* The backend is the struct vio_dev itself (be = dev): its queues must have
 * loops assigned and dev->mem set to the VM's memory map. */
extern const struct vio_vpci_backend_ops vio_vpci_local_ops;

struct vio_vpci_vhost;
/* Connect to the vhost-user back-end at @socket, which must serve a device
 * of type @device_id (the protocol cannot tell), share @vm's memory with it. @queues: how many queues
 * to expose (0: all the back-end has). Returns 0 or -errno (logged). */
int vio_vpci_vhost_create(struct vio_vm *vm, const char *socket, uint32_t device_id,
                          unsigned queues, struct vio_vpci_vhost **out);
/* The backend for vio_vpci_vhost_create's result. */
extern const struct vio_vpci_backend_ops vio_vpci_vhost_ops;

#endif
