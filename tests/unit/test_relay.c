/* test_relay.c — the worker pool and the relay over loopback sockets: echo,
 * relay to a real backend, half-close both ways, backpressure, backend
 * failures, connect and idle timeouts, exact counters, and stop with
 * connections open.
 *
 * Each test starts a pool of two workers with a hand-built configuration of
 * two gate listeners ("echo" and "relay"), plays the control thread itself
 * (accepts on its own loopback listener, takes an admission place, submits) and
 * drives clients and backends with poll() (WSAPoll on Windows; the system
 * calls that differ go through testsys.h, threads are libuv's). Set
 * CG_RELAY_BENCH_MB to change
 * the amount the throughput test pushes through echo, CG_TEST_FILTER to run
 * only the tests whose names match a pattern.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "gen.h"
#include "log.h"
#include "stats.h"
#include "testsys.h"
#include "worker.h"

enum { L_ECHO = 0, L_RELAY = 1, NLISTENERS = 2, NWORKERS = 2 };

#define MIB (1024u * 1024u)

/* ------------------------------------------------------------------------
 * Small helpers
 */

static uint64_t now_ms(void)
{
    return ts_now_ms();
}

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* Byte `pos` of the pseudo-random stream `seed`: any slice can be made
 * without making what comes before it. */
static void stream_fill(uint64_t seed, uint64_t pos, unsigned char *buf, size_t n)
{
    uint64_t word = splitmix(seed ^ (pos >> 3) * 0x100000001b3u);
    for (size_t i = 0; i < n; i++, pos++) {
        if ((pos & 7) == 0)
            word = splitmix(seed ^ (pos >> 3) * 0x100000001b3u);
        buf[i] = (unsigned char)(word >> (8 * (pos & 7)));
    }
}

static uint64_t fnv_update(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3u;
    }
    return h;
}

#define FNV_INIT 0xcbf29ce484222325u

static uint64_t stream_hash(uint64_t seed, size_t len)
{
    static unsigned char buf[65536];
    uint64_t h = FNV_INIT;
    for (size_t off = 0; off < len; off += sizeof(buf)) {
        size_t n = len - off < sizeof(buf) ? len - off : sizeof(buf);
        stream_fill(seed, off, buf, n);
        h = fnv_update(h, buf, n);
    }
    return h;
}

static void set_nonblock(cg_socket_t fd, bool on)
{
    ts_set_nonblock(fd, on);
}

static void set_bufs(cg_socket_t fd, int bytes)
{
    const char *b = (const char *)&bytes;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, b, (socklen_t)sizeof(bytes)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, b, (socklen_t)sizeof(bytes)), 0);
}

/* A loopback listening socket on an ephemeral port. */
static cg_socket_t listen_loopback(int backlog, struct sockaddr_in *addr)
{
    cg_socket_t fd = ts_socket(AF_INET, SOCK_STREAM);
    assert_true(fd != CG_INVALID_SOCKET);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, backlog), 0);
    socklen_t len = sizeof(*addr);
    assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    return fd;
}

/* A loopback address nobody listens on: connecting to it is refused. */
static struct sockaddr_in refused_addr(void)
{
    struct sockaddr_in a;
    cg_socket_t fd = listen_loopback(1, &a);
    ts_close(fd);
    return a;
}

static cg_endpoint endpoint_of(const struct sockaddr_in *a)
{
    cg_endpoint ep;
    memset(&ep, 0, sizeof(ep));
    memcpy(&ep.addr, a, sizeof(*a));
    ep.addrlen = sizeof(*a);
    snprintf(ep.text, sizeof(ep.text), "127.0.0.1:%u", (unsigned)ntohs(a->sin_port));
    return ep;
}

/* Wait (bounded) for readability; returns the poll result. */
static int wait_readable(cg_socket_t fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return ts_poll(&p, 1, timeout_ms);
}

/* Read until EOF, reset or timeout; returns bytes read, -errno on error. */
static long read_to_end(cg_socket_t fd, char *buf, size_t cap, int timeout_ms)
{
    size_t got = 0;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int left = (int)(deadline > now_ms() ? deadline - now_ms() : 0);
        if (wait_readable(fd, left) <= 0)
            return -ETIMEDOUT;
        char scratch[4096];
        long n =
            got < cap ? ts_recv(fd, buf + got, cap - got) : ts_recv(fd, scratch, sizeof(scratch));
        if (n == 0)
            return (long)got;
        if (n < 0) {
            int e = ts_errno();
            if (e == EAGAIN || e == EINTR)
                continue;
            return -e;
        }
        got += (size_t)n;
    }
}

