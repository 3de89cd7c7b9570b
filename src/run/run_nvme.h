/* vio run's emulated NVMe controllers (--nvme): parsing the specs, and
 * plugging one controller per spec into each boot's VM, each namespace on a
 * block backend and its I/O queues on the VM's I/O threads.
 *
 *   --nvme path=FILE[,readonly][,direct][,queues=N][,serial=S][,id=ID]
 *       a controller; FILE is namespace 1
 *   --nvme-ns nvme=ID,path=FILE[,readonly][,direct]
 *       the next namespace (2..8) of the controller called ID
 */
#ifndef VIO_RUN_RUN_NVME_H
#define VIO_RUN_RUN_NVME_H

#include <jansson.h>
#include <stdbool.h>

#include "core/workers.h"
#include "emul/nvme.h"
#include "vmm/pci.h"
#include "vmm/vm.h"

#define VIO_RUN_MAX_NVME 8

struct vio_run_nvme_ns {
    char *path; /* owned */
    bool readonly, direct;
};

struct vio_run_nvme_spec {
    char id[32];
    char serial[VIO_NVME_SERIAL_LEN + 1];
    unsigned queues;
    struct vio_run_nvme_ns ns[VIO_NVME_MAX_NS]; /* namespaces 1..nns */
    unsigned nns;
};

/* What the command line asked for (filled while parsing). */
struct vio_run_nvme_opts {
    struct vio_run_nvme_spec c[VIO_RUN_MAX_NVME];
    unsigned n;
};

/* Add one --nvme. A bad spec is logged (naming it) and gives -EINVAL. */
int vio_run_nvme_parse(struct vio_run_nvme_opts *o, const char *spec);
/* Add one --nvme-ns to a controller given before it; errors as above. */
int vio_run_nvme_parse_ns(struct vio_run_nvme_opts *o, const char *spec);
/* Free what parsing kept. */
void vio_run_nvme_opts_free(struct vio_run_nvme_opts *o);
/* True if a controller is called @id (device ids are shared with --blk etc.). */
bool vio_run_nvme_has_id(const struct vio_run_nvme_opts *o, const char *id);

struct vio_run_nvme;

/* One boot: open each namespace and put each controller on @pci, its I/O
 * queues on @io's loops. *out is NULL when there is no --nvme. Returns 0
 * or -errno (logged); on error nothing stays attached. */
int vio_run_nvme_attach(const struct vio_run_nvme_opts *o, struct vio_vm *vm, struct vio_pci *pci,
                        struct vio_workers *io, struct vio_run_nvme **out);
/* End of a boot (vCPUs stopped, I/O threads still running): remove and
 * free the controllers. NULL is fine. */
void vio_run_nvme_detach(struct vio_run_nvme *r);

/* Append each controller's state and counters to @list (control API). */
void vio_run_nvme_list(struct vio_run_nvme *r, json_t *list);
/* The controller called @id's state, or NULL. */
json_t *vio_run_nvme_info(struct vio_run_nvme *r, const char *id);

#endif
