/* admin.c — the admin HTTP port (SPEC §6) on libmicrohttpd: who may connect,
 * bearer tokens, routing, and the JSON and Prometheus renderings of the
 * gate's counters and rule sets.
 *
 * Threads: MHD accepts on one thread of its own and runs the accept policy
 * there (so the reject-line limiter below has a single user). Each admitted
 * connection is then served on its own thread, at most
 * CG_ADMIN_MAX_CONNECTIONS of them: POST /reload blocks in the gate view's
 * reload_wait until the reload is done, and must not hold up
 * /healthz or a metrics scrape meanwhile. Handlers share nothing but the
 * atomic counters of cg__admin; the configuration (allow list, token, rule
 * sets) is taken from the gate's current generation for every caller.
 */
#include "admin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <uv.h>

#include "condgate/accept.h"
#include "condgate/rules.h"
#include "ct.h"
#include "gen.h"
#include "log.h"
#include "policy.h"
#include "net.h"
#include "stats.h"
#include "sys.h"

/* GET / serves src/admin_page.html, turned into admin_page.h in the build
 * tree. Without it (a tree where the page is not there yet) a placeholder
 * that links the endpoints is served instead. */
#if defined(__has_include)
#if __has_include("admin_page.h")
#include "admin_page.h"
#define HAVE_ADMIN_PAGE 1
#endif
#endif
#if defined(HAVE_ADMIN_PAGE)
#define PAGE cg__admin_page_html
#define PAGE_LEN ((size_t)CG_ADMIN_PAGE_LEN)
#else
static const char placeholder_page[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>condgate</title>"
    "</head>\n<body><h1>condgate</h1><p>The admin page is not built into this binary.</p>\n"
    "<ul><li><a href=\"/healthz\">/healthz</a></li><li><a href=\"/stats\">/stats</a></li>"
    "<li><a href=\"/metrics\">/metrics</a></li><li><a href=\"/rules\">/rules</a></li>"
    "<li>/rules/explain?addr=IP[&amp;set=NAME]</li><li>POST /reload</li></ul>\n</body></html>\n";
#define PAGE placeholder_page
#define PAGE_LEN (sizeof(placeholder_page) - 1)
#endif

/* Request bodies are never needed (POST /reload ignores its body); at most
 * this many bytes are read and dropped, a longer body closes the connection
 * and an announced one is answered 413 before it is read. */
#define MAX_BODY 4096
/* Entries listed per rule set by GET /rules. */
#define TOP_RULES 10
/* Stack of each connection thread: the handlers keep little on the stack. */
#define THREAD_STACK ((size_t)512 * 1024)
/* Pending admin connections the kernel may queue. */
#define LISTEN_BACKLOG 64u
/* At stop, how long requests in progress may take to finish sending. */
#define STOP_GRACE_MS 1000

#define TYPE_JSON "application/json"
#define TYPE_TEXT "text/plain; charset=utf-8"
#define TYPE_HTML "text/html; charset=utf-8"
#define TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define OOM_JSON "{\"error\":\"out of memory\"}\n"

struct cg__admin {
    struct MHD_Daemon *daemon;
    cg__gate_view view; /* the gate, as given to cg__admin_start */
    char listen[CG_ENDPOINT_STRLEN];
    _Atomic uint64_t refused;      /* callers refused at accept */
    _Atomic uint64_t unauthorized; /* 401 answers */
    _Atomic unsigned inflight;     /* requests begun and not yet completed */
    cg__log_limiter limiter;       /* admin_reject lines; MHD's accept thread only */
    /* While MHD starts, its last message is kept for the error line. */
    _Atomic bool starting;
    char start_msg[256];
};

typedef enum MHD_Result (*handler_fn)(cg__admin *a, struct MHD_Connection *c);

/* One endpoint. A GET endpoint answers HEAD as well. */
typedef struct route {
    const char *path;
    const char *method;
    const char *allow; /* the Allow header of a 405 */
    bool open;         /* served without the token */
    handler_fn fn;
} route;

/* Per request, from its request line (on_uri) to completion. */
typedef struct request {
    const route *route;
    size_t body;   /* bytes of body seen (and dropped) */
    bool headers;  /* on_request has had the headers (and counted in inflight) */
    bool path_nul; /* the path as sent holds %00 */
} request;

/* ------------------------------------------------------------------------
 * Responses
 */

/* Queue resp (taking it) with the headers every answer carries and an
 * optional extra one. */
static enum MHD_Result send_response(struct MHD_Connection *c, unsigned status, const char *type,
                                     struct MHD_Response *resp, const char *hname,
                                     const char *hvalue)
{
    enum MHD_Result rc = MHD_NO;
    if (resp == NULL)
        return MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") != MHD_YES ||
        (hname != NULL && MHD_add_response_header(resp, hname, hvalue) != MHD_YES))
        goto destroy;
    rc = MHD_queue_response(c, status, resp);
destroy:
    MHD_destroy_response(resp);
    return rc;
}