static bool wait_u64(_Atomic uint64_t *v, uint64_t want, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    while (atomic_load(v) != want) {
        if (now_ms() > deadline)
            return false;
        ts_sleep_ms(1);
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Bulk transfer: send one pseudo-random stream while hashing what comes
 * back, with poll(), until the peer's EOF. Used by clients and backends.
 */

typedef struct xfer {
    cg_socket_t fd;
    uint64_t send_seed;
    size_t send_len;
    size_t sent;
    uint64_t recv_hash;
    size_t recv_len;
    int err; /* 0, or an errno */
} xfer;

static int run_xfer(xfer *x, int timeout_ms)
{
    static _Thread_local unsigned char buf[65536];
    bool shut = false, eof = false;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

    x->recv_hash = FNV_INIT;
    set_nonblock(x->fd, true);
    for (;;) {
        if (x->sent == x->send_len && !shut) {
            shutdown(x->fd, TS_SHUT_WR);
            shut = true;
        }
        if (eof && shut)
            break;
        struct pollfd p = {.fd = x->fd, .events = eof ? 0 : POLLIN};
        if (x->sent < x->send_len)
            p.events |= POLLOUT;
        int left = (int)(deadline > now_ms() ? deadline - now_ms() : 0);
        int r = ts_poll(&p, 1, left);
        if (r == 0)
            return x->err = ETIMEDOUT;
        if (r < 0)
            continue;
        if (!eof && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            for (;;) {
                long n = ts_recv(x->fd, buf, sizeof(buf));
                if (n > 0) {
                    x->recv_hash = fnv_update(x->recv_hash, buf, (size_t)n);
                    x->recv_len += (size_t)n;
                    continue;
                }
                if (n == 0)
                    eof = true;
                else if (ts_errno() != EAGAIN && ts_errno() != EINTR)
                    return x->err = ts_errno();
                break;
            }
        }
        if ((p.revents & POLLOUT) && x->sent < x->send_len) {
            size_t n = x->send_len - x->sent < sizeof(buf) ? x->send_len - x->sent : sizeof(buf);
            stream_fill(x->send_seed, x->sent, buf, n);
            long w = ts_send(x->fd, buf, n);
            if (w > 0)
                x->sent += (size_t)w;
            else if (w < 0 && ts_errno() != EAGAIN && ts_errno() != EINTR)
                return x->err = ts_errno();
        }
    }
    return 0;
}

/* Read and hash until the peer's EOF, sending nothing and keeping our own
 * side open. */
static int run_xfer_half(xfer *x, int timeout_ms)
{
    static _Thread_local unsigned char buf[65536];
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

    x->recv_hash = FNV_INIT;
    set_nonblock(x->fd, true);
    for (;;) {
        int left = (int)(deadline > now_ms() ? deadline - now_ms() : 0);
        if (wait_readable(x->fd, left) <= 0)
            return x->err = ETIMEDOUT;
        long n = ts_recv(x->fd, buf, sizeof(buf));
        if (n > 0) {
            x->recv_hash = fnv_update(x->recv_hash, buf, (size_t)n);
            x->recv_len += (size_t)n;
        } else if (n == 0) {
            return 0;
        } else if (ts_errno() != EAGAIN && ts_errno() != EINTR) {
            return x->err = ts_errno();
        }
    }
}

/* Send x's stream, shut down, then wait for the peer's EOF. */
static int send_stream(xfer *x, int timeout_ms)
{
    static _Thread_local unsigned char buf[65536];
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

    set_nonblock(x->fd, true);
    while (x->sent < x->send_len) {
        struct pollfd p = {.fd = x->fd, .events = POLLOUT};
        int left = (int)(deadline > now_ms() ? deadline - now_ms() : 0);
        if (ts_poll(&p, 1, left) <= 0)
            return ETIMEDOUT;
        size_t n = x->send_len - x->sent < sizeof(buf) ? x->send_len - x->sent : sizeof(buf);
        stream_fill(x->send_seed, x->sent, buf, n);
        long w = ts_send(x->fd, buf, n);
        if (w > 0)
            x->sent += (size_t)w;
        else if (w < 0 && ts_errno() != EAGAIN && ts_errno() != EINTR)
            return ts_errno();
    }
    shutdown(x->fd, TS_SHUT_WR);
    char scratch[256];
    long n = read_to_end(x->fd, scratch, sizeof(scratch), timeout_ms);
    return n < 0 ? (int)-n : 0;
}

/* ------------------------------------------------------------------------
 * Backends: a thread with a blocking-style server on 127.0.0.1:0.
 */

typedef enum backend_mode {
    BK_XFER,       /* send its own stream, hash what arrives, until EOF */
    BK_REPLY_EOF,  /* read to EOF, then send "pong" and close */
    BK_SHUT_FIRST, /* send "hello" and shut down, then read to EOF */
    BK_ACCEPT,     /* accept and hold until the client goes */
    BK_SLOW_BULK,  /* wait delay_ms before reading anything, hash what arrives
                      until EOF, then send its own stream and shut down */
} backend_mode;

typedef struct backend {
    cg_socket_t lfd;
    struct sockaddr_in addr;
    backend_mode mode;
    unsigned conns; /* connections to serve */
    xfer x;         /* BK_XFER, BK_SLOW_BULK */
    int delay_ms;   /* BK_SLOW_BULK */
    int bufs;       /* socket buffer sizes to set (0: the system's) */
    char got[64];   /* BK_REPLY_EOF, BK_SHUT_FIRST: what arrived */
    long got_len;
    unsigned served;
    uv_thread_t thread;
} backend;

static void backend_main(void *arg)
{
    backend *b = arg;
    for (unsigned i = 0; i < b->conns; i++) {
        if (wait_readable(b->lfd, 10000) <= 0)
            break;
        cg_socket_t fd = accept(b->lfd, NULL, NULL);
        if (fd == CG_INVALID_SOCKET)
            break;
        b->served++;
        switch (b->mode) {
        case BK_XFER:
            b->x.fd = fd;
            run_xfer(&b->x, 60000);
            break;
        case BK_REPLY_EOF:
            b->got_len = read_to_end(fd, b->got, sizeof(b->got), 10000);
            if (b->got_len >= 0)
                (void)ts_send(fd, "pong", 4);
            break;
        case BK_SHUT_FIRST:
            (void)ts_send(fd, "hello", 5);
            shutdown(fd, TS_SHUT_WR);
            b->got_len = read_to_end(fd, b->got, sizeof(b->got), 10000);
            break;
        case BK_ACCEPT: {
            char scratch[64];
            read_to_end(fd, scratch, sizeof(scratch), 10000);
            break;
        }
        case BK_SLOW_BULK: {
            /* The request to its EOF first, then the reply. */
            ts_sleep_ms(b->delay_ms);
            xfer req = {.fd = fd, .send_len = 0};
            run_xfer_half(&req, 60000);
            b->x.recv_hash = req.recv_hash;
            b->x.recv_len = req.recv_len;
            b->x.err = req.err;
            if (req.err == 0) {
                b->x.fd = fd;
                b->x.err = send_stream(&b->x, 60000);
            }
            break;
        }
        }
        ts_close(fd);
    }
}

static void backend_start(backend *b, backend_mode mode, unsigned conns)
{
    b->lfd = listen_loopback(16, &b->addr);
    if (b->bufs)
        set_bufs(b->lfd, b->bufs); /* accepted sockets inherit them */
    b->mode = mode;
    b->conns = conns;
    assert_int_equal(uv_thread_create(&b->thread, backend_main, b), 0);
}

static void backend_join(backend *b)
{
    uv_thread_join(&b->thread);
    ts_close(b->lfd);
}

/* A listener that answers no SYN: backlog 0, accept queue filled. */
typedef struct blackhole {
    cg_socket_t lfd;
    struct sockaddr_in addr;
    cg_socket_t fillers[8];
    int nfillers;
} blackhole;

static bool blackhole_open(blackhole *bh)
{
    bh->lfd = listen_loopback(0, &bh->addr);
    bh->nfillers = 0;
    while (bh->nfillers < 8) {
        cg_socket_t fd = ts_socket(AF_INET, SOCK_STREAM);
        assert_true(fd != CG_INVALID_SOCKET);
        ts_set_nonblock(fd, true);
        bh->fillers[bh->nfillers++] = fd;
        if (connect(fd, (struct sockaddr *)&bh->addr, sizeof(bh->addr)) == 0)
            continue;
        /* EINPROGRESS; Winsock says WSAEWOULDBLOCK (EAGAIN here). */
        assert_true(ts_errno() == EINPROGRESS || ts_errno() == EAGAIN);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (ts_poll(&p, 1, 100) == 0)
            return true; /* this SYN went unanswered: the queue is full */
    }
    return false;
}

static void blackhole_close(blackhole *bh)
{
    for (int i = 0; i < bh->nfillers; i++)
        ts_close(bh->fillers[i]);
    ts_close(bh->lfd);
}

/* Capture stderr (log lines) into a temporary file. */
typedef ts_capture capture;

static void capture_begin(capture *c)
{
    ts_capture_begin(c);
    assert_non_null(c->f);
}

/* Stop capturing; returns the text (free it) and echoes it to stderr. */
static char *capture_end(capture *c)
{
    char *text = ts_capture_end(c);
    assert_non_null(text);
    fputs(text, stderr);
    return text;
}

static unsigned count_substr(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* ------------------------------------------------------------------------
 * Fixture: a pool of two workers, the control thread's side of the env, and
 * a generation made by hand.
 */

typedef struct fixture {
    cg__stats *stats;
    cg__admission admission;
    char *names[NLISTENERS];
    cg__pool *pool;
    cg__gen *gen;
    uint64_t gen_number;
    cg_socket_t lfd; /* the "gate" listener the test accepts from */
    struct sockaddr_in laddr;
    unsigned submitted;
} fixture;

typedef struct gen_opts {
    uint32_t echo_idle_ms;
    uint32_t relay_idle_ms;
    uint32_t connect_timeout_ms;
    const struct sockaddr_in *backends;
    size_t nbackends;
} gen_opts;

/* A configuration allocated the way cg_config_load's is, so that
 * cg_config_free (called by the generation's last unref) frees it. */
static void use_gen(fixture *fx, const gen_opts *o)
{
    cg_config *cfg = calloc(1, sizeof(*cfg));
    assert_non_null(cfg);
    cfg->path = strdup("test_relay.ini");
    cfg->workers = NWORKERS;
    cfg->max_connections = 1000;
    cfg->listeners = calloc(NLISTENERS, sizeof(*cfg->listeners));
    assert_non_null(cfg->listeners);
    cfg->nlisteners = NLISTENERS;

    cg_listener_conf *e = &cfg->listeners[L_ECHO];
    e->name = strdup("echo");
    e->echo = true;
    e->connect_timeout_ms = 3000;
    e->idle_timeout_ms = o->echo_idle_ms ? o->echo_idle_ms : 300000;

    cg_listener_conf *r = &cfg->listeners[L_RELAY];
    r->name = strdup("relay");
    r->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 3000;
    r->idle_timeout_ms = o->relay_idle_ms ? o->relay_idle_ms : 300000;
    r->nbackends = o->nbackends;
    r->backends = calloc(o->nbackends ? o->nbackends : 1, sizeof(*r->backends));
    assert_non_null(r->backends);
    for (size_t i = 0; i < o->nbackends; i++)
        r->backends[i] = endpoint_of(&o->backends[i]);

    size_t lmap[NLISTENERS] = {L_ECHO, L_RELAY};
    cg__gen_unref(fx->gen);
    fx->gen = cg__gen_new(cfg, ++fx->gen_number, lmap, NLISTENERS);
    assert_non_null(fx->gen);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->stats = cg__stats_new(NLISTENERS, NWORKERS);
    assert_non_null(fx->stats);
    cg__admission_init(&fx->admission, 1000);
    fx->names[L_ECHO] = "echo";
    fx->names[L_RELAY] = "relay";
    cg__pool_env env = {
        .relay =
            {
                .stats = fx->stats,
                .admission = &fx->admission,
                .listener_names = fx->names,
                .nlisteners = NLISTENERS,
            },
    };
    assert_int_equal(cg__pool_start(NWORKERS, &env, &fx->pool), 0);
    assert_int_equal(cg__pool_size(fx->pool), NWORKERS);
    fx->lfd = listen_loopback(128, &fx->laddr);
    use_gen(fx, &(gen_opts){0});
    cg__log_setup(CG_LOG_WARN, CG_LOG_TEXT);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    cg__pool_stop(fx->pool);
    assert_int_equal(cg__admission_active(&fx->admission), 0);
    cg__gen_unref(fx->gen);
    ts_close(fx->lfd);
    cg__stats_free(fx->stats);
    free(fx);
    cg__log_setup(CG_LOG_WARN, CG_LOG_TEXT);
    return 0;
}

/* Connect a client, accept its server side as the gate would and submit it.
 * Returns the client's socket (blocking). */
static cg_socket_t open_conn_bufs(fixture *fx, size_t listener, int bufs)
{
    cg_socket_t c = ts_socket(AF_INET, SOCK_STREAM);
    assert_true(c != CG_INVALID_SOCKET);
    if (bufs)
        set_bufs(c, bufs);
    assert_int_equal(connect(c, (struct sockaddr *)&fx->laddr, sizeof(fx->laddr)), 0);
    cg_socket_t s = accept(fx->lfd, NULL, NULL);
    assert_true(s != CG_INVALID_SOCKET);
    if (bufs)
        set_bufs(s, bufs);
    set_nonblock(s, true);
    cg__admission_take(&fx->admission);
    assert_int_equal(
        cg__pool_submit(fx->pool, s, NULL, cg__route_ref(cg__gen_route(fx->gen, listener)), NULL,
                        NULL),
        0);
    fx->submitted++;
    return c;
}

static cg_socket_t open_conn(fixture *fx, size_t listener)
{
    return open_conn_bufs(fx, listener, 0);
}

/* The pool's counters once every submitted connection has closed. */
static void assert_all_closed(fixture *fx, int timeout_ms)
{
    assert_true(wait_u64(&fx->admission.active, 0, timeout_ms));
    uint64_t handled = 0, active = 0;
    for (size_t w = 0; w < NWORKERS; w++) {
        uint64_t h, a;
        cg__stats_worker(fx->stats, w, &h, &a);
        handled += h;
        active += a;
    }
    assert_int_equal(handled, fx->submitted);
    assert_int_equal(active, 0);
    cg__lsum all;
    cg__stats_sum_all(fx->stats, &all);
    assert_int_equal(all.closed, fx->submitted);
}

static cg__lsum sum_of(fixture *fx, size_t l)
{
    cg__lsum s;
    cg__stats_sum_listener(fx->stats, l, &s);
    return s;
}

/* ------------------------------------------------------------------------
 * Tests
 */

static void test_echo_1mib(void **state)
{
    fixture *fx = *state;
    capture cap;
    cg__log_setup(CG_LOG_DEBUG, CG_LOG_TEXT);
    capture_begin(&cap);

    cg_socket_t c = open_conn(fx, L_ECHO);
    xfer x = {.fd = c, .send_seed = 1, .send_len = MIB};
    assert_int_equal(run_xfer(&x, 30000), 0);
    assert_int_equal(x.recv_len, MIB);
    assert_true(x.recv_hash == stream_hash(1, MIB));
    assert_all_closed(fx, 5000);
    ts_close(c);

    char *log = capture_end(&cap);
    assert_non_null(strstr(log, "event=close listener=echo"));
    assert_non_null(strstr(log, "reason=eof bytes_in=1048576 bytes_out=1048576"));
    free(log);

    cg__lsum s = sum_of(fx, L_ECHO);
    assert_int_equal(s.bytes_in, MIB);
    assert_int_equal(s.bytes_out, MIB);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.backend_errors, 0);
}

static void test_relay_8mib_each_way(void **state)
{
    fixture *fx = *state;
    const size_t len = 8 * MIB + 12345;
    backend b = {.x = {.send_seed = 3, .send_len = len}};
    backend_start(&b, BK_XFER, 1);
    use_gen(fx, &(gen_opts){.backends = &b.addr, .nbackends = 1});

    cg_socket_t c = open_conn(fx, L_RELAY);
    xfer x = {.fd = c, .send_seed = 2, .send_len = len};
    assert_int_equal(run_xfer(&x, 60000), 0);
    backend_join(&b);
    assert_int_equal(b.x.err, 0);
    assert_int_equal(x.recv_len, len);
    assert_true(x.recv_hash == stream_hash(3, len));
    assert_int_equal(b.x.recv_len, len);
    assert_true(b.x.recv_hash == stream_hash(2, len));
    assert_all_closed(fx, 5000);
    ts_close(c);

    cg__lsum s = sum_of(fx, L_RELAY);
    assert_int_equal(s.bytes_in, len);
    assert_int_equal(s.bytes_out, len);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.backend_errors, 0);
}

/* Bulk through a backend that reads nothing for 400 ms: the relay soon
 * finds its socket full, keeps the rest aside and stops reading the
 * client, whose sends stall; then every byte arrives in order. The backend
 * answers only after the client's EOF, and its EOF comes after a bulk
 * reply: half-close both ways behind full buffers. */
static void test_bulk_backpressure_half_close(void **state)
{
    fixture *fx = *state;
    const size_t req = 16 * MIB + 777, resp = 6 * MIB + 55;
    /* Fixed buffers (no autotuning) on every socket but the relay's to the
     * backend, so that far less than the request fits in them. */
    backend b = {.x = {.send_seed = 21, .send_len = resp}, .delay_ms = 400, .bufs = 256 * 1024};
    backend_start(&b, BK_SLOW_BULK, 1);
    use_gen(fx, &(gen_opts){.backends = &b.addr, .nbackends = 1});

    cg_socket_t c = open_conn_bufs(fx, L_RELAY, 256 * 1024);
    set_nonblock(c, true);
    static unsigned char buf[65536];
    size_t sent = 0;
    uint64_t last = now_ms(), longest = 0;
    while (sent < req) {
        struct pollfd p = {.fd = c, .events = POLLOUT};
        assert_true(ts_poll(&p, 1, 10000) > 0);
        size_t n = req - sent < sizeof(buf) ? req - sent : sizeof(buf);
        stream_fill(20, sent, buf, n);
        long w = ts_send(c, buf, n);
        if (w > 0) {
            uint64_t t = now_ms();
            if (t - last > longest)
                longest = t - last;
            last = t;
            sent += (size_t)w;
        } else {
            assert_true(w < 0 && (ts_errno() == EAGAIN || ts_errno() == EINTR));
        }
    }
    assert_int_equal(shutdown(c, TS_SHUT_WR), 0);
    xfer x = {.fd = c};
    assert_int_equal(run_xfer_half(&x, 30000), 0);
    backend_join(&b);

    assert_int_equal(b.x.err, 0);
    assert_int_equal(b.x.recv_len, req);
    assert_true(b.x.recv_hash == stream_hash(20, req));
    assert_int_equal(x.recv_len, resp);
    assert_true(x.recv_hash == stream_hash(21, resp));
    assert_true(longest >= 200); /* held back while the backend slept */
    assert_all_closed(fx, 5000);
    ts_close(c);
    cg__lsum s = sum_of(fx, L_RELAY);
    assert_int_equal(s.bytes_in, req);
    assert_int_equal(s.bytes_out, resp);
    assert_int_equal(s.backend_errors, 0);
}

/* Several relayed connections at once, spread over both workers. */
static void test_relay_concurrent(void **state)
{
    fixture *fx = *state;
    enum { N = 6 };
    const size_t len = 2 * MIB;
    backend bs[N];
    struct sockaddr_in addrs[N];
    for (int i = 0; i < N; i++) {
        bs[i] = (backend){.x = {.send_seed = 100, .send_len = len}};
        backend_start(&bs[i], BK_XFER, 1);
        addrs[i] = bs[i].addr;
    }
    use_gen(fx, &(gen_opts){.backends = addrs, .nbackends = N});

    cg_socket_t fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = open_conn(fx, L_RELAY);

    /* Round robin: each backend gets exactly one client (which one depends
     * on which worker starts its relay first). */
    xfer xs[N];
    for (int i = 0; i < N; i++)
        xs[i] = (xfer){
            .fd = fds[i], .send_seed = 200u + (unsigned)i, .send_len = len, .recv_hash = FNV_INIT};
    bool done[N] = {false};
    int left = N;
    static unsigned char buf[65536];
    bool shut[N] = {false};
    for (int i = 0; i < N; i++)
        set_nonblock(fds[i], true);
    uint64_t deadline = now_ms() + 60000;
    while (left > 0 && now_ms() < deadline) {
        /* Only the open ones: WSAPoll has no "ignore this entry". */
        struct pollfd p[N];
        int which[N];
        unsigned np = 0;
        for (int i = 0; i < N; i++) {
            if (done[i])
                continue;
            which[np] = i;
            p[np].fd = fds[i];
            p[np].events = (short)(POLLIN | (xs[i].sent < len ? POLLOUT : 0));
            p[np].revents = 0;
            np++;
        }
        assert_true(ts_poll(p, np, 1000) >= 0);
        for (unsigned k = 0; k < np; k++) {
            int i = which[k];
            short rev = p[k].revents;
            if (rev & (POLLIN | POLLHUP | POLLERR)) {
                long n = ts_recv(fds[i], buf, sizeof(buf));
                if (n > 0) {
                    xs[i].recv_hash = fnv_update(xs[i].recv_hash, buf, (size_t)n);
                    xs[i].recv_len += (size_t)n;
                } else if (n == 0) {
                    done[i] = true;
                    left--;
                } else {
                    assert_true(ts_errno() == EAGAIN);
                }
            }
            if ((rev & POLLOUT) && xs[i].sent < len) {
                size_t n = len - xs[i].sent < sizeof(buf) ? len - xs[i].sent : sizeof(buf);
                stream_fill(xs[i].send_seed, xs[i].sent, buf, n);
                long w = ts_send(fds[i], buf, n);
                if (w > 0)
                    xs[i].sent += (size_t)w;
            }
            if (xs[i].sent == len && !shut[i]) {
                shutdown(fds[i], TS_SHUT_WR);
                shut[i] = true;
            }
        }
    }
    assert_int_equal(left, 0);
    uint64_t want = stream_hash(100, len);
    unsigned seen = 0;
    for (int i = 0; i < N; i++) {
        backend_join(&bs[i]);
        assert_int_equal(bs[i].served, 1);
        assert_int_equal(bs[i].x.err, 0);
        assert_int_equal(xs[i].recv_len, len);
        assert_true(xs[i].recv_hash == want);
        assert_int_equal(bs[i].x.recv_len, len);
        for (int j = 0; j < N; j++)
            if (bs[i].x.recv_hash == stream_hash(200u + (unsigned)j, len))
                seen |= 1u << j;
        ts_close(fds[i]);
    }
    assert_int_equal(seen, (1u << N) - 1);
    /* None closed while they were handed out, so least loaded with
     * round-robin ties alternates: three each. */
    assert_all_closed(fx, 5000);
    for (size_t w = 0; w < NWORKERS; w++) {
        uint64_t h, a;
        cg__stats_worker(fx->stats, w, &h, &a);
        assert_int_equal(h, N / NWORKERS);
    }
    cg__lsum s = sum_of(fx, L_RELAY);
    assert_int_equal(s.bytes_in, N * len);
    assert_int_equal(s.bytes_out, N * len);
}

/* The client shuts down first; the backend sees EOF and still answers. */
static void test_half_close_client_first(void **state)
{
    fixture *fx = *state;
    backend b = {0};
    backend_start(&b, BK_REPLY_EOF, 1);
    use_gen(fx, &(gen_opts){.backends = &b.addr, .nbackends = 1});

    cg_socket_t c = open_conn(fx, L_RELAY);
    assert_int_equal(ts_send(c, "ping", 4), 4);
    assert_int_equal(shutdown(c, TS_SHUT_WR), 0);
    char got[16];
    long n = read_to_end(c, got, sizeof(got), 5000);
    backend_join(&b);
    assert_int_equal(b.got_len, 4);
    assert_memory_equal(b.got, "ping", 4);
    assert_int_equal(n, 4);
    assert_memory_equal(got, "pong", 4);
    assert_all_closed(fx, 5000);
    ts_close(c);
    cg__lsum s = sum_of(fx, L_RELAY);
    assert_int_equal(s.bytes_in, 4);
    assert_int_equal(s.bytes_out, 4);
}

/* The backend shuts down first; the client still gets its bytes through. */
static void test_half_close_backend_first(void **state)
{
    fixture *fx = *state;
    backend b = {0};
    backend_start(&b, BK_SHUT_FIRST, 1);
    use_gen(fx, &(gen_opts){.backends = &b.addr, .nbackends = 1});

    cg_socket_t c = open_conn(fx, L_RELAY);
    char got[16];
    long n = read_to_end(c, got, sizeof(got), 5000); /* "hello", then EOF */
    assert_int_equal(n, 5);
    assert_memory_equal(got, "hello", 5);
    assert_int_equal(ts_send(c, "after", 5), 5);
    assert_int_equal(shutdown(c, TS_SHUT_WR), 0);
    backend_join(&b);
    assert_int_equal(b.got_len, 5);
    assert_memory_equal(b.got, "after", 5);
    assert_all_closed(fx, 5000);
    ts_close(c);
}

/* A client that sends but does not read: the relay stops reading it once
 * one chunk is pending, so the client soon cannot write more; then it reads
 * everything back intact. */
static void test_backpressure(void **state)
{
    fixture *fx = *state;
    cg_socket_t c = open_conn_bufs(fx, L_ECHO, 32 * 1024);
    set_nonblock(c, true);
    static unsigned char buf[65536];
    size_t sent = 0;
    for (;;) {
        struct pollfd p = {.fd = c, .events = POLLOUT};
        if (ts_poll(&p, 1, 300) == 0)
            break; /* stalled for 300 ms: the relay stopped reading us */
        stream_fill(5, sent, buf, sizeof(buf));
        long w = ts_send(c, buf, sizeof(buf));
        if (w > 0)
            sent += (size_t)w;
        assert_true(sent < 64 * MIB);
    }
    /* Kernel buffers (four small ones) plus one pending chunk. */
    assert_true(sent < 4 * MIB);

    set_nonblock(c, false);
    xfer x = {.fd = c, .send_seed = 5, .send_len = sent, .sent = sent};
    assert_int_equal(run_xfer(&x, 30000), 0);
    assert_int_equal(x.recv_len, sent);
    assert_true(x.recv_hash == stream_hash(5, sent));
    assert_all_closed(fx, 5000);
    ts_close(c);
}

/* Refused connect, one backend: one attempt, one log line, reset client. */
static void test_backend_refused(void **state)
{
    fixture *fx = *state;
    struct sockaddr_in down = refused_addr();
    use_gen(fx, &(gen_opts){.backends = &down, .nbackends = 1});
    capture cap;
    capture_begin(&cap);

    cg_socket_t c = open_conn(fx, L_RELAY);
    char got[16];
    long n = read_to_end(c, got, sizeof(got), 5000);
    assert_true(n == -ECONNRESET || n == 0);
    assert_all_closed(fx, 5000);
    ts_close(c);

    char *log = capture_end(&cap);
    assert_int_equal(count_substr(log, "event=backend_error"), 1);
    assert_non_null(strstr(log, "listener=relay peer=127.0.0.1:"));
    assert_non_null(strstr(log, "error=\"connection refused\""));
    free(log);
    cg__lsum s = sum_of(fx, L_RELAY);
    assert_int_equal(s.backend_errors, 1);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.bytes_in, 0);
    assert_int_equal(s.bytes_out, 0);
}

