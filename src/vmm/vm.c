/* VM creation, guest RAM and the vCPU thread lifecycle (see vm.h). The run
 * loop of each vCPU lives in vcpu.c. */
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "vmm/vcpu.h"

/* Where KVM keeps the real-mode TSS and identity page table (VMX needs
 * them; harmless elsewhere): just below the BIOS area, outside RAM use. */
#define KVM_TSS_ADDR      0xFFFBD000ull
#define KVM_IDENT_MAP_ADDR 0xFFFBC000ull

const char *vio_vm_exit_name(enum vio_vm_exit e)
{
    switch (e) {
    case VIO_VM_RUNNING:
        return "running";
    case VIO_VM_POWEROFF:
        return "poweroff";
    case VIO_VM_REBOOT:
        return "reboot";
    case VIO_VM_STOPPED:
        return "stopped";
    case VIO_VM_ERROR:
        return "error";
    }
    return "?";
}

uint64_t vio_vm_host_mem(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);

    return pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
}

static int check_cap(struct vio_vm *vm, int cap, const char *name)
{
    if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, cap) <= 0) {
        vio_err("/dev/kvm lacks %s, which vio run needs", name);
        return -ENOTSUP;
    }
    return 0;
}

static int map_ram(struct vio_vm *vm, uint64_t size)
{
    struct kvm_userspace_memory_region r;
    int ret;

    vm->mem_fd = memfd_create("vio-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (vm->mem_fd < 0)
        return -errno;
    if (ftruncate(vm->mem_fd, (off_t)size) < 0) {
        ret = -errno;
        vio_err("cannot size guest RAM to %llu MiB: %s", (unsigned long long)(size >> 20),
                strerror(errno));
        return ret;
    }
    /* Back-ends that map this fd must not see it shrink under them. */
    fcntl(vm->mem_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    vm->ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, vm->mem_fd, 0);
    if (vm->ram == MAP_FAILED) {
        vm->ram = NULL;
        return -errno;
    }
    madvise(vm->ram, size, MADV_MERGEABLE);
    vm->ram_size = size;
    vm->low_size = size < VIO_MEM_32BIT_END ? size : VIO_MEM_32BIT_END;
    vm->high_size = size - vm->low_size;

    r = (struct kvm_userspace_memory_region){
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = vm->low_size,
        .userspace_addr = (uintptr_t)vm->ram,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return -errno;
    vio_gmem_init(&vm->gmem);
    ret = vio_gmem_add_ptr(&vm->gmem, vm->ram, 0, vm->low_size, (uintptr_t)vm->ram);
    if (ret < 0)
        return ret;
    if (vm->high_size) {
        r = (struct kvm_userspace_memory_region){
            .slot = 1,
            .guest_phys_addr = VIO_HIGH_RAM_START,
            .memory_size = vm->high_size,
            .userspace_addr = (uintptr_t)(vm->ram + vm->low_size),
        };
        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
            return -errno;
        ret = vio_gmem_add_ptr(&vm->gmem, vm->ram + vm->low_size, VIO_HIGH_RAM_START,
                               vm->high_size, (uintptr_t)(vm->ram + vm->low_size));
        if (ret < 0)
            return ret;
    }
    return 0;
}

int vio_vm_check_mem(uint64_t mem_size)
{
    uint64_t host = vio_vm_host_mem();

    if (mem_size < (64ull << 20) || (mem_size & ((2ull << 20) - 1))) {
        vio_err("--mem %llu MiB: give at least 64M, in whole 2 MiB steps",
                (unsigned long long)(mem_size >> 20));
        return -EINVAL;
    }
    if (host && mem_size > host) {
        vio_err("--mem %llu MiB is more than this host's %llu MiB of RAM",
                (unsigned long long)(mem_size >> 20), (unsigned long long)(host >> 20));
        return -ENOMEM;
    }
    return 0;
}

int vio_vm_create(const struct vio_vm_opts *o, struct vio_vm *vm)
{
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    int ret, max_cpus;

    memset(vm, 0, sizeof(*vm));
    vm->kvm_fd = vm->vm_fd = vm->mem_fd = vm->exit_fd = -1;
    vio_bus_init(&vm->pio, "pio");
    vio_bus_init(&vm->mmio, "mmio");
    ret = vio_vm_check_mem(o->mem_size);
    if (ret < 0)
        return ret;
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        ret = -errno;
        vio_err("cannot open /dev/kvm: %s (%s)", strerror(errno),
                errno == ENOENT ? "load the kvm and kvm-intel/kvm-amd modules, or run inside "
                                  "a VM with nested virtualization"
                                : "run as root or join the kvm group");
        return ret;
    }
    if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        vio_err("/dev/kvm speaks an unknown API version");
        ret = -ENOTSUP;
        goto err;
    }
    if ((ret = check_cap(vm, KVM_CAP_IRQCHIP, "an in-kernel irqchip")) < 0 ||
        (ret = check_cap(vm, KVM_CAP_IRQFD, "irqfd")) < 0 ||
        (ret = check_cap(vm, KVM_CAP_IOEVENTFD, "ioeventfd")) < 0 ||
        (ret = check_cap(vm, KVM_CAP_IRQ_ROUTING, "GSI routing")) < 0 ||
        (ret = check_cap(vm, KVM_CAP_PIT2, "the in-kernel PIT")) < 0 ||
        (ret = check_cap(vm, KVM_CAP_USER_MEMORY, "user memory regions")) < 0 ||
        (ret = check_cap(vm, KVM_CAP_IMMEDIATE_EXIT, "immediate exit")) < 0)
        goto err;
    max_cpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max_cpus <= 0)
        max_cpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
    if (o->ncpus < 1 || o->ncpus > VIO_VM_MAX_CPUS || (int)o->ncpus > max_cpus) {
        vio_err("--cpus %u: this host allows 1..%d", o->ncpus,
                max_cpus < VIO_VM_MAX_CPUS ? max_cpus : VIO_VM_MAX_CPUS);
        ret = -EINVAL;
        goto err;
    }
    vm->ncpus = o->ncpus;
    vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->vcpu_mmap_size <= 0) {
        ret = -errno;
        goto err;
    }
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        ret = -errno;
        vio_err("KVM_CREATE_VM: %s", strerror(errno));
        goto err;
    }
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0) {
        ret = -errno;
        goto err;
    }
    {
        uint64_t ident = KVM_IDENT_MAP_ADDR;

        ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident); /* VMX only; ignore */
    }
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        ret = -errno;
        vio_err("KVM_CREATE_IRQCHIP: %s", strerror(errno));
        goto err;
    }
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        ret = -errno;
        vio_err("KVM_CREATE_PIT2: %s", strerror(errno));
        goto err;
    }
    ret = vio_irq_init(&vm->irq, vm->vm_fd);
    if (ret < 0)
        goto err;
    ret = map_ram(vm, o->mem_size);
    if (ret < 0) {
        vio_err("cannot set up %llu MiB of guest RAM: %s",
                (unsigned long long)(o->mem_size >> 20), strerror(-ret));
        goto err;
    }
    /* Per-port exit counts are cheap (256 KiB) and say where boot time goes. */
    vm->pio_by_port = calloc(65536, sizeof(*vm->pio_by_port));
    vm->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->exit_fd < 0) {
        ret = -errno;
        goto err;
    }
    return 0;

