/* test_rules.c — rule set semantics (SPEC §4), bookkeeping, limits, a
 * randomized cross-check of the range tables against a linear reference, and
 * concurrent judging (run under TSan through the "concurrency" label).
 *
 * The cross-check seed is fixed; set CG_TEST_SEED=N to try another. A failure
 * prints the seed to reproduce it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "net.h" /* the platform's socket headers (src/unix, src/win) */

#include "condgate/rules.h"

/* ------------------------------------------------------------------------
 * Helpers
 */

static cg_cidr P(const char *s)
{
    cg_cidr c;
    char err[128];
    if (cg_cidr_parse(s, strlen(s), &c, err, sizeof err) != 0)
        fail_msg("cannot parse '%s': %s", s, err);
    return c;
}

static cg_ruleset *new_set(cg_action def)
{
    cg_ruleset *rs = NULL;
    assert_int_equal(cg_ruleset_new("test", def, &rs), 0);
    assert_non_null(rs);
    return rs;
}

static void add(cg_ruleset *rs, const char *text, cg_action a, const char *file, uint32_t line,
                const char *label)
{
    cg_source src = {file, line};
    char err[128];
    if (cg_ruleset_add_text(rs, text, strlen(text), a, &src, label, err, sizeof err) != 0)
        fail_msg("cannot add '%s': %s", text, err);
}

/* Verdict for an address given as text; *rule_text gets the deciding
 * entry's prefix ("-" for the default). */
static cg_action check(const cg_ruleset *rs, const char *addr, char *rule_text)
{
    cg_cidr a = P(addr);
    cg_rule_id id = 12345;
    cg_action v = cg_ruleset_lookup(rs, &a, &id);

    if (id == CG_RULE_NONE) {
        strcpy(rule_text, "-");
    } else {
        cg_rule_info info;
        assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
        assert_int_equal(info.action, v);
        cg_cidr_format(&info.cidr, rule_text, CG_CIDR_STRLEN);
    }
    return v;
}

#define EXPECT(rs, addr, verdict, rule)                                                            \
    do {                                                                                           \
        char r_[CG_CIDR_STRLEN];                                                                   \
        cg_action v_ = check((rs), (addr), r_);                                                    \
        if (v_ != (verdict) || strcmp(r_, (rule)) != 0)                                            \
            fail_msg("%s: got %s by %s, want %s by %s", (addr), cg_action_name(v_), r_,            \
                     cg_action_name(verdict), (rule));                                             \
    } while (0)

static void judge_v4(const cg_ruleset *rs, const char *addr, cg_action want, cg_rule_id *id)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, addr, &sin.sin_addr), 1);
    assert_int_equal(cg_ruleset_judge(rs, (struct sockaddr *)&sin, id), want);
}

static void judge_v6(const cg_ruleset *rs, const char *addr, cg_action want, cg_rule_id *id)
{
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, addr, &sin6.sin6_addr), 1);
    assert_int_equal(cg_ruleset_judge(rs, (struct sockaddr *)&sin6, id), want);
}

static uint64_t hits_of(const cg_ruleset *rs, cg_rule_id id)
{
    cg_rule_info info;
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    return info.hits;
}

/* ------------------------------------------------------------------------
 * SPEC §4 semantics
 */

static void test_spec_example(void **state)
{
    cg_ruleset *rs = new_set(CG_DENY);

    (void)state;
    add(rs, "10.0.0.0/8", CG_ALLOW, "rules.ini", 1, NULL);
    add(rs, "10.66.0.0/16", CG_DENY, "rules.ini", 2, NULL);
    add(rs, "10.66.1.7", CG_ALLOW, "rules.ini", 3, NULL);
    assert_int_equal(cg_ruleset_freeze(rs), 0);

    EXPECT(rs, "10.66.1.7", CG_ALLOW, "10.66.1.7/32");
    EXPECT(rs, "10.66.2.2", CG_DENY, "10.66.0.0/16");
    EXPECT(rs, "10.1.1.1", CG_ALLOW, "10.0.0.0/8");
    EXPECT(rs, "11.0.0.1", CG_DENY, "-");
    EXPECT(rs, "192.0.2.1", CG_DENY, "-");
    /* every boundary of the three intervals and their neighbours */
    EXPECT(rs, "9.255.255.255", CG_DENY, "-");
    EXPECT(rs, "10.0.0.0", CG_ALLOW, "10.0.0.0/8");
    EXPECT(rs, "10.65.255.255", CG_ALLOW, "10.0.0.0/8");
    EXPECT(rs, "10.66.0.0", CG_DENY, "10.66.0.0/16");
    EXPECT(rs, "10.66.1.6", CG_DENY, "10.66.0.0/16");
    EXPECT(rs, "10.66.1.8", CG_DENY, "10.66.0.0/16");
    EXPECT(rs, "10.66.255.255", CG_DENY, "10.66.0.0/16");
    EXPECT(rs, "10.67.0.0", CG_ALLOW, "10.0.0.0/8");
    EXPECT(rs, "10.255.255.255", CG_ALLOW, "10.0.0.0/8");
    EXPECT(rs, "11.0.0.0", CG_DENY, "-");
    /* a mapped address given as text is the IPv4 address */
    EXPECT(rs, "::ffff:10.66.1.7", CG_ALLOW, "10.66.1.7/32");
    /* IPv6 callers only see IPv6 entries */
    EXPECT(rs, "::a42:107", CG_DENY, "-");
    cg_ruleset_free(rs);

    /* the same with default allow: only the deny entry rejects */
    rs = new_set(CG_ALLOW);
    add(rs, "10.66.1.7", CG_ALLOW, "rules.ini", 3, NULL);
    add(rs, "10.66.0.0/16", CG_DENY, "rules.ini", 2, NULL);
    add(rs, "10.0.0.0/8", CG_ALLOW, "rules.ini", 1, NULL);
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    EXPECT(rs, "10.66.1.7", CG_ALLOW, "10.66.1.7/32");
    EXPECT(rs, "10.66.2.2", CG_DENY, "10.66.0.0/16");
    EXPECT(rs, "10.1.1.1", CG_ALLOW, "10.0.0.0/8");
    EXPECT(rs, "11.0.0.1", CG_ALLOW, "-");
    cg_ruleset_free(rs);
}

