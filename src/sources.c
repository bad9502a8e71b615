/* sources.c — the per-source table (SPEC §12): a chained hash of sources
 * keyed by (listener, masked address), each with its open connections, a
 * sliding-window counter of admitted callers, a second one of rate refusals
 * (ban_after) and its auto-ban history; idle sources on an LRU list.
 *
 * Entries never move: connections hold pointers to them. They come from
 * slabs that live until the table is freed, and forgotten entries go to a
 * free list, so memory stays at the high-water mark (at most `max` entries
 * plus the last slab's spare room). The hash holds pointers; it grows by
 * doubling, moving a few old chains into the new buckets with each new
 * source, so no caller waits for the whole table to be rehashed.
 *
 * Invariant: an entry is on the LRU list exactly when its open count is 0,
 * and only those are ever forgotten.
 */
#include "sources.h"

#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cidr.h"

#define MIN_BUCKETS 16u
#define FIRST_SLAB 64u /* entries in the first slab, doubling up to MAX_SLAB */
#define MAX_SLAB 4096u /* entries in one slab at most (~400 KiB) */
#define MAX_EVICT 8    /* sources forgotten for one new source at most */
#define MOVE_STEP 16   /* old chains moved into grown buckets per new source */
#define DAY_S 86400u   /* auto-bans within this double the TTL */
#define MS_PER_S 1000u

/* A sliding-window counter: the fixed window starting at `start` (a
 * multiple of the window length in force when it last rolled), its count,
 * and the count of the window before it. */
typedef struct win {
    uint64_t start; /* ms */
    uint32_t cur;
    uint32_t prev;
} win;

struct cg__source {
    cg__source *next;       /* hash chain, or the free list */
    cg__source *older;      /* LRU list (open == 0): towards the head */
    cg__source *newer;      /* towards the tail, the most recently seen */
    uint64_t seen_ms;       /* last judged or taken; the LRU order is what forgetting uses */
    win rate;               /* admitted callers (rate_per_source) */
    win ban;                /* source_rate refusals (ban_after) */
    uint32_t autoban_s;     /* time of the last auto-ban, monotonic s */
    uint32_t autoban_ttl_s; /* its TTL; 0: none yet */
    uint32_t open;          /* open connections */
    uint32_t l;             /* gate listener index */
    uint32_t hash;          /* of (l, src), kept for growing the hash */
    cg_cidr src;            /* the caller masked to source_prefix */
};

struct cg__sources {
    uv_mutex_t lock;
    cg__source **buckets;
    size_t nbuckets;  /* a power of two */
    cg__source **old; /* while growing: the buckets before, NULL after */
    size_t nold;      /* their number (nbuckets / 2) */
    size_t moved;     /* old chains [0, moved) are in buckets already */
    size_t count;     /* entries in the hash */
    size_t max;
    uint64_t full;
    cg__source *lru_head; /* least recently seen with open == 0 */
    cg__source *lru_tail;
    cg__source *free;  /* forgotten entries */
    cg__source *fresh; /* the newest slab's entries never used: [fresh, +nfresh) */
    size_t nfresh;
    cg__source **slabs; /* each freed with the table */
    size_t nslabs;
    size_t slabs_cap;
    size_t allocated; /* entries in all slabs */
    uint64_t k0, k1;  /* hash key, random per table */
};

/* ------------------------------------------------------------------------
 * Hashing: SipHash-1-3 over three words, keyed per table so that callers
 * choosing their addresses cannot pile them into one chain.
 */

static inline uint64_t rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static inline void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13) ^ v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17) ^ v[2];
    v[2] = rotl(v[2], 32);
}

static inline void sip_word(uint64_t v[4], uint64_t m)
{
    v[3] ^= m;
    sip_round(v);
    v[0] ^= m;
}

