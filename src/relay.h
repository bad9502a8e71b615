/* relay.h — one relayed connection on a worker loop (private to worker.c and
 * relay.c).
 *
 * A worker owns one cg__relay_ctx and calls into relay.c from its own
 * thread only; every connection it starts lives and dies on that loop.
 */
#ifndef CG_RELAY_H
#define CG_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "admission.h"
#include "condgate/accept.h"
#include "net.h"
#include "route.h"
#include "stats.h"

/* Size of a worker's shared read buffer, and so the largest chunk a
 * connection ever holds pending in one direction. Each read is written on
 * as one write, so it stays below one loopback segment (MSS 65483 on lo):
 * 64 KiB writes leave as a full segment plus a 53-byte one, which cost
 * about a quarter of the bulk throughput through loopback. */
#define CG_RELAY_BUF_SIZE (48u * 1024u)

typedef struct cg__relay cg__relay;

/* A caller's address as the relay keeps it for its log lines (IPv4 or IPv6;
 * sa_family 0 when unknown): far smaller than a sockaddr_storage. */
typedef union cg__peer {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} cg__peer;

/* What the relay needs from the process, shared by every worker. All
 * pointers outlive the relays. */
typedef struct cg__relay_env {
    cg__stats *stats;         /* slot 1+i is worker i's */
    cg__admission *admission; /* a closed connection gives its place back */
    char **listener_names;    /* per gate listener, for log lines */
    size_t nlisteners;
    bool accepted_nodelay; /* started sockets have TCP_NODELAY already
                              (inherited from the listener) */
    /* release(arg, hold): a connection closed that was started with a
     * non-NULL hold (what the control thread gave it to keep while open:
     * its source's entry in the per-source table). Once per connection, on
     * the worker's thread. NULL: holds are never given. */
    void (*release)(void *arg, void *hold);
    /* banned(arg, peer): whether a runtime ban covers the caller now; asked
     * by cg__relay_sweep of every open connection. Any worker thread. */
    bool (*banned)(void *arg, const cg__peer *peer);
    void *arg;
} cg__relay_env;

/* ------------------------------------------------------------------------
 * What both relays share (relay_common.c): relay.c here, and on Linux
 * unix/ep_relay.c. Any thread.
 */

/* A connection as its close line reports it. */
typedef struct cg__relay_tally {
    size_t listener;
    const cg__peer *peer; /* NULL or sa_family 0: unknown */
    uint64_t bytes_in, bytes_out, duration_ms;
} cg__relay_tally;

/* cg__relay_listener_name: gate listener l's name, "-" when out of range. */
const char *cg__relay_listener_name(const cg__relay_env *env, size_t listener);

/* cg__relay_account_close: a connection of `listener` relayed in stats slot
 * `slot` closed: release its hold, count it closed and finished, and give
 * its place back. */
void cg__relay_account_close(const cg__relay_env *env, size_t slot, size_t listener, void *hold);

/* cg__relay_log_close: the debug line of a close (state: the one it was
 * in; err: a libuv error code, 0 for none). */
void cg__relay_log_close(const cg__relay_env *env, const cg__relay_tally *t, const char *state,
                         const char *reason, int err);

/* cg__relay_log_backend_failed: every backend a caller tried failed: one
 * backend_error line per attempt (errs[i]: attempt i's libuv error code,
 * to backend (first + i) mod n of r) and one backend error counted. */
void cg__relay_log_backend_failed(const cg__relay_env *env, size_t slot, size_t listener,
                                  const cg__peer *peer, const cg__route *r, size_t first,
                                  unsigned attempts, const int *errs);

/* What a worker's connections share. Owned by the worker; touched only on
 * its thread. */
typedef struct cg__relay_ctx {
    uv_loop_t *loop;
    const cg__relay_env *env;
    size_t slot;     /* this worker's stats slot: 1 + worker index */
    char *rbuf;      /* CG_RELAY_BUF_SIZE bytes, lent to one read at a time */
    bool rbuf_lent;  /* rbuf is out to a read that has not completed */
    cg__relay *live; /* connections not yet freed (intrusive list) */
    size_t nlive;
    cg__relay *spare; /* freed connections kept for reuse (bounded) */
    size_t nspare;
} cg__relay_ctx;

/* cg__relay_ctx_init: set up ctx for a worker whose loop, env, slot and rbuf
 * are filled in. Cannot fail. */
void cg__relay_ctx_init(cg__relay_ctx *ctx);

/* cg__relay_ctx_cleanup: release what ctx keeps between connections (spare
 * connection objects). Only once no connection is left
 * (nlive == 0, every close callback has run). Worker thread of ctx, or the
 * control thread once that worker has been joined. */
void cg__relay_ctx_cleanup(cg__relay_ctx *ctx);

/* cg__relay_start: start relaying the accepted socket fd along `route` (its
 * listener's settings), taking ownership of fd, of one reference to the
 * route and of hold (given back through env->release at the close; NULL:
 * none) whatever happens: on failure the socket is reset, the reference
 * dropped and the connection counted as closed. peer is the caller's address
 * for log lines (copied; NULL: asked from the socket). The connection frees
 * itself once closed. Worker thread of ctx. */
void cg__relay_start(cg__relay_ctx *ctx, cg_socket_t fd, const cg__peer *peer, cg__route *route,
                     void *hold);

/* cg__relay_drop: reset and close fd without relaying it, drop the reference
 * to route, release hold and count the connection as closed (for sockets still queued at
 * stop). Worker thread of ctx, or the control thread once that worker has
 * been joined. */
void cg__relay_drop(cg__relay_ctx *ctx, cg_socket_t fd, cg__route *route, void *hold);

/* cg__relay_sweep: reset every open connection of ctx whose caller
 * env->banned says a ban covers now, counting each in closed_by_ban.
 * Returns how many. Worker thread of ctx. */
size_t cg__relay_sweep(cg__relay_ctx *ctx);

/* cg__relay_close_all: close every open connection of ctx, client and
 * backend, with a reset. The memory is released by close callbacks, so keep
 * running the loop until it has no handles left. Worker thread of ctx. */
void cg__relay_close_all(cg__relay_ctx *ctx);

#endif /* CG_RELAY_H */
