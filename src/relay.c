/* relay.c — one relayed connection's life on a worker loop: backend connect
 * with one failover, byte relay with backpressure, half-close, idle timeout,
 * and a single teardown path that counts and logs the close.
 *
 * Memory per connection is bounded: reads land in the worker's shared
 * buffer and are written straight on with uv_try_write; only what the peer
 * would not take is copied into a pending chunk, and the source is not read
 * again until that chunk is written. An idle connection holds no buffer, a
 * busy one at most one chunk (<= CG_RELAY_BUF_SIZE) per direction.
 */
#include "relay.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proxy_proto.h"
#include "sys.h"

/* A connection's state.
 *
 *   cg__relay_start ──backend──► CONNECTING ──connected──► RELAYING
 *          │                          │                       │
 *          └──echo──► RELAYING        │ every attempt failed  │ both directions
 *                         │           │ stop                  │ done, I/O error,
 *                         ▼           ▼                       ▼ idle, stop
 *                      CLOSING ◄──────┴───────────────────────┘
 *                         │ last handle closed
 *                         ▼
 *                       freed
 */
typedef enum relay_state {
    RELAY_CONNECTING = 0,
    RELAY_RELAYING = 1,
    RELAY_CLOSING = 2,
} relay_state;

static const char *relay_state_name(relay_state s)
{
    switch (s) {
    case RELAY_CONNECTING:
        return "connecting";
    case RELAY_RELAYING:
        return "relaying";
    case RELAY_CLOSING:
        return "closing";
    default:
        return "unknown";
    }
}

/* How relay_close treats each side. */
enum {
    RESET_CLIENT = 1u << 0,
    RESET_BACKEND = 1u << 1,
    RESET_BOTH = RESET_CLIENT | RESET_BACKEND,
};

/* Backend connect attempts per client: the chosen backend and, when there
 * is another one, the next. */
#define MAX_ATTEMPTS 2

/* Freed connection objects a worker keeps for the next ones. Not under
 * AddressSanitizer, which should see every object freed. */
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

typedef struct flow flow;

/* Bytes a destination would not take at once, with their write request;
 * one allocation. */
typedef struct chunk {
    uv_write_t req;
    flow *f;
    size_t len;
    char data[];
} chunk;

/* Bytes flowing one way: read from src, written to dst. With echo the up
 * flow has src == dst == the client and the down flow is unused. */
struct flow {
    cg__relay *owner;
    uv_stream_t *src, *dst;
    chunk *pending; /* what dst would not take from the last read; NULL when idle */
    bool eof;       /* src said EOF */
    bool done;      /* EOF seen, everything written and dst shut down */
};

struct cg__relay {
    cg__relay *prev, *next; /* ctx->live, or ctx->spare once freed */
    cg__relay_ctx *ctx;
    cg__route *route; /* NULL once closed */
    size_t listener;
    relay_state state;
    bool echo;
    bool client_open;  /* client handle initialised and not closing */
    bool backend_open; /* backend handle initialised and not closing */
    unsigned handles;  /* handles initialised whose close callback is still due */
    uv_tcp_t client;
    uv_tcp_t backend;
    uv_connect_t creq;
    uv_timer_t timer; /* connect timeout while CONNECTING, idle timeout after */
    unsigned attempts, max_attempts;
    size_t first; /* backend index of the first attempt */
    int errs[MAX_ATTEMPTS];
    flow up;                      /* client to backend */
    flow down;                    /* backend to client */
    uint64_t started_ms, last_ms; /* loop time at start and at the last byte moved */
    uint64_t bytes_in, bytes_out;
    cg__peer peer; /* the caller, for log lines and ban sweeps */
    void *hold;    /* given back through env->release at the close */
};

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_timer(uv_timer_t *t);
static void connect_next(cg__relay *c);

static cg__lstats *lstats_of(const cg__relay_ctx *ctx, size_t listener)
{
    return cg__lstats_of(ctx->env->stats, ctx->slot, listener);
}

/* The socket under a libuv stream, for the platform fast paths. */
static cg_socket_t sock_of(uv_stream_t *s)
{
    uv_os_fd_t fd;
    if (uv_fileno((const uv_handle_t *)s, &fd) != 0)
        return CG_INVALID_SOCKET;
    return (cg_socket_t)(uintptr_t)fd;
}

