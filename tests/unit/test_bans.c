/* test_bans.c — the ban table and the rules of a ban (src/bans.c,
 * src/bans_request.c): add, replace, remove and find; the most specific
 * ban; expiry (lookups pass over expired bans, expiry removes and reports
 * each, a pass with nothing due looks at one ban, and a randomized run
 * against a model); the bound; listing order, `after` and `limit`;
 * IPv4-mapped addresses; RFC 3339 times; reasons; every class of bad
 * POST /bans body; and the never_ban overlap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bans.h"
#include "condgate/common.h"

static cg_cidr C(const char *s)
{
    cg_cidr c;
    char err[256];
    int rc = cg_cidr_parse(s, strlen(s), &c, err, sizeof err);
    if (rc != 0)
        fail_msg("cg_cidr_parse(%s): %s", s, err);
    return c;
}

static cg__ban B(const char *cidr, int64_t created, int64_t expires, const char *reason)
{
    cg__ban b = {
        .cidr = C(cidr), .origin = CG__BAN_ADMIN, .created_s = created, .expires_s = expires};
    snprintf(b.reason, sizeof b.reason, "%s", reason);
    return b;
}

static const char *fmt(const cg_cidr *c)
{
    static char buf[4][CG_CIDR_STRLEN];
    static int i;
    i = (i + 1) % 4;
    return cg_cidr_format(c, buf[i], sizeof buf[i]);
}

static void add_ok(cg__bans *t, const cg__ban *b)
{
    assert_int_equal(cg__bans_add(t, b, NULL), 0);
}

static void addb(cg__bans *t, cg__ban b)
{
    add_ok(t, &b);
}

/* ------------------------------------------------------------------------ */

static void test_add_replace_remove_find(void **state)
{
    (void)state;
    cg__bans *t = cg__bans_new(100);
    assert_non_null(t);
    uint64_t v0 = cg__bans_version(t);
    bool replaced = true;
    cg__ban b = B("10.0.0.0/8", 1000, 5000, "scan");
    assert_int_equal(cg__bans_add(t, &b, &replaced), 0);
    assert_false(replaced);
    assert_int_equal(cg__bans_count(t), 1);
    uint64_t v1 = cg__bans_version(t);
    assert_true(v1 != v0);

    cg__ban out;
    cg_cidr a = C("10.2.3.4");
    assert_true(cg__bans_match(t, &a, 2000, true, &out));
    assert_true(cg__bans_match(t, &a, 2000, true, NULL));
    assert_true(cg__bans_match(t, &a, 2000, false, NULL)); /* explain: not counted */
    assert_int_equal(cg__bans_find(t, &b.cidr, &out), 0);
    assert_int_equal(out.hits, 2);
    assert_string_equal(out.reason, "scan");

    /* replace: new reason, times, origin; hits kept */
    cg__ban r = B("10.0.0.0/8", 3000, 9000, "again");
    r.origin = CG__BAN_AUTO;
    r.hits = 77; /* ignored on replace */
    assert_int_equal(cg__bans_add(t, &r, &replaced), 0);
    assert_true(replaced);
    assert_true(cg__bans_version(t) != v1);
    assert_int_equal(cg__bans_count(t), 1);
    assert_int_equal(cg__bans_find(t, &b.cidr, &out), 0);
    assert_string_equal(out.reason, "again");
    assert_int_equal(out.origin, CG__BAN_AUTO);
    assert_int_equal(out.created_s, 3000);
    assert_int_equal(out.expires_s, 9000);
    assert_int_equal(out.hits, 2);

    /* a new ban takes its hits as given (the state file restores them) */
    cg__ban h = B("192.0.2.0/24", 1000, 9000, "");
    h.hits = 5;
    add_ok(t, &h);
    assert_int_equal(cg__bans_find(t, &h.cidr, &out), 0);
    assert_int_equal(out.hits, 5);
    assert_string_equal(out.reason, "");

    cg_cidr other = C("10.0.0.0/9");
    assert_int_equal(cg__bans_find(t, &other, &out), CG_ENOENT);
    assert_int_equal(cg__bans_remove(t, &other, NULL), CG_ENOENT);
    uint64_t v2 = cg__bans_version(t);
    memset(&out, 0, sizeof out);
    assert_int_equal(cg__bans_remove(t, &b.cidr, &out), 0);
    assert_string_equal(out.reason, "again");
    assert_true(cg__bans_version(t) != v2);
    assert_int_equal(cg__bans_find(t, &b.cidr, NULL), CG_ENOENT);
    assert_false(cg__bans_match(t, &a, 2000, true, NULL));
    assert_int_equal(cg__bans_count(t), 1);

    /* a ban no request could make */
    cg__ban bad = B("10.0.0.0/8", 0, 1, "");
    bad.origin = CG__BAN_ORIGINS;
    assert_int_equal(cg__bans_add(t, &bad, NULL), CG_EINVAL);
    cg__bans_free(t);
    cg__bans_free(NULL);
}

