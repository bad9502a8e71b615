/* gate.h — the gate: the current generation, judging callers, admission,
 * hand-off and drain.
 *
 * The gate owns the listeners (listener.c) and the generation in force. Each
 * caller is judged by the one judge (policy.h) against the current
 * generation and the admission count: on Linux by the worker that accepted
 * it (cg__gate_pool_env's hooks), which relays it on; elsewhere, and for
 * listeners that take PROXY headers, by the control thread, which hands
 * admitted sockets to the worker pool with their listener's route. A new
 * generation (from a reload) is swapped in with one pointer store under a
 * lock, and each caller is judged wholly by one generation. Control thread
 * unless a function says otherwise.
 */
#ifndef CG_GATE_H
#define CG_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "admission.h"
#include "condgate/config.h"
#include "gen.h"
#include "policy.h"
#include "runtime.h"
#include "stats.h"
#include "worker.h"

typedef struct cg__gate cg__gate;

/* cg__gate_new: a gate on loop for the configuration loaded at start (cfg:
 * ownership passes to the gate, also on failure) as generation 1, with
 * counters for its listeners and workers, judging with the bans and sources
 * of rt (which must outlive the gate). fd_limit is the process's
 * descriptor limit, which bounds max_connections (logged when it lowers it).
 * Listens on nothing yet. Returns 0 and *out, or CG_ENOMEM. */
int cg__gate_new(uv_loop_t *loop, cg_config *cfg, uint64_t fd_limit, cg__runtime *rt,
                 cg__gate **out);

/* cg__gate_policy: what the judge looks at for a caller of gate listener l
 * under generation gen: the bans, l's rule set, its source limits and the
 * admission count, at the present time. real: a real caller (counts hits
 * and rate refusals) rather than an explanation. Any thread (real: the
 * thread that judges l's callers). */
void cg__gate_policy(cg__gate *g, const cg__gen *gen, size_t l, bool real, cg__policy *out);

/* cg__gate_open: bind and listen on every listener, and load the kernel
 * prefilter for those whose `prefilter` is not off (auto falls back to off
 * with one warning where it cannot be loaded; refuse and drop fail). Returns
 * 0, or a negative CG_E* code with the one-line reason in err (what was
 * opened so far is closed by cg__gate_close). Callers are taken once the
 * loop runs and the pool is given (cg__gate_start). */
int cg__gate_open(cg__gate *g, char *err, size_t errlen);

/* cg__gate_start: hand admitted callers to pool from now on (it must outlive
 * the gate's listeners), and log each listener (event=listen). */
void cg__gate_start(cg__gate *g, cg__pool *pool);

/* cg__gate_pool_env: what a pool that accepts (cg__pool_accepts) needs of
 * the gate: the listening sockets its workers accept from (env->listen_fds, one per
 * listener; CG_INVALID_SOCKET for those the control thread accepts itself)
 * and the hooks that judge their callers (env->gate). After cg__gate_open;
 * the sockets stay open until cg__gate_free, so free the pool first. */
void cg__gate_pool_env(cg__gate *g, cg__pool_env *env);

/* A reload's next generation, prepared but not in force. */
typedef struct cg__gate_next cg__gate_next;

/* cg__gate_prepare: make cfg (a reload; taken whatever happens) the next
 * generation, off to the side: the same listener names and binds, else a
 * refusal naming the line that changed; and what the kernel prefilter will
 * hold for it, loaded into a kernel map of its own. Returns 0 and *next,
 * or a negative CG_E* code with the reason in err. Any thread (the reload
 * thread), one at a time. */
int cg__gate_prepare(cg__gate *g, cg_config *cfg, cg__gate_next **next, char *err, size_t errlen);

/* cg__gate_commit: put `next` in force (taken whatever happens): the
 * kernel's table and the generation the condition callback reads, one right
 * after the other on this thread. Returns 0 and the new number in
 * *generation, or CG_ESYS with the reason in err (nothing changed). */
int cg__gate_commit(cg__gate *g, cg__gate_next *next, uint64_t *generation, char *err,
                    size_t errlen);

/* cg__gate_candidate: load the configuration file again as a reload would
 * and check it the same way (listeners, kernel modes), without preparing a
 * kernel table or changing anything: the candidate of a reload preview, as
 * a generation numbered 0 (drop it with cg__gen_unref). Returns 0 and *out,
 * or a CG_E* code with the reason a reload would give in err. Any thread
 * (an admin request). */
int cg__gate_candidate(cg__gate *g, cg__gen **out, char *err, size_t errlen);

/* cg__gate_next_free: drop a prepared generation. Accepts NULL. Any thread. */
void cg__gate_next_free(cg__gate_next *next);

