/* Unit tests of the user-mode NAT uplink (src/net/slirp.c, uplink.c): a
 * switch pumped by hand with a fake VM port next to the slirp uplink.
 * DHCP gives 10.0.2.15, ARP for the gateway is answered, UDP to the gateway
 * reaches a socket on the host's loopback and its answer comes back, a
 * hostfwd connection arrives as a TCP SYN; malformed frames and bad specs
 * are refused without harm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/workers.h"
#include "net/net.h"
#include "net/switch.h"
#include "net/uplink.h"

#define FAKE_MAX  256
#define FRAME_MAX 2048

struct frame {
    uint32_t len;
    uint8_t d[FRAME_MAX];
};

/* The VM side: records what the switch delivers. */
struct fake {
    struct vio_net_port port;
    unsigned n;
    struct frame *f;
    /* Called after a frame is recorded, still inside deliver(). */
    void (*hook)(struct fake *f, const struct frame *fr);
};

struct rig {
    struct vio_loop loop;
    struct vio_switch *sw;
    struct fake vm;
    struct vio_uplink *u;
};

static const uint8_t vm_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
/* slirp's gateway answers as 52:55 followed by its IPv4 address. */
static const uint8_t gw_mac[6] = {0x52, 0x55, 10, 0, 2, 2};

static int fake_deliver(struct vio_net_port *p, const struct vio_pkt *pkt)
{
    struct fake *f = p->opaque;
    struct frame *fr;

    if (f->n == FAKE_MAX)
        return -ENOBUFS;
    fr = &f->f[f->n++];
    fr->len = (uint32_t)vio_pkt_read(pkt, 0, fr->d, sizeof(fr->d));
    assert_int_equal(fr->len, pkt->len);
    if (f->hook)
        f->hook(f, fr);
    return 0;
}

static const struct vio_net_port_ops fake_ops = {.kind = "fake", .deliver = fake_deliver};

static void rig_init(struct rig *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(vio_loop_init(&r->loop), 0);
    assert_int_equal(vio_switch_create(&r->loop, "sw0", &r->sw), 0);
    r->vm.f = calloc(FAKE_MAX, sizeof(struct frame));
    assert_non_null(r->vm.f);
    vio_net_port_init(&r->vm.port, &fake_ops, &r->vm, "vm0", vm_mac, 0);
    assert_int_equal(vio_switch_attach(r->sw, &r->vm.port), 0);
}

static void rig_fini(struct rig *r)
{
    vio_uplink_destroy(r->u);
    vio_switch_detach(&r->vm.port);
    vio_switch_destroy(r->sw);
    vio_loop_destroy(&r->loop);
    free(r->vm.f);
}

static void send_frame(struct rig *r, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    struct vio_pkt pkt = {.iov = &iov, .iovcnt = 1, .len = (uint32_t)len};

    vio_switch_input(&r->vm.port, &pkt);
}

/* ---- Frame building and parsing. ---- */

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (len & 1)
        sum += (uint32_t)(p[len - 1] << 8);
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
    return (uint32_t)a << 24 | (uint32_t)b << 16 | (uint32_t)c << 8 | d;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)get16(p) << 16 | get16(p + 2);
}

/* Ethernet + IPv4 + UDP around @payload into @buf; returns the length. */
static size_t build_udp(uint8_t *buf, const uint8_t *dst_mac, uint32_t src, uint32_t dst,
                        uint16_t sport, uint16_t dport, const void *payload, size_t plen)
{
    uint8_t *ip = buf + 14, *udp = ip + 20, pseudo[12];
    size_t ulen = 8 + plen;

    memcpy(buf, dst_mac, 6);
    memcpy(buf + 6, vm_mac, 6);
    put16(buf + 12, VIO_ETH_P_IP);
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + ulen));
    put16(ip + 4, 0x1234);
    ip[8] = 64;
    ip[9] = 17;
    put32(ip + 12, src);
    put32(ip + 16, dst);
    put16(ip + 10, fold(sum16(ip, 20, 0)));
    put16(udp, sport);
    put16(udp + 2, dport);
    put16(udp + 4, (uint16_t)ulen);
    put16(udp + 6, 0);
    memcpy(udp + 8, payload, plen);
    memcpy(pseudo, ip + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = 17;
    put16(pseudo + 10, (uint16_t)ulen);
    uint16_t c = fold(sum16(udp, ulen, sum16(pseudo, 12, 0)));
    put16(udp + 6, c ? c : 0xffff);
    return 14 + 20 + ulen;
}

