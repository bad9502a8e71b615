/* worker.c — the worker pool: threads with their own libuv loops, the
 * bounded hand-off queues the control thread fills, and orderly stop.
 *
 * The control thread pushes {fd, route, peer} into the least-loaded
 * worker's ring under its mutex and wakes it with uv_async_send; the worker
 * drains the whole ring on each wakeup (wakeups coalesce) and starts a relay
 * per socket. Stop sets a flag under the same mutex and sends the same
 * async: the worker resets what is still queued, closes every connection
 * and its own handle, and its uv_run returns.
 *
 * With env->inline_loop, worker 0 has no thread: its connections live on
 * the control thread's own loop and a hand-off to it is a plain call, with
 * no queue, lock or wake-up. So `workers = N` runs N threads in all, the
 * control thread being one of them.
 */
#include "worker.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "condgate/common.h"
#include "handoff.h"
#include "relay.h"
#include "sys.h"

typedef struct worker {
    cg__pool *pool;
    bool is_inline; /* runs on env.inline_loop: no thread, loop, ring or lock */
    uv_loop_t loop;
    uv_async_t wake;
    uv_thread_t thread;
    bool mutex_ready, loop_ready, wake_ready, running;

    uv_mutex_t lock; /* guards ring, head, count and stopping */
    cg__handoff_ring ring;
    bool stopping;

    _Atomic bool sweep; /* a ban sweep is due at the next wake-up */
    bool closing;       /* worker thread only (inline: control thread): stop has begun */
    uint64_t submitted; /* control thread only: sockets handed to this worker */
    cg__relay_ctx ctx;  /* worker thread only (until joined) */
} worker;

struct cg__pool {
    cg__pool_env env;
    unsigned n;
    unsigned next; /* control thread: where the round-robin tie-break starts */
    worker *w;
};

static int from_uv(int err)
{
    return err == UV_ENOMEM ? CG_ENOMEM : CG_ESYS;
}

static void count_handled(worker *w)
{
    cg__stat_add(&w->pool->env.relay.stats->slots[w->ctx.slot].handled, 1);
}

static void on_wake_closed(uv_handle_t *h)
{
    (void)h;
}

/* Stop: reset the sockets still queued, close every connection and the
 * async handle; uv_run returns once their close callbacks have run. */
static void begin_stop(worker *w)
{
    cg__handoff h;

    w->closing = true;
    for (;;) {
        uv_mutex_lock(&w->lock);
        bool got = cg__handoff_pop(&w->ring, &h);
        uv_mutex_unlock(&w->lock);
        if (!got)
            break;
        count_handled(w);
        cg__relay_drop(&w->ctx, h.fd, h.route, h.hold);
    }
    cg__relay_close_all(&w->ctx);
    uv_close((uv_handle_t *)&w->wake, on_wake_closed);
}

/* Hand-offs taken out of the ring under one lock, and batches started per
 * wake-up: past that the worker goes back to its loop (serving the
 * connections it has) and wakes itself again for the rest. */
#define WAKE_BATCH 64
#define WAKE_BATCHES 4

static void on_wake(uv_async_t *a)
{
    worker *w = a->data;
    cg__handoff batch[WAKE_BATCH];

    if (w->closing)
        return;
    if (atomic_exchange_explicit(&w->sweep, false, memory_order_acq_rel))
        cg__relay_sweep(&w->ctx);
    for (unsigned round = 0;; round++) {
        unsigned got = 0;
        if (round == WAKE_BATCHES) {
            uv_async_send(&w->wake); /* more are queued: after one loop turn */
            return;
        }
        uv_mutex_lock(&w->lock);
        bool stopping = w->stopping;
        while (!stopping && got < WAKE_BATCH && cg__handoff_pop(&w->ring, &batch[got]))
            got++;
        uv_mutex_unlock(&w->lock);
        for (unsigned i = 0; i < got; i++) {
            const cg__handoff *h = &batch[i];
            count_handled(w);
            cg__relay_start(&w->ctx, h->fd, h->peer.sa.sa_family != 0 ? &h->peer : NULL, h->route,
                            h->hold);
        }
        if (stopping) {
            begin_stop(w);
            return;
        }
        if (got < WAKE_BATCH)
            return;
    }
}

