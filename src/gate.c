/* gate.c — the control thread: listeners, judging callers, hand-off to the
 * workers, reload and drain.
 *
 * Listener life:
 *
 *     OPEN ──(poll readable)──► ACCEPTING ──(backlog empty)──► OPEN
 *       │  ▲                        │
 *       │  └──(pause timer fires)── PAUSED ◄──(out of descriptors)
 *       └──(SIGTERM/SIGINT)──► CLOSED
 *
 * The condition callback runs on this thread only and reads the current
 * generation without a lock: this thread is also the only one that swaps it.
 * Other threads (the admin port) take a reference under gen_lock.
 */
#include "gate.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "admin.h"
#include "condgate/accept.h"
#include "condgate/rules.h"
#include "log.h"
#include "signals.h"
#include "sys.h"
#include "worker.h"

/* Callers taken per readiness event before other listeners get a turn. */
#define ACCEPT_BATCH 256
/* Pause after running out of descriptors, and how often to say so. */
#define EMFILE_PAUSE_MS 100
#define EMFILE_LOG_MS 10000
/* Descriptors kept aside: stdio, loops, the admin port; plus per listener
 * (socket, spare) and per worker (epoll, wake-up). */
#define FD_RESERVE_BASE 32
/* Drain progress check interval. */
#define DRAIN_CHECK_MS 20

typedef enum listener_state {
    L_OPEN,
    L_PAUSED,
    L_CLOSED,
} listener_state;

typedef struct listener {
    cg__gate *gate;
    size_t index;
    char *name;
    cg_endpoint bind;
    cg_socket_t fd;
    cg_acceptor *acceptor;
    uv_poll_t poll;
    uv_timer_t timer; /* deferred callers and the EMFILE pause */
    bool poll_init, timer_init;
    listener_state state;
    /* Set by the condition callback for the caller it just judged. */
    cg__reject_reason reason;
    cg_rule_id rule;
    const cg_ruleset *set;
} listener;

/* A waiter for a reload from another thread. */
typedef struct reload_waiter {
    struct reload_waiter *next;
    uv_mutex_t *lock; /* the gate's reload_lock */
    uv_cond_t cond;
    bool done;
    int rc;
    uint64_t generation;
    char err[512];
} reload_waiter;

struct cg__gate {
    uv_loop_t loop;
    char *path;
    cg__gen *gen; /* current; this thread reads it freely */
    uv_mutex_t gen_lock;
    uint64_t next_generation;

    listener *listeners;
    size_t nlisteners;
    char **listener_names;

    cg__stats *stats;
    cg__pool *pool;
    _Atomic uint64_t active_total;
    _Atomic uint32_t *rr;
    _Atomic uint64_t max_active; /* effective max_connections; read by the admin port */
    uint64_t fd_limit;
    unsigned workers;

    cg__log_limiter limiter;
    uv_timer_t limiter_timer; /* closes reject-line windows with no traffic */
    uint64_t emfile_logged_ms;
    uint64_t emfile_shed;

    cg__signals *signals;
    uv_async_t wake; /* reload requests from other threads */
    uv_timer_t drain_timer;
    uint64_t drain_deadline;

    /* Reload state: one load runs at a time in the libuv thread pool. */
    uv_work_t reload_work;
    bool reload_running;
    bool reload_again;      /* a SIGHUP came in while one was running */
    uv_mutex_t reload_lock; /* guards the waiter lists */
    reload_waiter *waiting; /* for the next reload to start */
    bool reload_closed;     /* stopping: no more requests (under reload_lock) */
    reload_waiter *current; /* for the running one */
    cg_config *loaded;
    int load_rc;
    char load_err[512];

    /* The admin port as started; listen and on/off changes need a restart. */
    cg__admin *admin;
    cg_endpoint admin_listen;

    bool stopping;
    int exit_code;
    uint64_t started_ns; /* uv_hrtime() at start, for uptime from any thread */
};

static void on_readable(uv_poll_t *h, int status, int events);

static uint64_t now_ms(cg__gate *g)
{
    return uv_now(&g->loop);
}

static void u64s(char *buf, size_t n, uint64_t v)
{
    snprintf(buf, n, "%" PRIu64, v);
}

/* ------------------------------------------------------------------------
 * Judging callers
 */

