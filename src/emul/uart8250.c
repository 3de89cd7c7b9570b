/* 16550A UART (see uart8250.h). Register semantics follow the National
 * Semiconductor PC16550D data sheet as far as Linux's 8250 driver uses
 * them: divisor latch, FIFO enable, interrupt identification with its
 * priorities, line status, and loopback with the modem-status mapping the
 * driver's probe checks. */
#include "emul/uart8250.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

#define UART_RX 0 /* RBR / THR / DLL */
#define UART_IER 1
#define UART_IIR 2 /* IIR (read) / FCR (write) */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI  0x01
#define IER_THRI 0x02
#define IER_MSI  0x08

#define IIR_NO_INT 0x01
#define IIR_MSI    0x00
#define IIR_THRI   0x02
#define IIR_RDI    0x04
#define IIR_FIFO   0xc0

#define LCR_DLAB 0x80
#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

#define RX_FIFO 256

struct vio_uart {
    struct vio_vm *vm;
    pthread_mutex_t lock;
    uint16_t port;
    unsigned irq;
    int out_fd;
    uint8_t dll, dlm, ier, fcr, lcr, mcr, lsr, msr, scr;
    bool thri_pending;
    bool irq_level;
    uint8_t rx[RX_FIFO];
    unsigned rx_head, rx_count;
    uint64_t rx_dropped;
};

static uint8_t modem_status(const struct vio_uart *u)
{
    if (u->mcr & MCR_LOOP) {
        uint8_t m = 0;

        if (u->mcr & MCR_RTS)
            m |= MSR_CTS;
        if (u->mcr & MCR_DTR)
            m |= MSR_DSR;
        if (u->mcr & MCR_OUT1)
            m |= MSR_RI;
        if (u->mcr & MCR_OUT2)
            m |= MSR_DCD;
        return m;
    }
    return MSR_DCD | MSR_DSR | MSR_CTS;
}

static uint8_t iir(const struct vio_uart *u)
{
    uint8_t fifo = (u->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

    if ((u->ier & IER_RDI) && u->rx_count)
        return IIR_RDI | fifo;
    if ((u->ier & IER_THRI) && u->thri_pending)
        return IIR_THRI | fifo;
    return IIR_NO_INT | fifo;
}

/* Lock held. */
static void update_irq(struct vio_uart *u)
{
    bool level = !(iir(u) & IIR_NO_INT) && (u->mcr & MCR_OUT2) && !(u->mcr & MCR_LOOP);

    if (level != u->irq_level) {
        u->irq_level = level;
        vio_irq_line(&u->vm->irq, u->irq, level);
    }
}

static void rx_push(struct vio_uart *u, uint8_t c)
{
    if (u->rx_count == RX_FIFO) {
        u->lsr |= LSR_OE;
        u->rx_dropped++;
        return;
    }
    u->rx[(u->rx_head + u->rx_count) % RX_FIFO] = c;
    u->rx_count++;
}

static void uart_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct vio_uart *u = opaque;
    uint8_t v = 0xff;

    pthread_mutex_lock(&u->lock);
    switch (off) {
    case UART_RX:
        if (u->lcr & LCR_DLAB) {
            v = u->dll;
        } else if (u->rx_count) {
            v = u->rx[u->rx_head];
            u->rx_head = (u->rx_head + 1) % RX_FIFO;
            u->rx_count--;
        } else {
            v = 0;
        }
        break;
    case UART_IER:
        v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
        break;
    case UART_IIR:
        v = iir(u);
        /* Reading IIR acknowledges a THR-empty interrupt. */
        if ((v & 0x0f) == IIR_THRI)
            u->thri_pending = false;
        break;
    case UART_LCR:
        v = u->lcr;
        break;
    case UART_MCR:
        v = u->mcr;
        break;
    case UART_LSR:
        v = (uint8_t)(u->lsr | LSR_THRE | LSR_TEMT | (u->rx_count ? LSR_DR : 0));
        u->lsr &= (uint8_t)~LSR_OE;
        break;
    case UART_MSR:
        v = modem_status(u);
        break;
    case UART_SCR:
        v = u->scr;
        break;
    }
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    memset(data, v, len);
}

static void uart_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct vio_uart *u = opaque;
    uint8_t v = *(const uint8_t *)data;

    (void)len;
    pthread_mutex_lock(&u->lock);
    switch (off) {
    case UART_RX:
        if (u->lcr & LCR_DLAB) {
            u->dll = v;
        } else if (u->mcr & MCR_LOOP) {
            rx_push(u, v);
            u->thri_pending = true;
        } else {
            /* Console output: a failed write must not stop the guest. */
            if (write(u->out_fd, &v, 1) < 0)
                vio_log_once(VIO_LOG_WARN, "serial console output failed: %s",
                             strerror(errno));
            u->thri_pending = true;
        }
        break;
    case UART_IER:
        if (u->lcr & LCR_DLAB) {
            u->dlm = v;
        } else {
            /* Enabling the THR-empty interrupt raises it at once: the
             * transmitter is always empty here. */
            if ((v & IER_THRI) && !(u->ier & IER_THRI))
                u->thri_pending = true;
            u->ier = v & 0x0f;
        }
        break;
    case UART_IIR:
        u->fcr = v & 0xc9;
        if (v & FCR_CLEAR_RX)
            u->rx_count = 0;
        break;
    case UART_LCR:
        u->lcr = v;
        break;
    case UART_MCR:
        u->mcr = v & 0x1f;
        break;
    case UART_SCR:
        u->scr = v;
        break;
    default:
        break; /* LSR and MSR are read-only */
    }
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
}

static const struct vio_io_ops uart_ops = {.read = uart_read, .write = uart_write};

int vio_uart_create(struct vio_vm *vm, uint16_t port, unsigned irq, int out_fd,
                    struct vio_uart **out)
{
    struct vio_uart *u = calloc(1, sizeof(*u));
    int ret;

    if (!u)
        return -ENOMEM;
    u->vm = vm;
    u->port = port;
    u->irq = irq;
    u->out_fd = out_fd;
    u->lsr = LSR_THRE | LSR_TEMT;
    u->dll = 12; /* 9600 baud until the driver programs it */
    pthread_mutex_init(&u->lock, NULL);
    ret = vio_bus_add(&vm->pio, port, 8, &uart_ops, u, "uart8250");
    if (ret < 0) {
        pthread_mutex_destroy(&u->lock);
        free(u);
        return ret;
    }
    *out = u;
    return 0;
}

size_t vio_uart_input(struct vio_uart *u, const uint8_t *buf, size_t len)
{
    size_t n;

    pthread_mutex_lock(&u->lock);
    n = VIO_MIN(len, (size_t)(RX_FIFO - u->rx_count));
    for (size_t i = 0; i < n; i++)
        rx_push(u, buf[i]);
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    return n;
}

void vio_uart_destroy(struct vio_uart *u)
{
    if (!u)
        return;
    vio_bus_remove(&u->vm->pio, u->port, u);
    pthread_mutex_destroy(&u->lock);
    free(u);
}
