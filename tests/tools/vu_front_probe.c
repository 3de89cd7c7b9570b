/* vu_front_probe: drive any vhost-user-blk back-end (vio serve,
 * qemu-storage-daemon ...) through vio's front-end library from a host
 * process: write a file's contents to the disk, flush, stop and resume the
 * queue, read everything back and compare. Used by
 * tests/host/test_vu_frontend.py, which then checks the back-end's image.
 *
 *   vu_front_probe [--offset BYTES] [--queue N] SOCKET DATAFILE
 *
 * Prints what it negotiated and "ok N bytes" on success; exits 1 with a
 * reason otherwise. The driver side of the ring is written here: test code
 * that does its own guest-address arithmetic on memory it owns. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/util.h"
#include "vhost/vu_frontend.h"
#include "virtio/virtio.h"

#define GPA_BASE    0x40000000ull
#define QSIZE       128
#define RING_AREA   0x10000u /* desc, avail and used rings of one queue */
#define CHUNK       0x10000u /* bytes per request */
#define MAX_FLIGHT  16u      /* requests in flight per batch (3 descriptors each) */
#define T_IN        0
#define T_OUT       1
#define T_FLUSH     4
#define BLK_F_FLUSH 9
#define WAIT_MS     10000

struct probe {
    struct vio_vu_front *f;
    uint8_t *mem; /* guest memory, GPA_BASE onwards */
    size_t mem_size;
    unsigned qi;
    uint64_t desc, avail, used;
    uint16_t avail_idx, used_seen, next_desc;
    int kick, call;
};

static void *gp(struct probe *p, uint64_t gpa)
{
    return p->mem + (gpa - GPA_BASE);
}

/* Per in-flight slot: 16-byte header, status byte, then CHUNK of data. */
static uint64_t slot_base(unsigned s)
{
    return GPA_BASE + RING_AREA + (uint64_t)s * (CHUNK + 4096);
}

static void ring_init(struct probe *p)
{
    p->desc = GPA_BASE;
    p->avail = p->desc + vio_vring_desc_size(QSIZE);
    p->used = (p->avail + vio_vring_avail_size(QSIZE) + 4095) & ~4095ull;
    memset(gp(p, GPA_BASE), 0, RING_AREA);
    p->avail_idx = p->used_seen = p->next_desc = 0;
}

static uint16_t submit(struct probe *p, unsigned slot, uint32_t type, uint64_t sector, uint32_t len)
{
    uint64_t hdr = slot_base(slot), status = hdr + 16, data = hdr + 4096;
    struct vio_vring_desc *d = gp(p, p->desc);
    struct vio_vring_avail *a = gp(p, p->avail);
    uint64_t bufs[3][2] = {{hdr, 16}, {data, len}, {status, 1}};
    bool writable[3] = {false, type == T_IN, true};
    uint16_t head = p->next_desc;
    uint32_t t = vio_to_le32(type);
    uint64_t s = vio_to_le64(sector);
    unsigned n = 0;

    memset(gp(p, hdr), 0, 16);
    memcpy(gp(p, hdr), &t, 4);
    memcpy((uint8_t *)gp(p, hdr) + 8, &s, 8);
    *(uint8_t *)gp(p, status) = 0xee;
    for (unsigned i = 0; i < 3; i++) {
        uint16_t k = (uint16_t)((head + n) % QSIZE);

        if (bufs[i][1] == 0)
            continue;
        d[k].addr = vio_to_le64(bufs[i][0]);
        d[k].len = vio_to_le32((uint32_t)bufs[i][1]);
        d[k].flags = vio_to_le16(
            (uint16_t)((i < 2 ? VIO_DESC_F_NEXT : 0) | (writable[i] ? VIO_DESC_F_WRITE : 0)));
        d[k].next = vio_to_le16((uint16_t)((head + n + 1) % QSIZE));
        n++;
    }
    p->next_desc = (uint16_t)((head + n) % QSIZE);
    a->ring[p->avail_idx % QSIZE] = vio_to_le16(head);
    p->avail_idx++;
    /* Release: pairs with the device's acquire after reading avail->idx. */
    __atomic_store_n(&a->idx, vio_to_le16(p->avail_idx), __ATOMIC_RELEASE);
    return head;
}

