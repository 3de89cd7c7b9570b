/* virtio-pci transport (see virtio_pci.h). BAR 0 holds, 4 KiB apart, the
 * common configuration, the ISR byte, the device configuration and the
 * notification area (one 4-byte slot per queue, each an ioeventfd); BAR 1
 * holds the MSI-X table and PBA. All guest writes to the common
 * configuration are checked against the state machine of VIRTIO 1.2, 3.1:
 * features only before FEATURES_OK, queue geometry only while the queue is
 * disabled, vectors only within the table. */
#include "vmm/virtio_pci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/log.h"
#include "virtio/virtio.h"

#define BAR0_SIZE    0x4000
#define COMMON_OFF   0x0000
#define ISR_OFF      0x1000
#define DEVICE_OFF   0x2000
#define NOTIFY_OFF   0x3000
#define NOTIFY_MULT  4
#define BAR1_SIZE    0x1000
#define PBA_OFF      0x800
#define MAX_QUEUES   ((PBA_OFF / VIO_MSIX_ENTRY_SIZE) - 1)

#define CAP_VNDR       0x09
#define CFG_COMMON     1
#define CFG_NOTIFY     2
#define CFG_ISR        3
#define CFG_DEVICE     4

#define ISR_QUEUE  0x1
#define ISR_CONFIG 0x2

/* Common configuration layout (VIRTIO 1.2, 4.1.4.3). */
enum {
    C_DFSELECT = 0,
    C_DF = 4,
    C_GFSELECT = 8,
    C_GF = 12,
    C_MSIX = 16,
    C_NUMQ = 18,
    C_STATUS = 20,
    C_CFGGEN = 21,
    C_QSELECT = 22,
    C_QSIZE = 24,
    C_QMSIX = 26,
    C_QENABLE = 28,
    C_QNOFF = 30,
    C_QDESC = 32,
    C_QAVAIL = 40,
    C_QUSED = 48,
    C_QNDATA = 56,
    C_QRESET = 58,
    C_END = 60,
};

struct vpci_queue {
    uint16_t size, vector;
    bool enabled, running;
    uint64_t desc, avail, used;
    int kick_fd;
};

struct vio_vpci {
    struct vio_vm *vm;
    struct vio_pci *pci;
    struct vio_pci_dev pdev;
    struct vio_msix msix;
    const struct vio_vpci_backend_ops *ops;
    void *be;
    char id[32];
    const char *type;
    pthread_mutex_t lock;
    uint64_t dev_features, drv_features;
    uint32_t dfsel, gfsel;
    uint8_t status, cfg_gen, isr;
    uint16_t cfg_vector, qsel, nq, max_qsize;
    struct vpci_queue *q;
    uint64_t bar0;
    bool bar0_mapped;
    int err_fd;
    struct vio_handler err_h;
    struct vio_loop *ctl;
    struct vio_ratelimit rl;
};

