/* JSON-RPC 2.0 over a Unix socket: line framing, request validation, method
 * dispatch, batch requests, and a blocking client for `vio ctl`. */
#include "core/rpc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"

#define RPC_MAX_LINE    (64 * 1024)
#define RPC_MAX_OUT     (16 * 1024 * 1024)
#define RPC_MAX_CLIENTS 64

struct rpc_client {
    struct vio_rpc_server *s;
    int fd;
    struct vio_handler h;
    char in[RPC_MAX_LINE];
    size_t in_len;
    char *out;
    size_t out_len, out_cap;
    struct rpc_client *next;
};

struct vio_rpc_server {
    struct vio_loop *loop;
    char *path;
    int fd;
    struct vio_handler h;
    const struct vio_rpc_method *methods;
    void *opaque;
    struct rpc_client *clients;
    unsigned nclients;
};

json_t *vio_rpc_fail(struct vio_rpc_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return NULL;
}

static json_t *error_response(json_t *id, int code, const char *message)
{
    return json_pack("{s:s, s:{s:i, s:s}, s:O}", "jsonrpc", "2.0", "error", "code", code,
                     "message", message, "id", id ? id : json_null());
}

static json_t *help_result(const struct vio_rpc_method *methods)
{
    json_t *r = json_object();

    for (const struct vio_rpc_method *m = methods; m->name; m++)
        json_object_set_new(r, m->name, json_string(m->help ? m->help : ""));
    json_object_set_new(r, "help", json_string("list the methods and what they do"));
    return r;
}

/* One request object; returns the response, or NULL for a notification. */
static json_t *handle_one(const struct vio_rpc_method *methods, void *opaque, json_t *req)
{
    json_t *id, *params, *version, *method, *result;
    struct vio_rpc_error err = {0};
    const char *name;

    if (!json_is_object(req))
        return error_response(NULL, VIO_RPC_INVALID_REQUEST, "a request must be an object");
    id = json_object_get(req, "id");
    if (id && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id))
        return error_response(NULL, VIO_RPC_INVALID_REQUEST, "id must be a string or integer");
    version = json_object_get(req, "jsonrpc");
    method = json_object_get(req, "method");
    params = json_object_get(req, "params");
    if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0)
        return error_response(id, VIO_RPC_INVALID_REQUEST, "jsonrpc must be \"2.0\"");
    if (!json_is_string(method))
        return error_response(id, VIO_RPC_INVALID_REQUEST, "method must be a string");
    if (params && !json_is_object(params) && !json_is_array(params))
        return error_response(id, VIO_RPC_INVALID_REQUEST, "params must be an object or array");
    name = json_string_value(method);
    if (strcmp(name, "help") == 0) {
        result = help_result(methods);
    } else {
        const struct vio_rpc_method *m = methods;

        while (m->name && strcmp(m->name, name) != 0)
            m++;
        if (!m->name) {
            char msg[160];

            snprintf(msg, sizeof(msg), "no method '%.100s' (try 'help')", name);
            if (!id)
                return NULL;
            return error_response(id, VIO_RPC_METHOD_NOT_FOUND, msg);
        }
        result = m->fn(opaque, params, &err);
    }
    if (!id) {
        json_decref(result);
        return NULL;
    }
    if (!result)
        return error_response(id, err.code ? err.code : VIO_RPC_INTERNAL_ERROR,
                              err.message[0] ? err.message : "internal error");
    return json_pack("{s:s, s:o, s:O}", "jsonrpc", "2.0", "result", result, "id", id);
}