static uint32_t key_hash(const cg__sources *s, uint32_t l, const cg_cidr *src)
{
    uint64_t v[4] = {s->k0 ^ 0x736f6d6570736575ull, s->k1 ^ 0x646f72616e646f6dull,
                     s->k0 ^ 0x6c7967656e657261ull, s->k1 ^ 0x7465646279746573ull};

    sip_word(v, (uint64_t)l | (uint64_t)src->family << 32 | (uint64_t)src->len << 40);
    sip_word(v, cg__load_be64(src->addr));
    sip_word(v, cg__load_be64(src->addr + 8));
    sip_word(v, (uint64_t)24 << 56);
    v[2] ^= 0xff;
    for (int i = 0; i < 3; i++)
        sip_round(v);
    uint64_t h = v[0] ^ v[1] ^ v[2] ^ v[3];
    return (uint32_t)(h ^ (h >> 32));
}

static bool key_equal(const cg__source *e, uint32_t l, const cg_cidr *src)
{
    return e->l == l && e->src.family == src->family && e->src.len == src->len &&
           memcmp(e->src.addr, src->addr, sizeof src->addr) == 0;
}

/* ------------------------------------------------------------------------
 * Sliding-window counters. Admitted while
 *     prev * (len - elapsed) / len + cur < N,
 * compared multiplied out by len, so exactly and without division. Sizes:
 * counts < 2^32 and len <= 2^27, so each product stays below 2^59.
 */

static void win_reset(win *w, uint64_t now, uint32_t len)
{
    w->start = now - now % len;
    w->cur = 0;
    w->prev = 0;
}

/* Moves w to the fixed window holding now. A clock that went back counts as
 * still inside the current window. */
static void win_roll(win *w, uint64_t now, uint32_t len)
{
    if (now < w->start || now - w->start < len)
        return;
    w->prev = now - w->start < 2 * (uint64_t)len ? w->cur : 0;
    w->cur = 0;
    w->start = now - now % len;
}

/* Whether the estimate at now (w rolled to now) has reached n. */
static bool win_reached(const win *w, uint64_t now, uint32_t len, uint32_t n)
{
    uint64_t el = now > w->start ? now - w->start : 0;
    uint64_t left = el < len ? len - el : 0;
    return (uint64_t)w->prev * left + (uint64_t)w->cur * len >= (uint64_t)n * len;
}

static void win_add(win *w)
{
    if (w->cur != UINT32_MAX)
        w->cur++;
}

/* ------------------------------------------------------------------------
 * The LRU list of idle entries.
 */

static void lru_unlink(cg__sources *s, cg__source *e)
{
    if (e->older)
        e->older->newer = e->newer;
    else
        s->lru_head = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        s->lru_tail = e->older;
    e->older = e->newer = NULL;
}

static void lru_push(cg__sources *s, cg__source *e)
{
    e->newer = NULL;
    e->older = s->lru_tail;
    if (s->lru_tail)
        s->lru_tail->newer = e;
    else
        s->lru_head = e;
    s->lru_tail = e;
}

/* ------------------------------------------------------------------------
 * The hash and the entries' storage.
 */

/* The chain that holds (or would hold) an entry of this hash: an old one
 * while growing and it has not moved yet. */
static cg__source **chain_of(const cg__sources *s, uint32_t hash)
{
    if (s->old && (hash & (s->nold - 1)) >= s->moved)
        return &s->old[hash & (s->nold - 1)];
    return &s->buckets[hash & (s->nbuckets - 1)];
}

static cg__source *find(const cg__sources *s, uint32_t hash, uint32_t l, const cg_cidr *src)
{
    for (cg__source *e = *chain_of(s, hash); e; e = e->next)
        if (e->hash == hash && key_equal(e, l, src))
            return e;
    return NULL;
}

/* Moves up to MOVE_STEP old chains into the grown buckets; frees the old
 * ones after the last. */
static void move_some(cg__sources *s)
{
    for (int i = 0; s->old && i < MOVE_STEP; i++) {
        cg__source *e = s->old[s->moved];
        /* The only two new buckets old chain i feeds; nothing touched them
         * before (chain_of sends their hashes to the old chain). */
        s->buckets[s->moved] = NULL;
        s->buckets[s->moved + s->nold] = NULL;
        s->old[s->moved++] = NULL;
        while (e) {
            cg__source *next = e->next;
            e->next = s->buckets[e->hash & (s->nbuckets - 1)];
            s->buckets[e->hash & (s->nbuckets - 1)] = e;
            e = next;
        }
        if (s->moved == s->nold) {
            free(s->old);
            s->old = NULL;
        }
    }
}

