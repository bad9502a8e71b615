/* test_cidr.c — CIDR text parsing and formatting, socket address keys.
 *
 * Error messages of cg_cidr_parse and cg_ruleset_add_text. They are stable:
 * configuration golden tests compare them byte for byte, so a change here is
 * a change of the user-visible interface. TEXT is the offending input, quoted
 * with at most 64 bytes (then "..."), tab/newline/CR as \t \n \r, backslash
 * as \\, other bytes outside printable ASCII as \xNN.
 *
 *   empty address                                     (no text at all)
 *   whitespace in address 'TEXT'                      (TEXT = whole input)
 *   NUL byte in address 'TEXT'                        (TEXT = whole input)
 *   missing address in 'TEXT'                         ("/8", "/")
 *   invalid address 'ADDR'                            (ADDR = text before '/')
 *   leading zero in address 'ADDR'                    ("010.1.2.3")
 *   incomplete IPv4 address 'ADDR'                    ("10", "10.1", "1.2.3")
 *   zone id not allowed in 'ADDR'                     ("fe80::1%eth0")
 *   missing prefix length in 'TEXT'                   ("1.2.3.4/")
 *   invalid prefix length '/LEN'                      ("/08", "/-1", "/+8", "/a")
 *   prefix length /LEN out of range for IPv4 (0-32)
 *   prefix length /LEN out of range for IPv6 (0-128)
 *   host bits set past /LEN; did you mean MASKED?     (MASKED as cg_cidr_format)
 *
 * cg_ruleset_add_text adds, for failures after parsing (see test_rules.c):
 *   label too long (max 128 bytes)                    CG_ERANGE
 *   source path too long (max 4096 bytes)             CG_ERANGE
 *   too many entries in rule set 'NAME' (max 16777216) CG_ERANGE
 *   rule set 'NAME' is frozen                         CG_EINVAL
 *   out of memory                                     CG_ENOMEM
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h" /* the platform's socket headers (src/unix, src/win) */

#include "cidr.h"
#include "condgate/rules.h"

/* One row: the input, and either its canonical form or its exact error. */
struct parse_case {
    const char *in;
    const char *canon; /* NULL when the input is refused */
    const char *error; /* NULL when the input is accepted */
};

