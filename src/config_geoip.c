/* config_geoip.c — the GeoIP keys of a [rules] section (SPEC §16).
 *
 * The keys are only recorded while the INI file is read. At the end, each
 * database of the set is read once (geoip.c); the networks of the selected
 * countries and ASNs are collected per selector, then added to the set one
 * selector at a time, so that the set's source interning (which remembers
 * the last file used) stays fast for a million networks. Each network's
 * source is "DB:CC" or "DB:AS64501", line 0.
 */
#include "config_geoip.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "geoip.h"

/* A country or an ASN asked for. */
typedef struct selector {
    bool is_asn;
    uint32_t asn;
    char cc[3];
    cg_action action;
    uint32_t line;   /* its key's line */
    size_t networks; /* found in all the set's databases */
} selector;

/* A geoip_db or geoip_csv key. */
typedef struct geo_db {
    char *path; /* resolved */
    bool csv;
    uint32_t line;
} geo_db;

struct cg__geo_build {
    geo_db dbs[CG_GEO_MAX_DBS];
    size_t ndbs;
    selector *sel;
    size_t nsel, capsel;
    size_t nasns;
    int16_t country[26 * 26]; /* selector of each code, -1 when none */
};

/* The networks of one selector found in one database. */
typedef struct netvec {
    cg_cidr *v;
    size_t n, cap;
} netvec;

/* An ASN selector in the sorted index. */
typedef struct asn_ix {
    uint32_t asn;
    uint32_t sel;
} asn_ix;

/* What the readers' callback fills in. */
typedef struct collect {
    const cg__geo_build *gb;
    const asn_ix *asns; /* ASN selectors, sorted by ASN */
    netvec *vec;        /* one per selector */
    size_t total;
} collect;

static int cc_index(const char *cc)
{
    return (cc[0] - 'A') * 26 + (cc[1] - 'A');
}

static bool is_allow(const char *key)
{
    return strncmp(key, "allow_", 6) == 0;
}

/* ---- keys ------------------------------------------------------------- */

static selector *new_selector(const cg__keyctx *kc, cg__geo_build *gb, uint32_t line)
{
    if (gb->nsel == gb->capsel) {
        size_t cap = gb->capsel ? gb->capsel * 2 : 16;
        selector *s = realloc(gb->sel, cap * sizeof *s);
        if (!s) {
            cg__fail(kc->d, CG_ENOMEM, kc->path, line, "out of memory");
            return NULL;
        }
        gb->sel = s;
        gb->capsel = cap;
    }
    selector *s = &gb->sel[gb->nsel++];
    memset(s, 0, sizeof *s);
    s->line = line;
    return s;
}

/* The same code or ASN given with the other action. */
static int both(const cg__keyctx *kc, const char *key, const char *what, const selector *s,
                uint32_t line)
{
    return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                    "'%s' in %s: %s is also %s (line %u); a country or ASN is either allowed "
                    "or denied",
                    key, kc->section, what, s->action == CG_ALLOW ? "allowed" : "denied",
                    (unsigned)s->line);
}

static int country_item(const cg__keyctx *kc, const char *key, const char *item, size_t len,
                        uint32_t line, void *arg)
{
    cg__geo_build *gb = arg;
    char q[CG__QUOTE_MAX], cc[3];
    cg_action action = is_allow(key) ? CG_ALLOW : CG_DENY;
    if (!cg__geo_country(item, len, cc))
        return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                        "'%s' in %s: bad country code %s; expected two letters such as DE", key,
                        kc->section, cg__quote(q, sizeof q, item, len, CG__QUOTE_EXCERPT));
    int16_t *slot = &gb->country[cc_index(cc)];
    if (*slot >= 0)
        return gb->sel[*slot].action == action ? 0 : both(kc, key, cc, &gb->sel[*slot], line);
    selector *s = new_selector(kc, gb, line);
    if (!s)
        return CG_ENOMEM;
    memcpy(s->cc, cc, 3);
    s->action = action;
    *slot = (int16_t)(gb->nsel - 1);
    return 0;
}

