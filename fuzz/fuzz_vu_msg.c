/* libFuzzer target for the vhost-user back-end (src/vhost/vu_backend.c and
 * vu_msg.c, and through them vdev.c, virtq.c and devices/blk.c): a real
 * vio_vu_backend serving a virtio-blk device on a Unix socket, fed by a
 * scripted front-end whose script is the fuzz input. The control loop and
 * the queue "worker" are one vio_loop pumped by hand on this thread, so
 * vio_loop_call runs inline and one input is one deterministic run.
 *
 * The script is a sequence of operations (little-endian fields):
 *   op % 8 == 0  SEND     u16 len, len bytes: written to the socket with the
 *                         pending fds attached (then none are pending)
 *             1  MEMFD    u8 pages (1 + b % 16), u16 len, len bytes copied to
 *                         its start: a new memfd, made pending
 *             2  EVENTFD  a new eventfd, made pending
 *             3  POKE     u8 memfd, u16 offset, u8 len, len bytes: guest
 *                         memory changes under the device
 *             4  KICK     u8 eventfd: signal it (a queue kick)
 *             5  PUMP     let the back-end run
 *             6  RECONNECT u8 b: close the socket and connect a new one,
 *                         or with b odd try a second front-end (refused)
 *             7  ODDFD    u8 kind: a pipe, /dev/null, an empty memfd or a
 *                         socket, made pending
 * Checked: no crash or sanitizer report, every reply is a well-formed
 * vhost-user reply, the block backend only ever sees bios inside the disk
 * whose iovecs add up, nothing is left in flight when a queue closes, and
 * no file descriptor is leaked once the back-end is destroyed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "backends/block/bdev.h"
#include "core/log.h"
#include "core/loop.h"
#include "devices/blk.h"
#include "vhost/vu_backend.h"
#include "vhost/vu_proto.h"

#define DISK_SIZE   (1u << 20)
#define MAX_MEMFDS  16
#define MAX_EVFDS   16
#define MAX_PENDING 16
#define PAGE        4096u

/* ---- a synchronous in-memory block backend that checks what it gets ---- */

struct fake_bq {
    const struct vio_bq_cb *cb;
    void *opaque;
    unsigned depth, n;
    struct vio_bio **pending;
};

static uint8_t disk[DISK_SIZE];

static int fake_queue_open(struct vio_bdev *b, struct vio_loop *loop, unsigned depth,
                           const struct vio_bq_cb *cb, void *opaque, struct vio_bq **out)
{
    struct fake_bq *q = calloc(1, sizeof(*q));

    (void)b;
    (void)loop;
    q->pending = calloc(depth, sizeof(*q->pending));
    q->cb = cb;
    q->opaque = opaque;
    q->depth = depth;
    *out = (struct vio_bq *)q;
    return 0;
}

static void fake_queue_close(struct vio_bq *bq)
{
    struct fake_bq *q = (struct fake_bq *)bq;

    if (q->n)
        abort(); /* closed with bios in flight */
    free(q->pending);
    free(q);
}

static int fake_submit(struct vio_bq *bq, struct vio_bio *bio)
{
    struct fake_bq *q = (struct fake_bq *)bq;

    if (q->n >= q->depth)
        abort(); /* more bios than the queue was opened for */
    if (bio->op != VIO_BIO_FLUSH) {
        if (bio->offset > DISK_SIZE || bio->len > DISK_SIZE - bio->offset || bio->len == 0)
            abort();
    }
    if (bio->op == VIO_BIO_READ || bio->op == VIO_BIO_WRITE) {
        uint64_t sum = 0;

        if (bio->iovcnt == 0)
            abort();
        for (unsigned i = 0; i < bio->iovcnt; i++)
            sum += bio->iov[i].iov_len;
        if (sum != bio->len)
            abort();
    }
    /* One sector refuses submission, to reach that error path. */
    if (bio->op != VIO_BIO_FLUSH && bio->offset == 7 * PAGE)
        return -EIO;
    q->pending[q->n++] = bio;
    return 0;
}

