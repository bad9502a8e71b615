/* stats.h — the gate's counters: one slot per writing thread, summed on read.
 *
 * Slot 0 belongs to the control thread (the decisions on the callers it
 * accepts), slot 1+i to worker i (the callers it accepts, and relayed
 * connections). Each slot has exactly one writer, so the
 * hot path is a relaxed load and store on a cache line no other thread
 * writes; readers (admin port, logs) sum the slots with relaxed loads and may
 * see a snapshot that is a few events old, never a torn value.
 */
#ifndef CG_STATS_H
#define CG_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* Counters of one listener, as written by one thread. */
typedef struct cg__lstats {
    _Atomic uint64_t accepted;
    _Atomic uint64_t proxied; /* of accepted: clients a PROXY header named */
    _Atomic uint64_t rejected[CG__REJ_COUNT];
    _Atomic uint64_t shed; /* of rejected[limit]: no descriptor to accept them with */
    _Atomic uint64_t shadow_rejected[CG__REJ_COUNT]; /* mode = shadow: refused, admitted */
    _Atomic uint64_t closed;
    _Atomic uint64_t closed_by_ban; /* of closed: reset because a ban came to cover them */
    _Atomic uint64_t backend_errors;
    _Atomic uint64_t bytes_in;  /* from clients */
    _Atomic uint64_t bytes_out; /* to clients */
} cg__lstats;

/* One thread's slot: per-listener counters plus its own totals. */
typedef struct cg__slot {
    _Alignas(64) _Atomic uint64_t handled; /* connections given to this worker */
    _Atomic uint64_t finished;             /* of those, closed */
    cg__lstats *listeners;                 /* [nlisteners] */
} cg__slot;

typedef struct cg__stats {
    size_t nlisteners;
    size_t nslots; /* 1 + workers */
    cg__slot *slots;
    _Atomic uint64_t reloads;
    _Atomic uint64_t reload_failures;
    _Atomic bool last_reload_ok; /* the last reload succeeded (true before any) */
} cg__stats;

/* cg__stats_new: counters for nlisteners listeners and nworkers workers, all
 * zero. Returns NULL on allocation failure. Free with cg__stats_free. */
cg__stats *cg__stats_new(size_t nlisteners, size_t nworkers);
void cg__stats_free(cg__stats *s);

/* cg__stat_add: add n to a counter that only the calling thread writes. */
static inline void cg__stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* cg__lstats_of: listener l's counters in slot `slot`. */
static inline cg__lstats *cg__lstats_of(cg__stats *s, size_t slot, size_t l)
{
    return &s->slots[slot].listeners[l];
}

/* Sums over all slots, for readers. */
typedef struct cg__lsum {
    uint64_t accepted, proxied, rejected[CG__REJ_COUNT], shed, shadow_rejected[CG__REJ_COUNT],
        closed, closed_by_ban, backend_errors, bytes_in, bytes_out;
} cg__lsum;

/* cg__lsum_rejected: callers refused, for every reason together. */
static inline uint64_t cg__lsum_rejected(const cg__lsum *t)
{
    uint64_t n = 0;
    for (int r = 0; r < CG__REJ_COUNT; r++)
        n += t->rejected[r];
    return n;
}

/* cg__stat_open: of `opened` connections, those not among `closed`. The
 * two are read one after the other, maybe from different slots, so a
 * close may be seen without its open: never below 0. */
static inline uint64_t cg__stat_open(uint64_t opened, uint64_t closed)
{
    return opened >= closed ? opened - closed : 0;
}

/* cg__lsum_shadow: callers a shadow listener's judge refused and it
 * admitted, for every reason together. */
static inline uint64_t cg__lsum_shadow(const cg__lsum *t)
{
    uint64_t n = 0;
    for (int r = 0; r < CG__REJ_COUNT; r++)
        n += t->shadow_rejected[r];
    return n;
}

/* cg__lsum_active: connections open now, accepted less closed. */
static inline uint64_t cg__lsum_active(const cg__lsum *t)
{
    return cg__stat_open(t->accepted, t->closed);
}

/* cg__stats_sum_listener: listener l summed over every slot. Any thread. */
void cg__stats_sum_listener(const cg__stats *s, size_t l, cg__lsum *out);

/* cg__stats_sum_all: all listeners together. Any thread. */
void cg__stats_sum_all(const cg__stats *s, cg__lsum *out);

/* cg__stats_worker: worker w's handled and active counts. Any thread. */
void cg__stats_worker(const cg__stats *s, size_t w, uint64_t *handled, uint64_t *active);

#endif /* CG_STATS_H */
