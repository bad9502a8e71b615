/* runtime.h — what lives beside the generations and survives reloads: the
 * runtime bans (their table, the kernel's copy, the state file, and the
 * sweep of open connections a new ban covers), the per-source table, and
 * the ring of recent callers the reload preview replays.
 *
 * One ban goes through the same steps whoever asks (the admin port, an
 * auto-ban, an expiry):
 *
 *     table ──► kernel prefilter (when loaded) ──► sweep of open connections
 *       └──────► state file (POST /bans waits for it; others only kick it)
 *
 * The gate judges with the table (policy.h's ban stage); the kernel holds
 * the same bans, so a banned caller of a listener with the prefilter on is
 * refused before the handshake.
 */
#ifndef CG_RUNTIME_H
#define CG_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "bans.h"
#include "condgate/config.h"
#include "sources.h"
#include "prefilter.h"
#include "recent.h"

typedef struct cg__runtime cg__runtime;

/* cg__runtime_new: the dynamic state for the configuration cfg loaded at
 * start: a ban table of cfg->max_bans read from cfg->state_file (expired
 * bans dropped; a bad file fails with "FILE:LINE: ..." in err), its writer,
 * the source table and the recent-caller ring. Sweeps are signalled on
 * loop (the control thread's). Returns 0 and *out, or a CG_E* code with the
 * reason in err. */
int cg__runtime_new(uv_loop_t *loop, const cg_config *cfg, cg__runtime **out, char *err,
                    size_t errlen);

/* cg__runtime_attach: from now on, bans go to the kernel prefilter pf (NULL:
 * none; every ban in the table is loaded into it now), and after each new
 * ban sweep(arg) runs on the control thread to reset the open connections
 * it covers (the gate's worker pool). Control thread, once at start.
 * Returns the number of bans the kernel could not take (its map is full). */
size_t cg__runtime_attach(cg__runtime *rt, cg__prefilter *pf, void (*sweep)(void *arg), void *arg);

/* cg__runtime_reconfigure: the bounds of a reloaded configuration
 * (max_bans, source_table_max). Control thread. */
void cg__runtime_reconfigure(cg__runtime *rt, const cg_config *cfg);

/* The parts, for the judge and the admin port (owned by rt). */
cg__bans *cg__runtime_bans(cg__runtime *rt);
cg__sources *cg__runtime_sources(cg__runtime *rt);
cg__recent *cg__runtime_recent(cg__runtime *rt);

/* cg__runtime_now_s: the wall clock, in whole seconds since the epoch. */
int64_t cg__runtime_now_s(void);

/* cg__runtime_ban: put ban in force: the table, the kernel, a sweep of the
 * open connections it covers; then, with durable, wait until the state file
 * holds it. *replaced says whether a ban on that prefix was replaced.
 * Returns 0; CG_ERANGE (max_bans reached), CG_ENOMEM, or CG_EIO (in force,
 * but the state file could not be written), with the reason in err. Any
 * thread but the control thread when durable (it would wait on itself). */
int cg__runtime_ban(cg__runtime *rt, const cg__ban *ban, bool durable, bool *replaced, char *err,
                    size_t errlen);

/* cg__runtime_unban: lift the ban on exactly prefix c (table, kernel), and
 * wait for the state file. Returns 0, CG_ENOENT, or CG_EIO with the reason
 * in err. Any thread but the control thread. */
int cg__runtime_unban(cg__runtime *rt, const cg_cidr *c, char *err, size_t errlen);

/* cg__runtime_ban_over: put ban in the table and the kernel, for a batch
 * (no sweep, no state-file write yet: call cg__runtime_changed after the
 * batch). A ban already on that prefix is replaced only when its origin's
 * bit (1u << origin) is in `over` (else CG_EEXIST, nothing changes).
 * Returns 0, CG_EEXIST, CG_ERANGE, CG_ENOMEM or CG_EINVAL (a ban no request
 * could make). Any thread. */
int cg__runtime_ban_over(cg__runtime *rt, const cg__ban *ban, unsigned over, bool *replaced);

/* cg__runtime_unban_origin: lift the ban on exactly prefix c (table,
 * kernel) when its origin is `origin`, for a batch (the state file is
 * written after cg__runtime_changed). Returns 0 or CG_ENOENT (none, or
 * another origin's: it stays). Any thread. */
int cg__runtime_unban_origin(cg__runtime *rt, const cg_cidr *c, cg__ban_origin origin);

/* cg__runtime_changed: after a batch of the two above: one sweep of the
 * open connections the new bans cover, and the state file rewritten soon
 * (not waited for). Any thread. */
void cg__runtime_changed(cg__runtime *rt);

/* cg__runtime_tick: expire the bans due at now_s (table and kernel; the
 * state file is rewritten soon after). Control thread, about once a second. */
void cg__runtime_tick(cg__runtime *rt, int64_t now_s);

/* cg__runtime_kernel_misses: bans the kernel's map could not take (full). */
uint64_t cg__runtime_kernel_misses(cg__runtime *rt);

/* cg__runtime_close: stop the sweep signal (its handle is closed on the
 * loop). Control thread, before the loop's last run. */
void cg__runtime_close(cg__runtime *rt);

/* cg__runtime_free: write the state file's last changes, stop its writer,
 * free everything. No connection may hold a source entry any more. Accepts
 * NULL. */
void cg__runtime_free(cg__runtime *rt);

#endif /* CG_RUNTIME_H */