static int asn_item(const cg__keyctx *kc, const char *key, const char *item, size_t len,
                    uint32_t line, void *arg)
{
    cg__geo_build *gb = arg;
    char q[CG__QUOTE_MAX], what[16];
    cg_action action = is_allow(key) ? CG_ALLOW : CG_DENY;
    const char *d = item;
    size_t n = len;
    uint64_t v = 0;
    if (n > 2 && (d[0] == 'A' || d[0] == 'a') && (d[1] == 'S' || d[1] == 's')) {
        d += 2;
        n -= 2;
    }
    if (!cg__parse_decimal(d, n, &v) || v == 0 || v > UINT32_MAX)
        return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                        "'%s' in %s: bad ASN %s; expected a number from 1 to 4294967295, "
                        "optionally after AS (64500 or AS64500)",
                        key, kc->section, cg__quote(q, sizeof q, item, len, CG__QUOTE_EXCERPT));
    for (size_t i = 0; i < gb->nsel; i++) {
        const selector *s = &gb->sel[i];
        if (!s->is_asn || s->asn != v)
            continue;
        snprintf(what, sizeof what, "AS%u", (unsigned)v);
        return s->action == action ? 0 : both(kc, key, what, s, line);
    }
    if (gb->nasns == CG_GEO_MAX_ASNS)
        return cg__fail(kc->d, CG_ERANGE, kc->path, line, "'%s' in %s: more than %d ASNs", key,
                        kc->section, CG_GEO_MAX_ASNS);
    selector *s = new_selector(kc, gb, line);
    if (!s)
        return CG_ENOMEM;
    s->is_asn = true;
    s->asn = (uint32_t)v;
    s->action = action;
    gb->nasns++;
    return 0;
}

static int db_key(const cg__keyctx *kc, cg__geo_build *gb, const char *key, const char *value,
                  uint32_t line)
{
    bool csv = strcmp(key, "geoip_csv") == 0;
#if !defined(CG_HAVE_GEOIP)
    if (!csv)
        return cg__fail(kc->d, CG_ENOTSUP, kc->path, line,
                        "'%s' in %s needs libmaxminddb; this build has none (condgate -V)", key,
                        kc->section);
#endif
    if (gb->ndbs == CG_GEO_MAX_DBS)
        return cg__fail(kc->d, CG_ERANGE, kc->path, line, "'%s' in %s: more than %d databases", key,
                        kc->section, CG_GEO_MAX_DBS);
    char *path = cg__key_resolve(kc, value);
    if (!path)
        return cg__fail(kc->d, CG_ENOMEM, kc->path, line, "out of memory");
    if (strlen(path) >= CG_SOURCE_MAX - 16) {
        free(path);
        return cg__fail(kc->d, CG_ERANGE, kc->path, line, "'%s' in %s: path longer than %d bytes",
                        key, kc->section, CG_SOURCE_MAX - 17);
    }
    gb->dbs[gb->ndbs++] = (geo_db){path, csv, line};
    return 0;
}

/* cg__geo_key: see config_geoip.h. The loading thread. */
int cg__geo_key(const cg__keyctx *kc, cg__geo_build **gb, const char *key, const char *value,
                uint32_t line)
{
    static const char *const keys[] = {"geoip_db",     "geoip_csv", "allow_country",
                                       "deny_country", "allow_asn", "deny_asn"};
    size_t k = 0;
    while (k < 6 && strcmp(keys[k], key) != 0)
        k++;
    if (k == 6)
        return CG_ENOENT;
    if (!*gb) {
        *gb = calloc(1, sizeof **gb);
        if (!*gb)
            return cg__fail(kc->d, CG_ENOMEM, kc->path, line, "out of memory");
        memset((*gb)->country, 0xff, sizeof(*gb)->country);
    }
    if (k < 2)
        return db_key(kc, *gb, key, value, line);
    return cg__key_each_item(kc, key, value, line, k < 4 ? country_item : asn_item, *gb);
}

/* cg__geo_free: see config_geoip.h. */
void cg__geo_free(cg__geo_build *gb)
{
    if (!gb)
        return;
    for (size_t i = 0; i < gb->ndbs; i++)
        free(gb->dbs[i].path);
    free(gb->sel);
    free(gb);
}

/* ---- the end of the file ------------------------------------------------ */

static int by_asn(const void *a, const void *b)
{
    uint32_t x = ((const asn_ix *)a)->asn, y = ((const asn_ix *)b)->asn;
    return x < y ? -1 : x > y;
}

static int push(collect *c, size_t sel, const cg_cidr *net)
{
    netvec *v = &c->vec[sel];
    if (c->total >= CG_RULESET_MAX_ENTRIES)
        return CG_ERANGE;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        cg_cidr *n = realloc(v->v, cap * sizeof *n);
        if (!n)
            return CG_ENOMEM;
        v->v = n;
        v->cap = cap;
    }
    v->v[v->n++] = *net;
    c->total++;
    return 0;
}

