/* bzImage loader for the 64-bit boot protocol (see boot.h). Every size read
 * from the image is checked before it is used to copy anything. */
#include "vmm/boot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "vmm/acpi.h"

/* setup_header field offsets, from the start of the image / boot_params. */
#define HDR_SETUP_SECTS   0x1f1
#define HDR_BOOT_FLAG     0x1fe
#define HDR_JUMP          0x200
#define HDR_MAGIC         0x202
#define HDR_VERSION       0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS     0x211
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE  0x21c
#define HDR_HEAP_END_PTR  0x224
#define HDR_CMD_LINE_PTR  0x228
#define HDR_INITRD_MAX    0x22c
#define HDR_XLOADFLAGS    0x236
#define HDR_CMDLINE_SIZE  0x238
#define HDR_KERNEL_ALIGN  0x230
#define HDR_PREF_ADDRESS  0x258
#define HDR_INIT_SIZE     0x260

#define BP_ACPI_RSDP    0x070
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE   0x2d0
#define BP_E820_MAX     128

#define LOADED_HIGH   0x01
#define CAN_USE_HEAP  0x80
#define XLF_KERNEL_64 0x01

#define E820_RAM      1
#define E820_RESERVED 2

static uint16_t rd16(const uint8_t *p, size_t off)
{
    uint16_t v;

    memcpy(&v, p + off, 2);
    return v;
}

static uint32_t rd32(const uint8_t *p, size_t off)
{
    uint32_t v;

    memcpy(&v, p + off, 4);
    return v;
}

static void wr16(uint8_t *p, size_t off, uint16_t v)
{
    memcpy(p + off, &v, 2);
}

static void wr32(uint8_t *p, size_t off, uint32_t v)
{
    memcpy(p + off, &v, 4);
}

static void wr64(uint8_t *p, size_t off, uint64_t v)
{
    memcpy(p + off, &v, 8);
}

int vio_boot_check_bzimage(const uint8_t *img, size_t len, char *why, size_t why_len)
{
    size_t setup, hdr_end;
    uint16_t version;

    if (len < 0x270) {
        snprintf(why, why_len, "only %zu bytes, too short for a boot header", len);
        return -ENOEXEC;
    }
    if (rd16(img, HDR_BOOT_FLAG) != 0xaa55 || memcmp(img + HDR_MAGIC, "HdrS", 4) != 0) {
        snprintf(why, why_len, "not a bzImage (no boot sector signature or HdrS magic)");
        return -ENOEXEC;
    }
    version = rd16(img, HDR_VERSION);
    if (version < 0x020c) {
        snprintf(why, why_len, "boot protocol %u.%02u is older than 2.12", version >> 8,
                 version & 0xff);
        return -ENOEXEC;
    }
    if (!(rd16(img, HDR_XLOADFLAGS) & XLF_KERNEL_64) || !(img[HDR_LOADFLAGS] & LOADED_HIGH)) {
        snprintf(why, why_len, "the kernel has no 64-bit entry point");
        return -ENOEXEC;
    }
    hdr_end = 0x202 + img[0x201];
    setup = (img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4) + 1;
    setup *= 512;
    if (hdr_end > setup || setup >= len) {
        snprintf(why, why_len, "setup size %zu does not fit the %zu-byte file", setup, len);
        return -ENOEXEC;
    }
    if (rd32(img, HDR_INIT_SIZE) < len - setup) {
        snprintf(why, why_len, "init_size %u is smaller than the kernel itself",
                 rd32(img, HDR_INIT_SIZE));
        return -ENOEXEC;
    }
    return 0;
}

/* Map a whole file read-only: the loaders copy from the page cache straight
 * into guest RAM, one copy instead of two. Unmap with unmap_file. */
static int map_file(const char *path, uint8_t **buf, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;
    void *p;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        ret = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size == 0) {
        ret = -EINVAL;
        goto out;
    }
    *len = (size_t)st.st_size;
    p = mmap(NULL, *len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) {
        ret = -errno;
        goto out;
    }
    *buf = p;
out:
    close(fd);
    return ret;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Copy into guest RAM that was never touched: allocating its pages in one
 * go is much cheaper than a page fault per 4 KiB (tens of thousands for a
 * vmlinux), which matters most on emulated or nested hosts. */
static void copy_in(void *dst, const void *src, size_t n)
{
    uintptr_t a = (uintptr_t)dst & ~(uintptr_t)4095;

    madvise((void *)a, n + ((uintptr_t)dst - a), MADV_POPULATE_WRITE); /* best effort */
    memcpy(dst, src, n);
}

