/* `vio serve`: the device server. Parses the command line into devices,
 * puts each behind a vhost-user socket, spreads their queues over worker
 * threads, answers JSON-RPC on the control socket, and shuts down cleanly
 * on SIGINT/SIGTERM (in-flight requests are completed first). Network
 * ports (--net) and uplinks (--uplink) share one switch whose data path
 * runs on its own thread; ports can be added and removed at run time. */
#include "serve/serve.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "backends/block/bdev.h"
#include "core/log.h"
#include "core/opts.h"
#include "core/rpc.h"
#include "core/workers.h"
#include "devices/blk.h"
#include "devices/net.h"
#include "devices/scsi.h"
#include "devices/scsi_ctl.h"
#include "net/switch.h"
#include "net/uplink.h"
#include "vhost/vu_backend.h"

#define SERVE_MAX_DEVICES 64
#define SERVE_MAX_WORKERS 64
#define SERVE_MAX_UPLINKS 16

struct serve_dev {
    struct vio_dev *dev;
    struct vio_vu_backend *vu;
};

struct serve {
    struct vio_loop loop;
    struct vio_workers workers;
    struct vio_workers switch_thread; /* one loop: the switch's data path */
    struct vio_switch *sw;
    struct vio_uplink *uplinks[SERVE_MAX_UPLINKS];
    unsigned nuplinks;
    struct serve_dev devs[SERVE_MAX_DEVICES];
    unsigned ndevs;
    struct vio_rpc_server *rpc;
    int sigfd;
    struct vio_handler sig_h;
};

/* A device as declared on the command line, before anything is opened. */
struct blk_spec {
    char *spec;
    char id[32];
    char socket[108];
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vio serve [options] --blk SPEC [--blk SPEC ...]\n"
            "\n"
            "Serve virtio devices over vhost-user to QEMU, Cloud Hypervisor or vio run.\n"
            "\n"
            "  --blk id=ID,socket=PATH,path=FILE[,queues=N][,readonly][,direct]\n"
            "        [,blksize=N][,queue-size=N][,serial=S]\n"
            "  --blk id=ID,socket=PATH,backend=null[,size=1G][,queues=N]\n"
            "        a virtio-blk device on a file or block device (io_uring), or on the\n"
            "        null backend for benchmarks; ,, in a value stands for a comma\n"
            "  --scsi id=ID,socket=PATH[,queues=N][,queue-size=N]\n"
            "        a virtio-scsi controller (vhost-user-scsi) with the LUNs below\n"
            "  --lun hba=ID,path=P[,target=N][,lun=N][,readonly][,direct][,blksize=N]\n"
            "        [,serial=S][,vendor=S][,product=S][,wwn=0x6...]\n"
            "        a disk LUN on controller ID; P is a file or block device,\n"
            "        nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH or\n"
            "        iscsi://HOST[:PORT]/IQN/LUN\n"
            "  --net id=ID,socket=PATH,mac=MAC[,vlan=N][,queues=N][,queue-size=N]\n"
            "        a virtio-net port on the switch: sends only from MAC, receives its\n"
            "        own unicast, broadcast and multicast, only within its VLAN\n"
            "  --uplink type=slirp,id=ID[,...] | type=vxlan,id=ID,vni=N,local=IP,remote=IP\n"
            "        | type=tap,id=ID,ifname=NAME | type=vhost-user,id=ID,socket=PATH\n"
            "        connect the switch to the outside (user-mode NAT, a VXLAN segment,\n"
            "        a TAP interface, a port of another switch over vhost-user)\n"
            "  --ctl PATH       JSON-RPC control socket (see `vio ctl`)\n"
            "  --workers N      worker threads for queues (default: one per CPU,\n"
            "                   at most one per queue)\n"
            "  --poll-us N      busy-poll queues and completions for N microseconds\n"
            "                   after the last event before sleeping (default 0):\n"
            "                   lower latency for CPU time\n"
            "  --log-level L    error, warn, info (default) or debug\n"
            "  -h, --help       this text\n");
}

static bool valid_id(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= 32)
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    }
    return true;
}

