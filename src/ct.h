/* ct.h — comparing a caller's secret (the admin bearer token) with ours in
 * time that tells the caller nothing about ours.
 */
#ifndef CG_CT_H
#define CG_CT_H

#include <stdbool.h>
#include <stddef.h>

/* cg__ct_equal: whether the glen bytes at `given` (caller input, may hold
 * any byte, NUL included) are exactly the NUL-terminated string `secret`.
 * The time taken depends on glen alone: not on the contents of either side,
 * not on where they first differ and not on the length of `secret` (no
 * strlen is done on it). `given` may be NULL when glen is 0; `secret` must
 * not be NULL. Pure function; any thread. */
bool cg__ct_equal(const void *given, size_t glen, const char *secret);

#endif /* CG_CT_H */
