/* vio bench: drive a vhost-user device from a host process (vuser/vuser.h)
 * and measure it. Shared pieces: latency histograms, the back-end's CPU
 * time from /proc, and the result printer (a human line, or one JSON
 * object with --json for the bench/ scripts). */
#ifndef VIO_BENCH_BENCH_H
#define VIO_BENCH_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Log-linear histogram of nanosecond values: 64 sub-buckets per power of
 * two, so a reported percentile is within 1.6% of the true value. */
#define BENCH_HIST_SUB  64
#define BENCH_HIST_BITS 6
#define BENCH_HIST_N    (BENCH_HIST_SUB * 42)

struct bench_hist {
    uint64_t count;
    uint64_t sum_ns;
    uint64_t max_ns;
    uint64_t b[BENCH_HIST_N];
};

void bench_hist_add(struct bench_hist *h, uint64_t ns);
void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from);
/* The value at quantile @q (0..1) in nanoseconds; 0 when empty. */
uint64_t bench_hist_quantile(const struct bench_hist *h, double q);

/* CPU seconds (user + system, all threads) used so far by process @pid, or
 * a negative value when it cannot be read. pid 0 means no process. */
double bench_proc_cpu(pid_t pid);
/* Our own CPU seconds (all threads). */
double bench_self_cpu(void);

/* A duration or count in the command line: "10", "10s", "500ms". */
int bench_parse_seconds(const char *s, double *out);

/* Result fields in order; printed as "k=v ..." or as a JSON object. */
struct bench_out {
    bool json;
    bool first;
};
void bench_out_begin(struct bench_out *o, bool json, const char *what);
void bench_out_str(struct bench_out *o, const char *k, const char *v);
void bench_out_u64(struct bench_out *o, const char *k, uint64_t v);
void bench_out_f(struct bench_out *o, const char *k, double v);
void bench_out_end(struct bench_out *o);

/* `vio bench ARGS` (argv[0] is "bench"). */
int vio_bench_main(int argc, char **argv);
int vio_bench_blk_main(int argc, char **argv);
int vio_bench_net_main(int argc, char **argv);
int vio_bench_scsi_main(int argc, char **argv);

#endif
