/* unix/ep_relay.c — one relayed connection's life on a Linux worker's own
 * epoll loop: backend connect with one failover, byte relay with
 * backpressure, half-close, idle timeout, and a single teardown path that
 * counts and logs the close. The same life as relay.c's, in fewer system
 * calls: per exchange two epoll_ctl (one per socket, for good), no
 * ioctl(FIONBIO) or getsockopt(SO_ERROR) on success, no read that only
 * learns EAGAIN after a short one, and no EPOLL_CTL_DEL at the close.
 *
 * Memory per connection is bounded as in relay.c: reads land in the
 * worker's shared buffer and are sent on at once; only what the peer would
 * not take is copied into a pending chunk, and the source is not read again
 * until that chunk is sent. An idle connection holds no buffer, a busy one
 * at most one chunk (< CG_RELAY_BUF_SIZE) per direction.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif

#include "ep_relay.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "log.h"
#include "proxy_proto.h"

/* A connection's state (as relay.c's).
 *
 *   cg__ep_relay_start ──backend──► CONNECTING ──connected──► RELAYING
 *          │                            │                        │
 *          └──echo──► RELAYING          │ every attempt failed   │ both directions
 *                         │             │ stop                   │ done, I/O error,
 *                         ▼             ▼                        ▼ idle, stop
 *                      CLOSED ◄─────────┴────────────────────────┘
 *                         │ end of the turn
 *                         ▼
 *                       freed
 */
typedef enum conn_state {
    C_CONNECTING = 0,
    C_RELAYING = 1,
    C_CLOSED = 2,
} conn_state;

static const char *conn_state_name(conn_state s)
{
    switch (s) {
    case C_CONNECTING:
        return "connecting";
    case C_RELAYING:
        return "relaying";
    case C_CLOSED:
        return "closing";
    default:
        return "unknown";
    }
}

enum {
    RESET_CLIENT = 1u << 0,
    RESET_BACKEND = 1u << 1,
    RESET_BOTH = RESET_CLIENT | RESET_BACKEND,
};

#define MAX_ATTEMPTS 2
/* Reads one flow makes per turn before the other connections get theirs. */
#define READS_PER_TURN 8
/* Every socket is watched for everything, once, edge-triggered. */
#define WATCH_ALL (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

#if defined(__SANITIZE_ADDRESS__)
#define SPARE_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPARE_MAX 0
#endif
#endif
#ifndef SPARE_MAX
#define SPARE_MAX 256
#endif

/* One socket of a connection and what epoll last said of it. */
typedef struct side {
    cg__ep_watch w; /* first: the epoll data points here */
    cg__ep_conn *c;
    int fd;        /* -1 once closed */
    bool readable; /* an edge said so and no read has drained it yet */
    bool hup;      /* the peer's FIN (or a reset) is there: read on to 0 */
    bool writable; /* not known to be full */
} side;

/* Bytes flowing one way. With echo the up flow has src == dst == client. */
typedef struct flow {
    side *src, *dst;
    char *pending; /* what dst would not take; NULL when nothing waits */
    size_t off, len;
    bool eof;  /* src said EOF */
    bool done; /* EOF passed on: dst shut down for writing */
} flow;

struct cg__ep_conn {
    cg__ep_conn *prev, *next; /* ctx->live; next: ctx->closed, ctx->spare */
    cg__ep_conn *post_next;   /* ctx->posted */
    bool posted;
    cg__ep_relay_ctx *ctx;
    cg__route *route; /* NULL once closed */
    size_t listener;
    conn_state state;
    bool echo;
    side client, backend;
    cg__ep_timer timer; /* connect timeout while CONNECTING, idle after */
    unsigned attempts, max_attempts;
    size_t first;
    int errs[MAX_ATTEMPTS]; /* negative errno, as libuv's codes on Linux */
    flow up, down;
    uint64_t started_ms, last_ms;
    uint64_t bytes_in, bytes_out;
    cg__peer peer;
    void *hold;
};

static void pump(cg__ep_conn *c);
static void connect_next(cg__ep_conn *c);

#define CONN_OF_TIMER(t) ((cg__ep_conn *)((char *)(t)-offsetof(cg__ep_conn, timer)))

