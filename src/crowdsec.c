/* crowdsec.c — the CrowdSec Local API stream client (SPEC §15), one thread
 * with a libcurl easy handle, never on the accept path.
 *
 * The thread asks `GET {url}/v1/decisions/stream?startup=true` first, then
 * `GET {url}/v1/decisions/stream` every interval_ms, and applies each good
 * answer (crowdsec_apply.c). A failed request (unreachable, timeout, status
 * other than 200, bad answer) applies nothing: the bans in force stay, `up`
 * goes to false, and the next request comes after a backoff (the interval
 * doubling up to 8 intervals, at most 60 s unless the interval is longer).
 * The request after a failure is a startup one again: the API may have
 * restarted, or counted a delta we never read, so only the whole list (and
 * lifting what it no longer holds) is sure. One log line per change of
 * state (crowdsec_up, crowdsec_down with the reason), one crowdsec_sync line
 * per startup answer.
 *
 * Stopping: a flag, a condition variable for the wait between requests, and
 * a wakeup of the multi handle's poll, which ends a request in progress.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <uv.h>

#include "crowdsec.h"
#include "log.h"

#define BACKOFF_CAP_MS 60000u

typedef enum state { ST_UNKNOWN = 0, ST_UP, ST_DOWN } state;

struct cg__crowdsec {
    char url[CG_CROWDSEC_URL_MAX + 1];
    char key_header[CG_CROWDSEC_KEY_MAX + 16];
    uint32_t interval_ms, timeout_ms;
    cg__crowdsec_env env;

    CURLM *multi; /* runs the requests; curl_multi_wakeup stops a wait at once */
    uv_thread_t thread;
    uv_mutex_t mu; /* guards st and the wait */
    uv_cond_t cond;
    _Atomic bool stop;

    cg__crowdsec_stats st; /* decisions is read live from the table */
    state state;           /* the thread's own */
};

/* The answer being received. */
typedef struct body {
    char *p;
    size_t len, cap;
    bool too_long;
} body;

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
    body *b = arg;
    size_t add = size * n;
    if (add > CG_CS_ANSWER_MAX - b->len) {
        b->too_long = true;
        return 0; /* aborts the transfer */
    }
    if (b->len + add > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + add)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, add);
    b->len += add;
    return add;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return atomic_load(&((cg__crowdsec *)arg)->stop) ? 1 : 0;
}

/* Run one transfer on the multi handle until it ends or the client stops
 * (CURLE_ABORTED_BY_CALLBACK). */
static CURLcode perform(cg__crowdsec *c, CURL *h)
{
    if (curl_multi_add_handle(c->multi, h) != CURLM_OK)
        return CURLE_OUT_OF_MEMORY;
    CURLcode rc = CURLE_ABORTED_BY_CALLBACK;
    int running = 1;
    while (running && !atomic_load(&c->stop)) {
        if (curl_multi_perform(c->multi, &running) != CURLM_OK)
            break;
        if (running && curl_multi_poll(c->multi, NULL, 0, 1000, NULL) != CURLM_OK)
            break;
    }
    int left;
    for (CURLMsg *m; (m = curl_multi_info_read(c->multi, &left)) != NULL;)
        if (m->msg == CURLMSG_DONE && m->easy_handle == h)
            rc = m->data.result;
    curl_multi_remove_handle(c->multi, h);
    return rc;
}

/* One GET; returns 0 with the body, or -1 with the reason in why. */
static int fetch(cg__crowdsec *c, CURL *h, struct curl_slist *hdr, bool startup, body *b, char *why,
                 size_t wlen)
{
    char url[CG_CROWDSEC_URL_MAX + 64];
    snprintf(url, sizeof url, "%s/v1/decisions/stream%s", c->url, startup ? "?startup=true" : "");
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "condgate/" CG_VERSION_STRING);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CG_CS_ANSWER_MAX);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
    CURLcode rc = perform(c, h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (b->too_long || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(why, wlen, "answer larger than %u bytes", CG_CS_ANSWER_MAX);
        return -1;
    }
    if (rc != CURLE_OK) {
        snprintf(why, wlen, "%s", curl_easy_strerror(rc));
        return -1;
    }
    if (status != 200) {
        snprintf(why, wlen, "status %ld%s", status,
                 status == 403 || status == 401 ? " (is the bouncer key right?)" : "");
        return -1;
    }
    return 0;
}

