/* gen.h — configuration generations: what a reload replaces as one.
 *
 * A generation is one loaded configuration (rule sets, listeners, admin
 * settings) with a reference count. The gate holds one reference to the
 * current generation; the admin port takes one for the length of a request.
 * Relayed connections do not: each holds its listener's route (route.h), so
 * a reload frees the old rule sets as soon as the gate and the admin port let
 * go of them, whatever connections stay open.
 */
#ifndef CG_GEN_H
#define CG_GEN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/config.h"
#include "route.h"

typedef struct cg__gen {
    _Atomic uint32_t refs;
    uint64_t number;    /* 1 for the configuration loaded at start */
    cg_config *cfg;     /* owned */
    size_t *lmap;       /* gate listener index -> index in cfg->listeners */
    cg__route **routes; /* per gate listener; one reference each */
    size_t nlisteners;
} cg__gen;

/* cg__gen_new: wrap cfg (taking ownership) as generation `number` with one
 * reference, and make the route of each of the nlisteners gate listeners
 * (lmap[i]: gate listener i's index in cfg->listeners; copied). Returns NULL
 * on allocation failure, in which case cfg is still the caller's. */
cg__gen *cg__gen_new(cg_config *cfg, uint64_t number, const size_t *lmap, size_t nlisteners);

/* cg__gen_ref: one more reference; returns g. Any thread. */
static inline cg__gen *cg__gen_ref(cg__gen *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}

/* cg__gen_unref: drop a reference; the last one frees the generation, its
 * configuration and its references to the routes. Accepts NULL. Any thread. */
void cg__gen_unref(cg__gen *g);

/* cg__gen_listener: the configuration of gate listener l in generation g. */
static inline const cg_listener_conf *cg__gen_listener(const cg__gen *g, size_t l)
{
    return &g->cfg->listeners[g->lmap[l]];
}

/* cg__gen_route: gate listener l's route in g (the generation's reference:
 * take one with cg__route_ref to keep it). */
static inline cg__route *cg__gen_route(const cg__gen *g, size_t l)
{
    return g->routes[l];
}

#endif /* CG_GEN_H */
