/* worker.h — the worker pool: threads with their own libuv loops that relay
 * bytes between accepted clients and backends.
 *
 * The control thread hands each accepted socket to the least-loaded worker
 * through a bounded queue and uv_async_send; from then on the connection
 * lives on that worker's loop alone (see relay.c for its life). Worker 0
 * may instead run inline on the control thread's loop (env.inline_loop):
 * then its hand-offs are plain calls.
 */
#ifndef CG_WORKER_H
#define CG_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "gen.h"
#include "condgate/accept.h"
#include "net.h"
#include "stats.h"

/* Most connections waiting in one worker's hand-off queue. */
#define CG_WORKER_QUEUE_MAX 8192

/* A caller's address as the relay keeps it for its log lines (IPv4 or IPv6;
 * sa_family 0 when unknown): far smaller than a sockaddr_storage. */
typedef union cg__peer {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} cg__peer;

/* What the pool needs from the gate. All pointers outlive the pool. */
typedef struct cg__pool_env {
    cg__stats *stats;               /* slot 1+i is worker i's */
    _Atomic uint64_t *active_total; /* relayed connections open, all workers;
                                       the control thread adds, workers subtract */
    _Atomic uint32_t *rr;           /* per gate listener: round-robin cursor */
    char **listener_names;          /* per gate listener, for log lines */
    size_t nlisteners;
    bool accepted_nodelay;  /* submitted sockets have TCP_NODELAY already
                               (inherited from the listener) */
    uv_loop_t *inline_loop; /* not NULL: worker 0 runs on this loop, the
                               one of the thread that submits, rather
                               than on a thread of its own */
} cg__pool_env;

typedef struct cg__pool cg__pool;

/* cg__pool_start: start n worker threads (1..64), each running its own
 * libuv loop. Returns 0 and *out, or a negative CG_E* code with nothing
 * left running. Control thread. */
int cg__pool_start(unsigned n, const cg__pool_env *env, cg__pool **out);

/* cg__pool_submit: hand accepted socket fd (non-blocking) of gate listener
 * `listener` to the least-loaded worker. peer is the caller's address
 * (copied; NULL: the relay asks the socket). Takes ownership of fd and of
 * one reference to gen, also on failure (then the socket is reset and
 * closed and the reference dropped). On success the chosen worker's index
 * goes to *chosen when chosen is not NULL. Returns 0, or CG_ERANGE when
 * every queue is full. Control thread. */
int cg__pool_submit(cg__pool *p, cg_socket_t fd, const struct sockaddr *peer, size_t listener,
                    cg__gen *gen, unsigned *chosen);

/* cg__pool_close: close every connection still open (client and backend,
 * with a reset), stop the worker loops and join their threads. The inline
 * worker's connections finish closing as the inline loop runs on. Safe from
 * a callback of the inline loop; a second call does nothing. Accepts NULL.
 * Control thread. Call it after draining (active_total reached 0 or the
 * drain timeout passed). */
void cg__pool_close(cg__pool *p);

/* cg__pool_free: free a closed pool; with an inline worker, only once the
 * inline loop has run every close callback since cg__pool_close (uv_run
 * returned). Accepts NULL. Control thread. */
void cg__pool_free(cg__pool *p);

/* cg__pool_stop: cg__pool_close and cg__pool_free at once, for a pool
 * without an inline worker (or whose inline worker never had a
 * connection). Accepts NULL. Control thread. */
void cg__pool_stop(cg__pool *p);

/* cg__pool_size: number of workers. */
unsigned cg__pool_size(const cg__pool *p);

#endif /* CG_WORKER_H */
