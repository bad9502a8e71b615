/* test_geoip.c — the GeoIP readers (src/geoip.c) and keys
 * (src/config_geoip.c): the CSV parser's prefixes and exact error lines,
 * the MaxMind DB walk against the library's own lookups (with MaxMind's
 * test databases from tests/data/fetch-maxmind.sh when present, else that
 * case says so and passes), and loading the keys from an INI file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condgate/config.h"
#include "config_geoip.h"
#include "geoip.h"
#include "testsys.h"

#if defined(CG_HAVE_GEOIP)
#include <dirent.h>
#include <maxminddb.h>
#endif

static char tmpdir[512];

/* ---- helpers ------------------------------------------------------------ */

typedef struct got {
    char text[4096];
    size_t n;
    int fail_at; /* return CG_ERANGE at this call (1-based), 0: never */
} got;

/* Collects "CIDR CC ASN;" for each network. */
static int collect(void *arg, const cg_cidr *net, const char *cc, uint32_t asn)
{
    got *g = arg;
    char c[CG_CIDR_STRLEN];
    size_t used = strlen(g->text);
    if (++g->n == (size_t)g->fail_at)
        return CG_ERANGE;
    snprintf(g->text + used, sizeof g->text - used, "%s %s", cg_cidr_format(net, c, sizeof c),
             cc[0] ? cc : "-");
    used = strlen(g->text);
    if (asn)
        snprintf(g->text + used, sizeof g->text - used, " AS%u", (unsigned)asn);
    used = strlen(g->text);
    snprintf(g->text + used, sizeof g->text - used, ";");
    return 0;
}

static int csv(const char *text, got *g, char *err, size_t errlen)
{
    cg__diag d = {err, errlen, 0};
    memset(g, 0, sizeof *g);
    err[0] = '\0';
    return cg__geoip_csv("t.csv", text, strlen(text), collect, g, &d);
}

static void write_text(const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static int load(const char *ini, cg_config **cfg, char *err, size_t errlen)
{
    char path[PATH_MAX];
    write_text("g.ini", ini);
    snprintf(path, sizeof path, "%s/g.ini", tmpdir);
    *cfg = NULL;
    return cg_config_load(path, cfg, err, errlen);
}

/* ---- CSV ---------------------------------------------------------------- */

static void test_csv_forms(void **state)
{
    (void)state;
    got g;
    char err[512];
    /* Integer IPv4 as tor-geoipdb ships it, dotted IPv4, IPv6, a BOM,
     * comments, blanks, CRLF, lower case codes, '??' ranges. */
    const char *text = "\xEF\xBB\xBF# tor geoip\n"
                       "\n"
                       "16777216,16777471,AU\r\n"
                       "  10.0.0.1 , 10.0.0.6 ,de # ragged\n"
                       "2001:db8::,2001:db8::1:ffff,JP\n"
                       "0,0,??\n"
                       "4294967295,4294967295,ZW";
    assert_int_equal(csv(text, &g, err, sizeof err), 0);
    assert_string_equal(g.text, "1.0.0.0/24 AU;10.0.0.1/32 DE;10.0.0.2/31 DE;10.0.0.4/31 DE;"
                                "10.0.0.6/32 DE;2001:db8::/111 JP;0.0.0.0/32 -;"
                                "255.255.255.255/32 ZW;");
}

static void test_csv_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"1,2,DE\n3,2,DE\n", "t.csv:2: geoip_csv: a range must not end before it starts"},
        {"4294967296,4294967296,DE\n",
         "t.csv:1: geoip_csv: bad address '4294967296': an IPv4 integer runs from 0 to "
         "4294967295"},
        {"01,2,DE\n", "t.csv:1: geoip_csv: bad address '01': an IPv4 integer runs from 0 to "
                      "4294967295"},
        {"# c\n1.2.3.4/8,1.2.3.5,DE\n",
         "t.csv:2: geoip_csv: bad address '1.2.3.4/8'; expected an IPv4 integer, a dotted IPv4 or "
         "an IPv6 address"},
        {"1,2,D1\n", "t.csv:1: geoip_csv: bad country code 'D1'; expected two letters such as "
                     "DE, or ??"},
        {"1,2,DEU\n", "t.csv:1: geoip_csv: bad country code 'DEU'; expected two letters such as "
                      "DE, or ??"},
        {"1,2\n", "t.csv:1: geoip_csv: expected FROM,TO,CC (three fields), found 2"},
        {"1,2,DE,x\n", "t.csv:1: geoip_csv: expected FROM,TO,CC (three fields), found 4"},
        {"1,::1,DE\n",
         "t.csv:1: geoip_csv: a range's two ends must be of one family (IPv4 or IPv6)"},
        {",1,DE\n", "t.csv:1: geoip_csv: bad address ''; expected an IPv4 integer, a dotted "
                    "IPv4 or an IPv6 address"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        got g;
        char err[512];
        assert_int_equal(csv(cases[i].text, &g, err, sizeof err), CG_EINVAL);
        assert_string_equal(err, cases[i].want);
    }
}

