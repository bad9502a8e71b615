/* config.c — what the sections and keys of condgate.ini mean (SPEC §2).
 *
 * config_ini.c feeds section headers and keys in file order through a
 * cg__ini_sink; this file checks each value, builds the rule sets and
 * listeners into a cg_config, loads the files that [rules] sections name,
 * and at the end resolves the listeners' rule sets, freezes every set and
 * collects the warnings. The first error stops the load and everything
 * built so far is freed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condgate/config.h"
#include "config_ini.h"
#include "config_geoip.h"
#include "config_json.h"
#include "config_limits.h"
#include "config_list.h"
#include "config_proxy.h"
#include "config_crowdsec.h"
#include "diag.h"
#include "net.h"
#include "sys.h"

/* ------------------------------------------------------------------------
 * Names
 */

/* cg_log_level_name: "error", "warn", "info" or "debug" (static storage). */
const char *cg_log_level_name(cg_log_level l)
{
    switch (l) {
    case CG_LOG_ERROR:
        return "error";
    case CG_LOG_WARN:
        return "warn";
    case CG_LOG_INFO:
        return "info";
    case CG_LOG_DEBUG:
        return "debug";
    }
    return "unknown";
}

/* cg_prefilter_mode_name: see config.h. */
const char *cg_prefilter_mode_name(cg_prefilter_mode m)
{
    switch (m) {
    case CG_PREFILTER_AUTO:
        return "auto";
    case CG_PREFILTER_REFUSE:
        return "refuse";
    case CG_PREFILTER_DROP:
        return "drop";
    case CG_PREFILTER_OFF:
        return "off";
    }
    return "unknown";
}

/* cg_log_format_name: "text" or "json" (static storage). */
const char *cg_log_format_name(cg_log_format f)
{
    switch (f) {
    case CG_LOG_TEXT:
        return "text";
    case CG_LOG_JSON:
        return "json";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------
 * The loader
 */

typedef enum section_kind {
    SECT_NONE = 0,
    SECT_GATEWAY,
    SECT_ADMIN,
    SECT_RULES,
    SECT_LISTENER,
    SECT_CROWDSEC,
} section_kind;

typedef struct key_def {
    const char *name;
    bool repeats;
} key_def;

/* The keys after K_LOGFORMAT (never_ban ...) are config_limits.c's. */
enum { K_WORKERS, K_MAXCONN, K_DRAIN, K_LOGLEVEL, K_LOGFORMAT };
static const key_def gateway_keys[] = {
    {"workers", false},
    {"max_connections", false},
    {"drain_timeout_ms", false},
    {"log_level", false},
    {"log_format", false},
    {"never_ban", true},
    {"state_file", false},
    {"max_bans", false},
    {"source_table_max", false},
    {"preview_callers", false},
    {"takeover_socket", false},
    {NULL, false},
};

enum { K_LISTEN, K_ADMIN_ALLOW, K_TOKEN };
static const key_def admin_keys[] = {
    {"listen", false},
    {"allow", true},
    {"token", false},
    {NULL, false},
};

/* config_crowdsec.c's. */
static const key_def crowdsec_keys[] = {
    {"url", false},        {"api_key_file", false}, {"interval_ms", false},
    {"timeout_ms", false}, {NULL, false},
};

/* The keys after K_DENY_FILE (geoip_db ...) are config_geoip.c's. */
enum { K_DEFAULT, K_ALLOW, K_DENY, K_INCLUDE, K_ALLOW_FILE, K_DENY_FILE };
static const key_def rules_keys[] = {
    {"default", false},      {"allow", true},        {"deny", true},      {"include", true},
    {"allow_file", true},    {"deny_file", true},    {"geoip_db", true},  {"geoip_csv", true},
    {"allow_country", true}, {"deny_country", true}, {"allow_asn", true}, {"deny_asn", true},
    {NULL, false},
};

enum { K_BIND, K_BACKEND, K_RULES, K_CONNECT_TIMEOUT, K_IDLE_TIMEOUT, K_PREFILTER };
static const key_def listener_keys[] = {
    {"bind", false},
    {"backend", true},
    {"rules", false},
    {"connect_timeout_ms", false},
    {"idle_timeout_ms", false},
    {"prefilter", false},
    /* config_limits.c's: */
    {"mode", false},
    {"max_per_source", false},
    {"rate_per_source", false},
    {"source_prefix", false},
    {"ban_after", false},
    {"ban_ttl_s", false},
    {"ban_ttl_max_s", false},
    /* config_proxy.c's: */
    {"accept_proxy", false},
    {"trusted_proxies", true},
    {"proxy_timeout_ms", false},
    {"send_proxy", false},
    {NULL, false},
};

#define MAX_SECTION_KEYS 24
_Static_assert(sizeof listener_keys / sizeof listener_keys[0] - 1 <= MAX_SECTION_KEYS,
               "seen[] holds a line for each key of a section");
#define TIMEOUT_MAX 86400000u

/* What the loader remembers of a rule set beyond the set itself. */
typedef struct set_build {
    uint32_t line;      /* the section header */
    cg__geo_build *geo; /* its GeoIP keys, NULL when none */
} set_build;

/* What the loader remembers of a listener until the end of the file. */
typedef struct listener_build {
    char *rules;             /* the `rules =` name, NULL when absent */
    uint32_t rules_line;     /* its line */
    cg__limits_lines limits; /* lines of the source keys */
    cg__proxy_lines proxy;   /* and of the PROXY keys */
} listener_build;

/* The state of one load, fed by config_ini.c through a cg__ini_sink. */
typedef struct loader {
    cg__keyctx kc; /* first: the item callbacks get the loader back from it */
    cg_config *cfg;
    cg__diag *d;
    const char *path; /* the INI file as given */
    size_t dirlen;    /* bytes of path that name its directory, with the '/' */
    size_t nfiles;    /* rule and list files read so far */

    section_kind kind;
    char section[64]; /* "[name]" of the current section, for messages */
    uint32_t section_line;
    size_t cur;                        /* current set or listener */
    uint32_t seen[MAX_SECTION_KEYS];   /* line of each key in this section */
    uint32_t gateway_line, admin_line; /* headers seen, 0 when not */
    cg__crowdsec_lines crowdsec;       /* [crowdsec]'s key lines */
    uint32_t admin_listen_line;

    cg__never_ban_build never_ban;

    set_build *sets; /* parallel to cfg->rulesets */
    size_t sets_cap;
    listener_build *lb; /* parallel to cfg->listeners */
    size_t nlb;
    size_t lb_cap;
} loader;

static int oom(loader *ld, uint32_t line)
{
    return cg__fail(ld->d, CG_ENOMEM, ld->path, line, "out of memory");
}

bool cg_config_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > CG_CONFIG_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static int number(loader *ld, const char *key, const char *value, uint32_t line, uint64_t min,
                  uint64_t max, uint64_t *out)
{
    return cg__key_number(&ld->kc, key, value, line, min, max, out);
}

/* The host-order port of text, 1..65535, or 0. */
static unsigned parse_port(const char *s, size_t len, bool *syntax_ok)
{
    uint64_t v;
    *syntax_ok = cg__parse_decimal(s, len, &v);
    return *syntax_ok && v >= 1 && v <= 65535 ? (unsigned)v : 0;
}

/* endpoint: "A.B.C.D:PORT" or "[IPV6]:PORT" (of `len` bytes) into *ep. */
static int endpoint(loader *ld, const char *key, const char *s, size_t len, uint32_t line,
                    bool backend, cg_endpoint *ep)
{
    char q[CG__QUOTE_MAX];
    char why[CG__REASON_MAX];
    const char *host, *port;
    size_t hlen, colons = 0;
    int family;

    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || close + 1 == s + len || close[1] != ':')
            goto bad;
        host = s + 1;
        hlen = (size_t)(close - host);
        port = close + 2;
        family = 6;
    } else {
        const char *colon = NULL;
        for (const char *p = s; p < s + len; p++)
            if (*p == ':')
                colon = p;
        if (!colon)
            goto bad;
        host = s;
        hlen = (size_t)(colon - s);
        port = colon + 1;
        family = 4;
    }
    if (hlen == 0 || memchr(host, '/', hlen) || memchr(host, '%', hlen))
        goto bad;
    cg_cidr c;
    if (cg_cidr_parse(host, hlen, &c, why, sizeof why) != 0 || c.family != family)
        goto bad;
    bool ok;
    unsigned p = parse_port(port, (size_t)(s + len - port), &ok);
    if (!ok)
        goto bad;
    if (p == 0)
        return cg__fail(ld->d, CG_ERANGE, ld->path, line,
                        "'%s' in %s: port must be from 1 to 65535, not %.*s", key, ld->section,
                        (int)(s + len - port), port);
    if (len >= CG_ENDPOINT_STRLEN)
        goto bad;

    static const uint8_t zero[16];
    if (backend && memcmp(c.addr, zero, family == 4 ? 4 : 16) == 0)
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "'%s' in %s: %s is not an address one can connect to; use 127.0.0.1 "
                        "or [::1] for this host",
                        key, ld->section, cg__quote(q, sizeof q, s, len, CG__QUOTE_EXCERPT));

    memset(ep, 0, sizeof *ep);
    if (family == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ep->addr;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, c.addr, 4);
        sin->sin_port = htons((uint16_t)p);
        ep->addrlen = (socklen_t)sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ep->addr;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, c.addr, 16);
        sin6->sin6_port = htons((uint16_t)p);
        ep->addrlen = (socklen_t)sizeof *sin6;
    }
    memcpy(ep->text, s, len);
    ep->text[len] = '\0';
    return 0;