static cg__lstats *lstats_of(const cg__ep_relay_ctx *ctx, size_t listener)
{
    return cg__lstats_of(ctx->env->stats, ctx->slot, listener);
}

/* The clock, fresh: a turn may start many connections while time passes,
 * and the idle timeout counts from the last byte, not from the turn. */
static uint64_t now_ms(cg__ep_relay_ctx *ctx)
{
    cg__ep_update_time(ctx->ep);
    return ctx->ep->now_ms;
}

static void account_close(cg__ep_relay_ctx *ctx, size_t listener, void *hold)
{
    cg__relay_account_close(ctx->env, ctx->slot, listener, hold);
}

/* ------------------------------------------------------------------------
 * Connection objects
 */

static cg__ep_conn *conn_alloc(cg__ep_relay_ctx *ctx)
{
    cg__ep_conn *c = ctx->spare;
    if (c == NULL)
        return calloc(1, sizeof(*c));
    ctx->spare = c->next;
    ctx->nspare--;
    memset(c, 0, sizeof(*c));
    return c;
}

static void conn_free(cg__ep_relay_ctx *ctx, cg__ep_conn *c)
{
    if (ctx->nspare + 1 > SPARE_MAX) {
        free(c);
        return;
    }
    c->next = ctx->spare;
    ctx->spare = c;
    ctx->nspare++;
}

static void unlink_live(cg__ep_conn *c)
{
    cg__ep_relay_ctx *ctx = c->ctx;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ctx->live = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    ctx->nlive--;
}

/* ------------------------------------------------------------------------
 * Teardown: every way out goes through conn_close, exactly once.
 */

static void close_side(side *s, bool reset)
{
    if (s->fd < 0)
        return;
    if (reset)
        cg_socket_close_reset(s->fd);
    else
        close(s->fd);
    s->fd = -1;
}

static void log_close(cg__ep_conn *c, conn_state was, const char *reason, int err)
{
    if (!cg__log_enabled(CG_LOG_DEBUG))
        return;
    const cg__relay_tally t = {.listener = c->listener,
                               .peer = &c->peer,
                               .bytes_in = c->bytes_in,
                               .bytes_out = c->bytes_out,
                               .duration_ms = now_ms(c->ctx) - c->started_ms};
    cg__relay_log_close(c->ctx->env, &t, conn_state_name(was), reason, err);
}

/* The single teardown path: close both sockets (resetting the sides named
 * in `reset`; close(2) ends their epoll watches), free what was pending,
 * count and log the close, drop the route. The object itself is freed at
 * the end of the turn, when no event of the turn can point at it. */
static void conn_close(cg__ep_conn *c, unsigned reset, const char *reason, int err)
{
    cg__ep_relay_ctx *ctx = c->ctx;
    if (c->state == C_CLOSED)
        return;
    conn_state was = c->state;
    c->state = C_CLOSED;
    cg__timer_stop(ctx->ep, &c->timer);
    close_side(&c->client, reset & RESET_CLIENT);
    close_side(&c->backend, reset & RESET_BACKEND);
    free(c->up.pending);
    free(c->down.pending);
    c->up.pending = c->down.pending = NULL;
    log_close(c, was, reason, err);
    account_close(ctx, c->listener, c->hold);
    c->hold = NULL;
    cg__route_unref(c->route);
    c->route = NULL;
    unlink_live(c);
    c->next = ctx->closed;
    ctx->closed = c;
}

/* An I/O error on one side: that side is dead already, so close it plainly
 * and reset the other one. err is a negative errno. */
static void fail(cg__ep_conn *c, const side *s, int err)
{
    if (s == &c->client)
        conn_close(c, RESET_BACKEND, "client_error", err);
    else
        conn_close(c, RESET_CLIENT, "backend_error", err);
}

/* ------------------------------------------------------------------------
 * Relaying
 */

static void count_written(cg__ep_conn *c, const flow *f, size_t n)
{
    if (f->dst == &c->client && n > 0) {
        c->bytes_out += n;
        cg__stat_add(&lstats_of(c->ctx, c->listener)->bytes_out, n);
    }
}

