/* prefilter_compile.c — a generation's rule sets, judged interval by
 * interval, in the layout of prefilter_abi.h. */
#include "prefilter_compile.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "policy.h"

typedef struct builder {
    cg__pf_table *t;
    size_t cap;
    int rc;
    const cg__policy *policy;
    uint32_t last;  /* value of the last interval emitted for this run */
    uint32_t count; /* intervals emitted for this run */
} builder;

static int push(builder *b, const struct cg_pf_elem *e)
{
    cg__pf_table *t = b->t;
    if (t->n >= CG_PF_MAX_SLOTS + (size_t)CG_PF_MAX_INTERVALS)
        return CG_ERANGE;
    if (t->n == b->cap) {
        size_t ncap = b->cap * 2;
        struct cg_pf_elem *q = realloc(t->elems, ncap * sizeof(*q));
        if (q == NULL)
            return CG_ENOMEM;
        t->elems = q;
        b->cap = ncap;
    }
    t->elems[t->n++] = *e;
    return 0;
}

/* The judge's answer on the first address of one interval, as the kernel
 * keeps it; the interval is emitted only where the answer changes. */
static int on_interval(void *arg, const cg_cidr *start)
{
    builder *b = arg;
    cg__judgement j;
    cg__policy_judge(b->policy, start, &j);
    uint32_t value = j.admit ? 0 : 1u + (uint32_t)j.reason;
    if (b->count > 0 && value == b->last)
        return 0;
    struct cg_pf_elem e;
    memset(&e, 0, sizeof(e));
    if (start->family == 4) {
        e.u.key.lo = cg__load_be32(start->addr);
    } else {
        e.u.key.hi = cg__load_be64(start->addr);
        e.u.key.lo = cg__load_be64(start->addr + 8);
    }
    e.value = value;
    b->last = value;
    b->count++;
    return push(b, &e);
}

/* One family's intervals of rs: where they start and how many. rs is a
 * listener's rule set, or with `trusted` its trusted_proxies (the proxy
 * stage alone judges the sender of a PROXY header). */
static int emit(builder *b, const cg_ruleset *rs, bool trusted, int family, uint32_t *first,
                uint32_t *count)
{
    const cg__policy p = {.set = trusted ? NULL : rs, .trusted = trusted ? rs : NULL};
    b->policy = &p;
    b->count = 0;
    *first = (uint32_t)b->t->n;
    int rc = cg_ruleset_each_interval(rs, family, on_interval, b);
    *count = b->count;
    return rc;
}

/* What the kernel judges listener i's callers by: its rule set, or the
 * senders it trusts with PROXY headers. */
static const cg_ruleset *slot_set(const cg__gen *gen, size_t i)
{
    const cg_listener_conf *lc = cg__gen_listener(gen, i);
    return lc->accept_proxy != 0 ? lc->trusted_proxies : gen->cfg->rulesets[lc->ruleset];
}

/* The slot of an earlier listener on the same set whose intervals are
 * there already, or -1. */
static long shared_with(const cg__gen *gen, const uint32_t *modes, size_t i)
{
    const cg_ruleset *rs = slot_set(gen, i);
    for (size_t k = 0; k < i; k++)
        if (modes[k] != CG_PF_MODE_OFF && slot_set(gen, k) == rs)
            return (long)k;
    return -1;
}

int cg__pf_compile(const cg__gen *gen, const uint32_t *modes, cg__pf_table *out)
{
    builder b = {.t = out, .cap = CG_PF_MAX_SLOTS * 2};
    out->n = CG_PF_MAX_SLOTS;
    if (gen->nlisteners > CG_PF_MAX_SLOTS)
        return CG_ERANGE;
    out->elems = calloc(b.cap, sizeof(*out->elems));
    if (out->elems == NULL)
        return CG_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < gen->nlisteners && rc == 0; i++) {
        struct cg_pf_elem *h = &out->elems[i];
        if (modes[i] == CG_PF_MODE_OFF)
            continue;
        long k = shared_with(gen, modes, i);
        if (k >= 0) {
            out->elems[i].u = out->elems[k].u;
        } else {
            const cg_ruleset *rs = slot_set(gen, i);
            bool trusted = cg__gen_listener(gen, i)->accept_proxy != 0;
            struct cg_pf_elem hdr;
            memset(&hdr, 0, sizeof(hdr));
            rc = emit(&b, rs, trusted, 4, &hdr.u.hdr.v4_first, &hdr.u.hdr.v4_count);
            if (rc == 0)
                rc = emit(&b, rs, trusted, 6, &hdr.u.hdr.v6_first, &hdr.u.hdr.v6_count);
            h = &out->elems[i]; /* push may have moved the array */
            h->u = hdr.u;
        }
        h->value = modes[i];
        /* The kernel sees a load balancer there, not the client: bans are
         * judged once the header names the client. */
        h->pad = cg__gen_listener(gen, i)->accept_proxy != 0 ? CG_PF_SLOT_NO_BANS : 0;
    }
    if (rc != 0)
        cg__pf_table_free(out);
    return rc;
}

void cg__pf_table_free(cg__pf_table *t)
{
    free(t->elems);
    t->elems = NULL;
    t->n = 0;
}

static bool key_le(const struct cg_pf_elem *e, uint64_t hi, uint64_t lo)
{
    return e->u.key.hi != hi ? e->u.key.hi < hi : e->u.key.lo <= lo;
}

uint32_t cg__pf_lookup(const cg__pf_table *t, uint32_t slot, const cg_cidr *addr, uint32_t *mode)
{
    *mode = CG_PF_MODE_OFF;
    if (slot >= CG_PF_MAX_SLOTS || slot >= t->n)
        return 0;
    const struct cg_pf_elem *h = &t->elems[slot];
    *mode = h->value;
    uint64_t hi = 0, lo;
    uint32_t first, count;
    if (addr->family == 4 || (addr->family == 6 && cg__addr_is_mapped(addr->addr))) {
        lo = cg__load_be32(addr->family == 4 ? addr->addr : addr->addr + 12);
        first = h->u.hdr.v4_first;
        count = h->u.hdr.v4_count;
    } else {
        hi = cg__load_be64(addr->addr);
        lo = cg__load_be64(addr->addr + 8);
        first = h->u.hdr.v6_first;
        count = h->u.hdr.v6_count;
    }
    if (count == 0 || (size_t)first + count > t->n)
        return 0;
    /* The last interval whose start is <= the address (the first starts at
     * 0, so there is one). */
    uint32_t lo_i = first, n = count;
    for (int step = 0; step < CG_PF_SEARCH_STEPS && n > 1; step++) {
        uint32_t half = n / 2;
        if (key_le(&t->elems[lo_i + half], hi, lo))
            lo_i += half;
        n -= half;
    }
    return t->elems[lo_i].value;
}
