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
    v = vio_opts_get(&kv, "path");
    if (!v || !*v || strlen(v) >= sizeof(c->path)) {
        snprintf(err, sizeof(err), "path=FILE is required");
        goto bad_inval;
    }
    snprintf(c->path, sizeof(c->path), "%s", v);
    if ((ret = vio_opts_bool(&kv, "readonly", false, &c->readonly, err, sizeof(err))) < 0 ||
        (ret = vio_opts_bool(&kv, "direct", false, &c->direct, err, sizeof(err))) < 0 ||
        (ret = vio_opts_size(&kv, "queues", 4, 1, VIO_NVME_MAX_IOQ, &queues, err, sizeof(err))) < 0)
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
    if ((ret = vio_opts_check_unused(&kv, err, sizeof(err))) < 0)
        goto bad;
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
        struct vio_bdev_opts bo = {.path = s->path, .readonly = s->readonly, .direct = s->direct};
        struct vio_nvme_opts no = {.id = s->id, .serial = s->serial, .queues = s->queues, .nns = 1};

        no.nloops = VIO_MIN(io->n, (unsigned)VIO_NVME_MAX_IOQ);
        for (unsigned k = 0; k < no.nloops; k++)
            no.loops[k] = &io->loops[k];
        ret = vio_bdev_open(&bo, &no.ns[0]);
        if (ret < 0)
            goto fail;
        ret = vio_nvme_create(&no, vm, pci, &r->c[r->n]);
        if (ret < 0)
            goto fail;
        r->n++;
        vio_info("%s: NVMe controller, serial %s, %u I/O queues, namespace 1: %s (%llu MiB, "
                 "%u-byte blocks%s)",
                 s->id, s->serial, s->queues, s->path, (unsigned long long)(no.ns[0]->size >> 20),
                 no.ns[0]->block_size, s->readonly ? ", read-only" : "");
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
