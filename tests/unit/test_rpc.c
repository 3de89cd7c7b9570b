/* Unit tests of the JSON-RPC 2.0 control server (src/core/rpc.c): request
 * checks, batches and notifications through vio_rpc_handle_text, then a real
 * server in a loop thread, with vio_rpc_call and raw clients that misbehave. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/rpc.h"

/* ---- methods under test ---- */

struct ctx {
    int calls; /* touched only on the thread that handles requests */
};

static json_t *m_echo(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    (void)opaque;
    (void)err;
    return params ? json_incref(params) : json_string("no params");
}

static json_t *m_fail(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    (void)opaque;
    (void)params;
    return vio_rpc_fail(err, VIO_RPC_NOT_FOUND, "no device '%s'", "nope");
}

static json_t *m_fail_silent(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    (void)opaque;
    (void)params;
    (void)err;
    return NULL;
}

static json_t *m_count(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    struct ctx *c = opaque;

    (void)params;
    (void)err;
    return json_integer(++c->calls);
}

/* A reply far larger than the socket buffers and the 64 KiB input limit. */
static json_t *m_big(void *opaque, json_t *params, struct vio_rpc_error *err)
{
    size_t n = 1 << 20;
    char *s = malloc(n + 1);
    json_t *r;

    (void)opaque;
    (void)params;
    (void)err;
    memset(s, 'b', n);
    s[n] = '\0';
    r = json_string(s);
    free(s);
    return r;
}

static const struct vio_rpc_method methods[] = {
    {"echo", m_echo, "return the params"}, {"fail", m_fail, "always fails"},
    {"fail_silent", m_fail_silent, NULL},  {"count", m_count, "count calls"},
    {"big", m_big, "a 1 MiB string"},      {NULL, NULL, NULL},
};

/* ---- vio_rpc_handle_text ---- */

/* Handle @text; returns the parsed reply, or NULL when there was none. */
static json_t *handle(struct ctx *c, const char *text)
{
    char *out = vio_rpc_handle_text(methods, c, text, strlen(text));
    json_error_t e;
    json_t *j;

    if (!out)
        return NULL;
    j = json_loads(out, 0, &e);
    if (!j)
        fail_msg("reply to %s is not JSON: %s (%s)", text, out, e.text);
    free(out);
    return j;
}

/* Check @r is a JSON-RPC error reply with @code and id @id (JSON text,
 * "null" for null). Takes @r. */
static void check_error(json_t *r, int code, const char *id)
{
    json_t *err, *want_id = json_loads(id, JSON_DECODE_ANY, NULL);

    assert_non_null(r);
    assert_non_null(want_id);
    assert_true(json_is_object(r));
    assert_string_equal(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
    err = json_object_get(r, "error");
    if (!json_is_object(err))
        fail_msg("not an error reply: %s", json_dumps(r, 0));
    assert_null(json_object_get(r, "result"));
    assert_int_equal(json_integer_value(json_object_get(err, "code")), code);
    assert_true(json_is_string(json_object_get(err, "message")));
    assert_true(strlen(json_string_value(json_object_get(err, "message"))) > 0);
    if (!json_equal(json_object_get(r, "id"), want_id))
        fail_msg("reply id is %s, expected %s",
                 json_dumps(json_object_get(r, "id"), JSON_ENCODE_ANY), id);
    json_decref(want_id);
    json_decref(r);
}

/* Check @r is a result reply with id @id; returns a new reference to the
 * result. Takes @r. */
static json_t *check_result(json_t *r, const char *id)
{
    json_t *want_id = json_loads(id, JSON_DECODE_ANY, NULL), *res;

    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
    if (json_object_get(r, "error"))
        fail_msg("error reply: %s", json_dumps(r, 0));
    res = json_object_get(r, "result");
    assert_non_null(res);
    assert_true(json_equal(json_object_get(r, "id"), want_id));
    json_incref(res);
    json_decref(want_id);
    json_decref(r);
    return res;
}

static void test_parse_error(void **state)
{
    struct ctx c = {0};

    (void)state;
    check_error(handle(&c, "{"), VIO_RPC_PARSE_ERROR, "null");
    check_error(handle(&c, "not json"), VIO_RPC_PARSE_ERROR, "null");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1"),
                VIO_RPC_PARSE_ERROR, "null");
    /* Trailing garbage, and duplicate keys (which one would win?). */
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":1} x"),
                VIO_RPC_PARSE_ERROR, "null");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"method\":\"fail\","
                           "\"id\":1}"),
                VIO_RPC_PARSE_ERROR, "null");
    assert_int_equal(c.calls, 0);
    /* Only @len bytes count: what follows is not read. */
    {
        const char *t = "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":3}GARBAGE";
        char *out = vio_rpc_handle_text(methods, &c, t, strlen(t) - 7);
        json_t *res;

        assert_non_null(out);
        res = check_result(json_loads(out, 0, NULL), "3");
        assert_int_equal(json_integer_value(res), 1);
        json_decref(res);
        free(out);
    }
}

