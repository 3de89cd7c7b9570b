/* 8250/16550A UART model, driven by the guest's stock serial driver: the
 * console (ttyS0) of vio run. Bytes the guest sends go to an output fd;
 * bytes given to vio_uart_input arrive in its receive FIFO. Interrupts on an
 * ISA line, gated by MCR.OUT2 as on a PC. Thread-safe. */
#ifndef VIO_EMUL_UART8250_H
#define VIO_EMUL_UART8250_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/vm.h"

#define VIO_COM1_PORT 0x3f8
#define VIO_COM1_IRQ  4

struct vio_uart;

/* Register a UART at @port (8 ports) on ISA @irq, writing output to
 * @out_fd (not owned). Returns 0 or -errno. */
int vio_uart_create(struct vio_vm *vm, uint16_t port, unsigned irq, int out_fd,
                    struct vio_uart **out);
/* Queue input bytes for the guest; returns how many fit in the FIFO. */
size_t vio_uart_input(struct vio_uart *u, const uint8_t *buf, size_t len);
void vio_uart_destroy(struct vio_uart *u);

#endif
