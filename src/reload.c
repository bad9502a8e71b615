/* reload.c — reloads in the libuv thread pool, and the threads that wait
 * for them.
 *
 * A request from another thread is a waiter on the `waiting` list, under
 * lock, and a wake-up of the control loop. The loop moves the list to
 * `current` as it starts a load, so every waiter is answered by a load that
 * began after it asked.
 */
#include "reload.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* A thread waiting for a reload. Lives on that thread's stack. */
typedef struct waiter {
    struct waiter *next;
    uv_cond_t cond;
    bool done;
    int rc;
    uint64_t generation;
    char err[CG_ERR_MAX];
} waiter;

struct cg__reloader {
    uv_loop_t *loop;
    char *path;
    cg__stats *stats;
    cg__reload_hooks hooks;
    uv_async_t wake; /* requests from other threads */
    bool wake_open;

    uv_work_t work;
    bool running;
    bool again;     /* a SIGHUP came in while one was running */
    bool stopping;  /* control thread: start no more */
    void *prepared; /* what prepare made of the loaded configuration */
    int load_rc;
    char load_err[CG_ERR_MAX];

    uv_mutex_t lock; /* guards waiting, closed */
    waiter *waiting; /* for the next load to start */
    bool closed;     /* no request may wait any more */
    waiter *current; /* for the running load (control thread) */
};

static void finish_waiters(cg__reloader *r, waiter *list, int rc, uint64_t gen, const char *err)
{
    uv_mutex_lock(&r->lock);
    while (list != NULL) {
        waiter *next = list->next;
        list->rc = rc;
        list->generation = gen;
        snprintf(list->err, sizeof(list->err), "%s", err);
        list->done = true;
        uv_cond_signal(&list->cond);
        list = next;
    }
    uv_mutex_unlock(&r->lock);
}

static waiter *take_waiting(cg__reloader *r)
{
    uv_mutex_lock(&r->lock);
    waiter *w = r->waiting;
    r->waiting = NULL;
    uv_mutex_unlock(&r->lock);
    return w;
}

static void load_work(uv_work_t *w)
{
    cg__reloader *r = w->data;
    cg_config *cfg = NULL;
    r->prepared = NULL;
    r->load_err[0] = '\0';
    r->load_rc = cg_config_load(r->path, &cfg, r->load_err, sizeof(r->load_err));
    if (r->load_rc == 0)
        r->load_rc =
            r->hooks.prepare(r->hooks.arg, cfg, &r->prepared, r->load_err, sizeof(r->load_err));
}

static void start_load(cg__reloader *r);

static void log_outcome(cg__reloader *r, int rc, uint64_t number, const char *err)
{
    char gs[24];
    snprintf(gs, sizeof(gs), "%" PRIu64, number);
    if (rc == 0) {
        atomic_fetch_add(&r->stats->reloads, 1);
        atomic_store(&r->stats->last_reload_ok, true);
        cg__log_event(CG_LOG_INFO, "reload", "result", "ok", "generation", gs, NULL);
    } else {
        atomic_fetch_add(&r->stats->reload_failures, 1);
        atomic_store(&r->stats->last_reload_ok, false);
        cg__log_event(CG_LOG_ERROR, "reload", "result", "failed", "generation", gs, "error", err,
                      NULL);
    }
}

static void load_done(uv_work_t *w, int status)
{
    cg__reloader *r = w->data;
    char err[CG_ERR_MAX] = "";
    int rc = r->load_rc;
    uint64_t number = 0;

    /* uv_queue_work's work ran (or was cancelled before it ran, leaving
     * nothing prepared); apply takes what it prepared either way. */
    if (status != 0) {
        rc = CG_ESYS;
        snprintf(err, sizeof(err), "%s: reload cancelled", r->path);
    } else if (rc != 0) {
        snprintf(err, sizeof(err), "%s", r->load_err);
    } else {
        rc = r->hooks.apply(r->hooks.arg, r->prepared, &number, err, sizeof(err));
    }
    r->prepared = NULL;
    if (rc != 0)
        number = r->hooks.generation(r->hooks.arg);
    log_outcome(r, rc, number, err);
    if (r->hooks.phase != NULL)
        r->hooks.phase(r->hooks.arg, false, rc);

    waiter *done = r->current;
    r->current = NULL;
    r->running = false;
    finish_waiters(r, done, rc, number, err);

    uv_mutex_lock(&r->lock);
    bool more = r->waiting != NULL;
    uv_mutex_unlock(&r->lock);
    if ((more || r->again) && !r->stopping)
        start_load(r);
}

