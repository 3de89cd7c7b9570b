/* Unit tests of the command-line option-list parser (src/core/opts.c): keys,
 * values and bare flags, ",," escaping, the errors (empty key, duplicate, too
 * many keys), boolean and size values with their bounds, and unused keys. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/opts.h"
#include "core/util.h"

/* Parse @s, expecting success. */
static void parse_ok(const char *s, struct vio_opts *o)
{
    char err[200] = "";
    int ret = vio_opts_parse(s, o, err, sizeof(err));

    if (ret != 0)
        fail_msg("parsing '%s' failed: %d %s", s, ret, err);
}

/* Parse @s, expecting -EINVAL with a message containing @needle. */
static void parse_fails(const char *s, const char *needle)
{
    struct vio_opts o;
    char err[200] = "";

    assert_int_equal(vio_opts_parse(s, &o, err, sizeof(err)), -EINVAL);
    if (!strstr(err, needle))
        fail_msg("parsing '%s': error '%s' does not mention '%s'", s, err, needle);
    vio_opts_free(&o);
}

static void test_keys_values_flags(void **state)
{
    struct vio_opts o;
    char err[200] = "";

    (void)state;
    parse_ok("id=disk0,path=/tmp/d.img,readonly,serial=", &o);
    assert_int_equal(o.n, 4);
    assert_string_equal(o.o[0].key, "id");
    assert_string_equal(o.o[0].val, "disk0");
    assert_string_equal(o.o[2].key, "readonly");
    assert_null(o.o[2].val);
    /* An empty value is a value, not a flag. */
    assert_non_null(o.o[3].val);
    assert_string_equal(o.o[3].val, "");
    assert_string_equal(vio_opts_get(&o, "path"), "/tmp/d.img");
    assert_string_equal(vio_opts_get(&o, "readonly"), "");
    assert_string_equal(vio_opts_get(&o, "serial"), "");
    assert_null(vio_opts_get(&o, "missing"));
    /* Keys are case-sensitive and matched whole. */
    assert_null(vio_opts_get(&o, "ID"));
    assert_null(vio_opts_get(&o, "i"));
    assert_null(vio_opts_get(&o, "idx"));
    assert_string_equal(vio_opts_get(&o, "id"), "disk0");
    assert_int_equal(vio_opts_check_unused(&o, err, sizeof(err)), 0);
    vio_opts_free(&o);
    /* Only the first '=' splits. */
    parse_ok("a=b=c,d==", &o);
    assert_string_equal(vio_opts_get(&o, "a"), "b=c");
    assert_string_equal(vio_opts_get(&o, "d"), "=");
    vio_opts_free(&o);
    /* One bare flag. */
    parse_ok("x", &o);
    assert_int_equal(o.n, 1);
    assert_null(o.o[0].val);
    vio_opts_free(&o);
}

static void test_comma_escaping(void **state)
{
    struct vio_opts o;

    (void)state;
    parse_ok("path=a,,b,,,,c,id=x", &o);
    assert_int_equal(o.n, 2);
    assert_string_equal(vio_opts_get(&o, "path"), "a,b,,c");
    assert_string_equal(vio_opts_get(&o, "id"), "x");
    vio_opts_free(&o);
    /* An odd run: pairs are literal, the last single comma splits. */
    parse_ok("a=1,,,b=2", &o);
    assert_int_equal(o.n, 2);
    assert_string_equal(vio_opts_get(&o, "a"), "1,");
    assert_string_equal(vio_opts_get(&o, "b"), "2");
    vio_opts_free(&o);
    /* Escaped commas at the start and end of a value, and in a key. */
    parse_ok("v=,,x,,,k,,ey", &o);
    assert_int_equal(o.n, 2);
    assert_string_equal(vio_opts_get(&o, "v"), ",x,");
    assert_string_equal(o.o[1].key, "k,ey");
    assert_null(o.o[1].val);
    vio_opts_free(&o);
    /* "a=1,,b=2" is one option whose value holds a comma. */
    parse_ok("a=1,,b=2", &o);
    assert_int_equal(o.n, 1);
    assert_string_equal(vio_opts_get(&o, "a"), "1,b=2");
    vio_opts_free(&o);
    parse_ok("v=,,,,", &o);
    assert_int_equal(o.n, 1);
    assert_string_equal(vio_opts_get(&o, "v"), ",,");
    vio_opts_free(&o);
}