static void test_tie_deny_wins(void **state)
{
    cg_ruleset *rs = new_set(CG_ALLOW);
    cg_ruleset_stats st;
    cg_conflict cf;
    cg_rule_info info;
    cg_rule_id id;
    char buf[CG_CIDR_STRLEN];

    (void)state;
    add(rs, "2001:db8::/32", CG_DENY, "v6.json", 4, "bad-v6");
    add(rs, "192.0.2.0/24", CG_ALLOW, "a.ini", 3, "partner");
    add(rs, "192.0.2.0/24", CG_DENY, "b.json", 7, "scanner");
    add(rs, "192.0.2.0/24", CG_DENY, "c.txt", 9, NULL);
    add(rs, "2001:db8::/32", CG_ALLOW, "v6.json", 5, NULL);
    add(rs, "198.51.100.0/24", CG_DENY, "d.txt", 1, NULL);
    add(rs, "198.51.100.0/24", CG_ALLOW, "d.txt", 2, NULL);
    add(rs, "10.0.0.0/8", CG_ALLOW, "e.txt", 1, NULL); /* no conflict */
    assert_int_equal(cg_ruleset_freeze(rs), 0);

    EXPECT(rs, "192.0.2.1", CG_DENY, "192.0.2.0/24");
    EXPECT(rs, "198.51.100.200", CG_DENY, "198.51.100.0/24");
    EXPECT(rs, "2001:db8:1::1", CG_DENY, "2001:db8::/32");
    EXPECT(rs, "10.9.9.9", CG_ALLOW, "10.0.0.0/8");

    /* the kept entry is the first deny, with its source and label */
    {
        cg_cidr a = P("192.0.2.1");
        assert_int_equal(cg_ruleset_lookup(rs, &a, &id), CG_DENY);
    }
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    assert_string_equal(info.file, "b.json");
    assert_int_equal(info.line, 7);
    assert_string_equal(info.label, "scanner");

    cg_ruleset_get_stats(rs, &st);
    assert_int_equal(st.conflicts, 3);
    assert_int_equal(st.duplicates, 1); /* the second deny of 192.0.2.0/24 */
    assert_int_equal(st.added, 8);
    assert_int_equal(st.v4, 3);
    assert_int_equal(st.v6, 1);

    /* conflicts in address order, IPv4 first, with both first sources */
    assert_int_equal(cg_ruleset_conflict(rs, 0, &cf), 0);
    assert_string_equal(cg_cidr_format(&cf.cidr, buf, sizeof buf), "192.0.2.0/24");
    assert_string_equal(cf.allow.file, "a.ini");
    assert_int_equal(cf.allow.line, 3);
    assert_string_equal(cf.deny.file, "b.json");
    assert_int_equal(cf.deny.line, 7);
    assert_int_equal(cg_ruleset_conflict(rs, 1, &cf), 0);
    assert_string_equal(cg_cidr_format(&cf.cidr, buf, sizeof buf), "198.51.100.0/24");
    assert_string_equal(cf.allow.file, "d.txt");
    assert_int_equal(cf.allow.line, 2);
    assert_int_equal(cf.deny.line, 1);
    assert_int_equal(cg_ruleset_conflict(rs, 2, &cf), 0);
    assert_string_equal(cg_cidr_format(&cf.cidr, buf, sizeof buf), "2001:db8::/32");
    assert_int_equal(cf.allow.line, 5);
    assert_int_equal(cf.deny.line, 4);
    assert_int_equal(cg_ruleset_conflict(rs, 3, &cf), CG_ENOENT);
    cg_ruleset_free(rs);
}

/* Only CG_RULESET_MAX_CONFLICTS are remembered; all are counted. */
static void test_conflicts_bounded(void **state)
{
    cg_ruleset *rs = new_set(CG_ALLOW);
    cg_ruleset_stats st;
    cg_conflict cf;
    char text[32], buf[CG_CIDR_STRLEN];

    (void)state;
    for (int i = 99; i >= 0; i--) {
        snprintf(text, sizeof text, "10.0.%d.0/24", i);
        add(rs, text, CG_ALLOW, "a", (uint32_t)i, NULL);
        add(rs, text, CG_DENY, "b", (uint32_t)i, NULL);
    }
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    cg_ruleset_get_stats(rs, &st);
    assert_int_equal(st.conflicts, 100);
    assert_int_equal(cg_ruleset_conflict(rs, 0, &cf), 0);
    assert_string_equal(cg_cidr_format(&cf.cidr, buf, sizeof buf), "10.0.0.0/24");
    assert_int_equal(cg_ruleset_conflict(rs, CG_RULESET_MAX_CONFLICTS - 1, &cf), 0);
    assert_string_equal(cg_cidr_format(&cf.cidr, buf, sizeof buf), "10.0.63.0/24");
    assert_int_equal(cg_ruleset_conflict(rs, CG_RULESET_MAX_CONFLICTS, &cf), CG_ENOENT);
    cg_ruleset_free(rs);
}

static void test_duplicates_merged(void **state)
{
    cg_ruleset *rs = new_set(CG_DENY);
    cg_ruleset_stats st;
    cg_rule_info info;
    cg_rule_id id;
    cg_cidr a = P("203.0.113.77");

    (void)state;
    add(rs, "203.0.113.0/24", CG_ALLOW, "first.txt", 10, "one");
    add(rs, "203.0.113.0/24", CG_ALLOW, "second.txt", 20, "two");
    add(rs, "::ffff:203.0.113.0/120", CG_ALLOW, "third.json", 30, NULL); /* same, mapped */
    add(rs, "2001:db8::/48", CG_ALLOW, "first.txt", 11, NULL);
    add(rs, "2001:0db8:0::/48", CG_ALLOW, "second.txt", 21, NULL);
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    cg_ruleset_get_stats(rs, &st);
    assert_int_equal(st.v4, 1);
    assert_int_equal(st.v6, 1);
    assert_int_equal(st.added, 5);
    assert_int_equal(st.duplicates, 3);
    assert_int_equal(st.conflicts, 0);
    assert_int_equal(cg_ruleset_lookup(rs, &a, &id), CG_ALLOW);
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    assert_string_equal(info.file, "first.txt");
    assert_int_equal(info.line, 10);
    assert_string_equal(info.label, "one");
    a = P("2001:db8:0:ffff::1");
    assert_int_equal(cg_ruleset_lookup(rs, &a, &id), CG_ALLOW);
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    assert_int_equal(info.line, 11);
    cg_ruleset_free(rs);
}

