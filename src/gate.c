/* gate.c — the current generation, judging callers, admission, hand-off
 * and drain.
 *
 * Callers are judged on two kinds of thread. Where the workers accept
 * (cg__pool_accepts: Linux), each worker judges its own callers through
 * pool_admit with a reference to the current generation taken under
 * gen_lock. The control thread judges the callers of the listeners it
 * accepts itself (every listener elsewhere; on Linux those whose callers
 * send a PROXY header first) and reads the current generation without a
 * lock, being the only thread that swaps it. A listener is judged on one
 * kind of thread only, so its source entries see one judge at a time on
 * the control thread, and judge_lock makes judging and taking one step on
 * the workers. Places are taken with a compare-and-swap, so the count never
 * passes max_connections whoever takes them.
 */
#include "gate.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listener.h"
#include "log.h"
#include "policy.h"
#include "prefilter.h"
#include "intake.h"
#include "prefilter_compile.h"
#include "runtime.h"

/* How often to say that descriptors ran out. */
#define EMFILE_LOG_MS 10000
/* Descriptors kept aside: stdio, loops, the admin port; plus per listener
 * (socket, spare), per worker (epoll, wake-up) and per worker per listener
 * (the worker's own spare, where workers accept). */
#define FD_RESERVE_BASE 32
/* Callers of accept_proxy listeners awaiting their header, all listeners. */
#define INTAKE_MAX 4096
/* Drain progress check interval. */
#define DRAIN_CHECK_MS 20

struct cg__gate {
    uv_loop_t *loop;
    cg__gen *gen; /* current; this thread reads it freely */
    uv_mutex_t gen_lock;
    uv_mutex_t judge_lock; /* workers: a source stage's verdict and its take */
    uv_mutex_t log_lock;   /* the reject-line limiter and the EMFILE line */
    uint64_t next_generation;

    cg__listener **listeners;
    size_t nlisteners;
    char **names;            /* fixed until restart */
    cg_endpoint *binds;      /* fixed until restart */
    cg_socket_t *worker_fds; /* per listener: the socket the workers accept
                                from, or CG_INVALID_SOCKET for one the
                                control thread accepts itself */

    cg__stats *stats;
    cg__runtime *rt;    /* bans, sources, recent callers: outlive generations */
    cg__intake *intake; /* callers of accept_proxy listeners awaiting their header */
    cg__admission admission;
    cg__pool *pool;
    uint64_t fd_limit;
    unsigned workers;

    cg__log_limiter limiter;
    uv_timer_t limiter_timer; /* closes reject-line windows with no traffic */
    uint64_t emfile_logged_ms;
    uint64_t emfile_shed;

    uv_timer_t drain_timer;
    bool draining, timers_open;
    uint64_t drain_deadline;
    void (*drained)(void *arg);
    void *drained_arg;

    /* The kernel prefilter: loaded at open (then fixed until restart), or
     * NULL with the reason in pf_why. pf_mode: each listener's mode in
     * force (CG_PF_MODE_*), read by the admin port; pf_logged: refusals
     * already summarised in the log (control thread). */
    cg__prefilter *pf;
    char pf_why[256];
    _Atomic uint32_t *pf_mode;
    uint64_t *pf_logged;

    uint64_t started_ns; /* uv_hrtime() at start, for uptime from any thread */
};

struct cg__gate_next {
    cg__gen *gen; /* numbered at commit */
    uint32_t *modes;
    cg__pf_staged *staged; /* NULL without the prefilter */
};

/* The monotonic clock in milliseconds, the same on every thread. */
static uint64_t now_ms(const cg__gate *g)
{
    (void)g;
    return uv_hrtime() / 1000000u;
}

static void u64s(char *buf, size_t n, uint64_t v)
{
    snprintf(buf, n, "%" PRIu64, v);
}

/* ------------------------------------------------------------------------
 * The listeners' hooks: judging callers and counting the outcomes
 */

void cg__gate_policy(cg__gate *g, const cg__gen *gen, size_t l, bool real, cg__policy *out)
{
    const cg_listener_conf *lc = cg__gen_listener(gen, l);
    *out = (cg__policy){
        .bans = cg__runtime_bans(g->rt),
        .set = gen->cfg->rulesets[lc->ruleset],
        .sources = cg__runtime_sources(g->rt),
        .limits = &lc->sources,
        .listener = (uint32_t)l,
        .admission = &g->admission,
        .now_s = cg__runtime_now_s(),
        .now_ms = now_ms(g),
        .count_hits = real,
    };
}

/* A source's rate refusals tripped ban_after: ban it (origin auto), unless
 * never_ban protects it. Control thread. */
static void auto_ban(cg__gate *g, const cg__gen *gen, size_t index, const cg__src_effect *e,
                     int64_t now_s)
{
    char cidr[CG_CIDR_STRLEN], ttl[24], err[CG_ERR_MAX];
    cg_cidr hit;
    cg_cidr_format(&e->cidr, cidr, sizeof(cidr));
    if (cg__bans_overlap(gen->cfg->never_ban, &e->cidr, &hit)) {
        cg__log_event(CG_LOG_WARN, "auto_ban_skipped", "listener", g->names[index], "cidr", cidr,
                      "message", "never_ban protects this source", NULL);
        return;
    }
    const cg_listener_conf *lc = cg__gen_listener(gen, index);
    cg__ban ban = {
        .cidr = e->cidr, .origin = CG__BAN_AUTO, .created_s = now_s, .expires_s = now_s + e->ttl_s};
    snprintf(ban.reason, sizeof(ban.reason), "listener %s: %u source_rate refusals in %u s",
             lc->name, lc->sources.ban_after.count, lc->sources.ban_after.window_ms / 1000);
    snprintf(ttl, sizeof(ttl), "%u", e->ttl_s);
    if (cg__runtime_ban(g->rt, &ban, false, NULL, err, sizeof(err)) != 0) {
        cg__log_event(CG_LOG_WARN, "auto_ban_failed", "listener", g->names[index], "cidr", cidr,
                      "message", err, NULL);
        return;
    }
    cg__log_event(CG_LOG_INFO, "ban", "cidr", cidr, "origin", "auto", "listener", g->names[index],
                  "ttl_s", ttl, NULL);
}

