/* crowdsec_decisions.c — one decision-stream answer of the CrowdSec Local
 * API into plain decisions (cJSON), bounded; see crowdsec_decisions.h. */
#include "crowdsec_decisions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "condgate/common.h"

/* While parsing, reasons and origins are offsets into a growing pool;
 * pointers are set once it stops moving. */
typedef struct pool {
    char *p;
    size_t len, cap;
} pool;

static int pool_put(pool *pl, const char *s, size_t n, size_t *off)
{
    if (pl->len + n + 1 > pl->cap) {
        size_t cap = pl->cap ? pl->cap * 2 : 4096;
        while (cap < pl->len + n + 1)
            cap *= 2;
        char *p = realloc(pl->p, cap);
        if (p == NULL)
            return CG_ENOMEM;
        pl->p = p;
        pl->cap = cap;
    }
    memcpy(pl->p + pl->len, s, n);
    pl->p[pl->len + n] = '\0';
    *off = pl->len;
    pl->len += n + 1;
    return 0;
}

/* ---- durations --------------------------------------------------------- */

static int unit_ns(const char *s, size_t len, size_t *i, uint64_t *ns)
{
    static const struct {
        const char *name;
        uint64_t ns;
    } units[] = {
        {"ns", 1ull},       {"us", 1000ull},      {"\xc2\xb5s", 1000ull}, {"\xce\xbcs", 1000ull},
        {"ms", 1000000ull}, {"s", 1000000000ull}, {"m", 60000000000ull},  {"h", 3600000000000ull},
    };
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t n = strlen(units[u].name);
        /* "ms" is tried before "m" */
        if (len - *i >= n && memcmp(s + *i, units[u].name, n) == 0) {
            *i += n;
            *ns = units[u].ns;
            return 0;
        }
    }
    return CG_EINVAL;
}

/* cg__cs_duration_ms: see crowdsec_decisions.h. */
int cg__cs_duration_ms(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    if (i == len)
        return CG_EINVAL;
    if (len - i == 1 && s[i] == '0') {
        *out = 0;
        return 0;
    }
    const uint64_t limit = (uint64_t)INT64_MAX;
    uint64_t total = 0;
    while (i < len) {
        uint64_t whole = 0, frac = 0, scale = 1, unit;
        size_t digits = 0;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
            if (whole > (limit - 9) / 10)
                return CG_ERANGE;
            whole = whole * 10 + (uint64_t)(s[i] - '0');
        }
        if (i < len && s[i] == '.') {
            for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++)
                if (scale < 1000000000000000000ull) {
                    frac = frac * 10 + (uint64_t)(s[i] - '0');
                    scale *= 10;
                }
        }
        if (digits == 0 || unit_ns(s, len, &i, &unit) != 0)
            return CG_EINVAL;
        if (whole > limit / unit)
            return CG_ERANGE;
        uint64_t part = whole * unit + (uint64_t)((double)frac / (double)scale * (double)unit);
        if (part > limit - total)
            return CG_ERANGE;
        total += part;
    }
    int64_t ms = (int64_t)(total / 1000000u);
    *out = neg ? -ms : ms;
    return 0;
}

/* ---- text -------------------------------------------------------------- */

/* Length of the valid UTF-8 character at s[0..n) (no overlongs, no
 * surrogates), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t need = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (s[0] >= 0xf5 || need == 0 || n < need)
        return 0;
    for (size_t k = 1; k < need; k++)
        if ((s[k] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return need;
}

/* cg__cs_reason: see crowdsec_decisions.h. */
size_t cg__cs_reason(const char *s, size_t len, char *buf)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_char(u + i, len - i);
        if (n == 0 || (n == 1 && (u[i] < 0x20 || u[i] == 0x7f))) {
            n = n == 0 ? 1 : n;
            if (o + 1 > CG_CS_REASON_MAX)
                break;
            buf[o++] = '?';
        } else {
            if (o + n > CG_CS_REASON_MAX)
                break;
            memcpy(buf + o, s + i, n);
            o += n;
        }
        i += n;
    }
    buf[o] = '\0';
    return o;
}

/* The origin, printable ASCII only, cut. */
static size_t origin_text(const char *s, size_t len, char *buf)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o < CG_CS_ORIGIN_MAX; i++)
        buf[o++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    buf[o] = '\0';
    return o;
}