/* Wait for @n completions; each must be one of @heads with status OK. */
static int complete(struct probe *p, const uint16_t *heads, unsigned n)
{
    struct vio_vring_used *u = gp(p, p->used);
    uint64_t deadline = vio_now_ns() + WAIT_MS * 1000000ull;

    for (unsigned got = 0; got < n;) {
        struct pollfd pfd = {.fd = p->call, .events = POLLIN};
        /* Acquire: pairs with the device's release before used->idx. */
        uint16_t idx = vio_le16(__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE));
        unsigned slot;

        if (idx == p->used_seen) {
            if (vio_now_ns() > deadline) {
                fprintf(stderr, "probe: %u of %u requests not completed within %d ms\n", n - got, n,
                        WAIT_MS);
                return -ETIMEDOUT;
            }
            poll(&pfd, 1, 100);
            vio_eventfd_drain(p->call);
            continue;
        }
        {
            uint32_t id = vio_le32(u->ring[p->used_seen % QSIZE].id);

            p->used_seen++;
            for (slot = 0; slot < n && heads[slot] != id; slot++)
                ;
            if (slot == n) {
                fprintf(stderr, "probe: used element %u is not a request in flight\n", id);
                return -EPROTO;
            }
            if (*(uint8_t *)gp(p, slot_base(slot) + 16) != 0) {
                fprintf(stderr, "probe: request %u (head %u) failed with status %u\n", slot, id,
                        *(uint8_t *)gp(p, slot_base(slot) + 16));
                return -EIO;
            }
            got++;
        }
    }
    return 0;
}

/* Write (@type T_OUT) @len bytes of @buf at byte @off, or read them into
 * @buf, in batches of up to MAX_FLIGHT requests. */
static int transfer(struct probe *p, uint32_t type, uint64_t off, uint8_t *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        uint16_t heads[MAX_FLIGHT];
        size_t lens[MAX_FLIGHT];
        unsigned n = 0;
        int ret;

        for (; n < MAX_FLIGHT && done < len; n++) {
            lens[n] = VIO_MIN((size_t)CHUNK, len - done);
            if (type == T_OUT)
                memcpy(gp(p, slot_base(n) + 4096), buf + done, lens[n]);
            heads[n] = submit(p, n, type, (off + done) / 512, (uint32_t)lens[n]);
            done += lens[n];
        }
        vio_eventfd_signal(p->kick);
        ret = complete(p, heads, n);
        if (ret < 0)
            return ret;
        if (type == T_IN) {
            size_t at = done;

            for (unsigned i = n; i-- > 0;) {
                at -= lens[i];
                memcpy(buf + at, gp(p, slot_base(i) + 4096), lens[i]);
            }
        }
    }
    return 0;
}

static int start(struct probe *p, uint16_t base)
{
    return vio_vu_front_queue_start(p->f, p->qi, QSIZE, p->desc, p->avail, p->used, base, p->kick,
                                    p->call, -1);
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "probe: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (st.st_size == 0 || st.st_size % 512) {
        fprintf(stderr, "probe: %s: size %lld is not a non-zero multiple of 512\n", path,
                (long long)st.st_size);
        close(fd);
        return -1;
    }
    *len = (size_t)st.st_size;
    *out = malloc(*len);
    n = *out ? read(fd, *out, *len) : -1;
    close(fd);
    if (n != (ssize_t)*len) {
        fprintf(stderr, "probe: cannot read %s\n", path);
        return -1;
    }
    return 0;
}

