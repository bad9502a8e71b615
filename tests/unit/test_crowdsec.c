/* test_crowdsec.c — CrowdSec decisions (SPEC §15): the stream answer parser
 * (good answers, every bad class, bounds, Go durations, reasons) and the
 * applier against a real runtime and ban table (never_ban, other types and
 * scopes, deleted only lifts crowdsec bans, deleted before new, admin bans
 * kept, ttl clamps, the startup answer's reconciliation).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "bans.h"
#include "condgate/common.h"
#include "condgate/config.h"
#include "crowdsec.h"
#include "crowdsec_decisions.h"
#include "runtime.h"

static cg_cidr C(const char *s)
{
    cg_cidr c;
    char err[128];
    if (cg_cidr_parse(s, strlen(s), &c, err, sizeof err) != 0)
        fail_msg("bad test cidr %s: %s", s, err);
    return c;
}

static const char *fmt(const cg_cidr *c)
{
    static char buf[CG_CIDR_STRLEN];
    return cg_cidr_format(c, buf, sizeof buf);
}

static int parse(const char *json, cg__cs_answer *a)
{
    char err[256];
    return cg__cs_parse(json, strlen(json), a, err, sizeof err);
}

/* A decision object. */
#define D(type, scope, value, dur, scen)                                                           \
    "{\"id\":1,\"origin\":\"cscli\",\"type\":\"" type "\",\"scope\":\"" scope                      \
    "\",\"value\":\"" value "\",\"duration\":\"" dur "\",\"scenario\":\"" scen "\"}"

/* ------------------------------------------------------------------------
 * The parser
 */

