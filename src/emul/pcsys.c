/* i8042 reset, ACPI power registers and port 0x80 (see pcsys.h). */
#include "emul/pcsys.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "vmm/acpi.h"

#define I8042_DATA 0x60
#define I8042_CMD  0x64
#define I8042_RESET_CMD 0xfe
#define POST_PORT  0x80

#define SLP_EN       0x20
#define SLP_TYP(v)   (((v) >> 2) & 7)

struct vio_pcsys {
    struct vio_vm *vm;
};

static void i8042_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    (void)opaque;
    (void)off;
    /* Status: output buffer empty, input buffer empty, no data. */
    memset(data, 0, len);
}

static void i8042_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct vio_pcsys *p = opaque;

    (void)len;
    (void)off;
    vio_debug("i8042 command 0x%02x", *(const uint8_t *)data);
    /* Registered on the command port only; data-port writes are ignored. */
    if (*(const uint8_t *)data == I8042_RESET_CMD) {
        vio_info("guest reset through the keyboard controller");
        vio_vm_request_exit(p->vm, VIO_VM_REBOOT);
    }
}

static void acpi_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    (void)opaque;
    (void)off;
    memset(data, 0, len);
}

static void acpi_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct vio_pcsys *p = opaque;
    uint8_t v = *(const uint8_t *)data;

    (void)len;
    vio_debug("ACPI register 0x%llx written: 0x%02x",
              (unsigned long long)(VIO_ACPI_SLEEP_CTL + off), v);
    if (off == VIO_ACPI_SLEEP_CTL - VIO_ACPI_SLEEP_CTL && (v & SLP_EN)) {
        if (SLP_TYP(v) == VIO_ACPI_S5_TYPE) {
            vio_info("guest powered off (ACPI S5)");
            vio_vm_request_exit(p->vm, VIO_VM_POWEROFF);
        } else {
            vio_log_once(VIO_LOG_INFO, "guest asked for sleep type %u; not supported",
                         SLP_TYP(v));
        }
    } else if (off == VIO_ACPI_RESET - VIO_ACPI_SLEEP_CTL && v == VIO_ACPI_RESET_VAL) {
        vio_info("guest reset through the ACPI reset register");
        vio_vm_request_exit(p->vm, VIO_VM_REBOOT);
    }
}

static void sink_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    (void)opaque;
    (void)off;
    (void)data;
    (void)len;
}

static const struct vio_io_ops i8042_ops = {.read = i8042_read, .write = i8042_write};
static const struct vio_io_ops i8042_data_ops = {.read = i8042_read, .write = NULL};
static const struct vio_io_ops acpi_ops = {.read = acpi_read, .write = acpi_write};
static const struct vio_io_ops post_ops = {.read = acpi_read, .write = sink_write};

int vio_pcsys_create(struct vio_vm *vm, struct vio_pcsys **out)
{
    struct vio_pcsys *p = calloc(1, sizeof(*p));
    int ret;

    if (!p)
        return -ENOMEM;
    p->vm = vm;
    if ((ret = vio_bus_add(&vm->pio, I8042_DATA, 1, &i8042_data_ops, p, "i8042")) < 0 ||
        (ret = vio_bus_add(&vm->pio, I8042_CMD, 1, &i8042_ops, p, "i8042")) < 0 ||
        (ret = vio_bus_add(&vm->pio, VIO_ACPI_SLEEP_CTL, 3, &acpi_ops, p, "acpi-pm")) < 0 ||
        (ret = vio_bus_add(&vm->pio, POST_PORT, 1, &post_ops, p, "post")) < 0) {
        vio_pcsys_destroy(p);
        return ret;
    }
    *out = p;
    return 0;
}

void vio_pcsys_destroy(struct vio_pcsys *p)
{
    if (!p)
        return;
    vio_bus_remove(&p->vm->pio, I8042_DATA, p);
    vio_bus_remove(&p->vm->pio, I8042_CMD, p);
    vio_bus_remove(&p->vm->pio, VIO_ACPI_SLEEP_CTL, p);
    vio_bus_remove(&p->vm->pio, POST_PORT, p);
    free(p);
}
