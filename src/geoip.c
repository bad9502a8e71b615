/* geoip.c — country and ASN databases as networks (SPEC §16).
 *
 * The CSV reader scans `from,to,CC` lines in place (as config_list.c does
 * for list files) and turns each range into its smallest prefix set. The
 * MaxMind DB reader walks the database's binary search tree once, depth
 * first with its own bounded stack, and decodes each data record once
 * (a small open-addressing cache keyed by the record's offset).
 */
#include "geoip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "condgate/config.h"

#if defined(CG_HAVE_GEOIP)
#include <errno.h>
#include <sys/stat.h>

#include <maxminddb.h>
#endif

/* cg__geo_country: see geoip.h. Any thread. */
bool cg__geo_country(const char *s, size_t len, char out[3])
{
    if (len != 2)
        return false;
    for (size_t i = 0; i < 2; i++) {
        char c = s[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c < 'A' || c > 'Z')
            return false;
        out[i] = c;
    }
    out[2] = '\0';
    return true;
}

/* ------------------------------------------------------------------------
 * CSV
 */

/* One address of a CSV line: a decimal IPv4 integer, dotted IPv4 or IPv6
 * text, no "/len". */
static int csv_addr(const char *s, size_t n, cg_cidr *out, char *why, size_t whylen)
{
    char q[CG__QUOTE_MAX];
    size_t digits = 0;
    while (digits < n && s[digits] >= '0' && s[digits] <= '9')
        digits++;
    if (n > 0 && digits == n) {
        uint64_t v = 0;
        for (size_t i = 0; i < n && v <= UINT32_MAX; i++)
            v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX || (n > 1 && s[0] == '0')) {
            snprintf(why, whylen, "bad address %s: an IPv4 integer runs from 0 to 4294967295",
                     cg__quote(q, sizeof q, s, n, CG__QUOTE_EXCERPT));
            return CG_EINVAL;
        }
        memset(out, 0, sizeof *out);
        out->family = 4;
        out->len = 32;
        cg__store_be32(out->addr, (uint32_t)v);
        return 0;
    }
    if (n == 0 || memchr(s, '/', n) || cg_cidr_parse(s, n, out, NULL, 0) != 0) {
        snprintf(why, whylen,
                 "bad address %s; expected an IPv4 integer, a dotted IPv4 or an IPv6 address",
                 cg__quote(q, sizeof q, s, n, CG__QUOTE_EXCERPT));
        return CG_EINVAL;
    }
    return 0;
}