static void log_shadow_ban(cg__gate *g, size_t index, const cg__src_effect *e)
{
    char cidr[CG_CIDR_STRLEN], ttl[24];
    snprintf(ttl, sizeof(ttl), "%u", e->ttl_s);
    cg__log_event(CG_LOG_INFO, "ban", "cidr", cg_cidr_format(&e->cidr, cidr, sizeof(cidr)),
                  "origin", "auto", "listener", g->names[index], "ttl_s", ttl, "shadow", "1", NULL);
}

/* The client of listener index (the caller, or the client its PROXY header
 * names) judged by every stage after `proxy`; returns whether to admit it
 * (a shadow listener admits whom its judge refuses, but max_connections
 * stays a bound on resources, not a policy). */
static bool judge_client(cg__gate *g, const cg__gen *gen, size_t index,
                         const struct sockaddr *caller, cg__judgement *out)
{
    cg__policy p;
    cg_cidr addr;
    if (cg_addr_from_sockaddr(caller, &addr) != 0)
        addr.family = 0; /* no family: every set answers its default */
    cg__gate_policy(g, gen, index, true, &p);
    cg__policy_judge(&p, &addr, out);
    cg__recent_note(cg__runtime_recent(g->rt), (uint32_t)index, &addr);
    bool shadow = cg__gen_listener(gen, index)->mode == CG_MODE_SHADOW;
    /* A shadow listener's auto-ban would be enforced on every listener:
     * it is logged, not made. */
    if (out->effect.autoban && !shadow)
        auto_ban(g, gen, index, &out->effect, p.now_s);
    else if (out->effect.autoban)
        log_shadow_ban(g, index, &out->effect);
    return out->admit || (shadow && out->stage != CG__STAGE_LIMIT);
}

/* The judgement of a caller the limit stage turned away after all: another
 * thread took the last place between the verdict and the take. */
static void limit_refusal(cg__judgement *j)
{
    *j = (cg__judgement){.stage = CG__STAGE_LIMIT, .reason = CG__REJ_LIMIT, .rule = CG_RULE_NONE};
}

/* The condition callback's judge. On an accept_proxy listener the caller is
 * the sender of a header: the proxy stage alone judges it, whatever the
 * mode (the header is framing, not policy), and the client is judged once
 * its header has come. */
static bool judge(void *arg, size_t index, const struct sockaddr *caller, cg__judgement *out)
{
    cg__gate *g = arg;
    const cg_listener_conf *lc = cg__gen_listener(g->gen, index);
    if (lc->accept_proxy == 0)
        return judge_client(g, g->gen, index, caller, out);
    const cg__policy p = {.trusted = lc->trusted_proxies};
    cg_cidr addr;
    if (cg_addr_from_sockaddr(caller, &addr) != 0)
        addr.family = 0;
    cg__policy_judge(&p, &addr, out);
    return out->admit;
}

static void log_reject(cg__gate *g, size_t index, const struct sockaddr *caller,
                       const struct sockaddr *via, const cg__judgement *j, bool shadow)
{
    if (!cg__log_enabled(CG_LOG_INFO))
        return;
    uv_mutex_lock(&g->log_lock);
    bool allow = cg__log_limiter_allow(&g->limiter, now_ms(g));
    uv_mutex_unlock(&g->log_lock);
    if (!allow)
        return;
    /* The deciding entry only when an entry decided (not the default, not
     * a limit). */
    cg__log_reject("reject", g->names[index], caller, via, cg__reject_reason_name(j->reason),
                   j->set, j->reason == CG__REJ_RULE ? j->rule : CG_RULE_NONE,
                   j->stage == CG__STAGE_BAN ? &j->ban : NULL, shadow);
}

/* The source entry an admitted caller holds while open, or NULL. */
static cg__source *take_source(cg__gate *g, const cg__gen *gen, size_t index,
                               const struct sockaddr *caller)
{
    const cg_listener_conf *lc = cg__gen_listener(gen, index);
    cg_cidr addr;
    if (!cg_source_limits_on(&lc->sources) || cg_addr_from_sockaddr(caller, &addr) != 0)
        return NULL;
    return cg__sources_take(cg__runtime_sources(g->rt), (uint32_t)index, &lc->sources, &addr,
                            now_ms(g));
}

/* The debug line of an admitted caller, relayed by `worker`. */
static void log_accept(cg__gate *g, size_t index, const struct sockaddr *caller, unsigned worker)
{
    if (!cg__log_enabled(CG_LOG_DEBUG))
        return;
    char peer[64], ws[16];
    cg_sockaddr_format(caller, peer, sizeof(peer));
    snprintf(ws, sizeof(ws), "%u", worker);
    cg__log_event(CG_LOG_DEBUG, "accept", "listener", g->names[index], "peer", peer, "worker", ws,
                  NULL);
}

/* The counters of an admitted caller, in `slot`. */
static void count_admitted(cg__gate *g, size_t slot, size_t index, const struct sockaddr *caller,
                           const struct sockaddr *via, const cg__judgement *j)
{
    cg__lstats *ls = cg__lstats_of(g->stats, slot, index);
    if (!j->admit) { /* a shadow listener's caller */
        cg__stat_add(&ls->shadow_rejected[j->reason], 1);
        log_reject(g, index, caller, via, j, true);
    }
    cg__stat_add(&ls->accepted, 1);
    if (via != NULL)
        cg__stat_add(&ls->proxied, 1);
}

/* An admitted caller (or the client a PROXY header named, arriving via the
 * sender `via`) goes to the workers: its place, its source's entry, the
 * hand-off. */