/* send(2) what it takes of data; returns the count (0 when dst is full) or
 * a negative errno. */
static ssize_t send_some(side *dst, const char *data, size_t n)
{
    for (;;) {
        ssize_t w = send(dst->fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w >= 0) {
            if ((size_t)w < n)
                dst->writable = false; /* full: the next edge says when */
            return w;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            dst->writable = false;
            return 0;
        }
        return -errno;
    }
}

/* Send what is pending on f. Returns true once nothing is pending. */
static bool flush(cg__ep_conn *c, flow *f)
{
    ssize_t w = send_some(f->dst, f->pending + f->off, f->len - f->off);
    if (w < 0) {
        fail(c, f->dst, (int)w);
        return false;
    }
    count_written(c, f, (size_t)w);
    f->off += (size_t)w;
    if (f->off < f->len)
        return false;
    free(f->pending);
    f->pending = NULL;
    f->off = f->len = 0;
    c->last_ms = now_ms(c->ctx);
    return true;
}

/* Pass n bytes just read on to f->dst; keep what it would not take. */
static void forward(cg__ep_conn *c, flow *f, const char *data, size_t n)
{
    ssize_t w = f->dst->writable ? send_some(f->dst, data, n) : 0;
    if (w < 0) {
        fail(c, f->dst, (int)w);
        return;
    }
    count_written(c, f, (size_t)w);
    size_t rest = n - (size_t)w;
    if (rest == 0)
        return;
    f->pending = malloc(rest);
    if (f->pending == NULL) {
        conn_close(c, RESET_BOTH, "no_memory", UV_ENOMEM);
        return;
    }
    memcpy(f->pending, data + w, rest);
    f->off = 0;
    f->len = rest;
}

/* src said EOF and everything it sent is written: pass the EOF on. When the
 * other direction is done already, closing both sockets passes it on (every
 * byte either way was read up to the EOF, so no reset). */
static void finish_flow(cg__ep_conn *c, flow *f)
{
    const flow *other = f == &c->up ? &c->down : &c->up;
    f->done = true;
    if (other->done) {
        conn_close(c, 0, "eof", 0);
        return;
    }
    if (shutdown(f->dst->fd, SHUT_WR) != 0)
        fail(c, f->dst, UV_ENOTCONN); /* the peer reset the socket */
}

static void post(cg__ep_conn *c)
{
    if (c->posted)
        return;
    c->posted = true;
    c->post_next = c->ctx->posted;
    c->ctx->posted = c;
}

static void count_read(cg__ep_conn *c, const flow *f, size_t n)
{
    c->last_ms = now_ms(c->ctx);
    if (f == &c->up) {
        c->bytes_in += n;
        cg__stat_add(&lstats_of(c->ctx, c->listener)->bytes_in, n);
    }
}

/* Move what flow f can move now: what is pending first, then reads from
 * its source while it has bytes, its destination takes them and the turn's
 * share lasts. */
static void run_flow(cg__ep_conn *c, flow *f)
{
    cg__ep_relay_ctx *ctx = c->ctx;
    for (unsigned reads = 0; c->state == C_RELAYING;) {
        if (f->pending != NULL && (!f->dst->writable || !flush(c, f)))
            return;
        if (f->eof) {
            if (!f->done)
                finish_flow(c, f);
            return;
        }
        if (!f->src->readable)
            return;
        if (reads++ == READS_PER_TURN) {
            post(c);
            return;
        }
        ssize_t n = recv(f->src->fd, ctx->rbuf, CG_RELAY_BUF_SIZE, MSG_DONTWAIT);
        if (n > 0) {
            /* A short read drained the socket: new bytes bring a new edge,
             * and a FIN that came with these ones was flagged by this one. */
            if ((size_t)n < CG_RELAY_BUF_SIZE && !f->src->hup)
                f->src->readable = false;
            count_read(c, f, (size_t)n);
            forward(c, f, ctx->rbuf, (size_t)n);
        } else if (n == 0) {
            f->eof = true;
            f->src->readable = false;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            f->src->readable = false;
        } else if (errno != EINTR) {
            fail(c, f->src, -errno);
        }
    }
}