/* ---- JSON ---------------------------------------------------------------
 *
 * A scanner for this one shape, allocation-free: an answer of 100,000
 * decisions is 14 MB, and a general tree (a node per value) costs more to
 * allocate than everything else together. It checks the whole text against
 * the JSON grammar (RFC 8259) and decodes only the strings it keeps.
 */

#define JSON_DEPTH_MAX 64

typedef struct scan {
    const char *p, *end, *start;
    const char *why; /* the first error */
} scan;

static bool bad(scan *sc, const char *why)
{
    if (sc->why == NULL)
        sc->why = why;
    return false;
}

static void ws(scan *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

static bool eat(scan *sc, char c)
{
    ws(sc);
    if (sc->p < sc->end && *sc->p == c) {
        sc->p++;
        return true;
    }
    return false;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Append code point cp as UTF-8 to out (cap bytes; *n counts on past it). */
static void put_cp(char *out, size_t cap, size_t *n, unsigned cp)
{
    char b[4];
    size_t k = cp < 0x80      ? (b[0] = (char)cp, 1)
               : cp < 0x800   ? (b[0] = (char)(0xc0 | cp >> 6), 2)
               : cp < 0x10000 ? (b[0] = (char)(0xe0 | cp >> 12), 3)
                              : (b[0] = (char)(0xf0 | cp >> 18), 4);
    for (size_t i = 1; i < k; i++)
        b[i] = (char)(0x80 | ((cp >> (6 * (k - 1 - i))) & 0x3f));
    for (size_t i = 0; i < k; i++, (*n)++)
        if (out != NULL && *n < cap)
            out[*n] = b[i];
}

/* One escape after the backslash at sc->p; its text into out. */
static bool escape(scan *sc, char *out, size_t cap, size_t *n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *hit = sc->p < sc->end ? memchr(from, *sc->p, sizeof from - 1) : NULL;
    if (hit != NULL) {
        put_cp(out, cap, n, (unsigned char)to[hit - from]);
        sc->p++;
        return true;
    }
    if (sc->end - sc->p < 5 || *sc->p != 'u')
        return bad(sc, "a bad escape in a string");
    int cp = hex4(sc->p + 1);
    if (cp < 0)
        return bad(sc, "a bad \\u escape in a string");
    sc->p += 5;
    if (cp >= 0xd800 && cp <= 0xdbff && sc->end - sc->p >= 6 && sc->p[0] == '\\' &&
        sc->p[1] == 'u') {
        int lo = hex4(sc->p + 2);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            sc->p += 6;
        }
    }
    /* a lone surrogate becomes U+FFFD, as most decoders do */
    put_cp(out, cap, n, cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : (unsigned)cp);
    return true;
}

/* A string at sc->p (after whitespace); decoded into out (cap bytes, may be
 * NULL) with its decoded length in *len, which may pass cap (then out holds
 * only the first cap bytes). */
static bool string(scan *sc, char *out, size_t cap, size_t *len)
{
    size_t n = 0;
    if (!eat(sc, '"'))
        return bad(sc, "a string was expected");
    while (sc->p < sc->end && *sc->p != '"') {
        unsigned char c = (unsigned char)*sc->p;
        if (c < 0x20)
            return bad(sc, "a control character in a string");
        if (c == '\\') {
            sc->p++;
            if (!escape(sc, out, cap, &n))
                return false;
            continue;
        }
        const char *q = sc->p + 1;
        while (q < sc->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
            q++;
        size_t k = (size_t)(q - sc->p);
        if (out != NULL && n < cap)
            memcpy(out + n, sc->p, cap - n < k ? cap - n : k);
        n += k;
        sc->p = q;
    }
    if (sc->p == sc->end)
        return bad(sc, "a string is not closed");
    sc->p++;
    *len = n;
    return true;
}

static bool number(scan *sc)
{
    const char *p = sc->p;
    if (p < sc->end && *p == '-')
        p++;
    const char *d = p;
    while (p < sc->end && *p >= '0' && *p <= '9')
        p++;
    if (p == d || (*d == '0' && p - d > 1))
        return bad(sc, "a bad number");
    if (p < sc->end && *p == '.') {
        d = ++p;
        while (p < sc->end && *p >= '0' && *p <= '9')
            p++;
        if (p == d)
            return bad(sc, "a bad number");
    }
    if (p < sc->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < sc->end && (*p == '+' || *p == '-'))
            p++;
        d = p;
        while (p < sc->end && *p >= '0' && *p <= '9')
            p++;
        if (p == d)
            return bad(sc, "a bad number");
    }
    sc->p = p;
    return true;
}

static bool word(scan *sc, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, w, n) != 0)
        return bad(sc, "a value was expected");
    sc->p += n;
    return true;
}

