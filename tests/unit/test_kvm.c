/* Unit tests of vio run's KVM layer (vm.c, vcpu.c, bus.c, irq.c) and PC
 * devices (src/emul/) on the real /dev/kvm, with tiny hand-assembled guests:
 * PIO/MMIO dispatch, VM exits, kicks, UART, RTC, probe, bad arguments. */

/* The guests run in real mode with CS base 0 (code at GUEST_CODE); a test
 * that needs MMIO above 1 MiB sets DS's hidden base to MMIO_BASE through
 * KVM_SET_SREGS. Every guest ends by writing to DONE_PORT, which a test
 * device turns into a VM exit. No Linux guest is involved. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "emul/pcsys.h"
#include "emul/rtc.h"
#include "emul/uart8250.h"
#include "vmm/acpi.h"
#include "vmm/bus.h"
#include "vmm/pci.h"
#include "vmm/probe.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define MEM_64M        (64ull << 20)
#define GUEST_CODE     0x1000        /* real-mode code, CS base 0 */
#define GUEST_DATA     0x2000        /* where guests store what they read */
#define DONE_PORT      0x4f0         /* a write here ends the guest */
#define VAL_PORT       0x4f4         /* 32-bit values the guest reports */
#define TDEV_PORT      0x500         /* test device, 16 ports */
#define MMIO_BASE      0xd0000000ull /* test device in the PCI hole */
#define RUN_TIMEOUT_MS 20000

/* ---- fixture and helpers ---- */

static void require_kvm(void)
{
    if (access("/dev/kvm", R_OK | W_OK) != 0)
        fail_msg("/dev/kvm is missing or not accessible (%s): these tests need KVM; run them "
                 "as root on a host with /dev/kvm (see shared/PLATFORM.md)",
                 strerror(errno));
}

struct access_rec {
    uint64_t off;
    unsigned len;
    bool write;
    uint64_t val; /* written, or returned for a read */
};

/* A device that logs every access and answers reads with a value that
 * encodes the read's sequence number and offset. */
struct tdev {
    pthread_mutex_t lock;
    struct access_rec log[64];
    unsigned n;
    unsigned reads;
};

static void tdev_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct tdev *t = opaque;
    uint8_t b[8];
    uint64_t v = 0;

    pthread_mutex_lock(&t->lock);
    t->reads++;
    for (unsigned i = 0; i < len && i < 8; i++)
        b[i] = (uint8_t)(t->reads * 0x10 + off + i);
    memcpy(&v, b, len < 8 ? len : 8);
    if (t->n < VIO_ARRAY_SIZE(t->log))
        t->log[t->n++] = (struct access_rec){off, len, false, v};
    pthread_mutex_unlock(&t->lock);
    memcpy(data, b, len < 8 ? len : 8);
}

static void tdev_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct tdev *t = opaque;
    uint64_t v = 0;

    memcpy(&v, data, len < 8 ? len : 8);
    pthread_mutex_lock(&t->lock);
    if (t->n < VIO_ARRAY_SIZE(t->log))
        t->log[t->n++] = (struct access_rec){off, len, true, v};
    pthread_mutex_unlock(&t->lock);
}

static const struct vio_io_ops tdev_ops = {.read = tdev_read, .write = tdev_write};

struct fx {
    struct vio_vm vm;
    bool vm_ok;
    struct tdev dev;
    /* DONE_PORT: the guest finished; VAL_PORT: values it reported. */
    atomic_bool done;
    uint32_t vals[8];
    unsigned nvals;
    struct vio_pcsys *sys;
    struct vio_pci *pci;
    struct vio_uart *uart;
    struct vio_rtc *rtc;
};

static void done_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct fx *f = opaque;

    (void)data;
    (void)len;
    if (off == 0) {
        atomic_store(&f->done, true);
        vio_vm_request_exit(&f->vm, VIO_VM_STOPPED);
    } else if (off == 4 && f->nvals < VIO_ARRAY_SIZE(f->vals)) {
        memcpy(&f->vals[f->nvals++], data, 4);
    }
}

static const struct vio_io_ops done_ops = {.write = done_write};

/* The fixture of the running test, freed by the teardown if an assertion
 * ends the test early (so a failure does not also report leaks). */
static struct fx *cur;

static struct fx *fx_new(unsigned ncpus)
{
    struct vio_vm_opts o = {.mem_size = MEM_64M, .ncpus = ncpus};
    struct fx *f = calloc(1, sizeof(*f));
    int ret;

    require_kvm();
    assert_non_null(f);
    pthread_mutex_init(&f->dev.lock, NULL);
    ret = vio_vm_create(&o, &f->vm);
    if (ret < 0)
        fail_msg("vio_vm_create(64M, %u CPUs) failed: %s", ncpus, strerror(-ret));
    f->vm_ok = true;
    assert_int_equal(vio_vm_create_vcpus(&f->vm), 0);
    assert_int_equal(vio_bus_add(&f->vm.pio, DONE_PORT, 8, &done_ops, f, "done"), 0);
    cur = f;
    return f;
}

static void fx_free(struct fx *f)
{
    if (f == cur)
        cur = NULL;
    if (f->vm_ok)
        vio_vm_stop(&f->vm);
    vio_uart_destroy(f->uart);
    vio_rtc_destroy(f->rtc);
    vio_pcsys_destroy(f->sys);
    vio_pci_destroy(f->pci);
    if (f->vm_ok) {
        vio_bus_remove(&f->vm.pio, DONE_PORT, f);
        vio_vm_destroy(&f->vm);
    }
    pthread_mutex_destroy(&f->dev.lock);
    free(f);
}

static void load(struct fx *f, uint64_t gpa, const void *code, size_t len)
{
    void *p = vio_vm_gpa(&f->vm, gpa, len);

    assert_non_null(p);
    memcpy(p, code, len);
}

static uint8_t *ram(struct fx *f, uint64_t gpa)
{
    return vio_vm_gpa(&f->vm, gpa, 1);
}

/* Real mode at GUEST_CODE with CS/SS/ES base 0 and DS base @ds_base. */
static void real_mode(struct vio_vcpu *v, uint64_t ds_base)
{
    struct kvm_sregs s;
    struct kvm_regs r = {.rip = GUEST_CODE, .rflags = 0x2, .rsp = 0x7000};

    assert_int_equal(ioctl(v->fd, KVM_GET_SREGS, &s), 0);
    s.cs.base = 0;
    s.cs.selector = 0;
    s.ss.base = s.es.base = s.fs.base = s.gs.base = 0;
    s.ss.selector = s.es.selector = s.fs.selector = s.gs.selector = 0;
    s.ds.base = ds_base;
    s.ds.selector = 0;
    s.ds.limit = 0xffff;
    assert_int_equal(ioctl(v->fd, KVM_SET_SREGS, &s), 0);
    assert_int_equal(ioctl(v->fd, KVM_SET_REGS, &r), 0);
}

/* Run the VM on vCPU threads until it asks to exit or @timeout_ms passes;
 * then stop it (joining the threads). Returns the exit reason. */
static enum vio_vm_exit run_vm(struct fx *f, int timeout_ms)
{
    struct pollfd p = {.fd = f->vm.exit_fd, .events = POLLIN};
    int n;

    assert_int_equal(vio_vm_start(&f->vm), 0);
    do {
        n = poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        vio_vm_request_exit(&f->vm, VIO_VM_STOPPED);
        vio_vm_stop(&f->vm);
        fail_msg("the guest neither finished nor exited within %d ms", timeout_ms);
    }
    vio_vm_stop(&f->vm);
    return (enum vio_vm_exit)atomic_load(&f->vm.exit_reason);
}

