/* gen.h — configuration generations shared between the control thread, the
 * workers and the admin port.
 *
 * A generation is one loaded configuration (rule sets, backends, timeouts)
 * with a reference count. The gate holds one reference to the current
 * generation; every relayed connection holds one to the generation it was
 * accepted under, so a reload never changes a connection's backend list or
 * timeouts mid-flight and an old generation is freed by whichever thread
 * drops its last reference.
 */
#ifndef CG_GEN_H
#define CG_GEN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/config.h"

typedef struct cg__gen {
    _Atomic uint32_t refs;
    uint64_t number; /* 1 for the configuration loaded at start */
    cg_config *cfg;  /* owned */
    size_t *lmap;    /* gate listener index -> index in cfg->listeners */
} cg__gen;

/* cg__gen_new: wrap cfg (taking ownership) as generation `number` with one
 * reference. lmap is copied (nlisteners entries). Returns NULL on
 * allocation failure, in which case cfg is still the caller's. */
cg__gen *cg__gen_new(cg_config *cfg, uint64_t number, const size_t *lmap, size_t nlisteners);

/* cg__gen_ref: one more reference; returns g. Any thread. */
static inline cg__gen *cg__gen_ref(cg__gen *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}

/* cg__gen_unref: drop a reference; the last one frees the generation and
 * its configuration. Accepts NULL. Any thread. */
void cg__gen_unref(cg__gen *g);

/* cg__gen_listener: the configuration of gate listener l in generation g. */
static inline const cg_listener_conf *cg__gen_listener(const cg__gen *g, size_t l)
{
    return &g->cfg->listeners[g->lmap[l]];
}

#endif /* CG_GEN_H */