static const struct parse_case cases[] = {
    /* IPv4, accepted */
    {"10.0.0.0/8", "10.0.0.0/8", NULL},
    {"192.0.2.1", "192.0.2.1/32", NULL},
    {"192.0.2.0/24", "192.0.2.0/24", NULL},
    {"0.0.0.0/0", "0.0.0.0/0", NULL},
    {"0.0.0.0", "0.0.0.0/32", NULL},
    {"255.255.255.255", "255.255.255.255/32", NULL},
    {"255.255.255.255/32", "255.255.255.255/32", NULL},
    {"128.0.0.0/1", "128.0.0.0/1", NULL},
    {"10.66.1.7/32", "10.66.1.7/32", NULL},
    {"100.64.0.0/10", "100.64.0.0/10", NULL},
    /* IPv6, accepted */
    {"2001:db8::/32", "2001:db8::/32", NULL},
    {"2001:DB8::/32", "2001:db8::/32", NULL},
    {"2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1/128", NULL},
    {"::1", "::1/128", NULL},
    {"::", "::/128", NULL},
    {"::/0", "::/0", NULL},
    {"fe80::/10", "fe80::/10", NULL},
    {"FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
     NULL},
    {"2002:c000:0204::/48", "2002:c000:204::/48", NULL},
    {"::fffe:0:0/95", "::fffe:0:0/95", NULL},
    /* IPv4-mapped prefixes become IPv4; compatible ones stay IPv6 */
    {"::ffff:1.2.3.4", "1.2.3.4/32", NULL},
    {"::ffff:10.0.0.0/104", "10.0.0.0/8", NULL},
    {"::FFFF:0a00:0000/104", "10.0.0.0/8", NULL},
    {"::ffff:0.0.0.0/96", "0.0.0.0/0", NULL},
    {"::1.2.3.4", "::1.2.3.4/128", NULL},
    /* empty and whitespace */
    {"", NULL, "empty address"},
    {" 10.0.0.0", NULL, "whitespace in address ' 10.0.0.0'"},
    {"10.0.0.0 ", NULL, "whitespace in address '10.0.0.0 '"},
    {"10.0.0.0/ 8", NULL, "whitespace in address '10.0.0.0/ 8'"},
    {"10.0.0.0\t/8", NULL, "whitespace in address '10.0.0.0\\t/8'"},
    {"2001:db8:: /32", NULL, "whitespace in address '2001:db8:: /32'"},
    /* IPv4 address forms */
    {"010.1.2.3", NULL, "leading zero in address '010.1.2.3'"},
    {"10.01.2.3/32", NULL, "leading zero in address '10.01.2.3'"},
    {"1.2.3.00", NULL, "leading zero in address '1.2.3.00'"},
    {"10/8", NULL, "incomplete IPv4 address '10'"},
    {"10.1/16", NULL, "incomplete IPv4 address '10.1'"},
    {"1.2.3", NULL, "incomplete IPv4 address '1.2.3'"},
    {"1.2.3.4.5", NULL, "invalid address '1.2.3.4.5'"},
    {"256.0.0.0", NULL, "invalid address '256.0.0.0'"},
    {"10.0.0.256", NULL, "invalid address '10.0.0.256'"},
    {"1234.1.1.1", NULL, "invalid address '1234.1.1.1'"},
    {"1.2.3.4.", NULL, "invalid address '1.2.3.4.'"},
    {".1.2.3.4", NULL, "invalid address '.1.2.3.4'"},
    {"1..2.3", NULL, "invalid address '1..2.3'"},
    {"-1.2.3.4", NULL, "invalid address '-1.2.3.4'"},
    {"0x0a.0.0.0", NULL, "invalid address '0x0a.0.0.0'"},
    {"all", NULL, "invalid address 'all'"},
    {"localhost", NULL, "invalid address 'localhost'"},
    {"10.0.0.\x01", NULL, "invalid address '10.0.0.\\x01'"},
    {"1.2.3.4:80", NULL, "invalid address '1.2.3.4:80'"},
    /* IPv6 address forms */
    {":::", NULL, "invalid address ':::'"},
    {"1:2:3:4:5:6:7:8:9", NULL, "invalid address '1:2:3:4:5:6:7:8:9'"},
    {"2001:db8::g", NULL, "invalid address '2001:db8::g'"},
    {"[::1]", NULL, "invalid address '[::1]'"},
    {"0000:0000:0000:0000:0000:0000:0000:0000:0000/8", NULL,
     "invalid address '0000:0000:0000:0000:0000:0000:0000:0000:0000'"},
    {"fe80::1%eth0", NULL, "zone id not allowed in 'fe80::1%eth0'"},
    {"fe80::1%eth0/64", NULL, "zone id not allowed in 'fe80::1%eth0'"},
    /* prefix lengths */
    {"/", NULL, "missing address in '/'"},
    {"/8", NULL, "missing address in '/8'"},
    {"1.2.3.4/", NULL, "missing prefix length in '1.2.3.4/'"},
    {"1.2.3.4/-1", NULL, "invalid prefix length '/-1'"},
    {"1.2.3.4/+8", NULL, "invalid prefix length '/+8'"},
    {"10.0.0.0/08", NULL, "invalid prefix length '/08'"},
    {"0.0.0.0/00", NULL, "invalid prefix length '/00'"},
    {"10.0.0.0/8/8", NULL, "invalid prefix length '/8/8'"},
    {"10.0.0.0/a", NULL, "invalid prefix length '/a'"},
    {"1.2.3.4/33", NULL, "prefix length /33 out of range for IPv4 (0-32)"},
    {"1.2.3.4/99999999999", NULL, "prefix length /99999999999 out of range for IPv4 (0-32)"},
    {"::/129", NULL, "prefix length /129 out of range for IPv6 (0-128)"},
    {"::ffff:1.2.3.4/129", NULL, "prefix length /129 out of range for IPv6 (0-128)"},
    /* host bits */
    {"10.1.2.3/8", NULL, "host bits set past /8; did you mean 10.0.0.0/8?"},
    {"10.0.0.1/0", NULL, "host bits set past /0; did you mean 0.0.0.0/0?"},
    {"192.0.2.255/31", NULL, "host bits set past /31; did you mean 192.0.2.254/31?"},
    {"2001:db8::1/32", NULL, "host bits set past /32; did you mean 2001:db8::/32?"},
    {"::1/127", NULL, "host bits set past /127; did you mean ::/127?"},
    {"::ffff:10.1.2.3/104", NULL, "host bits set past /104; did you mean ::ffff:10.0.0.0/104?"},
    /* quoting is bounded */
    {"1111111111111111111111111111111111111111111111111111111111111111111111", NULL,
     "invalid address '1111111111111111111111111111111111111111111111111111111111111111...'"},
};