/* Run a real-mode program that must end at DONE_PORT. */
static void run_done(struct fx *f, const void *code, size_t len, uint64_t ds_base)
{
    enum vio_vm_exit e;

    load(f, GUEST_CODE, code, len);
    real_mode(&f->vm.vcpus[0], ds_base);
    e = run_vm(f, RUN_TIMEOUT_MS);
    if (!atomic_load(&f->done))
        fail_msg("guest ended with '%s' before reaching its end", vio_vm_exit_name(e));
    assert_int_equal(e, VIO_VM_STOPPED);
}

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, 2);
    return v;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
}

static void expect_access(const struct access_rec *r, bool write, uint64_t off, unsigned len)
{
    if (r->write != write || r->off != off || r->len != len)
        fail_msg("expected a %u-byte %s at offset %llu, the device saw a %u-byte %s at %llu", len,
                 write ? "write" : "read", (unsigned long long)off, r->len,
                 r->write ? "write" : "read", (unsigned long long)r->off);
}

/* Everything written to fd 2 while capturing, for log checks. */
struct capture {
    int saved, fd;
    char path[64];
};

static void capture_start(struct capture *c)
{
    snprintf(c->path, sizeof(c->path), "/tmp/vio-test-kvm-log-XXXXXX");
    c->fd = mkstemp(c->path);
    assert_true(c->fd >= 0);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(c->fd, STDERR_FILENO), STDERR_FILENO);
}

/* Returns the captured text (malloc'ed). */
static char *capture_end(struct capture *c)
{
    off_t size;
    char *buf;

    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    size = lseek(c->fd, 0, SEEK_END);
    buf = calloc(1, (size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(c->fd, buf, (size_t)size, 0), size);
    close(c->fd);
    unlink(c->path);
    fputs(buf, stderr); /* keep it visible in the test output */
    return buf;
}

static unsigned count_substr(const char *s, const char *sub)
{
    unsigned n = 0;

    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub))
        n++;
    return n;
}

/* ---- PIO dispatch ---- */

static void test_pio_dispatch(void **state)
{
    static const uint8_t code[] = {
        0xba, 0x00, 0x05,                   /* mov dx, 0x500 */
        0xb0, 0x11,                         /* mov al, 0x11 */
        0xee,                               /* out dx, al */
        0xba, 0x02, 0x05,                   /* mov dx, 0x502 */
        0xb8, 0x33, 0x22,                   /* mov ax, 0x2233 */
        0xef,                               /* out dx, ax */
        0xba, 0x04, 0x05,                   /* mov dx, 0x504 */
        0x66, 0xb8, 0x77, 0x66, 0x55, 0x44, /* mov eax, 0x44556677 */
        0x66, 0xef,                         /* out dx, eax */
        0xba, 0x01, 0x05,                   /* mov dx, 0x501 */
        0xec,                               /* in al, dx */
        0xa2, 0x00, 0x20,                   /* mov [0x2000], al */
        0xba, 0x06, 0x05,                   /* mov dx, 0x506 */
        0xed,                               /* in ax, dx */
        0xa3, 0x02, 0x20,                   /* mov [0x2002], ax */
        0xba, 0x08, 0x05,                   /* mov dx, 0x508 */
        0x66, 0xed,                         /* in eax, dx */
        0x66, 0xa3, 0x04, 0x20,             /* mov [0x2004], eax */
        0xfc,                               /* cld */
        0xbe, 0x00, 0x21,                   /* mov si, 0x2100 */
        0xb9, 0x05, 0x00,                   /* mov cx, 5 */
        0xba, 0x0c, 0x05,                   /* mov dx, 0x50c */
        0xf3, 0x6e,                         /* rep outsb */
        0xbf, 0x00, 0x22,                   /* mov di, 0x2200 */
        0xb9, 0x03, 0x00,                   /* mov cx, 3 */
        0xba, 0x0e, 0x05,                   /* mov dx, 0x50e */
        0xf3, 0x6d,                         /* rep insw */
        0xbe, 0x00, 0x23,                   /* mov si, 0x2300 */
        0xb9, 0x02, 0x00,                   /* mov cx, 2 */
        0xba, 0x08, 0x05,                   /* mov dx, 0x508 */
        0x66, 0xf3, 0x6f,                   /* rep outsd */
        0xba, 0xf0, 0x05,                   /* mov dx, 0x5f0 (unclaimed) */
        0xed,                               /* in ax, dx */
        0xa3, 0x10, 0x20,                   /* mov [0x2010], ax */
        0xba, 0xf0, 0x04,                   /* mov dx, DONE_PORT */
        0xee,                               /* out dx, al */
        0xf4,                               /* hlt */
    };
    static const uint32_t dwords[2] = {0x01020304, 0x05060708};
    struct fx *f = fx_new(1);
    struct access_rec *l = f->dev.log;

    (void)state;
    assert_int_equal(vio_bus_add(&f->vm.pio, TDEV_PORT, 16, &tdev_ops, &f->dev, "tdev"), 0);
    load(f, 0x2100, "HELLO", 5);
    load(f, 0x2300, dwords, sizeof(dwords));
    run_done(f, code, sizeof(code), 0);

    assert_int_equal(f->dev.n, 16);
    expect_access(&l[0], true, 0, 1);
    assert_int_equal(l[0].val, 0x11);
    expect_access(&l[1], true, 2, 2);
    assert_int_equal(l[1].val, 0x2233);
    expect_access(&l[2], true, 4, 4);
    assert_int_equal(l[2].val, 0x44556677);
    expect_access(&l[3], false, 1, 1);
    assert_int_equal(*ram(f, 0x2000), l[3].val);
    expect_access(&l[4], false, 6, 2);
    assert_int_equal(rd16(ram(f, 0x2002)), l[4].val);
    expect_access(&l[5], false, 8, 4);
    assert_int_equal(rd32(ram(f, 0x2004)), l[5].val);
    /* rep outsb: five one-byte writes in order, whatever KVM's batching. */
    for (unsigned i = 0; i < 5; i++) {
        expect_access(&l[6 + i], true, 12, 1);
        assert_int_equal(l[6 + i].val, (uint8_t) "HELLO"[i]);
    }
    /* rep insw: three reads, each value stored in turn. */
    for (unsigned i = 0; i < 3; i++) {
        expect_access(&l[11 + i], false, 14, 2);
        assert_int_equal(rd16(ram(f, 0x2200 + 2 * i)), l[11 + i].val);
    }
    for (unsigned i = 0; i < 2; i++) {
        expect_access(&l[14 + i], true, 8, 4);
        assert_int_equal(l[14 + i].val, dwords[i]);
    }
    /* The unclaimed port read as all-ones. */
    assert_int_equal(rd16(ram(f, 0x2010)), 0xffff);
    assert_true(f->vm.pio.unclaimed >= 1);
    fx_free(f);
}

/* The same device driven from vio_vcpu_run on the test thread. A watchdog
 * interrupts KVM_RUN with a signal should the guest hang. */
static pthread_t main_thread;
static void wd_signal(int sig)
{
    (void)sig;
}

struct watchdog {
    pthread_t t;
    struct fx *f;
    int ms;
    atomic_bool cancel, fired;
};

static void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;

    for (int i = 0; i < w->ms / 10 && !atomic_load(&w->cancel); i++)
        usleep(10000);
    if (!atomic_load(&w->cancel)) {
        atomic_store(&w->fired, true);
        vio_vm_request_exit(&w->f->vm, VIO_VM_STOPPED);
        pthread_kill(main_thread, SIGUSR1);
    }
    return NULL;
}

