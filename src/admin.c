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
#include "admin_bans.h"
#include "admin_crowdsec.h"
#include "admin_json.h"
#include "admin_preview.h"
#include "condgate/rules.h"
#include "ct.h"
#include "gen.h"
#include "inherit.h"
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
    /* The listening socket once quiesced (handed over, or stopping). */
    MHD_socket quiesced;
    /* While MHD starts, its last message is kept for the error line. */
    _Atomic bool starting;
    char start_msg[256];
};

typedef struct request request;

typedef enum MHD_Result (*handler_fn)(cg__admin *a, struct MHD_Connection *c, const request *req);

/* One endpoint. A GET endpoint answers HEAD as well. Endpoints with the
 * same path and other methods are listed one after the other. */
typedef struct route {
    const char *path;
    const char *method;
    const char *allow; /* the Allow header of a 405 */
    bool open;         /* served without the token */
    size_t body_max;   /* 0: the body is dropped (at most MAX_BODY); else kept */
    handler_fn fn;
} route;

/* Per request, from its request line (on_uri) to completion. */
struct request {
    const route *route;
    size_t body;   /* bytes of body seen */
    char *kept;    /* the body, for a route with body_max (NUL-terminated) */
    size_t cap;    /* bytes allocated at kept */
    bool headers;  /* on_request has had the headers (and counted in inflight) */
    bool path_nul; /* the path as sent holds %00 */
};

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

/* Answer with what an endpoint function built (admin_bans.h). */
static enum MHD_Result reply_built(struct MHD_Connection *c, unsigned status, cJSON *root)
{
    if (root == NULL)
        return reply_oom(c);
    return reply_json(c, status, root, false, NULL, NULL);
}

/* {"error": msg} with status and an optional extra header. */
static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *msg,
                                   const char *hname, const char *hvalue)
{
    cJSON *root = cJSON_CreateObject();
    bool oom = root == NULL || cJSON_AddStringToObject(root, "error", msg) == NULL;
    return reply_json(c, status, root, oom, hname, hvalue);
}

static void put_rejected_by(bool *oom, cJSON *o, const cg__lsum *t)
{
    cJSON *by = put_obj(oom, o, "rejected_by");
    for (int r = 0; r < CG__REJ_COUNT; r++)
        put_u64(oom, by, cg__reject_reason_name((cg__reject_reason)r), t->rejected[r]);
}

/* Callers a shadow listener refused and admitted, in all and by reason. */
static void put_shadow(bool *oom, cJSON *o, const cg__lsum *t)
{
    put_u64(oom, o, "shadow_rejected", cg__lsum_shadow(t));
    cJSON *by = put_obj(oom, o, "shadow_rejected_by");
    for (int r = 0; r < CG__REJ_COUNT; r++)
        put_u64(oom, by, cg__reject_reason_name((cg__reject_reason)r), t->shadow_rejected[r]);
}

/* The runtime state: bans (how many, the newest, connections they closed)
 * and the source table. */