static void fake_kick(struct vio_bq *bq)
{
    struct fake_bq *q = (struct fake_bq *)bq;
    unsigned n = q->n;

    if (!n)
        return;
    q->n = 0;
    for (unsigned i = 0; i < n; i++) {
        struct vio_bio *bio = q->pending[i];
        uint64_t off = bio->offset;

        for (unsigned j = 0; j < bio->iovcnt; j++) {
            /* ASan checks that every iovec is real memory. */
            if (bio->op == VIO_BIO_READ)
                memcpy(bio->iov[j].iov_base, disk + off, bio->iov[j].iov_len);
            else
                memcpy(disk + off, bio->iov[j].iov_base, bio->iov[j].iov_len);
            off += bio->iov[j].iov_len;
        }
        if (bio->op == VIO_BIO_DISCARD || bio->op == VIO_BIO_WRITE_ZEROES)
            memset(disk + bio->offset, 0, bio->len);
        /* And one sector fails on completion. */
        q->cb->done(q->opaque, bio, bio->offset == 8 * PAGE ? -EIO : 0);
    }
    q->cb->batch_done(q->opaque);
}

static json_t *fake_info(struct vio_bdev *b)
{
    (void)b;
    return json_object();
}

static void fake_close(struct vio_bdev *b)
{
    free(b);
}

static const struct vio_bdev_ops fake_ops = {
    .name = "fake",
    .queue_open = fake_queue_open,
    .queue_close = fake_queue_close,
    .submit = fake_submit,
    .kick = fake_kick,
    .info = fake_info,
    .close = fake_close,
};

/* ---- the scripted front-end ---- */

struct run {
    struct vio_loop loop;
    struct vio_dev *dev;
    struct vio_vu_backend *vu;
    char path[108];
    int sock;
    int memfds[MAX_MEMFDS];
    uint8_t *maps[MAX_MEMFDS];
    size_t map_len[MAX_MEMFDS];
    unsigned nmemfds;
    int evfds[MAX_EVFDS];
    unsigned nevfds;
    int others[MAX_PENDING * 4];
    unsigned nothers;
    int pending[MAX_PENDING];
    unsigned npending;
    uint8_t rx[2 * (sizeof(struct vu_hdr) + VU_MAX_PAYLOAD)];
    size_t rx_len;
};

struct input {
    const uint8_t *p;
    size_t left;
};

static size_t take(struct input *in, void *dst, size_t n)
{
    n = n < in->left ? n : in->left;
    if (dst)
        memcpy(dst, in->p, n);
    in->p += n;
    in->left -= n;
    return n;
}

static unsigned take_u8(struct input *in)
{
    uint8_t b = 0;

    take(in, &b, 1);
    return b;
}

static unsigned take_u16(struct input *in)
{
    uint8_t b[2] = {0, 0};

    take(in, b, 2);
    return b[0] | (unsigned)b[1] << 8;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (!d)
        abort();
    while ((e = readdir(d)))
        n++;
    closedir(d);
    return n;
}

/* Check the replies the back-end sent: each is a whole, well-formed reply. */
static void drain_replies(struct run *r)
{
    for (;;) {
        ssize_t n;

        if (r->sock < 0)
            return;
        n = recv(r->sock, r->rx + r->rx_len, sizeof(r->rx) - r->rx_len, MSG_DONTWAIT);
        if (n <= 0)
            return;
        r->rx_len += (size_t)n;
        while (r->rx_len >= sizeof(struct vu_hdr)) {
            struct vu_hdr h;

            memcpy(&h, r->rx, sizeof(h));
            if (h.flags != (VU_VERSION | VU_FLAG_REPLY) || h.size > VU_MAX_PAYLOAD ||
                h.request == 0 || h.request >= VU_REQUEST_MAX)
                abort();
            if (r->rx_len < sizeof(h) + h.size)
                break;
            r->rx_len -= sizeof(h) + h.size;
            memmove(r->rx, r->rx + sizeof(h) + h.size, r->rx_len);
        }
    }
}