/* Build one virtio-blk device from its --blk spec. */
static int make_blk(const char *spec, struct vio_dev **out, char *socket, size_t socket_len)
{
    struct vio_opts o;
    struct vio_bdev_opts bo = {0};
    struct vio_blk_opts blo = {0};
    struct vio_bdev *bdev;
    const char *id, *sock, *backend;
    uint64_t queues, qsize, blksize, size;
    char err[200] = "";
    int ret;

    ret = vio_opts_parse(spec, &o, err, sizeof(err));
    if (ret < 0)
        goto bad;
    id = vio_opts_get(&o, "id");
    sock = vio_opts_get(&o, "socket");
    backend = vio_opts_get(&o, "backend");
    bo.path = vio_opts_get(&o, "path");
    blo.serial = vio_opts_get(&o, "serial");
    if (!id || !valid_id(id)) {
        snprintf(err, sizeof(err), "id= is required: 1-31 letters, digits, '-', '_' or '.'");
        goto bad_inval;
    }
    if (!sock || !*sock || strlen(sock) >= socket_len) {
        snprintf(err, sizeof(err), "socket=PATH is required (under %zu bytes)", socket_len);
        goto bad_inval;
    }
    if (backend && strcmp(backend, "null") != 0 && strcmp(backend, "file") != 0) {
        snprintf(err, sizeof(err), "backend=%s: expected file or null", backend);
        goto bad_inval;
    }
    bo.null = backend && strcmp(backend, "null") == 0;
    if (bo.null && bo.path) {
        snprintf(err, sizeof(err), "backend=null takes no path");
        goto bad_inval;
    }
    if (!bo.null && (!bo.path || !*bo.path)) {
        snprintf(err, sizeof(err), "path=FILE is required (or backend=null)");
        goto bad_inval;
    }
    if ((ret = vio_opts_size(&o, "queues", 1, 1, VIO_BLK_MAX_QUEUES, &queues, err,
                             sizeof(err))) < 0 ||
        (ret = vio_opts_size(&o, "queue-size", VIO_BLK_DEFAULT_QUEUE_SIZE, 1, 32768, &qsize, err,
                             sizeof(err))) < 0 ||
        (ret = vio_opts_size(&o, "blksize", 0, 0, 65536, &blksize, err, sizeof(err))) < 0 ||
        (ret = vio_opts_bool(&o, "readonly", false, &bo.readonly, err, sizeof(err))) < 0 ||
        (ret = vio_opts_bool(&o, "direct", false, &bo.direct, err, sizeof(err))) < 0)
        goto bad;
    if (bo.null) {
        if ((ret = vio_opts_size(&o, "size", 1ull << 30, 4096, 1ull << 50, &size, err,
                                 sizeof(err))) < 0)
            goto bad;
        bo.null_size = size;
    }
    if (blksize && (!vio_is_pow2(blksize) || blksize < 512)) {
        snprintf(err, sizeof(err), "blksize=%llu: must be a power of two >= 512",
                 (unsigned long long)blksize);
        goto bad_inval;
    }
    if (!vio_is_pow2(qsize)) {
        snprintf(err, sizeof(err), "queue-size=%llu: must be a power of two",
                 (unsigned long long)qsize);
        goto bad_inval;
    }
    if ((ret = vio_opts_check_unused(&o, err, sizeof(err))) < 0)
        goto bad;
    bo.block_size = (uint32_t)blksize;
    ret = vio_bdev_open(&bo, &bdev);
    if (ret < 0)
        goto out;
    blo.id = id;
    blo.num_queues = (uint16_t)queues;
    blo.queue_size = (uint16_t)qsize;
    ret = vio_blk_create(&blo, bdev, out);
    if (ret < 0) {
        bdev->ops->close(bdev);
        goto out;
    }
    snprintf(socket, socket_len, "%s", sock);
    goto out;

bad_inval:
    ret = -EINVAL;
bad:
    vio_err("--blk %s: %s", spec, err);
out:
    vio_opts_free(&o);
    return ret;
}

