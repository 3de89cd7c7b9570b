/* vio run's --nvme controllers (see run_nvme.h). */
#include "run/run_nvme.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/opts.h"

struct vio_run_nvme {
    struct vio_nvme *c[VIO_RUN_MAX_NVME];
    unsigned n;
};

bool vio_run_nvme_has_id(const struct vio_run_nvme_opts *o, const char *id)
{
    for (unsigned i = 0; i < o->n; i++) {
        if (strcmp(o->c[i].id, id) == 0)
            return true;
    }
    return false;
}

/* The namespace keys of @kv (path=, readonly, direct) into @ns. */
static int parse_ns(struct vio_opts *kv, struct vio_run_nvme_ns *ns, char *err, size_t errlen)
{
    const char *v = vio_opts_get(kv, "path");
    int ret;

    if (!v || !*v) {
        snprintf(err, errlen, "path=FILE is required");
        return -EINVAL;
    }
    if ((ret = vio_opts_bool(kv, "readonly", false, &ns->readonly, err, errlen)) < 0 ||
        (ret = vio_opts_bool(kv, "direct", false, &ns->direct, err, errlen)) < 0)
        return ret;
    ns->path = strdup(v);
    if (!ns->path) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

void vio_run_nvme_opts_free(struct vio_run_nvme_opts *o)
{
    for (unsigned i = 0; i < o->n; i++) {
        for (unsigned k = 0; k < o->c[i].nns; k++)
            free(o->c[i].ns[k].path);
        o->c[i].nns = 0;
    }
    o->n = 0;
}

int vio_run_nvme_parse_ns(struct vio_run_nvme_opts *o, const char *spec)
{
    struct vio_run_nvme_spec *c = NULL;
    struct vio_run_nvme_ns ns = {0};
    struct vio_opts kv;
    char err[200] = "";
    const char *id;
    int ret;

    ret = vio_opts_parse(spec, &kv, err, sizeof(err));
    if (ret < 0)
        goto bad;
    id = vio_opts_get(&kv, "nvme");
    for (unsigned i = 0; id && i < o->n; i++) {
        if (strcmp(o->c[i].id, id) == 0)
            c = &o->c[i];
    }
    if (!c) {
        snprintf(err, sizeof(err), "nvme=%s: no --nvme controller with that id before it",
                 id ? id : "(missing)");
        goto bad_inval;
    }
    if (c->nns == VIO_NVME_MAX_NS) {
        snprintf(err, sizeof(err), "%s already has %d namespaces, the most it takes", c->id,
                 VIO_NVME_MAX_NS);
        goto bad_inval;
    }
    if ((ret = parse_ns(&kv, &ns, err, sizeof(err))) < 0)
        goto bad;
    if ((ret = vio_opts_check_unused(&kv, err, sizeof(err))) < 0) {
        free(ns.path);
        goto bad;
    }
    c->ns[c->nns++] = ns;
    vio_opts_free(&kv);
    return 0;

bad_inval:
    ret = -EINVAL;
bad:
    vio_err("--nvme-ns %s: %s", spec, err);
    vio_opts_free(&kv);
    return ret < 0 ? -EINVAL : ret;
}

int vio_run_nvme_parse(struct vio_run_nvme_opts *o, const char *spec)
{
    struct vio_run_nvme_spec *c;
    struct vio_opts kv;
    char err[200] = "";
    const char *v;
    uint64_t queues;
    int ret;

    if (o->n == VIO_RUN_MAX_NVME) {
        vio_err("--nvme %s: at most %d NVMe controllers", spec, VIO_RUN_MAX_NVME);
        return -EINVAL;
    }
    c = &o->c[o->n];
    memset(c, 0, sizeof(*c));
    ret = vio_opts_parse(spec, &kv, err, sizeof(err));
    if (ret < 0)
        goto bad;
    if ((ret = vio_opts_size(&kv, "queues", 4, 1, VIO_NVME_MAX_IOQ, &queues, err, sizeof(err))) < 0)
        goto bad;
    c->queues = (unsigned)queues;
    v = vio_opts_get(&kv, "id");
    if (v && (!*v || strlen(v) >= sizeof(c->id) || strpbrk(v, " /,"))) {
        snprintf(err, sizeof(err), "id=%s: 1-31 characters, no spaces, slashes or commas", v);
        goto bad_inval;
    }
    if (v)
        snprintf(c->id, sizeof(c->id), "%s", v);
    else
        snprintf(c->id, sizeof(c->id), "nvme%u", o->n);
    v = vio_opts_get(&kv, "serial");
    if (v && (!*v || strlen(v) > VIO_NVME_SERIAL_LEN ||
              strspn(v, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.") !=
                  strlen(v))) {
        snprintf(err, sizeof(err), "serial=%s: 1-%d letters, digits, '-', '_' or '.'", v,
                 VIO_NVME_SERIAL_LEN);
        goto bad_inval;
    }
    /* Linux groups controllers by serial: the default is the id (ids may
     * be longer than a serial; the first 20 characters then). */
    if (!v)
        v = c->id;
    memcpy(c->serial, v, VIO_MIN(strlen(v), (size_t)VIO_NVME_SERIAL_LEN));
    c->serial[VIO_MIN(strlen(v), (size_t)VIO_NVME_SERIAL_LEN)] = 0;
    for (unsigned i = 0; i < o->n; i++) {
        if (strcmp(o->c[i].id, c->id) == 0) {
            snprintf(err, sizeof(err), "id=%s is used twice", c->id);
            goto bad_inval;
        }
        if (strcmp(o->c[i].serial, c->serial) == 0) {
            snprintf(err, sizeof(err), "serial=%s is already %s's", c->serial, o->c[i].id);
            goto bad_inval;
        }
    }
    if ((ret = parse_ns(&kv, &c->ns[0], err, sizeof(err))) < 0)
        goto bad;
    if ((ret = vio_opts_check_unused(&kv, err, sizeof(err))) < 0) {
        free(c->ns[0].path);
        goto bad;
    }
    c->nns = 1;
    vio_opts_free(&kv);
    o->n++;
    return 0;

bad_inval:
    ret = -EINVAL;
bad:
    vio_err("--nvme %s: %s", spec, err);
    vio_opts_free(&kv);
    return ret < 0 ? -EINVAL : ret;
}

int vio_run_nvme_attach(const struct vio_run_nvme_opts *o, struct vio_vm *vm, struct vio_pci *pci,
                        struct vio_workers *io, struct vio_run_nvme **out)
{
    struct vio_run_nvme *r;
    int ret;

    *out = NULL;
    if (!o->n)
        return 0;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    for (unsigned i = 0; i < o->n; i++) {
        const struct vio_run_nvme_spec *s = &o->c[i];
        struct vio_nvme_opts no = {.id = s->id, .serial = s->serial, .queues = s->queues};

        no.nloops = VIO_MIN(io->n, (unsigned)VIO_NVME_MAX_IOQ);
        for (unsigned k = 0; k < no.nloops; k++)
            no.loops[k] = &io->loops[k];
        for (; no.nns < s->nns; no.nns++) {
            const struct vio_run_nvme_ns *ns = &s->ns[no.nns];
            struct vio_bdev_opts bo = {.path = ns->path, .readonly = ns->readonly,
                                       .direct = ns->direct};

            ret = vio_bdev_open(&bo, &no.ns[no.nns]);
            if (ret < 0) {
                /* Not the controller's yet: close what was opened. */
                while (no.nns) {
                    struct vio_bdev *b = no.ns[--no.nns];

                    b->ops->close(b);
                }
                goto fail;
            }
        }
        ret = vio_nvme_create(&no, vm, pci, &r->c[r->n]);
        if (ret < 0)
            goto fail;
        r->n++;
        vio_info("%s: NVMe controller, serial %s, %u I/O queues, %u namespace%s", s->id,
                 s->serial, s->queues, s->nns, s->nns == 1 ? "" : "s");
        for (unsigned k = 0; k < s->nns; k++)
            vio_info("%s: namespace %u: %s (%llu MiB, %u-byte blocks%s)", s->id, k + 1,
                     s->ns[k].path, (unsigned long long)(no.ns[k]->size >> 20),
                     no.ns[k]->block_size, s->ns[k].readonly ? ", read-only" : "");
    }
    *out = r;
    return 0;

fail:
    vio_err("%s: NVMe controller could not be set up: %s", o->c[r->n].id, strerror(-ret));
    vio_run_nvme_detach(r);
    return ret;
}

void vio_run_nvme_detach(struct vio_run_nvme *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->n; i++)
        vio_nvme_destroy(r->c[i]);
    free(r);
}

void vio_run_nvme_list(struct vio_run_nvme *r, json_t *list)
{
    for (unsigned i = 0; r && i < r->n; i++)
        json_array_append_new(list, vio_nvme_info(r->c[i]));
}

json_t *vio_run_nvme_info(struct vio_run_nvme *r, const char *id)
{
    for (unsigned i = 0; r && i < r->n; i++) {
        if (strcmp(vio_nvme_id(r->c[i]), id) == 0)
            return vio_nvme_info(r->c[i]);
    }
    return NULL;
}