static void test_not_an_object(void **state)
{
    struct ctx c = {0};
    json_t *r;

    (void)state;
    /* Valid JSON that is not a request. jansson refuses bare scalars at the
     * top level, so these may come back as parse errors; either way the
     * reply is an error with a null id. */
    const char *scalars[] = {"42", "\"count\"", "null", "true"};
    for (unsigned i = 0; i < 4; i++) {
        r = handle(&c, scalars[i]);
        assert_non_null(r);
        {
            json_int_t code =
                json_integer_value(json_object_get(json_object_get(r, "error"), "code"));

            if (code != VIO_RPC_PARSE_ERROR && code != VIO_RPC_INVALID_REQUEST)
                fail_msg("%s gave code %d", scalars[i], (int)code);
            assert_true(json_is_null(json_object_get(r, "id")));
        }
        json_decref(r);
    }
    /* Inside a batch a non-object is exactly an invalid request. */
    r = handle(&c, "[1]");
    assert_true(json_is_array(r));
    assert_int_equal(json_array_size(r), 1);
    check_error(json_incref(json_array_get(r, 0)), VIO_RPC_INVALID_REQUEST, "null");
    json_decref(r);
    assert_int_equal(c.calls, 0);
}

static void test_bad_version(void **state)
{
    struct ctx c = {0};

    (void)state;
    check_error(handle(&c, "{\"method\":\"count\",\"id\":1}"), VIO_RPC_INVALID_REQUEST, "1");
    check_error(handle(&c, "{\"jsonrpc\":\"1.0\",\"method\":\"count\",\"id\":2}"),
                VIO_RPC_INVALID_REQUEST, "2");
    check_error(handle(&c, "{\"jsonrpc\":2.0,\"method\":\"count\",\"id\":\"a\"}"),
                VIO_RPC_INVALID_REQUEST, "\"a\"");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0 \",\"method\":\"count\",\"id\":3}"),
                VIO_RPC_INVALID_REQUEST, "3");
    assert_int_equal(c.calls, 0);
}

static void test_bad_method(void **state)
{
    struct ctx c = {0};

    (void)state;
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"id\":1}"), VIO_RPC_INVALID_REQUEST, "1");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":42,\"id\":1}"), VIO_RPC_INVALID_REQUEST,
                "1");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":null,\"id\":1}"),
                VIO_RPC_INVALID_REQUEST, "1");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":[\"count\"],\"id\":1}"),
                VIO_RPC_INVALID_REQUEST, "1");
    assert_int_equal(c.calls, 0);
}

