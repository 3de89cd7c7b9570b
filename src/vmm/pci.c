/* PCI bus 0 and config mechanism #1 (see pci.h). Config writes go through a
 * per-byte write mask, so read-only fields stay read-only whatever the
 * guest writes; BAR writes keep only the address bits, which is also what
 * makes the size probe (write all-ones, read back) work. */
#include "vmm/pci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define CONFIG_ADDR_PORT 0xcf8
#define CONFIG_DATA_PORT 0xcfc
#define RESET_CONTROL_OFF 1 /* 0xcf9 within the 0xcf8 range */

#define BAR_MEM_TYPE_32 0x0

static void wr16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static void wr32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return v;
}

static void bar_unmap(struct vio_pci_dev *d, unsigned i)
{
    struct vio_pci_bar *b = &d->bars[i];

    if (!b->mapped)
        return;
    if (!b->io)
        vio_bus_remove(&d->pci->vm->mmio, b->addr, b->opaque);
    b->mapped = false;
    if (d->ops && d->ops->bar_mapped)
        d->ops->bar_mapped(d, i, b->addr, false);
}

static void bar_map(struct vio_pci_dev *d, unsigned i)
{
    struct vio_pci_bar *b = &d->bars[i];

    if (b->mapped || !b->size || !b->addr)
        return;
    /* A BAR the guest placed on top of something else is left undecoded
     * (the bus logs the overlap); accesses there read as all-ones. */
    /* I/O BARs are served through the bus's I/O window (io_window_*):
     * config writes arrive on the port bus, whose lock they hold. */
    if (!b->io && vio_bus_add(&d->pci->vm->mmio, b->addr, b->size, b->ops, b->opaque,
                              d->name) < 0)
        return;
    b->mapped = true;
    if (d->ops && d->ops->bar_mapped)
        d->ops->bar_mapped(d, i, b->addr, true);
}

/* Bring BAR decoding in line with the command register and BAR values. */
static void update_bars(struct vio_pci_dev *d)
{
    uint16_t cmd;

    memcpy(&cmd, &d->cfg[PCI_COMMAND], 2);
    for (unsigned i = 0; i < VIO_PCI_NBARS; i++) {
        struct vio_pci_bar *b = &d->bars[i];
        uint64_t addr;
        bool decode;

        if (!b->size)
            continue;
        if (b->io) {
            /* Ports above 64 KiB do not exist on x86; such a BAR (the size
             * probe among them) is not decoded. */
            addr = rd32(&d->cfg[PCI_BAR0 + 4 * i]) & ~(uint32_t)(b->size - 1) & ~0x3u;
            decode = (cmd & PCI_COMMAND_IO) && addr && addr + b->size <= VIO_PCI_IO_END;
        } else {
            addr = rd32(&d->cfg[PCI_BAR0 + 4 * i]) & ~(uint32_t)(b->size - 1) & ~0xfu;
            /* All-ones is the size probe, not a place to decode. */
            decode = (cmd & PCI_COMMAND_MEMORY) && addr && addr + b->size <= 0x100000000ull &&
                     addr != (0xfffffff0u & ~(uint32_t)(b->size - 1));
        }
        if (b->mapped && (addr != b->addr || !decode))
            bar_unmap(d, i);
        b->addr = addr;
        if (decode)
            bar_map(d, i);
    }
}

/* Bring IOAPIC input of @d's INTA in line with its level and its
 * INTX_DISABLE bit. Caller holds intx_lock. */
static int intx_update(struct vio_pci_dev *d)
{
    struct vio_pci *pci = d->pci;
    unsigned gsi = vio_pci_intx_gsi(d->slot, 0);
    uint32_t *asserted = &pci->intx_asserted[gsi - VIO_PCI_INTX_GSI_BASE];
    uint32_t before = *asserted;

    if (d->intx_level && !d->intx_disabled)
        *asserted |= 1u << d->slot;
    else
        *asserted &= ~(1u << d->slot);
    if ((before != 0) == (*asserted != 0))
        return 0;
    return vio_irq_line(&pci->vm->irq, gsi, *asserted != 0);
}

static void intx_command_written(struct vio_pci_dev *d)
{
    uint16_t cmd;

    if (!d->cfg[PCI_INTERRUPT_PIN])
        return;
    memcpy(&cmd, &d->cfg[PCI_COMMAND], 2);
    pthread_mutex_lock(&d->pci->intx_lock);
    d->intx_disabled = cmd & PCI_COMMAND_INTX_DISABLE;
    intx_update(d);
    pthread_mutex_unlock(&d->pci->intx_lock);
}

