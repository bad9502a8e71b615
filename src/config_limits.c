/* config_limits.c — the configuration keys of bans, per-source limits,
 * shadow mode and the reload preview (SPEC §11, §12, §14), and the value
 * syntax (numbers, lists, paths) config.c shares with them.
 *
 * Each key is checked on its own line as it is read; the rules between
 * keys (ban_after needs rate_per_source, ban_ttl_max_s >= ban_ttl_s) wait
 * for the end of the file, where config.c calls them.
 */
/* System headers first: mingw's <stdlib.h> includes <limits.h>, which
 * src/limits.h shadows on this file's include path; it must not meet
 * condgate/config.h half-read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_limits.h"
#include "sys.h"

#define SECONDS_PER_DAY (CG_CONFIG_MAX_WINDOW_MS / 1000u)
#define RATE_SYNTAX "N/s, N/Ns, N/m or N/Nm, such as 20/s, 100/10s or 5/m"

static int oom(const cg__keyctx *kc, uint32_t line)
{
    return cg__fail(kc->d, CG_ENOMEM, kc->path, line, "out of memory");
}

static const char *excerpt(char *q, size_t qlen, const char *s)
{
    return cg__quote(q, qlen, s, strlen(s), CG__QUOTE_EXCERPT);
}

/* ------------------------------------------------------------------------
 * Shared value syntax
 */

/* cg__parse_decimal: see config_limits.h. Any thread. */
bool cg__parse_decimal(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 15 || (s[0] == '0' && len > 1))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* cg__key_number: see config_limits.h. The loading thread. */
int cg__key_number(const cg__keyctx *kc, const char *key, const char *value, uint32_t line,
                   uint64_t min, uint64_t max, uint64_t *out)
{
    char q[CG__QUOTE_MAX];
    if (!cg__parse_decimal(value, strlen(value), out))
        return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                        "bad value %s for '%s' in %s: expected a whole number from %llu to %llu",
                        excerpt(q, sizeof q, value), key, kc->section, (unsigned long long)min,
                        (unsigned long long)max);
    if (*out < min || *out > max)
        return cg__fail(kc->d, CG_ERANGE, kc->path, line,
                        "'%s' in %s must be from %llu to %llu, not %llu", key, kc->section,
                        (unsigned long long)min, (unsigned long long)max, (unsigned long long)*out);
    return 0;
}

/* cg__key_each_item: see config_limits.h. The loading thread. */
int cg__key_each_item(const cg__keyctx *kc, const char *key, const char *value, uint32_t line,
                      cg__item_fn fn, void *arg)
{
    const char *p = value;
    for (unsigned n = 1;; n++) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        const char *b = p;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (b == e)
            return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                            "empty item %u in the list of '%s' in %s; remove the extra ','", n, key,
                            kc->section);
        int rc = fn(kc, key, b, (size_t)(e - b), line, arg);
        if (rc)
            return rc;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

/* cg__key_resolve: see config_limits.h. Any thread. */
char *cg__key_resolve(const cg__keyctx *kc, const char *rel)
{
    size_t dl = cg__sys_path_is_absolute(rel) ? 0 : kc->dirlen;
    size_t rl = strlen(rel);
    char *p = malloc(dl + rl + 1);
    if (p) {
        memcpy(p, kc->path, dl);
        memcpy(p + dl, rel, rl + 1);
    }
    return p;
}

/* ------------------------------------------------------------------------
 * Names and rates
 */

/* cg_listener_mode_name: see config.h. */
const char *cg_listener_mode_name(cg_listener_mode m)
{
    switch (m) {
    case CG_MODE_ENFORCE:
        return "enforce";
    case CG_MODE_SHADOW:
        return "shadow";
    }
    return "unknown";
}

/* cg_rate_parse: see config.h. `/Nm` (N minutes) is accepted besides the
 * forms SPEC §12 names. Any thread. */
int cg_rate_parse(const char *s, cg_rate *out, char *err, size_t errlen)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    uint64_t count, n = 1, unit;
    if (err && errlen)
        err[0] = '\0';
    if (!slash || !cg__parse_decimal(s, (size_t)(slash - s), &count))
        goto syntax;
    const char *w = slash + 1;
    size_t wl = strlen(w);
    if (wl == 0)
        goto syntax;
    if (w[wl - 1] == 's')
        unit = 1;
    else if (w[wl - 1] == 'm')
        unit = 60;
    else
        goto syntax;
    if (wl > 1 && !cg__parse_decimal(w, wl - 1, &n))
        goto syntax;
    if (count < 1 || count > CG_CONFIG_MAX_RATE) {
        if (err && errlen)
            snprintf(err, errlen, "the count must be from 1 to %u, not %llu", CG_CONFIG_MAX_RATE,
                     (unsigned long long)count);
        return CG_ERANGE;
    }
    if (n < 1 || n * unit > SECONDS_PER_DAY) {
        if (err && errlen)
            snprintf(err, errlen,
                     "the window must be from 1 second to one day (%us or %um), not %.*s",
                     SECONDS_PER_DAY, SECONDS_PER_DAY / 60u, (int)(wl > 16 ? 16 : wl), w);
        return CG_ERANGE;
    }
    out->count = (uint32_t)count;
    out->window_ms = (uint32_t)(n * unit * 1000u);
    return 0;