/* Answer with a body in static storage. */
static enum MHD_Result reply_static(struct MHD_Connection *c, unsigned status, const char *type,
                                    const char *body, size_t len, const char *hname,
                                    const char *hvalue)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
    return send_response(c, status, type, resp, hname, hvalue);
}

/* Answer with a malloc'd body, which MHD frees once sent (or now, on
 * failure). */
static enum MHD_Result reply_owned(struct MHD_Connection *c, unsigned status, const char *type,
                                   char *body, size_t len, const char *hname, const char *hvalue)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, body, free);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    return send_response(c, status, type, resp, hname, hvalue);
}

static enum MHD_Result reply_oom(struct MHD_Connection *c)
{
    return reply_static(c, MHD_HTTP_INTERNAL_SERVER_ERROR, TYPE_JSON, OOM_JSON,
                        sizeof(OOM_JSON) - 1, NULL, NULL);
}

/* Answer with root printed as one line of JSON; takes root. oom says that
 * building it failed part-way, which turns the answer into a 500. */
static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, cJSON *root, bool oom,
                                  const char *hname, const char *hvalue)
{
    char *text = root != NULL && !oom ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (text == NULL)
        return reply_oom(c);
    size_t n = strlen(text);
    char *body = malloc(n + 2);
    if (body == NULL) {
        cJSON_free(text);
        return reply_oom(c);
    }
    memcpy(body, text, n);
    body[n] = '\n';
    body[n + 1] = '\0';
    cJSON_free(text);
    return reply_owned(c, status, TYPE_JSON, body, n + 1, hname, hvalue);
}

/* {"error": msg} with status and an optional extra header. */
static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *msg,
                                   const char *hname, const char *hvalue)
{
    cJSON *root = cJSON_CreateObject();
    bool oom = root == NULL || cJSON_AddStringToObject(root, "error", msg) == NULL;
    return reply_json(c, status, root, oom, hname, hvalue);
}

/* ------------------------------------------------------------------------
 * JSON building: each helper records an allocation failure in *oom and
 * does nothing when the parent is missing, so a handler checks once.
 */

static void put_u64(bool *oom, cJSON *o, const char *key, uint64_t v)
{
    /* Raw digits: counters stay exact past 2^53, where a double would not. */
    char num[24];
    snprintf(num, sizeof(num), "%" PRIu64, v);
    if (cJSON_AddRawToObject(o, key, num) == NULL)
        *oom = true;
}

/* A string, or null when v is NULL. */
static void put_str(bool *oom, cJSON *o, const char *key, const char *v)
{
    if ((v != NULL ? cJSON_AddStringToObject(o, key, v) : cJSON_AddNullToObject(o, key)) == NULL)
        *oom = true;
}

static void put_bool(bool *oom, cJSON *o, const char *key, bool v)
{
    if (cJSON_AddBoolToObject(o, key, v) == NULL)
        *oom = true;
}

static cJSON *put_obj(bool *oom, cJSON *o, const char *key)
{
    cJSON *child = cJSON_AddObjectToObject(o, key);
    if (child == NULL)
        *oom = true;
    return child;
}

static cJSON *put_arr(bool *oom, cJSON *o, const char *key)
{
    cJSON *child = cJSON_AddArrayToObject(o, key);
    if (child == NULL)
        *oom = true;
    return child;
}

/* A new object appended to array arr. */
static cJSON *push_obj(bool *oom, cJSON *arr)
{
    cJSON *item = cJSON_CreateObject();
    if (item != NULL && arr != NULL && cJSON_AddItemToArray(arr, item))
        return item;
    cJSON_Delete(item);
    *oom = true;
    return NULL;
}

static void push_str(bool *oom, cJSON *arr, const char *v)
{
    cJSON *item = cJSON_CreateString(v);
    if (item != NULL && arr != NULL && cJSON_AddItemToArray(arr, item))
        return;
    cJSON_Delete(item);
    *oom = true;
}

static void put_rejected_by(bool *oom, cJSON *o, const cg__lsum *t)
{
    cJSON *by = put_obj(oom, o, "rejected_by");
    for (int r = 0; r < CG__REJ_COUNT; r++)
        put_u64(oom, by, cg__reject_reason_name((cg__reject_reason)r), t->rejected[r]);
}

/* {"cidr", "action", "source", "label", "hits"} of one entry. */
static void put_rule(bool *oom, cJSON *o, const cg_rule_info *info)
{
    char cidr[CG_CIDR_STRLEN], source[CG_LOG_SOURCE_STRLEN];
    cg_cidr_format(&info->cidr, cidr, sizeof(cidr));
    cg__log_format_source(info, source, sizeof(source));
    put_str(oom, o, "cidr", cidr);
    put_str(oom, o, "action", cg_action_name(info->action));
    put_str(oom, o, "source", source);
    put_str(oom, o, "label", info->label);
    put_u64(oom, o, "hits", info->hits);
}

