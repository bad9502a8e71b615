/* gate.h — the running gateway: listeners, the control loop, reload, drain.
 *
 * The control thread (the one that calls cg__gate_run) owns the listeners
 * and the current generation. It judges every caller in the conditional
 * accept callback, hands accepted sockets to the worker pool, reloads the
 * configuration off to the side and swaps it in, and on SIGTERM/SIGINT stops
 * accepting and drains.
 */
#ifndef CG_GATE_H
#define CG_GATE_H

#include <stddef.h>
#include <stdint.h>

#include "condgate/config.h"
#include "gen.h"
#include "stats.h"

typedef struct cg__gate cg__gate;

/* cg__gate_run: run the gate on an already loaded configuration `cfg`
 * (ownership passes to the gate) read from `path`, until SIGTERM/SIGINT and
 * the drain that follows. Returns the process exit status: 0 after a clean
 * stop, 1 on a runtime failure (a bind failed, out of memory at start). */
int cg__gate_run(const char *path, cg_config *cfg);

/* cg__gate_reload_wait: ask the control thread to reload (as SIGHUP does)
 * and wait for the outcome. A request made while a reload is running waits
 * for a fresh one, so the files are always read after the request. Returns 0
 * and the new generation number in *generation, or a negative CG_E* code with
 * the one-line error in err. Any thread except the control thread. */
int cg__gate_reload_wait(cg__gate *g, uint64_t *generation, char *err, size_t errlen);

/* cg__gate_acquire: a reference to the current generation (drop it with
 * cg__gen_unref). Any thread. */
cg__gen *cg__gate_acquire(cg__gate *g);

/* cg__gate_stats: the gate's counters (owned by the gate; valid while it
 * runs). Any thread. */
cg__stats *cg__gate_stats(cg__gate *g);

/* cg__gate_uptime_ms: milliseconds since the gate started. Any thread. */
uint64_t cg__gate_uptime_ms(const cg__gate *g);

/* cg__gate_max_connections: the effective max_connections (the configured
 * value, lowered to fit the descriptor limit). Any thread. */
uint64_t cg__gate_max_connections(cg__gate *g);

/* cg__gate_workers: number of worker threads (fixed until restart). */
unsigned cg__gate_workers(const cg__gate *g);

#endif /* CG_GATE_H */