err:
    vio_vm_destroy(vm);
    return ret;
}

int vio_vm_create_vcpus(struct vio_vm *vm)
{
    for (unsigned i = 0; i < vm->ncpus; i++) {
        int ret = vio_vcpu_create(vm, i, &vm->vcpus[i]);

        if (ret < 0)
            return ret;
    }
    return 0;
}

int vio_vm_start(struct vio_vm *vm)
{
    for (unsigned i = 0; i < vm->ncpus; i++) {
        int ret = vio_vcpu_start(&vm->vcpus[i]);

        if (ret < 0) {
            vio_vm_request_exit(vm, VIO_VM_ERROR);
            return ret;
        }
    }
    return 0;
}

void vio_vm_request_exit(struct vio_vm *vm, enum vio_vm_exit why)
{
    int expected = VIO_VM_RUNNING;

    if (!atomic_compare_exchange_strong(&vm->exit_reason, &expected, (int)why))
        return;
    for (unsigned i = 0; i < vm->ncpus; i++)
        vio_vcpu_kick(&vm->vcpus[i]);
    vio_eventfd_signal(vm->exit_fd);
}

void vio_vm_dump_vcpus(struct vio_vm *vm)
{
    atomic_fetch_add(&vm->dump_gen, 1);
    for (unsigned i = 0; i < vm->ncpus; i++)
        vio_vcpu_kick(&vm->vcpus[i]);
}

void vio_vm_stop(struct vio_vm *vm)
{
    int expected = VIO_VM_RUNNING;

    atomic_compare_exchange_strong(&vm->exit_reason, &expected, VIO_VM_STOPPED);
    for (unsigned i = 0; i < vm->ncpus; i++)
        vio_vcpu_kick(&vm->vcpus[i]);
    for (unsigned i = 0; i < vm->ncpus; i++)
        vio_vcpu_destroy(&vm->vcpus[i]);
}

void vio_vm_destroy(struct vio_vm *vm)
{
    vio_vm_stop(vm);
    if (vm->ram) {
        vio_gmem_clear(&vm->gmem);
        munmap(vm->ram, vm->ram_size);
        vm->ram = NULL;
    }
    if (vm->pio_by_port) {
        unsigned top[5] = {0};

        for (unsigned p = 0; p < 65536; p++) {
            for (unsigned k = 0; k < 5; k++) {
                if (vm->pio_by_port[p] > vm->pio_by_port[top[k]]) {
                    memmove(&top[k + 1], &top[k], (4 - k) * sizeof(top[0]));
                    top[k] = p;
                    break;
                }
            }
        }
        vio_debug("exits: %llu port I/O (most: 0x%x %u, 0x%x %u, 0x%x %u, 0x%x %u, 0x%x %u), "
                  "%llu MMIO",
                  (unsigned long long)vm->pio_exits, top[0], vm->pio_by_port[top[0]], top[1],
                  vm->pio_by_port[top[1]], top[2], vm->pio_by_port[top[2]], top[3],
                  vm->pio_by_port[top[3]], top[4], vm->pio_by_port[top[4]],
                  (unsigned long long)vm->mmio_exits);
        free((void *)vm->pio_by_port);
        vm->pio_by_port = NULL;
    }
    if (vm->pio.name) {
        vio_bus_destroy(&vm->pio);
        vio_bus_destroy(&vm->mmio);
    }
    if (vm->irq.vm_fd)
        vio_irq_destroy(&vm->irq);
    if (vm->mem_fd >= 0)
        close(vm->mem_fd);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    if (vm->exit_fd >= 0)
        close(vm->exit_fd);
    vm->mem_fd = vm->vm_fd = vm->kvm_fd = vm->exit_fd = -1;
}

void *vio_vm_gpa(struct vio_vm *vm, uint64_t gpa, uint64_t len)
{
    return vio_gmem_map(&vm->gmem, gpa, len);
}
