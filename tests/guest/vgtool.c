/*
 * vgtool - deterministic block I/O helper for vio guest tests.
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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <scsi/sg.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
    usage(stderr);
    return 2;
}