#define NCASES (sizeof cases / sizeof cases[0])

static void test_parse_case(void **state)
{
    const struct parse_case *pc = *state;
    char err[256] = "untouched";
    char buf[CG_CIDR_STRLEN];
    cg_cidr c;
    int rc;

    memset(&c, 0xa5, sizeof c);
    rc = cg_cidr_parse(pc->in, strlen(pc->in), &c, err, sizeof err);
    if (pc->canon) {
        assert_int_equal(rc, 0);
        assert_string_equal(cg_cidr_format(&c, buf, sizeof buf), pc->canon);
    } else {
        assert_int_equal(rc, CG_EINVAL);
        assert_string_equal(err, pc->error);
    }
}

/* Every canonical form parses back to the very same prefix, whose format is
 * itself (a fixed point). */
static void test_canonical_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        cg_cidr a, b;
        char s1[CG_CIDR_STRLEN], s2[CG_CIDR_STRLEN];

        if (!cases[i].canon)
            continue;
        assert_int_equal(cg_cidr_parse(cases[i].in, strlen(cases[i].in), &a, NULL, 0), 0);
        cg_cidr_format(&a, s1, sizeof s1);
        assert_int_equal(cg_cidr_parse(s1, strlen(s1), &b, NULL, 0), 0);
        assert_memory_equal(&a, &b, sizeof a);
        assert_string_equal(cg_cidr_format(&b, s2, sizeof s2), s1);
    }
}

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Random prefixes of every length survive format -> parse unchanged. */
static void test_random_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < 20000; i++) {
        cg_cidr c, back;
        char s[CG_CIDR_STRLEN];
        uint64_t h = rnd(), l = rnd();

        memset(&c, 0, sizeof c);
        if (i & 1) {
            c.family = 4;
            c.len = (uint8_t)(rnd() % 33);
            memcpy(c.addr, &h, 4);
        } else {
            c.family = 6;
            c.len = (uint8_t)(rnd() % 129);
            memcpy(c.addr, &h, 8);
            memcpy(c.addr + 8, &l, 8);
            if (c.addr[10] == 0xff && c.addr[11] == 0xff)
                c.addr[0] |= 0x20; /* keep clear of the mapped range */
        }
        for (unsigned b = c.len; b < 128; b++)
            c.addr[b / 8] &= (uint8_t) ~(0x80u >> (b % 8));
        cg_cidr_format(&c, s, sizeof s);
        assert_int_equal(cg_cidr_parse(s, strlen(s), &back, NULL, 0), 0);
        assert_memory_equal(&c, &back, sizeof c);
    }
}

/* Only `len` bytes are read; a NUL is not needed and text past len is not
 * part of the address. */
