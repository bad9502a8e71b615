/* rules.c — rule sets, the frozen longest-prefix range tables and their hit
 * counters (CIDR text and lookup keys are cidr.c's).
 *
 * A set is built by appending raw entries (insertion order, one compact
 * vector per family). Freezing sorts them, merges duplicates, resolves
 * conflicts and turns the nested prefixes into a DXR-style range table:
 * disjoint address intervals, each mapped to the entry that decides it, with
 * a direct index on the top 16 address bits. A lookup is then one index load,
 * a short binary search inside one bucket and one result load.
 */
#include "condgate/rules.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"

/* File ids take 24 bits of an IPv4 entry. Every entry names one file, so a
 * set within CG_RULESET_MAX_ENTRIES never needs more. */
#define FILE_ID_LIMIT (1u << 24)

/* A range-table result: entry id in the low 31 bits, the action in the top
 * bit so a lookup need not touch the entry table. */
#define RES_NONE UINT32_MAX
#define RES_ALLOW 0x80000000u

/* Top-16-bit direct index: one slot per bucket plus the end. */
#define BUCKETS 65536u

/* One IPv4 entry, 16 bytes. The same layout serves while building (insertion
 * order) and once frozen (address order, merged). */
struct e4 {
    uint32_t addr;  /* host byte order */
    uint32_t line;  /* source line, 0 when unknown */
    uint32_t label; /* offset into the label arena, 0 = none */
    uint32_t meta;  /* file id (bits 0-23) | len (bits 24-29) | allow (bit 31) */
};

/* One IPv6 entry, 32 bytes; the address as two host-order halves so sorting
 * and the range sweep work on integers. */
struct e6 {
    uint64_t hi;
    uint64_t lo;
    uint32_t line;
    uint32_t label;
    uint32_t file;
    uint8_t len;
    uint8_t action;
};

/* A remembered conflict, kept by value so it survives any later reshuffle. */
struct conflict_rec {
    cg_cidr cidr;
    uint32_t allow_file;
    uint32_t allow_line;
    uint32_t deny_file;
    uint32_t deny_line;
};

/* IPv4 range table: base[b] = intervals starting before b << 16; key holds
 * the low 16 bits of each interval start (the bucket gives the top 16). */
struct table4 {
    uint32_t *base;
    uint16_t *key;
    uint32_t *res;
    size_t n;
};

/* IPv6 range table: the same shape, keys split into high and low halves so
 * most comparisons only touch the high array. Real IPv6 lists crowd into a
 * few /16s (2a00::/12 holds most of Europe), so a bucket with many intervals
 * gets a second direct index on the next bits: idx[b].sub is 0, or the
 * offset into subbase << 5 | the number of extra bits. */
struct idx6 {
    uint32_t base; /* intervals starting before this bucket */
    uint32_t sub;
};

struct table6 {
    struct idx6 *idx; /* BUCKETS + 1 */
    uint32_t *subbase;
    size_t nsub;
    uint64_t *khi;
    uint64_t *klo;
    uint32_t *res;
    size_t n;
};

struct cg_ruleset {
    char *name;
    cg_action def;
    bool frozen;

    struct e4 *e4;
    size_t n4, cap4;
    struct e6 *e6;
    size_t n6, cap6;

    char **files; /* interned source paths; an entry stores the index */
    size_t nfiles, capfiles, lastfile;

    char *labels; /* NUL-separated arena; offset 0 is "no label" */
    size_t labels_len, labels_cap;
    uint32_t lastlabel;

    size_t added, duplicates, conflicts;
    struct conflict_rec conf[CG_RULESET_MAX_CONFLICTS];
    size_t nconf;

    _Atomic uint64_t *hits; /* one per frozen entry, v4 ids then v6 ids */
    struct table4 t4;
    struct table6 t6;
    size_t bytes;
};

/* ------------------------------------------------------------------------
 * Small helpers
 */

/* Host bits of an IPv4 prefix of length len (0..32). */
static uint32_t hostmask4(unsigned len)
{
    return (uint32_t)(0xffffffffull >> len);
}

/* Host bits of an IPv6 prefix, as high and low halves. */
static void hostmask6(unsigned len, uint64_t *hi, uint64_t *lo)
{
    if (len <= 64) {
        *hi = len == 64 ? 0 : UINT64_MAX >> len;
        *lo = UINT64_MAX;
    } else {
        *hi = 0;
        *lo = len == 128 ? 0 : UINT64_MAX >> (len - 64);
    }
}

/* ------------------------------------------------------------------------
 * Names
 */

/* cg_action_name: see rules.h. Any thread. */
const char *cg_action_name(cg_action a)
{
    return a == CG_ALLOW ? "allow" : "deny";
}

/* ------------------------------------------------------------------------
 * Building
 */

/* cg_ruleset_new: see rules.h. Any thread. */
int cg_ruleset_new(const char *name, cg_action default_action, cg_ruleset **out)
{
    cg_ruleset *rs;
    size_t n;

    if (!out)
        return CG_EINVAL;
    *out = NULL;
    if (!name || !*name || (default_action != CG_ALLOW && default_action != CG_DENY))
        return CG_EINVAL;
    rs = calloc(1, sizeof *rs);
    if (!rs)
        return CG_ENOMEM;
    n = strlen(name) + 1;
    rs->name = malloc(n);
    if (!rs->name) {
        free(rs);
        return CG_ENOMEM;
    }
    memcpy(rs->name, name, n);
    rs->def = default_action;
    *out = rs;
    return 0;
}

