/*
 * vgtool - deterministic block I/O helper for vio guest tests, plus a
 * TCP super-frame sender and checker for the NIC offload tests.
 *
 * Built twice by tests/guest/build.sh: statically for the guest initramfs
 * (/bin/vgtool) and natively for the host (build/guest/vgtool-host), so both
 * sides generate and check exactly the same bytes.
 *
 * Data pattern (stable: host-side tests and tests/lib/guest.py rely on it):
 *   key     = mix64(SEED)
 *   word(w) = mix64(key + (w + 1) * 0x9e3779b97f4a7c15)      (w = offset / 8)
 *   byte(o) = little-endian byte (o % 8) of word(o / 8)
 * where mix64 is the SplitMix64 finaliser.  A byte depends only on SEED and
 * its absolute offset, so any sub-range can be regenerated on its own.
 *
 * Sizes and offsets accept decimal or 0x hex with an optional K/M/G/T suffix
 * (powers of 1024).  Exit status: 0 success, 1 data mismatch, 2 usage or
 * I/O error; a message goes to stderr on any failure.
 *
 * tso-send hands the kernel one IPv4/TCP frame of LEN payload bytes (the
 * pattern at offset 0 for SEED) through a packet socket with a
 * virtio_net_hdr asking for TSO, so the interface gets a super-frame to
 * carry whatever the kernel's TCP would have chosen; tso-recv captures the
 * frames to a TCP port on an interface, puts their payloads together by
 * sequence number and checks the bytes, the IPv4 header checksums and the
 * TCP checksums of complete (not checksum-offloaded) frames.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <scsi/sg.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_BS (1u << 20)
#define BUF_ALIGN 4096

static const char *prog = "vgtool";

static void die(int code, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

static void die(int code, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

/* ---- pattern ----------------------------------------------------------- */

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t pattern_word(uint64_t key, uint64_t w)
{
    return mix64(key + (w + 1) * 0x9e3779b97f4a7c15ULL);
}

/* Fill buf with the pattern bytes for [off, off + len). */
static void pattern_fill(uint64_t key, uint8_t *buf, uint64_t off, size_t len)
{
    size_t i = 0;

    /* Leading bytes up to an 8-byte boundary of the absolute offset. */
    while (i < len && ((off + i) & 7)) {
        uint64_t v = pattern_word(key, (off + i) >> 3);
        buf[i] = (uint8_t)(v >> (8 * ((off + i) & 7)));
        i++;
    }
    /* Whole words. */
    uint64_t w = (off + i) >> 3;
    for (; i + 8 <= len; i += 8, w++) {
        uint64_t v = pattern_word(key, w);
        uint8_t *p = buf + i;
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
        p[4] = (uint8_t)(v >> 32);
        p[5] = (uint8_t)(v >> 40);
        p[6] = (uint8_t)(v >> 48);
        p[7] = (uint8_t)(v >> 56);
    }
    /* Trailing bytes. */
    if (i < len) {
        uint64_t v = pattern_word(key, w);
        for (unsigned b = 0; i < len; i++, b++)
            buf[i] = (uint8_t)(v >> (8 * b));
    }
}

/* ---- argument parsing -------------------------------------------------- */

static uint64_t parse_size(const char *what, const char *s)
{
    char *end;
    uint64_t v, mul = 1;

    if (!*s || *s == '-')
        die(2, "bad %s '%s'", what, s);
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s)
        die(2, "bad %s '%s'", what, s);
    switch (*end) {
    case 0:
        break;
    case 'k': case 'K': mul = 1ULL << 10; end++; break;
    case 'm': case 'M': mul = 1ULL << 20; end++; break;
    case 'g': case 'G': mul = 1ULL << 30; end++; break;
    case 't': case 'T': mul = 1ULL << 40; end++; break;
    default:
        die(2, "bad %s '%s'", what, s);
    }
    /* Tolerate "KiB"/"KB"-style spellings. */
    if (mul > 1 && (*end == 'i' || *end == 'I'))
        end++;
    if (mul > 1 && (*end == 'b' || *end == 'B'))
        end++;
    if (*end)
        die(2, "bad %s '%s'", what, s);
    if (v > UINT64_MAX / mul)
        die(2, "%s '%s' too large", what, s);
    return v * mul;
}

struct opts {
    int direct;
    int fsync;
    size_t bs;
};

/* Split argv into positional arguments (returned in pos[]) and options. */
static int parse_args(int argc, char **argv, char **pos, int maxpos,
                      struct opts *o)
{
    int n = 0;

