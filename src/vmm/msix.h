/* MSI-X for emulated PCI devices. Each vector owns an eventfd and a GSI;
 * the guest's table entry becomes the GSI's MSI route, and while the vector
 * is enabled and unmasked the eventfd is an irqfd, so whoever signals it
 * (a device worker, a vhost-user back-end) interrupts the guest directly.
 * Masking detaches the irqfd; signals meanwhile stay counted in the eventfd
 * and are delivered on unmask (that is the pending bit). */
#ifndef VIO_VMM_MSIX_H
#define VIO_VMM_MSIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/pci.h"

#define VIO_MSIX_NO_VECTOR 0xffff
#define VIO_MSIX_ENTRY_SIZE 16

struct vio_msix_vector {
    uint64_t addr;
    uint32_t data;
    uint32_t ctrl; /* bit 0: masked */
    int gsi;
    int efd;
    bool routed;  /* an MSI route has been written for the GSI */
    bool irqfd;   /* efd is attached as an irqfd */
};

struct vio_msix {
    struct vio_vm *vm;
    struct vio_pci_dev *pdev;
    uint8_t cap;
    unsigned n;
    struct vio_msix_vector *v;
    pthread_mutex_t lock;
};

/* Set up @nvec vectors with the table at @table_off and the PBA at @pba_off
 * of BAR @bar, and add the capability. Returns 0 or -errno. */
int vio_msix_init(struct vio_msix *m, struct vio_vm *vm, struct vio_pci_dev *pdev, unsigned nvec,
                  unsigned bar, uint32_t table_off, uint32_t pba_off);
void vio_msix_destroy(struct vio_msix *m);

/* Guest access to the table or PBA; @off relative to the table / PBA. */
void vio_msix_table_read(struct vio_msix *m, uint64_t off, void *data, unsigned len);
void vio_msix_table_write(struct vio_msix *m, uint64_t off, const void *data, unsigned len);
void vio_msix_pba_read(struct vio_msix *m, uint64_t off, void *data, unsigned len);
/* Call after a config write that may have touched the MSI-X control word. */
void vio_msix_cfg_written(struct vio_msix *m);

/* The eventfd that raises vector @vec, or -1 for NO_VECTOR/out of range. */
int vio_msix_fd(struct vio_msix *m, uint16_t vec);
/* Raise vector @vec. */
void vio_msix_notify(struct vio_msix *m, uint16_t vec);

#endif
