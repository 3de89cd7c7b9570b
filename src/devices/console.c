/* virtio-console (see console.h). Queue 0 receives (device to driver),
 * queue 1 transmits. Input is read into a small buffer on the receive
 * queue's worker and copied into the guest's buffers as they come; while
 * the buffer is full the input fd is not watched, so nothing is lost or
 * read ahead without bound. Output is written as it arrives. */
#include "devices/console.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/log.h"

#define RXQ 0
#define TXQ 1
#define INBUF 4096

struct vio_console {
    struct vio_dev dev;
    int in_fd, out_fd;
    struct vio_handler in_h;
    struct vio_loop *rx_loop; /* set while the input is watched */
    bool in_eof;
    uint8_t buf[INBUF];
    size_t len;
    vio_counter_t rx_bytes, tx_bytes;
};

static struct vio_console *to_con(struct vio_dev *d)
{
    return vio_container_of(d, struct vio_console, dev);
}

/* Worker of the receive queue: move buffered input into guest buffers. */
static void flush_rx(struct vio_console *c)
{
    struct vio_vq *vq = &c->dev.queues[RXQ].vq;
    bool pushed = false;

    while (c->len && c->dev.queues[RXQ].enabled) {
        struct vio_vq_elem *e = vio_vq_pop(vq);
        size_t n;

        if (!e) {
            /* Out of buffers: ask for a kick when the driver adds some
             * (re-checking for ones that raced in). */
            if (vio_vq_enable_notify(vq))
                continue;
            break;
        }
        n = vio_vq_elem_write(e, 0, c->buf, c->len);
        memmove(c->buf, c->buf + n, c->len - n);
        c->len -= n;
        vio_counter_add(&c->rx_bytes, n);
        vio_vq_push(vq, e, (uint32_t)n);
        pushed = true;
    }
    if (pushed)
        vio_dev_complete(&c->dev, vq);
}

static void watch_input(struct vio_console *c, bool on)
{
    struct vio_loop *l = c->dev.queues[RXQ].loop;

    if (on && !c->rx_loop && c->in_fd >= 0 && !c->in_eof) {
        if (vio_loop_add(l, &c->in_h, c->in_fd, EPOLLIN, c->in_h.fn) == 0)
            c->rx_loop = l;
    } else if (!on && c->rx_loop) {
        vio_loop_del(c->rx_loop, &c->in_h);
        c->rx_loop = NULL;
    }
}

static void input_handler(struct vio_handler *h, uint32_t events)
{
    struct vio_console *c = vio_container_of(h, struct vio_console, in_h);
    ssize_t n;

    (void)events;
    n = read(c->in_fd, c->buf + c->len, INBUF - c->len);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        c->in_eof = true; /* a closed input stays closed */
        watch_input(c, false);
    } else if (n > 0) {
        c->len += (size_t)n;
    }
    flush_rx(c);
    if (c->len == INBUF)
        watch_input(c, false); /* resume when the guest takes some */
}

static void tx_one(void *opaque, struct vio_vq_elem *e)
{
    struct vio_console *c = opaque;

    if (c->out_fd >= 0 && e->out_num) {
        /* Best effort, like a serial line: a failing output loses bytes,
         * not the guest's progress. */
        if (writev(c->out_fd, e->iov, e->out_num) < 0)
            vio_log_once(VIO_LOG_WARN, "%s: output failed: %s", c->dev.id, strerror(errno));
    }
    vio_counter_add(&c->tx_bytes, e->out_len);
    vio_vq_push(&c->dev.queues[TXQ].vq, e, 0);
}

static void con_kick(struct vio_dev *d, struct vio_vq *vq)
{
    struct vio_console *c = to_con(d);

    if (vq->index == TXQ) {
        vio_dev_drain(vq, tx_one, c);
        vio_dev_complete(d, vq);
        return;
    }
    /* New receive buffers. */
    flush_rx(c);
    if (c->len < INBUF)
        watch_input(c, true);
}

static int con_queue_start(struct vio_dev *d, struct vio_vq *vq)
{
    if (vq->index == RXQ)
        watch_input(to_con(d), true);
    return 0;
}

static void con_queue_stop(struct vio_dev *d, struct vio_vq *vq)
{
    if (vq->index == RXQ)
        watch_input(to_con(d), false);
}

static uint64_t con_features(struct vio_dev *d)
{
    (void)d;
    return 0;
}

static uint32_t con_config_size(struct vio_dev *d)
{
    (void)d;
    return 12; /* cols, rows, max_nr_ports, emerg_wr */
}

static void con_get_config(struct vio_dev *d, uint32_t off, void *buf, uint32_t len)
{
    uint8_t cfg[12] = {0};

    (void)d;
    cfg[4] = 1; /* max_nr_ports */
    memcpy(buf, cfg + off, len);
}

static json_t *con_stats(struct vio_dev *d)
{
    struct vio_console *c = to_con(d);

    return json_pack("{s:I, s:I}", "rx_bytes", (json_int_t)vio_counter_get(&c->rx_bytes),
                     "tx_bytes", (json_int_t)vio_counter_get(&c->tx_bytes));
}

static void con_destroy(struct vio_dev *d)
{
    struct vio_console *c = to_con(d);

    if (c->in_fd >= 0)
        close(c->in_fd);
    if (c->out_fd >= 0)
        close(c->out_fd);
    vio_dev_cleanup(d);
    free(c);
}

static const struct vio_dev_ops console_ops = {
    .type = "console",
    .device_id = VIO_ID_CONSOLE,
    .features = con_features,
    .config_size = con_config_size,
    .get_config = con_get_config,
    .queue_start = con_queue_start,
    .queue_kick = con_kick,
    .queue_stop = con_queue_stop,
    .stats = con_stats,
    .destroy = con_destroy,
};

int vio_console_create(const char *id, int in_fd, int out_fd, struct vio_dev **out)
{
    struct vio_console *c = calloc(1, sizeof(*c));
    int ret;

    if (!c)
        return -ENOMEM;
    c->in_fd = in_fd;
    c->out_fd = out_fd;
    c->in_h.fn = input_handler;
    ret = vio_dev_init(&c->dev, &console_ops, id, 2, 256, 64);
    if (ret < 0) {
        free(c);
        return ret;
    }
    *out = &c->dev;
    return 0;
}