static void test_defaults_and_empty(void **state)
{
    cg_ruleset *rs;
    cg_ruleset_stats st;
    cg_rule_info info;
    cg_conflict cf;
    cg_rule_id ids[4];

    (void)state;
    for (int d = 0; d < 2; d++) {
        cg_action def = d ? CG_ALLOW : CG_DENY;
        rs = new_set(def);
        assert_int_equal(cg_ruleset_freeze(rs), 0);
        EXPECT(rs, "0.0.0.0", def, "-");
        EXPECT(rs, "255.255.255.255", def, "-");
        EXPECT(rs, "::", def, "-");
        EXPECT(rs, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", def, "-");
        judge_v4(rs, "192.0.2.1", def, NULL);
        cg_ruleset_get_stats(rs, &st);
        assert_int_equal(st.v4, 0);
        assert_int_equal(st.v6, 0);
        assert_int_equal(st.added, 0);
        assert_true(st.bytes > 0);
        assert_int_equal(cg_ruleset_top(rs, ids, 4), 0);
        assert_int_equal(cg_ruleset_rule(rs, 0, &info), CG_ENOENT);
        assert_int_equal(cg_ruleset_conflict(rs, 0, &cf), CG_ENOENT);
        assert_int_equal(cg_ruleset_default(rs), def);
        cg_ruleset_free(rs);
    }

    /* set_default works before freezing and is ignored after */
    rs = new_set(CG_DENY);
    cg_ruleset_set_default(rs, CG_ALLOW);
    assert_int_equal(cg_ruleset_default(rs), CG_ALLOW);
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    cg_ruleset_set_default(rs, CG_DENY);
    assert_int_equal(cg_ruleset_default(rs), CG_ALLOW);
    EXPECT(rs, "192.0.2.1", CG_ALLOW, "-");
    assert_string_equal(cg_ruleset_name(rs), "test");
    cg_ruleset_free(rs);
}

static void test_mapped_caller_judged_as_v4(void **state)
{
    cg_ruleset *rs = new_set(CG_DENY);
    cg_rule_id id, id2;
    cg_rule_info info;
    struct sockaddr_storage sun; /* an AF_UNIX caller */
    char buf[CG_CIDR_STRLEN];

    (void)state;
    add(rs, "192.0.2.0/24", CG_ALLOW, "office.txt", 1, NULL);
    add(rs, "::/0", CG_DENY, "office.txt", 2, NULL);
    assert_int_equal(cg_ruleset_freeze(rs), 0);

    judge_v6(rs, "::ffff:192.0.2.5", CG_ALLOW, &id);
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    assert_string_equal(cg_cidr_format(&info.cidr, buf, sizeof buf), "192.0.2.0/24");
    assert_int_equal(info.hits, 1);
    judge_v4(rs, "192.0.2.6", CG_ALLOW, &id2);
    assert_int_equal(id2, id);
    assert_int_equal(hits_of(rs, id), 2);

    /* compatible and 6to4 forms are IPv6 callers: ::/0 decides */
    judge_v6(rs, "::192.0.2.5", CG_DENY, &id);
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    assert_string_equal(cg_cidr_format(&info.cidr, buf, sizeof buf), "::/0");
    judge_v6(rs, "2002:c000:205::1", CG_DENY, &id2);
    assert_int_equal(id2, id);
    assert_int_equal(hits_of(rs, id), 2);
    /* a mapped caller outside the IPv4 entries gets the default, not ::/0 */
    judge_v6(rs, "::ffff:198.51.100.1", CG_DENY, &id);
    assert_int_equal(id, CG_RULE_NONE);

    /* another family: the default, nothing counted */
    memset(&sun, 0, sizeof sun);
    sun.ss_family = AF_UNIX;
    id = 0;
    assert_int_equal(cg_ruleset_judge(rs, (struct sockaddr *)&sun, &id), CG_DENY);
    assert_int_equal(id, CG_RULE_NONE);
    cg_ruleset_free(rs);
}

/* A mapped prefix written as IPv6 covers mapped callers as IPv4. */
static void test_mapped_prefix_entry(void **state)
{
    cg_ruleset *rs = new_set(CG_DENY);
    cg_ruleset_stats st;
    cg_cidr c;

    (void)state;
    add(rs, "::ffff:10.0.0.0/104", CG_ALLOW, "m.txt", 1, NULL);
    /* through the cg_cidr interface too, given unnormalised */
    memset(&c, 0, sizeof c);
    c.family = 6;
    c.len = 120;
    c.addr[10] = c.addr[11] = 0xff;
    c.addr[12] = 192;
    c.addr[14] = 2;
    assert_int_equal(cg_ruleset_add(rs, &c, CG_ALLOW, NULL, NULL), 0);
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    cg_ruleset_get_stats(rs, &st);
    assert_int_equal(st.v4, 2);
    assert_int_equal(st.v6, 0);
    EXPECT(rs, "10.1.2.3", CG_ALLOW, "10.0.0.0/8");
    EXPECT(rs, "192.0.2.9", CG_ALLOW, "192.0.2.0/24");
    judge_v6(rs, "::ffff:10.200.0.1", CG_ALLOW, NULL);
    cg_ruleset_free(rs);
}

/* No bypass through IPv6 spellings of IPv4 (README "Rule semantics"): only
 * ::ffff:0:0/96 (mapped) is judged as IPv4. IPv4-compatible ::a.b.c.d,
 * 6to4 2002:AABB:CCDD::/48, NAT64 64:ff9b::a.b.c.d and the SIIT form
 * ::ffff:0:a.b.c.d are other hosts on the wire: IPv6 callers, which IPv4
 * entries neither admit nor deny. */
static void test_v4_spellings_no_bypass(void **state)
{
    static const char *const other_hosts[] = {
        "::127.0.0.2",     /* IPv4-compatible (::/96) */
        "2002:7f00:2::",   /* 6to4 of 127.0.0.2 */
        "2002:7f00:2::1",  /* a host in that 6to4 /48 */
        "64:ff9b::7f00:2", /* NAT64 well-known prefix */
        "::ffff:0:7f00:2", /* IPv4-translated (SIIT) */
        "::7f00:2",        /* the compatible form written in hex */
    };
    cg_cidr a;
    char buf[CG_CIDR_STRLEN];
    struct sockaddr_in6 sin6;

    (void)state;
    /* allow by an IPv4 entry, default deny: the IPv6 spellings stay out */
    cg_ruleset *allow4 = new_set(CG_DENY);
    add(allow4, "127.0.0.0/8", CG_ALLOW, "a.ini", 1, NULL);
    assert_int_equal(cg_ruleset_freeze(allow4), 0);
    judge_v4(allow4, "127.0.0.2", CG_ALLOW, NULL);
    judge_v6(allow4, "::ffff:127.0.0.2", CG_ALLOW, NULL);
    for (size_t i = 0; i < sizeof other_hosts / sizeof other_hosts[0]; i++) {
        cg_rule_id id = 0;
        judge_v6(allow4, other_hosts[i], CG_DENY, &id);
        assert_int_equal(id, CG_RULE_NONE); /* the default, not 127.0.0.0/8 */
    }

    /* deny by an IPv4 entry, default allow: a mapped caller cannot slip
     * past it; the other spellings are other hosts, let in by the default */
    cg_ruleset *deny4 = new_set(CG_ALLOW);
    add(deny4, "127.0.0.0/8", CG_DENY, "d.ini", 1, NULL);
    assert_int_equal(cg_ruleset_freeze(deny4), 0);
    judge_v4(deny4, "127.0.0.2", CG_DENY, NULL);
    judge_v6(deny4, "::ffff:127.0.0.2", CG_DENY, NULL);
    for (size_t i = 0; i < sizeof other_hosts / sizeof other_hosts[0]; i++)
        judge_v6(deny4, other_hosts[i], CG_ALLOW, NULL);

    /* allow 127.0.0.0/8, deny ::/0: the IPv6 spellings hit ::/0 */
    cg_ruleset *both = new_set(CG_ALLOW);
    add(both, "127.0.0.0/8", CG_ALLOW, "b.ini", 1, NULL);
    add(both, "::/0", CG_DENY, "b.ini", 2, NULL);
    assert_int_equal(cg_ruleset_freeze(both), 0);
    judge_v6(both, "::ffff:127.0.0.2", CG_ALLOW, NULL);
    for (size_t i = 0; i < sizeof other_hosts / sizeof other_hosts[0]; i++) {
        cg_rule_id id = CG_RULE_NONE;
        cg_rule_info info;
        judge_v6(both, other_hosts[i], CG_DENY, &id);
        assert_int_equal(cg_ruleset_rule(both, id, &info), 0);
        assert_string_equal(cg_cidr_format(&info.cidr, buf, sizeof buf), "::/0");
    }

    /* the lookup key: IPv6 for these, IPv4 for the mapped one only */
    for (size_t i = 0; i < sizeof other_hosts / sizeof other_hosts[0]; i++) {
        memset(&sin6, 0, sizeof sin6);
        sin6.sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, other_hosts[i], &sin6.sin6_addr), 1);
        assert_int_equal(cg_addr_from_sockaddr((struct sockaddr *)&sin6, &a), 0);
        assert_int_equal(a.family, 6);
        assert_int_equal(a.len, 128);
        assert_memory_equal(a.addr, &sin6.sin6_addr, 16);
    }
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.2", &sin6.sin6_addr), 1);
    assert_int_equal(cg_addr_from_sockaddr((struct sockaddr *)&sin6, &a), 0);
    assert_int_equal(a.family, 4);
    assert_int_equal(a.len, 32);
    assert_string_equal(cg_cidr_format(&a, buf, sizeof buf), "127.0.0.2/32");

    /* as text (explain, rule files): the same split */
    a = P("::127.0.0.2");
    assert_int_equal(a.family, 6);
    a = P("2002:7f00:2::/48");
    assert_int_equal(a.family, 6);
    assert_int_equal(a.len, 48);
    a = P("::ffff:127.0.0.2");
    assert_int_equal(a.family, 4);

    /* rules written in those spellings stay IPv6 and never match the IPv4
     * caller 127.0.0.2 */
    cg_ruleset *v6rules = new_set(CG_DENY);
    cg_ruleset_stats st;
    add(v6rules, "::127.0.0.0/104", CG_ALLOW, "c.ini", 1, NULL);
    add(v6rules, "2002:7f00::/24", CG_ALLOW, "c.ini", 2, NULL);
    assert_int_equal(cg_ruleset_freeze(v6rules), 0);
    cg_ruleset_get_stats(v6rules, &st);
    assert_int_equal(st.v4, 0);
    assert_int_equal(st.v6, 2);
    judge_v4(v6rules, "127.0.0.2", CG_DENY, NULL);
    judge_v6(v6rules, "::ffff:127.0.0.2", CG_DENY, NULL);
    judge_v6(v6rules, "::127.0.0.2", CG_ALLOW, NULL);
    judge_v6(v6rules, "2002:7f00:2::1", CG_ALLOW, NULL);

    cg_ruleset_free(allow4);
    cg_ruleset_free(deny4);
    cg_ruleset_free(both);
    cg_ruleset_free(v6rules);
}