bad:
    for (size_t i = 0; i < len; i++)
        colons += s[i] == ':';
    if (s[0] != '[' && colons > 1)
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "'%s' in %s: bad endpoint %s; write IPv6 addresses in brackets, such "
                        "as [::1]:8080",
                        key, ld->section, cg__quote(q, sizeof q, s, len, CG__QUOTE_EXCERPT));
    return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                    "'%s' in %s: bad endpoint %s; expected IPV4:PORT or [IPV6]:PORT such as "
                    "%s",
                    key, ld->section, cg__quote(q, sizeof q, s, len, CG__QUOTE_EXCERPT),
                    backend ? "127.0.0.1:8081 or [::1]:8081"
                            : "0.0.0.0:8080, 127.0.0.1:8080, [::]:8080 or [::1]:8080");
}

static int each_item(loader *ld, const char *key, const char *value, uint32_t line, cg__item_fn fn,
                     void *arg)
{
    return cg__key_each_item(&ld->kc, key, value, line, fn, arg);
}

/* add_prefix: one allow/deny item into the set `arg`. */
static int add_prefix(const cg__keyctx *kc, const char *key, const char *item, size_t len,
                      uint32_t line, void *arg)
{
    loader *ld = (loader *)kc;
    char why[CG__REASON_MAX] = "";
    cg_source src = {ld->path, line};
    cg_action action = strcmp(key, "deny") == 0 ? CG_DENY : CG_ALLOW;
    int rc = cg_ruleset_add_text(arg, item, len, action, &src, NULL, why, sizeof why);
    if (rc == CG_EINVAL)
        return cg__fail(ld->d, rc, ld->path, line, "%s: %s", key, why);
    if (rc == CG_ERANGE)
        return cg__fail_set_full(ld->d, ld->path, line, cg_ruleset_name(arg));
    if (rc)
        return oom(ld, line);
    return 0;
}

/* add_backend: one backend endpoint to the current listener. */
static int add_backend(const cg__keyctx *kc, const char *key, const char *item, size_t len,
                       uint32_t line, void *arg)
{
    loader *ld = (loader *)kc;
    cg_listener_conf *l = arg;
    if (len == 4 && memcmp(item, "echo", 4) == 0)
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "'backend' in %s: 'echo' cannot be combined with other backends",
                        ld->section);
    if (l->echo)
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "'backend' in %s: the listener already uses 'echo', which cannot be "
                        "combined with other backends",
                        ld->section);
    if (l->nbackends == CG_CONFIG_MAX_BACKENDS)
        return cg__fail(ld->d, CG_ERANGE, ld->path, line, "'backend' in %s: more than %d backends",
                        ld->section, CG_CONFIG_MAX_BACKENDS);
    cg_endpoint ep;
    int rc = endpoint(ld, key, item, len, line, true, &ep);
    if (rc)
        return rc;
    cg_endpoint *nb = realloc(l->backends, (l->nbackends + 1) * sizeof *nb);
    if (!nb)
        return oom(ld, line);
    l->backends = nb;
    l->backends[l->nbackends++] = ep;
    return 0;
}