void vio_pci_dev_enable_intx(struct vio_pci_dev *d)
{
    d->cfg[PCI_INTERRUPT_PIN] = 1;
    d->cfg[PCI_INTERRUPT_LINE] = (uint8_t)vio_pci_intx_gsi(d->slot, 0);
}

int vio_pci_dev_set_intx(struct vio_pci_dev *d, bool level)
{
    struct vio_pci *pci = d->pci;
    int ret;

    if (!pci || !d->cfg[PCI_INTERRUPT_PIN])
        return -EINVAL;
    pthread_mutex_lock(&pci->intx_lock);
    d->intx_level = level;
    ret = intx_update(d);
    pthread_mutex_unlock(&pci->intx_lock);
    return ret;
}

uint32_t vio_pci_cfg_read(struct vio_pci_dev *d, unsigned off, unsigned len)
{
    uint32_t v = 0;

    if (off >= 256 || len > 4 || off + len > 256)
        return 0xffffffff;
    memcpy(&v, &d->cfg[off], len);
    return v;
}

void vio_pci_cfg_write(struct vio_pci_dev *d, unsigned off, uint32_t val, unsigned len)
{
    bool bars = false;

    if (off >= 256 || len > 4 || off + len > 256)
        return;
    for (unsigned i = 0; i < len; i++) {
        unsigned o = off + i;
        uint8_t b = (uint8_t)(val >> (8 * i));

        d->cfg[o] = (uint8_t)((d->cfg[o] & ~d->wmask[o]) | (b & d->wmask[o]));
        if (o == PCI_COMMAND || (o >= PCI_BAR0 && o < PCI_BAR0 + 4 * VIO_PCI_NBARS))
            bars = true;
    }
    if (bars)
        update_bars(d);
    if (off <= PCI_COMMAND + 1 && off + len > PCI_COMMAND + 1 && d->pci)
        intx_command_written(d);
    if (d->ops && d->ops->cfg_written)
        d->ops->cfg_written(d, off, len);
}

static struct vio_pci_dev *selected(struct vio_pci *pci, unsigned *reg)
{
    uint32_t a = pci->addr_reg;
    unsigned bus = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;

    if (!(a & 0x80000000u) || bus != 0 || fn != 0)
        return NULL;
    *reg = a & 0xfc;
    return pci->devs[slot];
}

static void config_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct vio_pci *pci = opaque;
    uint32_t v = 0xffffffff;

    pthread_mutex_lock(&pci->lock);
    if (off == 0 && len == 4) {
        v = pci->addr_reg;
    } else if (off >= 4) {
        unsigned reg;
        struct vio_pci_dev *d = selected(pci, &reg);

        if (d)
            v = vio_pci_cfg_read(d, reg + (unsigned)(off - 4), len);
    }
    pthread_mutex_unlock(&pci->lock);
    memcpy(data, &v, len);
}

static void config_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct vio_pci *pci = opaque;
    uint32_t v = 0;

    memcpy(&v, data, len);
    if (off == RESET_CONTROL_OFF && len == 1) {
        if (v & 0x4) {
            vio_info("guest reset through port 0xcf9");
            vio_vm_request_exit(pci->vm, VIO_VM_REBOOT);
        }
        return;
    }
    pthread_mutex_lock(&pci->lock);
    if (off == 0 && len == 4) {
        pci->addr_reg = v;
    } else if (off >= 4) {
        unsigned reg;
        struct vio_pci_dev *d = selected(pci, &reg);

        if (d)
            vio_pci_cfg_write(d, reg + (unsigned)(off - 4), v, len);
    }
    pthread_mutex_unlock(&pci->lock);
}

static const struct vio_io_ops config_ops = {.read = config_read, .write = config_write};

/* Ports VIO_PCI_IO_START..END: dispatched here to the I/O BAR that decodes
 * the address. Holding the bus lock across the device's callback keeps the
 * device from going away meanwhile, as the MMIO bus does for memory BARs. */
static bool io_window_access(struct vio_pci *pci, uint64_t off, void *data, unsigned len,
                             bool is_write)
{
    uint64_t port = VIO_PCI_IO_START + off;

    for (unsigned s = 1; s < VIO_PCI_SLOTS; s++) {
        struct vio_pci_dev *d = pci->devs[s];

        for (unsigned i = 0; d && i < VIO_PCI_NBARS; i++) {
            struct vio_pci_bar *b = &d->bars[i];

            if (!b->io || !b->mapped || port < b->addr || port + len > b->addr + b->size)
                continue;
            if (is_write)
                b->ops->write(b->opaque, port - b->addr, data, len);
            else
                b->ops->read(b->opaque, port - b->addr, data, len);
            return true;
        }
    }
    return false;
}

