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

#include "worker.h"

/* Size of a worker's shared read buffer, and so the largest chunk a
 * connection ever holds pending in one direction. */
#define CG_RELAY_BUF_SIZE (64u * 1024u)

typedef struct cg__relay cg__relay;

/* What a worker's connections share. Owned by the worker; touched only on
 * its thread. */
typedef struct cg__relay_ctx {
    uv_loop_t *loop;
    const cg__pool_env *env;
    size_t slot;     /* this worker's stats slot: 1 + worker index */
    char *rbuf;      /* CG_RELAY_BUF_SIZE bytes, lent to one read at a time */
    bool rbuf_lent;  /* rbuf is out to a read that has not completed */
    cg__relay *live; /* connections not yet freed (intrusive list) */
    size_t nlive;
} cg__relay_ctx;

/* cg__relay_start: start relaying the accepted socket fd of gate listener
 * `listener`, taking ownership of fd and of one reference to gen whatever
 * happens: on failure the socket is reset, the reference dropped and the
 * connection counted as closed. The connection frees itself once closed.
 * Worker thread of ctx. */
void cg__relay_start(cg__relay_ctx *ctx, cg_socket_t fd, size_t listener, cg__gen *gen);

/* cg__relay_drop: reset and close fd without relaying it, drop the reference
 * to gen and count the connection as closed (for sockets still queued at
 * stop). Worker thread of ctx, or the control thread once that worker has
 * been joined. */
void cg__relay_drop(cg__relay_ctx *ctx, cg_socket_t fd, size_t listener, cg__gen *gen);

/* cg__relay_close_all: close every open connection of ctx, client and
 * backend, with a reset. The memory is released by close callbacks, so keep
 * running the loop until it has no handles left. Worker thread of ctx. */
void cg__relay_close_all(cg__relay_ctx *ctx);

#endif /* CG_RELAY_H */