static cg_verdict condition(const struct sockaddr *caller, socklen_t caller_len,
                            const struct sockaddr *callee, socklen_t callee_len, void *arg)
{
    listener *l = arg;
    cg__gate *g = l->gate;
    const cg_listener_conf *lc = cg__gen_listener(g->gen, l->index);
    const cg_ruleset *rs = g->gen->cfg->rulesets[lc->ruleset];

    l->set = rs;
    cg_action a = cg_ruleset_judge(rs, caller, &l->rule);
    if (a == CG_DENY) {
        l->reason = l->rule == CG_RULE_NONE ? CG__REJ_DEFAULT : CG__REJ_RULE;
        return CG_REJECT;
    }
    if (atomic_load_explicit(&g->active_total, memory_order_relaxed) >=
        atomic_load_explicit(&g->max_active, memory_order_relaxed)) {
        l->reason = CG__REJ_LIMIT;
        return CG_REJECT;
    }
    return CG_ACCEPT;
}

static void log_reject(cg__gate *g, listener *l, const cg_accept_result *res, cg__reject_reason why)
{
    if (!cg__log_enabled(CG_LOG_INFO) || !cg__log_limiter_allow(&g->limiter, now_ms(g)))
        return;
    /* A caller refused for the limit may have matched an allow entry. */
    cg__log_reject("reject", l->name, (const struct sockaddr *)&res->caller,
                   cg__reject_reason_name(why), l->set,
                   why == CG__REJ_RULE ? l->rule : CG_RULE_NONE);
}

static void arm_defer_timer(listener *l);

static void on_listener_timer(uv_timer_t *t)
{
    listener *l = t->data;
    if (l->state == L_PAUSED) {
        l->state = L_OPEN;
        uv_poll_start(&l->poll, UV_READABLE, on_readable);
    }
    on_readable(&l->poll, 0, UV_READABLE);
}

static void arm_defer_timer(listener *l)
{
    int64_t due = cg_acceptor_next_due_ms(l->acceptor);
    if (due >= 0 && l->state == L_OPEN)
        uv_timer_start(&l->timer, on_listener_timer, (uint64_t)due, 0);
}

static void pause_listener(cg__gate *g, listener *l)
{
    /* One line per EMFILE_LOG_MS at most, with the count shed meanwhile. */
    g->emfile_shed++;
    if (g->emfile_logged_ms == 0 || now_ms(g) - g->emfile_logged_ms >= EMFILE_LOG_MS) {
        char lim[24], shed[24];
        u64s(lim, sizeof(lim), g->fd_limit);
        u64s(shed, sizeof(shed), g->emfile_shed);
        cg__log_event(CG_LOG_WARN, "fd_exhausted", "listener", l->name, "fd_limit", lim, "shed",
                      shed, "message", "out of descriptors: shedding callers and pausing accept",
                      NULL);
        g->emfile_logged_ms = now_ms(g);
        g->emfile_shed = 0;
    }
    l->state = L_PAUSED;
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->timer, on_listener_timer, EMFILE_PAUSE_MS, 0);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    listener *l = h->data;
    cg__gate *g = l->gate;
    cg__lstats *ls = cg__lstats_of(g->stats, 0, l->index);

    if (l->state != L_OPEN)
        return;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        cg_socket_t fd;
        cg_accept_result res;
        l->set = NULL;
        l->rule = CG_RULE_NONE;
        int rc = cg_acceptor_accept(l->acceptor, &fd, &res);
        if (rc == 0) {
            unsigned worker = 0;
            /* Count before the hand-off so that no reader ever sees the
             * worker's close before the accept. */
            atomic_fetch_add_explicit(&g->active_total, 1, memory_order_relaxed);
            cg__stat_add(&ls->accepted, 1);
            if (cg__pool_submit(g->pool, fd, (const struct sockaddr *)&res.caller, l->index,
                                cg__gen_ref(g->gen), &worker) != 0) {
                /* Every queue full: the pool has reset the socket, so the
                 * caller counts as refused for want of capacity. */
                atomic_fetch_sub_explicit(&g->active_total, 1, memory_order_relaxed);
                cg__stat_add(&ls->accepted, (uint64_t)-1);
                cg__stat_add(&ls->rejected[CG__REJ_LIMIT], 1);
                continue;
            }
            if (cg__log_enabled(CG_LOG_DEBUG)) {
                char peer[64], ws[16];
                cg_sockaddr_format((const struct sockaddr *)&res.caller, peer, sizeof(peer));
                snprintf(ws, sizeof(ws), "%u", worker);
                cg__log_event(CG_LOG_DEBUG, "accept", "listener", l->name, "peer", peer, "worker",
                              ws, NULL);
            }
        } else if (rc == CG_EREJECTED) {
            cg__reject_reason why = res.timed_out ? CG__REJ_LIMIT : l->reason;
            cg__stat_add(&ls->rejected[why], 1);
            log_reject(g, l, &res, why);
        } else if (rc == CG_EDEFERRED) {
            continue;
        } else if (rc == CG_ECONNABORTED) {
            continue;
        } else if (rc == CG_EMFILE) {
            cg__stat_add(&ls->rejected[CG__REJ_LIMIT], 1);
            pause_listener(g, l);
            return;
        } else {
            break; /* CG_EAGAIN or an unexpected error: wait for readiness */
        }
    }
    arm_defer_timer(l);
}

