/* virtio-pci backend for in-process devices (see vpci_local.h): the ring
 * geometry the driver wrote goes into the device's vio_vq and the queue
 * starts on its I/O thread, kicked by the ioeventfd, interrupting through
 * the MSI-X vector's irqfd. */
#include "vmm/vpci_local.h"

#include <errno.h>

static uint64_t local_features(void *be)
{
    struct vio_dev *d = be;

    return d->ops->features(d) | VIO_BIT(VIO_F_VERSION_1) | VIO_BIT(VIO_F_INDIRECT_DESC) |
           VIO_BIT(VIO_F_EVENT_IDX);
}

static uint16_t local_num_queues(void *be)
{
    return ((struct vio_dev *)be)->num_queues;
}

static uint16_t local_max_queue_size(void *be)
{
    return ((struct vio_dev *)be)->max_queue_size;
}

static uint32_t local_config_size(void *be)
{
    struct vio_dev *d = be;

    return d->ops->config_size(d);
}

static void local_config_read(void *be, uint32_t off, void *buf, uint32_t len)
{
    struct vio_dev *d = be;

    d->ops->get_config(d, off, buf, len);
}

static void local_config_write(void *be, uint32_t off, const void *buf, uint32_t len)
{
    struct vio_dev *d = be;

    if (d->ops->set_config)
        d->ops->set_config(d, off, buf, len);
}

static int local_set_features(void *be, uint64_t f)
{
    ((struct vio_dev *)be)->features = f;
    return 0;
}

static int local_queue_start(void *be, unsigned qi, const struct vio_vpci_qcfg *c)
{
    struct vio_dev *d = be;
    struct vio_dev_queue *q = &d->queues[qi];

    q->vq.size = c->size;
    q->vq.desc_gpa = c->desc;
    q->vq.avail_gpa = c->avail;
    q->vq.used_gpa = c->used;
    q->vq.event_idx = d->features & VIO_BIT(VIO_F_EVENT_IDX);
    q->vq.indirect = d->features & VIO_BIT(VIO_F_INDIRECT_DESC);
    q->vq.last_avail_idx = 0;
    q->vq.call_fd = c->call_fd;
    q->vq.err_fd = c->err_fd;
    q->enabled = true;
    return vio_dev_queue_start(d, qi, c->kick_fd);
}

static void local_queue_stop(void *be, unsigned qi)
{
    struct vio_dev *d = be;
    struct vio_dev_queue *q = &d->queues[qi];

    vio_dev_queue_stop(d, qi);
    q->enabled = false;
    vio_vq_init(&q->vq, (uint16_t)qi, d->max_queue_size, q->vq.name);
}

static void local_set_call_fd(void *be, unsigned qi, int fd)
{
    vio_dev_queue_set_call_fd(be, qi, fd);
}

static void local_reset(void *be)
{
    struct vio_dev *d = be;

    for (unsigned i = 0; i < d->num_queues; i++)
        local_queue_stop(d, i);
    if (d->ops->reset)
        d->ops->reset(d);
    d->features = 0;
}

static json_t *local_stats(void *be)
{
    struct vio_dev *d = be;

    return d->ops->stats ? d->ops->stats(d) : NULL;
}

static void local_destroy(void *be)
{
    struct vio_dev *d = be;

    local_reset(d);
    d->ops->destroy(d);
}

const struct vio_vpci_backend_ops vio_vpci_local_ops = {
    .features = local_features,
    .num_queues = local_num_queues,
    .max_queue_size = local_max_queue_size,
    .config_size = local_config_size,
    .config_read = local_config_read,
    .config_write = local_config_write,
    .set_features = local_set_features,
    .queue_start = local_queue_start,
    .queue_stop = local_queue_stop,
    .set_call_fd = local_set_call_fd,
    .reset = local_reset,
    .stats = local_stats,
    .destroy = local_destroy,
};