/* Starts doubling the buckets when the hash holds as many entries as it has
 * buckets; keeps them (longer chains, still correct) when out of memory.
 * The old chains move MOVE_STEP per new source, so all of them have moved
 * long before the count reaches the next doubling. The new buckets are
 * cleared as their old chain moves, not all at once: allocating them
 * touches no page. */
static void maybe_grow(cg__sources *s)
{
    move_some(s);
    if (s->old || s->count < s->nbuckets || s->nbuckets >= CG_CONFIG_MAX_SOURCES)
        return;
    cg__source **b = malloc(s->nbuckets * 2 * sizeof *b);
    if (!b)
        return;
    s->old = s->buckets;
    s->nold = s->nbuckets;
    s->moved = 0;
    s->buckets = b;
    s->nbuckets *= 2;
}

/* Adds a slab of fresh entries. Called only when no forgotten or fresh
 * entry is left and count < max, so allocated == count < max. */
static bool add_slab(cg__sources *s)
{
    size_t n = s->nslabs < 6 ? (size_t)FIRST_SLAB << s->nslabs : MAX_SLAB;
    if (s->max > s->allocated && n > s->max - s->allocated)
        n = s->max - s->allocated;
    if (s->nslabs == s->slabs_cap) {
        size_t cap = s->slabs_cap ? s->slabs_cap * 2 : 8;
        cg__source **v = realloc(s->slabs, cap * sizeof *v);
        if (!v)
            return false;
        s->slabs = v;
        s->slabs_cap = cap;
    }
    /* Not cleared: make() clears each entry as it is first used, so the
     * slab's pages are touched one by one rather than all now. */
    cg__source *slab = malloc(n * sizeof *slab);
    if (!slab)
        return false;
    s->slabs[s->nslabs++] = slab;
    s->allocated += n;
    s->fresh = slab;
    s->nfresh = n;
    return true;
}

/* Forgets the least recently seen idle source. */
static void evict_head(cg__sources *s)
{
    cg__source *e = s->lru_head;
    cg__source **p = chain_of(s, e->hash);

    lru_unlink(s, e);
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    e->next = s->free;
    s->free = e;
    s->count--;
}

/* Whether a new source finds no room: the table is at max and no idle
 * source can be forgotten. */
static bool no_room(const cg__sources *s)
{
    return s->count >= s->max && !s->lru_head;
}

typedef enum make_result { MADE, NO_ROOM, NO_MEMORY } make_result;

/* A new idle entry for (l, src), forgetting idle sources while the table is
 * at max (a few at a time, so a lowered max is reached as sources come). */
static make_result make(cg__sources *s, uint32_t hash, uint32_t l, const cg_cidr *src, uint64_t now,
                        cg__source **out)
{
    int evicted = 0;

    while (s->count >= s->max && s->lru_head && evicted < MAX_EVICT) {
        evict_head(s);
        evicted++;
    }
    if (s->count >= s->max && evicted == 0)
        return NO_ROOM;
    if (!s->free && s->nfresh == 0 && !add_slab(s))
        return NO_MEMORY;
    maybe_grow(s);
    cg__source *e;
    if (s->free) {
        e = s->free;
        s->free = e->next;
    } else {
        e = s->fresh++;
        s->nfresh--;
    }
    memset(e, 0, sizeof *e);
    e->l = l;
    e->src = *src;
    e->hash = hash;
    e->seen_ms = now;
    cg__source **chain = chain_of(s, hash);
    e->next = *chain;
    *chain = e;
    s->count++;
    lru_push(s, e);
    *out = e;
    return MADE;
}

/* Marks e seen at now: an idle one moves to the LRU tail. */
static void touch(cg__sources *s, cg__source *e, uint64_t now)
{
    e->seen_ms = now;
    if (e->open == 0 && s->lru_tail != e) {
        lru_unlink(s, e);
        lru_push(s, e);
    }
}

/* ------------------------------------------------------------------------
 * The table.
 */

