/* Control requests for virtio-scsi controllers, shared by vio serve and vio
 * run (see scsi_ctl.h): a --lun spec names its controller with hba=, the
 * rest goes to vio_scsi_hba_add_lun_spec. */
#include "devices/scsi_ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/opts.h"
#include "devices/scsi.h"

int vio_scsi_ctl_add(const char *spec, vio_scsi_find_fn find, void *opaque, char *err,
                     size_t errlen)
{
    struct vio_opts o;
    struct vio_dev *d;
    const char *hba;
    int ret;

    err[0] = '\0';
    ret = vio_opts_parse(spec, &o, err, errlen);
    if (ret < 0)
        goto out;
    hba = vio_opts_get(&o, "hba");
    if (!hba || !*hba) {
        snprintf(err, errlen, "hba=ID is required: the --scsi controller to add the LUN to");
        ret = -EINVAL;
        goto out;
    }
    d = find(opaque, hba);
    if (!d || !vio_is_scsi_hba(d)) {
        snprintf(err, errlen, "hba=%s: no such SCSI controller (give it with --scsi id=%s,...)",
                 hba, hba);
        ret = -ENOENT;
        goto out;
    }
    ret = vio_scsi_hba_add_lun_spec(d, &o, err, errlen);
out:
    vio_opts_free(&o);
    return ret;
}

bool vio_scsi_ctl_spec_is(const char *spec, const char *hba, unsigned target, unsigned lun)
{
    struct vio_opts o;
    char err[160];
    uint64_t t, l;
    const char *h;
    bool is;

    is = vio_opts_parse(spec, &o, err, sizeof(err)) == 0;
    h = is ? vio_opts_get(&o, "hba") : NULL;
    is = h && strcmp(h, hba) == 0 &&
         vio_opts_size(&o, "target", 0, 0, VIO_SCSI_MAX_TARGET, &t, err, sizeof(err)) == 0 &&
         vio_opts_size(&o, "lun", 0, 0, VIO_SCSI_MAX_LUN, &l, err, sizeof(err)) == 0 &&
         t == target && l == lun;
    vio_opts_free(&o);
    return is;
}

void vio_scsi_ctl_list(struct vio_dev *d, json_t *list)
{
    json_t *luns = vio_scsi_hba_luns(d), *l;
    size_t k;

    json_array_foreach(luns, k, l)
    {
        json_object_set_new(l, "hba", json_string(d->id));
        json_array_append(list, l);
    }
    json_decref(luns);
}

json_t *vio_scsi_rpc_lun_add(json_t *params, vio_scsi_find_fn find, void *opaque,
                             struct vio_rpc_error *err)
{
    json_t *spec = params ? json_object_get(params, "spec") : NULL;
    char msg[300];
    int ret;

    if (!json_is_object(params) || !json_is_string(spec) || json_object_size(params) != 1)
        return vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS,
                            "params must be {\"spec\": \"hba=ID,path=P[,target=N][,lun=N]...\"}");
    ret = vio_scsi_ctl_add(json_string_value(spec), find, opaque, msg, sizeof(msg));
    if (ret < 0)
        return vio_rpc_fail(err, ret == -ENOENT ? VIO_RPC_NOT_FOUND : VIO_RPC_INVALID_PARAMS,
                            "%s", msg);
    vio_info("LUN added: %s", json_string_value(spec));
    return json_pack("{s:s}", "added", json_string_value(spec));
}

/* An integer parameter given as a JSON number or a decimal string. */
static int int_param(json_t *params, const char *key, long def, long max, long *out)
{
    json_t *v = json_object_get(params, key);
    char *end;

    if (!v) {
        *out = def;
        return def < 0 ? -EINVAL : 0;
    }
    if (json_is_integer(v)) {
        *out = (long)json_integer_value(v);
    } else if (json_is_string(v) && *json_string_value(v)) {
        *out = strtol(json_string_value(v), &end, 10);
        if (*end)
            return -EINVAL;
    } else {
        return -EINVAL;
    }
    return *out < 0 || *out > max ? -EINVAL : 0;
}

json_t *vio_scsi_rpc_lun_remove(json_t *params, vio_scsi_find_fn find, void *opaque,
                                struct vio_rpc_error *err)
{
    json_t *hba = params ? json_object_get(params, "hba") : NULL;
    struct vio_dev *d;
    long target, lun;

    if (!json_is_object(params) || !json_is_string(hba) ||
        int_param(params, "target", 0, VIO_SCSI_MAX_TARGET, &target) < 0 ||
        int_param(params, "lun", -1, VIO_SCSI_MAX_LUN, &lun) < 0)
        return vio_rpc_fail(err, VIO_RPC_INVALID_PARAMS,
                            "params must be {\"hba\": ID, \"lun\": 0-%d[, \"target\": 0-%d]}",
                            VIO_SCSI_MAX_LUN, VIO_SCSI_MAX_TARGET);
    d = find(opaque, json_string_value(hba));
    if (!d || !vio_is_scsi_hba(d))
        return vio_rpc_fail(err, VIO_RPC_NOT_FOUND, "no SCSI controller '%s'",
                            json_string_value(hba));
    if (vio_scsi_hba_remove_lun(d, (unsigned)target, (unsigned)lun) < 0)
        return vio_rpc_fail(err, VIO_RPC_NOT_FOUND, "%s has no LUN %ld:%ld", d->id, target,
                            lun);
    vio_info("%s: LUN %ld:%ld removed", d->id, target, lun);
    return json_pack("{s:s, s:i, s:i}", "hba", d->id, "target", (int)target, "lun", (int)lun);
}