/* Any value, skipped (checked all the same). */
static bool skip(scan *sc, int depth)
{
    size_t len;
    ws(sc);
    if (sc->p == sc->end)
        return bad(sc, "a value was expected");
    if (depth > JSON_DEPTH_MAX)
        return bad(sc, "nested too deep");
    char c = *sc->p;
    if (c == '"')
        return string(sc, NULL, 0, &len);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        sc->p++;
        if (eat(sc, close))
            return true;
        do {
            if (c == '{' && (!string(sc, NULL, 0, &len) || !eat(sc, ':')))
                return bad(sc, "a member was expected");
            if (!skip(sc, depth + 1))
                return false;
        } while (eat(sc, ','));
        return eat(sc, close) ? true : bad(sc, "',' or a closing bracket was expected");
    }
    if (c == 't')
        return word(sc, "true");
    if (c == 'f')
        return word(sc, "false");
    if (c == 'n')
        return word(sc, "null");
    return number(sc);
}

/* ---- decisions --------------------------------------------------------- */

enum { F_TYPE, F_SCOPE, F_VALUE, F_DURATION, F_SCENARIO, F_ORIGIN, F_COUNT };
static const char *const field_names[F_COUNT] = {"type",     "scope",    "value",
                                                 "duration", "scenario", "origin"};

/* The string fields of one decision object as read (a field is missing when
 * len is SIZE_MAX: absent, not a string, or longer than CG_CS_TEXT_MAX). */
typedef struct fields {
    char text[F_COUNT][CG_CS_TEXT_MAX];
    size_t len[F_COUNT];
} fields;

static bool same_ci(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    if (len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
        if (c != lit[i])
            return false;
    }
    return true;
}

/* The value of an Ip or Range decision: an address, or an address and a
 * length. The Local API passes values on as they were typed (host bits set,
 * upper case, IPv4-mapped; a prefix in scope Ip), so the prefix is masked
 * and an IPv4-mapped one of /96 or longer becomes its IPv4 prefix. */
static bool parse_value(const char *v, size_t len, cg_cidr *out)
{
    char err[128];
    if (len == 0 || len > CG_CS_VALUE_MAX)
        return false;
    const char *slash = memchr(v, '/', len);
    size_t alen = slash != NULL ? (size_t)(slash - v) : len;
    if (cg_cidr_parse(v, alen, out, err, sizeof err) != 0 ||
        out->len != (out->family == 4 ? 32 : 128))
        return false;
    if (slash == NULL)
        return true;
    size_t digits = len - alen - 1;
    unsigned n = 0;
    if (digits == 0 || digits > 3 || (digits > 1 && slash[1] == '0'))
        return false;
    for (size_t i = 1; i <= digits; i++) {
        if (slash[i] < '0' || slash[i] > '9')
            return false;
        n = n * 10 + (unsigned)(slash[i] - '0');
    }
    if (out->family == 4 && memchr(v, ':', alen) != NULL) {
        /* written IPv4-mapped: its length counts IPv6 bits */
        uint8_t a4[4];
        memcpy(a4, out->addr, 4);
        memset(out->addr, 0, 16);
        out->addr[10] = out->addr[11] = 0xff;
        memcpy(out->addr + 12, a4, 4);
        out->family = 6;
    }
    if (n > (out->family == 4 ? 32u : 128u))
        return false;
    out->len = (uint8_t)n;
    cg__cidr_mask(out);
    cg__cidr_normalise_mapped(out);
    return true;
}

/* One decision from its fields into *d (offsets of its texts into the pool
 * in *roff, *ooff). Returns 0 or CG_ENOMEM. */