static size_t build_arp_request(uint8_t *buf, uint32_t sip, uint32_t tip)
{
    uint8_t *a = buf + 14;

    memcpy(buf, bcast, 6);
    memcpy(buf + 6, vm_mac, 6);
    put16(buf + 12, VIO_ETH_P_ARP);
    put16(a, 1);
    put16(a + 2, VIO_ETH_P_IP);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, 1);
    memcpy(a + 8, vm_mac, 6);
    put32(a + 14, sip);
    memset(a + 18, 0, 6);
    put32(a + 24, tip);
    memset(a + 28, 0, 18); /* pad to 60 bytes */
    return 60;
}

/* An IPv4 frame to us: returns the IP header or NULL. Checks the header
 * checksum and that the lengths fit the frame. */
static const uint8_t *ipv4_of(const struct frame *f, uint8_t proto)
{
    const uint8_t *ip = f->d + 14;
    unsigned ihl;

    if (f->len < 34 || get16(f->d + 12) != VIO_ETH_P_IP || (ip[0] >> 4) != 4)
        return NULL;
    ihl = (ip[0] & 15u) * 4;
    if (ihl < 20 || 14 + ihl > f->len || get16(ip + 2) > f->len - 14 || ip[9] != proto)
        return NULL;
    assert_int_equal(fold(sum16(ip, ihl, 0)), 0);
    return ip;
}

/* A frame with a UDP datagram from @sport to @dport; -1 if none. */
static int find_udp(const struct fake *f, uint16_t sport, uint16_t dport)
{
    for (unsigned i = 0; i < f->n; i++) {
        const uint8_t *ip = ipv4_of(&f->f[i], 17), *udp;

        if (!ip)
            continue;
        udp = ip + (ip[0] & 15) * 4;
        if (get16(udp) == sport && get16(udp + 2) == dport)
            return (int)i;
    }
    return -1;
}

