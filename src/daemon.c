/* daemon.c — start and stop order; the only file that knows both the gate
 * and the admin port.
 *
 * Start: socket layer, descriptor limit, gate (generation 1), signals (before
 * any thread, so every thread inherits the blocked mask), the sockets systemd
 * passed or a takeover fetched (inherit.h), listeners, worker pool, reloads,
 * admin port, the takeover socket; then the old process of a takeover is told
 * to drain, and systemd hears READY=1. Stop (SIGTERM/SIGINT, or a new
 * condgate took the sockets over): reloads refused, the gate drains, then the
 * pool, signals and the gate's handles close and the loop runs out; the
 * admin port stops last, once no handler can be waiting for a reload.
 */
#include "daemon.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "admin.h"
#include "crowdsec.h"
#include "gate.h"
#include "log.h"
#include "inherit.h"
#include "reload.h"
#include "runtime.h"
#include "service.h"
#include "signals.h"
#include "sys.h"
#include "takeover.h"
#include "worker.h"

typedef struct daemon {
    uv_loop_t loop;
    cg__runtime *rt; /* bans, sources, recent callers: outlive the gate's generations */
    cg__gate *gate;
    cg__pool *pool;
    cg__reloader *reloader;
    cg__signals *signals;
    cg__admin *admin; /* the admin port as started: listen changes need a restart */
    cg_endpoint admin_listen;
    bool stopping;
    /* The CrowdSec client (NULL without [crowdsec]); cs_mu guards the
     * pointer: the control thread swaps it (start, reload, stop), admin
     * threads read its state. */
    uv_mutex_t cs_mu;
    cg__crowdsec *cs;
    /* Service: the takeover socket we serve, the connection to the process
     * we take over from (until it drains), the STATUS/WATCHDOG tick. */
    cg__takeover *takeover;
    cg_socket_t takeover_conn;
    uv_timer_t tick;
    bool tick_init;
} daemon;

static void fail(const char *message, const char *detail);

/* ------------------------------------------------------------------------
 * The admin port's view of the gate
 */

static cg__gen *view_acquire(void *ctx)
{
    return cg__gate_acquire(((daemon *)ctx)->gate);
}

static cg__stats *view_stats(void *ctx)
{
    return cg__gate_stats(((daemon *)ctx)->gate);
}

static uint64_t view_uptime_ms(void *ctx)
{
    return cg__gate_uptime_ms(((daemon *)ctx)->gate);
}

static uint64_t view_max_connections(void *ctx)
{
    return cg__admission_max(cg__gate_admission(((daemon *)ctx)->gate));
}

static unsigned view_workers(void *ctx)
{
    return cg__gate_workers(((daemon *)ctx)->gate);
}

static int view_reload_wait(void *ctx, uint64_t *generation, char *err, size_t errlen)
{
    return cg__reloader_wait(((daemon *)ctx)->reloader, generation, err, errlen);
}

static const char *view_prefilter(void *ctx, size_t listener, uint64_t counts[CG__REJ_COUNT])
{
    return cg__gate_prefilter(((daemon *)ctx)->gate, listener, counts);
}

static void view_policy(void *ctx, const cg__gen *gen, size_t listener, cg__policy *out)
{
    cg__gate_policy(((daemon *)ctx)->gate, gen, listener, false, out);
}

static cg__runtime *view_runtime(void *ctx)
{
    return ((daemon *)ctx)->rt;
}

static int view_candidate(void *ctx, cg__gen **out, char *err, size_t errlen)
{
    return cg__gate_candidate(((daemon *)ctx)->gate, out, err, errlen);
}

static bool view_crowdsec(void *ctx, cg__crowdsec_stats *out)
{
    daemon *d = ctx;
    uv_mutex_lock(&d->cs_mu);
    bool on = d->cs != NULL;
    if (on)
        cg__crowdsec_stats_get(d->cs, out);
    uv_mutex_unlock(&d->cs_mu);
    return on;
}

/* ------------------------------------------------------------------------
 * The CrowdSec client
 */

static cg__gen *cs_acquire(void *arg)
{
    return cg__gate_acquire(((daemon *)arg)->gate);
}

/* Stop the client, if any; its counters into *prev when prev is not NULL.
 * Control thread. */