static int ioeventfd(struct vio_vpci *v, unsigned qi, bool assign)
{
    struct kvm_ioeventfd e = {
        .addr = v->bar0 + NOTIFY_OFF + (uint64_t)qi * NOTIFY_MULT,
        .len = 2,
        .fd = v->q[qi].kick_fd,
        .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
    };

    return ioctl(v->vm->vm_fd, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}

/* Lock held. The device broke or a queue could not start: tell the driver. */
static void needs_reset(struct vio_vpci *v)
{
    if (!(v->status & VIO_STATUS_DRIVER_OK) || (v->status & VIO_STATUS_NEEDS_RESET))
        return;
    v->status |= VIO_STATUS_NEEDS_RESET;
    v->isr |= ISR_CONFIG;
    vio_warn("%s: device needs reset", v->id);
    vio_msix_notify(&v->msix, v->cfg_vector);
}

/* Lock held. */
static void queue_start(struct vio_vpci *v, unsigned qi)
{
    struct vpci_queue *q = &v->q[qi];
    struct vio_vpci_qcfg c = {
        .size = q->size,
        .desc = q->desc,
        .avail = q->avail,
        .used = q->used,
        .kick_fd = q->kick_fd,
        .call_fd = vio_msix_fd(&v->msix, q->vector),
        .err_fd = v->err_fd,
    };
    int ret;

    if (q->running || !q->enabled)
        return;
    ret = v->ops->queue_start(v->be, qi, &c);
    if (ret < 0) {
        vio_warn("%s: queue %u did not start: %s", v->id, qi, strerror(-ret));
        needs_reset(v);
        return;
    }
    q->running = true;
}

/* Lock held. */
static void device_reset(struct vio_vpci *v)
{
    for (unsigned i = 0; i < v->nq; i++) {
        if (v->q[i].running)
            v->ops->queue_stop(v->be, i);
    }
    v->ops->reset(v->be);
    for (unsigned i = 0; i < v->nq; i++) {
        struct vpci_queue *q = &v->q[i];

        q->size = v->max_qsize;
        q->vector = VIO_MSIX_NO_VECTOR;
        q->enabled = q->running = false;
        q->desc = q->avail = q->used = 0;
        vio_eventfd_drain(q->kick_fd);
    }
    v->drv_features = 0;
    v->dfsel = v->gfsel = 0;
    v->status = 0;
    v->isr = 0;
    v->cfg_vector = VIO_MSIX_NO_VECTOR;
    v->qsel = 0;
    v->cfg_gen++;
    /* An error signalled by the session being reset is that session's. */
    vio_eventfd_drain(v->err_fd);
}

/* Lock held. */
static void write_status(struct vio_vpci *v, uint8_t val)
{
    uint8_t old = v->status;

    if (val == 0) {
        device_reset(v);
        return;
    }
    /* Bits only ever get added until a reset; NEEDS_RESET is ours to set. */
    val = (uint8_t)((val | old) & ~VIO_STATUS_NEEDS_RESET) | (old & VIO_STATUS_NEEDS_RESET);
    if ((val & VIO_STATUS_FEATURES_OK) && !(old & VIO_STATUS_FEATURES_OK)) {
        uint64_t extra = v->drv_features & ~v->dev_features;

        if (extra || !(v->drv_features & VIO_BIT(VIO_F_VERSION_1)) ||
            v->ops->set_features(v->be, v->drv_features) < 0) {
            if (vio_ratelimit_ok(&v->rl))
                vio_warn("%s: driver features 0x%llx rejected (offered 0x%llx)", v->id,
                         (unsigned long long)v->drv_features, (unsigned long long)v->dev_features);
            val &= (uint8_t)~VIO_STATUS_FEATURES_OK; /* the driver reads it back and gives up */
        }
    }
    if ((val & VIO_STATUS_DRIVER_OK) && !(val & VIO_STATUS_FEATURES_OK))
        val &= (uint8_t)~VIO_STATUS_DRIVER_OK;
    v->status = val;
    if ((val & VIO_STATUS_DRIVER_OK) && !(old & VIO_STATUS_DRIVER_OK)) {
        for (unsigned i = 0; i < v->nq; i++)
            queue_start(v, i);
    }
}

static uint16_t valid_vector(struct vio_vpci *v, uint16_t vec)
{
    return vec < v->msix.n ? vec : VIO_MSIX_NO_VECTOR;
}

/* The field holding common-config byte @off: its start and size. */
static bool common_field(unsigned off, unsigned len, unsigned *start, unsigned *size)
{
    static const uint8_t sizes[C_END] = {
        [C_DFSELECT] = 4, [C_DF] = 4,     [C_GFSELECT] = 4, [C_GF] = 4,      [C_MSIX] = 2,
        [C_NUMQ] = 2,     [C_STATUS] = 1, [C_CFGGEN] = 1,   [C_QSELECT] = 2, [C_QSIZE] = 2,
        [C_QMSIX] = 2,    [C_QENABLE] = 2, [C_QNOFF] = 2,   [C_QDESC] = 8,   [C_QAVAIL] = 8,
        [C_QUSED] = 8,    [C_QNDATA] = 2, [C_QRESET] = 2,
    };

    for (unsigned s = 0; s < C_END; s++) {
        if (!sizes[s] || off < s || off >= s + sizes[s])
            continue;
        /* Whole fields, or 32-bit halves of the 64-bit ones. */
        if ((off == s && len == sizes[s]) || (sizes[s] == 8 && len == 4 && (off - s) % 4 == 0)) {
            *start = s;
            *size = sizes[s];
            return true;
        }
        return false;
    }
    return false;
}

static uint64_t common_get(struct vio_vpci *v, unsigned field)
{
    struct vpci_queue *q = v->qsel < v->nq ? &v->q[v->qsel] : NULL;

    switch (field) {
    case C_DFSELECT:
        return v->dfsel;
    case C_DF:
        return v->dfsel < 2 ? (uint32_t)(v->dev_features >> (32 * v->dfsel)) : 0;
    case C_GFSELECT:
        return v->gfsel;
    case C_GF:
        return v->gfsel < 2 ? (uint32_t)(v->drv_features >> (32 * v->gfsel)) : 0;
    case C_MSIX:
        return v->cfg_vector;
    case C_NUMQ:
        return v->nq;
    case C_STATUS:
        return v->status;
    case C_CFGGEN:
        return v->cfg_gen;
    case C_QSELECT:
        return v->qsel;
    case C_QSIZE:
        return q ? q->size : 0;
    case C_QMSIX:
        return q ? q->vector : VIO_MSIX_NO_VECTOR;
    case C_QENABLE:
        return q ? q->enabled : 0;
    case C_QNOFF:
        return q ? v->qsel : 0;
    case C_QDESC:
        return q ? q->desc : 0;
    case C_QAVAIL:
        return q ? q->avail : 0;
    case C_QUSED:
        return q ? q->used : 0;
    default:
        return 0;
    }
}

static void common_set(struct vio_vpci *v, unsigned field, uint64_t val)
{
    struct vpci_queue *q = v->qsel < v->nq ? &v->q[v->qsel] : NULL;
    bool frozen = q && q->enabled; /* geometry of an enabled queue is fixed */

    switch (field) {
    case C_DFSELECT:
        v->dfsel = (uint32_t)val;
        break;
    case C_GFSELECT:
        v->gfsel = (uint32_t)val;
        break;
    case C_GF:
        if (v->gfsel < 2 && !(v->status & VIO_STATUS_FEATURES_OK)) {
            uint64_t mask = 0xffffffffull << (32 * v->gfsel);

            v->drv_features = (v->drv_features & ~mask) | ((val << (32 * v->gfsel)) & mask);
        }
        break;
    case C_MSIX:
        v->cfg_vector = valid_vector(v, (uint16_t)val);
        break;
    case C_STATUS:
        write_status(v, (uint8_t)val);
        break;
    case C_QSELECT:
        v->qsel = (uint16_t)val;
        break;
    case C_QSIZE:
        if (q && !frozen)
            q->size = (uint16_t)val; /* checked when the queue starts */
        break;
    case C_QMSIX:
        if (q) {
            q->vector = valid_vector(v, (uint16_t)val);
            if (q->running)
                v->ops->set_call_fd(v->be, v->qsel, vio_msix_fd(&v->msix, q->vector));
        }
        break;
    case C_QENABLE:
        if (q && val == 1 && !q->enabled) {
            q->enabled = true;
            if (v->status & VIO_STATUS_DRIVER_OK)
                queue_start(v, v->qsel);
        }
        break;
    case C_QDESC:
        if (q && !frozen)
            q->desc = val;
        break;
    case C_QAVAIL:
        if (q && !frozen)
            q->avail = val;
        break;
    case C_QUSED:
        if (q && !frozen)
            q->used = val;
        break;
    default:
        break; /* read-only */
    }
}

static void common_read(struct vio_vpci *v, unsigned off, void *data, unsigned len)
{
    unsigned start, size;
    uint64_t val;

    memset(data, 0, len);
    if (!common_field(off, len, &start, &size))
        return;
    val = common_get(v, start) >> (8 * (off - start));
    memcpy(data, &val, len);
}

static void common_write(struct vio_vpci *v, unsigned off, const void *data, unsigned len)
{
    unsigned start, size;
    uint64_t val = 0, cur;

    if (!common_field(off, len, &start, &size)) {
        if (vio_ratelimit_ok(&v->rl))
            vio_warn("%s: ignored a %u-byte write at common config offset %u", v->id, len, off);
        return;
    }
    memcpy(&val, data, len);
    if (size == 8 && len == 4) {
        cur = common_get(v, start);
        if (off == start)
            val = (cur & ~0xffffffffull) | val;
        else
            val = (cur & 0xffffffffull) | (val << 32);
    }
    common_set(v, start, val);
}

static void bar0_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct vio_vpci *v = opaque;

    memset(data, 0, len);
    pthread_mutex_lock(&v->lock);
    if (off < ISR_OFF) {
        common_read(v, (unsigned)off, data, len);
    } else if (off < DEVICE_OFF) {
        if (off == ISR_OFF) {
            *(uint8_t *)data = v->isr;
            v->isr = 0; /* read to clear */
        }
    } else if (off < NOTIFY_OFF) {
        uint32_t o = (uint32_t)(off - DEVICE_OFF), have = v->ops->config_size(v->be);

        if (o < have)
            v->ops->config_read(v->be, o, data, VIO_MIN(len, have - o));
    }
    pthread_mutex_unlock(&v->lock);
}

