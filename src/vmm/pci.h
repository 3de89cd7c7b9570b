/* PCI bus 0 with configuration mechanism #1 (ports 0xCF8/0xCFC): a host
 * bridge in slot 0 and devices in the other slots. Each device has a
 * 256-byte config space with a write mask, memory BARs (in the 32-bit MMIO
 * window) and I/O BARs (ports 0xC000-0xFFFF) that we assign like firmware
 * would and that follow the guest when it moves them, a capability list and
 * optionally a legacy INTx line. Port 0xCF9 bit 2 resets the VM. */
#ifndef VIO_VMM_PCI_H
#define VIO_VMM_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/vm.h"

#define VIO_PCI_SLOTS 32
#define VIO_PCI_NBARS 6

#define PCI_VENDOR_ID      0x00
#define PCI_DEVICE_ID      0x02
#define PCI_COMMAND        0x04
#define PCI_STATUS         0x06
#define PCI_REVISION_ID    0x08
#define PCI_CLASS_PROG     0x09
#define PCI_HEADER_TYPE    0x0e
#define PCI_BAR0           0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID   0x2e
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN  0x3d

#define PCI_COMMAND_IO     0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_CAP_LIST 0x10

/* Legacy INTx routing, the same in the ACPI _PRT (acpi.c): pin INTA..INTD
 * (@pin 0..3) of @slot reaches IOAPIC input 16 + ((slot + pin) mod 8), the
 * usual swizzle, so neighbouring slots spread over the eight PCI inputs. */
#define VIO_PCI_INTX_GSI_BASE 16u
static inline unsigned vio_pci_intx_gsi(unsigned slot, unsigned pin)
{
    return VIO_PCI_INTX_GSI_BASE + ((slot + pin) & 7u);
}

/* Port I/O window for I/O BARs (inside the host bridge's _CRS). */
#define VIO_PCI_IO_START 0xc000u
#define VIO_PCI_IO_END   0x10000u

struct vio_pci;
struct vio_pci_dev;

struct vio_pci_dev_ops {
    /* BAR @bar is now decoded at @addr (mapped) or no longer decoded. */
    void (*bar_mapped)(struct vio_pci_dev *d, unsigned bar, uint64_t addr, bool mapped);
    /* The guest wrote config bytes [off, off+len) (after the write mask). */
    void (*cfg_written)(struct vio_pci_dev *d, unsigned off, unsigned len);
};

struct vio_pci_bar {
    uint64_t size; /* a power of two; 0: unused */
    uint64_t addr;
    bool io;       /* an I/O BAR (port space) rather than memory */
    bool mapped;
    const struct vio_io_ops *ops;
    void *opaque;
};

struct vio_pci_dev {
    struct vio_pci *pci;
    unsigned slot;
    char name[24];
    uint8_t cfg[256];
    uint8_t wmask[256];
    uint8_t cap_next; /* where the next capability goes */
    uint8_t cap_last; /* the last capability, to link the next one */
    struct vio_pci_bar bars[VIO_PCI_NBARS];
    const struct vio_pci_dev_ops *ops;
    void *opaque;
    /* INTx state, under the bus's intx_lock. */
    bool intx_level;    /* what the device asks for */
    bool intx_disabled; /* COMMAND.INTX_DISABLE as last written */
};

struct vio_pci {
    struct vio_vm *vm;
    pthread_mutex_t lock; /* config address register and config spaces */
    uint32_t addr_reg;
    uint64_t mmio_next;
    uint32_t io_next;
    struct vio_pci_dev *devs[VIO_PCI_SLOTS];
    /* Devices asserting each PCI IOAPIC input (bit = slot): a shared
     * level-triggered line stays high while any of them asserts it. */
    pthread_mutex_t intx_lock;
    uint32_t intx_asserted[8];
    struct vio_pci_dev host;
};

/* Create bus 0 with its host bridge and claim the config ports. */
int vio_pci_create(struct vio_vm *vm, struct vio_pci **out);
void vio_pci_destroy(struct vio_pci *pci);

/* Initialise @d's config header (type 0) and put it in the first free
 * slot. Returns 0 or -ENOSPC. */
int vio_pci_dev_init(struct vio_pci *pci, struct vio_pci_dev *d, const char *name,
                     uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
                     uint16_t subsys_vendor, uint16_t subsys_id,
                     const struct vio_pci_dev_ops *ops, void *opaque);
/* Add a 32-bit memory BAR of @size bytes served by @ops, assigned an address
 * in the MMIO window and mapped. Returns 0 or -errno. */
int vio_pci_dev_add_bar(struct vio_pci_dev *d, unsigned bar, uint64_t size,
                        const struct vio_io_ops *ops, void *opaque);
/* Add an I/O BAR of @size bytes (4..256, a power of two) served by @ops,
 * assigned ports in the I/O window and decoded. Returns 0 or -errno. */
int vio_pci_dev_add_io_bar(struct vio_pci_dev *d, unsigned bar, uint32_t size,
                           const struct vio_io_ops *ops, void *opaque);
/* Give @d interrupt pin INTA (config 0x3d), routed as vio_pci_intx_gsi()
 * says; the interrupt line byte (0x3c) starts with that GSI. */
void vio_pci_dev_enable_intx(struct vio_pci_dev *d);
/* Assert (true) or release @d's INTA. The IOAPIC input is the OR of every
 * device on it, masked by each one's COMMAND.INTX_DISABLE. Any thread;
 * returns 0 or -errno from KVM. */
int vio_pci_dev_set_intx(struct vio_pci_dev *d, bool level);
/* Append capability @data (@len bytes, first byte its ID) to the list.
 * Returns its config offset, or 0 if the space is full. The caller sets
 * write-mask bits for fields the guest may write. */
uint8_t vio_pci_dev_add_cap(struct vio_pci_dev *d, const void *data, uint8_t len);
/* Remove @d from the bus (unmapping its BARs). */
void vio_pci_dev_remove(struct vio_pci_dev *d);

/* Config accessors on the device's own space (for devices and tests). */
uint32_t vio_pci_cfg_read(struct vio_pci_dev *d, unsigned off, unsigned len);
void vio_pci_cfg_write(struct vio_pci_dev *d, unsigned off, uint32_t val, unsigned len);

#endif
