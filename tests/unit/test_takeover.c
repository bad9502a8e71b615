/* test_takeover.c — the socket list of a takeover (src/takeover_msg.c):
 * what the old process writes is what the new one reads; each refusal
 * (count against descriptors, bad or repeated names, trailing bytes, a
 * list too long) with its reason; and "more" for every strict prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "takeover.h"

static cg__takeover_names names;
static char why[128];

static int parse(const char *msg, size_t nfds)
{
    why[0] = '\0';
    return cg__takeover_parse(msg, strlen(msg), nfds, &names, why, sizeof why);
}

static void test_round_trip(void **state)
{
    (void)state;
    const char *list[] = {"web", "api.v2", CG_INHERIT_ADMIN};
    char buf[CG_TAKEOVER_MSG_MAX];
    size_t len = cg__takeover_format(list, 3, buf);
    assert_int_equal(len, strlen("condgate-sockets 3\nweb\napi.v2\nadmin\n"));
    assert_memory_equal(buf, "condgate-sockets 3\nweb\napi.v2\nadmin\n", len);
    assert_int_equal(cg__takeover_parse(buf, len, 3, &names, why, sizeof why), 1);
    assert_int_equal(names.n, 3);
    assert_string_equal(names.name[1], "api.v2");
    /* Every strict prefix asks for more. */
    for (size_t k = 0; k < len; k++)
        assert_int_equal(cg__takeover_parse(buf, k, 3, &names, why, sizeof why), 0);
    assert_int_equal(parse("condgate-sockets 0\n", 0), 1);
    assert_int_equal(names.n, 0);
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *msg;
        size_t nfds;
        const char *why;
    } cases[] = {
        {"HTTP/1.1 400 Bad Request\r\n", 0, "did not answer with its sockets"},
        {"condgate-sockets 2\nweb\n", 1, "not the count of descriptors"},
        {"condgate-sockets 01\nweb\n", 1, "a bad count"},
        {"condgate-sockets 254\n", 254, "a bad count"},
        {"condgate-sockets x\n", 0, "a bad count"},
        {"condgate-sockets 1\nw b\n", 1, "a bad socket name"},
        {"condgate-sockets 2\nweb\nweb\n", 2, "given twice"},
        {"condgate-sockets 1\nweb\nmore", 1, "bytes after"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(parse(cases[i].msg, cases[i].nfds), CG_EINVAL);
        if (strstr(why, cases[i].why) == NULL)
            fail_msg("case %u: reason '%s' lacks '%s'", (unsigned)i, why, cases[i].why);
    }
}

static void test_limits(void **state)
{
    (void)state;
    static char buf[CG_TAKEOVER_MSG_MAX + 64];
    const char *list[CG_INHERIT_MAX + 1];
    static char nm[CG_INHERIT_MAX + 1][CG_CONFIG_MAX_NAME + 1];
    for (size_t i = 0; i <= CG_INHERIT_MAX; i++) {
        snprintf(nm[i], sizeof nm[i], "l-%030u", (unsigned)i); /* 32 characters */
        list[i] = nm[i];
    }
    /* The most sockets, with the longest names, fit. */
    size_t len = cg__takeover_format(list, CG_INHERIT_MAX, buf);
    assert_true(len > 0 && len <= CG_TAKEOVER_MSG_MAX);
    assert_int_equal(cg__takeover_parse(buf, len, CG_INHERIT_MAX, &names, why, sizeof why), 1);
    assert_int_equal(cg__takeover_format(list, CG_INHERIT_MAX + 1, buf), 0);
    /* A name the parser would refuse is not written. */
    const char *bad[] = {"no\nnewline"};
    assert_int_equal(cg__takeover_format(bad, 1, buf), 0);
    /* Past the bound, no waiting for more. */
    memset(buf, 'a', sizeof buf);
    memcpy(buf, "condgate-sockets 1\n", 19);
    assert_int_equal(cg__takeover_parse(buf, sizeof buf, 1, &names, why, sizeof why), CG_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
