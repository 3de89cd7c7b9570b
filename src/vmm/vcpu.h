/* vCPUs: creation (CPUID, MSRs, local APIC wiring), the 64-bit boot state
 * of the boot processor, and the run loop that dispatches exits to the
 * buses. One thread per vCPU. */
#ifndef VIO_VMM_VCPU_H
#define VIO_VMM_VCPU_H

#include <stdint.h>

#include "vmm/vm.h"

/* Register state for the Linux 64-bit boot protocol. */
struct vio_boot_regs {
    uint64_t rip;         /* kernel entry */
    uint64_t rsi;         /* boot_params */
    uint64_t rsp;
    uint64_t cr3;         /* identity-mapping page tables */
    uint64_t gdt_base;
    uint16_t gdt_limit;
};

/* Selectors in the boot GDT built by boot.c. */
#define VIO_BOOT_CS 0x10
#define VIO_BOOT_DS 0x18
#define VIO_BOOT_TSS 0x20

int vio_vcpu_create(struct vio_vm *vm, unsigned id, struct vio_vcpu *v);
/* Put the boot processor in 64-bit mode at the kernel's entry. */
int vio_vcpu_set_boot_regs(struct vio_vcpu *v, const struct vio_boot_regs *r);
int vio_vcpu_start(struct vio_vcpu *v);
/* Make the vCPU leave KVM_RUN soon (it then sees the VM's exit reason). */
void vio_vcpu_kick(struct vio_vcpu *v);
/* Join the thread and release the vCPU. */
void vio_vcpu_destroy(struct vio_vcpu *v);

/* Run the vCPU on the calling thread until the VM is asked to stop. Used by
 * vio_vcpu_start's thread and by tests. */
void vio_vcpu_run(struct vio_vcpu *v);

#endif