static void test_parse_good(void **state)
{
    (void)state;
    cg__cs_answer a;
    const char *json = "{\"deleted\": [" D(
        "ban", "Ip", "192.0.2.9", "-1.5s",
        "x") "],\n"
             " \"new\": [" D("ban", "Ip", "192.0.2.1", "3h59m58.123s", "crowdsecurity/ssh-bf") "," D(
                 "BAN", "range", "198.51.100.0/24", "5m",
                 "r") "," D("ban", "IP", "2001:db8::7", "1s",
                            "v6") "," D("ban", "Range", "2001:db8:1::/48", "10m",
                                        "v6r") "," D("captcha", "Ip", "192.0.2.2", "1h",
                                                     "c") "," D("ban", "Country", "FR", "1h",
                                                                "cc") ", {\"type\": \"ban\"}]}";
    assert_int_equal(parse(json, &a), 0);
    assert_int_equal(a.ndeleted, 1);
    assert_int_equal(a.deleted[0].kind, CG__CS_BAN);
    assert_int_equal(a.deleted[0].duration_ms, -1500);
    assert_string_equal(fmt(&a.deleted[0].cidr), "192.0.2.9/32");
    assert_int_equal(a.nadded, 7);
    static const struct {
        cg__cs_kind kind;
        const char *cidr;
        int64_t ms;
        const char *reason;
    } want[] = {
        {CG__CS_BAN, "192.0.2.1/32", 14398123, "crowdsecurity/ssh-bf"},
        {CG__CS_BAN, "198.51.100.0/24", 300000, "r"},
        {CG__CS_BAN, "2001:db8::7/128", 1000, "v6"},
        {CG__CS_BAN, "2001:db8:1::/48", 600000, "v6r"},
        {CG__CS_TYPE, NULL, 3600000, "c"},
        {CG__CS_SCOPE, NULL, 3600000, "cc"},
        {CG__CS_INVALID, NULL, 0, ""},
    };
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(a.added[i].kind, want[i].kind);
        assert_string_equal(a.added[i].reason, want[i].reason);
        if (want[i].cidr != NULL) {
            assert_string_equal(fmt(&a.added[i].cidr), want[i].cidr);
            assert_int_equal(a.added[i].duration_ms, want[i].ms);
            assert_string_equal(a.added[i].origin, "cscli");
        }
    }
    cg__cs_answer_free(&a);

    /* Escapes are decoded; other members of any JSON type are skipped. */
    assert_int_equal(
        parse("{\"x\": [1, -2.5e+3, true, false, null, {\"a\": [[]]}, \"\\ud83d\\ude00\"], "
              "\"new\": [{\"type\": \"b\\u0061n\", \"scope\": \"Ip\", \"value\": "
              "\"192.0.2.\\u0031\", \"duration\": \"1s\", \"scenario\": "
              "\"a\\u00e9\\\"\\/\\n\", \"id\": {\"n\": [0]}}]}",
              &a),
        0);
    assert_int_equal(a.nadded, 1);
    assert_int_equal(a.added[0].kind, CG__CS_BAN);
    assert_string_equal(fmt(&a.added[0].cidr), "192.0.2.1/32");
    assert_string_equal(a.added[0].reason, "a\xc3\xa9\"/?");
    cg__cs_answer_free(&a);

    /* Values as typed: host bits, a prefix in scope Ip, an address in scope
     * Range, upper case, IPv4-mapped. */
    static const struct {
        const char *scope, *value, *want;
    } typed[] = {
        {"Range", "127.0.6.5/24", "127.0.6.0/24"},
        {"Ip", "127.0.4.0/24", "127.0.4.0/24"},
        {"Range", "192.0.2.7", "192.0.2.7/32"},
        {"Range", "2001:DB8:0:1::1/64", "2001:db8:0:1::/64"},
        {"Ip", "::ffff:127.0.0.24", "127.0.0.24/32"},
        {"Range", "::ffff:10.1.2.3/104", "10.0.0.0/8"},
        {"Range", "::ffff:10.1.2.3/64", "::/64"},
        {"Range", "0.0.0.0/0", "0.0.0.0/0"},
    };
    for (size_t i = 0; i < sizeof typed / sizeof typed[0]; i++) {
        char one[512];
        snprintf(one, sizeof one,
                 "{\"new\": [{\"type\": \"ban\", \"scope\": \"%s\", \"value\": \"%s\", "
                 "\"duration\": \"1h\", \"scenario\": \"s\"}]}",
                 typed[i].scope, typed[i].value);
        assert_int_equal(parse(one, &a), 0);
        if (a.added[0].kind != CG__CS_BAN || strcmp(fmt(&a.added[0].cidr), typed[i].want) != 0)
            fail_msg("%s %s: kind %d, %s, wanted %s", typed[i].scope, typed[i].value,
                     a.added[0].kind, fmt(&a.added[0].cidr), typed[i].want);
        cg__cs_answer_free(&a);
    }

    /* Both lists null, absent, or empty; whitespace around. */
    const char *empty[] = {"{\"new\": null, \"deleted\": null}", "{}", " {\"new\": []}\n",
                           "{\"new\": null, \"deleted\": [], \"other\": {\"x\": 1}}"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        assert_int_equal(parse(empty[i], &a), 0);
        assert_int_equal(a.nadded + a.ndeleted, 0);
        cg__cs_answer_free(&a);
    }
}

