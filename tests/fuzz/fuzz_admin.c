/* fuzz_admin.c — the admin port: raw HTTP bytes from a client, through a
 * real libmicrohttpd daemon running the real handlers of src/admin.c.
 *
 * The admin code runs unchanged: cg__admin_start binds 127.0.0.1:PORT with
 * the production flags (a polling thread, one thread per connection), the
 * accept policy judges each caller by [admin] allow, and routing, bearer
 * tokens and every endpoint are the real ones. Only the gate behind it is a
 * stand-in, the cg__gate_view (gate_view.h) filled in below: generations
 * loaded by cg_config_load from two small configurations (A with a token,
 * B without; several rule sets, labels that need escaping, hit counters),
 * real counters (cg__stats) holding figures past 2^53, and a reload that
 * runs on a thread of its own, as on the gate's control thread, and swaps
 * in a new generation (every RELOAD_FRESH-th one read from the files again,
 * the others a spare loaded before), or loads a broken configuration, or
 * says the gate is stopping.
 *
 * Input: one mode byte, then what a client sends on one connection (one
 * request or several pipelined). Mode:
 *   bit 0       a token is required (A) or not (B)
 *   bits 1-2    what POST /reload does: 0, 1 loads again (200); 2 loads a
 *               broken configuration (422); 3 the gate is stopping (503)
 *   0x70 set    the caller connects from 127.0.0.2, which [admin] allow
 *               refuses
 * Each input: connect, send, shut down writing, read until the server
 * closes (bounded), then check:
 *   - a refused caller gets no byte;
 *   - after the half-close the server keeps sending until it closes:
 *     never QUIET_LIMIT_MS without a byte (it must not hold the
 *     connection until its idle timeout, CG_ADMIN_TIMEOUT_S);
 *   - the bytes are a sequence of HTTP/1.x responses, each with a
 *     Content-Length and a body of that length (none for HEAD), and nothing
 *     after the last one; a 1xx is only 100 Continue, asked for;
 *   - statuses: the handlers' answers (recognised by their Cache-Control
 *     and X-Content-Type-Options headers) are 200, 400, 401, 404, 405, 413,
 *     422 (broken reload only) or 503 (stopping only); 401 only with a
 *     token and with WWW-Authenticate: Bearer; 405 with Allow; the ones
 *     libmicrohttpd makes itself are 4xx or 505; never another 5xx;
 *   - authorization: with a token, an input that does not hold the token
 *     gets nothing from the handlers but 401, the page (or 413 for it), or
 *     400 (a request refused for its form);
 *   - bodies: JSON is valid UTF-8 and one object on one line (errors carry
 *     "error"); an explanation agrees with the rule set it names and counts
 *     no hit; a reload answer matches the reload; metrics lines are samples
 *     or comments; /healthz says ok; the page is HTML;
 *   - one well-formed request (the model below) gets exactly one answer,
 *     with the status the routing table gives.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "admin.h"
#include "condgate/config.h"
#include "condgate/rules.h"
#include "fuzz_common.h"
#include "gate_view.h"
#include "gen.h"
#include "log.h"
#include "runtime.h"
#include "stats.h"

#define TOKEN "fuzz-T0ken_42"
#define WORKERS 2u
/* After the client's half-close the server may be silent this long at most
 * before it closes (less than its idle timeout). */
#define QUIET_LIMIT_MS 4000
/* Give up reading after this long (the input is then not checked). */
#define READ_LIMIT_MS 9000
/* Inputs with more requests than this (header ends) are skipped: long
 * pipelines make slow inputs and test nothing that 16 do not. */
#define MAX_REQUESTS 16
/* Read at most this much; past it the answers are not checked. */
#define READ_MAX ((size_t)16 << 20)

/* ------------------------------------------------------------------------
 * Files: two configurations, their rule files and a broken one
 */

static char dir[256];
/* FUZZ_ADMIN_DUMP=1: print every answer stream on stderr (for replays). */
static bool dump;

static const struct fixture {
    const char *name;
    const char *text; /* "@PORT@" is the admin port */
} fixtures[] = {
    {"a.ini", "[gateway]\nworkers = 2\nmax_connections = 500\n"
              "[admin]\nlisten = 127.0.0.1:@PORT@\nallow = 127.0.0.1, ::1\ntoken = " TOKEN "\n"
              "[rules]\ndefault = deny\nallow = 127.0.0.0/8, ::1\ndeny = 127.0.0.66\n"
              "include = rules.json\ndeny_file = drop.txt\n"
              "[rules:office]\ndefault = allow\nallow = 203.0.113.0/24, 2001:db8::/32\n"
              "deny = 203.0.113.13\n"
              "[rules:v6.only]\nallow = ::/0\n"
              "[listener:echo]\nbind = 127.0.0.1:1\nbackend = echo\n"
              "[listener:web-1]\nbind = [::]:2\nbackend = 127.0.0.1:3, [::1]:4\nrules = office\n"
              "[listener:v6]\nbind = [::1]:5\nbackend = [::1]:6\nrules = v6.only\n"},
    {"b.ini", "[admin]\nlisten = 127.0.0.1:@PORT@\nallow = 127.0.0.1\n"
              "[rules]\nallow = all\ninclude = rules.json\n"
              "[rules:x]\ndefault = allow\n"
              "[listener:v6]\nbind = [::1]:5\nbackend = echo\n"
              "[listener:web-1]\nbind = [::]:2\nbackend = 127.0.0.1:2\nrules = x\n"
              "[listener:echo]\nbind = 127.0.0.1:1\nbackend = echo\n"},
    {"broken.ini", "[admin]\nlisten = 127.0.0.1:@PORT@\n"
                   "[rules]\ninclude = bad.json\n"
                   "[listener:a]\nbind = 127.0.0.1:1\nbackend = echo\n"},
    {"rules.json", "{\n  \"allow\": [\"10.0.0.0/8\", \"2001:db8:1::/48\"],\n"
                   "  \"deny\": [\"10.66.0.0/16\"],\n  \"rules\": [\n"
                   "    {\"action\": \"allow\", \"cidr\": \"10.66.1.7\", "
                   "\"label\": \"build \\\"server\\\" \\\\ caf\\u00e9 \\u2603\"},\n"
                   "    {\"action\": \"deny\", \"cidr\": \"198.51.100.0/24\", "
                   "\"label\": \"<b>&amp;</b> \\u00ff 100%%\"},\n"
                   "    {\"action\": \"allow\", \"cidr\": \"::ffff:192.0.2.0/120\"}\n  ]\n}\n"},
    {"bad.json", "{\n  \"allow\": [\n    \"10.1.2.3/8\"\n  ]\n}\n"},
    {"drop.txt", "; Spamhaus DROP\n1.10.16.0/20 ; SBL256894\n2001:db8:66::/48\n"},
};