static void test_most_specific(void **state)
{
    (void)state;
    cg__bans *t = cg__bans_new(100);
    addb(t, B("0.0.0.0/0", 0, 100, "all"));
    addb(t, B("10.0.0.0/8", 0, 100, "eight"));
    addb(t, B("10.1.0.0/16", 0, 100, "sixteen"));
    addb(t, B("10.1.2.3/32", 0, 100, "host"));
    addb(t, B("2001:db8::/32", 0, 100, "v6-32"));
    addb(t, B("2001:db8:1::/48", 0, 100, "v6-48"));
    static const struct {
        const char *addr, *want;
    } cases[] = {
        {"10.1.2.3", "host"},        {"10.1.2.4", "sixteen"},    {"10.9.9.9", "eight"},
        {"11.0.0.1", "all"},         {"2001:db8:1::5", "v6-48"}, {"2001:db8:2::5", "v6-32"},
        {"::ffff:10.1.2.3", "host"}, {"2001:db9::1", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cg_cidr a = C(cases[i].addr);
        cg__ban out;
        bool hit = cg__bans_match(t, &a, 50, true, &out);
        if (cases[i].want == NULL) {
            assert_false(hit);
            continue;
        }
        assert_true(hit);
        assert_string_equal(out.reason, cases[i].want);
    }
    /* only the most specific ban counted the hit */
    cg__ban out;
    cg_cidr k = C("10.1.2.3/32");
    assert_int_equal(cg__bans_find(t, &k, &out), 0);
    assert_int_equal(out.hits, 2); /* 10.1.2.3 and ::ffff:10.1.2.3 */
    k = C("10.1.0.0/16");
    assert_int_equal(cg__bans_find(t, &k, &out), 0);
    assert_int_equal(out.hits, 1);
    k = C("10.0.0.0/8");
    assert_int_equal(cg__bans_find(t, &k, &out), 0);
    assert_int_equal(out.hits, 1);
    /* removing the /16 lets the /8 answer again */
    k = C("10.1.0.0/16");
    assert_int_equal(cg__bans_remove(t, &k, NULL), 0);
    cg_cidr a = C("10.1.2.4");
    assert_true(cg__bans_match(t, &a, 50, false, &out));
    assert_string_equal(out.reason, "eight");
    cg__bans_free(t);
}

/* IPv4-mapped prefixes and addresses, built by hand (cg_cidr_parse would
 * normalise them already). */
static void test_mapped(void **state)
{
    (void)state;
    cg__bans *t = cg__bans_new(10);
    cg__ban b = {.cidr = {.family = 6, .len = 104}, .created_s = 0, .expires_s = 100};
    b.cidr.addr[10] = 0xff;
    b.cidr.addr[11] = 0xff;
    b.cidr.addr[12] = 10;
    add_ok(t, &b);
    cg_cidr v4 = C("10.0.0.0/8");
    cg__ban out;
    assert_int_equal(cg__bans_find(t, &v4, &out), 0);
    assert_int_equal(out.cidr.family, 4);
    assert_int_equal(out.cidr.len, 8);
    cg_cidr m = {.family = 6, .len = 128};
    m.addr[10] = m.addr[11] = 0xff;
    m.addr[12] = 10;
    m.addr[15] = 7;
    assert_true(cg__bans_match(t, &m, 1, false, &out));
    assert_string_equal(fmt(&out.cidr), "10.0.0.0/8");
    cg_cidr a = C("10.0.0.7");
    assert_true(cg__bans_match(t, &a, 1, false, NULL));
    /* the same ban added as IPv4 replaces it */
    bool replaced = false;
    cg__ban again = B("10.0.0.0/8", 0, 200, "");
    assert_int_equal(cg__bans_add(t, &again, &replaced), 0);
    assert_true(replaced);
    assert_int_equal(cg__bans_count(t), 1);
    assert_int_equal(cg__bans_remove(t, &b.cidr, NULL), 0);
    assert_int_equal(cg__bans_count(t), 0);
    cg__bans_free(t);
}

/* ------------------------------------------------------------------------
 * Expiry
 */

typedef struct gone_log {
    char names[16][CG_CIDR_STRLEN];
    size_t n;
    int64_t latest;
} gone_log;

static void on_gone(void *arg, const cg__ban *ban)
{
    gone_log *g = arg;
    if (g->n < 16)
        cg_cidr_format(&ban->cidr, g->names[g->n], CG_CIDR_STRLEN);
    g->n++;
    if (ban->expires_s > g->latest)
        g->latest = ban->expires_s;
}

static void test_expiry(void **state)
{
    (void)state;
    cg__bans *t = cg__bans_new(100);
    addb(t, B("10.0.0.0/8", 0, 300, "long"));
    addb(t, B("10.1.2.3/32", 0, 100, "short"));
    addb(t, B("192.0.2.0/24", 0, 200, "mid"));
    cg_cidr a = C("10.1.2.3");
    cg__ban out;
    /* in force while now < expires */
    assert_true(cg__bans_match(t, &a, 99, false, &out));
    assert_string_equal(out.reason, "short");
    /* expired but not removed: passed over, the /8 still holds */
    assert_true(cg__bans_match(t, &a, 100, false, &out));
    assert_string_equal(out.reason, "long");
    cg_cidr c = C("192.0.2.9");
    assert_false(cg__bans_match(t, &c, 200, false, NULL));
    assert_true(cg__bans_match(t, &c, 199, false, NULL));

    gone_log g = {0};
    assert_int_equal(cg__bans_expire(t, 99, on_gone, &g), 0);
    assert_int_equal(g.n, 0);
    uint64_t v = cg__bans_version(t);
    assert_int_equal(cg__bans_expire(t, 200, on_gone, &g), 2);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.names[0], "10.1.2.3/32");
    assert_string_equal(g.names[1], "192.0.2.0/24");
    assert_true(cg__bans_version(t) != v);
    assert_int_equal(cg__bans_count(t), 1);
    assert_int_equal(cg__bans_expire(t, 10000, NULL, NULL), 1);
    assert_int_equal(cg__bans_count(t), 0);
    assert_int_equal(cg__bans_expire(t, 10000, on_gone, &g), 0);
    cg__bans_free(t);
}

