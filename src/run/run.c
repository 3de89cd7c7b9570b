/* `vio run`: the KVM hypervisor. Checks the command line, the kernel image
 * and /dev/kvm before anything starts; builds a VM (RAM, emulated PC
 * devices, PCI with virtio devices in-process or over vhost-user, ACPI
 * tables, the boot state) and runs it until the guest powers off; a guest
 * reboot builds a fresh VM. The serial console is on stdin/stdout; vio's
 * own messages go to stderr. */
#include "serve/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "backends/block/bdev.h"
#include "core/log.h"
#include "core/opts.h"
#include "core/rpc.h"
#include "core/workers.h"
#include "devices/blk.h"
#include "devices/scsi.h"
#include "devices/scsi_ctl.h"
#include "devices/console.h"
#include "devices/rng.h"
#include "emul/pcsys.h"
#include "emul/rtc.h"
#include "emul/uart8250.h"
#include "run/run_net.h"
#include "run/run_nvme.h"
#include "vmm/acpi.h"
#include "vmm/boot.h"
#include "vmm/pci.h"
#include "vmm/probe.h"
#include "vmm/vcpu.h"
#include "vmm/virtio_pci.h"
#include "vmm/vpci_local.h"

#define MAX_DEVS 16
#define DEFAULT_CMDLINE "console=ttyS0 panic=-1"

enum dev_kind { DEV_BLK, DEV_VHOST_BLK, DEV_RNG, DEV_CONSOLE, DEV_SCSI, DEV_VHOST_SCSI };

#define MAX_LUNS VIO_SCSI_MAX_LUNS

struct dev_spec {
    enum dev_kind kind;
    char id[32];
    char path[4096]; /* blk: file; vhost: socket; console: input */
    char out[4096];  /* console: output */
    bool readonly, direct;
    unsigned queues;
};

struct run_opts {
    const char *kernel, *initrd, *cmdline, *ctl;
    uint64_t mem;
    unsigned cpus, io_threads;
    bool no_reboot;
    bool probe_only;
    struct dev_spec devs[MAX_DEVS];
    unsigned ndevs;
    const char *luns[MAX_LUNS]; /* --lun specs, opened with their controller */
    unsigned nluns;
    struct vio_run_net_opts net;
    struct vio_run_nvme_opts nvme;
};

struct session {
    const struct run_opts *o;
    struct vio_vm vm;
    struct vio_loop loop;
    bool loop_ok;
    struct vio_workers io;
    struct vio_pcsys *sys;
    struct vio_rtc *rtc;
    struct vio_uart *uart;
    struct vio_pci *pci;
    struct vio_vpci *vdevs[MAX_DEVS];
    unsigned nvdevs;
    struct vio_run_nvme *nvme; /* emulated NVMe controllers */
    struct vio_dev *hbas[MAX_DEVS]; /* in-process SCSI controllers */
    unsigned nhbas;
    struct vio_rpc_server *rpc;
    struct vio_handler exit_h, sig_h, stdin_h;
    bool stdin_watched;
    unsigned boot;
};