static void test_pio_on_test_thread(void **state)
{
    static const uint8_t code[] = {
        0xba, 0x03, 0x05, /* mov dx, 0x503 */
        0xb0, 0x7e,       /* mov al, 0x7e */
        0xee,             /* out dx, al */
        0xed,             /* in ax, dx */
        0xa3, 0x00, 0x20, /* mov [0x2000], ax */
        0xba, 0xf0, 0x04, /* mov dx, DONE_PORT */
        0xee,             /* out dx, al */
        0xf4,             /* hlt */
    };
    struct sigaction sa = {.sa_handler = wd_signal}; /* no SA_RESTART */
    struct watchdog w = {.ms = RUN_TIMEOUT_MS};
    struct fx *f = fx_new(1);

    (void)state;
    main_thread = pthread_self();
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    w.f = f;
    assert_int_equal(vio_bus_add(&f->vm.pio, TDEV_PORT, 16, &tdev_ops, &f->dev, "tdev"), 0);
    load(f, GUEST_CODE, code, sizeof(code));
    real_mode(&f->vm.vcpus[0], 0);
    assert_int_equal(pthread_create(&w.t, NULL, watchdog_main, &w), 0);
    vio_vcpu_run(&f->vm.vcpus[0]);
    atomic_store(&w.cancel, true);
    pthread_join(w.t, NULL);
    assert_false(atomic_load(&w.fired));
    assert_true(atomic_load(&f->done));
    assert_int_equal(f->dev.n, 2);
    expect_access(&f->dev.log[0], true, 3, 1);
    assert_int_equal(f->dev.log[0].val, 0x7e);
    expect_access(&f->dev.log[1], false, 3, 2);
    assert_int_equal(rd16(ram(f, 0x2000)), f->dev.log[1].val);
    fx_free(f);
}

/* ---- MMIO dispatch ---- */

static void test_mmio_dispatch(void **state)
{
    static const uint8_t code[] = {
        /* DS base = MMIO_BASE: [x] is MMIO_BASE + x. ES base 0: RAM. */
        0xc6, 0x06, 0x10, 0x00, 0x11,                         /* mov byte [0x10], 0x11 */
        0xc7, 0x06, 0x12, 0x00, 0x33, 0x22,                   /* mov word [0x12], 0x2233 */
        0x66, 0xc7, 0x06, 0x14, 0x00, 0x77, 0x66, 0x55, 0x44, /* mov dword [0x14], 0x44556677 */
        0xa0, 0x21, 0x00,                                     /* mov al, [0x21] */
        0x8b, 0x1e, 0x22, 0x00,                               /* mov bx, [0x22] */
        0x66, 0x8b, 0x0e, 0x24, 0x00,                         /* mov ecx, [0x24] */
        0x0f, 0x6f, 0x06, 0x28, 0x00,                         /* movq mm0, [0x28]: 8-byte read */
        0x0f, 0x7f, 0x06, 0x30, 0x00,                         /* movq [0x30], mm0: 8-byte write */
        0x26, 0xa2, 0x00, 0x20,                               /* mov es:[0x2000], al */
        0x26, 0x89, 0x1e, 0x02, 0x20,                         /* mov es:[0x2002], bx */
        0x26, 0x66, 0x89, 0x0e, 0x04, 0x20,                   /* mov es:[0x2004], ecx */
        0x26, 0x0f, 0x7f, 0x06, 0x08, 0x20,                   /* movq es:[0x2008], mm0 */
        0x66, 0xa1, 0x00, 0x10,                               /* mov eax, [0x1000] (unclaimed) */
        0x26, 0x66, 0xa3, 0x10, 0x20,                         /* mov es:[0x2010], eax */
        0x66, 0xa3, 0x04, 0x10,                               /* mov [0x1004], eax (unclaimed) */
        0xba, 0xf0, 0x04,                                     /* mov dx, DONE_PORT */
        0xee,                                                 /* out dx, al */
        0xf4,                                                 /* hlt */
    };
    struct fx *f = fx_new(1);
    struct access_rec *l = f->dev.log;
    uint64_t before;

    (void)state;
    assert_int_equal(vio_bus_add(&f->vm.mmio, MMIO_BASE, 0x100, &tdev_ops, &f->dev, "tdev"), 0);
    before = f->vm.mmio.unclaimed;
    run_done(f, code, sizeof(code), MMIO_BASE);

    assert_int_equal(f->dev.n, 8);
    expect_access(&l[0], true, 0x10, 1);
    assert_int_equal(l[0].val, 0x11);
    expect_access(&l[1], true, 0x12, 2);
    assert_int_equal(l[1].val, 0x2233);
    expect_access(&l[2], true, 0x14, 4);
    assert_int_equal(l[2].val, 0x44556677);
    expect_access(&l[3], false, 0x21, 1);
    expect_access(&l[4], false, 0x22, 2);
    expect_access(&l[5], false, 0x24, 4);
    expect_access(&l[6], false, 0x28, 8);
    expect_access(&l[7], true, 0x30, 8);
    assert_int_equal(l[7].val, l[6].val);
    assert_int_equal(*ram(f, 0x2000), l[3].val);
    assert_int_equal(rd16(ram(f, 0x2002)), l[4].val);
    assert_int_equal(rd32(ram(f, 0x2004)), l[5].val);
    assert_int_equal(rd64(ram(f, 0x2008)), l[6].val);
    assert_int_equal(rd32(ram(f, 0x2010)), 0xffffffff);
    assert_int_equal(f->vm.mmio.unclaimed - before, 2);
    fx_free(f);
}

/* 64-bit mode through vio_vcpu_set_boot_regs, with our own identity page
 * tables (first 4 GiB, 2 MiB pages) and a GDT laid out as boot.c's; the
 * code runs at 0x100000 and the IDT is empty (limit 0). */
static void long_mode(struct fx *f, const void *code, size_t len)
{
    static const uint64_t gdt[] = {
        0,
        0,
        0x00af9b000000ffffull, /* 0x10: 64-bit code */
        0x00cf93000000ffffull, /* 0x18: data */
        0x00008b0000000fffull, /* 0x20: TSS */
    };
    struct vio_boot_regs regs = {
        .rip = 0x100000,
        .rsi = 0x7000,
        .rsp = 0x8ff0,
        .cr3 = 0x9000,
        .gdt_base = 0x500,
        .gdt_limit = sizeof(gdt) - 1,
    };
    uint64_t *pt = vio_vm_gpa(&f->vm, 0x9000, 6 * 4096);
    struct kvm_sregs s;

    assert_non_null(pt);
    /* PML4[0] -> PDPT at 0xa000 -> four PDs of 2 MiB pages at 0xb000.. */
    pt[0] = 0xa000 | 3;
    for (unsigned i = 0; i < 4; i++) {
        pt[512 + i] = (0xb000 + 0x1000ull * i) | 3;
        for (unsigned j = 0; j < 512; j++)
            pt[1024 + 512 * i + j] = ((uint64_t)i << 30 | (uint64_t)j << 21) | 0x83;
    }
    load(f, 0x500, gdt, sizeof(gdt));
    load(f, 0x100000, code, len);
    assert_int_equal(vio_vcpu_set_boot_regs(&f->vm.vcpus[0], &regs), 0);
    assert_int_equal(ioctl(f->vm.vcpus[0].fd, KVM_GET_SREGS, &s), 0);
    assert_true(s.efer & 0x400); /* LMA */
    assert_int_equal(s.cs.l, 1);
    assert_int_equal(s.cs.selector, VIO_BOOT_CS);
    assert_int_equal(s.idt.limit, 0);
}

/* 8-byte MMIO with plain movs, and the boot registers (rsi, rsp) as the
 * guest sees them. */