static void free_tables(cg_ruleset *rs)
{
    free(rs->t4.base);
    free(rs->t4.key);
    free(rs->t4.res);
    free(rs->t6.idx);
    free(rs->t6.subbase);
    free(rs->t6.khi);
    free(rs->t6.klo);
    free(rs->t6.res);
    free((void *)rs->hits);
    memset(&rs->t4, 0, sizeof rs->t4);
    memset(&rs->t6, 0, sizeof rs->t6);
    rs->hits = NULL;
}

/* cg_ruleset_free: see rules.h. Frees a half-built or failed-to-freeze set
 * as well. */
void cg_ruleset_free(cg_ruleset *rs)
{
    if (!rs)
        return;
    free_tables(rs);
    for (size_t i = 0; i < rs->nfiles; i++)
        free(rs->files[i]);
    free(rs->files);
    free(rs->labels);
    free(rs->e4);
    free(rs->e6);
    free(rs->name);
    free(rs);
}

/* cg_ruleset_set_default: see rules.h. Ignored once frozen, because readers
 * on other threads may be using the set. One thread. */
void cg_ruleset_set_default(cg_ruleset *rs, cg_action default_action)
{
    if (rs && !rs->frozen && (default_action == CG_ALLOW || default_action == CG_DENY))
        rs->def = default_action;
}

/* Makes room for one more element in a growable array: returns the array
 * (moved or not), or NULL when out of memory, leaving p as it was. */
static void *grow(void *p, size_t *cap, size_t n, size_t elem)
{
    size_t ncap;
    void *q;

    if (n < *cap)
        return p;
    ncap = *cap ? *cap * 2 : 64;
    if (ncap > SIZE_MAX / elem)
        return NULL;
    q = realloc(p, ncap * elem);
    if (q)
        *cap = ncap;
    return q;
}

/* Index of a source path, adding it when new. Adds come grouped by file, so
 * the last one used almost always matches. */
static int intern_file(cg_ruleset *rs, const char *file, size_t flen, uint32_t *id)
{
    char *copy, **files;

    if (rs->nfiles && strcmp(rs->files[rs->lastfile], file) == 0) {
        *id = (uint32_t)rs->lastfile;
        return 0;
    }
    for (size_t i = rs->nfiles; i-- > 0;) {
        if (strcmp(rs->files[i], file) == 0) {
            rs->lastfile = i;
            *id = (uint32_t)i;
            return 0;
        }
    }
    if (rs->nfiles >= FILE_ID_LIMIT)
        return CG_ERANGE;
    files = grow(rs->files, &rs->capfiles, rs->nfiles, sizeof *rs->files);
    if (!files)
        return CG_ENOMEM;
    rs->files = files;
    copy = malloc(flen + 1);
    if (!copy)
        return CG_ENOMEM;
    memcpy(copy, file, flen + 1);
    rs->files[rs->nfiles] = copy;
    rs->lastfile = rs->nfiles++;
    *id = (uint32_t)rs->lastfile;
    return 0;
}

/* Arena offset of a label (0 for none), reusing the previous one when equal
 * since list entries tend to share labels. */
static int intern_label(cg_ruleset *rs, const char *label, size_t llen, uint32_t *off)
{
    size_t need;

    if (!label || llen == 0) {
        *off = 0;
        return 0;
    }
    if (rs->lastlabel && strcmp(rs->labels + rs->lastlabel, label) == 0) {
        *off = rs->lastlabel;
        return 0;
    }
    need = rs->labels_len + llen + 1 + (rs->labels_len == 0);
    if (need > UINT32_MAX)
        return CG_ERANGE;
    if (need > rs->labels_cap) {
        size_t ncap = rs->labels_cap ? rs->labels_cap * 2 : 256;
        char *q;
        while (ncap < need)
            ncap *= 2;
        q = realloc(rs->labels, ncap);
        if (!q)
            return CG_ENOMEM;
        rs->labels = q;
        rs->labels_cap = ncap;
    }
    if (rs->labels_len == 0)
        rs->labels[rs->labels_len++] = '\0'; /* offset 0 means "none" */
    memcpy(rs->labels + rs->labels_len, label, llen + 1);
    *off = (uint32_t)rs->labels_len;
    rs->lastlabel = *off;
    rs->labels_len += llen + 1;
    return 0;
}

/* strlen bounded by max + 1, so an over-long string is never scanned to its
 * end. */
static size_t bounded_len(const char *s, size_t max)
{
    size_t n = 0;
    while (n <= max && s[n])
        n++;
    return n;
}

/* Appends an already validated, masked and normalised prefix. */
static int add_entry(cg_ruleset *rs, const cg_cidr *c, cg_action action, const cg_source *src,
                     const char *label)
{
    const char *file = src && src->file ? src->file : "";
    uint32_t line = src ? src->line : 0;
    size_t llen = label ? bounded_len(label, CG_LABEL_MAX) : 0;
    size_t flen = bounded_len(file, CG_SOURCE_MAX);
    uint32_t fid, loff;
    int rc;

    if (rs->frozen)
        return CG_EINVAL;
    if (action != CG_ALLOW && action != CG_DENY)
        return CG_EINVAL;
    if (rs->n4 + rs->n6 >= CG_RULESET_MAX_ENTRIES || llen > CG_LABEL_MAX || flen > CG_SOURCE_MAX)
        return CG_ERANGE;
    if (c->family == 4) {
        struct e4 *v = grow(rs->e4, &rs->cap4, rs->n4, sizeof *rs->e4);
        if (!v)
            return CG_ENOMEM;
        rs->e4 = v;
    } else {
        struct e6 *v = grow(rs->e6, &rs->cap6, rs->n6, sizeof *rs->e6);
        if (!v)
            return CG_ENOMEM;
        rs->e6 = v;
    }
    rc = intern_file(rs, file, flen, &fid);
    if (rc)
        return rc;
    rc = intern_label(rs, label, llen, &loff);
    if (rc)
        return rc;

    if (c->family == 4) {
        struct e4 *e = &rs->e4[rs->n4++];
        e->addr = cg__load_be32(c->addr);
        e->line = line;
        e->label = loff;
        e->meta = fid | (uint32_t)c->len << 24 | (action == CG_ALLOW ? 1u << 31 : 0);
    } else {
        struct e6 *e = &rs->e6[rs->n6++];
        e->hi = cg__load_be64(c->addr);
        e->lo = cg__load_be64(c->addr + 8);
        e->line = line;
        e->label = loff;
        e->file = fid;
        e->len = c->len;
        e->action = (uint8_t)action;
    }
    rs->added++;
    return 0;
}

