/* Unit tests of vio run's PCI bus (src/vmm/pci.c) and MSI-X (msix.c), driven
 * as a guest would through ports 0xCF8/0xCFC with vio_bus_access; one test
 * takes an MSI-X interrupt in a tiny real-mode guest on /dev/kvm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/loop.h"
#include "vmm/bus.h"
#include "vmm/msix.h"
#include "vmm/pci.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define CFG_ADDR      0xcf8
#define CFG_DATA      0xcfc
#define NVEC          4
#define BAR0_SIZE     0x1000
#define BAR2_SIZE     0x100
#define MSIX_BAR_SIZE 0x1000
#define PBA_OFF       0x800

static void require_kvm(void)
{
    if (access("/dev/kvm", R_OK | W_OK) != 0)
        fail_msg("/dev/kvm is missing or not accessible (%s): these tests need KVM; run them "
                 "as root on a host with /dev/kvm (see shared/PLATFORM.md)",
                 strerror(errno));
}

/* ---- a test device ---- */

struct tdev {
    struct vio_pci_dev pdev;
    /* BAR accesses */
    unsigned reads, writes;
    uint64_t last_off;
    /* bar_mapped calls */
    unsigned map_calls;
    unsigned last_bar;
    uint64_t last_addr;
    bool last_mapped;
    uint64_t bar_addr[VIO_PCI_NBARS]; /* as last reported per BAR */
    bool bar_mapped[VIO_PCI_NBARS];
    unsigned cfg_calls;
    bool has_msix;
    struct vio_msix msix;
};

static void bar_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct tdev *t = opaque;

    t->reads++;
    t->last_off = off;
    memset(data, 0x5a, len);
}

static void bar_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct tdev *t = opaque;

    (void)data;
    (void)len;
    t->writes++;
    t->last_off = off;
}

static const struct vio_io_ops bar_ops = {.read = bar_read, .write = bar_write};

static void msix_bar_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct tdev *t = opaque;

    if (off < PBA_OFF)
        vio_msix_table_read(&t->msix, off, data, len);
    else
        vio_msix_pba_read(&t->msix, off - PBA_OFF, data, len);
}

static void msix_bar_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct tdev *t = opaque;

    if (off < PBA_OFF)
        vio_msix_table_write(&t->msix, off, data, len);
}

static const struct vio_io_ops msix_bar_ops = {.read = msix_bar_read, .write = msix_bar_write};

static void on_bar_mapped(struct vio_pci_dev *d, unsigned bar, uint64_t addr, bool mapped)
{
    struct tdev *t = d->opaque;

    t->map_calls++;
    t->last_bar = bar;
    t->last_addr = addr;
    t->last_mapped = mapped;
    t->bar_addr[bar] = addr;
    t->bar_mapped[bar] = mapped;
}

static void on_cfg_written(struct vio_pci_dev *d, unsigned off, unsigned len)
{
    struct tdev *t = d->opaque;

    (void)off;
    (void)len;
    t->cfg_calls++;
    if (t->has_msix)
        vio_msix_cfg_written(&t->msix);
}

static const struct vio_pci_dev_ops tdev_ops = {.bar_mapped = on_bar_mapped,
                                                .cfg_written = on_cfg_written};

/* ---- fixture ---- */

struct fx {
    struct vio_vm vm;
    struct vio_pci *pci;
    struct tdev *dev; /* slot 1 */
    _Atomic unsigned nvals;
    uint32_t vals[8];
    atomic_bool done;
};

static void done_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct fx *f = opaque;

    (void)len;
    if (off == 0) {
        atomic_store(&f->done, true);
        vio_vm_request_exit(&f->vm, VIO_VM_STOPPED);
    } else if (off == 4) {
        unsigned n = atomic_load(&f->nvals);

        if (n < VIO_ARRAY_SIZE(f->vals)) {
            memcpy(&f->vals[n], data, 4);
            atomic_store(&f->nvals, n + 1);
        }
    }
}

static const struct vio_io_ops done_ops = {.write = done_write};

static struct tdev *tdev_add(struct fx *f, bool msix)
{
    struct tdev *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    assert_int_equal(vio_pci_dev_init(f->pci, &t->pdev, "tdev", 0x1234, 0x5678, 0x018000, 0x02,
                                      0xabcd, 0xef01, &tdev_ops, t),
                     0);
    assert_int_equal(vio_pci_dev_add_bar(&t->pdev, 0, BAR0_SIZE, &bar_ops, t), 0);
    assert_int_equal(vio_pci_dev_add_bar(&t->pdev, 2, BAR2_SIZE, &bar_ops, t), 0);
    if (msix) {
        assert_int_equal(vio_pci_dev_add_bar(&t->pdev, 1, MSIX_BAR_SIZE, &msix_bar_ops, t), 0);
        assert_int_equal(vio_msix_init(&t->msix, &f->vm, &t->pdev, NVEC, 1, 0, PBA_OFF), 0);
        t->has_msix = true;
    }
    return t;
}

static void tdev_free(struct tdev *t)
{
    vio_pci_dev_remove(&t->pdev);
    if (t->has_msix)
        vio_msix_destroy(&t->msix);
    free(t);
}

/* The fixture of the running test, freed by the teardown if an assertion
 * ends the test early (so a failure does not also report leaks). */
static struct fx *cur;

static struct fx *fx_new(bool msix, unsigned ncpus)
{
    struct vio_vm_opts o = {.mem_size = 64ull << 20, .ncpus = ncpus};
    struct fx *f = calloc(1, sizeof(*f));
    int ret;