/* The readers' callback: keep a network whose country or ASN is selected. */
static int on_network(void *arg, const cg_cidr *net, const char *cc, uint32_t asn)
{
    collect *c = arg;
    const cg__geo_build *gb = c->gb;
    int rc = 0;
    if (cc[0] && gb->country[cc_index(cc)] >= 0)
        rc = push(c, (size_t)gb->country[cc_index(cc)], net);
    if (!rc && asn && gb->nasns) {
        size_t lo = 0, hi = gb->nasns;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            uint32_t m = c->asns[mid].asn;
            if (m == asn)
                return push(c, c->asns[mid].sel, net);
            if (m < asn)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    return rc;
}

/* Read one database into c. */
static int read_db(const cg__keyctx *kc, const geo_db *db, collect *c)
{
    char q[CG_SOURCE_MAX + 64], why[CG__REASON_MAX] = "";
    const char *key = db->csv ? "geoip_csv" : "geoip_db";
    const char *qp = cg__quote(q, sizeof q, db->path, strlen(db->path), CG__QUOTE_EXCERPT);
    if (!db->csv) {
        int rc = cg__geoip_db(db->path, on_network, c, why, sizeof why);
        if (rc == CG_ERANGE && why[0])
            return cg__fail(kc->d, rc, kc->path, db->line, "%s: %s is %s", key, qp, why);
        if (rc == CG_ERANGE)
            return cg__fail(kc->d, rc, kc->path, db->line, "%s: %s: more than %u networks selected",
                            key, qp, (unsigned)CG_RULESET_MAX_ENTRIES);
        if (rc == CG_ENOMEM)
            return cg__fail(kc->d, rc, kc->path, db->line, "out of memory");
        if (rc)
            return cg__fail(kc->d, rc, kc->path, db->line, "%s: %s: %s", key, qp, why);
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    int sys = 0;
    int rc = cg__read_file(db->path, CG_CONFIG_MAX_LIST_BYTES, &text, &len, &sys);
    if (rc == CG_ERANGE)
        return cg__fail(kc->d, rc, kc->path, db->line, "%s: %s is larger than %u MiB", key, qp,
                        (unsigned)(CG_CONFIG_MAX_LIST_BYTES >> 20));
    if (rc == CG_ENOMEM)
        return cg__fail(kc->d, rc, kc->path, db->line, "out of memory");
    if (rc)
        return cg__fail(kc->d, rc, kc->path, db->line, "%s: cannot read %s: %s", key, qp,
                        cg__errno_text(sys));
    rc = cg__geoip_csv(db->path, text, len, on_network, c, kc->d);
    free(text);
    return rc;
}

/* The source of a selector's networks: "DB:CC" or "DB:AS64501". */
static void source_name(char *buf, size_t len, const char *path, const selector *s)
{
    if (s->is_asn)
        snprintf(buf, len, "%s:AS%u", path, (unsigned)s->asn);
    else
        snprintf(buf, len, "%s:%s", path, s->cc);
}

/* Append to a bounded summary text. */
static void say(char *buf, size_t len, const char *fmt, ...) CG__PRINTF(3, 4);

static void say(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used + 1 >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

#define SUMMARY_MAX 1024
#define SUMMARY_SHOWN 6 /* selectors named per database */

/* Add c's networks to rs, one selector at a time, and describe them. */
static int add_networks(const cg__keyctx *kc, cg__geo_build *gb, const geo_db *db, collect *c,
                        cg_ruleset *rs, char *sum)
{
    const char *base = db->path;
    for (const char *p = db->path; *p; p++)
        if (*p == '/' || *p == '\\')
            base = p + 1;
    say(sum, SUMMARY_MAX, "%s%s:", sum[0] ? "; " : "", base);
    size_t shown = 0, more = 0, more_nets = 0;
    for (size_t i = 0; i < gb->nsel; i++) {
        const selector *s = &gb->sel[i];
        netvec *v = &c->vec[i];
        char src[CG_SOURCE_MAX];
        source_name(src, sizeof src, db->path, s);
        cg_source source = {src, 0};
        for (size_t k = 0; k < v->n; k++) {
            int rc = cg_ruleset_add(rs, &v->v[k], s->action, &source, NULL);
            if (rc == CG_ERANGE)
                return cg__fail_set_full(kc->d, kc->path, db->line, cg_ruleset_name(rs));
            if (rc)
                return cg__fail(kc->d, rc, kc->path, db->line, "out of memory");
        }
        gb->sel[i].networks += v->n;
        if (v->n && shown < SUMMARY_SHOWN) {
            say(sum, SUMMARY_MAX, "%s %s %s (%zu network%s)", shown ? "," : "",
                cg_action_name(s->action), strrchr(src, ':') + 1, v->n, v->n == 1 ? "" : "s");
            shown++;
        } else if (v->n) {
            more++;
            more_nets += v->n;
        }
        v->n = 0;
    }
    if (more)
        say(sum, SUMMARY_MAX, " and %zu more (%zu networks)", more, more_nets);
    if (!shown)
        say(sum, SUMMARY_MAX, " nothing selected");
    return 0;
}

static int geo_warn(const cg__keyctx *kc, cg_config *cfg, uint32_t line, const char *msg,
                    const char *set)
{
    char buf[CG_SOURCE_MAX + 256];
    snprintf(buf, sizeof buf,
             "%s:%u: warning: %s matches no network in the databases of rule "
             "set '%s'",
             kc->path, (unsigned)line, msg, set);
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    char **w = realloc(cfg->warnings, (cfg->nwarnings + 1) * sizeof *w);
    if (!w)
        return cg__fail(kc->d, CG_ENOMEM, kc->path, line, "out of memory");
    cfg->warnings = w;
    w[cfg->nwarnings] = malloc(strlen(buf) + 1);
    if (!w[cfg->nwarnings])
        return cg__fail(kc->d, CG_ENOMEM, kc->path, line, "out of memory");
    strcpy(w[cfg->nwarnings++], buf);
    return 0;
}

/* Warnings for the selectors that matched nothing. */
static int warn_unmatched(const cg__keyctx *kc, const cg__geo_build *gb, cg_config *cfg,
                          const cg_ruleset *rs)
{
    for (size_t i = 0; i < gb->nsel; i++) {
        const selector *s = &gb->sel[i];
        char what[48];
        if (s->networks)
            continue;
        if (s->is_asn)
            snprintf(what, sizeof what, "%s_asn AS%u", s->action == CG_ALLOW ? "allow" : "deny",
                     (unsigned)s->asn);
        else
            snprintf(what, sizeof what, "%s_country %s", s->action == CG_ALLOW ? "allow" : "deny",
                     s->cc);
        int rc = geo_warn(kc, cfg, s->line, what, cg_ruleset_name(rs));
        if (rc)
            return rc;
    }
    return 0;
}

/* cg__geo_finish: see config_geoip.h. The loading thread. */
int cg__geo_finish(const cg__keyctx *kc, cg__geo_build *gb, cg_ruleset *rs, cg_config *cfg,
                   uint32_t set_line, char **summary)
{
    *summary = NULL;
    if (!gb)
        return 0;
    if (gb->ndbs == 0)
        return cg__fail(kc->d, CG_EINVAL, kc->path, gb->nsel ? gb->sel[0].line : set_line,
                        "rule set '%s' selects countries or ASNs but names no database; add "
                        "geoip_db = FILE or geoip_csv = FILE",
                        cg_ruleset_name(rs));
    char *sum = calloc(1, SUMMARY_MAX);
    netvec *vec = calloc(gb->nsel ? gb->nsel : 1, sizeof *vec);
    asn_ix *asns = malloc((gb->nasns ? gb->nasns : 1) * sizeof *asns);
    int rc = 0;
    if (!sum || !vec || !asns)
        rc = cg__fail(kc->d, CG_ENOMEM, kc->path, set_line, "out of memory");
    for (size_t i = 0, k = 0; !rc && i < gb->nsel; i++)
        if (gb->sel[i].is_asn)
            asns[k++] = (asn_ix){gb->sel[i].asn, (uint32_t)i};
    if (!rc && gb->nasns > 1)
        qsort(asns, gb->nasns, sizeof *asns, by_asn);
    collect c = {gb, asns, vec, 0};
    for (size_t d = 0; !rc && d < gb->ndbs; d++) {
        rc = read_db(kc, &gb->dbs[d], &c);
        if (!rc)
            rc = add_networks(kc, gb, &gb->dbs[d], &c, rs, sum);
    }
    if (!rc)
        rc = warn_unmatched(kc, gb, cfg, rs);
    for (size_t i = 0; vec && i < gb->nsel; i++)
        free(vec[i].v);
    free(vec);
    free(asns);
    if (rc)
        free(sum);
    else
        *summary = sum;
    return rc;
}