/* Answers refused whole: nothing of them may be applied. */
static void test_parse_bad_answers(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int rc;
    } bad[] = {
        {"", CG_EINVAL},
        {"not json", CG_EINVAL},
        {"{\"new\": [", CG_EINVAL},
        {"[]", CG_EINVAL},
        {"null", CG_EINVAL},
        {"\"new\"", CG_EINVAL},
        {"{\"new\": []} {}", CG_EINVAL},
        {"{\"new\": []} x", CG_EINVAL},
        {"{\"new\": \"192.0.2.1\"}", CG_EINVAL},
        {"{\"new\": {}}", CG_EINVAL},
        {"{\"deleted\": 1}", CG_EINVAL},
        {"{\"new\": [" D("ban", "Ip", "192.0.2.1", "1h", "x") ", 3]}", CG_EINVAL},
        {"{\"new\": [[]]}", CG_EINVAL},
        {"{\"deleted\": [null]}", CG_EINVAL},
        {"{\"new\": [{\"type\": \"a\x01\"}]}", CG_EINVAL},
        {"{\"new\": [{\"type\": \"a\\x\"}]}", CG_EINVAL},
        {"{\"new\": [{\"type\": \"a\\u12G4\"}]}", CG_EINVAL},
        {"{\"new\": [{\"type\": \"abc}]}", CG_EINVAL},
        {"{\"new\": [{\"id\": 01}]}", CG_EINVAL},
        {"{\"new\": [{\"id\": 1.}]}", CG_EINVAL},
        {"{\"new\": [{\"id\": -}]}", CG_EINVAL},
        {"{\"new\": [{\"id\": 1e}]}", CG_EINVAL},
        {"{\"new\": [{\"id\": tru}]}", CG_EINVAL},
        {"{\"new\": [{\"id\": 1,}]}", CG_EINVAL},
        {"{\"new\": [{}],}", CG_EINVAL},
        {"{\"new\": [{} {}]}", CG_EINVAL},
        {"{\"new\": [{\"id\" 1}]}", CG_EINVAL},
        {"{\"new\": null, \"new\": []}", CG_EINVAL},
        {"{'new': []}", CG_EINVAL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cg__cs_answer a;
        char err[256] = "";
        int rc = cg__cs_parse(bad[i].json, strlen(bad[i].json), &a, err, sizeof err);
        if (rc != bad[i].rc)
            fail_msg("%s: rc %d, wanted %d", bad[i].json, rc, bad[i].rc);
        assert_true(err[0] != '\0');
        assert_null(a.added);
        assert_null(a.deleted);
        assert_int_equal(a.nadded + a.ndeleted, 0);
    }
}

/* Decisions kept but marked invalid: bad fields, values out of their
 * scope's form, bounds. */
static void test_parse_invalid_decisions(void **state)
{
    (void)state;
    char long_value[CG_CS_VALUE_MAX + 2];
    memset(long_value, '1', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    const char *cases[] = {
        "{\"type\":\"ban\",\"scope\":\"Ip\",\"duration\":\"1h\",\"scenario\":\"s\"}",
        "{\"type\":\"ban\",\"scope\":\"Ip\",\"value\":7,\"duration\":\"1h\",\"scenario\":\"s\"}",
        "{\"type\":\"ban\",\"scope\":\"Ip\",\"value\":\"192.0.2.1\",\"scenario\":\"s\"}",
        "{\"type\":\"ban\",\"scope\":\"Ip\",\"value\":\"192.0.2.1\",\"duration\":\"1h\"}",
        "{\"type\":1,\"scope\":\"Ip\",\"value\":\"192.0.2.1\",\"duration\":\"1h\",\"scenario\":"
        "\"s\"}",
        D("ban", "Ip", "192.0.2.256", "1h", "s"),
        D("ban", "Range", "192.0.2.0/33", "1h", "s"),
        D("ban", "Range", "192.0.2.0/", "1h", "s"),
        D("ban", "Range", "192.0.2.0/024", "1h", "s"),
        D("ban", "Range", "192.0.2.0/2x", "1h", "s"),
        D("ban", "Range", "192.0.2.0/-1", "1h", "s"),
        D("ban", "Range", "192.0.2.0/24/24", "1h", "s"),
        D("ban", "Range", "2001:db8::/129", "1h", "s"),
        D("ban", "Range", "::ffff:192.0.2.0/129", "1h", "s"),
        D("ban", "Ip", "", "1h", "s"),
        D("ban", "Ip", " 192.0.2.1", "1h", "s"),
        D("ban", "Ip", "192.0.2.1", "1 h", "s"),
        D("ban", "Ip", "192.0.2.1", "h", "s"),
        D("ban", "Ip", "192.0.2.1", "", "s"),
        D("ban", "Ip", "192.0.2.1", "99999999999999999h", "s"),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] + 1; i++) {
        char json[1024];
        if (i < sizeof cases / sizeof cases[0])
            snprintf(json, sizeof json, "{\"new\": [%s]}", cases[i]);
        else
            snprintf(json, sizeof json, "{\"new\": [" D("ban", "Ip", "%s", "1h", "s") "]}",
                     long_value);
        cg__cs_answer a;
        if (parse(json, &a) != 0)
            fail_msg("%s: refused whole", json);
        assert_int_equal(a.nadded, 1);
        if (a.added[0].kind != CG__CS_INVALID)
            fail_msg("%s: kind %d, wanted invalid", json, a.added[0].kind);
        cg__cs_answer_free(&a);
    }
}