/* With nothing due an expiry pass looks at one ban, however many there are. */
static void test_expiry_cheap_when_nothing_due(void **state)
{
    (void)state;
    cg__bans *t = cg__bans_new(20000);
    for (uint32_t i = 0; i < 20000; i++) {
        cg__ban b = {.cidr = {.family = 4, .len = 32},
                     .created_s = 0,
                     .expires_s = 1000 + (int64_t)(i * 7919u % 20000u)};
        b.cidr.addr[0] = 10;
        b.cidr.addr[1] = (uint8_t)(i >> 16);
        b.cidr.addr[2] = (uint8_t)(i >> 8);
        b.cidr.addr[3] = (uint8_t)i;
        add_ok(t, &b);
    }
    uint64_t before = cg__bans_expire_looked(t);
    for (int i = 0; i < 100; i++)
        assert_int_equal(cg__bans_expire(t, 999, NULL, NULL), 0);
    assert_int_equal(cg__bans_expire_looked(t) - before, 100);
    /* one due: looked at it and the next */
    before = cg__bans_expire_looked(t);
    assert_int_equal(cg__bans_expire(t, 1000, NULL, NULL), 1);
    assert_int_equal(cg__bans_expire_looked(t) - before, 2);
    cg__bans_free(t);
}

/* A model of the table for the randomized run: expiry per prefix. */
typedef struct model_ban {
    bool live;
    int64_t expires;
} model_ban;

static uint64_t rng = 88172645463325252u;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static cg_cidr prefix_of(uint32_t i)
{
    /* one prefix per i (i < 2^16): i sits above the host bits */
    cg_cidr c = {.family = 4, .len = (uint8_t)(24 + i % 9)};
    uint32_t a = 0x0a000000u | (i & 0xffffu) << 8;
    c.addr[0] = (uint8_t)(a >> 24);
    c.addr[1] = (uint8_t)(a >> 16);
    c.addr[2] = (uint8_t)(a >> 8);
    c.addr[3] = (uint8_t)a;
    return c;
}

typedef struct rand_ctx {
    model_ban *m;
    size_t bad;
    int64_t now;
    size_t gone;
} rand_ctx;

static void rand_gone(void *arg, const cg__ban *ban)
{
    rand_ctx *x = arg;
    x->gone++;
    if (ban->expires_s > x->now)
        x->bad++;
}

/* Random adds, replacements, removals and expiry passes against a model:
 * the heap, the swap-on-remove and the backward-shift deletion all keep
 * every ban reachable and expire exactly the due ones. */
