/* bans.c — the ban table (bans.h): bans by exact prefix in an
 * open-addressing hash table, looked up once per prefix length in use, with
 * a min-heap of expiry times so that an expiry pass with nothing due costs
 * one comparison.
 *
 * Layout: the bans themselves sit in one dense array (`e`, removal moves the
 * last one into the hole); the hash table `slot` holds indices into it plus
 * one (0: empty), linear probing with backward-shift deletion (no
 * tombstones), at most half full; `heap` holds indices ordered by expiry and
 * each ban knows its place there (`hpos`), so replacing or removing any ban
 * is O(log n). Per family a 129-bit mask says which prefix lengths are in
 * use (with a count per length), so a lookup probes once per length in use,
 * longest first.
 *
 * Why a heap rather than a recomputed minimum: removing the earliest ban
 * would then rescan every ban, O(n) per expiry, and with a million bans
 * expiring one a second that is a full scan every second under the lock.
 * The heap costs 4 bytes a ban and O(log n) per change.
 *
 * One uv_mutex_t guards everything; hit counts are counted under it.
 */
#include "bans.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "condgate/common.h"

/* One ban as the table keeps it: 56 bytes, the reason apart (NULL for ""). */
struct ent {
    uint8_t family; /* 4 or 6 */
    uint8_t len;
    uint8_t origin;
    uint32_t hpos; /* its place in the heap */
    uint8_t addr[16];
    int64_t created;
    int64_t expires;
    uint64_t hits;
    char *reason;
};

#define NO_NEWEST SIZE_MAX

struct cg__bans {
    uv_mutex_t mu;
    size_t max;
    struct ent *e;  /* dense, n of ecap used */
    uint32_t *heap; /* n of ecap used */
    size_t n, ecap;
    uint32_t *slot; /* scap (a power of two) slots */
    size_t scap;
    uint64_t lens[2][3]; /* prefix lengths in use, per family */
    uint32_t lencount[2][129];
    uint64_t version;
    uint64_t seed;
    size_t newest;                     /* index of the newest ban, NO_NEWEST: unknown */
    uint64_t expire_looked;            /* bans whose expiry cg__bans_expire examined */
    size_t by_origin[CG__BAN_ORIGINS]; /* bans of each origin */
};

/* ------------------------------------------------------------------------
 * Keys
 */

static int fam(uint8_t family)
{
    return family == 4 ? 0 : 1;
}

/* normalise: an IPv4-mapped IPv6 prefix (::ffff:0:0/96 and longer) as its
 * IPv4 prefix, and host bits past len cleared. */
static void normalise(cg_cidr *c)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (c->family == 6 && c->len >= 96 && memcmp(c->addr, mapped, 12) == 0) {
        memmove(c->addr, c->addr + 12, 4);
        memset(c->addr + 4, 0, 12);
        c->family = 4;
        c->len = (uint8_t)(c->len - 96);
    }
    unsigned bits = c->family == 4 ? 32u : 128u;
    if (c->len > bits)
        c->len = (uint8_t)bits;
    for (unsigned i = 0; i < 16; i++) {
        unsigned lo = i * 8;
        if (lo >= c->len)
            c->addr[i] = 0;
        else if (c->len - lo < 8)
            c->addr[i] &= (uint8_t)(0xffu << (8 - (c->len - lo)));
    }
}

static uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* A keyed mix of the prefix: the seed is per table, so addresses an
 * attacker picks (auto-bans) cannot be aimed at one chain in advance. */
static uint64_t hash_key(uint64_t seed, uint8_t family, uint8_t len, const uint8_t *addr)
{
    uint64_t h = (load64(addr) ^ seed) * 0x9e3779b97f4a7c15u;
    h ^= h >> 29;
    h = (h ^ load64(addr + 8) ^ ((uint64_t)len << 8 | family)) * 0xbf58476d1ce4e5b9u;
    h ^= h >> 31;
    h *= 0x94d049bb133111ebu;
    return h ^ (h >> 32);
}

