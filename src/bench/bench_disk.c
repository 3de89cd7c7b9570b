/* vio bench blk|scsi: the shared block workload engine (see bench_disk.h).
 * Workloads: random or sequential reads and writes of one block size at a
 * queue depth per queue, on one or several queues (one thread each), for a
 * duration or an I/O count; latency percentiles; the back-end's CPU time.
 * "verify" writes a pattern (derived from --seed and each 8-byte word's
 * byte offset) and reads it back; "check" only reads and compares, so a
 * test can check data written by someone else, and the pattern can be
 * recomputed outside (see tests/host/test_bench.py). */
#include "bench/bench_disk.h"

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

static const char *const rw_names[] = {"randread", "randwrite", "read", "write", "verify", "check"};

struct worker {
    pthread_t thread;
    unsigned id;
    const struct bench_disk_cfg *c;
    const struct bench_disk_ops *ops;
    const struct bench_disk_dev *dev;
    struct vio_vuser_vq *q;
    struct bench_disk_req *reqs;
    uint64_t rng;
    uint64_t next_seq;  /* sequential cursor (bytes) */
    uint64_t ops_total; /* count mode: I/Os this worker does in the phase */
    uint64_t issued;
    uint64_t start_ns;       /* counting starts (after the ramp) */
    uint64_t deadline_ns;    /* duration mode: stop issuing */
    uint64_t kicks0, waits0; /* the queue's counters before the run (set-up commands) */
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
    const struct bench_disk_cfg *c = w->c;
    uint64_t blocks = c->span / c->bs;

    if (c->count ? w->issued >= w->ops_total : vio_now_ns() >= w->deadline_ns)
        return false;
    switch (c->rw) {
    case BD_RANDREAD:
    case BD_RANDWRITE:
        *off = (xorshift(&w->rng) % blocks) * c->bs;
        break;
    case BD_READ:
    case BD_WRITE:
        *off = w->next_seq;
        w->next_seq += c->bs;
        if (w->next_seq + c->bs > c->span)
            w->next_seq = 0;
        break;
    case BD_VERIFY:
    case BD_CHECK:
        *off = ((w->issued * c->queues + w->id) % blocks) * c->bs;
        break;
    }
    *write = c->rw == BD_RANDWRITE || c->rw == BD_WRITE || (c->rw == BD_VERIFY && *write);
    w->issued++;
    return true;
}

static int submit(struct worker *w, struct bench_disk_req *r, bool write, uint64_t off)
{
    const struct bench_disk_cfg *c = w->c;
    const struct bench_disk_dev *dev = w->dev;
    struct vio_vuser_buf b[3];
    int ret;

    r->write = write;
    r->off = off;
    w->ops->prep(c, dev, r);
    if (write && c->rw == BD_VERIFY)
        fill_pattern(r->data, c->bs, off, c->seed);
    b[0] = (struct vio_vuser_buf){r->hdr_gpa, (uint32_t)dev->hdr_len};
    r->start_ns = vio_now_ns();
    if (write) {
        b[1] = (struct vio_vuser_buf){r->data_gpa, c->bs};
        b[2] = (struct vio_vuser_buf){r->resp_gpa, (uint32_t)dev->resp_len};
        ret = vio_vuser_add(w->q, b, 2, 1, r);
    } else {
        struct vio_vuser_buf data = {r->data_gpa, c->bs};
        struct vio_vuser_buf resp = {r->resp_gpa, (uint32_t)dev->resp_len};
        b[1] = dev->resp_first ? resp : data;
        b[2] = dev->resp_first ? data : resp;
        ret = vio_vuser_add(w->q, b, 1, 2, r);
    }
    return ret < 0 ? ret : 0;
}