static void test_bad_params(void **state)
{
    struct ctx c = {0};
    json_t *res;

    (void)state;
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"params\":5,\"id\":1}"),
                VIO_RPC_INVALID_REQUEST, "1");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"params\":\"x\",\"id\":1}"),
                VIO_RPC_INVALID_REQUEST, "1");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"params\":null,\"id\":1}"),
                VIO_RPC_INVALID_REQUEST, "1");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"params\":true,\"id\":1}"),
                VIO_RPC_INVALID_REQUEST, "1");
    assert_int_equal(c.calls, 0);
    /* Objects and arrays reach the method as they are. */
    res = check_result(
        handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"a\":[1,2]},\"id\":1}"),
        "1");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(res, "a"), 1)), 2);
    json_decref(res);
    res = check_result(
        handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[\"x\"],\"id\":1}"), "1");
    assert_string_equal(json_string_value(json_array_get(res, 0)), "x");
    json_decref(res);
    res = check_result(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}"), "1");
    assert_string_equal(json_string_value(res), "no params");
    json_decref(res);
}

static void test_unknown_method(void **state)
{
    struct ctx c = {0};
    char big[400];
    json_t *r;

    (void)state;
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"nope\",\"id\":9}"),
                VIO_RPC_METHOD_NOT_FOUND, "9");
    /* Prefixes of real names are not names. */
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"coun\",\"id\":9}"),
                VIO_RPC_METHOD_NOT_FOUND, "9");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"\",\"id\":9}"),
                VIO_RPC_METHOD_NOT_FOUND, "9");
    /* A long name is cut in the message, not overflowed. */
    snprintf(big, sizeof(big), "{\"jsonrpc\":\"2.0\",\"method\":\"%0300d\",\"id\":9}", 0);
    r = handle(&c, big);
    assert_non_null(r);
    assert_true(strlen(json_string_value(json_object_get(json_object_get(r, "error"), "message"))) <
                200);
    check_error(r, VIO_RPC_METHOD_NOT_FOUND, "9");
    /* Unknown as a notification: silence. */
    assert_null(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"nope\"}"));
}

static void test_method_errors(void **state)
{
    struct ctx c = {0};
    json_t *r;

    (void)state;
    r = handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"fail\",\"id\":\"f\"}");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "error"), "message")),
                        "no device 'nope'");
    check_error(r, VIO_RPC_NOT_FOUND, "\"f\"");
    /* No code or message set: internal error. */
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"fail_silent\",\"id\":4}"),
                VIO_RPC_INTERNAL_ERROR, "4");
}

static void test_notifications(void **state)
{
    struct ctx c = {0};

    (void)state;
    /* No id: the method runs, nothing comes back, success or not. */
    assert_null(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\"}"));
    assert_int_equal(c.calls, 1);
    assert_null(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"params\":[]}"));
    assert_int_equal(c.calls, 2);
    assert_null(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"fail\"}"));
    assert_null(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"big\"}"));
    /* A null id is an id: the request gets its reply. */
    {
        json_t *res = check_result(
            handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":null}"), "null");

        assert_int_equal(json_integer_value(res), 3);
        json_decref(res);
    }
    /* An invalid request without id is still answered (it is not a valid
     * notification). */
    check_error(handle(&c, "{\"jsonrpc\":\"1.0\",\"method\":\"count\"}"), VIO_RPC_INVALID_REQUEST,
                "null");
    assert_int_equal(c.calls, 3);
}

static void test_bad_ids(void **state)
{
    struct ctx c = {0};
    json_t *res;

    (void)state;
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":1.5}"),
                VIO_RPC_INVALID_REQUEST, "null");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":true}"),
                VIO_RPC_INVALID_REQUEST, "null");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":{}}"),
                VIO_RPC_INVALID_REQUEST, "null");
    check_error(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":[1]}"),
                VIO_RPC_INVALID_REQUEST, "null");
    assert_int_equal(c.calls, 0);
    /* Strings and integers come back unchanged. */
    res = check_result(
        handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":\"abc \\u00e9\"}"),
        "\"abc \\u00e9\"");
    json_decref(res);
    res = check_result(
        handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":-9007199254740993}"),
        "-9007199254740993");
    json_decref(res);
    assert_int_equal(c.calls, 2);
}

