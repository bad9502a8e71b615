/* unix/ep_relay.h — one relayed connection on a Linux worker's own epoll
 * loop (private to ep_pool.c and ep_relay.c): the twin of relay.h, which
 * drives the same life through libuv where this loop is not built.
 *
 * Each connection's two sockets are registered once, edge-triggered, for
 * every event; readiness is remembered per side, so a socket is read until
 * a short read or EAGAIN and written until it is full, and close(2) takes
 * it out of epoll again. A worker owns one cg__ep_relay_ctx and calls into
 * ep_relay.c from its own thread only.
 */
#ifndef CG_EP_RELAY_H
#define CG_EP_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include "ep.h"
#include "relay.h"
#include "route.h"

typedef struct cg__ep_conn cg__ep_conn;

/* What a worker's connections share. Owned by the worker; touched only on
 * its thread. */
typedef struct cg__ep_relay_ctx {
    cg__ep *ep;
    const cg__relay_env *env;
    size_t slot;       /* this worker's stats slot: 1 + worker index */
    char *rbuf;        /* CG_RELAY_BUF_SIZE bytes, for one read at a time */
    cg__ep_conn *live; /* open connections (intrusive list) */
    size_t nlive;
    cg__ep_conn *closed; /* closed this turn: freed at its end */
    cg__ep_conn *posted; /* readable still after their turn's share */
    cg__ep_conn *spare;  /* freed connections kept for reuse (bounded) */
    size_t nspare;
} cg__ep_relay_ctx;

/* cg__ep_relay_start: relay the accepted socket fd (non-blocking) along
 * route, as cg__relay_start does: takes fd, one route reference and hold
 * whatever happens. Worker thread of ctx. */
void cg__ep_relay_start(cg__ep_relay_ctx *ctx, int fd, const cg__peer *peer, cg__route *route,
                        void *hold);

/* cg__ep_relay_drop: reset fd unrelayed, drop the route reference, release
 * hold and count a close. Worker thread of ctx, or any thread once it has
 * been joined. */
void cg__ep_relay_drop(cg__ep_relay_ctx *ctx, int fd, cg__route *route, void *hold);

/* cg__ep_relay_sweep: reset every open connection whose caller a ban covers
 * now; returns how many. Worker thread of ctx. */
size_t cg__ep_relay_sweep(cg__ep_relay_ctx *ctx);

/* cg__ep_relay_close_all: reset every open connection, both sides. Worker
 * thread of ctx. */
void cg__ep_relay_close_all(cg__ep_relay_ctx *ctx);

/* cg__ep_relay_turn_end: after a turn's events and timers: give the posted
 * connections their next share and free those closed this turn (no event
 * of the turn can point at them any more). Returns whether connections are
 * still posted (then the next wait must not sleep). Worker thread of ctx. */
bool cg__ep_relay_turn_end(cg__ep_relay_ctx *ctx);

/* cg__ep_relay_cleanup: free the spare connection objects; none may be open
 * or closed-but-unfreed. */
void cg__ep_relay_cleanup(cg__ep_relay_ctx *ctx);

#endif /* CG_EP_RELAY_H */
