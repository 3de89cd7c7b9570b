/* Logging implementation: formats the whole line into a buffer and writes it
 * with one write(2) so lines from several threads never interleave. */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = -1;
static _Thread_local char thread_name[16] = "main";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int vio_log_parse_level(const char *s, enum vio_log_level *out)
{
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(level_names); i++) {
        if (s && strcmp(s, level_names[i]) == 0) {
            *out = (enum vio_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

enum vio_log_level vio_log_get_level(void)
{
    int l = atomic_load(&log_level);

    if (l < 0) {
        enum vio_log_level parsed = VIO_LOG_INFO;
        const char *env = getenv("VIO_LOG");

        if (env && vio_log_parse_level(env, &parsed) < 0)
            parsed = VIO_LOG_INFO;
        l = (int)parsed;
        atomic_store(&log_level, l);
    }
    return (enum vio_log_level)l;
}

void vio_log_set_level(enum vio_log_level level)
{
    atomic_store(&log_level, (int)level);
}

void vio_log_set_thread_name(const char *name)
{
    snprintf(thread_name, sizeof(thread_name), "%s", name);
}

void vio_log(enum vio_log_level level, const char *fmt, ...)
{
    char buf[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n, m;
    int saved_errno = errno;

    if ((int)level > (int)vio_log_get_level())
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    n = snprintf(buf, sizeof(buf), "%02d:%02d:%02d.%03ld vio[%s] %s: ", tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000, thread_name, level_names[level]);
    va_start(ap, fmt);
    m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
        /* Nowhere left to report a failing stderr. */
    }
    errno = saved_errno;
}

bool vio_ratelimit_ok(struct vio_ratelimit *rl)
{
    uint64_t now = vio_now_ns();

    if (now - rl->window_start >= rl->interval_ns) {
        if (rl->suppressed)
            vio_warn("%u similar messages suppressed", rl->suppressed);
        rl->window_start = now;
        rl->printed = 0;
        rl->suppressed = 0;
    }
    if (rl->printed < rl->burst) {
        rl->printed++;
        return true;
    }
    rl->suppressed++;
    return false;
}
