/* vio bench net: two virtio-net drivers in this process, over vhost-user.
 * One thread sends frames on the first device's transmit queue, another
 * receives them on the second device's receive queue, whatever is between
 * (vio serve's switch, DPDK testpmd forwarding between two vhost ports).
 * Reports received packets per second and Gbit/s in a timed window, loss,
 * and the back-end's CPU time. Frames are IPv4/UDP, or IPv4/TCP super-frames
 * with a GSO header (--tso) that the receiver takes whole (GUEST_TSO4) or
 * that the back-end segments. --size is the Ethernet frame as the driver
 * hands it over, without the FCS: 60 is a 64-byte frame on a wire. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/util.h"
#include "net/net.h"
#include "net/offload.h"
#include "net/virtio_net.h"
#include "vuser/vuser.h"


#define HDR_LEN   ((uint32_t)sizeof(struct vio_virtio_net_hdr))
#define RXQ       0
#define TXQ       1
#define TSO_MSS   1448


struct net_cfg {
    const char *tx_sock, *rx_sock;
    uint8_t tx_mac[6], rx_mac[6];
    uint32_t size;
    bool tso;
    double duration, ramp;
    uint16_t qsize;
    bool poll;
    bool json;
    pid_t backend;
};

enum { PH_RAMP, PH_MEASURE, PH_STOP };

struct side {
    pthread_t thread;
    const struct net_cfg *c;
    struct vio_vuser *d;
    struct vio_vuser_vq *q;
    int *phase;
    uint32_t buf_len;
    bool mrg;
    uint64_t pkts, bytes, bad; /* in the measuring window */
    uint64_t all_pkts;
    int ret;
};

static int phase_get(const struct side *s)
{
    return __atomic_load_n(s->phase, __ATOMIC_ACQUIRE);
}

static void idle(struct side *s)
{
    if (s->c->poll)
        __builtin_ia32_pause();
    else if (vio_vuser_wait(s->q, 50) < 0)
        s->ret = -EIO;
}

static void build_frame(const struct net_cfg *c, uint8_t *buf)
{
    struct vio_virtio_net_hdr *h = (struct vio_virtio_net_hdr *)buf;
    uint8_t *f = buf + HDR_LEN;
    uint32_t ip_len = c->size - 14;
    uint8_t proto = c->tso ? 6 : 17;

    memset(buf, 0, HDR_LEN + c->size);
    memcpy(f, c->rx_mac, 6);
    memcpy(f + 6, c->tx_mac, 6);
    f[12] = 0x08;
    f[13] = 0x00;
    uint8_t *ip = f + 14;
    ip[0] = 0x45;
    ip[2] = (uint8_t)(ip_len >> 8);
    ip[3] = (uint8_t)ip_len;
    ip[6] = 0x40; /* DF */
    ip[8] = 64;
    ip[9] = proto;
    uint8_t src[4] = {10, 99, 0, 1}, dst[4] = {10, 99, 0, 2};
    memcpy(ip + 12, src, 4);
    memcpy(ip + 16, dst, 4);
    uint16_t ck = vio_csum_fold(vio_csum_partial(ip, 20, 0));
    memcpy(ip + 10, &ck, 2);
    uint8_t *l4 = ip + 20;
    l4[0] = 0x30; /* source port 12345 */
    l4[1] = 0x39;
    l4[2] = 0x13; /* destination port 5001 */
    l4[3] = 0x89;
    for (uint32_t i = 54; i < c->size; i++)
        f[i] = (uint8_t)(i * 7);
    if (!c->tso) {
        uint16_t ulen = (uint16_t)(ip_len - 20);
        l4[4] = (uint8_t)(ulen >> 8);
        l4[5] = (uint8_t)ulen; /* checksum 0: none, allowed over IPv4 */
        return;
    }
    l4[4] = 0; /* sequence 1 */
    l4[7] = 1;
    l4[12] = 0x50; /* data offset 5 words */
    l4[13] = 0x18; /* PSH ACK */
    l4[14] = 0xff; /* window */
    l4[15] = 0xff;
    /* Partial checksum: the pseudo-header sum, finished by whoever
     * segments or by the receiver (NEEDS_CSUM). */
    uint32_t tcp_len = ip_len - 20;
    uint8_t ph[12];
    memcpy(ph, src, 4);
    memcpy(ph + 4, dst, 4);
    ph[8] = 0;
    ph[9] = 6;
    ph[10] = (uint8_t)(tcp_len >> 8);
    ph[11] = (uint8_t)tcp_len;
    uint16_t pck = (uint16_t)~vio_csum_fold(vio_csum_partial(ph, 12, 0));
    memcpy(l4 + 16, &pck, 2);
    h->flags = VIO_NET_HDR_F_NEEDS_CSUM;
    h->csum_start = vio_to_le16(34);
    h->csum_offset = vio_to_le16(16);
    if (c->size - 54 > TSO_MSS) {
        h->gso_type = VIO_NET_HDR_GSO_TCPV4;
        h->gso_size = vio_to_le16(TSO_MSS);
        h->hdr_len = vio_to_le16(54);
    }
}