/* ------------------------------------------------------------------------
 * Text building for /metrics: a growing buffer that remembers a failed
 * allocation instead of reporting each one.
 */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(strbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 > b->len + (size_t)n + 1 ? b->cap * 2 : b->len + (size_t)n + 1;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* A label value, escaped as the text format wants (\\, \", \n). */
static void sb_label_value(strbuf *b, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\')
            sb_printf(b, "\\\\");
        else if (*v == '"')
            sb_printf(b, "\\\"");
        else if (*v == '\n')
            sb_printf(b, "\\n");
        else
            sb_printf(b, "%c", *v);
    }
}

static void metric_family(strbuf *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample with up to two labels (k1/k2 NULL: fewer). */
static void metric_sample(strbuf *b, const char *name, const char *k1, const char *v1,
                          const char *k2, const char *v2, uint64_t value)
{
    sb_printf(b, "%s", name);
    if (k1 != NULL) {
        sb_printf(b, "{%s=\"", k1);
        sb_label_value(b, v1);
        if (k2 != NULL) {
            sb_printf(b, "\",%s=\"", k2);
            sb_label_value(b, v2);
        }
        sb_printf(b, "\"}");
    }
    sb_printf(b, " %" PRIu64 "\n", value);
}

/* ------------------------------------------------------------------------
 * Endpoints
 */

static enum MHD_Result serve_page(cg__admin *a, struct MHD_Connection *c)
{
    return reply_static(c, MHD_HTTP_OK, TYPE_HTML, PAGE, PAGE_LEN, NULL, NULL);
}

static enum MHD_Result serve_health(cg__admin *a, struct MHD_Connection *c)
{
    return reply_static(c, MHD_HTTP_OK, TYPE_TEXT, "ok\n", 3, NULL, NULL);
}

/* Add to t the callers the kernel refused for listener l before any accept
 * (counted under their reason like every other refusal). Returns the
 * kernel's mode for l; *refused gets how many it refused. */
static const char *add_kernel(cg__admin *a, size_t l, cg__lsum *t, uint64_t *refused)
{
    uint64_t k[CG__REJ_COUNT] = {0};
    const char *mode = a->view.prefilter(a->view.ctx, l, k);
    *refused = 0;
    for (int r = 0; r < CG__REJ_COUNT; r++) {
        t->rejected[r] += k[r];
        *refused += k[r];
    }
    return mode;
}

static enum MHD_Result serve_stats(cg__admin *a, struct MHD_Connection *c)
{
    cg__gen *gen = a->view.acquire(a->view.ctx);
    cg__stats *st = a->view.stats(a->view.ctx);
    bool oom = false;
    cg__lsum t;
    cJSON *root = cJSON_CreateObject();

    uint64_t refused;
    cg__stats_sum_all(st, &t);
    for (size_t i = 0; i < st->nlisteners; i++)
        add_kernel(a, i, &t, &refused);
    put_str(&oom, root, "version", CG_VERSION_STRING);
    put_u64(&oom, root, "uptime_s", a->view.uptime_ms(a->view.ctx) / 1000);
    put_u64(&oom, root, "generation", gen->number);
    put_u64(&oom, root, "reloads", atomic_load(&st->reloads));
    put_u64(&oom, root, "reload_failures", atomic_load(&st->reload_failures));
    put_u64(&oom, root, "max_connections", a->view.max_connections(a->view.ctx));
    put_u64(&oom, root, "max_connections_configured", gen->cfg->max_connections);
    cJSON *conns = put_obj(&oom, root, "connections");
    put_u64(&oom, conns, "active", cg__lsum_active(&t));
    put_u64(&oom, conns, "accepted", t.accepted);
    put_u64(&oom, conns, "rejected", cg__lsum_rejected(&t));
    put_u64(&oom, conns, "closed", t.closed);
    put_rejected_by(&oom, root, &t);
    cJSON *bytes = put_obj(&oom, root, "bytes");
    put_u64(&oom, bytes, "in", t.bytes_in);
    put_u64(&oom, bytes, "out", t.bytes_out);
    put_u64(&oom, root, "backend_errors", t.backend_errors);

    cJSON *listeners = put_arr(&oom, root, "listeners");
    for (size_t i = 0; i < st->nlisteners && !oom; i++) {
        const cg_listener_conf *lc = cg__gen_listener(gen, i);
        cJSON *o = push_obj(&oom, listeners);
        cg__stats_sum_listener(st, i, &t);
        const char *mode = add_kernel(a, i, &t, &refused);
        put_str(&oom, o, "name", lc->name);
        put_str(&oom, o, "bind", lc->bind.text);
        put_str(&oom, o, "rules", cg_ruleset_name(gen->cfg->rulesets[lc->ruleset]));
        cJSON *backends = put_arr(&oom, o, "backends");
        if (lc->echo)
            push_str(&oom, backends, "echo");
        for (size_t b = 0; b < lc->nbackends; b++)
            push_str(&oom, backends, lc->backends[b].text);
        put_u64(&oom, o, "active", cg__lsum_active(&t));
        put_u64(&oom, o, "accepted", t.accepted);
        put_u64(&oom, o, "rejected", cg__lsum_rejected(&t));
        put_u64(&oom, o, "closed", t.closed);
        put_u64(&oom, o, "backend_errors", t.backend_errors);
        put_u64(&oom, o, "bytes_in", t.bytes_in);
        put_u64(&oom, o, "bytes_out", t.bytes_out);
        put_rejected_by(&oom, o, &t);
        cJSON *pf = put_obj(&oom, o, "prefilter");
        put_str(&oom, pf, "mode", mode);
        put_u64(&oom, pf, "refused", refused);
    }

    cJSON *workers = put_arr(&oom, root, "workers");
    for (unsigned w = 0; w < a->view.workers(a->view.ctx) && !oom; w++) {
        uint64_t handled, active;
        cg__stats_worker(st, w, &handled, &active);
        cJSON *o = push_obj(&oom, workers);
        put_u64(&oom, o, "id", w);
        put_u64(&oom, o, "active", active);
        put_u64(&oom, o, "handled", handled);
    }

    cJSON *admin = put_obj(&oom, root, "admin");
    put_str(&oom, admin, "listen", a->listen);
    put_u64(&oom, admin, "refused", atomic_load(&a->refused));
    put_u64(&oom, admin, "unauthorized", atomic_load(&a->unauthorized));
    cg__gen_unref(gen);
    return reply_json(c, MHD_HTTP_OK, root, oom, NULL, NULL);
}

static enum MHD_Result serve_metrics(cg__admin *a, struct MHD_Connection *c)
{
    cg__gen *gen = a->view.acquire(a->view.ctx);
    cg__stats *st = a->view.stats(a->view.ctx);
    size_t n = st->nlisteners;
    cg__lsum *sums = calloc(n ? n : 1, sizeof(*sums));
    uint64_t *kernel = calloc(n ? n : 1, sizeof(*kernel)); /* refused before accept */
    strbuf b = {.p = malloc(4096), .cap = 4096};
    enum MHD_Result rc;

    if (sums == NULL || kernel == NULL || b.p == NULL) {
        rc = reply_oom(c);
        goto release;
    }
    for (size_t i = 0; i < n; i++) {
        cg__stats_sum_listener(st, i, &sums[i]);
        add_kernel(a, i, &sums[i], &kernel[i]);
    }

#define LNAME(i) (cg__gen_listener(gen, (i))->name)
    metric_family(&b, "condgate_connections_accepted_total", "counter",
                  "Connections accepted and handed to a worker.");
    for (size_t i = 0; i < n; i++)
        metric_sample(&b, "condgate_connections_accepted_total", "listener", LNAME(i), NULL, NULL,
                      sums[i].accepted);
    metric_family(&b, "condgate_connections_rejected_total", "counter",
                  "Connections refused: a deny rule, the default, or max_connections; in the "
                  "kernel before the handshake, or at accept.");
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < CG__REJ_COUNT; r++)
            metric_sample(&b, "condgate_connections_rejected_total", "listener", LNAME(i), "reason",
                          cg__reject_reason_name((cg__reject_reason)r), sums[i].rejected[r]);
    metric_family(&b, "condgate_prefilter_refused_total", "counter",
                  "Callers the kernel prefilter refused before the handshake (also counted in "
                  "condgate_connections_rejected_total).");
    for (size_t i = 0; i < n; i++)
        metric_sample(&b, "condgate_prefilter_refused_total", "listener", LNAME(i), NULL, NULL,
                      kernel[i]);
    metric_family(&b, "condgate_connections_active", "gauge", "Relayed connections open now.");
    for (size_t i = 0; i < n; i++)
        metric_sample(&b, "condgate_connections_active", "listener", LNAME(i), NULL, NULL,
                      cg__lsum_active(&sums[i]));
    metric_family(&b, "condgate_bytes_total", "counter",
                  "Bytes relayed: in from clients, out to clients.");
    for (size_t i = 0; i < n; i++) {
        metric_sample(&b, "condgate_bytes_total", "listener", LNAME(i), "direction", "in",
                      sums[i].bytes_in);
        metric_sample(&b, "condgate_bytes_total", "listener", LNAME(i), "direction", "out",
                      sums[i].bytes_out);
    }
    metric_family(&b, "condgate_backend_errors_total", "counter",
                  "Clients reset because no backend could be reached.");
    for (size_t i = 0; i < n; i++)
        metric_sample(&b, "condgate_backend_errors_total", "listener", LNAME(i), NULL, NULL,
                      sums[i].backend_errors);
#undef LNAME

    metric_family(&b, "condgate_worker_connections_active", "gauge",
                  "Relayed connections open on each worker thread.");
    for (unsigned w = 0; w < a->view.workers(a->view.ctx); w++) {
        uint64_t handled, active;
        char id[16];
        cg__stats_worker(st, w, &handled, &active);
        snprintf(id, sizeof(id), "%u", w);
        metric_sample(&b, "condgate_worker_connections_active", "worker", id, NULL, NULL, active);
    }
    metric_family(&b, "condgate_rule_entries", "gauge",
                  "Unique entries of each rule set, by address family.");
    for (size_t s = 0; s < gen->cfg->nrulesets; s++) {
        cg_ruleset_stats rs;
        const char *name = cg_ruleset_name(gen->cfg->rulesets[s]);
        cg_ruleset_get_stats(gen->cfg->rulesets[s], &rs);
        metric_sample(&b, "condgate_rule_entries", "set", name, "family", "ipv4", rs.v4);
        metric_sample(&b, "condgate_rule_entries", "set", name, "family", "ipv6", rs.v6);
    }
    metric_family(&b, "condgate_reloads_total", "counter", "Configuration reloads that succeeded.");
    metric_sample(&b, "condgate_reloads_total", NULL, NULL, NULL, NULL, atomic_load(&st->reloads));
    metric_family(&b, "condgate_config_generation", "gauge",
                  "Number of the configuration generation in use (1 at start).");
    metric_sample(&b, "condgate_config_generation", NULL, NULL, NULL, NULL, gen->number);
    uint64_t up = a->view.uptime_ms(a->view.ctx);
    metric_family(&b, "condgate_uptime_seconds", "gauge", "Seconds since the gate started.");
    sb_printf(&b, "condgate_uptime_seconds %" PRIu64 ".%03u\n", up / 1000, (unsigned)(up % 1000));

    if (b.oom) {
        rc = reply_oom(c);
        goto release;
    }
    rc = reply_owned(c, MHD_HTTP_OK, TYPE_METRICS, b.p, b.len, NULL, NULL);
    b.p = NULL; /* taken by the response */
release:
    free(b.p);
    free(sums);
    free(kernel);
    cg__gen_unref(gen);
    return rc;
}

static enum MHD_Result serve_rules(cg__admin *a, struct MHD_Connection *c)
{
    cg__gen *gen = a->view.acquire(a->view.ctx);
    const cg_config *cfg = gen->cfg;
    bool oom = false;
    cJSON *root = cJSON_CreateObject();

    put_u64(&oom, root, "generation", gen->number);
    cJSON *sets = put_arr(&oom, root, "sets");
    for (size_t s = 0; s < cfg->nrulesets && !oom; s++) {
        const cg_ruleset *rs = cfg->rulesets[s];
        cg_ruleset_stats counts;
        cg_rule_id ids[TOP_RULES];
        cg_ruleset_get_stats(rs, &counts);
        cJSON *o = push_obj(&oom, sets);
        put_str(&oom, o, "name", cg_ruleset_name(rs));
        put_str(&oom, o, "default", cg_action_name(cg_ruleset_default(rs)));
        cJSON *entries = put_obj(&oom, o, "entries");
        put_u64(&oom, entries, "ipv4", counts.v4);
        put_u64(&oom, entries, "ipv6", counts.v6);
        put_u64(&oom, o, "added", counts.added);
        put_u64(&oom, o, "duplicates", counts.duplicates);
        put_u64(&oom, o, "conflicts", counts.conflicts);
        put_u64(&oom, o, "bytes", counts.bytes);
        cJSON *users = put_arr(&oom, o, "listeners");
        for (size_t l = 0; l < cfg->nlisteners; l++)
            if (cfg->listeners[l].ruleset == s)
                push_str(&oom, users, cfg->listeners[l].name);
        cJSON *top = put_arr(&oom, o, "top");
        size_t ntop = cg_ruleset_top(rs, ids, TOP_RULES);
        for (size_t i = 0; i < ntop; i++) {
            cg_rule_info info;
            if (cg_ruleset_rule(rs, ids[i], &info) == 0)
                put_rule(&oom, push_obj(&oom, top), &info);
        }
    }
    cg__gen_unref(gen);
    return reply_json(c, MHD_HTTP_OK, root, oom, NULL, NULL);
}

/* The set explain uses without ?set=: "default", or the first one. */
static const cg_ruleset *default_set(const cg_config *cfg)
{
    long i = cg_config_find_ruleset(cfg, "default");
    if (i >= 0)
        return cfg->rulesets[i];
    return cfg->nrulesets > 0 ? cfg->rulesets[0] : NULL;
}

/* The value of query argument `key` (NULL when absent). A value holding a
 * NUL byte (%00) sets *nul: C strings would end there and answer for a
 * different text than the one sent. */
static const char *query_arg(struct MHD_Connection *c, const char *key, bool *nul)
{
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, key, strlen(key), &v, &n) !=
            MHD_YES ||
        v == NULL)
        return NULL;
    if (memchr(v, '\0', n) != NULL)
        *nul = true;
    return v;
}