/* State that outlives one boot. */
static struct {
    struct vio_kvm_speed speed;
    bool speed_known;
    bool tty_raw;
    struct termios saved_tty;
    bool stdin_eof;
    bool escape; /* Ctrl-A seen on a terminal */
    bool quit;   /* the operator asked to stop: no reboot */
    unsigned boots;
    struct vio_run_net *net; /* switch and uplinks, kept across reboots */
    /* The LUNs of the in-process SCSI controllers, as --lun specs: those of
     * the command line plus scsi.lun.add minus scsi.lun.remove, so a LUN
     * added at run time is still there after the guest reboots. */
    char **luns;
    unsigned nluns;
} g;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vio run --kernel BZIMAGE [options]\n"
            "\n"
            "Boot a Linux guest under KVM. The serial console (ttyS0) is this terminal;\n"
            "Ctrl-A x quits when it is a terminal.\n"
            "\n"
            "  --kernel FILE       bzImage (Linux boot protocol 2.12+, 64-bit), or an\n"
            "                      uncompressed vmlinux (ELF), which boots faster\n"
            "  --initrd FILE       initramfs\n"
            "  --cmdline TEXT      kernel command line (default \"" DEFAULT_CMDLINE "\")\n"
            "  --mem SIZE          guest RAM (default 512M)\n"
            "  --cpus N            vCPUs (default 1)\n"
            "  --blk path=FILE[,readonly][,direct][,queues=N][,id=ID]\n"
            "                      in-process virtio-blk disk (io_uring)\n"
            "  --vhost-user-blk socket=PATH[,queues=N][,id=ID]\n"
            "                      virtio-blk disk served by vio serve or another\n"
            "                      vhost-user back-end\n"
            "  --scsi id=ID[,queues=N]\n"
            "                      in-process virtio-scsi controller for the --lun disks\n"
            "  --lun hba=ID,path=P[,target=N][,lun=N][,readonly][,direct][,serial=S]...\n"
            "                      a SCSI disk on controller ID: P is a file, a block\n"
            "                      device, nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?\n"
            "                      socket=PATH or iscsi://HOST[:PORT]/IQN/LUN (keys as\n"
            "                      for vio serve --lun)\n"
            "  --vhost-user-scsi socket=PATH[,queues=N][,id=ID]\n"
            "                      virtio-scsi controller served by vio serve --scsi\n"
            "  --nvme path=FILE[,readonly][,direct][,queues=N][,serial=S][,id=ID]\n"
            "                      emulated NVMe controller (stock nvme driver),\n"
            "                      namespace 1 on FILE; queues: I/O queue pairs 1-64\n"
            "                      (default 4); repeatable\n"
            "  --nvme-ns nvme=ID,path=FILE[,readonly][,direct]\n"
            "                      the next namespace (2-8) of an --nvme controller\n"
            "                      (default ids nvme0, nvme1, ...)\n"
            "  --rng               virtio-rng from the host's getrandom()\n"
            "  --virtio-console in=PATH,out=PATH[,id=ID]\n"
            "                      virtio-console (hvc0) reading PATH (e.g. a FIFO),\n"
            "                      writing to out\n"
            "  --net mac=MAC[,model=virtio|e1000][,queues=N][,vlan=N][,id=ID]\n"
            "                      a NIC on the VM's switch: virtio-net (default; queues\n"
            "                      1-16) or an emulated Intel 82540EM (e1000, the stock\n"
            "                      driver of any OS); vlan 0-4094 (0: untagged)\n"
            "  --uplink type=slirp|vxlan|tap|vhost-user,id=ID[,vlan=N][,KEY=VALUE...]\n"
            "                      connect the switch onward: slirp (user-mode NAT:\n"
            "                      [net=A.B.C.D/LEN][,restrict=on][,hostfwd=RULE]), vxlan\n"
            "                      (vni=N,local=ADDR[:PORT],remote=ADDR[:PORT]) or tap\n"
            "                      (ifname=NAME[,offload=on|off]) or vhost-user (socket=PATH:\n"
            "                      a port of vio serve's switch, shared with other VMs);\n"
            "                      repeatable\n"
            "  --ctl PATH          JSON-RPC control socket (see vio ctl)\n"
            "  --io-threads N      threads for device queues (default 1)\n"
            "  --no-reboot         exit when the guest reboots instead of restarting it\n"
            "  --log-level L       error, warn, info (default) or debug\n"
            "  --kvm-probe         time KVM on a short guest loop, print the result, exit\n");
}

/* ---- command line ---- */

static int parse_dev(struct run_opts *o, enum dev_kind kind, const char *spec)
{
    struct dev_spec *d;
    struct vio_opts kv;
    char err[200] = "";
    const char *id, *v;
    uint64_t queues = 1;
    static const char *const prefix[] = {"blk", "vblk", "rng", "con", "scsi", "vscsi"};
    int ret;

    if (o->ndevs == MAX_DEVS) {
        vio_err("at most %d devices", MAX_DEVS);
        return -E2BIG;
    }
    d = &o->devs[o->ndevs];
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    ret = vio_opts_parse(spec ? spec : "", &kv, err, sizeof(err));
    if (ret < 0 && spec)
        goto bad;
    ret = 0;
    id = spec ? vio_opts_get(&kv, "id") : NULL;
    if (id && (!*id || strlen(id) >= sizeof(d->id) || strpbrk(id, " /,"))) {
        snprintf(err, sizeof(err), "id=%s: 1-31 characters, no spaces, slashes or commas", id);
        goto bad_inval;
    }
    if (id)
        snprintf(d->id, sizeof(d->id), "%s", id);
    else
        snprintf(d->id, sizeof(d->id), "%s%u", prefix[kind], o->ndevs);
    for (unsigned i = 0; i < o->ndevs; i++) {
        if (strcmp(o->devs[i].id, d->id) == 0) {
            snprintf(err, sizeof(err), "id=%s is used twice", d->id);
            goto bad_inval;
        }
    }
    switch (kind) {
    case DEV_BLK:
        v = vio_opts_get(&kv, "path");
        if (!v || !*v) {
            snprintf(err, sizeof(err), "path=FILE is required");
            goto bad_inval;
        }
        snprintf(d->path, sizeof(d->path), "%s", v);
        if ((ret = vio_opts_bool(&kv, "readonly", false, &d->readonly, err, sizeof(err))) < 0 ||
            (ret = vio_opts_bool(&kv, "direct", false, &d->direct, err, sizeof(err))) < 0 ||
            (ret = vio_opts_size(&kv, "queues", 1, 1, VIO_BLK_MAX_QUEUES, &queues, err,
                                 sizeof(err))) < 0)
            goto bad;
        break;
    case DEV_VHOST_BLK:
        v = vio_opts_get(&kv, "socket");
        if (!v || !*v || strlen(v) >= 108) {
            snprintf(err, sizeof(err), "socket=PATH is required (under 108 bytes)");
            goto bad_inval;
        }
        snprintf(d->path, sizeof(d->path), "%s", v);
        if ((ret = vio_opts_size(&kv, "queues", 0, 0, 64, &queues, err, sizeof(err))) < 0)
            goto bad;
        break;
    case DEV_SCSI:
        if ((ret = vio_opts_size(&kv, "queues", 1, 1, VIO_SCSI_MAX_QUEUES, &queues, err,
                                 sizeof(err))) < 0)
            goto bad;
        break;
    case DEV_VHOST_SCSI:
        v = vio_opts_get(&kv, "socket");
        if (!v || !*v || strlen(v) >= 108) {
            snprintf(err, sizeof(err), "socket=PATH is required (under 108 bytes)");
            goto bad_inval;
        }
        snprintf(d->path, sizeof(d->path), "%s", v);
        if ((ret = vio_opts_size(&kv, "queues", 0, 0, VIO_SCSI_MAX_QUEUES, &queues, err,
                                 sizeof(err))) < 0)
            goto bad;
        break;
    case DEV_RNG:
        break;
    case DEV_CONSOLE:
        v = vio_opts_get(&kv, "in");
        if (v)
            snprintf(d->path, sizeof(d->path), "%s", v);
        v = vio_opts_get(&kv, "out");
        if (v)
            snprintf(d->out, sizeof(d->out), "%s", v);
        if (!d->path[0] && !d->out[0]) {
            snprintf(err, sizeof(err), "give in=PATH and/or out=PATH");
            goto bad_inval;
        }
        break;
    }
    d->queues = (unsigned)queues;
    if (spec && (ret = vio_opts_check_unused(&kv, err, sizeof(err))) < 0)
        goto bad;
    vio_opts_free(&kv);
    o->ndevs++;
    return 0;

bad_inval:
    ret = -EINVAL;
bad:
    vio_err("%s: %s", spec ? spec : "device", err);
    vio_opts_free(&kv);
    return ret;
}

