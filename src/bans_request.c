/* bans_request.c — the rules of a ban apart from the table (bans.h): origin
 * names, RFC 3339 times, reasons, the body of POST /bans, and whether a ban
 * would cover a never_ban address. No state, no locks: any thread, and the
 * request parser can be fuzzed on its own.
 */
#include "bans.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "condgate/common.h"
#include "diag.h"

static const char *const origin_names[CG__BAN_ORIGINS] = {"admin", "auto", "crowdsec"};

/* cg__ban_origin_name: see bans.h. */
const char *cg__ban_origin_name(cg__ban_origin o)
{
    return (unsigned)o < CG__BAN_ORIGINS ? origin_names[o] : "?";
}

/* cg__ban_origin_parse: see bans.h. */
int cg__ban_origin_parse(const char *s)
{
    for (int i = 0; i < CG__BAN_ORIGINS; i++)
        if (strcmp(s, origin_names[i]) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------------------
 * Times: proleptic Gregorian calendar, years 0001 to 9999, counted in days
 * from 0001-01-01 (no timegm: Windows has none).
 */

#define DAY_S 86400

static bool is_leap(int64_t y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

/* Days from 0001-01-01 to the first of January of year y (y >= 1). */
static int64_t days_before_year(int64_t y)
{
    int64_t p = y - 1;
    return p * 365 + p / 4 - p / 100 + p / 400;
}

/* Days of the year before the first of month m (1..12). */
static int64_t days_before_month(int64_t y, int m)
{
    static const int16_t cum[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    return cum[m - 1] + (m > 2 && is_leap(y));
}

static int days_in_month(int64_t y, int m)
{
    static const int8_t dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return dim[m - 1] + (m == 2 && is_leap(y));
}

static int64_t epoch_days(void)
{
    return days_before_year(1970);
}

/* cg__ban_time_format: see bans.h. Times before 0001 or after 9999 are
 * written as the first or last second of that range. */
char *cg__ban_time_format(int64_t t, char *buf, size_t len)
{
    int64_t lo = -epoch_days() * DAY_S;
    int64_t hi = (days_before_year(10000) - epoch_days()) * DAY_S - 1;
    t = t < lo ? lo : t > hi ? hi : t;
    int64_t d = (t - lo) / DAY_S; /* days since 0001-01-01 */
    int64_t s = (t - lo) % DAY_S;
    int64_t y = d * 400 / 146097 + 1;
    while (y > 1 && days_before_year(y) > d)
        y--;
    while (days_before_year(y + 1) <= d)
        y++;
    int64_t doy = d - days_before_year(y);
    int m = 1;
    while (m < 12 && days_before_month(y, m + 1) <= doy)
        m++;
    int64_t day = doy - days_before_month(y, m) + 1;
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, m, (int)day, (int)(s / 3600),
             (int)(s / 60 % 60), (int)(s % 60));
    return buf;
}

/* digits: the decimal value of s[0..n), or -1 unless all are digits. */
static int64_t digits(const char *s, int n)
{
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* cg__ban_time_parse: see bans.h. Years 0001 to 9999; no second 60. */
int cg__ban_time_parse(const char *s, int64_t *t)
{
    if (strlen(s) != CG_BAN_TIME_STRLEN - 1 || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
        s[13] != ':' || s[16] != ':' || s[19] != 'Z')
        return CG_EINVAL;
    int64_t y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    int64_t h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 ||
        se > 59)
        return CG_EINVAL;
    if (d > days_in_month(y, (int)mo))
        return CG_EINVAL;
    int64_t days = days_before_year(y) + days_before_month(y, (int)mo) + d - 1 - epoch_days();
    *t = days * DAY_S + h * 3600 + mi * 60 + se;
    return 0;
}

/* ------------------------------------------------------------------------
 * Reasons
 */

/* cg__ban_reason_ok: see bans.h. */
bool cg__ban_reason_ok(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    if (len > CG_BAN_REASON_MAX)
        return false;
    for (size_t i = 0; i < len;) {
        if (u[i] < 0x80) {
            if (u[i] < 0x20 || u[i] == 0x7f)
                return false;
            i++;
            continue;
        }
        size_t n = cg__utf8_seq(u + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* cg__ban_printable: see bans.h. */
char *cg__ban_printable(const char *s, char *buf, size_t len)
{
    size_t i = 0;
    for (; s[i] && i < 40 && i + 1 < len; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (s[i] && i + 4 < len) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    if (len > 0)
        buf[i < len ? i : len - 1] = '\0';
    return buf;
}

/* ------------------------------------------------------------------------
 * POST /bans bodies
 */

#define TTL_MSG "ttl_s must be an integer from 1 to 31536000"

/* What one element parse needs to say where it failed. */
typedef struct req_ctx {
    char prefix[32]; /* "bans[3]: " or "" */
    char *err;
    size_t errlen;
} req_ctx;

static int req_fail(const req_ctx *x, const char *msg)
{
    snprintf(x->err, x->errlen, "%s%s", x->prefix, msg);
    return CG_EINVAL;
}

static int req_cidr(const req_ctx *x, const cJSON *v, cg_cidr *out)
{
    if (!cJSON_IsString(v))
        return req_fail(x, "cidr must be a string");
    char why[256];
    if (cg_cidr_parse(v->valuestring, strlen(v->valuestring), out, why, sizeof why) != 0) {
        snprintf(x->err, x->errlen, "%scidr: %s", x->prefix, why);
        return CG_EINVAL;
    }
    return 0;
}

static int req_ttl(const req_ctx *x, const cJSON *v, uint32_t *out)
{
    if (!cJSON_IsNumber(v))
        return req_fail(x, TTL_MSG);
    double d = v->valuedouble;
    if (!(d >= 1 && d <= CG_BAN_TTL_MAX_S) || (double)(uint32_t)d != d)
        return req_fail(x, TTL_MSG);
    *out = (uint32_t)d;
    return 0;
}

static int req_reason(const req_ctx *x, const cJSON *v, char *out)
{
    if (!cJSON_IsString(v))
        return req_fail(x, "reason must be a string");
    size_t l = strlen(v->valuestring);
    if (!cg__ban_reason_ok(v->valuestring, l))
        return req_fail(x, "reason must be at most 128 bytes of UTF-8 without control characters");
    memcpy(out, v->valuestring, l + 1);
    return 0;
}

/* req_one: one ban object into *out. Walks the members itself: cJSON keeps
 * a key given twice, and that is an error here. */
static int req_one(const req_ctx *x, const cJSON *o, cg__ban_request *out)
{
    static const char *const keys[3] = {"cidr", "ttl_s", "reason"};
    if (!cJSON_IsObject(o))
        return req_fail(x, "a ban must be a JSON object");
    unsigned seen = 0;
    memset(out, 0, sizeof *out);
    for (const cJSON *m = o->child; m != NULL; m = m->next) {
        int k = 0;
        while (k < 3 && strcmp(m->string, keys[k]) != 0)
            k++;
        char msg[96], key[48];
        if (k == 3) {
            snprintf(msg, sizeof msg, "unknown key \"%s\" (cidr, ttl_s, reason)",
                     cg__ban_printable(m->string, key, sizeof key));
            return req_fail(x, msg);
        }
        if (seen & (1u << k)) {
            snprintf(msg, sizeof msg, "key \"%s\" given twice", keys[k]);
            return req_fail(x, msg);
        }
        seen |= 1u << k;
        int rc = k == 0   ? req_cidr(x, m, &out->cidr)
                 : k == 1 ? req_ttl(x, m, &out->ttl_s)
                          : req_reason(x, m, out->reason);
        if (rc != 0)
            return rc;
    }
    if (!(seen & 1u))
        return req_fail(x, "missing \"cidr\"");
    if (!(seen & 2u))
        return req_fail(x, "missing \"ttl_s\"");
    return 0;
}

/* req_elements: every element of the parsed body into a new array. */
static int req_elements(const cJSON *root, cg__ban_request **out, size_t *n, char *err,
                        size_t errlen)
{
    bool array = cJSON_IsArray(root);
    size_t cnt = 1;
    if (array) {
        cnt = 0;
        for (const cJSON *c = root->child; c != NULL && cnt <= CG_BAN_REQUEST_MAX; c = c->next)
            cnt++;
        if (cnt == 0) {
            snprintf(err, errlen, "an empty array holds no ban");
            return CG_EINVAL;
        }
        if (cnt > CG_BAN_REQUEST_MAX) {
            snprintf(err, errlen, "at most %d bans in one request", CG_BAN_REQUEST_MAX);
            return CG_ERANGE;
        }
    } else if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "the body must be a ban object or an array of them");
        return CG_EINVAL;
    }
    cg__ban_request *v = calloc(cnt, sizeof *v);
    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return CG_ENOMEM;
    }
    req_ctx x = {.err = err, .errlen = errlen};
    size_t i = 0;
    for (const cJSON *c = array ? root->child : root; i < cnt; c = c->next, i++) {
        if (array)
            snprintf(x.prefix, sizeof x.prefix, "bans[%zu]: ", i);
        int rc = req_one(&x, c, &v[i]);
        if (rc != 0) {
            free(v);
            return rc;
        }
    }
    *out = v;
    *n = cnt;
    return 0;
}

/* cg__ban_request_parse: see bans.h. Duplicate prefixes in one array are
 * all returned, in order: added one after the other, the last one wins. */
int cg__ban_request_parse(const char *body, size_t len, cg__ban_request **out, size_t *n, char *err,
                          size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (len > CG_BAN_BODY_MAX) {
        snprintf(err, errlen, "the body is larger than %u bytes", CG_BAN_BODY_MAX);
        return CG_ERANGE;
    }
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i == len) {
        snprintf(err, errlen, "empty body: expected a ban object or an array of them");
        return CG_EINVAL;
    }
    if (memchr(body, '\0', len) != NULL) {
        snprintf(err, errlen, "bad JSON: a NUL byte in the body");
        return CG_EINVAL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (root != NULL) {
        while (end < body + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
            end++;
    }
    if (root == NULL || end != body + len) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        snprintf(err, errlen, "bad JSON at byte %zu", at);
        cJSON_Delete(root);
        return CG_EINVAL;
    }
    int rc = req_elements(root, out, n, err, errlen);
    cJSON_Delete(root);
    return rc;
}

/* ------------------------------------------------------------------------
 * never_ban
 */

/* contains: whether prefix p holds every address of prefix q. */
static bool contains(const cg_cidr *p, const cg_cidr *q)
{
    return p->family == q->family && p->len <= q->len && cg_cidr_contains(p, q);
}

/* cg__bans_overlap: see bans.h. Walks the set's entries: never_ban holds at
 * most CG_CONFIG_MAX_NEVER_BAN of them, and this runs once per request. */
bool cg__bans_overlap(const cg_ruleset *never, const cg_cidr *c, cg_cidr *hit)
{
    cg_cidr k = *c;
    if (k.family == 6 && k.len >= 96) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(k.addr, mapped, 12) == 0) {
            memmove(k.addr, k.addr + 12, 4);
            memset(k.addr + 4, 0, 12);
            k.family = 4;
            k.len = (uint8_t)(k.len - 96);
        }
    }
    cg_rule_info info;
    for (cg_rule_id id = 0; cg_ruleset_rule(never, id, &info) == 0; id++) {
        if (info.action != CG_ALLOW)
            continue;
        if (contains(&k, &info.cidr) || contains(&info.cidr, &k)) {
            if (hit)
                *hit = info.cidr;
            return true;
        }
    }
    return false;
}