/* Two backends, both down: two attempts and two lines, one error counted. */
static void test_backend_both_refused(void **state)
{
    fixture *fx = *state;
    struct sockaddr_in down[2] = {refused_addr(), refused_addr()};
    use_gen(fx, &(gen_opts){.backends = down, .nbackends = 2});
    capture cap;
    capture_begin(&cap);

    cg_socket_t c = open_conn(fx, L_RELAY);
    char got[16];
    long n = read_to_end(c, got, sizeof(got), 5000);
    assert_true(n == -ECONNRESET || n == 0);
    assert_all_closed(fx, 5000);
    ts_close(c);

    char *log = capture_end(&cap);
    assert_int_equal(count_substr(log, "event=backend_error"), 2);
    char b0[64], b1[64];
    snprintf(b0, sizeof(b0), "backend=127.0.0.1:%u", (unsigned)ntohs(down[0].sin_port));
    snprintf(b1, sizeof(b1), "backend=127.0.0.1:%u", (unsigned)ntohs(down[1].sin_port));
    assert_non_null(strstr(log, b0));
    assert_non_null(strstr(log, b1));
    free(log);
    assert_int_equal(sum_of(fx, L_RELAY).backend_errors, 1);
}

/* The first backend is down, the next one answers: no error at all. */
static void test_backend_failover(void **state)
{
    fixture *fx = *state;
    backend b = {.x = {.send_seed = 9, .send_len = 1000}};
    backend_start(&b, BK_XFER, 1);
    struct sockaddr_in addrs[2] = {refused_addr(), b.addr};
    use_gen(fx, &(gen_opts){.backends = addrs, .nbackends = 2});

    cg_socket_t c = open_conn(fx, L_RELAY); /* rr = 0: the dead one first */
    xfer x = {.fd = c, .send_seed = 8, .send_len = 1000};
    assert_int_equal(run_xfer(&x, 10000), 0);
    backend_join(&b);
    assert_true(x.recv_hash == stream_hash(9, 1000));
    assert_true(b.x.recv_hash == stream_hash(8, 1000));
    assert_all_closed(fx, 5000);
    ts_close(c);
    assert_int_equal(sum_of(fx, L_RELAY).backend_errors, 0);
}