/* A --lun must name an in-process --scsi controller. */
static int check_lun_hba(const struct run_opts *o, const char *spec)
{
    struct vio_opts kv;
    char err[200] = "";
    const char *hba;
    int ret = vio_opts_parse(spec, &kv, err, sizeof(err));

    if (ret < 0)
        goto out;
    hba = vio_opts_get(&kv, "hba");
    ret = -ENOENT;
    for (unsigned i = 0; hba && i < o->ndevs; i++) {
        if (o->devs[i].kind == DEV_SCSI && strcmp(o->devs[i].id, hba) == 0)
            ret = 0;
    }
    if (ret < 0)
        snprintf(err, sizeof(err), "hba=%s: no --scsi controller with that id",
                 hba ? hba : "(missing)");
out:
    if (ret < 0)
        vio_err("--lun %s: %s", spec, err);
    vio_opts_free(&kv);
    return ret;
}

/* Open controller @dev's LUNs (g.luns). */
static int add_luns(struct vio_dev *dev)
{
    for (unsigned i = 0; i < g.nluns; i++) {
        struct vio_opts kv;
        char err[300] = "";
        const char *hba;
        int ret = vio_opts_parse(g.luns[i], &kv, err, sizeof(err));

        hba = ret < 0 ? NULL : vio_opts_get(&kv, "hba");
        if (hba && strcmp(hba, dev->id) == 0)
            ret = vio_scsi_hba_add_lun_spec(dev, &kv, err, sizeof(err));
        vio_opts_free(&kv);
        if (ret < 0) {
            vio_err("--lun %s: %s", g.luns[i], err);
            return ret;
        }
    }
    return 0;
}

/* Remember @spec in g.luns. Returns 0 or -ENOMEM. */
static int keep_lun(const char *spec)
{
    char **l = realloc(g.luns, (g.nluns + 1) * sizeof(*l));
    char *copy = strdup(spec);

    if (l)
        g.luns = l;
    if (!l || !copy) {
        free(copy);
        return -ENOMEM;
    }
    g.luns[g.nluns++] = copy;
    return 0;
}

static void forget_luns(void)
{
    for (unsigned i = 0; i < g.nluns; i++)
        free(g.luns[i]);
    free(g.luns);
    g.luns = NULL;
    g.nluns = 0;
}

