/* admin.h — the admin HTTP port (libmicrohttpd): health, counters,
 * Prometheus metrics, rule explanations and reloads (SPEC §6).
 *
 * Callers are judged before any HTTP is read, by the same rule engine as
 * the listeners, against [admin] allow of the current generation. The
 * server runs its own thread(s); every handler reads the gate through the
 * functions of a cg__gate_view (gate_view.h), which are safe from any
 * thread, so this module does not know the gate itself.
 */
#ifndef CG_ADMIN_H
#define CG_ADMIN_H

#include <stddef.h>

#include "condgate/config.h"
#include "gate_view.h"

/* Bounds of the admin port. */
#define CG_ADMIN_MAX_CONNECTIONS 64 /* open admin connections at once */
#define CG_ADMIN_TIMEOUT_S 5        /* a connection idle this long is closed */
#define CG_ADMIN_MEMORY_LIMIT 32768 /* bytes per connection for the request */

typedef struct cg__admin cg__admin;

/* cg__admin_start: serve the admin port described by conf (which must be
 * enabled) for the gate seen through view. *view is copied; view->ctx and
 * what its functions return must stay valid until cg__admin_stop. Returns 0
 * and *out, or a negative CG_E* code with a one-line reason in err (e.g. the
 * address is in use). Control thread. */
int cg__admin_start(const cg__gate_view *view, const cg_admin_conf *conf, cg__admin **out,
                    char *err, size_t errlen);

/* cg__admin_fd: the listening socket, for a takeover
 * (CG_INVALID_SOCKET once handed over). Control thread. */
cg_socket_t cg__admin_fd(cg__admin *a);

/* cg__admin_hand_over: stop accepting callers (another condgate took the
 * socket over); requests in progress are answered. Accepts NULL. Control
 * thread. */
void cg__admin_hand_over(cg__admin *a);

/* cg__admin_stop: stop serving and free. Waits for requests in progress.
 * Accepts NULL. Control thread, and only once the gate refuses new reload
 * requests (a handler may be waiting in the view's reload_wait). */
void cg__admin_stop(cg__admin *a);

#endif /* CG_ADMIN_H */