static void hand_off(cg__gate *g, size_t index, cg_socket_t fd, const struct sockaddr *caller,
                     const struct sockaddr *via, const cg__judgement *j)
{
    cg__lstats *ls = cg__lstats_of(g->stats, 0, index);
    unsigned worker = 0;

    /* Take the place before the hand-off, so that no reader ever sees the
     * worker's release before the take. */
    if (!cg__admission_try_take(&g->admission)) {
        cg__judgement lim;
        limit_refusal(&lim);
        cg_socket_close_reset(fd);
        cg__stat_add(&ls->rejected[CG__REJ_LIMIT], 1);
        log_reject(g, index, caller, via, &lim, false);
        return;
    }
    count_admitted(g, 0, index, caller, via, j);
    cg__source *src = take_source(g, g->gen, index, caller);
    if (cg__pool_submit(g->pool, fd, caller, cg__route_ref(cg__gen_route(g->gen, index)), src,
                        &worker) != 0) {
        /* Every queue full: the pool has reset the socket, so the caller
         * counts as refused for want of capacity. */
        cg__sources_release(cg__runtime_sources(g->rt), src);
        cg__admission_release(&g->admission);
        cg__stat_add(&ls->accepted, (uint64_t)-1);
        if (via != NULL)
            cg__stat_add(&ls->proxied, (uint64_t)-1);
        cg__stat_add(&ls->rejected[CG__REJ_LIMIT], 1);
        return;
    }
    log_accept(g, index, caller, worker);
}

static void admitted(void *arg, size_t index, cg_socket_t fd, const cg_accept_result *res,
                     const cg__judgement *j)
{
    cg__gate *g = arg;
    const cg_listener_conf *lc = cg__gen_listener(g->gen, index);
    const struct sockaddr *caller = (const struct sockaddr *)&res->caller;
    if (lc->accept_proxy != 0) {
        /* A trusted sender: the stages after `proxy` wait for its header. */
        if (cg__intake_add(g->intake, index, fd, caller, lc->accept_proxy, lc->proxy_timeout_ms) !=
            0)
            cg__stat_add(&cg__lstats_of(g->stats, 0, index)->rejected[CG__REJ_LIMIT], 1);
        return;
    }
    hand_off(g, index, fd, caller, NULL, j);
}

static void refused(void *arg, size_t index, const cg_accept_result *res, const cg__judgement *j)
{
    cg__gate *g = arg;
    cg__stat_add(&cg__lstats_of(g->stats, 0, index)->rejected[j->reason], 1);
    log_reject(g, index, (const struct sockaddr *)&res->caller, NULL, j, false);
}

/* A trusted sender's header came: judge the client it names (the sender
 * itself for LOCAL and UNKNOWN) by every stage after `proxy`. */
static void on_header(void *arg, size_t index, cg_socket_t fd, const struct sockaddr *sender,
                      const cg__proxy_hdr *h)
{
    cg__gate *g = arg;
    const struct sockaddr *client = h->local ? sender : (const struct sockaddr *)&h->src;
    cg__judgement j;
    cg__lstats *ls = cg__lstats_of(g->stats, 0, index);
    if (judge_client(g, g->gen, index, client, &j)) {
        hand_off(g, index, fd, client, sender, &j);
        return;
    }
    cg_socket_close_reset(fd); /* a refused client: a reset, no byte of the backend */
    cg__stat_add(&ls->rejected[j.reason], 1);
    log_reject(g, index, client, sender, &j, false);
}

static void on_header_failed(void *arg, size_t index, const struct sockaddr *sender,
                             const char *why)
{
    cg__gate *g = arg;
    cg__stat_add(&cg__lstats_of(g->stats, 0, index)->rejected[CG__REJ_PROXY_HEADER], 1);
    if (!cg__log_enabled(CG_LOG_INFO) || !cg__log_limiter_allow(&g->limiter, now_ms(g)))
        return;
    char via[64];
    cg_sockaddr_format(sender, via, sizeof(via));
    cg__log_event(CG_LOG_INFO, "reject", "listener", g->names[index], "via", via, "reason",
                  "proxy_header", "message", why, NULL);
}

/* Out of descriptors on listener index, seen by the thread of `slot`. */
static void shed_in(cg__gate *g, size_t slot, size_t index)
{
    cg__lstats *ls = cg__lstats_of(g->stats, slot, index);
    cg__stat_add(&ls->rejected[CG__REJ_LIMIT], 1);
    cg__stat_add(&ls->shed, 1);
    /* One line per EMFILE_LOG_MS at most, with the count shed meanwhile. */
    uv_mutex_lock(&g->log_lock);
    uint64_t now = now_ms(g), shed = ++g->emfile_shed;
    bool due = g->emfile_logged_ms == 0 || now - g->emfile_logged_ms >= EMFILE_LOG_MS;
    if (due) {
        g->emfile_logged_ms = now;
        g->emfile_shed = 0;
    }
    uv_mutex_unlock(&g->log_lock);
    if (!due)
        return;
    char lim[24], n[24];
    u64s(lim, sizeof(lim), g->fd_limit);
    u64s(n, sizeof(n), shed);
    cg__log_event(CG_LOG_WARN, "fd_exhausted", "listener", g->names[index], "fd_limit", lim, "shed",
                  n, "message", "out of descriptors: shedding callers and pausing accept", NULL);
}

static void shed(void *arg, size_t index)
{
    shed_in(arg, 0, index);
}

/* ------------------------------------------------------------------------
 * The workers' hooks (cg__pool_accepts): a worker judges its own callers
 */

static void pool_shed(void *arg, size_t slot, size_t index)
{
    shed_in(arg, slot, index);
}

/* Judge a caller a worker accepted (slot: the worker's counters) and, when
 * admitted, take its place and source entry in the same step: the source
 * stage's verdict and its take under judge_lock (only for a listener with
 * source limits), the place with a compare-and-swap. */