/* ------------------------------------------------------------------------
 * Listeners
 */

static int open_listener(listener *l, char *err, size_t errlen)
{
    char why[256];
    int rc = cg__sys_listen((const struct sockaddr *)&l->bind.addr, l->bind.addrlen, &l->fd, why,
                            sizeof(why));
    if (rc != 0)
        snprintf(err, errlen, "listener '%s': cannot listen on %s: %s", l->name, l->bind.text, why);
    return rc;
}

/* Effective max_connections for the current generation: a connection
 * relayed to a backend needs two descriptors, one to the built-in echo only
 * one; with any listener on a real backend, plan for two each. */
static uint64_t effective_max(cg__gate *g, unsigned configured, bool log)
{
    uint64_t reserve = FD_RESERVE_BASE + 2 * g->nlisteners + 4 * (uint64_t)g->workers;
    uint64_t per = 1;
    for (size_t i = 0; i < g->nlisteners; i++)
        if (!cg__gen_listener(g->gen, i)->echo)
            per = 2;
    uint64_t fit = g->fd_limit > reserve ? (g->fd_limit - reserve) / per : 1;
    if (fit < 1)
        fit = 1;
    if (configured <= fit)
        return configured;
    if (log) {
        char c[24], f[24], lim[24];
        u64s(c, sizeof(c), configured);
        u64s(f, sizeof(f), fit);
        u64s(lim, sizeof(lim), g->fd_limit);
        cg__log_event(CG_LOG_WARN, "limit", "max_connections", c, "effective", f, "fd_limit", lim,
                      "message", "max_connections lowered to fit the descriptor limit", NULL);
    }
    return fit;
}

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

static void close_listener(listener *l)
{
    if (l->state == L_CLOSED)
        return;
    l->state = L_CLOSED;
    if (l->poll_init) {
        uv_poll_stop(&l->poll);
        uv_close((uv_handle_t *)&l->poll, on_closed_noop);
        l->poll_init = false;
    }
    if (l->timer_init) {
        uv_timer_stop(&l->timer);
        uv_close((uv_handle_t *)&l->timer, on_closed_noop);
        l->timer_init = false;
    }
    cg_acceptor_free(l->acceptor);
    l->acceptor = NULL;
    if (l->fd != CG_INVALID_SOCKET)
        cg__sys_close_socket(l->fd);
    l->fd = CG_INVALID_SOCKET;
}

/* ------------------------------------------------------------------------
 * Reload
 */

/* Compare listeners of a new configuration with the running ones: the same
 * names and the same binds, or the reload is refused. Fills lmap. */
static int map_listeners(cg__gate *g, const cg_config *cfg, size_t *lmap, char *err, size_t errlen)
{
    for (size_t j = 0; j < cfg->nlisteners; j++) {
        bool known = false;
        for (size_t i = 0; i < g->nlisteners; i++)
            known = known || strcmp(cfg->listeners[j].name, g->listeners[i].name) == 0;
        if (!known) {
            snprintf(err, errlen,
                     "%s:%" PRIu32 ": listener '%s' is new; adding listeners needs a restart",
                     cfg->path, cfg->listeners[j].line, cfg->listeners[j].name);
            return CG_EINVAL;
        }
    }
    for (size_t i = 0; i < g->nlisteners; i++) {
        const listener *l = &g->listeners[i];
        size_t j = 0;
        while (j < cfg->nlisteners && strcmp(cfg->listeners[j].name, l->name) != 0)
            j++;
        if (j == cfg->nlisteners) {
            snprintf(err, errlen,
                     "%s:0: listener '%s' was removed; removing listeners needs a restart",
                     cfg->path, l->name);
            return CG_EINVAL;
        }
        const cg_endpoint *nb = &cfg->listeners[j].bind;
        if (nb->addrlen != l->bind.addrlen || memcmp(&nb->addr, &l->bind.addr, nb->addrlen) != 0) {
            snprintf(err, errlen,
                     "%s:%" PRIu32
                     ": listener '%s' bind changed from %s to %s; bind changes need a restart",
                     cfg->path, cfg->listeners[j].line, l->name, l->bind.text, nb->text);
            return CG_EINVAL;
        }
        lmap[i] = j;
    }
    return 0;
}

