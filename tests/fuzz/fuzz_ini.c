/* fuzz_ini.c — the INI configuration (cg_config_load: inih, the loader, and
 * the JSON and list files an INI file names).
 *
 * The INI loader has no in-memory entry point (its state is private to
 * config.c), so each input is written to c.ini in a private directory on a
 * tmpfs and loaded from there. The directory also holds a few rule and list
 * files, good and bad, for `include`, `allow_file` and `deny_file` to name.
 *
 * The loader reads whatever file an INI file names, as it should for its
 * administrator; a fuzzer must not make it read /dev/stdin or a FIFO and
 * block. Inputs that could name a path outside the private directory (a
 * value starting with '/', or any "..") are skipped.
 *
 * Beyond not crashing:
 *   - a refused file gives one line "FILE:LINE: message", FILE being c.ini
 *     or a file it names, LINE inside that file;
 *   - an accepted file gives a configuration within every documented bound
 *     (PROXY keys included: accept_proxy and trusted_proxies together, no
 *     send_proxy with echo),
 *     with consistent indexes, canonical rule sets (shared rule-set checks),
 *     one-line warnings, a summary that prints, and one clean free.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "condgate/config.h"
#include "diag.h"
#include "fuzz_common.h"

#define ERR_LEN 2048

/* Files next to c.ini. Their names are in ini.dict. */
static const struct fixture {
    const char *name;
    const char *text;
} fixtures[] = {
    {"rules.json",
     "{\n  \"allow\": [\"10.0.0.0/8\", \"2001:db8::/32\"],\n"
     "  \"deny\": [\"10.66.0.0/16\"],\n"
     "  \"rules\": [\n"
     "    {\"action\": \"deny\", \"cidr\": \"198.51.100.0/24\", \"label\": \"scan\"},\n"
     "    {\"action\": \"allow\", \"cidr\": \"::ffff:192.0.2.0/120\"}\n"
     "  ]\n}\n"},
    {"bad.json", "{\n  \"allow\": [\n    \"10.0.0.0/8\",\n    \"10.1.2.3/8\"\n  ]\n}\n"},
    {"conflict.json", "{\"deny\": [\"10.0.0.0/8\", \"all\"],\n \"allow\": [\"127.0.0.0/8\"]}\n"},
    {"list.netset", "# a list\n192.0.2.0/24 ; SBL1\n198.18.0.0/15 # bench\n\r\n2001:db8::/48\n"},
    {"bad.netset", "192.0.2.0/24\n\n010.0.0.1\n"},
    {"empty", ""},
    {"geo.csv", "# from,to,CC\n16777216,16777471,AU\n10.0.0.1,10.0.0.6,DE\n"
                "2001:db8::,2001:db8::ffff,CN\n0,0,??\n"},
    {"bad.csv", "1,2,DE\n3,2,DE\n"},
    {"sub/list.netset", "\xEF\xBB\xBF"
                        "203.0.113.0/24\r\nall\r\n"},
};

static char dir[256];
static char ini[300];
static FILE *devnull;

static void cleanup(void)
{
    char p[512];
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, fixtures[i].name);
        unlink(p);
    }
    unlink(ini);
    snprintf(p, sizeof p, "%s/sub", dir);
    rmdir(p);
    rmdir(dir);
    if (devnull)
        fclose(devnull);
}

static void write_file(const char *p, const void *data, size_t len)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0, "open %s: %s", p, strerror(errno));
    const char *c = data;
    while (len > 0) {
        ssize_t n = write(fd, c, len);
        if (n < 0 && errno == EINTR)
            continue;
        FUZZ_CHECK(n > 0, "write %s: %s", p, strerror(errno));
        c += n;
        len -= (size_t)n;
    }
    close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_make_tmpdir(dir, sizeof dir, "condgate-fuzz-ini");
    snprintf(ini, sizeof ini, "%s/c.ini", dir);
    atexit(cleanup);

    char p[512];
    snprintf(p, sizeof p, "%s/sub", dir);
    FUZZ_CHECK(mkdir(p, 0700) == 0, "mkdir %s: %s", p, strerror(errno));
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, fixtures[i].name);
        write_file(p, fixtures[i].text, strlen(fixtures[i].text));
    }
    devnull = fopen("/dev/null", "w");
    FUZZ_CHECK(devnull != NULL, "/dev/null: %s", strerror(errno));
    return 0;
}

/* Could a value of this INI text name a path outside the directory? A value
 * starts after the first '=' or ':' of its line, past blanks; a relative
 * path without ".." stays inside. */
