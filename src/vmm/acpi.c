/* ACPI table builder (see acpi.h). Tables are assembled in a host buffer and
 * copied to 0xE0000; each has its checksum fixed last. The DSDT's AML is
 * produced by the few encoders below (ACPI 6.4, chapter 20), enough for
 * names, integers, packages, buffers and devices. */
#include "vmm/acpi.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "vmm/boot.h"
#include "vmm/pci.h"

#define ACPI_AREA_SIZE 0x10000
#define OEM_ID         "VIO   "
#define OEM_TABLE_ID   "VIOVMM  "

struct buf {
    uint8_t *p;
    size_t len, cap;
    bool overflow;
};

static void put(struct buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put8(struct buf *b, uint8_t v)
{
    put(b, &v, 1);
}

static void put16(struct buf *b, uint16_t v)
{
    put(b, &v, 2);
}

static void put32(struct buf *b, uint32_t v)
{
    put(b, &v, 4);
}

static void put64(struct buf *b, uint64_t v)
{
    put(b, &v, 8);
}

uint8_t vio_acpi_sum(const void *p, size_t len)
{
    uint8_t s = 0;

    for (size_t i = 0; i < len; i++)
        s = (uint8_t)(s + ((const uint8_t *)p)[i]);
    return s;
}

/* ---- AML ---- */

/* A package length covering @body bytes plus the length field itself. */
static void aml_pkglen(struct buf *b, size_t body)
{
    if (body + 1 < 0x40) {
        put8(b, (uint8_t)(body + 1));
    } else if (body + 2 < 0x1000) {
        size_t n = body + 2;

        put8(b, (uint8_t)(0x40 | (n & 0xf)));
        put8(b, (uint8_t)(n >> 4));
    } else {
        size_t n = body + 3;

        put8(b, (uint8_t)(0x80 | (n & 0xf)));
        put8(b, (uint8_t)(n >> 4));
        put8(b, (uint8_t)(n >> 12));
    }
}

static void aml_int(struct buf *b, uint64_t v)
{
    if (v == 0) {
        put8(b, 0x00); /* ZeroOp */
    } else if (v == 1) {
        put8(b, 0x01); /* OneOp */
    } else if (v <= 0xff) {
        put8(b, 0x0a);
        put8(b, (uint8_t)v);
    } else if (v <= 0xffff) {
        put8(b, 0x0b);
        put16(b, (uint16_t)v);
    } else if (v <= 0xffffffff) {
        put8(b, 0x0c);
        put32(b, (uint32_t)v);
    } else {
        put8(b, 0x0e);
        put64(b, v);
    }
}

/* EISA ID "PNP0A03" compressed to the 32-bit form _HID uses. */
static uint32_t eisa_id(const char *s)
{
    uint16_t vendor = (uint16_t)(((s[0] - 0x40) << 10) | ((s[1] - 0x40) << 5) | (s[2] - 0x40));
    unsigned product = 0;

    for (int i = 3; i < 7; i++) {
        char c = s[i];

        product = (product << 4) | (unsigned)(c <= '9' ? c - '0' : c - 'A' + 10);
    }
    /* Stored big-endian within the dword. */
    return (uint32_t)((vendor >> 8) | ((vendor & 0xff) << 8) | ((product >> 8) << 16) |
                      ((product & 0xff) << 24));
}

/* Name(NAME, <integer>) */
static void aml_name_int(struct buf *b, const char *name, uint64_t v)
{
    put8(b, 0x08);
    put(b, name, 4);
    aml_int(b, v);
}

/* Name(NAME, Buffer(){bytes}) */
static void aml_name_buffer(struct buf *b, const char *name, const uint8_t *data, size_t n)
{
    uint8_t size[16];
    struct buf sb = {size, 0, sizeof(size), false};

    aml_int(&sb, n);
    put8(b, 0x08);
    put(b, name, 4);
    put8(b, 0x11); /* BufferOp */
    aml_pkglen(b, sb.len + n);
    put(b, size, sb.len);
    put(b, data, n);
}

/* Device(NAME) { body } */
static void aml_device(struct buf *b, const char *name, const uint8_t *body, size_t n)
{
    put8(b, 0x5b);
    put8(b, 0x82);
    aml_pkglen(b, 4 + n);
    put(b, name, 4);
    put(b, body, n);
}

/* Scope(\NAME) { body } */
static void aml_scope(struct buf *b, const char *name, const uint8_t *body, size_t n)
{
    put8(b, 0x10);
    aml_pkglen(b, 1 + 4 + n);
    put8(b, '\\');
    put(b, name, 4);
    put(b, body, n);
}

/* Resource descriptors for _CRS buffers (ACPI 6.4, 6.4). */
static void res_word_addr(struct buf *b, uint8_t type, uint8_t tflags, uint16_t min, uint16_t max)
{
    put8(b, 0x88);
    put16(b, 13);
    put8(b, type);
    put8(b, 0x0c); /* producer, min and max fixed, positive decode */
    put8(b, tflags);
    put16(b, 0);   /* granularity */
    put16(b, min);
    put16(b, max);
    put16(b, 0);   /* translation */
    put16(b, (uint16_t)(max - min + 1));
}

static void res_dword_mem(struct buf *b, uint32_t min, uint32_t max)
{
    put8(b, 0x87);
    put16(b, 23);
    put8(b, 0);    /* memory */
    put8(b, 0x0c);
    put8(b, 0x01); /* read-write, non-cacheable */
    put32(b, 0);
    put32(b, min);
    put32(b, max);
    put32(b, 0);
    put32(b, max - min + 1);
}

static void res_io(struct buf *b, uint16_t port, uint8_t len)
{
    put8(b, 0x47);
    put8(b, 1); /* 16-bit decode */
    put16(b, port);
    put16(b, port);
    put8(b, 1);
    put8(b, len);
}

static void res_irq(struct buf *b, unsigned irq)
{
    put8(b, 0x22);
    put16(b, (uint16_t)(1u << irq));
}

static void res_end(struct buf *b)
{
    put8(b, 0x79);
    put8(b, 0);
}

/* Name(_PRT, Package(){...}): the INTx routing of bus 0, one entry per
 * slot and pin, each a static GSI (Source Zero) as vio_pci_intx_gsi() says;
 * Linux then programs those IOAPIC inputs level-triggered. */
static void aml_prt(struct buf *b)
{
    uint8_t body[2048];
    struct buf p = {body, 0, sizeof(body), false};
    unsigned n = 0;

    for (unsigned slot = 1; slot < VIO_PCI_SLOTS; slot++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            uint8_t e[16];
            struct buf eb = {e, 0, sizeof(e), false};

            put8(&eb, 4); /* NumElements */
            put8(&eb, 0x0c); /* DWordConst: address, any function of the slot */
            put32(&eb, slot << 16 | 0xffff);
            aml_int(&eb, pin);
            aml_int(&eb, 0); /* Source: none, a GSI */
            aml_int(&eb, vio_pci_intx_gsi(slot, pin));
            put8(&p, 0x12); /* PackageOp */
            aml_pkglen(&p, eb.len);
            put(&p, e, eb.len);
            n++;
        }
    }
    put8(b, 0x08);
    put(b, "_PRT", 4);
    put8(b, 0x12);
    aml_pkglen(b, 1 + p.len);
    put8(b, (uint8_t)n); /* NumElements (124) */
    put(b, body, p.len);
    if (p.overflow)
        b->overflow = true;
}