static void start_load(cg__reloader *r)
{
    if (r->running) {
        r->again = true;
        return;
    }
    r->again = false;
    r->current = take_waiting(r);
    r->running = true;
    r->work.data = r;
    if (r->hooks.phase != NULL)
        r->hooks.phase(r->hooks.arg, true, 0);
    if (uv_queue_work(r->loop, &r->work, load_work, load_done) != 0) {
        if (r->hooks.phase != NULL)
            r->hooks.phase(r->hooks.arg, false, CG_ESYS);
        r->running = false;
        waiter *w = r->current;
        r->current = NULL;
        finish_waiters(r, w, CG_ESYS, r->hooks.generation(r->hooks.arg),
                       "reload could not be started");
    }
}

static void on_wake(uv_async_t *a)
{
    cg__reloader *r = a->data;
    uv_mutex_lock(&r->lock);
    bool want = r->waiting != NULL;
    uv_mutex_unlock(&r->lock);
    if (!want)
        return;
    if (r->stopping) {
        finish_waiters(r, take_waiting(r), CG_EAGAIN, r->hooks.generation(r->hooks.arg),
                       "the gate is stopping");
        return;
    }
    start_load(r);
}

int cg__reloader_new(uv_loop_t *loop, const char *path, cg__stats *stats,
                     const cg__reload_hooks *hooks, cg__reloader **out)
{
    cg__reloader *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->path = strdup(path)) == NULL) {
        free(r);
        return CG_ENOMEM;
    }
    r->loop = loop;
    r->stats = stats;
    r->hooks = *hooks;
    if (uv_mutex_init(&r->lock) != 0) {
        free(r->path);
        free(r);
        return CG_ESYS;
    }
    if (uv_async_init(loop, &r->wake, on_wake) != 0) {
        uv_mutex_destroy(&r->lock);
        free(r->path);
        free(r);
        return CG_ESYS;
    }
    r->wake.data = r;
    r->wake_open = true;
    *out = r;
    return 0;
}

void cg__reloader_request(cg__reloader *r)
{
    if (!r->stopping)
        start_load(r);
}

int cg__reloader_wait(cg__reloader *r, uint64_t *generation, char *err, size_t errlen)
{
    waiter w;
    memset(&w, 0, sizeof(w));
    if (uv_cond_init(&w.cond) != 0) {
        snprintf(err, errlen, "out of resources");
        return CG_ENOMEM;
    }
    uv_mutex_lock(&r->lock);
    if (r->closed) {
        uv_mutex_unlock(&r->lock);
        uv_cond_destroy(&w.cond);
        snprintf(err, errlen, "the gate is stopping");
        return CG_EAGAIN;
    }
    w.next = r->waiting;
    r->waiting = &w;
    /* Under the lock: cg__reloader_close closes the async handle only after
     * setting `closed` under the same lock. */
    uv_async_send(&r->wake);
    while (!w.done)
        uv_cond_wait(&w.cond, &r->lock);
    uv_mutex_unlock(&r->lock);
    uv_cond_destroy(&w.cond);
    if (generation != NULL)
        *generation = w.generation;
    if (w.rc != 0)
        snprintf(err, errlen, "%s", w.err);
    return w.rc;
}

void cg__reloader_stop(cg__reloader *r)
{
    r->stopping = true;
}

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

void cg__reloader_close(cg__reloader *r)
{
    if (r == NULL || !r->wake_open)
        return;
    r->stopping = true;
    uv_mutex_lock(&r->lock);
    r->closed = true;
    waiter *waiting = r->waiting;
    r->waiting = NULL;
    uv_mutex_unlock(&r->lock);
    finish_waiters(r, waiting, CG_EAGAIN, r->hooks.generation(r->hooks.arg),
                   "the gate is stopping");
    uv_close((uv_handle_t *)&r->wake, on_closed_noop);
    r->wake_open = false;
}

void cg__reloader_free(cg__reloader *r)
{
    if (r == NULL)
        return;
    uv_mutex_destroy(&r->lock);
    free(r->path);
    free(r);
}