/* A backend that never answers the SYN: the connect timer fires. */
static void test_connect_timeout(void **state)
{
    fixture *fx = *state;
    blackhole bh;
    if (!blackhole_open(&bh)) {
        blackhole_close(&bh);
        skip();
    }
    use_gen(fx, &(gen_opts){.backends = &bh.addr, .nbackends = 1, .connect_timeout_ms = 150});
    capture cap;
    capture_begin(&cap);

    uint64_t t0 = now_ms();
    cg_socket_t c = open_conn(fx, L_RELAY);
    char got[16];
    long n = read_to_end(c, got, sizeof(got), 5000);
    uint64_t took = now_ms() - t0;
    assert_true(n == -ECONNRESET || n == 0);
    assert_true(took >= 149);
    assert_true(took < 150 + 1500);
    assert_all_closed(fx, 5000);
    ts_close(c);

    char *log = capture_end(&cap);
    assert_int_equal(count_substr(log, "event=backend_error"), 1);
    assert_non_null(strstr(log, "error=\"connection timed out\""));
    free(log);
    assert_int_equal(sum_of(fx, L_RELAY).backend_errors, 1);
    blackhole_close(&bh);
}

/* The first backend times out, the second answers. */
static void test_connect_timeout_failover(void **state)
{
    fixture *fx = *state;
    blackhole bh;
    if (!blackhole_open(&bh)) {
        blackhole_close(&bh);
        skip();
    }
    backend b = {.x = {.send_seed = 11, .send_len = 5000}};
    backend_start(&b, BK_XFER, 1);
    struct sockaddr_in addrs[2] = {bh.addr, b.addr};
    use_gen(fx, &(gen_opts){.backends = addrs, .nbackends = 2, .connect_timeout_ms = 100});

    uint64_t t0 = now_ms();
    cg_socket_t c = open_conn(fx, L_RELAY);
    xfer x = {.fd = c, .send_seed = 10, .send_len = 5000};
    assert_int_equal(run_xfer(&x, 10000), 0);
    assert_true(now_ms() - t0 >= 99);
    backend_join(&b);
    assert_true(x.recv_hash == stream_hash(11, 5000));
    assert_true(b.x.recv_hash == stream_hash(10, 5000));
    assert_all_closed(fx, 5000);
    ts_close(c);
    assert_int_equal(sum_of(fx, L_RELAY).backend_errors, 0);
    blackhole_close(&bh);
}