/* Whether the kernel refuses a caller the judge refused by rule set rs:
 * some listener on rs has its prefilter on. */
static bool kernel_refuses(cg__admin *a, const cg__gen *gen, const cg_ruleset *rs,
                           const cg__judgement *j)
{
    if (j->admit || j->stage != CG__STAGE_RULE)
        return false;
    for (size_t i = 0; i < gen->nlisteners; i++) {
        uint64_t ignored[CG__REJ_COUNT] = {0};
        if (gen->cfg->rulesets[cg__gen_listener(gen, i)->ruleset] == rs &&
            strcmp(a->view.prefilter(a->view.ctx, i, ignored), "off") != 0)
            return true;
    }
    return false;
}

static enum MHD_Result serve_explain(cg__admin *a, struct MHD_Connection *c)
{
    bool nul = false;
    const char *addr = query_arg(c, "addr", &nul);
    const char *set = query_arg(c, "set", &nul);
    char perr[256], msg[400];
    cg_cidr host;

    if (nul)
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "NUL byte in the query", NULL, NULL);
    if (addr == NULL || addr[0] == '\0')
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "missing addr: /rules/explain?addr=IP", NULL,
                           NULL);
    if (cg_cidr_parse(addr, strlen(addr), &host, perr, sizeof(perr)) != 0) {
        snprintf(msg, sizeof(msg), "bad addr: %s", perr);
        return reply_error(c, MHD_HTTP_BAD_REQUEST, msg, NULL, NULL);
    }
    if (host.len != (host.family == 4 ? 32 : 128)) {
        snprintf(msg, sizeof(msg), "bad addr: want one address, not the prefix /%u",
                 (unsigned)host.len);
        return reply_error(c, MHD_HTTP_BAD_REQUEST, msg, NULL, NULL);
    }

    cg__gen *gen = a->view.acquire(a->view.ctx);
    const cg_ruleset *rs = NULL;
    if (set == NULL || set[0] == '\0') {
        rs = default_set(gen->cfg);
    } else {
        long i = cg_config_find_ruleset(gen->cfg, set);
        rs = i >= 0 ? gen->cfg->rulesets[i] : NULL;
    }
    if (rs == NULL) {
        /* The name goes back only when it could be one: anything else
         * (bytes that are not UTF-8, quotes) has no place in the JSON. */
        if (set == NULL || cg_config_name_ok(set, strlen(set)))
            snprintf(msg, sizeof(msg), "no rule set named '%s'", set != NULL ? set : "default");
        else
            snprintf(msg, sizeof(msg),
                     "no rule set by that name (names are 1-%d letters, digits, '_', '-' or '.')",
                     CG_CONFIG_MAX_NAME);
        cg__gen_unref(gen);
        return reply_error(c, MHD_HTTP_NOT_FOUND, msg, NULL, NULL);
    }

    /* The judge of every caller, on the named set alone: no hit counted,
     * no admission stage (an explanation is not a caller). */
    bool oom = false;
    cg_rule_info info;
    cg__judgement j;
    const cg__policy p = {.set = rs};
    cg__policy_judge(&p, &host, &j);
    bool matched = j.rule != CG_RULE_NONE && cg_ruleset_rule(rs, j.rule, &info) == 0;
    cJSON *root = cJSON_CreateObject();
    put_str(&oom, root, "addr", addr);
    put_str(&oom, root, "set", cg_ruleset_name(rs));
    put_str(&oom, root, "verdict", cg_action_name(j.rule_action));
    if (matched)
        put_rule(&oom, put_obj(&oom, root, "rule"), &info);
    else
        put_str(&oom, root, "rule", NULL);
    put_str(&oom, root, "reason", cg__reject_reason_name(matched ? CG__REJ_RULE : CG__REJ_DEFAULT));
    put_str(&oom, root, "family", host.family == 4 ? "ipv4" : "ipv6");
    put_str(&oom, root, "stage", cg__stage_name(j.stage));
    put_bool(&oom, root, "prefilter", kernel_refuses(a, gen, rs, &j));
    put_u64(&oom, root, "generation", gen->number);
    cg__gen_unref(gen);
    return reply_json(c, MHD_HTTP_OK, root, oom, NULL, NULL);
}

