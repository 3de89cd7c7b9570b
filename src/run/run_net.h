/* vio run's virtual network: the --net NICs (virtio-net or an emulated
 * e1000) and --uplink specs. One switch per vio run process, on its own
 * thread ("net0"); the switch and its uplinks live as long as the process,
 * the NICs are plugged into each boot's VM and unplugged at its end.
 *
 *   --net mac=52:54:00:12:34:56[,model=virtio|e1000][,queues=N][,vlan=N][,id=ID]
 *   --uplink type=slirp|vxlan|tap,id=ID,...   (net/uplink.h, slirp.h, vxlan.h, tap.h)
 */
#ifndef VIO_RUN_RUN_NET_H
#define VIO_RUN_RUN_NET_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"
#include "net/net.h"
#include "vmm/pci.h"
#include "vmm/virtio_pci.h"
#include "vmm/vm.h"

#define VIO_RUN_MAX_NICS    8
#define VIO_RUN_MAX_UPLINKS 8

enum vio_run_nic_model { VIO_RUN_NIC_VIRTIO, VIO_RUN_NIC_E1000 };

struct vio_run_nic {
    enum vio_run_nic_model model;
    char id[32];
    uint8_t mac[VIO_ETH_ALEN];
    uint16_t vlan;
    unsigned queues; /* virtio-net queue pairs */
};

/* What the command line asked for (filled while parsing). */
struct vio_run_net_opts {
    struct vio_run_nic nics[VIO_RUN_MAX_NICS];
    unsigned nnics;
    const char *uplinks[VIO_RUN_MAX_UPLINKS]; /* specs, checked at start */
    unsigned nuplinks;
};

/* Add one --net / --uplink. A bad spec is logged (naming it) and gives
 * -EINVAL. */
int vio_run_net_parse_nic(struct vio_run_net_opts *o, const char *spec);
int vio_run_net_parse_uplink(struct vio_run_net_opts *o, const char *spec);
/* True if a NIC is called @id (device ids are shared with --blk etc.). */
bool vio_run_net_has_id(const struct vio_run_net_opts *o, const char *id);

struct vio_run_net;

/* Start the switch thread, the switch and the uplinks (before the first
 * boot). *out is NULL when the command line has no --net and no --uplink.
 * Returns 0, -EINVAL for an uplink spec that does not parse (logged), or
 * another -errno (logged). */
int vio_run_net_start(const struct vio_run_net_opts *o, struct vio_run_net **out);
/* Destroy the uplinks and the switch, stop the thread (NULL is fine). */
void vio_run_net_stop(struct vio_run_net *n);

/* One boot: put the NICs on @pci. virtio-net NICs become virtio-pci devices
 * appended to @vdevs (at most @max in all; the caller destroys them with
 * its other devices, before vio_run_net_detach); e1000 NICs stay here.
 * Returns 0 or -errno (logged). */
int vio_run_net_attach(struct vio_run_net *n, struct vio_vm *vm, struct vio_pci *pci,
                       struct vio_loop *ctl, struct vio_vpci **vdevs, unsigned *nvdevs,
                       unsigned max);
/* End of a boot: remove the e1000 NICs (vCPUs stopped, before the PCI bus
 * is destroyed). */
void vio_run_net_detach(struct vio_run_net *n);

/* Identity, link and counters of every switch port (control API). */
json_t *vio_run_net_ports(struct vio_run_net *n);

#endif