/* include_file: `include`, `allow_file` or `deny_file` in a [rules] section. */
static int include_file(loader *ld, const char *key, const char *value, uint32_t line)
{
    char q[CG__QUOTE_MAX];
    char *path = NULL, *text = NULL;
    size_t len = 0;
    int rc, sys;
    bool json = strcmp(key, "include") == 0;
    size_t max = json ? CG_CONFIG_MAX_JSON_BYTES : CG_CONFIG_MAX_LIST_BYTES;

    if (ld->nfiles == CG_CONFIG_MAX_FILES)
        return cg__fail(ld->d, CG_ERANGE, ld->path, line,
                        "'%s' in %s: more than %d rule and list files in all", key, ld->section,
                        CG_CONFIG_MAX_FILES);
    ld->nfiles++;
    path = cg__key_resolve(&ld->kc, value);
    if (!path)
        return oom(ld, line);
    if (strlen(path) >= CG_SOURCE_MAX) {
        rc = cg__fail(ld->d, CG_ERANGE, ld->path, line, "'%s' in %s: path longer than %d bytes",
                      key, ld->section, CG_SOURCE_MAX - 1);
        goto free_path;
    }
    rc = cg__read_file(path, max, &text, &len, &sys);
    if (rc == CG_ERANGE)
        rc = cg__fail(ld->d, rc, ld->path, line, "%s: %s is larger than %u MiB", key,
                      cg__quote(q, sizeof q, path, strlen(path), CG__QUOTE_EXCERPT),
                      (unsigned)(max >> 20));
    else if (rc == CG_ENOMEM)
        rc = oom(ld, line);
    else if (rc)
        rc = cg__fail(ld->d, rc, ld->path, line, "%s: cannot read %s: %s", key,
                      cg__quote(q, sizeof q, path, strlen(path), CG__QUOTE_EXCERPT),
                      cg__errno_text(sys));
    if (rc)
        goto free_path;

    cg_ruleset *rs = ld->cfg->rulesets[ld->cur];
    if (json)
        rc = cg__load_json(path, text, len, rs, ld->d);
    else
        rc = cg__load_list(path, text, len, key[0] == 'a' ? CG_ALLOW : CG_DENY, key, rs, ld->d);
    free(text);
free_path:
    free(path);
    return rc;
}

/* ---- sections ---------------------------------------------------------- */

static int close_section(loader *ld)
{
    if (ld->kind != SECT_LISTENER)
        return 0;
    if (!ld->seen[K_BIND])
        return cg__fail(ld->d, CG_EINVAL, ld->path, ld->section_line,
                        "%s has no 'bind'; add e.g. 'bind = 127.0.0.1:8080'", ld->section);
    if (!ld->seen[K_BACKEND])
        return cg__fail(ld->d, CG_EINVAL, ld->path, ld->section_line,
                        "%s has no 'backend'; add e.g. 'backend = 127.0.0.1:8081' or "
                        "'backend = echo'",
                        ld->section);
    return 0;
}

static int open_ruleset(loader *ld, const char *name, uint32_t line)
{
    cg_config *cfg = ld->cfg;
    for (size_t i = 0; i < cfg->nrulesets; i++)
        if (strcmp(cg_ruleset_name(cfg->rulesets[i]), name) == 0)
            return cg__fail(ld->d, CG_EEXIST, ld->path, line,
                            "duplicate section %s (rule set '%s' is first defined on line %u)",
                            ld->section, name, (unsigned)ld->sets[i].line);
    if (cfg->nrulesets == CG_CONFIG_MAX_RULESETS)
        return cg__fail(ld->d, CG_ERANGE, ld->path, line, "more than %d rule sets",
                        CG_CONFIG_MAX_RULESETS);
    if (cfg->nrulesets == ld->sets_cap) {
        size_t cap = ld->sets_cap ? ld->sets_cap * 2 : 4;
        cg_ruleset **r = realloc(cfg->rulesets, cap * sizeof *r);
        if (!r)
            return oom(ld, line);
        cfg->rulesets = r;
        set_build *s = realloc(ld->sets, cap * sizeof *s);
        if (!s)
            return oom(ld, line);
        ld->sets = s;
        ld->sets_cap = cap;
    }
    cg_ruleset *rs;
    int rc = cg_ruleset_new(name, CG_DENY, &rs);
    if (rc)
        return oom(ld, line);
    ld->cur = cfg->nrulesets;
    cfg->rulesets[cfg->nrulesets++] = rs;
    ld->sets[ld->cur].line = line;
    ld->sets[ld->cur].geo = NULL;
    return 0;
}

static int open_listener(loader *ld, const char *name, uint32_t line)
{
    cg_config *cfg = ld->cfg;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (strcmp(cfg->listeners[i].name, name) == 0)
            return cg__fail(ld->d, CG_EEXIST, ld->path, line,
                            "duplicate section %s (first on line %u)", ld->section,
                            (unsigned)cfg->listeners[i].line);
    if (cfg->nlisteners == CG_CONFIG_MAX_LISTENERS)
        return cg__fail(ld->d, CG_ERANGE, ld->path, line, "more than %d listeners",
                        CG_CONFIG_MAX_LISTENERS);
    if (cfg->nlisteners == ld->lb_cap) {
        size_t cap = ld->lb_cap ? ld->lb_cap * 2 : 4;
        cg_listener_conf *l = realloc(cfg->listeners, cap * sizeof *l);
        if (!l)
            return oom(ld, line);
        cfg->listeners = l;
        listener_build *b = realloc(ld->lb, cap * sizeof *b);
        if (!b)
            return oom(ld, line);
        ld->lb = b;
        ld->lb_cap = cap;
    }
    cg_listener_conf *l = &cfg->listeners[cfg->nlisteners];
    memset(l, 0, sizeof *l);
    memset(&ld->lb[cfg->nlisteners], 0, sizeof ld->lb[0]);
    l->name = dup_n(name, strlen(name));
    if (!l->name)
        return oom(ld, line);
    l->line = line;
    l->connect_timeout_ms = 3000;
    l->idle_timeout_ms = 300000;
    l->prefilter = CG_PREFILTER_AUTO;
    l->mode = CG_MODE_ENFORCE;
    l->sources.prefix4 = 32;
    l->sources.prefix6 = 64;
    l->sources.ban_ttl_s = 600;
    l->sources.ban_ttl_max_s = 86400;
    l->proxy_timeout_ms = 3000;
    ld->cur = cfg->nlisteners++;
    ld->nlb = cfg->nlisteners;
    return 0;
}

