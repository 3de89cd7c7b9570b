/* KVM speed probe (see probe.h). */
#include "vmm/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/util.h"

#define PROBE_ITERS   200000u
#define PROBE_MEM     0x10000
#define PROBE_CODE    0x1000
/* Native hardware virtualization runs this loop at about a nanosecond an
 * iteration; instruction emulation at hundreds. */
#define SLOW_NS_PER_ITER 20.0

int vio_kvm_probe(struct vio_kvm_speed *s)
{
    /* mov ecx, PROBE_ITERS; 1: dec ecx; jnz 1b; hlt (16-bit real mode) */
    uint8_t code[] = {0x66, 0xb9, 0, 0, 0, 0, 0x66, 0x49, 0x75, 0xfc, 0xf4};
    uint32_t iters = PROBE_ITERS;
    int kvm = -1, vm = -1, cpu = -1, ret, mmap_size;
    struct kvm_run *run = NULL;
    uint8_t *mem = MAP_FAILED;
    struct kvm_sregs sregs;
    struct kvm_regs regs = {.rip = PROBE_CODE, .rflags = 2};
    uint64_t t0, t1;

    memset(s, 0, sizeof(*s));
    s->pvm = access("/sys/module/kvm_pvm", F_OK) == 0;
    memcpy(&code[2], &iters, 4);
    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        return -errno;
    ret = -EIO;
    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm < 0 || mmap_size <= 0)
        goto out;
    ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);
    mem = mmap(NULL, PROBE_MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        goto out;
    memcpy(mem + PROBE_CODE, code, sizeof(code));
    {
        struct kvm_userspace_memory_region r = {
            .slot = 0, .memory_size = PROBE_MEM, .userspace_addr = (uintptr_t)mem};

        if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0)
            goto out;
    }
    cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (cpu < 0)
        goto out;
    run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
    if (run == MAP_FAILED) {
        run = NULL;
        goto out;
    }
    if (ioctl(cpu, KVM_GET_SREGS, &sregs) < 0)
        goto out;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(cpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(cpu, KVM_SET_REGS, &regs) < 0)
        goto out;
    t0 = vio_now_ns();
    for (int i = 0; i < 100; i++) {
        if (ioctl(cpu, KVM_RUN, 0) < 0 && errno != EINTR)
            goto out;
        if (run->exit_reason == KVM_EXIT_HLT)
            break;
        if (run->exit_reason != KVM_EXIT_INTR)
            goto out;
    }
    t1 = vio_now_ns();
    if (run->exit_reason != KVM_EXIT_HLT)
        goto out;
    s->ns_per_iter = (double)(t1 - t0) / PROBE_ITERS;
    s->slow = s->ns_per_iter > SLOW_NS_PER_ITER;
    ret = 0;
out:
    if (run)
        munmap(run, (size_t)mmap_size);
    if (cpu >= 0)
        close(cpu);
    if (mem != MAP_FAILED)
        munmap(mem, PROBE_MEM);
    if (vm >= 0)
        close(vm);
    close(kvm);
    return ret;
}
