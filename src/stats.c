/* stats.c — allocation and summing of the per-thread counter slots. */
#include "stats.h"

#include <stdint.h>
#include <stdlib.h>

/* Cache line size the counters are laid out for. */
#define LINE 64

/* Memory starting on a cache line. C11's aligned_alloc is missing from the
 * Windows C runtime (and _aligned_malloc needs its own free), so allocate a
 * little more and keep malloc's pointer just before the aligned block.
 * Free with line_free. */
static void *line_alloc(size_t bytes)
{
    unsigned char *raw = malloc(bytes + LINE + sizeof(void *));
    if (raw == NULL)
        return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + LINE - 1) & ~(uintptr_t)(LINE - 1);
    ((void **)p)[-1] = raw;
    return (void *)p;
}

static void line_free(void *p)
{
    if (p != NULL)
        free(((void **)p)[-1]);
}

cg__stats *cg__stats_new(size_t nlisteners, size_t nworkers)
{
    cg__stats *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->nlisteners = nlisteners;
    s->nslots = 1 + nworkers;
    s->slots = line_alloc(s->nslots * sizeof(cg__slot));
    if (s->slots == NULL)
        goto fail;
    for (size_t i = 0; i < s->nslots; i++) {
        atomic_init(&s->slots[i].handled, 0);
        atomic_init(&s->slots[i].finished, 0);
        /* calloc gives zeroed atomics on every platform we build for. Round
         * each array up to whole cache lines so two slots never share one. */
        size_t bytes = nlisteners ? nlisteners * sizeof(cg__lstats) : 1;
        s->slots[i].listeners = line_alloc(bytes);
        if (s->slots[i].listeners == NULL) {
            s->nslots = i;
            goto fail;
        }
        for (size_t l = 0; l < nlisteners; l++) {
            cg__lstats *ls = &s->slots[i].listeners[l];
            atomic_init(&ls->accepted, 0);
            atomic_init(&ls->proxied, 0);
            atomic_init(&ls->shed, 0);
            for (int r = 0; r < CG__REJ_COUNT; r++) {
                atomic_init(&ls->rejected[r], 0);
                atomic_init(&ls->shadow_rejected[r], 0);
            }
            atomic_init(&ls->closed, 0);
            atomic_init(&ls->closed_by_ban, 0);
            atomic_init(&ls->backend_errors, 0);
            atomic_init(&ls->bytes_in, 0);
            atomic_init(&ls->bytes_out, 0);
        }
    }
    atomic_init(&s->reloads, 0);
    atomic_init(&s->reload_failures, 0);
    atomic_init(&s->last_reload_ok, true);
    return s;
fail:
    cg__stats_free(s);
    return NULL;
}

void cg__stats_free(cg__stats *s)
{
    if (s == NULL)
        return;
    if (s->slots != NULL) {
        for (size_t i = 0; i < s->nslots; i++)
            line_free(s->slots[i].listeners);
        line_free(s->slots);
    }
    free(s);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void add_lstats(cg__lsum *out, const cg__lstats *ls)
{
    out->accepted += LOAD(ls->accepted);
    out->proxied += LOAD(ls->proxied);
    out->shed += LOAD(ls->shed);
    for (int r = 0; r < CG__REJ_COUNT; r++) {
        out->rejected[r] += LOAD(ls->rejected[r]);
        out->shadow_rejected[r] += LOAD(ls->shadow_rejected[r]);
    }
    out->closed += LOAD(ls->closed);
    out->closed_by_ban += LOAD(ls->closed_by_ban);
    out->backend_errors += LOAD(ls->backend_errors);
    out->bytes_in += LOAD(ls->bytes_in);
    out->bytes_out += LOAD(ls->bytes_out);
}

void cg__stats_sum_listener(const cg__stats *s, size_t l, cg__lsum *out)
{
    *out = (cg__lsum){0};
    for (size_t i = 0; i < s->nslots; i++)
        add_lstats(out, &s->slots[i].listeners[l]);
}

void cg__stats_sum_all(const cg__stats *s, cg__lsum *out)
{
    *out = (cg__lsum){0};
    for (size_t i = 0; i < s->nslots; i++)
        for (size_t l = 0; l < s->nlisteners; l++)
            add_lstats(out, &s->slots[i].listeners[l]);
}

void cg__stats_worker(const cg__stats *s, size_t w, uint64_t *handled, uint64_t *active)
{
    const cg__slot *slot = &s->slots[1 + w];
    uint64_t h = LOAD(slot->handled);
    *handled = h;
    *active = cg__stat_open(h, LOAD(slot->finished));
}