static void cs_stop(daemon *d, cg__crowdsec_stats *prev)
{
    uv_mutex_lock(&d->cs_mu);
    cg__crowdsec *cs = d->cs;
    d->cs = NULL;
    if (cs != NULL && prev != NULL)
        cg__crowdsec_stats_get(cs, prev);
    uv_mutex_unlock(&d->cs_mu);
    cg__crowdsec_stop(cs);
}

/* Run the client conf asks for: started, restarted with new settings (a
 * new startup sync), or stopped when the section went away (its bans stay
 * until they expire). Control thread. */
static void cs_follow(daemon *d, const cg_crowdsec_conf *conf)
{
    if (d->cs != NULL && conf->enabled && cg__crowdsec_same(d->cs, conf))
        return;
    cg__crowdsec_stats prev;
    bool had = d->cs != NULL;
    cs_stop(d, &prev);
    if (had && !conf->enabled)
        cg__log_event(CG_LOG_INFO, "crowdsec_stop", "url", prev.url, "message",
                      "no [crowdsec] section any more; its bans stay until they expire", NULL);
    if (!conf->enabled)
        return;
    char err[CG_ERR_MAX];
    cg__crowdsec *cs = NULL;
    const cg__crowdsec_env env = {.rt = d->rt, .acquire = cs_acquire, .arg = d};
    if (cg__crowdsec_start(conf, &env, had ? &prev : NULL, &cs, err, sizeof err) != 0) {
        fail(err, NULL);
        return;
    }
    cg__log_event(CG_LOG_INFO, "crowdsec_start", "url", conf->url, NULL);
    uv_mutex_lock(&d->cs_mu);
    d->cs = cs;
    uv_mutex_unlock(&d->cs_mu);
}

/* ------------------------------------------------------------------------
 * What the relay asks of the runtime state
 */

static void relay_release(void *arg, void *hold)
{
    cg__sources_release(cg__runtime_sources(arg), hold);
}

static bool relay_banned(void *arg, const cg__peer *peer)
{
    cg_cidr a;
    return cg_addr_from_sockaddr(&peer->sa, &a) == 0 &&
           cg__bans_match(cg__runtime_bans(arg), &a, cg__runtime_now_s(), false, NULL);
}

/* ------------------------------------------------------------------------
 * Reloads
 */

/* The admin port keeps the address it was started on: say so when a reload
 * asks for another one (its allow list and token apply at once). */
static void note_admin_change(const daemon *d, const cg_admin_conf *na)
{
    bool running = d->admin != NULL;
    if (running == na->enabled &&
        (!running || (na->listen.addrlen == d->admin_listen.addrlen &&
                      memcmp(&na->listen.addr, &d->admin_listen.addr, na->listen.addrlen) == 0)))
        return;
    char msg[192];
    snprintf(msg, sizeof(msg), "a change of [admin] listen needs a restart; the admin port %s%s",
             running ? "stays on " : "stays off", running ? d->admin_listen.text : "");
    cg__log_event(CG_LOG_WARN, "reload_note", "message", msg, NULL);
}

static int prepare(void *arg, cg_config *cfg, void **prepared, char *err, size_t errlen)
{
    daemon *d = arg;
    return cg__gate_prepare(d->gate, cfg, (cg__gate_next **)prepared, err, errlen);
}

static int apply(void *arg, void *prepared, uint64_t *generation, char *err, size_t errlen)
{
    daemon *d = arg;
    int rc = cg__gate_commit(d->gate, prepared, generation, err, errlen);
    if (rc == 0) {
        cg__gen *gen = cg__gate_acquire(d->gate);
        note_admin_change(d, &gen->cfg->admin);
        cs_follow(d, &gen->cfg->crowdsec);
        cg__gen_unref(gen);
    }
    return rc;
}

static uint64_t current_generation(void *arg)
{
    return cg__gate_generation(((daemon *)arg)->gate);
}

/* ------------------------------------------------------------------------
 * What the supervisor hears (service.h)
 */

/* "STATE: N active, N accepted, N refused, generation N". */
static void status_text(daemon *d, const char *state, char *buf, size_t len)
{
    cg__lsum t;
    cg__stats_sum_all(cg__gate_stats(d->gate), &t);
    snprintf(buf, len,
             "%s: %" PRIu64 " active, %" PRIu64 " accepted, %" PRIu64 " refused, generation %" PRIu64,
             state, cg__admission_active(cg__gate_admission(d->gate)), t.accepted,
             cg__lsum_rejected(&t),
             cg__gate_generation(d->gate));
}

