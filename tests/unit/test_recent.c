/* test_recent.c — the ring of distinct recent callers behind the reload
 * preview: distinct pairs kept once, the oldest forgotten first, and the
 * hash index right after many wrap-arounds (checked against a model). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recent.h"

static cg_cidr v4(uint32_t a)
{
    cg_cidr c = {.family = 4, .len = 32};
    c.addr[0] = (uint8_t)(a >> 24);
    c.addr[1] = (uint8_t)(a >> 16);
    c.addr[2] = (uint8_t)(a >> 8);
    c.addr[3] = (uint8_t)a;
    return c;
}

static size_t copy(cg__recent *r, cg__recent_caller **out)
{
    size_t n = 0;
    assert_int_equal(cg__recent_copy(r, out, &n), 0);
    return n;
}

static void test_distinct_and_order(void **state)
{
    (void)state;
    cg__recent *r = cg__recent_new(3);
    assert_non_null(r);
    cg_cidr a = v4(0x7f000002), b = v4(0x7f000003), c = v4(0x7f000004), d = v4(0x7f000005);
    cg__recent_note(r, 0, &a);
    cg__recent_note(r, 0, &a); /* the same pair: kept once */
    cg__recent_note(r, 1, &a); /* another listener: another pair */
    cg__recent_note(r, 0, &b);
    cg__recent_caller *got;
    assert_int_equal(copy(r, &got), 3);
    assert_int_equal(got[0].listener, 0);
    assert_memory_equal(got[0].addr.addr, a.addr, 16);
    assert_int_equal(got[1].listener, 1);
    assert_memory_equal(got[2].addr.addr, b.addr, 16);
    free(got);
    cg__recent_note(r, 0, &c); /* full: (0, a) goes */
    cg__recent_note(r, 0, &d); /* then (1, a) */
    assert_int_equal(copy(r, &got), 3);
    assert_int_equal(got[0].listener, 0);
    assert_memory_equal(got[0].addr.addr, b.addr, 16);
    assert_memory_equal(got[2].addr.addr, d.addr, 16);
    free(got);
    cg__recent_note(r, 0, &a); /* forgotten, so new again */
    assert_int_equal(copy(r, &got), 3);
    assert_memory_equal(got[2].addr.addr, a.addr, 16);
    free(got);
    cg__recent_free(r);
}

/* Many wrap-arounds with repeats: the ring always equals a model that keeps
 * the last `max` distinct pairs in first-seen order. */
static void test_against_a_model(void **state)
{
    (void)state;
    enum { MAX = 64, ROUNDS = 20000, SPACE = 200 };
    cg__recent *r = cg__recent_new(MAX);
    uint32_t model[MAX];
    size_t head = 0, count = 0;
    uint32_t seed = 7;
    for (int i = 0; i < ROUNDS; i++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t k = (seed >> 8) % SPACE;
        cg_cidr a = v4(0x0a000000u + k);
        cg__recent_note(r, k % 2, &a);
        bool seen = false;
        for (size_t j = 0; j < count && !seen; j++)
            seen = model[(head + j) % MAX] == k;
        if (!seen) {
            if (count == MAX) {
                head = (head + 1) % MAX;
                count--;
            }
            model[(head + count) % MAX] = k;
            count++;
        }
        if (i % 997 == 0 || i == ROUNDS - 1) {
            cg__recent_caller *got;
            assert_int_equal(copy(r, &got), count);
            for (size_t j = 0; j < count; j++) {
                uint32_t want = model[(head + j) % MAX];
                cg_cidr w = v4(0x0a000000u + want);
                assert_memory_equal(got[j].addr.addr, w.addr, 16);
                assert_int_equal(got[j].listener, want % 2);
            }
            free(got);
        }
    }
    cg__recent_free(r);
}

static void test_off(void **state)
{
    (void)state;
    cg__recent *r = cg__recent_new(0);
    cg_cidr a = v4(1);
    cg__recent_note(r, 0, &a);
    cg__recent_caller *got;
    assert_int_equal(copy(r, &got), 0);
    free(got);
    cg__recent_free(r);
    cg__recent_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distinct_and_order),
        cmocka_unit_test(test_against_a_model),
        cmocka_unit_test(test_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