    memset(o, 0, sizeof(*o));
    o->bs = DEFAULT_BS;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--direct")) {
            o->direct = 1;
        } else if (!strcmp(a, "--fsync")) {
            o->fsync = 1;
        } else if (!strcmp(a, "--bs") && i + 1 < argc) {
            uint64_t bs = parse_size("block size", argv[++i]);
            if (bs == 0 || bs > (1ULL << 30))
                die(2, "block size must be in 1..1G");
            o->bs = (size_t)bs;
        } else if (!strncmp(a, "--bs=", 5)) {
            uint64_t bs = parse_size("block size", a + 5);
            if (bs == 0 || bs > (1ULL << 30))
                die(2, "block size must be in 1..1G");
            o->bs = (size_t)bs;
        } else if (a[0] == '-' && a[1] == '-') {
            die(2, "unknown option '%s'", a);
        } else {
            if (n >= maxpos)
                die(2, "too many arguments");
            pos[n++] = argv[i];
        }
    }
    return n;
}

static void *xbuf(size_t len)
{
    void *p;
    int rc = posix_memalign(&p, BUF_ALIGN, len ? len : 1);

    if (rc)
        die(2, "cannot allocate %zu bytes: %s", len, strerror(rc));
    return p;
}

static int xopen(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC, 0644);

    if (fd < 0)
        die(2, "open %s: %s", path, strerror(errno));
    return fd;
}

static void full_pwrite(const char *path, int fd, const void *buf, size_t len,
                        uint64_t off)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die(2, "write %s at offset %" PRIu64 " (%zu bytes): %s", path,
                off, len, strerror(errno));
        }
        if (n == 0)
            die(2, "write %s at offset %" PRIu64 ": no progress", path, off);
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
}

static void full_pread(const char *path, int fd, void *buf, size_t len,
                       uint64_t off)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die(2, "read %s at offset %" PRIu64 " (%zu bytes): %s", path,
                off, len, strerror(errno));
        }
        if (n == 0)
            die(2, "read %s: unexpected end of file at offset %" PRIu64,
                path, off);
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
}

static void xfsync(const char *path, int fd)
{
    if (fsync(fd) < 0)
        die(2, "fsync %s: %s", path, strerror(errno));
}

static void xclose(const char *path, int fd)
{
    if (close(fd) < 0)
        die(2, "close %s: %s", path, strerror(errno));
}

/* ---- mismatch reporting ------------------------------------------------ */

struct mismatch {
    uint64_t count;
    uint64_t first, last;
    uint8_t got, want;
};

static void note_mismatch(struct mismatch *m, const uint8_t *got,
                          const uint8_t *want, size_t len, uint64_t off)
{
    for (size_t i = 0; i < len; i++) {
        if (got[i] != want[i]) {
            if (!m->count) {
                m->first = off + i;
                m->got = got[i];
                m->want = want[i];
            }
            m->last = off + i;
            m->count++;
        }
    }
}

static int report_mismatch(const char *path, const struct mismatch *m)
{
    if (!m->count)
        return 0;
    fprintf(stderr,
            "%s: %s: mismatch at offset %" PRIu64 " (0x%" PRIx64
            "): got 0x%02x expected 0x%02x; %" PRIu64
            " bad bytes, last bad offset %" PRIu64 "\n",
            prog, path, m->first, m->first, m->got, m->want, m->count,
            m->last);
    return 1;
}

/* ---- subcommands ------------------------------------------------------- */

static int cmd_write(int argc, char **argv)
{
    char *pos[4];
    struct opts o;

    if (parse_args(argc, argv, pos, 4, &o) != 4)
        die(2, "usage: write PATH OFFSET LEN SEED [--direct] [--fsync] [--bs N]");
    const char *path = pos[0];
    uint64_t off = parse_size("offset", pos[1]);
    uint64_t len = parse_size("length", pos[2]);
    uint64_t key = mix64(parse_size("seed", pos[3]));
    int fd = xopen(path, O_WRONLY | O_CREAT | (o.direct ? O_DIRECT : 0));
    uint8_t *buf = xbuf(o.bs);

    while (len) {
        size_t n = len < o.bs ? (size_t)len : o.bs;
        pattern_fill(key, buf, off, n);
        full_pwrite(path, fd, buf, n, off);
        off += n;
        len -= n;
    }
    if (o.fsync)
        xfsync(path, fd);
    xclose(path, fd);
    free(buf);
    return 0;
}