static void check_udp_csum(const uint8_t *ip)
{
    const uint8_t *udp = ip + (ip[0] & 15) * 4;
    uint16_t ulen = get16(udp + 4);
    uint8_t pseudo[12];

    if (get16(udp + 6) == 0)
        return; /* no checksum is allowed over IPv4 */
    memcpy(pseudo, ip + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = 17;
    put16(pseudo + 10, ulen);
    assert_int_equal(fold(sum16(udp, ulen, sum16(pseudo, 12, 0))), 0);
}

static bool pump_until(struct rig *r, int ms, bool (*done)(struct rig *r, void *arg), void *arg)
{
    for (int waited = 0; waited < ms; waited += 10) {
        if (done(r, arg))
            return true;
        assert_true(vio_loop_run_once(&r->loop, 10) >= 0);
    }
    return done(r, arg);
}

/* ---- Tests. ---- */

static void test_bad_specs(void **state)
{
    static const char *const bad[] = {
        "",
        ",,,",
        "=",
        "id=nat0",
        "type=slirp",
        "type=slirp,id=",
        "type=,id=x",
        "type=SLIRP,id=x",
        "type=nope,id=x",
        "type=slirp,type=slirp,id=x",
        "type=slirp,id=abcdefghijklmnopqrstuvwxyz0123456789",
        "type=slirp,id=x,vlan=4095",
        "type=slirp,id=x,vlan=-1",
        "type=slirp,id=x,vlan=1x",
        "type=slirp,id=x,vlan=",
        "type=slirp,id=x,vlan",
        "type=slirp,id=x,bogus=1",
        "type=slirp,id=x,vni=4",
        "type=slirp,id=x,net=10.0.2.0",
        "type=slirp,id=x,net=10.0.2.0/",
        "type=slirp,id=x,net=10.0.2.0/28",
        "type=slirp,id=x,net=10.0.2.0/0",
        "type=slirp,id=x,net=10.0.2.1/24",
        "type=slirp,id=x,net=300.0.2.0/24",
        "type=slirp,id=x,net=/24",
        "type=slirp,id=x,net",
        "type=slirp,id=x,restrict=maybe",
        "type=slirp,id=x,hostfwd=",
        "type=slirp,id=x,hostfwd",
        "type=slirp,id=x,hostfwd=tcp:127.0.0.1:8080",
        "type=slirp,id=x,hostfwd=sctp:127.0.0.1:8080-:80",
        "type=slirp,id=x,hostfwd=tcp:127.0.0.1:0-:80",
        "type=slirp,id=x,hostfwd=tcp:127.0.0.1:70000-:80",
        "type=slirp,id=x,hostfwd=tcp:127.0.0.1:8080-:0",
        "type=slirp,id=x,hostfwd=tcp:127.0.0.1:-:80",
        "type=slirp,id=x,hostfwd=tcp:1.2.3:8080-:80",
        "type=slirp,id=x,hostfwd=tcp:127.0.0.1:8080-10.0.3.15:22",
        "type=slirp,id=x,hostfwd=tcp:127.0.0.1:8080-10.0.2.2:22",
        "type=slirp,id=x,hostfwd=tcp:127.0.0.1:8080-10.0.2.3:22",
        "type=slirp,id=x,hostfwd=tcp:127.0.0.1:8080-10.0.2.0:22",
        "type=slirp,id=x,hostfwd=tcp:127.0.0.1:8080-10.0.2.255:22",
        "type=slirp,id=x,hostfwd=tcp::8080-:22;",
        "type=slirp,id=x,hostfwd=;tcp::8080-:22",
        "type=slirp,id=x,hostfwd=tcp::8080-:22;;udp::53-:53",
        "type=slirp,id=x,hostfwd=tcp::8080-:22,hostfwd=tcp::8081-:23",
        "type=slirp,id=x,hostfwd=tcp:[::1]:8080-:22",
        "type=slirp,id=x,hostfwd=tcp:::8080-:22",
    };
    struct rig r;

    (void)state;
    rig_init(&r);
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vio_uplink *u = NULL;
        int ret = vio_uplink_create(r.sw, bad[i], &u);

        if (ret != -EINVAL)
            fail_msg("spec '%s': expected -EINVAL, got %d", bad[i], ret);
        assert_null(u);
        assert_null(vio_switch_find(r.sw, "x"));
    }
    assert_int_equal(vio_uplink_create(r.sw, NULL, &r.u), -EINVAL);
    assert_null(r.u);
    /* A very long spec of junk. */
    char *junk = malloc(20000);
    assert_non_null(junk);
    for (int i = 0; i < 19999; i++)
        junk[i] = (char)(" ,=;:-/[]ax0"[i % 12]);
    junk[19999] = '\0';
    assert_int_equal(vio_uplink_create(r.sw, junk, &r.u), -EINVAL);
    memcpy(junk, "type=slirp,id=x,hostfwd=", 24);
    assert_int_equal(vio_uplink_create(r.sw, junk, &r.u), -EINVAL);
    free(junk);
    rig_fini(&r);
}

