/* test_gate.c — the one judge (policy.c), the gate's policies as plain
 * functions (gate.c), and routes outliving their generation (gen.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admission.h"
#include "condgate/config.h"
#include "gate.h"
#include "gen.h"
#include "policy.h"
#include "route.h"
#include "testsys.h"

/* ------------------------------------------------------------------------
 * Helpers
 */

/* A frozen set: default `def`, then "allow|deny CIDR" lines, each from
 * rules.txt at its index + 1. */
static cg_ruleset *make_set(cg_action def, const char *const *lines, size_t n)
{
    cg_ruleset *rs = NULL;
    char err[256];
    assert_int_equal(cg_ruleset_new("t", def, &rs), 0);
    for (size_t i = 0; i < n; i++) {
        cg_action a = strncmp(lines[i], "allow ", 6) == 0 ? CG_ALLOW : CG_DENY;
        const char *cidr = strchr(lines[i], ' ') + 1;
        cg_source src = {"rules.txt", (uint32_t)(i + 1)};
        assert_int_equal(
            cg_ruleset_add_text(rs, cidr, strlen(cidr), a, &src, NULL, err, sizeof(err)), 0);
    }
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    return rs;
}

static cg_cidr host(const char *text)
{
    cg_cidr c;
    char err[256];
    assert_int_equal(cg_cidr_parse(text, strlen(text), &c, err, sizeof(err)), 0);
    return c;
}

static uint32_t line_of(const cg__judgement *j)
{
    cg_rule_info info;
    if (j->rule == CG_RULE_NONE || cg_ruleset_rule(j->set, j->rule, &info) != 0)
        return 0;
    return info.line;
}

static uint64_t hits_of(const cg_ruleset *rs, cg_rule_id id)
{
    cg_rule_info info;
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    return info.hits;
}

/* ------------------------------------------------------------------------
 * The judge
 */

static void judge_stages_in_order(void **state)
{
    (void)state;
    static const char *const lines[] = {"allow 10.0.0.0/8", "deny 10.1.0.0/16", "deny 192.0.2.7"};
    cg_ruleset *rs = make_set(CG_DENY, lines, 3);
    cg__admission adm;
    cg__admission_init(&adm, 2);
    cg__policy p = {.set = rs, .admission = &adm};
    cg__judgement j;
    cg_cidr a;

    /* Allowed by line 1, and room: admitted, with the rule as evidence. */
    a = host("10.2.3.4");
    cg__policy_judge(&p, &a, &j);
    assert_true(j.admit);
    assert_int_equal(j.stage, CG__STAGE_NONE);
    assert_int_equal(j.rule_action, CG_ALLOW);
    assert_ptr_equal(j.set, rs);
    assert_int_equal(line_of(&j), 1);

    /* The longer deny prefix decides: refused at the rule stage, line 2. */
    a = host("10.1.9.9");
    cg__policy_judge(&p, &a, &j);
    assert_false(j.admit);
    assert_int_equal(j.stage, CG__STAGE_RULE);
    assert_int_equal(j.reason, CG__REJ_RULE);
    assert_int_equal(line_of(&j), 2);

    /* Nothing matches: the default, with no entry. */
    a = host("203.0.113.1");
    cg__policy_judge(&p, &a, &j);
    assert_false(j.admit);
    assert_int_equal(j.stage, CG__STAGE_RULE);
    assert_int_equal(j.reason, CG__REJ_DEFAULT);
    assert_int_equal(j.rule, CG_RULE_NONE);

    /* Full: an allowed caller is refused by the limit stage, which runs
     * only after the rule stage let it through. */
    cg__admission_take(&adm);
    cg__admission_take(&adm);
    a = host("10.2.3.4");
    cg__policy_judge(&p, &a, &j);
    assert_false(j.admit);
    assert_int_equal(j.stage, CG__STAGE_LIMIT);
    assert_int_equal(j.reason, CG__REJ_LIMIT);
    assert_int_equal(line_of(&j), 1);
    a = host("10.1.9.9");
    cg__policy_judge(&p, &a, &j);
    assert_int_equal(j.stage, CG__STAGE_RULE); /* denied first, full or not */

    /* A place given back: admitted again. */
    cg__admission_release(&adm);
    a = host("10.2.3.4");
    cg__policy_judge(&p, &a, &j);
    assert_true(j.admit);
    cg_ruleset_free(rs);
}

static void judge_skips_missing_stages(void **state)
{
    (void)state;
    static const char *const lines[] = {"deny 10.0.0.0/8"};
    cg_ruleset *rs = make_set(CG_ALLOW, lines, 1);
    cg__admission adm;
    cg__admission_init(&adm, 0); /* always full */
    cg__judgement j;
    cg_cidr a = host("192.0.2.1");

    cg__policy only_rules = {.set = rs};
    cg__policy_judge(&only_rules, &a, &j);
    assert_true(j.admit);

    cg__policy only_limit = {.admission = &adm};
    cg__policy_judge(&only_limit, &a, &j);
    assert_false(j.admit);
    assert_int_equal(j.stage, CG__STAGE_LIMIT);
    assert_null(j.set);
    cg_ruleset_free(rs);
}

