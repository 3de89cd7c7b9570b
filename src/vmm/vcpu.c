/* vCPU set-up and run loop (see vcpu.h). CPUID starts from what KVM
 * supports, with the topology (APIC IDs) made to match our ACPI tables and
 * the PMU hidden. */
#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"

#define VCPU_KICK_SIGNAL (SIGRTMIN + 1)

#define MSR_IA32_MISC_ENABLE 0x1a0
#define MISC_ENABLE_FAST_STRING 1ull

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_EXTINT 0x7
#define APIC_MODE_NMI    0x4

static void kick_handler(int sig)
{
    (void)sig; /* only interrupts KVM_RUN */
}

static void kick_handler_init(void)
{
    /* No SA_RESTART: the signal must make KVM_RUN return. */
    struct sigaction sa = {.sa_handler = kick_handler};

    sigemptyset(&sa.sa_mask);
    sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
}

static void install_kick_handler(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, kick_handler_init);
}

static int bits_for(unsigned n)
{
    int b = 0;

    while ((1u << b) < n)
        b++;
    return b;
}

static struct kvm_cpuid_entry2 *find_leaf(struct kvm_cpuid2 *c, uint32_t fn, uint32_t index)
{
    for (unsigned i = 0; i < c->nent; i++) {
        if (c->entries[i].function == fn && c->entries[i].index == index)
            return &c->entries[i];
    }
    return NULL;
}

/* Leaf 0xD must only announce XSAVE components whose feature flags are
 * set, with sizes to match, or Linux warns of an XSAVE inconsistency and
 * distrusts the layout. Nested or emulated hosts can report AVX state in
 * 0xD while leaf 1 lacks AVX. */
static void sanitize_xsave(struct kvm_cpuid2 *c)
{
    struct kvm_cpuid_entry2 *l1 = find_leaf(c, 1, 0), *l7 = find_leaf(c, 7, 0);
    struct kvm_cpuid_entry2 *d0 = find_leaf(c, 0xd, 0);
    uint32_t ecx1 = l1 ? l1->ecx : 0, ebx7 = l7 ? l7->ebx : 0, ecx7 = l7 ? l7->ecx : 0;
    uint32_t drop = 0, max = 0x240; /* legacy area + XSAVE header */

    if (!d0)
        return;
    if (!(ecx1 & (1u << 28)))
        drop |= 1u << 2; /* AVX */
    if (!(ebx7 & (1u << 14)))
        drop |= 3u << 3; /* MPX */
    if (!(ebx7 & (1u << 16)))
        drop |= 7u << 5; /* AVX-512 */
    if (!(ecx7 & (1u << 3)))
        drop |= 1u << 9; /* PKRU */
    d0->eax &= ~drop;
    for (unsigned i = 2; i < 32; i++) {
        struct kvm_cpuid_entry2 *s = find_leaf(c, 0xd, i);

        if (!s)
            continue;
        if (drop & (1u << i)) {
            s->eax = s->ebx = s->ecx = s->edx = 0;
        } else if ((d0->eax & (1u << i)) && s->eax + s->ebx > max) {
            max = s->eax + s->ebx;
        }
    }
    d0->ecx = max;
    if (d0->ebx > max)
        d0->ebx = max;
}

/* Leaf 0xB, built here rather than edited, since hosts report different
 * subleaves: SMT level with one thread per core, core level with every
 * vCPU in one package, x2APIC ID = vCPU index. Leaf 0x1F is dropped so the
 * guest reads 0xB. */
static void set_topology(struct kvm_cpuid2 *c, struct vio_vcpu *v)
{
    struct kvm_cpuid_entry2 *l0 = find_leaf(c, 0, 0);
    unsigned ncpus = v->vm->ncpus, j = 0;

    for (unsigned i = 0; i < c->nent; i++) {
        if (c->entries[i].function != 0xb && c->entries[i].function != 0x1f)
            c->entries[j++] = c->entries[i];
    }
    c->nent = j;
    if (!l0 || l0->eax < 0xb)
        return;
    if (l0->eax >= 0x1f)
        l0->eax = 0x1e;
    for (uint32_t sub = 0; sub < 3; sub++) {
        struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];

        memset(e, 0, sizeof(*e));
        e->function = 0xb;
        e->index = sub;
        e->flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
        e->edx = v->id;
        e->ecx = sub;
        if (sub == 0) {
            e->ebx = 1;
            e->ecx |= 1u << 8; /* SMT */
        } else if (sub == 1) {
            e->eax = (uint32_t)bits_for(ncpus);
            e->ebx = ncpus;
            e->ecx |= 2u << 8; /* core */
        }
    }
}