static uint64_t hash_ent(const cg__bans *b, const struct ent *x)
{
    return hash_key(b->seed, x->family, x->len, x->addr);
}

static bool same_key(const struct ent *x, const cg_cidr *c)
{
    return x->family == c->family && x->len == c->len && memcmp(x->addr, c->addr, 16) == 0;
}

/* find_slot: the slot of the ban on exactly c (normalised), or SIZE_MAX. */
static size_t find_slot(const cg__bans *b, const cg_cidr *c)
{
    if (b->scap == 0)
        return SIZE_MAX;
    size_t m = b->scap - 1;
    for (size_t i = hash_key(b->seed, c->family, c->len, c->addr) & m;; i = (i + 1) & m) {
        uint32_t s = b->slot[i];
        if (s == 0)
            return SIZE_MAX;
        if (same_key(&b->e[s - 1], c))
            return i;
    }
}

static void slot_insert(cg__bans *b, size_t idx)
{
    size_t m = b->scap - 1;
    size_t i = hash_ent(b, &b->e[idx]) & m;
    while (b->slot[i] != 0)
        i = (i + 1) & m;
    b->slot[i] = (uint32_t)(idx + 1);
}

/* slot_delete: empty slot i, shifting later members of its run back so
 * that every ban stays reachable from its home slot. */
static void slot_delete(cg__bans *b, size_t i)
{
    size_t m = b->scap - 1;
    for (size_t j = i;;) {
        j = (j + 1) & m;
        if (b->slot[j] == 0)
            break;
        size_t home = hash_ent(b, &b->e[b->slot[j] - 1]) & m;
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        b->slot[i] = b->slot[j];
        i = j;
    }
    b->slot[i] = 0;
}

/* ------------------------------------------------------------------------
 * The expiry heap
 */

static void heap_set(cg__bans *b, size_t pos, uint32_t idx)
{
    b->heap[pos] = idx;
    b->e[idx].hpos = (uint32_t)pos;
}

static void heap_up(cg__bans *b, size_t pos)
{
    uint32_t idx = b->heap[pos];
    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (b->e[b->heap[parent]].expires <= b->e[idx].expires)
            break;
        heap_set(b, pos, b->heap[parent]);
        pos = parent;
    }
    heap_set(b, pos, idx);
}

static void heap_down(cg__bans *b, size_t pos)
{
    uint32_t idx = b->heap[pos];
    for (;;) {
        size_t c = 2 * pos + 1;
        if (c >= b->n)
            break;
        if (c + 1 < b->n && b->e[b->heap[c + 1]].expires < b->e[b->heap[c]].expires)
            c++;
        if (b->e[idx].expires <= b->e[b->heap[c]].expires)
            break;
        heap_set(b, pos, b->heap[c]);
        pos = c;
    }
    heap_set(b, pos, idx);
}

/* heap_fix: restore the heap after the expiry of the ban at pos changed. */
static void heap_fix(cg__bans *b, size_t pos)
{
    uint32_t idx = b->heap[pos];
    heap_up(b, pos);
    heap_down(b, b->e[idx].hpos);
}

/* ------------------------------------------------------------------------
 * Table
 */

/* cg__bans_new: see bans.h. */
cg__bans *cg__bans_new(size_t max)
{
    cg__bans *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    if (uv_mutex_init(&b->mu) != 0) {
        free(b);
        return NULL;
    }
    b->max = max;
    b->newest = NO_NEWEST;
    /* Not secret, only unpredictable from outside: the table's address,
     * the clock and a high-resolution timer. */
    b->seed =
        (uint64_t)(uintptr_t)b * 0x9e3779b97f4a7c15u ^ (uint64_t)time(NULL) << 20 ^ uv_hrtime();
    return b;
}

