/* route.h — what a relayed connection needs of its listener after accept.
 *
 * A route is a listener's settings in one generation: echo or its backends,
 * the round-robin cursor over them and the timeouts. Each generation makes
 * one per listener; every connection holds a reference to its own, never to
 * the generation, so a long-lived connection pins a few hundred bytes and not
 * the rule sets of the configuration it was accepted under.
 */
#ifndef CG_ROUTE_H
#define CG_ROUTE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/config.h"

typedef struct cg__route {
    _Atomic uint32_t refs;
    _Atomic uint32_t rr; /* round-robin cursor over backends, all workers */
    uint32_t listener;   /* gate listener index */
    bool echo;           /* the built-in echo service */
    uint32_t connect_timeout_ms;
    uint32_t idle_timeout_ms;
    unsigned send_proxy; /* 0, or the PROXY protocol version to send backends */
    size_t nbackends;
    cg_endpoint backends[]; /* nbackends; 0 with echo */
} cg__route;

/* cg__route_new: the route of gate listener `listener` configured as lc
 * (copied: lc may go away), with one reference. NULL when out of memory.
 * Any thread. */
cg__route *cg__route_new(const cg_listener_conf *lc, size_t listener);

/* cg__route_ref: one more reference; returns r. Any thread. */
static inline cg__route *cg__route_ref(cg__route *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

/* cg__route_unref: drop a reference; the last one frees. Accepts NULL. Any
 * thread. */
void cg__route_unref(cg__route *r);

#endif /* CG_ROUTE_H */