static void echo_byte(cg_socket_t c)
{
    char ch = 'x';
    assert_int_equal(ts_send(c, &ch, 1), 1);
    assert_true(wait_readable(c, 2000) > 0);
    assert_int_equal(ts_recv(c, &ch, 1), 1);
    assert_int_equal(ch, 'x');
}

/* No bytes for idle_timeout_ms: closed. Bytes before that: kept open. */
static void test_idle_timeout(void **state)
{
    fixture *fx = *state;
    use_gen(fx, &(gen_opts){.echo_idle_ms = 200});

    cg_socket_t c = open_conn(fx, L_ECHO);
    echo_byte(c);
    /* Activity every 100 ms for 400 ms keeps it open past 200 ms. */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(wait_readable(c, 100), 0);
        echo_byte(c);
    }
    uint64_t t0 = now_ms(); /* taken before the last byte was sent */
    echo_byte(c);
    assert_true(wait_readable(c, 3000) > 0);
    uint64_t took = now_ms() - t0;
    char ch;
    assert_int_equal(ts_recv(c, &ch, 1), 0); /* a normal close, not a reset */
    assert_true(took >= 200);
    assert_true(took < 200 + 800);
    assert_all_closed(fx, 5000);
    ts_close(c);
    cg__lsum s = sum_of(fx, L_ECHO);
    assert_int_equal(s.bytes_in, 6);
    assert_int_equal(s.bytes_out, 6);
}

