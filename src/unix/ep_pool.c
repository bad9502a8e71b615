/* unix/ep_pool.c — the worker pool on Linux: threads that each run their own
 * epoll loop, accept callers from every listening socket themselves, judge
 * them through the gate, and relay them on the same thread (worker.h).
 *
 * Every worker watches each listening socket with EPOLLEXCLUSIVE: the
 * kernel wakes one worker per caller, and only one that is waiting (so a
 * busy worker is passed over, which keeps latency low under load), and
 * nothing is handed between threads on the hot path. When all are idle the
 * kernel wakes the first in the socket's wait queue, always the same one; a
 * worker that gets ahead of the others in open connections steps to the
 * back (step_back), so callers that come slowly and stay long spread too.
 * (One SO_REUSEPORT socket per worker spreads by a hash instead, blind to
 * load: measured, its p99 latency under load was 1.14 x HAProxy's against
 * 0.92 x here; see tests/bench/README.md.) The control thread still accepts
 * on the listeners whose callers send a PROXY header first (their intake
 * lives on its loop) and submits those through a bounded queue and an
 * eventfd, as worker.c does; the same wake-up carries sweeps, the drain's
 * "stop accepting" and the stop.
 *
 * Worker life:
 *
 *     start ──► RUNNING (accepting, relaying) ──unlisten──► RUNNING (relaying)
 *                   │                                          │
 *                   └────────────────stop─────────────────────►┴──► every
 *                     connection reset, queue emptied, thread returns
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif

#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "condgate/common.h"
#include "ep.h"
#include "ep_relay.h"
#include "handoff.h"
#include "sys.h"

/* Events taken per epoll_wait. */
#define EVENTS_MAX 64
/* Callers accepted per readiness of a listening socket. */
#define ACCEPT_BATCH 32
/* Pause after running out of descriptors. */
#define EMFILE_PAUSE_MS 100
/* Hand-offs started per wake-up before the worker serves its connections. */
#define WAKE_BATCH 256

typedef struct worker worker;

/* One listening socket as one worker watches it. */
typedef struct wlisten {
    cg__ep_watch w; /* first: the epoll data points here */
    worker *wk;
    size_t index;
    int fd;
    cg_acceptor *acc;   /* NULL once this worker stopped accepting here */
    bool watching;      /* in the worker's epoll set */
    cg__ep_timer pause; /* the EMFILE pause */
    cg__route *route;   /* what admit gave the caller just judged */
    void *hold;
} wlisten;

struct worker {
    cg__pool *pool;
    unsigned id;
    cg__ep ep;
    cg__ep_watch wake_w;
    int wake_fd;
    _Atomic bool wake_pending; /* a write to wake_fd is on its way */
    uv_thread_t thread;
    bool mutex_ready, running;

    uv_mutex_t lock; /* guards ring, head, count, stopping and unlisten */
    cg__handoff_ring ring;
    bool stopping, unlisten;

    _Atomic bool sweep;    /* a ban sweep is due at the next wake-up */
    uint64_t stepped_back; /* worker thread: times step_back moved it */
    bool done;             /* worker thread: leave the loop */
    bool listening;        /* watches the listening sockets (counted in the pool's) */
    uint64_t submitted;    /* control thread only */
    wlisten *ls;           /* [nlisteners] */
    cg__ep_relay_ctx ctx;
};

struct cg__pool {
    cg__pool_env env;
    uv_sem_t running; /* posted by each worker as it enters its loop */
    bool sem_ready;
    _Atomic uint64_t paused_until_ms; /* out of descriptors: no accept before */
    _Atomic unsigned listening;       /* workers that may still accept */
    unsigned n;
    unsigned next;
    size_t nlisten;
    int *listen_fds; /* copy of env.listen_fds; -1: not the workers' */
    worker *w;
};

static void count_handled(worker *w)
{
    cg__stat_add(&w->pool->env.relay.stats->slots[w->ctx.slot].handled, 1);
}

/* ------------------------------------------------------------------------
 * Accepting
 */

static void on_listen(cg__ep_watch *w, uint32_t events);
static void accept_some(wlisten *l);

static cg_verdict condition(const struct sockaddr *caller, socklen_t caller_len,
                            const struct sockaddr *callee, socklen_t callee_len, void *arg)
{
    wlisten *l = arg;
    const cg__pool_gate *g = &l->wk->pool->env.gate;
    (void)caller_len;
    (void)callee;
    (void)callee_len;
    l->route = NULL;
    l->hold = NULL;
    return g->admit(g->arg, l->wk->ctx.slot, l->index, caller, &l->route, &l->hold) ? CG_ACCEPT
                                                                                    : CG_REJECT;
}