static int open_crowdsec(loader *ld, uint32_t line)
{
    if (ld->cfg->crowdsec.line)
        return cg__fail(ld->d, CG_EEXIST, ld->path, line,
                        "duplicate section [crowdsec] (first on line %u)",
                        (unsigned)ld->cfg->crowdsec.line);
    ld->kind = SECT_CROWDSEC;
    return cg__crowdsec_open(&ld->kc, ld->cfg, line);
}

/* on_section: the sink's section callback, a "[name]" header of `len`
 * bytes at `line`. Closes the section before it. Returns 0 or a negative
 * code with the error in the load's diag. The loading thread. */
static int on_section(void *ctx, const char *name, size_t len, uint32_t line)
{
    loader *ld = ctx;
    static const char *const sections[] = {"gateway",  "admin",    "rules",
                                           "listener", "crowdsec", NULL};
    char q[CG__QUOTE_MAX];
    int rc = close_section(ld);
    if (rc)
        return rc;

    ld->kind = SECT_NONE;
    memset(ld->seen, 0, sizeof ld->seen);
    ld->section_line = line;
    if (len + 3 > sizeof ld->section)
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "section name %s is too long; names of rule sets and listeners have at "
                        "most %d characters",
                        cg__quote(q, sizeof q, name, len, CG__QUOTE_EXCERPT), CG_CONFIG_MAX_NAME);
    snprintf(ld->section, sizeof ld->section, "[%.*s]", (int)len, name);

    const char *colon = memchr(name, ':', len);
    size_t blen = colon ? (size_t)(colon - name) : len;
    const char *sub = colon ? colon + 1 : NULL;
    size_t sublen = colon ? len - blen - 1 : 0;
    char base[32];
    snprintf(base, sizeof base, "%.*s", (int)(blen < sizeof base ? blen : sizeof base - 1), name);

    if (strcmp(base, "gateway") == 0 && !colon) {
        if (ld->gateway_line)
            return cg__fail(ld->d, CG_EEXIST, ld->path, line,
                            "duplicate section [gateway] (first on line %u)",
                            (unsigned)ld->gateway_line);
        ld->gateway_line = line;
        ld->kind = SECT_GATEWAY;
        return 0;
    }
    if (strcmp(base, "admin") == 0 && !colon) {
        if (ld->admin_line)
            return cg__fail(ld->d, CG_EEXIST, ld->path, line,
                            "duplicate section [admin] (first on line %u)",
                            (unsigned)ld->admin_line);
        ld->admin_line = line;
        ld->kind = SECT_ADMIN;
        return 0;
    }
    if (strcmp(base, "crowdsec") == 0 && !colon)
        return open_crowdsec(ld, line);
    if (strcmp(base, "rules") == 0 || strcmp(base, "listener") == 0) {
        bool rules = base[0] == 'r';
        char sname[CG_CONFIG_MAX_NAME + 1];
        if (rules && !colon) {
            strcpy(sname, "default");
        } else if (!colon || sublen == 0) {
            return cg__fail(ld->d, CG_EINVAL, ld->path, line, "section %s needs a name: [%s:NAME]",
                            ld->section, base);
        } else if (sublen > CG_CONFIG_MAX_NAME) {
            return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                            "name %s in %s is longer than %d characters",
                            cg__quote(q, sizeof q, sub, sublen, CG__QUOTE_EXCERPT), ld->section,
                            CG_CONFIG_MAX_NAME);
        } else if (!cg_config_name_ok(sub, sublen)) {
            return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                            "bad name %s in %s: use 1 to %d letters, digits, '_', '-' or '.'",
                            cg__quote(q, sizeof q, sub, sublen, CG__QUOTE_EXCERPT), ld->section,
                            CG_CONFIG_MAX_NAME);
        } else {
            memcpy(sname, sub, sublen);
            sname[sublen] = '\0';
        }
        ld->kind = rules ? SECT_RULES : SECT_LISTENER;
        return rules ? open_ruleset(ld, sname, line) : open_listener(ld, sname, line);
    }
    const char *hint = cg__suggest(base, sections);
    bool named = hint && (strcmp(hint, "listener") == 0 || (colon && strcmp(hint, "rules") == 0));
    if (hint && named && colon)
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "unknown section %s; did you mean [%s:%.*s]?", ld->section, hint,
                        (int)sublen, sub);
    if (hint)
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "unknown section %s; did you mean [%s%s]?", ld->section, hint,
                        named ? ":NAME" : "");
    return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                    "unknown section %s; expected [gateway], [admin], [rules], [rules:NAME], "
                    "[listener:NAME] or [crowdsec]",
                    ld->section);
}

/* ---- keys -------------------------------------------------------------- */

