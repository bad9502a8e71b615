/* test_log.c — log line formats, the reject-line limiter and counter slots. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "stats.h"
#include "testsys.h"

/* Run fn with stderr (descriptor 2) captured; return what it wrote. */
static char *capture(void (*fn)(void *), void *arg)
{
    static char buf[1 << 16];
    ts_capture c;
    ts_capture_begin(&c);
    assert_non_null(c.f);
    fn(arg);
    char *text = ts_capture_end(&c);
    assert_non_null(text);
    snprintf(buf, sizeof(buf), "%s", text);
    free(text);
    return buf;
}

static void emit_reject(void *arg)
{
    (void)arg;
    cg__log_event(CG_LOG_INFO, "reject", "listener", "web", "peer", "198.51.100.7:40112", "reason",
                  "rule", "rule", "198.51.100.0/24", "source", "rules.json:7", "note",
                  "two words \"quoted\"", NULL);
}

static void text_format(void **state)
{
    (void)state;
    cg__log_setup(CG_LOG_INFO, CG_LOG_TEXT);
    char *out = capture(emit_reject, NULL);
    assert_non_null(strstr(out, "level=info event=reject listener=web peer=198.51.100.7:40112 "
                                "reason=rule rule=198.51.100.0/24 source=rules.json:7 "
                                "note=\"two words \\\"quoted\\\"\"\n"));
    assert_int_equal(strncmp(out, "ts=", 3), 0);
}

static void json_format(void **state)
{
    (void)state;
    cg__log_setup(CG_LOG_INFO, CG_LOG_JSON);
    char *out = capture(emit_reject, NULL);
    assert_non_null(strstr(out, "\"level\":\"info\",\"event\":\"reject\",\"listener\":\"web\","
                                "\"peer\":\"198.51.100.7:40112\",\"reason\":\"rule\""));
    assert_non_null(strstr(out, "\"note\":\"two words \\\"quoted\\\"\"}\n"));
    assert_int_equal(out[0], '{');
}

static void level_filter(void **state)
{
    (void)state;
    cg__log_setup(CG_LOG_WARN, CG_LOG_TEXT);
    char *out = capture(emit_reject, NULL);
    assert_string_equal(out, "");
    assert_false(cg__log_enabled(CG_LOG_INFO));
    assert_true(cg__log_enabled(CG_LOG_ERROR));
}

static void run_limiter(void *arg)
{
    int *allowed = arg;
    cg__log_limiter l;
    cg__log_limiter_init(&l, 20);
    /* 300 rejects in the first second, 5 in the next: 20 + 5 written. */
    for (int i = 0; i < 300; i++)
        allowed[0] += cg__log_limiter_allow(&l, 10 + (uint64_t)i);
    for (int i = 0; i < 5; i++)
        allowed[1] += cg__log_limiter_allow(&l, 1500 + (uint64_t)i);
    cg__log_limiter_flush(&l, 3000);
}

static void limiter_summarises(void **state)
{
    (void)state;
    cg__log_setup(CG_LOG_INFO, CG_LOG_TEXT);
    int allowed[2] = {0, 0};
    char *out = capture(run_limiter, allowed);
    assert_int_equal(allowed[0], 20);
    assert_int_equal(allowed[1], 5);
    assert_non_null(strstr(out, "event=reject_suppressed suppressed=280 "
                                "message=\"suppressed 280 reject lines\""));
    /* Only one summary: the second window suppressed nothing. */
    assert_null(strstr(strstr(out, "suppressed=280") + 1, "event=reject_suppressed"));
}

static void stats_sum(void **state)
{
    (void)state;
    cg__stats *s = cg__stats_new(2, 3);
    assert_non_null(s);
    cg__stat_add(&cg__lstats_of(s, 0, 0)->accepted, 5);
    cg__stat_add(&cg__lstats_of(s, 0, 1)->accepted, 7);
    cg__stat_add(&cg__lstats_of(s, 0, 1)->rejected[CG__REJ_LIMIT], 2);
    cg__stat_add(&cg__lstats_of(s, 2, 1)->closed, 4);
    cg__stat_add(&cg__lstats_of(s, 3, 0)->bytes_in, 100);
    cg__stat_add(&s->slots[2].handled, 6);
    cg__stat_add(&s->slots[2].finished, 4);
    cg__lsum one, all;
    cg__stats_sum_listener(s, 1, &one);
    assert_int_equal(one.accepted, 7);
    assert_int_equal(one.closed, 4);
    assert_int_equal(one.rejected[CG__REJ_LIMIT], 2);
    cg__stats_sum_all(s, &all);
    assert_int_equal(all.accepted, 12);
    assert_int_equal(all.bytes_in, 100);
    uint64_t handled, active;
    cg__stats_worker(s, 1, &handled, &active);
    assert_int_equal(handled, 6);
    assert_int_equal(active, 2);
    assert_string_equal(cg__reject_reason_name(CG__REJ_DEFAULT), "default");
    cg__stats_free(s);
    cg__stats_free(NULL);
}

int main(void)
{
    ts_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_format),  cmocka_unit_test(json_format),
        cmocka_unit_test(level_filter), cmocka_unit_test(limiter_summarises),
        cmocka_unit_test(stats_sum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