static int cmd_fill(int argc, char **argv)
{
    char *pos[4];
    struct opts o;

    if (parse_args(argc, argv, pos, 4, &o) != 4)
        die(2, "usage: fill PATH OFFSET LEN BYTE [--direct] [--fsync] [--bs N]");
    const char *path = pos[0];
    uint64_t off = parse_size("offset", pos[1]);
    uint64_t len = parse_size("length", pos[2]);
    uint64_t byte = parse_size("byte", pos[3]);
    if (byte > 255)
        die(2, "byte must be 0..255");
    int fd = xopen(path, O_WRONLY | O_CREAT | (o.direct ? O_DIRECT : 0));
    size_t bl = len < o.bs ? (size_t)len : o.bs;
    uint8_t *buf = xbuf(bl);

    memset(buf, (int)byte, bl);
    while (len) {
        size_t n = len < bl ? (size_t)len : bl;
        full_pwrite(path, fd, buf, n, off);
        off += n;
        len -= n;
    }
    if (o.fsync)
        xfsync(path, fd);
    xclose(path, fd);
    free(buf);
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    char *pos[4];
    struct opts o;
    struct mismatch m = {0};

    if (parse_args(argc, argv, pos, 4, &o) != 4)
        die(2, "usage: verify PATH OFFSET LEN SEED [--direct] [--bs N]");
    const char *path = pos[0];
    uint64_t off = parse_size("offset", pos[1]);
    uint64_t len = parse_size("length", pos[2]);
    uint64_t key = mix64(parse_size("seed", pos[3]));
    int fd = xopen(path, O_RDONLY | (o.direct ? O_DIRECT : 0));
    uint8_t *got = xbuf(o.bs), *want = xbuf(o.bs);

    while (len) {
        size_t n = len < o.bs ? (size_t)len : o.bs;
        full_pread(path, fd, got, n, off);
        pattern_fill(key, want, off, n);
        if (memcmp(got, want, n))
            note_mismatch(&m, got, want, n, off);
        off += n;
        len -= n;
    }
    xclose(path, fd);
    free(got);
    free(want);
    return report_mismatch(path, &m);
}

static int cmd_zeroes(int argc, char **argv)
{
    char *pos[3];
    struct opts o;
    struct mismatch m = {0};

    if (parse_args(argc, argv, pos, 3, &o) != 3)
        die(2, "usage: zeroes PATH OFFSET LEN [--direct] [--bs N]");
    const char *path = pos[0];
    uint64_t off = parse_size("offset", pos[1]);
    uint64_t len = parse_size("length", pos[2]);
    int fd = xopen(path, O_RDONLY | (o.direct ? O_DIRECT : 0));
    uint8_t *got = xbuf(o.bs), *zero = xbuf(o.bs);

    memset(zero, 0, o.bs);
    while (len) {
        size_t n = len < o.bs ? (size_t)len : o.bs;
        full_pread(path, fd, got, n, off);
        if (memcmp(got, zero, n))
            note_mismatch(&m, got, zero, n, off);
        off += n;
        len -= n;
    }
    xclose(path, fd);
    free(got);
    free(zero);
    return report_mismatch(path, &m);
}

static int cmd_range_ioctl(int argc, char **argv, const char *name,
                           unsigned long req)
{
    char *pos[3];
    struct opts o;

    if (parse_args(argc, argv, pos, 3, &o) != 3)
        die(2, "usage: %s DEV OFFSET LEN", name);
    const char *path = pos[0];
    uint64_t range[2];
    range[0] = parse_size("offset", pos[1]);
    range[1] = parse_size("length", pos[2]);
    int fd = xopen(path, O_WRONLY);

    if (ioctl(fd, req, range) < 0)
        die(2, "%s %s offset %" PRIu64 " length %" PRIu64 ": %s", name, path,
            range[0], range[1], strerror(errno));
    xclose(path, fd);
    return 0;
}

static int cmd_flush(int argc, char **argv)
{
    char *pos[1];
    struct opts o;

    if (parse_args(argc, argv, pos, 1, &o) != 1)
        die(2, "usage: flush PATH");
    int fd = xopen(pos[0], O_RDONLY);
    xfsync(pos[0], fd);
    xclose(pos[0], fd);
    return 0;
}