static bool may_escape(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == '.' && data[i + 1] == '.')
            return true;
    for (size_t i = 0; i < size;) {
        while (i < size && data[i] != '\n' && data[i] != '=' && data[i] != ':')
            i++;
        if (i < size && data[i] != '\n') {
            for (i++; i < size && memchr(" \t\r\f\v", data[i], 5); i++)
                ;
            if (i < size && data[i] == '/')
                return true;
        }
        while (i < size && data[i] != '\n')
            i++;
        i++;
    }
    return false;
}

/* The error names c.ini or a file in the directory, at a line inside it. */
static void check_load_error(const char *err, const char *text, size_t size)
{
    fuzz_check_one_line(err, ERR_LEN);
    size_t il = strlen(ini), dl = strlen(dir);
    if (strncmp(err, ini, il) == 0 && err[il] == ':') {
        fuzz_check_error(err, ERR_LEN, ini, 1, fuzz_lines(text, size));
        return;
    }
    FUZZ_CHECK(strncmp(err, dir, dl) == 0 && err[dl] == '/',
               "error \"%s\" names no file of the directory", err);
    const char *colon = strchr(err + dl + 1, ':');
    FUZZ_CHECK(colon != NULL, "error \"%s\" has no FILE:", err);
    char file[1024];
    FUZZ_CHECK((size_t)(colon - err) < sizeof file, "file name too long in \"%s\"", err);
    memcpy(file, err, (size_t)(colon - err));
    file[colon - err] = '\0';

    /* An error inside an included file: that file exists and is read. */
    char *data = NULL;
    size_t len = 0;
    int sys = 0;
    int rc = cg__read_file(file, CG_CONFIG_MAX_JSON_BYTES, &data, &len, &sys);
    FUZZ_CHECK(rc == 0, "error names \"%s\", which cannot be read (%d)", file, rc);
    fuzz_check_error(err, ERR_LEN, file, 1, fuzz_lines(data, len));
    free(data);
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CG_CONFIG_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.", s[i]))
            return false;
    return true;
}

static void check_endpoint(const cg_endpoint *ep, bool backend)
{
    FUZZ_CHECK(memchr(ep->text, '\0', sizeof ep->text) && ep->text[0], "endpoint text");
    fuzz_check_one_line(ep->text, sizeof ep->text);
    if (ep->addr.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ep->addr;
        FUZZ_CHECK(ep->addrlen == sizeof *sin && sin->sin_port != 0, "%s", ep->text);
        FUZZ_CHECK(!backend || sin->sin_addr.s_addr != 0, "backend %s is 0.0.0.0", ep->text);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ep->addr;
        static const uint8_t any[16];
        FUZZ_CHECK(ep->addr.ss_family == AF_INET6, "family %d", (int)ep->addr.ss_family);
        FUZZ_CHECK(ep->addrlen == sizeof *sin6 && sin6->sin6_port != 0, "%s", ep->text);
        FUZZ_CHECK(!backend || memcmp(&sin6->sin6_addr, any, 16) != 0, "backend %s is [::]",
                   ep->text);
    }
}

/* A rate is off (0/0) or within the bounds cg_rate_parse keeps. */
static void check_rate(const char *name, const char *key, const cg_rate *r)
{
    FUZZ_CHECK(r->count == 0
                   ? r->window_ms == 0
                   : r->count <= CG_CONFIG_MAX_RATE && r->window_ms >= 1000 &&
                         r->window_ms <= CG_CONFIG_MAX_WINDOW_MS && r->window_ms % 1000 == 0,
               "listener %s: %s %u/%ums", name, key, (unsigned)r->count, (unsigned)r->window_ms);
}

static void check_limits(const cg_listener_conf *l)
{
    const cg_source_limits *s = &l->sources;
    FUZZ_CHECK(l->mode == CG_MODE_ENFORCE || l->mode == CG_MODE_SHADOW, "listener %s mode %d",
               l->name, (int)l->mode);
    FUZZ_CHECK(s->max_per_source <= CG_CONFIG_MAX_CONNECTIONS, "listener %s max_per_source %u",
               l->name, (unsigned)s->max_per_source);
    check_rate(l->name, "rate_per_source", &s->rate);
    check_rate(l->name, "ban_after", &s->ban_after);
    FUZZ_CHECK(s->ban_after.count == 0 || s->rate.count != 0,
               "listener %s: ban_after without rate_per_source", l->name);
    FUZZ_CHECK(s->prefix4 <= 32 && s->prefix6 <= 128, "listener %s source_prefix %u,%u", l->name,
               (unsigned)s->prefix4, (unsigned)s->prefix6);
    FUZZ_CHECK(s->ban_ttl_s >= 1 && s->ban_ttl_s <= s->ban_ttl_max_s &&
                   s->ban_ttl_max_s <= CG_CONFIG_MAX_BAN_TTL_S,
               "listener %s ban_ttl_s %u..%u", l->name, (unsigned)s->ban_ttl_s,
               (unsigned)s->ban_ttl_max_s);
}