/* cg__bans_free: see bans.h. */
void cg__bans_free(cg__bans *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->e[i].reason);
    free(b->e);
    free(b->heap);
    free(b->slot);
    uv_mutex_destroy(&b->mu);
    free(b);
}

/* cg__bans_set_max: see bans.h. */
void cg__bans_set_max(cg__bans *b, size_t max)
{
    uv_mutex_lock(&b->mu);
    b->max = max;
    uv_mutex_unlock(&b->mu);
}

/* grow: room for one more ban (dense array, heap, and a hash table kept at
 * most half full). Returns 0 or CG_ENOMEM. Under the lock. */
static int grow(cg__bans *b)
{
    if (b->n == b->ecap) {
        size_t cap = b->ecap ? b->ecap * 2 : 64;
        struct ent *e = realloc(b->e, cap * sizeof *e);
        if (e == NULL)
            return CG_ENOMEM;
        b->e = e;
        uint32_t *h = realloc(b->heap, cap * sizeof *h);
        if (h == NULL)
            return CG_ENOMEM;
        b->heap = h;
        b->ecap = cap;
    }
    if ((b->n + 1) * 2 > b->scap) {
        size_t cap = b->scap ? b->scap * 2 : 128;
        uint32_t *s = calloc(cap, sizeof *s);
        if (s == NULL)
            return CG_ENOMEM;
        free(b->slot);
        b->slot = s;
        b->scap = cap;
        for (size_t i = 0; i < b->n; i++)
            slot_insert(b, i);
    }
    return 0;
}

static void lens_add(cg__bans *b, uint8_t family, uint8_t len)
{
    int f = fam(family);
    if (b->lencount[f][len]++ == 0)
        b->lens[f][len / 64] |= (uint64_t)1 << (len % 64);
}

static void lens_drop(cg__bans *b, uint8_t family, uint8_t len)
{
    int f = fam(family);
    if (--b->lencount[f][len] == 0)
        b->lens[f][len / 64] &= ~((uint64_t)1 << (len % 64));
}

static void note_newest(cg__bans *b, size_t idx)
{
    if (b->newest == NO_NEWEST ? b->n == 1 : b->e[idx].created >= b->e[b->newest].created)
        b->newest = idx;
}

/* remove_at: take out ban idx, whose slot is si; the last ban moves into
 * its place. Under the lock. */
static void remove_at(cg__bans *b, size_t idx, size_t si)
{
    struct ent *x = &b->e[idx];
    slot_delete(b, si);
    size_t hp = x->hpos;
    uint32_t tail = b->heap[b->n - 1];
    free(x->reason);
    lens_drop(b, x->family, x->len);
    b->by_origin[x->origin]--;
    b->n--;
    if (hp != b->n) {
        heap_set(b, hp, tail);
        heap_fix(b, hp);
    }
    size_t last = b->n;
    if (idx != last) {
        cg_cidr k = {.family = b->e[last].family, .len = b->e[last].len};
        memcpy(k.addr, b->e[last].addr, 16);
        b->slot[find_slot(b, &k)] = (uint32_t)(idx + 1);
        b->e[idx] = b->e[last];
        b->heap[b->e[idx].hpos] = (uint32_t)idx;
    }
    if (b->newest == idx)
        b->newest = NO_NEWEST;
    else if (b->newest == last)
        b->newest = idx;
    b->version++;
}

static void copy_out(const struct ent *x, cg__ban *out)
{
    out->cidr.family = x->family;
    out->cidr.len = x->len;
    memcpy(out->cidr.addr, x->addr, 16);
    out->origin = (cg__ban_origin)x->origin;
    out->created_s = x->created;
    out->expires_s = x->expires;
    out->hits = x->hits;
    size_t l = x->reason ? strlen(x->reason) : 0;
    memcpy(out->reason, x->reason ? x->reason : "", l);
    out->reason[l] = '\0';
}