static void test_batches(void **state)
{
    struct ctx c = {0};
    json_t *r, *res;

    (void)state;
    /* Two requests around a notification: two replies, in order. */
    r = handle(&c, "[{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":1},"
                   "{\"jsonrpc\":\"2.0\",\"method\":\"count\"},"
                   "{\"jsonrpc\":\"2.0\",\"method\":\"nope\",\"id\":\"x\"},"
                   "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":2}]");
    assert_true(json_is_array(r));
    assert_int_equal(json_array_size(r), 3);
    res = check_result(json_incref(json_array_get(r, 0)), "1");
    assert_int_equal(json_integer_value(res), 1);
    json_decref(res);
    check_error(json_incref(json_array_get(r, 1)), VIO_RPC_METHOD_NOT_FOUND, "\"x\"");
    res = check_result(json_incref(json_array_get(r, 2)), "2");
    assert_int_equal(json_integer_value(res), 3);
    json_decref(res);
    json_decref(r);
    assert_int_equal(c.calls, 3);
    /* An empty batch is one error, not an empty array. */
    check_error(handle(&c, "[]"), VIO_RPC_INVALID_REQUEST, "null");
    /* Only notifications: no reply at all. */
    assert_null(handle(&c, "[{\"jsonrpc\":\"2.0\",\"method\":\"count\"},"
                           "{\"jsonrpc\":\"2.0\",\"method\":\"fail\"}]"));
    assert_int_equal(c.calls, 4);
    /* Invalid members each get an error; batches do not nest. */
    r = handle(&c, "[1, \"x\", [], [{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":1}]]");
    assert_int_equal(json_array_size(r), 4);
    for (size_t i = 0; i < 4; i++)
        check_error(json_incref(json_array_get(r, i)), VIO_RPC_INVALID_REQUEST, "null");
    json_decref(r);
    assert_int_equal(c.calls, 4);
}

static void test_help(void **state)
{
    struct ctx c = {0};
    json_t *res;

    (void)state;
    res = check_result(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"help\",\"id\":1}"), "1");
    assert_true(json_is_object(res));
    assert_int_equal(json_object_size(res), 6);
    assert_string_equal(json_string_value(json_object_get(res, "echo")), "return the params");
    assert_string_equal(json_string_value(json_object_get(res, "fail_silent")), "");
    assert_true(json_is_string(json_object_get(res, "help")));
    json_decref(res);
    assert_null(handle(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"help\"}"));
}

/* ---- a real server ---- */

struct server {
    struct vio_loop loop;
    struct vio_rpc_server *rpc;
    pthread_t thread;
    char path[108];
    struct ctx ctx;
};

static void *loop_thread(void *arg)
{
    struct server *s = arg;

    vio_log_set_thread_name("rpc-loop");
    /* Not a cmocka assert: those may only fail on the test's own thread. */
    if (vio_loop_run(&s->loop) != 0)
        abort();
    return NULL;
}

static void server_start(struct server *s)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->path, sizeof(s->path), "/tmp/vio-test-rpc-%d.sock", (int)getpid());
    assert_int_equal(vio_loop_init(&s->loop), 0);
    assert_int_equal(vio_rpc_server_create(&s->loop, s->path, methods, &s->ctx, &s->rpc), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, loop_thread, s), 0);
}

static void server_stop(struct server *s)
{
    struct stat st;

    vio_loop_stop(&s->loop);
    pthread_join(s->thread, NULL);
    vio_rpc_server_destroy(s->rpc);
    vio_loop_destroy(&s->loop);
    assert_int_equal(lstat(s->path, &st), -1);
}