static void test_good_specs_and_lifecycle(void **state)
{
    static const char *const good[] = {
        "type=slirp,id=x",
        "type=slirp,id=x,vlan=7,restrict=on",
        "type=slirp,id=x,net=192.168.77.0/27",
        "type=slirp,id=x,net=172.16.0.0/12",
    };
    struct rig r;

    (void)state;
    rig_init(&r);
    for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int ret = vio_uplink_create(r.sw, good[i], &r.u);

        if (ret == -EADDRINUSE)
            continue;
        if (ret != 0)
            fail_msg("spec '%s': expected success, got %d", good[i], ret);
        assert_ptr_equal(vio_switch_find(r.sw, "x"), vio_uplink_port(r.u));
        assert_string_equal(vio_uplink_port(r.u)->ops->kind, "slirp");
        /* A second port with the same id is refused. */
        struct vio_uplink *dup = NULL;
        assert_int_equal(vio_uplink_create(r.sw, "type=slirp,id=x", &dup), -EEXIST);
        assert_null(dup);
        vio_loop_run_once(&r.loop, 0);
        json_t *st = vio_net_port_stats(vio_uplink_port(r.u));
        assert_non_null(json_object_get(st, "net"));
        json_decref(st);
        vio_uplink_destroy(r.u);
        r.u = NULL;
        assert_null(vio_switch_find(r.sw, "x"));
    }
    rig_fini(&r);
}

static int free_port(int type)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, type, 0), port;

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void test_hostfwd_port_busy(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    char spec[128];
    struct rig r;
    int fd;

    (void)state;
    rig_init(&r);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    snprintf(spec, sizeof(spec), "type=slirp,id=x,hostfwd=tcp:127.0.0.1:%u-:22", ntohs(a.sin_port));
    assert_int_equal(vio_uplink_create(r.sw, spec, &r.u), -EADDRINUSE);
    assert_null(r.u);
    assert_null(vio_switch_find(r.sw, "x"));
    close(fd);
    rig_fini(&r);
}

static bool have_syn(struct rig *r, void *arg)
{
    uint16_t gport = *(uint16_t *)arg;

    for (unsigned i = 0; i < r->vm.n; i++) {
        const struct frame *f = &r->vm.f[i];
        const uint8_t *ip;

        /* Answer slirp's ARP for the guest, should it ask. */
        if (f->len >= 42 && get16(f->d + 12) == VIO_ETH_P_ARP && get16(f->d + 20) == 1 &&
            get32(f->d + 38) == ip4(10, 0, 2, 15)) {
            uint8_t rep[60] = {0};

            memcpy(rep, f->d + 6, 6);
            memcpy(rep + 6, vm_mac, 6);
            put16(rep + 12, VIO_ETH_P_ARP);
            memcpy(rep + 14, f->d + 14, 6);
            put16(rep + 20, 2);
            memcpy(rep + 22, vm_mac, 6);
            put32(rep + 28, ip4(10, 0, 2, 15));
            memcpy(rep + 32, f->d + 22, 10);
            r->vm.f[i].len = 0; /* answered */
            send_frame(r, rep, sizeof(rep));
            continue;
        }
        ip = ipv4_of(f, 6);
        if (!ip)
            continue;
        const uint8_t *tcp = ip + (ip[0] & 15) * 4;
        if (get32(ip + 16) == ip4(10, 0, 2, 15) && get16(tcp + 2) == gport &&
            (tcp[13] & 0x12) == 0x02 && memcmp(f->d, vm_mac, 6) == 0)
            return true;
    }
    return false;
}

struct udp_wait {
    uint16_t sport, dport;
};

static bool have_udp(struct rig *r, void *arg)
{
    struct udp_wait *w = arg;

    return find_udp(&r->vm, w->sport, w->dport) >= 0;
}