static void test_long_mode_mmio_and_boot_regs(void **state)
{
    static const uint8_t code[] = {
        0x48, 0xa1, 0x40, 0x00, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, /* movabs rax, [0xd0000040] */
        0x48, 0xa3, 0x48, 0x00, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, /* movabs [0xd0000048], rax */
        0x48, 0x89, 0xf0,                                           /* mov rax, rsi */
        0x66, 0xba, 0xf4, 0x04,                                     /* mov dx, VAL_PORT */
        0xef,                                                       /* out dx, eax */
        0x48, 0xc1, 0xe8, 0x20,                                     /* shr rax, 32 */
        0xef,                                                       /* out dx, eax */
        0x48, 0x89, 0xe0,                                           /* mov rax, rsp */
        0xef,                                                       /* out dx, eax */
        0x66, 0xba, 0xf0, 0x04,                                     /* mov dx, DONE_PORT */
        0xee,                                                       /* out dx, al */
        0xf4,                                                       /* hlt */
    };
    struct fx *f = fx_new(1);
    enum vio_vm_exit e;

    (void)state;
    assert_int_equal(vio_bus_add(&f->vm.mmio, MMIO_BASE, 0x100, &tdev_ops, &f->dev, "tdev"), 0);
    long_mode(f, code, sizeof(code));
    e = run_vm(f, RUN_TIMEOUT_MS);
    if (!atomic_load(&f->done))
        fail_msg("64-bit guest ended with '%s' before its end", vio_vm_exit_name(e));
    assert_int_equal(f->dev.n, 2);
    expect_access(&f->dev.log[0], false, 0x40, 8);
    expect_access(&f->dev.log[1], true, 0x48, 8);
    assert_int_equal(f->dev.log[1].val, f->dev.log[0].val);
    assert_int_equal(f->nvals, 3);
    assert_int_equal(f->vals[0], 0x7000);
    assert_int_equal(f->vals[1], 0);
    assert_int_equal(f->vals[2], 0x8ff0);
    fx_free(f);
}

/* ---- unclaimed accesses ---- */

static void test_unclaimed_logged_once(void **state)
{
    static const uint8_t code[] = {
        0xba, 0xf0, 0x05,             /* mov dx, 0x5f0 */
        0xec,                         /* in al, dx */
        0xec,                         /* in al, dx */
        0xed,                         /* in ax, dx */
        0x26, 0xa3, 0x00, 0x20,       /* mov es:[0x2000], ax */
        0xb0, 0x42,                   /* mov al, 0x42 */
        0xee,                         /* out dx, al */
        0xba, 0xf4, 0x05,             /* mov dx, 0x5f4 */
        0xee,                         /* out dx, al */
        0x66, 0xa1, 0x00, 0x10,       /* mov eax, [0x1000] */
        0x66, 0xa1, 0x00, 0x10,       /* mov eax, [0x1000] */
        0x26, 0x66, 0xa3, 0x04, 0x20, /* mov es:[0x2004], eax */
        0x66, 0xa3, 0x00, 0x10,       /* mov [0x1000], eax */
        0xba, 0xf0, 0x04,             /* mov dx, DONE_PORT */
        0xee,                         /* out dx, al */
        0xf4,                         /* hlt */
    };
    struct fx *f = fx_new(1);
    enum vio_log_level level = vio_log_get_level();
    struct capture c;
    char *log;

    (void)state;
    vio_log_set_level(VIO_LOG_INFO);
    capture_start(&c);
    load(f, GUEST_CODE, code, sizeof(code));
    real_mode(&f->vm.vcpus[0], MMIO_BASE);
    run_vm(f, RUN_TIMEOUT_MS);
    log = capture_end(&c);
    vio_log_set_level(level);
    assert_true(atomic_load(&f->done));
    assert_int_equal(rd16(ram(f, 0x2000)), 0xffff);
    assert_int_equal(rd32(ram(f, 0x2004)), 0xffffffff);
    assert_int_equal(f->vm.pio.unclaimed, 5);
    assert_int_equal(f->vm.mmio.unclaimed, 3);
    /* One line per address, naming it exactly. The first access to 0x5f0
     * and to 0xd0001000 is a read, to 0x5f4 a write.
     * BUG (src/vmm/bus.c, log_unclaimed): for reads the format's trailing
     * "%s%llx" prints "" and 0, so the line says "address 0x5f00 (reads as
     * all-ones" - every unclaimed read is logged at 16 times its address. */
    {
        unsigned n5f0 = count_substr(log, "address 0x5f0");
        unsigned n5f4 = count_substr(log, "address 0x5f4");
        unsigned nmmio = count_substr(log, "address 0xd0001000");
        unsigned w5f4 = count_substr(log, "pio address 0x5f4, value 0x42 (ignored");
        unsigned r5f0 = count_substr(log, "pio address 0x5f0 (reads as all-ones");
        unsigned rmmio = count_substr(log, "mmio address 0xd0001000 (reads as all-ones");

        free(log);
        assert_int_equal(n5f0, 1);
        assert_int_equal(n5f4, 1);
        assert_int_equal(nmmio, 1);
        assert_int_equal(w5f4, 1);
        assert_int_equal(r5f0, 1);
        assert_int_equal(rmmio, 1);
    }
    fx_free(f);
}

/* The bus on its own: overlapping and bad ranges, accesses that straddle
 * the end of a range, removal. */
static void test_bus_ranges(void **state)
{
    struct vio_bus b;
    struct tdev t = {.lock = PTHREAD_MUTEX_INITIALIZER};
    uint64_t v = 0;

    (void)state;
    vio_bus_init(&b, "pio");
    assert_int_equal(vio_bus_add(&b, 0x100, 0x10, &tdev_ops, &t, "a"), 0);
    assert_int_equal(vio_bus_add(&b, 0x120, 0x10, &tdev_ops, &t, "b"), 0);
    assert_int_equal(vio_bus_add(&b, 0x10f, 2, &tdev_ops, &t, "x"), -EEXIST);
    assert_int_equal(vio_bus_add(&b, 0xf0, 0x100, &tdev_ops, &t, "x"), -EEXIST);
    assert_int_equal(vio_bus_add(&b, 0x50, 0, &tdev_ops, &t, "x"), -EINVAL);
    assert_int_equal(vio_bus_add(&b, ~0ull - 3, 8, &tdev_ops, &t, "x"), -EINVAL);
    assert_int_equal(vio_bus_add(&b, 0x110, 0x10, &tdev_ops, &t, "c"), 0);
    /* Inside, at the edge, across the edge. */
    assert_true(vio_bus_access(&b, 0x11c, &v, 4, false));
    assert_true(vio_bus_access(&b, 0x12f, &v, 1, true));
    v = 0;
    assert_false(vio_bus_access(&b, 0x12e, &v, 4, false));
    assert_int_equal(v, 0xffffffff);
    assert_false(vio_bus_access(&b, 0x130, &v, 1, true));
    assert_int_equal(b.unclaimed, 2);
    assert_int_equal(vio_bus_remove(&b, 0x110, &b), -ENOENT);
    assert_int_equal(vio_bus_remove(&b, 0x110, &t), 0);
    assert_false(vio_bus_access(&b, 0x110, &v, 1, false));
    vio_bus_destroy(&b);
}

/* ---- how a guest ends the VM ---- */

static enum vio_vm_exit run_snippet(struct fx *f, const uint8_t *code, size_t len)
{
    load(f, GUEST_CODE, code, len);
    real_mode(&f->vm.vcpus[0], 0);
    return run_vm(f, RUN_TIMEOUT_MS);
}