static void stop_watching(wlisten *l)
{
    if (l->watching)
        cg__ep_del(&l->wk->ep, l->fd);
    l->watching = false;
}

static bool watch(wlisten *l)
{
    l->watching = cg__ep_add(&l->wk->ep, l->fd, EPOLLIN | EPOLLEXCLUSIVE, &l->w) == 0;
    return l->watching;
}

static void stop_accepting(wlisten *l)
{
    stop_watching(l);
    cg__timer_stop(&l->wk->ep, &l->pause);
    cg_acceptor_free(l->acc);
    l->acc = NULL;
}

static void on_pause_over(cg__ep_timer *t)
{
    wlisten *l = (wlisten *)((char *)t - offsetof(wlisten, pause));
    if (l->acc == NULL || l->watching)
        return;
    /* Accept at once, as a readiness would: that also takes back the spare
     * descriptor shedding used, even if no caller ever wakes this worker
     * again (another one may take them all). */
    if (watch(l))
        accept_some(l);
}

/* Open connections of worker i, as its counters say (any thread; nothing
 * of the worker itself is read, which may still be starting). */
static uint64_t open_of(const cg__pool *p, unsigned i)
{
    const cg__slot *s = &p->env.relay.stats->slots[1 + (size_t)i];
    uint64_t finished = atomic_load_explicit(&s->finished, memory_order_relaxed);
    uint64_t handled = atomic_load_explicit(&s->handled, memory_order_relaxed);
    return handled >= finished ? handled - finished : 0;
}

/* After accepting: a worker with more open connections than the least
 * loaded other one (by more than an eighth) steps to the back of the
 * socket's wait queue, where an idle other worker is woken before it. */
static void step_back(wlisten *l)
{
    worker *w = l->wk;
    const cg__pool *p = w->pool;
    uint64_t mine = w->ctx.nlive, least = UINT64_MAX;
    for (unsigned i = 0; i < p->n; i++)
        if (i != w->id) {
            uint64_t o = open_of(p, i);
            least = o < least ? o : least;
        }
    if (least == UINT64_MAX || mine <= least + mine / 8)
        return;
    stop_watching(l);
    watch(l);
    w->stepped_back++;
}

static void on_listen(cg__ep_watch *w, uint32_t events)
{
    wlisten *l = (wlisten *)w;
    (void)events;
    if (l->acc != NULL)
        accept_some(l);
    if (l->acc != NULL && l->watching)
        step_back(l);
}

/* Stop watching l until the pool's EMFILE pause is over. */
static void pause_listener(wlisten *l)
{
    worker *wk = l->wk;
    uint64_t until = atomic_load_explicit(&wk->pool->paused_until_ms, memory_order_relaxed);
    stop_watching(l);
    if (until <= wk->ep.now_ms || cg__timer_start(&wk->ep, &l->pause, until - wk->ep.now_ms) != 0)
        watch(l);
}

static void accept_some(wlisten *l)
{
    worker *wk = l->wk;
    if (atomic_load_explicit(&wk->pool->paused_until_ms, memory_order_relaxed) > wk->ep.now_ms) {
        pause_listener(l); /* another worker ran out of descriptors */
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && l->acc != NULL; i++) {
        int fd;
        cg_accept_result res;
        switch (cg_acceptor_accept(l->acc, &fd, &res)) {
        case 0:
            count_handled(wk);
            cg__ep_relay_start(&wk->ctx, fd, (const cg__peer *)&res.caller, l->route, l->hold);
            continue;
        case CG_EREJECTED:
        case CG_EDEFERRED:
        case CG_ECONNABORTED:
            continue;
        case CG_EMFILE:
            wk->pool->env.gate.shed(wk->pool->env.gate.arg, wk->ctx.slot, l->index);
            /* Out of descriptors is the whole process's state: every
             * worker pauses until the same time, so one sheds per pause. */
            atomic_store_explicit(&wk->pool->paused_until_ms, wk->ep.now_ms + EMFILE_PAUSE_MS,
                                  memory_order_relaxed);
            pause_listener(l);
            return;
        case CG_EINVAL:
            stop_accepting(l); /* the socket stopped listening (the drain) */
            return;
        default:
            return; /* CG_EAGAIN: the backlog is empty */
        }
    }
}

/* ------------------------------------------------------------------------
 * The loop and its wake-up
 */

static void stop_all_listeners(worker *w)
{
    for (size_t i = 0; i < w->pool->nlisten; i++)
        stop_accepting(&w->ls[i]);
    if (w->listening) {
        w->listening = false;
        atomic_fetch_sub_explicit(&w->pool->listening, 1, memory_order_release);
    }
}