/* Build one virtio-scsi controller from its --scsi spec. */
static int make_scsi(const char *spec, struct vio_dev **out, char *socket, size_t socket_len)
{
    struct vio_opts o;
    struct vio_scsi_hba_opts ho = {0};
    const char *id, *sock;
    uint64_t queues, qsize;
    char err[200] = "";
    int ret;

    ret = vio_opts_parse(spec, &o, err, sizeof(err));
    if (ret < 0)
        goto bad;
    id = vio_opts_get(&o, "id");
    sock = vio_opts_get(&o, "socket");
    if (!id || !valid_id(id)) {
        snprintf(err, sizeof(err), "id= is required: 1-31 letters, digits, '-', '_' or '.'");
        goto bad_inval;
    }
    if (!sock || !*sock || strlen(sock) >= socket_len) {
        snprintf(err, sizeof(err), "socket=PATH is required (under %zu bytes)", socket_len);
        goto bad_inval;
    }
    if ((ret = vio_opts_size(&o, "queues", 1, 1, VIO_SCSI_MAX_QUEUES, &queues, err,
                             sizeof(err))) < 0 ||
        (ret = vio_opts_size(&o, "queue-size", VIO_SCSI_DEFAULT_QUEUE_SIZE, 1, 32768, &qsize,
                             err, sizeof(err))) < 0)
        goto bad;
    if (!vio_is_pow2(qsize)) {
        snprintf(err, sizeof(err), "queue-size=%llu: must be a power of two",
                 (unsigned long long)qsize);
        goto bad_inval;
    }
    if ((ret = vio_opts_check_unused(&o, err, sizeof(err))) < 0)
        goto bad;
    ho.id = id;
    ho.num_queues = (uint16_t)queues;
    ho.queue_size = (uint16_t)qsize;
    ret = vio_scsi_hba_create(&ho, out);
    if (ret == 0)
        snprintf(socket, socket_len, "%s", sock);
    goto out;

bad_inval:
    ret = -EINVAL;
bad:
    vio_err("--scsi %s: %s", spec, err);
out:
    vio_opts_free(&o);
    return ret;
}

static struct serve_dev *find_dev(struct serve *s, const char *id);

/* The SCSI controller called @id (vio_scsi_find_fn for scsi_ctl.c). */
static struct vio_dev *find_hba(void *opaque, const char *id)
{
    struct serve_dev *sd = find_dev(opaque, id);

    return sd && vio_is_scsi_hba(sd->dev) ? sd->dev : NULL;
}

/* Build one virtio-net port from its --net spec (or net.port.add). */
static int make_net(const char *spec, struct vio_switch *sw, struct vio_dev **out, char *socket,
                    size_t socket_len, char *err, size_t errlen)
{
    struct vio_opts o;
    struct vio_net_dev_opts no = {0};
    const char *id, *sock, *mac;
    uint64_t queues, qsize, vlan;
    int ret;

    err[0] = '\0';
    ret = vio_opts_parse(spec, &o, err, errlen);
    if (ret < 0)
        return ret;
    id = vio_opts_get(&o, "id");
    sock = vio_opts_get(&o, "socket");
    mac = vio_opts_get(&o, "mac");
    if (!id || !valid_id(id)) {
        snprintf(err, errlen, "id= is required: 1-31 letters, digits, '-', '_' or '.'");
        goto bad_inval;
    }
    if (!sock || !*sock || strlen(sock) >= socket_len) {
        snprintf(err, errlen, "socket=PATH is required (under %zu bytes)", socket_len);
        goto bad_inval;
    }
    if (!mac || vio_net_parse_mac(mac, no.mac) < 0 || (no.mac[0] & 1) ||
        memcmp(no.mac, "\0\0\0\0\0\0", 6) == 0) {
        snprintf(err, errlen, "mac=%s: expected a unicast address like 52:54:00:12:34:56",
                 mac ? mac : "(missing)");
        goto bad_inval;
    }
    if ((ret = vio_opts_size(&o, "queues", 1, 1, VIO_NET_MAX_QUEUE_PAIRS, &queues, err,
                             errlen)) < 0 ||
        (ret = vio_opts_size(&o, "queue-size", VIO_NET_DEFAULT_QUEUE_SIZE, 64, 32768, &qsize, err,
                             errlen)) < 0 ||
        (ret = vio_opts_size(&o, "vlan", 0, 0, 4094, &vlan, err, errlen)) < 0)
        goto out;
    if (!vio_is_pow2(qsize)) {
        snprintf(err, errlen, "queue-size=%llu: must be a power of two",
                 (unsigned long long)qsize);
        goto bad_inval;
    }
    if ((ret = vio_opts_check_unused(&o, err, errlen)) < 0)
        goto out;
    no.id = id;
    no.queue_pairs = (uint16_t)queues;
    no.queue_size = (uint16_t)qsize;
    no.vlan = (uint16_t)vlan;
    ret = vio_net_dev_create(&no, sw, out);
    if (ret == -EEXIST)
        snprintf(err, errlen, "a port with id %s or MAC %s in VLAN %u exists", id, mac,
                 (unsigned)vlan);
    else if (ret < 0)
        snprintf(err, errlen, "cannot create the port: %s", strerror(-ret));
    else
        snprintf(socket, socket_len, "%s", sock);
    goto out;

bad_inval:
    ret = -EINVAL;
out:
    vio_opts_free(&o);
    return ret;
}