/* An idle relayed connection: both sides are closed. */
static void test_idle_timeout_relay(void **state)
{
    fixture *fx = *state;
    backend b = {0};
    backend_start(&b, BK_ACCEPT, 1);
    use_gen(fx, &(gen_opts){.backends = &b.addr, .nbackends = 1, .relay_idle_ms = 150});

    uint64_t t0 = now_ms();
    cg_socket_t c = open_conn(fx, L_RELAY);
    char got[8];
    assert_int_equal(read_to_end(c, got, sizeof(got), 3000), 0);
    assert_true(now_ms() - t0 >= 150);
    backend_join(&b); /* the backend saw its side closed too */
    assert_int_equal(b.served, 1);
    assert_all_closed(fx, 5000);
    ts_close(c);
}

/* Least loaded: idle connections spread evenly over the two workers. */
static void test_least_loaded(void **state)
{
    fixture *fx = *state;
    cg_socket_t c[4];
    for (int i = 0; i < 4; i++)
        c[i] = open_conn(fx, L_ECHO);
    for (int i = 0; i < 4; i++)
        echo_byte(c[i]); /* each is running on some worker now */
    for (size_t w = 0; w < NWORKERS; w++) {
        uint64_t h, a;
        cg__stats_worker(fx->stats, w, &h, &a);
        assert_int_equal(h, 2);
        assert_int_equal(a, 2);
    }
    for (int i = 0; i < 4; i++)
        ts_close(c[i]);
    assert_all_closed(fx, 5000);
}

