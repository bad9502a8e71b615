/* test_config.c — configuration loading: the shipped sample, valid fixtures
 * written to a temporary directory, and the golden error messages of
 * tests/golden (NAME.ini + NAME.expected: the exact one-line error; NAME.ini +
 * NAME.warnings: loads, with exactly these warnings).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* chdir, getcwd (mingw-w64 has them too) */

#include "condgate/config.h"
#include "testsys.h"

#define GOLDEN_DIR CG_TEST_DATA_DIR "/golden"
#define SAMPLE_INI CG_TEST_DATA_DIR "/../config/condgate.ini"

static char tmpdir[512];

/* ---- helpers ------------------------------------------------------------ */

static void write_file(const char *name, const char *data, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    /* Create parent directories named in `name`. */
    for (char *p = path + strlen(tmpdir) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            ts_mkdir(path);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_text(const char *name, const char *text)
{
    write_file(name, text, strlen(text));
}

/* load: cg_config_load of tmpdir/name; fails the test on error. */
static cg_config *load(const char *name)
{
    char path[PATH_MAX], err[1024];
    cg_config *cfg = NULL;
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    int rc = cg_config_load(path, &cfg, err, sizeof err);
    if (rc != 0)
        fail_msg("%s: unexpected error %d: %s", name, rc, err);
    assert_non_null(cfg);
    return cfg;
}

/* load_error: the error message of loading tmpdir/name (must fail). */
static void load_error(const char *name, char *err, size_t errlen)
{
    char path[PATH_MAX];
    cg_config *cfg = (cg_config *)(uintptr_t)0x1; /* must stay untouched */
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    int rc = cg_config_load(path, &cfg, err, errlen);
    assert_true(rc < 0);
    assert_ptr_equal(cfg, (cg_config *)(uintptr_t)0x1);
}

static cg_ruleset_stats stats_of(const cg_ruleset *rs)
{
    cg_ruleset_stats st;
    cg_ruleset_get_stats(rs, &st);
    return st;
}

/* verdict: the verdict of set rs for address text, and its entry. */
static cg_action verdict(const cg_ruleset *rs, const char *addr, cg_rule_info *info)
{
    cg_cidr a;
    char err[128];
    cg_rule_id id;
    assert_int_equal(cg_cidr_parse(addr, strlen(addr), &a, err, sizeof err), 0);
    cg_action v = cg_ruleset_lookup(rs, &a, &id);
    if (info) {
        memset(info, 0, sizeof *info);
        if (id != CG_RULE_NONE)
            assert_int_equal(cg_ruleset_rule(rs, id, info), 0);
    }
    return v;
}

static unsigned port_of(const cg_endpoint *ep)
{
    if (ep->addr.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&ep->addr)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&ep->addr)->sin6_port);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

static int setup(void **state)
{
    (void)state;
    return ts_mkdtemp(tmpdir, sizeof tmpdir, "cg-config");
}

static int teardown(void **state)
{
    (void)state;
    return ts_rmtree(tmpdir);
}

/* ---- the shipped sample --------------------------------------------------- */

static void test_sample_config(void **state)
{
    (void)state;
    char err[1024];
    cg_config *cfg = NULL;
    int rc = cg_config_load(SAMPLE_INI, &cfg, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(cfg->nwarnings, 0);
    assert_int_equal(cfg->workers, 2);
    assert_int_equal(cfg->max_connections, 10000);
    assert_true(cfg->admin.enabled);
    assert_string_equal(cfg->admin.listen.text, "127.0.0.1:9090");
    assert_null(cfg->admin.token);
    /* SPEC §11: the shipped config keeps bans in a file next to it. */
    assert_non_null(cfg->state_file);
    assert_non_null(strstr(cfg->state_file, "config/condgate.state.json"));
    assert_int_equal(verdict(cfg->never_ban, "127.0.0.1", NULL), CG_ALLOW);

    assert_int_equal(cfg->nrulesets, 2);
    assert_string_equal(cg_ruleset_name(cfg->rulesets[0]), "default");
    assert_int_equal(cg_config_find_ruleset(cfg, "office"), 1);
    cg_ruleset_stats st = stats_of(cfg->rulesets[0]);
    /* INI 127/8, 127.0.0.66 + JSON 10/8, 192.168/16, 10.66/16, 10.66.1.7, 198.51.100/24
     * + list 192.0.2/24, 198.18/15, 203.0.113.99; v6: ::1, fd00::/8,
     * 2001:db8:bad::/48, 2001:db8:dead::/48. */
    assert_int_equal(st.v4, 10);
    assert_int_equal(st.v6, 4);
    assert_int_equal(st.conflicts, 0);
    st = stats_of(cfg->rulesets[1]);
    assert_int_equal(st.v4, 2);
    assert_int_equal(st.v6, 1);

    cg_rule_info info;
    assert_int_equal(verdict(cfg->rulesets[0], "10.66.1.7", &info), CG_ALLOW);
    assert_string_equal(info.label, "build-server");
    assert_non_null(strstr(info.file, "config/rules.json"));
    assert_int_equal(verdict(cfg->rulesets[0], "10.66.2.2", NULL), CG_DENY);
    assert_int_equal(verdict(cfg->rulesets[0], "10.1.1.1", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->rulesets[0], "198.18.5.5", &info), CG_DENY);
    assert_non_null(strstr(info.file, "config/blocklist.netset"));
    assert_int_equal(verdict(cfg->rulesets[0], "8.8.8.8", NULL), CG_DENY);
    assert_int_equal(verdict(cfg->rulesets[0], "127.0.0.1", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->rulesets[0], "127.0.0.66", &info), CG_DENY);
    assert_null(info.label);

    assert_int_equal(cfg->nlisteners, 1);
    const cg_listener_conf *l = &cfg->listeners[0];
    assert_string_equal(l->name, "echo");
    assert_true(l->echo);
    assert_int_equal(l->nbackends, 0);
    assert_int_equal(l->ruleset, 0);
    assert_string_equal(l->bind.text, "127.0.0.1:7000");
    assert_int_equal(port_of(&l->bind), 7000);
    cg_config_free(cfg);
}

/* ---- valid fixtures -------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    write_text("defaults.ini", "[rules]\n"
                               "\n"
                               "[listener:web]\n"
                               "bind = 0.0.0.0:8080\n"
                               "backend = 127.0.0.1:8081\n");
    cg_config *cfg = load("defaults.ini");
    assert_true(cfg->workers >= 1 && cfg->workers <= CG_CONFIG_MAX_WORKERS);
    assert_int_equal(cfg->max_connections, 10000);
    assert_int_equal(cfg->drain_timeout_ms, 5000);
    assert_int_equal(cfg->log_level, CG_LOG_INFO);
    assert_int_equal(cfg->log_format, CG_LOG_TEXT);
    assert_true(cfg->admin.enabled);
    assert_string_equal(cfg->admin.listen.text, "127.0.0.1:9090");
    assert_int_equal(port_of(&cfg->admin.listen), 9090);
    /* The admin port admits loopback callers only. */
    assert_non_null(cfg->admin.allow);
    assert_int_equal(verdict(cfg->admin.allow, "127.0.0.1", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->admin.allow, "127.3.2.1", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->admin.allow, "::1", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->admin.allow, "10.0.0.1", NULL), CG_DENY);
    assert_int_equal(verdict(cfg->admin.allow, "::2", NULL), CG_DENY);
    /* An empty [rules] denies everyone, and that is no warning. */
    assert_int_equal(cg_ruleset_default(cfg->rulesets[0]), CG_DENY);
    assert_int_equal(cfg->nwarnings, 0);
    const cg_listener_conf *l = &cfg->listeners[0];
    assert_int_equal(l->connect_timeout_ms, 3000);
    assert_int_equal(l->idle_timeout_ms, 300000);
    assert_int_equal(l->nbackends, 1);
    assert_false(l->echo);
    assert_int_equal(l->backends[0].addr.ss_family, AF_INET);
    assert_int_equal(port_of(&l->backends[0]), 8081);
    assert_int_equal(l->line, 3);
    cg_config_free(cfg);
}

static void test_everything_set(void **state)
{
    (void)state;
    write_text("full.ini", "; every key once\n"
                           "[gateway]\n"
                           "workers = 64\n"
                           "max_connections = 1000000\n"
                           "drain_timeout_ms = 86400000\n"
                           "log_level = debug\n"
                           "log_format = json\n"
                           "[admin]\n"
                           "listen = [::1]:9191\n"
                           "allow = 10.0.0.0/8, 2001:db8::/32\n"
                           "allow = 192.0.2.1\n"
                           "token = s3cret-Token_1.2~+/=\n"
                           "[listener:api]\n"
                           "bind = [::]:8443\n"
                           "backend = 127.0.0.1:9001, [::1]:9002\n"
                           "backend = 192.0.2.10:9003\n"
                           "rules = office\n"
                           "connect_timeout_ms = 1\n"
                           "idle_timeout_ms = 86400000\n"
                           "[rules:office]\n"
                           "default = allow\n"
                           "deny = 198.51.100.0/24\n");
    cg_config *cfg = load("full.ini");
    assert_int_equal(cfg->workers, 64);
    assert_int_equal(cfg->max_connections, 1000000);
    assert_int_equal(cfg->drain_timeout_ms, 86400000);
    assert_int_equal(cfg->log_level, CG_LOG_DEBUG);
    assert_int_equal(cfg->log_format, CG_LOG_JSON);
    assert_string_equal(cfg->admin.listen.text, "[::1]:9191");
    assert_int_equal(cfg->admin.listen.addr.ss_family, AF_INET6);
    assert_int_equal(port_of(&cfg->admin.listen), 9191);
    assert_string_equal(cfg->admin.token, "s3cret-Token_1.2~+/=");
    /* Given allow entries replace the loopback default. */
    assert_int_equal(verdict(cfg->admin.allow, "127.0.0.1", NULL), CG_DENY);
    assert_int_equal(verdict(cfg->admin.allow, "10.9.9.9", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->admin.allow, "192.0.2.1", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->admin.allow, "2001:db8::5", NULL), CG_ALLOW);

    const cg_listener_conf *l = &cfg->listeners[0];
    assert_string_equal(l->bind.text, "[::]:8443");
    assert_int_equal(l->bind.addr.ss_family, AF_INET6);
    assert_int_equal(l->bind.addrlen, sizeof(struct sockaddr_in6));
    assert_int_equal(port_of(&l->bind), 8443);
    assert_int_equal(l->nbackends, 3);
    assert_string_equal(l->backends[0].text, "127.0.0.1:9001");
    assert_string_equal(l->backends[1].text, "[::1]:9002");
    assert_int_equal(l->backends[1].addr.ss_family, AF_INET6);
    assert_string_equal(l->backends[2].text, "192.0.2.10:9003");
    assert_int_equal(l->connect_timeout_ms, 1);
    assert_int_equal(l->idle_timeout_ms, 86400000);
    /* No [rules]: the only set is "office" and the listener uses it. */
    assert_int_equal(cfg->nrulesets, 1);
    assert_int_equal(cg_config_find_ruleset(cfg, "default"), -1);
    assert_string_equal(cg_ruleset_name(cfg->rulesets[l->ruleset]), "office");
    assert_int_equal(verdict(cfg->rulesets[0], "8.8.8.8", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->rulesets[0], "198.51.100.9", NULL), CG_DENY);
    assert_int_equal(cfg->nwarnings, 0);
    cg_config_free(cfg);
}

static void test_default_set_first(void **state)
{
    (void)state;
    write_text("order.ini", "[rules:a]\nallow = 10.0.0.0/8\n"
                            "[rules:b]\nallow = 10.1.0.0/16\n"
                            "[listener:x]\nbind = 127.0.0.1:1\nbackend = echo\nrules = b\n"
                            "[rules]\nallow = 10.2.0.0/16\n"
                            "[listener:y]\nbind = 127.0.0.1:2\nbackend = echo\n");
    cg_config *cfg = load("order.ini");
    assert_int_equal(cfg->nrulesets, 3);
    assert_string_equal(cg_ruleset_name(cfg->rulesets[0]), "default");
    assert_string_equal(cg_ruleset_name(cfg->rulesets[1]), "a");
    assert_string_equal(cg_ruleset_name(cfg->rulesets[2]), "b");
    assert_string_equal(cg_ruleset_name(cfg->rulesets[cfg->listeners[0].ruleset]), "b");
    assert_int_equal(cfg->listeners[1].ruleset, 0);
    cg_config_free(cfg);
}

static void test_list_file(void **state)
{
    (void)state;
    /* A byte order mark, CRLF, tabs, '#' and ';' comments, blank lines, a
     * last line without a newline. */
    static const char list[] = "\xEF\xBB\xBF# FireHOL style header\r\n"
                               "#\r\n"
                               "1.0.1.0/24\r\n"
                               "\t1.0.2.0/23  \r\n"
                               "\r\n"
                               "   \r\n"
                               "2.56.192.0/22 ; SBL459831\r\n"
                               "5.8.37.0/24;SBL123\r\n"
                               "2001:db8:1::/48 # v6 entry\r\n"
                               "1.0.1.0/24\r\n"
                               "192.0.2.7";
    write_file("lists/drop.txt", list, sizeof list - 1);
    write_text("lists/partners.txt", "203.0.113.0/24\n");
    write_text("list.ini", "[rules]\n"
                           "default = allow\n"
                           "deny_file = lists/drop.txt\n"
                           "allow_file = lists/partners.txt\n");
    cg_config *cfg = load("list.ini");
    cg_ruleset_stats st = stats_of(cfg->rulesets[0]);
    assert_int_equal(st.v4, 6);
    assert_int_equal(st.v6, 1);
    assert_int_equal(st.duplicates, 1);
    cg_rule_info info;
    assert_int_equal(verdict(cfg->rulesets[0], "1.0.3.1", &info), CG_DENY);
    assert_int_equal(info.line, 4);
    char want[PATH_MAX];
    snprintf(want, sizeof want, "%s/lists/drop.txt", tmpdir);
    assert_string_equal(info.file, want);
    assert_int_equal(verdict(cfg->rulesets[0], "5.8.37.200", &info), CG_DENY);
    assert_int_equal(info.line, 8);
    assert_int_equal(verdict(cfg->rulesets[0], "192.0.2.7", &info), CG_DENY);
    assert_int_equal(info.line, 11);
    assert_int_equal(verdict(cfg->rulesets[0], "1.0.1.1", &info), CG_DENY);
    assert_int_equal(info.line, 3); /* the first source is kept */
    assert_int_equal(verdict(cfg->rulesets[0], "203.0.113.5", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->rulesets[0], "9.9.9.9", NULL), CG_ALLOW);
    cg_config_free(cfg);
}

static void test_json_file(void **state)
{
    (void)state;
    write_text("rules/main.json", "{\n"
                                  "  \"allow\": [\"10.0.0.0/8\",\n"
                                  "            \"2001:db8::/32\"],\n"
                                  "  \"deny\": [\n"
                                  "    \"10.66.0.0/16\"\n"
                                  "  ],\n"
                                  "  \"rules\": [\n"
                                  "    {\"action\": \"deny\", \"cidr\": \"198.51.100.0/24\",\n"
                                  "     \"label\": \"scanner-net\"},\n"
                                  "    {\n"
                                  "      \"label\": \"build \\\"server\\\" \\u00e9\",\n"
                                  "      \"action\": \"allow\",\n"
                                  "      \"cidr\": \"10.66.1.7\"\n"
                                  "    }\n"
                                  "  ]\n"
                                  "}\n");
    write_text("rules/empty.json", "{}");
    write_text("sub/json.ini", "[rules]\n"
                               "include = ../rules/main.json\n"
                               "include = ../rules/empty.json\n");
    cg_config *cfg = load("sub/json.ini");
    const cg_ruleset *rs = cfg->rulesets[0];
    cg_rule_info info;
    char want[PATH_MAX];
    snprintf(want, sizeof want, "%s/sub/../rules/main.json", tmpdir);

    assert_int_equal(verdict(rs, "10.1.1.1", &info), CG_ALLOW);
    assert_string_equal(info.file, want);
    assert_int_equal(info.line, 2);
    assert_null(info.label);
    assert_int_equal(verdict(rs, "2001:db8::1", &info), CG_ALLOW);
    assert_int_equal(info.line, 3);
    assert_int_equal(verdict(rs, "10.66.2.2", &info), CG_DENY);
    assert_int_equal(info.line, 5);
    assert_int_equal(verdict(rs, "198.51.100.1", &info), CG_DENY);
    assert_int_equal(info.line, 8);
    assert_string_equal(info.label, "scanner-net");
    assert_int_equal(verdict(rs, "10.66.1.7", &info), CG_ALLOW);
    assert_int_equal(info.line, 13);
    assert_string_equal(info.label, "build \"server\" \xc3\xa9");
    cg_config_free(cfg);
}

static void test_repeated_keys_and_all(void **state)
{
    (void)state;
    write_text("repeat.ini", "[rules]\n"
                             "allow = all\n"
                             "deny = 10.0.0.0/8 , 10.1.0.0/16\t,10.2.0.0/16\n"
                             "deny = 10.3.0.0/16\n"
                             "deny = 10.3.0.0/16 ; the same again: merged\n"
                             "allow: 192.0.2.0/24\n");
    cg_config *cfg = load("repeat.ini");
    cg_ruleset_stats st = stats_of(cfg->rulesets[0]);
    assert_int_equal(st.v4, 6); /* 0/0, 10/8, 10.1/16, 10.2/16, 10.3/16, 192.0.2/24 */
    assert_int_equal(st.v6, 1); /* ::/0 */
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(verdict(cfg->rulesets[0], "8.8.8.8", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->rulesets[0], "2001:db8::1", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->rulesets[0], "10.2.3.4", NULL), CG_DENY);
    cg_config_free(cfg);
}

static void test_warnings(void **state)
{
    (void)state;
    write_text("warn.json", "{\"allow\": [\"10.0.0.0/8\"]}\n");
    write_text("warn.ini", "[admin]\n"
                           "listen = [::]:9090\n"
                           "[rules]\n"
                           "deny = 10.0.0.0/8\n"
                           "include = warn.json\n"
                           "[rules:open]\n"
                           "default = allow\n"
                           "[listener:a]\n"
                           "bind = 127.0.0.1:1\n"
                           "backend = echo\n"
                           "rules = open\n");
    cg_config *cfg = load("warn.ini");
    char w[3][PATH_MAX + 256];
    snprintf(w[0], sizeof w[0],
             "%s/warn.ini:4: warning: 10.0.0.0/8 both allowed (%s/warn.json:1) and denied in "
             "rule set 'default'; deny wins",
             tmpdir, tmpdir);
    snprintf(w[1], sizeof w[1],
             "%s/warn.ini:11: warning: [listener:a] uses rule set 'open', which has no entries "
             "and default allow: every caller is admitted",
             tmpdir);
    snprintf(w[2], sizeof w[2],
             "%s/warn.ini:2: warning: the admin port listens on [::]:9090, not on a loopback "
             "address; only [admin] allow keeps other hosts out",
             tmpdir);
    assert_int_equal(cfg->nwarnings, 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(cfg->warnings[i], w[i]);
    assert_int_equal(stats_of(cfg->rulesets[0]).conflicts, 1);
    assert_int_equal(verdict(cfg->rulesets[0], "10.1.1.1", NULL), CG_DENY);
    cg_config_free(cfg);
}

static void test_admin_off(void **state)
{
    (void)state;
    write_text("off.ini", "[admin]\nlisten = off\ntoken = x\n");
    cg_config *cfg = load("off.ini");
    assert_false(cfg->admin.enabled);
    assert_non_null(cfg->admin.allow);
    assert_string_equal(cfg->admin.token, "x");
    assert_int_equal(cfg->nlisteners, 0);
    assert_int_equal(cfg->nwarnings, 0);
    cg_config_free(cfg);
}

#ifdef CG_HAVE_CROWDSEC
#include <sys/stat.h>

/* [crowdsec]: values, defaults, the key trimmed from the first line, and a
 * warning when others may read the key file. */
static void test_crowdsec_section(void **state)
{
    (void)state;
    char path[PATH_MAX];
    write_text("cs.key", "  key-123\t\nsecond line\n");
    snprintf(path, sizeof path, "%s/cs.key", tmpdir);
    assert_int_equal(chmod(path, 0600), 0);
    write_text("cs.ini", "[crowdsec]\nurl = https://lapi.example:8080//\napi_key_file = cs.key\n"
                         "interval_ms = 250\n");
    cg_config *cfg = load("cs.ini");
    const cg_crowdsec_conf *cs = &cfg->crowdsec;
    assert_true(cs->enabled);
    assert_int_equal(cs->line, 1);
    assert_string_equal(cs->url, "https://lapi.example:8080");
    assert_string_equal(cs->key, "key-123");
    assert_string_equal(cs->key_file, path);
    assert_int_equal(cs->interval_ms, 250);
    assert_int_equal(cs->timeout_ms, 5000);
    assert_int_equal(cfg->nwarnings, 0);
    cg_config_free(cfg);

    assert_int_equal(chmod(path, 0640), 0);
    cfg = load("cs.ini");
    assert_int_equal(cfg->nwarnings, 1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/cs.ini:3: warning: 'api_key_file'", tmpdir);
    assert_memory_equal(cfg->warnings[0], want, strlen(want));
    assert_non_null(strstr(cfg->warnings[0], "may be read by other users (mode 640)"));
    cg_config_free(cfg);

    /* Without the section: off. */
    write_text("nocs.ini", "[admin]\nlisten = off\n");
    cfg = load("nocs.ini");
    assert_false(cfg->crowdsec.enabled);
    assert_null(cfg->crowdsec.url);
    cg_config_free(cfg);
}
#endif

static void test_line_limit(void **state)
{
    (void)state;
    /* The longest line inih takes without splitting it works as written;
     * one character more is an error naming the line. */
    char ini[1024], line[512];
    int n = snprintf(line, sizeof line, "allow = 10.0.0.0/8 ; ");
    while (n < 198)
        line[n++] = 'x';
    line[n] = '\0';
    snprintf(ini, sizeof ini, "[rules]\n%s\n", line);
    write_text("limit.ini", ini);
    cg_config *cfg = load("limit.ini");
    cg_config_free(cfg);

    snprintf(ini, sizeof ini, "[rules]\n%s1\n", line);
    write_text("limit2.ini", ini);
    char err[1024], want[PATH_MAX + 256];
    load_error("limit2.ini", err, sizeof err);
    snprintf(want, sizeof want,
             "%s/limit2.ini:2: line longer than 198 characters; split the list over repeated "
             "'allow =' keys or use allow_file",
             tmpdir);
    assert_string_equal(err, want);
}

static void test_missing_ini(void **state)
{
    (void)state;
    char err[1024], want[PATH_MAX + 128];
    load_error("nothere.ini", err, sizeof err);
    snprintf(want, sizeof want,
             "%s/nothere.ini:0: cannot read the configuration: no such file or directory", tmpdir);
    assert_string_equal(err, want);

    /* A directory is no configuration either. */
    assert_int_equal(ts_mkdir(strcat(strcpy(want, tmpdir), "/dir.ini")), 0);
    load_error("dir.ini", err, sizeof err);
    assert_non_null(strstr(err, "dir.ini:0: cannot read the configuration: is a directory"));
}

static void test_small_error_buffer(void **state)
{
    (void)state;
    write_text("small.ini", "[gatway]\n");
    char err[8];
    memset(err, 'x', sizeof err);
    load_error("small.ini", err, sizeof err);
    assert_int_equal(strlen(err), sizeof err - 1);
    load_error("small.ini", NULL, 0);
}

static void test_big_list(void **state)
{
    (void)state;
    /* 200,000 lines of distinct /24s, a comment every 1000 lines. */
    size_t cap = 200000 * 24, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (unsigned i = 0; i < 200000; i++) {
        if (i % 1000 == 0)
            n += (size_t)snprintf(buf + n, cap - n, "# block %u\n", i);
        else
            n += (size_t)snprintf(buf + n, cap - n, "%u.%u.%u.0/24\n", 1 + (i >> 16),
                                  (i >> 8) & 255, i & 255);
    }
    write_file("big.netset", buf, n);
    free(buf);
    write_text("big.ini", "[rules]\ndeny_file = big.netset\n");
    uint64_t t0 = ts_now_us();
    cg_config *cfg = load("big.ini");
    print_message("200,000-line list loaded in %.3f s\n", (double)(ts_now_us() - t0) / 1e6);
    assert_int_equal(stats_of(cfg->rulesets[0]).v4, 200000 - 200);
    cg_config_free(cfg);
}

/* ---- dynamic state: bans, per-source limits, preview (SPEC §11, §12, §14) -- */

static void test_state_defaults(void **state)
{
    (void)state;
    write_text("sdef.ini", "[rules]\n"
                           "[listener:web]\n"
                           "bind = 127.0.0.1:8080\n"
                           "backend = echo\n");
    cg_config *cfg = load("sdef.ini");
    /* never_ban protects exactly 127.0.0.1 and ::1. */
    assert_non_null(cfg->never_ban);
    assert_string_equal(cg_ruleset_name(cfg->never_ban), "never_ban");
    assert_int_equal(cg_ruleset_default(cfg->never_ban), CG_DENY);
    assert_int_equal(verdict(cfg->never_ban, "127.0.0.1", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->never_ban, "::1", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->never_ban, "127.0.0.2", NULL), CG_DENY);
    assert_int_equal(verdict(cfg->never_ban, "::2", NULL), CG_DENY);
    assert_int_equal(verdict(cfg->never_ban, "10.0.0.1", NULL), CG_DENY);
    assert_int_equal(stats_of(cfg->never_ban).v4, 1);
    assert_int_equal(stats_of(cfg->never_ban).v6, 1);
    assert_null(cfg->state_file);
    assert_int_equal(cfg->state_file_line, 0);
    assert_int_equal(cfg->max_bans, 1000000);
    assert_int_equal(cfg->source_table_max, 1000000);
    assert_int_equal(cfg->preview_callers, 65536);

    const cg_listener_conf *l = &cfg->listeners[0];
    assert_int_equal(l->mode, CG_MODE_ENFORCE);
    assert_false(cg_source_limits_on(&l->sources));
    assert_int_equal(l->sources.max_per_source, 0);
    assert_int_equal(l->sources.rate.count, 0);
    assert_int_equal(l->sources.prefix4, 32);
    assert_int_equal(l->sources.prefix6, 64);
    assert_int_equal(l->sources.ban_after.count, 0);
    assert_int_equal(l->sources.ban_ttl_s, 600);
    assert_int_equal(l->sources.ban_ttl_max_s, 86400);
    assert_int_equal(cfg->nwarnings, 0);
    cg_config_free(cfg);
}

static const char state_ini[] = "[gateway]\n"
                                "never_ban = 10.0.0.0/8, 2001:db8::/32\n"
                                "state_file = state/bans.json\n"
                                "never_ban = 192.0.2.1\n"
                                "max_bans = 16777216\n"
                                "source_table_max = 1\n"
                                "preview_callers = 0\n"
                                "[rules]\n"
                                "[listener:web]\n"
                                "bind = 127.0.0.1:8080\n"
                                "backend = echo\n"
                                "mode = shadow\n"
                                "max_per_source = 3\n"
                                "rate_per_source = 20/s\n"
                                "source_prefix = 24, 56\n"
                                "ban_after = 5/60s\n"
                                "ban_ttl_s = 60\n"
                                "ban_ttl_max_s = 3600\n"
                                "[listener:api]\n"
                                "bind = 127.0.0.1:8081\n"
                                "backend = echo\n"
                                "mode = enforce\n"
                                "max_per_source = off\n"
                                "rate_per_source = 100/m\n"
                                "ban_after = off\n"
                                "ban_ttl_s = 31536000\n"
                                "ban_ttl_max_s = 31536000\n"
                                "[listener:plain]\n"
                                "bind = 127.0.0.1:8082\n"
                                "backend = echo\n"
                                "max_per_source = 0\n";

static void test_state_keys(void **state)
{
    (void)state;
    write_text("state.ini", state_ini);
    cg_config *cfg = load("state.ini");

    /* Given entries replace the default: loopback is no longer protected. */
    assert_int_equal(verdict(cfg->never_ban, "127.0.0.1", NULL), CG_DENY);
    assert_int_equal(verdict(cfg->never_ban, "::1", NULL), CG_DENY);
    assert_int_equal(verdict(cfg->never_ban, "10.200.0.1", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->never_ban, "2001:db8:1::1", NULL), CG_ALLOW);
    cg_rule_info info;
    assert_int_equal(verdict(cfg->never_ban, "192.0.2.1", &info), CG_ALLOW);
    assert_int_equal(info.line, 4);
    assert_int_equal(verdict(cfg->never_ban, "192.0.2.2", NULL), CG_DENY);

    /* state_file is taken relative to the INI file's directory. */
    char want[PATH_MAX];
    snprintf(want, sizeof want, "%s/state/bans.json", tmpdir);
    assert_string_equal(cfg->state_file, want);
    assert_int_equal(cfg->state_file_line, 3);
    assert_int_equal(cfg->max_bans, CG_CONFIG_MAX_BANS);
    assert_int_equal(cfg->source_table_max, 1);
    assert_int_equal(cfg->preview_callers, 0);

    const cg_source_limits *s = &cfg->listeners[0].sources;
    assert_int_equal(cfg->listeners[0].mode, CG_MODE_SHADOW);
    assert_true(cg_source_limits_on(s));
    assert_int_equal(s->max_per_source, 3);
    assert_int_equal(s->rate.count, 20);
    assert_int_equal(s->rate.window_ms, 1000);
    assert_int_equal(s->prefix4, 24);
    assert_int_equal(s->prefix6, 56);
    assert_int_equal(s->ban_after.count, 5);
    assert_int_equal(s->ban_after.window_ms, 60000);
    assert_int_equal(s->ban_ttl_s, 60);
    assert_int_equal(s->ban_ttl_max_s, 3600);

    s = &cfg->listeners[1].sources;
    assert_int_equal(cfg->listeners[1].mode, CG_MODE_ENFORCE);
    assert_int_equal(s->max_per_source, 0);
    assert_int_equal(s->rate.count, 100);
    assert_int_equal(s->rate.window_ms, 60000);
    assert_int_equal(s->ban_after.count, 0);
    assert_int_equal(s->ban_ttl_s, CG_CONFIG_MAX_BAN_TTL_S);
    assert_int_equal(s->ban_ttl_max_s, CG_CONFIG_MAX_BAN_TTL_S);

    assert_false(cg_source_limits_on(&cfg->listeners[2].sources));
    assert_int_equal(cfg->nwarnings, 0);
    cg_config_free(cfg);
}

static void test_state_file_absolute(void **state)
{
    (void)state;
#if defined(_WIN32)
    const char *abs = "C:\\condgate\\bans.json";
#else
    const char *abs = "/var/lib/condgate/bans.json";
#endif
    char ini[512];
    snprintf(ini, sizeof ini, "[gateway]\nstate_file = %s\n", abs);
    write_text("sabs.ini", ini);
    cg_config *cfg = load("sabs.ini");
    assert_string_equal(cfg->state_file, abs);
    assert_int_equal(cfg->state_file_line, 2);
    cg_config_free(cfg);
}

/* takeover_socket: a unix socket path relative to the INI file (off by
 * default and with "off"), at most 107 bytes; refused on Windows. */
static void test_takeover_socket(void **state)
{
    (void)state;
    char err[1024];
    cg_config *cfg;
    write_text("tk.ini", "[gateway]\ntakeover_socket = run/takeover.sock\n");
    write_text("tkoff.ini", "[gateway]\ntakeover_socket = off\n");
#if defined(_WIN32)
    load_error("tk.ini", err, sizeof err);
    assert_non_null(strstr(err, "tk.ini:2: 'takeover_socket' in [gateway]: takeovers are not "
                                "supported on Windows"));
#else
    char ini[512], want[PATH_MAX + 32];
    snprintf(ini, sizeof ini, "[gateway]\nworkers = 1\ntakeover_socket = /%0120d\n", 0);
    write_text("tklong.ini", ini);
    cfg = load("tk.ini");
    snprintf(want, sizeof want, "%s/run/takeover.sock", tmpdir);
    assert_string_equal(cfg->takeover_socket, want);
    cg_config_free(cfg);
    load_error("tklong.ini", err, sizeof err);
    assert_non_null(strstr(err, "tklong.ini:3: 'takeover_socket' in [gateway]: a unix socket path "
                                "is at most 107 bytes"));
#endif
    cfg = load("tkoff.ini");
    assert_null(cfg->takeover_socket);
    cg_config_free(cfg);
}

static void test_never_ban_none(void **state)
{
    (void)state;
    write_text("nbnone.ini", "[gateway]\nnever_ban = none\n");
    cg_config *cfg = load("nbnone.ini");
    assert_non_null(cfg->never_ban);
    assert_int_equal(stats_of(cfg->never_ban).v4 + stats_of(cfg->never_ban).v6, 0);
    assert_int_equal(verdict(cfg->never_ban, "127.0.0.1", NULL), CG_DENY);
    assert_int_equal(verdict(cfg->never_ban, "::1", NULL), CG_DENY);
    cg_config_free(cfg);
}

/* never_ban_ini: a [gateway] with `n` never_ban entries, 8 to a line. */
static char *never_ban_ini(unsigned n)
{
    size_t cap = 64 + (size_t)n * 24;
    char *ini = malloc(cap);
    assert_non_null(ini);
    size_t off = (size_t)snprintf(ini, cap, "[gateway]\n");
    for (unsigned i = 0; i < n; i++)
        off += (size_t)snprintf(ini + off, cap - off, "%s10.%u.%u.0/24%s",
                                i % 8 == 0 ? "never_ban = " : "", (i >> 8) & 255, i & 255,
                                i % 8 == 7 || i + 1 == n ? "\n" : ", ");
    return ini;
}

static void test_never_ban_bound(void **state)
{
    (void)state;
    char *ini = never_ban_ini(CG_CONFIG_MAX_NEVER_BAN);
    write_text("nbmax.ini", ini);
    free(ini);
    cg_config *cfg = load("nbmax.ini");
    assert_int_equal(stats_of(cfg->never_ban).v4, CG_CONFIG_MAX_NEVER_BAN);
    cg_config_free(cfg);

    ini = never_ban_ini(CG_CONFIG_MAX_NEVER_BAN + 1);
    write_text("nbover.ini", ini);
    free(ini);
    char err[1024], want[PATH_MAX + 256];
    load_error("nbover.ini", err, sizeof err);
    /* Entry 1025 is the first of line 2 + 1024 / 8. */
    snprintf(want, sizeof want,
             "%s/nbover.ini:%u: 'never_ban' in [gateway]: more than %u entries; cover them with "
             "shorter prefixes",
             tmpdir, 2u + CG_CONFIG_MAX_NEVER_BAN / 8u, (unsigned)CG_CONFIG_MAX_NEVER_BAN);
    assert_string_equal(err, want);
}

static void test_rate_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint32_t count, window_ms;
    } cases[] = {
        {"20/s", 0, 20, 1000},
        {"5/60s", 0, 5, 60000},
        {"100/m", 0, 100, 60000},
        {"100/10s", 0, 100, 10000},
        {"7/5m", 0, 7, 300000},
        {"1/1s", 0, 1, 1000},
        {"1000000/86400s", 0, 1000000, 86400000},
        {"3/1440m", 0, 3, 86400000},
        {"20", CG_EINVAL, 0, 0},
        {"20/", CG_EINVAL, 0, 0},
        {"x/s", CG_EINVAL, 0, 0},
        {"/s", CG_EINVAL, 0, 0},
        {"", CG_EINVAL, 0, 0},
        {"20/2d", CG_EINVAL, 0, 0},
        {"20/S", CG_EINVAL, 0, 0},
        {"20/ s", CG_EINVAL, 0, 0},
        {"20/s ", CG_EINVAL, 0, 0},
        {"-1/s", CG_EINVAL, 0, 0},
        {"020/s", CG_EINVAL, 0, 0},
        {"20/01s", CG_EINVAL, 0, 0},
        {"20/1.5s", CG_EINVAL, 0, 0},
        {"1234567890123456/s", CG_EINVAL, 0, 0},
        {"off", CG_EINVAL, 0, 0},
        {"0/s", CG_ERANGE, 0, 0},
        {"1000001/s", CG_ERANGE, 0, 0},
        {"20/0s", CG_ERANGE, 0, 0},
        {"20/0m", CG_ERANGE, 0, 0},
        {"20/86401s", CG_ERANGE, 0, 0},
        {"20/1441m", CG_ERANGE, 0, 0},
        {"20/999999999999999s", CG_ERANGE, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cg_rate r = {77, 77};
        char err[256] = "x";
        int rc = cg_rate_parse(cases[i].text, &r, err, sizeof err);
        if (rc != cases[i].rc)
            fail_msg("'%s': %d, not %d (%s)", cases[i].text, rc, cases[i].rc, err);
        if (rc == 0) {
            assert_int_equal(r.count, cases[i].count);
            assert_int_equal(r.window_ms, cases[i].window_ms);
            assert_string_equal(err, "");
        } else {
            /* A failed parse leaves *out alone and says why. */
            assert_int_equal(r.count, 77);
            assert_int_equal(r.window_ms, 77);
            assert_true(strlen(err) > 10);
        }
    }
    cg_rate r;
    assert_int_equal(cg_rate_parse("5/s", &r, NULL, 0), 0);
    assert_int_equal(cg_rate_parse("5", &r, NULL, 0), CG_EINVAL);
    assert_string_equal(cg_listener_mode_name(CG_MODE_ENFORCE), "enforce");
    assert_string_equal(cg_listener_mode_name(CG_MODE_SHADOW), "shadow");
}

/* print_text: cg_config_print of cfg into a new string (free it). */
static char *print_text(const cg_config *cfg)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(cg_config_print(cfg, f), 0);
    long n = ftell(f);
    assert_true(n > 0);
    char *buf = calloc(1, (size_t)n + 1);
    assert_non_null(buf);
    rewind(f);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return buf;
}

static void test_print_state(void **state)
{
    (void)state;
    write_text("pstate.ini", state_ini);
    cg_config *cfg = load("pstate.ini");
    char *text = print_text(cfg);
    char want[PATH_MAX + 256];
    snprintf(want, sizeof want,
             "\ngateway   state_file=%s/state/bans.json takeover_socket=off max_bans=16777216 "
             "never_ban=10.0.0.0/8,192.0.2.1/32,2001:db8::/32 source_table_max=1 "
             "preview_callers=0\n",
             tmpdir);
    if (!strstr(text, want))
        fail_msg("no line\n%s\nin\n%s", want, text);
    const char *lines[] = {
        " prefilter=auto mode=shadow max_per_source=3 rate_per_source=20/1s "
        "source_prefix=24,56 ban_after=5/60s ban_ttl_s=60..3600\n",
        " prefilter=auto rate_per_source=100/60s source_prefix=32,64\n",
        " prefilter=auto\n",
    };
    for (size_t i = 0; i < 3; i++) {
        const char *l = strstr(text, cfg->listeners[i].bind.text);
        assert_non_null(l);
        const char *nl = strchr(l, '\n');
        size_t tail = strlen(lines[i]);
        assert_non_null(nl);
        if ((size_t)(nl + 1 - l) < tail || memcmp(nl + 1 - tail, lines[i], tail) != 0)
            fail_msg("listener line of %s does not end with\n%s\n%s", cfg->listeners[i].name,
                     lines[i], text);
    }
    free(text);
    cg_config_free(cfg);

    /* Defaults: state_file none, the loopback never_ban. */
    write_text("pdef.ini", "[gateway]\nworkers = 1\n");
    cfg = load("pdef.ini");
    text = print_text(cfg);
    assert_non_null(strstr(text, "\ngateway   state_file=none takeover_socket=off max_bans=1000000 "
                                 "never_ban=127.0.0.1/32,::1/128 source_table_max=1000000 "
                                 "preview_callers=65536\n"));
    free(text);
    cg_config_free(cfg);
}

/* ---- PROXY protocol keys (SPEC §13) ---------------------------------------- */

static const char proxy_ini[] = "[rules]\n"
                                "[listener:lb]\n"
                                "bind = 127.0.0.1:8080\n"
                                "send_proxy = v2\n"
                                "backend = 127.0.0.1:8081\n"
                                "accept_proxy = v2\n"
                                "trusted_proxies = 10.0.0.0/8, 2001:db8:1::/48\n"
                                "proxy_timeout_ms = 250\n"
                                "trusted_proxies = 192.0.2.7\n"
                                "[listener:v1]\n"
                                "bind = 127.0.0.1:8082\n"
                                "backend = 127.0.0.1:8083\n"
                                "accept_proxy = v1\n"
                                "trusted_proxies = 198.51.100.1\n"
                                "send_proxy = v1\n"
                                "[listener:any]\n"
                                "bind = 127.0.0.1:8084\n"
                                "backend = echo\n"
                                "accept_proxy = any\n"
                                "trusted_proxies = ::1\n"
                                "send_proxy = off\n"
                                "proxy_timeout_ms = 86400000\n"
                                "[listener:off]\n"
                                "bind = 127.0.0.1:8086\n"
                                "backend = echo\n"
                                "accept_proxy = off\n"
                                "send_proxy = off\n";

static void test_proxy_defaults(void **state)
{
    (void)state;
    write_text("pxdef.ini", "[rules]\n"
                            "[listener:web]\n"
                            "bind = 127.0.0.1:8080\n"
                            "backend = echo\n");
    cg_config *cfg = load("pxdef.ini");
    const cg_listener_conf *l = &cfg->listeners[0];
    assert_int_equal(l->accept_proxy, 0);
    assert_null(l->trusted_proxies);
    assert_int_equal(l->trusted_proxies_line, 0);
    assert_int_equal(l->proxy_timeout_ms, 3000);
    assert_int_equal(l->send_proxy, 0);
    cg_config_free(cfg);
}

static void test_proxy_keys(void **state)
{
    (void)state;
    write_text("proxy.ini", proxy_ini);
    cg_config *cfg = load("proxy.ini");
    assert_int_equal(cfg->nlisteners, 4);

    const cg_listener_conf *l = &cfg->listeners[0];
    assert_int_equal(l->accept_proxy, CG_ACCEPT_PROXY_V2);
    assert_int_equal(l->send_proxy, 2);
    assert_int_equal(l->proxy_timeout_ms, 250);
    assert_int_equal(l->trusted_proxies_line, 7);
    /* Both lines of the repeated key; a default-deny set of allow entries. */
    const cg_ruleset *t = l->trusted_proxies;
    assert_non_null(t);
    assert_string_equal(cg_ruleset_name(t), "trusted:lb");
    assert_int_equal(cg_ruleset_default(t), CG_DENY);
    assert_int_equal(stats_of(t).v4, 2);
    assert_int_equal(stats_of(t).v6, 1);
    cg_rule_info info;
    assert_int_equal(verdict(t, "10.1.2.3", &info), CG_ALLOW);
    assert_int_equal(info.line, 7);
    assert_int_equal(verdict(t, "2001:db8:1:ffff::1", NULL), CG_ALLOW);
    assert_int_equal(verdict(t, "192.0.2.7", &info), CG_ALLOW);
    assert_int_equal(info.line, 9);
    assert_int_equal(verdict(t, "192.0.2.8", NULL), CG_DENY);
    assert_int_equal(verdict(t, "11.0.0.1", NULL), CG_DENY);
    assert_int_equal(verdict(t, "2001:db8:2::1", NULL), CG_DENY);
    /* The listener's own rule set is untouched by trusted_proxies. */
    assert_int_equal(stats_of(cfg->rulesets[l->ruleset]).v4, 0);

    l = &cfg->listeners[1];
    assert_int_equal(l->accept_proxy, CG_ACCEPT_PROXY_V1);
    assert_int_equal(l->send_proxy, 1);
    assert_int_equal(l->proxy_timeout_ms, 3000);
    assert_string_equal(cg_ruleset_name(l->trusted_proxies), "trusted:v1");
    assert_int_equal(verdict(l->trusted_proxies, "198.51.100.1", NULL), CG_ALLOW);
    assert_int_equal(verdict(l->trusted_proxies, "10.1.2.3", NULL), CG_DENY);

    l = &cfg->listeners[2];
    assert_int_equal(l->accept_proxy, CG_ACCEPT_PROXY_ANY);
    assert_int_equal(l->accept_proxy, 3);
    assert_int_equal(l->send_proxy, 0);
    assert_int_equal(l->proxy_timeout_ms, 86400000);
    assert_int_equal(verdict(l->trusted_proxies, "::1", NULL), CG_ALLOW);

    l = &cfg->listeners[3];
    assert_int_equal(l->accept_proxy, 0);
    assert_null(l->trusted_proxies);
    assert_int_equal(l->send_proxy, 0);
    assert_int_equal(cfg->nwarnings, 0);
    cg_config_free(cfg);

    assert_string_equal(cg_accept_proxy_name(0), "off");
    assert_string_equal(cg_accept_proxy_name(CG_ACCEPT_PROXY_V1), "v1");
    assert_string_equal(cg_accept_proxy_name(CG_ACCEPT_PROXY_V2), "v2");
    assert_string_equal(cg_accept_proxy_name(CG_ACCEPT_PROXY_ANY), "any");
    assert_string_equal(cg_accept_proxy_name(4), "unknown");
    assert_string_equal(cg_send_proxy_name(0), "off");
    assert_string_equal(cg_send_proxy_name(1), "v1");
    assert_string_equal(cg_send_proxy_name(2), "v2");
    assert_string_equal(cg_send_proxy_name(3), "unknown");
}

/* Exactly CG_CONFIG_MAX_TRUSTED_PROXIES entries load (the golden
 * proxy_trusted_too_many.ini holds one more). */
static void test_proxy_trusted_bound(void **state)
{
    (void)state;
    size_t cap = 64 + CG_CONFIG_MAX_TRUSTED_PROXIES * 40;
    char *ini = malloc(cap);
    assert_non_null(ini);
    size_t off = (size_t)snprintf(ini, cap,
                                  "[rules]\n[listener:web]\nbind = 127.0.0.1:8080\n"
                                  "backend = 127.0.0.1:8081\naccept_proxy = v1\n");
    for (unsigned i = 0; i < CG_CONFIG_MAX_TRUSTED_PROXIES; i++)
        off += (size_t)snprintf(ini + off, cap - off, "trusted_proxies = 10.%u.%u.0/24\n", i >> 8,
                                i & 255u);
    write_text("pxbound.ini", ini);
    free(ini);
    cg_config *cfg = load("pxbound.ini");
    assert_int_equal(stats_of(cfg->listeners[0].trusted_proxies).v4, CG_CONFIG_MAX_TRUSTED_PROXIES);
    assert_int_equal(verdict(cfg->listeners[0].trusted_proxies, "10.3.255.9", NULL), CG_ALLOW);
    assert_int_equal(verdict(cfg->listeners[0].trusted_proxies, "10.4.0.9", NULL), CG_DENY);
    cg_config_free(cfg);
}

/* The tail of the listener line of `name` in `text` must be `tail`. */
static void assert_listener_tail(const char *text, const char *name, const char *tail)
{
    char head[64];
    snprintf(head, sizeof head, "\nlistener  %s ", name);
    const char *l = strstr(text, head);
    if (!l)
        fail_msg("no listener line for %s in\n%s", name, text);
    const char *nl = strchr(l + 1, '\n');
    size_t n = strlen(tail);
    assert_non_null(nl);
    if ((size_t)(nl + 1 - l) < n || memcmp(nl + 1 - n, tail, n) != 0)
        fail_msg("listener line of %s does not end with\n%s\n%s", name, tail, text);
}

static void test_print_proxy(void **state)
{
    (void)state;
    write_text("pproxy.ini", proxy_ini);
    cg_config *cfg = load("pproxy.ini");
    char *text = print_text(cfg);
    assert_listener_tail(text, "lb ",
                         " prefilter=auto accept_proxy=v2 "
                         "trusted_proxies=10.0.0.0/8,192.0.2.7/32,2001:db8:1::/48 "
                         "proxy_timeout_ms=250 send_proxy=v2\n");
    assert_listener_tail(text, "v1 ",
                         " prefilter=auto accept_proxy=v1 trusted_proxies=198.51.100.1/32 "
                         "proxy_timeout_ms=3000 send_proxy=v1\n");
    assert_listener_tail(text, "any",
                         " prefilter=auto accept_proxy=any trusted_proxies=::1/128 "
                         "proxy_timeout_ms=86400000\n");
    assert_listener_tail(text, "off", " idle_timeout_ms=300000 prefilter=auto\n");
    free(text);
    cg_config_free(cfg);
}

/* ---- golden files ---------------------------------------------------------- */

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_golden(void **state)
{
    (void)state;
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(GOLDEN_DIR), 0);

    DIR *dir = opendir(".");
    assert_non_null(dir);
    char *names[512];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len > 4 && strcmp(de->d_name + len - 4, ".ini") == 0 && n < 512)
            names[n++] = strdup(de->d_name);
    }
    closedir(dir);
    qsort(names, n, sizeof names[0], by_name);

    size_t errors = 0, warnings = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        char base[300], path[320], err[2048];
        snprintf(base, sizeof base, "%.*s", (int)(strlen(names[i]) - 4), names[i]);
        snprintf(path, sizeof path, "%s.expected", base);
        char *expected = read_all(path);
