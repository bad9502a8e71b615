/* test_ct.c — the constant-time token comparison (src/ct.c): the right
 * answer for equal, unequal, longer, shorter, empty and NUL-holding input,
 * and no read of the secret past its terminating NUL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ct.h"

static bool eq(const char *given, const char *secret)
{
    return cg__ct_equal(given, strlen(given), secret);
}

static void test_equal(void **state)
{
    (void)state;
    assert_true(eq("s3cret", "s3cret"));
    assert_true(eq("a", "a"));
    assert_true(eq("", ""));
    assert_true(cg__ct_equal(NULL, 0, ""));
    /* every printable character, the longest token the INI allows */
    char tok[191];
    for (size_t i = 0; i < sizeof tok - 1; i++)
        tok[i] = (char)(0x21 + i % 94);
    tok[sizeof tok - 1] = '\0';
    char copy[sizeof tok];
    memcpy(copy, tok, sizeof tok);
    assert_true(eq(copy, tok));
}

static void test_unequal_same_length(void **state)
{
    (void)state;
    assert_false(eq("s3creT", "s3cret"));
    assert_false(eq("x3cret", "s3cret"));
    assert_false(eq("s3Cret", "s3cret"));
    assert_false(eq("b", "a"));
    /* every position, every bit */
    const char *secret = "0123456789abcdef";
    char buf[17];
    for (size_t i = 0; i < 16; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            memcpy(buf, secret, 17);
            buf[i] = (char)(buf[i] ^ (1u << bit));
            assert_false(cg__ct_equal(buf, 16, secret));
        }
    }
    /* bytes >= 0x80 are compared as bytes */
    assert_false(eq("\xff", "\x7f"));
    assert_true(eq("\xc3\xa9", "\xc3\xa9"));
}

static void test_different_lengths(void **state)
{
    (void)state;
    assert_false(eq("s3cre", "s3cret"));   /* a prefix */
    assert_false(eq("s3crett", "s3cret")); /* one more */
    assert_false(eq("s3cret s3cret", "s3cret"));
    assert_false(eq("", "s3cret"));
    assert_false(eq("s", ""));
    assert_false(cg__ct_equal(NULL, 0, "s3cret"));
    /* a NUL byte in the input is a byte like any other, never an end */
    assert_false(cg__ct_equal("s3cret\0", 7, "s3cret"));
    assert_false(cg__ct_equal("s3cret\0x", 8, "s3cret"));
    assert_false(cg__ct_equal("s3c\0ret", 7, "s3cret"));
    assert_false(cg__ct_equal("\0", 1, ""));
    /* the given length counts, not the C string */
    assert_false(cg__ct_equal("s3cretXYZ", 5, "s3cret"));
    assert_true(cg__ct_equal("s3cretXYZ", 6, "s3cret"));
}

/* The secret is read only up to its NUL, however long the input: the
 * secret sits at the very end of a heap block, so ASan reports any read
 * past it. */
static void test_no_read_past_secret(void **state)
{
    (void)state;
    char *secret = malloc(4);
    assert_non_null(secret);
    memcpy(secret, "abc", 4);
    char given[4096];
    memset(given, 'a', sizeof given);
    assert_false(cg__ct_equal(given, sizeof given, secret));
    memcpy(given, "abc", 3);
    assert_false(cg__ct_equal(given, sizeof given, secret));
    assert_true(cg__ct_equal(given, 3, secret));
    free(secret);

    char *empty = malloc(1);
    assert_non_null(empty);
    empty[0] = '\0';
    assert_false(cg__ct_equal(given, sizeof given, empty));
    assert_true(cg__ct_equal(given, 0, empty));
    free(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_unequal_same_length),
        cmocka_unit_test(test_different_lengths),
        cmocka_unit_test(test_no_read_past_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