static int gateway_key(loader *ld, int k, const char *key, const char *value, uint32_t line)
{
    cg_config *cfg = ld->cfg;
    char q[CG__QUOTE_MAX];
    uint64_t v = 0;
    int rc = 0;

    switch (k) {
    case K_WORKERS:
        rc = number(ld, key, value, line, 1, CG_CONFIG_MAX_WORKERS, &v);
        cfg->workers = (unsigned)v;
        break;
    case K_MAXCONN:
        rc = number(ld, key, value, line, 1, CG_CONFIG_MAX_CONNECTIONS, &v);
        cfg->max_connections = (unsigned)v;
        break;
    case K_DRAIN:
        rc = number(ld, key, value, line, 1, TIMEOUT_MAX, &v);
        cfg->drain_timeout_ms = (uint32_t)v;
        break;
    case K_LOGLEVEL:
        for (int l = CG_LOG_ERROR; l <= CG_LOG_DEBUG; l++)
            if (strcmp(value, cg_log_level_name((cg_log_level)l)) == 0) {
                cfg->log_level = (cg_log_level)l;
                return 0;
            }
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "bad value %s for 'log_level' in [gateway]: expected error, warn, info "
                        "or debug",
                        cg__quote(q, sizeof q, value, strlen(value), CG__QUOTE_EXCERPT));
    case K_LOGFORMAT:
        if (strcmp(value, "text") == 0)
            cfg->log_format = CG_LOG_TEXT;
        else if (strcmp(value, "json") == 0)
            cfg->log_format = CG_LOG_JSON;
        else
            return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                            "bad value %s for 'log_format' in [gateway]: expected text or json",
                            cg__quote(q, sizeof q, value, strlen(value), CG__QUOTE_EXCERPT));
        break;
    default:
        return cg__gateway_state_key(&ld->kc, cfg, &ld->never_ban, key, value, line);
    }
    return rc;
}

static int admin_allow_set(loader *ld, uint32_t line)
{
    if (ld->cfg->admin.allow)
        return 0;
    if (cg_ruleset_new("admin", CG_DENY, &ld->cfg->admin.allow))
        return oom(ld, line);
    return 0;
}

static int admin_key(loader *ld, int k, const char *key, const char *value, uint32_t line)
{
    cg_admin_conf *a = &ld->cfg->admin;
    switch (k) {
    case K_LISTEN:
        ld->admin_listen_line = line;
        if (strcmp(value, "off") == 0) {
            a->enabled = false;
            return 0;
        }
        a->enabled = true;
        return endpoint(ld, key, value, strlen(value), line, false, &a->listen);
    case K_ADMIN_ALLOW: {
        int rc = admin_allow_set(ld, line);
        return rc ? rc : each_item(ld, key, value, line, add_prefix, a->allow);
    }
    case K_TOKEN: {
        size_t n = strlen(value);
        if (n == 0)
            return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                            "'token' in [admin] is empty; remove the key to go without one");
        if (n > CG_CONFIG_MAX_TOKEN)
            return cg__fail(ld->d, CG_ERANGE, ld->path, line,
                            "'token' in [admin] is %zu characters long; at most %d are allowed", n,
                            CG_CONFIG_MAX_TOKEN);
        for (size_t i = 0; i < n; i++)
            if (value[i] <= 0x20 || value[i] >= 0x7f)
                return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                                "'token' in [admin] may hold only printable ASCII characters "
                                "without spaces");
        a->token = dup_n(value, n);
        return a->token ? 0 : oom(ld, line);
    }
    }
    return 0;
}

static int rules_key(loader *ld, int k, const char *key, const char *value, uint32_t line)
{
    char q[CG__QUOTE_MAX];
    cg_ruleset *rs = ld->cfg->rulesets[ld->cur];
    switch (k) {
    case K_DEFAULT:
        if (strcmp(value, "allow") == 0)
            cg_ruleset_set_default(rs, CG_ALLOW);
        else if (strcmp(value, "deny") == 0)
            cg_ruleset_set_default(rs, CG_DENY);
        else
            return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                            "bad value %s for 'default' in %s: expected allow or deny",
                            cg__quote(q, sizeof q, value, strlen(value), CG__QUOTE_EXCERPT),
                            ld->section);
        return 0;
    case K_ALLOW:
    case K_DENY:
        return each_item(ld, key, value, line, add_prefix, rs);
    case K_INCLUDE:
    case K_ALLOW_FILE:
    case K_DENY_FILE:
        return include_file(ld, key, value, line);
    default:
        return cg__geo_key(&ld->kc, &ld->sets[ld->cur].geo, key, value, line);
    }
}

/* `prefilter = auto | refuse | drop | off`; drop only where the platform
 * has it. */
static int prefilter_mode(loader *ld, const char *value, uint32_t line, cg_prefilter_mode *out)
{
    char q[CG__QUOTE_MAX];
    for (int m = CG_PREFILTER_AUTO; m <= CG_PREFILTER_OFF; m++) {
        if (strcmp(value, cg_prefilter_mode_name((cg_prefilter_mode)m)) != 0)
            continue;
        if (m == CG_PREFILTER_DROP && !cg__sys_prefilter_can_drop())
            return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                            "'prefilter = drop' in %s is not available on this platform: "
                            "conditional accept can refuse a caller but not discard its SYN "
                            "(use refuse, auto or off)",
                            ld->section);
        *out = (cg_prefilter_mode)m;
        return 0;
    }
    return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                    "bad value %s for 'prefilter' in %s: expected auto, refuse, drop or off",
                    cg__quote(q, sizeof q, value, strlen(value), CG__QUOTE_EXCERPT), ld->section);
}

static int listener_key(loader *ld, int k, const char *key, const char *value, uint32_t line)
{
    char q[CG__QUOTE_MAX];
    cg_listener_conf *l = &ld->cfg->listeners[ld->cur];
    listener_build *b = &ld->lb[ld->cur];
    uint64_t v = 0;
    int rc;

    switch (k) {
    case K_BIND:
        return endpoint(ld, key, value, strlen(value), line, false, &l->bind);
    case K_BACKEND:
        if (strcmp(value, "echo") == 0) {
            if (l->nbackends)
                return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                                "'backend' in %s: 'echo' cannot be combined with other "
                                "backends",
                                ld->section);
            l->echo = true;
            return 0;
        }
        return each_item(ld, key, value, line, add_backend, l);
    case K_RULES:
        if (!cg_config_name_ok(value, strlen(value)))
            return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                            "bad rule set name %s for 'rules' in %s: use 1 to %d letters, "
                            "digits, '_', '-' or '.'",
                            cg__quote(q, sizeof q, value, strlen(value), CG__QUOTE_EXCERPT),
                            ld->section, CG_CONFIG_MAX_NAME);
        b->rules = dup_n(value, strlen(value));
        b->rules_line = line;
        return b->rules ? 0 : oom(ld, line);
    case K_CONNECT_TIMEOUT:
        rc = number(ld, key, value, line, 1, TIMEOUT_MAX, &v);
        l->connect_timeout_ms = (uint32_t)v;
        return rc;
    case K_IDLE_TIMEOUT:
        rc = number(ld, key, value, line, 1, TIMEOUT_MAX, &v);
        l->idle_timeout_ms = (uint32_t)v;
        return rc;
    case K_PREFILTER:
        return prefilter_mode(ld, value, line, &l->prefilter);
    default:
        rc = cg__listener_proxy_key(&ld->kc, l, &b->proxy, key, value, line);
        if (rc != CG_ENOENT)
            return rc;
        return cg__listener_limits_key(&ld->kc, l, &b->limits, key, value, line);
    }
}

