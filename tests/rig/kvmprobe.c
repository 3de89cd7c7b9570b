// kvmprobe: check that /dev/kvm runs guest code, and measure how fast.
//
//   kvmprobe [-n LOOP_ITERS] [-e EXITS] [-q]
//
// Creates a VM with one vCPU and 64 KiB of RAM and runs four tiny guests,
// each a hand-assembled loop:
//
//   loop_rm   real mode, CPL0:  "dec ecx; jnz" LOOP_ITERS times, then hlt
//   loop_lm   64-bit long mode, paging on, CPL0: the same loop
//   cpuid     real mode: EXITS x cpuid (an exit handled inside the kernel's KVM)
//   pio       real mode: EXITS x "out 0x80, al" (an exit to this process)
//   mmio      real mode: EXITS x a byte store to unbacked guest memory
//             (an MMIO exit to this process)
//
// Output: one key=value line per fact (stdout), e.g.
//   api=12  loop_rm_ms=7.1  loop_rm_mips=140.8  pio_us=21.3 ...
// The *_us values are the cost of one exit round trip, in microseconds.
// Exit status: 0 if every guest ran to its hlt, 1 otherwise (the reason is
// printed as error=... and on stderr), 2 on usage errors.
//
// Static, libc only: it runs on the host, in the nested rig's L1, anywhere.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE 0x10000u  // 64 KiB of guest RAM at GPA 0
#define CODE 0x1000u       // guest code
#define PML4 0x2000u       // long-mode page tables: PML4, PDPT, PD (2 MiB page)
#define PDPT 0x3000u
#define PD 0x4000u
#define MMIO_GPA 0x20000u  // no memory slot here: accesses exit with KVM_EXIT_MMIO

static int kvm = -1, vm = -1, vcpu = -1;
static struct kvm_run *run;
static uint8_t *mem;
static int failed;