static void put_runtime(bool *oom, cJSON *root, cg__runtime *rt, const cg__lsum *t)
{
    cg__bans *bans = cg__runtime_bans(rt);
    cg__sources *src = cg__runtime_sources(rt);
    cg__ban newest;
    cJSON *b = put_obj(oom, root, "bans");
    put_u64(oom, b, "count", cg__bans_count(bans));
    if (cg__bans_newest(bans, &newest) == 0) {
        cJSON *o = cg__admin_ban_json(&newest, cg__runtime_now_s());
        if (o == NULL || b == NULL || !cJSON_AddItemToObject(b, "newest", o)) {
            cJSON_Delete(o);
            *oom = true;
        }
    } else {
        put_str(oom, b, "newest", NULL);
    }
    put_u64(oom, b, "closed_connections", t->closed_by_ban);
    put_u64(oom, b, "kernel_full", cg__runtime_kernel_misses(rt));
    cJSON *s = put_obj(oom, root, "sources");
    put_u64(oom, s, "tracked", cg__sources_count(src));
    put_u64(oom, s, "table_full", cg__sources_full(src));
    put_u64(oom, s, "bytes", cg__sources_bytes(src));
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

static enum MHD_Result serve_page(cg__admin *a, struct MHD_Connection *c, const request *req)
{
    return reply_static(c, MHD_HTTP_OK, TYPE_HTML, PAGE, PAGE_LEN, NULL, NULL);
}

static enum MHD_Result serve_health(cg__admin *a, struct MHD_Connection *c, const request *req)
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

static enum MHD_Result serve_stats(cg__admin *a, struct MHD_Connection *c, const request *req)
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
    put_u64(&oom, conns, "shadow_rejected", cg__lsum_shadow(&t));
    put_rejected_by(&oom, root, &t);
    put_runtime(&oom, root, a->view.runtime(a->view.ctx), &t);
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
        if (lc->accept_proxy != 0)
            put_u64(&oom, o, "proxied", t.proxied);
        put_u64(&oom, o, "rejected", cg__lsum_rejected(&t));
        put_u64(&oom, o, "closed", t.closed);
        put_u64(&oom, o, "backend_errors", t.backend_errors);
        put_u64(&oom, o, "bytes_in", t.bytes_in);
        put_u64(&oom, o, "bytes_out", t.bytes_out);
        put_rejected_by(&oom, o, &t);
        put_str(&oom, o, "mode", cg_listener_mode_name(lc->mode));
        put_shadow(&oom, o, &t);
        put_u64(&oom, o, "closed_by_ban", t.closed_by_ban);
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

    cg__crowdsec_stats cs;
    if (a->view.crowdsec != NULL && a->view.crowdsec(a->view.ctx, &cs))
        cg__admin_crowdsec_json(&oom, root, &cs);

    cJSON *admin = put_obj(&oom, root, "admin");
    put_str(&oom, admin, "listen", a->listen);
    put_u64(&oom, admin, "refused", atomic_load(&a->refused));
    put_u64(&oom, admin, "unauthorized", atomic_load(&a->unauthorized));
    cg__gen_unref(gen);
    return reply_json(c, MHD_HTTP_OK, root, oom, NULL, NULL);
}

/* The families with one sample per listener (and reason, direction). */
static void listener_metrics(strbuf *bp, const cg__gen *gen, const cg__lsum *sums,
                             const uint64_t *kernel, size_t n)
{
#define LNAME(i) (cg__gen_listener(gen, (i))->name)
    metric_family(bp, "condgate_connections_accepted_total", "counter",
                  "Connections accepted and handed to a worker.");
    for (size_t i = 0; i < n; i++)
        metric_sample(bp, "condgate_connections_accepted_total", "listener", LNAME(i), NULL, NULL,
                      sums[i].accepted);
    metric_family(bp, "condgate_connections_rejected_total", "counter",
                  "Connections refused: a ban, a deny rule, the default, a per-source limit or "
                  "max_connections; in the kernel before the handshake, or at accept.");
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < CG__REJ_COUNT; r++)
            metric_sample(bp, "condgate_connections_rejected_total", "listener", LNAME(i), "reason",
                          cg__reject_reason_name((cg__reject_reason)r), sums[i].rejected[r]);
    metric_family(bp, "condgate_connections_shed_total", "counter",
                  "Callers shed because the process was out of descriptors (also counted in "
                  "condgate_connections_rejected_total under reason limit).");
    for (size_t i = 0; i < n; i++)
        metric_sample(bp, "condgate_connections_shed_total", "listener", LNAME(i), NULL, NULL,
                      sums[i].shed);
    metric_family(bp, "condgate_prefilter_refused_total", "counter",
                  "Callers the kernel prefilter refused before the handshake (also counted in "
                  "condgate_connections_rejected_total).");
    for (size_t i = 0; i < n; i++)
        metric_sample(bp, "condgate_prefilter_refused_total", "listener", LNAME(i), NULL, NULL,
                      kernel[i]);
    metric_family(bp, "condgate_shadow_rejected_total", "counter",
                  "Callers a listener in shadow mode would have refused, and admitted.");
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < CG__REJ_COUNT; r++)
            metric_sample(bp, "condgate_shadow_rejected_total", "listener", LNAME(i), "reason",
                          cg__reject_reason_name((cg__reject_reason)r), sums[i].shadow_rejected[r]);
    metric_family(bp, "condgate_connections_proxied_total", "counter",
                  "Connections accepted for the client a PROXY header named (accept_proxy).");
    for (size_t i = 0; i < n; i++)
        metric_sample(bp, "condgate_connections_proxied_total", "listener", LNAME(i), NULL, NULL,
                      sums[i].proxied);
    metric_family(bp, "condgate_connections_closed_by_ban_total", "counter",
                  "Open connections reset because a new ban covered their caller.");
    for (size_t i = 0; i < n; i++)
        metric_sample(bp, "condgate_connections_closed_by_ban_total", "listener", LNAME(i), NULL,
                      NULL, sums[i].closed_by_ban);
    metric_family(bp, "condgate_connections_active", "gauge", "Relayed connections open now.");
    for (size_t i = 0; i < n; i++)
        metric_sample(bp, "condgate_connections_active", "listener", LNAME(i), NULL, NULL,
                      cg__lsum_active(&sums[i]));
    metric_family(bp, "condgate_bytes_total", "counter",
                  "Bytes relayed: in from clients, out to clients.");
    for (size_t i = 0; i < n; i++) {
        metric_sample(bp, "condgate_bytes_total", "listener", LNAME(i), "direction", "in",
                      sums[i].bytes_in);
        metric_sample(bp, "condgate_bytes_total", "listener", LNAME(i), "direction", "out",
                      sums[i].bytes_out);
    }
    metric_family(bp, "condgate_backend_errors_total", "counter",
                  "Clients reset because no backend could be reached.");
    for (size_t i = 0; i < n; i++)
        metric_sample(bp, "condgate_backend_errors_total", "listener", LNAME(i), NULL, NULL,
                      sums[i].backend_errors);