static int warn(loader *ld, const char *file, uint32_t line, const char *fmt, ...) CG__PRINTF(4, 5);

/* A [crowdsec] key, with the key file's warning, if any, at its line. */
static int crowdsec_key(loader *ld, const char *key, const char *value, uint32_t line)
{
    char w[CG_SOURCE_MAX + 256];
    int rc = cg__crowdsec_key(&ld->kc, ld->cfg, &ld->crowdsec, key, value, line, w, sizeof w);
    if (rc == 0 && w[0] != '\0')
        rc = warn(ld, ld->path, line, "%s", w);
    return rc;
}

/* home_of: the section a key belongs in, for "key before any section". */
static const char *home_of(const char *key)
{
    static const struct {
        const key_def *keys;
        const char *home;
    } homes[] = {
        {gateway_keys, "[gateway]"},
        {rules_keys, "[rules] or [rules:NAME]"},
        {listener_keys, "a [listener:NAME] section"},
        {admin_keys, "[admin]"},
        {crowdsec_keys, "[crowdsec]"},
    };
    for (size_t h = 0; h < sizeof homes / sizeof homes[0]; h++)
        for (const key_def *k = homes[h].keys; k->name; k++)
            if (strcmp(k->name, key) == 0)
                return homes[h].home;
    return NULL;
}

/* on_key: the sink's key callback, a "key = value" line (value already
 * trimmed by inih). Returns 0 or a negative code with the error in the
 * load's diag. The loading thread. */
static int on_key(void *ctx, const char *key, const char *value, uint32_t line)
{
    loader *ld = ctx;
    char q[CG__QUOTE_MAX];
    const key_def *keys = NULL;
    const char *names[MAX_SECTION_KEYS + 1];

    if (!key[0])
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "syntax error: missing key name before '='");
    switch (ld->kind) {
    case SECT_NONE: {
        const char *home = home_of(key);
        if (home)
            return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                            "key '%s' is outside any section; it belongs in %s", key, home);
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "key %s is outside any section; start with a section such as "
                        "[gateway] or [rules]",
                        cg__quote(q, sizeof q, key, strlen(key), CG__QUOTE_EXCERPT));
    }
    case SECT_GATEWAY:
        keys = gateway_keys;
        break;
    case SECT_ADMIN:
        keys = admin_keys;
        break;
    case SECT_RULES:
        keys = rules_keys;
        break;
    case SECT_LISTENER:
        keys = listener_keys;
        break;
    case SECT_CROWDSEC:
        keys = crowdsec_keys;
        break;
    }

    int k = 0;
    while (keys[k].name && strcmp(keys[k].name, key) != 0)
        k++;
    if (!keys[k].name) {
        size_t n = 0;
        for (; keys[n].name; n++)
            names[n] = keys[n].name;
        names[n] = NULL;
        const char *hint = cg__suggest(key, names);
        const char *home = home_of(key);
        if (home)
            return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                            "unknown key '%s' in %s; it belongs in %s", key, ld->section, home);
        if (hint)
            return cg__fail(
                ld->d, CG_EINVAL, ld->path, line, "unknown key %s in %s; did you mean '%s'?",
                cg__quote(q, sizeof q, key, strlen(key), CG__QUOTE_EXCERPT), ld->section, hint);
        char list[320] = "";
        for (size_t i = 0; i < n; i++) {
            size_t used = strlen(list);
            snprintf(list + used, sizeof list - used, "%s%s",
                     i == 0       ? ""
                     : i + 1 == n ? " or "
                                  : ", ",
                     names[i]);
        }
        return cg__fail(ld->d, CG_EINVAL, ld->path, line, "unknown key %s in %s; expected %s",
                        cg__quote(q, sizeof q, key, strlen(key), CG__QUOTE_EXCERPT), ld->section,
                        list);
    }
    if (ld->seen[k] && !keys[k].repeats)
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "'%s' given twice in %s (first on line %u)", key, ld->section,
                        (unsigned)ld->seen[k]);
    if (!ld->seen[k])
        ld->seen[k] = line;
    if (value[0] == '\0')
        return cg__fail(ld->d, CG_EINVAL, ld->path, line, "'%s' in %s has no value", key,
                        ld->section);
    const char *hash = strchr(value, '#');
    if (hash && hash > value && (hash[-1] == ' ' || hash[-1] == '\t'))
        return cg__fail(ld->d, CG_EINVAL, ld->path, line,
                        "'%s' in %s: '#' starts a comment only at the start of a line; after a "
                        "value write ' ; comment'",
                        key, ld->section);

    switch (ld->kind) {
    case SECT_GATEWAY:
        return gateway_key(ld, k, key, value, line);
    case SECT_ADMIN:
        return admin_key(ld, k, key, value, line);
    case SECT_RULES:
        return rules_key(ld, k, key, value, line);
    case SECT_LISTENER:
        return listener_key(ld, k, key, value, line);
    case SECT_CROWDSEC:
        return crowdsec_key(ld, key, value, line);
    case SECT_NONE:
        break;
    }
    return 0;
}

/* ---- the end of the file ----------------------------------------------- */

static int warn(loader *ld, const char *file, uint32_t line, const char *fmt, ...)
{
    cg_config *cfg = ld->cfg;
    char buf[2 * CG_SOURCE_MAX + 512];
    int n = snprintf(buf, sizeof buf, "%s:%u: warning: ", file, (unsigned)line);
    if (n < 0 || (size_t)n >= sizeof buf)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';

    char **w = realloc(cfg->warnings, (cfg->nwarnings + 1) * sizeof *w);
    if (!w)
        return oom(ld, line);
    cfg->warnings = w;
    cfg->warnings[cfg->nwarnings] = dup_n(buf, strlen(buf));
    if (!cfg->warnings[cfg->nwarnings])
        return oom(ld, line);
    cfg->nwarnings++;
    return 0;
}