static int one(const fields *f, cg__cs_decision *d, pool *pl, size_t *roff, size_t *ooff)
{
    char reason[CG_CS_REASON_MAX + 1], origin[CG_CS_ORIGIN_MAX + 1];
    const size_t *l = f->len;
    memset(d, 0, sizeof *d);
    d->kind = CG__CS_INVALID;
    size_t rl =
        l[F_SCENARIO] != SIZE_MAX ? cg__cs_reason(f->text[F_SCENARIO], l[F_SCENARIO], reason) : 0;
    reason[rl] = '\0';
    size_t ol = l[F_ORIGIN] != SIZE_MAX ? origin_text(f->text[F_ORIGIN], l[F_ORIGIN], origin) : 0;
    origin[ol] = '\0';
    int rc = pool_put(pl, reason, rl, roff);
    if (rc == 0)
        rc = pool_put(pl, origin, ol, ooff);
    if (rc != 0)
        return rc;
    for (int i = 0; i < F_ORIGIN; i++)
        if (l[i] == SIZE_MAX)
            return 0;
    if (cg__cs_duration_ms(f->text[F_DURATION], l[F_DURATION], &d->duration_ms) != 0)
        return 0;
    if (!same_ci(f->text[F_TYPE], l[F_TYPE], "ban")) {
        d->kind = CG__CS_TYPE;
        return 0;
    }
    bool ip = same_ci(f->text[F_SCOPE], l[F_SCOPE], "ip");
    bool range = same_ci(f->text[F_SCOPE], l[F_SCOPE], "range");
    if (!ip && !range) {
        d->kind = CG__CS_SCOPE;
        return 0;
    }
    if (parse_value(f->text[F_VALUE], l[F_VALUE], &d->cidr))
        d->kind = CG__CS_BAN;
    return 0;
}

/* One decision object's members into f. */
static bool object(scan *sc, fields *f)
{
    for (int i = 0; i < F_COUNT; i++)
        f->len[i] = SIZE_MAX;
    if (!eat(sc, '{'))
        return bad(sc, "a decision is not an object");
    if (eat(sc, '}'))
        return true;
    do {
        char key[16];
        size_t klen;
        if (!string(sc, key, sizeof key, &klen) || !eat(sc, ':'))
            return bad(sc, "a member was expected");
        int k = 0;
        while (k < F_COUNT &&
               !(klen == strlen(field_names[k]) && memcmp(key, field_names[k], klen) == 0))
            k++;
        ws(sc);
        if (k == F_COUNT || sc->p == sc->end || *sc->p != '"') {
            if (k < F_COUNT)
                f->len[k] = SIZE_MAX; /* not a string: missing */
            if (!skip(sc, 2))
                return false;
            continue;
        }
        size_t len;
        if (!string(sc, f->text[k], CG_CS_TEXT_MAX, &len))
            return false;
        f->len[k] = len <= CG_CS_TEXT_MAX ? len : SIZE_MAX;
    } while (eat(sc, ','));
    return eat(sc, '}') ? true : bad(sc, "',' or '}' was expected");
}

/* One list of the answer (after its key): null, or an array of decision
 * objects, appended to *out (*n of *cap). */
typedef struct list {
    cg__cs_decision *d;
    size_t *offs; /* two per decision: reason, origin */
    size_t n, cap;
    bool seen;
} list;

static int read_list(scan *sc, list *ls, size_t *budget, pool *pl, fields *f, char *err,
                     size_t errlen)
{
    ws(sc);
    if (sc->p < sc->end && *sc->p == 'n')
        return word(sc, "null") ? 0 : CG_EINVAL;
    if (!eat(sc, '['))
        return bad(sc, "a list of decisions is neither an array nor null"), CG_EINVAL;
    if (eat(sc, ']'))
        return 0;
    do {
        if (*budget == 0) {
            snprintf(err, errlen, "more than %u decisions in one answer", CG_CS_DECISIONS_MAX);
            return CG_ERANGE;
        }
        if (!object(sc, f))
            return CG_EINVAL;
        if (ls->n == ls->cap) {
            size_t cap = ls->cap ? ls->cap * 2 : 256;
            cg__cs_decision *d = realloc(ls->d, cap * sizeof *d);
            if (d != NULL)
                ls->d = d;
            size_t *o = realloc(ls->offs, cap * 2 * sizeof *o);
            if (o != NULL)
                ls->offs = o;
            if (d == NULL || o == NULL) {
                snprintf(err, errlen, "out of memory");
                return CG_ENOMEM;
            }
            ls->cap = cap;
        }
        if (one(f, &ls->d[ls->n], pl, &ls->offs[2 * ls->n], &ls->offs[2 * ls->n + 1]) != 0) {
            snprintf(err, errlen, "out of memory");
            return CG_ENOMEM;
        }
        ls->n++;
        (*budget)--;
    } while (eat(sc, ','));
    return eat(sc, ']') ? 0 : (bad(sc, "',' or ']' was expected"), CG_EINVAL);
}