static int cmd_size(int argc, char **argv)
{
    char *pos[1];
    struct opts o;
    struct stat st;
    uint64_t size;

    if (parse_args(argc, argv, pos, 1, &o) != 1)
        die(2, "usage: size PATH");
    int fd = xopen(pos[0], O_RDONLY);
    if (fstat(fd, &st) < 0)
        die(2, "stat %s: %s", pos[0], strerror(errno));
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &size) < 0)
            die(2, "BLKGETSIZE64 %s: %s", pos[0], strerror(errno));
    } else {
        size = (uint64_t)st.st_size;
    }
    xclose(pos[0], fd);
    printf("%" PRIu64 "\n", size);
    return 0;
}

/* Ask the SCSI layer for a LUN reset (SG_SCSI_RESET, which the HBA driver
 * turns into a task management function) and print how long it took in
 * milliseconds: the reset returns only when the HBA answers it. */
static int cmd_scsi_reset(int argc, char **argv)
{
    char *pos[1];
    struct opts o;
    struct timespec t0, t1;
    int what = SG_SCSI_RESET_DEVICE;

    if (parse_args(argc, argv, pos, 1, &o) != 1)
        die(2, "usage: scsi-reset DEV");
    int fd = open(pos[0], O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        die(2, "open %s: %s", pos[0], strerror(errno));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (ioctl(fd, SG_SCSI_RESET, &what) < 0)
        die(2, "SG_SCSI_RESET %s: %s", pos[0], strerror(errno));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    xclose(pos[0], fd);
    printf("%lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000 +
                         (t1.tv_nsec - t0.tv_nsec) / 1000000);
    return 0;
}

/* ---- TCP super-frames (tso-send, tso-recv) ---------------------------- */

#define TSO_MSS     1448
#define TSO_MAX_LEN 60000 /* payload: one frame stays under 64 KiB */
#define TSO_SEQ0    1000u
#define TSO_SPORT   40000

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
    for (; len > 1; p += 2, len -= 2)
        sum += (uint32_t)p[0] << 8 | p[1];
    if (len)
        sum += (uint32_t)p[0] << 8;
    return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

/* The TCP pseudo-header sum for @tcp_len bytes of segment. */
static uint32_t tcp_pseudo(const uint8_t *ip, size_t tcp_len)
{
    uint32_t sum = csum_add(0, ip + 12, 8);

    return sum + 6 + (uint32_t)tcp_len;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A packet socket on @ifname (index in *@ifindex) that carries a
 * virtio_net_hdr before each frame. */
static int packet_socket(const char *ifname, int *ifindex)
{
    int one = 1;
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));

    if (fd < 0)
        die(2, "packet socket: %s", strerror(errno));
    *ifindex = (int)if_nametoindex(ifname);
    if (!*ifindex)
        die(2, "no interface '%s'", ifname);
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) < 0)
        die(2, "PACKET_VNET_HDR: %s", strerror(errno));
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                              .sll_ifindex = *ifindex};
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
        die(2, "bind to %s: %s", ifname, strerror(errno));
    return fd;
}

static void parse_mac(const char *s, uint8_t *mac)
{
    unsigned v[6];
    char extra;

    if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &extra) != 6)
        die(2, "bad MAC '%s'", s);
    for (int i = 0; i < 6; i++) {
        if (v[i] > 255)
            die(2, "bad MAC '%s'", s);
        mac[i] = (uint8_t)v[i];
    }
}

static size_t tso_len(const char *s)
{
    uint64_t len = parse_size("length", s);

    if (len == 0 || len > TSO_MAX_LEN)
        die(2, "length must be in 1..%u", TSO_MAX_LEN);
    return (size_t)len;
}