static char path_a[320], path_b[320], path_broken[320], path_bad_json[320];

static void write_file(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    FUZZ_CHECK(f != NULL, "open %s: %s", p, strerror(errno));
    FUZZ_CHECK(fputs(text, f) >= 0 && fclose(f) == 0, "write %s: %s", p, strerror(errno));
}

static void write_fixtures(unsigned port)
{
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        char p[512], text[4096];
        const char *at = strstr(fixtures[i].text, "@PORT@");
        snprintf(p, sizeof p, "%s/%s", dir, fixtures[i].name);
        if (at)
            snprintf(text, sizeof text, "%.*s%u%s", (int)(at - fixtures[i].text), fixtures[i].text,
                     port, at + 6);
        else
            snprintf(text, sizeof text, "%s", fixtures[i].text);
        write_file(p, text);
    }
}

static void remove_fixtures(void)
{
    char p[512];
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, fixtures[i].name);
        unlink(p);
    }
    rmdir(dir);
}

/* ------------------------------------------------------------------------
 * The stand-in gate: what admin.c reads through its cg__gate_view
 */

/* Callers judged against each new generation's rule sets, so that GET
 * /rules lists hits and an explanation shows them. */
static const char *const warm_callers[] = {"10.66.1.7",    "10.66.1.7", "10.1.2.3",
                                           "198.51.100.9", "127.0.0.1", "203.0.113.13",
                                           "2001:db8::1",  "1.10.16.1"};

typedef enum reload_mode { RELOAD_OK, RELOAD_BROKEN, RELOAD_STOPPING } reload_mode;

/* A successful reload swaps in the spare generation of the same file (the
 * outgoing one becomes the spare); every RELOAD_FRESH-th one first reads
 * the files again into a new spare, freeing the old. Loading and freezing
 * the rule sets take some 10 ms in this instrumented build, which would
 * make inputs with reloads a hundred times slower than the others; the
 * loader has fuzz_ini to itself. */
#define RELOAD_FRESH 32

typedef struct stand_in {
    pthread_mutex_t lock;
    cg__gen *gen[2];    /* current generation of configuration B [0] and A [1] */
    cg__gen *spare[2];  /* the next one (we hold one reference to each) */
    uint64_t number[2]; /* the current one's number */
    _Atomic int config; /* which one the current input uses */
    _Atomic int reload; /* reload_mode of the current input */
    uint64_t reloads_ok;
    cg__stats *stats;
    uint64_t started_ms;
} stand_in;

static stand_in gate = {.lock = PTHREAD_MUTEX_INITIALIZER};
static cg__admin *admin;
static unsigned port;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void warm(cg_config *cfg)
{
    for (size_t s = 0; s < cfg->nrulesets; s++)
        for (size_t i = 0; i < sizeof warm_callers / sizeof warm_callers[0]; i++) {
            struct sockaddr_storage ss;
            memset(&ss, 0, sizeof ss);
            if (strchr(warm_callers[i], ':')) {
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
                s6->sin6_family = AF_INET6;
                inet_pton(AF_INET6, warm_callers[i], &s6->sin6_addr);
            } else {
                struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
                s4->sin_family = AF_INET;
                inet_pton(AF_INET, warm_callers[i], &s4->sin_addr);
            }
            cg_ruleset_judge(cfg->rulesets[s], (const struct sockaddr *)&ss, NULL);
        }
}

/* The gate's listeners, in its order; both configurations have them (B in
 * another order), as a reload may not add or remove one. */
static const char *const listeners[] = {"echo", "web-1", "v6"};
#define NLISTENERS (sizeof listeners / sizeof listeners[0])

/* Load a configuration as a new generation. */
static int load_gen(const char *path, uint64_t number, cg__gen **out, char *err, size_t errlen)
{
    cg_config *cfg = NULL;
    int rc = cg_config_load(path, &cfg, err, errlen);
    if (rc != 0)
        return rc;
    size_t lmap[NLISTENERS];
    FUZZ_CHECK(cfg->nlisteners == NLISTENERS, "%s: %zu listeners", path, cfg->nlisteners);
    for (size_t i = 0; i < NLISTENERS; i++) {
        for (lmap[i] = 0; lmap[i] < cfg->nlisteners; lmap[i]++)
            if (strcmp(cfg->listeners[lmap[i]].name, listeners[i]) == 0)
                break;
        FUZZ_CHECK(lmap[i] < cfg->nlisteners, "%s: no listener %s", path, listeners[i]);
    }
    warm(cfg);
    *out = cg__gen_new(cfg, number, lmap, NLISTENERS);
    FUZZ_CHECK(*out != NULL, "out of memory");
    return 0;
}

/* The view's functions; ctx is &gate. */
static cg__gen *gate_acquire(void *ctx)
{
    stand_in *g = ctx;
    pthread_mutex_lock(&g->lock);
    cg__gen *gen = cg__gen_ref(g->gen[atomic_load(&g->config)]);
    pthread_mutex_unlock(&g->lock);
    return gen;
}

static cg__stats *gate_stats(void *ctx)
{
    stand_in *g = ctx;
    return g->stats;
}

static uint64_t gate_uptime_ms(void *ctx)
{
    const stand_in *g = ctx;
    return now_ms() - g->started_ms;
}

static uint64_t gate_max_connections(void *ctx)
{
    return 497; /* as if the descriptor limit had lowered 500 */
}

static unsigned gate_workers(void *ctx)
{
    return WORKERS;
}

/* A reload, on a thread of its own as on the gate's control thread (the
 * loader wants more stack than an admin connection thread has). */
typedef struct reload_job {
    int config;
    reload_mode mode;
    int rc;
    uint64_t generation;
    char err[512];
} reload_job;

static void *reload_thread(void *arg)
{
    reload_job *j = arg;
    int c = j->config;
    cg__gen *fresh = NULL;
    if (j->mode == RELOAD_BROKEN) {
        j->rc = load_gen(path_broken, 0, &fresh, j->err, sizeof j->err);
        cg__gen_unref(fresh);
        return NULL;
    }
    /* Requests on one connection are served one after the other: no
     * handler holds the spare now. */
    FUZZ_CHECK(atomic_load(&gate.spare[c]->refs) == 1, "the spare generation is in use");
    if (gate.reloads_ok++ % RELOAD_FRESH == 0) {
        j->rc = load_gen(c ? path_a : path_b, 0, &fresh, j->err, sizeof j->err);
        if (j->rc != 0)
            return NULL;
        cg__gen_unref(gate.spare[c]);
        gate.spare[c] = fresh;
    }
    pthread_mutex_lock(&gate.lock);
    cg__gen *in = gate.spare[c];
    in->number = ++gate.number[c];
    gate.spare[c] = gate.gen[c];
    gate.gen[c] = in;
    pthread_mutex_unlock(&gate.lock);
    j->generation = in->number;
    return NULL;
}