static enum MHD_Result serve_reload(cg__admin *a, struct MHD_Connection *c)
{
    char err[CG_ERR_MAX] = "";
    uint64_t generation = 0;
    int rc = a->view.reload_wait(a->view.ctx, &generation, err, sizeof(err));
    bool oom = false;
    unsigned status = MHD_HTTP_OK;
    cJSON *root = cJSON_CreateObject();

    put_bool(&oom, root, "ok", rc == 0);
    if (rc == 0) {
        put_u64(&oom, root, "generation", generation);
    } else {
        /* CG_EAGAIN: the gate is stopping, not a configuration error. */
        status = rc == CG_EAGAIN ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_UNPROCESSABLE_CONTENT;
        put_str(&oom, root, "error", err);
    }
    return reply_json(c, status, root, oom, NULL, NULL);
}

/* The page is open: it is the same static file for everyone and holds no
 * figures, and a browser cannot send a bearer token when it navigates to a
 * URL; the page asks for the token and sends it on every fetch. */
static const route routes[] = {
    {"/", "GET", "GET, HEAD", true, serve_page},
    {"/healthz", "GET", "GET, HEAD", false, serve_health},
    {"/stats", "GET", "GET, HEAD", false, serve_stats},
    {"/metrics", "GET", "GET, HEAD", false, serve_metrics},
    {"/rules", "GET", "GET, HEAD", false, serve_rules},
    {"/rules/explain", "GET", "GET, HEAD", false, serve_explain},
    {"/reload", "POST", "POST", false, serve_reload},
};

