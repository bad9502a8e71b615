/* listener.c — the accept loop of one listening socket.
 *
 * Listener life:
 *
 *     OPEN ──(poll readable)──► ACCEPTING ──(backlog empty)──► OPEN
 *       │  ▲                        │
 *       │  └──(pause timer fires)── PAUSED ◄──(out of descriptors)
 *       └──(cg__listener_close)──► CLOSED
 */
#include "listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inherit.h"
#include "log.h"
#include "sys.h"

/* Callers taken per readiness event before other listeners get a turn. */
#define ACCEPT_BATCH 256
/* Pause after running out of descriptors. */
#define EMFILE_PAUSE_MS 100

typedef enum listener_state {
    L_OPEN,
    L_PAUSED,
    L_CLOSED,
} listener_state;

struct cg__listener {
    size_t index;
    cg__listener_hooks hooks;
    cg_socket_t fd;
    cg_acceptor *acceptor;
    uv_poll_t poll;
    uv_timer_t timer; /* deferred callers and the EMFILE pause */
    bool poll_init, timer_init;
    listener_state state;
    cg__judgement last; /* the judge's word on the caller just offered */
    bool bare;          /* the workers accept from it: no acceptor, no poll */
    cg_socket_t held;   /* bare: the socket, open until cg__listener_free */
    /* Another process holds the socket too (systemd, or the condgate that
     * took over): closing must not take it out of LISTEN. */
    bool shared;
};

static void on_readable(uv_poll_t *h, int status, int events);

static cg_verdict condition(const struct sockaddr *caller, socklen_t caller_len,
                            const struct sockaddr *callee, socklen_t callee_len, void *arg)
{
    cg__listener *l = arg;
    (void)caller_len;
    (void)callee;
    (void)callee_len;
    return l->hooks.judge(l->hooks.arg, l->index, caller, &l->last) ? CG_ACCEPT : CG_REJECT;
}

static void on_timer(uv_timer_t *t)
{
    cg__listener *l = t->data;
    if (l->state == L_PAUSED) {
        l->state = L_OPEN;
        uv_poll_start(&l->poll, UV_READABLE, on_readable);
    }
    on_readable(&l->poll, 0, UV_READABLE);
}

static void arm_defer_timer(cg__listener *l)
{
    int64_t due = cg_acceptor_next_due_ms(l->acceptor);
    if (due >= 0 && l->state == L_OPEN)
        uv_timer_start(&l->timer, on_timer, (uint64_t)due, 0);
}

static void pause_listener(cg__listener *l)
{
    l->state = L_PAUSED;
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->timer, on_timer, EMFILE_PAUSE_MS, 0);
}

/* One offer's outcome. Returns false when the batch should end. */
static bool take_one(cg__listener *l)
{
    cg_socket_t fd;
    cg_accept_result res;
    int rc = cg_acceptor_accept(l->acceptor, &fd, &res);

    switch (rc) {
    case 0:
        l->hooks.admitted(l->hooks.arg, l->index, fd, &res, &l->last);
        return true;
    case CG_EREJECTED:
        if (res.timed_out)
            l->last = (cg__judgement){
                .stage = CG__STAGE_LIMIT, .reason = CG__REJ_LIMIT, .rule = CG_RULE_NONE};
        l->hooks.refused(l->hooks.arg, l->index, &res, &l->last);
        return true;
    case CG_EDEFERRED:
    case CG_ECONNABORTED:
        return true;
    case CG_EMFILE:
        l->hooks.shed(l->hooks.arg, l->index);
        pause_listener(l);
        return false;
    default:
        return false; /* CG_EAGAIN or an unexpected error: wait for readiness */
    }
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    cg__listener *l = h->data;
    (void)status;
    (void)events;
    if (l->state != L_OPEN)
        return;
    for (int i = 0; i < ACCEPT_BATCH && l->state == L_OPEN; i++)
        if (!take_one(l))
            break;
    arm_defer_timer(l);
}

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