static void judge_counts_hits_only_when_asked(void **state)
{
    (void)state;
    static const char *const lines[] = {"deny 198.51.100.0/24"};
    cg_ruleset *rs = make_set(CG_ALLOW, lines, 1);
    cg__judgement j;
    cg_cidr a = host("198.51.100.9");

    cg__policy explain = {.set = rs};
    cg__policy_judge(&explain, &a, &j);
    assert_int_equal(hits_of(rs, j.rule), 0);
    cg__policy caller = {.set = rs, .count_hits = true};
    cg__policy_judge(&caller, &a, &j);
    cg__policy_judge(&caller, &a, &j);
    assert_int_equal(hits_of(rs, j.rule), 2);
    cg_ruleset_free(rs);
}

/* Callers come as socket addresses: an IPv4-mapped IPv6 caller is judged
 * as the IPv4 address, so an IPv4 deny entry covers it. */
static void judge_sockaddr_mapped(void **state)
{
    (void)state;
    static const char *const lines[] = {"deny 127.0.0.66"};
    cg_ruleset *rs = make_set(CG_ALLOW, lines, 1);
    cg__policy p = {.set = rs};
    cg__judgement j;
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof(s6));
    s6.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.66", &s6.sin6_addr), 1);
    assert_false(cg__policy_judge_sockaddr(&p, (const struct sockaddr *)&s6, &j));
    assert_int_equal(j.reason, CG__REJ_RULE);
    assert_int_equal(line_of(&j), 1);

    struct sockaddr_in s4;
    memset(&s4, 0, sizeof(s4));
    s4.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, "127.0.0.65", &s4.sin_addr), 1);
    assert_true(cg__policy_judge_sockaddr(&p, (const struct sockaddr *)&s4, &j));
    cg_ruleset_free(rs);
}

static void names(void **state)
{
    (void)state;
    assert_string_equal(cg__reject_reason_name(CG__REJ_RULE), "rule");
    assert_string_equal(cg__reject_reason_name(CG__REJ_DEFAULT), "default");
    assert_string_equal(cg__reject_reason_name(CG__REJ_LIMIT), "limit");
    assert_string_equal(cg__stage_name(CG__STAGE_NONE), "none");
    assert_string_equal(cg__stage_name(CG__STAGE_RULE), "rule");
    assert_string_equal(cg__stage_name(CG__STAGE_LIMIT), "limit");
}

/* ------------------------------------------------------------------------
 * The gate's policies
 */

static void fit_connections(void **state)
{
    (void)state;
    /* Plenty of descriptors: the configured value. */
    assert_int_equal(cg__gate_fit_connections(1u << 20, 2, 2, true, 10000), 10000);
    /* 20,000 descriptors, reserve 32 + 2*1 + 4*2 + 1*2 (a spare per worker
     * per listener) = 44: two per relayed connection, one per echo one. */
    assert_int_equal(cg__gate_fit_connections(20000, 1, 2, true, 1000000), (20000 - 44) / 2);
    assert_int_equal(cg__gate_fit_connections(20000, 1, 2, false, 1000000), 20000 - 44);
    /* Less than the reserve: still one. */
    assert_int_equal(cg__gate_fit_connections(16, 4, 8, true, 100), 1);
}

static cg_config *config_of(const char *const *names, const char *const *binds, size_t n)
{
    cg_config *cfg = calloc(1, sizeof(*cfg));
    assert_non_null(cfg);
    cfg->path = strdup("gate.ini");
    cfg->listeners = calloc(n ? n : 1, sizeof(*cfg->listeners));
    assert_non_null(cfg->listeners);
    cfg->nlisteners = n;
    for (size_t i = 0; i < n; i++) {
        cg_listener_conf *lc = &cfg->listeners[i];
        lc->name = strdup(names[i]);
        lc->line = (uint32_t)(10 * (i + 1));
        lc->echo = true;
        struct sockaddr_in *sin = (struct sockaddr_in *)&lc->bind.addr;
        char host[32];
        unsigned port;
        assert_int_equal(sscanf(binds[i], "%31[^:]:%u", host, &port), 2);
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET, host, &sin->sin_addr), 1);
        lc->bind.addrlen = sizeof(*sin);
        snprintf(lc->bind.text, sizeof(lc->bind.text), "%s", binds[i]);
    }
    return cfg;
}

