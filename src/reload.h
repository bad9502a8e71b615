/* reload.h — configuration reloads: loading off to the side, waiters,
 * coalescing.
 *
 * A reload reads every file again in the libuv thread pool, so the control
 * loop keeps accepting meanwhile, and there the owner's prepare hook builds
 * what the new configuration needs (a generation, kernel tables); its apply
 * hook then puts it in force on the control thread, or refuses it.
 * One load runs at a time. Requests that come while one runs (SIGHUP, POST
 * /reload) are served by one more load after it, so the files are always
 * read after the request; any number of waiting requests share it.
 */
#ifndef CG_RELOAD_H
#define CG_RELOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "condgate/config.h"
#include "stats.h"

typedef struct cg__reload_hooks {
    /* Build what cfg needs to be put in force, off to the side (in the
     * thread pool, right after the load): takes cfg whatever happens.
     * Returns 0 and *prepared, or a negative CG_E* code with the one-line
     * reason in err. */
    int (*prepare)(void *arg, cg_config *cfg, void **prepared, char *err, size_t errlen);
    /* Put it in force (control thread), taking `prepared` whatever happens.
     * Returns 0 with the new generation's number in *generation, or a
     * negative CG_E* code with the reason in err. */
    int (*apply)(void *arg, void *prepared, uint64_t *generation, char *err, size_t errlen);
    /* The generation in force (control thread), for failed reloads. */
    uint64_t (*generation)(void *arg);
    /* Optional (control thread): a reload begins (reloading true), or it
     * is over, rc its outcome (0 or the failure's code). */
    void (*phase)(void *arg, bool reloading, int rc);
    void *arg;
} cg__reload_hooks;

typedef struct cg__reloader cg__reloader;

/* cg__reloader_new: reloads of the INI file `path` on loop, counted in
 * stats (reloads, reload_failures) and logged (event=reload). hooks is
 * copied. Returns 0 and *out, or CG_ENOMEM / CG_ESYS. Control thread. */
int cg__reloader_new(uv_loop_t *loop, const char *path, cg__stats *stats,
                     const cg__reload_hooks *hooks, cg__reloader **out);

/* cg__reloader_request: reload (SIGHUP); while one runs, one more follows.
 * Ignored once stopping. Control thread. */
void cg__reloader_request(cg__reloader *r);

/* cg__reloader_wait: ask for a reload and wait for its outcome. Returns 0
 * and the new generation number in *generation (may be NULL), or a negative
 * CG_E* code with the one-line error in err (CG_EAGAIN once stopping). Any
 * thread except the control thread. */
int cg__reloader_wait(cg__reloader *r, uint64_t *generation, char *err, size_t errlen);

/* cg__reloader_stop: start no more loads; waiting and new requests are
 * answered "the gate is stopping". A load in progress completes. Control
 * thread. */
void cg__reloader_stop(cg__reloader *r);

/* cg__reloader_close: as stop, and close for good: no request can wait any
 * more, so every cg__reloader_wait returns. Its handle closes as the loop
 * runs on. A second call does nothing. Accepts NULL. Control thread. */
void cg__reloader_close(cg__reloader *r);

/* cg__reloader_free: free a closed reloader once the loop has run its close
 * callbacks and no load is in progress (uv_run returned). Accepts NULL. */
void cg__reloader_free(cg__reloader *r);

#endif /* CG_RELOAD_H */