static struct serve_dev *find_dev(struct serve *s, const char *id)
{
    for (unsigned i = 0; i < s->ndevs; i++) {
        if (strcmp(s->devs[i].dev->id, id) == 0)
            return &s->devs[i];
    }
    return NULL;
}

static json_t *device_summary(struct serve_dev *sd)
{
    json_t *info = vio_vu_backend_info(sd->vu);

    json_object_set_new(info, "id", json_string(sd->dev->id));
    json_object_set_new(info, "type", json_string(sd->dev->ops->type));
    json_object_set_new(info, "num_queues", json_integer(sd->dev->num_queues));
    return info;
}

static json_t *rpc_device_list(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct serve *s = opaque;
    json_t *list = json_array();

    (void)params;
    (void)err;
    for (unsigned i = 0; i < s->ndevs; i++)
        json_array_append_new(list, device_summary(&s->devs[i]));
    return list;
}

static json_t *device_stats(struct serve_dev *sd)
{
    json_t *r = device_summary(sd);

    json_object_update_new(r, sd->dev->ops->stats(sd->dev));
    return r;
}

static json_t *rpc_device_stats(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct serve *s = opaque;
    json_t *id = params ? json_object_get(params, "id") : NULL;
    json_t *list;

    if (params && !json_is_object(params))
        return vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS, "params must be {\"id\": \"...\"}");
    if (id) {
        struct serve_dev *sd;

        if (!json_is_string(id))
            return vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS, "id must be a string");
        sd = find_dev(s, json_string_value(id));
        if (!sd)
            return vio_rpc_fail(err, VIO_RPC_NOT_FOUND, "no device '%s'", json_string_value(id));
        return device_stats(sd);
    }
    list = json_array();
    for (unsigned i = 0; i < s->ndevs; i++)
        json_array_append_new(list, device_stats(&s->devs[i]));
    return list;
}

static json_t *rpc_server_info(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct serve *s = opaque;

    (void)params;
    (void)err;
    return json_pack("{s:s, s:s, s:i, s:i, s:i}", "program", "vio serve", "version", VIO_VERSION,
                     "pid", (int)getpid(), "workers", (int)s->workers.n, "devices",
                     (int)s->ndevs);
}

static void add_port_stats(struct vio_net_port *p, void *opaque)
{
    json_array_append_new(opaque, vio_net_port_stats(p));
}

static json_t *rpc_net_ports(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct serve *s = opaque;
    json_t *list = json_array();

    (void)params;
    (void)err;
    if (s->sw)
        vio_switch_foreach(s->sw, add_port_stats, list);
    return list;
}

static bool socket_in_use(struct serve *s, const char *path)
{
    for (unsigned i = 0; i < s->ndevs; i++) {
        json_t *info = vio_vu_backend_info(s->devs[i].vu);
        bool same = strcmp(json_string_value(json_object_get(info, "socket")), path) == 0;

        json_decref(info);
        if (same)
            return true;
    }
    return false;
}