static int gate_reload_wait(void *ctx, uint64_t *generation, char *err, size_t errlen)
{
    stand_in *g = ctx;
    reload_job j = {atomic_load(&g->config), (reload_mode)atomic_load(&g->reload), 0, 0, ""};
    if (j.mode == RELOAD_STOPPING) {
        snprintf(err, errlen, "the gate is stopping");
        return CG_EAGAIN;
    }
    pthread_t t;
    FUZZ_CHECK(pthread_create(&t, NULL, reload_thread, &j) == 0, "pthread_create");
    pthread_join(t, NULL);
    if (j.rc != 0) {
        FUZZ_CHECK(j.mode == RELOAD_BROKEN, "reloading a good configuration failed: %s", j.err);
        atomic_fetch_add(&g->stats->reload_failures, 1);
        snprintf(err, errlen, "%s", j.err);
        return j.rc;
    }
    FUZZ_CHECK(j.mode == RELOAD_OK, "the broken configuration loaded");
    atomic_fetch_add(&g->stats->reloads, 1);
    *generation = j.generation;
    return 0;
}

/* The stand-in has no kernel prefilter: every listener "off", nothing
 * refused before accept. */
static const char *gate_prefilter(void *ctx, size_t l, uint64_t counts[CG__REJ_COUNT])
{
    (void)ctx, (void)l, (void)counts;
    return "off";
}

/* The runtime state (bans, sources, recent callers) is the real one, made
 * at start from configuration A, with no state file and no kernel. */
static uv_loop_t rt_loop;
static cg__runtime *runtime;

static void gate_policy(void *ctx, const cg__gen *gen, size_t l, cg__policy *out)
{
    const cg_listener_conf *lc = cg__gen_listener(gen, l);
    (void)ctx;
    *out = (cg__policy){
        .bans = cg__runtime_bans(runtime),
        .set = gen->cfg->rulesets[lc->ruleset],
        .sources = cg__runtime_sources(runtime),
        .limits = &lc->sources,
        .listener = (uint32_t)l,
        .now_s = cg__runtime_now_s(),
        .now_ms = now_ms(),
    };
}

static cg__runtime *gate_runtime(void *ctx)
{
    (void)ctx;
    return runtime;
}

/* The preview's candidate: the spare generation (loading the file afresh
 * would be as slow as a fresh reload), or the broken file. */
static int gate_candidate(void *ctx, cg__gen **out, char *err, size_t errlen)
{
    stand_in *g = ctx;
    if ((reload_mode)atomic_load(&g->reload) == RELOAD_BROKEN) {
        cg__gen *fresh = NULL;
        int rc = load_gen(path_broken, 0, &fresh, err, errlen);
        FUZZ_CHECK(rc != 0, "the broken configuration loaded");
        cg__gen_unref(fresh);
        return rc;
    }
    pthread_mutex_lock(&g->lock);
    *out = cg__gen_ref(g->spare[atomic_load(&g->config)]);
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static const cg__gate_view view = {
    .ctx = &gate,
    .acquire = gate_acquire,
    .stats = gate_stats,
    .uptime_ms = gate_uptime_ms,
    .max_connections = gate_max_connections,
    .workers = gate_workers,
    .reload_wait = gate_reload_wait,
    .prefilter = gate_prefilter,
    .policy = gate_policy,
    .runtime = gate_runtime,
    .candidate = gate_candidate,
};

/* ------------------------------------------------------------------------
 * Start and stop
 */

/* A port that was free a moment ago. */
static unsigned free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    FUZZ_CHECK(s >= 0 && bind(s, (struct sockaddr *)&sin, sizeof sin) == 0 &&
                   getsockname(s, (struct sockaddr *)&sin, &len) == 0,
               "no free port: %s", strerror(errno));
    close(s);
    return ntohs(sin.sin_port);
}

static void stop(void)
{
    cg__admin_stop(admin);
    admin = NULL;
    for (int c = 0; c < 2; c++) {
        cg__gen_unref(gate.gen[c]);
        cg__gen_unref(gate.spare[c]);
    }
    cg__stats_free(gate.stats);
    cg__runtime_close(runtime);
    uv_run(&rt_loop, UV_RUN_DEFAULT);
    cg__runtime_free(runtime);
    uv_loop_close(&rt_loop);
    remove_fixtures();
}

static void set_counters(cg__stats *st, size_t nlisteners)
{
    for (size_t slot = 0; slot < st->nslots; slot++)
        for (size_t l = 0; l < nlisteners; l++) {
            cg__lstats *ls = cg__lstats_of(st, slot, l);
            uint64_t k = slot * 10 + l + 1;
            if (slot == 0) {
                cg__stat_add(&ls->accepted, 100 * k);
                for (int r = 0; r < CG__REJ_COUNT; r++)
                    cg__stat_add(&ls->rejected[r], k + (uint64_t)r);
            } else {
                cg__stat_add(&ls->closed, 90 * k);
                cg__stat_add(&ls->backend_errors, k);
                /* Past 2^53: counters must stay exact in JSON. */
                cg__stat_add(&ls->bytes_in, (UINT64_C(1) << 53) + k);
                cg__stat_add(&ls->bytes_out, UINT64_MAX / 4 + k);
            }
        }
    for (size_t w = 1; w < st->nslots; w++)
        cg__stat_add(&st->slots[w].handled, 7 * w);
}