static void test_expiry_randomized(void **state)
{
    (void)state;
    enum { N = 3000 };
    model_ban *m = calloc(N, sizeof *m);
    cg__bans *t = cg__bans_new(N);
    rand_ctx x = {.m = m};
    for (int64_t now = 0; now < 4000; now += 10) {
        for (int k = 0; k < 40; k++) {
            uint32_t i = rnd() % N;
            cg_cidr c = prefix_of(i);
            if (rnd() % 4 == 0) {
                int rc = cg__bans_remove(t, &c, NULL);
                assert_int_equal(rc, m[i].live ? 0 : CG_ENOENT);
                m[i].live = false;
            } else {
                cg__ban b = {
                    .cidr = c, .created_s = now, .expires_s = now + 1 + (int64_t)(rnd() % 500)};
                bool replaced;
                assert_int_equal(cg__bans_add(t, &b, &replaced), 0);
                assert_int_equal(replaced, m[i].live);
                m[i] = (model_ban){true, b.expires_s};
            }
        }
        x.now = now;
        x.gone = 0;
        size_t due = 0, live = 0;
        for (size_t i = 0; i < N; i++) {
            if (m[i].live && m[i].expires <= now) {
                due++;
                m[i].live = false;
            }
            live += m[i].live;
        }
        assert_int_equal(cg__bans_expire(t, now, rand_gone, &x), due);
        assert_int_equal(x.gone, due);
        assert_int_equal(x.bad, 0);
        assert_int_equal(cg__bans_count(t), live);
    }
    for (uint32_t i = 0; i < N; i++) {
        cg_cidr c = prefix_of(i);
        cg__ban out;
        int rc = cg__bans_find(t, &c, &out);
        assert_int_equal(rc, m[i].live ? 0 : CG_ENOENT);
        if (rc == 0)
            assert_int_equal(out.expires_s, m[i].expires);
    }
    cg__bans_free(t);
    free(m);
}

/* ------------------------------------------------------------------------
 * Bound, newest, listing
 */

static void test_bound(void **state)
{
    (void)state;
    cg__bans *t = cg__bans_new(3);
    addb(t, B("10.0.0.1", 0, 100, ""));
    addb(t, B("10.0.0.2", 0, 100, ""));
    addb(t, B("10.0.0.3", 0, 100, ""));
    cg__ban b4 = B("10.0.0.4", 0, 100, "");
    assert_int_equal(cg__bans_add(t, &b4, NULL), CG_ERANGE);
    assert_int_equal(cg__bans_count(t), 3);
    bool replaced = false;
    cg__ban r = B("10.0.0.2", 0, 500, "replaced at the bound");
    assert_int_equal(cg__bans_add(t, &r, &replaced), 0);
    assert_true(replaced);
    cg__bans_set_max(t, 4);
    assert_int_equal(cg__bans_add(t, &b4, NULL), 0);
    cg__bans_set_max(t, 2); /* what is there stays */
    assert_int_equal(cg__bans_count(t), 4);
    cg__ban b5 = B("10.0.0.5", 0, 100, "");
    assert_int_equal(cg__bans_add(t, &b5, NULL), CG_ERANGE);
    assert_int_equal(cg__bans_add(t, &r, NULL), 0);
    cg__bans_free(t);
}

static void test_newest(void **state)
{
    (void)state;
    cg__bans *t = cg__bans_new(10);
    cg__ban out;
    assert_int_equal(cg__bans_newest(t, &out), CG_ENOENT);
    addb(t, B("10.0.0.1", 100, 1000, "a"));
    addb(t, B("10.0.0.2", 300, 1000, "b"));
    addb(t, B("10.0.0.3", 200, 1000, "c"));
    assert_int_equal(cg__bans_newest(t, &out), 0);
    assert_string_equal(out.reason, "b");
    cg_cidr k = C("10.0.0.2");
    assert_int_equal(cg__bans_remove(t, &k, NULL), 0);
    assert_int_equal(cg__bans_newest(t, &out), 0);
    assert_string_equal(out.reason, "c");
    addb(t, B("10.0.0.1", 400, 1000, "a2")); /* replaced, newer */
    assert_int_equal(cg__bans_newest(t, &out), 0);
    assert_string_equal(out.reason, "a2");
    cg__bans_free(t);
}

typedef struct listed {
    char s[32][CG_CIDR_STRLEN];
    size_t n, stop_after;
} listed;

static bool on_list(void *arg, const cg__ban *ban)
{
    listed *l = arg;
    cg_cidr_format(&ban->cidr, l->s[l->n], CG_CIDR_STRLEN);
    l->n++;
    return l->stop_after == 0 || l->n < l->stop_after;
}