static int parse_args(int argc, char **argv, struct run_opts *o)
{
    enum { O_KERNEL = 256, O_INITRD, O_CMDLINE, O_MEM, O_CPUS, O_BLK, O_VHOST_BLK, O_RNG,
           O_CONSOLE, O_CTL, O_IOT, O_NOREBOOT, O_LOG, O_PROBE, O_NET, O_UPLINK, O_SCSI,
           O_LUN, O_VHOST_SCSI, O_NVME, O_NVME_NS };
    static const struct option longopts[] = {
        {"kernel", required_argument, NULL, O_KERNEL},
        {"initrd", required_argument, NULL, O_INITRD},
        {"cmdline", required_argument, NULL, O_CMDLINE},
        {"mem", required_argument, NULL, O_MEM},
        {"cpus", required_argument, NULL, O_CPUS},
        {"blk", required_argument, NULL, O_BLK},
        {"vhost-user-blk", required_argument, NULL, O_VHOST_BLK},
        {"rng", no_argument, NULL, O_RNG},
        {"scsi", required_argument, NULL, O_SCSI},
        {"lun", required_argument, NULL, O_LUN},
        {"vhost-user-scsi", required_argument, NULL, O_VHOST_SCSI},
        {"virtio-console", required_argument, NULL, O_CONSOLE},
        {"ctl", required_argument, NULL, O_CTL},
        {"io-threads", required_argument, NULL, O_IOT},
        {"no-reboot", no_argument, NULL, O_NOREBOOT},
        {"log-level", required_argument, NULL, O_LOG},
        {"kvm-probe", no_argument, NULL, O_PROBE},
        {"net", required_argument, NULL, O_NET},
        {"uplink", required_argument, NULL, O_UPLINK},
        {"nvme", required_argument, NULL, O_NVME},
        {"nvme-ns", required_argument, NULL, O_NVME_NS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int opt;

    memset(o, 0, sizeof(*o));
    o->mem = 512ull << 20;
    o->cpus = 1;
    o->io_threads = 1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case O_KERNEL:
            o->kernel = optarg;
            break;
        case O_INITRD:
            o->initrd = optarg;
            break;
        case O_CMDLINE:
            o->cmdline = optarg;
            break;
        case O_MEM:
            if (vio_parse_size(optarg, &v) < 0 || v == 0) {
                vio_err("--mem %s: expected a size such as 512M or 2G", optarg);
                return -EINVAL;
            }
            /* A bare number means MiB, as in QEMU. */
            o->mem = strspn(optarg, "0123456789") == strlen(optarg) ? v << 20 : v;
            if (v > (1ull << 44)) {
                vio_err("--mem %s: too large", optarg);
                return -EINVAL;
            }
            break;
        case O_CPUS:
            if (vio_parse_size(optarg, &v) < 0 || v < 1 || v > VIO_VM_MAX_CPUS) {
                vio_err("--cpus %s: expected 1..%d", optarg, VIO_VM_MAX_CPUS);
                return -EINVAL;
            }
            o->cpus = (unsigned)v;
            break;
        case O_BLK:
        case O_VHOST_BLK:
        case O_CONSOLE:
            if (parse_dev(o, opt == O_BLK ? DEV_BLK : opt == O_CONSOLE ? DEV_CONSOLE
                                                                        : DEV_VHOST_BLK,
                          optarg) < 0)
                return -EINVAL;
            break;
        case O_RNG:
            if (parse_dev(o, DEV_RNG, NULL) < 0)
                return -EINVAL;
            break;
        case O_SCSI:
        case O_VHOST_SCSI:
            if (parse_dev(o, opt == O_SCSI ? DEV_SCSI : DEV_VHOST_SCSI, optarg) < 0)
                return -EINVAL;
            break;
        case O_LUN:
            if (o->nluns == MAX_LUNS) {
                vio_err("at most %d --lun disks", MAX_LUNS);
                return -EINVAL;
            }
            o->luns[o->nluns++] = optarg;
            break;
        case O_NET:
            if (vio_run_net_parse_nic(&o->net, optarg) < 0)
                return -EINVAL;
            break;
        case O_UPLINK:
            if (vio_run_net_parse_uplink(&o->net, optarg) < 0)
                return -EINVAL;
            break;
        case O_NVME:
            if (vio_run_nvme_parse(&o->nvme, optarg) < 0)
                return -EINVAL;
            break;
        case O_NVME_NS:
            if (vio_run_nvme_parse_ns(&o->nvme, optarg) < 0)
                return -EINVAL;
            break;
        case O_CTL:
            o->ctl = optarg;
            break;
        case O_IOT:
            if (vio_parse_size(optarg, &v) < 0 || v < 1 || v > 64) {
                vio_err("--io-threads %s: expected 1..64", optarg);
                return -EINVAL;
            }
            o->io_threads = (unsigned)v;
            break;
        case O_NOREBOOT:
            o->no_reboot = true;
            break;
        case O_PROBE:
            o->probe_only = true;
            break;
        case O_LOG: {
            enum vio_log_level level;

            if (vio_log_parse_level(optarg, &level) < 0) {
                vio_err("--log-level %s: expected error, warn, info or debug", optarg);
                return -EINVAL;
            }
            vio_log_set_level(level);
            break;
        }
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        vio_err("unexpected argument '%s' (see vio run --help)", argv[optind]);
        return -EINVAL;
    }
    if (!o->kernel && !o->probe_only) {
        vio_err("--kernel is required (see vio run --help)");
        return -EINVAL;
    }
    for (unsigned i = 0; i < o->ndevs; i++) {
        if (vio_run_net_has_id(&o->net, o->devs[i].id)) {
            vio_err("id=%s is used twice (by a --net NIC and another device)", o->devs[i].id);
            return -EINVAL;
        }
    }
    for (unsigned i = 0; i < o->nvme.n; i++) {
        const char *id = o->nvme.c[i].id;
        bool dup = vio_run_net_has_id(&o->net, id);

        for (unsigned k = 0; k < o->ndevs; k++)
            dup = dup || strcmp(o->devs[k].id, id) == 0;
        if (dup) {
            vio_err("id=%s is used twice (by an --nvme controller and another device)", id);
            return -EINVAL;
        }
    }
    for (unsigned i = 0; i < o->nluns; i++) {
        if (check_lun_hba(o, o->luns[i]) < 0)
            return -EINVAL;
    }
    if (!o->cmdline)
        o->cmdline = DEFAULT_CMDLINE;
    return 0;
}

/* The kernel is checked before anything else starts. */
static int check_kernel(const char *path)
{
    uint8_t hdr[0x1000];
    struct stat st;
    char why[160];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

    if (fd < 0) {
        vio_err("--kernel %s: %s", path, strerror(errno));
        return -errno;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        vio_err("--kernel %s: not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    n = read(fd, hdr, sizeof(hdr));
    close(fd);
    if (n < 0)
        return -errno;
    /* An ELF vmlinux is checked segment by segment when it is loaded. */
    if (n >= 4 && memcmp(hdr, "\x7f" "ELF", 4) == 0)
        return 0;
    /* Only the header is here: the size checks use the real file size. */
    ret = vio_boot_check_bzimage(hdr, (size_t)n < sizeof(hdr) ? (size_t)n : (size_t)st.st_size,
                                 why, sizeof(why));
    if (ret < 0)
        vio_err("--kernel %s: %s", path, why);
    return ret;
}

/* ---- terminal ---- */

static void restore_tty(void)
{
    if (g.tty_raw) {
        tcsetattr(STDIN_FILENO, TCSANOW, &g.saved_tty);
        g.tty_raw = false;
    }
}

static void setup_tty(void)
{
    struct termios t;

    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &g.saved_tty) < 0)
        return;
    t = g.saved_tty;
    cfmakeraw(&t);
    t.c_oflag |= OPOST | ONLCR; /* keep our own stderr lines readable */
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
        g.tty_raw = true;
        atexit(restore_tty);
    }
}