/* The answer's object: "new" and "deleted" read, other members skipped. */
static int answer(scan *sc, list *added, list *deleted, pool *pl, char *err, size_t errlen)
{
    size_t budget = CG_CS_DECISIONS_MAX;
    fields *f = malloc(sizeof *f);
    int rc = 0;
    if (f == NULL) {
        snprintf(err, errlen, "out of memory");
        return CG_ENOMEM;
    }
    if (!eat(sc, '{')) {
        rc = skip(sc, 0) ? (bad(sc, "the answer is not a JSON object"), CG_EINVAL) : CG_EINVAL;
    } else if (!eat(sc, '}')) {
        do {
            char key[16];
            size_t klen;
            if (!string(sc, key, sizeof key, &klen) || !eat(sc, ':')) {
                rc = (bad(sc, "a member was expected"), CG_EINVAL);
                break;
            }
            bool isnew = klen == 3 && memcmp(key, "new", 3) == 0;
            bool isdel = klen == 7 && memcmp(key, "deleted", 7) == 0;
            list *ls = isnew ? added : isdel ? deleted : NULL;
            if (ls != NULL && ls->seen)
                rc = (bad(sc, "a list given twice"), CG_EINVAL);
            else if (ls != NULL)
                ls->seen = true, rc = read_list(sc, ls, &budget, pl, f, err, errlen);
            else if (!skip(sc, 1))
                rc = CG_EINVAL;
        } while (rc == 0 && eat(sc, ','));
        if (rc == 0 && !eat(sc, '}'))
            rc = (bad(sc, "',' or '}' was expected"), CG_EINVAL);
    }
    free(f);
    ws(sc);
    if (rc == 0 && sc->p != sc->end)
        rc = (bad(sc, "text after the JSON value"), CG_EINVAL);
    return rc;
}

static void fix_texts(cg__cs_decision *d, size_t n, const size_t *offs, const char *p)
{
    for (size_t i = 0; i < n; i++) {
        d[i].reason = p + offs[2 * i];
        d[i].origin = p + offs[2 * i + 1];
    }
}

/* cg__cs_parse: see crowdsec_decisions.h. */
int cg__cs_parse(const char *text, size_t len, cg__cs_answer *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (len > CG_CS_ANSWER_MAX) {
        snprintf(err, errlen, "answer of %zu bytes, more than %u", len, CG_CS_ANSWER_MAX);
        return CG_ERANGE;
    }
    scan sc = {.p = text, .end = text + len, .start = text};
    list added = {0}, deleted = {0};
    pool pl = {0};
    int rc = answer(&sc, &added, &deleted, &pl, err, errlen);
    if (rc == CG_EINVAL)
        snprintf(err, errlen, "not a decision stream answer: %s (at byte %zu)",
                 sc.why != NULL ? sc.why : "bad JSON", (size_t)(sc.p - sc.start));
    if (rc == 0) {
        out->added = added.d;
        out->nadded = added.n;
        out->deleted = deleted.d;
        out->ndeleted = deleted.n;
        out->pool = pl.p;
        fix_texts(out->added, out->nadded, added.offs, pl.p);
        fix_texts(out->deleted, out->ndeleted, deleted.offs, pl.p);
    } else {
        free(added.d);
        free(deleted.d);
        free(pl.p);
    }
    free(added.offs);
    free(deleted.offs);
    return rc;
}

/* cg__cs_answer_free: see crowdsec_decisions.h. */
void cg__cs_answer_free(cg__cs_answer *a)
{
    free(a->added);
    free(a->deleted);
    free(a->pool);
    memset(a, 0, sizeof *a);
}
