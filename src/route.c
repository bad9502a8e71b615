/* route.c — reference-counted per-listener settings of one generation. */
#include "route.h"

#include <stdlib.h>
#include <string.h>

cg__route *cg__route_new(const cg_listener_conf *lc, size_t listener)
{
    size_t n = lc->echo ? 0 : lc->nbackends;
    cg__route *r = malloc(sizeof(*r) + n * sizeof(r->backends[0]));
    if (r == NULL)
        return NULL;
    atomic_init(&r->refs, 1);
    atomic_init(&r->rr, 0);
    r->listener = (uint32_t)listener;
    r->echo = lc->echo;
    r->connect_timeout_ms = lc->connect_timeout_ms;
    r->idle_timeout_ms = lc->idle_timeout_ms;
    r->send_proxy = lc->send_proxy;
    r->nbackends = n;
    if (n > 0)
        memcpy(r->backends, lc->backends, n * sizeof(r->backends[0]));
    return r;
}

void cg__route_unref(cg__route *r)
{
    if (r == NULL)
        return;
    /* acq_rel: every use by the releasing thread happens before the free. */
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
        free(r);
}