/* A listener object with its listening socket and nothing else. */
static int open_socket(const char *name, const cg_endpoint *bind, bool conditional,
                       cg__listener **out, char *err, size_t errlen)
{
    char why[256];
    cg__listener *l = calloc(1, sizeof(*l));
    *out = l;
    if (l == NULL) {
        snprintf(err, errlen, "listener '%s': out of memory", name);
        return CG_ENOMEM;
    }
    l->fd = l->held = CG_INVALID_SOCKET;
    l->state = L_CLOSED;
    cg__inherit_from from;
    int rc = cg__inherit_take(name, bind, &l->fd, &from, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "listener '%s': %s", name, why);
        return rc;
    }
    if (rc == 1) {
        l->shared = true;
        cg__log_event(CG_LOG_INFO, "listen_inherited", "listener", name, "bind", bind->text,
                      "from", cg__inherit_from_name(from), NULL);
        return 0;
    }
    rc = cg__sys_listen((const struct sockaddr *)&bind->addr, bind->addrlen, conditional,
                            &l->fd, why, sizeof(why));
    if (rc != 0)
        snprintf(err, errlen, "listener '%s': cannot listen on %s: %s", name, bind->text, why);
    return rc;
}

int cg__listener_open_bare(const char *name, const cg_endpoint *bind, bool conditional,
                           cg__listener **out, char *err, size_t errlen)
{
    int rc = open_socket(name, bind, conditional, out, err, errlen);
    if (rc == 0) {
        (*out)->bare = true;
        (*out)->held = (*out)->fd;
    }
    return rc;
}

int cg__listener_open(uv_loop_t *loop, const char *name, const cg_endpoint *bind, size_t index,
                      bool conditional, const cg__listener_hooks *hooks, cg__listener **out,
                      char *err, size_t errlen)
{
    int rc = open_socket(name, bind, conditional, out, err, errlen);
    cg__listener *l = *out;
    if (rc != 0)
        return rc;
    l->index = index;
    l->hooks = *hooks;
    cg_accept_opts opts;
    cg_accept_opts_default(&opts);
    if ((rc = cg_acceptor_new(l->fd, condition, l, &opts, &l->acceptor)) != 0) {
        snprintf(err, errlen, "listener '%s': %s", name, cg_strerror(rc));
        return rc;
    }
    l->poll_init = uv_poll_init_socket(loop, &l->poll, l->fd) == 0;
    l->timer_init = uv_timer_init(loop, &l->timer) == 0;
    if (!l->poll_init || !l->timer_init) {
        snprintf(err, errlen, "listener '%s': cannot watch the socket", name);
        return CG_ESYS;
    }
    l->poll.data = l->timer.data = l;
    l->state = L_OPEN;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    return 0;
}

cg_socket_t cg__listener_fd(const cg__listener *l)
{
    return l->fd;
}

void cg__listener_share(cg__listener *l)
{
    if (l != NULL)
        l->shared = true;
}

void cg__listener_close(cg__listener *l)
{
    if (l == NULL || l->fd == CG_INVALID_SOCKET)
        return;
    l->state = L_CLOSED;
    if (l->bare) {
        /* Workers may be in accept(2) on it right now: stop it listening
         * (new callers are refused, queued ones reset) and close it only
         * once the workers are gone, in cg__listener_free. A shared socket
         * keeps listening for its other holder, which takes the queue. */
        if (!l->shared)
            cg__sys_stop_listening(l->fd);
        l->fd = CG_INVALID_SOCKET;
        return;
    }
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
    cg__sys_close_socket(l->fd);
    l->fd = CG_INVALID_SOCKET;
}

void cg__listener_free(cg__listener *l)
{
    if (l != NULL && l->held != CG_INVALID_SOCKET)
        cg__sys_close_socket(l->held);
    free(l);
}
