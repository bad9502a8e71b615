/* sources.h — the per-source table (SPEC §12): open connections and the
 * connection rate of each source, and the count of rate refusals behind
 * auto-bans.
 *
 * A source is the caller's address masked to the listener's source_prefix
 * (32 and 64 by default: one IPv6 subscriber holds a /64), per listener:
 * each listener's limits count its own callers. IPv4-mapped IPv6 callers are
 * IPv4 sources.
 *
 * Rates use a sliding-window counter: the count of the current fixed window
 * plus the previous window's count weighted by how much of it still lies
 * inside the sliding window. It never lets 2N through at a window boundary
 * the way a fixed window does, and needs a few words per source.
 *
 * The table holds at most `max` sources (source_table_max). When a new
 * source finds it full, the least recently seen source with no open
 * connection is forgotten; when every source has open connections, the new
 * one is refused (CG__SRC_FULL, counted in cg__sources_full).
 *
 * Threads: one thread at a time judges and takes for a listener (the
 * control thread, or on Linux the workers under the gate's judge lock), so
 * a verdict and its take are exact; any thread (the worker closing a
 * connection) releases. One mutex guards the table.
 */
#ifndef CG_SOURCES_H
#define CG_SOURCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/config.h"
#include "condgate/rules.h"

typedef struct cg__sources cg__sources;
typedef struct cg__source cg__source; /* one source's entry, held by its open connections */

/* The source stage's answer. */
typedef enum cg__src_verdict {
    CG__SRC_OK = 0,    /* within the limits */
    CG__SRC_LIMIT = 1, /* max_per_source connections open (source_limit) */
    CG__SRC_RATE = 2,  /* rate_per_source reached (source_rate) */
    CG__SRC_FULL = 3,  /* the table is full of sources with open connections
                          (counted as source_limit) */
} cg__src_verdict;

/* What a real caller's judgement did besides the verdict. */
typedef struct cg__src_effect {
    bool autoban;      /* ban_after tripped: ban `cidr` for ttl_s */
    uint32_t ttl_s;    /* ban_ttl_s, doubled for each auto-ban of this source
                          within a day, at most ban_ttl_max_s */
    cg_cidr cidr;      /* the source (the caller masked to source_prefix) */
} cg__src_effect;

/* cg__sources_new: an empty table for at most max sources
 * (1..CG_CONFIG_MAX_SOURCES). NULL when out of memory. */
cg__sources *cg__sources_new(size_t max);

/* cg__sources_free: free the table. Connections must not hold entries any
 * more. Accepts NULL. */
void cg__sources_free(cg__sources *s);

/* cg__sources_set_max: a new bound (a reload). A smaller one takes effect
 * as sources are forgotten. Any thread. */
void cg__sources_set_max(cg__sources *s, size_t max);

/* cg__source_of: the source of caller addr (a host prefix) under limits:
 * addr masked to prefix4 or prefix6. */
void cg__source_of(const cg_source_limits *limits, const cg_cidr *addr, cg_cidr *out);

/* cg__sources_judge: the source stage for a caller of gate listener l whose
 * limits are `limits` (cg_source_limits_on must be true), at now_ms
 * (monotonic milliseconds). With commit false (explain, preview) nothing
 * changes and *effect is untouched. With commit true (a real caller) the
 * source's entry is found or made (forgetting another per the rule above),
 * and a CG__SRC_RATE refusal is counted toward ban_after: when that trips,
 * *effect says which source to ban for how long. Takes no place: call
 * cg__sources_take once every later stage has admitted the caller. Control
 * thread. */
cg__src_verdict cg__sources_judge(cg__sources *s, uint32_t l, const cg_source_limits *limits,
                                  const cg_cidr *addr, uint64_t now_ms, bool commit,
                                  cg__src_effect *effect);

/* cg__sources_take: count an admitted caller of listener l: one more open
 * connection and one more in the rate window. Returns the entry, which the
 * connection holds until it closes (cg__sources_release), or NULL when out
 * of memory or the table is full (the caller is still admitted: the source
 * stage said yes a moment ago on this same thread, so this happens only if
 * memory runs out). Control thread, right after cg__sources_judge. */
cg__source *cg__sources_take(cg__sources *s, uint32_t l, const cg_source_limits *limits,
                             const cg_cidr *addr, uint64_t now_ms);

/* cg__sources_release: a connection that held e closed. Accepts NULL. Any
 * thread. */
void cg__sources_release(cg__sources *s, cg__source *e);

/* cg__sources_count: sources in the table. Any thread. */
size_t cg__sources_count(cg__sources *s);

/* cg__sources_full: new sources refused because the table was full. Any
 * thread. */
uint64_t cg__sources_full(cg__sources *s);

/* cg__sources_bytes: memory the table holds now, in bytes. Any thread. */
size_t cg__sources_bytes(cg__sources *s);

#endif /* CG_SOURCES_H */