static void pump(cg__ep_conn *c)
{
    run_flow(c, &c->up);
    if (!c->echo && c->state == C_RELAYING)
        run_flow(c, &c->down);
}

/* The idle timeout: reads only stamp last_ms; the timer checks it when it
 * fires and re-arms for the rest ("more than idle + 1": the clock is read in
 * whole milliseconds, so never close before idle_timeout_ms). */
static void arm_idle(cg__ep_conn *c, uint64_t after_ms)
{
    if (cg__timer_start(c->ctx->ep, &c->timer, after_ms) != 0)
        conn_close(c, RESET_BOTH, "no_memory", UV_ENOMEM);
}

static void start_relaying(cg__ep_conn *c)
{
    uint32_t idle = c->route->idle_timeout_ms;
    c->state = C_RELAYING;
    c->last_ms = now_ms(c->ctx);
    if (idle > 0)
        arm_idle(c, (uint64_t)idle + 2);
    if (c->state == C_RELAYING)
        pump(c);
}

/* ------------------------------------------------------------------------
 * Backend connect: the round-robin choice, then the next backend once.
 */

static void backend_failed(cg__ep_conn *c)
{
    cg__relay_log_backend_failed(c->ctx->env, c->ctx->slot, c->listener, &c->peer, c->route,
                                 c->first, c->attempts, c->errs);
    conn_close(c, RESET_CLIENT, "connect_failed", c->attempts ? c->errs[c->attempts - 1] : 0);
}

static void attempt_failed(cg__ep_conn *c, int err)
{
    c->errs[c->attempts++] = err;
    cg__timer_stop(c->ctx->ep, &c->timer);
    /* A failed socket cannot connect again: the next attempt gets a new
     * one. Its watch goes with the close, and the side is reused only for
     * a new descriptor, whose events are its own. */
    close_side(&c->backend, false);
    if (c->attempts < c->max_attempts)
        connect_next(c);
    else
        backend_failed(c);
}

/* send_proxy: the backend hears first who the client is and which address
 * it came to; one small write on a fresh connection, whole or failed. */
static int send_header(cg__ep_conn *c)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    uint8_t hdr[CG_PROXY_WRITE_MAX];
    if (c->peer.sa.sa_family == 0 ||
        getsockname(c->client.fd, (struct sockaddr *)&local, &len) != 0)
        return UV_EINVAL;
    size_t n = cg__proxy_write(c->route->send_proxy, &c->peer.sa, (const struct sockaddr *)&local,
                               hdr, sizeof(hdr));
    if (n == 0)
        return UV_EINVAL;
    ssize_t w = send_some(&c->backend, (const char *)hdr, n);
    return w == (ssize_t)n ? 0 : w < 0 ? (int)w : UV_EAGAIN;
}

/* The backend socket's first events: connected (writable) or refused. */
static void on_connect_event(cg__ep_conn *c, uint32_t events)
{
    if (events & (EPOLLERR | EPOLLHUP)) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(c->backend.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr == 0)
            soerr = ECONNREFUSED;
        attempt_failed(c, -soerr);
        return;
    }
    if (!(events & EPOLLOUT))
        return;
    cg__timer_stop(c->ctx->ep, &c->timer);
    if (c->route->send_proxy != 0) {
        int err = send_header(c);
        if (err != 0) {
            conn_close(c, RESET_BOTH, "proxy_header_failed", err);
            return;
        }
    }
    start_relaying(c);
}

static void on_side_event(cg__ep_watch *w, uint32_t events)
{
    side *s = (side *)w;
    cg__ep_conn *c = s->c;
    if (c->state == C_CLOSED)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->hup = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        s->writable = true;
    if (c->state == C_CONNECTING) {
        /* The client's events wait, flagged, until the backend is there. */
        if (s == &c->backend)
            on_connect_event(c, events);
        return;
    }
    pump(c);
}