#ifndef CG_HAVE_CROWDSEC
        /* A build without libcurl refuses [crowdsec] at its header. */
        snprintf(path, sizeof path, "%s.expected_nocurl", base);
        char *nocurl = read_all(path);
        if (nocurl) {
            free(expected);
            expected = nocurl;
        }
#endif
        cg_config *cfg = NULL;
        int rc = cg_config_load(names[i], &cfg, err, sizeof err);
        if (expected) {
            errors++;
            chomp(expected);
            if (rc >= 0 || cfg != NULL) {
                print_error("%s: loaded, but expected: %s\n", names[i], expected);
                failed++;
            } else if (strcmp(err, expected) != 0) {
                print_error("%s:\n  expected: %s\n  got:      %s\n", names[i], expected, err);
                failed++;
            }
        } else {
            snprintf(path, sizeof path, "%s.warnings", base);
            expected = read_all(path);
            if (!expected) {
                print_error("%s: no %s.expected or %s.warnings\n", names[i], base, base);
                failed++;
            } else if (rc != 0) {
                print_error("%s: unexpected error: %s\n", names[i], err);
                failed++;
            } else {
                warnings++;
                char got[8192] = "";
                for (size_t w = 0; w < cfg->nwarnings; w++) {
                    strncat(got, cfg->warnings[w], sizeof got - strlen(got) - 2);
                    strcat(got, "\n");
                }
                if (strcmp(got, expected) != 0) {
                    print_error("%s:\n  expected warnings:\n%s  got:\n%s", names[i], expected, got);
                    failed++;
                }
            }
        }
        cg_config_free(cfg);
        free(expected);
        free(names[i]);
    }
    assert_int_equal(chdir(cwd), 0);
    print_message("%lu golden errors, %lu golden warning cases\n", (unsigned long)errors,
                  (unsigned long)warnings);
    assert_int_equal(failed, 0);
    assert_true(errors >= 30);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_everything_set),
        cmocka_unit_test(test_default_set_first),
        cmocka_unit_test(test_list_file),
        cmocka_unit_test(test_json_file),
        cmocka_unit_test(test_repeated_keys_and_all),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_admin_off),
#ifdef CG_HAVE_CROWDSEC
        cmocka_unit_test(test_crowdsec_section),
#endif
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_missing_ini),
        cmocka_unit_test(test_small_error_buffer),
        cmocka_unit_test(test_big_list),
        cmocka_unit_test(test_state_defaults),
        cmocka_unit_test(test_state_keys),
        cmocka_unit_test(test_state_file_absolute),
        cmocka_unit_test(test_takeover_socket),
        cmocka_unit_test(test_never_ban_none),
        cmocka_unit_test(test_never_ban_bound),
        cmocka_unit_test(test_rate_parse),
        cmocka_unit_test(test_print_state),
        cmocka_unit_test(test_proxy_defaults),
        cmocka_unit_test(test_proxy_keys),
        cmocka_unit_test(test_proxy_trusted_bound),
        cmocka_unit_test(test_print_proxy),
        cmocka_unit_test(test_golden),
    };
    ts_init();
    return cmocka_run_group_tests(tests, setup, teardown);
}