static int raw_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void raw_send(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* One reply line from @fd (malloc'd, without the newline), or NULL at end of
 * stream or on a reset. Fails the test after 10 s of silence. */
static char *raw_line(int fd)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);

    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char ch;
        ssize_t n;

        if (poll(&p, 1, 10000) != 1)
            fail_msg("no reply within 10 s");
        n = recv(fd, &ch, 1, 0);
        if (n <= 0) {
            free(buf);
            return NULL;
        }
        if (ch == '\n') {
            buf[len] = '\0';
            return buf;
        }
        if (len + 2 > cap)
            buf = realloc(buf, cap *= 2);
        buf[len++] = ch;
    }
}

/* The server has closed @fd: the next read sees end of stream (or a reset,
 * if it closed with our bytes unread). */
static void raw_expect_closed(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char ch;

    assert_int_equal(poll(&p, 1, 10000), 1);
    assert_true(recv(fd, &ch, 1, 0) <= 0);
}

static void raw_sends(int fd, const char *s)
{
    raw_send(fd, s, strlen(s));
}

static json_t *raw_reply(int fd)
{
    char *line = raw_line(fd);
    json_t *j;

    assert_non_null(line);
    j = json_loads(line, 0, NULL);
    if (!j)
        fail_msg("reply is not JSON: %.200s", line);
    free(line);
    return j;
}

/* A vio_rpc_call that must succeed; returns its result. */
static json_t *call_ok(struct server *s, const char *method, json_t *params)
{
    json_t *result, *error;
    int ret = vio_rpc_call(s->path, method, params, &result, &error);

    if (ret != 0)
        fail_msg("vio_rpc_call(%s) = %d (%s)", method, ret, strerror(-ret));
    assert_null(error);
    return result;
}

static void test_server_calls(void **state)
{
    struct server s;
    json_t *params, *result, *error;

    (void)state;
    server_start(&s);
    params = json_pack("{s:s, s:[i,i]}", "k", "v", "l", 1, 2);
    result = call_ok(&s, "echo", params);
    assert_true(json_equal(result, params));
    json_decref(result);
    json_decref(params);
    result = call_ok(&s, "count", NULL);
    assert_int_equal(json_integer_value(result), 1);
    json_decref(result);
    /* Errors come back as -EREMOTEIO with the error object. */
    assert_int_equal(vio_rpc_call(s.path, "fail", NULL, &result, &error), -EREMOTEIO);
    assert_null(result);
    assert_int_equal(json_integer_value(json_object_get(error, "code")), VIO_RPC_NOT_FOUND);
    json_decref(error);
    assert_int_equal(vio_rpc_call(s.path, "nope", NULL, &result, &error), -EREMOTEIO);
    assert_int_equal(json_integer_value(json_object_get(error, "code")), VIO_RPC_METHOD_NOT_FOUND);
    json_decref(error);
    /* A reply much larger than the socket buffer arrives whole. */
    result = call_ok(&s, "big", NULL);
    assert_int_equal(json_string_length(result), 1 << 20);
    json_decref(result);
    server_stop(&s);
    /* Nobody listening. */
    assert_int_equal(vio_rpc_call(s.path, "count", NULL, &result, &error), -ENOENT);
    assert_null(result);
    assert_null(error);
}

static void test_server_pipelined_and_blank_lines(void **state)
{
    struct server s;
    const char *two = "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":1}\n"
                      "\n  \r\n\t\n"
                      "{\"jsonrpc\":\"2.0\",\"method\":\"count\"}\n"
                      "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":2}\r\n";
    json_t *r;
    int fd;

    (void)state;
    server_start(&s);
    fd = raw_connect(s.path);
    raw_send(fd, two, strlen(two));
    r = raw_reply(fd);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
    assert_int_equal(json_integer_value(json_object_get(r, "result")), 1);
    json_decref(r);
    /* The notification ran but sent nothing; "\r" before "\n" is JSON
     * white space. */
    r = raw_reply(fd);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 2);
    assert_int_equal(json_integer_value(json_object_get(r, "result")), 3);
    json_decref(r);
    /* A request split over several writes. */
    raw_sends(fd, "{\"jsonrpc\":\"2.");
    usleep(20000);
    raw_sends(fd, "0\",\"method\":\"count\",\"id\":3}\n");
    r = raw_reply(fd);
    assert_int_equal(json_integer_value(json_object_get(r, "result")), 4);
    json_decref(r);
    close(fd);
    server_stop(&s);
}