static void begin_stop(worker *w)
{
    cg__handoff h;
    for (;;) {
        uv_mutex_lock(&w->lock);
        bool got = cg__handoff_pop(&w->ring, &h);
        if (got)
            count_handled(w);
        uv_mutex_unlock(&w->lock);
        if (!got)
            break;
        cg__ep_relay_drop(&w->ctx, h.fd, h.route, h.hold);
    }
    stop_all_listeners(w);
    cg__ep_relay_close_all(&w->ctx);
    w->done = true;
}

static void on_wake(cg__ep_watch *ww, uint32_t events)
{
    worker *w = (worker *)((char *)ww - offsetof(worker, wake_w));
    cg__handoff batch[64];
    uint64_t v;
    (void)events;

    /* Read first, then clear: a wake-up written in between is then either
     * read here (and its hand-off, pushed before it, is taken below) or
     * left for the next turn, never swallowed with the flag left set. */
    (void)!read(w->wake_fd, &v, sizeof(v));
    (void)atomic_exchange_explicit(&w->wake_pending, false, memory_order_acq_rel);
    if (atomic_exchange_explicit(&w->sweep, false, memory_order_acq_rel))
        cg__ep_relay_sweep(&w->ctx);
    for (unsigned started = 0;;) {
        unsigned got = 0;
        uv_mutex_lock(&w->lock);
        bool stopping = w->stopping, unlisten = w->unlisten;
        /* Counted as handled as it leaves the queue, under the lock load_of
         * reads both under: never in neither, so the least-loaded choice
         * never sees a worker lighter than it is. */
        while (!stopping && got < 64 && started + got < WAKE_BATCH &&
               cg__handoff_pop(&w->ring, &batch[got])) {
            count_handled(w);
            got++;
        }
        bool more = w->ring.count > 0;
        uv_mutex_unlock(&w->lock);
        for (unsigned i = 0; i < got; i++) {
            cg__ep_relay_start(&w->ctx, batch[i].fd,
                               batch[i].peer.sa.sa_family != 0 ? &batch[i].peer : NULL,
                               batch[i].route, batch[i].hold);
        }
        started += got;
        if (stopping) {
            begin_stop(w);
            return;
        }
        if (unlisten)
            stop_all_listeners(w);
        if (!more)
            return;
        if (started >= WAKE_BATCH) {
            /* More are queued: serve the open connections first. */
            uint64_t one = 1;
            atomic_store_explicit(&w->wake_pending, true, memory_order_release);
            (void)!write(w->wake_fd, &one, sizeof(one));
            return;
        }
    }
}

static void wake(worker *w)
{
    uint64_t one = 1;
    if (!atomic_exchange_explicit(&w->wake_pending, true, memory_order_acq_rel))
        (void)!write(w->wake_fd, &one, sizeof(one));
}

static void worker_main(void *arg)
{
    worker *w = arg;
    struct epoll_event ev[EVENTS_MAX];
    bool posted = false;

    cg__sys_thread_init();
    uv_sem_post(&w->pool->running);
    while (!w->done) {
        int timeout = posted ? 0 : cg__ep_timeout(&w->ep, -1);
        int n = epoll_wait(w->ep.epfd, ev, EVENTS_MAX, timeout);
        cg__ep_update_time(&w->ep);
        for (int i = 0; i < n; i++) {
            cg__ep_watch *watch_of = ev[i].data.ptr;
            watch_of->fn(watch_of, ev[i].events);
        }
        cg__ep_run_timers(&w->ep);
        posted = cg__ep_relay_turn_end(&w->ctx);
    }
}

/* ------------------------------------------------------------------------
 * Start and stop
 */

static int start_listeners(cg__pool *p, worker *w)
{
    cg_accept_opts opts;
    cg_accept_opts_default(&opts);
    w->ls = calloc(p->nlisten ? p->nlisten : 1, sizeof(*w->ls));
    if (w->ls == NULL)
        return CG_ENOMEM;
    for (size_t i = 0; i < p->nlisten; i++) {
        wlisten *l = &w->ls[i];
        *l = (wlisten){.w = {.fn = on_listen}, .wk = w, .index = i, .fd = p->listen_fds[i]};
        cg__timer_init(&l->pause, on_pause_over);
        if (l->fd < 0)
            continue;
        int rc = cg_acceptor_new(l->fd, condition, l, &opts, &l->acc);
        if (rc != 0)
            return rc;
        if (!watch(l))
            return CG_ESYS;
    }
    return 0;
}