#undef LNAME
}

/* The families of the gate as a whole: bans, sources, reloads, limits. */
static void gate_metrics(strbuf *bp, cg__admin *a, const cg__gen *gen, cg__stats *st)
{
    cg__runtime *rt = a->view.runtime(a->view.ctx);
    metric_family(bp, "condgate_bans", "gauge", "Runtime bans in force.");
    metric_sample(bp, "condgate_bans", NULL, NULL, NULL, NULL,
                  cg__bans_count(cg__runtime_bans(rt)));
    metric_family(bp, "condgate_sources_tracked", "gauge",
                  "Sources in the per-source table (source_table_max bounds it).");
    metric_sample(bp, "condgate_sources_tracked", NULL, NULL, NULL, NULL,
                  cg__sources_count(cg__runtime_sources(rt)));
    metric_family(bp, "condgate_source_table_full_total", "counter",
                  "New sources refused because the source table was full of sources with open "
                  "connections.");
    metric_sample(bp, "condgate_source_table_full_total", NULL, NULL, NULL, NULL,
                  cg__sources_full(cg__runtime_sources(rt)));
    metric_family(bp, "condgate_reloads_total", "counter", "Configuration reloads that succeeded.");
    metric_sample(bp, "condgate_reloads_total", NULL, NULL, NULL, NULL, atomic_load(&st->reloads));
    metric_family(bp, "condgate_config_generation", "gauge",
                  "Number of the configuration generation in use (1 at start).");
    metric_sample(bp, "condgate_config_generation", NULL, NULL, NULL, NULL, gen->number);
    metric_family(bp, "condgate_reload_failures_total", "counter",
                  "Configuration reloads that failed and changed nothing.");
    metric_sample(bp, "condgate_reload_failures_total", NULL, NULL, NULL, NULL,
                  atomic_load(&st->reload_failures));
    metric_family(bp, "condgate_config_last_reload_successful", "gauge",
                  "Whether the last configuration reload succeeded (1 before any reload).");
    metric_sample(bp, "condgate_config_last_reload_successful", NULL, NULL, NULL, NULL,
                  atomic_load(&st->last_reload_ok) ? 1 : 0);
    metric_family(bp, "condgate_max_connections", "gauge",
                  "Effective max_connections: the configured value, lowered to fit the "
                  "descriptor limit.");
    metric_sample(bp, "condgate_max_connections", NULL, NULL, NULL, NULL,
                  a->view.max_connections(a->view.ctx));
    uint64_t open_fds, max_fds;
    if (cg__sys_fd_usage(&open_fds, &max_fds)) {
        metric_family(bp, "condgate_open_fds", "gauge", "Descriptors the process has open.");
        metric_sample(bp, "condgate_open_fds", NULL, NULL, NULL, NULL, open_fds);
        metric_family(bp, "condgate_max_fds", "gauge",
                      "The process's descriptor limit (soft RLIMIT_NOFILE).");
        metric_sample(bp, "condgate_max_fds", NULL, NULL, NULL, NULL, max_fds);
    }
}