static void test_empty_keys(void **state)
{
    (void)state;
    parse_fails("", "empty option name");
    parse_fails(",a=1", "empty option name");
    parse_fails("a=1,", "empty option name");
    parse_fails("a=1,,,", "empty option name");
}

static void test_empty_keys_detail(void **state)
{
    (void)state;
    parse_fails("=1", "empty option name");
    parse_fails("a=1,=2", "empty option name");
    parse_fails("a,,b,", "empty option name");
    parse_fails("a=1,,,=", "empty option name");
}

static void test_duplicates(void **state)
{
    (void)state;
    parse_fails("a=1,a=2", "'a' given twice");
    parse_fails("flag,flag", "'flag' given twice");
    parse_fails("a=1,b,a", "'a' given twice");
    parse_fails("x=1,y=2,z=3,y", "'y' given twice");
}

static void test_not_duplicates(void **state)
{
    struct vio_opts o;

    (void)state;
    /* Keys that share a prefix, and an escaped comma making two keys differ. */
    parse_ok("a=1,ab=2,a,,=3", &o);
    assert_int_equal(o.n, 3);
    assert_string_equal(vio_opts_get(&o, "a"), "1");
    assert_string_equal(vio_opts_get(&o, "ab"), "2");
    assert_string_equal(vio_opts_get(&o, "a,"), "3");
    vio_opts_free(&o);
}

static void test_too_many_keys(void **state)
{
    char s[VIO_OPTS_MAX * 8 + 16];
    struct vio_opts o;
    size_t len = 0;

    (void)state;
    for (int i = 0; i < VIO_OPTS_MAX; i++)
        len += (size_t)snprintf(s + len, sizeof(s) - len, "%sk%d=%d", i ? "," : "", i, i);
    parse_ok(s, &o);
    assert_int_equal(o.n, VIO_OPTS_MAX);
    assert_string_equal(vio_opts_get(&o, "k31"), "31");
    vio_opts_free(&o);
    snprintf(s + len, sizeof(s) - len, ",k%d", VIO_OPTS_MAX);
    parse_fails(s, "more than 32 options");
}

static void test_free_after_error_and_twice(void **state)
{
    struct vio_opts o;
    char err[200];

    (void)state;
    assert_int_equal(vio_opts_parse("a,a", &o, err, sizeof(err)), -EINVAL);
    vio_opts_free(&o);
    vio_opts_free(&o);
    assert_null(o.buf);
    assert_int_equal(o.n, 0);
}

static void test_short_error_buffer(void **state)
{
    struct vio_opts o;
    char err[8];

    (void)state;
    memset(err, 'x', sizeof(err));
    assert_int_equal(vio_opts_parse("loooooooong,loooooooong", &o, err, sizeof(err)), -EINVAL);
    assert_int_equal(strnlen(err, sizeof(err)), sizeof(err) - 1);
    vio_opts_free(&o);
}