static int request(int mode, const char *req, size_t len, char **out, size_t *outlen);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_make_tmpdir(dir, sizeof dir, "condgate-fuzz-admin");
    snprintf(path_a, sizeof path_a, "%s/a.ini", dir);
    snprintf(path_b, sizeof path_b, "%s/b.ini", dir);
    snprintf(path_broken, sizeof path_broken, "%s/broken.ini", dir);
    snprintf(path_bad_json, sizeof path_bad_json, "%s/bad.json", dir);

    dump = getenv("FUZZ_ADMIN_DUMP") && strcmp(getenv("FUZZ_ADMIN_DUMP"), "1") == 0;
    /* admin_reject lines (info) would drown libFuzzer's output. */
    cg__log_setup(CG_LOG_WARN, CG_LOG_TEXT);
    gate.started_ms = now_ms() - 3723456;

    char err[512];
    int rc = CG_EADDRINUSE;
    for (int attempt = 0; attempt < 20 && rc == CG_EADDRINUSE; attempt++) {
        port = free_port();
        write_fixtures(port);
        FUZZ_CHECK(load_gen(path_b, 1, &gate.gen[0], err, sizeof err) == 0, "b.ini: %s", err);
        FUZZ_CHECK(load_gen(path_a, 1, &gate.gen[1], err, sizeof err) == 0, "a.ini: %s", err);
        gate.number[0] = gate.number[1] = 1;
        for (int c = 0; c < 2; c++)
            if (!gate.spare[c])
                FUZZ_CHECK(load_gen(c ? path_a : path_b, 0, &gate.spare[c], err, sizeof err) == 0,
                           "%s", err);
        if (!gate.stats) {
            gate.stats = cg__stats_new(NLISTENERS, WORKERS);
            FUZZ_CHECK(gate.stats != NULL, "out of memory");
            set_counters(gate.stats, NLISTENERS);
        }
        atomic_store(&gate.config, 1);
        if (runtime == NULL) {
            FUZZ_CHECK(uv_loop_init(&rt_loop) == 0, "uv_loop_init");
            FUZZ_CHECK(cg__runtime_new(&rt_loop, gate.gen[1]->cfg, &runtime, err, sizeof err) == 0,
                       "cg__runtime_new: %s", err);
        }
        rc = cg__admin_start(&view, &gate.gen[1]->cfg->admin, &admin, err, sizeof err);
        if (rc != 0) {
            cg__gen_unref(gate.gen[0]);
            cg__gen_unref(gate.gen[1]);
            gate.gen[0] = gate.gen[1] = NULL;
        }
    }
    FUZZ_CHECK(rc == 0, "cg__admin_start: %s", err);
    atexit(stop);

    /* The harness itself works: one answer to a plain request. */
    atomic_store(&gate.config, 0);
    static const char hello[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    char *resp = NULL;
    size_t n = 0;
    FUZZ_CHECK(request(0, hello, sizeof hello - 1, &resp, &n) == 0 && n > 12 &&
                   memcmp(resp, "HTTP/1.1 200", 12) == 0,
               "GET /healthz on port %u: %zu bytes", port, n);
    free(resp);
    return 0;
}

/* ------------------------------------------------------------------------
 * One connection
 */

/* Send req on a fresh connection from 127.0.0.1 (127.0.0.2 when refused),
 * shut down writing, read until the server closes. Returns 0, 1 when the
 * connection was reset, 2 when the answer is too long or too slow to check. */
static int request(int mode, const char *req, size_t len, char **out, size_t *outlen)
{
    bool refused = (mode & 0x70) == 0x70;
    int s = -1;
    /* The client half-closes first, so its side of every connection ends
     * in TIME_WAIT. connect() picks a local port for the whole 4-tuple and
     * may reuse one in TIME_WAIT (Linux tcp_tw_reuse, on for loopback), so
     * the source port is left to it, also when 127.0.0.2 is bound. */
    for (int attempt = 0;; attempt++) {
        s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        FUZZ_CHECK(s >= 0, "socket: %s", strerror(errno));
        if (refused) {
            struct sockaddr_in from = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000002)};
#if defined(IP_BIND_ADDRESS_NO_PORT)
            int one = 1;
            setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
            FUZZ_CHECK(bind(s, (struct sockaddr *)&from, sizeof from) == 0, "bind 127.0.0.2: %s",
                       strerror(errno));
        }
        struct sockaddr_in to = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        /* Non-blocking: libFuzzer's timer signal must not cut it short. */
        fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
        int e = connect(s, (struct sockaddr *)&to, sizeof to) == 0 ? 0 : errno;
        if (e == EINPROGRESS) {
            struct pollfd p = {s, POLLOUT, 0};
            int n;
            while ((n = poll(&p, 1, 5000)) < 0 && errno == EINTR)
                ;
            socklen_t elen = sizeof e;
            FUZZ_CHECK(n == 1 && getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &elen) == 0,
                       "connect to port %u: no answer in 5 s", port);
        }
        if (e == 0)
            break;
        /* Out of local ports for a moment (TIME_WAIT): the machine's, not
         * the server's, so wait a little rather than report it. */
        FUZZ_CHECK((e == EADDRNOTAVAIL || e == EADDRINUSE) && attempt < 200,
                   "connect to port %u: %s", port, strerror(e));
        close(s);
        usleep(10000);
    }
    /* No TIME_WAIT when the server closes first: close with a reset. */
    struct linger lg = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);

    size_t cap = 65536, got = 0, sent = 0;
    char *buf = malloc(cap);
    FUZZ_CHECK(buf != NULL, "out of memory");
    int result = 0;
    bool wr_open = true;
    /* last: the half-close, then the last byte received after it. */
    uint64_t start = now_ms(), last = 0;
    for (;;) {
        if (wr_open && sent == len) {
            shutdown(s, SHUT_WR);
            wr_open = false;
            last = now_ms();
        }
        struct pollfd p = {s, (short)(POLLIN | (wr_open ? POLLOUT : 0)), 0};
        uint64_t now = now_ms();
        if (now - start > READ_LIMIT_MS) {
            result = 2;
            break;
        }
        FUZZ_CHECK(wr_open || now - last < QUIET_LIMIT_MS,
                   "the server kept the connection open %llu ms after the client's half-close "
                   "without a byte",
                   (unsigned long long)(now - last));
        int n = poll(&p, 1, 100);
        if (n < 0 && errno == EINTR)
            continue;
        FUZZ_CHECK(n >= 0, "poll: %s", strerror(errno));
        if (wr_open && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(s, req + sent, len - sent, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                /* The server stopped reading (an answer and a close). */
                wr_open = false;
                last = now_ms();
            }
        }
        if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
            if (got == cap) {
                if (cap >= READ_MAX) {
                    result = 2;
                    break;
                }
                cap *= 2;
                buf = realloc(buf, cap);
                FUZZ_CHECK(buf != NULL, "out of memory");
            }
            ssize_t r = recv(s, buf + got, cap - got, 0);
            if (r > 0) {
                got += (size_t)r;
                last = wr_open ? last : now_ms();
            } else if (r == 0) {
                break;
            } else if (errno == ECONNRESET || errno == EPIPE) {
                result = 1;
                break;
            } else {
                FUZZ_CHECK(errno == EAGAIN || errno == EINTR, "recv: %s", strerror(errno));
            }
        }
    }
    close(s);
    *out = buf;
    *outlen = got;
    return result;
}

/* ------------------------------------------------------------------------
 * Checks
 */

static bool has(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return true;
    return false;
}