static void out(const char *key, const char *fmt, ...)
{
    va_list ap;
    printf("%s=", key);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void fail(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "kvmprobe: %s\n", buf);
    if (!failed)
        out("error", "%s", buf);
    failed = 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int setup(void)
{
    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        fail("open /dev/kvm: %s", strerror(errno));
        return -1;
    }
    int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
    out("api", "%d", api);
    if (api != KVM_API_VERSION) {
        fail("KVM API version %d, expected %d", api, KVM_API_VERSION);
        return -1;
    }
    out("cap_user_memory", "%d", ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY));
    out("cap_irqfd", "%d", ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_IRQFD));
    out("cap_ioeventfd", "%d", ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD));
    out("max_vcpus", "%d", ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS));
    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        fail("KVM_CREATE_VM: %s", strerror(errno));
        return -1;
    }
    mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        fail("mmap: %s", strerror(errno));
        return -1;
    }
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
        .userspace_addr = (uintptr_t)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        fail("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
        return -1;
    }
    vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) {
        fail("KVM_CREATE_VCPU: %s", strerror(errno));
        return -1;
    }
    int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz <= 0) {
        fail("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        return -1;
    }
    run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) {
        fail("mmap vcpu: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void seg_real(struct kvm_segment *s, uint16_t sel)
{
    memset(s, 0, sizeof *s);
    s->selector = sel;
    s->base = (uint64_t)sel << 4;
    s->limit = 0xffff;
    s->present = 1;
    s->s = 1;
    s->type = 3;  // data read/write, accessed (CS gets 11 below)
}

static int enter_real_mode(uint16_t ds)
{
    struct kvm_sregs sr;
    if (ioctl(vcpu, KVM_GET_SREGS, &sr) < 0) {
        fail("KVM_GET_SREGS: %s", strerror(errno));
        return -1;
    }
    seg_real(&sr.cs, 0);
    sr.cs.type = 11;  // code, execute/read, accessed
    seg_real(&sr.ds, ds);
    seg_real(&sr.es, 0);
    seg_real(&sr.ss, 0);
    seg_real(&sr.fs, 0);
    seg_real(&sr.gs, 0);
    sr.cr0 = 0x10;  // ET: protection and paging off
    sr.cr4 = 0;
    sr.efer = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sr) < 0) {
        fail("KVM_SET_SREGS (real mode): %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int enter_long_mode(void)
{
    uint64_t *pml4 = (uint64_t *)(mem + PML4);
    uint64_t *pdpt = (uint64_t *)(mem + PDPT);
    uint64_t *pd = (uint64_t *)(mem + PD);
    memset(mem + PML4, 0, 0x3000);
    pml4[0] = PDPT | 3;        // present, writable
    pdpt[0] = PD | 3;
    pd[0] = 0 | 0x83;          // 2 MiB page at 0: present, writable, PS

    struct kvm_sregs sr;
    if (ioctl(vcpu, KVM_GET_SREGS, &sr) < 0) {
        fail("KVM_GET_SREGS: %s", strerror(errno));
        return -1;
    }
    struct kvm_segment code = {
        .base = 0, .limit = 0xffffffff, .selector = 8, .type = 11, .present = 1,
        .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
    };
    struct kvm_segment data = code;
    data.type = 3;
    data.selector = 16;
    data.l = 0;
    data.db = 1;
    sr.cs = code;
    sr.ds = sr.es = sr.fs = sr.gs = sr.ss = data;
    sr.cr3 = PML4;
    sr.cr4 = 1u << 5;                      // PAE
    sr.cr0 = 0x80000001u | (1u << 4) | (1u << 5);   // PG|PE|ET|NE
    sr.efer = (1u << 8) | (1u << 10);      // LME|LMA
    if (ioctl(vcpu, KVM_SET_SREGS, &sr) < 0) {
        fail("KVM_SET_SREGS (long mode): %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int set_regs(uint64_t rip, uint64_t rcx)
{
    struct kvm_regs r;
    memset(&r, 0, sizeof r);
    r.rip = rip;
    r.rcx = rcx;
    r.rsp = 0x8000;
    r.rflags = 2;
    if (ioctl(vcpu, KVM_SET_REGS, &r) < 0) {
        fail("KVM_SET_REGS: %s", strerror(errno));
        return -1;
    }
    return 0;
}

// Run until hlt.  Counts exits of the expected kind; anything else fails.
static int run_to_hlt(const char *what, int expect, long *nexits, double timeout)
{
    double t0 = now();
    long n = 0;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            fail("%s: KVM_RUN: %s", what, strerror(errno));
            return -1;
        }
        int r = run->exit_reason;
        if (r == KVM_EXIT_HLT)
            break;
        if (r == expect) {
            n++;
            if ((n & 1023) == 0 && now() - t0 > timeout) {
                fail("%s: no hlt after %.0f s (%ld exits)", what, timeout, n);
                return -1;
            }
            continue;
        }
        if (r == KVM_EXIT_FAIL_ENTRY)
            fail("%s: KVM_EXIT_FAIL_ENTRY, reason 0x%llx", what,
                 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        else if (r == KVM_EXIT_INTERNAL_ERROR)
            fail("%s: KVM_EXIT_INTERNAL_ERROR, suberror %u", what, run->internal.suberror);
        else if (r == KVM_EXIT_SHUTDOWN)
            fail("%s: KVM_EXIT_SHUTDOWN (triple fault)", what);
        else
            fail("%s: unexpected exit reason %d", what, r);
        return -1;
    }
    if (nexits)
        *nexits = n;
    return 0;
}

static void put(uint32_t at, const uint8_t *code, size_t len)
{
    memset(mem + CODE, 0xf4, 0x100);  // hlt everywhere around the code
    memcpy(mem + at, code, len);
}

static void le32(uint8_t *p, uint32_t v)
{
    p[0] = v;
    p[1] = v >> 8;
    p[2] = v >> 16;
    p[3] = v >> 24;
}

static void probe_loop_rm(uint32_t iters)
{
    // 66 b9 imm32   mov ecx, iters
    // 66 49         dec ecx          <- loop
    // 75 fc         jnz loop
    // f4            hlt
    uint8_t c[] = {0x66, 0xb9, 0, 0, 0, 0, 0x66, 0x49, 0x75, 0xfc, 0xf4};
    le32(c + 2, iters);
    put(CODE, c, sizeof c);
    if (enter_real_mode(0) || set_regs(CODE, 0))
        return;
    double t0 = now();
    if (run_to_hlt("loop_rm", -1, NULL, 60))
        return;
    double dt = now() - t0;
    out("loop_rm_ms", "%.2f", dt * 1e3);
    out("loop_rm_mips", "%.1f", 2.0 * iters / dt / 1e6);
}

static void probe_loop_lm(uint32_t iters)
{
    // b9 imm32  mov ecx, iters
    // ff c9     dec ecx    <- loop
    // 75 fc     jnz loop
    // f4        hlt
    uint8_t c[] = {0xb9, 0, 0, 0, 0, 0xff, 0xc9, 0x75, 0xfc, 0xf4};
    le32(c + 1, iters);
    put(CODE, c, sizeof c);
    if (enter_long_mode() || set_regs(CODE, 0))
        return;
    double t0 = now();
    if (run_to_hlt("loop_lm", -1, NULL, 60))
        return;
    double dt = now() - t0;
    out("loop_lm_ms", "%.2f", dt * 1e3);
    out("loop_lm_mips", "%.1f", 2.0 * iters / dt / 1e6);
}

static void probe_cpuid(uint16_t n)
{
    // be imm16   mov si, n
    // 66 31 c0   xor eax, eax   <- loop (offset 3)
    // 0f a2      cpuid
    // 4e         dec si
    // 75 f8      jnz loop       (11 - 8 = 3)
    // f4         hlt
    uint8_t c[] = {0xbe, 0, 0, 0x66, 0x31, 0xc0, 0x0f, 0xa2, 0x4e, 0x75, 0xf8, 0xf4};
    c[1] = n;
    c[2] = n >> 8;
    put(CODE, c, sizeof c);
    if (enter_real_mode(0) || set_regs(CODE, 0))
        return;
    double t0 = now();
    if (run_to_hlt("cpuid", -1, NULL, 60))
        return;
    double dt = now() - t0;
    out("cpuid_us", "%.2f", dt * 1e6 / n);
}

static void probe_pio(uint16_t n)
{
    // e6 80   out 0x80, al   <- loop
    // e2 fc   loop loop      (cx = n)
    // f4      hlt
    uint8_t c[] = {0xe6, 0x80, 0xe2, 0xfc, 0xf4};
    put(CODE, c, sizeof c);
    if (enter_real_mode(0) || set_regs(CODE, n))
        return;
    long exits = 0;
    double t0 = now();
    if (run_to_hlt("pio", KVM_EXIT_IO, &exits, 60))
        return;
    double dt = now() - t0;
    if (exits != n) {
        fail("pio: %ld exits, expected %u", exits, n);
        return;
    }
    out("pio_us", "%.2f", dt * 1e6 / n);
}

static void probe_mmio(uint16_t n)
{
    // 88 07   mov [bx], al   <- loop (ds:bx = MMIO_GPA)
    // e2 fc   loop loop
    // f4      hlt
    uint8_t c[] = {0x88, 0x07, 0xe2, 0xfc, 0xf4};
    put(CODE, c, sizeof c);
    if (enter_real_mode(MMIO_GPA >> 4) || set_regs(CODE, n))
        return;
    long exits = 0;
    double t0 = now();
    if (run_to_hlt("mmio", KVM_EXIT_MMIO, &exits, 60))
        return;
    double dt = now() - t0;
    if (exits != n) {
        fail("mmio: %ld exits, expected %u", exits, n);
        return;
    }
    out("mmio_us", "%.2f", dt * 1e6 / n);
}

static void usage(void)
{
    fprintf(stderr, "usage: kvmprobe [-n LOOP_ITERS] [-e EXITS (1..65535)] [-q]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned long iters = 1000000, exits = 2000;
    int quick = 0, opt;
    while ((opt = getopt(argc, argv, "n:e:qh")) != -1) {
        switch (opt) {
        case 'n':
            iters = strtoul(optarg, NULL, 0);
            break;
        case 'e':
            exits = strtoul(optarg, NULL, 0);
            break;
        case 'q':
            quick = 1;  // only check that a guest runs: tiny loops
            break;
        default:
            usage();
        }
    }
    if (optind != argc || iters == 0 || iters > 0xffffffffu || exits == 0 || exits > 0xffff)
        usage();
    if (quick) {
        iters = 1000;
        exits = 10;
    }
    double t0 = now();
    if (setup())
        return 1;
    out("setup_ms", "%.2f", (now() - t0) * 1e3);
    if (!failed)
        probe_loop_rm(iters);
    if (!failed)
        probe_cpuid(exits);
    if (!failed)
        probe_pio(exits);
    if (!failed)
        probe_mmio(exits);
    if (!failed)
        probe_loop_lm(iters);  // last: it leaves the vCPU in long mode
    out("ok", "%d", !failed);
    return failed;
}
