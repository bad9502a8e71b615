/* admin_bans.c — POST, GET and DELETE /bans: bodies and queries checked,
 * bans put in force through the runtime, answers built. */
#include "admin_bans.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_json.h"
#include "condgate/common.h"
#include "log.h"

/* HTTP statuses used here (libmicrohttpd's names live in admin.c). */
enum {
    ST_OK = 200,
    ST_CREATED = 201,
    ST_BAD_REQUEST = 400,
    ST_NOT_FOUND = 404,
    ST_TOO_LARGE = 413,
    ST_UNPROCESSABLE = 422,
    ST_INTERNAL = 500,
};

cJSON *cg__admin_ban_json(const cg__ban *b, int64_t now_s)
{
    char cidr[CG_CIDR_STRLEN], created[CG_BAN_TIME_STRLEN], expires[CG_BAN_TIME_STRLEN];
    bool oom = false;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    put_str(&oom, o, "cidr", cg_cidr_format(&b->cidr, cidr, sizeof(cidr)));
    put_str(&oom, o, "origin", cg__ban_origin_name(b->origin));
    put_str(&oom, o, "reason", b->reason);
    put_str(&oom, o, "created", cg__ban_time_format(b->created_s, created, sizeof(created)));
    put_str(&oom, o, "expires", cg__ban_time_format(b->expires_s, expires, sizeof(expires)));
    put_u64(&oom, o, "ttl_s", b->expires_s > now_s ? (uint64_t)(b->expires_s - now_s) : 0);
    put_u64(&oom, o, "hits", b->hits);
    if (oom) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* {"error": msg}; NULL only when out of memory. */
static cJSON *error_json(const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    if (o != NULL && cJSON_AddStringToObject(o, "error", msg) == NULL) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static unsigned fail(unsigned status, const char *msg, cJSON **out)
{
    *out = error_json(msg);
    return *out != NULL ? status : ST_INTERNAL;
}

/* The first requested ban that overlaps never_ban, as an error line. */
static bool protected_one(const cg_ruleset *never, const cg__ban_request *req, size_t n, char *msg,
                          size_t len)
{
    for (size_t i = 0; i < n; i++) {
        cg_cidr hit;
        if (never != NULL && cg__bans_overlap(never, &req[i].cidr, &hit)) {
            char a[CG_CIDR_STRLEN], b[CG_CIDR_STRLEN];
            snprintf(msg, len, "%s%s overlaps never_ban entry %s; nothing was banned",
                     n > 1 ? "a ban " : "", cg_cidr_format(&req[i].cidr, a, sizeof(a)),
                     cg_cidr_format(&hit, b, sizeof(b)));
            return true;
        }
    }
    return false;
}

static void log_ban(const cg__ban *b)
{
    char cidr[CG_CIDR_STRLEN], ttl[24];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(b->expires_s - b->created_s));
    cg__log_event(CG_LOG_INFO, "ban", "cidr", cg_cidr_format(&b->cidr, cidr, sizeof(cidr)),
                  "origin", cg__ban_origin_name(b->origin), "ttl_s", ttl, "reason", b->reason,
                  NULL);
}

/* The answer to a POST that put every ban of req[0..n) in force. */
static unsigned created_json(cg__runtime *rt, const cg__ban_request *req, size_t n, int64_t now,
                             cJSON **out)
{
    bool oom = false;
    cJSON *root = cJSON_CreateObject();
    put_bool(&oom, root, "ok", true);
    cJSON *arr = n > 1 ? put_arr(&oom, root, "bans") : NULL;
    if (n > 1)
        put_u64(&oom, root, "count", n);
    for (size_t i = 0; i < n && i < CG_ADMIN_BANS_LIST_MAX && root != NULL && !oom; i++) {
        cg__ban b;
        if (cg__bans_find(cg__runtime_bans(rt), &req[i].cidr, &b) != 0)
            continue; /* lifted or expired meanwhile */
        cJSON *o = cg__admin_ban_json(&b, now);
        if (o == NULL)
            oom = true;
        else if (n > 1)
            cJSON_AddItemToArray(arr, o);
        else
            cJSON_AddItemToObject(root, "ban", o);
    }
    if (root == NULL || oom) {
        cJSON_Delete(root);
        return fail(ST_INTERNAL, "out of memory", out);
    }
    *out = root;
    return ST_CREATED;
}

unsigned cg__admin_bans_post(cg__runtime *rt, const cg_ruleset *never_ban, const char *body,
                             size_t len, cJSON **out)
{
    char err[CG_ERR_MAX];
    cg__ban_request *req = NULL;
    size_t n = 0;
    int rc = cg__ban_request_parse(body, len, &req, &n, err, sizeof(err));
    if (rc != 0)
        return fail(rc == CG_ENOMEM     ? ST_INTERNAL
                    : rc == CG_ERANGE && len > CG_BAN_BODY_MAX ? ST_TOO_LARGE
                                                               : ST_BAD_REQUEST,
                    err, out);
    if (protected_one(never_ban, req, n, err, sizeof(err))) {
        free(req);
        return fail(ST_UNPROCESSABLE, err, out);
    }
    int64_t now = cg__runtime_now_s();
    for (size_t i = 0; i < n; i++) {
        cg__ban b = {.cidr = req[i].cidr,
                     .origin = CG__BAN_ADMIN,
                     .created_s = now,
                     .expires_s = now + (int64_t)req[i].ttl_s};
        memcpy(b.reason, req[i].reason, sizeof(b.reason));
        /* Only the last one waits for the state file: one write holds all. */
        rc = cg__runtime_ban(rt, &b, i + 1 == n, NULL, err, sizeof(err));
        if (rc != 0) {
            free(req);
            return fail(rc == CG_ERANGE ? ST_UNPROCESSABLE : ST_INTERNAL, err, out);
        }
        if (n <= 16 || i + 1 == n)
            log_ban(&b);
    }
    unsigned status = created_json(rt, req, n, now, out);
    free(req);
    return status;
}

/* limit=N: 1..CG_ADMIN_BANS_LIST_MAX. */
static bool parse_limit(const char *s, size_t *out)
{
    char *end;
    if (s == NULL) {
        *out = CG_ADMIN_BANS_LIST_MAX;
        return true;
    }
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > CG_ADMIN_BANS_LIST_MAX)
        return false;
    *out = (size_t)v;
    return true;
}