static void unmap_file(uint8_t *buf, size_t len)
{
    if (buf)
        munmap(buf, len);
}

static void add_e820(uint8_t *bp, uint64_t addr, uint64_t size, uint32_t type)
{
    uint8_t n = bp[BP_E820_ENTRIES];
    size_t off = BP_E820_TABLE + 20u * n;

    if (n >= BP_E820_MAX || size == 0)
        return;
    wr64(bp, off, addr);
    wr64(bp, off + 8, size);
    wr32(bp, off + 16, type);
    bp[BP_E820_ENTRIES] = (uint8_t)(n + 1);
}

static void build_page_tables(uint8_t *pt)
{
    /* PML4 -> one PDPT -> four page directories of 2 MiB pages: the first
     * 4 GiB identity-mapped. @pt is the host view of VIO_BOOT_PML4. */
    uint64_t pdpt = VIO_BOOT_PML4 + 0x1000, pd = VIO_BOOT_PML4 + 0x2000;

    memset(pt, 0, 6 * 0x1000);
    wr64(pt, 0, pdpt | 0x3);
    for (unsigned i = 0; i < 4; i++) {
        wr64(pt, 0x1000 + 8 * i, (pd + 0x1000ull * i) | 0x3);
        for (unsigned j = 0; j < 512; j++) {
            uint64_t addr = ((uint64_t)i << 30) | ((uint64_t)j << 21);

            wr64(pt, 0x2000 + 0x1000 * i + 8 * j, addr | 0x83); /* present, rw, 2 MiB */
        }
    }
}

/* The "BIOS" at the real-mode reset vector F000:FFF0. Linux on a
 * hardware-reduced ACPI platform reboots through EFI, and without EFI falls
 * back to jumping here in real mode; a PC BIOS would reset the machine, and
 * so does this: it writes the ACPI reset register. */
static void build_reset_stub(uint8_t *p)
{
    static const uint8_t stub[] = {
        0xba, (uint8_t)VIO_ACPI_RESET, (uint8_t)(VIO_ACPI_RESET >> 8), /* mov dx, reset port */
        0xb0, VIO_ACPI_RESET_VAL,                                      /* mov al, value */
        0xee,                                                          /* out dx, al */
        0xf4,                                                          /* 1: hlt */
        0xeb, 0xfd,                                                    /* jmp 1b */
    };

    memcpy(p, stub, sizeof(stub));
}

static void build_gdt(uint8_t *gdt)
{
    static const uint64_t entries[] = {
        0,
        0,
        0x00af9b000000ffffull, /* 0x10: 64-bit code */
        0x00cf93000000ffffull, /* 0x18: flat data */
        0x00008b0000000fffull, /* 0x20: TSS (for TR) */
    };

    memcpy(gdt, entries, sizeof(entries));
}

/* What the image-specific loaders tell the common part. */
struct kernel_info {
    uint64_t entry;      /* 64-bit entry point */
    uint64_t end;        /* end of the memory the kernel runs in */
    uint64_t size;       /* bytes loaded, for the log */
    uint32_t cmdline_max;
    uint64_t initrd_max; /* highest address + 1 the initrd may reach */
};

/* bzImage: the protected-mode part at 1 MiB, boot_params from its header. */
static int load_bzimage(struct vio_vm *vm, const char *path, const uint8_t *img, size_t len,
                        uint8_t *bp, struct kernel_info *k)
{
    size_t setup = ((size_t)(img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4) + 1) * 512;
    uint64_t start = VIO_KERNEL_START, pref, align = rd32(img, HDR_KERNEL_ALIGN);
    char why[160];
    int ret;

    ret = vio_boot_check_bzimage(img, len, why, sizeof(why));
    if (ret < 0) {
        vio_err("--kernel %s: %s", path, why);
        return ret;
    }
    /* The kernel runs from max(load address, pref_address), aligned, and
     * needs init_size bytes from there (boot.rst, init_size). */
    memcpy(&pref, img + HDR_PREF_ADDRESS, 8);
    if (pref > start && pref < vm->low_size)
        start = pref;
    if (vio_is_pow2(align))
        start = (start + align - 1) & ~(align - 1);
    k->end = start + rd32(img, HDR_INIT_SIZE);
    k->size = len - setup;
    if (k->end > vm->low_size) {
        vio_err("--kernel %s needs %u MiB to unpack; give the VM more --mem", path,
                (unsigned)(k->end >> 20) + 1);
        return -ENOMEM;
    }
    copy_in(vio_vm_gpa(vm, VIO_KERNEL_START, k->size), img + setup, k->size);
    memcpy(bp + HDR_SETUP_SECTS, img + HDR_SETUP_SECTS, 0x202 + img[0x201] - HDR_SETUP_SECTS);
    k->entry = VIO_KERNEL_START + 0x200;
    k->cmdline_max = rd32(img, HDR_CMDLINE_SIZE);
    k->initrd_max = (uint64_t)rd32(img, HDR_INITRD_MAX) + 1;
    return 0;
}