static void test_list_order(void **state)
{
    (void)state;
    static const char *const order[] = {
        "0.0.0.0/0",     "10.0.0.0/8",    "10.0.0.0/16",        "10.0.0.0/32", "10.0.0.1/32",
        "10.1.0.0/16",   "192.0.2.0/24",  "255.255.255.255/32", "::/0",        "::1/128",
        "2001:db8::/32", "2001:db8::/48", "2001:db8:0:1::/64",  "fe80::/10",
    };
    enum { N = sizeof order / sizeof order[0] };
    cg__bans *t = cg__bans_new(100);
    for (size_t i = 0; i < N; i++) /* added in a scrambled order */
        addb(t, B(order[(i * 5 + 3) % N], 0, 100, ""));
    listed l = {0};
    assert_int_equal(cg__bans_list(t, NULL, 1000, on_list, &l), N);
    for (size_t i = 0; i < N; i++)
        assert_string_equal(l.s[i], order[i]);

    /* limit and after, page by page */
    cg_cidr after;
    size_t seen = 0;
    for (int page = 0; seen < N; page++) {
        memset(&l, 0, sizeof l);
        size_t got = cg__bans_list(t, page ? &after : NULL, 4, on_list, &l);
        assert_true(got == 4 || got == N - seen);
        for (size_t i = 0; i < got; i++)
            assert_string_equal(l.s[i], order[seen + i]);
        seen += got;
        after = C(l.s[got - 1]);
    }
    /* after a prefix that is not banned: strictly after it in the order */
    memset(&l, 0, sizeof l);
    after = C("10.0.0.0/24");
    assert_int_equal(cg__bans_list(t, &after, 2, on_list, &l), 2);
    assert_string_equal(l.s[0], "10.0.0.0/32");
    assert_string_equal(l.s[1], "10.0.0.1/32");
    /* past the last one */
    memset(&l, 0, sizeof l);
    after = C("ffff::/16");
    assert_int_equal(cg__bans_list(t, &after, 10, on_list, &l), 0);
    /* fn stops early */
    memset(&l, 0, sizeof l);
    l.stop_after = 3;
    assert_int_equal(cg__bans_list(t, NULL, 10, on_list, &l), 3);
    assert_int_equal(cg__bans_list(t, NULL, 0, on_list, &l), 0);

    /* the snapshot: every ban in the same order */
    cg__ban *v = NULL;
    size_t n = 0;
    uint64_t ver = 0;
    assert_int_equal(cg__bans_snapshot(t, &v, &n, &ver), 0);
    assert_int_equal(n, N);
    assert_int_equal(ver, cg__bans_version(t));
    for (size_t i = 0; i < N; i++)
        assert_string_equal(fmt(&v[i].cidr), order[i]);
    free(v);
    cg__bans_free(t);
}

/* A larger table: list and snapshot agree with each other and are sorted. */
static void test_list_large(void **state)
{
    (void)state;
    enum { N = 5000 };
    cg__bans *t = cg__bans_new(N);
    for (uint32_t i = 0; i < N; i++) {
        cg__ban b = {.cidr = prefix_of(rnd() & 0xffffu), .expires_s = 100};
        if (i % 3 == 0) {
            b.cidr = (cg_cidr){.family = 6, .len = 64};
            b.cidr.addr[0] = 0x20;
            b.cidr.addr[1] = 0x01;
            b.cidr.addr[5] = (uint8_t)rnd();
            b.cidr.addr[7] = (uint8_t)rnd();
        }
        assert_int_equal(cg__bans_add(t, &b, NULL), 0);
    }
    cg__ban *v = NULL;
    size_t n = 0;
    assert_int_equal(cg__bans_snapshot(t, &v, &n, NULL), 0);
    assert_int_equal(n, cg__bans_count(t));
    for (size_t i = 1; i < n; i++) {
        const cg_cidr *p = &v[i - 1].cidr, *q = &v[i].cidr;
        int c = p->family != q->family ? (p->family < q->family ? -1 : 1)
                                       : memcmp(p->addr, q->addr, 16);
        assert_true(c < 0 || (c == 0 && p->len < q->len));
    }
    listed l = {0};
    cg_cidr after = v[n / 2].cidr;
    assert_int_equal(cg__bans_list(t, &after, 20, on_list, &l), 20);
    for (size_t i = 0; i < 20; i++)
        assert_string_equal(l.s[i], fmt(&v[n / 2 + 1 + i].cidr));
    free(v);
    cg__bans_free(t);
}

/* ------------------------------------------------------------------------
 * Times and reasons
 */