static void test_nat_data_path(void **state)
{
    uint8_t buf[600], dhcp[300] = {0};
    struct rig r;
    char spec[160];
    int hport = free_port(SOCK_STREAM), uhport = free_port(SOCK_DGRAM), idx;
    uint16_t gport = 2222;

    (void)state;
    rig_init(&r);
    snprintf(spec, sizeof(spec),
             "type=slirp,id=nat0,hostfwd=tcp:127.0.0.1:%d-:%u;udp:127.0.0.1:%d-10.0.2.15:5353",
             hport, gport, uhport);
    assert_int_equal(vio_uplink_create(r.sw, spec, &r.u), 0);

    /* DHCP DISCOVER -> OFFER of 10.0.2.15. */
    dhcp[0] = 1; /* BOOTREQUEST */
    dhcp[1] = 1;
    dhcp[2] = 6;
    put32(dhcp + 4, 0xdeadbeef);
    put16(dhcp + 10, 0x8000);
    memcpy(dhcp + 28, vm_mac, 6);
    put32(dhcp + 236, 0x63825363);
    dhcp[240] = 53; /* DHCP message type */
    dhcp[241] = 1;
    dhcp[242] = 1; /* DISCOVER */
    dhcp[243] = 255;
    size_t len = build_udp(buf, bcast, 0, 0xffffffff, 68, 67, dhcp, sizeof(dhcp));
    send_frame(&r, buf, len);
    struct udp_wait w = {67, 68};
    assert_true(pump_until(&r, 2000, have_udp, &w));
    idx = find_udp(&r.vm, 67, 68);
    {
        const struct frame *f = &r.vm.f[idx];
        const uint8_t *ip = ipv4_of(f, 17), *bootp = ip + 28;
        bool offer = false;

        assert_memory_equal(f->d + 6, gw_mac, 6);
        check_udp_csum(ip);
        assert_int_equal(bootp[0], 2); /* BOOTREPLY */
        assert_int_equal(get32(bootp + 4), 0xdeadbeef);
        assert_int_equal(get32(bootp + 16), ip4(10, 0, 2, 15)); /* yiaddr */
        assert_int_equal(get32(bootp + 236), 0x63825363);
        for (size_t o = 240; o + 2 < f->len - 42 && bootp[o] != 255;) {
            if (bootp[o] == 0) {
                o++;
                continue;
            }
            if (bootp[o] == 53 && bootp[o + 2] == 2)
                offer = true;
            o += 2u + bootp[o + 1];
        }
        assert_true(offer);
    }

    /* ARP who-has 10.0.2.2 -> the gateway answers. */
    r.vm.n = 0;
    len = build_arp_request(buf, ip4(10, 0, 2, 15), ip4(10, 0, 2, 2));
    send_frame(&r, buf, len);
    assert_true(r.vm.n >= 1);
    {
        const struct frame *f = &r.vm.f[0];

        assert_true(f->len >= 42);
        assert_memory_equal(f->d, vm_mac, 6);
        assert_int_equal(get16(f->d + 12), VIO_ETH_P_ARP);
        assert_int_equal(get16(f->d + 20), 2); /* reply */
        assert_memory_equal(f->d + 22, gw_mac, 6);
        assert_int_equal(get32(f->d + 28), ip4(10, 0, 2, 2));
        assert_memory_equal(f->d + 32, vm_mac, 6);
        assert_int_equal(get32(f->d + 38), ip4(10, 0, 2, 15));
    }

    /* UDP to 10.0.2.2:P reaches 127.0.0.1:P; the answer comes back. */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)}, from;
    socklen_t alen = sizeof(a);
    int us = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(us >= 0);
    assert_int_equal(bind(us, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(us, (struct sockaddr *)&a, &alen), 0);
    uint16_t uport = ntohs(a.sin_port);
    r.vm.n = 0;
    len = build_udp(buf, gw_mac, ip4(10, 0, 2, 15), ip4(10, 0, 2, 2), 40000, uport, "ping", 4);
    send_frame(&r, buf, len);
    struct pollfd pfd = {.fd = us, .events = POLLIN};
    for (int i = 0; i < 200 && poll(&pfd, 1, 0) == 0; i++)
        vio_loop_run_once(&r.loop, 10);
    char got[16];
    alen = sizeof(from);
    ssize_t n = recvfrom(us, got, sizeof(got), MSG_DONTWAIT, (struct sockaddr *)&from, &alen);
    assert_int_equal(n, 4);
    assert_memory_equal(got, "ping", 4);
    assert_int_equal(sendto(us, "pong!", 5, 0, (struct sockaddr *)&from, alen), 5);
    w = (struct udp_wait){uport, 40000};
    assert_true(pump_until(&r, 2000, have_udp, &w));
    {
        const struct frame *f = &r.vm.f[find_udp(&r.vm, uport, 40000)];
        const uint8_t *ip = ipv4_of(f, 17), *udp = ip + (ip[0] & 15) * 4;

        assert_memory_equal(f->d, vm_mac, 6);
        assert_memory_equal(f->d + 6, gw_mac, 6);
        assert_int_equal(get32(ip + 12), ip4(10, 0, 2, 2));
        assert_int_equal(get32(ip + 16), ip4(10, 0, 2, 15));
        assert_int_equal(get16(udp + 4), 8 + 5);
        assert_memory_equal(udp + 8, "pong!", 5);
        check_udp_csum(ip);
    }
    close(us);

    /* hostfwd: a connection to 127.0.0.1:hport becomes a SYN to :2222. */
    r.vm.n = 0;
    int ts = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(ts >= 0);
    a.sin_port = htons((uint16_t)hport);
    int cret = connect(ts, (struct sockaddr *)&a, sizeof(a));
    assert_true(cret == 0 || errno == EINPROGRESS);
    assert_true(pump_until(&r, 3000, have_syn, &gport));
    close(ts);

    /* UDP hostfwd: a datagram to 127.0.0.1:uhport reaches 10.0.2.15:5353. */
    r.vm.n = 0;
    us = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(us >= 0);
    a.sin_port = htons((uint16_t)uhport);
    assert_int_equal(sendto(us, "fwd", 3, 0, (struct sockaddr *)&a, sizeof(a)), 3);
    alen = sizeof(a);
    assert_int_equal(getsockname(us, (struct sockaddr *)&a, &alen), 0);
    w = (struct udp_wait){ntohs(a.sin_port), 5353};
    assert_true(pump_until(&r, 2000, have_udp, &w));
    {
        const struct frame *f = &r.vm.f[find_udp(&r.vm, w.sport, 5353)];
        const uint8_t *ip = ipv4_of(f, 17), *udp = ip + (ip[0] & 15) * 4;

        assert_int_equal(get32(ip + 16), ip4(10, 0, 2, 15));
        assert_memory_equal(udp + 8, "fwd", 3);
        check_udp_csum(ip);
    }
    close(us);

    json_t *st = vio_net_port_stats(vio_uplink_port(r.u));
    assert_int_equal(json_integer_value(json_object_get(st, "tx_drop_bad")), 0);
    /* Into slirp: DISCOVER, ARP, UDP; out of it: OFFER, ARP, UDP, SYN. */
    assert_true(json_integer_value(json_object_get(st, "rx_packets")) >= 3);
    assert_true(json_integer_value(json_object_get(st, "tx_packets")) >= 4);
    json_decref(st);
    rig_fini(&r);
}