static void test_parse_exact_length(void **state)
{
    char buf[CG_CIDR_STRLEN];
    char err[128];
    cg_cidr c;
    const char text[] = {'1', '0', '.', '0', '.', '0', '.', '0', '/', '8', 'x', 'y'};

    (void)state;
    assert_int_equal(cg_cidr_parse(text, 10, &c, err, sizeof err), 0);
    assert_string_equal(cg_cidr_format(&c, buf, sizeof buf), "10.0.0.0/8");
    assert_int_equal(cg_cidr_parse(text, 7, &c, err, sizeof err), CG_EINVAL);
    assert_string_equal(err, "invalid address '10.0.0.'");
    assert_int_equal(cg_cidr_parse("2001:db8::1junk", 11, &c, err, sizeof err), 0);
    assert_string_equal(cg_cidr_format(&c, buf, sizeof buf), "2001:db8::1/128");
    /* An embedded NUL is not the end of the text. */
    assert_int_equal(cg_cidr_parse("10.0.0.0\0/8", 11, &c, err, sizeof err), CG_EINVAL);
    assert_string_equal(err, "NUL byte in address '10.0.0.0\\x00/8'");
    /* inet_pton stops at a NUL: the rest must not be ignored (found by fuzz_cidr). */
    assert_int_equal(cg_cidr_parse("::1\0junk", 8, &c, err, sizeof err), CG_EINVAL);
    assert_string_equal(err, "NUL byte in address '::1\\x00junk'");
}

/* err may be absent or small; the message is truncated, never overrun. */
static void test_parse_error_buffer(void **state)
{
    char small[8];
    cg_cidr c;

    (void)state;
    assert_int_equal(cg_cidr_parse("10.1.2.3/8", 10, &c, NULL, 0), CG_EINVAL);
    assert_int_equal(cg_cidr_parse("10.1.2.3/8", 10, &c, small, 0), CG_EINVAL);
    memset(small, 'z', sizeof small);
    assert_int_equal(cg_cidr_parse("10.1.2.3/8", 10, &c, small, sizeof small), CG_EINVAL);
    assert_string_equal(small, "host bi");
    assert_int_equal(cg_cidr_parse(NULL, 0, &c, small, sizeof small), CG_EINVAL);
    assert_string_equal(small, "empty a");
    /* out may be NULL to validate only */
    assert_int_equal(cg_cidr_parse("10.0.0.0/8", 10, NULL, NULL, 0), 0);
}