static void build_dsdt_body(struct buf *b)
{
    uint8_t dev[4096], crs[256], sb[4096];
    struct buf d = {dev, 0, sizeof(dev), false}, c = {crs, 0, sizeof(crs), false};
    struct buf s = {sb, 0, sizeof(sb), false};

    /* \_S5_: sleep type 5 for power off (written to the sleep control
     * register by the OS). */
    put8(&c, 4); /* NumElements */
    aml_int(&c, VIO_ACPI_S5_TYPE);
    aml_int(&c, 0);
    aml_int(&c, 0);
    aml_int(&c, 0);
    put8(b, 0x08);
    put(b, "_S5_", 4);
    put8(b, 0x12); /* PackageOp */
    aml_pkglen(b, c.len);
    put(b, crs, c.len);
    c.len = 0;

    /* \_SB_.PCI0: the host bridge, bus 0, config ports, I/O and MMIO windows. */
    aml_name_int(&d, "_HID", eisa_id("PNP0A03"));
    aml_name_int(&d, "_ADR", 0);
    aml_name_int(&d, "_UID", 0);
    res_word_addr(&c, 2, 0, 0, 0);              /* bus numbers 0-0 */
    res_io(&c, 0xcf8, 8);                       /* config mechanism #1 */
    res_word_addr(&c, 1, 0x03, 0x0000, 0x0cf7); /* I/O below cf8 */
    res_word_addr(&c, 1, 0x03, 0x0d00, 0xffff); /* I/O above cff */
    res_dword_mem(&c, (uint32_t)VIO_MMIO_32_START, (uint32_t)(VIO_MMIO_32_END - 1));
    res_end(&c);
    aml_name_buffer(&d, "_CRS", crs, c.len);
    aml_prt(&d);
    aml_device(&s, "PCI0", dev, d.len);

    /* \_SB_.RTC_: the CMOS clock at ports 0x70-0x71, IRQ 8. */
    d.len = c.len = 0;
    aml_name_int(&d, "_HID", eisa_id("PNP0B00"));
    res_io(&c, 0x70, 2);
    res_irq(&c, 8);
    res_end(&c);
    aml_name_buffer(&d, "_CRS", crs, c.len);
    aml_device(&s, "RTC_", dev, d.len);

    /* \_SB_.COM1: the 16550 at 0x3f8, IRQ 4. A hardware-reduced ACPI x86
     * has no legacy PIC, so Linux maps ISA interrupts only for devices
     * described here; without this the console gets no interrupt. */
    d.len = c.len = 0;
    aml_name_int(&d, "_HID", eisa_id("PNP0501"));
    aml_name_int(&d, "_UID", 1);
    res_io(&c, 0x3f8, 8);
    res_irq(&c, 4);
    res_end(&c);
    aml_name_buffer(&d, "_CRS", crs, c.len);
    aml_device(&s, "COM1", dev, d.len);

    aml_scope(b, "_SB_", sb, s.len);
    if (d.overflow || c.overflow || s.overflow)
        b->overflow = true;
}