static bool pool_admit(void *arg, size_t slot, size_t index, const struct sockaddr *caller,
                       cg__route **route, void **hold)
{
    cg__gate *g = arg;
    cg__gen *gen = cg__gate_acquire(g);
    const cg_listener_conf *lc = cg__gen_listener(gen, index);
    bool locked = cg_source_limits_on(&lc->sources);
    cg__judgement j;

    if (locked)
        uv_mutex_lock(&g->judge_lock);
    bool admit = judge_client(g, gen, index, caller, &j);
    if (admit && !cg__admission_try_take(&g->admission)) {
        limit_refusal(&j);
        admit = false;
    }
    if (admit)
        *hold = take_source(g, gen, index, caller);
    if (locked)
        uv_mutex_unlock(&g->judge_lock);

    if (admit) {
        count_admitted(g, slot, index, caller, NULL, &j);
        *route = cg__route_ref(cg__gen_route(gen, index));
        log_accept(g, index, caller, (unsigned)(slot - 1));
    } else {
        cg__stat_add(&cg__lstats_of(g->stats, slot, index)->rejected[j.reason], 1);
        log_reject(g, index, caller, NULL, &j, false);
    }
    cg__gen_unref(gen);
    return admit;
}

void cg__gate_pool_env(cg__gate *g, cg__pool_env *env)
{
    env->listen_fds = g->worker_fds;
    env->gate = (cg__pool_gate){.admit = pool_admit, .shed = pool_shed, .arg = g};
}

/* ------------------------------------------------------------------------
 * Policies
 */

uint64_t cg__gate_fit_connections(uint64_t fd_limit, size_t nlisteners, unsigned workers,
                                  bool any_backend, unsigned configured)
{
    /* Each worker also keeps a spare descriptor per listener it accepts
     * from (cg__pool_accepts). */
    uint64_t reserve = FD_RESERVE_BASE + 2 * (uint64_t)nlisteners + 4 * (uint64_t)workers +
                       (uint64_t)nlisteners * workers;
    uint64_t per = any_backend ? 2 : 1;
    uint64_t fit = fd_limit > reserve ? (fd_limit - reserve) / per : 1;
    if (fit < 1)
        fit = 1;
    return configured <= fit ? configured : fit;
}

/* The effective max_connections of generation `gen`, logged when the
 * descriptor limit lowers it. */
static uint64_t effective_max(cg__gate *g, const cg__gen *gen)
{
    bool any_backend = false;
    for (size_t i = 0; i < g->nlisteners; i++)
        any_backend = any_backend || !cg__gen_listener(gen, i)->echo;
    unsigned configured = gen->cfg->max_connections;
    uint64_t fit =
        cg__gate_fit_connections(g->fd_limit, g->nlisteners, g->workers, any_backend, configured);
    if (fit < configured) {
        char c[24], f[24], lim[24];
        u64s(c, sizeof(c), configured);
        u64s(f, sizeof(f), fit);
        u64s(lim, sizeof(lim), g->fd_limit);
        cg__log_event(CG_LOG_WARN, "limit", "max_connections", c, "effective", f, "fd_limit", lim,
                      "message", "max_connections lowered to fit the descriptor limit", NULL);
    }
    return fit;
}

static long find_listener(const cg_config *cfg, const char *name)
{
    for (size_t j = 0; j < cfg->nlisteners; j++)
        if (strcmp(cfg->listeners[j].name, name) == 0)
            return (long)j;
    return -1;
}

