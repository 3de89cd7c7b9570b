/* MSI-X table, PBA and capability (see msix.h; PCI Local Bus 3.0, 6.8.2). */
#include "vmm/msix.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"

#define MSIX_CAP_ID       0x11
#define MSIX_CTRL_ENABLE  0x8000
#define MSIX_CTRL_MASKALL 0x4000
#define MSIX_VEC_MASKED   0x1

static uint16_t ctrl_word(const struct vio_msix *m)
{
    uint16_t c;

    memcpy(&c, &m->pdev->cfg[m->cap + 2], 2);
    return c;
}

/* Lock held: attach or detach vector @i's irqfd to match its state. */
static void sync_vector(struct vio_msix *m, unsigned i)
{
    struct vio_msix_vector *v = &m->v[i];
    uint16_t c = ctrl_word(m);
    bool want = (c & MSIX_CTRL_ENABLE) && !(c & MSIX_CTRL_MASKALL) &&
                !(v->ctrl & MSIX_VEC_MASKED) && v->routed;
    int ret;

    if (want == v->irqfd)
        return;
    ret = vio_irq_irqfd(&m->vm->irq, (unsigned)v->gsi, v->efd, want);
    if (ret < 0) {
        vio_warn("%s: MSI-X vector %u: %s irqfd: %s", m->pdev->name, i,
                 want ? "attaching" : "detaching", strerror(-ret));
        return;
    }
    v->irqfd = want;
}

int vio_msix_init(struct vio_msix *m, struct vio_vm *vm, struct vio_pci_dev *pdev, unsigned nvec,
                  unsigned bar, uint32_t table_off, uint32_t pba_off)
{
    uint8_t cap[12] = {MSIX_CAP_ID, 0};
    uint16_t ctrl = (uint16_t)(nvec - 1);
    uint32_t t = table_off | bar, p = pba_off | bar;

    memset(m, 0, sizeof(*m));
    if (nvec == 0 || nvec > 2048)
        return -EINVAL;
    m->vm = vm;
    m->pdev = pdev;
    m->n = nvec;
    pthread_mutex_init(&m->lock, NULL);
    m->v = calloc(nvec, sizeof(*m->v));
    if (!m->v)
        return -ENOMEM;
    for (unsigned i = 0; i < nvec; i++) {
        m->v[i].ctrl = MSIX_VEC_MASKED;
        m->v[i].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        m->v[i].gsi = vio_irq_msi_alloc(&vm->irq);
        if (m->v[i].efd < 0 || m->v[i].gsi < 0) {
            m->n = i + 1;
            vio_msix_destroy(m);
            return -ENOSPC;
        }
    }
    memcpy(&cap[2], &ctrl, 2);
    memcpy(&cap[4], &t, 4);
    memcpy(&cap[8], &p, 4);
    m->cap = vio_pci_dev_add_cap(pdev, cap, sizeof(cap));
    if (!m->cap) {
        vio_msix_destroy(m);
        return -ENOSPC;
    }
    /* Only the enable and function-mask bits are writable. */
    pdev->wmask[m->cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
    return 0;
}

void vio_msix_destroy(struct vio_msix *m)
{
    if (!m->v)
        return;
    for (unsigned i = 0; i < m->n; i++) {
        if (m->v[i].irqfd)
            vio_irq_irqfd(&m->vm->irq, (unsigned)m->v[i].gsi, m->v[i].efd, false);
        if (m->v[i].efd >= 0)
            close(m->v[i].efd);
    }
    free(m->v);
    m->v = NULL;
    pthread_mutex_destroy(&m->lock);
}

void vio_msix_table_read(struct vio_msix *m, uint64_t off, void *data, unsigned len)
{
    uint8_t entry[VIO_MSIX_ENTRY_SIZE];
    unsigned i = (unsigned)(off / VIO_MSIX_ENTRY_SIZE), o = (unsigned)(off % VIO_MSIX_ENTRY_SIZE);

    memset(data, 0xff, len);
    if (i >= m->n || o + len > VIO_MSIX_ENTRY_SIZE)
        return;
    pthread_mutex_lock(&m->lock);
    memcpy(entry, &m->v[i].addr, 8);
    memcpy(entry + 8, &m->v[i].data, 4);
    memcpy(entry + 12, &m->v[i].ctrl, 4);
    pthread_mutex_unlock(&m->lock);
    memcpy(data, entry + o, len);
}

void vio_msix_table_write(struct vio_msix *m, uint64_t off, const void *data, unsigned len)
{
    unsigned i = (unsigned)(off / VIO_MSIX_ENTRY_SIZE), o = (unsigned)(off % VIO_MSIX_ENTRY_SIZE);
    uint8_t entry[VIO_MSIX_ENTRY_SIZE];
    struct vio_msix_vector *v;
    uint64_t old_addr;
    uint32_t old_data;

    if (i >= m->n || o + len > VIO_MSIX_ENTRY_SIZE)
        return;
    pthread_mutex_lock(&m->lock);
    v = &m->v[i];
    old_addr = v->addr;
    old_data = v->data;
    memcpy(entry, &v->addr, 8);
    memcpy(entry + 8, &v->data, 4);
    memcpy(entry + 12, &v->ctrl, 4);
    memcpy(entry + o, data, len);
    memcpy(&v->addr, entry, 8);
    memcpy(&v->data, entry + 8, 4);
    memcpy(&v->ctrl, entry + 12, 4);
    v->ctrl &= MSIX_VEC_MASKED; /* the other control bits are reserved */
    if (!v->routed || v->addr != old_addr || v->data != old_data) {
        if (vio_irq_msi_route(&m->vm->irq, (unsigned)v->gsi, v->addr, v->data) == 0)
            v->routed = true;
    }
    sync_vector(m, i);
    pthread_mutex_unlock(&m->lock);
}

void vio_msix_pba_read(struct vio_msix *m, uint64_t off, void *data, unsigned len)
{
    (void)m;
    (void)off;
    /* Pending interrupts wait in the vector's eventfd, not here. */
    memset(data, 0, len);
}

void vio_msix_cfg_written(struct vio_msix *m)
{
    pthread_mutex_lock(&m->lock);
    for (unsigned i = 0; i < m->n; i++)
        sync_vector(m, i);
    pthread_mutex_unlock(&m->lock);
}

int vio_msix_fd(struct vio_msix *m, uint16_t vec)
{
    if (vec == VIO_MSIX_NO_VECTOR || vec >= m->n)
        return -1;
    return m->v[vec].efd;
}

void vio_msix_notify(struct vio_msix *m, uint16_t vec)
{
    vio_eventfd_signal(vio_msix_fd(m, vec));
}