/* Dispatch without blocking until nothing is ready. */
static void pump(struct run *r)
{
    for (int iter = 0; iter < 256; iter++) {
        if (vio_loop_run_once(&r->loop, 0) <= 0)
            break;
        drain_replies(r);
    }
    drain_replies(r);
}

static void client_connect(struct run *r)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    r->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (r->sock < 0)
        abort();
    memcpy(sa.sun_path, r->path, strlen(r->path));
    if (connect(r->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        abort();
    r->rx_len = 0;
    pump(r);
}

/* Another front-end while one is connected: refused, the first stays. */
static void second_frontend(struct run *r)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0)
        abort();
    memcpy(sa.sun_path, r->path, strlen(r->path));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        abort();
    pump(r);
    close(fd);
    pump(r);
}

static void client_close(struct run *r)
{
    if (r->sock >= 0)
        close(r->sock);
    r->sock = -1;
    pump(r);
}

static void add_pending(struct run *r, int fd)
{
    if (r->npending < MAX_PENDING)
        r->pending[r->npending++] = fd;
}

static void op_send(struct run *r, struct input *in)
{
    size_t len = take_u16(in) % (3 * (sizeof(struct vu_hdr) + VU_MAX_PAYLOAD));
    const uint8_t *p = in->p;
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_PENDING)];
        struct cmsghdr align;
    } cmsg;
    struct iovec iov;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    len = take(in, NULL, len);
    if (r->sock < 0 || len == 0)
        goto out;
    iov.iov_base = (void *)p;
    iov.iov_len = len;
    if (r->npending) {
        struct cmsghdr *c;

        memset(&cmsg, 0, sizeof(cmsg));
        mh.msg_control = cmsg.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * r->npending);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * r->npending);
        memcpy(CMSG_DATA(c), r->pending, sizeof(int) * r->npending);
    }
    for (int tries = 0; iov.iov_len && tries < 8; tries++) {
        ssize_t n = sendmsg(r->sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0) {
            if (errno != EAGAIN)
                break;
            pump(r);
            continue;
        }
        iov.iov_base = (uint8_t *)iov.iov_base + n;
        iov.iov_len -= (size_t)n;
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
    }
out:
    r->npending = 0;
}