static void test_format_edges(void **state)
{
    char buf[CG_CIDR_STRLEN], tiny[6];
    cg_cidr c;

    (void)state;
    memset(&c, 0, sizeof c);
    c.family = 6;
    c.len = 128;
    memset(c.addr, 0xff, 16);
    assert_string_equal(cg_cidr_format(&c, buf, sizeof buf),
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
    memset(&c, 0, sizeof c);
    c.family = 4;
    c.len = 32;
    memcpy(c.addr, "\xc0\x00\x02\x7b", 4);
    assert_string_equal(cg_cidr_format(&c, buf, sizeof buf), "192.0.2.123/32");
    /* truncation keeps a terminated prefix of the text */
    assert_ptr_equal(cg_cidr_format(&c, tiny, sizeof tiny), tiny);
    assert_string_equal(tiny, "192.0");
    /* unknown family: empty text */
    c.family = 5;
    assert_string_equal(cg_cidr_format(&c, buf, sizeof buf), "");
    assert_string_equal(cg_cidr_format(NULL, buf, sizeof buf), "");
}

static cg_cidr P(const char *s)
{
    cg_cidr c;
    assert_int_equal(cg_cidr_parse(s, strlen(s), &c, NULL, 0), 0);
    return c;
}

static void test_contains(void **state)
{
    cg_cidr net = P("10.66.0.0/16"), all4 = P("0.0.0.0/0"), all6 = P("::/0");
    cg_cidr in = P("10.66.255.255"), out = P("10.67.0.0"), v6 = P("2001:db8::1");
    cg_cidr odd = P("10.66.0.0/15"), odd_in = P("10.67.1.1"), odd_out = P("10.65.255.255");
    cg_cidr net6 = P("2001:db8::/33"), in6 = P("2001:db8:7fff::1"), out6 = P("2001:db8:8000::");

    (void)state;
    assert_true(cg_cidr_contains(&net, &in));
    assert_false(cg_cidr_contains(&net, &out));
    assert_true(cg_cidr_contains(&all4, &out));
    assert_false(cg_cidr_contains(&all4, &v6)); /* families must match */
    assert_true(cg_cidr_contains(&all6, &v6));
    assert_false(cg_cidr_contains(&odd, &odd_out));
    assert_true(cg_cidr_contains(&odd, &odd_in));
    assert_true(cg_cidr_contains(&net6, &in6));
    assert_false(cg_cidr_contains(&net6, &out6));
    assert_true(cg_cidr_contains(&in, &in));
    assert_false(cg_cidr_contains(NULL, &in));
}

static void key_of_v6(const char *text, cg_cidr *out, int expect_rc)
{
    struct sockaddr_in6 sin6;

    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(443);
    assert_int_equal(inet_pton(AF_INET6, text, &sin6.sin6_addr), 1);
    assert_int_equal(cg_addr_from_sockaddr((struct sockaddr *)&sin6, out), expect_rc);
}

static void test_addr_from_sockaddr(void **state)
{
    struct sockaddr_in sin;
    struct sockaddr_storage sun; /* an AF_UNIX caller */
    struct sockaddr_storage ss;
    char buf[CG_CIDR_STRLEN];
    cg_cidr c;

    (void)state;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(8080);
    assert_int_equal(inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr), 1);
    assert_int_equal(cg_addr_from_sockaddr((struct sockaddr *)&sin, &c), 0);
    assert_int_equal(c.family, 4);
    assert_int_equal(c.len, 32);
    assert_string_equal(cg_cidr_format(&c, buf, sizeof buf), "192.0.2.7/32");
    for (int i = 4; i < 16; i++)
        assert_int_equal(c.addr[i], 0);

    key_of_v6("2001:db8::1", &c, 0);
    assert_int_equal(c.family, 6);
    assert_string_equal(cg_cidr_format(&c, buf, sizeof buf), "2001:db8::1/128");

    /* mapped: judged as the IPv4 address */
    key_of_v6("::ffff:198.51.100.9", &c, 0);
    assert_int_equal(c.family, 4);
    assert_int_equal(c.len, 32);
    assert_string_equal(cg_cidr_format(&c, buf, sizeof buf), "198.51.100.9/32");

    /* compatible (::a.b.c.d) and 6to4 (2002::/16) stay IPv6 */
    key_of_v6("::198.51.100.9", &c, 0);
    assert_int_equal(c.family, 6);
    assert_string_equal(cg_cidr_format(&c, buf, sizeof buf), "::198.51.100.9/128");
    key_of_v6("2002:c633:6409::1", &c, 0);
    assert_int_equal(c.family, 6);
    assert_string_equal(cg_cidr_format(&c, buf, sizeof buf), "2002:c633:6409::1/128");
    /* almost mapped */
    key_of_v6("::fffe:198.51.100.9", &c, 0);
    assert_int_equal(c.family, 6);
    key_of_v6("1::ffff:198.51.100.9", &c, 0);
    assert_int_equal(c.family, 6);
    key_of_v6("::", &c, 0);
    assert_int_equal(c.family, 6);

    /* other families */
    memset(&sun, 0, sizeof sun);
    sun.ss_family = AF_UNIX;
    assert_int_equal(cg_addr_from_sockaddr((struct sockaddr *)&sun, &c), CG_EINVAL);
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNSPEC;
    assert_int_equal(cg_addr_from_sockaddr((struct sockaddr *)&ss, &c), CG_EINVAL);
    assert_int_equal(cg_addr_from_sockaddr(NULL, &c), CG_EINVAL);
}

/* "all" is two prefixes: refused by the single-prefix parser, accepted by
 * cg_ruleset_add_text as 0.0.0.0/0 and ::/0. */
