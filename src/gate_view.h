/* gate_view.h — what the admin port may ask of the running gate.
 *
 * A table of functions and their context, so the admin port depends on no
 * part of the gate but this: the daemon fills it from the gate and the
 * reloader, the admin fuzz target from a stand-in.
 */
#ifndef CG_GATE_VIEW_H
#define CG_GATE_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "gen.h"
#include "stats.h"

typedef struct cg__gate_view {
    void *ctx;
    /* A reference to the current generation (drop it with cg__gen_unref).
     * Any thread. */
    cg__gen *(*acquire)(void *ctx);
    /* The counters (valid while the gate runs). Any thread. */
    cg__stats *(*stats)(void *ctx);
    /* Milliseconds since start. Any thread. */
    uint64_t (*uptime_ms)(void *ctx);
    /* The effective max_connections. Any thread. */
    uint64_t (*max_connections)(void *ctx);
    /* The number of workers (fixed until restart). Any thread. */
    unsigned (*workers)(void *ctx);
    /* Reload and wait for the outcome: 0 and the new generation, or a
     * negative CG_E* code with the one-line error in err (CG_EAGAIN: the
     * gate is stopping). Never from the control thread. */
    int (*reload_wait)(void *ctx, uint64_t *generation, char *err, size_t errlen);
} cg__gate_view;

#endif /* CG_GATE_VIEW_H */