#define ELF_PT_LOAD 1

/* An uncompressed vmlinux (ELF64, x86-64): its segments at their physical
 * addresses and the 64-bit entry point, which skips the decompressor. */
static int load_elf(struct vio_vm *vm, const char *path, const uint8_t *img, size_t len,
                    uint8_t *bp, struct kernel_info *k)
{
    uint64_t phoff, entry;
    uint16_t phnum, phentsize, machine;
    const char *why = NULL;

    if (len < 64 || img[4] != 2 || img[5] != 1) {
        why = "not a 64-bit little-endian ELF file";
        goto bad;
    }
    memcpy(&machine, img + 18, 2);
    memcpy(&entry, img + 24, 8);
    memcpy(&phoff, img + 32, 8);
    memcpy(&phentsize, img + 54, 2);
    memcpy(&phnum, img + 56, 2);
    if (machine != 62) {
        why = "not an x86-64 ELF file";
        goto bad;
    }
    if (phentsize < 56 || phnum == 0 || phoff > len || (uint64_t)phnum * phentsize > len - phoff) {
        why = "its program headers lie outside the file";
        goto bad;
    }
    k->end = 0;
    k->size = 0;
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *ph = img + phoff + (size_t)i * phentsize;
        uint64_t off, paddr, filesz, memsz;
        uint32_t type;

        memcpy(&type, ph, 4);
        if (type != ELF_PT_LOAD)
            continue;
        memcpy(&off, ph + 8, 8);
        memcpy(&paddr, ph + 24, 8);
        memcpy(&filesz, ph + 32, 8);
        memcpy(&memsz, ph + 40, 8);
        if (filesz > memsz || off > len || filesz > len - off) {
            why = "a segment lies outside the file";
            goto bad;
        }
        if (paddr < VIO_KERNEL_START || paddr > vm->low_size || memsz > vm->low_size - paddr) {
            if (paddr >= VIO_KERNEL_START && paddr < (1ull << 40)) {
                vio_err("--kernel %s needs %llu MiB; give the VM more --mem", path,
                        (unsigned long long)((paddr + memsz) >> 20) + 1);
                return -ENOMEM;
            }
            why = "a segment's physical address is outside guest RAM";
            goto bad;
        }
        if (filesz)
            copy_in(vio_vm_gpa(vm, paddr, filesz), img + off, filesz);
        if (memsz > filesz)
            memset(vio_vm_gpa(vm, paddr + filesz, memsz - filesz), 0, memsz - filesz);
        k->end = VIO_MAX(k->end, paddr + memsz);
        k->size += filesz;
    }
    if (!k->end || entry < VIO_KERNEL_START || entry >= k->end) {
        why = "no loadable segment holds the entry point";
        goto bad;
    }
    /* The header fields the kernel reads when nothing else wrote them. */
    wr16(bp, HDR_BOOT_FLAG, 0xaa55);
    memcpy(bp + HDR_MAGIC, "HdrS", 4);
    wr16(bp, HDR_VERSION, 0x020c);
    wr32(bp, HDR_KERNEL_ALIGN, 0x1000000);
    wr32(bp, HDR_CMDLINE_SIZE, 2047);
    k->entry = entry;
    k->cmdline_max = 2047; /* x86's COMMAND_LINE_SIZE - 1 */
    k->initrd_max = 0x80000000ull;
    return 0;

bad:
    vio_err("--kernel %s: %s", path, why);
    return -ENOEXEC;
}

