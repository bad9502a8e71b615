/* crowdsec_apply.c — one parsed decision-stream answer applied to the
 * runtime bans (see crowdsec.h for the rules), and a startup answer's
 * reconciliation: the crowdsec bans it does not hold are lifted. */
#include <stdlib.h>
#include <string.h>

#include "crowdsec.h"

static const char *const why_names[CG__CS_WHY_COUNT] = {"never_ban", "type", "scope", "invalid"};

/* cg__cs_why_name: see crowdsec.h. */
const char *cg__cs_why_name(cg__cs_why w)
{
    return (unsigned)w < CG__CS_WHY_COUNT ? why_names[w] : "unknown";
}

/* ---- a set of prefixes (the startup answer's) -------------------------- */

typedef struct pset {
    cg_cidr *slot; /* family 0: empty */
    size_t cap;    /* a power of two */
} pset;

static uint64_t pset_hash(const cg_cidr *c)
{
    uint64_t h = 1469598103934665603ull;
    size_t n = c->family == 4 ? 4 : 16;
    h = (h ^ c->family) * 1099511628211ull;
    h = (h ^ c->len) * 1099511628211ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c->addr[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static bool pset_same(const cg_cidr *a, const cg_cidr *b)
{
    return a->family == b->family && a->len == b->len &&
           memcmp(a->addr, b->addr, a->family == 4 ? 4 : 16) == 0;
}

static int pset_init(pset *s, size_t n)
{
    s->cap = 16;
    while (s->cap < n * 2)
        s->cap *= 2;
    s->slot = calloc(s->cap, sizeof *s->slot);
    return s->slot != NULL ? 0 : CG_ENOMEM;
}

/* Put c in, or find it: returns whether it was there. */
static bool pset_probe(pset *s, const cg_cidr *c, bool insert)
{
    size_t i = (size_t)pset_hash(c) & (s->cap - 1);
    for (; s->slot[i].family != 0; i = (i + 1) & (s->cap - 1))
        if (pset_same(&s->slot[i], c))
            return true;
    if (insert)
        s->slot[i] = *c;
    return false;
}

/* ---- applying ---------------------------------------------------------- */

/* The ttl of a decision: its remaining time rounded up to whole seconds,
 * 1 s .. one year. */
static int64_t ttl_of(int64_t duration_ms)
{
    int64_t s = duration_ms / 1000 + (duration_ms % 1000 != 0);
    return s < 1 ? 1 : s > CG_BAN_TTL_MAX_S ? CG_BAN_TTL_MAX_S : s;
}

/* Whether a decision is a ban to apply; counts it in res when it is not. */
static bool applicable(const cg__cs_decision *d, const cg_ruleset *never, cg__cs_result *res)
{
    cg_cidr hit;
    switch (d->kind) {
    case CG__CS_TYPE:
        res->ignored[CG__CS_WHY_TYPE]++;
        return false;
    case CG__CS_SCOPE:
        res->ignored[CG__CS_WHY_SCOPE]++;
        return false;
    case CG__CS_INVALID:
        res->ignored[CG__CS_WHY_INVALID]++;
        return false;
    case CG__CS_BAN:
        break;
    }
    if (never != NULL && cg__bans_overlap(never, &d->cidr, &hit)) {
        res->ignored[CG__CS_WHY_NEVER_BAN]++;
        return false;
    }
    return true;
}

static void apply_new(cg__runtime *rt, const cg_ruleset *never, const cg__cs_decision *d,
                      int64_t now_s, pset *keep, cg__cs_result *res)
{
    if (!applicable(d, never, res))
        return;
    if (d->duration_ms <= 0) {
        res->expired++;
        return;
    }
    cg__ban ban = {.cidr = d->cidr,
                   .origin = CG__BAN_CROWDSEC,
                   .created_s = now_s,
                   .expires_s = now_s + ttl_of(d->duration_ms)};
    size_t l = strlen(d->reason);
    memcpy(ban.reason, d->reason, l + 1); /* at most CG_CS_REASON_MAX bytes */
    bool replaced = false;
    int rc = cg__runtime_ban_over(rt, &ban, 1u << CG__BAN_CROWDSEC, &replaced);
    if (rc == CG_EEXIST)
        res->kept++;
    else if (rc != 0)
        res->failed++;
    else if (replaced)
        res->replaced++;
    else
        res->added++;
    if (rc == 0 && keep != NULL)
        pset_probe(keep, &d->cidr, true);
}

/* Lift every crowdsec ban not in keep. */
static int reconcile(cg__runtime *rt, pset *keep, cg__cs_result *res)
{
    cg__ban *all = NULL;
    size_t n = 0;
    uint64_t version;
    if (cg__bans_snapshot(cg__runtime_bans(rt), &all, &n, &version) != 0)
        return CG_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (all[i].origin == CG__BAN_CROWDSEC && !pset_probe(keep, &all[i].cidr, false) &&
            cg__runtime_unban_origin(rt, &all[i].cidr, CG__BAN_CROWDSEC) == 0)
            res->lifted++;
    free(all);
    return 0;
}

/* cg__crowdsec_apply: see crowdsec.h. */
int cg__crowdsec_apply(cg__runtime *rt, const cg_ruleset *never, const cg__cs_answer *a,
                       bool startup, int64_t now_s, cg__cs_result *res)
{
    memset(res, 0, sizeof *res);
    pset keep = {0};
    int rc = 0;
    if (startup && pset_init(&keep, a->nadded) != 0)
        rc = CG_ENOMEM;
    for (size_t i = 0; i < a->ndeleted; i++) {
        const cg__cs_decision *d = &a->deleted[i];
        if (d->kind == CG__CS_BAN && cg__runtime_unban_origin(rt, &d->cidr, CG__BAN_CROWDSEC) == 0)
            res->deleted++;
    }
    for (size_t i = 0; i < a->nadded; i++)
        apply_new(rt, never, &a->added[i], now_s, keep.slot != NULL ? &keep : NULL, res);
    if (keep.slot != NULL)
        rc = reconcile(rt, &keep, res);
    free(keep.slot);
    if (res->added + res->replaced + res->deleted + res->lifted > 0)
        cg__runtime_changed(rt); /* one sweep and one state-file write */
    return rc;
}