/* cg__gate_prefilter: listener l's kernel prefilter: its mode in force
 * ("refuse", "drop" or "off") and the callers the kernel refused, by reason,
 * added to counts[CG__REJ_COUNT]. Any thread. */
const char *cg__gate_prefilter(cg__gate *g, size_t l, uint64_t counts[CG__REJ_COUNT]);

/* cg__gate_drain: stop accepting (close every listener) and call
 * drained(arg) once no connection is open or drain_timeout_ms has passed.
 * A second call stops waiting: drained is called at the next check. */
void cg__gate_drain(cg__gate *g, const char *why, void (*drained)(void *arg), void *arg);

/* cg__gate_sockets: the listening sockets and their listeners' names, up to
 * max, for a takeover (takeover.h). Returns how many. Control thread. */
size_t cg__gate_sockets(cg__gate *g, cg_socket_t *fds, const char **names, size_t max);

/* cg__gate_hand_over: another condgate serves the listening sockets from
 * now on: closing them (the drain) leaves them listening for it, and the
 * kernel prefilter stops judging for this process. Call before
 * cg__gate_drain. Control thread. */
void cg__gate_hand_over(cg__gate *g);

/* cg__gate_close: close what the gate keeps on the loop (listeners,
 * timers) and flush the reject-line summary. Free with cg__gate_free once
 * the loop has run the close callbacks. */
void cg__gate_close(cg__gate *g);

/* cg__gate_free: free a closed gate and drop its generation. Accepts NULL. */
void cg__gate_free(cg__gate *g);

/* cg__gate_log_stats: one counters line for the whole gate (event `event`)
 * and, with per_listener, one line per listener (event=listener_stats). */
void cg__gate_log_stats(cg__gate *g, const char *event, bool per_listener);

/* cg__gate_generation: the current generation's number. */
uint64_t cg__gate_generation(const cg__gate *g);

/* cg__gate_acquire: a reference to the current generation (drop it with
 * cg__gen_unref). Any thread. */
cg__gen *cg__gate_acquire(cg__gate *g);

/* cg__gate_stats, cg__gate_admission: the gate's counters and admission
 * count (owned by the gate, valid until cg__gate_free). Any thread. */
cg__stats *cg__gate_stats(cg__gate *g);
cg__admission *cg__gate_admission(cg__gate *g);

/* cg__gate_names: the listeners' names, by gate index (fixed until
 * restart; owned by the gate). Any thread. */
char **cg__gate_names(cg__gate *g);

/* cg__gate_uptime_ms: milliseconds since the gate was made. Any thread. */
uint64_t cg__gate_uptime_ms(const cg__gate *g);

/* cg__gate_workers: the worker count of generation 1 (fixed until
 * restart). Any thread. */
unsigned cg__gate_workers(const cg__gate *g);

/* ------------------------------------------------------------------------
 * The gate's policies, as plain functions (unit-tested).
 */

/* cg__gate_fit_connections: max_connections as it can be honoured: the
 * configured value, lowered so that every connection fits under fd_limit
 * after a reserve for the process (stdio, loops, admin port, and per
 * listener and per worker a few descriptors). A relayed connection takes two
 * descriptors, one to the built-in echo one; with any listener on a real
 * backend (any_backend) plan for two each. At least 1. */
uint64_t cg__gate_fit_connections(uint64_t fd_limit, size_t nlisteners, unsigned workers,
                                  bool any_backend, unsigned configured);

/* cg__gate_map_listeners: match the listeners of a new configuration with
 * the n running ones (names[i], binds[i]): the same names and the same binds,
 * or CG_EINVAL with "FILE:LINE: ..." in err (new, removed, or moved
 * listeners need a restart). Fills lmap[i] with running listener i's index
 * in cfg->listeners. */
int cg__gate_map_listeners(char *const *names, const cg_endpoint *binds, size_t n,
                           const cg_config *cfg, size_t *lmap, char *err, size_t errlen);

/* cg__gate_kernel_mode: what the kernel does (CG_PF_MODE_*) for a listener
 * whose `prefilter` is m, with the prefilter loaded or not. False when m asks
 * for it by name (refuse, drop) and it could not be loaded. */
bool cg__gate_kernel_mode(cg_prefilter_mode m, bool loaded, uint32_t *mode);

/* cg__gate_print_prefilter: for `condgate -t`: try to load the kernel
 * prefilter as a start would, and print each listener's mode in force, with
 * the reason when it is off, one line each. Returns 0, or 1 when a listener
 * asks for a mode that cannot be had here (the line says why). */
int cg__gate_print_prefilter(const cg_config *cfg, FILE *out);

#endif /* CG_GATE_H */