static void on_tick(uv_timer_t *t)
{
    daemon *d = t->data;
    char status[160];
    status_text(d, d->stopping ? "draining" : "serving", status, sizeof(status));
    cg__service_tick(status);
}

static void phase(void *arg, bool reloading, int rc)
{
    daemon *d = arg;
    if (reloading) {
        cg__service_reloading();
        return;
    }
    char status[160];
    status_text(d, rc == 0 ? "serving (reloaded)" : "serving (the last reload failed)", status,
                sizeof(status));
    cg__service_ready(status);
}

/* ------------------------------------------------------------------------
 * Signals and stop
 */

static void drained(void *arg)
{
    daemon *d = arg;
    cg__reloader_close(d->reloader);
    /* No more bans from the Local API. */
    cs_stop(d, NULL);
    cg__gate_close(d->gate); /* with the last "suppressed N" summary */
    cg__runtime_close(d->rt); /* no sweeps from here on: the pool closes */
    /* Worker 0's connections live on this loop: they finish closing as it
     * runs on; the pool is freed after uv_run. */
    cg__pool_close(d->pool);
    cg__gate_log_stats(d->gate, "stop", false);
    cg__signals_stop(d->signals);
    d->signals = NULL;
}

static void stop(daemon *d, const char *why)
{
    if (!d->stopping) {
        char status[160];
        cg__reloader_stop(d->reloader);
        status_text(d, "draining", status, sizeof(status));
        cg__service_stopping(status);
        /* No takeover of a process that is going away. */
        cg__takeover_close(d->takeover);
    }
    d->stopping = true;
    cg__gate_drain(d->gate, why, drained, d);
}

static void on_signal(cg__sigevent ev, const char *name, void *arg)
{
    daemon *d = arg;
    switch (ev) {
    case CG__SIG_RELOAD:
        cg__reloader_request(d->reloader);
        break;
    case CG__SIG_STATS:
        cg__gate_log_stats(d->gate, "stats", true);
        break;
    case CG__SIG_STOP:
        stop(d, name);
        break;
    }
}

/* ------------------------------------------------------------------------
 * Takeovers (takeover.h)
 */

static size_t takeover_sockets(void *arg, cg_socket_t *fds, const char **names, size_t max)
{
    daemon *d = arg;
    size_t n = cg__gate_sockets(d->gate, fds, names, max);
    cg_socket_t admin = cg__admin_fd(d->admin);
    if (admin != CG_INVALID_SOCKET && n < max) {
        fds[n] = admin;
        names[n++] = CG_INHERIT_ADMIN;
    }
    return n;
}

/* The new process serves: let go of the sockets, then drain as for
 * SIGTERM. */
static void takeover_handed(void *arg)
{
    daemon *d = arg;
    if (d->stopping)
        return;
    cg__gate_hand_over(d->gate);
    cg__admin_hand_over(d->admin);
    stop(d, "takeover");
}

/* The takeover socket is read at start: a reload does not move it. */
static int serve_takeovers(daemon *d, bool replacing)
{
    char err[CG_ERR_MAX];
    cg__gen *gen = cg__gate_acquire(d->gate);
    const char *path = gen->cfg->takeover_socket;
    const cg__takeover_hooks hooks = {
        .sockets = takeover_sockets, .handed = takeover_handed, .arg = d};
    int rc = path == NULL ? 0
                          : cg__takeover_serve(&d->loop, path, replacing, &hooks, &d->takeover,
                                               err, sizeof(err));
    cg__gen_unref(gen);
    if (rc != 0)
        fail(err, NULL);
    return rc != 0;
}

/* Tell the process we took over from that we serve; it drains. */
static void finish_takeover(daemon *d, const char *from)
{
    char err[CG_ERR_MAX];
    cg_socket_t conn = d->takeover_conn;
    d->takeover_conn = CG_INVALID_SOCKET;
    if (conn == CG_INVALID_SOCKET)
        return;
    if (cg__takeover_finish(conn, err, sizeof(err)) != 0)
        cg__log_event(CG_LOG_WARN, "takeover", "from", from, "result", "unconfirmed", "error", err,
                      NULL);
    else
        cg__log_event(CG_LOG_INFO, "takeover", "from", from, "result", "serving", NULL);
}