static int setup_cpuid(struct vio_vcpu *v)
{
    struct vio_vm *vm = v->vm;
    unsigned n = 128;
    struct kvm_cpuid2 *c = NULL;
    int ret;

    for (;;) {
        /* Room for the topology subleaves we add below. */
        c = calloc(1, sizeof(*c) + (n + 3) * sizeof(c->entries[0]));
        if (!c)
            return -ENOMEM;
        c->nent = n;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
            break;
        ret = -errno;
        free(c);
        if (ret != -E2BIG || n >= 4096)
            return ret;
        n *= 2;
    }
    sanitize_xsave(c);
    set_topology(c, v);
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];

        switch (e->function) {
        case 1:
            /* Initial APIC ID, logical processor count, HTT, hypervisor. */
            e->ebx = (e->ebx & 0x0000ffff) | (v->id << 24) | ((vm->ncpus & 0xff) << 16);
            if (vm->ncpus > 1)
                e->edx |= 1u << 28;
            e->ecx |= 1u << 31;
            break;
        case 0xa:
            /* No PMU: nothing in our VMM manages its counters. */
            e->eax = e->ebx = e->ecx = e->edx = 0;
            break;
        case 0x8000001e:
            e->eax = v->id; /* AMD extended APIC ID */
            break;
        default:
            break;
        }
    }
    ret = ioctl(v->fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
    if (ret < 0)
        vio_err("vCPU %u: KVM_SET_CPUID2: %s", v->id, strerror(-ret));
    free(c);
    return ret;
}

static int setup_msrs(struct vio_vcpu *v)
{
    union {
        struct kvm_msrs hdr;
        uint8_t bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
    } m;

    memset(&m, 0, sizeof(m));
    m.hdr.nmsrs = 1;
    m.hdr.entries[0].index = MSR_IA32_MISC_ENABLE;
    m.hdr.entries[0].data = MISC_ENABLE_FAST_STRING;
    if (ioctl(v->fd, KVM_SET_MSRS, &m) != 1)
        vio_debug("vCPU %u: MSR_IA32_MISC_ENABLE not settable", v->id);
    return 0;
}

static int setup_lapic(struct vio_vcpu *v)
{
    struct kvm_lapic_state s;
    uint32_t lvt;

    if (ioctl(v->fd, KVM_GET_LAPIC, &s) < 0)
        return -errno;
    /* Virtual wire: the PIC reaches the CPU through LINT0, NMIs through
     * LINT1, until the kernel sets up the IOAPIC. */
    memcpy(&lvt, &s.regs[APIC_LVT0], 4);
    lvt = (lvt & ~0x700u) | (APIC_MODE_EXTINT << 8);
    memcpy(&s.regs[APIC_LVT0], &lvt, 4);
    memcpy(&lvt, &s.regs[APIC_LVT1], 4);
    lvt = (lvt & ~0x700u) | (APIC_MODE_NMI << 8);
    memcpy(&s.regs[APIC_LVT1], &lvt, 4);
    if (ioctl(v->fd, KVM_SET_LAPIC, &s) < 0)
        return -errno;
    return 0;
}

int vio_vcpu_create(struct vio_vm *vm, unsigned id, struct vio_vcpu *v)
{
    struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
    int ret;

    memset(v, 0, sizeof(*v));
    v->vm = vm;
    v->id = id;
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
    if (v->fd < 0) {
        ret = -errno;
        vio_err("KVM_CREATE_VCPU %u: %s", id, strerror(errno));
        return ret;
    }
    v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        return -errno;
    }
    if ((ret = setup_cpuid(v)) < 0 || (ret = setup_msrs(v)) < 0 || (ret = setup_lapic(v)) < 0)
        return ret;
    if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
        return -errno;
    return 0;
}

static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64, bool s_flag)
{
    *s = (struct kvm_segment){
        .base = 0,
        .limit = 0xffffffff,
        .selector = sel,
        .type = type,
        .present = 1,
        .dpl = 0,
        .db = code64 ? 0 : 1,
        .s = s_flag,
        .l = code64,
        .g = 1,
    };
}

int vio_vcpu_set_boot_regs(struct vio_vcpu *v, const struct vio_boot_regs *r)
{
    struct kvm_sregs sregs;
    struct kvm_regs regs = {
        .rip = r->rip,
        .rsi = r->rsi,
        .rsp = r->rsp,
        .rbp = r->rsp,
        .rflags = 0x2,
    };

    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;
    set_seg(&sregs.cs, VIO_BOOT_CS, 0xb, true, true);
    set_seg(&sregs.ds, VIO_BOOT_DS, 0x3, false, true);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    set_seg(&sregs.tr, VIO_BOOT_TSS, 0xb, false, false);
    sregs.tr.limit = 0xffff;
    sregs.tr.g = 0;
    sregs.tr.db = 0;
    sregs.ldt = (struct kvm_segment){.type = 0x2, .present = 1, .limit = 0xffff};
    sregs.gdt.base = r->gdt_base;
    sregs.gdt.limit = r->gdt_limit;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = 0x80000001ull | 0x10 | 0x20; /* PG | PE | ET | NE */
    sregs.cr3 = r->cr3;
    sregs.cr4 = 0x20;         /* PAE */
    sregs.efer = 0x500;       /* LME | LMA */
    if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
        return -errno;
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
        return -errno;
    return 0;
}