static void account_close(cg__relay_ctx *ctx, size_t listener, void *hold)
{
    cg__relay_account_close(ctx->env, ctx->slot, listener, hold);
}

/* ------------------------------------------------------------------------
 * Connection objects: a few freed ones are kept for the next connections.
 */

static cg__relay *relay_alloc(cg__relay_ctx *ctx)
{
    cg__relay *c = ctx->spare;
    if (c == NULL)
        return calloc(1, sizeof(*c));
    ctx->spare = c->next;
    ctx->nspare--;
    memset(c, 0, sizeof(*c));
    return c;
}

static void relay_free(cg__relay_ctx *ctx, cg__relay *c)
{
    if (ctx->nspare + 1 > SPARE_MAX) { /* not >=: SPARE_MAX may be 0 */
        free(c);
        return;
    }
    c->next = ctx->spare;
    ctx->spare = c;
    ctx->nspare++;
}

/* ------------------------------------------------------------------------
 * Teardown: every way out goes through relay_close, exactly once.
 */

static void unlink_live(cg__relay *c)
{
    cg__relay_ctx *ctx = c->ctx;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ctx->live = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    ctx->nlive--;
}

static void on_handle_closed(uv_handle_t *h)
{
    cg__relay *c = h->data;
    if (--c->handles == 0 && c->state == RELAY_CLOSING) {
        unlink_live(c);
        relay_free(c->ctx, c);
    }
}

static void close_tcp(uv_tcp_t *t, bool reset)
{
    /* uv_tcp_close_reset refuses a handle with a shutdown in flight; such a
     * side gets a plain close. */
    if (!reset || uv_tcp_close_reset(t, on_handle_closed) != 0)
        uv_close((uv_handle_t *)t, on_handle_closed);
}

static void log_close(const cg__relay *c, relay_state was, const char *reason, int err)
{
    if (!cg__log_enabled(CG_LOG_DEBUG))
        return;
    const cg__relay_tally t = {.listener = c->listener,
                               .peer = &c->peer,
                               .bytes_in = c->bytes_in,
                               .bytes_out = c->bytes_out,
                               .duration_ms = uv_now(c->ctx->loop) - c->started_ms};
    cg__relay_log_close(c->ctx->env, &t, relay_state_name(was), reason, err);
}

/* The single teardown path: close every handle (resetting the sides named
 * in `reset`), count and log the close, drop the generation. Pending
 * chunks are freed by their write callbacks, which libuv runs (cancelled)
 * before the close callbacks; the memory goes with the last close callback. */
static void relay_close(cg__relay *c, unsigned reset, const char *reason, int err)
{
    if (c->state == RELAY_CLOSING)
        return;
    relay_state was = c->state;
    c->state = RELAY_CLOSING;

    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->client_open) {
        c->client_open = false;
        close_tcp(&c->client, reset & RESET_CLIENT);
    }
    if (c->backend_open) {
        c->backend_open = false;
        close_tcp(&c->backend, reset & RESET_BACKEND);
    }
    log_close(c, was, reason, err);
    account_close(c->ctx, c->listener, c->hold);
    c->hold = NULL;
    cg__route_unref(c->route);
    c->route = NULL;
}

/* An I/O error on one side: that side is dead already, so close it plainly
 * and reset the other one. */
static void fail(cg__relay *c, uv_stream_t *side, int err)
{
    if (side == (uv_stream_t *)&c->client)
        relay_close(c, RESET_BACKEND, "client_error", err);
    else
        relay_close(c, RESET_CLIENT, "backend_error", err);
}

/* ------------------------------------------------------------------------
 * Relaying
 */

static flow *flow_from(cg__relay *c, const void *src)
{
    return src == (const void *)&c->client ? &c->up : &c->down;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    cg__relay *c = h->data;
    (void)suggested;
    /* libuv on POSIX calls alloc and then read before the next alloc on this
     * loop, so one shared buffer serves every connection. libuv on Windows
     * may lend a buffer to an overlapped read and keep it until the read
     * completes, while other connections read: then the shared buffer is
     * out, and this connection gets one of its own, freed by on_read. */
    if (!c->ctx->rbuf_lent) {
        c->ctx->rbuf_lent = true;
        *buf = uv_buf_init(c->ctx->rbuf, CG_RELAY_BUF_SIZE);
        return;
    }
    char *own = malloc(CG_RELAY_BUF_SIZE);
    /* A null buffer makes libuv report UV_ENOBUFS to on_read. */
    *buf = uv_buf_init(own, own != NULL ? CG_RELAY_BUF_SIZE : 0);
}