static void map_listeners(void **state)
{
    (void)state;
    static const char *const run_names[] = {"web", "ssh"};
    static const char *const run_binds[] = {"127.0.0.1:8080", "127.0.0.1:2222"};
    cg_config *running = config_of(run_names, run_binds, 2);
    char *names[2] = {running->listeners[0].name, running->listeners[1].name};
    cg_endpoint binds[2] = {running->listeners[0].bind, running->listeners[1].bind};
    size_t lmap[2] = {99, 99};
    char err[CG_ERR_MAX];

    /* The same listeners in another order: mapped by name. */
    static const char *const swapped[] = {"ssh", "web"};
    static const char *const swapped_binds[] = {"127.0.0.1:2222", "127.0.0.1:8080"};
    cg_config *cfg = config_of(swapped, swapped_binds, 2);
    assert_int_equal(cg__gate_map_listeners(names, binds, 2, cfg, lmap, err, sizeof(err)), 0);
    assert_int_equal(lmap[0], 1);
    assert_int_equal(lmap[1], 0);
    cg_config_free(cfg);

    /* A reload may turn the PROXY protocol on, change its trusted senders
     * and start sending headers (SPEC §13): only bind is fixed. */
    cfg = config_of(run_names, run_binds, 2);
    cfg->listeners[0].accept_proxy = CG_ACCEPT_PROXY_ANY;
    assert_int_equal(cg_ruleset_new("trusted:web", CG_DENY, &cfg->listeners[0].trusted_proxies), 0);
    assert_int_equal(cg_ruleset_freeze(cfg->listeners[0].trusted_proxies), 0);
    cfg->listeners[0].proxy_timeout_ms = 100;
    cfg->listeners[1].send_proxy = 2;
    assert_int_equal(cg__gate_map_listeners(names, binds, 2, cfg, lmap, err, sizeof(err)), 0);
    assert_int_equal(lmap[0], 0);
    assert_int_equal(lmap[1], 1);
    cg_config_free(cfg);

    /* A new one, a removed one, a moved one: refused, naming the line. */
    static const char *const added[] = {"web", "ssh", "db"};
    static const char *const added_binds[] = {"127.0.0.1:8080", "127.0.0.1:2222", "127.0.0.1:5432"};
    cfg = config_of(added, added_binds, 3);
    assert_int_equal(cg__gate_map_listeners(names, binds, 2, cfg, lmap, err, sizeof(err)),
                     CG_EINVAL);
    assert_string_equal(err, "gate.ini:30: listener 'db' is new; adding listeners needs a restart");
    cg_config_free(cfg);

    cfg = config_of(run_names, run_binds, 1);
    assert_int_equal(cg__gate_map_listeners(names, binds, 2, cfg, lmap, err, sizeof(err)),
                     CG_EINVAL);
    assert_string_equal(
        err, "gate.ini:0: listener 'ssh' was removed; removing listeners needs a restart");
    cg_config_free(cfg);

    static const char *const moved_binds[] = {"127.0.0.1:8080", "127.0.0.1:2223"};
    cfg = config_of(run_names, moved_binds, 2);
    assert_int_equal(cg__gate_map_listeners(names, binds, 2, cfg, lmap, err, sizeof(err)),
                     CG_EINVAL);
    assert_string_equal(err, "gate.ini:20: listener 'ssh' bind changed from 127.0.0.1:2222 to "
                             "127.0.0.1:2223; bind changes need a restart");
    cg_config_free(cfg);
    cg_config_free(running);
}

/* ------------------------------------------------------------------------
 * Routes: what a connection keeps of its generation
 */

static void route_outlives_generation(void **state)
{
    (void)state;
    static const char *const n[] = {"web"};
    static const char *const b[] = {"127.0.0.1:8080"};
    cg_config *cfg = config_of(n, b, 1);
    cg_listener_conf *lc = &cfg->listeners[0];
    lc->echo = false;
    lc->nbackends = 2;
    lc->backends = calloc(2, sizeof(*lc->backends));
    assert_non_null(lc->backends);
    snprintf(lc->backends[0].text, sizeof(lc->backends[0].text), "127.0.0.1:9001");
    snprintf(lc->backends[1].text, sizeof(lc->backends[1].text), "127.0.0.1:9002");
    lc->connect_timeout_ms = 1234;
    lc->idle_timeout_ms = 5678;
    size_t lmap[1] = {0};

    cg__gen *gen = cg__gen_new(cfg, 7, lmap, 1);
    assert_non_null(gen);
    cg__route *r = cg__route_ref(cg__gen_route(gen, 0));
    /* The generation goes (rule sets and configuration freed: ASan would
     * see any later use); the route a connection holds stays whole. */
    cg__gen_unref(gen);
    assert_int_equal(r->listener, 0);
    assert_false(r->echo);
    assert_int_equal(r->nbackends, 2);
    assert_string_equal(r->backends[1].text, "127.0.0.1:9002");
    assert_int_equal(r->connect_timeout_ms, 1234);
    assert_int_equal(r->idle_timeout_ms, 5678);
    cg__route_unref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(judge_stages_in_order),
        cmocka_unit_test(judge_skips_missing_stages),
        cmocka_unit_test(judge_counts_hits_only_when_asked),
        cmocka_unit_test(judge_sockaddr_mapped),
        cmocka_unit_test(names),
        cmocka_unit_test(fit_connections),
        cmocka_unit_test(map_listeners),
        cmocka_unit_test(route_outlives_generation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