static void test_restricted(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    uint8_t buf[200];
    struct rig r;
    char got[8];

    (void)state;
    rig_init(&r);
    assert_int_equal(vio_uplink_create(r.sw, "type=slirp,id=nat0,restrict=on", &r.u), 0);
    int us = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(us >= 0);
    assert_int_equal(bind(us, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(us, (struct sockaddr *)&a, &alen), 0);
    size_t len = build_arp_request(buf, ip4(10, 0, 2, 15), ip4(10, 0, 2, 2));
    send_frame(&r, buf, len);
    len = build_udp(buf, gw_mac, ip4(10, 0, 2, 15), ip4(10, 0, 2, 2), 40000, ntohs(a.sin_port),
                    "ping", 4);
    send_frame(&r, buf, len);
    for (int i = 0; i < 20; i++)
        vio_loop_run_once(&r.loop, 10);
    /* Nothing leaves a restricted network. */
    assert_int_equal(recv(us, got, sizeof(got), MSG_DONTWAIT), -1);
    close(us);
    rig_fini(&r);
}

/* A VM that answers the first UDP frame it gets at once, from inside
 * deliver(), with an ARP request: the switch queues it and hands it to
 * slirp while slirp is still running its poll pass. */
static void arp_back(struct fake *f, const struct frame *fr)
{
    uint8_t buf[60];
    size_t len;

    if (!ipv4_of(fr, 17))
        return;
    f->hook = NULL;
    len = build_arp_request(buf, ip4(10, 0, 2, 15), ip4(10, 0, 2, 3));
    struct iovec iov = {buf, len};
    struct vio_pkt pkt = {.iov = &iov, .iovcnt = 1, .len = (uint32_t)len};
    vio_switch_input(&f->port, &pkt);
}

static bool have_dns_arp_reply(struct rig *r, void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < r->vm.n; i++) {
        const struct frame *f = &r->vm.f[i];

        if (f->len >= 42 && get16(f->d + 12) == VIO_ETH_P_ARP && get16(f->d + 20) == 2 &&
            get32(f->d + 28) == ip4(10, 0, 2, 3))
            return true;
    }
    return false;
}