static void op_memfd(struct run *r, struct input *in)
{
    size_t size = (1 + take_u8(in) % 16) * PAGE;
    size_t len = take_u16(in);
    const uint8_t *p = in->p;
    int fd;
    void *m;

    len = take(in, NULL, len);
    if (r->nmemfds == MAX_MEMFDS)
        return;
    fd = memfd_create("fuzz-guest", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        abort();
    m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        abort();
    memcpy(m, p, len < size ? len : size);
    r->memfds[r->nmemfds] = fd;
    r->maps[r->nmemfds] = m;
    r->map_len[r->nmemfds++] = size;
    add_pending(r, fd);
}

static void op_eventfd(struct run *r)
{
    int fd;

    if (r->nevfds == MAX_EVFDS)
        return;
    fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        abort();
    r->evfds[r->nevfds++] = fd;
    add_pending(r, fd);
}

static void op_poke(struct run *r, struct input *in)
{
    unsigned idx = take_u8(in);
    size_t off = take_u16(in), len = take_u8(in);
    const uint8_t *p = in->p;

    len = take(in, NULL, len);
    if (r->nmemfds == 0)
        return;
    idx %= r->nmemfds;
    if (off >= r->map_len[idx])
        return;
    if (len > r->map_len[idx] - off)
        len = r->map_len[idx] - off;
    memcpy(r->maps[idx] + off, p, len);
}

static void op_kick(struct run *r, struct input *in)
{
    unsigned idx = take_u8(in);

    if (r->nevfds)
        eventfd_write(r->evfds[idx % r->nevfds], 1);
}

static void op_oddfd(struct run *r, struct input *in)
{
    unsigned kind = take_u8(in) % 4;
    int fds[2] = {-1, -1};

    if (r->nothers + 2 > VIO_ARRAY_SIZE(r->others))
        return;
    switch (kind) {
    case 0:
        if (pipe2(fds, O_CLOEXEC) < 0)
            abort();
        break;
    case 1:
        fds[0] = open("/dev/null", O_RDWR | O_CLOEXEC);
        break;
    case 2:
        fds[0] = memfd_create("fuzz-empty", MFD_CLOEXEC);
        break;
    default:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
            abort();
        break;
    }
    if (fds[0] < 0)
        abort();
    r->others[r->nothers++] = fds[0];
    if (fds[1] >= 0)
        r->others[r->nothers++] = fds[1];
    add_pending(r, fds[0]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Every dropped connection is a warning; keep the fuzzer quiet unless
     * FUZZ_VERBOSE is set (to see what a seed or a crash input does). */
    if (!getenv("FUZZ_VERBOSE"))
        vio_log_set_level(VIO_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct run r;
    struct input in = {data, size};
    struct vio_blk_opts bo = {.id = "fz", .num_queues = 2, .queue_size = 64};
    struct vio_bdev *bdev = calloc(1, sizeof(*bdev));
    int fds_before = count_fds();

    memset(&r, 0, sizeof(r));
    snprintf(r.path, sizeof(r.path), "/tmp/vio-fuzz-vu-%d.sock", (int)getpid());
    bdev->ops = &fake_ops;
    bdev->size = DISK_SIZE;
    bdev->block_size = 512;
    bdev->can_discard = true;
    bdev->can_write_zeroes = true;
    if (vio_loop_init(&r.loop) < 0 || vio_blk_create(&bo, bdev, &r.dev) < 0)
        abort();
    for (unsigned i = 0; i < r.dev->num_queues; i++)
        r.dev->queues[i].loop = &r.loop;
    if (vio_vu_backend_create(r.dev, r.path, &r.loop, &r.vu) < 0)
        abort();
    client_connect(&r);

    while (in.left) {
        switch (take_u8(&in) % 8) {
        case 0:
            op_send(&r, &in);
            break;
        case 1:
            op_memfd(&r, &in);
            break;
        case 2:
            op_eventfd(&r);
            break;
        case 3:
            op_poke(&r, &in);
            break;
        case 4:
            op_kick(&r, &in);
            break;
        case 5:
            break;
        case 6:
            if (take_u8(&in) & 1) {
                second_frontend(&r);
            } else {
                client_close(&r);
                client_connect(&r);
            }
            break;
        default:
            op_oddfd(&r, &in);
            break;
        }
        pump(&r);
    }
    /* The info the control API would show must be buildable in any state. */
    {
        json_t *info = vio_vu_backend_info(r.vu), *st = r.dev->ops->stats(r.dev);

        if (!info || !st)
            abort();
        if (getenv("FUZZ_VERBOSE")) {
            json_dumpf(info, stderr, JSON_COMPACT);
            json_dumpf(st, stderr, JSON_COMPACT);
            fputc('\n', stderr);
        }
        json_decref(info);
        json_decref(st);
    }

    client_close(&r);
    vio_vu_backend_destroy(r.vu);
    r.dev->ops->destroy(r.dev);
    vio_loop_destroy(&r.loop);
    for (unsigned i = 0; i < r.nmemfds; i++) {
        munmap(r.maps[i], r.map_len[i]);
        close(r.memfds[i]);
    }
    for (unsigned i = 0; i < r.nevfds; i++)
        close(r.evfds[i]);
    for (unsigned i = 0; i < r.nothers; i++)
        close(r.others[i]);
    if (count_fds() != fds_before) {
        fprintf(stderr, "fuzz_vu_msg: %d file descriptors leaked\n", count_fds() - fds_before);
        abort();
    }
    return 0;
}
