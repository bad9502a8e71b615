/* gate_view.h — what the admin port may see of the running gate, and the
 * one thing it may ask of it (a reload).
 *
 * The admin port knows the gate only through this table of functions, so
 * admin.c does not include gate.h and the fuzz target can stand in for the
 * gate with functions of its own. Whoever fills a view keeps ctx (and what
 * the functions return) valid until cg__admin_stop has returned.
 */
#ifndef CG_GATE_VIEW_H
#define CG_GATE_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "crowdsec.h"
#include "gen.h"
#include "policy.h"
#include "runtime.h"
#include "stats.h"

typedef struct cg__gate_view {
    /* Passed as the first argument of every function below. */
    void *ctx;

    /* acquire: a reference to the current generation; the caller drops it
     * with cg__gen_unref. Never NULL. Any thread. */
    cg__gen *(*acquire)(void *ctx);

    /* stats: the gate's counters, owned by the gate and valid while it
     * runs. Any thread. */
    cg__stats *(*stats)(void *ctx);

    /* uptime_ms: milliseconds since the gate started. Any thread. */
    uint64_t (*uptime_ms)(void *ctx);

    /* max_connections: the effective max_connections (the configured value,
     * lowered to fit the descriptor limit). Any thread. */
    uint64_t (*max_connections)(void *ctx);

    /* workers: number of worker threads (fixed until restart). Any thread. */
    unsigned (*workers)(void *ctx);

    /* reload_wait: ask for a reload (as SIGHUP does) and wait for its
     * outcome. Returns 0 and the new generation number in *generation, or a
     * negative CG_E* code with a one-line reason in err (CG_EAGAIN: the
     * gate is stopping). Blocks; any thread but the gate's control thread,
     * which is the one that carries the reload out. */
    int (*reload_wait)(void *ctx, uint64_t *generation, char *err, size_t errlen);
    /* Listener l's kernel prefilter: the mode in force ("refuse", "drop" or
     * "off"), and the callers the kernel refused added to counts by reason.
     * Any thread. */
    const char *(*prefilter)(void *ctx, size_t l, uint64_t counts[CG__REJ_COUNT]);

    /* policy: the judge's inputs for gate listener l under gen at this
     * instant (bans, its set, its source limits, the admission count), for
     * an explanation: nothing is counted. Any thread. */
    void (*policy)(void *ctx, const cg__gen *gen, size_t l, cg__policy *out);

    /* runtime: the bans, sources and recent callers, and the way to ban
     * and lift bans (runtime.h). Valid while the view is. Any thread. */
    cg__runtime *(*runtime)(void *ctx);

    /* candidate: the configuration file loaded and checked as a reload
     * would, nothing changed (gate.h's cg__gate_candidate). Any thread. */
    int (*candidate)(void *ctx, cg__gen **out, char *err, size_t errlen);

    /* crowdsec: the CrowdSec client's state into *out; false (nothing
     * written) when no [crowdsec] section is in force. NULL: never. Any
     * thread. */
    bool (*crowdsec)(void *ctx, cg__crowdsec_stats *out);
} cg__gate_view;

#endif /* CG_GATE_VIEW_H */