int cg__gate_map_listeners(char *const *names, const cg_endpoint *binds, size_t n,
                           const cg_config *cfg, size_t *lmap, char *err, size_t errlen)
{
    for (size_t j = 0; j < cfg->nlisteners; j++) {
        bool known = false;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(cfg->listeners[j].name, names[i]) == 0;
        if (!known) {
            snprintf(err, errlen,
                     "%s:%" PRIu32 ": listener '%s' is new; adding listeners needs a restart",
                     cfg->path, cfg->listeners[j].line, cfg->listeners[j].name);
            return CG_EINVAL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        long j = find_listener(cfg, names[i]);
        if (j < 0) {
            snprintf(err, errlen,
                     "%s:0: listener '%s' was removed; removing listeners needs a restart",
                     cfg->path, names[i]);
            return CG_EINVAL;
        }
        const cg_endpoint *nb = &cfg->listeners[j].bind;
        if (nb->addrlen != binds[i].addrlen ||
            memcmp(&nb->addr, &binds[i].addr, nb->addrlen) != 0) {
            snprintf(err, errlen,
                     "%s:%" PRIu32
                     ": listener '%s' bind changed from %s to %s; bind changes need a restart",
                     cfg->path, cfg->listeners[j].line, names[i], binds[i].text, nb->text);
            return CG_EINVAL;
        }
        lmap[i] = (size_t)j;
    }
    return 0;
}

/* Whether the workers accept listener lc's callers themselves: where they
 * can (cg__pool_accepts), unless its callers send a PROXY header first (the
 * intake that reads it lives on the control loop). Fixed at start. */
static bool on_workers(const cg_listener_conf *lc)
{
    return cg__pool_accepts() && lc->accept_proxy == 0;
}

/* A reload cannot give accept_proxy to a listener whose callers the workers
 * accept: its headers would never be read. */
static int check_intake(const cg__gate *g, const cg__gen *gen, char *err, size_t errlen)
{
    for (size_t i = 0; i < g->nlisteners; i++) {
        const cg_listener_conf *lc = cg__gen_listener(gen, i);
        if (g->worker_fds[i] != CG_INVALID_SOCKET && lc->accept_proxy != 0) {
            snprintf(err, errlen,
                     "%s:%" PRIu32 ": listener '%s': accept_proxy on a listener started without "
                     "it needs a restart",
                     gen->cfg->path, lc->line, lc->name);
            return CG_EINVAL;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Generations
 */

static void swap_generation(cg__gate *g, cg__gen *ng)
{
    uv_mutex_lock(&g->gen_lock);
    cg__gen *old = g->gen;
    g->gen = ng;
    uv_mutex_unlock(&g->gen_lock);
    cg__gen_unref(old);
}

/* Each listener's kernel mode for generation gen: what its `prefilter`
 * asks, where the prefilter could be loaded. */
static const char *pf_mode_name(uint32_t m)
{
    return m == CG_PF_MODE_REFUSE ? "refuse" : m == CG_PF_MODE_DROP ? "drop" : "off";
}

bool cg__gate_kernel_mode(cg_prefilter_mode m, bool loaded, uint32_t *mode)
{
    *mode = CG_PF_MODE_OFF;
    if (m == CG_PREFILTER_OFF || (!loaded && m == CG_PREFILTER_AUTO))
        return true;
    if (!loaded)
        return false;
    *mode = m == CG_PREFILTER_DROP ? CG_PF_MODE_DROP : CG_PF_MODE_REFUSE;
    return true;
}

static int kernel_modes(const cg__gate *g, const cg__gen *gen, uint32_t *modes, char *err,
                        size_t errlen)
{
    for (size_t i = 0; i < g->nlisteners; i++) {
        const cg_listener_conf *lc = cg__gen_listener(gen, i);
        bool ok = cg__gate_kernel_mode(lc->prefilter, g->pf != NULL, &modes[i]);
        /* The kernel refuses nobody on a shadow listener. (On an accept_proxy
         * one it judges the sender by trusted_proxies alone.) */
        if (lc->mode == CG_MODE_SHADOW)
            modes[i] = CG_PF_MODE_OFF;
        if (!ok) {
            snprintf(err, errlen, "%s:%" PRIu32 ": listener '%s': prefilter = %s: %s",
                     gen->cfg->path, lc->line, lc->name, cg_prefilter_mode_name(lc->prefilter),
                     g->pf_why);
            return CG_ENOTSUP;
        }
    }
    return 0;
}

/* Whether any listener of cfg asks for the kernel prefilter. */
static bool prefilter_wanted(const cg_config *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].prefilter != CG_PREFILTER_OFF)
            return true;
    return false;
}

int cg__gate_print_prefilter(const cg_config *cfg, FILE *out)
{
    char why[256] = "every listener has prefilter = off";
    cg__prefilter *pf = NULL;
    bool ok = true;
    if (prefilter_wanted(cfg) && cg__prefilter_open(&pf, cfg->max_bans, why, sizeof(why)) != 0)
        pf = NULL;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const cg_listener_conf *lc = &cfg->listeners[i];
        uint32_t m;
        bool fits = cg__gate_kernel_mode(lc->prefilter, pf != NULL, &m);
        fprintf(out, "prefilter %s mode=%s", lc->name, fits ? pf_mode_name(m) : "unavailable");
        if (!fits)
            fprintf(out, " (prefilter = %s: %s)", cg_prefilter_mode_name(lc->prefilter), why);
        else if (m == CG_PF_MODE_OFF && lc->prefilter == CG_PREFILTER_AUTO)
            fprintf(out, " (auto: %s)", why);
        fputc('\n', out);
        ok = ok && fits;
    }
    cg__prefilter_close(pf);
    return ok ? 0 : 1;
}

/* The kernel's table for gen, loaded into a map of its own. */
static int stage_kernel(const cg__gate *g, cg__gate_next *n, char *err, size_t errlen)
{
    char why[256] = "";
    cg__pf_table t = {0};
    if (g->pf == NULL)
        return 0;
    int rc = cg__pf_compile(n->gen, n->modes, &t);
    if (rc == 0)
        rc = cg__prefilter_stage(g->pf, &t, &n->staged, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "%s", cg_strerror(rc));
    cg__pf_table_free(&t);
    if (rc != 0)
        snprintf(err, errlen, "%s: kernel prefilter: %s", n->gen->cfg->path, why);
    return rc;
}

int cg__gate_candidate(cg__gate *g, cg__gen **out, char *err, size_t errlen)
{
    cg__gen *cur = cg__gate_acquire(g);
    cg_config *cfg = NULL;
    int rc = cg_config_load(cur->cfg->path, &cfg, err, errlen);
    cg__gen_unref(cur);
    if (rc != 0)
        return rc;
    size_t n = g->nlisteners ? g->nlisteners : 1;
    size_t *lmap = calloc(n, sizeof(*lmap));
    uint32_t *modes = calloc(n, sizeof(*modes));
    cg__gen *gen = NULL;
    rc = lmap != NULL && modes != NULL ? 0 : CG_ENOMEM;
    if (rc == 0)
        rc = cg__gate_map_listeners(g->names, g->binds, g->nlisteners, cfg, lmap, err, errlen);
    if (rc == 0 && (gen = cg__gen_new(cfg, 0, lmap, g->nlisteners)) == NULL)
        rc = CG_ENOMEM;
    if (rc == CG_ENOMEM)
        snprintf(err, errlen, "%s: out of memory", cfg->path);
    if (gen == NULL)
        cg_config_free(cfg);
    if (rc == 0)
        rc = kernel_modes(g, gen, modes, err, errlen);
    if (rc == 0)
        rc = check_intake(g, gen, err, errlen);
    free(lmap);
    free(modes);
    if (rc != 0) {
        cg__gen_unref(gen);
        return rc;
    }
    *out = gen;
    return 0;
}

void cg__gate_next_free(cg__gate_next *next)
{
    if (next == NULL)
        return;
    cg__pf_staged_free(next->staged);
    cg__gen_unref(next->gen);
    free(next->modes);
    free(next);
}

int cg__gate_prepare(cg__gate *g, cg_config *cfg, cg__gate_next **out, char *err, size_t errlen)
{
    size_t n = g->nlisteners ? g->nlisteners : 1;
    size_t *lmap = calloc(n, sizeof(*lmap));
    cg__gate_next *next = calloc(1, sizeof(*next));
    int rc = lmap && next && (next->modes = calloc(n, sizeof(*next->modes))) ? 0 : CG_ENOMEM;
    if (rc == 0)
        rc = cg__gate_map_listeners(g->names, g->binds, g->nlisteners, cfg, lmap, err, errlen);
    else
        snprintf(err, errlen, "%s: out of memory", cfg->path);
    if (rc == 0 && (next->gen = cg__gen_new(cfg, 0, lmap, g->nlisteners)) == NULL) {
        rc = CG_ENOMEM;
        snprintf(err, errlen, "%s: out of memory", cfg->path);
    }
    free(lmap);
    if (next == NULL || next->gen == NULL)
        cg_config_free(cfg); /* else the generation has it */
    if (rc == 0)
        rc = kernel_modes(g, next->gen, next->modes, err, errlen);
    if (rc == 0)
        rc = check_intake(g, next->gen, err, errlen);
    if (rc == 0)
        rc = stage_kernel(g, next, err, errlen);
    if (rc != 0) {
        cg__gate_next_free(next);
        return rc;
    }
    *out = next;
    return 0;
}

/* Put the kernel's table and the generation in force, one right after the
 * other: a caller the kernel lets through is judged again by the callback,
 * so the user-space judge always has the last word. */
static int install(cg__gate *g, cg__gate_next *next, char *err, size_t errlen)
{
    if (next->staged != NULL) {
        int rc = cg__prefilter_commit(g->pf, next->staged);
        next->staged = NULL;
        if (rc != 0) {
            snprintf(err, errlen, "%s: kernel prefilter: the new table could not be put in force",
                     next->gen->cfg->path);
            return rc;
        }
    }
    for (size_t i = 0; i < g->nlisteners; i++)
        atomic_store_explicit(&g->pf_mode[i], next->modes[i], memory_order_relaxed);
    next->gen->number = g->next_generation++;
    swap_generation(g, cg__gen_ref(next->gen));
    return 0;
}

int cg__gate_commit(cg__gate *g, cg__gate_next *next, uint64_t *generation, char *err,
                    size_t errlen)
{
    const cg_config *cfg = next->gen->cfg;
    bool workers_changed = cfg->workers != g->gen->cfg->workers;
    int rc = install(g, next, err, errlen);
    if (rc == 0) {
        if (workers_changed)
            cg__log_event(CG_LOG_WARN, "reload_note", "message",
                          "a change of workers needs a restart; keeping the running count", NULL);
        cg__log_setup(cfg->log_level, cfg->log_format);
        cg__runtime_reconfigure(g->rt, cfg);
        cg__admission_set_max(&g->admission, effective_max(g, g->gen));
        *generation = g->gen->number;
    }
    cg__gate_next_free(next);
    return rc;
}

uint64_t cg__gate_generation(const cg__gate *g)
{
    return g->gen->number;
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

cg__admission *cg__gate_admission(cg__gate *g)
{
    return &g->admission;
}

char **cg__gate_names(cg__gate *g)
{
    return g->names;
}

uint64_t cg__gate_uptime_ms(const cg__gate *g)
{
    return (uv_hrtime() - g->started_ns) / 1000000;
}

unsigned cg__gate_workers(const cg__gate *g)
{
    return g->workers;
}

/* ------------------------------------------------------------------------
 * The kernel's refusals
 */

const char *cg__gate_prefilter(cg__gate *g, size_t l, uint64_t counts[CG__REJ_COUNT])
{
    uint64_t k[CG_PF_NREASONS];
    if (l >= g->nlisteners)
        return "off";
    if (g->pf != NULL && cg__prefilter_counts(g->pf, (uint32_t)l, k) == 0)
        for (int r = 0; r < CG__REJ_COUNT && r < CG_PF_NREASONS; r++)
            counts[r] += k[r];
    return pf_mode_name(atomic_load_explicit(&g->pf_mode[l], memory_order_relaxed));
}

/* One line a second per listener whose callers the kernel refused: they
 * cannot be logged one by one. */
static void log_kernel_refusals(cg__gate *g)
{
    for (size_t i = 0; g->pf != NULL && i < g->nlisteners; i++) {
        uint64_t counts[CG__REJ_COUNT] = {0}, total = 0;
        cg__gate_prefilter(g, i, counts);
        for (int r = 0; r < CG__REJ_COUNT; r++)
            total += counts[r];
        if (total == g->pf_logged[i])
            continue;
        char n[24];
        u64s(n, sizeof(n), total - g->pf_logged[i]);
        g->pf_logged[i] = total;
        cg__log_event(CG_LOG_INFO, "prefilter_refused", "listener", g->names[i], "count", n, NULL);
    }
}

/* ------------------------------------------------------------------------
 * Counters in the log
 */

/* One counters line: the whole gate (name NULL, with generation and
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

void cg__gate_log_stats(cg__gate *g, const char *event, bool per_listener)
{
    cg__lsum t;
    cg__stats_sum_all(g->stats, &t);
    for (size_t i = 0; i < g->nlisteners; i++)
        cg__gate_prefilter(g, i, t.rejected);
    log_counters(g, event, NULL, &t);
    for (size_t i = 0; per_listener && i < g->nlisteners; i++) {
        cg__stats_sum_listener(g->stats, i, &t);
        cg__gate_prefilter(g, i, t.rejected);
        log_counters(g, "listener_stats", g->names[i], &t);
    }
}

/* ------------------------------------------------------------------------
 * Drain
 */

static void on_drain_timer(uv_timer_t *t)
{
    cg__gate *g = t->data;
    uint64_t active = cg__admission_active(&g->admission);
    /* Until every worker stopped accepting, a caller may still come in
     * (through a socket another process keeps listening on). */
    if ((active > 0 || cg__pool_listening(g->pool)) && now_ms(g) < g->drain_deadline)
        return;
    uv_timer_stop(t);
    if (active > 0) {
        char a[24];
        u64s(a, sizeof(a), active);
        cg__log_event(CG_LOG_WARN, "drain_timeout", "active", a, "message",
                      "drain timeout: closing the connections still open", NULL);
    }
    g->drained(g->drained_arg);
}

size_t cg__gate_sockets(cg__gate *g, cg_socket_t *fds, const char **names, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < g->nlisteners && n < max; i++) {
        cg_socket_t fd = cg__listener_fd(g->listeners[i]);
        if (fd == CG_INVALID_SOCKET)
            continue;
        fds[n] = fd;
        names[n++] = g->names[i];
    }
    return n;
}

void cg__gate_hand_over(cg__gate *g)
{
    for (size_t i = 0; i < g->nlisteners; i++)
        cg__listener_share(g->listeners[i]);
    cg__prefilter_detach(g->pf);
}

void cg__gate_drain(cg__gate *g, const char *why, void (*drained)(void *arg), void *arg)
{
    if (g->draining) {
        g->drain_deadline = 0; /* a second signal: stop waiting */
        return;
    }
    g->draining = true;
    g->drained = drained;
    g->drained_arg = arg;
    for (size_t i = 0; i < g->nlisteners; i++)
        cg__listener_close(g->listeners[i]);
    cg__pool_unlisten(g->pool);
    cg__intake_close(g->intake); /* callers whose header has not come: reset */
    char a[24];
    u64s(a, sizeof(a), cg__admission_active(&g->admission));
    cg__log_event(CG_LOG_INFO, "draining", "signal", why, "active", a, NULL);
    g->drain_deadline = now_ms(g) + g->gen->cfg->drain_timeout_ms;
    uv_timer_start(&g->drain_timer, on_drain_timer, 0, DRAIN_CHECK_MS);
}

/* ------------------------------------------------------------------------
 * Life
 */

/* Write the "suppressed N reject lines" summary of a window that ended
 * without a later reject to trigger it. */
static void on_limiter_timer(uv_timer_t *t)
{
    cg__gate *g = t->data;
    uv_mutex_lock(&g->log_lock);
    if (g->limiter.suppressed > 0 && now_ms(g) - g->limiter.window_start_ms >= 1000)
        cg__log_limiter_flush(&g->limiter, now_ms(g));
    uv_mutex_unlock(&g->log_lock);
    log_kernel_refusals(g);
    cg__runtime_tick(g->rt, cg__runtime_now_s());
}

static int gate_init(cg__gate *g, const cg_config *cfg)
{
    size_t n = cfg->nlisteners ? cfg->nlisteners : 1;
    g->listeners = calloc(n, sizeof(*g->listeners));
    g->names = calloc(n, sizeof(*g->names));
    g->binds = calloc(n, sizeof(*g->binds));
    g->pf_mode = calloc(n, sizeof(*g->pf_mode));
    g->pf_logged = calloc(n, sizeof(*g->pf_logged));
    g->worker_fds = calloc(n, sizeof(*g->worker_fds));
    for (size_t i = 0; g->worker_fds != NULL && i < n; i++)
        g->worker_fds[i] = CG_INVALID_SOCKET;
    g->stats = cg__stats_new(cfg->nlisteners, cfg->workers);
    int rc = g->listeners && g->names && g->binds && g->pf_mode && g->pf_logged && g->worker_fds &&
                     g->stats
                 ? 0
                 : CG_ENOMEM;
    for (size_t i = 0; rc == 0 && i < cfg->nlisteners; i++) {
        g->binds[i] = cfg->listeners[i].bind;
        if ((g->names[i] = strdup(cfg->listeners[i].name)) == NULL)
            rc = CG_ENOMEM;
    }
    return rc;
}

int cg__gate_new(uv_loop_t *loop, cg_config *cfg, uint64_t fd_limit, cg__runtime *rt,
                 cg__gate **out)
{
    cg__gate *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        cg_config_free(cfg);
        return CG_ENOMEM;
    }
    g->loop = loop;
    g->rt = rt;
    g->started_ns = uv_hrtime();
    g->nlisteners = cfg->nlisteners;
    g->fd_limit = fd_limit;
    g->workers = cfg->workers;
    uv_mutex_init(&g->gen_lock);
    uv_mutex_init(&g->judge_lock);
    uv_mutex_init(&g->log_lock);
    cg__log_limiter_init(&g->limiter, CG_LOG_REJECT_RATE);
    cg__admission_init(&g->admission, 0);
    size_t *lmap = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*lmap));
    for (size_t i = 0; lmap != NULL && i < cfg->nlisteners; i++)
        lmap[i] = i;
    if (lmap == NULL || gate_init(g, cfg) != 0 ||
        (g->gen = cg__gen_new(cfg, 1, lmap, g->nlisteners)) == NULL) {
        free(lmap);
        cg_config_free(cfg);
        cg__gate_free(g);
        return CG_ENOMEM;
    }
    free(lmap);
    const cg__intake_hooks ih = {.header = on_header, .failed = on_header_failed, .arg = g};
    if (cg__intake_new(loop, INTAKE_MAX, &ih, &g->intake) != 0) {
        cg__gate_free(g);
        return CG_ENOMEM;
    }
    g->next_generation = 2;
    cg__admission_set_max(&g->admission, effective_max(g, g->gen));
    uv_timer_init(loop, &g->drain_timer);
    uv_timer_init(loop, &g->limiter_timer);
    g->drain_timer.data = g->limiter_timer.data = g;
    g->timers_open = true;
    uv_timer_start(&g->limiter_timer, on_limiter_timer, 1000, 1000);
    *out = g;
    return 0;
}