syntax:
    if (err && errlen)
        snprintf(err, errlen, "expected %s", RATE_SYNTAX);
    return CG_EINVAL;
}

/* ------------------------------------------------------------------------
 * [gateway]
 */

/* One never_ban item into the set `arg`. */
static int never_ban_item(const cg__keyctx *kc, const char *key, const char *item, size_t len,
                          uint32_t line, void *arg)
{
    void **a = arg;
    cg_ruleset *rs = a[0];
    cg__never_ban_build *nb = a[1];
    char why[CG__REASON_MAX] = "";
    cg_source src = {kc->path, line};

    if (len == 4 && memcmp(item, "none", 4) == 0)
        return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                        "'never_ban = none' in %s stands alone; it cannot be combined with "
                        "addresses",
                        kc->section);
    if (nb->entries == CG_CONFIG_MAX_NEVER_BAN)
        return cg__fail(kc->d, CG_ERANGE, kc->path, line,
                        "'never_ban' in %s: more than %d entries; cover them with shorter "
                        "prefixes",
                        kc->section, CG_CONFIG_MAX_NEVER_BAN);
    int rc = cg_ruleset_add_text(rs, item, len, CG_ALLOW, &src, NULL, why, sizeof why);
    if (rc == CG_EINVAL)
        return cg__fail(kc->d, rc, kc->path, line, "%s: %s", key, why);
    if (rc)
        return oom(kc, line);
    nb->entries++;
    return 0;
}

/* `never_ban = CIDR, ...` (repeats) or `never_ban = none`. */
static int never_ban_key(const cg__keyctx *kc, cg_config *cfg, cg__never_ban_build *nb,
                         const char *key, const char *value, uint32_t line)
{
    bool none = strcmp(value, "none") == 0;
    if (nb->none_line || (none && nb->entries))
        return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                        "'never_ban = none' in %s stands alone; it cannot be combined with "
                        "addresses",
                        kc->section);
    if (!cfg->never_ban && cg_ruleset_new("never_ban", CG_DENY, &cfg->never_ban))
        return oom(kc, line);
    if (none) {
        nb->none_line = line;
        return 0;
    }
    void *arg[2] = {cfg->never_ban, nb};
    return cg__key_each_item(kc, key, value, line, never_ban_item, arg);
}

/* `state_file = FILE`, relative to the INI file; it need not exist yet. */
static int state_file_key(const cg__keyctx *kc, cg_config *cfg, const char *value, uint32_t line)
{
    char *path = cg__key_resolve(kc, value);
    if (!path)
        return oom(kc, line);
    if (strlen(path) >= CG_SOURCE_MAX) {
        free(path);
        return cg__fail(kc->d, CG_ERANGE, kc->path, line,
                        "'state_file' in %s: path longer than %d bytes", kc->section,
                        CG_SOURCE_MAX - 1);
    }
    free(cfg->state_file);
    cfg->state_file = path;
    cfg->state_file_line = line;
    return 0;
}

/* `takeover_socket = PATH | off`: a unix socket path, relative to the INI
 * file; it must fit a sockaddr_un. */
static int takeover_key(const cg__keyctx *kc, cg_config *cfg, const char *value, uint32_t line)
{
    free(cfg->takeover_socket);
    cfg->takeover_socket = NULL;
    if (strcmp(value, "off") == 0)
        return 0;
#if defined(_WIN32)
    return cg__fail(kc->d, CG_ENOTSUP, kc->path, line,
                    "'takeover_socket' in %s: takeovers are not supported on Windows",
                    kc->section);
#else
    char *path = cg__key_resolve(kc, value);
    if (!path)
        return oom(kc, line);
    if (strlen(path) >= CG_UNIX_PATH_MAX) {
        free(path);
        return cg__fail(kc->d, CG_ERANGE, kc->path, line,
                        "'takeover_socket' in %s: a unix socket path is at most %d bytes",
                        kc->section, CG_UNIX_PATH_MAX - 1);
    }
    cfg->takeover_socket = path;
    return 0;
#endif
}