static bool has_nocase(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (strncasecmp(hay + i, needle, m) == 0)
            return true;
    return false;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80             ? 0
                   : (c & 0xe0) == 0xc0 ? 1
                   : (c & 0xf0) == 0xe0 ? 2
                   : (c & 0xf8) == 0xf0 ? 3
                                        : 9;
        if (k == 9 || (k == 1 && c < 0xc2) || i + k >= n)
            return false;
        unsigned cp = k == 0 ? c : c & (0x3f >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += k + 1;
    }
    return true;
}

/* One response as parsed. */
typedef struct response {
    unsigned status;
    bool ours;        /* Cache-Control: no-store and X-Content-Type-Options */
    char type[64];    /* Content-Type */
    bool bearer;      /* WWW-Authenticate: Bearer */
    char allow[32];   /* Allow */
    const char *body; /* NULL when omitted (HEAD) */
    size_t body_len;
} response;

typedef struct input {
    int mode;
    bool token_mode;
    reload_mode reload;
    const char *req;
    size_t len;
    bool holds_token; /* the token appears somewhere in the input */
} input;

/* The header value (trimmed, NUL-terminated copy) of name in the header
 * block h[0..n), or false. */
static bool header(const char *h, size_t n, const char *name, char *v, size_t vlen)
{
    size_t nl = strlen(name);
    for (const char *p = h, *end = h + n; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *e = eol ? eol : end;
        if ((size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *b = p + nl + 1;
            while (b < e && *b == ' ')
                b++;
            while (e > b && (e[-1] == '\r' || e[-1] == ' '))
                e--;
            size_t m = (size_t)(e - b) < vlen - 1 ? (size_t)(e - b) : vlen - 1;
            memcpy(v, b, m);
            v[m] = '\0';
            return true;
        }
        p = eol ? eol + 1 : end;
    }
    return false;
}

/* How many header lines of h[0..n) are named name. */
static size_t count_headers(const char *h, size_t n, const char *name)
{
    size_t nl = strlen(name), count = 0;
    for (const char *p = h, *end = h + n; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *e = eol ? eol : end;
        count += (size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':';
        p = eol ? eol + 1 : end;
    }
    return count;
}

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A reload preview: counts that add up, at most 100 flips listed, each
 * with both sides. */
static void check_preview(const cJSON *root)
{
    const cJSON *replayed = cJSON_GetObjectItemCaseSensitive(root, "replayed");
    const cJSON *flip = cJSON_GetObjectItemCaseSensitive(root, "would_flip");
    const cJSON *flips = cJSON_GetObjectItemCaseSensitive(root, "flips");
    FUZZ_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "ok")) &&
                   cJSON_IsNumber(replayed) && cJSON_IsNumber(flip) && cJSON_IsArray(flips),
               "preview answer without its fields");
    int n = cJSON_GetArraySize(flips);
    FUZZ_CHECK(flip->valuedouble <= replayed->valuedouble && n <= 100 &&
                   n <= (int)flip->valuedouble,
               "preview: %d listed, %g would flip of %g replayed", n, flip->valuedouble,
               replayed->valuedouble);
    const cJSON *f;
    cJSON_ArrayForEach(f, flips)
    {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(f, "now");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(f, "after");
        const char *va = json_str(a, "verdict"), *vb = json_str(b, "verdict");
        FUZZ_CHECK(json_str(f, "addr") && json_str(f, "listener") && va && vb &&
                       strcmp(va, vb) != 0,
                   "a flip that does not flip");
    }
}

/* POST, GET or DELETE /bans: each BAN has its fields; a listing is in
 * address order and no longer than its count. */
static void check_bans_answer(unsigned status, const cJSON *root)
{
    const cJSON *bans = cJSON_GetObjectItemCaseSensitive(root, "bans");
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(root, "ban");
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(root, "count");
    FUZZ_CHECK(status != 201 || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "ok")),
               "201 without ok");
    FUZZ_CHECK(!bans || (cJSON_IsArray(bans) && cJSON_IsNumber(count) &&
                         cJSON_GetArraySize(bans) <= (int)count->valuedouble),
               "a list of bans longer than its count");
    const cJSON *b;
    cg_cidr prev = {0};
    bool have_prev = false;
    cJSON_ArrayForEach(b, bans)
    {
        const char *c = json_str(b, "cidr");
        cg_cidr cur;
        FUZZ_CHECK(c && cg_cidr_parse(c, strlen(c), &cur, NULL, 0) == 0 && json_str(b, "origin") &&
                       json_str(b, "expires") && json_str(b, "created"),
                   "a BAN without its fields");
        if (status == 200 && have_prev)
            FUZZ_CHECK(prev.family < cur.family ||
                           (prev.family == cur.family &&
                            (memcmp(prev.addr, cur.addr, 16) < 0 ||
                             (memcmp(prev.addr, cur.addr, 16) == 0 && prev.len < cur.len))),
                       "bans out of address order at %s", c);
        prev = cur;
        have_prev = true;
    }
    FUZZ_CHECK(!one || json_str(one, "cidr"), "a BAN without its cidr");
}