static void test_submit_bad_listener(void **state)
{
    fixture *fx = *state;
    cg_socket_t c = ts_socket(AF_INET, SOCK_STREAM);
    assert_int_equal(connect(c, (struct sockaddr *)&fx->laddr, sizeof(fx->laddr)), 0);
    cg_socket_t s = accept(fx->lfd, NULL, NULL);
    assert_true(s != CG_INVALID_SOCKET);
    cg__route *stray = cg__route_new(cg__gen_listener(fx->gen, L_ECHO), NLISTENERS);
    assert_non_null(stray);
    assert_int_equal(cg__pool_submit(fx->pool, s, NULL, stray, NULL, NULL), CG_EINVAL);
    char got[8];
    long n = read_to_end(c, got, sizeof(got), 2000);
    assert_true(n == -ECONNRESET || n == 0);
    ts_close(c);
}

/* Stop with connections in every state: idle, with pending writes,
 * connecting, queued. Everything is reset, counted and freed (ASan). */
static void test_stop_with_open_connections(void **state)
{
    fixture *fx = *state;
    blackhole bh;
    bool have_bh = blackhole_open(&bh);
    use_gen(fx, &(gen_opts){.backends = &bh.addr, .nbackends = 1, .connect_timeout_ms = 10000});

    enum { NIDLE = 3, NBUSY = 2, NCONN = 2, NBURST = 40 };
    cg_socket_t fds[NIDLE + NBUSY + NCONN + NBURST];
    int k = 0;
    for (int i = 0; i < NIDLE; i++) {
        fds[k] = open_conn(fx, L_ECHO);
        echo_byte(fds[k++]);
    }
    static unsigned char buf[256 * 1024];
    memset(buf, 'b', sizeof(buf));
    for (int i = 0; i < NBUSY; i++) {
        /* Sends without reading: the echo side has a write pending. */
        fds[k] = open_conn_bufs(fx, L_ECHO, 32 * 1024);
        set_nonblock(fds[k], true);
        for (int j = 0; j < 8; j++) {
            struct pollfd p = {.fd = fds[k], .events = POLLOUT};
            if (ts_poll(&p, 1, 100) == 0)
                break;
            (void)ts_send(fds[k], buf, sizeof(buf));
        }
        set_nonblock(fds[k++], false);
    }
    if (have_bh)
        for (int i = 0; i < NCONN; i++)
            fds[k++] = open_conn(fx, L_RELAY);
    for (int i = 0; i < NBURST; i++)
        fds[k++] = open_conn(fx, L_ECHO);

    cg__pool_stop(fx->pool);
    fx->pool = NULL;

    assert_int_equal(cg__admission_active(&fx->admission), 0);
    uint64_t handled = 0, finished = 0;
    for (size_t w = 0; w < NWORKERS; w++) {
        handled += atomic_load(&fx->stats->slots[1 + w].handled);
        finished += atomic_load(&fx->stats->slots[1 + w].finished);
    }
    assert_int_equal(handled, fx->submitted);
    assert_int_equal(finished, fx->submitted);
    cg__lsum all;
    cg__stats_sum_all(fx->stats, &all);
    assert_int_equal(all.closed, fx->submitted);

    /* Every client sees its connection gone (reset, or EOF after data). */
    for (int i = 0; i < k; i++) {
        static char sink[1 << 20];
        long n = read_to_end(fds[i], sink, sizeof(sink), 3000);
        assert_true(n >= 0 || n == -ECONNRESET);
        ts_close(fds[i]);
    }
    if (have_bh)
        blackhole_close(&bh);
}