static int start_worker(cg__pool *p, worker *w, unsigned id)
{
    w->pool = p;
    w->id = id;
    w->wake_fd = -1;
    w->ep.epfd = -1;
    w->ctx.env = &p->env.relay;
    w->ctx.slot = 1 + (size_t)id;
    w->ctx.ep = &w->ep;
    w->ring.slots = malloc(CG_WORKER_QUEUE_MAX * sizeof(*w->ring.slots));
    w->ctx.rbuf = malloc(CG_RELAY_BUF_SIZE);
    if (w->ring.slots == NULL || w->ctx.rbuf == NULL)
        return CG_ENOMEM;
    if (uv_mutex_init(&w->lock) != 0)
        return CG_ESYS;
    w->mutex_ready = true;
    int rc = cg__ep_init(&w->ep);
    if (rc != 0)
        return rc;
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd < 0)
        return errno == EMFILE || errno == ENFILE ? CG_EMFILE : CG_ESYS;
    w->wake_w.fn = on_wake;
    if (cg__ep_add(&w->ep, w->wake_fd, EPOLLIN | EPOLLET, &w->wake_w) != 0)
        return CG_ESYS;
    if ((rc = start_listeners(p, w)) != 0)
        return rc;
    w->listening = true;
    atomic_fetch_add_explicit(&p->listening, 1, memory_order_relaxed);
    /* Everything above happens before the thread starts, so it sees it. */
    if (uv_thread_create(&w->thread, worker_main, w) != 0)
        return CG_ESYS;
    w->running = true;
    return 0;
}

/* Release what start_worker set up, for a worker whose thread is not
 * running (never started, or joined). */
static void destroy_worker(worker *w)
{
    cg__handoff h;
    if (w->pool == NULL)
        return; /* never started: nothing was made */
    while (cg__handoff_pop(&w->ring, &h))
        cg__ep_relay_drop(&w->ctx, h.fd, h.route, h.hold);
    if (w->ls != NULL && w->pool != NULL)
        for (size_t i = 0; i < w->pool->nlisten; i++)
            cg_acceptor_free(w->ls[i].acc);
    if (w->ctx.ep != NULL) {
        cg__ep_relay_close_all(&w->ctx); /* a worker that never ran has none */
        cg__ep_relay_turn_end(&w->ctx);
        cg__ep_relay_cleanup(&w->ctx);
    }
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    if (w->ctx.ep != NULL)
        cg__ep_cleanup(&w->ep);
    if (w->mutex_ready)
        uv_mutex_destroy(&w->lock);
    free(w->ls);
    free(w->ring.slots);
    free(w->ctx.rbuf);
}

/* cg__pool_start: see worker.h. */
int cg__pool_start(unsigned n, const cg__pool_env *env, cg__pool **out)
{
    const cg__relay_env *re = env != NULL ? &env->relay : NULL;
    if (n < 1 || n > CG_CONFIG_MAX_WORKERS || re == NULL || re->stats == NULL ||
        re->stats->nslots < 1 + (size_t)n || re->admission == NULL ||
        (re->nlisteners > 0 && re->listener_names == NULL) ||
        re->stats->nlisteners < re->nlisteners || out == NULL ||
        (env->listen_fds != NULL && env->gate.admit == NULL))
        return CG_EINVAL;

    cg__pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return CG_ENOMEM;
    p->env = *env;
    p->n = n;
    p->sem_ready = uv_sem_init(&p->running, 0) == 0;
    p->w = calloc(n, sizeof(*p->w));
    if (env->listen_fds != NULL) {
        p->nlisten = re->nlisteners;
        p->listen_fds = calloc(p->nlisten ? p->nlisten : 1, sizeof(*p->listen_fds));
        for (size_t i = 0; p->listen_fds != NULL && i < p->nlisten; i++)
            p->listen_fds[i] = env->listen_fds[i];
    }
    if (!p->sem_ready || p->w == NULL || (env->listen_fds != NULL && p->listen_fds == NULL)) {
        cg__pool_free(p);
        return CG_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        int rc = start_worker(p, &p->w[i], i);
        if (rc != 0) {
            cg__pool_stop(p);
            return rc;
        }
    }
    /* Return once every worker is in its loop: the kernel wakes only a
     * worker waiting there, so a caller right after start would otherwise
     * find the first one alone. */
    for (unsigned i = 0; i < n; i++)
        uv_sem_wait(&p->running);
    *out = p;
    return 0;
}

/* Connections a worker has open or queued: what it started (accepted
 * itself or taken from its queue) and has not closed, plus its queue. */