static void test_reentrant_delivery(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    uint8_t buf[200];
    struct rig r;
    char got[8];

    (void)state;
    rig_init(&r);
    assert_int_equal(vio_uplink_create(r.sw, "type=slirp,id=nat0", &r.u), 0);
    int us = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(us >= 0);
    assert_int_equal(bind(us, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(us, (struct sockaddr *)&a, &alen), 0);
    size_t len = build_arp_request(buf, ip4(10, 0, 2, 15), ip4(10, 0, 2, 2));
    send_frame(&r, buf, len);
    len = build_udp(buf, gw_mac, ip4(10, 0, 2, 15), ip4(10, 0, 2, 2), 40001, ntohs(a.sin_port),
                    "ping", 4);
    send_frame(&r, buf, len);
    struct pollfd pfd = {.fd = us, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    struct sockaddr_in from;
    alen = sizeof(from);
    assert_int_equal(recvfrom(us, got, sizeof(got), 0, (struct sockaddr *)&from, &alen), 4);
    r.vm.n = 0;
    r.vm.hook = arp_back;
    assert_int_equal(sendto(us, "pong", 4, 0, (struct sockaddr *)&from, alen), 4);
    /* The answer to the ARP sent from inside the pass arrives too. */
    assert_true(pump_until(&r, 2000, have_dns_arp_reply, NULL));
    assert_null(r.vm.hook);
    json_t *st = vio_net_port_stats(vio_uplink_port(r.u));
    assert_int_equal(json_integer_value(json_object_get(st, "input_dropped")), 0);
    json_decref(st);
    close(us);
    rig_fini(&r);
}

/* As vio serve does it: the switch loop runs on its own thread and the
 * uplinks are created and destroyed from another. */
static void test_switch_thread(void **state)
{
    struct vio_workers w = {0};
    struct vio_switch *sw;
    struct vio_uplink *u[3];
    char spec[128];

    (void)state;
    assert_int_equal(vio_workers_start(&w, 1, "switch"), 0);
    assert_int_equal(vio_switch_create(&w.loops[0], "sw0", &sw), 0);
    snprintf(spec, sizeof(spec), "type=slirp,id=nat0,hostfwd=tcp:127.0.0.1:%d-:22",
             free_port(SOCK_STREAM));
    for (int round = 0; round < 3; round++) {
        assert_int_equal(vio_uplink_create(sw, spec, &u[0]), 0);
        assert_int_equal(vio_uplink_create(sw, "type=slirp,id=nat1,net=10.9.0.0/16", &u[1]), 0);
        assert_int_equal(vio_uplink_create(sw, "type=slirp,id=nat1", &u[2]), -EEXIST);
        usleep(20000); /* let the switch thread run their timers */
        vio_uplink_destroy(u[0]);
        vio_uplink_destroy(u[1]);
        assert_null(vio_switch_find(sw, "nat0"));
    }
    vio_workers_stop(&w);
    vio_switch_destroy(sw);
}

static void test_malformed_frames(void **state)
{
    uint8_t buf[2000];
    struct rig r;

    (void)state;
    rig_init(&r);
    assert_int_equal(vio_uplink_create(r.sw, "type=slirp,id=nat0", &r.u), 0);
    /* A short ARP frame, broadcast. */
    build_arp_request(buf, ip4(10, 0, 2, 15), ip4(10, 0, 2, 2));
    for (size_t len = 14; len < 42; len++)
        send_frame(&r, buf, len);
    /* IPv4 headers lying about their lengths. */
    size_t len = build_udp(buf, gw_mac, ip4(10, 0, 2, 15), ip4(10, 0, 2, 2), 1, 9, "x", 1);
    for (size_t cut = 14; cut < len; cut++)
        send_frame(&r, buf, cut);
    buf[14] = 0x4f; /* ihl 60 bytes in a 43-byte frame */
    send_frame(&r, buf, len);
    buf[14] = 0x45;
    put16(buf + 16, 0xffff); /* total length */
    send_frame(&r, buf, len);
    put16(buf + 16, 10); /* shorter than the header */
    send_frame(&r, buf, len);
    /* A DHCP request whose options run past the end. */
    uint8_t dhcp[250] = {1, 1, 6};
    put32(dhcp + 236, 0x63825363);
    dhcp[240] = 53;
    dhcp[241] = 200;
    len = build_udp(buf, bcast, 0, 0xffffffff, 68, 67, dhcp, sizeof(dhcp));
    send_frame(&r, buf, len);
    /* IPv6, NC-SI and unknown types are ignored. */
    put16(buf + 12, VIO_ETH_P_IPV6);
    send_frame(&r, buf, len);
    put16(buf + 12, 0x88f8);
    send_frame(&r, buf, 20);
    put16(buf + 12, 0x1234);
    send_frame(&r, buf, len);
    /* Random junk as IPv4, to the gateway's MAC. */
    srand(7);
    for (int i = 0; i < 500; i++) {
        size_t l = 14 + (size_t)(rand() % 1500);

        for (size_t k = 14; k < l; k++)
            buf[k] = (uint8_t)rand();
        memcpy(buf, gw_mac, 6);
        memcpy(buf + 6, vm_mac, 6);
        put16(buf + 12, VIO_ETH_P_IP);
        if (i & 1)
            buf[14] = 0x45;
        send_frame(&r, buf, l);
        vio_loop_run_once(&r.loop, 0);
    }
    /* Still alive: the gateway answers ARP. */
    r.vm.n = 0;
    len = build_arp_request(buf, ip4(10, 0, 2, 15), ip4(10, 0, 2, 2));
    send_frame(&r, buf, len);
    assert_true(r.vm.n >= 1);
    assert_int_equal(get16(r.vm.f[r.vm.n - 1].d + 20), 2);
    rig_fini(&r);
}

int main(void)
{
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_good_specs_and_lifecycle),
        cmocka_unit_test(test_hostfwd_port_busy),
        cmocka_unit_test(test_nat_data_path),
        cmocka_unit_test(test_restricted),
        cmocka_unit_test(test_reentrant_delivery),
        cmocka_unit_test(test_switch_thread),
        cmocka_unit_test(test_malformed_frames),
    };
    /* clang-format on */

    return cmocka_run_group_tests(tests, NULL, NULL);
}