/* The PROXY keys (SPEC §13): accept_proxy and trusted_proxies come
 * together, the set is a frozen default-deny set of at most
 * CG_CONFIG_MAX_TRUSTED_PROXIES allow entries from c.ini, send_proxy never
 * goes with echo. */
static void check_proxy(const cg_listener_conf *l, uint32_t lines, const fuzz_sources *src)
{
    FUZZ_CHECK(l->accept_proxy <= CG_ACCEPT_PROXY_ANY && l->send_proxy <= 2,
               "listener %s: accept_proxy %u send_proxy %u", l->name, l->accept_proxy,
               l->send_proxy);
    FUZZ_CHECK(l->proxy_timeout_ms >= 1 && l->proxy_timeout_ms <= 86400000u,
               "listener %s: proxy_timeout_ms %u", l->name, (unsigned)l->proxy_timeout_ms);
    FUZZ_CHECK(!l->send_proxy || !l->echo, "listener %s: send_proxy with echo", l->name);
    FUZZ_CHECK((l->accept_proxy != 0) == (l->trusted_proxies != NULL) &&
                   (l->trusted_proxies != NULL) == (l->trusted_proxies_line != 0) &&
                   l->trusted_proxies_line <= lines,
               "listener %s: accept_proxy %u, trusted_proxies %p at line %u", l->name,
               l->accept_proxy, (void *)l->trusted_proxies, (unsigned)l->trusted_proxies_line);
    if (!l->trusted_proxies)
        return;
    char name[64];
    snprintf(name, sizeof name, "trusted:%s", l->name);
    FUZZ_CHECK(strcmp(cg_ruleset_name(l->trusted_proxies), name) == 0 &&
                   cg_ruleset_default(l->trusted_proxies) == CG_DENY,
               "listener %s: trusted_proxies set %s", l->name, cg_ruleset_name(l->trusted_proxies));
    size_t n = fuzz_check_ruleset(l->trusted_proxies, src);
    FUZZ_CHECK(n >= 1 && n <= CG_CONFIG_MAX_TRUSTED_PROXIES,
               "listener %s: %zu trusted_proxies entries", l->name, n);
    for (size_t r = 0; r < n; r++) {
        cg_rule_info info;
        FUZZ_CHECK(cg_ruleset_rule(l->trusted_proxies, (cg_rule_id)r, &info) == 0 &&
                       info.action == CG_ALLOW,
                   "listener %s: trusted_proxies entry %zu is not an allow entry", l->name, r);
    }
}

