/* vio run's virtual network (see run_net.h): parsing --net and --uplink,
 * the per-process switch with its thread and uplinks, and plugging the
 * NICs into each boot's VM. */
#include "run/run_net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/opts.h"
#include "core/workers.h"
#include "devices/net.h"
#include "emul/e1000.h"
#include "net/switch.h"
#include "net/uplink.h"
#include "virtio/virtio.h"
#include "vmm/vpci_local.h"

struct vio_run_net {
    const struct vio_run_net_opts *o;
    struct vio_workers thread; /* the switch's loop */
    bool thread_ok;
    struct vio_switch *sw;
    struct vio_uplink *uplinks[VIO_RUN_MAX_UPLINKS];
    unsigned nuplinks;
    struct vio_e1000 *e1000[VIO_RUN_MAX_NICS]; /* this boot's */
    unsigned ne1000;
};

/* ---- command line ---- */

bool vio_run_net_has_id(const struct vio_run_net_opts *o, const char *id)
{
    for (unsigned i = 0; i < o->nnics; i++) {
        if (strcmp(o->nics[i].id, id) == 0)
            return true;
    }
    return false;
}

int vio_run_net_parse_nic(struct vio_run_net_opts *o, const char *spec)
{
    struct vio_run_nic *nic;
    struct vio_opts kv;
    char err[200] = "", mac[18];
    const char *v;
    uint64_t queues, vlan;
    int ret;

    if (o->nnics == VIO_RUN_MAX_NICS) {
        vio_err("--net %s: at most %d NICs", spec, VIO_RUN_MAX_NICS);
        return -EINVAL;
    }
    nic = &o->nics[o->nnics];
    memset(nic, 0, sizeof(*nic));
    ret = vio_opts_parse(spec, &kv, err, sizeof(err));
    if (ret < 0)
        goto bad;
    v = vio_opts_get(&kv, "mac");
    if (!v || vio_net_parse_mac(v, nic->mac) < 0) {
        snprintf(err, sizeof(err), "mac=XX:XX:XX:XX:XX:XX is required (for example "
                 "mac=52:54:00:12:34:56)");
        goto bad_inval;
    }
    if ((nic->mac[0] & 1) || !memcmp(nic->mac, "\0\0\0\0\0\0", 6)) {
        snprintf(err, sizeof(err), "mac=%s: not a unicast address (the first byte must be "
                 "even, not all zeros)", v);
        goto bad_inval;
    }
    v = vio_opts_get(&kv, "model");
    if (!v || strcmp(v, "virtio") == 0) {
        nic->model = VIO_RUN_NIC_VIRTIO;
    } else if (strcmp(v, "e1000") == 0) {
        nic->model = VIO_RUN_NIC_E1000;
    } else {
        snprintf(err, sizeof(err), "model=%s: expected virtio or e1000", v);
        goto bad_inval;
    }
    if ((ret = vio_opts_size(&kv, "queues", 1, 1,
                             nic->model == VIO_RUN_NIC_E1000 ? 1 : VIO_NET_MAX_QUEUE_PAIRS,
                             &queues, err, sizeof(err))) < 0 ||
        (ret = vio_opts_size(&kv, "vlan", 0, 0, 4094, &vlan, err, sizeof(err))) < 0) {
        if (nic->model == VIO_RUN_NIC_E1000 && strstr(err, "queues"))
            snprintf(err + strlen(err), sizeof(err) - strlen(err),
                     " (the e1000 has one queue pair)");
        goto bad;
    }
    nic->queues = (unsigned)queues;
    nic->vlan = (uint16_t)vlan;
    v = vio_opts_get(&kv, "id");
    if (v && (!*v || strlen(v) >= sizeof(nic->id) || strpbrk(v, " /,"))) {
        snprintf(err, sizeof(err), "id=%s: 1-31 characters, no spaces, slashes or commas", v);
        goto bad_inval;
    }
    if (v)
        snprintf(nic->id, sizeof(nic->id), "%s", v);
    else
        snprintf(nic->id, sizeof(nic->id), "net%u", o->nnics);
    for (unsigned i = 0; i < o->nnics; i++) {
        if (strcmp(o->nics[i].id, nic->id) == 0) {
            snprintf(err, sizeof(err), "id=%s is used twice", nic->id);
            goto bad_inval;
        }
        if (o->nics[i].vlan == nic->vlan && !memcmp(o->nics[i].mac, nic->mac, 6)) {
            vio_net_format_mac(nic->mac, mac);
            snprintf(err, sizeof(err), "mac=%s is already %s's in VLAN %u", mac,
                     o->nics[i].id, nic->vlan);
            goto bad_inval;
        }
    }
    if ((ret = vio_opts_check_unused(&kv, err, sizeof(err))) < 0)
        goto bad;
    vio_opts_free(&kv);
    o->nnics++;
    return 0;

bad_inval:
    ret = -EINVAL;
bad:
    vio_err("--net %s: %s", spec, err);
    vio_opts_free(&kv);
    return ret < 0 ? -EINVAL : ret;
}