static void on_timer(cg__ep_timer *t)
{
    cg__ep_conn *c = CONN_OF_TIMER(t);
    if (c->state == C_CONNECTING) {
        attempt_failed(c, UV_ETIMEDOUT);
        return;
    }
    if (c->state != C_RELAYING)
        return;
    uint64_t idle = c->route->idle_timeout_ms;
    uint64_t quiet = now_ms(c->ctx) - c->last_ms;
    if (quiet > idle + 1)
        conn_close(c, 0, "idle", 0);
    else
        arm_idle(c, idle + 2 - quiet);
}

static void watch_side(cg__ep_conn *c, side *s, int fd)
{
    *s = (side){.w = {.fn = on_side_event}, .c = c, .fd = fd, .writable = true};
}

static void connect_next(cg__ep_conn *c)
{
    const cg__route *r = c->route;
    const cg_endpoint *ep = &r->backends[(c->first + c->attempts) % r->nbackends];
    const struct sockaddr *sa = (const struct sockaddr *)&ep->addr;
    int one = 1;

    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        attempt_failed(c, -errno);
        return;
    }
    watch_side(c, &c->backend, fd);
    c->backend.writable = false; /* until connected */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int err = 0;
    if (connect(fd, sa, ep->addrlen) != 0 && errno != EINPROGRESS)
        err = -errno;
    if (err == 0)
        err = cg__ep_add(c->ctx->ep, fd, WATCH_ALL, &c->backend.w);
    if (err != 0) {
        attempt_failed(c, err);
        return;
    }
    if (r->connect_timeout_ms > 0 &&
        cg__timer_start(c->ctx->ep, &c->timer, r->connect_timeout_ms) != 0)
        conn_close(c, RESET_BOTH, "no_memory", UV_ENOMEM);
}

/* Right after the connect: on loopback (and on a fast network) the backend
 * is often connected by the time connect(2) returns, and the client's first
 * bytes are often there already. Read them and send them on at once, which
 * saves the wake-up that would report both: a backend still connecting
 * answers EAGAIN, and the bytes wait as pending until it connects (or go to
 * the next backend if it fails). Not with send_proxy, whose header must go
 * first on a connected socket. */
static void speculate(cg__ep_conn *c)
{
    cg__ep_relay_ctx *ctx = c->ctx;
    ssize_t n = recv(c->client.fd, ctx->rbuf, CG_RELAY_BUF_SIZE, MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            fail(c, &c->client, -errno);
        return;
    }
    if (n == 0) {
        c->up.eof = true; /* passed on once the backend is there */
        return;
    }
    c->client.readable = (size_t)n == CG_RELAY_BUF_SIZE;
    count_read(c, &c->up, (size_t)n);
    c->backend.writable = true; /* a guess: send(2) tells */
    ssize_t w = send_some(&c->backend, ctx->rbuf, (size_t)n);
    int err = w < 0 ? (int)w : 0;
    w = w < 0 ? 0 : w;
    count_written(c, &c->up, (size_t)w);
    if ((size_t)w < (size_t)n) {
        c->up.pending = malloc((size_t)n - (size_t)w);
        if (c->up.pending == NULL) {
            conn_close(c, RESET_BOTH, "no_memory", UV_ENOMEM);
            return;
        }
        memcpy(c->up.pending, ctx->rbuf + w, (size_t)n - (size_t)w);
        c->up.off = 0;
        c->up.len = (size_t)n - (size_t)w;
    }
    if (err != 0) {
        attempt_failed(c, err); /* refused already: the bytes go to the next */
        return;
    }
    if (w == 0)
        return;                         /* still connecting: its EPOLLOUT will say */
    cg__timer_stop(ctx->ep, &c->timer); /* connected: it took bytes */
    start_relaying(c);
}

/* ------------------------------------------------------------------------
 * Entry points
 */

void cg__ep_relay_drop(cg__ep_relay_ctx *ctx, int fd, cg__route *route, void *hold)
{
    cg_socket_close_reset(fd);
    account_close(ctx, route->listener, hold);
    cg__route_unref(route);
}

