/* test_pf_compile.c — the kernel prefilter's tables (prefilter_compile.c)
 * against the one judge: for random sets and random callers, the table says
 * what cg__policy_judge says, listener by listener. No kernel needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "condgate/config.h"
#include "gen.h"
#include "policy.h"
#include "prefilter_compile.h"
#include "testsys.h"

/* A small deterministic generator (xorshift64*), seed printed on failure;
 * CG_TEST_SEED overrides it. */
static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static uint64_t seed(void)
{
    const char *s = getenv("CG_TEST_SEED");
    uint64_t v = s != NULL ? strtoull(s, NULL, 10) : 20261202u;
    print_message("seed %llu (CG_TEST_SEED to repeat)\n", (unsigned long long)v);
    rng_state = v ? v : 1;
    return v;
}

/* A random address, often near 127.0.0.0/8, 10/8 or 2001:db8::/32 so that
 * prefixes overlap; a quarter IPv6, some of them IPv4-mapped. */
static cg_cidr random_addr(void)
{
    cg_cidr c;
    memset(&c, 0, sizeof(c));
    uint64_t r = rnd();
    if (r % 4 != 0) {
        uint32_t a = (uint32_t)rnd();
        if (r % 3 == 0)
            a = (a & 0x00ffffffu) | 0x7f000000u;
        else if (r % 5 == 0)
            a = (a & 0x00ffffffu) | 0x0a000000u;
        c.family = 4;
        c.len = 32;
        c.addr[0] = (uint8_t)(a >> 24);
        c.addr[1] = (uint8_t)(a >> 16);
        c.addr[2] = (uint8_t)(a >> 8);
        c.addr[3] = (uint8_t)a;
        return c;
    }
    c.family = 6;
    c.len = 128;
    for (int i = 0; i < 16; i += 8) {
        uint64_t w = rnd();
        memcpy(c.addr + i, &w, 8);
    }
    if (r % 3 == 0) { /* 2001:db8::/32 */
        c.addr[0] = 0x20;
        c.addr[1] = 0x01;
        c.addr[2] = 0x0d;
        c.addr[3] = 0xb8;
    } else if (r % 5 == 0) { /* ::ffff:a.b.c.d */
        memset(c.addr, 0, 10);
        c.addr[10] = c.addr[11] = 0xff;
        c.addr[12] = 0x7f;
    }
    return c;
}

static cg_ruleset *random_set(const char *name, unsigned n)
{
    cg_ruleset *rs = NULL;
    assert_int_equal(cg_ruleset_new(name, rnd() % 2 ? CG_ALLOW : CG_DENY, &rs), 0);
    for (unsigned i = 0; i < n; i++) {
        cg_cidr c = random_addr();
        unsigned max = c.family == 4 ? 32 : 128;
        c.len = (uint8_t)(c.family == 4 ? 8 + rnd() % 25 : 16 + rnd() % 113);
        for (unsigned bit = c.len; bit < max; bit++)
            c.addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
        cg_source src = {"random.txt", i + 1};
        assert_int_equal(cg_ruleset_add(rs, &c, rnd() % 2 ? CG_ALLOW : CG_DENY, &src, NULL), 0);
    }
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    return rs;
}

/* A generation of nl listeners over nsets random sets, made the way
 * cg_config_load makes one so that the generation's last unref frees it. */
static cg__gen *random_gen(size_t nsets, size_t nl, unsigned entries)
{
    cg_config *cfg = calloc(1, sizeof(*cfg));
    assert_non_null(cfg);
    cfg->path = strdup("random.ini");
    cfg->rulesets = calloc(nsets, sizeof(*cfg->rulesets));
    cfg->listeners = calloc(nl, sizeof(*cfg->listeners));
    assert_non_null(cfg->rulesets);
    assert_non_null(cfg->listeners);
    cfg->nrulesets = nsets;
    cfg->nlisteners = nl;
    size_t lmap[8];
    for (size_t s = 0; s < nsets; s++) {
        char name[32];
        snprintf(name, sizeof(name), "set%zu", s);
        cfg->rulesets[s] = random_set(name, entries);
    }
    for (size_t i = 0; i < nl; i++) {
        cfg->listeners[i].name = strdup("l");
        cfg->listeners[i].echo = true;
        cfg->listeners[i].ruleset = i % nsets;
        lmap[i] = i;
    }
    cg__gen *gen = cg__gen_new(cfg, 1, lmap, nl);
    assert_non_null(gen);
    return gen;
}

