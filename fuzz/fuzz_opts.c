/* libFuzzer target for the option-list parser (src/core/opts.c): parses the
 * input as a --blk style string, asks for every key through each getter, and
 * checks that escaping the parsed keys and values again reproduces them. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/opts.h"

/* Append @s to @w with every ',' doubled. */
static char *put_escaped(char *w, const char *s)
{
    for (; *s; s++) {
        *w++ = *s;
        if (*s == ',')
            *w++ = ',';
    }
    return w;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vio_log_set_level(VIO_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), *again, *w, err[64];
    struct vio_opts o, o2;
    int ret;

    memcpy(s, data, size);
    s[size] = '\0';
    memset(err, 0x55, sizeof(err));
    ret = vio_opts_parse(s, &o, err, sizeof(err));
    if (ret < 0) {
        /* Every failure explains itself in a terminated string. */
        if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
            abort();
        vio_opts_free(&o);
        free(s);
        return 0;
    }
    if (o.n == 0 || o.n > VIO_OPTS_MAX)
        abort();

    /* Rebuild the string from what was parsed; parsing it again must give
     * the same keys and values. */
    again = malloc(2 * size + 2);
    w = again;
    for (unsigned i = 0; i < o.n; i++) {
        if (o.o[i].key[0] == '\0' || strchr(o.o[i].key, '='))
            abort();
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(o.o[i].key, o.o[j].key) == 0)
                abort();
        }
        if (i)
            *w++ = ',';
        w = put_escaped(w, o.o[i].key);
        if (o.o[i].val) {
            *w++ = '=';
            w = put_escaped(w, o.o[i].val);
        }
    }
    *w = '\0';
    if ((size_t)(w - again) > size)
        abort(); /* escaping never makes the text longer than the input */
    if (vio_opts_parse(again, &o2, err, sizeof(err)) != 0 || o2.n != o.n)
        abort();
    for (unsigned i = 0; i < o.n; i++) {
        if (strcmp(o.o[i].key, o2.o[i].key) != 0 || !o.o[i].val != !o2.o[i].val ||
            (o.o[i].val && strcmp(o.o[i].val, o2.o[i].val) != 0))
            abort();
    }
    vio_opts_free(&o2);
    free(again);

    /* Every getter on every key, plus one that is absent. */
    if (vio_opts_check_unused(&o, err, sizeof(err)) != -EINVAL)
        abort();
    for (unsigned i = 0; i < o.n; i++) {
        const char *key = o.o[i].key, *v;
        uint64_t num = 0;
        bool b;

        switch (i % 3) {
        case 0:
            v = vio_opts_get(&o, key);
            if (!v || (o.o[i].val ? v != o.o[i].val : *v != '\0'))
                abort();
            break;
        case 1:
            if (vio_opts_bool(&o, key, false, &b, err, sizeof(err)) == 0 && o.o[i].val &&
                strcmp(o.o[i].val, "1") == 0 && !b)
                abort();
            break;
        default:
            if (vio_opts_size(&o, key, 7, 512, 1ull << 50, &num, err, sizeof(err)) == 0) {
                if (num < 512 || num > (1ull << 50))
                    abort();
                /* "a number with optional K/M/G/T suffix": it starts with a
                 * digit (no white space, no sign). */
                if (!o.o[i].val || o.o[i].val[0] < '0' || o.o[i].val[0] > '9')
                    abort();
            }
            break;
        }
        if (!o.o[i].used)
            abort();
    }
    {
        static const char absent[] = "\001absent";
        bool present = false;

        for (unsigned i = 0; i < o.n; i++)
            present |= strcmp(o.o[i].key, absent) == 0;
        if ((vio_opts_get(&o, absent) != NULL) != present)
            abort();
    }
    if (vio_opts_check_unused(&o, err, sizeof(err)) != 0)
        abort();
    vio_opts_free(&o);
    free(s);
    return 0;
}
