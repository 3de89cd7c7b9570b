/* CMOS real-time clock (MC146818 as found in PCs) at ports 0x70-0x71: the
 * time of day from the host clock in BCD, 24-hour mode, and the 128 bytes of
 * CMOS memory. No periodic or alarm interrupts. */
#ifndef VIO_EMUL_RTC_H
#define VIO_EMUL_RTC_H

#include "vmm/vm.h"

struct vio_rtc;

int vio_rtc_create(struct vio_vm *vm, struct vio_rtc **out);
void vio_rtc_destroy(struct vio_rtc *r);

#endif