/* Load the kernel prefilter for the listeners that ask for it; `why` says
 * why it is not there otherwise. */
static void load_prefilter(cg__gate *g)
{
    if (!prefilter_wanted(g->gen->cfg)) {
        snprintf(g->pf_why, sizeof(g->pf_why),
                 "every listener had prefilter = off at start; turning it on needs a restart");
        return;
    }
    int rc = cg__prefilter_open(&g->pf, g->gen->cfg->max_bans, g->pf_why, sizeof(g->pf_why));
    for (size_t i = 0; rc == 0 && i < g->nlisteners; i++)
        rc = cg__prefilter_add_listener(g->pf, (uint32_t)i, cg__listener_fd(g->listeners[i]),
                                        (const struct sockaddr *)&g->binds[i].addr,
                                        g->binds[i].addrlen, g->pf_why, sizeof(g->pf_why));
    if (rc != 0) {
        cg__prefilter_close(g->pf);
        g->pf = NULL;
    }
}

/* Generation 1's table in force, or the one warning that auto listeners
 * are judged after accept only. */
static int start_prefilter(cg__gate *g, char *err, size_t errlen)
{
    cg__gate_next next = {.gen = g->gen};
    load_prefilter(g);
    next.modes = calloc(g->nlisteners ? g->nlisteners : 1, sizeof(*next.modes));
    if (next.modes == NULL) {
        snprintf(err, errlen, "out of memory at start");
        return CG_ENOMEM;
    }
    int rc = kernel_modes(g, g->gen, next.modes, err, errlen);
    if (rc == 0)
        rc = stage_kernel(g, &next, err, errlen);
    if (rc == 0 && next.staged != NULL && cg__prefilter_commit(g->pf, next.staged) != 0) {
        snprintf(err, errlen, "kernel prefilter: the table could not be put in force");
        rc = CG_ESYS;
    }
    for (size_t i = 0; rc == 0 && i < g->nlisteners; i++)
        atomic_store_explicit(&g->pf_mode[i], next.modes[i], memory_order_relaxed);
    bool fell_back = false;
    for (size_t i = 0; rc == 0 && g->pf == NULL && i < g->nlisteners; i++)
        fell_back = fell_back || cg__gen_listener(g->gen, i)->prefilter == CG_PREFILTER_AUTO;
    if (fell_back) {
        char msg[320];
        snprintf(msg, sizeof(msg), "kernel prefilter off: %s; callers are judged after accept",
                 g->pf_why);
        cg__log_event(CG_LOG_WARN, "prefilter_off", "message", msg, NULL);
    }
    free(next.modes);
    return rc;
}