/* ------------------------------------------------------------------------
 * Start
 */

static void fail(const char *message, const char *detail)
{
    char msg[CG_ERR_MAX + 32];
    snprintf(msg, sizeof(msg), "%s%s", message, detail != NULL ? detail : "");
    cg__log_event(CG_LOG_ERROR, "error", "message", msg, NULL);
}

static int start_pool(daemon *d)
{
    cg__gen *gen = cg__gate_acquire(d->gate);
    cg__pool_env env = {
        .relay =
            {
                .stats = cg__gate_stats(d->gate),
                .admission = cg__gate_admission(d->gate),
                .listener_names = cg__gate_names(d->gate),
                .nlisteners = gen->nlisteners,
                .accepted_nodelay = cg__sys_nodelay_inherited(),
                .release = relay_release,
                .banned = relay_banned,
                .arg = d->rt,
            },
        .inline_loop = &d->loop, /* worker 0 runs on this thread (libuv's pool) */
    };
    cg__gate_pool_env(d->gate, &env);
    int rc = cg__pool_start(cg__gate_workers(d->gate), &env, &d->pool);
    cg__gen_unref(gen);
    if (rc != 0)
        cg__log_event(CG_LOG_ERROR, "error", "message", "cannot start the workers", "error",
                      cg_strerror(rc), NULL);
    return rc;
}

static int start_admin(daemon *d)
{
    char err[CG_ERR_MAX];
    cg__gen *gen = cg__gate_acquire(d->gate);
    const cg_admin_conf *conf = &gen->cfg->admin;
    const cg__gate_view view = {
        .ctx = d,
        .acquire = view_acquire,
        .stats = view_stats,
        .uptime_ms = view_uptime_ms,
        .max_connections = view_max_connections,
        .workers = view_workers,
        .reload_wait = view_reload_wait,
        .prefilter = view_prefilter,
        .policy = view_policy,
        .runtime = view_runtime,
        .candidate = view_candidate,
        .crowdsec = view_crowdsec,
    };
    int rc = 0;
    if (conf->enabled) {
        rc = cg__admin_start(&view, conf, &d->admin, err, sizeof(err));
        if (rc != 0) {
            fail("admin: ", err);
        } else {
            d->admin_listen = conf->listen;
            cg__log_event(CG_LOG_INFO, "admin", "listen", d->admin_listen.text, NULL);
        }
    }
    cg__gen_unref(gen);
    return rc;
}

static void log_start(daemon *d, const char *path)
{
    char w[24], n[24], m[24];
    cg__gen *gen = cg__gate_acquire(d->gate);
    snprintf(w, sizeof(w), "%u", cg__gate_workers(d->gate));
    snprintf(n, sizeof(n), "%zu", gen->nlisteners);
    snprintf(m, sizeof(m), "%" PRIu64, cg__admission_max(cg__gate_admission(d->gate)));
    cg__log_event(CG_LOG_INFO, "start", "version", CG_VERSION_STRING, "config", path, "generation",
                  "1", "workers", w, "listeners", n, "max_connections", m, NULL);
    cg__gen_unref(gen);
}

/* READY=1, and the STATUS/WATCHDOG tick when a supervisor listens. */
static void start_tick(daemon *d)
{
    char status[160];
    status_text(d, "serving", status, sizeof(status));
    cg__service_ready(status);
    uint64_t every = cg__service_tick_ms();
    if (every == 0 || uv_timer_init(&d->loop, &d->tick) != 0)
        return;
    d->tick_init = true;
    d->tick.data = d;
    uv_timer_start(&d->tick, on_tick, every, every);
    uv_unref((uv_handle_t *)&d->tick); /* the loop ends when the rest is done */
}