static void test_parse_bounds(void **state)
{
    (void)state;
    cg__cs_answer a;
    char err[256];
    /* nesting: 64 levels inside a skipped member pass, deeper is refused */
    char deep[400];
    for (int depth = 60; depth <= 70; depth += 10) {
        size_t o = (size_t)sprintf(deep, "{\"x\": ");
        for (int i = 0; i < depth; i++)
            deep[o++] = '[';
        for (int i = 0; i < depth; i++)
            deep[o++] = ']';
        strcpy(deep + o, "}");
        assert_int_equal(cg__cs_parse(deep, strlen(deep), &a, err, sizeof err),
                         depth == 60 ? 0 : CG_EINVAL);
        cg__cs_answer_free(&a);
    }
    /* Too large: refused before a byte is read. */
    static const char small[] = "{}";
    assert_int_equal(cg__cs_parse(small, (size_t)CG_CS_ANSWER_MAX + 1, &a, err, sizeof err),
                     CG_ERANGE);
    /* Decisions: the bound holds, one more is refused (new and deleted
     * together). */
    size_t n = CG_CS_DECISIONS_MAX;
    size_t len = 32 + 3 * (n + 1);
    char *json = malloc(len);
    assert_non_null(json);
    size_t o = (size_t)sprintf(json, "{\"deleted\":[{}],\"new\":[");
    for (size_t i = 0; i + 2 < n; i++) /* n - 1 in new, with the last */
        o += (size_t)sprintf(json + o, "{},");
    o += (size_t)sprintf(json + o, "{}]}");
    assert_int_equal(cg__cs_parse(json, o, &a, err, sizeof err), 0);
    assert_int_equal(a.nadded + a.ndeleted, n);
    assert_int_equal(a.added[0].kind, CG__CS_INVALID);
    cg__cs_answer_free(&a);
    memcpy(json + o - 2, ",{}]}", 5);
    o += 3;
    assert_int_equal(cg__cs_parse(json, o, &a, err, sizeof err), CG_ERANGE);
    assert_non_null(strstr(err, "decisions"));
    free(json);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int rc;
        int64_t ms;
    } cases[] = {
        {"3h59m58.123s", 0, 14398123},
        {"5m", 0, 300000},
        {"1h", 0, 3600000},
        {"-1.2s", 0, -1200},
        {"-24.03ms", 0, -24},
        {"0s", 0, 0},
        {"0", 0, 0},
        {"1.5ms", 0, 1},
        {"1500us", 0, 1},
        {"1500\xc2\xb5s", 0, 1},
        {"2000000ns", 0, 2},
        {"1h1m1s1ms", 0, 3661001},
        {"+2s", 0, 2000},
        {".5s", 0, 500},
        {"8760h", 0, 31536000000},
        {"", CG_EINVAL, 0},
        {"-", CG_EINVAL, 0},
        {"5", CG_EINVAL, 0},
        {"5x", CG_EINVAL, 0},
        {"s", CG_EINVAL, 0},
        {"1h ", CG_EINVAL, 0},
        {"1.s", 0, 1000},
        {"1..5s", CG_EINVAL, 0},
        {"9999999999999999999h", CG_ERANGE, 0},
        {"3000000h", CG_ERANGE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = -99;
        int rc = cg__cs_duration_ms(cases[i].s, strlen(cases[i].s), &ms);
        if (rc != cases[i].rc || (rc == 0 && ms != cases[i].ms))
            fail_msg("'%s': rc %d ms %lld, wanted rc %d ms %lld", cases[i].s, rc, (long long)ms,
                     cases[i].rc, (long long)cases[i].ms);
    }
}