static void check_config(const cg_config *cfg, uint32_t lines)
{
    /* Entries come from c.ini (at one of its lines) or from a file next to
     * it; the admin set's defaults come from nowhere. */
    char prefix[sizeof dir + 1];
    snprintf(prefix, sizeof prefix, "%s/", dir);
    const char *files[1] = {ini};
    fuzz_sources src = {files, &lines, 1, prefix};

    FUZZ_CHECK(strcmp(cfg->path, ini) == 0, "path %s", cfg->path);
    FUZZ_CHECK(cfg->workers >= 1 && cfg->workers <= CG_CONFIG_MAX_WORKERS, "workers %u",
               cfg->workers);
    FUZZ_CHECK(cfg->max_connections >= 1 && cfg->max_connections <= CG_CONFIG_MAX_CONNECTIONS,
               "max_connections %u", cfg->max_connections);
    FUZZ_CHECK(cfg->drain_timeout_ms >= 1 && cfg->drain_timeout_ms <= 86400000u, "drain %u",
               (unsigned)cfg->drain_timeout_ms);
    FUZZ_CHECK(cfg->log_level <= CG_LOG_DEBUG && cfg->log_format <= CG_LOG_JSON, "log settings");

    FUZZ_CHECK(cfg->nrulesets <= CG_CONFIG_MAX_RULESETS, "%zu rule sets", cfg->nrulesets);
    for (size_t i = 0; i < cfg->nrulesets; i++) {
        const char *name = cg_ruleset_name(cfg->rulesets[i]);
        FUZZ_CHECK(valid_name(name), "rule set name \"%s\"", name);
        FUZZ_CHECK(cg_config_find_ruleset(cfg, name) == (long)i, "rule set %s found elsewhere",
                   name);
        FUZZ_CHECK(strcmp(name, "default") != 0 || i == 0, "rule set default at %zu", i);
        fuzz_check_ruleset(cfg->rulesets[i], &src);
    }

    FUZZ_CHECK(cfg->nlisteners <= CG_CONFIG_MAX_LISTENERS, "%zu listeners", cfg->nlisteners);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const cg_listener_conf *l = &cfg->listeners[i];
        FUZZ_CHECK(valid_name(l->name), "listener name \"%s\"", l->name);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(cfg->listeners[j].name, l->name) != 0, "listener %s twice", l->name);
        FUZZ_CHECK(l->ruleset < cfg->nrulesets, "listener %s uses set %zu of %zu", l->name,
                   l->ruleset, cfg->nrulesets);
        FUZZ_CHECK(l->echo ? l->nbackends == 0 && l->backends == NULL
                           : l->nbackends >= 1 && l->nbackends <= CG_CONFIG_MAX_BACKENDS,
                   "listener %s: echo %d with %zu backends", l->name, (int)l->echo, l->nbackends);
        FUZZ_CHECK(l->connect_timeout_ms >= 1 && l->connect_timeout_ms <= 86400000u &&
                       l->idle_timeout_ms >= 1 && l->idle_timeout_ms <= 86400000u,
                   "listener %s timeouts", l->name);
        check_endpoint(&l->bind, false);
        for (size_t b = 0; b < l->nbackends; b++)
            check_endpoint(&l->backends[b], true);
        check_limits(l);
        check_proxy(l, lines, &src);
    }

    FUZZ_CHECK(cfg->never_ban != NULL, "no never_ban set");
    fuzz_check_ruleset(cfg->never_ban, NULL);
    FUZZ_CHECK(cfg->max_bans >= 1 && cfg->max_bans <= CG_CONFIG_MAX_BANS, "max_bans %u",
               (unsigned)cfg->max_bans);
    FUZZ_CHECK(cfg->source_table_max >= 1 && cfg->source_table_max <= CG_CONFIG_MAX_SOURCES,
               "source_table_max %u", (unsigned)cfg->source_table_max);
    FUZZ_CHECK(cfg->preview_callers <= CG_CONFIG_MAX_PREVIEW, "preview_callers %u",
               (unsigned)cfg->preview_callers);
    FUZZ_CHECK(
        (cfg->state_file == NULL) == (cfg->state_file_line == 0) && cfg->state_file_line <= lines &&
            (!cfg->state_file || (cfg->state_file[0] && strlen(cfg->state_file) < CG_SOURCE_MAX)),
        "state_file %s at line %u", cfg->state_file ? cfg->state_file : "(none)",
        (unsigned)cfg->state_file_line);

    FUZZ_CHECK(cfg->admin.allow != NULL, "no admin allow set");
    fuzz_check_ruleset(cfg->admin.allow, NULL);
    if (cfg->admin.enabled)
        check_endpoint(&cfg->admin.listen, false);
    if (cfg->admin.token) {
        size_t n = strlen(cfg->admin.token);
        FUZZ_CHECK(n >= 1 && n <= CG_CONFIG_MAX_TOKEN, "token of %zu bytes", n);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(cfg->admin.token[i] > 0x20 && cfg->admin.token[i] < 0x7f,
                       "token byte 0x%02x", (unsigned char)cfg->admin.token[i]);
    }

    for (size_t i = 0; i < cfg->nwarnings; i++) {
        const char *w = cfg->warnings[i];
        fuzz_check_one_line(w, strlen(w) + 1);
        FUZZ_CHECK(strstr(w, ": warning: ") != NULL, "warning \"%s\"", w);
        FUZZ_CHECK(strncmp(w, dir, strlen(dir)) == 0, "warning names no file of ours: \"%s\"", w);
    }
    FUZZ_CHECK(cg_config_print(cfg, devnull) == 0, "cg_config_print failed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (may_escape(data, size))
        return -1;
    write_file(ini, data, size);

    char err[ERR_LEN];
    memset(err, 0xa5, sizeof err);
    cg_config *cfg = NULL;
    int rc = cg_config_load(ini, &cfg, err, sizeof err);
    if (rc) {
        FUZZ_CHECK(rc < 0 && cfg == NULL, "returned %d with a configuration", rc);
        check_load_error(err, (const char *)data, size);
    } else {
        FUZZ_CHECK(cfg != NULL, "success without a configuration");
        FUZZ_CHECK(err[0] == '\0', "success with an error \"%.80s\"", err);
        check_config(cfg, fuzz_lines((const char *)data, size));
    }
    cg_config_free(cfg);
    return 0;
}