static void *tx_main(void *arg)
{
    struct side *s = arg;
    const struct net_cfg *c = s->c;
    struct vio_vuser_buf *bufs = calloc(c->qsize, sizeof(*bufs));
    uint32_t len;
    void *cookie;
    int r;

    if (!bufs) {
        s->ret = -ENOMEM;
        return NULL;
    }
    for (unsigned i = 0; i < c->qsize; i++) {
        uint8_t *p = vio_vuser_alloc(s->d, HDR_LEN + c->size, 64, &bufs[i].gpa);
        if (!p) {
            s->ret = -ENOMEM;
            goto out;
        }
        bufs[i].len = HDR_LEN + c->size;
        build_frame(c, p);
        if (vio_vuser_add(s->q, &bufs[i], 1, 0, &bufs[i]) < 0)
            break;
    }
    vio_vuser_kick(s->q);
    if (c->poll)
        vio_vuser_set_interrupts(s->q, false);
    int ph;
    while ((ph = phase_get(s)) != PH_STOP && s->ret == 0) {
        unsigned got = 0;
        while ((r = vio_vuser_get(s->q, &len, &cookie)) > 0) {
            got++;
            s->all_pkts++;
            if (ph == PH_MEASURE) {
                s->pkts++;
                s->bytes += c->size;
            }
            vio_vuser_add(s->q, cookie, 1, 0, cookie);
        }
        if (r < 0)
            s->ret = r;
        if (got)
            vio_vuser_kick(s->q);
        else
            idle(s);
    }
out:
    free(bufs);
    return NULL;
}

static int rx_post(struct side *s, struct vio_vuser_buf *b)
{
    return vio_vuser_add(s->q, b, 0, 1, b);
}

