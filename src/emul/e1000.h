/* Emulated Intel 82540EM gigabit Ethernet controller (PCI 8086:100e), the
 * "e1000" every OS has a stock driver for. It is a port on a vio switch
 * (net/switch.h), next to virtio-net ports and uplinks.
 *
 * What is modelled: the Microwire EEPROM (bit-banged through EECD and read
 * through EERD; MAC address, IDs, checksum 0xBABA), an M88E1011 PHY behind
 * MDIC whose link is the port's, interrupt causes ICR/ICS/IMS/IMC on INTA,
 * legacy receive descriptors (buffer size per RCTL.BSIZE/BSEX, filtering
 * per RCTL.UPE/MPE/BAM, RAL/RAH and the multicast table), legacy and
 * extended (context + data) transmit descriptors with checksum insertion
 * and TCP segmentation done here, in the model, so the switch only ever
 * gets complete frames, and clear-on-read statistics. Interrupt moderation
 * registers are stored and ignored (interrupts are immediate).
 *
 * Everything the guest hands over is untrusted: ring registers, descriptor
 * addresses and lengths, offload contexts. What does not fit is dropped,
 * counted (struct vio_e1000_stats) and the ring moves on.
 *
 * Threading: registers are accessed from vCPU threads (MMIO, port I/O);
 * transmit and receive run on the switch's loop thread (a TDT write hands
 * over through an eventfd). One mutex guards the register state; it is
 * not held while a frame is handed to the switch. */
#ifndef VIO_EMUL_E1000_H
#define VIO_EMUL_E1000_H

#include <stdbool.h>
#include <stdint.h>

#include "core/gmem.h"
#include "net/net.h"
#include "net/switch.h"
#include "vmm/pci.h"
#include "vmm/vm.h"

#define VIO_E1000_MMIO_SIZE 0x20000 /* BAR0 */
#define VIO_E1000_IO_SIZE   0x40    /* BAR1: IOADDR at 0, IODATA at 4 */

struct vio_e1000;

struct vio_e1000_opts {
    const char *id;             /* switch port id (and PCI device name) */
    uint8_t mac[VIO_ETH_ALEN];  /* unicast, stored in the EEPROM */
    uint16_t vlan;              /* 0 or 1..4094 */
};

/* Guest mistakes and drops (the mistakes also logged as warnings, rate-limited). */
struct vio_e1000_stats {
    uint64_t tx_bad_ring;  /* TDLEN/TDBA/TDH/TDT unusable or ring not in RAM */
    uint64_t tx_bad_desc;  /* zero or oversized length, unknown type, buffer
                              outside guest memory */
    uint64_t tx_bad_ctx;   /* offload context that does not fit the packet */
    uint64_t tx_too_big;   /* packet of too many bytes or descriptors */
    uint64_t tx_vlan;      /* VLAN insertion asked for: not on an access port */
    uint64_t tx_frames;    /* frames handed to the switch (TSO segments each) */
    uint64_t tx_tso;       /* TSO packets segmented */
    uint64_t rx_bad_ring;  /* RDLEN/RDBA/RDH/RDT unusable or ring not in RAM */
    uint64_t rx_bad_desc;  /* receive buffer outside guest memory */
    uint64_t rx_no_buf;    /* no free descriptors: frame missed */
    uint64_t rx_filtered;  /* not for us per RCTL and the address filters */
    uint64_t rx_too_big;   /* longer than RCTL.LPE allows */
    uint64_t rx_frames;    /* frames written to the ring */
};

typedef void (*vio_e1000_irq_fn)(void *opaque, bool level);

/* The model alone, without a PCI function (tests; vio_e1000_create below
 * wraps it): guest memory @mem, switch @sw (the port is attached and the
 * TX eventfd is watched on the switch's loop), and @irq, called with the
 * interrupt line's level whenever it changes (with the model's lock held).
 * Returns 0 or -errno. */
int vio_e1000_new(const struct vio_e1000_opts *o, const struct vio_gmem *mem,
                  struct vio_switch *sw, vio_e1000_irq_fn irq, void *irq_opaque,
                  struct vio_e1000 **out);
/* Detach from the switch, stop watching, free. NULL is fine. */
void vio_e1000_free(struct vio_e1000 *e);

/* A 32-bit register access at BAR0 offset @off (any thread). */
uint32_t vio_e1000_reg_read(struct vio_e1000 *e, uint32_t off);
void vio_e1000_reg_write(struct vio_e1000 *e, uint32_t off, uint32_t val);

struct vio_net_port *vio_e1000_port(struct vio_e1000 *e);
void vio_e1000_get_stats(struct vio_e1000 *e, struct vio_e1000_stats *s);
/* Set the port's link (cable in or out) and raise LSC (any thread). */
void vio_e1000_set_link(struct vio_e1000 *e, bool up);

/* vio run: the model as a PCI function on @pci: BAR0 memory (registers),
 * BAR1 I/O (IOADDR/IODATA, which Linux uses to reset an 82540), INTA on
 * the IOAPIC input vio_pci_intx_gsi() gives. Returns 0 or -errno. */
int vio_e1000_create(const struct vio_e1000_opts *o, struct vio_vm *vm, struct vio_pci *pci,
                     struct vio_switch *sw, struct vio_e1000 **out);
/* Remove the PCI function and free (vCPUs stopped first). NULL is fine. */
void vio_e1000_destroy(struct vio_e1000 *e);

#endif