static bool ban_ok(const cg__ban *ban)
{
    const cg_cidr *c = &ban->cidr;
    if (c->family != 4 && c->family != 6)
        return false;
    if (c->len > (c->family == 4 ? 32 : 128) || (unsigned)ban->origin >= CG__BAN_ORIGINS)
        return false;
    size_t l = strnlen(ban->reason, sizeof ban->reason);
    return l <= CG_BAN_REASON_MAX && cg__ban_reason_ok(ban->reason, l);
}

/* insert_new: a new ban on prefix k. Returns 0, CG_ERANGE or CG_ENOMEM.
 * Under the lock; takes reason. */
static int insert_new(cg__bans *b, const cg_cidr *k, const cg__ban *ban, char *reason)
{
    if (b->n >= b->max)
        return CG_ERANGE;
    if (grow(b) != 0)
        return CG_ENOMEM;
    size_t idx = b->n++;
    struct ent *x = &b->e[idx];
    *x = (struct ent){.family = k->family,
                      .len = k->len,
                      .origin = (uint8_t)ban->origin,
                      .created = ban->created_s,
                      .expires = ban->expires_s,
                      .hits = ban->hits,
                      .reason = reason};
    memcpy(x->addr, k->addr, 16);
    slot_insert(b, idx);
    b->heap[idx] = (uint32_t)idx;
    x->hpos = (uint32_t)idx;
    heap_up(b, idx);
    lens_add(b, k->family, k->len);
    b->by_origin[x->origin]++;
    note_newest(b, idx);
    return 0;
}

/* cg__bans_add: see bans.h. Also CG_EINVAL for a ban no request could make
 * (bad family or length, bad origin, bad reason). */
int cg__bans_add(cg__bans *b, const cg__ban *ban, bool *replaced)
{
    return cg__bans_add_over(b, ban, (1u << CG__BAN_ORIGINS) - 1, replaced);
}

/* cg__bans_add_over: see bans.h. */
int cg__bans_add_over(cg__bans *b, const cg__ban *ban, unsigned over, bool *replaced)
{
    if (replaced)
        *replaced = false;
    if (!ban_ok(ban))
        return CG_EINVAL;
    cg_cidr k = ban->cidr;
    normalise(&k);
    char *reason = NULL;
    if (ban->reason[0] != '\0') {
        size_t l = strlen(ban->reason);
        if ((reason = malloc(l + 1)) == NULL)
            return CG_ENOMEM;
        memcpy(reason, ban->reason, l + 1);
    }
    int rc = 0;
    uv_mutex_lock(&b->mu);
    size_t si = find_slot(b, &k);
    if (si != SIZE_MAX && !(over & (1u << b->e[b->slot[si] - 1].origin))) {
        rc = CG_EEXIST;
    } else if (si != SIZE_MAX) {
        size_t idx = b->slot[si] - 1;
        struct ent *x = &b->e[idx];
        char *old = x->reason;
        x->reason = reason;
        reason = old; /* freed below, outside the lock */
        b->by_origin[x->origin]--;
        x->origin = (uint8_t)ban->origin;
        b->by_origin[x->origin]++;
        x->created = ban->created_s;
        x->expires = ban->expires_s;
        heap_fix(b, x->hpos);
        if (b->newest == idx)
            b->newest = NO_NEWEST; /* its time may have gone back */
        else if (b->newest != NO_NEWEST)
            note_newest(b, idx);
        if (replaced)
            *replaced = true;
    } else {
        rc = insert_new(b, &k, ban, reason);
        if (rc == 0)
            reason = NULL;
    }
    if (rc == 0)
        b->version++;
    uv_mutex_unlock(&b->mu);
    free(reason);
    return rc;
}