static void bar0_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct vio_vpci *v = opaque;

    if (off >= NOTIFY_OFF) {
        /* A notification the ioeventfd did not catch (another width). */
        uint64_t qi = (off - NOTIFY_OFF) / NOTIFY_MULT;

        if (qi < v->nq)
            vio_eventfd_signal(v->q[qi].kick_fd);
        return;
    }
    pthread_mutex_lock(&v->lock);
    if (off < ISR_OFF) {
        common_write(v, (unsigned)off, data, len);
    } else if (off >= DEVICE_OFF) {
        uint32_t o = (uint32_t)(off - DEVICE_OFF), have = v->ops->config_size(v->be);

        if (o < have && len <= have - o && v->ops->config_write)
            v->ops->config_write(v->be, o, data, len);
    }
    pthread_mutex_unlock(&v->lock);
}

static void bar1_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct vio_vpci *v = opaque;

    if (off < PBA_OFF)
        vio_msix_table_read(&v->msix, off, data, len);
    else
        vio_msix_pba_read(&v->msix, off - PBA_OFF, data, len);
}

static void bar1_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct vio_vpci *v = opaque;

    if (off < PBA_OFF)
        vio_msix_table_write(&v->msix, off, data, len);
}

static const struct vio_io_ops bar0_ops = {.read = bar0_read, .write = bar0_write};
static const struct vio_io_ops bar1_ops = {.read = bar1_read, .write = bar1_write};