static void test_all(void **state)
{
    cg_ruleset *rs;
    cg_ruleset_stats st;
    cg_rule_info info;
    char err[128], buf[CG_CIDR_STRLEN];
    cg_cidr c;

    (void)state;
    assert_int_equal(cg_cidr_parse("all", 3, &c, err, sizeof err), CG_EINVAL);
    assert_string_equal(err, "invalid address 'all'");
    assert_int_equal(cg_ruleset_new("t", CG_DENY, &rs), 0);
    assert_int_equal(cg_ruleset_add_text(rs, "all", 3, CG_ALLOW, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(cg_ruleset_add_text(rs, "ALL", 3, CG_ALLOW, NULL, NULL, err, sizeof err),
                     CG_EINVAL);
    assert_string_equal(err, "invalid address 'ALL'");
    assert_int_equal(cg_ruleset_add_text(rs, "all ", 4, CG_ALLOW, NULL, NULL, err, sizeof err),
                     CG_EINVAL);
    assert_string_equal(err, "whitespace in address 'all '");
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    cg_ruleset_get_stats(rs, &st);
    assert_int_equal(st.v4, 1);
    assert_int_equal(st.v6, 1);
    assert_int_equal(st.added, 2);
    assert_int_equal(cg_ruleset_rule(rs, 0, &info), 0);
    assert_string_equal(cg_cidr_format(&info.cidr, buf, sizeof buf), "0.0.0.0/0");
    assert_int_equal(cg_ruleset_rule(rs, 1, &info), 0);
    assert_string_equal(cg_cidr_format(&info.cidr, buf, sizeof buf), "::/0");
    cg_ruleset_free(rs);
}

/* cg_ruleset_add_text passes parse errors through unchanged. */
static void test_add_text_errors(void **state)
{
    cg_ruleset *rs;
    char err[128];

    (void)state;
    assert_int_equal(cg_ruleset_new("t", CG_DENY, &rs), 0);
    for (size_t i = 0; i < NCASES; i++) {
        int rc;
        if (strcmp(cases[i].in, "all") == 0)
            continue; /* the one difference, see test_all */
        rc = cg_ruleset_add_text(rs, cases[i].in, strlen(cases[i].in), CG_DENY, NULL, NULL, err,
                                 sizeof err);
        if (cases[i].canon) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, CG_EINVAL);
            assert_string_equal(err, cases[i].error);
        }
    }
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    cg_ruleset_free(rs);
}

/* ---- ranges (cg__range_prefixes) ---------------------------------------- */

typedef struct collected {
    cg_cidr p[300];
    size_t n;
} collected;

static int collect(void *arg, const cg_cidr *prefix)
{
    collected *c = arg;
    assert_true(c->n < 300);
    c->p[c->n++] = *prefix;
    return 0;
}

static void host(const char *text, cg_cidr *out)
{
    char err[128];
    assert_int_equal(cg_cidr_parse(text, strlen(text), out, err, sizeof err), 0);
}

/* The prefixes of from..to as text, one space between. */
static void range_text(const char *from, const char *to, char *buf, size_t len)
{
    cg_cidr a, b;
    collected c = {.n = 0};
    host(from, &a);
    host(to, &b);
    assert_int_equal(cg__range_prefixes(&a, &b, collect, &c, NULL, 0), 0);
    buf[0] = '\0';
    for (size_t i = 0; i < c.n; i++) {
        char t[CG_CIDR_STRLEN];
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", i ? " " : "",
                 cg_cidr_format(&c.p[i], t, sizeof t));
    }
}