static json_t *rpc_net_port_add(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct serve *s = opaque;
    json_t *spec = params ? json_object_get(params, "spec") : NULL;
    struct serve_dev *sd;
    char socket[108], msg[200];
    struct vio_dev *dev;
    int ret;

    if (!s->sw)
        return vio_rpc_fail(err, VIO_RPC_INVALID_REQUEST,
                            "this server has no switch (start it with --net or --uplink)");
    if (!json_is_object(params) || !json_is_string(spec) || json_object_size(params) != 1)
        return vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS,
                            "params must be {\"spec\": \"id=ID,socket=PATH,mac=MAC[,vlan=N]"
                            "[,queues=N]\"}");
    if (s->ndevs == SERVE_MAX_DEVICES)
        return vio_rpc_fail(err, VIO_RPC_INVALID_REQUEST, "at most %d devices",
                            SERVE_MAX_DEVICES);
    ret = make_net(json_string_value(spec), s->sw, &dev, socket, sizeof(socket), msg,
                   sizeof(msg));
    if (ret < 0)
        return vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS, "%s", msg);
    if (find_dev(s, dev->id) || socket_in_use(s, socket)) {
        snprintf(msg, sizeof(msg), "id %s or socket %s already used", dev->id, socket);
        dev->ops->destroy(dev);
        return vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS, "%s", msg);
    }
    sd = &s->devs[s->ndevs];
    sd->dev = dev;
    ret = vio_vu_backend_create(dev, socket, &s->loop, &sd->vu);
    if (ret < 0) {
        dev->ops->destroy(dev);
        sd->dev = NULL;
        return vio_rpc_fail(err, VIO_RPC_INTERNAL_ERROR, "cannot listen on %s: %s", socket,
                            strerror(-ret));
    }
    s->ndevs++;
    vio_info("%s: virtio-net port added, vhost-user socket %s", dev->id, socket);
    return device_summary(sd);
}

static struct serve_dev *find_port_dev(struct serve *s, json_t *params, struct vio_rpc_error *err)
{
    json_t *id = params ? json_object_get(params, "id") : NULL;
    struct serve_dev *sd;

    if (!json_is_string(id)) {
        vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS, "params need \"id\": a port id");
        return NULL;
    }
    sd = find_dev(s, json_string_value(id));
    if (!sd || !vio_is_net_dev(sd->dev)) {
        vio_rpc_fail(err, VIO_RPC_NOT_FOUND, "no network port '%s'", json_string_value(id));
        return NULL;
    }
    return sd;
}

static json_t *rpc_net_port_remove(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct serve *s = opaque;
    struct serve_dev *sd = find_port_dev(s, params, err);
    unsigned i;
    char id[32];

    if (!sd)
        return NULL;
    i = (unsigned)(sd - s->devs);
    snprintf(id, sizeof(id), "%s", sd->dev->id);
    /* Disconnecting drains the rings on the switch thread; then the port
     * leaves the switch. */
    vio_vu_backend_destroy(sd->vu);
    sd->dev->ops->destroy(sd->dev);
    memmove(&s->devs[i], &s->devs[i + 1], (s->ndevs - i - 1) * sizeof(s->devs[0]));
    s->ndevs--;
    vio_info("%s: virtio-net port removed", id);
    return json_pack("{s:s}", "removed", id);
}

static json_t *rpc_net_port_link(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct serve *s = opaque;
    json_t *up = params ? json_object_get(params, "up") : NULL;
    struct vio_net_port *p;
    json_t *id = params ? json_object_get(params, "id") : NULL;

    if (!s->sw || !json_is_string(id))
        return vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS,
                            "params must be {\"id\": PORT, \"up\": true|false}");
    if (!json_is_boolean(up))
        return vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS, "\"up\" must be true or false");
    p = vio_switch_find(s->sw, json_string_value(id));
    if (!p)
        return vio_rpc_fail(err, VIO_RPC_NOT_FOUND, "no port '%s'", json_string_value(id));
    atomic_store(&p->link_up, json_is_true(up));
    vio_info("%s: link %s", p->id, json_is_true(up) ? "up" : "down");
    return vio_net_port_stats(p);
}

static json_t *rpc_scsi_luns(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct serve *s = opaque;
    json_t *list = json_array();

    (void)params;
    (void)err;
    for (unsigned i = 0; i < s->ndevs; i++) {
        if (vio_is_scsi_hba(s->devs[i].dev))
            vio_scsi_ctl_list(s->devs[i].dev, list);
    }
    return list;
}

static json_t *rpc_scsi_lun_add(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    return vio_scsi_rpc_lun_add(params, find_hba, opaque, err);
}

static json_t *rpc_scsi_lun_remove(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    return vio_scsi_rpc_lun_remove(params, find_hba, opaque, err);
}