/* ------------------------------------------------------------------------
 * Callers, tokens, requests
 */

/* Whether the request carries "Authorization: Bearer TOKEN" when the
 * current generation has a token. */
static bool authorized(cg__admin *a, struct MHD_Connection *c)
{
    cg__gen *gen = a->view.acquire(a->view.ctx);
    const char *token = gen->cfg->admin.token;
    bool ok = token == NULL;
    const char *v = NULL;
    size_t vlen = 0;
    static const char scheme[] = "Bearer ";
    const size_t slen = sizeof(scheme) - 1;

    if (!ok &&
        MHD_lookup_connection_value_n(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION,
                                      strlen(MHD_HTTP_HEADER_AUTHORIZATION), &v,
                                      &vlen) == MHD_YES &&
        v != NULL && vlen > slen && strncasecmp(v, scheme, slen) == 0) {
        size_t i = slen;
        while (i < vlen && v[i] == ' ')
            i++;
        /* Constant time in the token's contents and length (ct.c). */
        ok = cg__ct_equal(v + i, vlen - i, token);
    }
    cg__gen_unref(gen);
    return ok;
}

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* MHD's accept policy: judge the caller by [admin] allow of the current
 * generation before any byte of HTTP is read. A refused caller's socket is
 * closed by MHD. Runs on MHD's accept thread only. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    cg__admin *a = cls;
    cg__gen *gen = a->view.acquire(a->view.ctx);
    const cg__policy p = {.set = gen->cfg->admin.allow, .count_hits = true};
    cg__judgement j;
    bool admit = cg__policy_judge_sockaddr(&p, addr, &j);

    if (!admit) {
        atomic_fetch_add_explicit(&a->refused, 1, memory_order_relaxed);
        if (cg__log_enabled(CG_LOG_INFO) && cg__log_limiter_allow(&a->limiter, mono_ms()))
            cg__log_reject("admin_reject", NULL, addr, cg__reject_reason_name(j.reason), j.set,
                           j.rule);
    }
    cg__gen_unref(gen);
    return admit ? MHD_YES : MHD_NO;
}

