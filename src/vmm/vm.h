/* A KVM virtual machine: the /dev/kvm and VM fds, guest RAM (one memfd, so
 * vhost-user back-ends can map it too), the PIO and MMIO buses, interrupt
 * routing, and the vCPUs with their threads. vio run builds one of these
 * per boot; a reboot tears it down and builds a fresh one. */
#ifndef VIO_VMM_VM_H
#define VIO_VMM_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/gmem.h"
#include "vmm/bus.h"
#include "vmm/irq.h"

#define VIO_VM_MAX_CPUS 64

/* x86 guest-physical layout. RAM above 3 GiB continues at 4 GiB; the hole
 * holds PCI BARs, the IOAPIC and the local APIC. */
#define VIO_MEM_32BIT_END   0xC0000000ull /* end of low RAM / start of the MMIO hole */
#define VIO_MMIO_32_START   0xC0000000ull /* PCI 32-bit BAR window */
#define VIO_MMIO_32_END     0xFEC00000ull
#define VIO_IOAPIC_ADDR     0xFEC00000ull
#define VIO_LAPIC_ADDR      0xFEE00000ull
#define VIO_HIGH_RAM_START  0x100000000ull

/* Why a VM stopped. */
enum vio_vm_exit {
    VIO_VM_RUNNING = 0,
    VIO_VM_POWEROFF, /* the guest powered off (ACPI sleep state 5) */
    VIO_VM_REBOOT,   /* the guest asked for a reset (i8042, ACPI reset, triple fault) */
    VIO_VM_STOPPED,  /* the operator stopped it (signal, control API) */
    VIO_VM_ERROR,    /* KVM or the VMM failed; the reason was logged */
};

struct vio_vm;

struct vio_vcpu {
    struct vio_vm *vm;
    unsigned id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
    unsigned dump_gen;
};

struct vio_vm {
    int kvm_fd;
    int vm_fd;
    int vcpu_mmap_size;
    /* Guest RAM: one memfd mapped once; low part at 0, the rest at 4 GiB. */
    int mem_fd;
    uint8_t *ram;
    uint64_t ram_size;
    uint64_t low_size, high_size;
    struct vio_gmem gmem;

    struct vio_bus pio, mmio;
    struct vio_irq irq;

    unsigned ncpus;
    struct vio_vcpu vcpus[VIO_VM_MAX_CPUS];

    /* How the VM ended: first reason wins; vio_vm_request_exit sets it and
     * kicks every vCPU out of KVM_RUN and signals exit_fd. */
    _Atomic int exit_reason;
    int exit_fd; /* eventfd, readable once the VM should stop */
    _Atomic unsigned dump_gen; /* bumped to have every vCPU log its registers */
    /* Exits to the VMM, for finding what slows a boot down. */
    _Atomic uint64_t pio_exits, mmio_exits;
    _Atomic uint32_t *pio_by_port; /* [65536], or NULL */
};

struct vio_vm_opts {
    uint64_t mem_size; /* bytes */
    unsigned ncpus;
};

/* Open /dev/kvm, check the API and the capabilities we rely on, create the
 * VM with in-kernel irqchip and PIT, and map guest RAM. No vCPU exists yet.
 * Returns 0 or -errno with a logged message saying what to do. */
/* Check a RAM size before anything is created (at least 64 MiB, whole
 * 2 MiB steps, not above the host's RAM); logs why not. 0 or -errno. */
int vio_vm_check_mem(uint64_t mem_size);
int vio_vm_create(const struct vio_vm_opts *o, struct vio_vm *vm);

/* Create the vCPUs (not started). Returns 0 or -errno. */
int vio_vm_create_vcpus(struct vio_vm *vm);

/* Start one thread per vCPU. */
int vio_vm_start(struct vio_vm *vm);

/* Ask the VM to stop for @why (first caller wins). Any thread. */
void vio_vm_request_exit(struct vio_vm *vm, enum vio_vm_exit why);

/* Ask the VM to stop (if nobody has) and join the vCPU threads; guest RAM
 * and the buses stay, so devices can be drained and removed afterwards. */
void vio_vm_stop(struct vio_vm *vm);

/* Have every vCPU log its registers (for a guest that seems stuck). */
void vio_vm_dump_vcpus(struct vio_vm *vm);

/* Stop and join vCPU threads, close everything. */
void vio_vm_destroy(struct vio_vm *vm);

/* Host pointer for guest-physical [gpa, gpa+len) or NULL (boot-time
 * loaders; run-time code goes through vm->gmem). */
void *vio_vm_gpa(struct vio_vm *vm, uint64_t gpa, uint64_t len);

/* Largest amount of guest RAM this host can give, for the error message. */
uint64_t vio_vm_host_mem(void);

const char *vio_vm_exit_name(enum vio_vm_exit e);

#endif