static void test_reasons(void **state)
{
    (void)state;
    char buf[CG_CS_REASON_MAX + 1], in[300];
    /* cut on a character boundary: 127 ASCII bytes, then a 2-byte one */
    memset(in, 'a', 127);
    memcpy(in + 127, "\xc3\xa9", 2);
    assert_int_equal(cg__cs_reason(in, 129, buf), 127);
    assert_true(cg__ban_reason_ok(buf, strlen(buf)));
    /* 126 + the 2-byte one fits exactly */
    assert_int_equal(cg__cs_reason(in + 1, 128, buf), 128);
    assert_true(cg__ban_reason_ok(buf, 128));
    /* control characters and invalid UTF-8 become '?' */
    assert_int_equal(cg__cs_reason("a\nb\x01\xff\xc3(", 7, buf), 7);
    assert_string_equal(buf, "a?b??"
                             "?(");
    assert_true(cg__ban_reason_ok(buf, strlen(buf)));
    /* a long scenario through the parser */
    char json[600];
    memset(in, 'z', 200);
    in[200] = '\0';
    snprintf(json, sizeof json, "{\"new\": [" D("ban", "Ip", "192.0.2.1", "1h", "%s") "]}", in);
    cg__cs_answer a;
    assert_int_equal(parse(json, &a), 0);
    assert_int_equal(strlen(a.added[0].reason), CG_CS_REASON_MAX);
    cg__cs_answer_free(&a);
}

/* ------------------------------------------------------------------------
 * The applier, against a real runtime
 */