/* ---- control API ---- */

static json_t *rpc_vm_info(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct session *s = opaque;

    (void)params;
    (void)err;
    return json_pack("{s:s, s:s, s:i, s:I, s:i, s:s, s:o, s:b}", "program", "vio run",
                     "version", VIO_VERSION, "cpus", (int)s->vm.ncpus, "mem_bytes",
                     (json_int_t)s->vm.ram_size, "boot", (int)s->boot, "kernel", s->o->kernel,
                     "kvm_ns_per_iter",
                     g.speed_known ? json_real(g.speed.ns_per_iter) : json_null(),
                     "kvm_slow", g.speed_known && g.speed.slow);
}

static json_t *rpc_device_list(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct session *s = opaque;
    json_t *list = json_array();

    (void)params;
    (void)err;
    for (unsigned i = 0; i < s->nvdevs; i++)
        json_array_append_new(list, vio_vpci_info(s->vdevs[i]));
    vio_run_nvme_list(s->nvme, list);
    return list;
}

static json_t *rpc_device_stats(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct session *s = opaque;
    json_t *id = params ? json_object_get(params, "id") : NULL, *info;

    if (params && !json_is_object(params))
        return vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS, "params must be {\"id\": \"...\"}");
    if (!id)
        return rpc_device_list(opaque, params, err);
    if (!json_is_string(id))
        return vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS, "id must be a string");
    for (unsigned i = 0; i < s->nvdevs; i++) {
        if (strcmp(vio_vpci_id(s->vdevs[i]), json_string_value(id)) == 0)
            return vio_vpci_info(s->vdevs[i]);
    }
    if ((info = vio_run_nvme_info(s->nvme, json_string_value(id))))
        return info;
    return vio_rpc_fail(err, VIO_RPC_NOT_FOUND, "no device '%s'", json_string_value(id));
}

static json_t *rpc_vm_stop(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct session *s = opaque;

    (void)params;
    (void)err;
    g.quit = true;
    vio_vm_request_exit(&s->vm, VIO_VM_STOPPED);
    return json_true();
}

static json_t *rpc_vm_dump(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct session *s = opaque;

    (void)params;
    (void)err;
    vio_vm_dump_vcpus(&s->vm);
    return json_true();
}

static json_t *rpc_net_ports(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    (void)opaque;
    (void)params;
    (void)err;
    return vio_run_net_ports(g.net);
}

static struct vio_dev *find_hba(void *opaque, const char *id)
{
    struct session *s = opaque;

    for (unsigned i = 0; i < s->nhbas; i++) {
        if (strcmp(s->hbas[i]->id, id) == 0)
            return s->hbas[i];
    }
    return NULL;
}

static json_t *rpc_scsi_luns(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct session *s = opaque;
    json_t *list = json_array();

    (void)params;
    (void)err;
    for (unsigned i = 0; i < s->nhbas; i++)
        vio_scsi_ctl_list(s->hbas[i], list);
    return list;
}

static json_t *rpc_scsi_lun_add(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    json_t *r = vio_scsi_rpc_lun_add(params, find_hba, opaque, err);
    const char *spec = r ? json_string_value(json_object_get(r, "added")) : NULL;

    if (spec && keep_lun(spec) < 0)
        vio_warn("LUN %s: out of memory to remember it; it goes away when the guest reboots",
                 spec);
    return r;
}

static json_t *rpc_scsi_lun_remove(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    json_t *r = vio_scsi_rpc_lun_remove(params, find_hba, opaque, err);
    const char *hba;
    unsigned target, lun, k = 0;

    if (!r)
        return NULL;
    hba = json_string_value(json_object_get(r, "hba"));
    target = (unsigned)json_integer_value(json_object_get(r, "target"));
    lun = (unsigned)json_integer_value(json_object_get(r, "lun"));
    for (unsigned i = 0; i < g.nluns; i++) {
        if (vio_scsi_ctl_spec_is(g.luns[i], hba, target, lun))
            free(g.luns[i]);
        else
            g.luns[k++] = g.luns[i];
    }
    g.nluns = k;
    return r;
}