static void bar_mapped(struct vio_pci_dev *d, unsigned bar, uint64_t addr, bool mapped)
{
    struct vio_vpci *v = d->opaque;

    if (bar != 0)
        return;
    if (v->bar0_mapped) {
        for (unsigned i = 0; i < v->nq; i++)
            ioeventfd(v, i, false);
    }
    v->bar0 = addr;
    v->bar0_mapped = mapped;
    if (mapped) {
        for (unsigned i = 0; i < v->nq; i++) {
            int ret = ioeventfd(v, i, true);

            if (ret < 0)
                vio_warn("%s: ioeventfd for queue %u at 0x%llx: %s (kicks will be slower)",
                         v->id, i, (unsigned long long)(addr + NOTIFY_OFF + i * NOTIFY_MULT),
                         strerror(-ret));
        }
    }
}

static void cfg_written(struct vio_pci_dev *d, unsigned off, unsigned len)
{
    struct vio_vpci *v = d->opaque;

    if (off < v->msix.cap + 4u && off + len > v->msix.cap)
        vio_msix_cfg_written(&v->msix);
}

static const struct vio_pci_dev_ops vpci_pci_ops = {.bar_mapped = bar_mapped,
                                                   .cfg_written = cfg_written};

static void err_handler(struct vio_handler *h, uint32_t events)
{
    struct vio_vpci *v = vio_container_of(h, struct vio_vpci, err_h);

    (void)events;
    if (!vio_eventfd_drain(h->fd))
        return; /* already consumed by a device reset */
    pthread_mutex_lock(&v->lock);
    needs_reset(v);
    pthread_mutex_unlock(&v->lock);
}

static void add_vcap(struct vio_vpci *v, uint8_t type, uint32_t off, uint32_t len, bool notify)
{
    uint8_t cap[20] = {CAP_VNDR, 0, (uint8_t)(notify ? 20 : 16), type, 0 /* BAR 0 */};
    uint32_t mult = NOTIFY_MULT;

    memcpy(&cap[8], &off, 4);
    memcpy(&cap[12], &len, 4);
    if (notify)
        memcpy(&cap[16], &mult, 4);
    vio_pci_dev_add_cap(&v->pdev, cap, cap[2]);
}

static uint32_t class_of(uint32_t device_id)
{
    switch (device_id) {
    case VIO_ID_NET:
        return 0x020000;
    case VIO_ID_BLOCK:
    case VIO_ID_SCSI:
        return 0x018000;
    case VIO_ID_CONSOLE:
        return 0x078000;
    case VIO_ID_GPU:
        return 0x038000;
    default:
        return 0xff0000;
    }
}