static const route *find_route(const char *url)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(url, routes[i].path) == 0)
            return &routes[i];
    return NULL;
}

static bool method_fits(const route *rt, const char *method)
{
    return strcmp(method, rt->method) == 0 ||
           (strcmp(rt->method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

/* Counts Content-Length and Transfer-Encoding headers for framing_ok. */
static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    unsigned *n = cls;
    (void)kind;
    (void)value;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        n[0]++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
        n[1]++;
    return MHD_YES;
}

/* The request says where its body ends in one way only: at most one
 * Content-Length, and not both Content-Length and Transfer-Encoding (RFC
 * 9112 6.3; libmicrohttpd 0.9.75 takes such requests as they come). */
static bool framing_ok(struct MHD_Connection *c)
{
    unsigned n[2] = {0, 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, n);
    return n[0] <= 1 && !(n[0] == 1 && n[1] > 0);
}

/* The announced body is longer than MAX_BODY (or its length is garbage). */
static bool body_too_long(struct MHD_Connection *c)
{
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl == NULL)
        return false;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    return errno != 0 || end == cl || n > MAX_BODY;
}

/* MHD's request handler: called with the headers, then once per piece of
 * body, then once more when the request is complete. Answers that need no
 * body (400, 401, 404, 405, 413) go out with the headers; the endpoints run at
 * completion. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    cg__admin *a = cls;
    request *r = *state;

    if (r == NULL)
        return reply_oom(c); /* on_uri could not allocate it */
    if (r->headers) {
        if (r->route == NULL)
            return MHD_NO; /* answered with the headers */
        if (*upload_size != 0) {
            r->body += *upload_size;
            *upload_size = 0;
            return r->body <= MAX_BODY ? MHD_YES : MHD_NO;
        }
        return r->route->fn(a, c);
    }

    /* First call, with the headers: counted until on_completed. */
    r->headers = true;
    atomic_fetch_add_explicit(&a->inflight, 1, memory_order_relaxed);
    /* The decoded path is a C string: "/reload%00.html" would be served as
     * /reload. */
    if (r->path_nul)
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "NUL byte (%00) in the path", NULL, NULL);
    if (!framing_ok(c))
        return reply_error(c, MHD_HTTP_BAD_REQUEST,
                           "ambiguous body length: several Content-Length headers, or "
                           "Content-Length with Transfer-Encoding",
                           NULL, NULL);
    const route *rt = find_route(url);
    if (!(rt != NULL && rt->open && method_fits(rt, method)) && !authorized(a, c)) {
        atomic_fetch_add_explicit(&a->unauthorized, 1, memory_order_relaxed);
        return reply_error(c, MHD_HTTP_UNAUTHORIZED, "a bearer token is required",
                           MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    }
    if (rt == NULL)
        return reply_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint", NULL, NULL);
    if (!method_fits(rt, method))
        return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                           MHD_HTTP_HEADER_ALLOW, rt->allow);
    if (body_too_long(c))
        return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large", NULL, NULL);
    r->route = rt;
    return MHD_YES;
}

