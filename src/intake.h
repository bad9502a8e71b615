/* intake.h — callers of `accept_proxy` listeners, accepted from a trusted
 * sender, whose PROXY header is still awaited (SPEC §13).
 *
 * The real client is known only from the header, so these callers are
 * judged after the TCP accept: the intake watches each socket on the
 * control loop, reads exactly the header's bytes (peeking first, so not one
 * byte of the client's payload is taken), and hands the socket on with the
 * parsed header, or resets it when the header is bad, late, or never comes.
 *
 *     accepted ──► waiting ──whole header──► header hook (judged, relayed or reset)
 *                     │
 *                     └──bad, EOF, error, proxy_timeout_ms, stop──► reset, failed hook
 *
 * Bounded: at most `max` callers wait at once (each holds a descriptor and
 * CG_PROXY_MAX bytes); one more is reset and reported as failed. Control
 * thread only.
 */
#ifndef CG_INTAKE_H
#define CG_INTAKE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "condgate/accept.h"
#include "proxy_proto.h"

typedef struct cg__intake cg__intake;

typedef struct cg__intake_hooks {
    /* A whole header came from `sender` on listener l: fd (non-blocking,
     * its header read off, the client's bytes untouched) is the hook's from
     * here on. */
    void (*header)(void *arg, size_t l, cg_socket_t fd, const struct sockaddr *sender,
                   const cg__proxy_hdr *h);
    /* No header: fd was reset and closed already; why is a short reason. */
    void (*failed)(void *arg, size_t l, const struct sockaddr *sender, const char *why);
    void *arg;
} cg__intake_hooks;

/* cg__intake_new: an intake on loop for at most max waiting callers.
 * Returns 0 and *out, or CG_ENOMEM. */
int cg__intake_new(uv_loop_t *loop, size_t max, const cg__intake_hooks *hooks, cg__intake **out);

/* cg__intake_add: wait on fd (taking it) for a header of the versions in
 * accept (CG_PROXY_ACCEPT_* bits) for at most timeout_ms. A header (or a
 * refusal) already there is handled at once, through the hooks, before
 * this returns. On CG_ERANGE
 * (max callers wait already) or CG_ENOMEM, fd is reset and closed and the
 * failed hook is not called. */
int cg__intake_add(cg__intake *in, size_t l, cg_socket_t fd, const struct sockaddr *sender,
                   unsigned accept, uint32_t timeout_ms);

/* cg__intake_waiting: callers waiting now. */
size_t cg__intake_waiting(const cg__intake *in);

/* cg__intake_close: reset every waiting caller (without calling the
 * failed hook) and close the handles; free with cg__intake_free once the
 * loop has run the close callbacks. */
void cg__intake_close(cg__intake *in);

/* cg__intake_free: free a closed intake. Accepts NULL. */
void cg__intake_free(cg__intake *in);

#endif /* CG_INTAKE_H */