/* An explanation agrees with the rule set it names. */
static void check_explain(const input *in, const cJSON *root)
{
    const char *addr = json_str(root, "addr"), *set = json_str(root, "set");
    const char *verdict = json_str(root, "verdict"), *reason = json_str(root, "reason");
    const char *family = json_str(root, "family");
    FUZZ_CHECK(addr && set && verdict && reason && family, "explanation without its fields");
    cg__gen *gen = gate_acquire(&gate);
    long i = cg_config_find_ruleset(gen->cfg, set);
    FUZZ_CHECK(i >= 0, "explained with a set \"%s\" that does not exist", set);
    cg_cidr host;
    FUZZ_CHECK(cg_cidr_parse(addr, strlen(addr), &host, NULL, 0) == 0 &&
                   host.len == (host.family == 4 ? 32 : 128),
               "explained \"%s\", which is not one address", addr);
    /* A ban decides before the rule set: the table must hold one for it. */
    const char *stage = json_str(root, "stage");
    FUZZ_CHECK(stage != NULL, "explanation without a stage");
    if (strcmp(stage, "ban") == 0) {
        FUZZ_CHECK(
            strcmp(verdict, "deny") == 0 && strcmp(reason, "ban") == 0 &&
                cg__bans_match(cg__runtime_bans(runtime), &host, cg__runtime_now_s(), false, NULL),
            "explain %s: stage ban, verdict %s, and the table has no ban for it", addr, verdict);
        cg__gen_unref(gen);
        return;
    }
    cg_rule_id id = CG_RULE_NONE;
    cg_action want = cg_ruleset_lookup(gen->cfg->rulesets[i], &host, &id);
    FUZZ_CHECK(strcmp(verdict, cg_action_name(want)) == 0, "explain %s in %s: %s, lookup says %s",
               addr, set, verdict, cg_action_name(want));
    FUZZ_CHECK(strcmp(family, host.family == 4 ? "ipv4" : "ipv6") == 0, "family %s for %s", family,
               addr);
    const cJSON *rule = cJSON_GetObjectItemCaseSensitive(root, "rule");
    if (id == CG_RULE_NONE) {
        FUZZ_CHECK(cJSON_IsNull(rule) && strcmp(reason, "default") == 0,
                   "explain %s: no entry matches, yet a rule or reason %s", addr, reason);
    } else {
        cg_rule_info info;
        char cidr[CG_CIDR_STRLEN];
        FUZZ_CHECK(cg_ruleset_rule(gen->cfg->rulesets[i], id, &info) == 0, "entry %u",
                   (unsigned)id);
        cg_cidr_format(&info.cidr, cidr, sizeof cidr);
        const char *rc = json_str(rule, "cidr"), *label = json_str(rule, "label");
        const cJSON *hits = cJSON_GetObjectItemCaseSensitive(rule, "hits");
        FUZZ_CHECK(strcmp(reason, "rule") == 0 && rc && strcmp(rc, cidr) == 0,
                   "explain %s: rule %s, lookup says %s", addr, rc ? rc : "null", cidr);
        FUZZ_CHECK((label == NULL) == (info.label == NULL) &&
                       (label == NULL || strcmp(label, info.label) == 0),
                   "explain %s: label differs", addr);
        /* Explaining counts no hit: the figure is the warm-up's. */
        FUZZ_CHECK(cJSON_IsNumber(hits) && (uint64_t)hits->valuedouble == info.hits,
                   "explain %s: %g hits, the entry has %llu", addr,
                   cJSON_IsNumber(hits) ? hits->valuedouble : -1.0, (unsigned long long)info.hits);
    }
    cg__gen_unref(gen);
}

static void check_json(const input *in, const response *r)
{
    FUZZ_CHECK(r->body_len > 0 && r->body[r->body_len - 1] == '\n' &&
                   !memchr(r->body, '\n', r->body_len - 1),
               "JSON answer %u is not one line", r->status);
    FUZZ_CHECK(valid_utf8((const unsigned char *)r->body, r->body_len),
               "JSON answer %u is not valid UTF-8: %.*s", r->status, (int)r->body_len, r->body);
    cJSON *root = cJSON_ParseWithLength(r->body, r->body_len);
    FUZZ_CHECK(cJSON_IsObject(root), "JSON answer %u does not parse: %.*s", r->status,
               (int)r->body_len, r->body);
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(root, "ok");
    const cJSON *gen_no = cJSON_GetObjectItemCaseSensitive(root, "generation");
    if (r->status == 200 && cJSON_GetObjectItemCaseSensitive(root, "verdict")) {
        check_explain(in, root);
    } else if (r->status == 200 && cJSON_GetObjectItemCaseSensitive(root, "dry_run")) {
        check_preview(root);
    } else if (r->status == 201 || (r->status == 200 && !gen_no &&
                                    (ok || cJSON_GetObjectItemCaseSensitive(root, "bans")))) {
        check_bans_answer(r->status, root);
    } else if (r->status == 422 && !ok) {
        const char *e = json_str(root, "error"); /* POST /bans: never_ban, or full */
        FUZZ_CHECK(e && (strstr(e, "never_ban") || strstr(e, "max_bans")),
                   "422 from /bans without its reason: %.*s", (int)r->body_len, r->body);
    } else if (r->status == 200 && ok) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "generation");
        FUZZ_CHECK(cJSON_IsTrue(ok) && cJSON_IsNumber(g) && g->valuedouble >= 2,
                   "reload answer %.*s", (int)r->body_len, r->body);
    } else if (r->status == 422 || r->status == 503) {
        const char *e = json_str(root, "error");
        FUZZ_CHECK(cJSON_IsFalse(ok) && e && *e, "reload failure without its error");
        if (r->status == 422)
            fuzz_check_error(e, strlen(e) + 1, path_bad_json, 1, 5);
    } else if (r->status != 200) {
        const char *e = json_str(root, "error");
        FUZZ_CHECK(e && *e && !cJSON_GetObjectItemCaseSensitive(root, "ok"),
                   "answer %u without an error", r->status);
    } else {
        /* /stats or /rules */
        FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(root, "generation"),
                   "200 JSON without a generation");
    }
    cJSON_Delete(root);
}

/* Prometheus text: comments or `name{labels} value`. */
static void check_metrics(const response *r)
{
    const char *p = r->body, *end = r->body + r->body_len;
    FUZZ_CHECK(r->body_len > 0 && end[-1] == '\n', "metrics do not end a line");
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        FUZZ_CHECK(e != NULL, "metrics line without an end");
        if (*p != '#') {
            FUZZ_CHECK(strncmp(p, "condgate_", 9) == 0, "metric %.*s", (int)(e - p), p);
            const char *sp = e;
            while (sp > p && sp[-1] != ' ')
                sp--;
            FUZZ_CHECK(sp > p && sp < e, "sample without a value: %.*s", (int)(e - p), p);
            for (const char *d = sp; d < e; d++)
                FUZZ_CHECK((*d >= '0' && *d <= '9') || *d == '.', "value %.*s", (int)(e - sp), sp);
        }
        p = e + 1;
    }
}

