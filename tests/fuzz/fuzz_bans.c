/* fuzz_bans.c — the two parsers of bans: POST /bans bodies
 * (cg__ban_request_parse) and the state file (cg__bans_file_parse).
 *
 * The first byte picks the parser (even: a request body, odd: a state
 * file); the rest is its input.
 *
 * A request that parses holds 1 to CG_BAN_REQUEST_MAX bans, each a
 * canonical prefix (host bits zero, IPv4-mapped as IPv4), a ttl_s from 1 to
 * one year and a valid reason; added to a table of 64 they never pass its
 * bound. A state file that parses fills a table of at most 64 bans whose
 * reasons are valid and which expire after they were made; written back
 * (cg__bans_file_format) and read again it gives the same bans, and the
 * text written the second time is the same. Any failure is one line (for
 * the file: "state.json:LINE: message", LINE inside the text or one past).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bans_file.h"
#include "condgate/common.h"
#include "fuzz_common.h"

#define NOW 1796497200 /* 2026-12-05T19:00:00Z */
#define TABLE_MAX 64
#define ERR_LEN 1024

static void fuzz_request(const char *text, size_t len)
{
    cg__ban_request *v = NULL;
    size_t n = 0;
    char err[ERR_LEN];
    int rc = cg__ban_request_parse(text, len, &v, &n, err, sizeof err);
    if (rc != 0) {
        FUZZ_CHECK(rc == CG_EINVAL || rc == CG_ERANGE || rc == CG_ENOMEM, "rc %d", rc);
        FUZZ_CHECK(v == NULL && n == 0, "output on failure");
        fuzz_check_one_line(err, sizeof err);
        return;
    }
    FUZZ_CHECK(n >= 1 && n <= CG_BAN_REQUEST_MAX, "%zu bans", n);
    cg__bans *t = cg__bans_new(TABLE_MAX);
    FUZZ_CHECK(t != NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(fuzz_cidr_canonical(&v[i].cidr), "ban %zu not canonical", i);
        FUZZ_CHECK(v[i].ttl_s >= 1 && v[i].ttl_s <= CG_BAN_TTL_MAX_S, "ttl %u", v[i].ttl_s);
        size_t l = strnlen(v[i].reason, sizeof v[i].reason);
        FUZZ_CHECK(l <= CG_BAN_REASON_MAX && cg__ban_reason_ok(v[i].reason, l), "reason %zu", i);
        cg__ban b = {.cidr = v[i].cidr, .created_s = NOW, .expires_s = NOW + v[i].ttl_s};
        memcpy(b.reason, v[i].reason, l + 1);
        rc = cg__bans_add(t, &b, NULL);
        FUZZ_CHECK(rc == 0 || rc == CG_ERANGE, "add: %d", rc);
        FUZZ_CHECK(cg__bans_count(t) <= TABLE_MAX, "count past the bound");
        FUZZ_CHECK(rc != 0 || cg__bans_match(t, &b.cidr, NOW, false, NULL),
                   "an added ban does not cover its own prefix");
    }
    cg__bans_free(t);
    free(v);
}

static void same_bans(const cg__ban *a, size_t na, const cg__ban *b, size_t nb)
{
    FUZZ_CHECK(na == nb, "%zu bans, then %zu", na, nb);
    for (size_t i = 0; i < na; i++) {
        FUZZ_CHECK(memcmp(&a[i].cidr, &b[i].cidr, sizeof a[i].cidr) == 0, "ban %zu: cidr", i);
        FUZZ_CHECK(a[i].origin == b[i].origin, "ban %zu: origin", i);
        FUZZ_CHECK(a[i].created_s == b[i].created_s && a[i].expires_s == b[i].expires_s,
                   "ban %zu: times", i);
        FUZZ_CHECK(a[i].hits == b[i].hits, "ban %zu: hits", i);
        FUZZ_CHECK(strcmp(a[i].reason, b[i].reason) == 0, "ban %zu: reason", i);
    }
}

/* reparse: the text written for bans v[0..n) parses back to the same bans
 * and is written the same again. */
static void reparse(const cg__ban *v, size_t n)
{
    char *text = NULL, *again = NULL, err[ERR_LEN];
    size_t len = 0, len2 = 0, loaded, expired;
    FUZZ_CHECK(cg__bans_file_format(v, n, &text, &len) == 0, "format");
    cg__bans *u = cg__bans_new(TABLE_MAX);
    FUZZ_CHECK(u != NULL, "out of memory");
    int rc =
        cg__bans_file_parse("again.json", text, len, u, NOW, &loaded, &expired, err, sizeof err);
    FUZZ_CHECK(rc == 0, "written file does not parse: %s", err);
    FUZZ_CHECK(loaded == n && expired == 0, "loaded %zu expired %zu of %zu", loaded, expired, n);
    cg__ban *w = NULL;
    size_t m = 0;
    FUZZ_CHECK(cg__bans_snapshot(u, &w, &m, NULL) == 0, "snapshot");
    same_bans(v, n, w, m);
    FUZZ_CHECK(cg__bans_file_format(w, m, &again, &len2) == 0, "format");
    FUZZ_CHECK(len == len2 && memcmp(text, again, len) == 0, "written differently the second time");
    free(again);
    free(w);
    free(text);
    cg__bans_free(u);
}

static void fuzz_file(const char *text, size_t len)
{
    cg__bans *t = cg__bans_new(TABLE_MAX);
    FUZZ_CHECK(t != NULL, "out of memory");
    size_t loaded = 0, expired = 0;
    char err[ERR_LEN];
    int rc =
        cg__bans_file_parse("state.json", text, len, t, NOW, &loaded, &expired, err, sizeof err);
    FUZZ_CHECK(cg__bans_count(t) <= TABLE_MAX, "count past the bound");
    FUZZ_CHECK(cg__bans_count(t) == loaded, "count %zu, loaded %zu", cg__bans_count(t), loaded);
    if (rc != 0) {
        FUZZ_CHECK(rc == CG_EINVAL || rc == CG_ERANGE || rc == CG_ENOMEM, "rc %d", rc);
        fuzz_check_error(err, sizeof err, "state.json", 1, fuzz_lines(text, len) + 1);
        cg__bans_free(t);
        return;
    }
    cg__ban *v = NULL;
    size_t n = 0;
    FUZZ_CHECK(cg__bans_snapshot(t, &v, &n, NULL) == 0, "snapshot");
    for (size_t i = 0; i < n; i++) {
        size_t l = strnlen(v[i].reason, sizeof v[i].reason);
        FUZZ_CHECK(l <= CG_BAN_REASON_MAX && cg__ban_reason_ok(v[i].reason, l), "reason %zu", i);
        FUZZ_CHECK(fuzz_cidr_canonical(&v[i].cidr), "ban %zu not canonical", i);
        FUZZ_CHECK(v[i].expires_s > NOW && v[i].expires_s > v[i].created_s, "ban %zu times", i);
    }
    reparse(v, n);
    free(v);
    cg__bans_free(t);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *text = fuzz_text(data + 1, size - 1);
    if (data[0] & 1)
        fuzz_file(text, size - 1);
    else
        fuzz_request(text, size - 1);
    free(text);
    return 0;
}