/* Trim spaces, tabs and CR at both ends of b..e. */
static void trim(const char **b, const char **e)
{
    while (*b < *e && (**b == ' ' || **b == '\t' || **b == '\r'))
        (*b)++;
    while (*e > *b && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r'))
        (*e)--;
}

typedef struct csv_range {
    cg__geo_fn fn;
    void *arg;
    const char *cc;
} csv_range;

static int csv_prefix(void *arg, const cg_cidr *prefix)
{
    const csv_range *r = arg;
    return r->fn(r->arg, prefix, r->cc, 0);
}

/* One non-blank line b..e (comment removed, trimmed). Returns 0 or a code
 * with the reason in why (CG_EINVAL) or fn's code. */
static int csv_line(const char *b, const char *e, cg__geo_fn fn, void *arg, char *why,
                    size_t whylen)
{
    char q[CG__QUOTE_MAX];
    const char *f[4], *fe[3];
    size_t nf = 0;
    f[0] = b;
    for (const char *c = b; c < e; c++)
        if (*c == ',' && ++nf < 3) {
            fe[nf - 1] = c;
            f[nf] = c + 1;
        }
    if (nf != 2) {
        snprintf(why, whylen, "expected FROM,TO,CC (three fields), found %zu", nf + 1);
        return CG_EINVAL;
    }
    fe[2] = e;
    for (size_t i = 0; i < 3; i++)
        trim(&f[i], &fe[i]);

    cg_cidr from, to;
    int rc = csv_addr(f[0], (size_t)(fe[0] - f[0]), &from, why, whylen);
    if (!rc)
        rc = csv_addr(f[1], (size_t)(fe[1] - f[1]), &to, why, whylen);
    if (rc)
        return rc;
    char cc[3] = "";
    size_t cclen = (size_t)(fe[2] - f[2]);
    bool unknown = cclen == 2 && f[2][0] == '?' && f[2][1] == '?';
    if (!unknown && !cg__geo_country(f[2], cclen, cc)) {
        snprintf(why, whylen, "bad country code %s; expected two letters such as DE, or ??",
                 cg__quote(q, sizeof q, f[2], cclen, CG__QUOTE_EXCERPT));
        return CG_EINVAL;
    }
    csv_range r = {fn, arg, cc};
    return cg__range_prefixes(&from, &to, csv_prefix, &r, why, whylen);
}

/* cg__geoip_csv: see geoip.h. One thread per call. */
int cg__geoip_csv(const char *path, const char *text, size_t len, cg__geo_fn fn, void *arg,
                  cg__diag *d)
{
    char why[CG__REASON_MAX];
    const char *p = text, *end = text + len;
    uint32_t line = 0;

    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *b = p, *e = nl ? nl : end;
        p = nl ? nl + 1 : end;
        line++;
        if (e - b > CG_CONFIG_MAX_LIST_LINE)
            return cg__fail(d, CG_ERANGE, path, line, "line longer than %d bytes",
                            CG_CONFIG_MAX_LIST_LINE);
        if (memchr(b, '\0', (size_t)(e - b)))
            return cg__fail(d, CG_EINVAL, path, line, "NUL byte in the line; is this a text file?");
        const char *hash = memchr(b, '#', (size_t)(e - b));
        if (hash)
            e = hash;
        trim(&b, &e);
        if (b == e)
            continue;
        int rc = csv_line(b, e, fn, arg, why, sizeof why);
        if (rc == CG_EINVAL)
            return cg__fail(d, rc, path, line, "geoip_csv: %s", why);
        if (rc == CG_ERANGE)
            return cg__fail(d, rc, path, line, "geoip_csv: more than %u networks selected",
                            (unsigned)CG_RULESET_MAX_ENTRIES);
        if (rc)
            return cg__fail(d, rc, path, line, "geoip_csv: %s", cg_strerror(rc));
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * MaxMind DB
 */

#if !defined(CG_HAVE_GEOIP)

/* cg__geoip_db: see geoip.h; this build has no reader. */
int cg__geoip_db(const char *path, cg__geo_fn fn, void *arg, char *why, size_t whylen)
{
    (void)path;
    (void)fn;
    (void)arg;
    snprintf(why, whylen, "needs libmaxminddb; this build has none (condgate -V)");
    return CG_ENOTSUP;
}

#else

/* A decoded data record. */
typedef struct rec {
    uint32_t offset; /* the record's offset + 1; 0: free slot */
    uint32_t asn;
    char cc[3];
} rec;

typedef struct walk {
    MMDB_s db;
    cg__geo_fn fn;
    void *arg;
    char *why;
    size_t whylen;
    rec *cache; /* open addressing, a power of two */
    size_t cap, used;
    uint64_t visits, max_visits;
    uint32_t v4start; /* the node of ::/96 in an IPv6 tree, or UINT32_MAX */
} walk;

static int corrupt(walk *w, const char *what, int status)
{
    snprintf(w->why, w->whylen, "not a valid MaxMind DB (%s%s%s)", what, status ? ": " : "",
             status ? MMDB_strerror(status) : "");
    return CG_EINVAL;
}

/* The ISO code at path (..., "iso_code") of entry e into cc, or "". */
static int get_cc(walk *w, MMDB_entry_s *e, const char *obj, char cc[3])
{
    MMDB_entry_data_s v;
    int st = MMDB_get_value(e, &v, obj, "iso_code", NULL);
    cc[0] = '\0';
    if (st == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR || st == MMDB_INVALID_LOOKUP_PATH_ERROR)
        return 0;
    if (st != MMDB_SUCCESS)
        return corrupt(w, "data record", st);
    if (v.has_data && v.type == MMDB_DATA_TYPE_UTF8_STRING &&
        !cg__geo_country(v.utf8_string, v.data_size, cc))
        cc[0] = '\0';
    return 0;
}

static int get_asn(walk *w, MMDB_entry_s *e, uint32_t *asn)
{
    MMDB_entry_data_s v;
    int st = MMDB_get_value(e, &v, "autonomous_system_number", NULL);
    uint64_t n = 0;
    *asn = 0;
    if (st == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR || st == MMDB_INVALID_LOOKUP_PATH_ERROR)
        return 0;
    if (st != MMDB_SUCCESS)
        return corrupt(w, "data record", st);
    if (!v.has_data)
        return 0;
    if (v.type == MMDB_DATA_TYPE_UINT16)
        n = v.uint16;
    else if (v.type == MMDB_DATA_TYPE_UINT32)
        n = v.uint32;
    else if (v.type == MMDB_DATA_TYPE_UINT64)
        n = v.uint64;
    *asn = n <= UINT32_MAX ? (uint32_t)n : 0;
    return 0;
}

static int cache_grow(walk *w)
{
    size_t ncap = w->cap ? w->cap * 2 : 1024;
    rec *n = calloc(ncap, sizeof *n);
    if (!n)
        return CG_ENOMEM;
    for (size_t i = 0; i < w->cap; i++) {
        if (!w->cache[i].offset)
            continue;
        size_t h = (w->cache[i].offset * 2654435761u) & (ncap - 1);
        while (n[h].offset)
            h = (h + 1) & (ncap - 1);
        n[h] = w->cache[i];
    }
    free(w->cache);
    w->cache = n;
    w->cap = ncap;
    return 0;
}

/* The decoded record of entry e, decoding it on first sight. */
static int record(walk *w, MMDB_entry_s *e, const rec **out)
{
    if (w->used * 2 >= w->cap && cache_grow(w))
        return CG_ENOMEM;
    uint32_t key = e->offset + 1;
    size_t h = (key * 2654435761u) & (w->cap - 1);
    while (w->cache[h].offset && w->cache[h].offset != key)
        h = (h + 1) & (w->cap - 1);
    rec *r = &w->cache[h];
    if (!r->offset) {
        int rc = get_cc(w, e, "country", r->cc);
        if (!rc && !r->cc[0])
            rc = get_cc(w, e, "registered_country", r->cc);
        if (!rc)
            rc = get_asn(w, e, &r->asn);
        if (rc)
            return rc;
        r->offset = key;
        w->used++;
    }
    *out = r;
    return 0;
}

/* A network with data at depth bits of addr: as IPv4 when it lies under
 * ::/96 of an IPv6 tree. */
static int emit(walk *w, const uint8_t *addr, unsigned depth, MMDB_entry_s *e)
{
    const rec *r;
    int rc = record(w, e, &r);
    if (rc)
        return rc;
    if (!r->cc[0] && !r->asn)
        return 0;
    cg_cidr c;
    memset(&c, 0, sizeof c);
    static const uint8_t zero[12];
    if (w->db.metadata.ip_version == 4) {
        c.family = 4;
        c.len = (uint8_t)depth;
        memcpy(c.addr, addr + 12, 4);
    } else if (depth >= 96 && memcmp(addr, zero, 12) == 0) {
        c.family = 4;
        c.len = (uint8_t)(depth - 96);
        memcpy(c.addr, addr + 12, 4);
    } else {
        c.family = 6;
        c.len = (uint8_t)depth;
        memcpy(c.addr, addr, 16);
        /* A record above ::/96 on its path covers every IPv4 address too. */
        if (depth < 96 && memcmp(addr, zero, 12) == 0) {
            cg_cidr all4;
            memset(&all4, 0, sizeof all4);
            all4.family = 4;
            rc = w->fn(w->arg, &all4, r->cc, r->asn);
            if (rc)
                return rc;
        }
    }
    return w->fn(w->arg, &c, r->cc, r->asn);
}

typedef struct frame {
    uint32_t node;
    uint8_t depth;
    uint8_t addr[16];
} frame;

/* One record of a node at depth (the bit already set in addr): push the
 * node it leads to, or hand its data on. */
static int follow(walk *w, frame *stack, size_t *top, const frame *f, uint8_t type, uint64_t value,
                  MMDB_entry_s *entry, unsigned bits)
{
    static const uint8_t zero[12];
    switch (type) {
    case MMDB_RECORD_TYPE_EMPTY:
        return 0;
    case MMDB_RECORD_TYPE_DATA:
        return emit(w, f->addr, f->depth + 1u, entry);
    case MMDB_RECORD_TYPE_SEARCH_NODE:
        if (f->depth + 1u >= bits)
            return corrupt(w, "search tree deeper than the address", 0);
        /* An alias of the IPv4 subtree away from ::/96 (::ffff:0:0/96,
         * 2001::/32, 2002::/16): those callers are judged otherwise. */
        if (value == w->v4start && !(f->depth + 1u == 96 && memcmp(f->addr, zero, 12) == 0))
            return 0;
        if (*top >= CG_GEOIP_MAX_DEPTH + 1)
            return corrupt(w, "search tree too deep", 0);
        stack[*top] = *f;
        stack[*top].node = (uint32_t)value;
        stack[*top].depth = (uint8_t)(f->depth + 1u);
        (*top)++;
        return 0;
    default:
        return corrupt(w, "invalid record in the search tree", 0);
    }
}

/* The node of ::/96 (96 left turns from the root), or UINT32_MAX. */
static uint32_t v4_start(walk *w)
{
    uint32_t node = 0;
    if (w->db.metadata.ip_version != 6)
        return UINT32_MAX;
    for (unsigned i = 0; i < 96; i++) {
        MMDB_search_node_s n;
        if (MMDB_read_node(&w->db, node, &n) != MMDB_SUCCESS ||
            n.left_record_type != MMDB_RECORD_TYPE_SEARCH_NODE)
            return UINT32_MAX;
        node = (uint32_t)n.left_record;
    }
    return node;
}

static int walk_tree(walk *w)
{
    unsigned bits = w->db.metadata.ip_version == 4 ? 32 : 128;
    frame stack[CG_GEOIP_MAX_DEPTH + 2];
    size_t top = 1;
    memset(&stack[0], 0, sizeof stack[0]);
    while (top > 0) {
        frame f = stack[--top];
        MMDB_search_node_s n;
        if (++w->visits > w->max_visits)
            return corrupt(w, "search tree has shared nodes", 0);
        int st = MMDB_read_node(&w->db, f.node, &n);
        if (st != MMDB_SUCCESS)
            return corrupt(w, "search tree", st);
        /* Right first on the stack, so networks come in address order. */
        frame r = f;
        r.addr[(12u * (bits == 32)) + f.depth / 8] |= (uint8_t)(0x80u >> (f.depth % 8));
        int rc = follow(w, stack, &top, &r, n.right_record_type, n.right_record,
                        &n.right_record_entry, bits);
        if (!rc)
            rc = follow(w, stack, &top, &f, n.left_record_type, n.left_record, &n.left_record_entry,
                        bits);
        if (rc)
            return rc;
    }
    return 0;
}

/* cg__geoip_db: see geoip.h. One thread per call. */
int cg__geoip_db(const char *path, cg__geo_fn fn, void *arg, char *why, size_t whylen)
{
    walk w;
    memset(&w, 0, sizeof w);
    w.fn = fn;
    w.arg = arg;
    w.why = why;
    w.whylen = whylen;
    /* Only a regular file of bounded size: opening a FIFO would block the
     * loader (and a reload with it). */
    struct stat sb;
    errno = 0;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int e = errno ? errno : S_ISDIR(sb.st_mode) ? EISDIR : ENODEV;
        snprintf(why, whylen, "cannot open it: %s", cg__errno_text(e));
        return CG_EIO;
    }
    if ((uint64_t)sb.st_size > CG_GEOIP_MAX_DB_BYTES) {
        snprintf(why, whylen, "larger than %u MiB", (unsigned)(CG_GEOIP_MAX_DB_BYTES >> 20));
        return CG_ERANGE;
    }
    int st = MMDB_open(path, MMDB_MODE_MMAP, &w.db);
    if (st == MMDB_FILE_OPEN_ERROR || st == MMDB_IO_ERROR) {
        snprintf(why, whylen, "cannot open it: %s", MMDB_strerror(st));
        return CG_EIO;
    }
    if (st != MMDB_SUCCESS) {
        snprintf(why, whylen, "not a valid MaxMind DB: %s", MMDB_strerror(st));
        return CG_EINVAL;
    }
    int rc = 0;
    uint16_t v = w.db.metadata.ip_version;
    if (v != 4 && v != 6)
        rc = corrupt(&w, "ip_version is neither 4 nor 6", 0);
    else if (w.db.metadata.node_count == 0 || w.db.metadata.node_count > CG_GEOIP_MAX_NODES)
        rc = corrupt(&w, "node count out of range", 0);
    if (!rc) {
        /* Each node once, the three aliases' nodes stopped at. */
        w.max_visits = (uint64_t)w.db.metadata.node_count;
        w.v4start = v4_start(&w);
        rc = walk_tree(&w);
    }
    free(w.cache);
    MMDB_close(&w.db);
    return rc;
}

#endif /* CG_HAVE_GEOIP */