static void dump_regs(struct vio_vcpu *v)
{
    struct kvm_regs r;
    struct kvm_sregs s;

    if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
        return;
    vio_info("vCPU %u: rip=0x%llx rsp=0x%llx rflags=0x%llx cr0=0x%llx cr2=0x%llx cr3=0x%llx "
             "cr4=0x%llx efer=0x%llx cs=0x%x idt=0x%llx/%u",
             v->id, (unsigned long long)r.rip, (unsigned long long)r.rsp,
             (unsigned long long)r.rflags, (unsigned long long)s.cr0, (unsigned long long)s.cr2,
             (unsigned long long)s.cr3, (unsigned long long)s.cr4, (unsigned long long)s.efer,
             s.cs.selector, (unsigned long long)s.idt.base, s.idt.limit);
}

static bool handle_exit(struct vio_vcpu *v)
{
    struct vio_vm *vm = v->vm;
    struct kvm_run *run = v->run;

    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        bool w = run->io.direction == KVM_EXIT_IO_OUT;

        atomic_fetch_add_explicit(&vm->pio_exits, 1, memory_order_relaxed);
        if (vm->pio_by_port)
            atomic_fetch_add_explicit(&vm->pio_by_port[run->io.port], 1, memory_order_relaxed);

        for (uint32_t i = 0; i < run->io.count; i++)
            vio_bus_access(&vm->pio, run->io.port, data + (size_t)i * run->io.size, run->io.size,
                           w);
        return true;
    }
    case KVM_EXIT_MMIO:
        atomic_fetch_add_explicit(&vm->mmio_exits, 1, memory_order_relaxed);
        vio_bus_access(&vm->mmio, run->mmio.phys_addr, run->mmio.data,
                       run->mmio.len <= 8 ? run->mmio.len : 8, run->mmio.is_write);
        return true;
    case KVM_EXIT_INTR:
    case KVM_EXIT_HLT:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
        return true;
    case KVM_EXIT_SHUTDOWN:
        /* A triple fault: what a PC does next is reset. */
        vio_info("vCPU %u: triple fault, resetting the VM", v->id);
        dump_regs(v);
        vio_vm_request_exit(vm, VIO_VM_REBOOT);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
            vio_vm_request_exit(vm, VIO_VM_POWEROFF);
            break;
        case KVM_SYSTEM_EVENT_RESET:
            vio_vm_request_exit(vm, VIO_VM_REBOOT);
            break;
        default:
            vio_err("vCPU %u: system event %u (crash)", v->id, run->system_event.type);
            vio_vm_request_exit(vm, VIO_VM_ERROR);
            break;
        }
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        vio_err("vCPU %u: KVM internal error, suberror %u", v->id, run->internal.suberror);
        dump_regs(v);
        vio_vm_request_exit(vm, VIO_VM_ERROR);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        vio_err("vCPU %u: KVM entry failed, hardware reason 0x%llx", v->id,
                (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        dump_regs(v);
        vio_vm_request_exit(vm, VIO_VM_ERROR);
        return false;
    default:
        vio_err("vCPU %u: unexpected KVM exit %u", v->id, run->exit_reason);
        dump_regs(v);
        vio_vm_request_exit(vm, VIO_VM_ERROR);
        return false;
    }
}

void vio_vcpu_run(struct vio_vcpu *v)
{
    struct vio_vm *vm = v->vm;

    while (atomic_load(&vm->exit_reason) == VIO_VM_RUNNING) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                unsigned gen = atomic_load(&vm->dump_gen);

                if (gen != v->dump_gen && atomic_load(&vm->exit_reason) == VIO_VM_RUNNING) {
                    /* A dump request, not a stop: log and carry on. */
                    v->dump_gen = gen;
                    dump_regs(v);
                    __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                }
                continue;
            }
            vio_err("vCPU %u: KVM_RUN: %s", v->id, strerror(errno));
            dump_regs(v);
            vio_vm_request_exit(vm, VIO_VM_ERROR);
            return;
        }
        if (!handle_exit(v))
            return;
    }
}

static void *vcpu_thread(void *arg)
{
    struct vio_vcpu *v = arg;
    char name[16];
    sigset_t set;

    snprintf(name, sizeof(name), "vcpu%u", v->id);
    vio_log_set_thread_name(name);
    pthread_setname_np(pthread_self(), name);
    sigemptyset(&set);
    sigaddset(&set, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    vio_vcpu_run(v);
    return NULL;
}

int vio_vcpu_start(struct vio_vcpu *v)
{
    sigset_t all, old;
    int ret;

    install_kick_handler();
    /* The thread starts with every signal blocked but the kick. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    ret = -pthread_create(&v->thread, NULL, vcpu_thread, v);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret < 0)
        return ret;
    v->thread_started = true;
    return 0;
}

void vio_vcpu_kick(struct vio_vcpu *v)
{
    if (!v->run)
        return;
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (v->thread_started)
        pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vio_vcpu_destroy(struct vio_vcpu *v)
{
    if (!v->vm)
        return;
    if (v->thread_started) {
        pthread_join(v->thread, NULL);
        v->thread_started = false;
    }
    if (v->run)
        munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
    if (v->fd > 0)
        close(v->fd);
    memset(v, 0, sizeof(*v));
}