/* Everything up to serving. Returns 0, or 1 with the reason logged. */
static int start(daemon *d, const char *path, cg_config *cfg, const char *takeover)
{
    char err[CG_ERR_MAX] = "";
    cg__log_setup(cfg->log_level, cfg->log_format);
    /* Before any thread starts (the state file's writer is the first):
     * workers and the thread pool inherit the blocked signal mask, so only
     * this thread's loop takes signals. The loop runs callbacks only once
     * start is over. */
    if (cg__signals_start(&d->loop, on_signal, d, &d->signals) != 0) {
        cg_config_free(cfg);
        fail("cannot watch signals", NULL);
        return 1;
    }
    if (cg__runtime_new(&d->loop, cfg, &d->rt, err, sizeof(err)) != 0) {
        cg_config_free(cfg);
        fail(err, NULL);
        return 1;
    }
    if (cg__gate_new(&d->loop, cfg, cg__sys_raise_fd_limit(), d->rt, &d->gate) != 0) {
        fail("out of memory at start", NULL);
        return 1;
    }
    if (cg__service_sockets(err, sizeof(err)) != 0 ||
        (takeover != NULL &&
         cg__takeover_fetch(takeover, &d->takeover_conn, err, sizeof(err)) != 0)) {
        fail(err, NULL);
        return 1;
    }
    if (cg__gate_open(d->gate, err, sizeof(err)) != 0) {
        fail(err, NULL);
        return 1;
    }
    if (start_pool(d) != 0)
        return 1;
    const cg__reload_hooks hooks = {
        .prepare = prepare,
        .apply = apply,
        .generation = current_generation,
        .phase = phase,
        .arg = d,
    };
    if (cg__reloader_new(&d->loop, path, cg__gate_stats(d->gate), &hooks, &d->reloader) != 0) {
        fail("out of memory at start", NULL);
        return 1;
    }
    cg__gate_start(d->gate, d->pool);
    cg__gen *gen = cg__gate_acquire(d->gate);
    cs_follow(d, &gen->cfg->crowdsec);
    cg__gen_unref(gen);
    if (start_admin(d) != 0 || serve_takeovers(d, takeover != NULL) != 0)
        return 1;
    cg__inherit_close_rest();
    finish_takeover(d, takeover);
    log_start(d, path);
    start_tick(d);
    return 0;
}

/* Close and free everything, whatever start reached. */
static void cleanup(daemon *d)
{
    /* Normally stopped already: the loop ran out only after the reloader
     * refused new requests and answered the waiting ones. */
    cg__admin_stop(d->admin);
    d->admin = NULL;
    cg__takeover_abort(d->takeover_conn); /* a failed start: the old process carries on */
    cg__takeover_close(d->takeover);
    cg__inherit_close_rest();
    if (d->tick_init)
        uv_close((uv_handle_t *)&d->tick, NULL);
    d->tick_init = false;
    cg__reloader_close(d->reloader);
    cs_stop(d, NULL);
    cg__pool_close(d->pool);
    cg__signals_stop(d->signals);
    d->signals = NULL;
    if (d->gate != NULL)
        cg__gate_close(d->gate);
    cg__runtime_close(d->rt);
    /* Let every closed handle's callback run before the loop goes away,
     * worker 0's connections included: then the pool can go, and with it
     * every connection's hold on the source table. */
    uv_run(&d->loop, UV_RUN_DEFAULT);
    cg__pool_free(d->pool);
    cg__takeover_free(d->takeover);
    cg__reloader_free(d->reloader);
    cg__gate_free(d->gate);
    cg__runtime_free(d->rt); /* the state file's last write */
    uv_loop_close(&d->loop);
}

static int run(const char *path, cg_config *cfg, const char *takeover)
{
    daemon *d = calloc(1, sizeof(*d));
    if (d == NULL || uv_loop_init(&d->loop) != 0 || uv_mutex_init(&d->cs_mu) != 0) {
        free(d);
        cg_config_free(cfg);
        fail("out of memory at start", NULL);
        return 1;
    }
    d->takeover_conn = CG_INVALID_SOCKET;
    int code = start(d, path, cfg, takeover);
    if (code == 0) {
        uv_run(&d->loop, UV_RUN_DEFAULT);
        /* drained() has refused new reload requests and failed the waiting
         * ones, and the loop ran until a reload in progress completed: no
         * admin handler is left waiting, so this returns. */
        cg__admin_stop(d->admin);
        d->admin = NULL;
    }
    cleanup(d);
    uv_mutex_destroy(&d->cs_mu);
    free(d);
    return code;
}

int cg__daemon_run(const char *path, cg_config *cfg, const char *takeover)
{
    cg__sys_memory_setup();
    /* Sockets exist only between these two (WSAStartup on Windows). */
    if (cg__sys_init() != 0) {
        cg_config_free(cfg);
        fail("cannot initialise the socket layer", NULL);
        return 1;
    }
    int code = run(path, cfg, takeover);
    cg__sys_cleanup();
    return code;
}