int vio_run_net_parse_uplink(struct vio_run_net_opts *o, const char *spec)
{
    if (o->nuplinks == VIO_RUN_MAX_UPLINKS) {
        vio_err("--uplink %s: at most %d uplinks", spec, VIO_RUN_MAX_UPLINKS);
        return -EINVAL;
    }
    /* The keys are checked by vio_uplink_create, before the first boot. */
    o->uplinks[o->nuplinks++] = spec;
    return 0;
}

/* ---- the switch and its uplinks ---- */

int vio_run_net_start(const struct vio_run_net_opts *o, struct vio_run_net **out)
{
    struct vio_run_net *n;
    int ret;

    *out = NULL;
    if (!o->nnics && !o->nuplinks)
        return 0;
    n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->o = o;
    ret = vio_workers_start(&n->thread, 1, "net");
    if (ret < 0) {
        vio_err("cannot start the network thread: %s", strerror(-ret));
        goto fail;
    }
    n->thread_ok = true;
    ret = vio_switch_create(&n->thread.loops[0], "vm", &n->sw);
    if (ret < 0) {
        vio_err("cannot create the switch: %s", strerror(-ret));
        goto fail;
    }
    for (unsigned i = 0; i < o->nuplinks; i++) {
        /* vio_uplink_create logs what is wrong with the spec. */
        ret = vio_uplink_create(n->sw, o->uplinks[i], &n->uplinks[i]);
        if (ret < 0) {
            if (ret != -EINVAL)
                vio_err("--uplink %s: could not be set up: %s", o->uplinks[i], strerror(-ret));
            goto fail;
        }
        n->nuplinks++;
    }
    *out = n;
    return 0;

fail:
    vio_run_net_stop(n);
    return ret;
}

void vio_run_net_stop(struct vio_run_net *n)
{
    if (!n)
        return;
    vio_run_net_detach(n);
    for (unsigned i = n->nuplinks; i-- > 0;)
        vio_uplink_destroy(n->uplinks[i]);
    n->nuplinks = 0;
    vio_switch_destroy(n->sw);
    if (n->thread_ok)
        vio_workers_stop(&n->thread);
    free(n);
}

/* ---- NICs ---- */

static int add_virtio(struct vio_run_net *n, const struct vio_run_nic *nic, struct vio_vm *vm,
                      struct vio_pci *pci, struct vio_loop *ctl, struct vio_vpci **out)
{
    struct vio_net_dev_opts no = {.id = nic->id, .vlan = nic->vlan,
                                  .queue_pairs = (uint16_t)nic->queues,
                                  .queue_size = VIO_NET_DEFAULT_QUEUE_SIZE};
    struct vio_dev *dev;
    int ret;

    memcpy(no.mac, nic->mac, VIO_ETH_ALEN);
    ret = vio_net_dev_create(&no, n->sw, &dev);
    if (ret < 0)
        return ret;
    /* Its queues are on the switch's loop already (vio_net_dev_create). */
    dev->mem = &vm->gmem;
    return vio_vpci_create(vm, pci, ctl, dev->id, "net", VIO_ID_NET, &vio_vpci_local_ops, dev,
                           out);
}

int vio_run_net_attach(struct vio_run_net *n, struct vio_vm *vm, struct vio_pci *pci,
                       struct vio_loop *ctl, struct vio_vpci **vdevs, unsigned *nvdevs,
                       unsigned max)
{
    for (unsigned i = 0; i < n->o->nnics; i++) {
        const struct vio_run_nic *nic = &n->o->nics[i];
        int ret;

        if (nic->model == VIO_RUN_NIC_E1000) {
            struct vio_e1000_opts eo = {.id = nic->id, .vlan = nic->vlan};

            memcpy(eo.mac, nic->mac, VIO_ETH_ALEN);
            ret = vio_e1000_create(&eo, vm, pci, n->sw, &n->e1000[n->ne1000]);
            if (ret == 0)
                n->ne1000++;
        } else if (*nvdevs == max) {
            ret = -ENOSPC;
        } else {
            ret = add_virtio(n, nic, vm, pci, ctl, &vdevs[*nvdevs]);
            if (ret == 0)
                (*nvdevs)++;
        }
        if (ret < 0) {
            vio_err("%s: NIC could not be set up: %s", nic->id, strerror(-ret));
            return ret;
        }
        {
            char mac[18];

            vio_net_format_mac(nic->mac, mac);
            vio_info("%s: %s NIC, MAC %s, VLAN %u", nic->id,
                     nic->model == VIO_RUN_NIC_E1000 ? "e1000 (Intel 82540EM)" : "virtio-net",
                     mac, nic->vlan);
        }
    }
    return 0;
}

void vio_run_net_detach(struct vio_run_net *n)
{
    if (!n)
        return;
    for (unsigned i = 0; i < n->ne1000; i++)
        vio_e1000_destroy(n->e1000[i]);
    n->ne1000 = 0;
}

static void port_json(struct vio_net_port *p, void *opaque)
{
    json_array_append_new(opaque, vio_net_port_stats(p));
}

json_t *vio_run_net_ports(struct vio_run_net *n)
{
    json_t *a = json_array();

    if (n)
        vio_switch_foreach(n->sw, port_json, a);
    return a;
}