typedef struct fixture {
    uv_loop_t loop;
    cg_config cfg;
    cg__runtime *rt;
    cg_ruleset *never;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->cfg.max_bans = 1000;
    f->cfg.source_table_max = 1000;
    f->cfg.preview_callers = 16;
    char err[256];
    assert_int_equal(cg__runtime_new(&f->loop, &f->cfg, &f->rt, err, sizeof err), 0);
    assert_int_equal(cg_ruleset_new("never_ban", CG_DENY, &f->never), 0);
    cg_source src = {"test", 1};
    cg_cidr a = C("127.0.0.1/32"), b = C("::1/128");
    assert_int_equal(cg_ruleset_add(f->never, &a, CG_ALLOW, &src, NULL), 0);
    assert_int_equal(cg_ruleset_add(f->never, &b, CG_ALLOW, &src, NULL), 0);
    assert_int_equal(cg_ruleset_freeze(f->never), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cg__runtime_close(f->rt);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    cg__runtime_free(f->rt);
    uv_loop_close(&f->loop);
    cg_ruleset_free(f->never);
    free(f);
    return 0;
}

static cg__cs_result apply(fixture *f, const char *json, bool startup, int64_t now)
{
    cg__cs_answer a;
    cg__cs_result r;
    if (parse(json, &a) != 0)
        fail_msg("bad test answer %s", json);
    assert_int_equal(cg__crowdsec_apply(f->rt, f->never, &a, startup, now, &r), 0);
    cg__cs_answer_free(&a);
    return r;
}

/* The ban on exactly s, or origin -1 when none. */
static cg__ban find(fixture *f, const char *s)
{
    cg__ban b = {.origin = (cg__ban_origin)-1};
    cg_cidr c = C(s);
    if (cg__bans_find(cg__runtime_bans(f->rt), &c, &b) != 0)
        b.origin = (cg__ban_origin)-1;
    return b;
}

static void admin_ban(fixture *f, const char *s, int64_t now)
{
    cg__ban b = {.cidr = C(s), .origin = CG__BAN_ADMIN, .created_s = now, .expires_s = now + 600};
    strcpy(b.reason, "admin");
    char err[128];
    assert_int_equal(cg__runtime_ban(f->rt, &b, false, NULL, err, sizeof err), 0);
}

static void test_apply_new(void **state)
{
    fixture *f = *state;
    const int64_t now = 1800000000;
    cg__cs_result r = apply(
        f,
        "{\"new\": [" D("ban", "Ip", "192.0.2.1", "1h0m0.2s", "ssh-bf") "," D("ban", "Range", "198.51.100.0/24", "10000h", "r") "," D(
            "ban", "Ip", "2001:db8::1", "0.4s",
            "v6") "," D("ban", "Ip", "127.0.0.1", "1h",
                        "never") "," D("ban", "Range", "127.0.0.0/8", "1h",
                                       "never") "," D("ban", "Range", "::/0", "1h",
                                                      "never") "," D("captcha", "Ip", "192.0.2.2",
                                                                     "1h",
                                                                     "t") "," D("ban", "AS",
                                                                                "64496", "1h",
                                                                                "s") "," D("ban",
                                                                                           "Ip",
                                                                                           "nope",
                                                                                           "1h",
                                                                                           "i") "," D("ban",
                                                                                                      "Ip",
                                                                                                      "192.0.2.3",
                                                                                                      "-2s",
                                                                                                      "expired") "]}",
        false, now);
    assert_int_equal(r.added, 3);
    assert_int_equal(r.expired, 1);
    assert_int_equal(r.ignored[CG__CS_WHY_NEVER_BAN], 3);
    assert_int_equal(r.ignored[CG__CS_WHY_TYPE], 1);
    assert_int_equal(r.ignored[CG__CS_WHY_SCOPE], 1);
    assert_int_equal(r.ignored[CG__CS_WHY_INVALID], 1);
    assert_int_equal(r.failed + r.kept + r.replaced + r.deleted + r.lifted, 0);

    cg__ban b = find(f, "192.0.2.1/32");
    assert_int_equal(b.origin, CG__BAN_CROWDSEC);
    assert_string_equal(b.reason, "ssh-bf");
    assert_int_equal(b.created_s, now);
    assert_int_equal(b.expires_s, now + 3601); /* rounded up */
    assert_int_equal(find(f, "198.51.100.0/24").expires_s, now + CG_BAN_TTL_MAX_S);
    assert_int_equal(find(f, "2001:db8::1/128").expires_s, now + 1);
    assert_int_equal((int)find(f, "127.0.0.1/32").origin, -1);
    assert_int_equal((int)find(f, "192.0.2.2/32").origin, -1);
    assert_int_equal((int)find(f, "192.0.2.3/32").origin, -1);
    assert_int_equal(cg__bans_count(cg__runtime_bans(f->rt)), 3);
    assert_int_equal(cg__bans_count_origin(cg__runtime_bans(f->rt), CG__BAN_CROWDSEC), 3);

    /* The same decision again renews it. */
    r = apply(f, "{\"new\": [" D("ban", "Ip", "192.0.2.1", "2h", "again") "]}", false, now + 5);
    assert_int_equal(r.replaced, 1);
    assert_int_equal(find(f, "192.0.2.1/32").expires_s, now + 5 + 7200);
    assert_string_equal(find(f, "192.0.2.1/32").reason, "again");
}

static void test_apply_deleted_and_admin_bans(void **state)
{
    fixture *f = *state;
    const int64_t now = 1800000000;
    admin_ban(f, "203.0.113.5/32", now);
    cg__cs_result r = apply(f,
                            "{\"new\": [" D("ban", "Ip", "203.0.113.5", "1h", "cs") "," D(
                                "ban", "Ip", "203.0.113.6", "1h", "cs") "]}",
                            false, now);
    /* an admin ban is never replaced by a decision */
    assert_int_equal(r.kept, 1);
    assert_int_equal(r.added, 1);
    assert_int_equal(find(f, "203.0.113.5/32").origin, CG__BAN_ADMIN);
    assert_string_equal(find(f, "203.0.113.5/32").reason, "admin");

    /* deleted lifts only crowdsec bans, and only that exact prefix */
    r = apply(f,
              "{\"deleted\": [" D("ban", "Ip", "203.0.113.5", "-1s", "cs") "," D(
                  "ban", "Ip", "203.0.113.6", "-1s", "cs") "," D("ban", "Range", "203.0.113.0/24",
                                                                 "-1s", "cs") "]}",
              false, now);
    assert_int_equal(r.deleted, 1);
    assert_int_equal(find(f, "203.0.113.5/32").origin, CG__BAN_ADMIN);
    assert_int_equal((int)find(f, "203.0.113.6/32").origin, -1);
    /* the same deletion again (the API repeats them): nothing, no error */
    r = apply(f, "{\"deleted\": [" D("ban", "Ip", "203.0.113.6", "-1s", "cs") "]}", false, now);
    assert_int_equal(r.deleted, 0);

    /* deleted before new: a prefix deleted and added in one answer stays */
    r = apply(f,
              "{\"new\": [" D("ban", "Ip", "203.0.113.7", "1h", "new") "], \"deleted\": [" D(
                  "ban", "Ip", "203.0.113.7", "-1s", "old") "]}",
              false, now);
    assert_int_equal(find(f, "203.0.113.7/32").origin, CG__BAN_CROWDSEC);
    assert_string_equal(find(f, "203.0.113.7/32").reason, "new");
}

static void test_apply_startup_reconciles(void **state)
{
    fixture *f = *state;
    const int64_t now = 1800000000;
    apply(f,
          "{\"new\": [" D("ban", "Ip", "192.0.2.1", "1h",
                          "a") "," D("ban", "Ip", "192.0.2.2", "1h",
                                     "b") "," D("ban", "Range", "2001:db8::/32", "1h", "c") "]}",
          false, now);
    admin_ban(f, "192.0.2.9/32", now);
    /* a delta does not reconcile */
    cg__cs_result r =
        apply(f, "{\"new\": [" D("ban", "Ip", "192.0.2.1", "1h", "a") "]}", false, now);
    assert_int_equal(r.lifted, 0);
    assert_int_equal(cg__bans_count(cg__runtime_bans(f->rt)), 4);
    /* a startup answer is the whole truth for crowdsec bans */
    r = apply(f,
              "{\"new\": [" D("ban", "Ip", "192.0.2.1", "1h", "a") "," D("ban", "Ip", "192.0.2.7",
                                                                         "1h", "n") "]}",
              true, now);
    assert_int_equal(r.lifted, 2);
    assert_int_equal(r.added, 1);
    assert_int_equal(r.replaced, 1);
    assert_int_equal(find(f, "192.0.2.1/32").origin, CG__BAN_CROWDSEC);
    assert_int_equal(find(f, "192.0.2.7/32").origin, CG__BAN_CROWDSEC);
    assert_int_equal((int)find(f, "192.0.2.2/32").origin, -1);
    assert_int_equal((int)find(f, "2001:db8::/32").origin, -1);
    assert_int_equal(find(f, "192.0.2.9/32").origin, CG__BAN_ADMIN);
    /* an empty startup answer lifts every crowdsec ban, never the admin's */
    r = apply(f, "{\"new\": null, \"deleted\": null}", true, now);
    assert_int_equal(r.lifted, 2);
    assert_int_equal(cg__bans_count(cg__runtime_bans(f->rt)), 1);
    assert_int_equal(cg__bans_count_origin(cg__runtime_bans(f->rt), CG__BAN_CROWDSEC), 0);
}

static void test_apply_table_full(void **state)
{
    fixture *f = *state;
    cg__bans_set_max(cg__runtime_bans(f->rt), 2);
    cg__cs_result r = apply(
        f,
        "{\"new\": [" D("ban", "Ip", "192.0.2.1", "1h", "a") "," D(
            "ban", "Ip", "192.0.2.2", "1h", "b") "," D("ban", "Ip", "192.0.2.3", "1h", "c") "]}",
        true, 1800000000);
    assert_int_equal(r.added, 2);
    assert_int_equal(r.failed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad_answers),
        cmocka_unit_test(test_parse_invalid_decisions),
        cmocka_unit_test(test_parse_bounds),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test_setup_teardown(test_apply_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_deleted_and_admin_bans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_startup_reconciles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_table_full, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