static void test_exit_acpi_poweroff(void **state)
{
    static const uint8_t code[] = {
        0xba, 0x00, 0x06, /* mov dx, VIO_ACPI_SLEEP_CTL */
        0xb0, 0x34,       /* mov al, (5 << 2) | SLP_EN */
        0xee,             /* out dx, al */
        0xeb, 0xfe,       /* jmp . */
    };
    struct fx *f = fx_new(1);

    (void)state;
    assert_int_equal(VIO_ACPI_SLEEP_CTL, 0x600);
    assert_int_equal(vio_pcsys_create(&f->vm, &f->sys), 0);
    assert_int_equal(run_snippet(f, code, sizeof(code)), VIO_VM_POWEROFF);
    fx_free(f);
}

static void test_exit_acpi_other_sleep_ignored(void **state)
{
    static const uint8_t code[] = {
        0xba, 0x00, 0x06, /* mov dx, VIO_ACPI_SLEEP_CTL */
        0xb0, 0x2c,       /* mov al, (3 << 2) | SLP_EN: S3, not supported */
        0xee,             /* out dx, al */
        0xb0, 0x14,       /* mov al, 5 << 2: S5 without SLP_EN */
        0xee,             /* out dx, al */
        0xba, 0x02, 0x06, /* mov dx, VIO_ACPI_RESET */
        0xb0, 0x02,       /* mov al, 2: not the reset value */
        0xee,             /* out dx, al */
        0xba, 0xf0, 0x04, /* mov dx, DONE_PORT */
        0xee,             /* out dx, al */
        0xeb, 0xfe,       /* jmp . */
    };
    struct fx *f = fx_new(1);

    (void)state;
    assert_int_equal(vio_pcsys_create(&f->vm, &f->sys), 0);
    assert_int_equal(run_snippet(f, code, sizeof(code)), VIO_VM_STOPPED);
    assert_true(atomic_load(&f->done));
    fx_free(f);
}

static void test_exit_i8042_reset(void **state)
{
    static const uint8_t code[] = {
        0xe4, 0x64,       /* in al, 0x64: status, input buffer empty */
        0xa2, 0x00, 0x20, /* mov [0x2000], al */
        0xb0, 0xd1,       /* mov al, 0xd1: another command, ignored */
        0xe6, 0x64,       /* out 0x64, al */
        0xb0, 0xfe,       /* mov al, 0xfe */
        0xe6, 0x60,       /* out 0x60, al: the data port does not reset */
        0xe6, 0x64,       /* out 0x64, al: pulse reset */
        0xeb, 0xfe,       /* jmp . */
    };
    struct fx *f = fx_new(1);

    (void)state;
    assert_int_equal(vio_pcsys_create(&f->vm, &f->sys), 0);
    *ram(f, 0x2000) = 0xaa;
    assert_int_equal(run_snippet(f, code, sizeof(code)), VIO_VM_REBOOT);
    assert_int_equal(*ram(f, 0x2000) & 0x2, 0);
    fx_free(f);
}

static void test_exit_cf9_reset(void **state)
{
    static const uint8_t code[] = {
        0xba, 0xf9, 0x0c, /* mov dx, 0xcf9 */
        0xb0, 0x02,       /* mov al, 0x02: hard-reset type, no reset yet */
        0xee,             /* out dx, al */
        0xb0, 0x06,       /* mov al, 0x06: bit 2 starts the reset */
        0xee,             /* out dx, al */
        0xeb, 0xfe,       /* jmp . */
    };
    struct fx *f = fx_new(1);

    (void)state;
    assert_int_equal(vio_pci_create(&f->vm, &f->pci), 0);
    assert_int_equal(run_snippet(f, code, sizeof(code)), VIO_VM_REBOOT);
    fx_free(f);
}

static void test_exit_cf9_without_bit2(void **state)
{
    static const uint8_t code[] = {
        0xba, 0xf9, 0x0c, /* mov dx, 0xcf9 */
        0xb0, 0x0a,       /* mov al, 0x0a */
        0xee,             /* out dx, al */
        0xba, 0xf0, 0x04, /* mov dx, DONE_PORT */
        0xee,             /* out dx, al */
        0xeb, 0xfe,       /* jmp . */
    };
    struct fx *f = fx_new(1);

    (void)state;
    assert_int_equal(vio_pci_create(&f->vm, &f->pci), 0);
    assert_int_equal(run_snippet(f, code, sizeof(code)), VIO_VM_STOPPED);
    fx_free(f);
}

static void test_exit_acpi_reset(void **state)
{
    static const uint8_t code[] = {
        0xba, 0x02, 0x06, /* mov dx, VIO_ACPI_RESET */
        0xb0, 0x01,       /* mov al, VIO_ACPI_RESET_VAL */
        0xee,             /* out dx, al */
        0xeb, 0xfe,       /* jmp . */
    };
    struct fx *f = fx_new(1);

    (void)state;
    assert_int_equal(VIO_ACPI_RESET, 0x602);
    assert_int_equal(vio_pcsys_create(&f->vm, &f->sys), 0);
    assert_int_equal(run_snippet(f, code, sizeof(code)), VIO_VM_REBOOT);
    fx_free(f);
}

/* An exception with an empty IDT: #GP, #DF, shutdown. In 64-bit mode
 * (vio_vcpu_set_boot_regs leaves the IDT limit at 0), because KVM's
 * real-mode interrupt emulation, which kvm_pvm uses for all guest kernel
 * code, does not check the IVT limit ("lidt limit 0; int3" just jumps
 * through IVT entry 3). */
static void test_exit_triple_fault(void **state)
{
    static const uint8_t code[] = {
        0x0f, 0x0b, /* ud2 */
        0xeb, 0xfe, /* jmp . */
    };
    struct fx *f = fx_new(1);

    (void)state;
    long_mode(f, code, sizeof(code));
    assert_int_equal(run_vm(f, RUN_TIMEOUT_MS), VIO_VM_REBOOT);
    fx_free(f);
}

/* ---- stopping vCPUs from outside ---- */

static const uint8_t halt_code[] = {
    0xfa,       /* cli */
    0xf4,       /* hlt: stays in the kernel with the in-kernel irqchip */
    0xeb, 0xfd, /* jmp back to hlt */
};

static const uint8_t spin_code[] = {
    0xeb, 0xfe, /* jmp . */
};

static uint64_t now_ms(void)
{
    return vio_now_ns() / 1000000;
}

static void stop_test(const uint8_t *code, size_t len, unsigned ncpus, bool request)
{
    struct fx *f = fx_new(ncpus);
    struct pollfd p = {.fd = -1, .events = POLLIN};
    uint64_t t0, t1;

    load(f, GUEST_CODE, code, len);
    real_mode(&f->vm.vcpus[0], 0);
    assert_int_equal(vio_vm_start(&f->vm), 0);
    usleep(300 * 1000); /* let the vCPUs get into the guest */
    p.fd = f->vm.exit_fd;
    assert_int_equal(poll(&p, 1, 0), 0); /* still running */
    t0 = now_ms();
    if (request) {
        vio_vm_request_exit(&f->vm, VIO_VM_STOPPED);
        assert_int_equal(poll(&p, 1, 0), 1); /* exit_fd signalled */
    }
    vio_vm_stop(&f->vm);
    t1 = now_ms();
    if (t1 - t0 > 1000)
        fail_msg("stopping %u vCPU(s) took %llu ms", ncpus, (unsigned long long)(t1 - t0));
    assert_int_equal(atomic_load(&f->vm.exit_reason), VIO_VM_STOPPED);
    for (unsigned i = 0; i < ncpus; i++)
        assert_false(f->vm.vcpus[i].thread_started);
    fx_free(f);
}

static void test_kick_halted_vcpu(void **state)
{
    (void)state;
    stop_test(halt_code, sizeof(halt_code), 1, true);
}

static void test_stop_halted_vcpu(void **state)
{
    (void)state;
    stop_test(halt_code, sizeof(halt_code), 1, false);
}

