/* condgate/accept.h — conditional accept in the shape of Winsock's WSAAccept.
 *
 * A condition callback sees the caller's and the callee's addresses before
 * the connection is handed on and returns a verdict:
 *
 *   CG_ACCEPT  the socket is returned to the caller of cg_acceptor_accept;
 *   CG_REJECT  the caller gets a TCP reset and not one byte; the socket never
 *              leaves the accept layer (Windows: CF_REJECT);
 *   CG_DEFER   the caller is held, unserved, and offered to the callback
 *              again later (Windows: CF_DEFER). A deferred caller is
 *              re-offered every defer_retry_ms, at most max_defers times and
 *              for at most defer_timeout_ms; after that, or when more than
 *              max_deferred callers are held at once, it is rejected.
 *              A held caller is not served, so its bytes wait in the kernel;
 *              if it gives up meanwhile, that shows only once it is accepted.
 *
 * On POSIX the kernel has completed the handshake before any user code can
 * run, so "reject" is a reset right after accept(2): the caller sees its
 * connection refused by reset before it can read anything, and the gate
 * never reads from it. On Windows with SO_CONDITIONAL_ACCEPT the handshake
 * itself is withheld until the callback accepts.
 *
 * One acceptor per listening socket; an acceptor is used by one thread.
 */
#ifndef CONDGATE_ACCEPT_H
#define CONDGATE_ACCEPT_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

#if defined(_WIN32)
#include <winsock2.h>
#include <ws2tcpip.h>
typedef SOCKET cg_socket_t;
#define CG_INVALID_SOCKET INVALID_SOCKET
#else
#include <sys/socket.h>
typedef int cg_socket_t;
#define CG_INVALID_SOCKET (-1)
#endif

typedef enum cg_verdict {
    CG_ACCEPT = 0,
    CG_REJECT = 1,
    CG_DEFER = 2,
} cg_verdict;

/* cg_verdict_name: "accept", "reject" or "defer". */
const char *cg_verdict_name(cg_verdict v);

/* The condition callback: caller (remote) and callee (local) addresses, and
 * the user argument given to cg_acceptor_new. Runs on the thread that calls
 * cg_acceptor_accept, once per offer (a deferred caller is offered again). */
typedef cg_verdict (*cg_condition_fn)(const struct sockaddr *caller, socklen_t caller_len,
                                      const struct sockaddr *callee, socklen_t callee_len,
                                      void *arg);

/* Largest max_deferred cg_acceptor_new takes (each held caller is a
 * descriptor, and the slots are allocated up front). */
#define CG_ACCEPT_MAX_DEFERRED 65536u

typedef struct cg_accept_opts {
    unsigned max_deferred;     /* callers held at once; 0 turns every defer into a
                                  reject; default 64 */
    unsigned max_defers;       /* times one caller may be deferred: the callback
                                  sees it at most max_defers + 1 times; default 8 */
    uint32_t defer_retry_ms;   /* delay between offers; default 50 */
    uint32_t defer_timeout_ms; /* longest hold, counted from the first offer; a
                                  defer whose next offer would come later is a
                                  reject; default 2000 */
    bool keep_reserve_fd;      /* hold a spare descriptor to shed callers on EMFILE
                                  (POSIX); default true */
} cg_accept_opts;

/* cg_accept_opts_default: fill *o with the defaults above. */
void cg_accept_opts_default(cg_accept_opts *o);

typedef struct cg_acceptor cg_acceptor;

/* What happened to one caller, for counters and logs. caller_len is 0 when
 * no caller was involved (CG_EAGAIN, errors); then the rest means nothing.
 * timed_out marks a reject by the acceptor rather than the callback: the
 * callback deferred the caller, but its deferrals ran out (max_defers,
 * defer_timeout_ms) or no slot was free (max_deferred). */
typedef struct cg_accept_result {
    cg_verdict verdict;             /* final verdict of this offer */
    struct sockaddr_storage caller; /* remote address */
    socklen_t caller_len;
    bool timed_out; /* rejected because its deferrals ran out */
} cg_accept_result;

/* cg_acceptor_new: wrap the listening socket `fd` (already bound and
 * listening, non-blocking, TCP over IPv4 or IPv6). opts may be NULL for
 * defaults; they are copied. The acceptor does not own fd: close it after
 * cg_acceptor_free. Returns 0 and *out, CG_ENOMEM, CG_EMFILE (no descriptor
 * for the reserve), or CG_EINVAL (cond or out NULL, fd not such a socket,
 * max_deferred above CG_ACCEPT_MAX_DEFERRED). Any thread. */
int cg_acceptor_new(cg_socket_t fd, cg_condition_fn cond, void *arg, const cg_accept_opts *opts,
                    cg_acceptor **out);

/* cg_acceptor_free: rejects (resets) every caller still deferred and frees
 * the acceptor; the listening socket stays open. Accepts NULL. The
 * acceptor's thread. */
void cg_acceptor_free(cg_acceptor *a);

/* cg_acceptor_accept: take the next caller — a deferred one whose retry is
 * due first, else a new one from the backlog — and run the callback.
 *
 * Returns:
 *   0             accepted: *out is a non-blocking, close-on-exec socket the
 *                 caller owns; *res describes it.
 *   CG_EREJECTED  a caller was rejected (reset and closed); *res says who.
 *   CG_EDEFERRED  a caller was deferred and is held by the acceptor.
 *   CG_EAGAIN     nothing to take now (backlog empty, deferred not yet due).
 *   CG_EMFILE     out of descriptors (or kernel memory): with keep_reserve_fd
 *                 one pending caller was shed (reset; *res names it) if there
 *                 was one; pause accepting for a while — until then the
 *                 listener may stay readable, so polling it would spin.
 *   CG_ECONNABORTED the caller left before it was taken; just call again.
 *   CG_EINVAL     a or out is NULL, or the listener is no longer usable.
 *   other CG_E*   a system error.
 * On anything but 0, *out is CG_INVALID_SOCKET. res may be NULL. Call it in a
 * loop until CG_EAGAIN to drain a backlog; wait for the listener to become
 * readable or for cg_acceptor_next_due_ms, whichever comes first. Each call
 * handles at most one caller and never blocks. The acceptor's thread. */
int cg_acceptor_accept(cg_acceptor *a, cg_socket_t *out, cg_accept_result *res);

/* cg_acceptor_next_due_ms: milliseconds until a deferred caller is due to be
 * offered again (0 if one is due now), or -1 when none is held — a ready
 * poll() timeout. The acceptor's thread. */
int64_t cg_acceptor_next_due_ms(const cg_acceptor *a);

/* cg_acceptor_deferred: callers held right now. The acceptor's thread. */
unsigned cg_acceptor_deferred(const cg_acceptor *a);

/* cg_socket_close_reset: close a socket with a TCP reset (SO_LINGER 0).
 * Ignores CG_INVALID_SOCKET; leaves errno as it was. */
void cg_socket_close_reset(cg_socket_t fd);

/* cg_sockaddr_format: "1.2.3.4:80" or "[2001:db8::1]:80" into buf (at least
 * 64 bytes). IPv4-mapped addresses are written as IPv4, a scope as a number
 * ("[fe80::1%2]:80"), NULL as "-". Returns buf. Any thread. */
char *cg_sockaddr_format(const struct sockaddr *sa, char *buf, size_t buflen);

#endif /* CONDGATE_ACCEPT_H */