static void test_bool(void **state)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    struct vio_opts o;
    char err[200], s[64];
    bool v;

    (void)state;
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(yes); i++) {
        snprintf(s, sizeof(s), "t=%s,f=%s", yes[i], no[i]);
        parse_ok(s, &o);
        v = false;
        assert_int_equal(vio_opts_bool(&o, "t", false, &v, err, sizeof(err)), 0);
        assert_true(v);
        v = true;
        assert_int_equal(vio_opts_bool(&o, "f", true, &v, err, sizeof(err)), 0);
        assert_false(v);
        vio_opts_free(&o);
    }
    parse_ok("flag,bad=maybe,empty=,upper=ON,spaced= on", &o);
    /* A bare flag is true whatever the default. */
    v = false;
    assert_int_equal(vio_opts_bool(&o, "flag", false, &v, err, sizeof(err)), 0);
    assert_true(v);
    /* Absent: the default, both ways. */
    v = false;
    assert_int_equal(vio_opts_bool(&o, "absent", true, &v, err, sizeof(err)), 0);
    assert_true(v);
    assert_int_equal(vio_opts_bool(&o, "absent", false, &v, err, sizeof(err)), 0);
    assert_false(v);
    /* Anything else is an error naming the key and the value; *out is not
     * touched. */
    v = true;
    assert_int_equal(vio_opts_bool(&o, "bad", false, &v, err, sizeof(err)), -EINVAL);
    assert_true(v);
    assert_non_null(strstr(err, "bad=maybe"));
    assert_int_equal(vio_opts_bool(&o, "empty", false, &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(vio_opts_bool(&o, "upper", false, &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(vio_opts_bool(&o, "spaced", false, &v, err, sizeof(err)), -EINVAL);
    vio_opts_free(&o);
}

/* vio_opts_size on "k=@val" with bounds; returns the result code. */
static int size_of(const char *val, uint64_t min, uint64_t max, uint64_t *out)
{
    struct vio_opts o;
    char s[128], err[200] = "";
    int ret;

    snprintf(s, sizeof(s), "k=%s", val);
    parse_ok(s, &o);
    ret = vio_opts_size(&o, "k", 12345, min, max, out, err, sizeof(err));
    if (ret < 0 && !strstr(err, "k="))
        fail_msg("error for k=%s does not name the option: '%s'", val, err);
    vio_opts_free(&o);
    return ret;
}

static void test_size_values(void **state)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},
        {"123", 123},
        {"4k", 4096},
        {"64K", 65536},
        {"2M", 2ull << 20},
        {"3g", 3ull << 30},
        {"1T", 1ull << 40},
        {"1KiB", 1024},
        {"1MB", 1ull << 20},
        {"007", 7},
        {"18446744073709551615", UINT64_MAX},
        {"16777215T", 16777215ull << 40},
        {"17179869183G", 17179869183ull << 30},
    };
    static const char *const bad[] = {
        "",
        "abc",
        "-1",
        "+1",
        "1x",
        "1KB2",
        "1Ki",
        "1iB",
        "K",
        "1.5G",
        "0x10",
        "1 ",
        "1K ",
        "18446744073709551616",
        "99999999999999999999999",
        "16777216T",
        "17179869184G",
        "18014398509481984K",
    };
    uint64_t v;

    (void)state;
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(good); i++) {
        v = 0xdead;
        if (size_of(good[i].s, 0, UINT64_MAX, &v) != 0)
            fail_msg("k=%s was rejected", good[i].s);
        if (v != good[i].v)
            fail_msg("k=%s gave %llu, expected %llu", good[i].s, (unsigned long long)v,
                     (unsigned long long)good[i].v);
    }
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(bad); i++) {
        v = 0xdead;
        if (size_of(bad[i], 0, UINT64_MAX, &v) != -EINVAL)
            fail_msg("k=%s was accepted as %llu", bad[i], (unsigned long long)v);
        assert_int_equal(v, 0xdead);
    }
}

/* strtoull skips leading white space and accepts a sign after it, so the
 * leading '-'/'+' check in vio_parse_size can be bypassed: " -1" must not
 * become 18446744073709551615. */