static size_t clamp_max(size_t max)
{
    if (max < 1)
        return 1;
    return max > CG_CONFIG_MAX_SOURCES ? CG_CONFIG_MAX_SOURCES : max;
}

/* cg__sources_new: see sources.h. The hash key comes from the system's
 * random source (uv_random), or from the clock and an address when that
 * fails. Any thread; the caller frees with cg__sources_free. */
cg__sources *cg__sources_new(size_t max)
{
    cg__sources *s = calloc(1, sizeof *s);
    uint64_t key[2];

    if (!s)
        return NULL;
    s->max = clamp_max(max);
    s->nbuckets = MIN_BUCKETS;
    s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
    if (!s->buckets || uv_mutex_init(&s->lock) != 0) {
        free(s->buckets);
        free(s);
        return NULL;
    }
    if (uv_random(NULL, NULL, key, sizeof key, 0, NULL) != 0) {
        key[0] = uv_hrtime() * 0x9e3779b97f4a7c15ull;
        key[1] = (uint64_t)(uintptr_t)s ^ (key[0] >> 29);
    }
    s->k0 = key[0];
    s->k1 = key[1];
    return s;
}

/* cg__sources_free: see sources.h. Any thread, once nothing else uses s. */
void cg__sources_free(cg__sources *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nslabs; i++)
        free(s->slabs[i]);
    free(s->slabs);
    free(s->old);
    free(s->buckets);
    uv_mutex_destroy(&s->lock);
    free(s);
}

/* cg__sources_set_max: see sources.h. Any thread. */
void cg__sources_set_max(cg__sources *s, size_t max)
{
    uv_mutex_lock(&s->lock);
    s->max = clamp_max(max);
    uv_mutex_unlock(&s->lock);
}

/* cg__source_of: see sources.h. IPv4-mapped callers become IPv4 here too,
 * whatever the caller's key looked like. Any thread. */
void cg__source_of(const cg_source_limits *limits, const cg_cidr *addr, cg_cidr *out)
{
    cg_cidr c = *addr;
    unsigned prefix;

    cg__cidr_normalise_mapped(&c);
    if (c.family == 4) {
        memset(c.addr + 4, 0, sizeof c.addr - 4);
        prefix = limits->prefix4 < 32 ? limits->prefix4 : 32;
    } else {
        prefix = limits->prefix6 < 128 ? limits->prefix6 : 128;
    }
    if (c.len > prefix)
        c.len = (uint8_t)prefix;
    cg__cidr_mask(&c);
    *out = c;
}

/* The verdict of the limits for e at now, rolling its windows only when
 * commit (explain changes nothing). */
static cg__src_verdict verdict(cg__source *e, const cg_source_limits *lim, uint64_t now,
                               bool commit)
{
    if (lim->max_per_source != 0 && e->open >= lim->max_per_source)
        return CG__SRC_LIMIT;
    if (lim->rate.count == 0 || lim->rate.window_ms == 0)
        return CG__SRC_OK;
    win w = e->rate;
    win_roll(&w, now, lim->rate.window_ms);
    if (commit)
        e->rate = w;
    return win_reached(&w, now, lim->rate.window_ms, lim->rate.count) ? CG__SRC_RATE : CG__SRC_OK;
}

/* Counts a source_rate refusal of e toward ban_after; when it trips, resets
 * the count and fills *effect with the auto-ban, its TTL doubled for each
 * auto-ban of e within a day. */
static void count_refusal(cg__source *e, const cg_source_limits *lim, uint64_t now,
                          cg__src_effect *effect)
{
    uint32_t len = lim->ban_after.window_ms;
    uint32_t now_s = (uint32_t)(now / MS_PER_S);

    if (lim->ban_after.count == 0 || len == 0)
        return;
    win_roll(&e->ban, now, len);
    win_add(&e->ban);
    if (!win_reached(&e->ban, now, len, lim->ban_after.count))
        return;
    win_reset(&e->ban, now, len);
    uint64_t ttl = lim->ban_ttl_s;
    if (e->autoban_ttl_s != 0 && now_s - e->autoban_s < DAY_S)
        ttl = (uint64_t)e->autoban_ttl_s * 2;
    if (ttl > lim->ban_ttl_max_s)
        ttl = lim->ban_ttl_max_s;
    if (ttl == 0)
        ttl = 1;
    e->autoban_s = now_s;
    e->autoban_ttl_s = (uint32_t)ttl;
    if (effect) {
        effect->autoban = true;
        effect->ttl_s = (uint32_t)ttl;
        effect->cidr = e->src;
    }
}