static void test_csv_bounds(void **state)
{
    (void)state;
    got g;
    char err[512];
    char *text = malloc(CG_CONFIG_MAX_LIST_LINE + 64);
    assert_non_null(text);
    strcpy(text, "1,1,DE\n");
    size_t n = strlen(text);
    memset(text + n, ' ', CG_CONFIG_MAX_LIST_LINE + 1);
    strcpy(text + n + CG_CONFIG_MAX_LIST_LINE + 1, "\n");
    assert_int_equal(csv(text, &g, err, sizeof err), CG_ERANGE);
    assert_string_equal(err, "t.csv:2: line longer than 1024 bytes");
    /* A line of exactly the limit is fine. */
    text[n + CG_CONFIG_MAX_LIST_LINE] = '\n';
    text[n + CG_CONFIG_MAX_LIST_LINE + 1] = '\0';
    assert_int_equal(csv(text, &g, err, sizeof err), 0);
    free(text);

    /* The callback stops the reader at its place. */
    memset(&g, 0, sizeof g);
    g.fail_at = 3;
    cg__diag d = {err, sizeof err, 0};
    const char *t = "1,1,DE\n2,2,DE\n10.0.0.1,10.0.0.6,AT\n";
    assert_int_equal(cg__geoip_csv("t.csv", t, strlen(t), collect, &g, &d), CG_ERANGE);
    assert_string_equal(err, "t.csv:3: geoip_csv: more than 16777216 networks selected");
}

/* ---- MaxMind DB ------------------------------------------------------------ */

#if defined(CG_HAVE_GEOIP)
/* The test-data directory of the fetched source package, or "". */
static void find_test_data(char *out, size_t len)
{
    const char *env = getenv("CG_MAXMIND_DIR");
    char top[PATH_MAX];
    out[0] = '\0';
    if (env && env[0]) {
        snprintf(out, len, "%s", env);
        return;
    }
    snprintf(top, sizeof top, "%s/../build/maxmind", CG_TEST_DATA_DIR);
    DIR *d = opendir(top);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "libmaxminddb-", 13) == 0)
            snprintf(out, len, "%.3000s/%.200s/t/maxmind-db/test-data", top, e->d_name);
    closedir(d);
}

typedef struct walked {
    MMDB_s db;
    size_t v4, v6, bad;
    char first_bad[512];
} walked;

/* Each network: its first and last address looked up by the library give
 * the same country; no network lies in the aliases or under ::/96. */
static int check_net(void *arg, const cg_cidr *net, const char *cc, uint32_t asn)
{
    walked *w = arg;
    char text[CG_CIDR_STRLEN], ip[CG_CIDR_STRLEN];
    cg_cidr_format(net, text, sizeof text);
    (void)asn;
    if (net->family == 4)
        w->v4++;
    else
        w->v6++;
    static const uint8_t zero[12];
    bool alias =
        net->family == 6 &&
        ((net->addr[0] == 0x20 && net->addr[1] == 0x02) ||
         (net->addr[0] == 0x20 && net->addr[1] == 0x01 && net->addr[2] == 0 && net->addr[3] == 0) ||
         memcmp(net->addr, zero, 10) == 0);
    int gai = 0, st = 0;
    memcpy(ip, text, sizeof ip);
    *strchr(ip, '/') = '\0';
    MMDB_lookup_result_s r = MMDB_lookup_string(&w->db, ip, &gai, &st);
    MMDB_entry_data_s v;
    char want[3] = "";
    static const char *const objs[] = {"country", "registered_country"};
    for (size_t k = 0; r.found_entry && !want[0] && k < 2; k++)
        if (MMDB_get_value(&r.entry, &v, objs[k], "iso_code", NULL) == MMDB_SUCCESS && v.has_data &&
            v.type == MMDB_DATA_TYPE_UTF8_STRING && v.data_size == 2)
            memcpy(want, v.utf8_string, 2);
    bool same_net = r.found_entry && r.netmask == (net->family == 4 ? net->len + 96 : net->len);
    if (alias || strcmp(want, cc) != 0 || !same_net) {
        if (!w->bad++)
            snprintf(w->first_bad, sizeof w->first_bad, "%s: walk %s, lookup %s /%u", text, cc,
                     want, (unsigned)r.netmask);
    }
    return 0;
}

