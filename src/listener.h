/* listener.h — one listening socket on the control loop: conditional accept
 * in batches, deferred callers, and the pause when descriptors run out.
 *
 * A listener knows nothing of rules, limits or workers: it asks its owner to
 * judge each caller (the condition callback) and reports every outcome
 * through the hooks below. Control thread only.
 */
#ifndef CG_LISTENER_H
#define CG_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "condgate/accept.h"
#include "condgate/config.h"
#include "policy.h"

/* What a listener reports. index is the listener's own (as opened). */
typedef struct cg__listener_hooks {
    /* Judge a caller before it is accepted: fill *out and return whether to
     * admit. */
    bool (*judge)(void *arg, size_t index, const struct sockaddr *caller, cg__judgement *out);
    /* An admitted caller: fd (non-blocking) is the hook's from here on. j
     * is the judge's word on it (j->admit false: the judge refused it and
     * the hook admitted it all the same, as a shadow listener does). */
    void (*admitted)(void *arg, size_t index, cg_socket_t fd, const cg_accept_result *res,
                     const cg__judgement *j);
    /* A refused caller, already reset: j is the judge's word, or a limit
     * refusal for a caller whose deferrals ran out. */
    void (*refused)(void *arg, size_t index, const cg_accept_result *res, const cg__judgement *j);
    /* Out of descriptors: one caller shed, and the listener pauses. */
    void (*shed)(void *arg, size_t index);
    void *arg;
} cg__listener_hooks;

typedef struct cg__listener cg__listener;

/* cg__listener_open: listen on `bind` as listener `name` (on the socket
 * passed for it, when systemd or a takeover passed one: inherit.h) (index `index` in
 * the hooks' calls) and start accepting on loop; `conditional` as for
 * cg__sys_listen. hooks is copied. Returns 0
 * and *out, or a negative CG_E* code with "listener 'NAME': ..." in err. On
 * failure *out is still set when anything was made: free it with
 * cg__listener_close and cg__listener_free like an open one. */
int cg__listener_open(uv_loop_t *loop, const char *name, const cg_endpoint *bind, size_t index,
                      bool conditional, const cg__listener_hooks *hooks, cg__listener **out,
                      char *err, size_t errlen);

/* cg__listener_open_bare: listen on `bind` as listener `name` without
 * watching the socket: the workers accept from it (cg__pool_accepts).
 * cg__listener_close stops it listening; the descriptor is closed by
 * cg__listener_free, which must come after the workers are joined. Returns
 * as cg__listener_open. */
int cg__listener_open_bare(const char *name, const cg_endpoint *bind, bool conditional,
                           cg__listener **out, char *err, size_t errlen);

/* cg__listener_fd: the listening socket (CG_INVALID_SOCKET once closed),
 * for the kernel prefilter to watch. */
cg_socket_t cg__listener_fd(const cg__listener *l);

/* cg__listener_share: another process holds the socket from now on (it was
 * handed over): closing it must leave it listening for that one. A socket
 * passed by systemd or a takeover (inherit.h) is shared from the start. */
void cg__listener_share(cg__listener *l);

/* cg__listener_close: stop accepting, reject deferred callers and close the
 * socket; its handles finish closing as the loop runs on. A second call does
 * nothing. Accepts NULL. */
void cg__listener_close(cg__listener *l);

/* cg__listener_free: free a closed listener once the loop has run its close
 * callbacks (uv_run returned). Accepts NULL. */
void cg__listener_free(cg__listener *l);

#endif /* CG_LISTENER_H */