static void reload_work(uv_work_t *w)
{
    cg__gate *g = w->data;
    g->loaded = NULL;
    g->load_err[0] = '\0';
    g->load_rc = cg_config_load(g->path, &g->loaded, g->load_err, sizeof(g->load_err));
}

static void finish_waiters(cg__gate *g, reload_waiter *list, int rc, uint64_t gen, const char *err)
{
    uv_mutex_lock(&g->reload_lock);
    while (list != NULL) {
        reload_waiter *next = list->next;
        list->rc = rc;
        list->generation = gen;
        snprintf(list->err, sizeof(list->err), "%s", err);
        list->done = true;
        uv_cond_signal(&list->cond);
        list = next;
    }
    uv_mutex_unlock(&g->reload_lock);
}

static void start_reload(cg__gate *g);

/* The admin port keeps the address it was started on: say so when a reload
 * asks for another one (its allow list and token apply at once). */
static void note_admin_change(cg__gate *g, const cg_admin_conf *na)
{
    bool running = g->admin != NULL;
    if (running == na->enabled &&
        (!running || (na->listen.addrlen == g->admin_listen.addrlen &&
                      memcmp(&na->listen.addr, &g->admin_listen.addr, na->listen.addrlen) == 0)))
        return;
    char msg[192];
    snprintf(msg, sizeof(msg), "a change of [admin] listen needs a restart; the admin port %s%s",
             running ? "stays on " : "stays off", running ? g->admin_listen.text : "");
    cg__log_event(CG_LOG_WARN, "reload_note", "message", msg, NULL);
}

static void reload_done(uv_work_t *w, int status)
{
    cg__gate *g = w->data;
    char err[512] = "";
    int rc = g->load_rc;
    cg_config *cfg = g->loaded;
    size_t *lmap = NULL;
    uint64_t number = g->gen->number;

    g->loaded = NULL;
    if (status != 0) {
        rc = CG_ESYS;
        snprintf(err, sizeof(err), "%s: reload cancelled", g->path);
    } else if (rc != 0) {
        snprintf(err, sizeof(err), "%s", g->load_err);
    } else if ((lmap = calloc(g->nlisteners ? g->nlisteners : 1, sizeof(*lmap))) == NULL) {
        rc = CG_ENOMEM;
        snprintf(err, sizeof(err), "%s: out of memory", g->path);
    } else if ((rc = map_listeners(g, cfg, lmap, err, sizeof(err))) == 0) {
        cg__gen *ng = cg__gen_new(cfg, g->next_generation, lmap, g->nlisteners);
        if (ng == NULL) {
            rc = CG_ENOMEM;
            snprintf(err, sizeof(err), "%s: out of memory", g->path);
        } else {
            cfg = NULL; /* the generation owns it now */
            if (ng->cfg->workers != g->gen->cfg->workers)
                cg__log_event(CG_LOG_WARN, "reload_note", "message",
                              "a change of workers needs a restart; keeping the running count",
                              NULL);
            note_admin_change(g, &ng->cfg->admin);
            uv_mutex_lock(&g->gen_lock);
            cg__gen *old = g->gen;
            g->gen = ng;
            uv_mutex_unlock(&g->gen_lock);
            cg__gen_unref(old);
            g->next_generation++;
            number = ng->number;
            cg__log_setup(ng->cfg->log_level, ng->cfg->log_format);
            atomic_store(&g->max_active, effective_max(g, ng->cfg->max_connections, true));
        }
    }
    free(lmap);
    cg_config_free(cfg);

    char gs[24];
    u64s(gs, sizeof(gs), number);
    if (rc == 0) {
        atomic_fetch_add(&g->stats->reloads, 1);
        cg__log_event(CG_LOG_INFO, "reload", "result", "ok", "generation", gs, NULL);
    } else {
        atomic_fetch_add(&g->stats->reload_failures, 1);
        cg__log_event(CG_LOG_ERROR, "reload", "result", "failed", "generation", gs, "error", err,
                      NULL);
    }

    reload_waiter *done = g->current;
    g->current = NULL;
    g->reload_running = false;
    finish_waiters(g, done, rc, number, err);

    uv_mutex_lock(&g->reload_lock);
    bool more = g->waiting != NULL;
    uv_mutex_unlock(&g->reload_lock);
    if ((more || g->reload_again) && !g->stopping)
        start_reload(g);
}