static const struct vio_rpc_method run_methods[] = {
    {"vm.dump", rpc_vm_dump, "log every vCPU's registers (to stderr)"},
    {"vm.info", rpc_vm_info, "cpus, memory, boot count, KVM speed"},
    {"vm.stop", rpc_vm_stop, "stop the VM and exit"},
    {"device.list", rpc_device_list, "virtio devices with their state"},
    {"device.stats", rpc_device_stats, "state and counters; params {\"id\": ID} for one"},
    {"net.ports", rpc_net_ports, "every port of the VM's switch (NICs, uplinks) with counters"},
    {"scsi.luns", rpc_scsi_luns, "LUNs of the in-process SCSI controllers, with counters"},
    {"scsi.lun.add", rpc_scsi_lun_add,
     "add a LUN (kept across reboots): {\"spec\": \"hba=ID,path=P[,target=N][,lun=N]...\"}"},
    {"scsi.lun.remove", rpc_scsi_lun_remove,
     "remove a LUN: {\"hba\": ID, \"lun\": N[, \"target\": N]}"},
    {NULL, NULL, NULL},
};

/* ---- one boot ---- */

static void exit_handler(struct vio_handler *h, uint32_t events)
{
    struct session *s = vio_container_of(h, struct session, exit_h);

    (void)events;
    vio_eventfd_drain(h->fd);
    vio_loop_stop(&s->loop);
}

static void signal_handler(struct vio_handler *h, uint32_t events)
{
    struct session *s = vio_container_of(h, struct session, sig_h);
    struct signalfd_siginfo si;

    (void)events;
    if (read(h->fd, &si, sizeof(si)) != sizeof(si))
        return;
    vio_info("signal %u: stopping the VM", si.ssi_signo);
    g.quit = true;
    vio_vm_request_exit(&s->vm, VIO_VM_STOPPED);
}

static void stdin_handler(struct vio_handler *h, uint32_t events)
{
    struct session *s = vio_container_of(h, struct session, stdin_h);
    uint8_t buf[256], out[256];
    size_t n_out = 0;
    ssize_t n;

    (void)events;
    n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        g.stdin_eof = true;
        vio_loop_del(&s->loop, h);
        s->stdin_watched = false;
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (g.tty_raw && g.escape) {
            g.escape = false;
            if (buf[i] == 'x') {
                vio_info("Ctrl-A x: stopping the VM");
                g.quit = true;
                vio_vm_request_exit(&s->vm, VIO_VM_STOPPED);
                return;
            }
            if (buf[i] != 0x01)
                continue;
        } else if (g.tty_raw && buf[i] == 0x01) {
            g.escape = true;
            continue;
        }
        out[n_out++] = buf[i];
    }
    /* A full FIFO drops input, as a real UART would. */
    vio_uart_input(s->uart, out, n_out);
}

static int open_console_fd(const char *path, bool input)
{
    struct stat st;
    int flags;

    if (!path[0])
        return -1;
    if (input)
        /* A FIFO opened read-write never reports end-of-file when its
         * writers come and go. */
        flags = (stat(path, &st) == 0 && S_ISFIFO(st.st_mode)) ? O_RDWR : O_RDONLY;
    else
        flags = O_WRONLY | O_CREAT | O_APPEND;
    return open(path, flags | O_NONBLOCK | O_CLOEXEC, 0644);
}

static int add_local(struct session *s, struct vio_dev *dev, const char *type)
{
    struct vio_vpci *v;
    int ret;

    dev->mem = &s->vm.gmem;
    for (unsigned q = 0; q < dev->num_queues; q++)
        dev->queues[q].loop = vio_workers_next(&s->io);
    ret = vio_vpci_create(&s->vm, s->pci, &s->loop, dev->id, type, dev->ops->device_id,
                          &vio_vpci_local_ops, dev, &v);
    if (ret < 0)
        return ret;
    s->vdevs[s->nvdevs++] = v;
    return 0;
}

