/* libFuzzer target for JSON-RPC request handling (src/core/rpc.c): any bytes
 * go through vio_rpc_handle_text; a reply, when there is one, must be a
 * well-formed JSON-RPC 2.0 response (or a batch of them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rpc.h"

static json_t *m_echo(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    (void)opaque;
    (void)err;
    return params ? json_incref(params) : json_null();
}

static json_t *m_fail(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    const char *s = NULL;

    (void)opaque;
    /* A message built from the request, as real methods do. */
    if (json_is_object(params))
        s = json_string_value(json_object_get(params, "id"));
    return vio_rpc_fail(err, VIO_RPC_NOT_FOUND, "no device '%s'", s ? s : "?");
}

static json_t *m_silent(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    (void)opaque;
    (void)params;
    (void)err;
    return NULL;
}

static const struct vio_rpc_method methods[] = {
    {"device.list", m_echo, "echo"},
    {"device.stats", m_fail, "fail"},
    {"x", m_silent, NULL},
    {NULL, NULL, NULL},
};

/* One response object: jsonrpc "2.0", an id, and exactly one of result and
 * error (with an integer code and a string message). */
static void check_response(json_t *r)
{
    json_t *id, *res, *err;

    if (!json_is_object(r))
        abort();
    if (!json_is_string(json_object_get(r, "jsonrpc")) ||
        strcmp(json_string_value(json_object_get(r, "jsonrpc")), "2.0") != 0)
        abort();
    id = json_object_get(r, "id");
    if (!id || !(json_is_null(id) || json_is_string(id) || json_is_integer(id)))
        abort();
    res = json_object_get(r, "result");
    err = json_object_get(r, "error");
    if (!res == !err)
        abort();
    if (err && (!json_is_integer(json_object_get(err, "code")) ||
                !json_is_string(json_object_get(err, "message"))))
        abort();
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
    char *out = vio_rpc_handle_text(methods, NULL, (const char *)data, size);
    json_t *r;

    if (!out)
        return 0;
    r = json_loads(out, 0, NULL);
    if (!r)
        abort();
    if (json_is_array(r)) {
        size_t i;
        json_t *item;

        /* An empty reply batch is never sent: no reply at all instead. */
        if (json_array_size(r) == 0)
            abort();
        json_array_foreach(r, i, item) check_response(item);
    } else {
        check_response(r);
    }
    json_decref(r);
    free(out);
    return 0;
}
