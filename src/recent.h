/* recent.h — the last distinct callers each listener has seen, for the
 * reload preview (SPEC §14).
 *
 * A bounded ring of (listener, address) pairs with a hash index, so a
 * caller already in the ring costs one probe and is not stored twice. When
 * the ring is full, the oldest pair makes room. The control thread records
 * every caller it judges; the admin port copies the ring to replay it.
 */
#ifndef CG_RECENT_H
#define CG_RECENT_H

#include <stddef.h>
#include <stdint.h>

#include "condgate/rules.h"

typedef struct cg__recent cg__recent;

/* One remembered caller. */
typedef struct cg__recent_caller {
    uint32_t listener; /* gate listener index */
    cg_cidr addr;      /* a host prefix */
} cg__recent_caller;

/* cg__recent_new: a ring for at most max callers (0: a ring that keeps
 * nothing). NULL when out of memory. */
cg__recent *cg__recent_new(size_t max);

/* cg__recent_free: free the ring. Accepts NULL. */
void cg__recent_free(cg__recent *r);

/* cg__recent_note: remember that listener l saw addr (a host prefix), unless
 * that pair is in the ring already. Control thread (any thread is safe). */
void cg__recent_note(cg__recent *r, uint32_t l, const cg_cidr *addr);

/* cg__recent_copy: the callers in the ring, oldest first, into a new array
 * (free with free()) in *out and its length in *n. Returns 0 or CG_ENOMEM.
 * Any thread. */
int cg__recent_copy(cg__recent *r, cg__recent_caller **out, size_t *n);

#endif /* CG_RECENT_H */