static int add_device(struct session *s, const struct dev_spec *d)
{
    struct vio_dev *dev;
    int ret;

    switch (d->kind) {
    case DEV_BLK: {
        struct vio_bdev_opts bo = {.path = d->path, .readonly = d->readonly,
                                   .direct = d->direct};
        struct vio_blk_opts blo = {.id = d->id, .num_queues = (uint16_t)d->queues,
                                   .queue_size = 256};
        struct vio_bdev *bdev;

        ret = vio_bdev_open(&bo, &bdev);
        if (ret < 0)
            return ret;
        ret = vio_blk_create(&blo, bdev, &dev);
        if (ret < 0) {
            bdev->ops->close(bdev);
            return ret;
        }
        return add_local(s, dev, "blk");
    }
    case DEV_SCSI: {
        struct vio_scsi_hba_opts ho = {.id = d->id, .num_queues = (uint16_t)d->queues,
                                       .queue_size = 256};

        ret = vio_scsi_hba_create(&ho, &dev);
        if (ret < 0)
            return ret;
        ret = add_luns(dev);
        if (ret < 0) {
            dev->ops->destroy(dev);
            return ret;
        }
        ret = add_local(s, dev, "scsi");
        if (ret == 0)
            s->hbas[s->nhbas++] = dev;
        return ret;
    }
    case DEV_VHOST_BLK:
    case DEV_VHOST_SCSI: {
        bool scsi = d->kind == DEV_VHOST_SCSI;
        uint32_t type = scsi ? VIO_ID_SCSI : VIO_ID_BLOCK;
        struct vio_vpci_vhost *h;
        struct vio_vpci *v;

        /* For SCSI, queues= counts request queues; control and event come first. */
        ret = vio_vpci_vhost_create(&s->vm, d->path, type,
                                    scsi && d->queues ? d->queues + 2 : d->queues, &h);
        if (ret < 0)
            return ret;
        ret = vio_vpci_create(&s->vm, s->pci, &s->loop, d->id,
                              scsi ? "vhost-user-scsi" : "vhost-user-blk", type,
                              &vio_vpci_vhost_ops, h, &v);
        if (ret < 0)
            return ret;
        s->vdevs[s->nvdevs++] = v;
        return 0;
    }
    case DEV_RNG:
        ret = vio_rng_create(d->id, &dev);
        return ret < 0 ? ret : add_local(s, dev, "rng");
    case DEV_CONSOLE: {
        int in = open_console_fd(d->path, true), out = open_console_fd(d->out, false);

        if ((d->path[0] && in < 0) || (d->out[0] && out < 0)) {
            ret = -errno;
            vio_err("%s: cannot open %s: %s", d->id, in < 0 && d->path[0] ? d->path : d->out,
                    strerror(errno));
            if (in >= 0)
                close(in);
            if (out >= 0)
                close(out);
            return ret;
        }
        ret = vio_console_create(d->id, in, out, &dev);
        if (ret < 0) {
            if (in >= 0)
                close(in);
            if (out >= 0)
                close(out);
            return ret;
        }
        return add_local(s, dev, "console");
    }
    }
    return -EINVAL;
}

static void session_teardown(struct session *s)
{
    /* vCPUs first (nothing dispatches into devices any more), then the
     * devices (their queues drain while guest RAM is still mapped), then
     * the I/O threads, then the VM itself. */
    vio_vm_stop(&s->vm);
    if (s->rpc)
        vio_rpc_server_destroy(s->rpc);
    for (unsigned i = 0; i < s->nvdevs; i++)
        vio_vpci_destroy(s->vdevs[i]);
    s->nvdevs = 0;
    vio_run_net_detach(g.net);
    vio_run_nvme_detach(s->nvme); /* before the I/O threads it runs on stop */
    s->nvme = NULL;
    vio_pci_destroy(s->pci);
    vio_uart_destroy(s->uart);
    vio_rtc_destroy(s->rtc);
    vio_pcsys_destroy(s->sys);
    if (s->io.n)
        vio_workers_stop(&s->io);
    if (s->loop_ok) {
        if (s->stdin_watched)
            vio_loop_del(&s->loop, &s->stdin_h);
        vio_loop_destroy(&s->loop);
    }
    vio_vm_destroy(&s->vm);
}

static enum vio_vm_exit run_once(const struct run_opts *o, int sigfd)
{
    struct vio_vm_opts vo = {.mem_size = o->mem, .ncpus = o->cpus};
    struct vio_boot_opts bo = {.kernel = o->kernel, .initrd = o->initrd, .cmdline = o->cmdline};
    struct vio_boot_regs regs;
    struct session s;
    enum vio_vm_exit result = VIO_VM_ERROR;
    unsigned ndev;
    int ret;

    memset(&s, 0, sizeof(s));
    s.o = o;
    s.boot = ++g.boots;
    ret = vio_vm_create(&vo, &s.vm);
    if (ret < 0)
        return VIO_VM_ERROR;
    if (vio_loop_init(&s.loop) < 0)
        goto out;
    s.loop_ok = true;
    if (vio_workers_start(&s.io, o->io_threads, "io") < 0)
        goto out;
    if (vio_pcsys_create(&s.vm, &s.sys) < 0 || vio_rtc_create(&s.vm, &s.rtc) < 0 ||
        vio_uart_create(&s.vm, VIO_COM1_PORT, VIO_COM1_IRQ, STDOUT_FILENO, &s.uart) < 0 ||
        vio_pci_create(&s.vm, &s.pci) < 0) {
        vio_err("cannot set up the emulated PC devices");
        goto out;
    }
    for (unsigned i = 0; i < o->ndevs; i++) {
        if (add_device(&s, &o->devs[i]) < 0) {
            vio_err("%s: device could not be set up", o->devs[i].id);
            goto out;
        }
    }
    if (g.net && vio_run_net_attach(g.net, &s.vm, s.pci, &s.loop, s.vdevs, &s.nvdevs,
                                    MAX_DEVS) < 0)
        goto out;
    if (vio_run_nvme_attach(&o->nvme, &s.vm, s.pci, &s.io, &s.nvme) < 0)
        goto out;
    bo.rsdp_addr = vio_acpi_build(&s.vm);
    if (!bo.rsdp_addr || vio_boot_load(&s.vm, &bo, &regs) < 0)
        goto out;
    if (vio_vm_create_vcpus(&s.vm) < 0 || vio_vcpu_set_boot_regs(&s.vm.vcpus[0], &regs) < 0) {
        vio_err("cannot set up the vCPUs");
        goto out;
    }
    if (o->ctl && vio_rpc_server_create(&s.loop, o->ctl, run_methods, &s, &s.rpc) < 0)
        goto out;
    if (vio_loop_add(&s.loop, &s.exit_h, s.vm.exit_fd, EPOLLIN, exit_handler) < 0 ||
        vio_loop_add(&s.loop, &s.sig_h, sigfd, EPOLLIN, signal_handler) < 0)
        goto out;
    if (!g.stdin_eof) {
        int fl = fcntl(STDIN_FILENO, F_GETFL);

        if (fl >= 0 && fcntl(STDIN_FILENO, F_SETFL, fl | O_NONBLOCK) == 0 &&
            vio_loop_add(&s.loop, &s.stdin_h, STDIN_FILENO, EPOLLIN, stdin_handler) == 0)
            s.stdin_watched = true;
    }
    ndev = s.nvdevs + o->nvme.n; /* virtio devices and NVMe controllers */
    vio_info("boot %u: %u vCPU%s, %llu MiB, %u device%s", s.boot, o->cpus, o->cpus == 1 ? "" : "s",
             (unsigned long long)(o->mem >> 20), ndev, ndev == 1 ? "" : "s");
    if (vio_vm_start(&s.vm) < 0)
        goto out;
    ret = vio_loop_run(&s.loop);
    if (ret < 0)
        vio_err("control loop failed: %s", strerror(-ret));
    result = (enum vio_vm_exit)atomic_load(&s.vm.exit_reason);
    if (result == VIO_VM_RUNNING)
        result = VIO_VM_ERROR;
out:
    session_teardown(&s);
    return result;
}