static void io_window_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct vio_pci *pci = opaque;

    pthread_mutex_lock(&pci->lock);
    if (!io_window_access(pci, off, data, len, false))
        memset(data, 0xff, len);
    pthread_mutex_unlock(&pci->lock);
}

static void io_window_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct vio_pci *pci = opaque;

    pthread_mutex_lock(&pci->lock);
    io_window_access(pci, off, (void *)data, len, true);
    pthread_mutex_unlock(&pci->lock);
}

static const struct vio_io_ops io_window_ops = {.read = io_window_read,
                                                .write = io_window_write};

static void header_init(struct vio_pci_dev *d, uint16_t vendor, uint16_t device,
                        uint32_t class_code, uint8_t revision, uint16_t svendor, uint16_t sid)
{
    memset(d->cfg, 0, sizeof(d->cfg));
    memset(d->wmask, 0, sizeof(d->wmask));
    wr16(&d->cfg[PCI_VENDOR_ID], vendor);
    wr16(&d->cfg[PCI_DEVICE_ID], device);
    d->cfg[PCI_REVISION_ID] = revision;
    d->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
    d->cfg[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
    d->cfg[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
    wr16(&d->cfg[PCI_SUBSYSTEM_VENDOR_ID], svendor);
    wr16(&d->cfg[PCI_SUBSYSTEM_ID], sid);
    /* The guest may set I/O, memory, bus-master and INTx-disable, and the
     * interrupt line byte (a scratch register for the OS). */
    wr16(&d->wmask[PCI_COMMAND],
         PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
    d->cap_next = 0x40;
}

int vio_pci_create(struct vio_vm *vm, struct vio_pci **out)
{
    struct vio_pci *pci = calloc(1, sizeof(*pci));
    int ret;

    if (!pci)
        return -ENOMEM;
    pci->vm = vm;
    pci->mmio_next = VIO_MMIO_32_START;
    pci->io_next = VIO_PCI_IO_START;
    pthread_mutex_init(&pci->lock, NULL);
    pthread_mutex_init(&pci->intx_lock, NULL);
    /* Slot 0: the host bridge (class 06/00/00). */
    pci->host.pci = pci;
    snprintf(pci->host.name, sizeof(pci->host.name), "host-bridge");
    header_init(&pci->host, 0x1b36, 0x0008, 0x060000, 0, 0x1b36, 0x0008);
    pci->devs[0] = &pci->host;
    ret = vio_bus_add(&vm->pio, CONFIG_ADDR_PORT, 8, &config_ops, pci, "pci-config");
    if (ret == 0) {
        ret = vio_bus_add(&vm->pio, VIO_PCI_IO_START, VIO_PCI_IO_END - VIO_PCI_IO_START,
                          &io_window_ops, pci, "pci-io");
        if (ret < 0)
            vio_bus_remove(&vm->pio, CONFIG_ADDR_PORT, pci);
    }
    if (ret < 0) {
        pthread_mutex_destroy(&pci->intx_lock);
        pthread_mutex_destroy(&pci->lock);
        free(pci);
        return ret;
    }
    *out = pci;
    return 0;
}

void vio_pci_destroy(struct vio_pci *pci)
{
    if (!pci)
        return;
    for (unsigned s = 1; s < VIO_PCI_SLOTS; s++) {
        if (pci->devs[s])
            vio_pci_dev_remove(pci->devs[s]);
    }
    vio_bus_remove(&pci->vm->pio, CONFIG_ADDR_PORT, pci);
    vio_bus_remove(&pci->vm->pio, VIO_PCI_IO_START, pci);
    pthread_mutex_destroy(&pci->intx_lock);
    pthread_mutex_destroy(&pci->lock);
    free(pci);
}

int vio_pci_dev_init(struct vio_pci *pci, struct vio_pci_dev *d, const char *name,
                     uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
                     uint16_t subsys_vendor, uint16_t subsys_id,
                     const struct vio_pci_dev_ops *ops, void *opaque)
{
    unsigned slot;

    memset(d, 0, sizeof(*d));
    pthread_mutex_lock(&pci->lock);
    for (slot = 1; slot < VIO_PCI_SLOTS && pci->devs[slot]; slot++)
        ;
    if (slot == VIO_PCI_SLOTS) {
        pthread_mutex_unlock(&pci->lock);
        return -ENOSPC;
    }
    d->pci = pci;
    d->slot = slot;
    d->ops = ops;
    d->opaque = opaque;
    snprintf(d->name, sizeof(d->name), "%s", name);
    header_init(d, vendor, device, class_code, revision, subsys_vendor, subsys_id);
    pci->devs[slot] = d;
    pthread_mutex_unlock(&pci->lock);
    return 0;
}

int vio_pci_dev_add_bar(struct vio_pci_dev *d, unsigned bar, uint64_t size,
                        const struct vio_io_ops *ops, void *opaque)
{
    struct vio_pci *pci = d->pci;
    uint64_t addr;
    uint32_t mask;
    uint16_t cmd;

    if (bar >= VIO_PCI_NBARS || !vio_is_pow2(size) || size < 16 || size > (1ull << 30))
        return -EINVAL;
    pthread_mutex_lock(&pci->lock);
    addr = (pci->mmio_next + size - 1) & ~(size - 1);
    if (addr + size > VIO_MMIO_32_END) {
        pthread_mutex_unlock(&pci->lock);
        return -ENOSPC;
    }
    pci->mmio_next = addr + size;
    d->bars[bar] = (struct vio_pci_bar){.size = size, .ops = ops, .opaque = opaque};
    wr32(&d->cfg[PCI_BAR0 + 4 * bar], (uint32_t)addr | BAR_MEM_TYPE_32);
    mask = ~(uint32_t)(size - 1);
    wr32(&d->wmask[PCI_BAR0 + 4 * bar], mask);
    /* Decoding on, as firmware leaves devices it has assigned. */
    memcpy(&cmd, &d->cfg[PCI_COMMAND], 2);
    cmd |= PCI_COMMAND_MEMORY;
    wr16(&d->cfg[PCI_COMMAND], cmd);
    update_bars(d);
    pthread_mutex_unlock(&pci->lock);
    return 0;
}

int vio_pci_dev_add_io_bar(struct vio_pci_dev *d, unsigned bar, uint32_t size,
                           const struct vio_io_ops *ops, void *opaque)
{
    struct vio_pci *pci = d->pci;
    uint32_t addr;
    uint16_t cmd;

    if (bar >= VIO_PCI_NBARS || !vio_is_pow2(size) || size < 4 || size > 256)
        return -EINVAL;
    pthread_mutex_lock(&pci->lock);
    addr = (pci->io_next + size - 1) & ~(size - 1);
    if (addr + size > VIO_PCI_IO_END) {
        pthread_mutex_unlock(&pci->lock);
        return -ENOSPC;
    }
    pci->io_next = addr + size;
    d->bars[bar] = (struct vio_pci_bar){.size = size, .io = true, .ops = ops, .opaque = opaque};
    /* Bit 0 says "I/O space" and is read-only. */
    wr32(&d->cfg[PCI_BAR0 + 4 * bar], addr | 1u);
    wr32(&d->wmask[PCI_BAR0 + 4 * bar], ~(size - 1) & ~3u);
    memcpy(&cmd, &d->cfg[PCI_COMMAND], 2);
    cmd |= PCI_COMMAND_IO;
    wr16(&d->cfg[PCI_COMMAND], cmd);
    update_bars(d);
    pthread_mutex_unlock(&pci->lock);
    return 0;
}

uint8_t vio_pci_dev_add_cap(struct vio_pci_dev *d, const void *data, uint8_t len)
{
    uint8_t off = (uint8_t)((d->cap_next + 3) & ~3);
    uint16_t status;

    if (len < 2 || off < 0x40 || (unsigned)off + len > 256)
        return 0;
    memcpy(&d->cfg[off], data, len);
    d->cfg[off + 1] = 0; /* end of list so far */
    if (d->cap_last)
        d->cfg[d->cap_last + 1] = off;
    else
        d->cfg[PCI_CAPABILITY_LIST] = off;
    d->cap_last = off;
    d->cap_next = (uint8_t)(off + len);
    memcpy(&status, &d->cfg[PCI_STATUS], 2);
    status |= PCI_STATUS_CAP_LIST;
    wr16(&d->cfg[PCI_STATUS], status);
    return off;
}

void vio_pci_dev_remove(struct vio_pci_dev *d)
{
    struct vio_pci *pci = d->pci;

    if (!pci)
        return;
    if (d->cfg[PCI_INTERRUPT_PIN]) {
        pthread_mutex_lock(&pci->intx_lock);
        d->intx_level = false;
        intx_update(d);
        pthread_mutex_unlock(&pci->intx_lock);
    }
    pthread_mutex_lock(&pci->lock);
    for (unsigned i = 0; i < VIO_PCI_NBARS; i++)
        bar_unmap(d, i);
    if (pci->devs[d->slot] == d)
        pci->devs[d->slot] = NULL;
    pthread_mutex_unlock(&pci->lock);
    d->pci = NULL;
}
