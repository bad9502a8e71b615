/* recent.c — a bounded ring of distinct recent callers with a hash index
 * (open addressing, linear probing, backward-shift deletion). */
#include "recent.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "condgate/common.h"

#define EMPTY SIZE_MAX

struct cg__recent {
    uv_mutex_t lock;
    size_t max;               /* ring capacity */
    size_t head, count;       /* oldest entry and how many */
    cg__recent_caller *ring;  /* max entries */
    size_t *slots;            /* nslots: ring index or EMPTY */
    size_t nslots;            /* a power of two, at least 2 * max */
};

static uint64_t hash_of(uint32_t l, const cg_cidr *a)
{
    /* FNV-1a over the family, the listener and the address. */
    uint64_t h = 1469598103934665603ull;
    const uint8_t *b = a->addr;
    h = (h ^ a->family) * 1099511628211ull;
    for (int i = 0; i < 4; i++)
        h = (h ^ ((l >> (8 * i)) & 0xff)) * 1099511628211ull;
    for (int i = 0; i < 16; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static bool same(const cg__recent_caller *c, uint32_t l, const cg_cidr *a)
{
    return c->listener == l && c->addr.family == a->family &&
           memcmp(c->addr.addr, a->addr, sizeof(a->addr)) == 0;
}

cg__recent *cg__recent_new(size_t max)
{
    cg__recent *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->max = max;
    r->nslots = 2;
    while (r->nslots < 2 * max)
        r->nslots *= 2;
    r->ring = calloc(max ? max : 1, sizeof(*r->ring));
    r->slots = malloc(r->nslots * sizeof(*r->slots));
    if (r->ring == NULL || r->slots == NULL || uv_mutex_init(&r->lock) != 0) {
        free(r->ring);
        free(r->slots);
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < r->nslots; i++)
        r->slots[i] = EMPTY;
    return r;
}

void cg__recent_free(cg__recent *r)
{
    if (r == NULL)
        return;
    uv_mutex_destroy(&r->lock);
    free(r->ring);
    free(r->slots);
    free(r);
}

/* The slot holding ring entry (l, a), or the empty slot where it would go. */
static size_t find_slot(const cg__recent *r, uint32_t l, const cg_cidr *a)
{
    size_t mask = r->nslots - 1;
    size_t i = (size_t)hash_of(l, a) & mask;
    while (r->slots[i] != EMPTY && !same(&r->ring[r->slots[i]], l, a))
        i = (i + 1) & mask;
    return i;
}

/* Remove slot i, shifting later entries of the same probe run back so no
 * lookup stops early at the hole. */
static void delete_slot(cg__recent *r, size_t i)
{
    size_t mask = r->nslots - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (r->slots[j] == EMPTY)
            break;
        const cg__recent_caller *c = &r->ring[r->slots[j]];
        size_t home = (size_t)hash_of(c->listener, &c->addr) & mask;
        /* Move j into the hole at i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            r->slots[i] = r->slots[j];
            i = j;
        }
    }
    r->slots[i] = EMPTY;
}

void cg__recent_note(cg__recent *r, uint32_t l, const cg_cidr *addr)
{
    if (r == NULL || r->max == 0 || addr->family == 0)
        return;
    uv_mutex_lock(&r->lock);
    size_t slot = find_slot(r, l, addr);
    if (r->slots[slot] == EMPTY) {
        size_t at;
        if (r->count == r->max) { /* forget the oldest */
            at = r->head;
            delete_slot(r, find_slot(r, r->ring[at].listener, &r->ring[at].addr));
            r->head = (r->head + 1) % r->max;
            r->count--;
            slot = find_slot(r, l, addr); /* the deletion may have moved the hole */
        } else {
            at = (r->head + r->count) % r->max;
        }
        r->ring[at] = (cg__recent_caller){.listener = l, .addr = *addr};
        r->ring[at].addr.len = addr->family == 4 ? 32 : 128;
        r->slots[slot] = at;
        r->count++;
    }
    uv_mutex_unlock(&r->lock);
}

int cg__recent_copy(cg__recent *r, cg__recent_caller **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (r == NULL)
        return 0;
    uv_mutex_lock(&r->lock);
    cg__recent_caller *copy = malloc((r->count ? r->count : 1) * sizeof(*copy));
    if (copy != NULL) {
        for (size_t i = 0; i < r->count; i++)
            copy[i] = r->ring[(r->head + i) % r->max];
        *n = r->count;
    }
    uv_mutex_unlock(&r->lock);
    *out = copy;
    return copy != NULL ? 0 : CG_ENOMEM;
}