static void test_time(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t t;
    } known[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1969-12-31T23:59:59Z", -1},
        {"2000-02-29T00:00:00Z", 951782400},
        {"2024-02-29T12:34:56Z", 1709210096},
        {"2100-03-01T00:00:00Z", 4107542400},
        {"2026-12-05T19:00:00Z", 1796497200},
        {"9999-12-31T23:59:59Z", 253402300799},
        {"0001-01-01T00:00:00Z", -62135596800},
    };
    char buf[CG_BAN_TIME_STRLEN];
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        int64_t t = 12345;
        assert_int_equal(cg__ban_time_parse(known[i].s, &t), 0);
        assert_int_equal(t, known[i].t);
        assert_string_equal(cg__ban_time_format(known[i].t, buf, sizeof buf), known[i].s);
    }
    /* clamped outside 0001..9999 */
    assert_string_equal(cg__ban_time_format(INT64_MAX, buf, sizeof buf), "9999-12-31T23:59:59Z");
    assert_string_equal(cg__ban_time_format(INT64_MIN, buf, sizeof buf), "0001-01-01T00:00:00Z");
    /* round trip over 200 years, a few hours apart */
    for (int64_t t = -1000000000; t < 5000000000; t += 3600 * 7 + 13) {
        int64_t back;
        cg__ban_time_format(t, buf, sizeof buf);
        assert_int_equal(cg__ban_time_parse(buf, &back), 0);
        assert_int_equal(back, t);
    }
    static const char *const bad[] = {
        "",
        "2023-02-29T00:00:00Z", /* not a leap year */
        "2100-02-29T00:00:00Z", /* century, not a leap year */
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-12-00T00:00:00Z",
        "2026-12-05T24:00:00Z",
        "2026-12-05T23:60:00Z",
        "2026-12-05T23:59:60Z", /* no leap seconds */
        "0000-12-05T19:00:00Z",
        "2026-12-05t19:00:00Z",
        "2026-12-05T19:00:00z",
        "2026-12-05T19:00:00",
        "2026-12-05T19:00:00+00:00",
        "2026-12-05 19:00:00Z",
        "2026-12-05T19:00:00.5Z",
        "2026-12-5T19:00:00Z",
        "+026-12-05T19:00:00Z",
        "2026-12-05T19:00:00Z ",
        "2026-1a-05T19:00:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t t;
        if (cg__ban_time_parse(bad[i], &t) != CG_EINVAL)
            fail_msg("accepted bad time \"%s\"", bad[i]);
    }
}