static int run(struct probe *p, const char *sock, uint64_t off, const uint8_t *data, size_t len)
{
    struct vio_vu_mem_region r;
    uint64_t feat, cap;
    uint8_t *back = NULL;
    uint16_t base;
    int memfd, ret;

    ret = vio_vu_front_connect(sock, &p->f);
    if (ret < 0) {
        fprintf(stderr, "probe: cannot connect to %s: %s\n", sock, strerror(-ret));
        return ret;
    }
    feat = vio_vu_front_features(p->f);
    printf("features 0x%llx protocol_features 0x%llx queues %u\n", (unsigned long long)feat,
           (unsigned long long)vio_vu_front_protocol_features(p->f), vio_vu_front_num_queues(p->f));
    if (vio_vu_front_protocol_features(p->f) & VIO_BIT(9 /* CONFIG */)) {
        ret = vio_vu_front_get_config(p->f, 0, &cap, sizeof(cap));
        if (ret < 0)
            goto out;
        printf("capacity %llu\n", (unsigned long long)vio_le64(cap));
        if ((off + len) / 512 > vio_le64(cap)) {
            fprintf(stderr, "probe: %zu bytes at %llu do not fit the disk\n", len,
                    (unsigned long long)off);
            ret = -ENOSPC;
            goto out;
        }
    }
    if (!(feat & VIO_BIT(VIO_F_VERSION_1))) {
        fprintf(stderr, "probe: the back-end does not offer VIRTIO_F_VERSION_1\n");
        ret = -ENOTSUP;
        goto out;
    }
    ret = vio_vu_front_set_features(p->f, VIO_BIT(VIO_F_VERSION_1) | (feat & VIO_BIT(BLK_F_FLUSH)));
    if (ret < 0)
        goto out;

    p->mem_size = RING_AREA + MAX_FLIGHT * (CHUNK + 4096);
    memfd = memfd_create("vu-front-probe", MFD_CLOEXEC);
    if (memfd < 0 || ftruncate(memfd, (off_t)p->mem_size) < 0) {
        ret = -errno;
        fprintf(stderr, "probe: guest memory: %s\n", strerror(errno));
        goto out;
    }
    p->mem = mmap(NULL, p->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (p->mem == MAP_FAILED) {
        ret = -errno;
        close(memfd);
        goto out;
    }
    r = (struct vio_vu_mem_region){memfd, 0, GPA_BASE, p->mem_size, p->mem};
    ret = vio_vu_front_set_mem_table(p->f, &r, 1);
    close(memfd); /* the back-end has its own copy, we have the mapping */
    if (ret < 0)
        goto out_unmap;
    ring_init(p);
    ret = start(p, 0);
    if (ret < 0)
        goto out_unmap;

    ret = transfer(p, T_OUT, off, (uint8_t *)data, len);
    if (ret < 0)
        goto out_unmap;
    if (feat & VIO_BIT(BLK_F_FLUSH)) {
        uint16_t head = submit(p, 0, T_FLUSH, 0, 0);

        vio_eventfd_signal(p->kick);
        ret = complete(p, &head, 1);
        if (ret < 0)
            goto out_unmap;
    }
    /* Stop and resume: the back-end must report exactly what it took. */
    ret = vio_vu_front_queue_stop(p->f, p->qi, &base);
    if (ret < 0)
        goto out_unmap;
    if (base != p->avail_idx) {
        fprintf(stderr, "probe: GET_VRING_BASE says %u, %u requests were made\n", base,
                p->avail_idx);
        ret = -EPROTO;
        goto out_unmap;
    }
    ret = start(p, base);
    if (ret < 0)
        goto out_unmap;
    back = calloc(1, len);
    ret = back ? transfer(p, T_IN, off, back, len) : -ENOMEM;
    if (ret < 0)
        goto out_unmap;
    if (memcmp(back, data, len) != 0) {
        fprintf(stderr, "probe: data read back differs from what was written\n");
        ret = -EIO;
        goto out_unmap;
    }
    ret = vio_vu_front_reset(p->f);
    if (ret == 0)
        printf("ok %zu bytes at %llu through queue %u, base %u\n", len, (unsigned long long)off,
               p->qi, base);

out_unmap:
    free(back);
    /* Let go of the device before unmapping its rings. */
    vio_vu_front_close(p->f);
    p->f = NULL;
    munmap(p->mem, p->mem_size);
out:
    vio_vu_front_close(p->f);
    return ret;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"offset", required_argument, NULL, 'o'},
        {"queue", required_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    struct probe p = {.kick = -1, .call = -1};
    uint64_t off = 0;
    uint8_t *data;
    size_t len;
    int opt, ret;

    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'o':
            if (vio_parse_size(optarg, &off) < 0 || off % 512) {
                fprintf(stderr, "probe: --offset %s: a multiple of 512 expected\n", optarg);
                return 2;
            }
            break;
        case 'q':
            p.qi = (unsigned)strtoul(optarg, NULL, 0);
            break;
        default:
            fprintf(stderr, "usage: vu_front_probe [--offset BYTES] [--queue N] SOCKET DATAFILE\n");
            return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: vu_front_probe [--offset BYTES] [--queue N] SOCKET DATAFILE\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (read_file(argv[optind + 1], &data, &len) < 0)
        return 1;
    p.kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p.call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ret = p.kick >= 0 && p.call >= 0 ? run(&p, argv[optind], off, data, len) : -errno;
    if (ret < 0)
        fprintf(stderr, "probe: failed: %s\n", strerror(-ret));
    close(p.kick);
    close(p.call);
    free(data);
    fflush(stdout);
    return ret < 0 ? 1 : 0;
}