static void kvm_error(void)
{
    vio_err("cannot use /dev/kvm: %s", access("/dev/kvm", F_OK) < 0
                                           ? "it does not exist (load kvm-intel or kvm-amd, "
                                             "or enable nested virtualization)"
                                           : "open or probe failed (run as root or join "
                                             "the kvm group)");
}

static int run_main(const struct run_opts *op)
{
    struct run_opts o = *op; /* shares what parsing allocated; op's owner frees it */
    enum vio_vm_exit r;
    sigset_t sigs;
    int sigfd, ret;

    if (o.probe_only) {
        ret = vio_kvm_probe(&g.speed);
        if (ret < 0) {
            kvm_error();
            return 1;
        }
        printf("kvm %s %.1f ns-per-iteration%s\n", g.speed.slow ? "slow" : "native",
               g.speed.ns_per_iter, g.speed.pvm ? " kvm_pvm" : "");
        return 0;
    }
    if (check_kernel(o.kernel) < 0)
        return 2;
    if (o.initrd && access(o.initrd, R_OK) < 0) {
        vio_err("--initrd %s: %s", o.initrd, strerror(errno));
        return 2;
    }
    if (vio_vm_check_mem(o.mem) < 0)
        return 2;
    /* The switch and its uplinks before anything boots: a bad --uplink
     * spec is a command-line error, whether or not KVM works. */
    ret = vio_run_net_start(&o.net, &g.net);
    if (ret < 0)
        return ret == -EINVAL ? 2 : 1;
    if (vio_kvm_probe(&g.speed) < 0) {
        kvm_error();
        vio_run_net_stop(g.net);
        return 1;
    }
    g.speed_known = true;
    if (g.speed.slow)
        vio_warn("KVM runs guest kernel code at %.0f ns per loop iteration here; hardware "
                 "virtualization takes about 1 ns. %s Guest speed measured on this host is that "
                 "emulation's, not vio's.",
                 g.speed.ns_per_iter,
                 g.speed.pvm ? "This host's KVM (kvm_pvm) emulates guest kernel mode: a Linux "
                               "guest takes minutes to boot; use a host with nested "
                               "virtualization, or the nested rig (tests/rig)."
                             : "This KVM is itself emulated or nested (for example inside QEMU "
                               "TCG, as in the test rig).");
    else
        vio_info("KVM runs guest kernel code natively here (%.1f ns per loop iteration)",
                 g.speed.ns_per_iter);

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0) {
        vio_err("signalfd: %s", strerror(errno));
        vio_run_net_stop(g.net);
        return 1;
    }
    for (unsigned i = 0; i < o.nluns; i++) {
        if (keep_lun(o.luns[i]) < 0) {
            vio_err("out of memory");
            forget_luns();
            close(sigfd);
            vio_run_net_stop(g.net);
            return 1;
        }
    }
    setup_tty();
    for (;;) {
        r = run_once(&o, sigfd);
        vio_info("VM %s", vio_vm_exit_name(r));
        if (r != VIO_VM_REBOOT || o.no_reboot || g.quit)
            break;
        vio_info("rebooting");
    }
    close(sigfd);
    vio_run_net_stop(g.net);
    g.net = NULL;
    forget_luns();
    restore_tty();
    return r == VIO_VM_ERROR ? 1 : 0;
}

int vio_run_main(int argc, char **argv)
{
    struct run_opts o;
    int ret = parse_args(argc, argv, &o);

    if (ret)
        ret = ret > 0 ? 0 : 2;
    else
        ret = run_main(&o);
    vio_run_nvme_opts_free(&o.nvme);
    return ret;
}
