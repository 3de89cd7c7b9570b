/* vio bench blk: a virtio-blk driver in this process, over vhost-user.
 * Workloads: random or sequential reads and writes of one block size at a
 * queue depth per queue, on one or several queues (one thread each), for a
 * duration or an I/O count; latency percentiles; the back-end's CPU time.
 * "verify" writes a pattern (derived from --seed and each 8-byte word's
 * byte offset) and reads it back; "check" only reads and compares, so a
 * test can check data written by someone else, and the pattern can be
 * recomputed outside (see tests/host/test_bench.py). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/log.h"
#include "core/util.h"
#include "vuser/vuser.h"

#define BLK_T_IN     0
#define BLK_T_OUT    1
#define BLK_F_FLUSH  9
#define BLK_F_MQ     12
#define SECTOR       512u

enum rw { RW_RANDREAD, RW_RANDWRITE, RW_READ, RW_WRITE, RW_VERIFY, RW_CHECK };
static const char *const rw_names[] = {"randread", "randwrite", "read", "write", "verify",
                                       "check"};

struct blk_cfg {
    const char *sock;
    enum rw rw;
    uint32_t bs;
    unsigned qd;
    unsigned queues;
    double duration;  /* seconds, when count == 0 */
    double ramp;      /* seconds before counting starts */
    uint64_t count;   /* I/Os (blocks for verify/check) in all */
    uint64_t span;    /* bytes of the disk used, from offset 0 */
    uint64_t seed;
    bool poll;
    bool json;
    pid_t backend;
};

struct blk_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

struct req {
    struct blk_hdr *hdr;
    uint8_t *data;
    uint8_t *status;
    uint64_t hdr_gpa, data_gpa, status_gpa;
    uint64_t off;
    uint64_t start_ns;
    bool write;
};

struct worker {
    pthread_t thread;
    unsigned id;
    const struct blk_cfg *c;
    struct vio_vuser_vq *q;
    struct req *reqs;
    uint64_t rng;
    uint64_t next_seq;  /* sequential cursor (bytes) */
    uint64_t ops_total; /* count mode: I/Os this worker does in the phase */
    uint64_t issued;
    uint64_t start_ns;    /* counting starts (after the ramp) */
    uint64_t deadline_ns; /* duration mode: stop issuing */
    /* results */
    uint64_t done, bytes, errors, mismatches, verified;
    struct bench_hist hist;
    int ret;
};

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The verify pattern: word at byte offset @off holds splitmix64(seed + off/8). */
static void fill_pattern(uint8_t *buf, uint32_t len, uint64_t off, uint64_t seed)
{
    for (uint32_t k = 0; k < len; k += 8) {
        uint64_t v = vio_to_le64(splitmix64(seed + (off + k) / 8));
        memcpy(buf + k, &v, 8);
    }
}

