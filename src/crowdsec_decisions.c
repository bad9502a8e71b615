/* crowdsec_decisions.c — one decision-stream answer of the CrowdSec Local
 * API into plain decisions (cJSON), bounded; see crowdsec_decisions.h. */
#include "crowdsec_decisions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

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

/* ---- decisions --------------------------------------------------------- */

/* The string member `key` of o, bounded; NULL when missing, not a string
 * or longer than max. */
static const char *field(const cJSON *o, const char *key, size_t max, size_t *len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return NULL;
    *len = strlen(v->valuestring);
    return *len <= max ? v->valuestring : NULL;
}

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

/* The value of an Ip (a single address: a host prefix) or Range decision. */
static bool parse_value(const char *v, size_t len, bool range, cg_cidr *out)
{
    char err[128];
    if (len == 0 || len > CG_CS_VALUE_MAX)
        return false;
    if (!range && memchr(v, '/', len) != NULL)
        return false;
    if (range && memchr(v, '/', len) == NULL)
        return false;
    return cg_cidr_parse(v, len, out, err, sizeof err) == 0;
}

/* One decision object into *d (offsets of its texts into the pool in
 * *roff, *ooff). Returns 0 or CG_ENOMEM. */
static int one(const cJSON *o, cg__cs_decision *d, pool *pl, size_t *roff, size_t *ooff)
{
    size_t tl = 0, sl = 0, vl = 0, dl = 0, nl = 0, ol = 0;
    const char *type = field(o, "type", CG_CS_TEXT_MAX, &tl);
    const char *scope = field(o, "scope", CG_CS_TEXT_MAX, &sl);
    const char *value = field(o, "value", CG_CS_VALUE_MAX, &vl);
    const char *dur = field(o, "duration", CG_CS_TEXT_MAX, &dl);
    const char *scen = field(o, "scenario", CG_CS_TEXT_MAX, &nl);
    const char *orig = field(o, "origin", CG_CS_TEXT_MAX, &ol);
    char reason[CG_CS_REASON_MAX + 1], origin[CG_CS_ORIGIN_MAX + 1];

    memset(d, 0, sizeof *d);
    d->kind = CG__CS_INVALID;
    size_t rl = scen != NULL ? cg__cs_reason(scen, nl, reason) : 0;
    reason[rl] = '\0';
    ol = orig != NULL ? origin_text(orig, ol, origin) : 0;
    origin[ol] = '\0';
    int rc = pool_put(pl, reason, rl, roff);
    if (rc == 0)
        rc = pool_put(pl, origin, ol, ooff);
    if (rc != 0)
        return rc;
    if (type == NULL || scope == NULL || value == NULL || dur == NULL || scen == NULL ||
        cg__cs_duration_ms(dur, dl, &d->duration_ms) != 0)
        return 0;
    if (!same_ci(type, tl, "ban")) {
        d->kind = CG__CS_TYPE;
        return 0;
    }
    bool ip = same_ci(scope, sl, "ip"), range = same_ci(scope, sl, "range");
    if (!ip && !range) {
        d->kind = CG__CS_SCOPE;
        return 0;
    }
    if (parse_value(value, vl, range, &d->cidr))
        d->kind = CG__CS_BAN;
    return 0;
}

/* The list `key` of the answer: an array of objects, or null/absent. */
static int list(const cJSON *root, const char *key, size_t *budget, cg__cs_decision **out,
                size_t *n, size_t **offs, pool *pl, char *err, size_t errlen)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = NULL;
    *n = 0;
    *offs = NULL;
    if (arr == NULL || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr)) {
        snprintf(err, errlen, "\"%s\" is neither an array nor null", key);
        return CG_EINVAL;
    }
    size_t count = 0;
    for (const cJSON *it = arr->child; it != NULL; it = it->next) {
        if (!cJSON_IsObject(it)) {
            snprintf(err, errlen, "\"%s\"[%zu] is not an object", key, count);
            return CG_EINVAL;
        }
        if (++count > *budget) {
            snprintf(err, errlen, "more than %u decisions in one answer", CG_CS_DECISIONS_MAX);
            return CG_ERANGE;
        }
    }
    *budget -= count;
    if (count == 0)
        return 0;
    *out = calloc(count, sizeof **out);
    *offs = calloc(count * 2, sizeof **offs);
    if (*out == NULL || *offs == NULL) {
        snprintf(err, errlen, "out of memory");
        return CG_ENOMEM;
    }
    for (const cJSON *it = arr->child; it != NULL; it = it->next, (*n)++)
        if (one(it, &(*out)[*n], pl, &(*offs)[2 * *n], &(*offs)[2 * *n + 1]) != 0) {
            snprintf(err, errlen, "out of memory");
            return CG_ENOMEM;
        }
    return 0;
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
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (root == NULL) {
        snprintf(err, errlen, "not JSON (at byte %zu)",
                 end != NULL && end >= text ? (size_t)(end - text) : (size_t)0);
        return CG_EINVAL;
    }
    while (end != NULL && (size_t)(end - text) < len &&
           (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    int rc = 0;
    size_t budget = CG_CS_DECISIONS_MAX, *oa = NULL, *od = NULL;
    pool pl = {0};
    if (end == NULL || (size_t)(end - text) != len) {
        snprintf(err, errlen, "text after the JSON value");
        rc = CG_EINVAL;
    } else if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "the answer is not a JSON object");
        rc = CG_EINVAL;
    }
    if (rc == 0)
        rc = list(root, "deleted", &budget, &out->deleted, &out->ndeleted, &od, &pl, err, errlen);
    if (rc == 0)
        rc = list(root, "new", &budget, &out->added, &out->nadded, &oa, &pl, err, errlen);
    cJSON_Delete(root);
    if (rc == 0) {
        out->pool = pl.p;
        fix_texts(out->added, out->nadded, oa, pl.p);
        fix_texts(out->deleted, out->ndeleted, od, pl.p);
    } else {
        free(pl.p);
        cg__cs_answer_free(out);
    }
    free(oa);
    free(od);
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
