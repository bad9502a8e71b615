/* intake.c — waiting for PROXY headers on the control loop: peek, parse,
 * read exactly the header, hand on or reset. */
#include "intake.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sys.h"

typedef struct waiter waiter;

struct waiter {
    waiter *prev, *next; /* the intake's waiting list */
    cg__intake *in;
    size_t listener;
    cg_socket_t fd; /* CG_INVALID_SOCKET once handed on or reset */
    unsigned accept;
    unsigned handles; /* poll and timer not yet closed */
    uv_poll_t poll;
    uv_timer_t timer;
    struct sockaddr_storage sender;
    size_t have;               /* header bytes read off the socket so far */
    uint8_t buf[CG_PROXY_MAX]; /* those bytes, then what a peek shows */
};

struct cg__intake {
    uv_loop_t *loop;
    cg__intake_hooks hooks;
    size_t max, waiting;
    waiter *list;
    bool closed;
};

int cg__intake_new(uv_loop_t *loop, size_t max, const cg__intake_hooks *hooks, cg__intake **out)
{
    cg__intake *in = calloc(1, sizeof(*in));
    if (in == NULL)
        return CG_ENOMEM;
    in->loop = loop;
    in->hooks = *hooks;
    in->max = max;
    *out = in;
    return 0;
}

size_t cg__intake_waiting(const cg__intake *in)
{
    return in != NULL ? in->waiting : 0;
}

static void on_closed(uv_handle_t *h)
{
    waiter *w = h->data;
    if (--w->handles == 0)
        free(w);
}

/* Leave the list and close the handles; the socket is someone else's now
 * (or reset) and the memory goes with the last close callback. */
static void finish(waiter *w)
{
    cg__intake *in = w->in;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        in->list = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    in->waiting--;
    uv_close((uv_handle_t *)&w->poll, on_closed);
    uv_close((uv_handle_t *)&w->timer, on_closed);
}

static void give_up(waiter *w, const char *why)
{
    uv_poll_stop(&w->poll); /* before the socket goes: never poll a closed fd */
    cg_socket_close_reset(w->fd);
    w->fd = CG_INVALID_SOCKET;
    struct sockaddr_storage sender = w->sender;
    size_t l = w->listener;
    cg__intake *in = w->in;
    finish(w);
    in->hooks.failed(in->hooks.arg, l, (const struct sockaddr *)&sender, why);
}

/* What has come so far on fd: the *have header bytes read off into buf
 * (CG_PROXY_MAX bytes), then a peek at what follows. Returns the parse, or
 * CG__PROXY_BAD with why set. */
static cg__proxy_status step(cg_socket_t fd, uint8_t *buf, size_t *have, unsigned accept,
                             cg__proxy_hdr *h, const char **why)
{
    int n = cg__sys_recv(fd, buf + *have, CG_PROXY_MAX - *have, true);
    if (n == CG_EAGAIN)
        return CG__PROXY_MORE;
    if (n <= 0) {
        *why = n == 0 ? "the sender closed before a whole header" : "read error";
        return CG__PROXY_BAD;
    }
    cg__proxy_status st = cg__proxy_parse(buf, *have + (size_t)n, accept, h);
    if (st == CG__PROXY_BAD) {
        *why = h->why != NULL ? h->why : "not a PROXY header";
        return st;
    }
    /* All the bytes of a valid beginning are header bytes: read them off,
     * or level-triggered readiness would wake us for them again and again;
     * of a whole header, exactly its own bytes. */
    size_t take = st == CG__PROXY_DONE ? h->len - *have : (size_t)n;
    int got = cg__sys_recv(fd, buf + *have, take, false);
    if (got != (int)take) {
        *why = "read error";
        return CG__PROXY_BAD;
    }
    *have += take;
    return st;
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    waiter *w = p->data;
    const char *why = "read error";
    cg__proxy_hdr h;
    (void)events;
    cg__proxy_status st =
        status < 0 ? CG__PROXY_BAD : step(w->fd, w->buf, &w->have, w->accept, &h, &why);
    if (st == CG__PROXY_MORE)
        return;
    if (st == CG__PROXY_BAD) {
        give_up(w, why);
        return;
    }
    cg_socket_t fd = w->fd;
    struct sockaddr_storage sender = w->sender;
    size_t l = w->listener;
    cg__intake *in = w->in;
    w->fd = CG_INVALID_SOCKET;
    uv_poll_stop(&w->poll); /* off this loop's poller before anyone else takes fd */
    finish(w);
    in->hooks.header(in->hooks.arg, l, fd, (const struct sockaddr *)&sender, &h);
}

static void on_timeout(uv_timer_t *t)
{
    give_up(t->data, "no whole header within proxy_timeout_ms");
}

int cg__intake_add(cg__intake *in, size_t l, cg_socket_t fd, const struct sockaddr *sender,
                   unsigned accept, uint32_t timeout_ms)
{
    if (in->closed || in->waiting >= in->max) {
        cg_socket_close_reset(fd);
        return CG_ERANGE;
    }
    /* A load balancer sends its header at once, so it is usually there by
     * the time the caller is accepted: take it now, with no poll, timer or
     * memory of our own. */
    uint8_t first[CG_PROXY_MAX];
    size_t have = 0;
    const char *why = NULL;
    cg__proxy_hdr h;
    cg__proxy_status st = step(fd, first, &have, accept, &h, &why);
    if (st == CG__PROXY_DONE) {
        in->hooks.header(in->hooks.arg, l, fd, sender, &h);
        return 0;
    }
    if (st == CG__PROXY_BAD) {
        cg_socket_close_reset(fd);
        in->hooks.failed(in->hooks.arg, l, sender, why);
        return 0;
    }
    waiter *w = calloc(1, sizeof(*w));
    if (w == NULL || uv_poll_init_socket(in->loop, &w->poll, (uv_os_sock_t)fd) != 0) {
        free(w);
        cg_socket_close_reset(fd);
        return CG_ENOMEM;
    }
    uv_timer_init(in->loop, &w->timer);
    w->handles = 2;
    w->poll.data = w->timer.data = w;
    w->in = in;
    w->listener = l;
    w->fd = fd;
    w->accept = accept;
    memcpy(w->buf, first, have); /* a valid beginning, read off already */
    w->have = have;
    memcpy(&w->sender, sender,
           sender->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    w->next = in->list;
    if (in->list != NULL)
        in->list->prev = w;
    in->list = w;
    in->waiting++;
    uv_poll_start(&w->poll, UV_READABLE, on_readable);
    uv_timer_start(&w->timer, on_timeout, timeout_ms, 0);
    return 0;
}

void cg__intake_close(cg__intake *in)
{
    if (in == NULL || in->closed)
        return;
    in->closed = true;
    while (in->list != NULL) {
        waiter *w = in->list;
        uv_poll_stop(&w->poll);
        cg_socket_close_reset(w->fd);
        w->fd = CG_INVALID_SOCKET;
        finish(w);
    }
}

void cg__intake_free(cg__intake *in)
{
    free(in);
}