static enum MHD_Result serve_metrics(cg__admin *a, struct MHD_Connection *c, const request *req)
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

    listener_metrics(&b, gen, sums, kernel, n);

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
    gate_metrics(&b, a, gen, st);
    cg__crowdsec_stats cs;
    if (a->view.crowdsec != NULL && a->view.crowdsec(a->view.ctx, &cs)) {
        char text[CG_ADMIN_CROWDSEC_METRICS_MAX];
        cg__admin_crowdsec_metrics(&cs, text, sizeof text);
        sb_printf(&b, "%s", text);
    }
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

static enum MHD_Result serve_rules(cg__admin *a, struct MHD_Connection *c, const request *req)
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

/* Whether the kernel refuses a caller the judge refused: a ban, or a rule
 * of set rs, on a listener (the one asked about, when `only` is not
 * SIZE_MAX) whose prefilter is on. */
static bool kernel_refuses(cg__admin *a, const cg__gen *gen, const cg_ruleset *rs, size_t only,
                           const cg__judgement *j)
{
    if (j->admit || (j->stage != CG__STAGE_RULE && j->stage != CG__STAGE_BAN))
        return false;
    for (size_t i = 0; i < gen->nlisteners; i++) {
        uint64_t ignored[CG__REJ_COUNT] = {0};
        bool on_set = gen->cfg->rulesets[cg__gen_listener(gen, i)->ruleset] == rs ||
                      j->stage == CG__STAGE_BAN;
        if ((only == SIZE_MAX || only == i) && on_set &&
            strcmp(a->view.prefilter(a->view.ctx, i, ignored), "off") != 0)
            return true;
    }
    return false;
}

/* The gate listener named `name`, or SIZE_MAX. */
static size_t find_listener(const cg__gen *gen, const char *name)
{
    for (size_t i = 0; i < gen->nlisteners; i++)
        if (strcmp(cg__gen_listener(gen, i)->name, name) == 0)
            return i;
    return SIZE_MAX;
}

/* 404 for a set or listener that is not there; the name goes back only when
 * it could be one: anything else (bytes that are not UTF-8, quotes) has no
 * place in the JSON. */
static enum MHD_Result reply_no_such(struct MHD_Connection *c, const char *what, const char *name)
{
    char msg[160];
    if (cg_config_name_ok(name, strlen(name)))
        snprintf(msg, sizeof(msg), "no %s named '%s'", what, name);
    else
        snprintf(msg, sizeof(msg),
                 "no %s by that name (names are 1-%d letters, digits, '_', '-' or '.')", what,
                 CG_CONFIG_MAX_NAME);
    return reply_error(c, MHD_HTTP_NOT_FOUND, msg, NULL, NULL);
}

/* The deciding rule of judgement j: a ban, an entry of its set, or null. */
static void put_deciding(bool *oom, cJSON *root, const cg__judgement *j)
{
    cg_rule_info info;
    if (j->stage == CG__STAGE_BAN) {
        char cidr[CG_CIDR_STRLEN], src[32];
        cJSON *o = put_obj(oom, root, "rule");
        snprintf(src, sizeof(src), "ban:%s", cg__ban_origin_name(j->ban.origin));
        put_str(oom, o, "cidr", cg_cidr_format(&j->ban.cidr, cidr, sizeof(cidr)));
        put_str(oom, o, "action", "deny");
        put_str(oom, o, "source", src);
        put_u64(oom, o, "hits", j->ban.hits);
        cJSON *ban = cg__admin_ban_json(&j->ban, cg__runtime_now_s());
        if (ban == NULL || !cJSON_AddItemToObject(root, "ban", ban)) {
            cJSON_Delete(ban);
            *oom = true;
        }
    } else if (j->set != NULL && j->rule != CG_RULE_NONE &&
               cg_ruleset_rule(j->set, j->rule, &info) == 0) {
        put_rule(oom, put_obj(oom, root, "rule"), &info);
    } else {
        put_str(oom, root, "rule", NULL);
    }
}

/* The reason an answer names: the refusal's, else what the rule stage went
 * by (an entry, or the default). */