/* cg__bans_remove_origin: see bans.h. */
int cg__bans_remove_origin(cg__bans *b, const cg_cidr *cidr, cg__ban_origin origin)
{
    cg_cidr k = *cidr;
    normalise(&k);
    int rc = CG_ENOENT;
    uv_mutex_lock(&b->mu);
    size_t si = find_slot(b, &k);
    if (si != SIZE_MAX && b->e[b->slot[si] - 1].origin == (uint8_t)origin) {
        remove_at(b, b->slot[si] - 1, si);
        rc = 0;
    }
    uv_mutex_unlock(&b->mu);
    return rc;
}

/* cg__bans_count_origin: see bans.h. */
size_t cg__bans_count_origin(cg__bans *b, cg__ban_origin origin)
{
    uv_mutex_lock(&b->mu);
    size_t n = (unsigned)origin < CG__BAN_ORIGINS ? b->by_origin[origin] : 0;
    uv_mutex_unlock(&b->mu);
    return n;
}

/* cg__bans_remove: see bans.h. */
int cg__bans_remove(cg__bans *b, const cg_cidr *cidr, cg__ban *out)
{
    cg_cidr k = *cidr;
    normalise(&k);
    uv_mutex_lock(&b->mu);
    size_t si = find_slot(b, &k);
    if (si != SIZE_MAX) {
        size_t idx = b->slot[si] - 1;
        if (out)
            copy_out(&b->e[idx], out);
        remove_at(b, idx, si);
    }
    uv_mutex_unlock(&b->mu);
    return si != SIZE_MAX ? 0 : CG_ENOENT;
}

/* cg__bans_find: see bans.h. */
int cg__bans_find(cg__bans *b, const cg_cidr *cidr, cg__ban *out)
{
    cg_cidr k = *cidr;
    normalise(&k);
    uv_mutex_lock(&b->mu);
    size_t si = find_slot(b, &k);
    if (si != SIZE_MAX && out)
        copy_out(&b->e[b->slot[si] - 1], out);
    uv_mutex_unlock(&b->mu);
    return si != SIZE_MAX ? 0 : CG_ENOENT;
}

static int top_bit(uint64_t x)
{
    return 63 - __builtin_clzll(x);
}

/* cg__bans_match: see bans.h. One probe per prefix length in use, longest
 * first; an expired ban not yet removed is passed over, so a shorter one in
 * force may still cover the address. */
bool cg__bans_match(cg__bans *b, const cg_cidr *addr, int64_t now_s, bool count_hit, cg__ban *out)
{
    cg_cidr a = *addr;
    normalise(&a);
    int f = fam(a.family);
    bool hit = false;
    uv_mutex_lock(&b->mu);
    for (int w = 2; w >= 0 && !hit; w--) {
        for (uint64_t m = b->lens[f][w]; m != 0 && !hit;) {
            int bit = top_bit(m);
            m &= ~((uint64_t)1 << bit);
            cg_cidr k = a;
            k.len = (uint8_t)(w * 64 + bit);
            if (k.len > a.len)
                continue;
            normalise(&k);
            size_t si = find_slot(b, &k);
            if (si == SIZE_MAX)
                continue;
            struct ent *x = &b->e[b->slot[si] - 1];
            if (now_s >= x->expires)
                continue;
            hit = true;
            if (count_hit)
                x->hits++;
            if (out)
                copy_out(x, out);
        }
    }
    uv_mutex_unlock(&b->mu);
    return hit;
}

/* cg__bans_expire: see bans.h. Looks at the heap's top only while it is
 * due: one comparison when nothing is. */
size_t cg__bans_expire(cg__bans *b, int64_t now_s, void (*gone)(void *arg, const cg__ban *ban),
                       void *arg)
{
    size_t removed = 0;
    cg__ban copy;
    uv_mutex_lock(&b->mu);
    while (b->n > 0) {
        b->expire_looked++;
        size_t idx = b->heap[0];
        struct ent *x = &b->e[idx];
        if (x->expires > now_s)
            break;
        if (gone) {
            copy_out(x, &copy);
            gone(arg, &copy);
        }
        cg_cidr k = {.family = x->family, .len = x->len};
        memcpy(k.addr, x->addr, 16);
        remove_at(b, idx, find_slot(b, &k));
        removed++;
    }
    uv_mutex_unlock(&b->mu);
    return removed;
}