static const struct vio_rpc_method serve_methods[] = {
    {"net.ports", rpc_net_ports, "switch ports (VM ports and uplinks) with MAC, VLAN, link, counters"},
    {"net.port.add", rpc_net_port_add,
     "add a virtio-net port: {\"spec\": \"id=ID,socket=PATH,mac=MAC[,vlan=N][,queues=N]\"}"},
    {"net.port.remove", rpc_net_port_remove, "remove a virtio-net port: {\"id\": ID}"},
    {"net.port.link", rpc_net_port_link, "set a port's link: {\"id\": ID, \"up\": true|false}"},
    {"scsi.luns", rpc_scsi_luns, "SCSI LUNs of every controller with backends and counters"},
    {"scsi.lun.add", rpc_scsi_lun_add,
     "add a LUN: {\"spec\": \"hba=ID,path=P[,target=N][,lun=N][,readonly]...\"}"},
    {"scsi.lun.remove", rpc_scsi_lun_remove,
     "remove a LUN: {\"hba\": ID, \"lun\": N[, \"target\": N]}"},
    {"device.list", rpc_device_list, "list devices with their sockets and connection state"},
    {"device.stats", rpc_device_stats,
     "counters per device and queue; params {\"id\": ID} for one device"},
    {"server.info", rpc_server_info, "program, version, pid, worker count"},
    {NULL, NULL, NULL},
};

/* Take a device from the command line; its id and socket (sockets[i] for
 * device i) must be new. On a clash it is still taken, for teardown. */
static int declare_dev(struct serve *s, struct vio_dev *dev, char (*sockets)[108],
                       const char *opt, const char *spec)
{
    unsigned k = s->ndevs;

    s->devs[s->ndevs++].dev = dev;
    for (unsigned j = 0; j < k; j++) {
        if (strcmp(s->devs[j].dev->id, dev->id) == 0 || strcmp(sockets[j], sockets[k]) == 0) {
            vio_err("%s %s: id or socket already used by device %s", opt, spec,
                    s->devs[j].dev->id);
            return -EEXIST;
        }
    }
    return 0;
}

static void signal_handler(struct vio_handler *h, uint32_t events)
{
    struct serve *s = vio_container_of(h, struct serve, sig_h);
    struct signalfd_siginfo si;

    (void)events;
    if (read(h->fd, &si, sizeof(si)) == sizeof(si)) {
        vio_info("signal %u: shutting down", si.ssi_signo);
        vio_loop_stop(&s->loop);
    }
}

static unsigned default_workers(unsigned total_queues)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cpus > 0 ? (unsigned)cpus : 1;

    return VIO_MAX(1u, VIO_MIN(n, total_queues));
}

static void teardown(struct serve *s)
{
    /* Backends first: each disconnect drains in-flight requests on the
     * workers, which must still be running. */
    for (unsigned i = 0; i < s->ndevs; i++) {
        vio_vu_backend_destroy(s->devs[i].vu);
        s->devs[i].vu = NULL;
    }
    vio_rpc_server_destroy(s->rpc);
    s->rpc = NULL;
    for (unsigned i = 0; i < s->nuplinks; i++)
        vio_uplink_destroy(s->uplinks[i]);
    s->nuplinks = 0;
    if (s->workers.n)
        vio_workers_stop(&s->workers);
    /* Network devices detach from the switch on its thread, still running. */
    for (unsigned i = 0; i < s->ndevs; i++)
        s->devs[i].dev->ops->destroy(s->devs[i].dev);
    s->ndevs = 0;
    if (s->switch_thread.n)
        vio_workers_stop(&s->switch_thread);
    vio_switch_destroy(s->sw);
    s->sw = NULL;
    if (s->sigfd >= 0)
        close(s->sigfd);
    vio_loop_destroy(&s->loop);
}

