/* worker.h — the worker pool: threads that relay bytes between accepted
 * clients and backends, two implementations behind one interface.
 *
 * On Linux (unix/ep_pool.c) each worker runs an epoll loop of its own and
 * accepts, judges (through env.gate) and relays its own callers; the
 * control thread submits only the callers it accepted itself. Elsewhere
 * (worker.c) the workers are libuv loops: the control thread hands each
 * accepted socket to the least-loaded worker through a bounded queue
 * (handoff.h) and a wake-up, and worker 0 may run inline on the control
 * thread's loop (env.inline_loop), its hand-offs then plain calls. Either
 * way a connection lives on one worker's loop alone.
 */
#ifndef CG_WORKER_H
#define CG_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "condgate/accept.h"
#include "relay.h"
#include "route.h"

/* What a pool whose workers accept (cg__pool_accepts) asks of the gate
 * for each caller. */
typedef struct cg__pool_gate {
    /* Judge caller of gate listener l for the worker whose stats slot is
     * `slot`, and count and log the verdict. Admitted: its place and its
     * source entry are taken, and it returns true with *route (one
     * reference: l's route in the generation that judged) and *hold (given
     * back through relay.release at the close). Worker threads, at once. */
    bool (*admit)(void *arg, size_t slot, size_t l, const struct sockaddr *caller,
                  cg__route **route, void **hold);
    /* Out of descriptors while accepting on listener l: one caller was shed
     * and that worker pauses the listener briefly. Worker threads. */
    void (*shed)(void *arg, size_t slot, size_t l);
    void *arg;
} cg__pool_gate;

/* What the pool needs from the process. All pointers outlive the pool. */
typedef struct cg__pool_env {
    cg__relay_env relay;    /* what every worker's connections share */
    uv_loop_t *inline_loop; /* not NULL: worker 0 runs on this loop, the
                               one of the thread that submits, rather
                               than on a thread of its own (a pool that
                               accepts ignores it: its workers are all
                               threads of their own) */
    /* A pool that accepts: per gate listener (relay.nlisteners), the
     * listening socket every worker accepts from, or CG_INVALID_SOCKET for
     * one whose callers the control thread takes and submits. NULL: none.
     * The sockets stay the caller's; close them after cg__pool_free. */
    const cg_socket_t *listen_fds;
    cg__pool_gate gate;
} cg__pool_env;

typedef struct cg__pool cg__pool;

/* cg__pool_start: start n worker threads (1..64), each running its own
 * libuv loop. Returns 0 and *out, or a negative CG_E* code with nothing
 * left running. Control thread. */
int cg__pool_start(unsigned n, const cg__pool_env *env, cg__pool **out);

/* cg__pool_submit: hand accepted socket fd (non-blocking) to the
 * least-loaded worker, to be relayed along route (its listener's settings).
 * peer is the caller's address (copied; NULL: the relay asks the socket).
 * Takes ownership of fd and of one reference to route, also on failure (then
 * the socket is reset and closed and the reference dropped). On success the
 * chosen worker's index goes to *chosen when chosen is not NULL. Returns 0,
 * CG_ERANGE when every queue is full, or CG_EINVAL for a route of no
 * listener of the pool. Control thread. */
int cg__pool_submit(cg__pool *p, cg_socket_t fd, const struct sockaddr *peer, cg__route *route,
                    void *hold, unsigned *chosen);

/* cg__pool_sweep: make every worker reset its open connections that a ban
 * now covers (cg__relay_sweep): the inline worker at once, the others at
 * their next wake-up, which this sends. Control thread. */
void cg__pool_sweep(cg__pool *p);

/* cg__pool_close: close every connection still open (client and backend,
 * with a reset), stop the worker loops and join their threads. The inline
 * worker's connections finish closing as the inline loop runs on. Safe from
 * a callback of the inline loop; a second call does nothing. Accepts NULL.
 * Control thread. Call it after draining (no connection left open or the
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

/* cg__pool_accepts: whether this build's workers accept callers
 * themselves (Linux, with an epoll loop of its own per worker: each watches
 * every listening socket with EPOLLEXCLUSIVE, so the kernel wakes one idle
 * worker per caller, which judges it and relays it on the same thread).
 * Elsewhere the control thread accepts and submits. */
bool cg__pool_accepts(void);

/* cg__pool_unlisten: stop accepting on every worker (the drain), at each
 * one's next turn, which this wakes. The listening sockets stay open. Control
 * thread. */
void cg__pool_unlisten(cg__pool *p);

/* cg__pool_listening: whether a worker may still accept a caller (one has
 * not yet taken cg__pool_unlisten in). A drain is over only once none may:
 * on a socket shared with another process (a takeover, systemd) callers
 * keep coming after cg__pool_unlisten, and one accepted then must be
 * relayed, not reset by the stop. Any thread. */
bool cg__pool_listening(cg__pool *p);

/* cg__pool_size: number of workers. */
unsigned cg__pool_size(const cg__pool *p);

#endif /* CG_WORKER_H */
