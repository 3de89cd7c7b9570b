/* Interrupt delivery through KVM's in-kernel irqchip: legacy lines (ISA
 * IRQs on the IOAPIC/PIC), and MSI routes bound to irqfds so a device (or a
 * vhost-user back-end) raises an interrupt by writing an eventfd, without
 * the VMM on the path. The routing table is ours: KVM_SET_GSI_ROUTING
 * replaces it whole, so it always carries the default irqchip entries. */
#ifndef VIO_VMM_IRQ_H
#define VIO_VMM_IRQ_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define VIO_IRQ_NR_LEGACY 24 /* IOAPIC pins */
#define VIO_IRQ_MAX_GSI   1024
#define VIO_IRQ_MAX_ROUTES (VIO_IRQ_MAX_GSI + 2 * VIO_IRQ_NR_LEGACY)

struct vio_irq {
    int vm_fd;
    pthread_mutex_t lock;
    unsigned next_gsi;
    unsigned nroutes;
    struct kvm_irq_routing_entry routes[VIO_IRQ_MAX_ROUTES];
    struct kvm_irq_routing *table; /* what KVM_SET_GSI_ROUTING is given */
};

/* Install the default routing (ISA IRQs 0-15 on PIC and IOAPIC, 16-23 on
 * the IOAPIC). Returns 0 or -errno. */
int vio_irq_init(struct vio_irq *irq, int vm_fd);
void vio_irq_destroy(struct vio_irq *irq);

/* Set legacy line @line (0-23) to @level. */
int vio_irq_line(struct vio_irq *irq, unsigned line, bool level);

/* Reserve a GSI for MSI routing. Returns it or -ENOSPC. */
int vio_irq_msi_alloc(struct vio_irq *irq);
/* Point @gsi at MSI address/data (from an MSI-X table entry). */
int vio_irq_msi_route(struct vio_irq *irq, unsigned gsi, uint64_t addr, uint32_t data);
/* Deliver writes to @efd as @gsi (assign) or stop doing so. An assign
 * delivers an interrupt at once if @efd was signalled meanwhile. */
int vio_irq_irqfd(struct vio_irq *irq, unsigned gsi, int efd, bool assign);

#endif