int cg__gate_open(cg__gate *g, char *err, size_t errlen)
{
    const cg__listener_hooks hooks = {
        .judge = judge,
        .admitted = admitted,
        .refused = refused,
        .shed = shed,
        .arg = g,
    };
    for (size_t i = 0; i < g->nlisteners; i++) {
        /* Windows' conditional accept is set before listen: a reload that
         * turns a listener's prefilter on or off there takes a restart. */
        const cg_listener_conf *lc = cg__gen_listener(g->gen, i);
        bool conditional = lc->prefilter != CG_PREFILTER_OFF;
        int rc;
        if (on_workers(lc)) {
            rc = cg__listener_open_bare(g->names[i], &g->binds[i], conditional, &g->listeners[i],
                                        err, errlen);
            if (rc == 0)
                g->worker_fds[i] = cg__listener_fd(g->listeners[i]);
        } else {
            rc = cg__listener_open(g->loop, g->names[i], &g->binds[i], i, conditional, &hooks,
                                   &g->listeners[i], err, errlen);
        }
        if (rc != 0)
            return rc;
    }
    return start_prefilter(g, err, errlen);
}

/* A new ban: reset the open connections it covers. */
static void sweep_pool(void *arg)
{
    cg__gate *g = arg;
    cg__pool_sweep(g->pool);
}