static void worker_main(void *arg)
{
    worker *w = arg;

    cg__sys_thread_init();
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* Release what start_worker set up, for a worker whose thread is not
 * running (never started, or joined). */
static void destroy_worker(worker *w)
{
    cg__handoff h;

    if (w->wake_ready && !w->closing) {
        /* Never ran: close the async here so the loop can be closed. */
        uv_close((uv_handle_t *)&w->wake, on_wake_closed);
        uv_run(&w->loop, UV_RUN_DEFAULT);
    }
    if (w->loop_ready)
        uv_loop_close(&w->loop);
    /* A worker that ran has emptied its ring; one that never ran was never
     * given anything. Be thorough all the same. */
    while (cg__handoff_pop(&w->ring, &h))
        cg__relay_drop(&w->ctx, h.fd, h.route, h.hold);
    if (w->mutex_ready)
        uv_mutex_destroy(&w->lock);
    cg__relay_ctx_cleanup(&w->ctx);
    free(w->ring.slots);
    free(w->ctx.rbuf);
}

static int start_worker(cg__pool *p, worker *w, unsigned id)
{
    int err;

    w->pool = p;
    w->ctx.env = &p->env.relay;
    w->ctx.slot = 1 + (size_t)id;
    w->ctx.loop = &w->loop;
    cg__relay_ctx_init(&w->ctx);
    if (id == 0 && p->env.inline_loop != NULL) {
        w->is_inline = true;
        w->ctx.loop = p->env.inline_loop;
        w->ctx.rbuf = malloc(CG_RELAY_BUF_SIZE);
        return w->ctx.rbuf != NULL ? 0 : CG_ENOMEM;
    }
    w->ring.slots = malloc(CG_WORKER_QUEUE_MAX * sizeof(*w->ring.slots));
    w->ctx.rbuf = malloc(CG_RELAY_BUF_SIZE);
    if (w->ring.slots == NULL || w->ctx.rbuf == NULL)
        return CG_ENOMEM;
    if ((err = uv_mutex_init(&w->lock)) != 0)
        return from_uv(err);
    w->mutex_ready = true;
    if ((err = uv_loop_init(&w->loop)) != 0)
        return from_uv(err);
    w->loop_ready = true;
    if ((err = uv_async_init(&w->loop, &w->wake, on_wake)) != 0)
        return from_uv(err);
    w->wake.data = w;
    w->wake_ready = true;
    /* Everything above happens before the thread starts, so it sees it. */
    if ((err = uv_thread_create(&w->thread, worker_main, w)) != 0)
        return from_uv(err);
    w->running = true;
    return 0;
}

/* cg__pool_start: start n (1..64) workers, each a thread running its own
 * loop. Keeps a copy of *env, whose pointers must outlive the pool. Returns
 * 0 and *out (free with cg__pool_stop), or a negative CG_E* code with
 * nothing left running. Control thread. */
int cg__pool_start(unsigned n, const cg__pool_env *env, cg__pool **out)
{
    const cg__relay_env *re = env != NULL ? &env->relay : NULL;
    if (n < 1 || n > CG_CONFIG_MAX_WORKERS || re == NULL || re->stats == NULL ||
        re->stats->nslots < 1 + (size_t)n || re->admission == NULL ||
        (re->nlisteners > 0 && re->listener_names == NULL) ||
        re->stats->nlisteners < re->nlisteners || out == NULL)
        return CG_EINVAL;

    cg__pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return CG_ENOMEM;
    p->env = *env;
    p->w = calloc(n, sizeof(*p->w));
    if (p->w == NULL) {
        free(p);
        return CG_ENOMEM;
    }
    p->n = n;
    for (unsigned i = 0; i < n; i++) {
        int rc = start_worker(p, &p->w[i], i);
        if (rc != 0) {
            cg__pool_stop(p);
            return rc;
        }
    }
    *out = p;
    return 0;
}

static uint64_t load_of(void *arg, unsigned i)
{
    const cg__pool *p = arg;
    const worker *w = &p->w[i];
    /* Handed over (queued ones included) minus closed: a burst of submits
     * spreads out even before any worker has woken up. */
    uint64_t finished = atomic_load_explicit(&p->env.relay.stats->slots[w->ctx.slot].finished,
                                             memory_order_relaxed);
    return w->submitted >= finished ? w->submitted - finished : 0;
}

static bool push(worker *w, const cg__handoff *h)
{
    uv_mutex_lock(&w->lock);
    bool ok = !w->stopping && cg__handoff_push(&w->ring, h);
    uv_mutex_unlock(&w->lock);
    /* Outside the lock is fine: only this thread (the control thread) ever
     * sets stopping, so the handle cannot be closing yet. */
    if (ok)
        uv_async_send(&w->wake);
    return ok;
}

/* cg__pool_submit: queue fd (non-blocking) on the least-loaded worker and
 * wake it. Owns fd and the route reference from here on: on failure
 * (CG_ERANGE, every queue full; CG_EINVAL, unknown listener) the socket is
 * reset and the reference dropped, but the admission count and hold are
 * left alone: the caller that took the place gives it back, and releases
 * the hold. Control thread. */
int cg__pool_submit(cg__pool *p, cg_socket_t fd, const struct sockaddr *peer, cg__route *route,
                    void *hold, unsigned *chosen)
{
    if (route->listener >= p->env.relay.nlisteners) {
        cg_socket_close_reset(fd);
        cg__route_unref(route);
        return CG_EINVAL;
    }

    /* Least loaded first; equal loads go round robin from p->next. */
    unsigned best = cg__handoff_pick(p->n, p->next, load_of, p);
    cg__handoff h = cg__handoff_make(fd, peer, route, hold);
    for (unsigned k = 0; k < p->n; k++) {
        unsigned i = (best + k) % p->n; /* the chosen one, or any with room */
        worker *w = &p->w[i];
        if (w->is_inline && !w->closing) {
            w->submitted++;
            p->next = i + 1;
            if (chosen != NULL)
                *chosen = i;
            count_handled(w);
            cg__relay_start(&w->ctx, fd, h.peer.sa.sa_family != 0 ? &h.peer : NULL, route, hold);
            return 0;
        }
        if (!w->is_inline && push(w, &h)) {
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

/* cg__pool_sweep: see worker.h. */
void cg__pool_sweep(cg__pool *p)
{
    for (unsigned i = 0; p != NULL && i < p->n; i++) {
        worker *w = &p->w[i];
        if (w->is_inline) {
            if (!w->closing)
                cg__relay_sweep(&w->ctx);
            continue;
        }
        atomic_store_explicit(&w->sweep, true, memory_order_release);
        uv_mutex_lock(&w->lock);
        bool stopping = w->stopping;
        uv_mutex_unlock(&w->lock);
        if (!stopping)
            uv_async_send(&w->wake);
    }
}

/* cg__pool_close: make every worker reset what is still queued and close
 * every open connection (with a reset), and join the worker threads. Those
 * closes are counted (closed, finished, admission) like any other. The
 * inline worker's connections finish closing on the inline loop. Accepts
 * NULL; a second call does nothing. Control thread. */
void cg__pool_close(cg__pool *p)
{
    if (p == NULL)
        return;
    for (unsigned i = 0; i < p->n; i++) {
        worker *w = &p->w[i];
        if (w->is_inline && !w->closing) {
            w->closing = true;
            cg__relay_close_all(&w->ctx);
        }
        if (!w->running)
            continue;
        /* Send under the lock: the worker closes its async handle only
         * after it has seen the flag, so this send cannot race that close. */
        uv_mutex_lock(&w->lock);
        w->stopping = true;
        uv_async_send(&w->wake);
        uv_mutex_unlock(&w->lock);
    }
    for (unsigned i = 0; i < p->n; i++) {
        worker *w = &p->w[i];
        if (w->running) {
            uv_thread_join(&w->thread);
            w->running = false;
        }
    }
}

/* cg__pool_free: free a closed pool (cg__pool_close). An inline worker's
 * connections must be gone: its loop has run every close callback since.
 * Accepts NULL. Control thread. */
void cg__pool_free(cg__pool *p)
{
    if (p == NULL)
        return;
    for (unsigned i = 0; i < p->n; i++)
        destroy_worker(&p->w[i]);
    free(p->w);
    free(p);
}

/* cg__pool_stop: cg__pool_close, then cg__pool_free. Only for a pool
 * without an inline worker, or whose inline worker has no connection.
 * Accepts NULL. Control thread. */
void cg__pool_stop(cg__pool *p)
{
    cg__pool_close(p);
    cg__pool_free(p);
}

/* cg__pool_accepts: libuv's workers do not accept: the control thread
 * does, and submits. */
bool cg__pool_accepts(void)
{
    return false;
}

/* cg__pool_listening: no worker listens here. */
bool cg__pool_listening(cg__pool *p)
{
    (void)p;
    return false;
}

/* cg__pool_unlisten: nothing to stop: no worker listens. */
void cg__pool_unlisten(cg__pool *p)
{
    (void)p;
}

/* cg__pool_size: the number of workers (0 for NULL). Any thread. */
unsigned cg__pool_size(const cg__pool *p)
{
    return p != NULL ? p->n : 0;
}