static void start_reload(cg__gate *g)
{
    if (g->reload_running) {
        g->reload_again = true;
        return;
    }
    g->reload_again = false;
    uv_mutex_lock(&g->reload_lock);
    g->current = g->waiting;
    g->waiting = NULL;
    uv_mutex_unlock(&g->reload_lock);
    g->reload_running = true;
    g->reload_work.data = g;
    if (uv_queue_work(&g->loop, &g->reload_work, reload_work, reload_done) != 0) {
        g->reload_running = false;
        reload_waiter *w = g->current;
        g->current = NULL;
        finish_waiters(g, w, CG_ESYS, g->gen->number, "reload could not be started");
    }
}

static void on_wake(uv_async_t *a)
{
    cg__gate *g = a->data;
    uv_mutex_lock(&g->reload_lock);
    bool want = g->waiting != NULL;
    uv_mutex_unlock(&g->reload_lock);
    if (!want)
        return;
    if (g->stopping) {
        uv_mutex_lock(&g->reload_lock);
        reload_waiter *w = g->waiting;
        g->waiting = NULL;
        uv_mutex_unlock(&g->reload_lock);
        finish_waiters(g, w, CG_EAGAIN, g->gen->number, "the gate is stopping");
        return;
    }
    start_reload(g);
}

int cg__gate_reload_wait(cg__gate *g, uint64_t *generation, char *err, size_t errlen)
{
    reload_waiter w;
    memset(&w, 0, sizeof(w));
    if (uv_cond_init(&w.cond) != 0) {
        snprintf(err, errlen, "out of resources");
        return CG_ENOMEM;
    }
    uv_mutex_lock(&g->reload_lock);
    if (g->reload_closed) {
        uv_mutex_unlock(&g->reload_lock);
        uv_cond_destroy(&w.cond);
        snprintf(err, errlen, "the gate is stopping");
        return CG_EAGAIN;
    }
    w.next = g->waiting;
    g->waiting = &w;
    /* Under the lock: finish() closes the async handle only after setting
     * reload_closed under the same lock. */
    uv_async_send(&g->wake);
    while (!w.done)
        uv_cond_wait(&w.cond, &g->reload_lock);
    uv_mutex_unlock(&g->reload_lock);
    uv_cond_destroy(&w.cond);
    if (generation != NULL)
        *generation = w.generation;
    if (w.rc != 0)
        snprintf(err, errlen, "%s", w.err);
    return w.rc;
}

cg__gen *cg__gate_acquire(cg__gate *g)
{
    uv_mutex_lock(&g->gen_lock);
    cg__gen *gen = cg__gen_ref(g->gen);
    uv_mutex_unlock(&g->gen_lock);
    return gen;
}

cg__stats *cg__gate_stats(cg__gate *g)
{
    return g->stats;
}

uint64_t cg__gate_uptime_ms(const cg__gate *g)
{
    return (uv_hrtime() - g->started_ns) / 1000000;
}

uint64_t cg__gate_max_connections(cg__gate *g)
{
    return atomic_load_explicit(&g->max_active, memory_order_relaxed);
}

unsigned cg__gate_workers(const cg__gate *g)
{
    return g->workers;
}

/* ------------------------------------------------------------------------
 * Signals, counters, drain
 */

/* Log one counters line: the whole gate (name NULL, with generation and
 * reloads) or one listener. */
static void log_counters(cg__gate *g, const char *event, const char *name, const cg__lsum *t)
{
    char v[12][24];
    const char *kv[2 * 14];
    size_t n = 0;
    const struct {
        const char *key;
        uint64_t value;
    } fields[] = {
        {"accepted", t->accepted},
        {"rejected", cg__lsum_rejected(t)},
        {"rejected_rule", t->rejected[CG__REJ_RULE]},
        {"rejected_default", t->rejected[CG__REJ_DEFAULT]},
        {"rejected_limit", t->rejected[CG__REJ_LIMIT]},
        {"active", cg__lsum_active(t)},
        {"closed", t->closed},
        {"backend_errors", t->backend_errors},
        {"bytes_in", t->bytes_in},
        {"bytes_out", t->bytes_out},
        {"generation", g->gen->number},
        {"reloads", atomic_load(&g->stats->reloads)},
    };
    size_t nfields = sizeof(fields) / sizeof(fields[0]) - (name != NULL ? 2 : 0);

    if (name != NULL) {
        kv[n++] = "listener";
        kv[n++] = name;
    }
    for (size_t i = 0; i < nfields; i++) {
        u64s(v[i], sizeof(v[i]), fields[i].value);
        kv[n++] = fields[i].key;
        kv[n++] = v[i];
    }
    cg__log_fields(CG_LOG_INFO, event, kv, n / 2);
}

