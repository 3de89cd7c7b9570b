/* key=value option-list parser (see opts.h). */
#include "core/opts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

int vio_opts_parse(const char *s, struct vio_opts *o, char *err, size_t errlen)
{
    size_t len = strlen(s);
    char *w, *start;

    memset(o, 0, sizeof(*o));
    o->buf = malloc(len + 1);
    if (!o->buf) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* Split on single commas, turning ",," into ",", in place. */
    w = start = o->buf;
    for (size_t i = 0;; i++) {
        char c = s[i];

        if (c == ',' && s[i + 1] == ',') {
            *w++ = ',';
            i++;
            continue;
        }
        if (c != ',' && c != '\0') {
            *w++ = c;
            continue;
        }
        *w++ = '\0';
        if (*start == '\0' || *start == '=') {
            snprintf(err, errlen, "empty option name in '%s'", s);
            return -EINVAL;
        }
        if (o->n == VIO_OPTS_MAX) {
            snprintf(err, errlen, "more than %d options in '%s'", VIO_OPTS_MAX, s);
            return -EINVAL;
        }
        char *eq = strchr(start, '=');
        if (eq)
            *eq = '\0';
        for (unsigned k = 0; k < o->n; k++) {
            if (strcmp(o->o[k].key, start) == 0) {
                snprintf(err, errlen, "option '%s' given twice", start);
                return -EINVAL;
            }
        }
        o->o[o->n].key = start;
        o->o[o->n].val = eq ? eq + 1 : NULL;
        o->n++;
        start = w;
        if (c == '\0')
            break;
    }
    return 0;
}

void vio_opts_free(struct vio_opts *o)
{
    free(o->buf);
    o->buf = NULL;
    o->n = 0;
}

static struct vio_opt *find(struct vio_opts *o, const char *key)
{
    for (unsigned i = 0; i < o->n; i++) {
        if (strcmp(o->o[i].key, key) == 0) {
            o->o[i].used = true;
            return &o->o[i];
        }
    }
    return NULL;
}

const char *vio_opts_get(struct vio_opts *o, const char *key)
{
    struct vio_opt *opt = find(o, key);

    if (!opt)
        return NULL;
    return opt->val ? opt->val : "";
}

int vio_opts_bool(struct vio_opts *o, const char *key, bool def, bool *out, char *err,
                  size_t errlen)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    struct vio_opt *opt = find(o, key);

    if (!opt) {
        *out = def;
        return 0;
    }
    if (!opt->val) {
        *out = true;
        return 0;
    }
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(yes); i++) {
        if (strcmp(opt->val, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(opt->val, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    snprintf(err, errlen, "%s=%s: expected on or off", key, opt->val);
    return -EINVAL;
}

int vio_opts_size(struct vio_opts *o, const char *key, uint64_t def, uint64_t min, uint64_t max,
                  uint64_t *out, char *err, size_t errlen)
{
    struct vio_opt *opt = find(o, key);
    uint64_t v;

    if (!opt) {
        *out = def;
        return 0;
    }
    if (!opt->val || vio_parse_size(opt->val, &v) < 0) {
        snprintf(err, errlen, "%s=%s: expected a number", key, opt->val ? opt->val : "");
        return -EINVAL;
    }
    if (v < min || v > max) {
        snprintf(err, errlen, "%s=%s: must be between %llu and %llu", key, opt->val,
                 (unsigned long long)min, (unsigned long long)max);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int vio_opts_check_unused(const struct vio_opts *o, char *err, size_t errlen)
{
    for (unsigned i = 0; i < o->n; i++) {
        if (!o->o[i].used) {
            snprintf(err, errlen, "unknown option '%s'", o->o[i].key);
            return -EINVAL;
        }
    }
    return 0;
}