int vio_serve_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"blk", required_argument, NULL, 'b'},   {"ctl", required_argument, NULL, 'c'},
        {"net", required_argument, NULL, 'n'},   {"uplink", required_argument, NULL, 'u'},
        {"workers", required_argument, NULL, 'w'}, {"log-level", required_argument, NULL, 'l'},
        {"poll-us", required_argument, NULL, 'p'}, {"help", no_argument, NULL, 'h'},
        {"scsi", required_argument, NULL, 's'},  {"lun", required_argument, NULL, 'L'},
        {NULL, 0, NULL, 0},
    };
    const char *blk_specs[SERVE_MAX_DEVICES], *net_specs[SERVE_MAX_DEVICES];
    const char *uplink_specs[SERVE_MAX_UPLINKS];
    const char *scsi_specs[SERVE_MAX_DEVICES], *lun_specs[VIO_SCSI_MAX_LUNS * 4];
    unsigned nscsi = 0, nlun = 0;
    char sockets[SERVE_MAX_DEVICES][108];
    unsigned nblk = 0, nnet = 0, nuplink = 0, total_queues = 0;
    uint64_t workers = 0, poll_us = 0;
    const char *ctl = NULL;
    struct serve s;
    sigset_t sigs;
    int opt, ret;

    memset(&s, 0, sizeof(s));
    s.sigfd = -1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            if (nblk == SERVE_MAX_DEVICES) {
                vio_err("at most %d devices", SERVE_MAX_DEVICES);
                return 2;
            }
            blk_specs[nblk++] = optarg;
            break;
        case 's':
            if (nblk + nnet + nscsi == SERVE_MAX_DEVICES) {
                vio_err("at most %d devices", SERVE_MAX_DEVICES);
                return 2;
            }
            scsi_specs[nscsi++] = optarg;
            break;
        case 'L':
            if (nlun == VIO_ARRAY_SIZE(lun_specs)) {
                vio_err("at most %zu --lun options", VIO_ARRAY_SIZE(lun_specs));
                return 2;
            }
            lun_specs[nlun++] = optarg;
            break;
        case 'n':
            if (nblk + nnet + nscsi == SERVE_MAX_DEVICES) {
                vio_err("at most %d devices", SERVE_MAX_DEVICES);
                return 2;
            }
            net_specs[nnet++] = optarg;
            break;
        case 'u':
            if (nuplink == SERVE_MAX_UPLINKS) {
                vio_err("at most %d uplinks", SERVE_MAX_UPLINKS);
                return 2;
            }
            uplink_specs[nuplink++] = optarg;
            break;
        case 'c':
            ctl = optarg;
            break;
        case 'w':
            if (vio_parse_size(optarg, &workers) < 0 || workers < 1 ||
                workers > SERVE_MAX_WORKERS) {
                vio_err("--workers %s: expected 1..%d", optarg, SERVE_MAX_WORKERS);
                return 2;
            }
            break;
        case 'p':
            if (vio_parse_size(optarg, &poll_us) < 0 || poll_us > 1000000) {
                vio_err("--poll-us %s: expected 0..1000000", optarg);
                return 2;
            }
            break;
        case 'l': {
            enum vio_log_level level;

            if (vio_log_parse_level(optarg, &level) < 0) {
                vio_err("--log-level %s: expected error, warn, info or debug", optarg);
                return 2;
            }
            vio_log_set_level(level);
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        vio_err("unexpected argument '%s' (see vio serve --help)", argv[optind]);
        return 2;
    }
    if (nlun && !nscsi) {
        vio_err("--lun needs a controller: give --scsi id=ID,socket=PATH too");
        return 2;
    }
    if (nblk + nnet + nscsi + nuplink == 0) {
        vio_err("nothing to serve: give at least one --blk, --scsi, --net or --uplink "
                "(see vio serve --help)");
        return 2;
    }
    if (nblk + nnet + nscsi > SERVE_MAX_DEVICES) {
        vio_err("at most %d devices", SERVE_MAX_DEVICES);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    ret = vio_loop_init(&s.loop);
    if (ret < 0) {
        vio_err("cannot create the event loop: %s", strerror(-ret));
        return 1;
    }
    for (unsigned i = 0; i < nblk; i++) {
        struct vio_dev *dev;

        ret = make_blk(blk_specs[i], &dev, sockets[i], sizeof(sockets[i]));
        if (ret < 0 || declare_dev(&s, dev, sockets, "--blk", blk_specs[i]) < 0)
            goto fail;
        total_queues += dev->num_queues;
    }
    for (unsigned i = 0; i < nscsi; i++) {
        unsigned k = s.ndevs;
        struct vio_dev *dev;

        ret = make_scsi(scsi_specs[i], &dev, sockets[k], sizeof(sockets[k]));
        if (ret < 0 || declare_dev(&s, dev, sockets, "--scsi", scsi_specs[i]) < 0)
            goto fail;
        total_queues += dev->num_queues;
    }
    for (unsigned i = 0; i < nlun; i++) {
        char err[300];

        if (vio_scsi_ctl_add(lun_specs[i], find_hba, &s, err, sizeof(err)) < 0) {
            vio_err("--lun %s: %s", lun_specs[i], err);
            goto fail;
        }
    }
    if (nnet + nuplink) {
        /* The switch thread runs before ports attach: attaching is a call
         * on its loop. */
        ret = vio_workers_start(&s.switch_thread, 1, "switch");
        if (ret < 0) {
            vio_err("cannot start the switch thread: %s", strerror(-ret));
            goto fail;
        }
        vio_workers_set_poll(&s.switch_thread, poll_us * 1000);
        ret = vio_switch_create(&s.switch_thread.loops[0], "switch0", &s.sw);
        if (ret < 0) {
            vio_err("cannot create the switch: %s", strerror(-ret));
            goto fail;
        }
    }
    for (unsigned i = 0; i < nnet; i++) {
        unsigned k = s.ndevs;
        struct vio_dev *dev;
        char err[200];

        ret = make_net(net_specs[i], s.sw, &dev, sockets[k], sizeof(sockets[k]), err,
                       sizeof(err));
        if (ret < 0) {
            vio_err("--net %s: %s", net_specs[i], err);
            goto fail;
        }
        if (declare_dev(&s, dev, sockets, "--net", net_specs[i]) < 0)
            goto fail;
    }
    for (unsigned i = 0; i < nuplink; i++) {
        ret = vio_uplink_create(s.sw, uplink_specs[i], &s.uplinks[s.nuplinks]);
        if (ret < 0)
            goto fail;
        s.nuplinks++;
    }

    /* SIGINT/SIGTERM arrive through a signalfd on the control loop. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    s.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s.sigfd < 0 || vio_loop_add(&s.loop, &s.sig_h, s.sigfd, EPOLLIN, signal_handler) < 0) {
        vio_err("cannot set up signal handling: %s", strerror(errno));
        goto fail;
    }

    ret = vio_workers_start(&s.workers,
                            workers ? (unsigned)workers : default_workers(VIO_MAX(total_queues, 1)),
                            "worker");
    if (ret < 0) {
        vio_err("cannot start worker threads: %s", strerror(-ret));
        goto fail;
    }
    vio_workers_set_poll(&s.workers, poll_us * 1000);
    for (unsigned i = 0; i < s.ndevs; i++) {
        struct vio_dev *dev = s.devs[i].dev;

        bool net = vio_is_net_dev(dev);

        /* A network port's queues live on the switch thread already. */
        for (unsigned q = 0; q < dev->num_queues && !net; q++)
            dev->queues[q].loop = vio_workers_next(&s.workers);
        ret = vio_vu_backend_create(dev, sockets[i], &s.loop, &s.devs[i].vu);
        if (ret < 0)
            goto fail;
        if (net)
            vio_info("%s: virtio-net port, %u queue pair%s, vhost-user socket %s", dev->id,
                     dev->num_queues / 2, dev->num_queues / 2 == 1 ? "" : "s", sockets[i]);
        else if (vio_is_scsi_hba(dev))
            vio_info("%s: virtio-scsi, %u request queue%s, vhost-user socket %s", dev->id,
                     dev->num_queues - 2, dev->num_queues == 3 ? "" : "s", sockets[i]);
        else
            vio_info("%s: virtio-blk, %u queue%s, vhost-user socket %s", dev->id,
                     dev->num_queues, dev->num_queues == 1 ? "" : "s", sockets[i]);
    }
    if (ctl) {
        ret = vio_rpc_server_create(&s.loop, ctl, serve_methods, &s, &s.rpc);
        if (ret < 0)
            goto fail;
        vio_info("control socket %s", ctl);
    }
    vio_info("serving %u device%s with %u worker%s", s.ndevs, s.ndevs == 1 ? "" : "s",
             s.workers.n, s.workers.n == 1 ? "" : "s");

    ret = vio_loop_run(&s.loop);
    if (ret < 0)
        vio_err("control loop failed: %s", strerror(-ret));
    teardown(&s);
    vio_info("stopped");
    return ret < 0 ? 1 : 0;

fail:
    teardown(&s);
    return 1;
}