static void log_stats(cg__gate *g, const char *event, bool per_listener)
{
    cg__lsum t;
    cg__stats_sum_all(g->stats, &t);
    log_counters(g, event, NULL, &t);
    for (size_t i = 0; per_listener && i < g->nlisteners; i++) {
        cg__stats_sum_listener(g->stats, i, &t);
        log_counters(g, "listener_stats", g->listeners[i].name, &t);
    }
}

static void close_control_handles(cg__gate *g)
{
    uv_close((uv_handle_t *)&g->wake, on_closed_noop);
    uv_close((uv_handle_t *)&g->drain_timer, on_closed_noop);
    uv_close((uv_handle_t *)&g->limiter_timer, on_closed_noop);
}

static void finish(cg__gate *g)
{
    uv_mutex_lock(&g->reload_lock);
    g->reload_closed = true;
    reload_waiter *waiting = g->waiting;
    g->waiting = NULL;
    uv_mutex_unlock(&g->reload_lock);
    finish_waiters(g, waiting, CG_EAGAIN, g->gen->number, "the gate is stopping");
    cg__log_limiter_flush(&g->limiter, now_ms(g));
    /* Worker 0's connections live on this loop: they finish closing as it
     * runs on; the pool is freed in gate_free. */
    cg__pool_close(g->pool);
    log_stats(g, "stop", false);
    cg__signals_stop(g->signals);
    g->signals = NULL;
    close_control_handles(g);
}

/* Write the "suppressed N reject lines" summary of a window that ended
 * without a later reject to trigger it. */
static void on_limiter_timer(uv_timer_t *t)
{
    cg__gate *g = t->data;
    if (g->limiter.suppressed > 0 && now_ms(g) - g->limiter.window_start_ms >= 1000)
        cg__log_limiter_flush(&g->limiter, now_ms(g));
}

static void on_drain_timer(uv_timer_t *t)
{
    cg__gate *g = t->data;
    uint64_t active = atomic_load(&g->active_total);
    if (active == 0 || now_ms(g) >= g->drain_deadline) {
        uv_timer_stop(t);
        if (active > 0) {
            char a[24];
            u64s(a, sizeof(a), active);
            cg__log_event(CG_LOG_WARN, "drain_timeout", "active", a, "message",
                          "drain timeout: closing the connections still open", NULL);
        }
        finish(g);
    }
}

static void begin_stop(cg__gate *g, const char *why)
{
    if (g->stopping) {
        g->drain_deadline = 0; /* a second signal: stop waiting */
        return;
    }
    g->stopping = true;
    for (size_t i = 0; i < g->nlisteners; i++)
        close_listener(&g->listeners[i]);
    char a[24];
    u64s(a, sizeof(a), atomic_load(&g->active_total));
    cg__log_event(CG_LOG_INFO, "draining", "signal", why, "active", a, NULL);
    g->drain_deadline = now_ms(g) + g->gen->cfg->drain_timeout_ms;
    uv_timer_start(&g->drain_timer, on_drain_timer, 0, DRAIN_CHECK_MS);
}

static void on_signal(cg__sigevent ev, const char *name, void *arg)
{
    cg__gate *g = arg;
    switch (ev) {
    case CG__SIG_RELOAD:
        if (!g->stopping)
            start_reload(g);
        break;
    case CG__SIG_STATS:
        log_stats(g, "stats", true);
        break;
    case CG__SIG_STOP:
        begin_stop(g, name);
        break;
    }
}

/* ------------------------------------------------------------------------
 * Start and stop
 */

static void gate_free(cg__gate *g)
{
    if (g == NULL)
        return;
    /* Normally stopped already, once reloads were refused (see cg__gate_run). */
    cg__admin_stop(g->admin);
    g->admin = NULL;
    for (size_t i = 0; g->listeners != NULL && i < g->nlisteners; i++) {
        close_listener(&g->listeners[i]);
        free(g->listeners[i].name);
    }
    cg__signals_stop(g->signals);
    g->signals = NULL;
    /* Let every closed handle's callback run before the loop goes away,
     * worker 0's connections included: then its pool can go. */
    uv_run(&g->loop, UV_RUN_DEFAULT);
    cg__pool_free(g->pool);
    g->pool = NULL;
    uv_loop_close(&g->loop);
    cg__gen_unref(g->gen);
    cg__stats_free(g->stats);
    free(g->listeners);
    free(g->listener_names);
    free((void *)g->rr);
    free(g->path);
    uv_mutex_destroy(&g->gen_lock);
    uv_mutex_destroy(&g->reload_lock);
    free(g);
}

