/* Parser for the "key=value,flag,key=value" option lists of the command line
 * (--blk id=disk0,path=disk.img,readonly). ",," stands for a literal comma,
 * as in QEMU. Every key must be consumed by the caller, so a typo is an
 * error instead of being silently ignored. */
#ifndef VIO_CORE_OPTS_H
#define VIO_CORE_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIO_OPTS_MAX 32

struct vio_opt {
    char *key;
    char *val; /* NULL for a bare flag */
    bool used;
};

struct vio_opts {
    unsigned n;
    struct vio_opt o[VIO_OPTS_MAX];
    char *buf;
};

/* Parse @s. Returns 0, or -EINVAL with a message in @err (empty key,
 * duplicate key, too many keys). Free with vio_opts_free in both cases. */
int vio_opts_parse(const char *s, struct vio_opts *o, char *err, size_t errlen);
void vio_opts_free(struct vio_opts *o);

/* Value of @key (marks it used), or NULL if absent. A bare flag returns "". */
const char *vio_opts_get(struct vio_opts *o, const char *key);

/* A boolean: absent -> @def, bare flag -> true, on/off, yes/no, true/false,
 * 1/0. Returns 0 or -EINVAL with @err set. */
int vio_opts_bool(struct vio_opts *o, const char *key, bool def, bool *out, char *err,
                  size_t errlen);

/* A number with optional K/M/G/T suffix within [min, max]; absent -> @def.
 * Returns 0 or -EINVAL with @err set. */
int vio_opts_size(struct vio_opts *o, const char *key, uint64_t def, uint64_t min, uint64_t max,
                  uint64_t *out, char *err, size_t errlen);

/* -EINVAL with @err naming the first key nobody asked for. */
int vio_opts_check_unused(const struct vio_opts *o, char *err, size_t errlen);

#endif