static void check_response(const input *in, const response *r)
{
    FUZZ_CHECK(r->status != 500 && (r->status < 501 || r->status == 503 || r->status == 505),
               "status %u", r->status);
    if (!r->ours) {
        /* libMicroHTTPd's own answers: a request it cannot take. */
        FUZZ_CHECK((r->status >= 400 && r->status < 500) || r->status == 505,
                   "status %u from libmicrohttpd", r->status);
        return;
    }
    switch (r->status) {
    case 200:
    case 201: /* POST /bans */
    case 400:
    case 404:
    case 413:
        break;
    case 401:
        FUZZ_CHECK(in->token_mode, "401 without a token configured");
        FUZZ_CHECK(r->bearer, "401 without WWW-Authenticate: Bearer");
        break;
    case 405:
        FUZZ_CHECK(strcmp(r->allow, "GET, HEAD") == 0 || strcmp(r->allow, "POST") == 0 ||
                       strcmp(r->allow, "GET, HEAD, POST, DELETE") == 0,
                   "405 with Allow \"%s\"", r->allow);
        break;
    case 422: /* a reload (or its preview) that does not load, or a ban on never_ban */
        FUZZ_CHECK(in->reload == RELOAD_BROKEN || has(in->req, in->len, "/bans"),
                   "422 from a reload that loads");
        break;
    case 503:
        FUZZ_CHECK(in->reload == RELOAD_STOPPING, "503 while not stopping");
        break;
    default:
        FUZZ_CHECK(false, "status %u from a handler", r->status);
    }
    bool page = strncmp(r->type, "text/html", 9) == 0;
    /* Without the token: 401; the page (413 when it comes with a body); or
     * 400 for a request refused for its form before anything else. The
     * request model below pins a well-formed request down to 401 exactly. */
    if (in->token_mode && !in->holds_token)
        FUZZ_CHECK(r->status == 401 || r->status == 400 || r->status == 413 ||
                       (r->status == 200 && page),
                   "answer %u (%s) to a request without the token", r->status, r->type);
    if (r->body == NULL)
        return; /* HEAD */
    if (strcmp(r->type, "application/json") == 0)
        check_json(in, r);
    else if (strncmp(r->type, "text/plain; version=0.0.4", 25) == 0)
        check_metrics(r);
    else if (strncmp(r->type, "text/plain", 10) == 0)
        FUZZ_CHECK(r->body_len == 3 && memcmp(r->body, "ok\n", 3) == 0, "health says %.*s",
                   (int)r->body_len, r->body);
    else
        FUZZ_CHECK(page && r->status == 200 && r->body_len > 15 &&
                       strncasecmp(r->body, "<!doctype html", 14) == 0,
                   "answer %u of type \"%s\"", r->status, r->type);
}

/* Split the stream into responses, checking each. Returns the number of
 * final (non-1xx) responses. */