static void test_server_line_limit(void **state)
{
    struct server s;
    const size_t limit = 64 * 1024;
    char *buf = malloc(limit + 8192);
    json_t *r, *res;
    int fd, n;

    (void)state;
    server_start(&s);
    /* A line of limit - 1 bytes plus its newline just fits. */
    n = snprintf(buf, limit, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":5,\"params\":[\"");
    memset(buf + n, 'p', limit - 1 - (size_t)n - 3);
    memcpy(buf + limit - 4, "\"]}\n", 4);
    fd = raw_connect(s.path);
    raw_send(fd, buf, limit);
    r = raw_reply(fd);
    res = json_object_get(r, "result");
    if (!json_is_array(res))
        fail_msg("a %zu-byte line was not answered normally", limit);
    assert_int_equal(json_string_length(json_array_get(res, 0)), limit - 1 - (size_t)n - 3);
    json_decref(r);
    /* The connection is still good. */
    raw_sends(fd, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":6}\n");
    r = raw_reply(fd);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 6);
    json_decref(r);
    /* Exactly 64 KiB without a newline: an error reply, then the close. */
    memset(buf, ' ', limit);
    raw_send(fd, buf, limit);
    r = raw_reply(fd);
    check_error(r, VIO_RPC_INVALID_REQUEST, "null");
    raw_expect_closed(fd);
    close(fd);
    /* Longer still, newline at the end. */
    fd = raw_connect(s.path);
    memset(buf, 'x', limit + 8191);
    buf[limit + 8191] = '\n';
    raw_send(fd, buf, limit + 8192);
    r = raw_reply(fd);
    check_error(r, VIO_RPC_INVALID_REQUEST, "null");
    raw_expect_closed(fd);
    close(fd);
    /* Others are still served. */
    r = call_ok(&s, "count", NULL);
    assert_int_equal(json_integer_value(r), 2);
    json_decref(r);
    free(buf);
    server_stop(&s);
}

static void test_server_garbage_client(void **state)
{
    static const char garbage[] = "garbage\n\x00\x01\xff\xfe{{{\n]]]\n\"\\u\"\n{\"a\":}\n";
    struct server s;
    json_t *r;
    int bad, idle, quitter;

    (void)state;
    server_start(&s);
    bad = raw_connect(s.path);
    idle = raw_connect(s.path);
    /* Half a request, then silence: must not block the server. */
    raw_sends(idle, "{\"jsonrpc\":\"2.0\",");
    raw_send(bad, garbage, sizeof(garbage) - 1);
    /* Five bad lines, five parse errors, connection kept. */
    for (int i = 0; i < 5; i++)
        check_error(raw_reply(bad), VIO_RPC_PARSE_ERROR, "null");
    r = call_ok(&s, "count", NULL);
    assert_int_equal(json_integer_value(r), 1);
    json_decref(r);
    raw_sends(bad, "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":7}\n");
    r = raw_reply(bad);
    assert_int_equal(json_integer_value(json_object_get(r, "result")), 2);
    json_decref(r);
    /* A client that asks for a big reply and leaves without reading it. */
    quitter = raw_connect(s.path);
    raw_sends(quitter, "{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"id\":1}\n");
    close(quitter);
    /* Binary junk with no newline up to the limit closes only that client. */
    {
        char *junk = malloc(64 * 1024);

        for (int i = 0; i < 64 * 1024; i++)
            junk[i] = (char)(i * 131 + 7) == '\n' ? 'n' : (char)(i * 131 + 7);
        raw_send(bad, junk, 64 * 1024);
        free(junk);
    }
    check_error(raw_reply(bad), VIO_RPC_INVALID_REQUEST, "null");
    raw_expect_closed(bad);
    close(bad);
    r = call_ok(&s, "count", NULL);
    assert_int_equal(json_integer_value(r), 3);
    json_decref(r);
    /* The idle client finishes its request and is answered. */
    raw_sends(idle, "\"method\":\"count\",\"id\":8}\n");
    r = raw_reply(idle);
    assert_int_equal(json_integer_value(json_object_get(r, "result")), 4);
    json_decref(r);
    close(idle);
    server_stop(&s);
}