static void test_mmdb_walk(void **state)
{
    (void)state;
    char dir[PATH_MAX], path[PATH_MAX + 64], why[256];
    find_test_data(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/GeoLite2-Country-Test.mmdb", dir);
    FILE *f = dir[0] ? fopen(path, "rb") : NULL;
    if (!f) {
        print_message("SKIPPED: MaxMind's test databases are not here; run "
                      "tests/data/fetch-maxmind.sh (or set CG_MAXMIND_DIR)\n");
        skip();
    }
    fclose(f);
    walked w;
    memset(&w, 0, sizeof w);
    assert_int_equal(MMDB_open(path, MMDB_MODE_MMAP, &w.db), MMDB_SUCCESS);
    int rc = cg__geoip_db(path, check_net, &w, why, sizeof why);
    assert_int_equal(rc, 0);
    if (w.bad)
        fail_msg("%zu networks disagree, first %s", w.bad, w.first_bad);
    print_message("GeoLite2-Country-Test: %zu IPv4 and %zu IPv6 networks\n", w.v4, w.v6);
    assert_true(w.v4 >= 10 && w.v6 >= 100);

    /* A truncated copy: an error, not a crash, and no network promised. */
    char cut[PATH_MAX];
    snprintf(cut, sizeof cut, "%s/cut.mmdb", tmpdir);
    f = fopen(path, "rb");
    assert_non_null(f);
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    for (size_t keep = n / 2; keep > 0; keep /= 3) {
        FILE *o = fopen(cut, "wb");
        assert_non_null(o);
        assert_int_equal(fwrite(buf, 1, keep, o), keep);
        fclose(o);
        got g;
        memset(&g, 0, sizeof g);
        rc = cg__geoip_db(cut, collect, &g, why, sizeof why);
        assert_int_equal(rc, CG_EINVAL);
        assert_non_null(strstr(why, "not a valid MaxMind DB"));
    }
    MMDB_close(&w.db);
}
#endif

#if defined(CG_HAVE_GEOIP)
/* The hand-made seeds of tests/fuzz/mkmmdb.py (always here): exact
 * networks; the IPv4 subtree under ::/96 comes as IPv4 and its alias
 * ::ffff:0:0/96 is not walked again. */
static void test_mmdb_seed(void **state)
{
    (void)state;
    static const char *const want6[] = {"10.0.0.0/8 DE AS64500;", "192.168.0.0/16 CN;",
                                        "2001:db8::/32 - AS64501;", "2001:db9:1::/48 DE AS64500;"};
    static const char *const want4[] = {"10.0.0.0/8 DE AS64500;", "192.168.0.0/16 CN;",
                                        "1.2.3.0/24 - AS64501;"};
    char why[256];
    got g;
    memset(&g, 0, sizeof g);
    assert_int_equal(
        cg__geoip_db(CG_TEST_DATA_DIR "/fuzz/corpus/mmdb/tiny6.mmdb", collect, &g, why, sizeof why),
        0);
    assert_int_equal(g.n, 4);
    for (size_t i = 0; i < 4; i++)
        if (!strstr(g.text, want6[i]))
            fail_msg("%s not in %s", want6[i], g.text);
    memset(&g, 0, sizeof g);
    assert_int_equal(
        cg__geoip_db(CG_TEST_DATA_DIR "/fuzz/corpus/mmdb/tiny4.mmdb", collect, &g, why, sizeof why),
        0);
    assert_int_equal(g.n, 3);
    for (size_t i = 0; i < 3; i++)
        if (!strstr(g.text, want4[i]))
            fail_msg("%s not in %s", want4[i], g.text);
}
#endif

static void test_mmdb_missing(void **state)
{
    (void)state;
    char why[256];
    got g;
    memset(&g, 0, sizeof g);
    int rc = cg__geoip_db("/nonexistent/x.mmdb", collect, &g, why, sizeof why);
#if defined(CG_HAVE_GEOIP)
    assert_int_equal(rc, CG_EIO);
    assert_string_equal(why, "cannot open it: no such file or directory");
    /* Not a regular file: refused before libmaxminddb opens it. */
    rc = cg__geoip_db(tmpdir, collect, &g, why, sizeof why);
    assert_int_equal(rc, CG_EIO);
    assert_non_null(strstr(why, "cannot open it: "));
    assert_int_equal(g.n, 0);
#else
    assert_int_equal(rc, CG_ENOTSUP);
    assert_string_equal(why, "needs libmaxminddb; this build has none (condgate -V)");
#endif
}

/* ---- keys ---------------------------------------------------------------- */

static void test_keys_load(void **state)
{
    (void)state;
    char err[1024];
    cg_config *cfg;
    write_text("w.csv", "10.0.0.0,10.0.0.255,de\n10.0.1.0,10.0.1.255,CN\n"
                        "2001:db8::,2001:db8::ffff,CN\n10.0.2.0,10.0.2.255,RU\n");
    int rc = load("[rules]\ndefault = allow\ndeny_country = cn, CN\ngeoip_csv = w.csv\n"
                  "allow_country = DE\ndeny = 10.0.1.7\ndeny_asn = as64501\n",
                  &cfg, err, sizeof err);
    assert_int_equal(rc, 0);
    cg_ruleset *rs = cfg->rulesets[0];
    cg_ruleset_stats st;
    cg_ruleset_get_stats(rs, &st);
    assert_int_equal(st.v4, 3); /* DE, CN and the plain deny */
    assert_int_equal(st.v6, 1);

    char src[PATH_MAX];
    cg_rule_info info;
    cg_rule_id id;
    cg_cidr a;
    snprintf(src, sizeof src, "%s/w.csv:CN", tmpdir);
    assert_int_equal(cg_cidr_parse("10.0.1.9", 8, &a, NULL, 0), 0);
    assert_int_equal(cg_ruleset_lookup(rs, &a, &id), CG_DENY);
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    assert_string_equal(info.file, src);
    assert_int_equal(info.line, 0);
    assert_int_equal(cg_cidr_parse("10.0.0.9", 8, &a, NULL, 0), 0);
    assert_int_equal(cg_ruleset_lookup(rs, &a, &id), CG_ALLOW);
    assert_int_equal(cg_ruleset_rule(rs, id, &info), 0);
    snprintf(src, sizeof src, "%s/w.csv:DE", tmpdir);
    assert_string_equal(info.file, src);
    /* RU is not selected: the default. */
    assert_int_equal(cg_cidr_parse("10.0.2.9", 8, &a, NULL, 0), 0);
    assert_int_equal(cg_ruleset_lookup(rs, &a, &id), CG_ALLOW);
    assert_int_equal(id, CG_RULE_NONE);

    /* The ASN matches nothing in a CSV: a warning at its line. */
    assert_int_equal(cfg->nwarnings, 1);
    assert_non_null(strstr(cfg->warnings[0], "g.ini:7: warning: deny_asn AS64501 matches no "
                                             "network in the databases of rule set 'default'"));
    assert_non_null(cfg->geoip);
    assert_string_equal(cfg->geoip[0], "w.csv: deny CN (2 networks), allow DE (1 network)");
    cg_config_free(cfg);
}

static void test_keys_errors(void **state)
{
    (void)state;
    static const struct {
        const char *ini, *want;
    } cases[] = {
        {"[rules]\ndeny_country = CN\n",
         "g.ini:2: rule set 'default' selects countries or ASNs but names no database; add "
         "geoip_db = FILE or geoip_csv = FILE"},
        {"[rules]\ngeoip_csv = w.csv\nallow_country = DE\ndeny_country = AT, de\n",
         "g.ini:4: 'deny_country' in [rules]: DE is also allowed (line 3); a country or ASN is "
         "either allowed or denied"},
        {"[rules]\ngeoip_csv = w.csv\ndeny_asn = 64500\nallow_asn = AS64500\n",
         "g.ini:4: 'allow_asn' in [rules]: AS64500 is also denied (line 3); a country or ASN is "
         "either allowed or denied"},
        {"[rules]\ngeoip_csv = w.csv\ndeny_country = DEU\n",
         "g.ini:3: 'deny_country' in [rules]: bad country code 'DEU'; expected two letters such "
         "as DE"},
        {"[rules]\ngeoip_csv = w.csv\ndeny_asn = AS0\n",
         "g.ini:3: 'deny_asn' in [rules]: bad ASN 'AS0'; expected a number from 1 to "
         "4294967295, optionally after AS (64500 or AS64500)"},
        {"[rules]\ngeoip_csv = w.csv\nallow_asn = 4294967296\n",
         "g.ini:3: 'allow_asn' in [rules]: bad ASN '4294967296'; expected a number from 1 to "
         "4294967295, optionally after AS (64500 or AS64500)"},
        {"[rules]\ngeoip_csv = w.csv\nallow_asn = ASN5\n",
         "g.ini:3: 'allow_asn' in [rules]: bad ASN 'ASN5'; expected a number from 1 to "
         "4294967295, optionally after AS (64500 or AS64500)"},
        {"[rules]\ngeoip_csv = bad.csv\n", "bad.csv:1: geoip_csv: bad country code 'X'; "
                                           "expected two letters such as DE, or ??"},
    };
    write_text("w.csv", "1,2,DE\n");
    write_text("bad.csv", "1,2,X\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[1024];
        cg_config *cfg;
        assert_int_not_equal(load(cases[i].ini, &cfg, err, sizeof err), 0);
        assert_null(cfg);
        const char *msg = strstr(err, cases[i].want[0] == 'b' ? "/bad.csv" : "/g.ini");
        assert_non_null(msg);
        assert_string_equal(msg + 1, cases[i].want);
    }
}

/* An INI of a [rules] section with `ndbs` geoip_csv keys (w0.csv ...) and
 * `nasns` distinct ASNs in deny_asn keys of 20 each. Returns the load's code;
 * the error, if any, in err. */
static int load_many(size_t ndbs, size_t nasns, char *err, size_t errlen)
{
    size_t cap = 64 + ndbs * 32 + nasns * 16, used;
    char *ini = malloc(cap);
    assert_non_null(ini);
    used = (size_t)snprintf(ini, cap, "[rules]\n");
    for (size_t i = 0; i < ndbs; i++) {
        char name[32];
        snprintf(name, sizeof name, "w%zu.csv", i);
        write_text(name, "1,2,DE\n");
        used += (size_t)snprintf(ini + used, cap - used, "geoip_csv = %s\n", name);
    }
    for (size_t i = 0; i < nasns; i++)
        used += (size_t)snprintf(ini + used, cap - used, "%s%zu%s",
                                 i % 20 ? ", " : "deny_asn = ", 64500 + i,
                                 i % 20 == 19 || i + 1 == nasns ? "\n" : "");
    cg_config *cfg;
    int rc = load(ini, &cfg, err, errlen);
    cg_config_free(cfg);
    free(ini);
    return rc;
}

/* The bounds of a set: 64 databases and 4,096 ASNs load; one more is an
 * error at the line that passes the bound. */
static void test_keys_bounds(void **state)
{
    (void)state;
    char err[1024];
    assert_int_equal(load_many(CG_GEO_MAX_DBS, 1, err, sizeof err), 0);
    assert_int_equal(load_many(CG_GEO_MAX_DBS + 1, 1, err, sizeof err), CG_ERANGE);
    assert_non_null(strstr(err, "/g.ini:66: 'geoip_csv' in [rules]: more than 64 databases"));
    assert_int_equal(load_many(1, CG_GEO_MAX_ASNS, err, sizeof err), 0);
    assert_int_equal(load_many(1, CG_GEO_MAX_ASNS + 1, err, sizeof err), CG_ERANGE);
    /* The 4,097th ASN (index 4096) is on line 3 + 4096 / 20: the header and the
     * database come first, 20 ASNs a line. */
    assert_non_null(strstr(err, "/g.ini:207: 'deny_asn' in [rules]: more than 4096 ASNs"));
}

static int setup(void **state)
{
    (void)state;
    return ts_mkdtemp(tmpdir, sizeof tmpdir, "cg-geoip");
}

static int teardown(void **state)
{
    (void)state;
    return ts_rmtree(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_forms),
        cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_csv_bounds),
#if defined(CG_HAVE_GEOIP)
        cmocka_unit_test(test_mmdb_walk),
        cmocka_unit_test(test_mmdb_seed),
#endif
        cmocka_unit_test(test_mmdb_missing),
        cmocka_unit_test(test_keys_load),
        cmocka_unit_test(test_keys_errors),
        cmocka_unit_test(test_keys_bounds),
    };
    ts_init();
    return cmocka_run_group_tests(tests, setup, teardown);
}