static void *rx_main(void *arg)
{
    struct side *s = arg;
    const struct net_cfg *c = s->c;
    struct vio_vuser_buf *bufs = calloc(c->qsize, sizeof(*bufs));
    unsigned pending = 0; /* buffers still to come for the current packet */
    uint32_t len;
    void *cookie;
    int r;

    if (!bufs) {
        s->ret = -ENOMEM;
        return NULL;
    }
    for (unsigned i = 0; i < c->qsize; i++) {
        if (!vio_vuser_alloc(s->d, s->buf_len, 64, &bufs[i].gpa)) {
            s->ret = -ENOMEM;
            goto out;
        }
        bufs[i].len = s->buf_len;
        rx_post(s, &bufs[i]);
    }
    vio_vuser_kick(s->q);
    if (c->poll)
        vio_vuser_set_interrupts(s->q, false);
    int ph;
    while ((ph = phase_get(s)) != PH_STOP && s->ret == 0) {
        unsigned got = 0;
        while ((r = vio_vuser_get(s->q, &len, &cookie)) > 0) {
            struct vio_vuser_buf *b = cookie;
            uint8_t *p = vio_vuser_ptr(s->d, b->gpa, b->len);
            got++;
            if (pending == 0) {
                /* First buffer of a packet: header, then the frame. */
                struct vio_virtio_net_hdr h;
                memcpy(&h, p, sizeof(h));
                unsigned nb = s->mrg ? vio_le16(h.num_buffers) : 1;
                bool ok = len >= HDR_LEN + 14 && nb >= 1 && memcmp(p + HDR_LEN, c->rx_mac, 6) == 0 &&
                          memcmp(p + HDR_LEN + 6, c->tx_mac, 6) == 0;
                pending = nb ? nb - 1 : 0;
                s->all_pkts++;
                if (ph == PH_MEASURE) {
                    s->pkts++;
                    if (ok)
                        s->bytes += len - HDR_LEN;
                    else
                        s->bad++; /* also a used length shorter than a header */
                }
            } else {
                pending--;
                if (ph == PH_MEASURE)
                    s->bytes += len;
            }
            rx_post(s, b);
        }
        if (r < 0)
            s->ret = r;
        if (got)
            vio_vuser_kick(s->q);
        else
            idle(s);
    }
out:
    free(bufs);
    return NULL;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char tail;
    if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
        return -EINVAL;
    for (int i = 0; i < 6; i++) {
        if (v[i] > 255)
            return -EINVAL;
        mac[i] = (uint8_t)v[i];
    }
    return mac[0] & 1 ? -EINVAL : 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vio bench net --tx PATH --rx PATH [options]\n"
            "\n"
            "Send frames as the virtio-net driver of the vhost-user device at --tx and\n"
            "receive them as the driver of the one at --rx.\n"
            "  --tx-mac MAC, --rx-mac MAC  the two ports' MACs (source and destination of\n"
            "                      every frame; default 52:54:00:00:00:01 and :02)\n"
            "  --size BYTES        frame length without FCS, 60..65549 (default 60, a\n"
            "                      64-byte frame on a wire)\n"
            "  --tso               TCP frames with a GSO header (MSS 1448) instead of UDP\n"
            "  --duration SECONDS  measuring window (default 5)\n"
            "  --ramp SECONDS      run this long before measuring (default 1)\n"
            "  --queue-size N      ring entries (default 256)\n"
            "  --poll              poll the rings instead of sleeping on interrupts\n"
            "  --backend-pid PID   report this process's CPU time and rates per its CPU-second\n"
            "  --json              one JSON object instead of key=value\n");
}