char *vio_rpc_handle_text(const struct vio_rpc_method *methods, void *opaque, const char *text,
                          size_t len)
{
    json_error_t jerr;
    json_t *req = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    json_t *resp;
    char *out;

    if (!req) {
        char msg[200];

        snprintf(msg, sizeof(msg), "not JSON: %s at column %d", jerr.text, jerr.column);
        resp = error_response(NULL, VIO_RPC_PARSE_ERROR, msg);
    } else if (json_is_array(req)) {
        size_t i;
        json_t *item;

        if (json_array_size(req) == 0) {
            resp = error_response(NULL, VIO_RPC_INVALID_REQUEST, "empty batch");
        } else {
            resp = json_array();
            json_array_foreach(req, i, item) {
                json_t *r = handle_one(methods, opaque, item);

                if (r)
                    json_array_append_new(resp, r);
            }
            if (json_array_size(resp) == 0) {
                json_decref(resp);
                resp = NULL;
            }
        }
    } else {
        resp = handle_one(methods, opaque, req);
    }
    json_decref(req);
    if (!resp)
        return NULL;
    out = json_dumps(resp, JSON_COMPACT);
    json_decref(resp);
    return out;
}

static void client_close(struct rpc_client *c)
{
    struct vio_rpc_server *s = c->s;

    for (struct rpc_client **p = &s->clients; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    s->nclients--;
    vio_loop_del(s->loop, &c->h);
    close(c->fd);
    free(c->out);
    free(c);
}

/* Write what is buffered. Returns 0, or -1 if the client was closed. */
static int client_flush(struct rpc_client *c)
{
    while (c->out_len) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (vio_loop_mod(c->s->loop, &c->h, EPOLLIN | EPOLLOUT) < 0) {
                client_close(c);
                return -1;
            }
            return 0;
        }
        if (n < 0) {
            client_close(c);
            return -1;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    vio_loop_mod(c->s->loop, &c->h, EPOLLIN);
    return 0;
}

static int client_queue(struct rpc_client *c, const char *text)
{
    size_t len = strlen(text) + 1;

    if (c->out_len + len > RPC_MAX_OUT) {
        vio_warn("control client is not reading its replies; closing it");
        client_close(c);
        return -1;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = VIO_MAX(c->out_cap * 2, c->out_len + len);
        char *p = realloc(c->out, cap);

        if (!p) {
            client_close(c);
            return -1;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, text, len - 1);
    c->out[c->out_len + len - 1] = '\n';
    c->out_len += len;
    return 0;
}

static void client_handler(struct vio_handler *h, uint32_t events)
{
    struct rpc_client *c = vio_container_of(h, struct rpc_client, h);
    struct vio_rpc_server *s = c->s;
    char *nl;
    ssize_t n;

    if (events & EPOLLOUT) {
        if (client_flush(c) < 0)
            return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        client_close(c);
        return;
    }
    c->in_len += (size_t)n;
    while ((nl = memchr(c->in, '\n', c->in_len))) {
        size_t line = (size_t)(nl - c->in);
        char *resp = NULL;

        if (line > 0 && strspn(c->in, " \t\r") < line)
            resp = vio_rpc_handle_text(s->methods, s->opaque, c->in, line);
        memmove(c->in, nl + 1, c->in_len - line - 1);
        c->in_len -= line + 1;
        if (resp) {
            int ret = client_queue(c, resp);

            free(resp);
            if (ret < 0)
                return;
        }
    }
    if (c->in_len == sizeof(c->in)) {
        json_t *e = error_response(NULL, VIO_RPC_INVALID_REQUEST, "request line over 64 KiB");
        char *t = json_dumps(e, JSON_COMPACT);

        json_decref(e);
        /* Best effort: the client is closed either way. */
        if (t && send(c->fd, t, strlen(t), MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
            send(c->fd, "\n", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        free(t);
        vio_warn("control client sent a request line over 64 KiB; closing it");
        client_close(c);
        return;
    }
    client_flush(c);
}

static void accept_handler(struct vio_handler *h, uint32_t events)
{
    struct vio_rpc_server *s = vio_container_of(h, struct vio_rpc_server, h);
    struct rpc_client *c;
    int fd;

    (void)events;
    fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (s->nclients >= RPC_MAX_CLIENTS) {
        vio_warn("too many control clients (%d); refusing one", RPC_MAX_CLIENTS);
        close(fd);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->s = s;
    c->fd = fd;
    if (vio_loop_add(s->loop, &c->h, fd, EPOLLIN, client_handler) < 0) {
        close(fd);
        free(c);
        return;
    }
    c->next = s->clients;
    s->clients = c;
    s->nclients++;
}

int vio_rpc_server_create(struct vio_loop *loop, const char *path,
                          const struct vio_rpc_method *methods, void *opaque,
                          struct vio_rpc_server **out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct vio_rpc_server *s;
    struct stat st;
    int ret;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        vio_err("control socket path %s is longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            vio_err("%s exists and is not a socket; not replacing it", path);
            return -EEXIST;
        }
        unlink(path);
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->methods = methods;
    s->opaque = opaque;
    s->path = strdup(path);
    s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!s->path || s->fd < 0) {
        ret = s->fd < 0 ? -errno : -ENOMEM;
        goto err;
    }
    memcpy(sa.sun_path, path, strlen(path));
    if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s->fd, 16) < 0) {
        ret = -errno;
        vio_err("cannot listen on control socket %s: %s", path, strerror(errno));
        goto err;
    }
    ret = vio_loop_add(loop, &s->h, s->fd, EPOLLIN, accept_handler);
    if (ret < 0)
        goto err;
    *out = s;
    return 0;

err:
    if (s->fd >= 0)
        close(s->fd);
    free(s->path);
    free(s);
    return ret;
}

void vio_rpc_server_destroy(struct vio_rpc_server *s)
{
    if (!s)
        return;
    while (s->clients)
        client_close(s->clients);
    vio_loop_del(s->loop, &s->h);
    close(s->fd);
    unlink(s->path);
    free(s->path);
    free(s);
}

int vio_rpc_call(const char *path, const char *method, json_t *params, json_t **result,
                 json_t **error)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    json_t *req, *resp = NULL;
    char *text = NULL, *buf = NULL;
    size_t len = 0, cap = 0;
    int fd, ret;

    *result = NULL;
    *error = NULL;
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        ret = -errno;
        goto out;
    }
    req = json_pack("{s:s, s:s, s:i}", "jsonrpc", "2.0", "method", method, "id", 1);
    if (params)
        json_object_set(req, "params", params);
    text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!text) {
        ret = -ENOMEM;
        goto out;
    }
    for (size_t off = 0, n = strlen(text); off <= n;) {
        const char *p = off < n ? text + off : "\n";
        size_t l = off < n ? n - off : 1;
        ssize_t w = send(fd, p, l, MSG_NOSIGNAL);

        if (w < 0) {
            ret = -errno;
            goto out;
        }
        off += (size_t)w;
    }
    for (;;) {
        ssize_t r;

        if (len + 4096 > cap) {
            char *p = realloc(buf, cap = cap ? cap * 2 : 8192);

            if (!p) {
                ret = -ENOMEM;
                goto out;
            }
            buf = p;
        }
        r = recv(fd, buf + len, cap - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ret = r < 0 ? -errno : -ECONNRESET;
            goto out;
        }
        len += (size_t)r;
        if (memchr(buf, '\n', len))
            break;
    }
    resp = json_loadb(buf, (size_t)((char *)memchr(buf, '\n', len) - buf), 0, NULL);
    if (!resp) {
        ret = -EBADMSG;
        goto out;
    }
    if (json_object_get(resp, "error")) {
        *error = json_incref(json_object_get(resp, "error"));
        ret = -EREMOTEIO;
    } else if (json_object_get(resp, "result")) {
        *result = json_incref(json_object_get(resp, "result"));
        ret = 0;
    } else {
        ret = -EBADMSG;
    }
out:
    json_decref(resp);
    free(buf);
    free(text);
    close(fd);
    return ret;
}