/* MHD's URI callback: called with the request target as sent, before it is
 * decoded; its result is the request's state (*state of on_request and
 * on_completed). MHD calls on_completed for every request it was called
 * for, also one that never reaches on_request (a header too large). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    request *r = calloc(1, sizeof(*r));
    if (r != NULL && uri != NULL) {
        size_t n = strcspn(uri, "?");
        for (size_t i = 0; i + 2 < n && !r->path_nul; i++)
            r->path_nul = uri[i] == '%' && uri[i + 1] == '0' && uri[i + 2] == '0';
    }
    return r;
}

/* MHD: a request is over (answer sent, or the connection gone). */
static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode toe)
{
    cg__admin *a = cls;
    request *r = *state;
    if (r != NULL && r->headers)
        atomic_fetch_sub_explicit(&a->inflight, 1, memory_order_release);
    free(r);
    *state = NULL;
}

/* MHD's messages: kept for the error line while starting, else debug lines
 * (a flood of callers must not become a flood of log lines). */
__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    cg__admin *a = cls;
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ' || msg[n - 1] == '.'))
        msg[--n] = '\0';
    if (atomic_load(&a->starting))
        snprintf(a->start_msg, sizeof(a->start_msg), "%s", msg);
    else
        cg__log_event(CG_LOG_DEBUG, "admin_httpd", "message", msg, NULL);
}

/* ------------------------------------------------------------------------
 * Start and stop
 */

/* cg__admin_start: bind conf->listen and serve it on MHD's threads; see
 * admin.h. On failure nothing is left running and err names the address
 * and the reason. Control thread. */
int cg__admin_start(const cg__gate_view *view, const cg_admin_conf *conf, cg__admin **out,
                    char *err, size_t errlen)
{
    const struct sockaddr *sa = (const struct sockaddr *)&conf->listen.addr;
    /* ITC: MHD_quiesce_daemon at stop. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_AUTO | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    uint16_t port = 0;
    int rc = 0;

    *out = NULL;
    cg__admin *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return CG_ENOMEM;
    }
    a->view = *view;
    snprintf(a->listen, sizeof(a->listen), "%s", conf->listen.text);
    atomic_init(&a->refused, 0);
    atomic_init(&a->unauthorized, 0);
    atomic_init(&a->inflight, 0);
    cg__log_limiter_init(&a->limiter, CG_LOG_REJECT_RATE);

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        /* [::] is dual stack, as for listeners; a specific address is not. */
        flags |= IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
        port = ntohs(s6->sin6_port);
    } else if (sa->sa_family == AF_INET) {
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    } else {
        snprintf(err, errlen, "cannot listen on %s: not an IP address", conf->listen.text);
        rc = CG_EINVAL;
        goto fail;
    }

    atomic_init(&a->starting, true);
    errno = 0;
    /* clang-format off */
    a->daemon = MHD_start_daemon(flags, port, on_accept, a, on_request, a,
                                 MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, a,
                                 MHD_OPTION_SOCK_ADDR, sa,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)CG_ADMIN_MAX_CONNECTIONS,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CG_ADMIN_TIMEOUT_S,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CG_ADMIN_MEMORY_LIMIT,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
                                 MHD_OPTION_URI_LOG_CALLBACK, on_uri, a,
                                 MHD_OPTION_THREAD_STACK_SIZE, THREAD_STACK,
                                 MHD_OPTION_LISTEN_BACKLOG_SIZE, LISTEN_BACKLOG,
                                 MHD_OPTION_END);
    /* clang-format on */
    int e = errno;
    atomic_store(&a->starting, false);
    if (a->daemon == NULL) {
        /* MHD leaves the bind or listen errno in place; its own message
         * is the fallback. */
        const char *why = e != 0                    ? strerror(e)
                          : a->start_msg[0] != '\0' ? a->start_msg
                                                    : "libmicrohttpd could not start";
        snprintf(err, errlen, "cannot listen on %s: %s", conf->listen.text, why);
        rc = e == EADDRINUSE ? CG_EADDRINUSE : CG_ESYS;
        goto fail;
    }
    *out = a;
    return 0;
fail:
    free(a);
    return rc;
}

/* cg__admin_stop: stop accepting, give answers in flight up to
 * STOP_GRACE_MS, then stop MHD (joining its threads) and free a. Accepts
 * NULL. Control thread, once reload requests are refused (admin.h). */
void cg__admin_stop(cg__admin *a)
{
    if (a == NULL)
        return;
    if (a->daemon != NULL) {
        /* No new callers; answers already queued (a reload's outcome) get
         * a moment to go out before MHD cuts every connection. */
        MHD_socket ls = MHD_quiesce_daemon(a->daemon);
        uint64_t deadline = mono_ms() + STOP_GRACE_MS;
        while (atomic_load_explicit(&a->inflight, memory_order_acquire) > 0 &&
               mono_ms() < deadline) {
            uv_sleep(5);
        }
        MHD_stop_daemon(a->daemon);
        if (ls != MHD_INVALID_SOCKET)
            cg__sys_close_socket(ls);
    }
    /* MHD's threads are gone: the limiter is ours now. */
    cg__log_limiter_flush(&a->limiter, mono_ms());
    free(a);
}