static void test_kick_spinning_vcpu(void **state)
{
    (void)state;
    stop_test(spin_code, sizeof(spin_code), 1, true);
}

/* vCPU 1 never gets a SIPI: it waits inside KVM_RUN and must be kicked too. */
static void test_kick_two_vcpus(void **state)
{
    (void)state;
    stop_test(halt_code, sizeof(halt_code), 2, true);
}

/* The first reason wins; later requests change nothing. */
static void test_exit_first_reason_wins(void **state)
{
    struct fx *f = fx_new(1);
    uint64_t cnt = 0;

    (void)state;
    vio_vm_request_exit(&f->vm, VIO_VM_POWEROFF);
    vio_vm_request_exit(&f->vm, VIO_VM_REBOOT);
    vio_vm_stop(&f->vm);
    assert_int_equal(atomic_load(&f->vm.exit_reason), VIO_VM_POWEROFF);
    assert_int_equal(read(f->vm.exit_fd, &cnt, 8), 8);
    assert_int_equal(cnt, 1);
    assert_string_equal(vio_vm_exit_name(VIO_VM_POWEROFF), "poweroff");
    fx_free(f);
}

/* ---- CPUID as the vCPUs will see it ---- */

static const struct kvm_cpuid_entry2 *find_leaf(const struct kvm_cpuid2 *c, uint32_t fn,
                                                uint32_t idx)
{
    for (unsigned i = 0; i < c->nent; i++) {
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return &c->entries[i];
    }
    return NULL;
}

static void test_cpuid_topology(void **state)
{
    struct fx *f = fx_new(3);

    (void)state;
    for (unsigned id = 0; id < 3; id++) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 512 * sizeof(c->entries[0]));
        const struct kvm_cpuid_entry2 *e;

        c->nent = 512;
        assert_int_equal(ioctl(f->vm.vcpus[id].fd, KVM_GET_CPUID2, c), 0);
        e = find_leaf(c, 1, 0);
        assert_non_null(e);
        assert_int_equal(e->ebx >> 24, id);         /* initial APIC ID */
        assert_int_equal((e->ebx >> 16) & 0xff, 3); /* logical processors */
        assert_true(e->ecx & (1u << 31));           /* hypervisor */
        assert_true(e->edx & (1u << 28));           /* HTT with > 1 CPU */
        if ((e = find_leaf(c, 0xa, 0)))
            assert_int_equal(e->eax, 0); /* no PMU */
        /* Leaf 0xB: SMT level (1 thread), then the core level holding all
         * vCPUs in one package, as setup_cpuid intends.
         * BUG (src/vmm/vcpu.c, setup_cpuid, case 0xb/0x1f): only the
         * subleaves that KVM_GET_SUPPORTED_CPUID happens to return are
         * rewritten. kvm_pvm here returns subleaf 0 only, so the guest finds
         * no core level (subleaf 1 reads as invalid) and Linux makes every
         * vCPU a package of its own. The subleaves should be synthesized. */
        e = find_leaf(c, 0xb, 0);
        assert_non_null(e);
        assert_int_equal(e->edx, id); /* x2APIC ID */
        assert_int_equal((e->ecx >> 8) & 0xff, 1);
        assert_int_equal(e->ebx & 0xffff, 1);
        {
            const struct kvm_cpuid_entry2 *core = find_leaf(c, 0xb, 1);
            uint32_t ebx = core ? core->ebx : 0, ecx = core ? core->ecx : 0;
            uint32_t eax = core ? core->eax : 0;

            free(c);
            if (!core)
                fail_msg("vCPU %u: CPUID leaf 0xB has no subleaf 1 (core level)", id);
            assert_int_equal((ecx >> 8) & 0xff, 2);
            assert_int_equal(ebx & 0xffff, 3);
            assert_int_equal(eax & 0x1f, 2); /* APIC ID bits for 3 CPUs */
        }
    }
    fx_free(f);
}

/* ---- UART ---- */

static void test_uart(void **state)
{
    static const uint8_t code[] = {
        0xba, 0xf8, 0x03, /* mov dx, 0x3f8 (THR) */
        0xb0, 0x68,       /* mov al, 'h' */
        0xee,             /* out dx, al */
        0xb0, 0x69,       /* mov al, 'i' */
        0xee,             /* out dx, al */
        0xb0, 0x0a,       /* mov al, '\n' */
        0xee,             /* out dx, al */
        0xba, 0xfd, 0x03, /* mov dx, 0x3fd (LSR) */
        0xec,             /* in al, dx */
        0xa2, 0x00, 0x20, /* mov [0x2000], al */
        0xba, 0xff, 0x03, /* mov dx, 0x3ff (SCR) */
        0xb0, 0x5a,       /* mov al, 0x5a */
        0xee,             /* out dx, al */
        0xec,             /* in al, dx */
        0xa2, 0x01, 0x20, /* mov [0x2001], al */
        0xba, 0xfc, 0x03, /* mov dx, 0x3fc (MCR) */
        0xb0, 0x1a,       /* mov al, LOOP | OUT2 | RTS: Linux's probe */
        0xee,             /* out dx, al */
        0xba, 0xfe, 0x03, /* mov dx, 0x3fe (MSR) */
        0xec,             /* in al, dx */
        0xa2, 0x02, 0x20, /* mov [0x2002], al */
        0xba, 0xf8, 0x03, /* mov dx, 0x3f8 */
        0xb0, 0x51,       /* mov al, 'Q': looped back, not sent */
        0xee,             /* out dx, al */
        0xba, 0xfd, 0x03, /* mov dx, 0x3fd (LSR) */
        0xec,             /* in al, dx */
        0xa2, 0x03, 0x20, /* mov [0x2003], al */
        0xba, 0xf8, 0x03, /* mov dx, 0x3f8 (RBR) */
        0xec,             /* in al, dx */
        0xa2, 0x04, 0x20, /* mov [0x2004], al */
        0xba, 0xfc, 0x03, /* mov dx, 0x3fc (MCR) */
        0xb0, 0x03,       /* mov al, DTR | RTS: loopback off */
        0xee,             /* out dx, al */
        0xba, 0xfb, 0x03, /* mov dx, 0x3fb (LCR) */
        0xb0, 0x80,       /* mov al, DLAB */
        0xee,             /* out dx, al */
        0xba, 0xf8, 0x03, /* mov dx, 0x3f8 (DLL) */
        0xb0, 0x01,       /* mov al, 1: 115200 baud, not output */
        0xee,             /* out dx, al */
        0xec,             /* in al, dx */
        0xa2, 0x05, 0x20, /* mov [0x2005], al */
        0xba, 0xfb, 0x03, /* mov dx, 0x3fb (LCR) */
        0xb0, 0x03,       /* mov al, 8N1 */
        0xee,             /* out dx, al */
        0xba, 0xfe, 0x03, /* mov dx, 0x3fe (MSR) */
        0xec,             /* in al, dx */
        0xa2, 0x06, 0x20, /* mov [0x2006], al */
        0xba, 0xf0, 0x04, /* mov dx, DONE_PORT */
        0xee,             /* out dx, al */
        0xf4,             /* hlt */
    };
    struct fx *f = fx_new(1);
    int pfd[2];
    char out[16] = "";
    ssize_t n;

    (void)state;
    assert_int_equal(pipe2(pfd, O_NONBLOCK), 0);
    assert_int_equal(vio_uart_create(&f->vm, VIO_COM1_PORT, VIO_COM1_IRQ, pfd[1], &f->uart), 0);
    run_done(f, code, sizeof(code), 0);
    n = read(pfd[0], out, sizeof(out) - 1);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "hi\n", 3);
    assert_true(*ram(f, 0x2000) & 0x20);            /* THRE */
    assert_true(*ram(f, 0x2000) & 0x40);            /* TEMT */
    assert_int_equal(*ram(f, 0x2001), 0x5a);        /* scratch */
    assert_int_equal(*ram(f, 0x2002) & 0xf0, 0x90); /* loopback: DCD | CTS */
    assert_true(*ram(f, 0x2003) & 0x01);            /* DR: the looped byte waits */
    assert_int_equal(*ram(f, 0x2004), 'Q');
    assert_int_equal(*ram(f, 0x2005), 0x01);        /* DLL */
    assert_int_equal(*ram(f, 0x2006) & 0xb0, 0xb0); /* DCD, DSR, CTS outside loopback */
    close(pfd[0]);
    close(pfd[1]);
    fx_free(f);
}