static void check_caller(const cg__gen *gen, const cg__pf_table *t, const uint32_t *modes,
                         size_t slot, const cg_cidr *a)
{
    const cg__policy p = {.set = gen->cfg->rulesets[cg__gen_listener(gen, slot)->ruleset]};
    cg__judgement j;
    uint32_t mode;
    cg__policy_judge(&p, a, &j);
    uint32_t v = cg__pf_lookup(t, (uint32_t)slot, a, &mode);
    assert_int_equal(mode, modes[slot]);
    if (modes[slot] == CG_PF_MODE_OFF)
        return;
    if (j.admit != (v == 0) || (!j.admit && v != 1u + (uint32_t)j.reason)) {
        char text[CG_CIDR_STRLEN];
        cg_cidr_format(a, text, sizeof(text));
        fail_msg("slot %zu, caller %s: judge %s (reason %d), table value %u", slot, text,
                 j.admit ? "admits" : "refuses", (int)j.reason, v);
    }
}

/* One interval's first address minus one: the last address of the one
 * before, where an off-by-one in the search would show. */
static int collect_start(void *arg, const cg_cidr *start)
{
    cg_cidr *out = arg;
    size_t *n = (size_t *)(out + 4096);
    if (*n < 4096)
        out[(*n)++] = *start;
    return 0;
}

static void random_tables_agree_with_judge(void **state)
{
    (void)state;
    seed();
    for (int round = 0; round < 6; round++) {
        size_t nl = 5;
        cg__gen *gen = random_gen(3, nl, round < 3 ? 300 : 3000);
        uint32_t modes[5] = {CG_PF_MODE_REFUSE, CG_PF_MODE_DROP, CG_PF_MODE_OFF, CG_PF_MODE_REFUSE,
                             CG_PF_MODE_REFUSE};
        cg__pf_table t = {0};
        assert_int_equal(cg__pf_compile(gen, modes, &t), 0);
        /* Listeners 0 and 3 share set0: one copy of its intervals. */
        assert_int_equal(t.elems[0].u.hdr.v4_first, t.elems[3].u.hdr.v4_first);
        for (int k = 0; k < 20000; k++) {
            cg_cidr a = random_addr();
            for (size_t slot = 0; slot < nl; slot++)
                check_caller(gen, &t, modes, slot, &a);
        }
        /* Every boundary of every set, and the address before it. */
        static cg_cidr starts[4096 + 1];
        for (size_t s = 0; s < gen->cfg->nrulesets; s++)
            for (int fam = 4; fam <= 6; fam += 2) {
                size_t *n = (size_t *)(starts + 4096);
                *n = 0;
                assert_int_equal(
                    cg_ruleset_each_interval(gen->cfg->rulesets[s], fam, collect_start, starts), 0);
                assert_true(*n >= 1);
                for (int b = 0; b < 16; b++) /* the first interval starts at 0 */
                    assert_int_equal(starts[0].addr[b], 0);
                for (size_t i = 0; i < *n; i++) {
                    cg_cidr a = starts[i], before = starts[i];
                    int byte = fam == 4 ? 3 : 15;
                    while (byte >= 0 && before.addr[byte]-- == 0)
                        byte--;
                    for (size_t slot = s; slot < nl; slot += 3) {
                        check_caller(gen, &t, modes, slot, &a);
                        if (i > 0)
                            check_caller(gen, &t, modes, slot, &before);
                    }
                }
            }
        cg__pf_table_free(&t);
        cg__gen_unref(gen);
    }
}

/* Merging: a set of one deny prefix is three intervals for IPv4 (before,
 * in, after) and one for IPv6, whatever the range table holds. */
static void merged_runs(void **state)
{
    (void)state;
    cg_config *cfg = calloc(1, sizeof(*cfg));
    assert_non_null(cfg);
    cfg->path = strdup("one.ini");
    cfg->rulesets = calloc(1, sizeof(*cfg->rulesets));
    cfg->listeners = calloc(1, sizeof(*cfg->listeners));
    cfg->nrulesets = cfg->nlisteners = 1;
    cg_ruleset *rs = NULL;
    char err[256];
    cg_source src = {"one.txt", 1};
    assert_int_equal(cg_ruleset_new("one", CG_ALLOW, &rs), 0);
    assert_int_equal(
        cg_ruleset_add_text(rs, "127.0.0.66", 10, CG_DENY, &src, NULL, err, sizeof(err)), 0);
    assert_int_equal(
        cg_ruleset_add_text(rs, "127.0.0.0/8", 11, CG_ALLOW, &src, NULL, err, sizeof(err)), 0);
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    cfg->rulesets[0] = rs;
    cfg->listeners[0].name = strdup("l");
    cfg->listeners[0].echo = true;
    size_t lmap[1] = {0};
    cg__gen *gen = cg__gen_new(cfg, 1, lmap, 1);
    assert_non_null(gen);
    uint32_t modes[1] = {CG_PF_MODE_REFUSE};
    cg__pf_table t = {0};
    assert_int_equal(cg__pf_compile(gen, modes, &t), 0);
    assert_int_equal(t.elems[0].u.hdr.v4_count, 3);
    assert_int_equal(t.elems[0].u.hdr.v6_count, 1);
    assert_int_equal(t.n, CG_PF_MAX_SLOTS + 4);
    cg__pf_table_free(&t);
    cg__gen_unref(gen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_tables_agree_with_judge),
        cmocka_unit_test(merged_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