/* cg__bans_expire_looked: see bans.h. */
uint64_t cg__bans_expire_looked(cg__bans *b)
{
    uv_mutex_lock(&b->mu);
    uint64_t v = b->expire_looked;
    uv_mutex_unlock(&b->mu);
    return v;
}

/* cg__bans_count: see bans.h. */
size_t cg__bans_count(cg__bans *b)
{
    uv_mutex_lock(&b->mu);
    size_t n = b->n;
    uv_mutex_unlock(&b->mu);
    return n;
}

/* cg__bans_version: see bans.h. */
uint64_t cg__bans_version(cg__bans *b)
{
    uv_mutex_lock(&b->mu);
    uint64_t v = b->version;
    uv_mutex_unlock(&b->mu);
    return v;
}

/* cg__bans_newest: see bans.h. After the newest ban went away the next is
 * found by one scan, then remembered. */
int cg__bans_newest(cg__bans *b, cg__ban *out)
{
    uv_mutex_lock(&b->mu);
    if (b->newest == NO_NEWEST)
        for (size_t i = 0; i < b->n; i++)
            if (b->newest == NO_NEWEST || b->e[i].created >= b->e[b->newest].created)
                b->newest = i;
    int rc = b->newest == NO_NEWEST ? CG_ENOENT : 0;
    if (rc == 0)
        copy_out(&b->e[b->newest], out);
    uv_mutex_unlock(&b->mu);
    return rc;
}

/* ------------------------------------------------------------------------
 * Address order: listing and snapshots
 */

static int key_cmp(uint8_t fa, uint8_t la, const uint8_t *aa, uint8_t fb, uint8_t lb,
                   const uint8_t *ab)
{
    if (fa != fb)
        return fa < fb ? -1 : 1;
    int c = memcmp(aa, ab, 16);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return la < lb ? -1 : la > lb;
}

static int ent_cmp(const struct ent *x, const struct ent *y)
{
    return key_cmp(x->family, x->len, x->addr, y->family, y->len, y->addr);
}

static int ban_ptr_cmp(const void *pa, const void *pb)
{
    const cg__ban *a = *(const cg__ban *const *)pa, *b = *(const cg__ban *const *)pb;
    return key_cmp(a->cidr.family, a->cidr.len, a->cidr.addr, b->cidr.family, b->cidr.len,
                   b->cidr.addr);
}

/* sort_bans: v[0..n) into address order. Sorts pointers, then applies the
 * permutation in place by following its cycles, so a million 184-byte bans
 * are moved once each and no second array of them is needed. Returns 0 or
 * CG_ENOMEM. */
static int sort_bans(cg__ban *v, size_t n)
{
    if (n < 2)
        return 0;
    cg__ban **p = malloc(n * sizeof *p);
    if (p == NULL)
        return CG_ENOMEM;
    for (size_t i = 0; i < n; i++)
        p[i] = &v[i];
    qsort(p, n, sizeof *p, ban_ptr_cmp);
    for (size_t s = 0; s < n; s++) {
        if (p[s] == &v[s] || p[s] == NULL)
            continue;
        cg__ban tmp = v[s];
        size_t j = s;
        for (;;) {
            size_t k = (size_t)(p[j] - v);
            p[j] = NULL;
            if (k == s) {
                v[j] = tmp;
                break;
            }
            v[j] = v[k];
            j = k;
        }
    }
    free(p);
    return 0;
}

