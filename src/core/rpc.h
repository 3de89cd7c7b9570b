/* JSON-RPC 2.0 control server on a Unix socket, one JSON text per line
 * (jansson parses and prints). The same server carries `vio serve` and
 * `vio run` control; `vio ctl` is its client. Runs on the control loop;
 * methods run there too, so they may touch control-thread state freely.
 *
 * Bad input (not JSON, not a request, unknown method, bad params, lines
 * over 64 KiB) gets a JSON-RPC error reply; only a line too long to parse
 * closes that client's connection. */
#ifndef VIO_CORE_RPC_H
#define VIO_CORE_RPC_H

#include <jansson.h>

#include "core/loop.h"

/* Standard JSON-RPC error codes. */
#define VIO_RPC_PARSE_ERROR      (-32700)
#define VIO_RPC_INVALID_REQUEST  (-32600)
#define VIO_RPC_METHOD_NOT_FOUND (-32601)
#define VIO_RPC_INVALID_PARAMS   (-32602)
#define VIO_RPC_INTERNAL_ERROR   (-32603)
/* Application errors. */
#define VIO_RPC_NOT_FOUND        (-32001)

struct vio_rpc_error {
    int code;
    char message[200];
};

/* A method: returns the result (a new reference) or NULL with @err set.
 * @params is an object, an array or NULL. */
typedef json_t *(*vio_rpc_fn)(void *opaque, json_t *params, struct vio_rpc_error *err);

struct vio_rpc_method {
    const char *name;
    vio_rpc_fn fn;
    const char *help; /* one line, listed by the built-in "help" method */
};

struct vio_rpc_server;

/* Listen on @path; @methods ends with a {NULL} entry and stays valid.
 * Returns 0 or -errno with a logged reason. */
int vio_rpc_server_create(struct vio_loop *loop, const char *path,
                          const struct vio_rpc_method *methods, void *opaque,
                          struct vio_rpc_server **out);
void vio_rpc_server_destroy(struct vio_rpc_server *s);

/* Set @err and return NULL, for method bodies. */
json_t *vio_rpc_fail(struct vio_rpc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Handle one request text and return the response text (malloc'd), or NULL
 * for a notification. Exposed for tests and the fuzzer. */
char *vio_rpc_handle_text(const struct vio_rpc_method *methods, void *opaque, const char *text,
                          size_t len);

/* Client side: connect to @path, send @method with @params (may be NULL;
 * not consumed), and wait for the reply. Returns 0 and *result, or -errno
 * (socket trouble), or -EREMOTEIO with *error set to the error object. */
int vio_rpc_call(const char *path, const char *method, json_t *params, json_t **result,
                 json_t **error);

#endif