/* cg_ruleset_add: see rules.h. The prefix is checked like parsed text: a
 * known family, a length in range and no host bits; mapped prefixes are
 * normalised to IPv4. One thread. */
int cg_ruleset_add(cg_ruleset *rs, const cg_cidr *cidr, cg_action action, const cg_source *src,
                   const char *label)
{
    cg_cidr c;

    if (!rs || !cidr)
        return CG_EINVAL;
    c = *cidr;
    if ((c.family != 4 && c.family != 6) || c.len > (c.family == 4 ? 32 : 128))
        return CG_EINVAL;
    if (c.family == 4)
        memset(c.addr + 4, 0, 12);
    if (cg__cidr_mask(&c))
        return CG_EINVAL;
    cg__cidr_normalise_mapped(&c);
    return add_entry(rs, &c, action, src, label);
}

/* Explains a failed add in err for cg_ruleset_add_text callers. */
static int add_error(const cg_ruleset *rs, int rc, const char *label, const cg_source *src,
                     char *err, size_t errlen)
{
    if (!err || errlen == 0)
        return rc;
    if (rc == CG_ENOMEM) {
        snprintf(err, errlen, "out of memory");
    } else if (rs->frozen) {
        snprintf(err, errlen, "rule set '%s' is frozen", rs->name);
    } else if (rc == CG_ERANGE) {
        if (label && bounded_len(label, CG_LABEL_MAX) > CG_LABEL_MAX)
            snprintf(err, errlen, "label too long (max %d bytes)", CG_LABEL_MAX);
        else if (src && src->file && bounded_len(src->file, CG_SOURCE_MAX) > CG_SOURCE_MAX)
            snprintf(err, errlen, "source path too long (max %d bytes)", CG_SOURCE_MAX);
        else
            snprintf(err, errlen, "too many entries in rule set '%s' (max %u)", rs->name,
                     CG_RULESET_MAX_ENTRIES);
    } else {
        snprintf(err, errlen, "%s", cg_strerror(rc));
    }
    return rc;
}

/* cg_ruleset_add_text: see rules.h. "all" adds two entries or neither. One
 * thread. */
int cg_ruleset_add_text(cg_ruleset *rs, const char *text, size_t len, cg_action action,
                        const cg_source *src, const char *label, char *err, size_t errlen)
{
    cg_cidr c;
    int rc;

    if (!rs)
        return CG_EINVAL;
    if (text && len == 3 && memcmp(text, "all", 3) == 0) {
        cg_cidr v6;

        memset(&c, 0, sizeof c);
        c.family = 4;
        v6 = c;
        v6.family = 6;
        if (rs->n4 + rs->n6 + 2 > CG_RULESET_MAX_ENTRIES && !rs->frozen)
            return add_error(rs, CG_ERANGE, NULL, NULL, err, errlen);
        rc = add_entry(rs, &c, action, src, label);
        if (rc)
            return add_error(rs, rc, label, src, err, errlen);
        rc = add_entry(rs, &v6, action, src, label);
        if (rc) {
            rs->n4--; /* undo the IPv4 half */
            rs->added--;
            return add_error(rs, rc, label, src, err, errlen);
        }
        return 0;
    }
    rc = cg_cidr_parse(text, len, &c, err, errlen);
    if (rc)
        return rc;
    rc = add_entry(rs, &c, action, src, label);
    if (rc)
        return add_error(rs, rc, label, src, err, errlen);
    return 0;
}

/* ------------------------------------------------------------------------
 * Freezing
 */

/* LSD radix sort of the IPv4 entries by (addr, len), 8-bit digits. Stable,
 * so equal prefixes keep insertion order and the first source stays first.
 * Digits that are the same in every entry are skipped. */
static int sort4(cg_ruleset *rs)
{
    static const unsigned shift[5] = {24, 0, 8, 16, 24};
    uint32_t(*count)[256];
    struct e4 *src = rs->e4, *dst;
    size_t n = rs->n4;

    if (n < 2)
        return 0;
    count = calloc(5, sizeof *count);
    dst = malloc(n * sizeof *dst);
    if (!count || !dst) {
        free(count);
        free(dst);
        return CG_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        count[0][(src[i].meta >> 24) & 0x3f]++;
        count[1][src[i].addr & 0xff]++;
        count[2][(src[i].addr >> 8) & 0xff]++;
        count[3][(src[i].addr >> 16) & 0xff]++;
        count[4][src[i].addr >> 24]++;
    }
    for (unsigned d = 0; d < 5; d++) {
        uint32_t pos[256], sum = 0;
        uint32_t first = d == 0 ? (src[0].meta >> 24) & 0x3f : (src[0].addr >> shift[d]) & 0xff;
        struct e4 *t;

        if (count[d][first] == n)
            continue;
        for (unsigned b = 0; b < 256; b++) {
            pos[b] = sum;
            sum += count[d][b];
        }
        if (d == 0) {
            for (size_t i = 0; i < n; i++)
                dst[pos[(src[i].meta >> 24) & 0x3f]++] = src[i];
        } else {
            for (size_t i = 0; i < n; i++)
                dst[pos[(src[i].addr >> shift[d]) & 0xff]++] = src[i];
        }
        t = src;
        src = dst;
        dst = t;
    }
    rs->e4 = src;
    rs->cap4 = n;
    free(dst);
    free(count);
    return 0;
}