/* Input from the host reaches the guest's RBR in order. */
static void test_uart_input(void **state)
{
    static const uint8_t code[] = {
        0xba, 0xfd, 0x03, /* mov dx, 0x3fd */
        0xec,             /* in al, dx */
        0xa2, 0x00, 0x20, /* mov [0x2000], al */
        0xba, 0xf8, 0x03, /* mov dx, 0x3f8 */
        0xec,             /* in al, dx */
        0xa2, 0x01, 0x20, /* mov [0x2001], al */
        0xec,             /* in al, dx */
        0xa2, 0x02, 0x20, /* mov [0x2002], al */
        0xba, 0xfd, 0x03, /* mov dx, 0x3fd */
        0xec,             /* in al, dx */
        0xa2, 0x03, 0x20, /* mov [0x2003], al */
        0xba, 0xf0, 0x04, /* mov dx, DONE_PORT */
        0xee,             /* out dx, al */
        0xf4,             /* hlt */
    };
    struct fx *f = fx_new(1);
    uint8_t big[300];

    (void)state;
    assert_int_equal(vio_uart_create(&f->vm, VIO_COM1_PORT, VIO_COM1_IRQ, -1, &f->uart), 0);
    assert_int_equal(vio_uart_input(f->uart, (const uint8_t *)"ok", 2), 2);
    memset(big, 'x', sizeof(big));
    assert_int_equal(vio_uart_input(f->uart, big, sizeof(big)), 254); /* FIFO of 256 */
    run_done(f, code, sizeof(code), 0);
    assert_true(*ram(f, 0x2000) & 0x01);
    assert_int_equal(*ram(f, 0x2001), 'o');
    assert_int_equal(*ram(f, 0x2002), 'k');
    assert_true(*ram(f, 0x2003) & 0x01); /* the x's are still there */
    fx_free(f);
}

/* The UART's interrupt reaches a real-mode guest: IRQ 4 through KVM_IRQ_LINE,
 * vio's GSI routing and the in-kernel PIC, LINT0 in ExtINT mode (the BSP's
 * virtual wire). MCR.OUT2 gates the line as on a PC. */
static void test_uart_interrupt(void **state)
{
    static const uint8_t handler[] = {
        /* at 0x1800, IVT vector 0x0c */
        0x50,                   /* push ax */
        0x52,                   /* push dx */
        0xba, 0xfa, 0x03,       /* mov dx, 0x3fa (IIR) */
        0xec,                   /* in al, dx */
        0x66, 0x0f, 0xb6, 0xc0, /* movzx eax, al */
        0xba, 0xf4, 0x04,       /* mov dx, VAL_PORT */
        0x66, 0xef,             /* out dx, eax */
        0xba, 0xf9, 0x03,       /* mov dx, 0x3f9 (IER) */
        0xb0, 0x00,             /* mov al, 0 */
        0xee,                   /* out dx, al: no more THRE interrupts */
        0xb0, 0x20,             /* mov al, 0x20 */
        0xe6, 0x20,             /* out 0x20, al: EOI */
        0x5a,                   /* pop dx */
        0x58,                   /* pop ax */
        0xcf,                   /* iret */
    };
    static const uint8_t code[] = {
        0xb0, 0x11, 0xe6, 0x20,             /* PIC ICW1: out 0x20, 0x11 */
        0xb0, 0x08, 0xe6, 0x21,             /* ICW2: IRQ 0-7 at vectors 8-15 */
        0xb0, 0x04, 0xe6, 0x21,             /* ICW3 */
        0xb0, 0x01, 0xe6, 0x21,             /* ICW4 */
        0xb0, 0xef, 0xe6, 0x21,             /* OCW1: only IRQ 4 unmasked */
        0xba, 0xf9, 0x03,                   /* mov dx, 0x3f9 (IER) */
        0xb0, 0x02,                         /* mov al, THRI */
        0xee,                               /* out dx, al: THRE pending, but OUT2 is clear */
        0xfb,                               /* sti */
        0x90, 0x90, 0x90, 0x90,             /* nop x4: no interrupt may come here */
        0xfa,                               /* cli */
        0x66, 0xb8, 0x11, 0x00, 0x00, 0x00, /* mov eax, 0x11 */
        0xba, 0xf4, 0x04,                   /* mov dx, VAL_PORT */
        0x66, 0xef,                         /* out dx, eax: marker */
        0xba, 0xfc, 0x03,                   /* mov dx, 0x3fc (MCR) */
        0xb0, 0x08,                         /* mov al, OUT2 */
        0xee,                               /* out dx, al: the line goes up */
        0xfb,                               /* sti */
        0xf4,                               /* hlt: woken by IRQ 4 */
        0xfa,                               /* cli */
        0xba, 0xf0, 0x04,                   /* mov dx, DONE_PORT */
        0xee,                               /* out dx, al */
        0xf4,                               /* hlt */
    };
    static const uint8_t ivt_0c[4] = {0x00, 0x18, 0x00, 0x00}; /* 0000:1800 */
    struct fx *f = fx_new(1);

    (void)state;
    assert_int_equal(vio_uart_create(&f->vm, VIO_COM1_PORT, VIO_COM1_IRQ, -1, &f->uart), 0);
    load(f, 0x0c * 4, ivt_0c, sizeof(ivt_0c));
    load(f, 0x1800, handler, sizeof(handler));
    run_done(f, code, sizeof(code), 0);
    assert_int_equal(f->nvals, 2);
    assert_int_equal(f->vals[0], 0x11);        /* nothing before OUT2 */
    assert_int_equal(f->vals[1] & 0x0f, 0x02); /* IIR: THR empty */
    fx_free(f);
}

/* ---- RTC ---- */

static unsigned bcd(uint8_t v)
{
    return (v >> 4) * 10 + (v & 0xf);
}