static void test_size_rejects_space_and_sign(void **state)
{
    static const char *const bad[] = {" -1", " 1",      "\t2",
                                      " +5", "\n-4096", " -18446744073709550592"};
    uint64_t v;

    (void)state;
    for (unsigned i = 0; i < VIO_ARRAY_SIZE(bad); i++) {
        v = 0xdead;
        if (vio_parse_size(bad[i], &v) == 0)
            fail_msg("vio_parse_size(\"%s\") accepted it as %llu", bad[i], (unsigned long long)v);
    }
    /* Through an option: a negative number passes the bounds as 1024. */
    v = 0xdead;
    if (size_of(" -18446744073709550592", 512, 4096, &v) == 0)
        fail_msg("k= -18446744073709550592 was accepted as %llu", (unsigned long long)v);
}

static void test_size_bounds_and_default(void **state)
{
    struct vio_opts o;
    char err[200] = "";
    uint64_t v;

    (void)state;
    /* Bounds are inclusive. */
    assert_int_equal(size_of("1", 1, 64, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(size_of("64", 1, 64, &v), 0);
    assert_int_equal(v, 64);
    assert_int_equal(size_of("0", 1, 64, &v), -EINVAL);
    assert_int_equal(size_of("65", 1, 64, &v), -EINVAL);
    assert_int_equal(size_of("1K", 1, 1023, &v), -EINVAL);
    assert_int_equal(size_of("1K", 1024, 1024, &v), 0);
    /* A bound failure names the range. */
    parse_ok("q=100", &o);
    assert_int_equal(vio_opts_size(&o, "q", 1, 1, 64, &v, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "between 1 and 64"));
    vio_opts_free(&o);
    /* Absent: the default, unchecked against the bounds. */
    parse_ok("other=1", &o);
    assert_int_equal(vio_opts_size(&o, "q", 99999, 1, 64, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 99999);
    /* A bare flag is not a number. */
    vio_opts_free(&o);
    parse_ok("q", &o);
    v = 7;
    assert_int_equal(vio_opts_size(&o, "q", 1, 0, 100, &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(v, 7);
    assert_non_null(strstr(err, "expected a number"));
    vio_opts_free(&o);
}

static void test_unused_keys(void **state)
{
    struct vio_opts o;
    char err[200] = "";
    uint64_t n;
    bool b;

    (void)state;
    parse_ok("id=x,queues=2,readonly,tpyo=1", &o);
    assert_int_equal(vio_opts_check_unused(&o, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "'id'"));
    assert_non_null(vio_opts_get(&o, "id"));
    assert_int_equal(vio_opts_size(&o, "queues", 1, 1, 8, &n, err, sizeof(err)), 0);
    assert_int_equal(vio_opts_bool(&o, "readonly", false, &b, err, sizeof(err)), 0);
    /* Asking for absent keys marks nothing. */
    assert_null(vio_opts_get(&o, "typo"));
    assert_int_equal(vio_opts_check_unused(&o, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown option 'tpyo'"));
    assert_non_null(vio_opts_get(&o, "tpyo"));
    assert_int_equal(vio_opts_check_unused(&o, err, sizeof(err)), 0);
    vio_opts_free(&o);
    /* A getter that fails on the value still counts the key as used: the
     * error reported is the value's, not "unknown option". */
    parse_ok("n=abc", &o);
    assert_int_equal(vio_opts_size(&o, "n", 1, 0, 9, &n, err, sizeof(err)), -EINVAL);
    assert_int_equal(vio_opts_check_unused(&o, err, sizeof(err)), 0);
    vio_opts_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_values_flags),
        cmocka_unit_test(test_comma_escaping),
        cmocka_unit_test(test_empty_keys),
        cmocka_unit_test(test_empty_keys_detail),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_not_duplicates),
        cmocka_unit_test(test_too_many_keys),
        cmocka_unit_test(test_free_after_error_and_twice),
        cmocka_unit_test(test_short_error_buffer),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_size_values),
        cmocka_unit_test(test_size_rejects_space_and_sign),
        cmocka_unit_test(test_size_bounds_and_default),
        cmocka_unit_test(test_unused_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