/* cg__sources_judge: see sources.h. A source the table cannot make room for
 * is CG__SRC_FULL (counted only with commit); one it has no memory for is
 * answered as a fresh source (CG__SRC_OK) and tracked by nothing. Control
 * thread. */
cg__src_verdict cg__sources_judge(cg__sources *s, uint32_t l, const cg_source_limits *limits,
                                  const cg_cidr *addr, uint64_t now_ms, bool commit,
                                  cg__src_effect *effect)
{
    cg_cidr src;
    cg__src_verdict v = CG__SRC_OK;

    cg__source_of(limits, addr, &src);
    uint32_t h = key_hash(s, l, &src);
    uv_mutex_lock(&s->lock);
    if (commit && effect)
        effect->autoban = false;
    cg__source *e = find(s, h, l, &src);
    if (!e && !commit) {
        v = no_room(s) ? CG__SRC_FULL : CG__SRC_OK;
        goto out;
    }
    if (!e) {
        make_result r = make(s, h, l, &src, now_ms, &e);
        if (r == NO_ROOM) {
            s->full++;
            v = CG__SRC_FULL;
        }
        if (r != MADE)
            goto out;
    } else if (commit) {
        touch(s, e, now_ms);
    }
    v = verdict(e, limits, now_ms, commit);
    if (v == CG__SRC_RATE && commit)
        count_refusal(e, limits, now_ms, effect);
out:
    uv_mutex_unlock(&s->lock);
    return v;
}

/* cg__sources_take: see sources.h. Control thread. */
cg__source *cg__sources_take(cg__sources *s, uint32_t l, const cg_source_limits *limits,
                             const cg_cidr *addr, uint64_t now_ms)
{
    cg_cidr src;

    cg__source_of(limits, addr, &src);
    uint32_t h = key_hash(s, l, &src);
    uv_mutex_lock(&s->lock);
    cg__source *e = find(s, h, l, &src);
    if (!e && make(s, h, l, &src, now_ms, &e) != MADE) {
        e = NULL;
        goto out;
    }
    touch(s, e, now_ms);
    if (e->open == 0)
        lru_unlink(s, e);
    e->open++;
    if (limits->rate.count != 0 && limits->rate.window_ms != 0) {
        win_roll(&e->rate, now_ms, limits->rate.window_ms);
        win_add(&e->rate);
    }
out:
    uv_mutex_unlock(&s->lock);
    return e;
}

/* cg__sources_release: see sources.h. Any thread. */
void cg__sources_release(cg__sources *s, cg__source *e)
{
    if (!e)
        return;
    uv_mutex_lock(&s->lock);
    if (e->open > 0 && --e->open == 0)
        lru_push(s, e);
    uv_mutex_unlock(&s->lock);
}

/* cg__sources_count: see sources.h. Any thread. */
size_t cg__sources_count(cg__sources *s)
{
    uv_mutex_lock(&s->lock);
    size_t n = s->count;
    uv_mutex_unlock(&s->lock);
    return n;
}

/* cg__sources_full: see sources.h. Any thread. */
uint64_t cg__sources_full(cg__sources *s)
{
    uv_mutex_lock(&s->lock);
    uint64_t n = s->full;
    uv_mutex_unlock(&s->lock);
    return n;
}

/* cg__sources_bytes: see sources.h: the table itself, its buckets, and every
 * slab (entries in use and free ones). Any thread. */
size_t cg__sources_bytes(cg__sources *s)
{
    uv_mutex_lock(&s->lock);
    size_t n = sizeof *s + (s->nbuckets + (s->old ? s->nold : 0)) * sizeof *s->buckets +
               s->slabs_cap * sizeof *s->slabs + s->allocated * sizeof(cg__source);
    uv_mutex_unlock(&s->lock);
    return n;
}