static void test_rtc(void **state)
{
    static const uint8_t regs[] = {0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32, 0x8b, 0x0d};
    uint8_t code[256];
    size_t n = 0;
    bool ok = false;

    (void)state;
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(regs); i++) {
        const uint8_t one[] = {
            0xb0, regs[i],          /* mov al, reg */
            0xe6, 0x70,             /* out 0x70, al */
            0xe4, 0x71,             /* in al, 0x71 */
            0xa2, (uint8_t)i, 0x20, /* mov [0x2000 + i], al */
        };

        memcpy(code + n, one, sizeof(one));
        n += sizeof(one);
    }
    {
        const uint8_t tail[] = {
            0xb0, 0x40,       /* mov al, 0x40: CMOS RAM */
            0xe6, 0x70,       /* out 0x70, al */
            0xb0, 0x5a,       /* mov al, 0x5a */
            0xe6, 0x71,       /* out 0x71, al */
            0xb0, 0x80,       /* mov al, 0x80: seconds, NMI bit set */
            0xe6, 0x70,       /* out 0x70, al */
            0xb0, 0x99,       /* mov al, 0x99 */
            0xe6, 0x71,       /* out 0x71, al: time writes are ignored */
            0xb0, 0xc0,       /* mov al, 0xc0: 0x40 again, NMI bit set */
            0xe6, 0x70,       /* out 0x70, al */
            0xe4, 0x71,       /* in al, 0x71 */
            0xa2, 0x10, 0x20, /* mov [0x2010], al */
            0xba, 0xf0, 0x04, /* mov dx, DONE_PORT */
            0xee,             /* out dx, al */
            0xf4,             /* hlt */
        };

        memcpy(code + n, tail, sizeof(tail));
        n += sizeof(tail);
    }
    /* A read can straddle a second or minute boundary: try a few times. */
    for (int attempt = 0; attempt < 3 && !ok; attempt++) {
        struct fx *f = fx_new(1);
        struct tm tm = {0};
        time_t t0, t1, g;
        uint8_t *r;

        assert_int_equal(vio_rtc_create(&f->vm, &f->rtc), 0);
        t0 = time(NULL);
        run_done(f, code, n, 0);
        t1 = time(NULL);
        r = ram(f, 0x2000);
        tm.tm_sec = (int)bcd(r[0]);
        tm.tm_min = (int)bcd(r[1]);
        tm.tm_hour = (int)bcd(r[2]);
        tm.tm_mday = (int)bcd(r[3]);
        tm.tm_mon = (int)bcd(r[4]) - 1;
        tm.tm_year = (int)(bcd(r[6]) * 100 + bcd(r[5])) - 1900;
        g = timegm(&tm);
        assert_int_equal(r[7] & 0x06, 0x02); /* register B: 24 h, BCD */
        assert_int_equal(r[8], 0x80);        /* register D: valid RAM and time */
        assert_int_equal(r[0x10], 0x5a);     /* CMOS RAM byte kept */
        ok = g >= t0 - 1 && g <= t1 + 1;
        if (!ok)
            fprintf(stderr, "RTC said %lld, host %lld..%lld\n", (long long)g, (long long)t0,
                    (long long)t1);
        fx_free(f);
    }
    assert_true(ok);
}

/* ---- probe ---- */

static void test_kvm_probe(void **state)
{
    struct vio_kvm_speed s;

    (void)state;
    require_kvm();
    assert_int_equal(vio_kvm_probe(&s), 0);
    assert_true(s.ns_per_iter > 0.01 && s.ns_per_iter < 1e6);
    assert_int_equal(s.slow, s.ns_per_iter > 20.0);
    assert_int_equal(s.pvm, access("/sys/module/kvm_pvm", F_OK) == 0);
    fprintf(stderr, "probe: %.1f ns per iteration, slow=%d, pvm=%d\n", s.ns_per_iter, s.slow,
            s.pvm);
}

/* ---- bad arguments to vio_vm_create ---- */

static void create_must_fail(uint64_t mem, unsigned ncpus, int expect)
{
    struct vio_vm_opts o = {.mem_size = mem, .ncpus = ncpus};
    struct vio_vm *vm = calloc(1, sizeof(*vm));
    int ret;

    assert_non_null(vm);
    ret = vio_vm_create(&o, vm);
    if (ret != expect)
        fail_msg("vio_vm_create(mem %llu, cpus %u) returned %d, expected %d",
                 (unsigned long long)mem, ncpus, ret, expect);
    assert_int_equal(vm->vm_fd, -1);
    assert_null(vm->ram);
    free(vm);
}

static void test_create_bad_args(void **state)
{
    uint64_t host = vio_vm_host_mem();

    (void)state;
    require_kvm();
    assert_true(host > 0);
    create_must_fail((host + (4ull << 20)) & ~((2ull << 20) - 1), 1, -ENOMEM);
    create_must_fail(1ull << 50, 1, -ENOMEM);
    create_must_fail(MEM_64M, 0, -EINVAL);
    create_must_fail(MEM_64M, VIO_VM_MAX_CPUS + 1, -EINVAL);
    create_must_fail(MEM_64M, ~0u, -EINVAL);
    create_must_fail(MEM_64M + (1ull << 20), 1, -EINVAL); /* not a multiple of 2 MiB */
    create_must_fail(MEM_64M + 4096, 1, -EINVAL);
    create_must_fail(32ull << 20, 1, -EINVAL); /* below the minimum */
    create_must_fail(0, 1, -EINVAL);
}

/* A VM larger than the 32-bit hole splits RAM at 3 GiB and continues at
 * 4 GiB (memfd RAM is sparse: nothing is touched). */
static void test_create_high_memory(void **state)
{
    struct vio_vm_opts o = {.mem_size = 4ull << 30, .ncpus = 1};
    struct vio_vm *vm = calloc(1, sizeof(*vm));
    uint8_t *lo, *hi;

    (void)state;
    require_kvm();
    assert_int_equal(vio_vm_create(&o, vm), 0);
    assert_int_equal(vm->low_size, VIO_MEM_32BIT_END);
    assert_int_equal(vm->high_size, (4ull << 30) - VIO_MEM_32BIT_END);
    lo = vio_vm_gpa(vm, VIO_MEM_32BIT_END - 1, 1);
    hi = vio_vm_gpa(vm, VIO_HIGH_RAM_START, 1);
    assert_non_null(lo);
    assert_non_null(hi);
    assert_ptr_equal(hi, lo + 1); /* one memfd, contiguous in the host */
    assert_null(vio_vm_gpa(vm, VIO_MEM_32BIT_END, 1));
    assert_null(vio_vm_gpa(vm, VIO_HIGH_RAM_START + vm->high_size, 1));
    assert_null(vio_vm_gpa(vm, VIO_MEM_32BIT_END - 1, 2)); /* across the hole */
    vio_vm_destroy(vm);
    free(vm);
}

static int teardown(void **state)
{
    (void)state;
    if (cur)
        fx_free(cur);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bus_ranges, teardown),
        cmocka_unit_test_teardown(test_pio_dispatch, teardown),
        cmocka_unit_test_teardown(test_pio_on_test_thread, teardown),
        cmocka_unit_test_teardown(test_mmio_dispatch, teardown),
        cmocka_unit_test_teardown(test_long_mode_mmio_and_boot_regs, teardown),
        cmocka_unit_test_teardown(test_unclaimed_logged_once, teardown),
        cmocka_unit_test_teardown(test_exit_acpi_poweroff, teardown),
        cmocka_unit_test_teardown(test_exit_acpi_other_sleep_ignored, teardown),
        cmocka_unit_test_teardown(test_exit_i8042_reset, teardown),
        cmocka_unit_test_teardown(test_exit_cf9_reset, teardown),
        cmocka_unit_test_teardown(test_exit_cf9_without_bit2, teardown),
        cmocka_unit_test_teardown(test_exit_acpi_reset, teardown),
        cmocka_unit_test_teardown(test_exit_triple_fault, teardown),
        cmocka_unit_test_teardown(test_kick_halted_vcpu, teardown),
        cmocka_unit_test_teardown(test_stop_halted_vcpu, teardown),
        cmocka_unit_test_teardown(test_kick_spinning_vcpu, teardown),
        cmocka_unit_test_teardown(test_kick_two_vcpus, teardown),
        cmocka_unit_test_teardown(test_exit_first_reason_wins, teardown),
        cmocka_unit_test_teardown(test_cpuid_topology, teardown),
        cmocka_unit_test_teardown(test_uart, teardown),
        cmocka_unit_test_teardown(test_uart_input, teardown),
        cmocka_unit_test_teardown(test_uart_interrupt, teardown),
        cmocka_unit_test_teardown(test_rtc, teardown),
        cmocka_unit_test_teardown(test_kvm_probe, teardown),
        cmocka_unit_test_teardown(test_create_bad_args, teardown),
        cmocka_unit_test_teardown(test_create_high_memory, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