static void test_server_client_limit(void **state)
{
    enum { MAX_CLIENTS = 64 };
    struct server s;
    int fds[MAX_CLIENTS];
    json_t *result, *error, *r;
    int ret = 0;

    (void)state;
    server_start(&s);
    for (int i = 0; i < MAX_CLIENTS; i++) {
        fds[i] = raw_connect(s.path);
        /* A round trip makes sure the server has accepted this one. */
        raw_sends(fds[i], "{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":1}\n");
        r = raw_reply(fds[i]);
        assert_non_null(r);
        json_decref(r);
    }
    /* One more is refused at once rather than left hanging. */
    ret = vio_rpc_call(s.path, "count", NULL, &result, &error);
    assert_true(ret < 0);
    assert_int_not_equal(ret, -EREMOTEIO);
    for (int i = 0; i < MAX_CLIENTS; i++)
        close(fds[i]);
    /* Once the server has seen the closes, calls work again. */
    for (int tries = 0; tries < 200; tries++) {
        ret = vio_rpc_call(s.path, "count", NULL, &result, &error);
        if (ret == 0)
            break;
        usleep(10000);
    }
    assert_int_equal(ret, 0);
    json_decref(result);
    server_stop(&s);
}

static void test_server_create_errors(void **state)
{
    struct vio_loop loop;
    struct vio_rpc_server *rpc = NULL;
    char path[200];
    int fd;

    (void)state;
    assert_int_equal(vio_loop_init(&loop), 0);
    /* Too long for sun_path. */
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    assert_int_equal(vio_rpc_server_create(&loop, path, methods, NULL, &rpc), -ENAMETOOLONG);
    /* A regular file is never replaced. */
    snprintf(path, sizeof(path), "/tmp/vio-test-rpc-file-%d", (int)getpid());
    fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(vio_rpc_server_create(&loop, path, methods, NULL, &rpc), -EEXIST);
    assert_int_equal(access(path, F_OK), 0);
    unlink(path);
    /* A stale socket is. */
    {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/vio-test-rpc-stale-%d", (int)getpid());
        snprintf(path, sizeof(path), "%s", sa.sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
        assert_int_equal(vio_rpc_server_create(&loop, path, methods, NULL, &rpc), 0);
        vio_rpc_server_destroy(rpc);
        assert_int_equal(access(path, F_OK), -1);
    }
    /* A directory that does not exist. */
    assert_true(vio_rpc_server_create(&loop, "/nonexistent-dir/x.sock", methods, NULL, &rpc) < 0);
    vio_rpc_server_destroy(NULL);
    vio_loop_destroy(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_error),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_bad_version),
        cmocka_unit_test(test_bad_method),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_method_errors),
        cmocka_unit_test(test_notifications),
        cmocka_unit_test(test_bad_ids),
        cmocka_unit_test(test_batches),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_server_calls),
        cmocka_unit_test(test_server_pipelined_and_blank_lines),
        cmocka_unit_test(test_server_line_limit),
        cmocka_unit_test(test_server_garbage_client),
        cmocka_unit_test(test_server_client_limit),
        cmocka_unit_test(test_server_create_errors),
    };

    /* Bad clients are logged as warnings; keep the test output readable. */
    vio_log_set_level(VIO_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