/* tso-send IFACE DSTMAC DSTIP PORT LEN SEED */
static int cmd_tso_send(int argc, char **argv)
{
    static uint8_t buf[sizeof(struct virtio_net_hdr) + 14 + 20 + 20 + TSO_MAX_LEN];
    struct virtio_net_hdr *vh = (struct virtio_net_hdr *)buf;
    uint8_t *eth = buf + sizeof(*vh), *ip = eth + 14, *tcp = ip + 20;
    struct ifreq ifr = {0};
    struct in_addr dst;
    int ifindex;

    if (argc != 6)
        die(2, "usage: tso-send IFACE DSTMAC DSTIP PORT LEN SEED");
    size_t len = tso_len(argv[4]);
    uint64_t port = parse_size("port", argv[3]);
    if (port == 0 || port > 65535)
        die(2, "bad port '%s'", argv[3]);
    if (inet_pton(AF_INET, argv[2], &dst) != 1)
        die(2, "bad IPv4 address '%s'", argv[2]);
    int fd = packet_socket(argv[0], &ifindex);
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", argv[0]);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
        die(2, "%s: no MAC address: %s", argv[0], strerror(errno));
    memcpy(eth + 6, ifr.ifr_hwaddr.sa_data, 6);
    if (ioctl(fd, SIOCGIFADDR, &ifr) < 0)
        die(2, "%s: no IPv4 address: %s", argv[0], strerror(errno));
    parse_mac(argv[1], eth);
    put16(eth + 12, ETH_P_IP);
    /* IPv4: DF, TTL 64, TCP; total length and checksum for the whole
     * super-frame (segmentation rewrites both per segment). */
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(40 + len));
    put16(ip + 4, 0x1234);
    put16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = 6;
    memcpy(ip + 12, &((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr, 4);
    memcpy(ip + 16, &dst, 4);
    put16(ip + 10, (uint16_t)~csum_fold(csum_add(0, ip, 20)));
    put16(tcp, TSO_SPORT);
    put16(tcp + 2, (uint16_t)port);
    put32(tcp + 4, TSO_SEQ0);
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; /* PSH, ACK */
    put16(tcp + 14, 65535);
    pattern_fill(mix64(parse_size("seed", argv[5])), tcp + 20, 0, len);
    /* Checksum offload: the pseudo-header sum in the checksum field. */
    put16(tcp + 16, csum_fold(tcp_pseudo(ip, 20 + len)));
    vh->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    vh->csum_start = 14 + 20;
    vh->csum_offset = 16;
    if (len > TSO_MSS) {
        vh->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
        vh->gso_size = TSO_MSS;
        vh->hdr_len = 14 + 20 + 20;
    }
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                              .sll_ifindex = ifindex, .sll_halen = 6};
    memcpy(sll.sll_addr, eth, 6);
    size_t total = sizeof(*vh) + 54 + len;
    ssize_t n = sendto(fd, buf, total, 0, (struct sockaddr *)&sll, sizeof(sll));
    if (n != (ssize_t)total)
        die(2, "sending a %zu-byte super-frame on %s: %s", len, argv[0],
            n < 0 ? strerror(errno) : "short send");
    close(fd);
    return 0;
}

/* tso-recv IFACE PORT LEN SEED TIMEOUT_S: prints "ready" once capturing,
 * then "frames=N gso=G bytes=B" when LEN payload bytes arrived intact. */