static void test_reason(void **state)
{
    (void)state;
    static const char *const good[] = {
        "",
        "scan",
        "port scan from \"x\" \\ y",
        "caf\xc3\xa9",
        "\xe6\x97\xa5\xe6\x9c\xac",
        "\xf0\x9f\x9a\xab",
        "\xf4\x8f\xbf\xbf" /* U+10FFFF */,
        "\xed\x9f\xbf" /* U+D7FF */,
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!cg__ban_reason_ok(good[i], strlen(good[i])))
            fail_msg("refused good reason %zu", i);
    static const char *const bad[] = {
        "tab\there",
        "nl\n",
        "\x01",
        "del\x7f",
        "\x80",
        "\xff",
        "\xc0\xaf",
        "\xc1\xbf",
        "\xe0\x80\xaf",
        "\xf0\x80\x80\xaf",
        "\xed\xa0\x80" /* U+D800 */,
        "\xed\xbf\xbf" /* U+DFFF */,
        "\xf4\x90\x80\x80" /* U+110000 */,
        "\xf5\x80\x80\x80",
        "\xe6\x97",
        "\xc3",
        "\xc3\x28",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (cg__ban_reason_ok(bad[i], strlen(bad[i])))
            fail_msg("accepted bad reason %zu", i);
    assert_false(cg__ban_reason_ok("a\0b", 3));
    char r[CG_BAN_REASON_MAX + 2];
    memset(r, 'x', sizeof r);
    assert_true(cg__ban_reason_ok(r, CG_BAN_REASON_MAX));
    assert_false(cg__ban_reason_ok(r, CG_BAN_REASON_MAX + 1));
    /* 64 two-byte characters are 128 bytes */
    for (int i = 0; i < 64; i++)
        memcpy(r + 2 * i, "\xc3\xa9", 2);
    assert_true(cg__ban_reason_ok(r, 128));
    assert_false(cg__ban_reason_ok(r, 127)); /* cut inside a character */
    assert_string_equal(cg__ban_origin_name(CG__BAN_CROWDSEC), "crowdsec");
    assert_int_equal(cg__ban_origin_parse("auto"), CG__BAN_AUTO);
    assert_int_equal(cg__ban_origin_parse("Admin"), -1);
}

/* ------------------------------------------------------------------------
 * POST /bans bodies
 */

static int parse(const char *body, cg__ban_request **out, size_t *n, char *err)
{
    return cg__ban_request_parse(body, strlen(body), out, n, err, 256);
}

static void test_request_good(void **state)
{
    (void)state;
    cg__ban_request *v = NULL;
    size_t n = 0;
    char err[256] = "";
    assert_int_equal(parse(" {\"cidr\": \"198.51.100.0/24\", \"ttl_s\": 3600, \"reason\": "
                           "\"text \\u00e9\"}\n",
                           &v, &n, err),
                     0);
    assert_int_equal(n, 1);
    assert_string_equal(fmt(&v[0].cidr), "198.51.100.0/24");
    assert_int_equal(v[0].ttl_s, 3600);
    assert_string_equal(v[0].reason, "text \xc3\xa9");
    free(v);
    assert_int_equal(parse("[{\"ttl_s\": 1, \"cidr\": \"2001:db8::/32\"},"
                           "{\"cidr\": \"10.0.0.1\", \"ttl_s\": 31536000, \"reason\": \"\"},"
                           "{\"cidr\": \"10.0.0.1\", \"ttl_s\": 5}]",
                           &v, &n, err),
                     0);
    assert_int_equal(n, 3);
    assert_string_equal(fmt(&v[0].cidr), "2001:db8::/32");
    assert_string_equal(v[0].reason, "");
    assert_int_equal(v[1].ttl_s, 31536000);
    /* the same prefix twice: both returned in order; added in turn, the last wins */
    assert_string_equal(fmt(&v[2].cidr), "10.0.0.1/32");
    assert_int_equal(v[2].ttl_s, 5);
    free(v);
}

static void test_request_bad(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int rc;
        const char *msg; /* a part of the message */
    } cases[] = {
        {"", CG_EINVAL, "empty body"},
        {"  \n ", CG_EINVAL, "empty body"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60", CG_EINVAL, "bad JSON"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60} x", CG_EINVAL, "bad JSON"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60}{}", CG_EINVAL, "bad JSON"},
        {"{\"cidr\": \"10.0.0.256\", \"ttl_s\": 60}", CG_EINVAL, "cidr: "},
        {"{\"cidr\": \"10.0.0.1/8\", \"ttl_s\": 60}", CG_EINVAL, "host bits set"},
        {"{\"cidr\": \"all\", \"ttl_s\": 60}", CG_EINVAL, "cidr: "},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 0}", CG_EINVAL, "ttl_s must be an integer"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": -5}", CG_EINVAL, "ttl_s must be an integer"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 31536001}", CG_EINVAL, "from 1 to 31536000"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 1e300}", CG_EINVAL, "ttl_s must be"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 1.5}", CG_EINVAL, "ttl_s must be"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": \"60\"}", CG_EINVAL, "ttl_s must be"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": true}", CG_EINVAL, "ttl_s must be"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": null}", CG_EINVAL, "ttl_s must be"},
        {"{\"cidr\": 10, \"ttl_s\": 60}", CG_EINVAL, "cidr must be a string"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60, \"reason\": 5}", CG_EINVAL,
         "reason must be a string"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60, \"reason\": \"\\u0007\"}", CG_EINVAL,
         "reason must be at most 128 bytes"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60, \"reason\": \"\xc0\xaf\"}", CG_EINVAL,
         "reason must be at most 128 bytes"},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60, \"why\": \"x\"}", CG_EINVAL,
         "unknown key \"why\""},
        {"{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60, \"ttl_s\": 70}", CG_EINVAL,
         "key \"ttl_s\" given twice"},
        {"{\"cidr\": \"10.0.0.0/8\", \"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60}", CG_EINVAL,
         "given twice"},
        {"{\"ttl_s\": 60}", CG_EINVAL, "missing \"cidr\""},
        {"{\"cidr\": \"10.0.0.0/8\"}", CG_EINVAL, "missing \"ttl_s\""},
        {"[]", CG_EINVAL, "empty array"},
        {"\"10.0.0.0/8\"", CG_EINVAL, "ban object or an array"},
        {"42", CG_EINVAL, "ban object or an array"},
        {"[{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60}, 5]", CG_EINVAL,
         "bans[1]: a ban must be a JSON object"},
        {"[{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60}, {\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60},"
         " {\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60}, {\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 1.5}]",
         CG_EINVAL, "bans[3]: ttl_s must be an integer from 1 to 31536000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cg__ban_request *v = (cg__ban_request *)1;
        size_t n = 99;
        char err[256] = "";
        int rc = parse(cases[i].body, &v, &n, err);
        if (rc != cases[i].rc || strstr(err, cases[i].msg) == NULL || strchr(err, '\n'))
            fail_msg("body %zu (%s): rc %d, message \"%s\"; wanted %d with \"%s\"", i,
                     cases[i].body, rc, err, cases[i].rc, cases[i].msg);
        assert_null(v);
        assert_int_equal(n, 0);
    }
    /* a reason of 129 bytes */
    char body[512];
    char reason[130];
    memset(reason, 'r', 129);
    reason[129] = '\0';
    snprintf(body, sizeof body, "{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60, \"reason\": \"%s\"}",
             reason);
    cg__ban_request *v;
    size_t n;
    char err[256];
    assert_int_equal(parse(body, &v, &n, err), CG_EINVAL);
    assert_non_null(strstr(err, "reason must be at most 128 bytes"));
    reason[128] = '\0';
    snprintf(body, sizeof body, "{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60, \"reason\": \"%s\"}",
             reason);
    assert_int_equal(parse(body, &v, &n, err), 0);
    free(v);
    /* a NUL byte inside the body */
    static const char nul[] = "{\"cidr\": \"10.0.0.0/8\", \"ttl_s\": 60, \"reason\": \"a\0b\"}";
    assert_int_equal(cg__ban_request_parse(nul, sizeof nul - 1, &v, &n, err, sizeof err),
                     CG_EINVAL);
}

