/* The generic part of every uplink (see uplink.h): parsing the common spec
 * keys, picking the type, attaching to the switch and running setup and
 * teardown on the switch loop. */
#include "net/uplink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/loop.h"
#include "net/slirp.h"
#include "net/tap.h"
#include "net/vuser_uplink.h"
#include "net/vxlan.h"

static const struct vio_uplink_ops *const types[] = {
    &vio_slirp_uplink_ops,
    &vio_vxlan_uplink_ops,
    &vio_tap_uplink_ops,
    &vio_vuser_uplink_ops,
};

int vio_uplink_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;

    if (!s || !*s)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > max)
            return -EINVAL;
    }
    *out = v;
    return 0;
}

int vio_uplink_check_unused(const struct vio_uplink_args *a, const struct vio_opts *o)
{
    char err[160];

    if (vio_opts_check_unused(o, err, sizeof(err)) < 0) {
        vio_err("uplink '%s': %s", a->spec, err);
        return -EINVAL;
    }
    return 0;
}

int vio_uplink_init(struct vio_uplink *u, const struct vio_uplink_ops *ops,
                    const struct vio_net_port_ops *pops, const struct vio_uplink_args *a,
                    unsigned caps)
{
    u->ops = ops;
    u->linear = malloc(VIO_NET_MAX_FRAME);
    if (!u->linear)
        return -ENOMEM;
    vio_net_port_init(&u->port, pops, u, a->id, NULL, a->vlan);
    u->port.caps = caps;
    return 0;
}

void vio_uplink_release(struct vio_uplink *u)
{
    free(u->linear);
    u->linear = NULL;
}

unsigned vio_uplink_gather(struct vio_uplink *u, const void *hdr, size_t hdrlen,
                           const struct vio_pkt *pkt, struct iovec *iov)
{
    unsigned n = 0;

    if (hdrlen)
        iov[n++] = (struct iovec){(void *)hdr, hdrlen};
    if (pkt->iovcnt + n > VIO_UPLINK_IOV_MAX) {
        size_t len = vio_pkt_read(pkt, 0, u->linear, VIO_MIN(pkt->len, VIO_NET_MAX_FRAME));

        iov[n++] = (struct iovec){u->linear, len};
        return n;
    }
    for (unsigned i = 0; i < pkt->iovcnt; i++)
        iov[n++] = pkt->iov[i];
    return n;
}

const uint8_t *vio_uplink_linear(struct vio_uplink *u, const struct vio_pkt *pkt)
{
    if (pkt->iovcnt == 1 && pkt->iov[0].iov_len >= pkt->len)
        return pkt->iov[0].iov_base;
    vio_pkt_read(pkt, 0, u->linear, VIO_MIN(pkt->len, VIO_NET_MAX_FRAME));
    return u->linear;
}

static void start_fn(struct vio_call *c)
{
    struct vio_uplink *u = c->arg;

    vio_call_done(c, u->ops->start(u));
}

static void stop_fn(struct vio_call *c)
{
    struct vio_uplink *u = c->arg;

    u->ops->stop(u);
    vio_call_done(c, 0);
}

static int parse_common(struct vio_opts *o, const char *spec, struct vio_uplink_args *a,
                        const struct vio_uplink_ops **ops)
{
    const char *type = vio_opts_get(o, "type");
    const char *vlan = vio_opts_get(o, "vlan");
    unsigned long v = 0;

    if (!type || !*type) {
        vio_err("uplink '%s': missing type= (slirp, vxlan or tap)", spec);
        return -EINVAL;
    }
    *ops = NULL;
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(types); i++) {
        if (strcmp(type, types[i]->type) == 0)
            *ops = types[i];
    }
    if (!*ops) {
        vio_err("uplink '%s': unknown type '%s' (expected slirp, vxlan, tap or vhost-user)", spec, type);
        return -EINVAL;
    }
    a->spec = spec;
    a->id = vio_opts_get(o, "id");
    if (!a->id || !*a->id) {
        vio_err("uplink '%s': missing id= (the switch port name)", spec);
        return -EINVAL;
    }
    if (strlen(a->id) >= sizeof(((struct vio_net_port *)0)->id)) {
        vio_err("uplink '%s': id '%s' is longer than %zu characters", spec, a->id,
                sizeof(((struct vio_net_port *)0)->id) - 1);
        return -EINVAL;
    }
    if (vlan && vio_uplink_parse_uint(vlan, 4094, &v) < 0) {
        vio_err("uplink '%s': vlan=%s: expected 0 (untagged) to 4094", spec, vlan);
        return -EINVAL;
    }
    a->vlan = (uint16_t)v;
    return 0;
}

int vio_uplink_create(struct vio_switch *sw, const char *spec, struct vio_uplink **out)
{
    const struct vio_uplink_ops *ops;
    struct vio_uplink_args a;
    struct vio_uplink *u = NULL;
    struct vio_opts o;
    struct vio_call call = {.fn = start_fn};
    char err[160], shown[200];
    int ret;

    if (!spec)
        spec = "";
    /* Messages quote the spec; a huge one is cut short there. */
    if (strlen(spec) >= sizeof(shown)) {
        snprintf(shown, sizeof(shown), "%.*s...", (int)sizeof(shown) - 4, spec);
        ret = vio_opts_parse(spec, &o, err, sizeof(err));
        spec = shown;
    } else {
        ret = vio_opts_parse(spec, &o, err, sizeof(err));
    }
    if (ret < 0) {
        vio_err("uplink '%s': %s", spec, err);
        goto out_opts;
    }
    ret = parse_common(&o, spec, &a, &ops);
    if (ret < 0)
        goto out_opts;
    ret = ops->create(&a, &o, &u);
    if (ret < 0)
        goto out_opts;
    u->sw = sw;
    u->loop = vio_switch_loop(sw);
    ret = vio_switch_attach(sw, &u->port);
    if (ret < 0) {
        vio_err("uplink '%s': cannot attach to the switch: %s", spec, strerror(-ret));
        goto out_free;
    }
    call.arg = u;
    ret = vio_loop_call(u->loop, &call);
    if (ret < 0) {
        vio_err("uplink '%s': cannot start: %s", spec, strerror(-ret));
        goto out_detach;
    }
    vio_opts_free(&o);
    vio_info("uplink %s (%s) up", u->port.id, ops->type);
    *out = u;
    return 0;

out_detach:
    vio_switch_detach(&u->port);
out_free:
    u->ops->free(u);
out_opts:
    vio_opts_free(&o);
    return ret;
}

void vio_uplink_destroy(struct vio_uplink *u)
{
    struct vio_call call = {.fn = stop_fn};

    if (!u)
        return;
    /* Detach first: after this the switch calls deliver() no more. */
    vio_switch_detach(&u->port);
    call.arg = u;
    vio_loop_call(u->loop, &call);
    u->ops->free(u);
}

struct vio_net_port *vio_uplink_port(struct vio_uplink *u)
{
    return &u->port;
}
