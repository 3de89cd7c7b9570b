/* The small system devices of a PC that a Linux guest pokes: the i8042
 * keyboard controller (only its reset command, which reboots the VM), the
 * hardware-reduced ACPI sleep-control and reset registers (power off and
 * reset), and the POST/delay port 0x80. */
#ifndef VIO_EMUL_PCSYS_H
#define VIO_EMUL_PCSYS_H

#include "vmm/vm.h"

struct vio_pcsys;

int vio_pcsys_create(struct vio_vm *vm, struct vio_pcsys **out);
void vio_pcsys_destroy(struct vio_pcsys *p);

#endif