/* Give back a buffer on_alloc lent: the shared one is marked free, one of
 * the connection's own is freed. */
static void release_buf(cg__relay_ctx *ctx, const uv_buf_t *buf)
{
    if (buf->base == ctx->rbuf)
        ctx->rbuf_lent = false;
    else
        free(buf->base);
}

static void start_reading(cg__relay *c, uv_stream_t *s)
{
    int err = uv_read_start(s, on_alloc, on_read);
    if (err != 0)
        fail(c, s, err);
}

static void count_read(cg__relay *c, const flow *f, size_t n)
{
    c->last_ms = uv_now(c->ctx->loop);
    if (f == &c->up) {
        c->bytes_in += n;
        cg__stat_add(&lstats_of(c->ctx, c->listener)->bytes_in, n);
    }
}

static void count_written(cg__relay *c, const flow *f, size_t n)
{
    if (f->dst == (uv_stream_t *)&c->client) {
        c->bytes_out += n;
        cg__stat_add(&lstats_of(c->ctx, c->listener)->bytes_out, n);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    flow *f = req->data;
    cg__relay *c = f->owner;
    free(req);
    if (c->state == RELAY_CLOSING)
        return;
    if (status < 0) {
        fail(c, f->dst, status);
        return;
    }
    f->done = true;
    if (c->up.done && c->down.done)
        relay_close(c, 0, "eof", 0);
}

/* src said EOF and everything it sent has been written: pass the EOF on.
 * When the other direction is done already, closing both sides passes it
 * on (dst gets its FIN from the close; every byte either way was read up to
 * the EOF, so no reset) and saves a shutdown and a loop round. Otherwise
 * dst is shut down for writing at once where the platform allows it (libuv
 * has nothing queued on dst: the flow's last write has completed), else
 * through libuv. */
static void finish_flow(cg__relay *c, flow *f)
{
    const flow *other = f == &c->up ? &c->down : &c->up;
    if (other->done) {
        f->done = true;
        relay_close(c, 0, "eof", 0);
        return;
    }
    int rc = cg__sys_shutdown_send(sock_of(f->dst));
    if (rc == 0) {
        f->done = true;
        return;
    }
    if (rc != CG_ENOTSUP) {
        fail(c, f->dst, UV_ENOTCONN); /* the peer reset the socket */
        return;
    }
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req == NULL) {
        relay_close(c, RESET_BOTH, "no_memory", UV_ENOMEM);
        return;
    }
    req->data = f;
    int err = uv_shutdown(req, f->dst, on_shutdown);
    if (err != 0) {
        free(req);
        fail(c, f->dst, err);
    }
}

/* src said EOF: pass it on once nothing is pending. */
static void src_eof(cg__relay *c, flow *f)
{
    f->eof = true;
    uv_read_stop(f->src);
    if (f->pending == NULL)
        finish_flow(c, f);
}

static void on_write(uv_write_t *req, int status)
{
    chunk *k = req->data;
    flow *f = k->f;
    cg__relay *c = f->owner;
    size_t n = k->len;

    free(k);
    f->pending = NULL;
    if (c->state == RELAY_CLOSING)
        return;
    if (status < 0) {
        fail(c, f->dst, status);
        return;
    }
    count_written(c, f, n);
    c->last_ms = uv_now(c->ctx->loop);
    if (f->eof)
        finish_flow(c, f);
    else
        start_reading(c, f->src);
}

/* Write chunk k (k->len bytes) to f->dst through libuv and stop reading
 * f->src until it is written, so no later bytes can overtake it. */
static void write_pending(cg__relay *c, flow *f, chunk *k)
{
    f->pending = k;
    k->f = f;
    k->req.data = k;
    uv_read_stop(f->src);
    uv_buf_t b = uv_buf_init(k->data, (unsigned)k->len);
    int err = uv_write(&k->req, f->dst, &b, 1, on_write);
    if (err != 0) {
        free(k);
        f->pending = NULL;
        fail(c, f->dst, err);
    }
}