static void test_range_known(void **state)
{
    (void)state;
    static const char *const known[][3] = {
        {"10.0.0.0", "10.0.0.255", "10.0.0.0/24"},
        {"10.0.0.1", "10.0.0.6", "10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32"},
        {"10.0.0.7", "10.0.0.7", "10.0.0.7/32"},
        {"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
        {"255.255.255.254", "255.255.255.255", "255.255.255.254/31"},
        {"1.0.0.0", "1.0.0.255", "1.0.0.0/24"},
        {"0.0.0.1", "255.255.255.254",
         "0.0.0.1/32 0.0.0.2/31 0.0.0.4/30 0.0.0.8/29 0.0.0.16/28 0.0.0.32/27 0.0.0.64/26 "
         "0.0.0.128/25 0.0.1.0/24 0.0.2.0/23 0.0.4.0/22 0.0.8.0/21 0.0.16.0/20 0.0.32.0/19 "
         "0.0.64.0/18 0.0.128.0/17 0.1.0.0/16 0.2.0.0/15 0.4.0.0/14 0.8.0.0/13 0.16.0.0/12 "
         "0.32.0.0/11 0.64.0.0/10 0.128.0.0/9 1.0.0.0/8 2.0.0.0/7 4.0.0.0/6 8.0.0.0/5 "
         "16.0.0.0/4 32.0.0.0/3 64.0.0.0/2 128.0.0.0/2 192.0.0.0/3 224.0.0.0/4 240.0.0.0/5 "
         "248.0.0.0/6 252.0.0.0/7 254.0.0.0/8 255.0.0.0/9 255.128.0.0/10 255.192.0.0/11 "
         "255.224.0.0/12 255.240.0.0/13 255.248.0.0/14 255.252.0.0/15 255.254.0.0/16 "
         "255.255.0.0/17 255.255.128.0/18 255.255.192.0/19 255.255.224.0/20 255.255.240.0/21 "
         "255.255.248.0/22 255.255.252.0/23 255.255.254.0/24 255.255.255.0/25 "
         "255.255.255.128/26 255.255.255.192/27 255.255.255.224/28 255.255.255.240/29 "
         "255.255.255.248/30 255.255.255.252/31 255.255.255.254/32"},
        {"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"},
        {"2001:db8::", "2001:db8:0:0:ffff:ffff:ffff:ffff", "2001:db8::/64"},
        {"2001:db8::ffff:ffff:ffff:ffff",
         "2001:db8:0:1::", "2001:db8::ffff:ffff:ffff:ffff/128 2001:db8:0:1::/128"},
        {"2001:200::", "2001:200:ffff:ffff:ffff:ffff:ffff:ffff", "2001:200::/32"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"},
    };
    char buf[4096];
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        range_text(known[i][0], known[i][1], buf, sizeof buf);
        if (strcmp(buf, known[i][2]) != 0)
            fail_msg("%s-%s: got '%s', want '%s'", known[i][0], known[i][1], buf, known[i][2]);
    }
}

static void test_range_refused(void **state)
{
    (void)state;
    cg_cidr a, b;
    collected c = {.n = 0};
    host("10.0.0.9", &a);
    host("10.0.0.1", &b);
    assert_int_equal(cg__range_prefixes(&a, &b, collect, &c, NULL, 0), CG_EINVAL);
    char why[128];
    assert_int_equal(cg__range_prefixes(&a, &b, collect, &c, why, sizeof why), CG_EINVAL);
    assert_string_equal(why, "a range must not end before it starts");
    host("::1", &b);
    assert_int_equal(cg__range_prefixes(&a, &b, collect, &c, NULL, 0), CG_EINVAL);
    assert_int_equal(cg__range_prefixes(&a, &b, collect, &c, why, sizeof why), CG_EINVAL);
    assert_string_equal(why, "a range's two ends must be of one family (IPv4 or IPv6)");
    assert_int_equal(c.n, 0);
}

/* A 128-bit value and the arithmetic the property check needs. */
typedef struct v128 {
    uint64_t hi, lo;
} v128;

static v128 v_of(const cg_cidr *c)
{
    v128 v = {cg__load_be64(c->addr), cg__load_be64(c->addr + 8)};
    return v;
}

static int v_cmp(v128 a, v128 b)
{
    if (a.hi != b.hi)
        return a.hi < b.hi ? -1 : 1;
    return a.lo < b.lo ? -1 : a.lo > b.lo;
}

/* The first and last address of prefix p, top-aligned as cg_cidr stores it. */
static void v_bounds(const cg_cidr *p, v128 *first, v128 *last)
{
    cg_cidr hi = *p;
    unsigned width = p->family == 4 ? 32 : 128;
    for (unsigned bit = p->len; bit < width; bit++)
        hi.addr[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
    *first = v_of(p);
    *last = v_of(&hi);
}

/* The next address after v in a family of width bits (no wrap asked). */
static v128 v_next(v128 v, unsigned width)
{
    if (width == 32) {
        v.hi += 1ull << 32;
        return v;
    }
    v.lo++;
    v.hi += v.lo == 0;
    return v;
}

/* Random ranges of both families: the prefixes are aligned, follow each
 * other without gap or overlap from `from` to `to`, and none could be
 * replaced by its parent (which is what makes the set the smallest). */
static void test_range_random(void **state)
{
    (void)state;
    for (int i = 0; i < 20000; i++) {
        int family = i & 1 ? 4 : 6;
        unsigned width = family == 4 ? 32 : 128;
        cg_cidr a = {.family = (uint8_t)family, .len = (uint8_t)width};
        cg_cidr b = a;
        uint64_t x = rnd(), y = rnd(), span = rnd() >> (rnd() % 64);
        if (family == 4) {
            uint32_t lo = (uint32_t)x, hi = (uint32_t)(lo + (uint32_t)span);
            if (hi < lo)
                hi = UINT32_MAX;
            cg__store_be32(a.addr, lo);
            cg__store_be32(b.addr, hi);
        } else {
            uint64_t lo = y, hi = y + span;
            if (hi < lo)
                hi = UINT64_MAX;
            cg__store_be64(a.addr, x);
            cg__store_be64(a.addr + 8, lo);
            cg__store_be64(b.addr, x + (i % 3 == 0 ? (rnd() & 0xff) : 0));
            cg__store_be64(b.addr + 8, i % 3 == 0 ? rnd() : hi);
            if (v_cmp(v_of(&b), v_of(&a)) < 0)
                b = a;
        }
        collected c = {.n = 0};
        assert_int_equal(cg__range_prefixes(&a, &b, collect, &c, NULL, 0), 0);
        assert_true(c.n >= 1 && c.n <= 2 * width);
        v128 want = v_of(&a), first, last;
        for (size_t k = 0; k < c.n; k++) {
            cg_cidr m = c.p[k];
            assert_int_equal(m.family, family);
            assert_false(cg__cidr_mask(&m)); /* aligned: no host bits set */
            v_bounds(&c.p[k], &first, &last);
            assert_int_equal(v_cmp(first, want), 0);
            if (c.p[k].len > 0) {
                cg_cidr parent = c.p[k];
                parent.len--;
                cg__cidr_mask(&parent);
                v128 pf, pl;
                v_bounds(&parent, &pf, &pl);
                assert_true(v_cmp(pf, v_of(&a)) < 0 || v_cmp(pl, v_of(&b)) > 0);
            }
            want = v_next(last, width);
        }
        assert_int_equal(v_cmp(last, v_of(&b)), 0);
    }
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_canonical_round_trip), cmocka_unit_test(test_random_round_trip),
        cmocka_unit_test(test_parse_exact_length),   cmocka_unit_test(test_parse_error_buffer),
        cmocka_unit_test(test_format_edges),         cmocka_unit_test(test_contains),
        cmocka_unit_test(test_addr_from_sockaddr),   cmocka_unit_test(test_all),
        cmocka_unit_test(test_add_text_errors),      cmocka_unit_test(test_range_known),
        cmocka_unit_test(test_range_refused),        cmocka_unit_test(test_range_random),
    };
    static char names[NCASES][96];
    struct CMUnitTest tests[NCASES + sizeof fixed / sizeof fixed[0]];
    size_t n = 0;

    /* One named test per table row, so a failure names its input. */
    for (size_t i = 0; i < NCASES; i++) {
        char q[80];
        size_t o = 0;
        for (const char *p = cases[i].in; *p && o < sizeof q - 5; p++)
            o += (size_t)snprintf(q + o, sizeof q - o, (unsigned char)*p < 0x20 ? "\\x%02x" : "%c",
                                  (unsigned char)*p);
        q[o] = '\0';
        snprintf(names[i], sizeof names[i], "parse '%s'", q);
        tests[n] = (struct CMUnitTest){names[i], test_parse_case, NULL, NULL,
                                       (void *)(uintptr_t)&cases[i]};
        n++;
    }
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        tests[n++] = fixed[i];
    return _cmocka_run_group_tests("cidr", tests, n, NULL, NULL);
}