static size_t check_stream(const input *in, const char *buf, size_t n, bool reset,
                           unsigned *first_status)
{
    size_t finals = 0;
    const char *p = buf, *end = buf + n;
    bool any_head = has(in->req, in->len, "HEAD");
    while (p < end) {
        size_t left = (size_t)(end - p);
        const char *hend = NULL;
        for (const char *q = p; q + 4 <= end; q++)
            if (memcmp(q, "\r\n\r\n", 4) == 0) {
                hend = q + 4;
                break;
            }
        if (hend == NULL && reset)
            break;
        FUZZ_CHECK(hend != NULL, "%zu bytes without the end of a header: %.*s", left,
                   (int)(left < 200 ? left : 200), p);
        size_t hlen = (size_t)(hend - p);
        FUZZ_CHECK(hlen > 13 &&
                       (memcmp(p, "HTTP/1.1 ", 9) == 0 || memcmp(p, "HTTP/1.0 ", 9) == 0) &&
                       p[9] >= '1' && p[9] <= '5' && p[10] >= '0' && p[10] <= '9' && p[11] >= '0' &&
                       p[11] <= '9' && p[12] == ' ',
                   "not a status line: %.*s", (int)(hlen < 100 ? hlen : 100), p);
        response r;
        memset(&r, 0, sizeof r);
        r.status = (unsigned)((p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0'));
        char v[128];
        if (r.status < 200) {
            FUZZ_CHECK(r.status == 100 && has_nocase(in->req, in->len, "100-continue"),
                       "interim %u not asked for", r.status);
            p = hend;
            continue;
        }
        FUZZ_CHECK(!header(p, hlen, "Transfer-Encoding", v, sizeof v), "chunked answer");
        FUZZ_CHECK(header(p, hlen, "Content-Length", v, sizeof v), "answer %u without length",
                   r.status);
        char *e;
        errno = 0;
        unsigned long long cl = strtoull(v, &e, 10);
        FUZZ_CHECK(errno == 0 && e != v && *e == '\0' && v[0] >= '0' && v[0] <= '9',
                   "Content-Length \"%s\"", v);
        r.ours = header(p, hlen, "Cache-Control", v, sizeof v) && strcmp(v, "no-store") == 0 &&
                 header(p, hlen, "X-Content-Type-Options", v, sizeof v) &&
                 strcmp(v, "nosniff") == 0;
        header(p, hlen, "Content-Type", r.type, sizeof r.type);
        r.bearer = header(p, hlen, "WWW-Authenticate", v, sizeof v) && strcmp(v, "Bearer") == 0;
        header(p, hlen, "Allow", r.allow, sizeof r.allow);
        FUZZ_CHECK(count_headers(p, hlen, "Content-Length") == 1,
                   "answer %u with several Content-Length headers", r.status);
        /* libmicrohttpd 0.9.75 sends the header of its own answer to a bad
         * Content-Length (400, 413) twice; not ours to fix, so skipped. */
        if (!r.ours && (size_t)(end - hend) >= hlen && memcmp(hend, p, hlen) == 0)
            hend += hlen;
        size_t rest = (size_t)(end - hend);
        /* HEAD: the length of the body that was not sent. The next answer
         * (or the end) follows the header at once. */
        bool omitted =
            any_head && cl > 0 && (rest == 0 || (rest >= 7 && memcmp(hend, "HTTP/1.", 7) == 0));
        if (omitted) {
            r.body = NULL;
            p = hend;
        } else {
            if (cl > rest && reset)
                break;
            FUZZ_CHECK(cl <= rest, "answer %u: Content-Length %llu, %zu bytes follow", r.status, cl,
                       rest);
            r.body = hend;
            r.body_len = (size_t)cl;
            p = hend + cl;
        }
        if (finals++ == 0)
            *first_status = r.status;
        check_response(in, &r);
    }
    return finals;
}

/* ------------------------------------------------------------------------
 * The model of one well-formed request
 */

typedef struct model {
    bool ok;
    char method[16];
    char path[256];                /* before '?', as sent */
    bool query;                    /* the target has a query ('?') */
    bool escaped;                  /* the path holds a '%' (decoded by the server) */
    bool path_nul;                 /* ... "%00": answered 400 before anything else */
    bool authorized, unauthorized; /* neither: cannot tell */
} model;

static void model_request(const input *in, model *m)
{
    memset(m, 0, sizeof *m);
    const char *p = in->req, *end = in->req + in->len;
    if (in->len > 8192 || in->len < 4 || memcmp(end - 4, "\r\n\r\n", 4) != 0)
        return;
    /* Request line: METHOD /target HTTP/1.x */
    size_t i = 0;
    while (p + i < end && p[i] >= 'A' && p[i] <= 'Z' && i < sizeof m->method - 1)
        i++;
    if (i == 0 || p + i >= end || p[i] != ' ')
        return;
    memcpy(m->method, p, i);
    p += i + 1;
    i = 0;
    if (p >= end || *p != '/')
        return;
    while (p + i < end && p[i] > 0x20 && p[i] < 0x7f && i < 200)
        i++;
    if (p + i + 11 > end || p[i] != ' ' ||
        (memcmp(p + i + 1, "HTTP/1.1\r\n", 10) != 0 && memcmp(p + i + 1, "HTTP/1.0\r\n", 10) != 0))
        return;
    bool v11 = p[i + 8] == '1';
    const char *q = memchr(p, '?', i);
    size_t plen = q ? (size_t)(q - p) : i;
    m->query = q != NULL;
    memcpy(m->path, p, plen);
    m->path[plen] = '\0';
    m->escaped = strchr(m->path, '%') != NULL;
    m->path_nul = strstr(m->path, "%00") != NULL;
    p += i + 11;
    /* Headers: Name: value, none that announces a body or asks for more. */
    int auth = 0;
    bool exact = false, host = false;
    while (p < end - 2) {
        const char *e = p;
        while (e < end && *e != '\r')
            e++;
        if (e + 1 >= end || e[1] != '\n')
            return;
        const char *colon = p;
        while (colon < e && ((*colon >= 'A' && *colon <= 'Z') || (*colon >= 'a' && *colon <= 'z') ||
                             (*colon >= '0' && *colon <= '9') || *colon == '-'))
            colon++;
        if (colon == p || colon + 1 >= e || colon[0] != ':' || colon[1] != ' ')
            return;
        for (const char *c = colon + 2; c < e; c++)
            if (*c < 0x20 || *c >= 0x7f)
                return;
        size_t nl = (size_t)(colon - p);
#define IS(name) (nl == sizeof(name) - 1 && strncasecmp(p, name, nl) == 0)
        if (IS("content-length") || IS("transfer-encoding") || IS("expect") || IS("connection") ||
            IS("upgrade"))
            return;
        host |= IS("host");
        if (IS("authorization")) {
            auth++;
            exact = (size_t)(e - colon - 2) == strlen("Bearer " TOKEN) &&
                    memcmp(colon + 2, "Bearer " TOKEN, strlen("Bearer " TOKEN)) == 0;
        }
#undef IS
        p = e + 2;
    }
    if (v11 && !host)
        return; /* libmicrohttpd's to answer */
    m->authorized = auth == 1 && exact;
    m->unauthorized = auth == 0 || !in->holds_token;
    m->ok = true;
}

static bool route_fits(const char *method, const char *want)
{
    return strcmp(method, want) == 0 || (strcmp(want, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

/* The status of a modelled request; 0 when it depends on more (explain). */
static unsigned expected_status(const input *in, const model *m, bool *several)
{
    static const struct {
        const char *path, *method;
        bool open;
    } routes[] = {{"/", "GET", true},         {"/healthz", "GET", false},
                  {"/stats", "GET", false},   {"/metrics", "GET", false},
                  {"/rules", "GET", false},   {"/rules/explain", "GET", false},
                  {"/reload", "POST", false}, {"/bans", "GET", false},
                  {"/bans", "POST", false},   {"/bans", "DELETE", false}};
    int rt = -1;
    *several = false;
    if (m->path_nul)
        return 400;
    if (m->escaped)
        return 0; /* the route depends on the decoding */
    for (int i = 0; i < (int)(sizeof routes / sizeof routes[0]); i++)
        if (strcmp(m->path, routes[i].path) == 0 &&
            (rt < 0 || route_fits(m->method, routes[i].method)))
            rt = i;
    bool open = rt >= 0 && routes[rt].open && route_fits(m->method, routes[rt].method);
    if (in->token_mode && !open) {
        if (m->unauthorized)
            return 401;
        if (!m->authorized)
            return 0;
    }
    if (rt < 0)
        return 404;
    if (!route_fits(m->method, routes[rt].method))
        return 405;
    /* Answers that depend on the query or the bans in the table. */
    if (strcmp(m->path, "/rules/explain") == 0 || strcmp(m->path, "/bans") == 0 ||
        (strcmp(m->path, "/reload") == 0 && m->query)) {
        *several = true;
        return 0;
    }
    if (strcmp(m->path, "/reload") == 0)
        return in->reload == RELOAD_OK ? 200 : in->reload == RELOAD_BROKEN ? 422 : 503;
    return 200;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t ends = 0;
    for (size_t i = 1; i + 1 < size; i++)
        ends += data[i] == '\n' && (data[i + 1] == '\n' ||
                                    (data[i + 1] == '\r' && i + 2 < size && data[i + 2] == '\n'));
    if (ends > MAX_REQUESTS)
        return 0;
    input in;
    in.mode = data[0];
    in.token_mode = data[0] & 1;
    int r = (data[0] >> 1) & 3;
    in.reload = r < 2 ? RELOAD_OK : r == 2 ? RELOAD_BROKEN : RELOAD_STOPPING;
    in.req = (const char *)data + 1;
    in.len = size - 1;
    in.holds_token = has(in.req, in.len, TOKEN);
    atomic_store(&gate.config, in.token_mode);
    atomic_store(&gate.reload, (int)in.reload);

    char *buf = NULL;
    size_t n = 0;
    int rc = request(in.mode, in.req, in.len, &buf, &n);
    if (dump) {
        fprintf(stderr, "==fuzz_admin== mode 0x%02x, %zu bytes back%s:\n", (unsigned)in.mode, n,
                rc == 1   ? " (reset)"
                : rc == 2 ? " (not checked)"
                          : "");
        fwrite(buf, 1, n, stderr);
        fputs("\n==fuzz_admin== end\n", stderr);
    }
    if ((in.mode & 0x70) == 0x70) {
        FUZZ_CHECK(n == 0, "a refused caller got %zu bytes: %.*s", n, (int)(n < 100 ? n : 100),
                   buf);
        free(buf);
        return 0;
    }
    if (rc == 2) {
        free(buf);
        return 0;
    }
    unsigned first = 0;
    size_t finals = check_stream(&in, buf, n, rc == 1, &first);
    model m;
    model_request(&in, &m);
    if (m.ok) {
        FUZZ_CHECK(finals == 1, "%zu answers to one well-formed request (%s %s)", finals, m.method,
                   m.path);
        bool several = false;
        unsigned want = expected_status(&in, &m, &several);
        if (several)
            FUZZ_CHECK(first == 200 || first == 201 || first == 400 || first == 404 ||
                           first == 422 || first == 503,
                       "%s %s answered %u", m.method, m.path, first);
        else if (want != 0)
            FUZZ_CHECK(first == want, "%s %s answered %u, the routing table says %u", m.method,
                       m.path, first, want);
    }
    free(buf);
    return 0;
}