/* cg__gateway_state_key: see config_limits.h. The loading thread. */
int cg__gateway_state_key(const cg__keyctx *kc, cg_config *cfg, cg__never_ban_build *nb,
                          const char *key, const char *value, uint32_t line)
{
    uint64_t v = 0;
    int rc;
    if (strcmp(key, "never_ban") == 0)
        return never_ban_key(kc, cfg, nb, key, value, line);
    if (strcmp(key, "state_file") == 0)
        return state_file_key(kc, cfg, value, line);
    if (strcmp(key, "takeover_socket") == 0)
        return takeover_key(kc, cfg, value, line);
    if (strcmp(key, "max_bans") == 0) {
        rc = cg__key_number(kc, key, value, line, 1, CG_CONFIG_MAX_BANS, &v);
        cfg->max_bans = rc ? cfg->max_bans : (uint32_t)v;
        return rc;
    }
    if (strcmp(key, "source_table_max") == 0) {
        rc = cg__key_number(kc, key, value, line, 1, CG_CONFIG_MAX_SOURCES, &v);
        cfg->source_table_max = rc ? cfg->source_table_max : (uint32_t)v;
        return rc;
    }
    if (strcmp(key, "preview_callers") == 0) {
        rc = cg__key_number(kc, key, value, line, 0, CG_CONFIG_MAX_PREVIEW, &v);
        cfg->preview_callers = rc ? cfg->preview_callers : (uint32_t)v;
        return rc;
    }
    return CG_ENOENT;
}

/* cg__gateway_state_finish: see config_limits.h. The loading thread. */
int cg__gateway_state_finish(const cg__keyctx *kc, cg_config *cfg, uint32_t line)
{
    if (!cfg->never_ban) {
        static const char *const loopback[] = {"127.0.0.1", "::1"};
        cg_source src = {"(default)", 0};
        char why[CG__REASON_MAX];
        if (cg_ruleset_new("never_ban", CG_DENY, &cfg->never_ban))
            return oom(kc, line);
        for (size_t i = 0; i < 2; i++)
            if (cg_ruleset_add_text(cfg->never_ban, loopback[i], strlen(loopback[i]), CG_ALLOW,
                                    &src, NULL, why, sizeof why))
                return oom(kc, line);
    }
    return cg_ruleset_freeze(cfg->never_ban) ? oom(kc, line) : 0;
}

/* ------------------------------------------------------------------------
 * [listener:NAME]
 */

/* `rate_per_source` / `ban_after`: a rate or off. */
static int rate_key(const cg__keyctx *kc, const char *key, const char *value, uint32_t line,
                    cg_rate *out)
{
    char q[CG__QUOTE_MAX], why[160];
    if (strcmp(value, "off") == 0) {
        out->count = 0;
        out->window_ms = 0;
        return 0;
    }
    int rc = cg_rate_parse(value, out, why, sizeof why);
    if (rc == CG_EINVAL)
        return cg__fail(kc->d, rc, kc->path, line, "bad value %s for '%s' in %s: %s, or off",
                        excerpt(q, sizeof q, value), key, kc->section, why);
    if (rc)
        return cg__fail(kc->d, rc, kc->path, line, "'%s' in %s: %s", key, kc->section, why);
    return 0;
}

/* One prefix length of `source_prefix`: arg points at {the index, the
 * two lengths}. */
static int prefix_item(const cg__keyctx *kc, const char *key, const char *item, size_t len,
                       uint32_t line, void *arg)
{
    char q[CG__QUOTE_MAX];
    unsigned *got = arg; /* got[0]: items so far; got[1], got[2]: the lengths */
    uint64_t v;
    unsigned max = got[0] == 0 ? 32 : 128;

    if (got[0] == 2)
        return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                        "'%s' in %s takes two prefix lengths, for IPv4 and for IPv6, such as "
                        "'32, 64'; not more",
                        key, kc->section);
    if (!cg__parse_decimal(item, len, &v))
        return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                        "bad prefix length %s for '%s' in %s: expected a whole number from 0 to "
                        "%u",
                        cg__quote(q, sizeof q, item, len, CG__QUOTE_EXCERPT), key, kc->section,
                        max);
    if (v > max)
        return cg__fail(kc->d, CG_ERANGE, kc->path, line,
                        "'%s' in %s: the %s prefix length must be from 0 to %u, not %llu", key,
                        kc->section, got[0] == 0 ? "IPv4" : "IPv6", max, (unsigned long long)v);
    got[1 + got[0]++] = (unsigned)v;
    return 0;
}