typedef struct list_ctx {
    cJSON *arr;
    int64_t now;
    bool oom;
} list_ctx;

static bool list_one(void *arg, const cg__ban *b)
{
    list_ctx *lc = arg;
    cJSON *o = cg__admin_ban_json(b, lc->now);
    if (o == NULL || !cJSON_AddItemToArray(lc->arr, o)) {
        cJSON_Delete(o);
        lc->oom = true;
        return false;
    }
    return true;
}

unsigned cg__admin_bans_get(cg__runtime *rt, const char *limit, const char *after, cJSON **out)
{
    char perr[256], msg[320];
    size_t max;
    cg_cidr from;
    if (!parse_limit(limit, &max)) {
        snprintf(msg, sizeof(msg), "bad limit: want an integer from 1 to %d",
                 CG_ADMIN_BANS_LIST_MAX);
        return fail(ST_BAD_REQUEST, msg, out);
    }
    if (after != NULL && cg_cidr_parse(after, strlen(after), &from, perr, sizeof(perr)) != 0) {
        snprintf(msg, sizeof(msg), "bad after: %s", perr);
        return fail(ST_BAD_REQUEST, msg, out);
    }
    cg__bans *bans = cg__runtime_bans(rt);
    bool oom = false;
    cJSON *root = cJSON_CreateObject();
    put_u64(&oom, root, "count", cg__bans_count(bans));
    list_ctx lc = {.arr = put_arr(&oom, root, "bans"), .now = cg__runtime_now_s()};
    if (!oom)
        cg__bans_list(bans, after != NULL ? &from : NULL, max, list_one, &lc);
    if (root == NULL || oom || lc.oom) {
        cJSON_Delete(root);
        return fail(ST_INTERNAL, "out of memory", out);
    }
    *out = root;
    return ST_OK;
}

unsigned cg__admin_bans_delete(cg__runtime *rt, const char *cidr, cJSON **out)
{
    char perr[256], msg[320], err[CG_ERR_MAX];
    cg_cidr c;
    if (cidr == NULL || cidr[0] == '\0')
        return fail(ST_BAD_REQUEST, "missing cidr: DELETE /bans?cidr=CIDR", out);
    if (cg_cidr_parse(cidr, strlen(cidr), &c, perr, sizeof(perr)) != 0) {
        snprintf(msg, sizeof(msg), "bad cidr: %s", perr);
        return fail(ST_BAD_REQUEST, msg, out);
    }
    int rc = cg__runtime_unban(rt, &c, err, sizeof(err));
    if (rc == CG_ENOENT)
        return fail(ST_NOT_FOUND, "no such ban", out);
    if (rc != 0)
        return fail(ST_INTERNAL, err, out);
    char text[CG_CIDR_STRLEN];
    cg__log_event(CG_LOG_INFO, "unban", "cidr", cg_cidr_format(&c, text, sizeof(text)), "origin",
                  "admin", "why", "deleted", NULL);
    bool oom = false;
    cJSON *root = cJSON_CreateObject();
    put_bool(&oom, root, "ok", true);
    if (root == NULL || oom) {
        cJSON_Delete(root);
        return fail(ST_INTERNAL, "out of memory", out);
    }
    *out = root;
    return ST_OK;
}