/* Not a check: how fast bytes go through echo on one connection. The
 * client sends a constant buffer and only counts what comes back, so that
 * the relay, not the test's hashing, is what is measured. */
static void test_echo_throughput(void **state)
{
    fixture *fx = *state;
    const char *env = getenv("CG_RELAY_BENCH_MB");
    size_t mb = env ? (size_t)strtoul(env, NULL, 10) : 64;
    if (mb == 0)
        mb = 64;
    size_t len = mb * MIB, sent = 0, got = 0;
    static char buf[256 * 1024];
    memset(buf, 'e', sizeof(buf));

    cg_socket_t c = open_conn(fx, L_ECHO);
    set_nonblock(c, true);
    uint64_t t0 = ts_now_us();
    while (got < len) {
        struct pollfd p = {.fd = c, .events = POLLIN | (sent < len ? POLLOUT : 0)};
        assert_true(ts_poll(&p, 1, 10000) > 0);
        if (p.revents & POLLOUT) {
            long w = ts_send(c, buf, len - sent < sizeof(buf) ? len - sent : sizeof(buf));
            if (w > 0 && (sent += (size_t)w) == len)
                shutdown(c, TS_SHUT_WR);
        }
        if (p.revents & (POLLIN | POLLHUP)) {
            long n = ts_recv(c, buf, sizeof(buf));
            assert_true(n > 0 || (n < 0 && ts_errno() == EAGAIN));
            if (n > 0)
                got += (size_t)n;
        }
    }
    double s = (double)(ts_now_us() - t0) / 1e6;
    assert_int_equal(got, len);
    char ch;
    assert_true(wait_readable(c, 5000) > 0);
    assert_int_equal(ts_recv(c, &ch, 1), 0);
    printf("# echo throughput: %zu MiB each way in %.3f s = %.1f MB/s each way\n", mb, s,
           (double)len / 1e6 / s);
    assert_all_closed(fx, 5000);
    ts_close(c);
}

int main(void)
{
    ts_init();
    if (getenv("CG_TEST_FILTER") != NULL) /* e.g. CG_TEST_FILTER='*idle*' */
        cmocka_set_test_filter(getenv("CG_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_1mib, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_8mib_each_way, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_backpressure_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_client_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_backend_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_both_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_failover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout_failover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout_relay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_least_loaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_bad_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_open_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_echo_throughput, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