static void set_state(cg__crowdsec *c, state s, const char *why)
{
    if (c->state == s)
        return;
    c->state = s;
    if (s == ST_UP)
        cg__log_event(CG_LOG_INFO, "crowdsec_up", "url", c->url, NULL);
    else
        cg__log_event(CG_LOG_WARN, "crowdsec_down", "url", c->url, "reason", why, "message",
                      "decisions in force stay; retrying", NULL);
}

static void log_answer(const cg__crowdsec *c, bool startup, const cg__cs_result *r, double ms,
                       double parse_ms, size_t bytes)
{
    char v[11][24];
    uint64_t ign = 0;
    for (int w = 0; w < CG__CS_WHY_COUNT; w++)
        ign += r->ignored[w];
    if (!startup && r->added + r->replaced + r->deleted + r->failed + r->kept + ign == 0)
        return;
    snprintf(v[0], 24, "%zu", r->added);
    snprintf(v[1], 24, "%zu", r->replaced);
    snprintf(v[2], 24, "%zu", r->deleted);
    snprintf(v[3], 24, "%zu", r->lifted);
    snprintf(v[4], 24, "%zu", r->kept);
    snprintf(v[5], 24, "%zu", r->expired);
    snprintf(v[6], 24, "%" PRIu64, ign);
    snprintf(v[7], 24, "%zu", r->failed);
    snprintf(v[8], 24, "%.1f", ms);
    snprintf(v[9], 24, "%zu", bytes);
    snprintf(v[10], 24, "%.1f", parse_ms);
    cg__log_event(r->failed ? CG_LOG_WARN : CG_LOG_INFO,
                  startup ? "crowdsec_sync" : "crowdsec_delta", "url", c->url, "added", v[0],
                  "renewed", v[1], "deleted", v[2], "lifted", v[3], "kept", v[4], "expired", v[5],
                  "ignored", v[6], "failed", v[7], "apply_ms", v[8], "parse_ms", v[10], "bytes",
                  v[9], r->failed ? "message" : NULL, "the ban table is full (max_bans)", NULL);
}

/* Parse and apply one answer. Returns 0 or -1 with the reason in why. */
static int apply(cg__crowdsec *c, const body *b, bool startup, char *why, size_t wlen)
{
    uint64_t t0 = uv_hrtime();
    cg__cs_answer a;
    char err[256];
    if (cg__cs_parse(b->p != NULL ? b->p : "", b->len, &a, err, sizeof err) != 0) {
        snprintf(why, wlen, "bad answer: %s", err);
        return -1;
    }
    uint64_t t1 = uv_hrtime();
    cg__gen *gen = c->env.acquire(c->env.arg);
    cg__cs_result r;
    int rc =
        cg__crowdsec_apply(c->env.rt, gen->cfg->never_ban, &a, startup, cg__runtime_now_s(), &r);
    cg__gen_unref(gen);
    cg__cs_answer_free(&a);
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    uv_mutex_lock(&c->mu);
    c->st.last_sync_s = cg__runtime_now_s();
    c->st.last_apply_ms = ms;
    for (int w = 0; w < CG__CS_WHY_COUNT; w++)
        c->st.ignored[w] += r.ignored[w];
    uv_mutex_unlock(&c->mu);
    log_answer(c, startup, &r, ms, (double)(t1 - t0) / 1e6, b->len);
    if (rc != 0) {
        snprintf(why, wlen, "out of memory reconciling the startup answer");
        return -1;
    }
    return 0;
}

/* One request and its answer. Returns whether it succeeded. */
static bool poll_once(cg__crowdsec *c, CURL *h, struct curl_slist *hdr, bool startup)
{
    body b = {0};
    char why[512] = "";
    int rc = fetch(c, h, hdr, startup, &b, why, sizeof why);
    if (rc == 0 && !atomic_load(&c->stop))
        rc = apply(c, &b, startup, why, sizeof why);
    free(b.p);
    if (atomic_load(&c->stop))
        return false;
    uv_mutex_lock(&c->mu);
    c->st.polls++;
    c->st.errors += rc != 0;
    c->st.up = rc == 0;
    uv_mutex_unlock(&c->mu);
    set_state(c, rc == 0 ? ST_UP : ST_DOWN, why);
    return rc == 0;
}