static int parse(int argc, char **argv, struct net_cfg *c)
{
    static const struct option lo[] = {
        {"tx", required_argument, NULL, 't'},       {"rx", required_argument, NULL, 'r'},
        {"tx-mac", required_argument, NULL, 'T'},   {"rx-mac", required_argument, NULL, 'M'},
        {"size", required_argument, NULL, 's'},     {"tso", no_argument, NULL, 'g'},
        {"duration", required_argument, NULL, 'd'}, {"ramp", required_argument, NULL, 'R'},
        {"queue-size", required_argument, NULL, 'q'}, {"poll", no_argument, NULL, 'p'},
        {"backend-pid", required_argument, NULL, 'P'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    uint64_t v;
    int opt;

    *c = (struct net_cfg){.size = 60, .duration = 5, .ramp = 1, .qsize = 256,
                          .tx_mac = {0x52, 0x54, 0, 0, 0, 1}, .rx_mac = {0x52, 0x54, 0, 0, 0, 2}};
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (opt) {
        case 't':
            c->tx_sock = optarg;
            break;
        case 'r':
            c->rx_sock = optarg;
            break;
        case 'T':
        case 'M':
            if (parse_mac(optarg, opt == 'T' ? c->tx_mac : c->rx_mac) < 0) {
                fprintf(stderr, "vio bench net: bad unicast MAC '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case 's':
            if (vio_parse_size(optarg, &v) < 0 || v < 60 || v > 65549) {
                fprintf(stderr, "vio bench net: --size must be 60..65549\n");
                return -EINVAL;
            }
            c->size = (uint32_t)v;
            break;
        case 'g':
            c->tso = true;
            break;
        case 'd':
        case 'R':
            if (bench_parse_seconds(optarg, opt == 'd' ? &c->duration : &c->ramp) < 0) {
                fprintf(stderr, "vio bench net: bad time '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case 'q':
            if (vio_parse_size(optarg, &v) < 0 || v < 8 || v > 4096 || !vio_is_pow2(v)) {
                fprintf(stderr, "vio bench net: --queue-size must be a power of two, 8..4096\n");
                return -EINVAL;
            }
            c->qsize = (uint16_t)v;
            break;
        case 'p':
            c->poll = true;
            break;
        case 'P':
            if (vio_parse_size(optarg, &v) < 0 || v == 0 || v > 0x7fffffff) {
                fprintf(stderr, "vio bench net: bad --backend-pid '%s'\n", optarg);
                return -EINVAL;
            }
            c->backend = (pid_t)v;
            break;
        case 'j':
            c->json = true;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "vio bench net: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if (!c->tx_sock || !c->rx_sock) {
        fprintf(stderr, "vio bench net: --tx PATH and --rx PATH are required\n");
        return -EINVAL;
    }
    if (memcmp(c->tx_mac, c->rx_mac, 6) == 0) {
        fprintf(stderr, "vio bench net: --tx-mac and --rx-mac must differ\n");
        return -EINVAL;
    }
    if (c->tso && c->size < 54 + 1) {
        fprintf(stderr, "vio bench net: --tso needs a --size above 54\n");
        return -EINVAL;
    }
    if (!c->tso && c->size > 1514) {
        fprintf(stderr, "vio bench net: frames above 1514 bytes need --tso\n");
        return -EINVAL;
    }
    return 0;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

int vio_bench_net_main(int argc, char **argv)
{
    struct net_cfg c;
    struct side tx = {0}, rx = {0};
    int phase = PH_RAMP, ret, rc = 1;
    bool tx_started = false, rx_started = false;
    double cpu0 = -1, cpu1 = -1, self0 = 0, self1 = 0;
    uint64_t t0 = 0, t1 = 0;

    ret = parse(argc, argv, &c);
    if (ret)
        return ret > 0 ? 0 : 2;
    uint32_t frame = HDR_LEN + c.size;
    struct vio_vuser_opts to = {
        .sock = c.tx_sock,
        .mem_bytes = (uint64_t)c.qsize * ((frame + 63) & ~63u) * 2 + (4 << 20),
        .want_features = VIO_BIT(NET_F_CSUM) | (c.tso ? VIO_BIT(NET_F_HOST_TSO4) : 0),
        .nqueues = 2,
        .qsize = c.qsize,
        .event_idx = true,
    };
    struct vio_vuser_opts ro = to;
    ro.sock = c.rx_sock;
    ro.want_features = VIO_BIT(NET_F_MRG_RXBUF) | VIO_BIT(NET_F_GUEST_CSUM) |
                       (c.tso ? VIO_BIT(NET_F_GUEST_TSO4) : 0);
    ro.mem_bytes = (uint64_t)c.qsize * 65600 + (4 << 20);

    ret = vio_vuser_open(&to, &tx.d);
    if (ret < 0) {
        fprintf(stderr, "vio bench net: %s: %s\n", c.tx_sock, strerror(-ret));
        goto out;
    }
    if (c.tso && !(vio_vuser_features(tx.d) & VIO_BIT(NET_F_HOST_TSO4))) {
        fprintf(stderr, "vio bench net: %s does not take TSO frames (no HOST_TSO4)\n", c.tx_sock);
        goto out;
    }
    ret = vio_vuser_open(&ro, &rx.d);
    if (ret < 0) {
        fprintf(stderr, "vio bench net: %s: %s\n", c.rx_sock, strerror(-ret));
        goto out;
    }
    rx.mrg = vio_vuser_features(rx.d) & VIO_BIT(NET_F_MRG_RXBUF);
    bool big = c.tso && (vio_vuser_features(rx.d) & VIO_BIT(NET_F_GUEST_TSO4));
    rx.buf_len = rx.mrg ? (big ? 4096 : 2048) : (big ? 65562 : 1526);
    tx.c = rx.c = &c;
    tx.phase = rx.phase = &phase;
    tx.q = vio_vuser_vq(tx.d, TXQ);
    rx.q = vio_vuser_vq(rx.d, RXQ);

    if (pthread_create(&rx.thread, NULL, rx_main, &rx) != 0)
        goto stop;
    rx_started = true;
    if (pthread_create(&tx.thread, NULL, tx_main, &tx) != 0)
        goto stop;
    tx_started = true;
    sleep_s(c.ramp);
    cpu0 = bench_proc_cpu(c.backend);
    self0 = bench_self_cpu();
    t0 = vio_now_ns();
    __atomic_store_n(&phase, PH_MEASURE, __ATOMIC_RELEASE);
    sleep_s(c.duration);
    __atomic_store_n(&phase, PH_STOP, __ATOMIC_RELEASE);
    t1 = vio_now_ns();
    cpu1 = bench_proc_cpu(c.backend);
    self1 = bench_self_cpu();
stop:
    __atomic_store_n(&phase, PH_STOP, __ATOMIC_RELEASE);
    if (tx_started)
        pthread_join(tx.thread, NULL);
    if (rx_started)
        pthread_join(rx.thread, NULL);
    if (!tx_started || !rx_started) {
        fprintf(stderr, "vio bench net: cannot start a thread\n");
        goto out;
    }
    double secs = (double)(t1 - t0) / 1e9;
    double bcpu = (cpu0 >= 0 && cpu1 >= 0) ? cpu1 - cpu0 : -1;
    struct bench_out o;
    bench_out_begin(&o, c.json, "net");
    bench_out_u64(&o, "size", c.size);
    bench_out_str(&o, "tso", c.tso ? "on" : "off");
    bench_out_f(&o, "seconds", secs);
    bench_out_u64(&o, "tx_packets", tx.pkts);
    bench_out_u64(&o, "rx_packets", rx.pkts);
    bench_out_u64(&o, "rx_bad", rx.bad);
    bench_out_f(&o, "tx_pps", (double)tx.pkts / secs);
    bench_out_f(&o, "rx_pps", (double)rx.pkts / secs);
    bench_out_f(&o, "rx_gbit_s", (double)rx.bytes * 8 / secs / 1e9);
    if (c.backend) {
        bench_out_f(&o, "backend_cpu_s", bcpu);
        bench_out_f(&o, "pps_per_backend_cpu_s", bcpu > 0 ? (double)rx.pkts / bcpu : -1.0 / 0.0);
        bench_out_f(&o, "gbit_per_backend_cpu_s",
                    bcpu > 0 ? (double)rx.bytes * 8 / 1e9 / bcpu : -1.0 / 0.0);
    }
    bench_out_f(&o, "driver_cpu_s", self1 - self0);
    bench_out_u64(&o, "tx_kicks", tx.q->kicks);
    bench_out_u64(&o, "rx_kicks", rx.q->kicks);
    bench_out_end(&o);
    if (tx.ret < 0 || rx.ret < 0)
        fprintf(stderr, "vio bench net: %s\n", strerror(-(tx.ret < 0 ? tx.ret : rx.ret)));
    if (rx.pkts == 0)
        fprintf(stderr, "vio bench net: nothing arrived at %s\n", c.rx_sock);
    if (rx.bad)
        fprintf(stderr, "vio bench net: %llu frames arrived with the wrong addresses\n",
                (unsigned long long)rx.bad);
    rc = (tx.ret < 0 || rx.ret < 0 || rx.pkts == 0 || rx.bad) ? 1 : 0;
out:
    vio_vuser_close(tx.d);
    vio_vuser_close(rx.d);
    return rc;
}