/* Arrays past CG_BAN_REQUEST_MAX and bodies past CG_BAN_BODY_MAX. */
static void test_request_bounds(void **state)
{
    (void)state;
    static const char one[] = "{\"cidr\":\"10.0.0.0/8\",\"ttl_s\":60},";
    size_t cap = (CG_BAN_REQUEST_MAX + 1) * (sizeof one - 1) + 8;
    char *body = malloc(cap);
    cg__ban_request *v;
    size_t n;
    char err[256];
    for (size_t count = CG_BAN_REQUEST_MAX; count <= CG_BAN_REQUEST_MAX + 1; count++) {
        size_t len = 0;
        body[len++] = '[';
        for (size_t i = 0; i < count; i++) {
            memcpy(body + len, one, sizeof one - 1);
            len += sizeof one - 1;
        }
        body[len - 1] = ']';
        int rc = cg__ban_request_parse(body, len, &v, &n, err, sizeof err);
        if (count == CG_BAN_REQUEST_MAX) {
            assert_int_equal(rc, 0);
            assert_int_equal(n, CG_BAN_REQUEST_MAX);
            free(v);
        } else {
            assert_int_equal(rc, CG_ERANGE);
            assert_non_null(strstr(err, "at most 10000 bans"));
        }
    }
    free(body);
    size_t big = CG_BAN_BODY_MAX + 1;
    body = malloc(big);
    memset(body, ' ', big);
    memcpy(body, "{\"cidr\":\"10.0.0.0/8\",\"ttl_s\":60}", 32);
    assert_int_equal(cg__ban_request_parse(body, big, &v, &n, err, sizeof err), CG_ERANGE);
    assert_non_null(strstr(err, "larger than"));
    assert_int_equal(cg__ban_request_parse(body, big - 1, &v, &n, err, sizeof err), 0);
    free(v);
    free(body);
}

/* ------------------------------------------------------------------------
 * never_ban
 */

static void test_overlap(void **state)
{
    (void)state;
    cg_ruleset *rs;
    assert_int_equal(cg_ruleset_new("never_ban", CG_DENY, &rs), 0);
    cg_source src = {"test", 1};
    cg_cidr a = C("127.0.0.1/32"), b = C("::1/128");
    assert_int_equal(cg_ruleset_add(rs, &a, CG_ALLOW, &src, NULL), 0);
    assert_int_equal(cg_ruleset_add(rs, &b, CG_ALLOW, &src, NULL), 0);
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    static const struct {
        const char *c;
        const char *hit; /* NULL: no overlap */
    } cases[] = {
        {"127.0.0.0/8", "127.0.0.1/32"},
        {"127.0.0.2/32", NULL},
        {"0.0.0.0/0", "127.0.0.1/32"},
        {"::/0", "::1/128"},
        {"127.0.0.1/32", "127.0.0.1/32"},
        {"::1/128", "::1/128"},
        {"::/127", "::1/128"},
        {"::2/127", NULL},
        {"126.0.0.0/8", NULL},
        {"2001:db8::/32", NULL},
        {"::ffff:127.0.0.0/104", "127.0.0.1/32"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cg_cidr c = C(cases[i].c), hit = {0};
        bool o = cg__bans_overlap(rs, &c, &hit);
        if (o != (cases[i].hit != NULL))
            fail_msg("%s: overlap %d", cases[i].c, o);
        if (o)
            assert_string_equal(fmt(&hit), cases[i].hit);
    }
    cg_ruleset_free(rs);
    /* a wider protected prefix contains the ban */
    assert_int_equal(cg_ruleset_new("never_ban", CG_DENY, &rs), 0);
    cg_cidr w = C("10.0.0.0/8"), d = C("192.0.2.0/24");
    assert_int_equal(cg_ruleset_add(rs, &w, CG_ALLOW, &src, NULL), 0);
    assert_int_equal(cg_ruleset_add(rs, &d, CG_DENY, &src, NULL), 0);
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    cg_cidr c = C("10.1.2.3");
    assert_true(cg__bans_overlap(rs, &c, NULL));
    c = C("192.0.2.7"); /* a deny entry protects nothing */
    assert_false(cg__bans_overlap(rs, &c, NULL));
    cg_ruleset_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_replace_remove_find),
        cmocka_unit_test(test_most_specific),
        cmocka_unit_test(test_mapped),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_expiry_cheap_when_nothing_due),
        cmocka_unit_test(test_expiry_randomized),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_newest),
        cmocka_unit_test(test_list_order),
        cmocka_unit_test(test_list_large),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_request_good),
        cmocka_unit_test(test_request_bad),
        cmocka_unit_test(test_request_bounds),
        cmocka_unit_test(test_overlap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
