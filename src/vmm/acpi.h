/* ACPI tables for the guest: RSDP, XSDT, a hardware-reduced FADT (power off
 * and reset through two I/O ports, no SCI, no PM timer), a MADT listing the
 * CPUs and the IOAPIC, and a DSDT (written with a tiny AML encoder) with the
 * \_S5 sleep state, the PCI host bridge and the RTC. Placed in the BIOS area
 * at 0xE0000. */
#ifndef VIO_VMM_ACPI_H
#define VIO_VMM_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/vm.h"

/* I/O ports of the hardware-reduced ACPI registers (see emul/acpi_pm.c). */
#define VIO_ACPI_SLEEP_CTL 0x600
#define VIO_ACPI_SLEEP_STS 0x601
#define VIO_ACPI_RESET     0x602
#define VIO_ACPI_RESET_VAL 0x1
#define VIO_ACPI_S5_TYPE   5

/* Write the tables into guest memory. Returns the RSDP's guest-physical
 * address, or 0 if they do not fit (a bug, logged). */
uint64_t vio_acpi_build(struct vio_vm *vm);

/* Byte sum of @len bytes, for table checksums and tests. */
uint8_t vio_acpi_sum(const void *p, size_t len);

#endif