    require_kvm();
    assert_non_null(f);
    ret = vio_vm_create(&o, &f->vm);
    if (ret < 0)
        fail_msg("vio_vm_create(64M) failed: %s", strerror(-ret));
    assert_int_equal(vio_pci_create(&f->vm, &f->pci), 0);
    f->dev = tdev_add(f, msix);
    cur = f;
    return f;
}

static void fx_free(struct fx *f)
{
    if (f == cur)
        cur = NULL;
    vio_vm_stop(&f->vm);
    if (f->dev)
        tdev_free(f->dev);
    vio_pci_destroy(f->pci);
    vio_vm_destroy(&f->vm);
    free(f);
}

/* ---- config mechanism #1 as a guest uses it ---- */

static uint32_t bdf(unsigned bus, unsigned slot, unsigned fn, unsigned off)
{
    return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (off & 0xfc);
}

static void set_addr(struct fx *f, uint32_t a)
{
    assert_true(vio_bus_access(&f->vm.pio, CFG_ADDR, &a, 4, true));
}

static uint32_t cfg_rd_bdf(struct fx *f, uint32_t addr, unsigned off, unsigned len)
{
    uint32_t v = 0;

    set_addr(f, addr);
    vio_bus_access(&f->vm.pio, CFG_DATA + (off & 3), &v, len, false);
    return v;
}

static uint32_t cfg_rd(struct fx *f, unsigned slot, unsigned off, unsigned len)
{
    return cfg_rd_bdf(f, bdf(0, slot, 0, off), off, len);
}

static void cfg_wr(struct fx *f, unsigned slot, unsigned off, uint32_t v, unsigned len)
{
    set_addr(f, bdf(0, slot, 0, off));
    vio_bus_access(&f->vm.pio, CFG_DATA + (off & 3), &v, len, true);
}

static bool mmio_claimed(struct fx *f, uint64_t addr)
{
    uint32_t v;

    return vio_bus_access(&f->vm.mmio, addr, &v, 4, false);
}

static unsigned dev_slot(struct fx *f)
{
    return f->dev->pdev.slot;
}

/* ---- tests ---- */

static void test_host_bridge(void **state)
{
    struct fx *f = fx_new(false, 1);
    uint32_t a = 0;

    (void)state;
    assert_int_equal(cfg_rd(f, 0, 0x00, 2), 0x1b36);
    assert_int_equal(cfg_rd(f, 0, 0x02, 2), 0x0008);
    assert_int_equal(cfg_rd(f, 0, 0x08, 4) >> 8, 0x060000);
    assert_int_equal(cfg_rd(f, 0, 0x0b, 1), 0x06);
    assert_int_equal(cfg_rd(f, 0, 0x0e, 1) & 0x7f, 0); /* header type 0 */
    /* The address register reads back. */
    set_addr(f, bdf(0, 3, 0, 0x10));
    assert_true(vio_bus_access(&f->vm.pio, CFG_ADDR, &a, 4, false));
    assert_int_equal(a, bdf(0, 3, 0, 0x10));
    /* The test device sits in slot 1. */
    assert_int_equal(dev_slot(f), 1);
    assert_int_equal(cfg_rd(f, 1, 0x00, 4), 0x56781234);
    fx_free(f);
}

static void test_absent_functions(void **state)
{
    struct fx *f = fx_new(false, 1);

    (void)state;
    assert_int_equal(cfg_rd(f, 5, 0x00, 4), 0xffffffff);
    assert_int_equal(cfg_rd(f, 31, 0x08, 4), 0xffffffff);
    assert_int_equal(cfg_rd(f, 5, 0x02, 2), 0xffff);
    assert_int_equal(cfg_rd(f, 5, 0x03, 1), 0xff);
    /* bus != 0, function != 0, enable bit clear */
    assert_int_equal(cfg_rd_bdf(f, bdf(1, 0, 0, 0), 0, 4), 0xffffffff);
    assert_int_equal(cfg_rd_bdf(f, bdf(255, 1, 0, 0), 0, 4), 0xffffffff);
    assert_int_equal(cfg_rd_bdf(f, bdf(0, 0, 1, 0), 0, 4), 0xffffffff);
    assert_int_equal(cfg_rd_bdf(f, bdf(0, 1, 7, 0), 0, 4), 0xffffffff);
    assert_int_equal(cfg_rd_bdf(f, bdf(0, 1, 0, 0) & ~0x80000000u, 0, 4), 0xffffffff);
    /* Writes there go nowhere. */
    set_addr(f, bdf(0, 1, 3, 0x04));
    {
        uint32_t v = 0;

        vio_bus_access(&f->vm.pio, CFG_DATA, &v, 4, true);
    }
    assert_int_equal(cfg_rd(f, 1, 0x04, 2) & PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY);
    fx_free(f);
}

/* Writing all-ones and all-zeroes everywhere changes only the writable
 * bits: command (I/O, memory, master, INTx disable), BAR address bits and
 * the interrupt line. */