/* A new connection object on ctx->live, for fd along route. */
static cg__ep_conn *conn_new(cg__ep_relay_ctx *ctx, int fd, const cg__peer *peer, cg__route *route,
                             void *hold)
{
    cg__ep_conn *c = conn_alloc(ctx);
    if (c == NULL)
        return NULL;
    c->ctx = ctx;
    c->route = route;
    c->hold = hold;
    c->listener = route->listener;
    c->next = ctx->live;
    if (ctx->live != NULL)
        ctx->live->prev = c;
    ctx->live = c;
    ctx->nlive++;
    c->started_ms = c->last_ms = now_ms(ctx);
    cg__timer_init(&c->timer, on_timer);
    watch_side(c, &c->client, fd);
    c->backend.fd = -1;
    if (peer != NULL) {
        c->peer = *peer;
    } else {
        socklen_t len = sizeof(c->peer);
        if (getpeername(fd, &c->peer.sa, &len) != 0)
            c->peer.sa.sa_family = 0;
    }
    return c;
}

void cg__ep_relay_start(cg__ep_relay_ctx *ctx, int fd, const cg__peer *peer, cg__route *route,
                        void *hold)
{
    cg__ep_conn *c = conn_new(ctx, fd, peer, route, hold);
    if (c == NULL) {
        cg__log_event(CG_LOG_ERROR, "error", "listener",
                      cg__relay_listener_name(ctx->env, route->listener), "message",
                      "out of memory: connection reset", NULL);
        cg__ep_relay_drop(ctx, fd, route, hold);
        return;
    }
    if (!ctx->env->accepted_nodelay) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    int err = cg__ep_add(ctx->ep, fd, WATCH_ALL, &c->client.w);
    if (err != 0) {
        c->client.fd = -1;
        cg_socket_close_reset(fd);
        conn_close(c, 0, "open_failed", err);
        return;
    }
    const cg__route *r = c->route;
    c->echo = r->echo;
    c->up = (flow){.src = &c->client, .dst = &c->backend};
    c->down = (flow){.src = &c->backend, .dst = &c->client};
    if (c->echo) {
        c->up.dst = &c->client;
        c->down.eof = c->down.done = true;
        start_relaying(c);
        return;
    }
    c->state = C_CONNECTING;
    if (r->nbackends == 0) {
        backend_failed(c);
        return;
    }
    c->max_attempts = r->nbackends > 1 ? MAX_ATTEMPTS : 1;
    c->first = atomic_fetch_add_explicit(&c->route->rr, 1, memory_order_relaxed) % r->nbackends;
    connect_next(c);
    if (c->state == C_CONNECTING && c->backend.fd >= 0 && r->send_proxy == 0)
        speculate(c);
}

void cg__ep_relay_close_all(cg__ep_relay_ctx *ctx)
{
    while (ctx->live != NULL)
        conn_close(ctx->live, RESET_BOTH, "stop", 0);
}

size_t cg__ep_relay_sweep(cg__ep_relay_ctx *ctx)
{
    size_t n = 0;
    if (ctx->env->banned == NULL)
        return 0;
    for (cg__ep_conn *c = ctx->live, *next; c != NULL; c = next) {
        next = c->next; /* conn_close moves c to the closed list */
        if (c->peer.sa.sa_family == 0 || !ctx->env->banned(ctx->env->arg, &c->peer))
            continue;
        if (c->listener < ctx->env->nlisteners)
            cg__stat_add(&lstats_of(ctx, c->listener)->closed_by_ban, 1);
        conn_close(c, RESET_BOTH, "banned", 0);
        n++;
    }
    return n;
}

bool cg__ep_relay_turn_end(cg__ep_relay_ctx *ctx)
{
    cg__ep_conn *p = ctx->posted;
    ctx->posted = NULL;
    while (p != NULL) {
        cg__ep_conn *c = p;
        p = c->post_next;
        c->posted = false;
        if (c->state == C_RELAYING)
            pump(c);
    }
    while (ctx->closed != NULL) {
        cg__ep_conn *c = ctx->closed;
        ctx->closed = c->next;
        conn_free(ctx, c);
    }
    return ctx->posted != NULL;
}

void cg__ep_relay_cleanup(cg__ep_relay_ctx *ctx)
{
    while (ctx->spare != NULL) {
        cg__ep_conn *c = ctx->spare;
        ctx->spare = c->next;
        free(c);
    }
    ctx->nspare = 0;
}