static int freeze(loader *ld, cg_ruleset *rs, uint32_t line)
{
    if (cg_ruleset_freeze(rs))
        return oom(ld, line);
    cg_ruleset_stats st;
    cg_ruleset_get_stats(rs, &st);
    size_t i = 0;
    cg_conflict c;
    for (; cg_ruleset_conflict(rs, i, &c) == 0; i++) {
        char cidr[CG_CIDR_STRLEN];
        int rc = warn(ld, c.deny.file, c.deny.line,
                      "%s both allowed (%s:%u) and denied in rule set '%s'; deny wins",
                      cg_cidr_format(&c.cidr, cidr, sizeof cidr), c.allow.file,
                      (unsigned)c.allow.line, cg_ruleset_name(rs));
        if (rc)
            return rc;
    }
    if (st.conflicts > i)
        return warn(ld, ld->path, line,
                    "rule set '%s' has %zu more prefixes both allowed and denied; deny wins",
                    cg_ruleset_name(rs), st.conflicts - i);
    return 0;
}

static bool is_loopback(const cg_endpoint *ep)
{
    if (ep->addr.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ep->addr;
        return ((const uint8_t *)&sin->sin_addr)[0] == 127;
    }
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ep->addr;
    static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return memcmp(&sin6->sin6_addr, one, 16) == 0;
}

/* A listener at the end of the file: its rule set found by name, then the
 * checks of its limits and PROXY keys that need the whole section. */
static int finish_listener(loader *ld, cg_listener_conf *l, listener_build *b)
{
    cg_config *cfg = ld->cfg;
    int rc;
    long idx = cg_config_find_ruleset(cfg, b->rules ? b->rules : "default");
    if (idx < 0 && b->rules && strcmp(b->rules, "default") == 0)
        return cg__fail(ld->d, CG_ENOENT, ld->path, b->rules_line,
                        "[listener:%s] uses rule set 'default', but there is no [rules] "
                        "section",
                        l->name);
    if (idx < 0 && b->rules) {
        const char *names[CG_CONFIG_MAX_RULESETS + 1];
        for (size_t s = 0; s < cfg->nrulesets; s++)
            names[s] = cg_ruleset_name(cfg->rulesets[s]);
        names[cfg->nrulesets] = NULL;
        const char *hint = cg__suggest(b->rules, names);
        if (hint)
            return cg__fail(ld->d, CG_ENOENT, ld->path, b->rules_line,
                            "[listener:%s] uses rule set '%s', but there is no [rules:%s] "
                            "section; did you mean '%s'?",
                            l->name, b->rules, b->rules, hint);
        return cg__fail(ld->d, CG_ENOENT, ld->path, b->rules_line,
                        "[listener:%s] uses rule set '%s', but there is no [rules:%s] "
                        "section",
                        l->name, b->rules, b->rules);
    }
    if (idx < 0)
        return cg__fail(ld->d, CG_ENOENT, ld->path, l->line,
                        "[listener:%s] has no 'rules' key and there is no [rules] section "
                        "for the default rule set; add one or name a set with 'rules ='",
                        l->name);
    l->ruleset = (size_t)idx;
    rc = cg__listener_limits_check(&ld->kc, l, &b->limits);
    if (!rc)
        rc = cg__listener_proxy_finish(&ld->kc, l, &b->proxy);
    return rc;
}

/* Each set's countries and ASNs (config_geoip.c), before the sets freeze;
 * the account of each for -t into cfg->geoip. */
static int apply_geo(loader *ld)
{
    cg_config *cfg = ld->cfg;
    int rc = 0;
    cfg->geoip = calloc(cfg->nrulesets ? cfg->nrulesets : 1, sizeof *cfg->geoip);
    if (!cfg->geoip)
        return oom(ld, 0);
    for (size_t i = 0; !rc && i < cfg->nrulesets; i++)
        rc = cg__geo_finish(&ld->kc, ld->sets[i].geo, cfg->rulesets[i], cfg, ld->sets[i].line,
                            &cfg->geoip[i]);
    return rc;
}

static int finish(loader *ld, uint32_t last_line)
{
    cg_config *cfg = ld->cfg;
    int rc = close_section(ld);
    if (rc)
        return rc;

    /* "default" first, as config.h promises. */
    long def = cg_config_find_ruleset(cfg, "default");
    if (def > 0) {
        cg_ruleset *rs = cfg->rulesets[def];
        set_build sb = ld->sets[def];
        memmove(cfg->rulesets + 1, cfg->rulesets, (size_t)def * sizeof *cfg->rulesets);
        memmove(ld->sets + 1, ld->sets, (size_t)def * sizeof *ld->sets);
        cfg->rulesets[0] = rs;
        ld->sets[0] = sb;
    }

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        rc = finish_listener(ld, &cfg->listeners[i], &ld->lb[i]);
        if (rc)
            return rc;
    }

    if (!cfg->admin.allow) {
        static const char *const loopback[] = {"127.0.0.0/8", "::1"};
        cg_source src = {"(default)", 0};
        char why[CG__REASON_MAX];
        rc = admin_allow_set(ld, last_line);
        for (size_t i = 0; !rc && i < 2; i++)
            if (cg_ruleset_add_text(cfg->admin.allow, loopback[i], strlen(loopback[i]), CG_ALLOW,
                                    &src, NULL, why, sizeof why))
                rc = oom(ld, last_line);
        if (rc)
            return rc;
    }

    rc = apply_geo(ld);
    if (rc)
        return rc;
    for (size_t i = 0; i < cfg->nrulesets; i++) {
        rc = freeze(ld, cfg->rulesets[i], ld->sets[i].line);
        if (rc)
            return rc;
    }
    rc = freeze(ld, cfg->admin.allow, ld->admin_line);
    if (!rc)
        rc = cg__crowdsec_finish(&ld->kc, cfg, &ld->crowdsec);
    if (!rc)
        rc =
            cg__gateway_state_finish(&ld->kc, cfg, ld->gateway_line ? ld->gateway_line : last_line);
    if (rc)
        return rc;

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const cg_listener_conf *l = &cfg->listeners[i];
        const cg_ruleset *rs = cfg->rulesets[l->ruleset];
        cg_ruleset_stats st;
        cg_ruleset_get_stats(rs, &st);
        if (st.v4 + st.v6 == 0 && cg_ruleset_default(rs) == CG_ALLOW) {
            rc = warn(ld, ld->path, ld->lb[i].rules ? ld->lb[i].rules_line : l->line,
                      "[listener:%s] uses rule set '%s', which has no entries and default "
                      "allow: every caller is admitted",
                      l->name, cg_ruleset_name(rs));
            if (rc)
                return rc;
        }
    }
    if (cfg->admin.enabled && !is_loopback(&cfg->admin.listen))
        return warn(ld, ld->path, ld->admin_listen_line,
                    "the admin port listens on %s, not on a loopback address; only [admin] "
                    "allow keeps other hosts out",
                    cfg->admin.listen.text);
    return 0;
}