static chunk *chunk_new(size_t len)
{
    chunk *k = malloc(sizeof(*k) + len);
    if (k != NULL)
        k->len = len;
    return k;
}

/* Pass n bytes just read from f->src on to f->dst. Whatever dst does not
 * take now is kept in f->pending and src is not read again until it has
 * been written; so no later bytes can overtake it. */
static void forward(cg__relay *c, flow *f, const char *data, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    int w = uv_try_write(f->dst, &b, 1);
    if (w == UV_EAGAIN)
        w = 0;
    if (w < 0) {
        fail(c, f->dst, w);
        return;
    }
    count_written(c, f, (size_t)w);
    size_t rest = n - (size_t)w;
    if (rest == 0)
        return;

    chunk *k = chunk_new(rest);
    if (k == NULL) {
        relay_close(c, RESET_BOTH, "no_memory", UV_ENOMEM);
        return;
    }
    memcpy(k->data, data + w, rest);
    write_pending(c, f, k);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cg__relay *c = s->data;
    cg__relay_ctx *ctx = c->ctx;
    flow *f = flow_from(c, s);

    if (nread > 0) {
        count_read(c, f, (size_t)nread);
        forward(c, f, buf->base, (size_t)nread);
    } else if (nread == UV_EOF) {
        src_eof(c, f);
    } else if (nread < 0) {
        fail(c, s, (int)nread);
    }
    /* forward() copied whatever it could not write at once. */
    release_buf(ctx, buf);
}

/* Connected (or echo): relay. On POSIX the backend is read from already
 * (see connect_next), and asking again answers UV_EALREADY. */
static void start_relaying(cg__relay *c)
{
    uint32_t idle = c->route->idle_timeout_ms;

    c->state = RELAY_RELAYING;
    c->last_ms = uv_now(c->ctx->loop);
    if (idle > 0)
        uv_timer_start(&c->timer, on_timer, (uint64_t)idle + 2, 0);
    start_reading(c, (uv_stream_t *)&c->client);
    if (!c->echo && c->state == RELAY_RELAYING) {
        int err = uv_read_start((uv_stream_t *)&c->backend, on_alloc, on_read);
        if (err != 0 && err != UV_EALREADY)
            fail(c, (uv_stream_t *)&c->backend, err);
    }
}

/* ------------------------------------------------------------------------
 * Backend connect: the round-robin choice, then the next backend once.
 */

static void backend_failed(cg__relay *c)
{
    cg__relay_log_backend_failed(c->ctx->env, c->ctx->slot, c->listener, &c->peer, c->route,
                                 c->first, c->attempts, c->errs);
    relay_close(c, RESET_CLIENT, "connect_failed", c->attempts ? c->errs[c->attempts - 1] : 0);
}

static void after_attempt(cg__relay *c)
{
    if (c->attempts < c->max_attempts)
        connect_next(c);
    else
        backend_failed(c);
}

static void on_attempt_closed(uv_handle_t *h)
{
    cg__relay *c = h->data;
    if (c->state == RELAY_CLOSING) {
        on_handle_closed(h);
        return;
    }
    c->handles--;
    after_attempt(c);
}

static void attempt_failed(cg__relay *c, int err)
{
    c->errs[c->attempts++] = err;
    uv_timer_stop(&c->timer);
    if (c->backend_open) {
        /* A failed socket cannot connect again: the next attempt gets a new
         * handle once this one is closed. */
        c->backend_open = false;
        uv_close((uv_handle_t *)&c->backend, on_attempt_closed);
    } else {
        after_attempt(c);
    }
}

/* send_proxy: the backend hears first who the client is (the caller, or
 * the client its PROXY header named) and which address it came to. One
 * small write on a fresh connection, before any byte of the client's:
 * it goes whole or the connection fails. */
static int send_header(cg__relay *c)
{
    struct sockaddr_storage local;
    uint8_t hdr[CG_PROXY_WRITE_MAX];
    int len = (int)sizeof(local);
    if (c->peer.sa.sa_family == 0 ||
        uv_tcp_getsockname(&c->client, (struct sockaddr *)&local, &len) != 0)
        return UV_EINVAL;
    size_t n = cg__proxy_write(c->route->send_proxy, &c->peer.sa, (const struct sockaddr *)&local,
                               hdr, sizeof(hdr));
    if (n == 0)
        return UV_EINVAL;
    uv_buf_t b = uv_buf_init((char *)hdr, (unsigned)n);
    int rc = uv_try_write((uv_stream_t *)&c->backend, &b, 1);
    return rc == (int)n ? 0 : rc < 0 ? rc : UV_EAGAIN;
}

