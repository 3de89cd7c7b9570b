/* How fast this host's KVM runs guest kernel code. Some KVMs (kvm_pvm on a
 * host that is itself a VM without nested virtualization) emulate guest
 * kernel mode instruction by instruction, about a thousand times slower
 * than native; vio run says so at start so nobody mistakes that speed for
 * ours. The probe runs a short real-mode loop in a throwaway VM. */
#ifndef VIO_VMM_PROBE_H
#define VIO_VMM_PROBE_H

#include <stdbool.h>

struct vio_kvm_speed {
    double ns_per_iter; /* one dec/jnz iteration of guest kernel-mode code */
    bool slow;          /* far from native speed */
    bool pvm;           /* the kvm_pvm module is loaded */
};

/* Returns 0 and fills @s, or -errno (no /dev/kvm, probe VM failed). */
int vio_kvm_probe(struct vio_kvm_speed *s);

#endif