/* Digit d (0 = length, 1..8 = low half bytes, 9..16 = high half bytes) of an
 * IPv6 entry, least significant first. */
static unsigned digit6(const struct e6 *e, unsigned d)
{
    if (d == 0)
        return e->len;
    if (d <= 8)
        return (unsigned)(e->lo >> (8 * (d - 1))) & 0xff;
    return (unsigned)(e->hi >> (8 * (d - 9))) & 0xff;
}

/* The IPv6 counterpart of sort4, by (hi, lo, len). */
static int sort6(cg_ruleset *rs)
{
    uint32_t(*count)[256];
    struct e6 *src = rs->e6, *dst;
    size_t n = rs->n6;

    if (n < 2)
        return 0;
    count = calloc(17, sizeof *count);
    dst = malloc(n * sizeof *dst);
    if (!count || !dst) {
        free(count);
        free(dst);
        return CG_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        for (unsigned d = 0; d < 17; d++)
            count[d][digit6(&src[i], d)]++;
    for (unsigned d = 0; d < 17; d++) {
        uint32_t pos[256], sum = 0;
        struct e6 *t;

        if (count[d][digit6(&src[0], d)] == n)
            continue;
        for (unsigned b = 0; b < 256; b++) {
            pos[b] = sum;
            sum += count[d][b];
        }
        for (size_t i = 0; i < n; i++)
            dst[pos[digit6(&src[i], d)]++] = src[i];
        t = src;
        src = dst;
        dst = t;
    }
    rs->e6 = src;
    rs->cap6 = n;
    free(dst);
    free(count);
    return 0;
}

static void remember_conflict(cg_ruleset *rs, const cg_cidr *c, uint32_t allow_file,
                              uint32_t allow_line, uint32_t deny_file, uint32_t deny_line)
{
    struct conflict_rec *r;

    rs->conflicts++;
    if (rs->nconf >= CG_RULESET_MAX_CONFLICTS)
        return;
    r = &rs->conf[rs->nconf++];
    r->cidr = *c;
    r->allow_file = allow_file;
    r->allow_line = allow_line;
    r->deny_file = deny_file;
    r->deny_line = deny_line;
}

/* Counts what merging a run of equal prefixes drops. */
static void count_run(cg_ruleset *rs, size_t allows, size_t denies)
{
    rs->duplicates += (allows ? allows - 1 : 0) + (denies ? denies - 1 : 0);
}

/* Merges runs of the same IPv4 prefix in place: the first deny wins over any
 * allow, otherwise the first allow. */
static void merge4(cg_ruleset *rs)
{
    struct e4 *e = rs->e4;
    size_t n = rs->n4, w = 0, i = 0;

    while (i < n) {
        uint32_t addr = e[i].addr, lm = e[i].meta & 0x3f000000u;
        size_t j = i, fa = SIZE_MAX, fd = SIZE_MAX, na = 0, nd = 0;

        for (; j < n && e[j].addr == addr && (e[j].meta & 0x3f000000u) == lm; j++) {
            if (e[j].meta >> 31) {
                if (!na++)
                    fa = j;
            } else if (!nd++) {
                fd = j;
            }
        }
        count_run(rs, na, nd);
        if (na && nd) {
            cg_cidr c;
            memset(&c, 0, sizeof c);
            c.family = 4;
            c.len = (uint8_t)(lm >> 24);
            cg__store_be32(c.addr, addr);
            remember_conflict(rs, &c, e[fa].meta & (FILE_ID_LIMIT - 1), e[fa].line,
                              e[fd].meta & (FILE_ID_LIMIT - 1), e[fd].line);
        }
        e[w++] = e[nd ? fd : fa];
        i = j;
    }
    rs->n4 = w;
}

/* The IPv6 counterpart of merge4. */
static void merge6(cg_ruleset *rs)
{
    struct e6 *e = rs->e6;
    size_t n = rs->n6, w = 0, i = 0;

    while (i < n) {
        size_t j = i, fa = SIZE_MAX, fd = SIZE_MAX, na = 0, nd = 0;

        for (; j < n && e[j].hi == e[i].hi && e[j].lo == e[i].lo && e[j].len == e[i].len; j++) {
            if (e[j].action == CG_ALLOW) {
                if (!na++)
                    fa = j;
            } else if (!nd++) {
                fd = j;
            }
        }
        count_run(rs, na, nd);
        if (na && nd) {
            cg_cidr c;
            memset(&c, 0, sizeof c);
            c.family = 6;
            c.len = e[i].len;
            cg__store_be64(c.addr, e[i].hi);
            cg__store_be64(c.addr + 8, e[i].lo);
            remember_conflict(rs, &c, e[fa].file, e[fa].line, e[fd].file, e[fd].line);
        }
        e[w++] = e[nd ? fd : fa];
        i = j;
    }
    rs->n6 = w;
}

/* Intervals under construction: start points and results, appended in
 * address order. */
struct iv4 {
    uint32_t *start;
    uint32_t *res;
    size_t n;
};

/* Starts a new interval at `start`, replacing one that starts at the same
 * point (a longer prefix starting where a shorter one does) and merging it
 * into the previous interval when both decide the same way. */
static void emit4(struct iv4 *iv, uint32_t start, uint32_t res)
{
    size_t n = iv->n;

    if (n && iv->start[n - 1] == start)
        n--;
    if (!(n && iv->res[n - 1] == res)) {
        iv->start[n] = start;
        iv->res[n] = res;
        n++;
    }
    iv->n = n;
}

/* Sweeps the sorted, merged prefixes (start ascending, shorter first) with a
 * stack of the prefixes that contain the current point: entering a prefix
 * starts its interval, leaving it resumes the enclosing one. */
static void sweep4(const struct e4 *e, size_t n, struct iv4 *iv)
{
    uint32_t stack_end[33], stack_res[33];
    size_t sp = 0;

    iv->n = 0;
    emit4(iv, 0, RES_NONE);
    for (size_t i = 0; i < n; i++) {
        unsigned len = (e[i].meta >> 24) & 0x3f;
        uint32_t res = (uint32_t)i | (e[i].meta & RES_ALLOW);

        while (sp && stack_end[sp - 1] < e[i].addr) {
            uint32_t end = stack_end[--sp];
            emit4(iv, end + 1, sp ? stack_res[sp - 1] : RES_NONE);
        }
        emit4(iv, e[i].addr, res);
        stack_end[sp] = e[i].addr | hostmask4(len);
        stack_res[sp++] = res;
    }
    while (sp) {
        uint32_t end = stack_end[--sp];
        if (end != UINT32_MAX)
            emit4(iv, end + 1, sp ? stack_res[sp - 1] : RES_NONE);
    }
}

static int build4(cg_ruleset *rs)
{
    size_t cap = 2 * rs->n4 + 1;
    struct iv4 iv = {malloc(cap * sizeof(uint32_t)), malloc(cap * sizeof(uint32_t)), 0};
    struct table4 *t = &rs->t4;
    uint32_t *shrunk;

    t->base = calloc(BUCKETS + 1, sizeof *t->base);
    if (!iv.start || !iv.res || !t->base)
        goto free_intervals;
    sweep4(rs->e4, rs->n4, &iv);
    t->key = malloc(iv.n * sizeof *t->key);
    if (!t->key)
        goto free_intervals;
    for (size_t i = 0; i < iv.n; i++) {
        t->base[(iv.start[i] >> 16) + 1]++;
        t->key[i] = (uint16_t)iv.start[i];
    }
    for (size_t b = 1; b <= BUCKETS; b++)
        t->base[b] += t->base[b - 1];
    free(iv.start);
    shrunk = realloc(iv.res, iv.n * sizeof *iv.res);
    t->res = shrunk ? shrunk : iv.res;
    t->n = iv.n;
    return 0;

free_intervals:
    free(iv.start);
    free(iv.res);
    return CG_ENOMEM;
}

/* IPv6 intervals under construction. */
struct iv6 {
    uint64_t *hi;
    uint64_t *lo;
    uint32_t *res;
    size_t n;
};

static void emit6(struct iv6 *iv, uint64_t hi, uint64_t lo, uint32_t res)
{
    size_t n = iv->n;

    if (n && iv->hi[n - 1] == hi && iv->lo[n - 1] == lo)
        n--;
    if (!(n && iv->res[n - 1] == res)) {
        iv->hi[n] = hi;
        iv->lo[n] = lo;
        iv->res[n] = res;
        n++;
    }
    iv->n = n;
}

/* Emits the interval that resumes after a prefix ending at (hi, lo). */
static void emit6_after(struct iv6 *iv, uint64_t hi, uint64_t lo, uint32_t res)
{
    if (lo == UINT64_MAX) {
        if (hi == UINT64_MAX)
            return; /* ends at the last address: nothing follows */
        emit6(iv, hi + 1, 0, res);
    } else {
        emit6(iv, hi, lo + 1, res);
    }
}

static bool lt6(uint64_t ah, uint64_t al, uint64_t bh, uint64_t bl)
{
    return ah < bh || (ah == bh && al < bl);
}

/* The IPv6 counterpart of sweep4. */
static void sweep6(const struct e6 *e, size_t n, uint32_t idbase, struct iv6 *iv)
{
    uint64_t end_hi[129], end_lo[129];
    uint32_t stack_res[129];
    size_t sp = 0;

    iv->n = 0;
    emit6(iv, 0, 0, RES_NONE);
    for (size_t i = 0; i < n; i++) {
        uint32_t res = (idbase + (uint32_t)i) | (e[i].action == CG_ALLOW ? RES_ALLOW : 0);
        uint64_t mh, ml;

        while (sp && lt6(end_hi[sp - 1], end_lo[sp - 1], e[i].hi, e[i].lo)) {
            sp--;
            emit6_after(iv, end_hi[sp], end_lo[sp], sp ? stack_res[sp - 1] : RES_NONE);
        }
        emit6(iv, e[i].hi, e[i].lo, res);
        hostmask6(e[i].len, &mh, &ml);
        end_hi[sp] = e[i].hi | mh;
        end_lo[sp] = e[i].lo | ml;
        stack_res[sp++] = res;
    }
    while (sp) {
        sp--;
        emit6_after(iv, end_hi[sp], end_lo[sp], sp ? stack_res[sp - 1] : RES_NONE);
    }
}

static void *shrink(void *p, size_t bytes)
{
    void *q = realloc(p, bytes ? bytes : 1);
    return q ? q : p;
}

/* Builds the second-level index of crowded IPv6 buckets: enough extra bits
 * that a sub-bucket holds about SUB_TARGET intervals, so the search stays in
 * one or two cache lines however the addresses cluster. */
#define SUB_MIN 32
#define SUB_TARGET 4

static unsigned sub_bits(uint32_t count)
{
    unsigned bits = 1;

    while (bits < 16 && (count >> bits) > SUB_TARGET)
        bits++;
    return bits;
}

static int build6_sub(struct table6 *t)
{
    size_t nsub = 0, off = 0;

    for (size_t b = 0; b < BUCKETS; b++) {
        uint32_t c = t->idx[b + 1].base - t->idx[b].base;
        if (c > SUB_MIN)
            nsub += ((size_t)1 << sub_bits(c)) + 1;
    }
    if (!nsub)
        return 0;
    t->subbase = calloc(nsub, sizeof *t->subbase);
    if (!t->subbase)
        return CG_ENOMEM;
    t->nsub = nsub;
    for (size_t b = 0; b < BUCKETS; b++) {
        uint32_t lo = t->idx[b].base, hi = t->idx[b + 1].base;
        uint32_t *sb = t->subbase + off;
        unsigned bits;
        size_t nsb;

        if (hi - lo <= SUB_MIN)
            continue;
        bits = sub_bits(hi - lo);
        nsb = (size_t)1 << bits;
        /* sb[s] = intervals starting before sub-bucket s, as base[] is for
         * buckets. */
        for (uint32_t i = lo; i < hi; i++)
            sb[((t->khi[i] >> (48 - bits)) & (nsb - 1)) + 1]++;
        sb[0] = lo;
        for (size_t s = 1; s <= nsb; s++)
            sb[s] += sb[s - 1];
        t->idx[b].sub = (uint32_t)off << 5 | bits;
        off += nsb + 1;
    }
    return 0;
}

static int build6(cg_ruleset *rs)
{
    size_t cap = 2 * rs->n6 + 1;
    struct iv6 iv = {malloc(cap * sizeof(uint64_t)), malloc(cap * sizeof(uint64_t)),
                     malloc(cap * sizeof(uint32_t)), 0};
    struct table6 *t = &rs->t6;

    t->idx = calloc(BUCKETS + 1, sizeof *t->idx);
    if (!iv.hi || !iv.lo || !iv.res || !t->idx) {
        free(iv.hi);
        free(iv.lo);
        free(iv.res);
        return CG_ENOMEM;
    }
    sweep6(rs->e6, rs->n6, (uint32_t)rs->n4, &iv);
    for (size_t i = 0; i < iv.n; i++)
        t->idx[(iv.hi[i] >> 48) + 1].base++;
    for (size_t b = 1; b <= BUCKETS; b++)
        t->idx[b].base += t->idx[b - 1].base;
    t->khi = shrink(iv.hi, iv.n * sizeof *iv.hi);
    t->klo = shrink(iv.lo, iv.n * sizeof *iv.lo);
    t->res = shrink(iv.res, iv.n * sizeof *iv.res);
    t->n = iv.n;
    return build6_sub(t);
}

static size_t held_bytes(const cg_ruleset *rs)
{
    size_t b = sizeof *rs + strlen(rs->name) + 1;

    b += rs->cap4 * sizeof *rs->e4 + rs->cap6 * sizeof *rs->e6;
    b += (rs->n4 + rs->n6) * sizeof *rs->hits;
    b += rs->capfiles * sizeof *rs->files;
    for (size_t i = 0; i < rs->nfiles; i++)
        b += strlen(rs->files[i]) + 1;
    b += rs->labels_cap;
    b += (BUCKETS + 1) * (sizeof *rs->t4.base + sizeof *rs->t6.idx);
    b += rs->t6.nsub * sizeof *rs->t6.subbase;
    b += rs->t4.n * (sizeof *rs->t4.key + sizeof *rs->t4.res);
    b += rs->t6.n * (sizeof *rs->t6.khi + sizeof *rs->t6.klo + sizeof *rs->t6.res);
    return b;
}

/* cg_ruleset_freeze: see rules.h. Sorting and merging change nothing a
 * second attempt would redo differently, so on CG_ENOMEM the set stays
 * unfrozen and may be frozen again or freed. One thread. */
int cg_ruleset_freeze(cg_ruleset *rs)
{
    size_t total;
    int rc;

    if (!rs || rs->frozen)
        return CG_EINVAL;
    rc = sort4(rs);
    if (rc)
        return rc;
    merge4(rs);
    rc = sort6(rs);
    if (rc)
        return rc;
    merge6(rs);

    /* The building slack is dead weight from here on. */
    if (rs->cap4 != rs->n4) {
        rs->e4 = shrink(rs->e4, rs->n4 * sizeof *rs->e4);
        rs->cap4 = rs->n4;
    }
    if (rs->cap6 != rs->n6) {
        rs->e6 = shrink(rs->e6, rs->n6 * sizeof *rs->e6);
        rs->cap6 = rs->n6;
    }
    if (rs->labels_cap != rs->labels_len) {
        rs->labels = shrink(rs->labels, rs->labels_len);
        rs->labels_cap = rs->labels_len ? rs->labels_len : (rs->labels ? 1 : 0);
    }

    total = rs->n4 + rs->n6;
    rs->hits = malloc((total ? total : 1) * sizeof *rs->hits);
    if (!rs->hits)
        goto free_lookup;
    for (size_t i = 0; i < total; i++)
        atomic_init(&rs->hits[i], 0);
    rc = build4(rs);
    if (rc)
        goto free_lookup;
    rc = build6(rs);
    if (rc)
        goto free_lookup;
    rs->bytes = held_bytes(rs);
    rs->frozen = true;
    return 0;

free_lookup:
    free_tables(rs);
    return CG_ENOMEM;
}

/* ------------------------------------------------------------------------
 * Lookup
 */

static uint32_t find4(const cg_ruleset *rs, uint32_t a)
{
    const struct table4 *t = &rs->t4;
    uint32_t b = a >> 16, lo = t->base[b], hi = t->base[b + 1];
    uint16_t x = (uint16_t)a;
    const uint16_t *k, *p;
    uint32_t n;

    /* No interval starts in this bucket: the one before covers it all. */
    if (lo == hi)
        return t->res[lo - 1];
    /* Upper bound without data-dependent branches; p ends on the last key
     * <= x, or on the first key when none is (then the interval continuing
     * from the previous bucket, lo - 1, decides). */
    k = t->key + lo;
    p = k;
    n = hi - lo;
    while (n > 1) {
        uint32_t half = n / 2;
        p = p[half] <= x ? p + half : p;
        n -= half;
    }
    return t->res[lo + (uint32_t)(p - k) + (*p <= x) - 1];
}

static bool le6(uint64_t kh, uint64_t kl, uint64_t xh, uint64_t xl)
{
    return kh != xh ? kh < xh : kl <= xl;
}

static uint32_t find6(const cg_ruleset *rs, uint64_t xh, uint64_t xl)
{
    const struct table6 *t = &rs->t6;
    const struct idx6 *d = &t->idx[xh >> 48];
    uint32_t lo = d[0].base, hi = d[1].base;
    const uint64_t *kh, *kl;
    uint32_t n, i = 0;

    if (d->sub) {
        unsigned bits = d->sub & 31;
        const uint32_t *sb = t->subbase + (d->sub >> 5);
        uint32_t s = (uint32_t)(xh >> (48 - bits)) & ((1u << bits) - 1);
        lo = sb[s];
        hi = sb[s + 1];
    }
    if (lo == hi)
        return t->res[lo - 1];
    kh = t->khi + lo;
    kl = t->klo + lo;
    n = hi - lo;
    while (n > 1) {
        uint32_t half = n / 2;
        i = le6(kh[i + half], kl[i + half], xh, xl) ? i + half : i;
        n -= half;
    }
    return t->res[lo + i + le6(kh[i], kl[i], xh, xl) - 1];
}

/* The range-table result for an address: RES_NONE or id | RES_ALLOW. */
static uint32_t find(const cg_ruleset *rs, const cg_cidr *a)
{
    if (a->family == 4)
        return find4(rs, cg__load_be32(a->addr));
    if (a->family == 6) {
        if (cg__addr_is_mapped(a->addr))
            return find4(rs, cg__load_be32(a->addr + 12));
        return find6(rs, cg__load_be64(a->addr), cg__load_be64(a->addr + 8));
    }
    return RES_NONE;
}

static cg_action verdict(const cg_ruleset *rs, uint32_t r, cg_rule_id *rule)
{
    if (r == RES_NONE) {
        if (rule)
            *rule = CG_RULE_NONE;
        return rs->def;
    }
    if (rule)
        *rule = r & ~RES_ALLOW;
    return (r & RES_ALLOW) ? CG_ALLOW : CG_DENY;
}

/* cg_ruleset_lookup: see rules.h. An unfrozen set answers its default. Any
 * thread. */
cg_action cg_ruleset_lookup(const cg_ruleset *rs, const cg_cidr *addr, cg_rule_id *rule)
{
    if (!rs) {
        if (rule)
            *rule = CG_RULE_NONE;
        return CG_DENY;
    }
    return verdict(rs, rs->frozen && addr ? find(rs, addr) : RES_NONE, rule);
}

/* cg_ruleset_judge: see rules.h. Any thread. */
cg_action cg_ruleset_judge(const cg_ruleset *rs, const struct sockaddr *sa, cg_rule_id *rule)
{
    cg_cidr a;
    uint32_t r = RES_NONE;

    if (!rs) {
        if (rule)
            *rule = CG_RULE_NONE;
        return CG_DENY;
    }
    if (rs->frozen && cg_addr_from_sockaddr(sa, &a) == 0) {
        r = find(rs, &a);
        if (r != RES_NONE)
            atomic_fetch_add_explicit(&rs->hits[r & ~RES_ALLOW], 1, memory_order_relaxed);
    }
    return verdict(rs, r, rule);
}

/* cg_ruleset_each_interval: see rules.h. An IPv4 interval's start is its
 * bucket (the top 16 bits) and its key; an IPv6 interval's is its two key
 * halves. Any thread. */
int cg_ruleset_each_interval(const cg_ruleset *rs, int family,
                             int (*fn)(void *arg, const cg_cidr *start), void *arg)
{
    cg_cidr c;
    int rc = 0;

    if (!rs || !rs->frozen || (family != 4 && family != 6))
        return CG_EINVAL;
    memset(&c, 0, sizeof c);
    if (family == 4) {
        c.family = 4;
        c.len = 32;
        for (uint32_t b = 0; b < BUCKETS && rc == 0; b++)
            for (uint32_t i = rs->t4.base[b]; i < rs->t4.base[b + 1] && rc == 0; i++) {
                cg__store_be32(c.addr, b << 16 | rs->t4.key[i]);
                rc = fn(arg, &c);
            }
        return rc;
    }
    c.family = 6;
    c.len = 128;
    for (size_t i = 0; i < rs->t6.n && rc == 0; i++) {
        cg__store_be64(c.addr, rs->t6.khi[i]);
        cg__store_be64(c.addr + 8, rs->t6.klo[i]);
        rc = fn(arg, &c);
    }
    return rc;
}

/* cg_ruleset_count_hit: see rules.h. Any thread. */
void cg_ruleset_count_hit(const cg_ruleset *rs, cg_rule_id rule)
{
    if (rs != NULL && rs->frozen && rule != CG_RULE_NONE && rule < rs->n4 + rs->n6)
        atomic_fetch_add_explicit(&rs->hits[rule], 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Inspection
 */

/* cg_ruleset_rule: see rules.h. Any thread. */
int cg_ruleset_rule(const cg_ruleset *rs, cg_rule_id id, cg_rule_info *out)
{
    if (!rs || !out || !rs->frozen || id >= rs->n4 + rs->n6)
        return CG_ENOENT;
    memset(out, 0, sizeof *out);
    if (id < rs->n4) {
        const struct e4 *e = &rs->e4[id];
        out->cidr.family = 4;
        out->cidr.len = (uint8_t)((e->meta >> 24) & 0x3f);
        cg__store_be32(out->cidr.addr, e->addr);
        out->action = (e->meta >> 31) ? CG_ALLOW : CG_DENY;
        out->file = rs->files[e->meta & (FILE_ID_LIMIT - 1)];
        out->line = e->line;
        out->label = e->label ? rs->labels + e->label : NULL;
    } else {
        const struct e6 *e = &rs->e6[id - rs->n4];
        out->cidr.family = 6;
        out->cidr.len = e->len;
        cg__store_be64(out->cidr.addr, e->hi);
        cg__store_be64(out->cidr.addr + 8, e->lo);
        out->action = e->action == CG_ALLOW ? CG_ALLOW : CG_DENY;
        out->file = rs->files[e->file];
        out->line = e->line;
        out->label = e->label ? rs->labels + e->label : NULL;
    }
    out->hits = atomic_load_explicit(&rs->hits[id], memory_order_relaxed);
    return 0;
}

/* cg_ruleset_get_stats: see rules.h. Before freezing, v4 and v6 count the
 * raw entries and bytes is 0. Any thread. */
void cg_ruleset_get_stats(const cg_ruleset *rs, cg_ruleset_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!rs)
        return;
    out->v4 = rs->n4;
    out->v6 = rs->n6;
    out->added = rs->added;
    out->duplicates = rs->duplicates;
    out->conflicts = rs->conflicts;
    out->bytes = rs->frozen ? rs->bytes : 0;
}

/* cg_ruleset_conflict: see rules.h. Any thread. */
int cg_ruleset_conflict(const cg_ruleset *rs, size_t i, cg_conflict *out)
{
    const struct conflict_rec *r;

    if (!rs || !out || i >= rs->nconf)
        return CG_ENOENT;
    r = &rs->conf[i];
    out->cidr = r->cidr;
    out->allow.file = rs->files[r->allow_file];
    out->allow.line = r->allow_line;
    out->deny.file = rs->files[r->deny_file];
    out->deny.line = r->deny_line;
    return 0;
}

/* cg_ruleset_name: see rules.h. Any thread. */
const char *cg_ruleset_name(const cg_ruleset *rs)
{
    return rs ? rs->name : "";
}

/* cg_ruleset_default: see rules.h. Any thread. */
cg_action cg_ruleset_default(const cg_ruleset *rs)
{
    return rs ? rs->def : CG_DENY;
}

/* A counter snapshot for the top-N heap. */
struct hit {
    uint64_t hits;
    cg_rule_id id;
};

/* Heap order: fewer hits is "smaller"; on a tie the higher id is, so the
 * result lists equal counts in id (address) order. */
static bool hit_less(const struct hit *a, const struct hit *b)
{
    return a->hits != b->hits ? a->hits < b->hits : a->id > b->id;
}

static void sift_down(struct hit *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && hit_less(&h[l], &h[m]))
            m = l;
        if (l + 1 < n && hit_less(&h[l + 1], &h[m]))
            m = l + 1;
        if (m == i)
            return;
        struct hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* cg_ruleset_top: see rules.h. A min-heap of the best `max` seen so far:
 * O(n log max), no full sort. Asking for more than 64 allocates; should that
 * fail, the top 64 are returned. Any thread. */
size_t cg_ruleset_top(const cg_ruleset *rs, cg_rule_id *ids, size_t max)
{
    struct hit local[64], *h = local;
    size_t total, n = 0;

    if (!rs || !ids || !rs->frozen || max == 0)
        return 0;
    total = rs->n4 + rs->n6;
    if (max > total)
        max = total;
    if (max > 64) {
        h = malloc(max * sizeof *h);
        if (!h) {
            h = local;
            max = 64;
        }
    }
    for (size_t i = 0; i < total; i++) {
        struct hit c = {atomic_load_explicit(&rs->hits[i], memory_order_relaxed), (cg_rule_id)i};
        if (c.hits == 0)
            continue;
        if (n < max) {
            /* Sift up the new leaf. */
            size_t j = n++;
            h[j] = c;
            while (j && hit_less(&h[j], &h[(j - 1) / 2])) {
                struct hit t = h[j];
                h[j] = h[(j - 1) / 2];
                h[(j - 1) / 2] = t;
                j = (j - 1) / 2;
            }
        } else if (hit_less(&h[0], &c)) {
            h[0] = c;
            sift_down(h, n, 0);
        }
    }
    /* Pop the smallest into the back of ids: most hits end up first. */
    for (size_t k = n; k > 0; k--) {
        ids[k - 1] = h[0].id;
        h[0] = h[k - 1];
        sift_down(h, k - 1, 0);
    }
    if (h != local)
        free(h);
    return n;
}
