/* gen.c — reference-counted configuration generations. */
#include "gen.h"

#include <stdlib.h>
#include <string.h>

#include "sys.h"

static void gen_free(cg__gen *g)
{
    for (size_t i = 0; g->routes != NULL && i < g->nlisteners; i++)
        cg__route_unref(g->routes[i]);
    free(g->routes);
    free(g->lmap);
    free(g);
}

cg__gen *cg__gen_new(cg_config *cfg, uint64_t number, const size_t *lmap, size_t nlisteners)
{
    cg__gen *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->lmap = malloc((nlisteners ? nlisteners : 1) * sizeof(*g->lmap));
    g->routes = calloc(nlisteners ? nlisteners : 1, sizeof(*g->routes));
    if (g->lmap == NULL || g->routes == NULL) {
        gen_free(g);
        return NULL;
    }
    g->nlisteners = nlisteners;
    if (nlisteners)
        memcpy(g->lmap, lmap, nlisteners * sizeof(*lmap));
    for (size_t i = 0; i < nlisteners; i++) {
        if ((g->routes[i] = cg__route_new(&cfg->listeners[lmap[i]], i)) == NULL) {
            gen_free(g);
            return NULL;
        }
    }
    atomic_init(&g->refs, 1);
    g->number = number;
    g->cfg = cfg;
    return g;
}

void cg__gen_unref(cg__gen *g)
{
    if (g == NULL)
        return;
    /* acq_rel: every use of the generation by the releasing thread happens
     * before the free by the thread that drops the last reference. */
    if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
        return;
    cg_config_free(g->cfg);
    gen_free(g);
    /* A rule set is tens of megabytes in a few large blocks: give the pages
     * back now rather than keep them for the next reload. */
    cg__sys_release_memory();
}