static void on_connect(uv_connect_t *req, int status)
{
    cg__relay *c = req->data;
    /* Cancelled because we closed the handle (timeout or teardown). */
    if (c->state != RELAY_CONNECTING || !c->backend_open)
        return;
    if (status < 0) {
        attempt_failed(c, status);
        return;
    }
    uv_timer_stop(&c->timer);
    if (c->route->send_proxy != 0) {
        int err = send_header(c);
        if (err != 0) {
            relay_close(c, RESET_BOTH, "proxy_header_failed", err);
            return;
        }
    }
    start_relaying(c);
}

static void connect_next(cg__relay *c)
{
    const cg__route *r = c->route;
    const cg_endpoint *ep = &r->backends[(c->first + c->attempts) % r->nbackends];

    int err = uv_tcp_init(c->ctx->loop, &c->backend);
    if (err != 0) {
        attempt_failed(c, err);
        return;
    }
    c->backend.data = c;
    c->backend_open = true;
    c->handles++;
    /* Before the connect, libuv sets it as it creates the socket. */
    uv_tcp_nodelay(&c->backend, 1);
    c->creq.data = c;
    err = uv_tcp_connect(&c->creq, &c->backend, (const struct sockaddr *)&ep->addr, on_connect);
    if (err == 0) {
        /* Reading from the start registers the socket for both events at
         * once (libuv finishes the connect before it reads), which saves
         * two epoll_ctl calls once connected. libuv on Windows reads only
         * connected sockets (UV_ENOTCONN): there start_relaying does it. */
        err = uv_read_start((uv_stream_t *)&c->backend, on_alloc, on_read);
        if (err == UV_ENOTCONN)
            err = 0;
    }
    if (err != 0) {
        attempt_failed(c, err);
        return;
    }
    if (r->connect_timeout_ms > 0)
        uv_timer_start(&c->timer, on_timer, r->connect_timeout_ms, 0);
}

/* The connect timeout while CONNECTING; the idle timeout after. */
static void on_timer(uv_timer_t *t)
{
    cg__relay *c = t->data;

    if (c->state == RELAY_CONNECTING) {
        attempt_failed(c, UV_ETIMEDOUT);
        return;
    }
    if (c->state != RELAY_RELAYING)
        return;
    /* Reads only stamp last_ms; the timer checks it when it fires and
     * re-arms for the rest, so a busy connection costs no timer updates.
     * Loop time is whole milliseconds from a clock that may lag by a tick,
     * hence "more than idle + 1": never close before idle_timeout_ms. */
    uint64_t idle = c->route->idle_timeout_ms;
    uint64_t quiet = uv_now(c->ctx->loop) - c->last_ms;
    if (quiet > idle + 1)
        relay_close(c, 0, "idle", 0);
    else
        uv_timer_start(t, on_timer, idle + 2 - quiet, 0);
}

/* ------------------------------------------------------------------------
 * Entry points
 */

/* cg__relay_ctx_init: see relay.h. */
void cg__relay_ctx_init(cg__relay_ctx *ctx)
{
    ctx->live = ctx->spare = NULL;
    ctx->nlive = ctx->nspare = 0;
    ctx->rbuf_lent = false;
}

/* cg__relay_ctx_cleanup: see relay.h. */
void cg__relay_ctx_cleanup(cg__relay_ctx *ctx)
{
    while (ctx->spare != NULL) {
        cg__relay *c = ctx->spare;
        ctx->spare = c->next;
        free(c);
    }
    ctx->nspare = 0;
}

/* cg__relay_drop: reset and close fd unrelayed, drop the route reference
 * and count a close (closed, finished, admission). Nothing is left to free.
 * Worker thread of ctx, or the control thread after that worker's join. */
void cg__relay_drop(cg__relay_ctx *ctx, cg_socket_t fd, cg__route *route, void *hold)
{
    cg_socket_close_reset(fd);
    account_close(ctx, route->listener, hold);
    cg__route_unref(route);
}

