/* test_bans_file.c — the state file (src/bans_file.c): the exact layout
 * the writer makes, a write and load round trip, expired bans skipped,
 * every class of bad file reported at its line, a missing file, a failed
 * write that leaves the old file, and the store: four threads adding and
 * syncing at once find every synced ban in the file, and a write that
 * cannot succeed answers CG_EIO to sync and is retried by the next change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "bans_file.h"
#include "condgate/common.h"
#include "testsys.h"

#define NOW 1796497200 /* 2026-12-05T19:00:00Z */

static cg_cidr C(const char *s)
{
    cg_cidr c;
    char err[256];
    if (cg_cidr_parse(s, strlen(s), &c, err, sizeof err) != 0)
        fail_msg("cg_cidr_parse(%s): %s", s, err);
    return c;
}

static cg__ban B(const char *cidr, cg__ban_origin o, int64_t created, int64_t expires,
                 uint64_t hits, const char *reason)
{
    cg__ban b = {
        .cidr = C(cidr), .origin = o, .created_s = created, .expires_s = expires, .hits = hits};
    snprintf(b.reason, sizeof b.reason, "%s", reason);
    return b;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void same_ban(const cg__ban *a, const cg__ban *b)
{
    assert_memory_equal(&a->cidr, &b->cidr, sizeof a->cidr);
    assert_int_equal(a->origin, b->origin);
    assert_int_equal(a->created_s, b->created_s);
    assert_int_equal(a->expires_s, b->expires_s);
    assert_int_equal(a->hits, b->hits);
    assert_string_equal(a->reason, b->reason);
}

/* The exact text, pinned: the reader insists on it, jq must read it. */
static void test_layout(void **state)
{
    (void)state;
    cg__ban v[2] = {
        B("198.51.100.0/24", CG__BAN_ADMIN, NOW, NOW + 3600, 3, "scan"),
        B("2001:db8::/32", CG__BAN_CROWDSEC, NOW, NOW + 60, 0, "say \"hi\" \\ caf\xc3\xa9"),
    };
    char *text;
    size_t len;
    assert_int_equal(cg__bans_file_format(v, 2, &text, &len), 0);
    assert_string_equal(
        text, "{\"condgate_state\": 1, \"bans\": [\n"
              "{\"cidr\": \"198.51.100.0/24\", \"origin\": \"admin\", \"reason\": \"scan\", "
              "\"created\": \"2026-12-05T19:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\", "
              "\"hits\": 3},\n"
              "{\"cidr\": \"2001:db8::/32\", \"origin\": \"crowdsec\", \"reason\": \"say "
              "\\\"hi\\\" \\\\ caf\xc3\xa9\", \"created\": \"2026-12-05T19:00:00Z\", "
              "\"expires\": \"2026-12-05T19:01:00Z\", \"hits\": 0}\n"
              "]}\n");
    assert_int_equal(len, strlen(text));
    free(text);
    assert_int_equal(cg__bans_file_format(v, 0, &text, &len), 0);
    assert_string_equal(text, "{\"condgate_state\": 1, \"bans\": [\n]}\n");
    free(text);
}

static void test_round_trip(void **state)
{
    (void)state;
    char dir[512], path[600];
    assert_int_equal(ts_mkdtemp(dir, sizeof dir, "cg-bans"), 0);
    snprintf(path, sizeof path, "%s/state.json", dir);
    cg__bans *t = cg__bans_new(100);
    cg__ban in[] = {
        B("10.0.0.0/8", CG__BAN_ADMIN, NOW - 10, NOW + 3600, 12345678901ull, "quotes \" and \\"),
        B("10.1.2.3/32", CG__BAN_AUTO, NOW - 5, NOW + 60, 0, ""),
        B("2001:db8::/48", CG__BAN_CROWDSEC, NOW, NOW + 31536000, 1,
          "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\xab"),
        B("::/0", CG__BAN_ADMIN, NOW, NOW + 1, 9007199254740992ull, "all v6"),
        B("192.0.2.0/24", CG__BAN_ADMIN, NOW - 100, NOW - 1, 4, "already expired"),
    };
    enum { N = sizeof in / sizeof in[0] };
    for (size_t i = 0; i < N; i++)
        assert_int_equal(cg__bans_add(t, &in[i], NULL), 0);
    cg__ban *v;
    size_t n;
    assert_int_equal(cg__bans_snapshot(t, &v, &n, NULL), 0);
    char err[1024] = "";
    assert_int_equal(cg__bans_file_write(path, v, n, err, sizeof err), 0);
    /* no FILE.tmp left behind */
    char tmpname[620];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", path);
    assert_null(fopen(tmpname, "rb"));

    cg__bans *u = cg__bans_new(100);
    size_t loaded = 0, expired = 0;
    assert_int_equal(cg__bans_file_load(path, u, NOW, &loaded, &expired, err, sizeof err), 0);
    assert_int_equal(loaded, N - 1);
    assert_int_equal(expired, 1);
    for (size_t i = 0; i < N; i++) {
        cg__ban got;
        int rc = cg__bans_find(u, &in[i].cidr, &got);
        if (in[i].expires_s <= NOW) {
            assert_int_equal(rc, CG_ENOENT);
            continue;
        }
        assert_int_equal(rc, 0);
        same_ban(&got, &in[i]);
    }
    /* loaded later, more have expired */
    cg__bans *w = cg__bans_new(100);
    assert_int_equal(cg__bans_file_load(path, w, NOW + 60, &loaded, &expired, err, sizeof err), 0);
    assert_int_equal(loaded, 2);
    assert_int_equal(expired, 3);
    /* a bound smaller than the file */
    cg__bans *small = cg__bans_new(3);
    assert_int_equal(cg__bans_file_load(path, small, NOW, &loaded, &expired, err, sizeof err),
                     CG_ERANGE);
    char want[700];
    snprintf(want, sizeof want, "%s:6: ", path);
    assert_memory_equal(err, want, strlen(want));
    cg__bans_free(small);
    cg__bans_free(w);
    cg__bans_free(u);
    free(v);
    cg__bans_free(t);
    ts_rmtree(dir);
}

static void test_missing_file(void **state)
{
    (void)state;
    cg__bans *t = cg__bans_new(10);
    size_t loaded = 9, expired = 9;
    char err[256];
    assert_int_equal(cg__bans_file_load("/nonexistent-dir-cg/state.json", t, NOW, &loaded, &expired,
                                        err, sizeof err),
                     0);
    assert_int_equal(loaded, 0);
    assert_int_equal(expired, 0);
    assert_int_equal(cg__bans_count(t), 0);
    cg__bans_free(t);
}

#define HDR "{\"condgate_state\": 1, \"bans\": [\n"
#define BAN(cidr)                                                                                  \
    "{\"cidr\": \"" cidr "\", \"origin\": \"admin\", \"reason\": \"r\", \"created\": "             \
    "\"2026-12-05T19:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\", \"hits\": 0}"

static void test_bad_files(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned line;
        const char *msg;
    } cases[] = {
        {"", 1, "expected the header"},
        {"{\"condgate_state\": 2, \"bans\": [\n]}\n", 1, "expected the header"},
        {"{\"condgate_state\":1,\"bans\":[\n]}\n", 1, "expected the header"},
        {HDR, 2, "missing the closing ]}"},
        {HDR BAN("10.0.0.0/8") ",\n", 3, "missing the closing ]}"},
        {HDR BAN("10.0.0.0/8") "\n]}\nx", 4, "text after the closing ]}"},
        {HDR BAN("10.0.0.0/8") "\n]}\n\n", 4, "text after the closing ]}"},
        {HDR BAN("10.0.0.0/8") ",\n]}\n", 2, "a comma after the last ban"},
        {HDR BAN("10.0.0.0/8") "\n" BAN("10.0.0.1") "\n]}\n", 3, "without a comma"},
        {HDR BAN("10.0.0.0/8") ",\n{\"cidr\": \n]}\n", 3, "bad JSON"},
        {HDR BAN("10.0.0.0/8") " x\n]}\n", 2, "bad JSON"},
        {HDR "[1]\n]}\n", 2, "a ban must be a JSON object"},
        {HDR "{\"cidr\": \"10.0.0.0/8\", \"origin\": \"admin\", \"reason\": \"r\", \"created\": "
             "\"2026-12-05T19:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\"}\n]}\n",
         2, "missing \"hits\""},
        {HDR "{\"cidr\": \"10.0.0.0/8\", \"origin\": \"admin\", \"reason\": \"r\", \"created\": "
             "\"2026-12-05T19:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\", \"hits\": 0, "
             "\"x\": 1}\n]}\n",
         2, "unknown key \"x\""},
        {HDR "{\"cidr\": \"10.0.0.0/8\", \"origin\": \"admin\", \"reason\": \"r\", \"created\": "
             "\"2026-12-05T19:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\", \"hits\": 0, "
             "\"hits\": 1}\n]}\n",
         2, "key \"hits\" given twice"},
        {HDR BAN("10.0.0.1/8") "\n]}\n", 2, "cidr: host bits set"},
        {HDR BAN("10.0.0.300") "\n]}\n", 2, "cidr: "},
        {HDR "{\"cidr\": \"10.0.0.0/8\", \"origin\": \"root\", \"reason\": \"r\", \"created\": "
             "\"2026-12-05T19:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\", \"hits\": 0}\n]}\n",
         2, "origin must be"},
        {HDR "{\"cidr\": \"10.0.0.0/8\", \"origin\": \"admin\", \"reason\": \"\\u0001\", "
             "\"created\": \"2026-12-05T19:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\", "
             "\"hits\": 0}\n]}\n",
         2, "reason must be"},
        {HDR "{\"cidr\": \"10.0.0.0/8\", \"origin\": \"admin\", \"reason\": \"r\", \"created\": "
             "\"2026-02-30T19:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\", \"hits\": 0}\n]}\n",
         2, "created must be an RFC 3339 UTC time"},
        {HDR "{\"cidr\": \"10.0.0.0/8\", \"origin\": \"admin\", \"reason\": \"r\", \"created\": "
             "\"2026-12-05T19:00:00Z\", \"expires\": \"2026-12-05 20:00:00\", \"hits\": 0}\n]}\n",
         2, "expires must be an RFC 3339 UTC time"},
        {HDR BAN("10.0.0.0/8") ",\n"
                               "{\"cidr\": \"10.0.0.1/32\", \"origin\": \"admin\", \"reason\": "
                               "\"r\", \"created\": "
                               "\"2026-12-05T21:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\", "
                               "\"hits\": 0}\n]}\n",
         3, "expires before it was created"},
        {HDR "{\"cidr\": \"10.0.0.0/8\", \"origin\": \"admin\", \"reason\": \"r\", \"created\": "
             "\"2026-12-05T19:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\", \"hits\": -1}\n]}\n",
         2, "hits must be"},
        {HDR
         "{\"cidr\": \"10.0.0.0/8\", \"origin\": \"admin\", \"reason\": \"r\", \"created\": "
         "\"2026-12-05T19:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\", \"hits\": 1.5}\n]}\n",
         2, "hits must be"},
        {HDR "{\"cidr\": 5, \"origin\": \"admin\", \"reason\": \"r\", \"created\": "
             "\"2026-12-05T19:00:00Z\", \"expires\": \"2026-12-05T20:00:00Z\", \"hits\": 0}\n]}\n",
         2, "cidr must be a string"},
        {HDR BAN("10.0.0.0/8") ",\n" BAN("10.0.0.0/8") "\n]}\n", 3, "a second ban on 10.0.0.0/8"},
        {HDR BAN("10.0.0.0/8") "\r\n]}\n", 2, "bad JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cg__bans *t = cg__bans_new(100);
        size_t loaded, expired;
        char err[1024] = "", want[64];
        int rc = cg__bans_file_parse("state.json", cases[i].text, strlen(cases[i].text), t, NOW,
                                     &loaded, &expired, err, sizeof err);
        snprintf(want, sizeof want, "state.json:%u: ", cases[i].line);
        if (rc == 0 || strncmp(err, want, strlen(want)) != 0 || strstr(err, cases[i].msg) == NULL ||
            strchr(err, '\n') != NULL)
            fail_msg("case %zu: rc %d, \"%s\"; wanted %s...%s", i, rc, err, want, cases[i].msg);
        cg__bans_free(t);
    }
    /* a line past CG_BANS_FILE_MAX_LINE, and a NUL byte */
    char *text = malloc(4096);
    char reason[1100];
    memset(reason, 'a', 1020);
    reason[1020] = '\0';
    snprintf(text, 4096, HDR BAN("10.0.0.0/8") ",\n{\"cidr\": \"%s\"}\n]}\n", reason);
    cg__bans *t = cg__bans_new(100);
    size_t loaded, expired;
    char err[1024];
    assert_int_equal(
        cg__bans_file_parse("s", text, strlen(text), t, NOW, &loaded, &expired, err, sizeof err),
        CG_EINVAL);
    assert_string_equal(err, "s:3: line longer than 1024 bytes");
    static const char nul[] = HDR BAN("10.0.0.0/8") "\n]}\n";
    memcpy(text, nul, sizeof nul);
    text[sizeof HDR + 20] = '\0';
    assert_int_equal(
        cg__bans_file_parse("s", text, sizeof nul - 1, t, NOW, &loaded, &expired, err, sizeof err),
        CG_EINVAL);
    assert_string_equal(err, "s:2: a NUL byte");
    free(text);
    /* good: without the final newline too */
    static const char ok[] = HDR BAN("10.0.0.0/8") ",\n" BAN("10.0.0.1") "\n]}";
    cg__bans *u = cg__bans_new(100);
    assert_int_equal(
        cg__bans_file_parse("s", ok, sizeof ok - 1, u, NOW, &loaded, &expired, err, sizeof err), 0);
    assert_int_equal(loaded, 2);
    cg__bans_free(u);
    cg__bans_free(t);
}

/* A failed write leaves the old file as it was: FILE.tmp is a directory,
 * which even root cannot open for writing. */
static void test_write_failure_keeps_old(void **state)
{
    (void)state;
    char dir[512], path[600], tmp[620];
    assert_int_equal(ts_mkdtemp(dir, sizeof dir, "cg-bans"), 0);
    snprintf(path, sizeof path, "%s/state.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    spit(path, "old contents");
    assert_int_equal(ts_mkdir(tmp), 0);
    cg__ban b = B("10.0.0.0/8", CG__BAN_ADMIN, NOW, NOW + 60, 0, "");
    char err[1024] = "";
    assert_int_equal(cg__bans_file_write(path, &b, 1, err, sizeof err), CG_EIO);
    assert_non_null(strstr(err, "state.json.tmp"));
    size_t len;
    char *text = slurp(path, &len);
    assert_string_equal(text, "old contents");
    free(text);
    ts_rmtree(dir);
}

/* ------------------------------------------------------------------------
 * The store
 */

enum { THREADS = 4, PER_THREAD = 150 };

typedef struct adder {
    cg__bans *t;
    cg__bans_store *s;
    int id;
    int failures;
} adder;

static void add_and_sync(void *arg)
{
    adder *a = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        cg__ban b = {.cidr = {.family = 4, .len = 32},
                     .origin = CG__BAN_ADMIN,
                     .created_s = NOW,
                     .expires_s = NOW + 3600,
                     .hits = (uint64_t)i};
        b.cidr.addr[0] = 10;
        b.cidr.addr[1] = (uint8_t)a->id;
        b.cidr.addr[2] = (uint8_t)(i >> 8);
        b.cidr.addr[3] = (uint8_t)i;
        snprintf(b.reason, sizeof b.reason, "thread %d ban %d", a->id, i);
        char err[1024];
        if (cg__bans_add(a->t, &b, NULL) != 0 ||
            cg__bans_store_sync(a->s, cg__bans_version(a->t), err, sizeof err) != 0)
            a->failures++;
    }
}

static void test_store_concurrent(void **state)
{
    (void)state;
    char dir[512], path[600];
    assert_int_equal(ts_mkdtemp(dir, sizeof dir, "cg-bans"), 0);
    snprintf(path, sizeof path, "%s/state.json", dir);
    cg__bans *t = cg__bans_new(10000);
    cg__bans_store *s = NULL;
    char err[1024] = "";
    assert_int_equal(cg__bans_store_start(path, t, &s, err, sizeof err), 0);
    /* nothing is written until a change */
    size_t len;
    assert_null(slurp(path, &len));
    uv_thread_t th[THREADS];
    adder a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (adder){t, s, i, 0};
        assert_int_equal(uv_thread_create(&th[i], add_and_sync, &a[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        uv_thread_join(&th[i]);
        assert_int_equal(a[i].failures, 0);
    }
    /* every ban was synced: the file holds them all before stop */
    cg__bans *u = cg__bans_new(10000);
    size_t loaded, expired;
    assert_int_equal(cg__bans_file_load(path, u, NOW, &loaded, &expired, err, sizeof err), 0);
    assert_int_equal(loaded, THREADS * PER_THREAD);
    cg__bans_free(u);
    /* a kick writes a change nobody waits for */
    cg_cidr k = {.family = 4, .len = 32, .addr = {10, 0, 0, 7}};
    assert_int_equal(cg__bans_remove(t, &k, NULL), 0);
    cg__bans_store_kick(s);
    assert_int_equal(cg__bans_store_sync(s, cg__bans_version(t), err, sizeof err), 0);
    /* and stop writes one nobody asked to be written */
    cg_cidr k2 = {.family = 4, .len = 32, .addr = {10, 1, 0, 8}};
    assert_int_equal(cg__bans_remove(t, &k2, NULL), 0);
    cg__bans_store_stop(s);
    u = cg__bans_new(10000);
    assert_int_equal(cg__bans_file_load(path, u, NOW, &loaded, &expired, err, sizeof err), 0);
    assert_int_equal(loaded, THREADS * PER_THREAD - 2);
    assert_int_equal(cg__bans_find(u, &k, NULL), CG_ENOENT);
    assert_int_equal(cg__bans_find(u, &k2, NULL), CG_ENOENT);
    cg__ban got;
    k.addr[1] = 3;
    k.addr[3] = 149;
    assert_int_equal(cg__bans_find(u, &k, &got), 0);
    assert_string_equal(got.reason, "thread 3 ban 149");
    assert_int_equal(got.hits, 149);
    cg__bans_free(u);
    cg__bans_free(t);
    cg__bans_store_stop(NULL);
    ts_rmtree(dir);
}

/* A write that fails answers CG_EIO to the waiters; the next change
 * retries. */
static void test_store_failure(void **state)
{
    (void)state;
    char dir[512], sub[560], path[600];
    assert_int_equal(ts_mkdtemp(dir, sizeof dir, "cg-bans"), 0);
    snprintf(sub, sizeof sub, "%s/gone", dir);
    snprintf(path, sizeof path, "%s/state.json", sub);
    cg__bans *t = cg__bans_new(100);
    cg__bans_store *s = NULL;
    char err[1024] = "";
    assert_int_equal(cg__bans_store_start(path, t, &s, err, sizeof err), 0);
    cg__ban b = B("10.0.0.0/8", CG__BAN_ADMIN, NOW, NOW + 60, 0, "");
    assert_int_equal(cg__bans_add(t, &b, NULL), 0);
    assert_int_equal(cg__bans_store_sync(s, cg__bans_version(t), err, sizeof err), CG_EIO);
    assert_non_null(strstr(err, "state.json.tmp"));
    /* the same version again: a new attempt, failing again */
    err[0] = '\0';
    assert_int_equal(cg__bans_store_sync(s, cg__bans_version(t), err, sizeof err), CG_EIO);
    assert_true(err[0] != '\0');
    /* the directory appears; the next change is written, with the first */
    assert_int_equal(ts_mkdir(sub), 0);
    cg__ban c = B("10.1.0.0/16", CG__BAN_ADMIN, NOW, NOW + 60, 0, "");
    assert_int_equal(cg__bans_add(t, &c, NULL), 0);
    assert_int_equal(cg__bans_store_sync(s, cg__bans_version(t), err, sizeof err), 0);
    cg__bans *u = cg__bans_new(100);
    size_t loaded, expired;
    assert_int_equal(cg__bans_file_load(path, u, NOW, &loaded, &expired, err, sizeof err), 0);
    assert_int_equal(loaded, 2);
    /* already on disk: returns at once */
    assert_int_equal(cg__bans_store_sync(s, cg__bans_version(t), err, sizeof err), 0);
    cg__bans_store_stop(s);
    cg__bans_free(u);
    cg__bans_free(t);
    ts_rmtree(dir);
}

int main(void)
{
    ts_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_write_failure_keeps_old),
        cmocka_unit_test(test_store_concurrent),
        cmocka_unit_test(test_store_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
