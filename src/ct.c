/* ct.c — constant-time comparison of a caller's token with the configured
 * one (see ct.h).
 *
 * How it is built, and why it has no early exit:
 *
 * - The loop runs glen + 1 times whatever the bytes hold: glen is the
 *   length of what the caller sent, which the caller knows anyway. Nothing
 *   about the secret decides how often it runs or when it stops.
 * - The secret's length is never computed. Byte i of the caller's input is
 *   compared with byte j of the secret, where j follows i until the
 *   secret's terminating NUL and then stays on it; so every read is inside
 *   the secret, and reading past its end just reads its NUL again.
 * - A caller byte facing the secret's NUL is a mismatch whatever its value
 *   (that covers a longer input, and a NUL byte in the input), and after
 *   the last caller byte the secret must be at its NUL (that covers a
 *   shorter input). Mismatches are ORed into one accumulator that is
 *   looked at once, after the loop.
 * - Every step is straight-line arithmetic: "is this byte NUL" is computed
 *   as ((b - 1) >> 8) & 1 rather than with a comparison that could become a
 *   branch, and the only branch (i < glen) is on the caller's length.
 * - Both buffers are read through volatile pointers: each of those reads is
 *   observable behaviour the compiler must carry out, so it cannot stop
 *   the loop at the first difference; the empty asm statement (GCC and
 *   Clang) hides the accumulator's value from the optimiser, so it cannot
 *   reason about it inside the loop either.
 *
 * What remains is the cache: after the secret's end the same byte is read
 * again. The token is at most a few hundred bytes, a handful of cache lines
 * that the loop has already touched, so this is far below what a remote
 * caller could measure through the network and a thread-per-connection
 * HTTP server.
 */
#include "ct.h"

#include <stdint.h>

/* 1 when b is 0, else 0, without a comparison. */
static unsigned is_zero(unsigned b)
{
    return ((b - 1u) >> 8) & 1u;
}

/* cg__ct_equal: see ct.h. */
bool cg__ct_equal(const void *given, size_t glen, const char *secret)
{
    const volatile unsigned char *g = given;
    const volatile unsigned char *s = (const volatile unsigned char *)secret;
    unsigned diff = 0;
    size_t j = 0;

    for (size_t i = 0; i <= glen; i++) {
        unsigned sb = s[j];
        unsigned z = is_zero(sb);
        if (i < glen)
            diff |= ((unsigned)g[i] ^ sb) | z; /* unequal, or past the secret's end */
        else
            diff |= z ^ 1u; /* the input ended: the secret must end here too */
        j += 1u - z;        /* stay on the NUL once there */
#if defined(__GNUC__) || defined(__clang__)
        __asm__ volatile("" : "+r"(diff));
#endif
    }
    return diff == 0;
}
