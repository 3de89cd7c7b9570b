/* Emulated NVMe 1.4 controller (PCI class 01/08/02), for guests with only
 * the stock nvme driver. Each namespace is a block backend (bdev.h).
 *
 * What is modelled: the BAR0 registers (CAP, VS, CC, CSTS, AQA, ASQ, ACQ,
 * doorbells at 0x1000 with stride 4), enable / reset / shutdown, the admin
 * queue (Identify, queue creation and deletion, features, log pages, Abort,
 * Asynchronous Event Request, Keep Alive, Doorbell Buffer Config) and the
 * NVM I/O commands (Read, Write, Flush, Write Zeroes, Dataset Management)
 * with PRP lists. Every completion queue has its own MSI-X vector (admin:
 * vector 0).
 *
 * Everything the guest hands over is untrusted: register values, queue
 * geometry, SQ entries, PRPs, LBA ranges, DSM range lists, doorbell values.
 * A bad command completes with the NVMe status the spec gives for it; a
 * bad doorbell write is ignored and reported as an asynchronous event; an
 * admin queue outside guest RAM at enable time sets CSTS.CFS.
 *
 * Threading: registers are accessed from vCPU threads; admin commands run
 * there, under the controller's lock. I/O queue pairs run on worker loops
 * (vio run's I/O threads): an SQ tail doorbell stores the tail and signals
 * the queue's eventfd, so the worker fetches, submits to the backend,
 * completes and interrupts; the vCPU only traps the doorbell write. Once
 * the driver sets up shadow doorbells (Doorbell Buffer Config) the I/O
 * doorbells are KVM ioeventfds and the workers read the shadow values. */
#ifndef VIO_EMUL_NVME_H
#define VIO_EMUL_NVME_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "backends/block/bdev.h"
#include "core/gmem.h"
#include "core/loop.h"
#include "vmm/pci.h"
#include "vmm/vm.h"

#define VIO_NVME_MAX_IOQ    64   /* I/O queue pairs */
#define VIO_NVME_MAX_NS     8    /* namespaces per controller */
#define VIO_NVME_MQES       1023 /* CAP.MQES: I/O queues of up to 1024 entries */
#define VIO_NVME_MDTS       5    /* transfers of up to 2^5 pages (128 KiB) */
#define VIO_NVME_BAR0_SIZE  0x4000
#define VIO_NVME_SERIAL_LEN 20

struct vio_nvme;

struct vio_nvme_opts {
    const char *id;     /* device name (logs, PCI) */
    const char *serial; /* Identify SN, up to 20 ASCII characters; NULL: the id */
    unsigned queues;    /* I/O queue pairs offered, 1..VIO_NVME_MAX_IOQ */
    /* Namespaces 1..nns; the controller owns them from vio_nvme_new on
     * (closed by vio_nvme_free, also when vio_nvme_new fails). */
    struct vio_bdev *ns[VIO_NVME_MAX_NS];
    unsigned nns;
    /* Worker loops for I/O queues, dealt round-robin by queue id. */
    struct vio_loop *loops[VIO_NVME_MAX_IOQ];
    unsigned nloops;
};

/* Counters (control API, tests). */
struct vio_nvme_stats {
    uint64_t admin_cmds, io_cmds;
    uint64_t read_bytes, write_bytes;
    uint64_t errors;       /* commands completed with a non-zero status */
    uint64_t bad_doorbell; /* doorbell writes ignored (no such queue, bad value) */
};

/* Raise MSI-X vector @vector (any thread). */
typedef void (*vio_nvme_irq_fn)(void *opaque, uint16_t vector);

/* The model alone, without a PCI function (tests; vio_nvme_create wraps
 * it): guest memory @mem, @irq called for each interrupt. Returns 0 or
 * -errno (logged). */
int vio_nvme_new(const struct vio_nvme_opts *o, const struct vio_gmem *mem, vio_nvme_irq_fn irq,
                 void *irq_opaque, struct vio_nvme **out);
/* Stop every queue (in-flight I/O completes first), close the namespaces,
 * free. NULL is fine. */
void vio_nvme_free(struct vio_nvme *n);

/* A 4- or 8-byte register access at BAR0 offset @off (vCPU threads). Other
 * sizes and unaligned accesses read as zero and are ignored. */
uint64_t vio_nvme_reg_read(struct vio_nvme *n, uint32_t off, unsigned len);
void vio_nvme_reg_write(struct vio_nvme *n, uint32_t off, uint64_t val, unsigned len);

void vio_nvme_get_stats(struct vio_nvme *n, struct vio_nvme_stats *s);
/* Identity, state and counters for the control API. */
json_t *vio_nvme_info(struct vio_nvme *n);
const char *vio_nvme_id(const struct vio_nvme *n);

/* vio run: the model as a PCI function on @pci: BAR0 the registers and
 * doorbells, BAR4 the MSI-X table (queues + 1 vectors) and PBA. Returns 0
 * or -errno (logged); on error the namespaces are closed. */
int vio_nvme_create(const struct vio_nvme_opts *o, struct vio_vm *vm, struct vio_pci *pci,
                    struct vio_nvme **out);
/* Remove the PCI function and free (vCPUs stopped first). NULL is fine. */
void vio_nvme_destroy(struct vio_nvme *n);

#endif