static int start_listeners(cg__gate *g, char *err, size_t errlen)
{
    for (size_t i = 0; i < g->nlisteners; i++) {
        listener *l = &g->listeners[i];
        int rc = open_listener(l, err, errlen);
        if (rc != 0)
            return rc;
        cg_accept_opts opts;
        cg_accept_opts_default(&opts);
        rc = cg_acceptor_new(l->fd, condition, l, &opts, &l->acceptor);
        if (rc != 0) {
            snprintf(err, errlen, "listener '%s': %s", l->name, cg_strerror(rc));
            return rc;
        }
        if (uv_poll_init_socket(&g->loop, &l->poll, l->fd) != 0 ||
            uv_timer_init(&g->loop, &l->timer) != 0) {
            snprintf(err, errlen, "listener '%s': cannot watch the socket", l->name);
            return CG_ESYS;
        }
        l->poll_init = l->timer_init = true;
        l->poll.data = l->timer.data = l;
        l->state = L_OPEN;
        uv_poll_start(&l->poll, UV_READABLE, on_readable);
    }
    return 0;
}

/* The admin port sees the gate through a cg__gate_view (gate_view.h): these
 * adapt the accessors of gate.h to its void * context. */
static cg__gen *view_acquire(void *g)
{
    return cg__gate_acquire(g);
}

static cg__stats *view_stats(void *g)
{
    return cg__gate_stats(g);
}

static uint64_t view_uptime_ms(void *g)
{
    return cg__gate_uptime_ms(g);
}

static uint64_t view_max_connections(void *g)
{
    return cg__gate_max_connections(g);
}

static unsigned view_workers(void *g)
{
    return cg__gate_workers(g);
}

static int view_reload_wait(void *g, uint64_t *generation, char *err, size_t errlen)
{
    return cg__gate_reload_wait(g, generation, err, errlen);
}

/* Start the admin port of the current generation, serving this gate. */
static int start_admin(cg__gate *g, char *err, size_t errlen)
{
    const cg__gate_view view = {
        .ctx = g,
        .acquire = view_acquire,
        .stats = view_stats,
        .uptime_ms = view_uptime_ms,
        .max_connections = view_max_connections,
        .workers = view_workers,
        .reload_wait = view_reload_wait,
    };
    return cg__admin_start(&view, &g->gen->cfg->admin, &g->admin, err, errlen);
}

