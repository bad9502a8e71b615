/* takeover.h — a restart that drops no caller: the running condgate hands
 * its listening sockets to a new one over a unix socket ([gateway]
 * takeover_socket), then drains; the new one is `condgate -x PATH`.
 *
 * The exchange, on one connection that the new process opens:
 *
 *     new → old   "condgate-takeover 1\n"
 *     old → new   "condgate-sockets N\n" and N lines "NAME\n" (a listener's
 *                 name, or "admin"), with the N descriptors (SCM_RIGHTS)
 *                 new starts: its listeners and admin port take those
 *                 sockets (inherit.h), its workers accept from them
 *     new → old   "ready\n"
 *     old → new   "draining\n": the old process stops accepting (the
 *                 sockets stay open and listening for the new one), lets go
 *                 of its kernel prefilter, drains and exits 0.
 *
 * Both processes accept from the same queues for a moment, so no caller
 * waits and none is lost. If the new process goes away before "ready", the
 * old one carries on as before. Only a peer of the same user (or root) is
 * served, and one at a time. Linux; elsewhere the calls answer CG_ENOTSUP.
 */
#ifndef CG_TAKEOVER_H
#define CG_TAKEOVER_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "condgate/accept.h"
#include "condgate/config.h"
#include "inherit.h"

#define CG_TAKEOVER_HELLO "condgate-takeover 1\n"
#define CG_TAKEOVER_READY "ready\n"
#define CG_TAKEOVER_DRAINING "draining\n"
/* Longest "condgate-sockets N\n" + N names. */
#define CG_TAKEOVER_MSG_MAX (32 + CG_INHERIT_MAX * (CG_CONFIG_MAX_NAME + 1))
#define CG_TAKEOVER_TIMEOUT_MS 30000 /* for each step of the exchange */

/* The names of the sockets handed over, in the order of the descriptors. */
typedef struct cg__takeover_names {
    size_t n;
    char name[CG_INHERIT_MAX][CG_CONFIG_MAX_NAME + 1];
} cg__takeover_names;

/* cg__takeover_parse: the old process's "condgate-sockets" message in
 * buf[0..len), which came with nfds descriptors. Returns 1 with *out when it
 * is whole (and nothing follows it), 0 when more bytes are needed, or
 * CG_EINVAL with the reason in why (not the message, a count that is not
 * nfds, a name that is neither a listener name nor "admin", a name twice,
 * longer than CG_TAKEOVER_MSG_MAX). Pure: any thread. */
int cg__takeover_parse(const char *buf, size_t len, size_t nfds, cg__takeover_names *out, char *why,
                       size_t whylen);

/* cg__takeover_format: the message for n sockets named names[i] into buf
 * (CG_TAKEOVER_MSG_MAX bytes); returns its length, or 0 when a name is not
 * valid or n > CG_INHERIT_MAX. */
size_t cg__takeover_format(const char *const *names, size_t n, char *buf);

/* ------------------------------------------------------------------------
 * The old process: serving the takeover socket on the control loop.
 */

typedef struct cg__takeover cg__takeover;

typedef struct cg__takeover_hooks {
    /* The sockets to hand over: up to max descriptors and their names
     * (valid until handed or the connection ends). Returns how many. */
    size_t (*sockets)(void *arg, cg_socket_t *fds, const char **names, size_t max);
    /* The new process is serving: let go of the sockets and drain. */
    void (*handed)(void *arg);
    void *arg;
} cg__takeover_hooks;

/* cg__takeover_serve: listen on unix socket `path` (mode 0600) on loop.
 * A socket file left by a process that is gone is replaced; one a live
 * process answers on is an error (CG_EADDRINUSE, "use condgate -x"),
 * unless `replacing` (this process took over from the one there). Returns 0
 * and *out, or a negative CG_E* code with the reason in err. Control thread. */
int cg__takeover_serve(uv_loop_t *loop, const char *path, bool replacing,
                       const cg__takeover_hooks *hooks, cg__takeover **out, char *err,
                       size_t errlen);

/* cg__takeover_close: stop serving (a takeover in progress is dropped: the
 * new process gives up) and remove the socket file if it is still ours.
 * Its handles finish closing as the loop runs; free with
 * cg__takeover_free after uv_run returned. Accepts NULL. */
void cg__takeover_close(cg__takeover *t);
void cg__takeover_free(cg__takeover *t);

/* ------------------------------------------------------------------------
 * The new process (condgate -x PATH), main thread, before and after start.
 */

/* cg__takeover_fetch: connect to path, ask for the sockets and hold them
 * in the inherit table (inherit.h). Returns 0 and *conn (the connection,
 * for cg__takeover_finish), or a negative CG_E* code with the reason in
 * err. */
int cg__takeover_fetch(const char *path, cg_socket_t *conn, char *err, size_t errlen);

/* cg__takeover_finish: tell the old process this one serves ("ready"),
 * wait for its "draining" and close conn. Returns 0, or a negative CG_E*
 * code with the reason in err (the old process did not confirm: it may
 * still be serving too). */
int cg__takeover_finish(cg_socket_t conn, char *err, size_t errlen);

/* cg__takeover_abort: close conn without "ready": the old process carries
 * on. Ignores CG_INVALID_SOCKET. */
void cg__takeover_abort(cg_socket_t conn);

#endif /* CG_TAKEOVER_H */