static bool check_pattern(const uint8_t *buf, uint32_t len, uint64_t off, uint64_t seed)
{
    for (uint32_t k = 0; k < len; k += 8) {
        uint64_t v = vio_to_le64(splitmix64(seed + (off + k) / 8));
        if (memcmp(buf + k, &v, 8) != 0)
            return false;
    }
    return true;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Verify and check place block i of the run at i*bs (block i belongs to
 * worker i % queues). */
static bool pick(struct worker *w, bool *write, uint64_t *off)
{
    const struct blk_cfg *c = w->c;
    uint64_t blocks = c->span / c->bs;

    if (c->count ? w->issued >= w->ops_total : vio_now_ns() >= w->deadline_ns)
        return false;
    switch (c->rw) {
    case RW_RANDREAD:
    case RW_RANDWRITE:
        *off = (xorshift(&w->rng) % blocks) * c->bs;
        break;
    case RW_READ:
    case RW_WRITE:
        *off = w->next_seq;
        w->next_seq += c->bs;
        if (w->next_seq + c->bs > c->span)
            w->next_seq = 0;
        break;
    case RW_VERIFY:
    case RW_CHECK:
        *off = ((w->issued * c->queues + w->id) % blocks) * c->bs;
        break;
    }
    *write = c->rw == RW_RANDWRITE || c->rw == RW_WRITE || (c->rw == RW_VERIFY && *write);
    w->issued++;
    return true;
}

static int submit(struct worker *w, struct req *r, bool write, uint64_t off)
{
    const struct blk_cfg *c = w->c;
    struct vio_vuser_buf b[3] = {
        {r->hdr_gpa, sizeof(*r->hdr)}, {r->data_gpa, c->bs}, {r->status_gpa, 1}};

    r->write = write;
    r->off = off;
    r->hdr->type = vio_to_le32(write ? BLK_T_OUT : BLK_T_IN);
    r->hdr->reserved = 0;
    r->hdr->sector = vio_to_le64(off / SECTOR);
    *r->status = 0xff;
    if (write && c->rw == RW_VERIFY)
        fill_pattern(r->data, c->bs, off, c->seed);
    r->start_ns = vio_now_ns();
    int ret = write ? vio_vuser_add(w->q, b, 2, 1, r) : vio_vuser_add(w->q, b, 1, 2, r);
    return ret < 0 ? ret : 0;
}

static void complete(struct worker *w, struct req *r, uint64_t now)
{
    const struct blk_cfg *c = w->c;

    if (*r->status != 0) {
        if (w->errors++ < 5)
            vio_err("bench blk: %s at offset %llu failed: status %u", r->write ? "write" : "read",
                    (unsigned long long)r->off, *r->status);
        return;
    }
    if (!r->write && (c->rw == RW_VERIFY || c->rw == RW_CHECK)) {
        if (check_pattern(r->data, c->bs, r->off, c->seed)) {
            w->verified++;
        } else if (w->mismatches++ < 5) {
            vio_err("bench blk: data at offset %llu does not match the pattern",
                    (unsigned long long)r->off);
        }
    }
    if (now >= w->start_ns) {
        w->done++;
        w->bytes += c->bs;
        bench_hist_add(&w->hist, now - r->start_ns);
    }
}

/* Keep qd requests in flight until pick() says stop, then drain. */
static int run_phase(struct worker *w, bool writes)
{
    const struct blk_cfg *c = w->c;
    unsigned inflight = 0;
    uint64_t idle_since = 0;
    int ret;

    for (unsigned i = 0; i < c->qd; i++) {
        bool wr = writes;
        uint64_t off;
        if (!pick(w, &wr, &off))
            break;
        ret = submit(w, &w->reqs[i], wr, off);
        if (ret < 0)
            return ret;
        inflight++;
    }
    vio_vuser_kick(w->q);
    if (c->poll)
        vio_vuser_set_interrupts(w->q, false);
    while (inflight > 0) {
        uint32_t len;
        void *cookie;
        unsigned got = 0;
        uint64_t now = vio_now_ns();

        while ((ret = vio_vuser_get(w->q, &len, &cookie)) != 0) {
            if (ret < 0)
                return ret;
            struct req *r = cookie;
            complete(w, r, now);
            got++;
            inflight--;
            bool wr = writes;
            uint64_t off;
            if (pick(w, &wr, &off)) {
                ret = submit(w, r, wr, off);
                if (ret < 0)
                    return ret;
                inflight++;
            }
        }
        if (got) {
            vio_vuser_kick(w->q);
            idle_since = 0;
            continue;
        }
        if (!idle_since)
            idle_since = now;
        else if (now - idle_since > 30ull * 1000000000ull) {
            vio_err("bench blk: queue %u: %u requests unanswered for 30 s", w->id, inflight);
            return -ETIMEDOUT;
        }
        if (c->poll) {
            __builtin_ia32_pause();
        } else {
            ret = vio_vuser_wait(w->q, 1000);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    if (w->c->rw == RW_VERIFY) {
        w->ret = run_phase(w, true);
        if (w->ret == 0) {
            w->issued = 0;
            w->ret = run_phase(w, false);
        }
    } else {
        w->ret = run_phase(w, false);
    }
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vio bench blk --socket PATH [options]\n"
            "\n"
            "Act as the virtio-blk driver of the vhost-user-blk device at PATH.\n"
            "  --rw MODE           randread (default), randwrite, read, write (sequential),\n"
            "                      verify (write a pattern, read it back, compare) or\n"
            "                      check (read and compare with the pattern)\n"
            "  --bs SIZE           block size, a multiple of 512 (default 4k)\n"
            "  --qd N              requests in flight per queue (default 1)\n"
            "  --queues N          queues, one thread each (default 1)\n"
            "  --duration SECONDS  how long to run (default 5; 10s, 500ms)\n"
            "  --count N           stop after N I/Os in all instead (blocks for verify/check;\n"
            "                      default for those: the span's blocks, at most 4096)\n"
            "  --ramp SECONDS      run this long before counting (default 0)\n"
            "  --span SIZE         use the first SIZE bytes of the disk (default: all)\n"
            "  --seed N            pattern seed for verify/check, xorshift seed (default 1)\n"
            "  --poll              poll the used rings instead of sleeping on interrupts\n"
            "  --backend-pid PID   report this process's CPU time and IOPS per its CPU-second\n"
            "  --json              one JSON object instead of key=value\n");
}

static int parse(int argc, char **argv, struct blk_cfg *c)
{
    static const struct option lo[] = {
        {"socket", required_argument, NULL, 's'}, {"rw", required_argument, NULL, 'r'},
        {"bs", required_argument, NULL, 'b'},     {"qd", required_argument, NULL, 'q'},
        {"queues", required_argument, NULL, 'Q'}, {"duration", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},  {"ramp", required_argument, NULL, 'R'},
        {"span", required_argument, NULL, 'S'},   {"seed", required_argument, NULL, 'e'},
        {"poll", no_argument, NULL, 'p'},         {"backend-pid", required_argument, NULL, 'P'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    uint64_t v;
    int opt;

    *c = (struct blk_cfg){.rw = RW_RANDREAD, .bs = 4096, .qd = 1, .queues = 1, .duration = 5,
                          .seed = 1};
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (opt) {
        case 's':
            c->sock = optarg;
            break;
        case 'r': {
            unsigned i;
            for (i = 0; i < sizeof(rw_names) / sizeof(rw_names[0]); i++)
                if (strcmp(optarg, rw_names[i]) == 0)
                    break;
            if (i == sizeof(rw_names) / sizeof(rw_names[0])) {
                fprintf(stderr, "vio bench blk: unknown --rw '%s'\n", optarg);
                return -EINVAL;
            }
            c->rw = (enum rw)i;
            break;
        }
        case 'b':
            if (vio_parse_size(optarg, &v) < 0 || v == 0 || v % SECTOR || v > (1u << 20)) {
                fprintf(stderr, "vio bench blk: --bs must be a multiple of 512 up to 1M\n");
                return -EINVAL;
            }
            c->bs = (uint32_t)v;
            break;
        case 'q':
        case 'Q':
            if (vio_parse_size(optarg, &v) < 0 || v == 0 || v > (opt == 'q' ? 256 : 16)) {
                fprintf(stderr, "vio bench blk: --%s must be 1..%d\n",
                        opt == 'q' ? "qd" : "queues", opt == 'q' ? 256 : 16);
                return -EINVAL;
            }
            if (opt == 'q')
                c->qd = (unsigned)v;
            else
                c->queues = (unsigned)v;
            break;
        case 'd':
        case 'R':
            if (bench_parse_seconds(optarg, opt == 'd' ? &c->duration : &c->ramp) < 0) {
                fprintf(stderr, "vio bench blk: bad time '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case 'n':
            if (vio_parse_size(optarg, &c->count) < 0 || c->count == 0) {
                fprintf(stderr, "vio bench blk: bad --count '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case 'S':
            if (vio_parse_size(optarg, &c->span) < 0 || c->span == 0) {
                fprintf(stderr, "vio bench blk: bad --span '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case 'e':
            if (vio_parse_size(optarg, &c->seed) < 0) {
                fprintf(stderr, "vio bench blk: bad --seed '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case 'p':
            c->poll = true;
            break;
        case 'P':
            if (vio_parse_size(optarg, &v) < 0 || v == 0 || v > 0x7fffffff) {
                fprintf(stderr, "vio bench blk: bad --backend-pid '%s'\n", optarg);
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
        fprintf(stderr, "vio bench blk: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if (!c->sock) {
        fprintf(stderr, "vio bench blk: --socket PATH is required\n");
        return -EINVAL;
    }
    if (c->ramp > 0 && c->count) {
        fprintf(stderr, "vio bench blk: --ramp goes with --duration, not --count\n");
        return -EINVAL;
    }
    return 0;
}

static uint16_t ring_size(unsigned qd)
{
    unsigned n = 64;
    while (n < qd * 3 && n < 1024)
        n <<= 1;
    return (uint16_t)n;
}

int vio_bench_blk_main(int argc, char **argv)
{
    struct blk_cfg c;
    struct vio_vuser *d = NULL;
    struct worker *ws = NULL;
    int ret = parse(argc, argv, &c), rc = 1;
    unsigned started = 0;

    if (ret)
        return ret > 0 ? 0 : 2;

    struct vio_vuser_opts vo = {
        .sock = c.sock,
        .mem_bytes = (uint64_t)c.queues * (c.qd * (c.bs + 8192ull) + 256 * 1024) + (1 << 20),
        .want_features = VIO_BIT(BLK_F_FLUSH) | (c.queues > 1 ? VIO_BIT(BLK_F_MQ) : 0),
        .nqueues = c.queues,
        .qsize = ring_size(c.qd),
        .event_idx = true,
    };
    ret = vio_vuser_open(&vo, &d);
    if (ret < 0) {
        fprintf(stderr, "vio bench blk: %s: %s\n", c.sock, strerror(-ret));
        return 1;
    }
    uint64_t sectors = 0;
    ret = vio_vuser_get_config(d, 0, &sectors, sizeof(sectors));
    uint64_t disk = vio_le64(sectors) * SECTOR;
    if (ret < 0 && !c.span) {
        fprintf(stderr, "vio bench blk: cannot read the disk size (%s): give --span\n",
                strerror(-ret));
        goto out;
    }
    if (!c.span)
        c.span = disk;
    if (ret == 0 && c.span > disk) {
        fprintf(stderr, "vio bench blk: --span %llu is past the disk's end (%llu bytes)\n",
                (unsigned long long)c.span, (unsigned long long)disk);
        goto out;
    }
    if (c.span < c.bs) {
        fprintf(stderr, "vio bench blk: the disk (%llu bytes) is smaller than one block\n",
                (unsigned long long)c.span);
        goto out;
    }
    if ((c.rw == RW_VERIFY || c.rw == RW_CHECK) && !c.count) {
        c.count = c.span / c.bs;
        if (c.count > 4096)
            c.count = 4096;
    }

    ws = calloc(c.queues, sizeof(*ws));
    if (!ws)
        goto out;
    for (unsigned i = 0; i < c.queues; i++) {
        struct worker *w = &ws[i];
        w->id = i;
        w->c = &c;
        w->q = vio_vuser_vq(d, i);
        w->rng = splitmix64(c.seed * 131 + i) | 1;
        w->next_seq = (c.span / c.queues / c.bs) * c.bs * i;
        w->ops_total = c.count / c.queues + (i < c.count % c.queues);
        w->reqs = calloc(c.qd, sizeof(*w->reqs));
        if (!w->reqs)
            goto out;
        for (unsigned k = 0; k < c.qd; k++) {
            struct req *r = &w->reqs[k];
            r->hdr = vio_vuser_alloc(d, sizeof(*r->hdr), 16, &r->hdr_gpa);
            r->status = vio_vuser_alloc(d, 1, 1, &r->status_gpa);
            r->data = vio_vuser_alloc(d, c.bs, 4096, &r->data_gpa);
            if (!r->hdr || !r->status || !r->data) {
                fprintf(stderr, "vio bench blk: out of shared memory\n");
                goto out;
            }
        }
    }

    uint64_t t0 = vio_now_ns();
    uint64_t start = t0 + (uint64_t)(c.ramp * 1e9);
    for (unsigned i = 0; i < c.queues; i++) {
        ws[i].start_ns = c.count ? 0 : start;
        ws[i].deadline_ns = start + (uint64_t)(c.duration * 1e9);
    }
    double cpu0 = -1, self0 = 0;
    if (c.count) {
        cpu0 = bench_proc_cpu(c.backend);
        self0 = bench_self_cpu();
    }
    for (; started < c.queues; started++) {
        if (pthread_create(&ws[started].thread, NULL, worker_main, &ws[started]) != 0) {
            fprintf(stderr, "vio bench blk: cannot start a thread\n");
            break;
        }
    }
    if (!c.count) {
        uint64_t now = vio_now_ns();
        if (start > now) {
            struct timespec ts = {(time_t)((start - now) / 1000000000ull),
                                  (long)((start - now) % 1000000000ull)};
            nanosleep(&ts, NULL);
        }
        cpu0 = bench_proc_cpu(c.backend);
        self0 = bench_self_cpu();
        start = vio_now_ns();
    } else {
        start = t0;
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
    uint64_t end = vio_now_ns();
    double cpu1 = bench_proc_cpu(c.backend), self1 = bench_self_cpu();
    if (started < c.queues)
        goto out;

    struct bench_hist *h = calloc(1, sizeof(*h));
    uint64_t done = 0, bytes = 0, errors = 0, mism = 0, verified = 0, kicks = 0, waits = 0;
    int wret = 0;
    if (!h)
        goto out;
    for (unsigned i = 0; i < c.queues; i++) {
        bench_hist_merge(h, &ws[i].hist);
        done += ws[i].done;
        bytes += ws[i].bytes;
        errors += ws[i].errors;
        mism += ws[i].mismatches;
        verified += ws[i].verified;
        kicks += ws[i].q->kicks;
        waits += ws[i].q->waits;
        if (ws[i].ret < 0 && !wret)
            wret = ws[i].ret;
    }
    double secs = (double)(end - start) / 1e9;
    double bcpu = (cpu0 >= 0 && cpu1 >= 0) ? cpu1 - cpu0 : -1;
    struct bench_out o;
    bench_out_begin(&o, c.json, "blk");
    bench_out_str(&o, "rw", rw_names[c.rw]);
    bench_out_u64(&o, "bs", c.bs);
    bench_out_u64(&o, "qd", c.qd);
    bench_out_u64(&o, "queues", c.queues);
    bench_out_u64(&o, "ios", done);
    bench_out_f(&o, "seconds", secs);
    bench_out_f(&o, "iops", (double)done / secs);
    bench_out_f(&o, "mib_s", (double)bytes / secs / 1048576.0);
    bench_out_f(&o, "lat_mean_us", h->count ? (double)h->sum_ns / (double)h->count / 1e3 : 0);
    bench_out_f(&o, "lat_p50_us", (double)bench_hist_quantile(h, 0.5) / 1e3);
    bench_out_f(&o, "lat_p99_us", (double)bench_hist_quantile(h, 0.99) / 1e3);
    bench_out_f(&o, "lat_p999_us", (double)bench_hist_quantile(h, 0.999) / 1e3);
    bench_out_f(&o, "lat_max_us", (double)h->max_ns / 1e3);
    bench_out_u64(&o, "errors", errors);
    if (c.rw == RW_VERIFY || c.rw == RW_CHECK) {
        bench_out_u64(&o, "verified", verified);
        bench_out_u64(&o, "mismatches", mism);
    }
    if (c.backend) {
        bench_out_f(&o, "backend_cpu_s", bcpu);
        bench_out_f(&o, "iops_per_backend_cpu_s", bcpu > 0 ? (double)done / bcpu : -1.0 / 0.0);
    }
    bench_out_f(&o, "driver_cpu_s", self1 - self0);
    bench_out_u64(&o, "kicks", kicks);
    bench_out_u64(&o, "waits", waits);
    bench_out_end(&o);
    free(h);
    if (wret < 0)
        fprintf(stderr, "vio bench blk: %s\n", strerror(-wret));
    if (c.backend && bcpu < 0)
        fprintf(stderr, "vio bench blk: cannot read the CPU time of pid %d\n", (int)c.backend);
    rc = (wret < 0 || errors || mism || (c.backend && bcpu < 0)) ? 1 : 0;
out:
    if (ws)
        for (unsigned i = 0; i < c.queues; i++)
            free(ws[i].reqs);
    free(ws);
    vio_vuser_close(d);
    return rc;
}
