/* GSI routing and irqfds on KVM's in-kernel irqchip (see irq.h). */
#include "vmm/irq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/log.h"

static int commit(struct vio_irq *irq)
{
    struct kvm_irq_routing *t = irq->table;

    memset(t, 0, sizeof(*t));
    t->nr = irq->nroutes;
    memcpy(t->entries, irq->routes, irq->nroutes * sizeof(t->entries[0]));
    if (ioctl(irq->vm_fd, KVM_SET_GSI_ROUTING, t) < 0) {
        int ret = -errno;

        vio_err("KVM_SET_GSI_ROUTING with %u routes: %s", irq->nroutes, strerror(errno));
        return ret;
    }
    return 0;
}

static void add_chip_route(struct vio_irq *irq, unsigned gsi, unsigned chip, unsigned pin)
{
    struct kvm_irq_routing_entry *e = &irq->routes[irq->nroutes++];

    memset(e, 0, sizeof(*e));
    e->gsi = gsi;
    e->type = KVM_IRQ_ROUTING_IRQCHIP;
    e->u.irqchip.irqchip = chip;
    e->u.irqchip.pin = pin;
}

int vio_irq_init(struct vio_irq *irq, int vm_fd)
{
    memset(irq, 0, sizeof(*irq));
    irq->table = calloc(1, sizeof(*irq->table) + VIO_IRQ_MAX_ROUTES * sizeof(irq->routes[0]));
    if (!irq->table)
        return -ENOMEM;
    irq->vm_fd = vm_fd;
    pthread_mutex_init(&irq->lock, NULL);
    /* The same wiring KVM starts with: ISA IRQ n is PIC pin n and IOAPIC
     * pin n (IRQ 2 is the cascade, absent on the PIC side). */
    for (unsigned i = 0; i < VIO_IRQ_NR_LEGACY; i++) {
        if (i < 8)
            add_chip_route(irq, i, KVM_IRQCHIP_PIC_MASTER, i);
        else if (i < 16)
            add_chip_route(irq, i, KVM_IRQCHIP_PIC_SLAVE, i - 8);
        add_chip_route(irq, i, KVM_IRQCHIP_IOAPIC, i);
    }
    irq->next_gsi = VIO_IRQ_NR_LEGACY;
    return commit(irq);
}

void vio_irq_destroy(struct vio_irq *irq)
{
    free(irq->table);
    irq->table = NULL;
    pthread_mutex_destroy(&irq->lock);
}

int vio_irq_line(struct vio_irq *irq, unsigned line, bool level)
{
    struct kvm_irq_level l = {.irq = line, .level = level};

    if (line >= VIO_IRQ_NR_LEGACY)
        return -EINVAL;
    if (ioctl(irq->vm_fd, KVM_IRQ_LINE, &l) < 0)
        return -errno;
    return 0;
}

int vio_irq_msi_alloc(struct vio_irq *irq)
{
    int gsi;

    pthread_mutex_lock(&irq->lock);
    if (irq->next_gsi >= VIO_IRQ_MAX_GSI) {
        pthread_mutex_unlock(&irq->lock);
        return -ENOSPC;
    }
    gsi = (int)irq->next_gsi++;
    pthread_mutex_unlock(&irq->lock);
    return gsi;
}

int vio_irq_msi_route(struct vio_irq *irq, unsigned gsi, uint64_t addr, uint32_t data)
{
    struct kvm_irq_routing_entry *e = NULL;
    int ret;

    pthread_mutex_lock(&irq->lock);
    for (unsigned i = 0; i < irq->nroutes; i++) {
        if (irq->routes[i].gsi == gsi && irq->routes[i].type == KVM_IRQ_ROUTING_MSI) {
            e = &irq->routes[i];
            break;
        }
    }
    if (!e)
        e = &irq->routes[irq->nroutes++];
    memset(e, 0, sizeof(*e));
    e->gsi = gsi;
    e->type = KVM_IRQ_ROUTING_MSI;
    e->u.msi.address_lo = (uint32_t)addr;
    e->u.msi.address_hi = (uint32_t)(addr >> 32);
    e->u.msi.data = data;
    ret = commit(irq);
    pthread_mutex_unlock(&irq->lock);
    return ret;
}

int vio_irq_irqfd(struct vio_irq *irq, unsigned gsi, int efd, bool assign)
{
    struct kvm_irqfd f = {
        .fd = (uint32_t)efd,
        .gsi = gsi,
        .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
    };

    if (ioctl(irq->vm_fd, KVM_IRQFD, &f) < 0)
        return -errno;
    return 0;
}