static const char *explain_reason(const cg__judgement *j)
{
    if (!j->admit)
        return cg__reject_reason_name(j->reason);
    return cg__reject_reason_name(j->rule != CG_RULE_NONE ? CG__REJ_RULE : CG__REJ_DEFAULT);
}

/* Parse ?addr= into one host address, or answer 400. */
static bool explain_addr(struct MHD_Connection *c, const char *addr, cg_cidr *host,
                         enum MHD_Result *rc)
{
    char perr[256], msg[400];
    if (addr == NULL || addr[0] == '\0') {
        *rc = reply_error(c, MHD_HTTP_BAD_REQUEST, "missing addr: /rules/explain?addr=IP", NULL,
                          NULL);
        return false;
    }
    if (cg_cidr_parse(addr, strlen(addr), host, perr, sizeof(perr)) != 0) {
        snprintf(msg, sizeof(msg), "bad addr: %s", perr);
        *rc = reply_error(c, MHD_HTTP_BAD_REQUEST, msg, NULL, NULL);
        return false;
    }
    if (host->len != (host->family == 4 ? 32 : 128)) {
        snprintf(msg, sizeof(msg), "bad addr: want one address, not the prefix /%u",
                 (unsigned)host->len);
        *rc = reply_error(c, MHD_HTTP_BAD_REQUEST, msg, NULL, NULL);
        return false;
    }
    return true;
}

static enum MHD_Result serve_explain(cg__admin *a, struct MHD_Connection *c, const request *req)
{
    bool nul = false;
    const char *addr = query_arg(c, "addr", &nul);
    const char *set = query_arg(c, "set", &nul);
    const char *lname = query_arg(c, "listener", &nul);
    cg_cidr host;
    enum MHD_Result rc;

    if (nul)
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "NUL byte in the query", NULL, NULL);
    if (!explain_addr(c, addr, &host, &rc))
        return rc;
    if (set != NULL && lname != NULL)
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "give set= or listener=, not both", NULL, NULL);

    cg__gen *gen = a->view.acquire(a->view.ctx);
    cg__policy p = {.bans = cg__runtime_bans(a->view.runtime(a->view.ctx)),
                    .now_s = cg__runtime_now_s()};
    size_t l = SIZE_MAX;
    if (lname != NULL) {
        if ((l = find_listener(gen, lname)) == SIZE_MAX) {
            cg__gen_unref(gen);
            return reply_no_such(c, "listener", lname);
        }
        /* The listener's set, bans and limits as they stand: nothing is
         * counted (an explanation is not a caller). */
        a->view.policy(a->view.ctx, gen, l, &p);
    } else if (set == NULL || set[0] == '\0') {
        p.set = default_set(gen->cfg);
    } else {
        long i = cg_config_find_ruleset(gen->cfg, set);
        p.set = i >= 0 ? gen->cfg->rulesets[i] : NULL;
    }
    if (p.set == NULL) {
        cg__gen_unref(gen);
        return reply_no_such(c, "rule set", set != NULL ? set : "default");
    }

    bool oom = false;
    cg__judgement j;
    cg__policy_judge(&p, &host, &j);
    cJSON *root = cJSON_CreateObject();
    put_str(&oom, root, "addr", addr);
    if (lname != NULL)
        put_str(&oom, root, "listener", lname);
    put_str(&oom, root, "set", cg_ruleset_name(p.set));
    put_str(&oom, root, "verdict", j.admit ? "allow" : "deny");
    put_deciding(&oom, root, &j);
    put_str(&oom, root, "reason", explain_reason(&j));
    put_str(&oom, root, "family", host.family == 4 ? "ipv4" : "ipv6");
    put_str(&oom, root, "stage", cg__stage_name(j.stage));
    if (lname != NULL)
        put_str(&oom, root, "mode", cg_listener_mode_name(cg__gen_listener(gen, l)->mode));
    if (lname != NULL && cg__gen_listener(gen, l)->accept_proxy != 0) {
        /* The address as a sender: may it send a PROXY header here? */
        cg_rule_id id;
        put_bool(&oom, root, "trusted_proxy",
                 cg_ruleset_lookup(cg__gen_listener(gen, l)->trusted_proxies, &host, &id) ==
                     CG_ALLOW);
    }
    put_bool(&oom, root, "prefilter",
             (l == SIZE_MAX || cg__gen_listener(gen, l)->mode == CG_MODE_ENFORCE) &&
                 kernel_refuses(a, gen, p.set, l, &j));
    put_u64(&oom, root, "generation", gen->number);
    cg__gen_unref(gen);
    return reply_json(c, MHD_HTTP_OK, root, oom, NULL, NULL);
}

