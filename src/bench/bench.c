/* vio bench: subcommand dispatch and the shared measuring pieces (see
 * bench.h). The workloads are in bench_blk.c, bench_scsi.c (both on
 * bench_disk.c) and bench_net.c. */
#include "bench/bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static unsigned hist_index(uint64_t v)
{
    if (v < BENCH_HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= BENCH_HIST_BITS */
    unsigned idx = (e - BENCH_HIST_BITS + 1) * BENCH_HIST_SUB +
                   (unsigned)((v >> (e - BENCH_HIST_BITS)) & (BENCH_HIST_SUB - 1));
    return idx < BENCH_HIST_N ? idx : BENCH_HIST_N - 1;
}

/* Middle of bucket @i. */
static uint64_t hist_value(unsigned i)
{
    if (i < BENCH_HIST_SUB)
        return i;
    unsigned e = i / BENCH_HIST_SUB + BENCH_HIST_BITS - 1;
    uint64_t sub = i % BENCH_HIST_SUB;
    uint64_t lo = (1ull << e) | (sub << (e - BENCH_HIST_BITS));
    return lo + (1ull << (e - BENCH_HIST_BITS)) / 2;
}

void bench_hist_add(struct bench_hist *h, uint64_t ns)
{
    h->b[hist_index(ns)]++;
    h->count++;
    h->sum_ns += ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from)
{
    for (unsigned i = 0; i < BENCH_HIST_N; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    into->sum_ns += from->sum_ns;
    if (from->max_ns > into->max_ns)
        into->max_ns = from->max_ns;
}

uint64_t bench_hist_quantile(const struct bench_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count), seen = 0;
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < BENCH_HIST_N; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = hist_value(i);
            return v > h->max_ns ? h->max_ns : v;
        }
    }
    return h->max_ns;
}

double bench_proc_cpu(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long ut, st;
    FILE *f;
    size_t n;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* Fields after the command name, which may hold spaces and ')'. */
    char *p = strrchr(buf, ')');
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

double bench_self_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int bench_parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0) || v > 86400)
        return -EINVAL;
    if (strcmp(end, "ms") == 0)
        v /= 1000;
    else if (*end && strcmp(end, "s") != 0)
        return -EINVAL;
    *out = v;
    return 0;
}

void bench_out_begin(struct bench_out *o, bool json, const char *what)
{
    o->json = json;
    o->first = true;
    if (json)
        printf("{");
    bench_out_str(o, "bench", what);
}

static void sep(struct bench_out *o, const char *k)
{
    if (o->json)
        printf("%s\"%s\": ", o->first ? "" : ", ", k);
    else
        printf("%s%s=", o->first ? "" : " ", k);
    o->first = false;
}

void bench_out_str(struct bench_out *o, const char *k, const char *v)
{
    sep(o, k);
    printf(o->json ? "\"%s\"" : "%s", v);
}

void bench_out_u64(struct bench_out *o, const char *k, uint64_t v)
{
    sep(o, k);
    printf("%llu", (unsigned long long)v);
}

void bench_out_f(struct bench_out *o, const char *k, double v)
{
    sep(o, k);
    if (isfinite(v))
        printf("%.6g", v);
    else
        printf(o->json ? "null" : "-");
}

void bench_out_end(struct bench_out *o)
{
    printf(o->json ? "}\n" : "\n");
    fflush(stdout);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vio bench blk --socket PATH [options]   (vio bench blk --help)\n"
               "       vio bench scsi --socket PATH [options]  (vio bench scsi --help)\n"
               "       vio bench net --tx PATH --rx PATH [options] (vio bench net --help)\n"
               "\n"
               "Drive a vhost-user device from this process, acting as its virtio driver,\n"
               "and measure it: no VM needed. Works against vio serve and any other\n"
               "vhost-user back-end (qemu-storage-daemon, DPDK's vhost PMD).\n");
}

int vio_bench_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "blk") == 0)
        return vio_bench_blk_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "net") == 0)
        return vio_bench_net_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "scsi") == 0)
        return vio_bench_scsi_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "vio bench: unknown workload '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