/* Max-heap of entry indices by address order: the `limit` smallest seen. */
static void sel_down(const cg__bans *b, uint32_t *h, size_t n, size_t pos)
{
    for (;;) {
        size_t c = 2 * pos + 1;
        if (c >= n)
            return;
        if (c + 1 < n && ent_cmp(&b->e[h[c + 1]], &b->e[h[c]]) > 0)
            c++;
        if (ent_cmp(&b->e[h[pos]], &b->e[h[c]]) >= 0)
            return;
        uint32_t t = h[pos];
        h[pos] = h[c];
        h[c] = t;
        pos = c;
    }
}

static void sel_push(const cg__bans *b, uint32_t *h, size_t n, uint32_t idx)
{
    size_t pos = n;
    h[pos] = idx;
    while (pos > 0 && ent_cmp(&b->e[h[(pos - 1) / 2]], &b->e[h[pos]]) < 0) {
        uint32_t t = h[pos];
        h[pos] = h[(pos - 1) / 2];
        h[(pos - 1) / 2] = t;
        pos = (pos - 1) / 2;
    }
}

/* select_after: copies of the (at most) limit first bans after `after`
 * into *out. Returns the count, or SIZE_MAX when out of memory. */
static size_t select_after(cg__bans *b, const struct ent *after, size_t limit, cg__ban **out)
{
    uv_mutex_lock(&b->mu);
    size_t cap = limit < b->n ? limit : b->n;
    uint32_t *h = malloc((cap ? cap : 1) * sizeof *h);
    cg__ban *v = malloc((cap ? cap : 1) * sizeof *v);
    size_t hn = 0;
    if (h == NULL || v == NULL) {
        uv_mutex_unlock(&b->mu);
        free(h);
        free(v);
        return SIZE_MAX;
    }
    for (size_t i = 0; i < b->n && cap > 0; i++) {
        if (after && ent_cmp(&b->e[i], after) <= 0)
            continue;
        if (hn < cap) {
            sel_push(b, h, hn++, (uint32_t)i);
        } else if (ent_cmp(&b->e[i], &b->e[h[0]]) < 0) {
            h[0] = (uint32_t)i;
            sel_down(b, h, hn, 0);
        }
    }
    for (size_t i = 0; i < hn; i++)
        copy_out(&b->e[h[i]], &v[i]);
    uv_mutex_unlock(&b->mu);
    free(h);
    *out = v;
    return hn;
}

/* cg__bans_list: see bans.h. Selection under the lock with a heap of at
 * most `limit` indices, O(n log limit); sorting and calls outside it. */
size_t cg__bans_list(cg__bans *b, const cg_cidr *after, size_t limit,
                     bool (*fn)(void *arg, const cg__ban *ban), void *arg)
{
    struct ent a = {0};
    if (after) {
        cg_cidr k = *after;
        normalise(&k);
        a.family = k.family;
        a.len = k.len;
        memcpy(a.addr, k.addr, 16);
    }
    cg__ban *v = NULL;
    size_t n = select_after(b, after ? &a : NULL, limit, &v);
    if (n == SIZE_MAX || sort_bans(v, n) != 0) {
        free(v);
        return 0;
    }
    size_t passed = 0;
    while (passed < n) {
        if (!fn(arg, &v[passed++]))
            break;
    }
    free(v);
    return passed;
}

/* cg__bans_snapshot: see bans.h. Copies under the lock, sorts after. */
int cg__bans_snapshot(cg__bans *b, cg__ban **out, size_t *n, uint64_t *version)
{
    uv_mutex_lock(&b->mu);
    size_t cnt = b->n;
    cg__ban *v = malloc((cnt ? cnt : 1) * sizeof *v);
    if (v == NULL) {
        uv_mutex_unlock(&b->mu);
        return CG_ENOMEM;
    }
    for (size_t i = 0; i < cnt; i++)
        copy_out(&b->e[i], &v[i]);
    if (version)
        *version = b->version;
    uv_mutex_unlock(&b->mu);
    if (sort_bans(v, cnt) != 0) {
        free(v);
        return CG_ENOMEM;
    }
    *out = v;
    *n = cnt;
    return 0;
}