static void complete(struct worker *w, struct bench_disk_req *r, uint32_t len, uint64_t now)
{
    const struct bench_disk_cfg *c = w->c;
    char why[256];

    if (w->ops->check(c, w->dev, r, len, why, sizeof(why)) != 0) {
        if (w->errors++ < 5)
            vio_err("bench %s: %s at offset %llu failed: %s", w->ops->name,
                    r->write ? "write" : "read", (unsigned long long)r->off, why);
        return;
    }
    if (!r->write && (c->rw == BD_VERIFY || c->rw == BD_CHECK)) {
        if (check_pattern(r->data, c->bs, r->off, c->seed)) {
            w->verified++;
        } else if (w->mismatches++ < 5) {
            vio_err("bench %s: data at offset %llu does not match the pattern", w->ops->name,
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
    const struct bench_disk_cfg *c = w->c;
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
            struct bench_disk_req *r = cookie;
            complete(w, r, len, now);
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
            vio_err("bench %s: queue %u: %u requests unanswered for 30 s", w->ops->name, w->id,
                    inflight);
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

    if (w->c->rw == BD_VERIFY) {
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

static void usage(FILE *f, const struct bench_disk_ops *ops)
{
    fprintf(f,
            "usage: vio bench %s --socket PATH [options]\n"
            "\n"
            "Act as the %s at PATH.\n",
            ops->name, ops->what);
    if (ops->addr_opts)
        fprintf(f, "  --target N          SCSI target (0..255, default 0)\n"
                   "  --lun N             LUN of that target (0..16383, default 0)\n");
    fprintf(f, "  --rw MODE           randread (default), randwrite, read, write (sequential),\n"
               "                      verify (write a pattern, read it back, compare) or\n"
               "                      check (read and compare with the pattern)\n"
               "  --bs SIZE           block size, a multiple of 512 (default 4k)\n"
               "  --qd N              requests in flight per queue (default 1)\n"
               "  --queues N          request queues, one thread each (default 1)\n"
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

static int parse(int argc, char **argv, const struct bench_disk_ops *ops, struct bench_disk_cfg *c)
{
    static const struct option lo[] = {{"socket", required_argument, NULL, 's'},
                                       {"rw", required_argument, NULL, 'r'},
                                       {"bs", required_argument, NULL, 'b'},
                                       {"qd", required_argument, NULL, 'q'},
                                       {"queues", required_argument, NULL, 'Q'},
                                       {"duration", required_argument, NULL, 'd'},
                                       {"count", required_argument, NULL, 'n'},
                                       {"ramp", required_argument, NULL, 'R'},
                                       {"span", required_argument, NULL, 'S'},
                                       {"seed", required_argument, NULL, 'e'},
                                       {"poll", no_argument, NULL, 'p'},
                                       {"backend-pid", required_argument, NULL, 'P'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {"target", required_argument, NULL, 'T'},
                                       {"lun", required_argument, NULL, 'L'},
                                       {NULL, 0, NULL, 0}};
    const char *n = ops->name;
    uint64_t v;
    int opt;

    *c = (struct bench_disk_cfg){
        .rw = BD_RANDREAD, .bs = 4096, .qd = 1, .queues = 1, .duration = 5, .seed = 1};
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (opt) {
        case 's':
            c->sock = optarg;
            break;
        case 'r': {
            unsigned i;
            for (i = 0; i < VIO_ARRAY_SIZE(rw_names); i++)
                if (strcmp(optarg, rw_names[i]) == 0)
                    break;
            if (i == VIO_ARRAY_SIZE(rw_names)) {
                fprintf(stderr, "vio bench %s: unknown --rw '%s'\n", n, optarg);
                return -EINVAL;
            }
            c->rw = (enum bench_disk_rw)i;
            break;
        }
        case 'b':
            if (vio_parse_size(optarg, &v) < 0 || v == 0 || v % 512 || v > (1u << 20)) {
                fprintf(stderr, "vio bench %s: --bs must be a multiple of 512 up to 1M\n", n);
                return -EINVAL;
            }
            c->bs = (uint32_t)v;
            break;
        case 'q':
        case 'Q':
            if (vio_parse_size(optarg, &v) < 0 || v == 0 || v > (opt == 'q' ? 256 : 16)) {
                fprintf(stderr, "vio bench %s: --%s must be 1..%d\n", n,
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
                fprintf(stderr, "vio bench %s: bad time '%s'\n", n, optarg);
                return -EINVAL;
            }
            break;
        case 'n':
            if (vio_parse_size(optarg, &c->count) < 0 || c->count == 0) {
                fprintf(stderr, "vio bench %s: bad --count '%s'\n", n, optarg);
                return -EINVAL;
            }
            break;
        case 'S':
            if (vio_parse_size(optarg, &c->span) < 0 || c->span == 0) {
                fprintf(stderr, "vio bench %s: bad --span '%s'\n", n, optarg);
                return -EINVAL;
            }
            break;
        case 'e':
            if (vio_parse_size(optarg, &c->seed) < 0) {
                fprintf(stderr, "vio bench %s: bad --seed '%s'\n", n, optarg);
                return -EINVAL;
            }
            break;
        case 'p':
            c->poll = true;
            break;
        case 'P':
            if (vio_parse_size(optarg, &v) < 0 || v == 0 || v > 0x7fffffff) {
                fprintf(stderr, "vio bench %s: bad --backend-pid '%s'\n", n, optarg);
                return -EINVAL;
            }
            c->backend = (pid_t)v;
            break;
        case 'j':
            c->json = true;
            break;
        case 'T':
        case 'L': {
            const char *name = opt == 'T' ? "target" : "lun";
            unsigned max = opt == 'T' ? 255 : 16383;
            if (!ops->addr_opts) {
                fprintf(stderr, "vio bench %s: unknown option '--%s'\n", n, name);
                usage(stderr, ops);
                return -EINVAL;
            }
            /* Decimal only: vio_parse_size would take "1k" as 1024. */
            char *end;
            errno = 0;
            unsigned long x = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-' || x > max) {
                fprintf(stderr, "vio bench %s: --%s must be a number 0..%u, got '%s'\n", n, name,
                        max, optarg);
                return -EINVAL;
            }
            if (opt == 'T')
                c->target = (unsigned)x;
            else
                c->lun = (unsigned)x;
            break;
        }
        case 'h':
            usage(stdout, ops);
            return 1;
        case ':':
            fprintf(stderr, "vio bench %s: '%s' needs a value\n", n, argv[optind - 1]);
            return -EINVAL;
        default:
            fprintf(stderr, "vio bench %s: unknown option '%s'\n", n, argv[optind - 1]);
            usage(stderr, ops);
            return -EINVAL;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "vio bench %s: unexpected argument '%s'\n", n, argv[optind]);
        return -EINVAL;
    }
    if (!c->sock) {
        fprintf(stderr, "vio bench %s: --socket PATH is required\n", n);
        return -EINVAL;
    }
    if (c->ramp > 0 && c->count) {
        fprintf(stderr, "vio bench %s: --ramp goes with --duration, not --count\n", n);
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

/* Fit the span to the disk and the verify count to the span. */
static int fit_span(struct bench_disk_cfg *c, const struct bench_disk_dev *dev, const char *n)
{
    if (!c->span)
        c->span = dev->size;
    if (c->span > dev->size) {
        fprintf(stderr, "vio bench %s: --span %llu is past the disk's end (%llu bytes)\n", n,
                (unsigned long long)c->span, (unsigned long long)dev->size);
        return -EINVAL;
    }
    if (c->span < c->bs) {
        fprintf(stderr, "vio bench %s: the disk (%llu bytes) is smaller than one block\n", n,
                (unsigned long long)c->span);
        return -EINVAL;
    }
    if (dev->block > 1 && c->bs % dev->block) {
        fprintf(stderr, "vio bench %s: --bs %u is not a multiple of the disk's %u-byte blocks\n", n,
                c->bs, dev->block);
        return -EINVAL;
    }
    if ((c->rw == BD_VERIFY || c->rw == BD_CHECK) && !c->count) {
        c->count = c->span / c->bs;
        if (c->count > 4096)
            c->count = 4096;
    }
    return 0;
}

static void report(const struct bench_disk_cfg *c, const struct bench_disk_ops *ops,
                   struct worker *ws, const struct bench_hist *h, double secs, double bcpu,
                   double dcpu)
{
    uint64_t done = 0, bytes = 0, errors = 0, mism = 0, verified = 0, kicks = 0, waits = 0;
    struct bench_out o;

    for (unsigned i = 0; i < c->queues; i++) {
        done += ws[i].done;
        bytes += ws[i].bytes;
        errors += ws[i].errors;
        mism += ws[i].mismatches;
        verified += ws[i].verified;
        kicks += ws[i].q->kicks - ws[i].kicks0;
        waits += ws[i].q->waits - ws[i].waits0;
    }
    bench_out_begin(&o, c->json, ops->name);
    bench_out_str(&o, "rw", rw_names[c->rw]);
    bench_out_u64(&o, "bs", c->bs);
    bench_out_u64(&o, "qd", c->qd);
    bench_out_u64(&o, "queues", c->queues);
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
    if (c->rw == BD_VERIFY || c->rw == BD_CHECK) {
        bench_out_u64(&o, "verified", verified);
        bench_out_u64(&o, "mismatches", mism);
    }
    if (c->backend) {
        bench_out_f(&o, "backend_cpu_s", bcpu);
        bench_out_f(&o, "iops_per_backend_cpu_s", bcpu > 0 ? (double)done / bcpu : -1.0 / 0.0);
    }
    bench_out_f(&o, "driver_cpu_s", dcpu);
    bench_out_u64(&o, "kicks", kicks);
    bench_out_u64(&o, "waits", waits);
    bench_out_end(&o);
}

int bench_disk_main(int argc, char **argv, const struct bench_disk_ops *ops)
{
    struct bench_disk_cfg c;
    struct bench_disk_dev dev = {0};
    struct worker *ws = NULL;
    const char *n = ops->name;
    int ret = parse(argc, argv, ops, &c), rc = 1;
    unsigned started = 0;
    bool opened = false;

    if (ret)
        return ret > 0 ? 0 : 2;

    unsigned nq = c.queues + ops->extra_queues;
    struct vio_vuser_opts vo = {
        .sock = c.sock,
        .mem_bytes = (uint64_t)c.queues * c.qd * (c.bs + 8192ull) + nq * 256 * 1024ull + (1 << 20),
        .nqueues = nq,
        .qsize = ring_size(c.qd),
        .event_idx = true,
    };
    if (ops->open(&c, &vo, &dev) < 0)
        return 1;
    opened = true;
    if (fit_span(&c, &dev, n) < 0)
        goto out;

    ws = calloc(c.queues, sizeof(*ws));
    if (!ws)
        goto out;
    for (unsigned i = 0; i < c.queues; i++) {
        struct worker *w = &ws[i];
        w->id = i;
        w->c = &c;
        w->ops = ops;
        w->dev = &dev;
        w->q = vio_vuser_vq(dev.d, dev.first_q + i);
        w->rng = splitmix64(c.seed * 131 + i) | 1;
        w->next_seq = (c.span / c.queues / c.bs) * c.bs * i;
        w->ops_total = c.count / c.queues + (i < c.count % c.queues);
        w->reqs = calloc(c.qd, sizeof(*w->reqs));
        if (!w->reqs || !w->q)
            goto out;
        w->kicks0 = w->q->kicks;
        w->waits0 = w->q->waits;
        for (unsigned k = 0; k < c.qd; k++) {
            struct bench_disk_req *r = &w->reqs[k];
            r->id = i * c.qd + k;
            r->hdr = vio_vuser_alloc(dev.d, dev.hdr_len, 64, &r->hdr_gpa);
            r->resp = vio_vuser_alloc(dev.d, dev.resp_len, 64, &r->resp_gpa);
            r->data = vio_vuser_alloc(dev.d, c.bs, 4096, &r->data_gpa);
            if (!r->hdr || !r->resp || !r->data) {
                fprintf(stderr, "vio bench %s: out of shared memory\n", n);
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
            fprintf(stderr, "vio bench %s: cannot start a thread\n", n);
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
    uint64_t errors = 0, mism = 0;
    int wret = 0;
    if (!h)
        goto out;
    for (unsigned i = 0; i < c.queues; i++) {
        bench_hist_merge(h, &ws[i].hist);
        errors += ws[i].errors;
        mism += ws[i].mismatches;
        if (ws[i].ret < 0 && !wret)
            wret = ws[i].ret;
    }
    double bcpu = (cpu0 >= 0 && cpu1 >= 0) ? cpu1 - cpu0 : -1;
    report(&c, ops, ws, h, (double)(end - start) / 1e9, bcpu, self1 - self0);
    free(h);
    if (wret < 0)
        fprintf(stderr, "vio bench %s: %s\n", n, strerror(-wret));
    if (errors)
        fprintf(stderr, "vio bench %s: %llu I/Os failed\n", n, (unsigned long long)errors);
    if (c.backend && bcpu < 0)
        fprintf(stderr, "vio bench %s: cannot read the CPU time of pid %d\n", n, (int)c.backend);
    rc = (wret < 0 || errors || mism || (c.backend && bcpu < 0)) ? 1 : 0;
out:
    if (ws)
        for (unsigned i = 0; i < c.queues; i++)
            free(ws[i].reqs);
    free(ws);
    if (opened) {
        if (ops->close)
            ops->close(&dev);
        else
            vio_vuser_close(dev.d);
    }
    return rc;
}