int vio_boot_load(struct vio_vm *vm, const struct vio_boot_opts *o, struct vio_boot_regs *regs)
{
    struct kernel_info k = {0};
    uint8_t *img = NULL, *bp;
    size_t len = 0;
    size_t cmd_len;
    uint64_t initrd_addr = 0, initrd_size = 0;
    int ret;

    ret = map_file(o->kernel, &img, &len);
    if (ret < 0) {
        vio_err("--kernel %s: cannot read: %s", o->kernel, strerror(-ret));
        return ret;
    }
    bp = vio_vm_gpa(vm, VIO_BOOT_PARAMS, 0x1000);
    memset(bp, 0, 0x1000);
    if (len >= 4 && memcmp(img, "\x7f" "ELF", 4) == 0)
        ret = load_elf(vm, o->kernel, img, len, bp, &k);
    else
        ret = load_bzimage(vm, o->kernel, img, len, bp, &k);
    if (ret < 0)
        goto out;
    bp[HDR_TYPE_OF_LOADER] = 0xff;
    bp[HDR_LOADFLAGS] |= CAN_USE_HEAP | LOADED_HIGH;
    wr16(bp, HDR_HEAP_END_PTR, 0xfe00);

    cmd_len = o->cmdline ? strlen(o->cmdline) : 0;
    if (cmd_len > k.cmdline_max || cmd_len >= VIO_BOOT_CMDLINE_MAX) {
        vio_err("--cmdline is %zu bytes; this kernel takes at most %u", cmd_len, k.cmdline_max);
        ret = -E2BIG;
        goto out;
    }
    memcpy(vio_vm_gpa(vm, VIO_BOOT_CMDLINE, cmd_len + 1), o->cmdline ? o->cmdline : "",
           cmd_len + 1);
    wr32(bp, HDR_CMD_LINE_PTR, (uint32_t)VIO_BOOT_CMDLINE);

    if (o->initrd) {
        uint8_t *ird;
        size_t ird_len;
        uint64_t top = VIO_MIN(k.initrd_max, vm->low_size);

        ret = map_file(o->initrd, &ird, &ird_len);
        if (ret < 0) {
            vio_err("--initrd %s: cannot read: %s", o->initrd, strerror(-ret));
            goto out;
        }
        initrd_size = ird_len;
        if (ird_len > top || ((top - ird_len) & ~0xfffull) < k.end) {
            vio_err("--initrd %s (%zu MiB) does not fit below %llu MiB next to the kernel; "
                    "give the VM more --mem",
                    o->initrd, ird_len >> 20, (unsigned long long)(top >> 20));
            unmap_file(ird, ird_len);
            ret = -ENOMEM;
            goto out;
        }
        initrd_addr = (top - ird_len) & ~0xfffull;
        copy_in(vio_vm_gpa(vm, initrd_addr, ird_len), ird, ird_len);
        unmap_file(ird, ird_len);
        wr32(bp, HDR_RAMDISK_IMAGE, (uint32_t)initrd_addr);
        wr32(bp, HDR_RAMDISK_SIZE, (uint32_t)initrd_size);
    }
    wr64(bp, BP_ACPI_RSDP, o->rsdp_addr);

    add_e820(bp, 0, VIO_EBDA_START, E820_RAM);
    add_e820(bp, VIO_BIOS_START, VIO_KERNEL_START - VIO_BIOS_START, E820_RESERVED);
    add_e820(bp, VIO_KERNEL_START, vm->low_size - VIO_KERNEL_START, E820_RAM);
    if (vm->high_size)
        add_e820(bp, VIO_HIGH_RAM_START, vm->high_size, E820_RAM);

    build_page_tables(vio_vm_gpa(vm, VIO_BOOT_PML4, 6 * 0x1000));
    build_gdt(vio_vm_gpa(vm, VIO_BOOT_GDT, 5 * 8));
    build_reset_stub(vio_vm_gpa(vm, VIO_RESET_VECTOR, 16));
    *regs = (struct vio_boot_regs){
        .rip = k.entry,
        .rsi = VIO_BOOT_PARAMS,
        .rsp = VIO_BOOT_STACK,
        .cr3 = VIO_BOOT_PML4,
        .gdt_base = VIO_BOOT_GDT,
        .gdt_limit = 5 * 8 - 1,
    };
    vio_info("kernel %s: %llu KiB, entry 0x%llx; initrd %llu KiB at 0x%llx", o->kernel,
             (unsigned long long)(k.size >> 10), (unsigned long long)k.entry,
             (unsigned long long)(initrd_size >> 10), (unsigned long long)initrd_addr);
    ret = 0;
out:
    unmap_file(img, len);
    return ret;
}