void cg__gate_start(cg__gate *g, cg__pool *pool)
{
    g->pool = pool;
    cg__runtime_attach(g->rt, g->pf, sweep_pool, g);
    for (size_t i = 0; i < g->nlisteners; i++) {
        const cg_listener_conf *lc = cg__gen_listener(g->gen, i);
        char backends[CG_BACKENDS_STRLEN];
        cg__log_event(CG_LOG_INFO, "listen", "listener", lc->name, "bind", lc->bind.text, "rules",
                      cg_ruleset_name(g->gen->cfg->rulesets[lc->ruleset]), "backend",
                      cg_listener_backends_text(lc, backends, sizeof(backends)), "prefilter",
                      pf_mode_name(atomic_load(&g->pf_mode[i])), NULL);
    }
}

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

void cg__gate_close(cg__gate *g)
{
    for (size_t i = 0; i < g->nlisteners; i++)
        cg__listener_close(g->listeners[i]);
    cg__intake_close(g->intake);
    uv_mutex_lock(&g->log_lock);
    cg__log_limiter_flush(&g->limiter, now_ms(g));
    uv_mutex_unlock(&g->log_lock);
    if (g->timers_open) {
        uv_close((uv_handle_t *)&g->drain_timer, on_closed_noop);
        uv_close((uv_handle_t *)&g->limiter_timer, on_closed_noop);
        g->timers_open = false;
    }
}

void cg__gate_free(cg__gate *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; g->listeners != NULL && i < g->nlisteners; i++)
        cg__listener_free(g->listeners[i]);
    for (size_t i = 0; g->names != NULL && i < g->nlisteners; i++)
        free(g->names[i]);
    cg__gen_unref(g->gen);
    cg__stats_free(g->stats);
    cg__intake_free(g->intake);
    free(g->listeners);
    free(g->names);
    free(g->binds);
    free(g->worker_fds);
    free((void *)g->pf_mode);
    free(g->pf_logged);
    cg__prefilter_close(g->pf);
    uv_mutex_destroy(&g->gen_lock);
    uv_mutex_destroy(&g->judge_lock);
    uv_mutex_destroy(&g->log_lock);
    free(g);
}