/* cg__relay_start: start relaying fd along route. Owns fd and the route
 * reference from here on, failure included; the connection frees itself
 * after its last close callback. Worker thread of ctx. */
void cg__relay_start(cg__relay_ctx *ctx, cg_socket_t fd, const cg__peer *peer, cg__route *route,
                     void *hold)
{
    cg__relay *c = relay_alloc(ctx);
    if (c == NULL) {
        cg__log_event(CG_LOG_ERROR, "error", "listener",
                      cg__relay_listener_name(ctx->env, route->listener), "message",
                      "out of memory: connection reset", NULL);
        cg__relay_drop(ctx, fd, route, hold);
        return;
    }
    c->ctx = ctx;
    c->route = route;
    c->hold = hold;
    c->listener = route->listener;
    c->next = ctx->live;
    if (ctx->live != NULL)
        ctx->live->prev = c;
    ctx->live = c;
    ctx->nlive++;
    /* The loop's clock is cached per iteration, and a worker may start many
     * connections in one wake-up while more keep arriving: read it afresh,
     * or the idle timeout would count from before the caller connected. */
    uv_update_time(ctx->loop);
    c->started_ms = c->last_ms = uv_now(ctx->loop);
    if (peer != NULL)
        c->peer = *peer;

    uv_timer_init(ctx->loop, &c->timer);
    c->timer.data = c;
    c->handles++;

    int err = uv_tcp_init(ctx->loop, &c->client);
    if (err != 0) {
        cg_socket_close_reset(fd);
        relay_close(c, 0, "open_failed", err);
        return;
    }
    c->client.data = c;
    c->client_open = true;
    c->handles++;
    err = uv_tcp_open(&c->client, (uv_os_sock_t)fd);
    if (err != 0) {
        cg_socket_close_reset(fd);
        relay_close(c, 0, "open_failed", err);
        return;
    }
    if (!ctx->env->accepted_nodelay)
        uv_tcp_nodelay(&c->client, 1);
    if (peer == NULL) {
        int len = (int)sizeof(c->peer);
        if (uv_tcp_getpeername(&c->client, &c->peer.sa, &len) != 0)
            c->peer.sa.sa_family = 0;
    }

    const cg__route *r = c->route;
    c->echo = r->echo;
    c->up = (flow){.owner = c, .src = (uv_stream_t *)&c->client};
    c->down =
        (flow){.owner = c, .src = (uv_stream_t *)&c->backend, .dst = (uv_stream_t *)&c->client};
    if (c->echo) {
        c->up.dst = (uv_stream_t *)&c->client;
        c->down.eof = c->down.done = true;
        start_relaying(c);
        return;
    }
    c->up.dst = (uv_stream_t *)&c->backend;
    c->state = RELAY_CONNECTING;
    if (r->nbackends == 0) {
        backend_failed(c);
        return;
    }
    c->max_attempts = r->nbackends > 1 ? MAX_ATTEMPTS : 1;
    c->first = atomic_fetch_add_explicit(&c->route->rr, 1, memory_order_relaxed) % r->nbackends;
    connect_next(c);
}

/* cg__relay_close_all: close (reset) every open connection of ctx; their
 * memory goes with their close callbacks, so keep running the loop. Worker
 * thread of ctx. */
void cg__relay_close_all(cg__relay_ctx *ctx)
{
    /* relay_close never frees synchronously, so walking on is safe. */
    for (cg__relay *c = ctx->live; c != NULL; c = c->next)
        relay_close(c, RESET_BOTH, "stop", 0);
}

/* cg__relay_sweep: see relay.h. */
size_t cg__relay_sweep(cg__relay_ctx *ctx)
{
    size_t n = 0;
    if (ctx->env->banned == NULL)
        return 0;
    for (cg__relay *c = ctx->live; c != NULL; c = c->next) {
        if (c->state == RELAY_CLOSING || c->peer.sa.sa_family == 0 ||
            !ctx->env->banned(ctx->env->arg, &c->peer))
            continue;
        if (c->listener < ctx->env->nlisteners)
            cg__stat_add(&lstats_of(ctx, c->listener)->closed_by_ban, 1);
        relay_close(c, RESET_BOTH, "banned", 0);
        n++;
    }
    return n;
}