/* POST /reload?dry_run=1: the reload preview; nothing changes. */
static enum MHD_Result serve_preview(cg__admin *a, struct MHD_Connection *c)
{
    char err[CG_ERR_MAX] = "";
    cg__gen *after = NULL;
    int rc = a->view.candidate(a->view.ctx, &after, err, sizeof(err));
    if (rc != 0) {
        bool oom = false;
        cJSON *root = cJSON_CreateObject();
        put_bool(&oom, root, "ok", false);
        put_bool(&oom, root, "dry_run", true);
        put_str(&oom, root, "error", err);
        return reply_json(c, MHD_HTTP_UNPROCESSABLE_CONTENT, root, oom, NULL, NULL);
    }
    cg__gen *now = a->view.acquire(a->view.ctx);
    cJSON *root = cg__admin_preview(now, after, a->view.runtime(a->view.ctx));
    cg__gen_unref(now);
    cg__gen_unref(after);
    return reply_built(c, MHD_HTTP_OK, root);
}

static enum MHD_Result serve_reload(cg__admin *a, struct MHD_Connection *c, const request *req)
{
    bool nul = false;
    const char *dry = query_arg(c, "dry_run", &nul);
    if (nul)
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "NUL byte in the query", NULL, NULL);
    if (dry != NULL && strcmp(dry, "1") != 0 && strcmp(dry, "0") != 0)
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "bad dry_run: want 1 or 0", NULL, NULL);
    if (dry != NULL && strcmp(dry, "1") == 0)
        return serve_preview(a, c);
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

#define BANS_ALLOW "GET, HEAD, POST, DELETE"

static enum MHD_Result serve_bans_get(cg__admin *a, struct MHD_Connection *c, const request *req)
{
    bool nul = false;
    const char *limit = query_arg(c, "limit", &nul);
    const char *after = query_arg(c, "after", &nul);
    cJSON *root = NULL;
    if (nul)
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "NUL byte in the query", NULL, NULL);
    unsigned status = cg__admin_bans_get(a->view.runtime(a->view.ctx), limit, after, &root);
    return reply_built(c, status, root);
}

static enum MHD_Result serve_bans_post(cg__admin *a, struct MHD_Connection *c, const request *req)
{
    cJSON *root = NULL;
    cg__gen *gen = a->view.acquire(a->view.ctx);
    unsigned status = cg__admin_bans_post(a->view.runtime(a->view.ctx), gen->cfg->never_ban,
                                          req->kept != NULL ? req->kept : "", req->body, &root);
    cg__gen_unref(gen);
    return reply_built(c, status, root);
}

static enum MHD_Result serve_bans_delete(cg__admin *a, struct MHD_Connection *c, const request *req)
{
    bool nul = false;
    const char *cidr = query_arg(c, "cidr", &nul);
    cJSON *root = NULL;
    if (nul)
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "NUL byte in the query", NULL, NULL);
    unsigned status = cg__admin_bans_delete(a->view.runtime(a->view.ctx), cidr, &root);
    return reply_built(c, status, root);
}

/* The page is open: it is the same static file for everyone and holds no
 * figures, and a browser cannot send a bearer token when it navigates to a
 * URL; the page asks for the token and sends it on every fetch. */
static const route routes[] = {
    {"/", "GET", "GET, HEAD", true, 0, serve_page},
    {"/healthz", "GET", "GET, HEAD", false, 0, serve_health},
    {"/stats", "GET", "GET, HEAD", false, 0, serve_stats},
    {"/metrics", "GET", "GET, HEAD", false, 0, serve_metrics},
    {"/rules", "GET", "GET, HEAD", false, 0, serve_rules},
    {"/rules/explain", "GET", "GET, HEAD", false, 0, serve_explain},
    {"/reload", "POST", "POST", false, 0, serve_reload},
    {"/bans", "GET", BANS_ALLOW, false, 0, serve_bans_get},
    {"/bans", "POST", BANS_ALLOW, false, CG_BAN_BODY_MAX, serve_bans_post},
    {"/bans", "DELETE", BANS_ALLOW, false, 0, serve_bans_delete},
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
            cg__log_reject("admin_reject", NULL, addr, NULL, cg__reject_reason_name(j.reason),
                           j.set, j.rule, NULL, false);
    }
    cg__gen_unref(gen);
    return admit ? MHD_YES : MHD_NO;
}