/* ---- tables ---- */

static size_t table_begin(struct buf *b, const char *sig, uint8_t rev)
{
    size_t start = b->len;

    put(b, sig, 4);
    put32(b, 0); /* length, fixed in table_end */
    put8(b, rev);
    put8(b, 0);  /* checksum */
    put(b, OEM_ID, 6);
    put(b, OEM_TABLE_ID, 8);
    put32(b, 1);
    put(b, "VIO ", 4);
    put32(b, 1);
    return start;
}

static void table_end(struct buf *b, size_t start)
{
    uint32_t len = (uint32_t)(b->len - start);

    if (b->overflow)
        return;
    memcpy(b->p + start + 4, &len, 4);
    b->p[start + 9] = (uint8_t)(0 - vio_acpi_sum(b->p + start, len));
}

/* Generic address structure for a one-byte I/O port register. */
static void put_gas_io(struct buf *b, uint16_t port)
{
    put8(b, 1); /* system I/O */
    put8(b, 8); /* bit width */
    put8(b, 0);
    put8(b, 1); /* byte access */
    put64(b, port);
}

static void zero(struct buf *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put8(b, 0);
}

static void align8(struct buf *b)
{
    while (b->len % 8)
        put8(b, 0);
}

uint64_t vio_acpi_build(struct vio_vm *vm)
{
    static uint8_t area[ACPI_AREA_SIZE];
    struct buf b = {area, 0, sizeof(area), false};
    const uint64_t base = VIO_BIOS_START;
    size_t rsdp, xsdt, fadt, madt, dsdt, t;

    memset(area, 0, sizeof(area));
    /* RSDP first: the OS also finds it by scanning 0xE0000-0xFFFFF. */
    rsdp = b.len;
    put(&b, "RSD PTR ", 8);
    put8(&b, 0);
    put(&b, OEM_ID, 6);
    put8(&b, 2);  /* ACPI 2.0+ */
    put32(&b, 0); /* no RSDT */
    put32(&b, 36);
    put64(&b, 0); /* XSDT address, below */
    put8(&b, 0);
    zero(&b, 3);
    align8(&b);

    dsdt = table_begin(&b, "DSDT", 2);
    build_dsdt_body(&b);
    table_end(&b, dsdt);
    align8(&b);

    fadt = table_begin(&b, "FACP", 6);
    put32(&b, 0);                      /* FIRMWARE_CTRL */
    put32(&b, (uint32_t)(base + dsdt)); /* DSDT */
    zero(&b, 109 - 44);                /* legacy fields up to IAPC_BOOT_ARCH */
    put16(&b, 0);                      /* IAPC_BOOT_ARCH (109): no legacy devices announced */
    put8(&b, 0);
    /* FLAGS: WBINVD, power and sleep buttons absent, reset register,
     * hardware-reduced ACPI. */
    put32(&b, (1u << 0) | (1u << 4) | (1u << 5) | (1u << 10) | (1u << 20));
    put_gas_io(&b, VIO_ACPI_RESET);
    put8(&b, VIO_ACPI_RESET_VAL);
    put16(&b, 0); /* ARM_BOOT_ARCH */
    put8(&b, 0);  /* FADT minor version */
    put64(&b, 0); /* X_FIRMWARE_CTRL */
    put64(&b, base + dsdt);
    zero(&b, 244 - 148);             /* X_PM1a_EVT_BLK .. X_GPE1_BLK */
    put_gas_io(&b, VIO_ACPI_SLEEP_CTL);
    put_gas_io(&b, VIO_ACPI_SLEEP_STS);
    put(&b, "VIOVMM  ", 8); /* hypervisor vendor identity */
    if (b.len - fadt != 276)
        b.overflow = true; /* a layout mistake: refuse rather than mislead the guest */
    table_end(&b, fadt);
    align8(&b);

    madt = table_begin(&b, "APIC", 4);
    put32(&b, (uint32_t)VIO_LAPIC_ADDR);
    put32(&b, 1); /* PCAT_COMPAT: dual 8259s present */
    for (unsigned i = 0; i < vm->ncpus; i++) {
        put8(&b, 0);
        put8(&b, 8);
        put8(&b, (uint8_t)i); /* ACPI processor UID */
        put8(&b, (uint8_t)i); /* APIC ID, as CPUID reports */
        put32(&b, 1);         /* enabled */
    }
    put8(&b, 1); /* IOAPIC */
    put8(&b, 12);
    put8(&b, 0); /* IOAPIC ID: what KVM's in-kernel IOAPIC reports */
    put8(&b, 0);
    put32(&b, (uint32_t)VIO_IOAPIC_ADDR);
    put32(&b, 0); /* GSI base */
    put8(&b, 4);  /* local APIC NMI on LINT1 of every CPU */
    put8(&b, 6);
    put8(&b, 0xff);
    put16(&b, 0);
    put8(&b, 1);
    table_end(&b, madt);
    align8(&b);

    xsdt = table_begin(&b, "XSDT", 1);
    put64(&b, base + fadt);
    put64(&b, base + madt);
    table_end(&b, xsdt);

    if (b.overflow) {
        vio_err("internal error: ACPI tables exceed %d bytes", ACPI_AREA_SIZE);
        return 0;
    }
    t = base + xsdt;
    memcpy(area + rsdp + 24, &t, 8);
    area[rsdp + 8] = (uint8_t)(0 - vio_acpi_sum(area + rsdp, 20));
    area[rsdp + 32] = (uint8_t)(0 - vio_acpi_sum(area + rsdp, 36));
    memcpy(vio_vm_gpa(vm, base, b.len), area, b.len);
    return base + rsdp;
}