static void test_readonly_fields(void **state)
{
    struct fx *f = fx_new(false, 1);
    unsigned s;
    uint8_t before[256], after[256];
    static const uint8_t caps[2][8] = {{0x09, 0, 8, 1, 2, 3, 4, 5}, {0x05, 0, 0, 0, 0, 0, 0, 0}};

    (void)state;
    s = dev_slot(f);
    assert_true(vio_pci_dev_add_cap(&f->dev->pdev, caps[0], 8) >= 0x40);
    assert_true(vio_pci_dev_add_cap(&f->dev->pdev, caps[1], 8) >= 0x40);
    for (unsigned o = 0; o < 256; o += 4) {
        uint32_t v = cfg_rd(f, s, o, 4);

        memcpy(&before[o], &v, 4);
    }
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned o = 0; o < 256; o += 4) {
            if (o >= 0x10 && o < 0x28)
                continue; /* BARs have their own test */
            cfg_wr(f, s, o, pass ? 0 : 0xffffffff, 4);
        }
    }
    for (unsigned o = 0; o < 256; o += 4) {
        uint32_t v = cfg_rd(f, s, o, 4);

        memcpy(&after[o], &v, 4);
    }
    for (unsigned o = 0; o < 256; o++) {
        uint8_t changed = before[o] ^ after[o];
        uint8_t allowed = 0;

        if (o == 0x04)
            allowed = 0x07;
        else if (o == 0x05)
            allowed = 0x04;
        else if (o == 0x3c)
            allowed = 0xff;
        if (changed & ~allowed)
            fail_msg("config byte 0x%02x changed from 0x%02x to 0x%02x", o, before[o], after[o]);
    }
    assert_int_equal(cfg_rd(f, s, 0x00, 2), 0x1234);
    assert_int_equal(cfg_rd(f, s, 0x08, 4), 0x01800002);
    assert_int_equal(cfg_rd(f, s, 0x2c, 4), 0xef01abcd);
    assert_true(cfg_rd(f, s, 0x06, 2) & PCI_STATUS_CAP_LIST);
    assert_int_equal(cfg_rd(f, s, 0x34, 1), 0x40);
    /* Single bytes, too. */
    cfg_wr(f, s, 0x3c, 0x0b, 1);
    cfg_wr(f, s, 0x3d, 0x04, 1); /* pin: read-only */
    assert_int_equal(cfg_rd(f, s, 0x3c, 2), 0x000b);
    fx_free(f);
}

static void test_bar_size_probe(void **state)
{
    struct fx *f = fx_new(false, 1);
    unsigned s = dev_slot(f);
    uint32_t bar0, bar2;

    (void)state;
    bar0 = cfg_rd(f, s, 0x10, 4);
    bar2 = cfg_rd(f, s, 0x18, 4);
    assert_int_equal(bar0 & 0xf, 0); /* 32-bit memory, not prefetchable */
    assert_int_equal(bar0 & (BAR0_SIZE - 1), 0);
    assert_true(bar0 >= VIO_MMIO_32_START && bar0 < VIO_MMIO_32_END);
    assert_true(cfg_rd(f, s, 0x04, 2) & PCI_COMMAND_MEMORY);
    assert_true(mmio_claimed(f, bar0));
    assert_true(mmio_claimed(f, bar2));
    /* Linux's probe: decoding off, all-ones, read back, restore. */
    cfg_wr(f, s, 0x04, 0, 2);
    cfg_wr(f, s, 0x10, 0xffffffff, 4);
    cfg_wr(f, s, 0x18, 0xffffffff, 4);
    cfg_wr(f, s, 0x14, 0xffffffff, 4); /* unused BAR */
    assert_int_equal(cfg_rd(f, s, 0x10, 4), (uint32_t) ~(BAR0_SIZE - 1));
    assert_int_equal(cfg_rd(f, s, 0x18, 4), (uint32_t) ~(BAR2_SIZE - 1));
    assert_int_equal(cfg_rd(f, s, 0x14, 4), 0);
    cfg_wr(f, s, 0x10, bar0, 4);
    cfg_wr(f, s, 0x18, bar2, 4);
    assert_false(mmio_claimed(f, bar0));
    cfg_wr(f, s, 0x04, PCI_COMMAND_MEMORY, 2);
    assert_int_equal(cfg_rd(f, s, 0x10, 4), bar0);
    assert_true(mmio_claimed(f, bar0));
    assert_true(mmio_claimed(f, bar2 + BAR2_SIZE - 4));
    /* The probe with decoding left on must not decode at the probe value. */
    cfg_wr(f, s, 0x10, 0xffffffff, 4);
    assert_false(mmio_claimed(f, 0xfffff000ull));
    assert_false(mmio_claimed(f, bar0));
    cfg_wr(f, s, 0x10, bar0, 4);
    assert_true(mmio_claimed(f, bar0));
    fx_free(f);
}