static bool method_fits(const route *rt, const char *method)
{
    return strcmp(method, rt->method) == 0 ||
           (strcmp(rt->method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

/* The endpoint for url and method; when only the path is known, its first
 * endpoint (whose Allow header a 405 sends); NULL for an unknown path. */
static const route *find_route(const char *url, const char *method)
{
    const route *first = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(url, routes[i].path) != 0)
            continue;
        if (method_fits(&routes[i], method))
            return &routes[i];
        if (first == NULL)
            first = &routes[i];
    }
    return first;
}

/* Keep n more bytes of a route's body. Returns false past its body_max. */
static bool keep_body(request *r, const char *data, size_t n)
{
    if (r->body + n > r->route->body_max)
        return false;
    if (r->body + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->body + n + 1)
            cap *= 2;
        char *p = realloc(r->kept, cap);
        if (p == NULL)
            return false;
        r->kept = p;
        r->cap = cap;
    }
    memcpy(r->kept + r->body, data, n);
    r->body += n;
    r->kept[r->body] = '\0';
    return true;
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

/* The announced body is longer than max (or its length is garbage). */
static bool body_too_long(struct MHD_Connection *c, size_t max)
{
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl == NULL)
        return false;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    return errno != 0 || end == cl || n > max;
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
            size_t n = *upload_size;
            *upload_size = 0;
            if (r->route->body_max > 0)
                return keep_body(r, upload, n) ? MHD_YES : MHD_NO;
            r->body += n;
            return r->body <= MAX_BODY ? MHD_YES : MHD_NO;
        }
        return r->route->fn(a, c, r);
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
    const route *rt = find_route(url, method);
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
    if (body_too_long(c, rt->body_max > 0 ? rt->body_max : MAX_BODY))
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
    if (r != NULL)
        free(r->kept);
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

    /* A socket passed by systemd or a takeover (inherit.h), or our own. */
    cg_socket_t passed = CG_INVALID_SOCKET;
    cg__inherit_from from;
    rc = cg__inherit_take(CG_INHERIT_ADMIN, &conf->listen, &passed, &from, err, errlen);
    if (rc < 0)
        goto fail;
    rc = 0;
    a->quiesced = MHD_INVALID_SOCKET;
    atomic_init(&a->starting, true);
    errno = 0;
    /* clang-format off */
    a->daemon = MHD_start_daemon(flags, port, on_accept, a, on_request, a,
                                 MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, a,
                                 MHD_OPTION_SOCK_ADDR, sa,
                                 MHD_OPTION_LISTEN_SOCKET, (MHD_socket)passed,
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
        cg__sys_close_socket(passed);
        goto fail;
    }
    if (passed != CG_INVALID_SOCKET)
        cg__log_event(CG_LOG_INFO, "listen_inherited", "listener", CG_INHERIT_ADMIN, "bind",
                      conf->listen.text, "from", cg__inherit_from_name(from), NULL);
    *out = a;
    return 0;
fail:
    free(a);
    return rc;
}

/* cg__admin_fd: see admin.h. */
cg_socket_t cg__admin_fd(cg__admin *a)
{
    const union MHD_DaemonInfo *i =
        a != NULL && a->daemon != NULL && a->quiesced == MHD_INVALID_SOCKET
            ? MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_LISTEN_FD)
            : NULL;
    return i != NULL ? (cg_socket_t)i->listen_fd : CG_INVALID_SOCKET;
}

/* cg__admin_hand_over: see admin.h. The socket stays open (and listening,
 * for the new owner) until cg__admin_stop closes this process's copy. */
void cg__admin_hand_over(cg__admin *a)
{
    if (a != NULL && a->daemon != NULL && a->quiesced == MHD_INVALID_SOCKET)
        a->quiesced = MHD_quiesce_daemon(a->daemon);
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
        MHD_socket ls = a->quiesced != MHD_INVALID_SOCKET ? a->quiesced
                                                          : MHD_quiesce_daemon(a->daemon);
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