static uint64_t load_of(void *arg, unsigned i)
{
    cg__pool *p = arg;
    worker *w = &p->w[i];
    const cg__slot *s = &p->env.relay.stats->slots[w->ctx.slot];
    /* finished first: read early it can only be low, so the load high. The
     * worker moves a connection from queued to handled under the lock. */
    uint64_t finished = atomic_load_explicit(&s->finished, memory_order_relaxed);
    uv_mutex_lock(&w->lock);
    uint64_t queued = w->ring.count;
    uint64_t handled = atomic_load_explicit(&s->handled, memory_order_relaxed);
    uv_mutex_unlock(&w->lock);
    return handled + queued >= finished ? handled + queued - finished : 0;
}

static bool push(worker *w, const cg__handoff *h)
{
    uv_mutex_lock(&w->lock);
    bool ok = !w->stopping && cg__handoff_push(&w->ring, h);
    uv_mutex_unlock(&w->lock);
    if (ok)
        wake(w);
    return ok;
}

/* cg__pool_submit: see worker.h. */
int cg__pool_submit(cg__pool *p, cg_socket_t fd, const struct sockaddr *peer, cg__route *route,
                    void *hold, unsigned *chosen)
{
    if (route->listener >= p->env.relay.nlisteners) {
        cg_socket_close_reset(fd);
        cg__route_unref(route);
        return CG_EINVAL;
    }
    unsigned best = cg__handoff_pick(p->n, p->next, load_of, p);
    cg__handoff h = cg__handoff_make(fd, peer, route, hold);
    for (unsigned k = 0; k < p->n; k++) {
        unsigned i = (best + k) % p->n;
        if (push(&p->w[i], &h)) {
            p->w[i].submitted++;
            p->next = i + 1;
            if (chosen != NULL)
                *chosen = i;
            return 0;
        }
    }
    cg_socket_close_reset(fd);
    cg__route_unref(route);
    return CG_ERANGE;
}

/* Set a flag under the worker's lock and wake it (unless it is stopping). */
static void signal_worker(worker *w, bool *flag)
{
    uv_mutex_lock(&w->lock);
    bool stopping = w->stopping;
    if (flag != NULL)
        *flag = true;
    uv_mutex_unlock(&w->lock);
    if (!stopping && w->running)
        wake(w);
}

/* cg__pool_sweep: see worker.h. */
void cg__pool_sweep(cg__pool *p)
{
    for (unsigned i = 0; p != NULL && i < p->n; i++) {
        atomic_store_explicit(&p->w[i].sweep, true, memory_order_release);
        signal_worker(&p->w[i], NULL);
    }
}

/* cg__pool_unlisten: see worker.h. */
void cg__pool_unlisten(cg__pool *p)
{
    for (unsigned i = 0; p != NULL && i < p->n; i++)
        signal_worker(&p->w[i], &p->w[i].unlisten);
}

/* cg__pool_listening: see worker.h. */
bool cg__pool_listening(cg__pool *p)
{
    return p != NULL && atomic_load_explicit(&p->listening, memory_order_acquire) > 0;
}

/* cg__pool_accepts: see worker.h. */
bool cg__pool_accepts(void)
{
    return true;
}

/* cg__pool_close: see worker.h. Every worker resets what is queued and what
 * is open, and its thread is joined. */
void cg__pool_close(cg__pool *p)
{
    if (p == NULL)
        return;
    for (unsigned i = 0; i < p->n; i++) {
        worker *w = &p->w[i];
        if (!w->running)
            continue;
        uv_mutex_lock(&w->lock);
        w->stopping = true;
        uv_mutex_unlock(&w->lock);
        wake(w);
    }
    for (unsigned i = 0; i < p->n; i++) {
        worker *w = &p->w[i];
        if (w->running) {
            uv_thread_join(&w->thread);
            w->running = false;
        }
    }
}

/* cg__pool_free: see worker.h. */
void cg__pool_free(cg__pool *p)
{
    if (p == NULL)
        return;
    for (unsigned i = 0; p->w != NULL && i < p->n; i++)
        destroy_worker(&p->w[i]);
    free(p->w);
    free(p->listen_fds);
    if (p->sem_ready)
        uv_sem_destroy(&p->running);
    free(p);
}

/* cg__pool_stop: see worker.h. */
void cg__pool_stop(cg__pool *p)
{
    cg__pool_close(p);
    cg__pool_free(p);
}

/* cg__pool_size: see worker.h. */
unsigned cg__pool_size(const cg__pool *p)
{
    return p != NULL ? p->n : 0;
}