static int cmd_tso_recv(int argc, char **argv)
{
    static uint8_t buf[sizeof(struct virtio_net_hdr) + 65600], want[TSO_MAX_LEN],
        got[TSO_MAX_LEN], seen[TSO_MAX_LEN];
    struct virtio_net_hdr *vh = (struct virtio_net_hdr *)buf;
    unsigned frames = 0, gso = 0;
    size_t have = 0;
    int ifindex;

    if (argc != 5)
        die(2, "usage: tso-recv IFACE PORT LEN SEED TIMEOUT_S");
    uint64_t port = parse_size("port", argv[1]);
    size_t len = tso_len(argv[2]);
    uint64_t timeout_ms = parse_size("timeout", argv[4]) * 1000;
    pattern_fill(mix64(parse_size("seed", argv[3])), want, 0, len);
    int fd = packet_socket(argv[0], &ifindex);
    printf("ready\n");
    fflush(stdout);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (have < len) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        uint64_t ms = (uint64_t)(t.tv_sec - t0.tv_sec) * 1000 +
                      (uint64_t)((t.tv_nsec - t0.tv_nsec) / 1000000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (ms >= timeout_ms || poll(&p, 1, (int)(timeout_ms - ms)) == 0)
            die(2, "%zu of %zu bytes to port %u arrived on %s in %s s (%u frames)", have, len,
                (unsigned)port, argv[0], argv[4], frames);
        struct sockaddr_ll from;
        socklen_t fromlen = sizeof(from);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen);
        if (n < 0)
            die(2, "recv on %s: %s", argv[0], strerror(errno));
        if (from.sll_pkttype == PACKET_OUTGOING)
            continue;
        const uint8_t *eth = buf + sizeof(*vh), *ip = eth + 14;
        size_t flen = (size_t)n - sizeof(*vh);
        if ((size_t)n < sizeof(*vh) + 14 + 40 || (ip[0] & 0xf0) != 0x40 || ip[9] != 6)
            continue;
        size_t ihl = (size_t)(ip[0] & 15) * 4, iplen = (size_t)ip[2] << 8 | ip[3];
        const uint8_t *tcp = ip + ihl;
        if (ihl < 20 || iplen < ihl + 20 || 14 + iplen > flen ||
            ((size_t)tcp[2] << 8 | tcp[3]) != port)
            continue;
        frames++;
        if (vh->gso_type != VIRTIO_NET_HDR_GSO_NONE)
            gso++;
        if (csum_fold(csum_add(0, ip, ihl)) != 0xffff)
            die(1, "frame %u: bad IPv4 header checksum", frames);
        size_t thl = (size_t)(tcp[12] >> 4) * 4, tlen = iplen - ihl;
        if (thl < 20 || thl > tlen)
            die(1, "frame %u: bad TCP header length %zu", frames, thl);
        if (!(vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
            csum_fold(csum_add(tcp_pseudo(ip, tlen), tcp, tlen)) != 0xffff)
            die(1, "frame %u: bad TCP checksum (%zu-byte segment)", frames, tlen);
        uint32_t off = get32(tcp + 4) - TSO_SEQ0;
        size_t plen = tlen - thl;
        if (off > len || plen > len - off)
            die(1, "frame %u: payload [%u, +%zu) is outside the %zu sent", frames, off, plen,
                len);
        for (size_t i = 0; i < plen; i++) {
            if (seen[off + i] && got[off + i] != tcp[thl + i])
                die(1, "frame %u: byte %zu arrived twice, differently", frames, off + i);
            if (!seen[off + i])
                have++;
            seen[off + i] = 1;
            got[off + i] = tcp[thl + i];
        }
    }
    close(fd);
    for (size_t i = 0; i < len; i++) {
        if (got[i] != want[i])
            die(1, "payload byte %zu is 0x%02x, not 0x%02x", i, got[i], want[i]);
    }
    printf("frames=%u gso=%u bytes=%zu\n", frames, gso, len);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vgtool COMMAND ARGS...\n"
        "  write  PATH OFFSET LEN SEED [--direct] [--fsync] [--bs N]\n"
        "  verify PATH OFFSET LEN SEED [--direct] [--bs N]\n"
        "  fill   PATH OFFSET LEN BYTE [--direct] [--fsync] [--bs N]\n"
        "  zeroes PATH OFFSET LEN [--direct] [--bs N]\n"
        "  zeroout DEV OFFSET LEN      (BLKZEROOUT)\n"
        "  discard DEV OFFSET LEN      (BLKDISCARD)\n"
        "  flush  PATH                 (open + fsync)\n"
        "  size   PATH                 (bytes; BLKGETSIZE64 for devices)\n"
        "  scsi-reset DEV              (LUN reset; prints the milliseconds it took)\n"
        "  tso-send IFACE DSTMAC DSTIP PORT LEN SEED   (one TCP super-frame, LEN <= 60000)\n"
        "  tso-recv IFACE PORT LEN SEED TIMEOUT_S      (check it arrived; frames=N gso=G)\n"
        "Sizes: decimal or 0x hex, optional K/M/G/T suffix (x1024).\n"
        "I/O goes in --bs chunks (default 1M) from 4 KiB-aligned buffers.\n"
        "Exit: 0 ok, 1 data mismatch, 2 usage/I/O error.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    int ac = argc - 2;
    char **av = argv + 2;

    if (!strcmp(cmd, "write"))
        return cmd_write(ac, av);
    if (!strcmp(cmd, "verify"))
        return cmd_verify(ac, av);
    if (!strcmp(cmd, "fill"))
        return cmd_fill(ac, av);
    if (!strcmp(cmd, "zeroes"))
        return cmd_zeroes(ac, av);
    if (!strcmp(cmd, "zeroout"))
        return cmd_range_ioctl(ac, av, "zeroout", BLKZEROOUT);
    if (!strcmp(cmd, "discard"))
        return cmd_range_ioctl(ac, av, "discard", BLKDISCARD);
    if (!strcmp(cmd, "flush"))
        return cmd_flush(ac, av);
    if (!strcmp(cmd, "size"))
        return cmd_size(ac, av);
    if (!strcmp(cmd, "scsi-reset"))
        return cmd_scsi_reset(ac, av);
    if (!strcmp(cmd, "tso-send"))
        return cmd_tso_send(ac, av);
    if (!strcmp(cmd, "tso-recv"))
        return cmd_tso_recv(ac, av);
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
    usage(stderr);
    return 2;
}
