/* admission.h — the one count of relayed connections open, and its bound.
 *
 * The thread that judges a caller (the control thread, or on Linux the
 * worker that accepted it) takes a place for each caller it admits, with a
 * compare-and-swap that fails at the bound, so the count never passes it
 * however many threads take at once; it gives the place back if the
 * hand-off fails, and the worker that closes the connection releases it.
 * Nothing else touches the count.
 */
#ifndef CG_ADMISSION_H
#define CG_ADMISSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct cg__admission {
    _Atomic uint64_t active; /* relayed connections open, all workers */
    _Atomic uint64_t max;    /* effective max_connections */
} cg__admission;

/* cg__admission_init: no connection open, at most max. */
static inline void cg__admission_init(cg__admission *a, uint64_t max)
{
    atomic_init(&a->active, 0);
    atomic_init(&a->max, max);
}

/* cg__admission_full: whether a new connection would pass the bound. Any
 * thread (exact on the control thread, the only one that takes places). */
static inline bool cg__admission_full(const cg__admission *a)
{
    return atomic_load_explicit(&a->active, memory_order_relaxed) >=
           atomic_load_explicit(&a->max, memory_order_relaxed);
}

/* cg__admission_take: one more connection open. Control thread, before the
 * hand-off, so that no reader sees the worker's release before the take. */
static inline void cg__admission_take(cg__admission *a)
{
    atomic_fetch_add_explicit(&a->active, 1, memory_order_relaxed);
}

/* cg__admission_try_take: one more connection open, unless the count is at
 * the bound already: then false and nothing changes. Exact whichever
 * threads take at once. Before the hand-off, like cg__admission_take. */
static inline bool cg__admission_try_take(cg__admission *a)
{
    uint64_t n = atomic_load_explicit(&a->active, memory_order_relaxed);
    do {
        if (n >= atomic_load_explicit(&a->max, memory_order_relaxed))
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&a->active, &n, n + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

/* cg__admission_release: a connection closed (or a hand-off failed). Any
 * thread. */
static inline void cg__admission_release(cg__admission *a)
{
    atomic_fetch_sub_explicit(&a->active, 1, memory_order_relaxed);
}

/* cg__admission_active / cg__admission_max: the count and the bound. Any
 * thread. */
static inline uint64_t cg__admission_active(const cg__admission *a)
{
    return atomic_load_explicit(&a->active, memory_order_relaxed);
}

static inline uint64_t cg__admission_max(const cg__admission *a)
{
    return atomic_load_explicit(&a->max, memory_order_relaxed);
}

/* cg__admission_set_max: a new bound (start, reload). Control thread. */
static inline void cg__admission_set_max(cg__admission *a, uint64_t max)
{
    atomic_store_explicit(&a->max, max, memory_order_relaxed);
}

#endif /* CG_ADMISSION_H */
