/* gen.c — reference-counted configuration generations. */
#include "gen.h"

#include <stdlib.h>
#include <string.h>

cg__gen *cg__gen_new(cg_config *cfg, uint64_t number, const size_t *lmap, size_t nlisteners)
{
    cg__gen *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->lmap = malloc((nlisteners ? nlisteners : 1) * sizeof(*g->lmap));
    if (g->lmap == NULL) {
        free(g);
        return NULL;
    }
    if (nlisteners)
        memcpy(g->lmap, lmap, nlisteners * sizeof(*lmap));
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
    free(g->lmap);
    free(g);
}