/* `source_prefix = V4, V6`. */
static int source_prefix_key(const cg__keyctx *kc, cg_source_limits *s, const char *key,
                             const char *value, uint32_t line)
{
    unsigned got[3] = {0, 0, 0};
    int rc = cg__key_each_item(kc, key, value, line, prefix_item, got);
    if (rc)
        return rc;
    if (got[0] != 2)
        return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                        "'%s' in %s takes two prefix lengths, for IPv4 and for IPv6, such as "
                        "'32, 64'",
                        key, kc->section);
    s->prefix4 = (uint8_t)got[1];
    s->prefix6 = (uint8_t)got[2];
    return 0;
}

/* `mode = enforce | shadow`. */
static int mode_key(const cg__keyctx *kc, cg_listener_mode *out, const char *value, uint32_t line)
{
    char q[CG__QUOTE_MAX];
    for (int m = CG_MODE_ENFORCE; m <= CG_MODE_SHADOW; m++)
        if (strcmp(value, cg_listener_mode_name((cg_listener_mode)m)) == 0) {
            *out = (cg_listener_mode)m;
            return 0;
        }
    return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                    "bad value %s for 'mode' in %s: expected enforce or shadow",
                    excerpt(q, sizeof q, value), kc->section);
}

/* A whole number of seconds of a ban (ban_ttl_s, ban_ttl_max_s). */
static int ttl_key(const cg__keyctx *kc, const char *key, const char *value, uint32_t line,
                   uint32_t *out, uint32_t *line_out)
{
    uint64_t v = 0;
    int rc = cg__key_number(kc, key, value, line, 1, CG_CONFIG_MAX_BAN_TTL_S, &v);
    if (rc)
        return rc;
    *out = (uint32_t)v;
    *line_out = line;
    return 0;
}

/* cg__listener_limits_key: see config_limits.h. The loading thread. */
int cg__listener_limits_key(const cg__keyctx *kc, cg_listener_conf *l, cg__limits_lines *lines,
                            const char *key, const char *value, uint32_t line)
{
    cg_source_limits *s = &l->sources;
    uint64_t v = 0;
    int rc;

    if (strcmp(key, "mode") == 0)
        return mode_key(kc, &l->mode, value, line);
    if (strcmp(key, "max_per_source") == 0) {
        rc = strcmp(value, "off") == 0
                 ? 0
                 : cg__key_number(kc, key, value, line, 0, CG_CONFIG_MAX_CONNECTIONS, &v);
        s->max_per_source = rc ? s->max_per_source : (uint32_t)v;
        return rc;
    }
    if (strcmp(key, "rate_per_source") == 0) {
        lines->rate = line;
        return rate_key(kc, key, value, line, &s->rate);
    }
    if (strcmp(key, "source_prefix") == 0)
        return source_prefix_key(kc, s, key, value, line);
    if (strcmp(key, "ban_after") == 0) {
        lines->ban_after = line;
        return rate_key(kc, key, value, line, &s->ban_after);
    }
    if (strcmp(key, "ban_ttl_s") == 0)
        return ttl_key(kc, key, value, line, &s->ban_ttl_s, &lines->ban_ttl);
    if (strcmp(key, "ban_ttl_max_s") == 0)
        return ttl_key(kc, key, value, line, &s->ban_ttl_max_s, &lines->ban_ttl_max);
    return CG_ENOENT;
}

/* cg__listener_limits_check: see config_limits.h. The loading thread. */
int cg__listener_limits_check(const cg__keyctx *kc, const cg_listener_conf *l,
                              const cg__limits_lines *lines)
{
    const cg_source_limits *s = &l->sources;
    if (s->ban_after.count && !s->rate.count)
        return cg__fail(kc->d, CG_EINVAL, kc->path, lines->ban_after,
                        "'ban_after' in [listener:%s]: ban_after counts source_rate refusals; "
                        "set rate_per_source too",
                        l->name);
    if (s->ban_ttl_max_s < s->ban_ttl_s) {
        uint32_t at = lines->ban_ttl > lines->ban_ttl_max ? lines->ban_ttl : lines->ban_ttl_max;
        return cg__fail(kc->d, CG_EINVAL, kc->path, at,
                        "[listener:%s]: ban_ttl_max_s (%u%s) is less than ban_ttl_s (%u%s); "
                        "auto-bans start at ban_ttl_s and double up to ban_ttl_max_s",
                        l->name, (unsigned)s->ban_ttl_max_s,
                        lines->ban_ttl_max ? "" : ", the default", (unsigned)s->ban_ttl_s,
                        lines->ban_ttl ? "" : ", the default");
    }
    return 0;
}
