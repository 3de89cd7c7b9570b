/* Logging for people: one line per message on stderr with time, level and
 * thread name. Guest-triggered messages go through a rate limiter so a
 * misbehaving guest cannot flood the log. Thread-safe. */
#ifndef VIO_CORE_LOG_H
#define VIO_CORE_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/util.h"

enum vio_log_level {
    VIO_LOG_ERROR = 0,
    VIO_LOG_WARN = 1,
    VIO_LOG_INFO = 2,
    VIO_LOG_DEBUG = 3,
};

/* Messages above @level are dropped. Default: VIO_LOG_INFO, or the value of
 * the VIO_LOG environment variable (error|warn|info|debug) read at first use. */
void vio_log_set_level(enum vio_log_level level);
enum vio_log_level vio_log_get_level(void);
/* Parses "error", "warn", "info", "debug". Returns 0 or -EINVAL. */
int vio_log_parse_level(const char *s, enum vio_log_level *out);

/* Name shown for the calling thread (e.g. "main", "worker1"); copied. */
void vio_log_set_thread_name(const char *name);

void vio_log(enum vio_log_level level, const char *fmt, ...) VIO_PRINTF(2, 3);

#define vio_err(...)   vio_log(VIO_LOG_ERROR, __VA_ARGS__)
#define vio_warn(...)  vio_log(VIO_LOG_WARN, __VA_ARGS__)
#define vio_info(...)  vio_log(VIO_LOG_INFO, __VA_ARGS__)
#define vio_debug(...) vio_log(VIO_LOG_DEBUG, __VA_ARGS__)

/* At most `burst` messages per `interval_ns`; the rest are counted and
 * reported with the next message that gets through. One per message source;
 * not shared between threads. */
struct vio_ratelimit {
    uint64_t interval_ns;
    unsigned burst;
    uint64_t window_start;
    unsigned printed;
    unsigned suppressed;
};

#define VIO_RATELIMIT_INIT {.interval_ns = 5000000000ull, .burst = 5}

/* Returns true if a message may be printed now; a true return after
 * suppression logs how many were dropped. */
bool vio_ratelimit_ok(struct vio_ratelimit *rl);

/* Print at most once in the process lifetime per call site. */
#define vio_log_once(level, ...)                                                                   \
    do {                                                                                           \
        static atomic_bool vio_once_done_;                                                         \
        if (!atomic_exchange(&vio_once_done_, true))                                               \
            vio_log(level, __VA_ARGS__);                                                           \
    } while (0)

#endif
