/* Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit entry:
 * loads a bzImage's protected-mode kernel at 1 MiB, or an uncompressed
 * vmlinux (ELF) at its physical addresses (no decompression: faster), the
 * initrd at the top of low RAM, the command line, and a boot_params page with
 * the e820 map; builds the identity page tables and GDT the entry needs. */
#ifndef VIO_VMM_BOOT_H
#define VIO_VMM_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/vcpu.h"
#include "vmm/vm.h"

struct vio_boot_opts {
    const char *kernel;  /* bzImage or vmlinux (ELF) path */
    const char *initrd;  /* NULL for none */
    const char *cmdline; /* may be NULL */
    uint64_t rsdp_addr;  /* ACPI RSDP, passed in boot_params */
};

/* Guest-physical layout of what the loader writes. */
#define VIO_BOOT_GDT        0x500ull
#define VIO_BOOT_PARAMS     0x7000ull
#define VIO_BOOT_STACK      0x8ff0ull
#define VIO_BOOT_PML4       0x9000ull
#define VIO_BOOT_CMDLINE    0x20000ull
#define VIO_BOOT_CMDLINE_MAX 0x10000ull
#define VIO_EBDA_START      0x9fc00ull
#define VIO_BIOS_START      0xe0000ull /* ACPI tables live here */
#define VIO_RESET_VECTOR    0xffff0ull /* F000:FFF0, where a reset stub lives */
#define VIO_KERNEL_START    0x100000ull

/* Check a bzImage held in memory: boot sector and "HdrS" magic, protocol
 * 2.12 or later with the 64-bit entry, sizes that add up. Returns 0 or
 * -ENOEXEC with @why describing the problem. Exposed for tests. */
int vio_boot_check_bzimage(const uint8_t *img, size_t len, char *why, size_t why_len);

/* Load everything into @vm's RAM and fill @regs for the boot vCPU.
 * Returns 0 or -errno with a logged message naming the file and problem. */
int vio_boot_load(struct vio_vm *vm, const struct vio_boot_opts *o, struct vio_boot_regs *regs);

#endif
