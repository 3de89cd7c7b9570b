/* virtio-pci backend for devices served over vhost-user (see vpci_local.h):
 * vio run is the front-end. The guest's ring addresses, the ioeventfd and
 * the MSI-X eventfd go to the back-end, which then works on the rings in
 * shared guest memory and interrupts the guest without us. */
#include "vmm/vpci_local.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "vhost/vu_frontend.h"

#define BLK_CONFIG_SIZE   60 /* virtio_blk_config up to write_zeroes_may_unmap */
#define BLK_NUM_QUEUES_OFF 34
#define SCSI_CONFIG_SIZE  36 /* virtio_scsi_config */
#define SCSI_FIXED_QUEUES 2  /* control and event, before the request queues */

/* Ring and device bits we can carry; the rest (packed rings, IOMMU, dirty
 * logging) the transport does not implement. */
#define CARRIED_FEATURES                                                                           \
    (0xffffffull | VIO_BIT(VIO_F_INDIRECT_DESC) | VIO_BIT(VIO_F_EVENT_IDX) |                    \
     VIO_BIT(VIO_F_VERSION_1))

struct vio_vpci_vhost {
    struct vio_vm *vm;
    struct vio_vu_front *f;
    char socket[108];
    uint16_t nq;
    uint64_t features;
    uint32_t config_size;
    uint8_t config[256];
};

static int share_memory(struct vio_vpci_vhost *h)
{
    struct vio_vu_mem_region r[2];
    unsigned n = 0;

    r[n++] = (struct vio_vu_mem_region){h->vm->mem_fd, 0, 0, h->vm->low_size, h->vm->ram};
    if (h->vm->high_size)
        r[n++] = (struct vio_vu_mem_region){h->vm->mem_fd, h->vm->low_size, VIO_HIGH_RAM_START,
                                            h->vm->high_size, h->vm->ram + h->vm->low_size};
    return vio_vu_front_set_mem_table(h->f, r, n);
}

int vio_vpci_vhost_create(struct vio_vm *vm, const char *socket, uint32_t device_id,
                          unsigned queues, struct vio_vpci_vhost **out)
{
    struct vio_vpci_vhost *h = calloc(1, sizeof(*h));
    unsigned have;
    int ret;

    if (!h)
        return -ENOMEM;
    h->vm = vm;
    snprintf(h->socket, sizeof(h->socket), "%s", socket);
    if (device_id != VIO_ID_BLOCK && device_id != VIO_ID_SCSI) {
        vio_err("vhost-user %s: only block and SCSI devices are supported so far", socket);
        ret = -ENOTSUP;
        goto err;
    }
    ret = vio_vu_front_connect(socket, &h->f);
    if (ret < 0) {
        vio_err("vhost-user %s: cannot connect: %s (is vio serve running?)", socket,
                strerror(-ret));
        goto err;
    }
    have = vio_vu_front_num_queues(h->f);
    if (queues > have) {
        vio_err("vhost-user %s: %u queues asked for, the back-end has %u", socket, queues, have);
        ret = -EINVAL;
        goto err;
    }
    if (device_id == VIO_ID_SCSI && have <= SCSI_FIXED_QUEUES) {
        vio_err("vhost-user %s: the back-end has %u queues, not a SCSI controller's 3 or more",
                socket, have);
        ret = -EINVAL;
        goto err;
    }
    h->nq = (uint16_t)(queues ? queues : have);
    h->features = vio_vu_front_features(h->f) & CARRIED_FEATURES;
    h->config_size = device_id == VIO_ID_SCSI ? SCSI_CONFIG_SIZE : BLK_CONFIG_SIZE;
    ret = vio_vu_front_get_config(h->f, 0, h->config, h->config_size);
    if (ret < 0) {
        vio_err("vhost-user %s: cannot read the device configuration: %s", socket,
                strerror(-ret));
        goto err;
    }
    /* The guest sees as many queues as we expose, not what the back-end has. */
    if (device_id == VIO_ID_SCSI) {
        uint32_t nreq = vio_to_le32(h->nq - SCSI_FIXED_QUEUES);

        memcpy(&h->config[0], &nreq, 4);
    } else {
        uint16_t nq = vio_to_le16(h->nq);

        memcpy(&h->config[BLK_NUM_QUEUES_OFF], &nq, 2);
    }
    ret = share_memory(h);
    if (ret < 0) {
        vio_err("vhost-user %s: the back-end refused the guest memory: %s", socket,
                strerror(-ret));
        goto err;
    }
    *out = h;
    return 0;

err:
    if (h->f)
        vio_vu_front_close(h->f);
    free(h);
    return ret;
}

static uint64_t vh_features(void *be)
{
    return ((struct vio_vpci_vhost *)be)->features;
}

static uint16_t vh_num_queues(void *be)
{
    return ((struct vio_vpci_vhost *)be)->nq;
}

static uint16_t vh_max_queue_size(void *be)
{
    (void)be;
    return 1024;
}

static uint32_t vh_config_size(void *be)
{
    return ((struct vio_vpci_vhost *)be)->config_size;
}

static void vh_config_read(void *be, uint32_t off, void *buf, uint32_t len)
{
    struct vio_vpci_vhost *h = be;

    memcpy(buf, h->config + off, len);
}

static void vh_config_write(void *be, uint32_t off, const void *buf, uint32_t len)
{
    struct vio_vpci_vhost *h = be;

    if (vio_vu_front_set_config(h->f, off, buf, len) == 0)
        memcpy(h->config + off, buf, len);
}

static int vh_set_features(void *be, uint64_t f)
{
    return vio_vu_front_set_features(((struct vio_vpci_vhost *)be)->f, f);
}

static int vh_queue_start(void *be, unsigned qi, const struct vio_vpci_qcfg *c)
{
    struct vio_vpci_vhost *h = be;

    return vio_vu_front_queue_start(h->f, qi, c->size, c->desc, c->avail, c->used, 0, c->kick_fd,
                                    c->call_fd, c->err_fd);
}

static void vh_queue_stop(void *be, unsigned qi)
{
    uint16_t base;

    vio_vu_front_queue_stop(((struct vio_vpci_vhost *)be)->f, qi, &base);
}

static void vh_set_call_fd(void *be, unsigned qi, int fd)
{
    vio_vu_front_set_call_fd(((struct vio_vpci_vhost *)be)->f, qi, fd);
}

static void vh_reset(void *be)
{
    struct vio_vpci_vhost *h = be;

    /* A reset makes the back-end forget the memory table too. */
    if (vio_vu_front_reset(h->f) == 0)
        share_memory(h);
}

static json_t *vh_stats(void *be)
{
    struct vio_vpci_vhost *h = be;

    return json_pack("{s:s, s:b}", "vhost_user_socket", h->socket, "backend_connected",
                     !vio_vu_front_broken(h->f));
}

static void vh_destroy(void *be)
{
    struct vio_vpci_vhost *h = be;

    vio_vu_front_close(h->f);
    free(h);
}

const struct vio_vpci_backend_ops vio_vpci_vhost_ops = {
    .features = vh_features,
    .num_queues = vh_num_queues,
    .max_queue_size = vh_max_queue_size,
    .config_size = vh_config_size,
    .config_read = vh_config_read,
    .config_write = vh_config_write,
    .set_features = vh_set_features,
    .queue_start = vh_queue_start,
    .queue_stop = vh_queue_stop,
    .set_call_fd = vh_set_call_fd,
    .reset = vh_reset,
    .stats = vh_stats,
    .destroy = vh_destroy,
};