/* Wait ms, or until stopped. */
static void pause_ms(cg__crowdsec *c, uint64_t ms)
{
    uint64_t end = uv_hrtime() + ms * 1000000u;
    uv_mutex_lock(&c->mu);
    while (!atomic_load(&c->stop)) {
        uint64_t now = uv_hrtime();
        if (now >= end)
            break;
        uv_cond_timedwait(&c->cond, &c->mu, end - now);
    }
    uv_mutex_unlock(&c->mu);
}

static void run(void *arg)
{
    cg__crowdsec *c = arg;
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, c->key_header);
    if (h == NULL || hdr == NULL) {
        cg__log_event(CG_LOG_ERROR, "crowdsec_down", "url", c->url, "reason",
                      "cannot start libcurl", NULL);
        curl_slist_free_all(hdr);
        curl_easy_cleanup(h);
        return;
    }
    uint64_t cap = 8u * (uint64_t)c->interval_ms;
    cap = cap > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : cap;
    cap = cap < c->interval_ms ? c->interval_ms : cap;
    uint64_t wait = c->interval_ms;
    bool startup = true;
    while (!atomic_load(&c->stop)) {
        if (poll_once(c, h, hdr, startup)) {
            startup = false;
            wait = c->interval_ms;
        } else {
            startup = true;
            pause_ms(c, wait);
            wait = wait * 2 > cap ? cap : wait * 2;
            continue;
        }
        pause_ms(c, wait);
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
}

static uv_once_t curl_once = UV_ONCE_INIT;

static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* cg__crowdsec_start: see crowdsec.h. */
int cg__crowdsec_start(const cg_crowdsec_conf *conf, const cg__crowdsec_env *env,
                       const cg__crowdsec_stats *prev, cg__crowdsec **out, char *err, size_t errlen)
{
    uv_once(&curl_once, curl_init);
    cg__crowdsec *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "crowdsec: out of memory");
        return CG_ENOMEM;
    }
    snprintf(c->url, sizeof c->url, "%s", conf->url);
    snprintf(c->key_header, sizeof c->key_header, "X-Api-Key: %s", conf->key);
    c->interval_ms = conf->interval_ms;
    c->timeout_ms = conf->timeout_ms;
    c->env = *env;
    if (prev != NULL) {
        c->st = *prev;
        c->st.up = false;
        c->st.last_sync_s = 0;
        c->st.last_apply_ms = 0;
    }
    snprintf(c->st.url, sizeof c->st.url, "%s", conf->url);
    if (uv_mutex_init(&c->mu) != 0) {
        free(c);
        snprintf(err, errlen, "crowdsec: cannot create a lock");
        return CG_ESYS;
    }
    if ((c->multi = curl_multi_init()) == NULL || uv_cond_init(&c->cond) != 0 ||
        uv_thread_create(&c->thread, run, c) != 0) {
        curl_multi_cleanup(c->multi);
        uv_mutex_destroy(&c->mu);
        free(c);
        snprintf(err, errlen, "crowdsec: cannot start its thread");
        return CG_ESYS;
    }
    *out = c;
    return 0;
}

/* cg__crowdsec_same: see crowdsec.h. */
bool cg__crowdsec_same(const cg__crowdsec *c, const cg_crowdsec_conf *conf)
{
    char hdr[sizeof c->key_header];
    snprintf(hdr, sizeof hdr, "X-Api-Key: %s", conf->key);
    return strcmp(c->url, conf->url) == 0 && strcmp(c->key_header, hdr) == 0 &&
           c->interval_ms == conf->interval_ms && c->timeout_ms == conf->timeout_ms;
}

/* cg__crowdsec_stats_get: see crowdsec.h. */
void cg__crowdsec_stats_get(cg__crowdsec *c, cg__crowdsec_stats *out)
{
    uv_mutex_lock(&c->mu);
    *out = c->st;
    uv_mutex_unlock(&c->mu);
    out->decisions = cg__bans_count_origin(cg__runtime_bans(c->env.rt), CG__BAN_CROWDSEC);
}

/* cg__crowdsec_stop: see crowdsec.h. */
void cg__crowdsec_stop(cg__crowdsec *c)
{
    if (c == NULL)
        return;
    uv_mutex_lock(&c->mu);
    atomic_store(&c->stop, true);
    uv_cond_signal(&c->cond);
    uv_mutex_unlock(&c->mu);
    curl_multi_wakeup(c->multi);
    uv_thread_join(&c->thread);
    curl_multi_cleanup(c->multi);
    uv_cond_destroy(&c->cond);
    uv_mutex_destroy(&c->mu);
    memset(c->key_header, 0, sizeof c->key_header);
    free(c);
}