static void test_zero_length_entries(void **state)
{
    cg_ruleset *rs = new_set(CG_DENY);

    (void)state;
    add(rs, "0.0.0.0/0", CG_ALLOW, "z", 1, NULL);
    add(rs, "::/0", CG_DENY, "z", 2, NULL);
    add(rs, "128.0.0.0/1", CG_DENY, "z", 3, NULL);
    add(rs, "8000::/1", CG_ALLOW, "z", 4, NULL);
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    EXPECT(rs, "0.0.0.0", CG_ALLOW, "0.0.0.0/0");
    EXPECT(rs, "127.255.255.255", CG_ALLOW, "0.0.0.0/0");
    EXPECT(rs, "128.0.0.0", CG_DENY, "128.0.0.0/1");
    EXPECT(rs, "255.255.255.255", CG_DENY, "128.0.0.0/1");
    EXPECT(rs, "::", CG_DENY, "::/0");
    EXPECT(rs, "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", CG_DENY, "::/0");
    EXPECT(rs, "8000::", CG_ALLOW, "8000::/1");
    EXPECT(rs, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", CG_ALLOW, "8000::/1");
    cg_ruleset_free(rs);
}

static void test_host_edges(void **state)
{
    cg_ruleset *rs = new_set(CG_ALLOW);

    (void)state;
    add(rs, "0.0.0.0/32", CG_DENY, "e", 1, NULL);
    add(rs, "255.255.255.255/32", CG_DENY, "e", 2, NULL);
    add(rs, "255.0.0.0/8", CG_DENY, "e", 3, NULL);
    add(rs, "255.255.255.254", CG_ALLOW, "e", 4, NULL);
    add(rs, "::/128", CG_DENY, "e", 5, NULL);
    add(rs, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", CG_DENY, "e", 6, NULL);
    add(rs, "ffff::/16", CG_DENY, "e", 7, NULL);
    add(rs, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", CG_ALLOW, "e", 8, NULL);
    add(rs, "0.1.0.0/16", CG_DENY, "e", 9, NULL); /* a whole bucket */
    add(rs, "0:1::/32", CG_DENY, "e", 10, NULL);
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    EXPECT(rs, "0.0.0.0", CG_DENY, "0.0.0.0/32");
    EXPECT(rs, "0.0.0.1", CG_ALLOW, "-");
    EXPECT(rs, "0.0.255.255", CG_ALLOW, "-");
    EXPECT(rs, "0.1.0.0", CG_DENY, "0.1.0.0/16");
    EXPECT(rs, "0.1.255.255", CG_DENY, "0.1.0.0/16");
    EXPECT(rs, "0.2.0.0", CG_ALLOW, "-");
    EXPECT(rs, "254.255.255.255", CG_ALLOW, "-");
    EXPECT(rs, "255.0.0.0", CG_DENY, "255.0.0.0/8");
    EXPECT(rs, "255.255.255.253", CG_DENY, "255.0.0.0/8");
    EXPECT(rs, "255.255.255.254", CG_ALLOW, "255.255.255.254/32");
    EXPECT(rs, "255.255.255.255", CG_DENY, "255.255.255.255/32");
    EXPECT(rs, "::", CG_DENY, "::/128");
    EXPECT(rs, "::1", CG_ALLOW, "-");
    EXPECT(rs, "0:1::", CG_DENY, "0:1::/32");
    EXPECT(rs, "0:1:ffff:ffff:ffff:ffff:ffff:ffff", CG_DENY, "0:1::/32");
    EXPECT(rs, "0:2::", CG_ALLOW, "-");
    EXPECT(rs, "fffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", CG_ALLOW, "-");
    EXPECT(rs, "ffff::", CG_DENY, "ffff::/16");
    EXPECT(rs, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd", CG_DENY, "ffff::/16");
    EXPECT(rs, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", CG_ALLOW,
           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128");
    EXPECT(rs, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", CG_DENY,
           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
    cg_ruleset_free(rs);
}

static void test_rule_info(void **state)
{
    cg_ruleset *rs = new_set(CG_DENY);
    cg_rule_info info;
    cg_rule_id id;
    cg_cidr a;
    char label[CG_LABEL_MAX + 1];
    char buf[CG_CIDR_STRLEN];

    (void)state;
    memset(label, 'x', CG_LABEL_MAX);
    label[CG_LABEL_MAX] = '\0';
    add(rs, "198.51.100.0/24", CG_DENY, "/etc/condgate/rules.json", 7, "scanner-net");
    assert_int_equal(cg_ruleset_add_text(rs, "2001:db8::/32", 13, CG_ALLOW, NULL, label, NULL, 0),
                     0);
    add(rs, "203.0.113.0/24", CG_ALLOW, "list.txt", 0, "");
    assert_int_equal(cg_ruleset_freeze(rs), 0);

    a = P("198.51.100.1");
    cg_ruleset_lookup(rs, &a, &id);
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    assert_string_equal(cg_cidr_format(&info.cidr, buf, sizeof buf), "198.51.100.0/24");
    assert_int_equal(info.action, CG_DENY);
    assert_string_equal(info.file, "/etc/condgate/rules.json");
    assert_int_equal(info.line, 7);
    assert_string_equal(info.label, "scanner-net");
    assert_int_equal(info.hits, 0);

    a = P("2001:db8::5");
    cg_ruleset_lookup(rs, &a, &id);
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    assert_int_equal(info.action, CG_ALLOW);
    assert_string_equal(info.file, ""); /* no source */
    assert_int_equal(info.line, 0);
    assert_string_equal(info.label, label);

    a = P("203.0.113.1");
    cg_ruleset_lookup(rs, &a, &id);
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    assert_null(info.label); /* an empty label is no label */

    assert_int_equal(cg_ruleset_rule(rs, 3, &info), CG_ENOENT);
    assert_int_equal(cg_ruleset_rule(rs, CG_RULE_NONE, &info), CG_ENOENT);
    cg_ruleset_free(rs);
}

static void test_hits_and_top(void **state)
{
    static const char *const nets[] = {"10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16", "2001:db8::/32",
                                       "192.0.2.0/24"};
    cg_ruleset *rs = new_set(CG_DENY);
    cg_rule_id id[5], top[8];
    cg_cidr a;

    (void)state;
    for (int i = 0; i < 5; i++)
        add(rs, nets[i], CG_ALLOW, "t", (uint32_t)i + 1, NULL);
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    a = P("10.9.9.9");
    cg_ruleset_lookup(rs, &a, &id[0]);
    a = P("10.1.9.9");
    cg_ruleset_lookup(rs, &a, &id[1]);
    a = P("10.2.9.9");
    cg_ruleset_lookup(rs, &a, &id[2]);
    a = P("2001:db8::9");
    cg_ruleset_lookup(rs, &a, &id[3]);
    a = P("192.0.2.9");
    cg_ruleset_lookup(rs, &a, &id[4]);
    /* lookup counts nothing */
    for (int i = 0; i < 5; i++)
        assert_int_equal(hits_of(rs, id[i]), 0);
    assert_int_equal(cg_ruleset_top(rs, top, 8), 0);

    for (int i = 0; i < 3; i++)
        judge_v4(rs, "10.9.9.9", CG_ALLOW, NULL);
    for (int i = 0; i < 5; i++)
        judge_v6(rs, "2001:db8::1", CG_ALLOW, NULL);
    judge_v4(rs, "10.1.0.1", CG_ALLOW, NULL);
    for (int i = 0; i < 3; i++)
        judge_v4(rs, "192.0.2.200", CG_ALLOW, NULL);
    judge_v4(rs, "11.0.0.1", CG_DENY, NULL); /* the default counts nowhere */

    assert_int_equal(hits_of(rs, id[0]), 3);
    assert_int_equal(hits_of(rs, id[1]), 1);
    assert_int_equal(hits_of(rs, id[2]), 0);
    assert_int_equal(hits_of(rs, id[3]), 5);
    assert_int_equal(hits_of(rs, id[4]), 3);

    /* most first; equal counts in id order; no zero-hit entries */
    assert_int_equal(cg_ruleset_top(rs, top, 8), 4);
    assert_int_equal(top[0], id[3]);
    assert_int_equal(top[1], id[0] < id[4] ? id[0] : id[4]);
    assert_int_equal(top[2], id[0] < id[4] ? id[4] : id[0]);
    assert_int_equal(top[3], id[1]);
    assert_int_equal(cg_ruleset_top(rs, top, 2), 2);
    assert_int_equal(top[0], id[3]);
    assert_int_equal(top[1], id[0] < id[4] ? id[0] : id[4]);
    assert_int_equal(cg_ruleset_top(rs, top, 0), 0);
    assert_int_equal(cg_ruleset_top(rs, NULL, 3), 0);
    cg_ruleset_free(rs);
}

/* More than the stack heap holds, against an independent ordering. */
static void test_top_large(void **state)
{
    enum { N = 500, K = 100 };
    cg_ruleset *rs = new_set(CG_DENY);
    uint64_t want[N];
    cg_rule_id ids[K + 1];
    char text[32];

    (void)state;
    for (int i = 0; i < N; i++) {
        snprintf(text, sizeof text, "10.%d.%d.0/24", i / 256, i % 256);
        add(rs, text, CG_ALLOW, "t", 1, NULL);
    }
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    for (int i = 0; i < N; i++) {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(0x0a000000u | (uint32_t)i << 8 | 1);
        want[i] = (uint64_t)((i * 37) % 61); /* many ties, some zeros */
        for (uint64_t h = 0; h < want[i]; h++)
            cg_ruleset_judge(rs, (struct sockaddr *)&sin, NULL);
    }
    assert_int_equal(cg_ruleset_top(rs, ids, K), K);
    for (int k = 0; k < K; k++) {
        /* ids are in address order here, so ids[k] is the i of the loop */
        uint64_t h = hits_of(rs, ids[k]);
        size_t better = 0;
        assert_int_equal(h, want[ids[k]]);
        for (int i = 0; i < N; i++)
            better += want[i] > h || (want[i] == h && (cg_rule_id)i < ids[k]);
        assert_int_equal(better, (size_t)k);
    }
    cg_ruleset_free(rs);
}

static void test_stats_counts(void **state)
{
    cg_ruleset *rs = new_set(CG_DENY);
    cg_ruleset_stats st;

    (void)state;
    cg_ruleset_get_stats(rs, &st);
    assert_int_equal(st.added, 0);
    add(rs, "10.0.0.0/8", CG_ALLOW, "s", 1, NULL);
    add(rs, "10.0.0.0/8", CG_ALLOW, "s", 2, NULL);
    add(rs, "10.0.0.0/8", CG_DENY, "s", 3, NULL);
    add(rs, "10.0.0.0/16", CG_DENY, "s", 4, NULL);
    add(rs, "2001:db8::/32", CG_DENY, "s", 5, NULL);
    add(rs, "2001:db8::/32", CG_DENY, "s", 6, NULL);
    add(rs, "2001:db8::/33", CG_DENY, "s", 7, NULL);
    add(rs, "all", CG_ALLOW, "s", 8, NULL);
    cg_ruleset_get_stats(rs, &st);
    assert_int_equal(st.added, 9);
    assert_int_equal(st.bytes, 0); /* not frozen yet */
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    cg_ruleset_get_stats(rs, &st);
    assert_int_equal(st.v4, 3);
    assert_int_equal(st.v6, 3);
    assert_int_equal(st.added, 9);
    assert_int_equal(st.duplicates, 2);
    assert_int_equal(st.conflicts, 1);
    assert_int_equal(st.v4 + st.v6 + st.duplicates + st.conflicts, st.added);
    /* at least the entries and both direct indexes */
    assert_true(st.bytes >= 3 * 16 + 3 * 32 + 2 * 65537 * 4);
    assert_true(st.bytes < 2 * 1024 * 1024);
    cg_ruleset_free(rs);
}

static void test_limits(void **state)
{
    cg_ruleset *rs = new_set(CG_DENY);
    char label[CG_LABEL_MAX + 2], err[128];
    char *path;
    cg_source src = {"f", 1};
    cg_cidr c = P("10.0.0.0/8");

    (void)state;
    memset(label, 'l', sizeof label - 1);
    label[CG_LABEL_MAX + 1] = '\0'; /* 129 bytes */
    assert_int_equal(cg_ruleset_add(rs, &c, CG_DENY, &src, label), CG_ERANGE);
    assert_int_equal(
        cg_ruleset_add_text(rs, "10.0.0.0/8", 10, CG_DENY, &src, label, err, sizeof err),
        CG_ERANGE);
    assert_string_equal(err, "label too long (max 128 bytes)");
    label[CG_LABEL_MAX] = '\0'; /* 128 bytes: fine */
    assert_int_equal(cg_ruleset_add(rs, &c, CG_DENY, &src, label), 0);

    path = malloc(CG_SOURCE_MAX + 2);
    assert_non_null(path);
    memset(path, 'p', CG_SOURCE_MAX + 1);
    path[CG_SOURCE_MAX + 1] = '\0';
    src.file = path;
    assert_int_equal(
        cg_ruleset_add_text(rs, "10.0.0.0/8", 10, CG_DENY, &src, NULL, err, sizeof err), CG_ERANGE);
    assert_string_equal(err, "source path too long (max 4096 bytes)");
    path[CG_SOURCE_MAX] = '\0';
    assert_int_equal(cg_ruleset_add(rs, &c, CG_DENY, &src, NULL), 0);
    src.file = "f"; /* the set made its own copy */
    free(path);

    /* malformed prefixes given as structures */
    c.len = 6; /* 10.0.0.0/6 has a host bit set */
    assert_int_equal(cg_ruleset_add(rs, &c, CG_DENY, NULL, NULL), CG_EINVAL);
    c.len = 33;
    assert_int_equal(cg_ruleset_add(rs, &c, CG_DENY, NULL, NULL), CG_EINVAL);
    c = P("::/0");
    c.len = 129;
    assert_int_equal(cg_ruleset_add(rs, &c, CG_DENY, NULL, NULL), CG_EINVAL);
    c.family = 5;
    c.len = 0;
    assert_int_equal(cg_ruleset_add(rs, &c, CG_DENY, NULL, NULL), CG_EINVAL);
    c = P("10.0.0.0/8");
    assert_int_equal(cg_ruleset_add(rs, &c, (cg_action)7, NULL, NULL), CG_EINVAL);
    assert_int_equal(cg_ruleset_add(NULL, &c, CG_DENY, NULL, NULL), CG_EINVAL);
    assert_int_equal(cg_ruleset_add(rs, NULL, CG_DENY, NULL, NULL), CG_EINVAL);

    /* lookups on an unfrozen set answer the default */
    {
        cg_rule_id id = 0;
        assert_int_equal(cg_ruleset_lookup(rs, &c, &id), CG_DENY);
        assert_int_equal(id, CG_RULE_NONE);
    }

    assert_int_equal(cg_ruleset_freeze(rs), 0);
    assert_int_equal(cg_ruleset_freeze(rs), CG_EINVAL);
    assert_int_equal(cg_ruleset_add(rs, &c, CG_DENY, &src, NULL), CG_EINVAL);
    assert_int_equal(
        cg_ruleset_add_text(rs, "10.0.0.0/8", 10, CG_DENY, NULL, NULL, err, sizeof err), CG_EINVAL);
    assert_string_equal(err, "rule set 'test' is frozen");
    assert_int_equal(cg_ruleset_add_text(rs, "all", 3, CG_DENY, NULL, NULL, err, sizeof err),
                     CG_EINVAL);
    assert_string_equal(err, "rule set 'test' is frozen");
    cg_ruleset_free(rs);
}

static void test_new_and_free(void **state)
{
    cg_ruleset *rs = (cg_ruleset *)&rs;

    (void)state;
    assert_int_equal(cg_ruleset_new(NULL, CG_DENY, &rs), CG_EINVAL);
    assert_null(rs);
    assert_int_equal(cg_ruleset_new("", CG_DENY, &rs), CG_EINVAL);
    assert_int_equal(cg_ruleset_new("x", (cg_action)2, &rs), CG_EINVAL);
    assert_int_equal(cg_ruleset_new("x", CG_DENY, NULL), CG_EINVAL);
    cg_ruleset_free(NULL);

    /* an unfrozen set with entries, files and labels frees cleanly (ASan
     * checks the leak) */
    rs = new_set(CG_ALLOW);
    add(rs, "10.0.0.0/8", CG_DENY, "a", 1, "l1");
    add(rs, "2001:db8::/32", CG_DENY, "b", 2, "l2");
    add(rs, "all", CG_ALLOW, "c", 3, NULL);
    cg_ruleset_free(rs);

    assert_string_equal(cg_action_name(CG_ALLOW), "allow");
    assert_string_equal(cg_action_name(CG_DENY), "deny");
    /* Why a verdict was reached is named by the judge (policy.h), the one
     * reason vocabulary: tests/unit/test_gate.c checks those names. */
}

/* Many files and labels interleaved: interning must keep each straight. */
static void test_sources_interleaved(void **state)
{
    cg_ruleset *rs = new_set(CG_DENY);
    char text[32], file[32], label[32];

    (void)state;
    for (int i = 0; i < 300; i++) {
        snprintf(text, sizeof text, "172.16.%d.%d", i / 256, i % 256);
        snprintf(file, sizeof file, "file-%d", i % 7);
        snprintf(label, sizeof label, "label-%d", i % 3);
        add(rs, text, i % 2 ? CG_ALLOW : CG_DENY, file, (uint32_t)i, i % 5 ? label : NULL);
    }
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    for (int i = 0; i < 300; i++) {
        cg_rule_info info;
        cg_rule_id id;
        cg_cidr a;
        snprintf(text, sizeof text, "172.16.%d.%d", i / 256, i % 256);
        a = P(text);
        assert_int_equal(cg_ruleset_lookup(rs, &a, &id), i % 2 ? CG_ALLOW : CG_DENY);
        assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
        snprintf(file, sizeof file, "file-%d", i % 7);
        assert_string_equal(info.file, file);
        assert_int_equal(info.line, i);
        if (i % 5) {
            snprintf(label, sizeof label, "label-%d", i % 3);
            assert_string_equal(info.label, label);
        } else {
            assert_null(info.label);
        }
    }
    cg_ruleset_free(rs);
}

/* ------------------------------------------------------------------------
 * Randomized cross-check against a linear reference
 */

#define XC_RULES 10000
#define XC_LOOKUPS 100000

static uint64_t xc_seed;
static uint64_t xc_state;

static uint64_t rnd(void)
{
    uint64_t z = (xc_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void seed_rng(unsigned salt)
{
    const char *env = getenv("CG_TEST_SEED");
    xc_seed = env && *env ? strtoull(env, NULL, 0) : 20240601u;
    xc_state = xc_seed * 0x100000001b3ull + salt;
}

/* A 128-bit address as two host-order halves; IPv4 uses lo only. */
struct a128 {
    uint64_t hi, lo;
};

struct ref_rule {
    struct a128 net, end; /* first and last address */
    unsigned len;
    cg_action action;
};

static struct a128 mask_of(unsigned len, unsigned bits)
{
    struct a128 m = {0, 0};
    if (bits == 32) {
        m.lo = len ? (0xffffffffull << (32 - len)) & 0xffffffffull : 0;
    } else {
        m.hi = len == 0 ? 0 : len >= 64 ? UINT64_MAX : UINT64_MAX << (64 - len);
        m.lo = len <= 64 ? 0 : len == 128 ? UINT64_MAX : UINT64_MAX << (128 - len);
    }
    return m;
}

static struct ref_rule make_rule(struct a128 a, unsigned len, cg_action action, unsigned bits)
{
    struct a128 m = mask_of(len, bits);
    struct ref_rule r;
    uint64_t full_lo = bits == 32 ? 0xffffffffull : UINT64_MAX;

    r.net.hi = a.hi & m.hi;
    r.net.lo = a.lo & m.lo;
    r.end.hi = r.net.hi | (bits == 32 ? 0 : ~m.hi);
    r.end.lo = r.net.lo | (~m.lo & full_lo);
    r.len = len;
    r.action = action;
    return r;
}

static cg_cidr to_cidr(struct a128 a, unsigned len, unsigned bits)
{
    cg_cidr c;
    memset(&c, 0, sizeof c);
    c.len = (uint8_t)len;
    if (bits == 32) {
        c.family = 4;
        for (int i = 0; i < 4; i++)
            c.addr[i] = (uint8_t)(a.lo >> (24 - 8 * i));
    } else {
        c.family = 6;
        for (int i = 0; i < 8; i++) {
            c.addr[i] = (uint8_t)(a.hi >> (56 - 8 * i));
            c.addr[8 + i] = (uint8_t)(a.lo >> (56 - 8 * i));
        }
    }
    return c;
}

/* Reference order: longest first, deny before allow at the same length, so
 * the first rule that contains an address is the one that must decide. */
static int cmp_ref(const void *pa, const void *pb)
{
    const struct ref_rule *a = pa, *b = pb;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return (int)a->action - (int)b->action;
}

/* The reference: rules in cmp_ref order as flat arrays, scanned from the
 * start; the first that contains the address decides. */
struct ref_table {
    uint64_t *net_hi, *net_lo, *mask_hi, *mask_lo;
    size_t n;
};

static void ref_build(struct ref_table *t, const struct ref_rule *sorted, size_t n, unsigned bits)
{
    t->net_hi = calloc(n, sizeof(uint64_t));
    t->net_lo = calloc(n, sizeof(uint64_t));
    t->mask_hi = calloc(n, sizeof(uint64_t));
    t->mask_lo = calloc(n, sizeof(uint64_t));
    assert_true(t->net_hi && t->net_lo && t->mask_hi && t->mask_lo);
    for (size_t i = 0; i < n; i++) {
        struct a128 m = mask_of(sorted[i].len, bits);
        t->net_hi[i] = sorted[i].net.hi;
        t->net_lo[i] = sorted[i].net.lo;
        t->mask_hi[i] = m.hi;
        t->mask_lo[i] = m.lo;
    }
    t->n = n;
}

static void ref_free(struct ref_table *t)
{
    free(t->net_hi);
    free(t->net_lo);
    free(t->mask_hi);
    free(t->mask_lo);
}

static size_t ref_lookup(const struct ref_table *t, struct a128 x)
{
    for (size_t i = 0; i < t->n; i++)
        if ((((x.hi & t->mask_hi[i]) ^ t->net_hi[i]) | ((x.lo & t->mask_lo[i]) ^ t->net_lo[i])) ==
            0)
            return i;
    return SIZE_MAX;
}

static struct a128 random_addr(unsigned bits)
{
    struct a128 a = {rnd(), rnd()};
    if (bits == 32) {
        a.hi = 0;
        a.lo &= 0xffffffffull;
    } else {
        /* keep clear of the mapped range, judged as IPv4 */
        if (a.hi == 0 && (a.lo >> 32) == 0xffff)
            a.hi = 1;
    }
    return a;
}

/* IPv4 and IPv6 addresses chosen to crowd some buckets (and IPv6 second-
 * level sub-buckets), to nest deeply and to sit on bucket edges. */
static struct a128 clustered_addr(unsigned bits)
{
    struct a128 a = random_addr(bits);
    unsigned pick = (unsigned)(rnd() % 4);

    if (bits == 32) {
        static const uint32_t bases[4] = {0xc6336400u, 0x0a000000u, 0x0000ff00u, 0xfffffe00u};
        uint32_t v = bases[pick] ^ ((uint32_t)a.lo & 0x0003ffffu);
        if (rnd() % 2) /* near a 64 Ki bucket edge */
            v = (v & 0xffff0000u) | ((rnd() % 2) ? (uint32_t)(rnd() % 8) : 0xfff8u | (v & 7));
        a.lo = v;
    } else {
        static const uint64_t bases[4] = {0x20010db800000000ull, 0x2a00145000000000ull, 0,
                                          0xffffffffffff0000ull};
        a.hi = bases[pick] | (a.hi & 0x0000000fffffffffull);
        if (pick == 2)
            a.hi = 0, a.lo &= 0x0000ffffffffffffull;
        if (rnd() % 3 == 0)
            a.lo = rnd() % 2 ? 0 : UINT64_MAX;
    }
    return a;
}

static unsigned random_len(unsigned bits)
{
    /* mostly long-ish prefixes, all lengths reachable */
    if (rnd() % 4 == 0)
        return (unsigned)(rnd() % (bits + 1));
    return bits / 2 + (unsigned)(rnd() % (bits / 2 + 1));
}

static struct a128 add1(struct a128 a, unsigned bits)
{
    if (bits == 32) {
        a.lo = (a.lo + 1) & 0xffffffffull;
        return a;
    }
    if (++a.lo == 0)
        a.hi++;
    return a;
}

static struct a128 sub1(struct a128 a, unsigned bits)
{
    if (bits == 32) {
        a.lo = (a.lo - 1) & 0xffffffffull;
        return a;
    }
    if (a.lo-- == 0)
        a.hi--;
    return a;
}

static bool is_mapped128(struct a128 a, unsigned bits)
{
    return bits == 128 && a.hi == 0 && (a.lo >> 32) == 0xffff;
}

static void cross_check(unsigned bits)
{
    struct ref_rule *rules = calloc(XC_RULES, sizeof *rules);
    struct ref_rule *sorted = calloc(XC_RULES, sizeof *sorted);
    cg_ruleset *rs = new_set(CG_DENY);
    size_t n = 0, mismatches = 0, defaults = 0;
    cg_ruleset_stats st;
    struct ref_table ref;

    assert_non_null(rules);
    assert_non_null(sorted);
    seed_rng(bits);
    while (n < XC_RULES) {
        unsigned kind = (unsigned)(rnd() % 10);
        cg_action act = rnd() % 2 ? CG_ALLOW : CG_DENY;
        struct ref_rule r;
        cg_cidr c;

        if (kind < 3 || n < 16) {
            r = make_rule(random_addr(bits), random_len(bits), act, bits);
        } else if (kind < 6) {
            r = make_rule(clustered_addr(bits), random_len(bits), act, bits);
        } else if (kind < 8) {
            /* a sub-prefix of an earlier rule: deep nesting */
            const struct ref_rule *p = &rules[rnd() % n];
            struct a128 a = random_addr(bits);
            unsigned len = p->len + (p->len < bits ? 1 + (unsigned)(rnd() % (bits - p->len)) : 0);
            struct a128 m = mask_of(p->len, bits);
            a.hi = (p->net.hi & m.hi) | (a.hi & ~m.hi);
            a.lo = (p->net.lo & m.lo) | (a.lo & ~m.lo);
            if (bits == 32)
                a.hi = 0, a.lo &= 0xffffffffull;
            r = make_rule(a, len, act, bits);
        } else if (kind < 9) {
            r = rules[rnd() % n]; /* duplicate */
        } else {
            r = rules[rnd() % n]; /* conflict */
            r.action = r.action == CG_ALLOW ? CG_DENY : CG_ALLOW;
        }
        /* Short prefixes only in the lower half of the space: it is
         * covered and deeply nested, while the upper half keeps gaps where
         * the default decides. */
        if (r.len < bits / 4 && kind < 8) {
            struct a128 a = r.net;
            if (bits == 32)
                a.lo &= 0x7fffffffull;
            else
                a.hi &= 0x7fffffffffffffffull;
            r = make_rule(a, r.len ? r.len : 1, r.action, bits);
        }
        /* Nothing reaches the last address, so the stretch after the last
         * top-level prefix is always there to check (test_host_edges covers
         * prefixes that end at the top). */
        if (r.end.lo == (bits == 32 ? 0xffffffffull : UINT64_MAX) &&
            (bits == 32 || r.end.hi == UINT64_MAX))
            continue;
        /* the mapped range belongs to IPv4; keep the IPv6 check pure */
        if (bits == 128 && r.len >= 96 && is_mapped128(r.net, bits))
            continue;
        c = to_cidr(r.net, r.len, bits);
        assert_int_equal(cg_ruleset_add(rs, &c, r.action, NULL, NULL), 0);
        rules[n++] = r;
    }
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    cg_ruleset_get_stats(rs, &st);
    assert_int_equal(st.added, XC_RULES);
    assert_int_equal(st.v4 + st.v6 + st.duplicates + st.conflicts, XC_RULES);
    assert_true(st.duplicates > 0);
    assert_true(st.conflicts > 0);

    memcpy(sorted, rules, XC_RULES * sizeof *rules);
    qsort(sorted, XC_RULES, sizeof *sorted, cmp_ref);
    ref_build(&ref, sorted, XC_RULES, bits);

    for (size_t i = 0; i < XC_LOOKUPS; i++) {
        struct a128 x;
        unsigned how = (unsigned)(rnd() % 8);
        const struct ref_rule *want;
        size_t w;
        cg_rule_id id;
        cg_action got;
        cg_cidr a;

        if (how < 3) {
            x = random_addr(bits);
        } else if (how < 4) {
            x = clustered_addr(bits);
        } else {
            /* on and around the boundaries of a random rule */
            const struct ref_rule *r = &rules[rnd() % XC_RULES];
            switch (how) {
            case 4:
                x = rnd() % 2 ? r->net : r->end;
                break;
            case 5:
                x = sub1(r->net, bits);
                break;
            case 6:
                x = add1(r->end, bits);
                break;
            default: {
                struct a128 m = mask_of(r->len, bits), y = random_addr(bits);
                x.hi = r->net.hi | (y.hi & ~m.hi);
                x.lo = r->net.lo | (y.lo & ~m.lo);
                if (bits == 32)
                    x.hi = 0, x.lo &= 0xffffffffull;
                break;
            }
            }
        }
        if (is_mapped128(x, bits))
            continue;
        w = ref_lookup(&ref, x);
        want = w == SIZE_MAX ? NULL : &sorted[w];
        a = to_cidr(x, bits, bits);
        got = cg_ruleset_lookup(rs, &a, &id);
        if (!want) {
            defaults++;
            if (got == CG_DENY && id == CG_RULE_NONE)
                continue;
        } else if (got == want->action && id != CG_RULE_NONE) {
            cg_rule_info info;
            cg_cidr wc = to_cidr(want->net, want->len, bits);
            assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
            if (memcmp(&info.cidr, &wc, sizeof wc) == 0 && info.action == want->action)
                continue;
        }
        if (mismatches++ < 5) {
            char as[CG_CIDR_STRLEN], ws[CG_CIDR_STRLEN] = "-";
            if (want) {
                cg_cidr wc = to_cidr(want->net, want->len, bits);
                cg_cidr_format(&wc, ws, sizeof ws);
            }
            print_error("IPv%u %s: got %s (rule %" PRIu32 "), want %s by %s\n", bits == 32 ? 4 : 6,
                        cg_cidr_format(&a, as, sizeof as), cg_action_name(got), id,
                        want ? cg_action_name(want->action) : "deny (default)", ws);
        }
    }
    if (mismatches)
        fail_msg("%zu mismatches; reproduce with CG_TEST_SEED=%" PRIu64, mismatches, xc_seed);
    /* both outcomes must have been exercised in earnest */
    if (defaults < XC_LOOKUPS / 20 || defaults > XC_LOOKUPS - XC_LOOKUPS / 20)
        fail_msg("%zu of %d lookups got the default; seed %" PRIu64, defaults, XC_LOOKUPS, xc_seed);
    ref_free(&ref);
    cg_ruleset_free(rs);
    free(rules);
    free(sorted);
}

static void test_cross_check_v4(void **state)
{
    (void)state;
    cross_check(32);
}

static void test_cross_check_v6(void **state)
{
    (void)state;
    cross_check(128);
}

/* ------------------------------------------------------------------------
 * Concurrency
 */

#define THREADS 4
#define PER_THREAD 50000
#define CALLERS 4096

struct caller {
    struct sockaddr_storage ss;
};

struct judge_job {
    const cg_ruleset *rs;
    const struct caller *callers;
    unsigned offset;
};

static void judge_thread(void *arg)
{
    const struct judge_job *job = arg;
    for (unsigned i = 0; i < PER_THREAD; i++) {
        const struct caller *c = &job->callers[(i + job->offset) % CALLERS];
        cg_ruleset_judge(job->rs, (const struct sockaddr *)&c->ss, NULL);
    }
}

/* Four threads judge at once; every hit is counted exactly once. */
static void test_concurrent_judge(void **state)
{
    cg_ruleset *rs = new_set(CG_DENY);
    struct caller *callers = calloc(CALLERS, sizeof *callers);
    uint64_t *want;
    struct judge_job jobs[THREADS];
    uv_thread_t th[THREADS]; /* libuv's threads: the same on POSIX and Windows */
    cg_ruleset_stats st;
    uint64_t total_hits = 0, want_total = 0;
    size_t nrules;

    (void)state;
    assert_non_null(callers);
    seed_rng(7);
    add(rs, "10.0.0.0/8", CG_ALLOW, "c", 1, NULL);
    add(rs, "2001:db8::/32", CG_ALLOW, "c", 2, NULL);
    for (int i = 0; i < 200; i++) {
        char text[64];
        snprintf(text, sizeof text, "10.%u.%u.0/24", (unsigned)(rnd() % 4),
                 (unsigned)(rnd() % 256));
        add(rs, text, rnd() % 2 ? CG_ALLOW : CG_DENY, "c", 3, NULL);
        snprintf(text, sizeof text, "2001:db8:%x::/48", (unsigned)(rnd() % 64));
        add(rs, text, rnd() % 2 ? CG_ALLOW : CG_DENY, "c", 4, NULL);
    }
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    cg_ruleset_get_stats(rs, &st);
    nrules = st.v4 + st.v6;
    want = calloc(nrules, sizeof *want);
    assert_non_null(want);

    for (unsigned i = 0; i < CALLERS; i++) {
        if (i % 3 == 2) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&callers[i].ss;
            uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, (uint8_t)(rnd() % 80), 0, 0, 0, 0, 0,
                             0,    0,    0,    0,    1};
            s6->sin6_family = AF_INET6;
            memcpy(&s6->sin6_addr, b, 16);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&callers[i].ss;
            s4->sin_family = AF_INET;
            s4->sin_addr.s_addr = htonl(0x0a000000u | (uint32_t)(rnd() % (5u << 16)));
        }
    }
    /* What the threads will count, found beforehand without counting. */
    for (unsigned t = 0; t < THREADS; t++) {
        jobs[t] = (struct judge_job){rs, callers, t * 1013u};
        for (unsigned i = 0; i < PER_THREAD; i++) {
            cg_cidr a;
            cg_rule_id id;
            cg_addr_from_sockaddr((struct sockaddr *)&callers[(i + jobs[t].offset) % CALLERS].ss,
                                  &a);
            cg_ruleset_lookup(rs, &a, &id);
            if (id != CG_RULE_NONE) {
                want[id]++;
                want_total++;
            }
        }
    }
    for (unsigned t = 0; t < THREADS; t++)
        assert_int_equal(uv_thread_create(&th[t], judge_thread, &jobs[t]), 0);
    for (unsigned t = 0; t < THREADS; t++)
        assert_int_equal(uv_thread_join(&th[t]), 0);

    for (cg_rule_id id = 0; id < nrules; id++) {
        uint64_t h = hits_of(rs, id);
        assert_int_equal(h, want[id]);
        total_hits += h;
    }
    assert_int_equal(total_hits, want_total);
    assert_true(want_total > THREADS * PER_THREAD / 2);
    free(want);
    free(callers);
    cg_ruleset_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example),
        cmocka_unit_test(test_tie_deny_wins),
        cmocka_unit_test(test_conflicts_bounded),
        cmocka_unit_test(test_duplicates_merged),
        cmocka_unit_test(test_defaults_and_empty),
        cmocka_unit_test(test_mapped_caller_judged_as_v4),
        cmocka_unit_test(test_mapped_prefix_entry),
        cmocka_unit_test(test_v4_spellings_no_bypass),
        cmocka_unit_test(test_zero_length_entries),
        cmocka_unit_test(test_host_edges),
        cmocka_unit_test(test_rule_info),
        cmocka_unit_test(test_hits_and_top),
        cmocka_unit_test(test_top_large),
        cmocka_unit_test(test_stats_counts),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_new_and_free),
        cmocka_unit_test(test_sources_interleaved),
        cmocka_unit_test(test_cross_check_v4),
        cmocka_unit_test(test_cross_check_v6),
        cmocka_unit_test(test_concurrent_judge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