/* ------------------------------------------------------------------------
 * Public API
 */

/* One worker per processor, up to the most the gate runs. */
static unsigned cpu_count(void)
{
    unsigned n = cg__sys_cpu_count();
    return n > CG_CONFIG_MAX_WORKERS ? CG_CONFIG_MAX_WORKERS : n;
}

static int set_defaults(cg_config *cfg)
{
    cfg->workers = cpu_count();
    cfg->max_connections = 10000;
    cfg->drain_timeout_ms = 5000;
    cfg->max_bans = 1000000;
    cfg->source_table_max = 1000000;
    cfg->preview_callers = 65536;
    cfg->log_level = CG_LOG_INFO;
    cfg->log_format = CG_LOG_TEXT;
    cfg->admin.enabled = true;
    cg_endpoint *ep = &cfg->admin.listen;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ep->addr;
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, "\x7f\0\0\x01", 4);
    sin->sin_port = htons(9090);
    ep->addrlen = (socklen_t)sizeof *sin;
    strcpy(ep->text, "127.0.0.1:9090");
    return 0;
}

/* cg_config_load: see config.h. */
int cg_config_load(const char *path, cg_config **out, char *err, size_t errlen)
{
    cg__diag d = {err, errlen, 0};
    loader ld;
    char *text = NULL;
    size_t len = 0;
    uint32_t lines = 0;
    int rc, sys;

    if (err && errlen)
        err[0] = '\0';
    memset(&ld, 0, sizeof ld);
    if (!path || !path[0] || !out)
        return cg__fail(&d, CG_EINVAL, path && path[0] ? path : "(none)", 0,
                        "no configuration file given");
    if (strlen(path) >= CG_SOURCE_MAX)
        return cg__fail(&d, CG_ERANGE, "(path)", 0, "the configuration path is too long");

    ld.cfg = calloc(1, sizeof *ld.cfg);
    if (!ld.cfg)
        return cg__fail(&d, CG_ENOMEM, path, 0, "out of memory");
    ld.d = &d;
    ld.path = path;
    ld.dirlen = cg__sys_dir_len(path);
    ld.kc.d = &d;
    ld.kc.path = path;
    ld.kc.dirlen = ld.dirlen;
    ld.kc.section = ld.section;
    ld.cfg->path = dup_n(path, strlen(path));
    if (!ld.cfg->path) {
        rc = cg__fail(&d, CG_ENOMEM, path, 0, "out of memory");
        goto fail;
    }
    set_defaults(ld.cfg);

    rc = cg__read_file(path, CG_CONFIG_MAX_INI_BYTES, &text, &len, &sys);
    if (rc == CG_ERANGE)
        rc = cg__fail(&d, rc, path, 0, "the file is larger than %u MiB",
                      (unsigned)(CG_CONFIG_MAX_INI_BYTES >> 20));
    else if (rc == CG_ENOMEM)
        rc = cg__fail(&d, rc, path, 0, "out of memory");
    else if (rc)
        rc = cg__fail(&d, rc, path, 0, "cannot read the configuration: %s", cg__errno_text(sys));
    if (rc)
        goto fail;

    const cg__ini_sink sink = {on_section, on_key, &ld};
    rc = cg__ini_parse(path, text, len, &sink, &d, &lines);
    if (!rc)
        rc = finish(&ld, lines);
    if (rc)
        goto fail;

    *out = ld.cfg;
    ld.cfg = NULL;
fail:;
    size_t nsets = ld.cfg ? ld.cfg->nrulesets : (*out)->nrulesets;
    for (size_t i = 0; ld.sets && i < nsets; i++)
        cg__geo_free(ld.sets[i].geo);
    for (size_t i = 0; i < ld.nlb; i++)
        free(ld.lb[i].rules);
    free(ld.lb);
    free(ld.sets);
    free(text);
    cg_config_free(ld.cfg);
    return rc;
}

/* cg_config_free: see config.h. */
void cg_config_free(cg_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nrulesets; i++) {
        cg_ruleset_free(cfg->rulesets[i]);
        if (cfg->geoip)
            free(cfg->geoip[i]);
    }
    free(cfg->rulesets);
    free(cfg->geoip);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        free(cfg->listeners[i].name);
        free(cfg->listeners[i].backends);
        cg_ruleset_free(cfg->listeners[i].trusted_proxies);
    }
    free(cfg->listeners);
    cg_ruleset_free(cfg->admin.allow);
    free(cfg->admin.token);
    cg_ruleset_free(cfg->never_ban);
    free(cfg->state_file);
    free(cfg->takeover_socket);
    cg__crowdsec_conf_free(&cfg->crowdsec);
    for (size_t i = 0; i < cfg->nwarnings; i++)
        free(cfg->warnings[i]);
    free(cfg->warnings);
    free(cfg->path);
    free(cfg);
}

/* cg_config_find_ruleset: see config.h. */
long cg_config_find_ruleset(const cg_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->nrulesets; i++)
        if (strcmp(cg_ruleset_name(cfg->rulesets[i]), name) == 0)
            return (long)i;
    return -1;
}