int vio_vpci_create(struct vio_vm *vm, struct vio_pci *pci, struct vio_loop *ctl,
                    const char *id, const char *type, uint32_t device_id,
                    const struct vio_vpci_backend_ops *ops, void *be, struct vio_vpci **out)
{
    struct vio_vpci *v = calloc(1, sizeof(*v));
    int ret;

    if (!v)
        return -ENOMEM;
    v->vm = vm;
    v->pci = pci;
    v->ops = ops;
    v->be = be;
    v->ctl = ctl;
    v->err_fd = -1;
    v->rl = (struct vio_ratelimit)VIO_RATELIMIT_INIT;
    snprintf(v->id, sizeof(v->id), "%s", id);
    v->type = type;
    pthread_mutex_init(&v->lock, NULL);
    v->nq = ops->num_queues(be);
    v->max_qsize = ops->max_queue_size(be);
    v->dev_features = ops->features(be);
    if (v->nq == 0 || v->nq > MAX_QUEUES || !vio_is_pow2(v->max_qsize)) {
        vio_err("%s: %u queues of up to %u entries is not something virtio-pci can carry",
                id, v->nq, v->max_qsize);
        ret = -EINVAL;
        goto err;
    }
    v->q = calloc(v->nq, sizeof(*v->q));
    if (!v->q) {
        ret = -ENOMEM;
        goto err;
    }
    for (unsigned i = 0; i < v->nq; i++) {
        v->q[i].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (v->q[i].kick_fd < 0) {
            ret = -errno;
            goto err;
        }
    }
    v->err_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (v->err_fd < 0) {
        ret = -errno;
        goto err;
    }
    ret = vio_loop_add(ctl, &v->err_h, v->err_fd, EPOLLIN, err_handler);
    if (ret < 0)
        goto err;
    ret = vio_pci_dev_init(pci, &v->pdev, id, 0x1af4, (uint16_t)(0x1040 + device_id),
                           class_of(device_id), 1, 0x1af4, (uint16_t)device_id,
                           &vpci_pci_ops, v);
    if (ret < 0) {
        vio_err("%s: no free PCI slot", id);
        goto err_loop;
    }
    add_vcap(v, CFG_COMMON, COMMON_OFF, C_END, false);
    add_vcap(v, CFG_NOTIFY, NOTIFY_OFF, v->nq * NOTIFY_MULT, true);
    add_vcap(v, CFG_ISR, ISR_OFF, 1, false);
    add_vcap(v, CFG_DEVICE, DEVICE_OFF, 0x1000, false);
    ret = vio_msix_init(&v->msix, vm, &v->pdev, v->nq + 1u, 1, 0, PBA_OFF);
    if (ret < 0)
        goto err_pci;
    device_reset(v);
    v->cfg_gen = 0;
    if ((ret = vio_pci_dev_add_bar(&v->pdev, 1, BAR1_SIZE, &bar1_ops, v)) < 0 ||
        (ret = vio_pci_dev_add_bar(&v->pdev, 0, BAR0_SIZE, &bar0_ops, v)) < 0)
        goto err_msix;
    *out = v;
    return 0;

err_msix:
    vio_pci_dev_remove(&v->pdev);
    vio_msix_destroy(&v->msix);
    goto err_loop;
err_pci:
    vio_pci_dev_remove(&v->pdev);
err_loop:
    vio_loop_del(ctl, &v->err_h);
err:
    if (v->q) {
        for (unsigned i = 0; i < v->nq; i++)
            if (v->q[i].kick_fd > 0)
                close(v->q[i].kick_fd);
        free(v->q);
    }
    if (v->err_fd >= 0)
        close(v->err_fd);
    pthread_mutex_destroy(&v->lock);
    free(v);
    ops->destroy(be);
    return ret;
}

void vio_vpci_destroy(struct vio_vpci *v)
{
    if (!v)
        return;
    pthread_mutex_lock(&v->lock);
    for (unsigned i = 0; i < v->nq; i++) {
        if (v->q[i].running)
            v->ops->queue_stop(v->be, i);
        v->q[i].running = false;
    }
    pthread_mutex_unlock(&v->lock);
    vio_pci_dev_remove(&v->pdev); /* unmaps the BARs, dropping the ioeventfds */
    vio_msix_destroy(&v->msix);
    vio_loop_del(v->ctl, &v->err_h);
    v->ops->destroy(v->be);
    for (unsigned i = 0; i < v->nq; i++)
        close(v->q[i].kick_fd);
    close(v->err_fd);
    free(v->q);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

const char *vio_vpci_id(const struct vio_vpci *v)
{
    return v->id;
}

json_t *vio_vpci_info(struct vio_vpci *v)
{
    json_t *r, *extra;
    char feat[24];

    pthread_mutex_lock(&v->lock);
    snprintf(feat, sizeof(feat), "0x%llx", (unsigned long long)v->drv_features);
    r = json_pack("{s:s, s:s, s:i, s:i, s:s, s:b}", "id", v->id, "type", v->type,
                  "pci_slot", (int)v->pdev.slot, "status", (int)v->status, "features", feat,
                  "needs_reset", (v->status & VIO_STATUS_NEEDS_RESET) != 0);
    pthread_mutex_unlock(&v->lock);
    if (v->ops->stats && (extra = v->ops->stats(v->be)))
        json_object_update_new(r, extra);
    return r;
}