static void test_bar_move(void **state)
{
    struct fx *f = fx_new(false, 1);
    struct tdev *t = f->dev;
    unsigned s = dev_slot(f);
    uint32_t bar0 = cfg_rd(f, s, 0x10, 4), v = 0;
    const uint32_t to = 0xc8000000;

    (void)state;
    t->map_calls = 0;
    cfg_wr(f, s, 0x10, to | 0xf, 4); /* low bits are read-only */
    assert_int_equal(cfg_rd(f, s, 0x10, 4), to);
    assert_int_equal(t->map_calls, 2); /* unmapped at the old place, mapped at the new */
    assert_int_equal(t->last_bar, 0);
    assert_int_equal(t->last_addr, to);
    assert_true(t->last_mapped);
    assert_false(mmio_claimed(f, bar0));
    t->reads = 0;
    assert_true(vio_bus_access(&f->vm.mmio, to + 0x24, &v, 4, false));
    assert_int_equal(t->reads, 1);
    assert_int_equal(t->last_off, 0x24);
    assert_int_equal(v, 0x5a5a5a5a);
    assert_true(vio_bus_access(&f->vm.mmio, to + BAR0_SIZE - 8, &v, 8, true));
    assert_int_equal(t->last_off, BAR0_SIZE - 8);
    assert_false(mmio_claimed(f, to + BAR0_SIZE));
    /* Moved while decoding is off: nothing decodes until it is on again. */
    cfg_wr(f, s, 0x04, 0, 2);
    assert_false(t->last_mapped);
    assert_false(mmio_claimed(f, to));
    cfg_wr(f, s, 0x10, to + 0x10000, 4);
    assert_false(mmio_claimed(f, to + 0x10000));
    cfg_wr(f, s, 0x04, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
    assert_true(mmio_claimed(f, to + 0x10000));
    assert_true(t->bar_mapped[0]);
    assert_int_equal(t->bar_addr[0], to + 0x10000);
    /* Byte-wise writes move it too, and leave BAR1 alone. */
    cfg_wr(f, s, 0x13, 0xc9, 1);
    assert_int_equal(cfg_rd(f, s, 0x10, 4), 0xc9010000);
    assert_int_equal(cfg_rd(f, s, 0x14, 4), 0);
    assert_true(mmio_claimed(f, 0xc9010000));
    /* A BAR placed at 0 or past 4 GiB - size is not decoded. */
    cfg_wr(f, s, 0x10, 0, 4);
    assert_false(mmio_claimed(f, 0xc9010000));
    assert_false(mmio_claimed(f, 0));
    fx_free(f);
}

static void test_command_memory_bit(void **state)
{
    struct fx *f = fx_new(false, 1);
    struct tdev *t = f->dev;
    unsigned s = dev_slot(f);
    uint32_t bar0 = cfg_rd(f, s, 0x10, 4), bar2 = cfg_rd(f, s, 0x18, 4);

    (void)state;
    t->map_calls = 0;
    cfg_wr(f, s, 0x04, PCI_COMMAND_MASTER, 2);
    assert_int_equal(t->map_calls, 2); /* both BARs */
    assert_false(t->last_mapped);
    assert_false(mmio_claimed(f, bar0));
    assert_false(mmio_claimed(f, bar2));
    cfg_wr(f, s, 0x04, PCI_COMMAND_MASTER, 2); /* again: no change, no call */
    assert_int_equal(t->map_calls, 2);
    cfg_wr(f, s, 0x04, PCI_COMMAND_MEMORY, 1); /* byte write */
    assert_int_equal(t->map_calls, 4);
    assert_true(mmio_claimed(f, bar0));
    assert_true(mmio_claimed(f, bar2));
    fx_free(f);
}

/* Odd offsets, odd widths, accesses across the data port's end, offsets
 * past the config space: ignored or answered with all-ones, nothing else
 * changes. */
static void test_garbage_accesses(void **state)
{
    struct fx *f = fx_new(false, 1);
    struct tdev *t = f->dev;
    unsigned s = dev_slot(f);
    uint32_t v, a;
    uint8_t snap[256];

    (void)state;
    memcpy(snap, t->pdev.cfg, sizeof(snap));
    cfg_wr(f, s, 0x01, 0xffff, 2); /* vendor high byte, device low byte */
    cfg_wr(f, s, 0x03, 0xff, 1);
    cfg_wr(f, s, 0x0a, 0xffff, 2);
    cfg_wr(f, s, 0x2d, 0xff, 1);
    assert_memory_equal(snap, t->pdev.cfg, sizeof(snap));
    /* Across the end of the data port: nobody claims them. */
    set_addr(f, bdf(0, s, 0, 0xfc));
    v = 0x12345678;
    assert_false(vio_bus_access(&f->vm.pio, CFG_DATA + 3, &v, 2, true));
    assert_false(vio_bus_access(&f->vm.pio, CFG_DATA + 2, &v, 4, true));
    assert_false(vio_bus_access(&f->vm.pio, CFG_DATA + 1, &v, 4, false));
    assert_int_equal(v, 0xffffffff);
    /* The last byte of config space through data port + 3. */
    assert_true(vio_bus_access(&f->vm.pio, CFG_DATA + 3, &v, 1, false));
    assert_int_equal(v & 0xff, 0);
    v = 0xab;
    assert_true(vio_bus_access(&f->vm.pio, CFG_DATA + 3, &v, 1, true));
    v = 0xffff;
    assert_true(vio_bus_access(&f->vm.pio, CFG_DATA + 2, &v, 2, true));
    assert_memory_equal(snap, t->pdev.cfg, sizeof(snap));
    /* Direct accessors past the end. */
    assert_int_equal(vio_pci_cfg_read(&t->pdev, 0xfe, 4), 0xffffffff);
    assert_int_equal(vio_pci_cfg_read(&t->pdev, 0x100, 1), 0xffffffff);
    assert_int_equal(vio_pci_cfg_read(&t->pdev, 0x10, 8), 0xffffffff);
    vio_pci_cfg_write(&t->pdev, 0xff, 0xffffffff, 4);
    vio_pci_cfg_write(&t->pdev, 0x3c, 0xffffffff, 8);
    vio_pci_cfg_write(&t->pdev, 0x1000, 0xff, 1);
    assert_memory_equal(snap, t->pdev.cfg, sizeof(snap));
    /* Narrow or misplaced writes to the address register are not taken. */
    a = bdf(0, s, 0, 0x08);
    set_addr(f, a);
    v = 0;
    vio_bus_access(&f->vm.pio, CFG_ADDR, &v, 2, true);
    vio_bus_access(&f->vm.pio, CFG_ADDR + 2, &v, 2, true);
    vio_bus_access(&f->vm.pio, CFG_ADDR + 3, &v, 1, true);
    assert_true(vio_bus_access(&f->vm.pio, CFG_ADDR, &v, 4, false));
    assert_int_equal(v, a);
    assert_int_equal(atomic_load(&f->vm.exit_reason), VIO_VM_RUNNING);
    fx_free(f);
}

static void test_cf9_reset(void **state)
{
    struct fx *f = fx_new(false, 1);
    uint32_t v = 0x02;

    (void)state;
    assert_true(vio_bus_access(&f->vm.pio, 0xcf9, &v, 1, true));
    assert_int_equal(atomic_load(&f->vm.exit_reason), VIO_VM_RUNNING);
    v = 0x06;
    assert_true(vio_bus_access(&f->vm.pio, 0xcf9, &v, 1, true));
    assert_int_equal(atomic_load(&f->vm.exit_reason), VIO_VM_REBOOT);
    fx_free(f);
}

/* Walk the list; returns the number of capabilities and fills @ids/@offs. */
static unsigned walk_caps(struct fx *f, unsigned s, uint8_t *ids, uint8_t *offs, unsigned max)
{
    unsigned n = 0;
    uint8_t p = (uint8_t)cfg_rd(f, s, PCI_CAPABILITY_LIST, 1);

    while (p) {
        if (n == max)
            fail_msg("capability list longer than %u entries (a loop?)", max);
        if (p < 0x40 || (p & 3))
            fail_msg("capability pointer 0x%02x is not a dword in the device part", p);
        ids[n] = (uint8_t)cfg_rd(f, s, p, 1);
        offs[n++] = p;
        p = (uint8_t)cfg_rd(f, s, p + 1, 1);
    }
    return n;
}

static void test_capability_list(void **state)
{
    struct fx *f = fx_new(false, 1);
    struct vio_pci_dev *d = &f->dev->pdev;
    unsigned s = dev_slot(f);
    uint8_t ids[64], offs[64], c[64];
    uint8_t o1, o2, o3;
    unsigned n;

    (void)state;
    assert_int_equal(cfg_rd(f, s, PCI_CAPABILITY_LIST, 1), 0);
    assert_false(cfg_rd(f, s, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    memset(c, 0xee, sizeof(c));
    c[0] = 0x09;
    assert_int_equal(vio_pci_dev_add_cap(d, c, 1), 0); /* too short to hold a link */
    o1 = vio_pci_dev_add_cap(d, c, 5);
    c[0] = 0x01;
    o2 = vio_pci_dev_add_cap(d, c, 8);
    c[0] = 0x10;
    o3 = vio_pci_dev_add_cap(d, c, 13);
    assert_int_equal(o1, 0x40);
    assert_int_equal(o2, 0x48); /* aligned up from 0x45 */
    assert_int_equal(o3, 0x50);
    assert_true(cfg_rd(f, s, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    n = walk_caps(f, s, ids, offs, 64);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 0x09);
    assert_int_equal(ids[1], 0x01);
    assert_int_equal(ids[2], 0x10);
    /* The body is copied after the header. */
    assert_int_equal(cfg_rd(f, s, o1 + 2, 1), 0xee);
    assert_int_equal(cfg_rd(f, s, o3 + 12, 1), 0xee);
    assert_int_equal(cfg_rd(f, s, o3 + 13, 1), 0);
    /* Fill the space: adding stops with 0, the list stays well formed. */
    c[0] = 0x09;
    while (vio_pci_dev_add_cap(d, c, 24))
        ;
    while (vio_pci_dev_add_cap(d, c, 4))
        ;
    assert_int_equal(vio_pci_dev_add_cap(d, c, 2), 0);
    n = walk_caps(f, s, ids, offs, 64);
    assert_true(n > 3);
    for (unsigned i = 0; i + 1 < n; i++)
        assert_true(offs[i + 1] > offs[i]); /* in order, no wrap */
    assert_int_equal(offs[n - 1], 0xfc);    /* the last dword holds the last one */
    /* Caps are read-only. */
    cfg_wr(f, s, o2, 0xffffffff, 4);
    assert_int_equal(cfg_rd(f, s, o2, 1), 0x01);
    assert_int_equal(cfg_rd(f, s, o2 + 1, 1), o3);
    fx_free(f);
}

static void test_slots_full_and_remove(void **state)
{
    struct fx *f = fx_new(false, 1);
    struct vio_pci_dev *d = calloc(VIO_PCI_SLOTS, sizeof(*d));
    struct vio_pci_dev extra;
    unsigned n = 0;
    uint32_t bar0 = cfg_rd(f, dev_slot(f), 0x10, 4);

    (void)state;
    assert_non_null(d);
    while (vio_pci_dev_init(f->pci, &d[n], "filler", 0x1111, 0x2222, 0xff0000, 0, 0, 0, NULL,
                            NULL) == 0)
        n++;
    assert_int_equal(n, VIO_PCI_SLOTS - 2); /* host bridge and the test device */
    assert_int_equal(vio_pci_dev_init(f->pci, &extra, "x", 1, 2, 0, 0, 0, 0, NULL, NULL), -ENOSPC);
    assert_int_equal(cfg_rd(f, 31, 0, 4), 0x22221111);
    /* Removing the test device frees its slot and its BARs. */
    vio_pci_dev_remove(&f->dev->pdev);
    assert_int_equal(cfg_rd(f, 1, 0, 4), 0xffffffff);
    assert_false(mmio_claimed(f, bar0));
    assert_int_equal(vio_pci_dev_init(f->pci, &extra, "x", 1, 2, 0, 0, 0, 0, NULL, NULL), 0);
    assert_int_equal(extra.slot, 1);
    vio_pci_dev_remove(&extra);
    for (unsigned i = 0; i < n; i++)
        vio_pci_dev_remove(&d[i]);
    free(d);
    fx_free(f);
}

/* A BAR moved onto another device's BAR is not decoded; the other device
 * keeps its range. Moved away again, it decodes. */
static void test_bar_overlap(void **state)
{
    struct fx *f = fx_new(false, 1);
    struct tdev *a = f->dev, *b = tdev_add(f, false);
    uint32_t abar = cfg_rd(f, a->pdev.slot, 0x10, 4), bbar = cfg_rd(f, b->pdev.slot, 0x10, 4);
    uint32_t v;

    (void)state;
    assert_int_not_equal(abar, bbar);
    cfg_wr(f, b->pdev.slot, 0x10, abar, 4);
    a->reads = b->reads = 0;
    assert_true(vio_bus_access(&f->vm.mmio, abar, &v, 4, false));
    assert_int_equal(a->reads, 1);
    assert_int_equal(b->reads, 0);
    assert_false(b->pdev.bars[0].mapped);
    cfg_wr(f, b->pdev.slot, 0x10, bbar, 4);
    assert_true(b->pdev.bars[0].mapped);
    assert_true(vio_bus_access(&f->vm.mmio, bbar, &v, 4, false));
    assert_int_equal(b->reads, 1);
    /* Onto its own BAR 2. */
    cfg_wr(f, b->pdev.slot, 0x10, cfg_rd(f, b->pdev.slot, 0x18, 4), 4);
    assert_false(b->pdev.bars[0].mapped);
    assert_true(b->pdev.bars[2].mapped);
    tdev_free(b);
    fx_free(f);
}

/* ---- MSI-X ---- */

static uint8_t msix_cap(struct fx *f)
{
    uint8_t ids[16], offs[16];
    unsigned n = walk_caps(f, dev_slot(f), ids, offs, 16);

    for (unsigned i = 0; i < n; i++) {
        if (ids[i] == 0x11)
            return offs[i];
    }
    fail_msg("no MSI-X capability");
    return 0;
}

static uint64_t msix_table(struct fx *f)
{
    return cfg_rd(f, dev_slot(f), 0x14, 4) & ~0xfu;
}

static void tbl_wr(struct fx *f, unsigned vec, unsigned off, uint32_t v)
{
    assert_true(vio_bus_access(&f->vm.mmio, msix_table(f) + 16 * vec + off, &v, 4, true));
}

static uint32_t tbl_rd(struct fx *f, unsigned vec, unsigned off)
{
    uint32_t v = 0;

    assert_true(vio_bus_access(&f->vm.mmio, msix_table(f) + 16 * vec + off, &v, 4, false));
    return v;
}

/* Is the vector's eventfd attached as an irqfd? KVM refuses a second irqfd
 * for the same eventfd with EBUSY; an unattached one is assigned and then
 * removed again. */
static bool kvm_irqfd_attached(struct fx *f, unsigned vec)
{
    struct kvm_irqfd r = {.fd = (uint32_t)f->dev->msix.v[vec].efd,
                          .gsi = (uint32_t)f->dev->msix.v[vec].gsi};

    if (ioctl(f->vm.vm_fd, KVM_IRQFD, &r) < 0) {
        assert_int_equal(errno, EBUSY);
        return true;
    }
    r.flags = KVM_IRQFD_FLAG_DEASSIGN;
    assert_int_equal(ioctl(f->vm.vm_fd, KVM_IRQFD, &r), 0);
    return false;
}

static void expect_attached(struct fx *f, unsigned vec, bool want)
{
    if (f->dev->msix.v[vec].irqfd != want)
        fail_msg("MSI-X vector %u: irqfd %s, expected %s", vec,
                 f->dev->msix.v[vec].irqfd ? "attached" : "detached", want ? "attached" : "not");
    assert_int_equal(kvm_irqfd_attached(f, vec), want);
}

static void test_msix_capability(void **state)
{
    struct fx *f = fx_new(true, 1);
    unsigned s = dev_slot(f);
    uint8_t cap = msix_cap(f);
    uint16_t ctrl;

    (void)state;
    ctrl = (uint16_t)cfg_rd(f, s, cap + 2, 2);
    assert_int_equal(ctrl, NVEC - 1);
    assert_int_equal(cfg_rd(f, s, cap + 4, 4), 0 | 1);       /* table: BAR 1, offset 0 */
    assert_int_equal(cfg_rd(f, s, cap + 8, 4), PBA_OFF | 1); /* PBA: BAR 1 */
    /* Only enable and function mask are writable. */
    cfg_wr(f, s, cap + 2, 0xffff, 2);
    assert_int_equal(cfg_rd(f, s, cap + 2, 2), 0xc000 | (NVEC - 1));
    cfg_wr(f, s, cap + 4, 0xffffffff, 4);
    cfg_wr(f, s, cap + 8, 0, 4);
    cfg_wr(f, s, cap, 0, 2);
    assert_int_equal(cfg_rd(f, s, cap, 1), 0x11);
    assert_int_equal(cfg_rd(f, s, cap + 4, 4), 1);
    assert_int_equal(cfg_rd(f, s, cap + 8, 4), PBA_OFF | 1);
    cfg_wr(f, s, cap + 3, 0, 1);
    assert_int_equal(cfg_rd(f, s, cap + 2, 2), NVEC - 1);
    fx_free(f);
}

static void test_msix_table(void **state)
{
    struct fx *f = fx_new(true, 1);
    uint64_t t = msix_table(f), v64 = 0;
    uint32_t v;

    (void)state;
    /* Power-on: all vectors masked, address and data zero. */
    for (unsigned i = 0; i < NVEC; i++) {
        assert_int_equal(tbl_rd(f, i, 0), 0);
        assert_int_equal(tbl_rd(f, i, 12), 1);
    }
    tbl_wr(f, 2, 0, 0xfee01000);
    tbl_wr(f, 2, 4, 0x1);
    tbl_wr(f, 2, 8, 0x4041);
    tbl_wr(f, 2, 12, 0xfffffffe); /* reserved bits dropped, unmasked */
    assert_int_equal(tbl_rd(f, 2, 0), 0xfee01000);
    assert_int_equal(tbl_rd(f, 2, 4), 1);
    assert_int_equal(tbl_rd(f, 2, 8), 0x4041);
    assert_int_equal(tbl_rd(f, 2, 12), 0);
    assert_true(vio_bus_access(&f->vm.mmio, t + 32, &v64, 8, false));
    assert_int_equal(v64, 0x1fee01000ull);
    v64 = 0x00000001000000ffull; /* data 0xff, masked, in one 8-byte write */
    assert_true(vio_bus_access(&f->vm.mmio, t + 32 + 8, &v64, 8, true));
    assert_int_equal(tbl_rd(f, 2, 8), 0xff);
    assert_int_equal(tbl_rd(f, 2, 12), 1);
    /* Entries past the table: all-ones, writes ignored. */
    v = 0;
    assert_true(vio_bus_access(&f->vm.mmio, t + 16 * NVEC, &v, 4, false));
    assert_int_equal(v, 0xffffffff);
    v = 0;
    assert_true(vio_bus_access(&f->vm.mmio, t + 16 * NVEC, &v, 4, true));
    assert_true(vio_bus_access(&f->vm.mmio, t + PBA_OFF - 4, &v, 4, true));
    /* An access across two entries: all-ones, ignored. */
    v = 0;
    assert_true(vio_bus_access(&f->vm.mmio, t + 14, &v, 4, false));
    assert_int_equal(v, 0xffffffff);
    v = 0;
    assert_true(vio_bus_access(&f->vm.mmio, t + 12, &v, 8, true));
    assert_int_equal(tbl_rd(f, 0, 12), 1);
    assert_int_equal(tbl_rd(f, 1, 0), 0);
    /* PBA reads zero. */
    v = 0xaa;
    assert_true(vio_bus_access(&f->vm.mmio, t + PBA_OFF, &v, 4, false));
    assert_int_equal(v, 0);
    /* Eventfds: one per vector, none for NO_VECTOR or past the table. */
    for (unsigned i = 0; i < NVEC; i++)
        assert_true(vio_msix_fd(&f->dev->msix, (uint16_t)i) >= 0);
    assert_int_equal(vio_msix_fd(&f->dev->msix, NVEC), -1);
    assert_int_equal(vio_msix_fd(&f->dev->msix, VIO_MSIX_NO_VECTOR), -1);
    vio_msix_notify(&f->dev->msix, VIO_MSIX_NO_VECTOR); /* no crash */
    vio_msix_notify(&f->dev->msix, NVEC);
    fx_free(f);
}

/* The irqfd is attached exactly while MSI-X is enabled, the function is not
 * masked and the vector is not masked. Signals meanwhile stay in the
 * eventfd. */
static void test_msix_masking(void **state)
{
    struct fx *f = fx_new(true, 1);
    unsigned s = dev_slot(f);
    uint8_t cap = msix_cap(f);
    int efd = vio_msix_fd(&f->dev->msix, 1);
    uint64_t cnt = 0;

    (void)state;
    tbl_wr(f, 1, 0, 0xfee00000);
    tbl_wr(f, 1, 8, 0x41);
    expect_attached(f, 1, false);
    tbl_wr(f, 1, 12, 0); /* unmasked, but MSI-X is off */
    expect_attached(f, 1, false);
    cfg_wr(f, s, cap + 2, 0x8000, 2); /* enable */
    expect_attached(f, 1, true);
    expect_attached(f, 0, false);     /* still masked */
    cfg_wr(f, s, cap + 2, 0xc000, 2); /* function mask */
    expect_attached(f, 1, false);
    vio_msix_notify(&f->dev->msix, 1);
    assert_int_equal(read(efd, &cnt, 8), 8); /* pending, not consumed by KVM */
    assert_int_equal(cnt, 1);
    cfg_wr(f, s, cap + 3, 0x80, 1); /* byte write: enable, no function mask */
    expect_attached(f, 1, true);
    tbl_wr(f, 1, 12, 1);
    expect_attached(f, 1, false);
    tbl_wr(f, 1, 12, 0);
    expect_attached(f, 1, true);
    /* Changing the message while attached re-routes, stays attached. */
    tbl_wr(f, 1, 8, 0x42);
    expect_attached(f, 1, true);
    cfg_wr(f, s, cap + 2, 0, 2); /* disable */
    expect_attached(f, 1, false);
    cfg_wr(f, s, cap + 2, 0x8000, 2);
    expect_attached(f, 1, true);
    fx_free(f); /* destroys with an irqfd attached */
}

/* End to end: a real-mode guest with its local APIC enabled waits in hlt;
 * the device's vector 0 carries vector 0x40 to APIC 0. A signal while the
 * vector is masked is held and delivered when it is unmasked. */
static void test_msix_delivery(void **state)
{
    static const uint8_t handler[] = {
        /* at 0x1800, IVT vector 0x40 */
        0x50,                                                 /* push ax */
        0x52,                                                 /* push dx */
        0x66, 0xb8, 0x40, 0x00, 0x00, 0x00,                   /* mov eax, 0x40 */
        0xba, 0xf4, 0x04,                                     /* mov dx, 0x4f4 */
        0x66, 0xef,                                           /* out dx, eax */
        0x66, 0xc7, 0x06, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, /* mov dword [0xb0], 0: APIC EOI */
        0x5a,                                                 /* pop dx */
        0x58,                                                 /* pop ax */
        0xcf,                                                 /* iret */
    };
    static const uint8_t code[] = {
        /* at 0x1000, DS base = local APIC */
        0x66, 0xc7, 0x06, 0xf0, 0x00, 0xff,
        0x01, 0x00, 0x00,                   /* mov dword [0xf0], 0x1ff: SVR, APIC on */
        0x66, 0xb8, 0x22, 0x00, 0x00, 0x00, /* mov eax, 0x22 */
        0xba, 0xf4, 0x04,                   /* mov dx, 0x4f4 */
        0x66, 0xef,                         /* out dx, eax: ready */
        0xfb,                               /* sti */
        0xf4,                               /* hlt */
        0xfa,                               /* cli */
        0xba, 0xf0, 0x04,                   /* mov dx, 0x4f0 */
        0xee,                               /* out dx, al: done */
        0xf4,                               /* hlt */
    };
    static const uint8_t ivt_40[4] = {0x00, 0x18, 0x00, 0x00};
    struct fx *f = fx_new(true, 1);
    unsigned s = dev_slot(f);
    uint8_t cap = msix_cap(f);
    struct pollfd p = {.fd = f->vm.exit_fd, .events = POLLIN};
    struct kvm_sregs sr;
    struct kvm_regs r = {.rip = 0x1000, .rflags = 2, .rsp = 0x7000};
    int n;

    (void)state;
    assert_int_equal(vio_vm_create_vcpus(&f->vm), 0);
    assert_int_equal(vio_bus_add(&f->vm.pio, 0x4f0, 8, &done_ops, f, "done"), 0);
    memcpy(vio_vm_gpa(&f->vm, 0x1000, sizeof(code)), code, sizeof(code));
    memcpy(vio_vm_gpa(&f->vm, 0x1800, sizeof(handler)), handler, sizeof(handler));
    memcpy(vio_vm_gpa(&f->vm, 0x40 * 4, 4), ivt_40, 4);
    assert_int_equal(ioctl(f->vm.vcpus[0].fd, KVM_GET_SREGS, &sr), 0);
    sr.cs.base = sr.ss.base = sr.es.base = 0;
    sr.cs.selector = sr.ss.selector = sr.es.selector = sr.ds.selector = 0;
    sr.ds.base = VIO_LAPIC_ADDR;
    assert_int_equal(ioctl(f->vm.vcpus[0].fd, KVM_SET_SREGS, &sr), 0);
    assert_int_equal(ioctl(f->vm.vcpus[0].fd, KVM_SET_REGS, &r), 0);

    tbl_wr(f, 0, 0, 0xfee00000); /* APIC 0, physical */
    tbl_wr(f, 0, 4, 0);
    tbl_wr(f, 0, 8, 0x40); /* fixed, edge, vector 0x40 */
    cfg_wr(f, s, cap + 2, 0x8000, 2);
    assert_int_equal(vio_vm_start(&f->vm), 0);
    for (int i = 0; i < 2000 && atomic_load(&f->nvals) < 1; i++)
        usleep(5000);
    assert_int_equal(atomic_load(&f->nvals), 1);
    assert_int_equal(f->vals[0], 0x22);
    vio_msix_notify(&f->dev->msix, 0); /* masked: held */
    usleep(200 * 1000);
    assert_int_equal(atomic_load(&f->nvals), 1);
    tbl_wr(f, 0, 12, 0); /* unmask: delivered now */
    do {
        n = poll(&p, 1, 10000);
    } while (n < 0 && errno == EINTR);
    vio_vm_request_exit(&f->vm, VIO_VM_STOPPED);
    vio_vm_stop(&f->vm);
    if (n == 0)
        fail_msg("the guest did not get the MSI-X interrupt within 10 s");
    assert_true(atomic_load(&f->done));
    assert_int_equal(atomic_load(&f->nvals), 2);
    assert_int_equal(f->vals[1], 0x40);
    vio_bus_remove(&f->vm.pio, 0x4f0, f);
    fx_free(f);
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
        cmocka_unit_test_teardown(test_host_bridge, teardown),
        cmocka_unit_test_teardown(test_absent_functions, teardown),
        cmocka_unit_test_teardown(test_readonly_fields, teardown),
        cmocka_unit_test_teardown(test_bar_size_probe, teardown),
        cmocka_unit_test_teardown(test_bar_move, teardown),
        cmocka_unit_test_teardown(test_command_memory_bit, teardown),
        cmocka_unit_test_teardown(test_garbage_accesses, teardown),
        cmocka_unit_test_teardown(test_cf9_reset, teardown),
        cmocka_unit_test_teardown(test_capability_list, teardown),
        cmocka_unit_test_teardown(test_slots_full_and_remove, teardown),
        cmocka_unit_test_teardown(test_bar_overlap, teardown),
        cmocka_unit_test_teardown(test_msix_capability, teardown),
        cmocka_unit_test_teardown(test_msix_table, teardown),
        cmocka_unit_test_teardown(test_msix_masking, teardown),
        cmocka_unit_test_teardown(test_msix_delivery, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