static int gate_run(const char *path, cg_config *cfg)
{
    char err[512] = "";
    cg__gate *g = calloc(1, sizeof(*g));
    size_t *lmap = NULL;
    if (g == NULL || uv_loop_init(&g->loop) != 0) {
        free(g);
        cg_config_free(cfg);
        cg__log_event(CG_LOG_ERROR, "error", "message", "out of memory at start", NULL);
        return 1;
    }
    g->started_ns = uv_hrtime();
    uv_mutex_init(&g->gen_lock);
    uv_mutex_init(&g->reload_lock);
    cg__log_setup(cfg->log_level, cfg->log_format);
    cg__log_limiter_init(&g->limiter, CG_LOG_REJECT_RATE);
    atomic_init(&g->active_total, 0);

    g->nlisteners = cfg->nlisteners;
    g->path = strdup(path);
    g->listeners = calloc(g->nlisteners ? g->nlisteners : 1, sizeof(*g->listeners));
    g->listener_names = calloc(g->nlisteners ? g->nlisteners : 1, sizeof(char *));
    g->rr = calloc(g->nlisteners ? g->nlisteners : 1, sizeof(*g->rr));
    lmap = calloc(g->nlisteners ? g->nlisteners : 1, sizeof(*lmap));
    g->stats = cg__stats_new(g->nlisteners, cfg->workers);
    if (!g->path || !g->listeners || !g->listener_names || !g->rr || !lmap || !g->stats)
        goto nomem;
    for (size_t i = 0; i < g->nlisteners; i++) {
        listener *l = &g->listeners[i];
        l->gate = g;
        l->index = i;
        l->fd = CG_INVALID_SOCKET;
        l->state = L_CLOSED;
        l->bind = cfg->listeners[i].bind;
        l->name = strdup(cfg->listeners[i].name);
        if (l->name == NULL)
            goto nomem;
        g->listener_names[i] = l->name;
        atomic_init(&g->rr[i], 0);
        lmap[i] = i;
    }
    g->gen = cg__gen_new(cfg, 1, lmap, g->nlisteners);
    if (g->gen == NULL)
        goto nomem;
    cfg = NULL;
    g->next_generation = 2;
    free(lmap);
    lmap = NULL;

    g->fd_limit = cg__sys_raise_fd_limit();
    /* Before any thread starts: workers and the thread pool inherit the
     * blocked signal mask, so only this thread's loop takes signals. */
    if (cg__signals_start(&g->loop, on_signal, g, &g->signals) != 0) {
        cg__log_event(CG_LOG_ERROR, "error", "message", "cannot watch signals", NULL);
        g->exit_code = 1;
        goto out;
    }
    g->workers = g->gen->cfg->workers;
    atomic_store(&g->max_active, effective_max(g, g->gen->cfg->max_connections, true));

    if (start_listeners(g, err, sizeof(err)) != 0) {
        cg__log_event(CG_LOG_ERROR, "error", "message", err, NULL);
        g->exit_code = 1;
        goto out;
    }

    cg__pool_env env = {
        .stats = g->stats,
        .active_total = &g->active_total,
        .rr = g->rr,
        .listener_names = g->listener_names,
        .nlisteners = g->nlisteners,
        .accepted_nodelay = cg__sys_nodelay_inherited(),
        .inline_loop = &g->loop, /* worker 0 runs on this thread */
    };
    int rc = cg__pool_start(g->gen->cfg->workers, &env, &g->pool);
    if (rc != 0) {
        cg__log_event(CG_LOG_ERROR, "error", "message", "cannot start the workers", "error",
                      cg_strerror(rc), NULL);
        g->exit_code = 1;
        goto out;
    }

    uv_async_init(&g->loop, &g->wake, on_wake);
    uv_timer_init(&g->loop, &g->drain_timer);
    uv_timer_init(&g->loop, &g->limiter_timer);
    g->limiter_timer.data = g;
    uv_timer_start(&g->limiter_timer, on_limiter_timer, 1000, 1000);
    g->wake.data = g->drain_timer.data = g;

    for (size_t i = 0; i < g->nlisteners; i++) {
        const cg_listener_conf *lc = cg__gen_listener(g->gen, i);
        char backends[512] = "";
        if (lc->echo) {
            snprintf(backends, sizeof(backends), "echo");
        } else {
            size_t off = 0;
            for (size_t b = 0; b < lc->nbackends && off < sizeof(backends); b++)
                off += (size_t)snprintf(backends + off, sizeof(backends) - off, "%s%s",
                                        b ? "," : "", lc->backends[b].text);
        }
        cg__log_event(CG_LOG_INFO, "listen", "listener", lc->name, "bind", lc->bind.text, "rules",
                      cg_ruleset_name(g->gen->cfg->rulesets[lc->ruleset]), "backend", backends,
                      NULL);
    }
    /* After the wake-up handle exists: POST /reload sends on it. */
    if (g->gen->cfg->admin.enabled) {
        char msg[600];
        rc = start_admin(g, err, sizeof(err));
        if (rc != 0) {
            snprintf(msg, sizeof(msg), "admin: %s", err);
            cg__log_event(CG_LOG_ERROR, "error", "message", msg, NULL);
            close_control_handles(g);
            g->exit_code = 1;
            goto out;
        }
        g->admin_listen = g->gen->cfg->admin.listen;
        cg__log_event(CG_LOG_INFO, "admin", "listen", g->admin_listen.text, NULL);
    }
    {
        char w[24], n[24], m[24];
        u64s(w, sizeof(w), g->gen->cfg->workers);
        u64s(n, sizeof(n), g->nlisteners);
        u64s(m, sizeof(m), atomic_load(&g->max_active));
        cg__log_event(CG_LOG_INFO, "start", "version", CG_VERSION_STRING, "config", path,
                      "generation", "1", "workers", w, "listeners", n, "max_connections", m, NULL);
    }
    uv_run(&g->loop, UV_RUN_DEFAULT);
    /* finish() has refused new reload requests and failed the waiting ones,
     * and the loop ran until a reload in progress completed: no admin
     * handler is left waiting in cg__gate_reload_wait, so this returns. */
    cg__admin_stop(g->admin);
    g->admin = NULL;
    g->exit_code = 0;
out:
    cg__pool_close(g->pool);
    {
        int code = g->exit_code;
        gate_free(g);
        return code;
    }
nomem:
    free(lmap);
    cg_config_free(cfg);
    cg__log_event(CG_LOG_ERROR, "error", "message", "out of memory at start", NULL);
    gate_free(g);
    return 1;
}

int cg__gate_run(const char *path, cg_config *cfg)
{
    /* Sockets exist only between these two (WSAStartup on Windows). */
    if (cg__sys_init() != 0) {
        cg_config_free(cfg);
        cg__log_event(CG_LOG_ERROR, "error", "message", "cannot initialise the socket layer", NULL);
        return 1;
    }
    int code = gate_run(path, cfg);
    cg__sys_cleanup();
    return code;
}
