/* cgload.c — the load generator of the condgate benchmarks (Linux, epoll).
 *
 *   cgload conn|reject|bulk|hold|serve [options] HOST:PORT
 *
 * conn    one connection per exchange: connect, send --size bytes, read
 *         --resp bytes back (or up to EOF), close; --concurrency exchanges
 *         in flight, for --duration seconds or --count exchanges.
 * reject  the same, but the target is expected to refuse: a reset, an EOF
 *         without data or a refused connect is a rejection; any data back is
 *         an error ("admitted").
 * bulk    --concurrency connections, each sending --bytes and reading them
 *         back (echo) at the same time; every byte is checked.
 * hold    opens --count connections, one exchange on each, then keeps them
 *         idle; prints "held N" once they are all up.
 * serve   a backend: echo, or with --reply N, N bytes for each request.
 *
 * Each loop is one thread with its own epoll set, connections and counters
 * (--threads N runs N of them); the counters are merged when they end. Only
 * loopback addresses are accepted, as targets, sources and listeners.
 * See tests/bench/README.md.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define CHUNK (256u * 1024u) /* largest single read or write */
#define PAT_PERIOD 65521u    /* pattern period: prime, so shifted data never lines up */
#define MAX_EVENTS 256       /* events taken per epoll_wait */
#define SAMPLE_BLOCK 65536u  /* latencies per sample block */
#define SAMPLE_BLOCKS 64u    /* blocks per loop: 4 Mi exact samples, 32 MiB */
#define MAX_THREADS 64u
#define MAX_SOURCES (1u << 20) /* --src addresses: enough to pre-fill a source table */
#define HOLD_TICK_NS 200000000ull  /* hold: how often loops look for the end of --duration */
#define CONNECT_SLOW_NS 1000000ull /* a connect(2) call this long looked for a free port */
#define BACKOFF_MS 1               /* wait after a connection failed before it started */
#define PP_MAX 108 /* a PROXY v1 line is at most 107 bytes (CRLF included); v2 here 28 or 52 */
#define PP1_MAX 107u

/* ------------------------------------------------------------------------ */
/* Options                                                                  */

enum mode { M_CONN, M_REJECT, M_BULK, M_HOLD, M_SERVE, M_MODES };
static const char *const mode_names[M_MODES] = {"conn", "reject", "bulk", "hold", "serve"};

union addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

struct opts {
    enum mode mode;
    union addr target;
    socklen_t target_len;
    char target_str[64];
    uint64_t size;  /* request bytes (serve --reply: request size) */
    uint64_t resp;  /* response bytes; 0: up to EOF */
    uint64_t bytes; /* bulk: bytes each way per connection */
    uint64_t count; /* exchanges (conn, reject) or connections (hold); 0: unset */
    uint64_t reply; /* serve: bytes per reply */
    bool reply_set;
    unsigned concurrency;
    unsigned threads;
    double duration; /* seconds; 0: unset */
    unsigned timeout_ms;
    bool json;
    bool half_close;
    uint8_t proxy; /* 1, 2: clients send a PROXY header of that version; serve expects one */
    union addr *src;
    size_t nsrc;
};

/* ------------------------------------------------------------------------ */
/* Shared state                                                             */

/* epoll keys: a connection is (generation << 32 | slot or descriptor), so an
 * event that outlived its connection is recognised and dropped, never
 * applied to whatever took the slot or the descriptor next. */
#define KEY_STOP UINT64_MAX
#define KEY_LISTEN (UINT64_MAX - 1)
#define KEY(gen, idx) ((uint64_t)(gen) << 32 | (uint32_t)(idx))

static volatile sig_atomic_t g_signalled;
static int g_stopfd = -1;    /* eventfd, readable once a stop signal came */
static unsigned char *g_pat; /* PAT_PERIOD + CHUNK bytes; byte i is pattern(i % PAT_PERIOD) */
static uint64_t g_t0;        /* start of the run */

/* hold: connections settled (held or failed), held, and when to let go */
static atomic_uint_fast64_t g_settled;
static atomic_uint_fast64_t g_held;
static atomic_uint_fast64_t g_held_at;
static atomic_uint_fast64_t g_hold_end;
static uint64_t g_hold_total;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig)
{
    int saved = errno;
    uint64_t one = 1;
    (void)sig;
    g_signalled = 1;
    if (g_stopfd >= 0) {
        ssize_t r = write(g_stopfd, &one, sizeof one);
        (void)r;
    }
    errno = saved;
}

static bool would_block(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK;
}

/* The bytes every request, reply and bulk stream is made of: a fixed random
 * sequence of period PAT_PERIOD, stored with CHUNK bytes of wrap-around so
 * that any CHUNK bytes from any offset are contiguous. Byte i of a stream
 * that starts at offset o is g_pat[(o + i) % PAT_PERIOD]: checking received
 * data is one memcmp, and sending needs no copy at all. */
static int pattern_init(void)
{
    uint64_t s = 0x636f6e6467617465ull; /* "condgate" */
    g_pat = malloc((size_t)PAT_PERIOD + CHUNK);
    if (!g_pat)
        return -1;
    for (size_t i = 0; i < PAT_PERIOD; i += 8) {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        for (size_t k = 0; k < 8 && i + k < PAT_PERIOD; k++)
            g_pat[i + k] = (unsigned char)(z >> (8 * k));
    }
    for (size_t i = PAT_PERIOD; i < (size_t)PAT_PERIOD + CHUNK; i++)
        g_pat[i] = g_pat[i % PAT_PERIOD];
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Counters and latencies                                                   */

enum err_kind { E_REFUSED, E_RESET, E_TIMEOUT, E_SHORT, E_ADMITTED, E_CORRUPT, E_OTHER, E_KINDS };
static const char *const err_names[E_KINDS] = {"refused",  "reset",   "timeout", "short_read",
                                               "admitted", "corrupt", "other"};
/* The kinds each mode shows even when zero (others show when not zero). */
static const unsigned err_shown[M_MODES] = {
    [M_CONN] = 1u << E_REFUSED | 1u << E_RESET | 1u << E_TIMEOUT | 1u << E_SHORT | 1u << E_OTHER,
    [M_REJECT] = 1u << E_ADMITTED | 1u << E_TIMEOUT | 1u << E_OTHER,
    [M_BULK] = 1u << E_REFUSED | 1u << E_RESET | 1u << E_TIMEOUT | 1u << E_SHORT | 1u << E_CORRUPT |
               1u << E_OTHER,
    [M_HOLD] = 1u << E_REFUSED | 1u << E_RESET | 1u << E_TIMEOUT | 1u << E_SHORT | 1u << E_OTHER,
};

enum rej_kind { R_RESET, R_EOF, R_REFUSED, R_KINDS };
static const char *const rej_names[R_KINDS] = {"reset", "eof", "refused"};

/* Log-linear histogram of nanoseconds: values below 256 exactly, then 128
 * buckets per power of two (each under 0.8 % wide). It backs the exact
 * samples, which are kept up to SAMPLE_BLOCKS * SAMPLE_BLOCK per loop. */
#define HSUB 7u
#define HBUCKETS ((65u - HSUB) << HSUB)

static unsigned hist_index(uint64_t v)
{
    unsigned msb, shift;
    if (v < (2u << HSUB))
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    shift = msb - HSUB;
    return (shift << HSUB) + (unsigned)(v >> shift);
}

/* The middle of bucket i. */
static uint64_t hist_value(unsigned i)
{
    unsigned shift;
    uint64_t sub;
    if (i < (2u << HSUB))
        return i;
    shift = (i >> HSUB) - 1;
    sub = (uint64_t)((i & ((1u << HSUB) - 1)) | (1u << HSUB));
    return (sub << shift) + ((1ull << shift) >> 1);
}

struct stats {
    uint64_t completed; /* exchanges, rejections, transfers or held connections */
    uint64_t err[E_KINDS];
    uint64_t rej[R_KINDS];
    uint64_t aborted; /* in flight when the run ended: neither done nor failed */
    uint64_t dropped; /* hold: closed by the peer while held */
    uint64_t tx_bytes, rx_bytes;
    uint64_t tx_end, rx_end;       /* bulk: when the last stream was all sent / all back */
    int other_errno;               /* the first error of kind "other" */
    uint64_t connects, connect_ns; /* connect(2) calls and the time spent in them */
    uint64_t connect_slow;         /* calls over CONNECT_SLOW_NS */
    uint64_t connect_max;
    uint64_t lat_n, lat_sum, lat_min, lat_max;
    uint64_t hist[HBUCKETS];
    uint64_t *blocks[SAMPLE_BLOCKS];
    size_t nsamples;
    bool samples_lost; /* out of sample blocks: percentiles from the histogram */
};

static void lat_record(struct stats *st, uint64_t ns)
{
    size_t b = st->nsamples / SAMPLE_BLOCK;

    st->hist[hist_index(ns)]++;
    if (st->lat_n == 0 || ns < st->lat_min)
        st->lat_min = ns;
    if (ns > st->lat_max)
        st->lat_max = ns;
    st->lat_n++;
    st->lat_sum += ns;
    if (st->samples_lost)
        return;
    if (b >= SAMPLE_BLOCKS) {
        st->samples_lost = true;
        return;
    }
    if (!st->blocks[b] && !(st->blocks[b] = malloc(SAMPLE_BLOCK * sizeof(uint64_t)))) {
        st->samples_lost = true;
        return;
    }
    st->blocks[b][st->nsamples % SAMPLE_BLOCK] = ns;
    st->nsamples++;
}

static uint64_t err_total(const struct stats *st)
{
    uint64_t n = 0;
    for (int k = 0; k < E_KINDS; k++)
        n += st->err[k];
    return n;
}

static enum err_kind classify(int e)
{
    switch (e) {
    case ECONNREFUSED:
        return E_REFUSED;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
        return E_RESET;
    case ETIMEDOUT:
        return E_TIMEOUT;
    default:
        return E_OTHER;
    }
}

/* ------------------------------------------------------------------------ */
/* Client loops: conn, reject, bulk, hold                                   */

enum cstate { C_FREE, C_CONNECTING, C_ACTIVE, C_HELD };

struct conn {
    int fd;
    uint32_t gen; /* bumped by every start: the upper half of the epoll key */
    uint8_t state;
    bool sent;     /* the whole request is out */
    uint8_t hlen;  /* --proxy-vN: header bytes (0: none) */
    uint8_t hoff;  /* header bytes sent */
    uint32_t poff; /* bulk: pattern offset of this stream */
    uint64_t t_start;
    uint64_t deadline; /* 0: not in the timeout queue */
    uint64_t tx, rx;
    struct conn *prev, *next;
    unsigned char hdr[PP_MAX]; /* --proxy-vN: the PROXY header, sent before the request */
};

struct loop {
    const struct opts *o;
    unsigned id;
    pthread_t thread;
    int ep;
    struct conn *conns;
    uint32_t nconns;
    uint32_t *freestk; /* free slots */
    uint32_t nfree;
    uint32_t inflight; /* connecting or exchanging */
    uint32_t limit;    /* most in flight at once */
    uint64_t quota;    /* connections this loop starts; UINT64_MAX: no limit */
    uint64_t started;
    uint64_t t_end; /* stop starting and end the run; UINT64_MAX: no limit */
    uint64_t t_finish;
    uint64_t timeout_ns;
    uint64_t stale; /* events for connections already gone */
    unsigned src_next;
    bool backoff;
    /* Every connection has the same timeout, so a queue in the order the
     * deadlines were set is also in deadline order. */
    struct conn *tq_head, *tq_tail;
    unsigned char *rbuf;
    struct stats st;
};

static void tq_remove(struct loop *L, struct conn *c)
{
    if (!c->deadline)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        L->tq_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        L->tq_tail = c->prev;
    c->prev = c->next = NULL;
    c->deadline = 0;
}

static void tq_push(struct loop *L, struct conn *c, uint64_t deadline)
{
    tq_remove(L, c);
    c->deadline = deadline;
    c->prev = L->tq_tail;
    if (L->tq_tail)
        L->tq_tail->next = c;
    else
        L->tq_head = c;
    L->tq_tail = c;
}

static void conn_release(struct loop *L, struct conn *c)
{
    tq_remove(L, c);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->state == C_CONNECTING || c->state == C_ACTIVE)
        L->inflight--;
    c->state = C_FREE;
    L->freestk[L->nfree++] = (uint32_t)(c - L->conns);
}

/* hold: one more connection is held or has failed. The loop that settles the
 * last one prints "held N", the line scripts wait for. */
static void hold_settle(const struct opts *o, bool held)
{
    uint64_t settled, nheld, now;
    if (held)
        atomic_fetch_add(&g_held, 1);
    settled = atomic_fetch_add(&g_settled, 1) + 1;
    if (settled != g_hold_total)
        return;
    nheld = atomic_load(&g_held);
    now = now_ns();
    atomic_store(&g_held_at, now);
    if (o->duration > 0)
        atomic_store(&g_hold_end, now + (uint64_t)(o->duration * 1e9));
    printf("held %" PRIu64 "\n", nheld);
    fflush(stdout);
    if (nheld < g_hold_total)
        fprintf(stderr, "cgload: %" PRIu64 " of %" PRIu64 " connections failed\n",
                g_hold_total - nheld, g_hold_total);
}

static void conn_fail(struct loop *L, struct conn *c, enum err_kind k, int e)
{
    L->st.err[k]++;
    if (k == E_OTHER && !L->st.other_errno)
        L->st.other_errno = e;
    if (L->o->mode == M_HOLD)
        hold_settle(L->o, false);
    conn_release(L, c);
}

/* The exchange is done (or, in reject mode, the rejection came). */
static void conn_success(struct loop *L, struct conn *c, uint64_t now)
{
    lat_record(&L->st, now - c->t_start);
    L->st.completed++;
    if (L->o->mode != M_HOLD) {
        conn_release(L, c);
        return;
    }
    tq_remove(L, c);
    c->state = C_HELD;
    L->inflight--;
    hold_settle(L->o, true);
}

static void rejected(struct loop *L, struct conn *c, enum rej_kind k, uint64_t now)
{
    L->st.rej[k]++;
    conn_success(L, c, now);
}

/* A held connection ended: not an error of the run, but counted. */
static void held_drop(struct loop *L, struct conn *c)
{
    L->st.dropped++;
    conn_release(L, c);
}

/* Socket error e on c: in reject mode a refused or reset connection is the
 * expected outcome; otherwise it is an error of its kind. */
static void conn_error(struct loop *L, struct conn *c, int e, uint64_t now)
{
    enum err_kind k = classify(e);
    if (c->state == C_HELD) {
        held_drop(L, c);
    } else if (L->o->mode == M_REJECT && (k == E_REFUSED || k == E_RESET)) {
        rejected(L, c, k == E_REFUSED ? R_REFUSED : R_RESET, now);
    } else {
        conn_fail(L, c, k, e);
    }
}

static void conn_eof(struct loop *L, struct conn *c, uint64_t now)
{
    const struct opts *o = L->o;
    if (c->state == C_HELD)
        held_drop(L, c);
    else if (o->mode == M_REJECT)
        rejected(L, c, R_EOF, now);
    else if (o->mode == M_CONN && o->resp == 0)
        conn_success(L, c, now);
    else
        conn_fail(L, c, E_SHORT, 0);
}

static socklen_t addr_len(const union addr *a)
{
    return a->sa.sa_family == AF_INET6 ? (socklen_t)sizeof a->in6 : (socklen_t)sizeof a->in;
}

/* The PROXY protocol v2 signature (12 bytes). */
static const unsigned char pp2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                          0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* --proxy-vN: the PROXY header of this connection into out (PP_MAX bytes),
 * naming its own address and port as the client's and the target as the
 * destination. The port is bound by connect(2), so call it after that.
 * Returns the length, or -1. */
static int proxy_header(const struct opts *o, int fd, unsigned char *out)
{
    const union addr *dst = &o->target;
    union addr src;
    socklen_t len = sizeof src;
    bool v6;

    if (getsockname(fd, &src.sa, &len) != 0)
        return -1;
    if (src.sa.sa_family != dst->sa.sa_family)
        return -1;
    v6 = src.sa.sa_family == AF_INET6;
    if (o->proxy == 1) {
        const void *sa = v6 ? (const void *)&src.in6.sin6_addr : (const void *)&src.in.sin_addr;
        const void *da = v6 ? (const void *)&dst->in6.sin6_addr : (const void *)&dst->in.sin_addr;
        char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
        int n;
        if (!inet_ntop(src.sa.sa_family, sa, s, sizeof s) ||
            !inet_ntop(dst->sa.sa_family, da, d, sizeof d))
            return -1;
        n = snprintf((char *)out, PP_MAX, "PROXY %s %s %s %u %u\r\n", v6 ? "TCP6" : "TCP4", s, d,
                     (unsigned)ntohs(v6 ? src.in6.sin6_port : src.in.sin_port),
                     (unsigned)ntohs(v6 ? dst->in6.sin6_port : dst->in.sin_port));
        return n > 0 && (unsigned)n <= PP1_MAX ? n : -1;
    }
    memcpy(out, pp2_sig, sizeof pp2_sig);
    out[12] = 0x21; /* version 2, PROXY */
    if (v6) {
        out[13] = 0x21; /* AF_INET6, STREAM */
        out[14] = 0;
        out[15] = 36;
        memcpy(out + 16, &src.in6.sin6_addr, 16);
        memcpy(out + 32, &dst->in6.sin6_addr, 16);
        memcpy(out + 48, &src.in6.sin6_port, 2);
        memcpy(out + 50, &dst->in6.sin6_port, 2);
        return 52;
    }
    out[13] = 0x11; /* AF_INET, STREAM */
    out[14] = 0;
    out[15] = 12;
    memcpy(out + 16, &src.in.sin_addr, 4);
    memcpy(out + 20, &dst->in.sin_addr, 4);
    memcpy(out + 24, &src.in.sin_port, 2);
    memcpy(out + 26, &dst->in.sin_port, 2);
    return 28;
}

/* Start one connection in a free slot. */
static void conn_start(struct loop *L)
{
    const struct opts *o = L->o;
    struct conn *c = &L->conns[L->freestk[--L->nfree]];
    uint64_t seq = L->started++;
    struct epoll_event ev;
    uint64_t took;
    int e, rc;

    c->state = C_CONNECTING;
    c->gen++;
    c->sent = false;
    c->hlen = c->hoff = 0;
    c->t_start = 0;
    c->tx = c->rx = 0;
    c->deadline = 0;
    c->prev = c->next = NULL;
    c->poff = (uint32_t)((seq * o->threads + L->id) * 7919u % PAT_PERIOD);
    L->inflight++;
    c->fd = socket(o->target.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        goto fail;
    if (o->nsrc) {
        const union addr *s = &o->src[L->src_next++ % o->nsrc];
        int one = 1;
        /* The port is chosen at connect time, for the whole 4-tuple, so
         * every source address has its own range of ephemeral ports. */
        (void)setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, &s->sa, addr_len(s)) != 0)
            goto fail;
    }
    c->t_start = now_ns();
    rc = connect(c->fd, &o->target.sa, o->target_len);
    e = errno;
    took = now_ns() - c->t_start;
    L->st.connects++;
    L->st.connect_ns += took;
    L->st.connect_slow += took > CONNECT_SLOW_NS;
    if (took > L->st.connect_max)
        L->st.connect_max = took;
    if (rc != 0 && e != EINPROGRESS) {
        errno = e;
        goto fail;
    }
    if (o->proxy) {
        int h = proxy_header(o, c->fd, c->hdr);
        if (h < 0)
            goto fail;
        c->hlen = (uint8_t)h;
    }
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = KEY(c->gen, c - L->conns);
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        goto fail;
    tq_push(L, c, c->t_start + L->timeout_ns);
    return;
fail:
    e = errno;
    if (!c->t_start)
        c->t_start = now_ns();
    conn_error(L, c, e, now_ns());
}

/* Start connections while there is room. A connection that fails before it
 * is under way (no ports, no descriptors) makes the loop wait BACKOFF_MS. */
static void refill(struct loop *L)
{
    L->backoff = false;
    while (L->nfree && L->inflight < L->limit && L->started < L->quota) {
        uint64_t errs = err_total(&L->st);
        conn_start(L);
        if (err_total(&L->st) != errs) {
            L->backoff = true;
            break;
        }
    }
}

static bool readable(uint32_t ev)
{
    return (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
}

/* With edge-triggered events, a read shorter than asked for drained the
 * socket, unless the peer's FIN came with the same event and is still to be
 * read as an EOF. */
static bool drained(ssize_t got, uint32_t ev)
{
    return (size_t)got < CHUNK && !(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
}

/* conn, reject and hold: send the request, then read the response. */
static void exchange_io(struct loop *L, struct conn *c, uint32_t ev, uint64_t now)
{
    const struct opts *o = L->o;

    while (c->tx < o->size || c->hoff < c->hlen) {
        uint64_t left = o->size - c->tx;
        size_t len = left < CHUNK ? (size_t)left : CHUNK;
        size_t hl = (size_t)(c->hlen - c->hoff), h;
        ssize_t n;
        if (hl) {
            /* --proxy-vN: the header and the request in one segment */
            struct iovec iov[2] = {{c->hdr + c->hoff, hl}, {g_pat + c->tx % PAT_PERIOD, len}};
            struct msghdr m = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
            n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        } else {
            n = send(c->fd, g_pat + c->tx % PAT_PERIOD, len, MSG_NOSIGNAL);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (would_block(errno))
                break;
            conn_error(L, c, errno, now);
            return;
        }
        h = (size_t)n < hl ? (size_t)n : hl;
        c->hoff = (uint8_t)(c->hoff + h);
        c->tx += (uint64_t)((size_t)n - h);
        if ((size_t)n < hl + len)
            break;
    }
    if (c->tx == o->size && c->hoff == c->hlen && !c->sent) {
        c->sent = true;
        if (o->half_close)
            (void)shutdown(c->fd, SHUT_WR);
        if (o->mode == M_HOLD && o->resp == 0) {
            conn_success(L, c, now);
            return;
        }
    }
    if (!readable(ev))
        return;
    for (;;) {
        ssize_t r = recv(c->fd, L->rbuf, CHUNK, 0);
        if (r > 0) {
            if (o->mode == M_REJECT) {
                conn_fail(L, c, E_ADMITTED, 0);
                return;
            }
            c->rx += (uint64_t)r;
            if (o->resp && c->rx >= o->resp) {
                conn_success(L, c, now);
                return;
            }
            if (drained(r, ev))
                return;
        } else if (r == 0) {
            conn_eof(L, c, now);
            return;
        } else if (errno != EINTR) {
            if (!would_block(errno))
                conn_error(L, c, errno, now);
            return;
        }
    }
}

/* bulk: send the stream while the socket takes it, read back what came and
 * compare it with what was sent. The timeout counts from the last progress. */
static void bulk_io(struct loop *L, struct conn *c, uint32_t ev, uint64_t now)
{
    const struct opts *o = L->o;
    bool progress = false;

    while (c->tx < o->bytes) {
        uint64_t left = o->bytes - c->tx;
        size_t len = left < CHUNK ? (size_t)left : CHUNK;
        ssize_t n = send(c->fd, g_pat + (c->poff + c->tx) % PAT_PERIOD, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (would_block(errno))
                break;
            conn_error(L, c, errno, now);
            return;
        }
        c->tx += (uint64_t)n;
        L->st.tx_bytes += (uint64_t)n;
        progress = true;
        if (c->tx == o->bytes) {
            if (now > L->st.tx_end)
                L->st.tx_end = now;
            if (o->half_close)
                (void)shutdown(c->fd, SHUT_WR);
        }
        if ((size_t)n < len)
            break;
    }
    while (readable(ev)) {
        ssize_t r = recv(c->fd, L->rbuf, CHUNK, 0);
        if (r > 0) {
            if ((uint64_t)r > c->tx - c->rx ||
                memcmp(L->rbuf, g_pat + (c->poff + c->rx) % PAT_PERIOD, (size_t)r) != 0) {
                conn_fail(L, c, E_CORRUPT, 0);
                return;
            }
            c->rx += (uint64_t)r;
            L->st.rx_bytes += (uint64_t)r;
            progress = true;
            if (c->rx == o->bytes) {
                if (now > L->st.rx_end)
                    L->st.rx_end = now;
                conn_success(L, c, now);
                return;
            }
            if (drained(r, ev))
                break;
        } else if (r == 0) {
            conn_eof(L, c, now);
            return;
        } else if (errno != EINTR) {
            if (!would_block(errno)) {
                conn_error(L, c, errno, now);
                return;
            }
            break;
        }
    }
    if (progress)
        tq_push(L, c, now + L->timeout_ns);
}

/* hold: a held connection should stay silent; data is ignored, an EOF or an
 * error means the peer let go of it. */
static void held_io(struct loop *L, struct conn *c, uint32_t ev)
{
    if (!readable(ev))
        return;
    for (;;) {
        ssize_t r = recv(c->fd, L->rbuf, CHUNK, 0);
        if (r == 0 || (r < 0 && errno != EINTR && !would_block(errno))) {
            held_drop(L, c);
            return;
        }
        if (r < 0 ? errno != EINTR : drained(r, ev))
            return;
    }
}

static void client_event(struct loop *L, struct conn *c, uint32_t ev, uint64_t now)
{
    switch (c->state) {
    case C_FREE:
        return;
    case C_HELD:
        held_io(L, c, ev);
        return;
    case C_CONNECTING:
        if (ev & EPOLLERR) {
            int e = 0;
            socklen_t len = sizeof e;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0 || e == 0)
                e = ECONNRESET;
            conn_error(L, c, e, now);
            return;
        }
        c->state = C_ACTIVE;
        break;
    default:
        break;
    }
    if (L->o->mode == M_BULK)
        bulk_io(L, c, ev, now);
    else
        exchange_io(L, c, ev, now);
}

static int epoll_ms(uint64_t until, uint64_t now)
{
    uint64_t ms;
    if (until == UINT64_MAX)
        return -1;
    if (until <= now)
        return 0;
    ms = (until - now + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void *client_run(void *arg)
{
    struct loop *L = arg;
    const struct opts *o = L->o;
    struct epoll_event evs[MAX_EVENTS];
    uint64_t now = now_ns();

    refill(L);
    for (;;) {
        uint64_t until = L->t_end;
        bool stop = false;
        int n;

        if (g_signalled || now >= L->t_end)
            break;
        if (o->mode == M_HOLD) {
            uint64_t end = atomic_load(&g_hold_end);
            if (end && now >= end)
                break;
            if (o->duration > 0 && now + HOLD_TICK_NS < until)
                until = now + HOLD_TICK_NS;
        } else if (L->started >= L->quota && L->inflight == 0) {
            break;
        }
        if (L->tq_head && L->tq_head->deadline < until)
            until = L->tq_head->deadline;
        n = epoll_wait(L->ep, evs, MAX_EVENTS, L->backoff ? BACKOFF_MS : epoll_ms(until, now));
        if (n < 0 && errno != EINTR) {
            perror("cgload: epoll_wait");
            break;
        }
        now = now_ns();
        for (int i = 0; i < n; i++) {
            uint64_t key = evs[i].data.u64;
            uint32_t slot = (uint32_t)key;
            if (key == KEY_STOP)
                stop = true;
            else if (slot < L->nconns && L->conns[slot].gen == (uint32_t)(key >> 32))
                client_event(L, &L->conns[slot], evs[i].events, now);
            else
                L->stale++;
        }
        if (stop)
            break;
        while (L->tq_head && L->tq_head->deadline <= now)
            conn_fail(L, L->tq_head, E_TIMEOUT, 0);
        if (now < L->t_end && !g_signalled)
            refill(L);
    }
    L->t_finish = now;
    for (uint32_t i = 0; i < L->nconns; i++) {
        struct conn *c = &L->conns[i];
        if (c->state == C_CONNECTING || c->state == C_ACTIVE)
            L->st.aborted++;
        if (c->state != C_FREE)
            conn_release(L, c);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* serve: echo or fixed-size replies                                        */

struct sconn {
    int fd;
    uint32_t gen;
    bool want_out;  /* waiting for EPOLLOUT rather than EPOLLIN */
    bool replied;   /* --reply: the reply is out, reading up to the EOF */
    uint64_t got;   /* --reply: request bytes so far */
    uint64_t left;  /* --reply: reply bytes still to send */
    uint8_t hstate; /* --proxy-vN: where in the PROXY header (PH_DONE: past it) */
    uint8_t hn;     /* header bytes seen (v1: the line; v2: the first 16) */
    uint16_t hskip; /* v2: address and TLV bytes still to skip */
    unsigned char *pend;
    size_t plen, poff; /* echo: bytes read but not yet written back */
};

struct sloop {
    const struct opts *o;
    unsigned id;
    pthread_t thread;
    int ep, lfd;
    unsigned char *buf;
    struct sconn **byfd; /* open connections by descriptor */
    size_t nbyfd;
    uint32_t gen;
    uint64_t accepted, bytes_in, bytes_out, stale;
    uint64_t pp_ok, pp_bad; /* --proxy-vN: headers skipped, connections closed for a bad one */
    bool fd_warned;
};

/* serve --proxy-vN: the PROXY header at the start of each connection is read
 * and dropped, byte by byte as it comes (no buffer: v1 is checked for its
 * "PROXY " start and a CRLF within 107 bytes, v2 for its signature and
 * version, then its length is skipped), so a header split over segments
 * works and nothing beyond it is taken from the request. */
enum { PH_DONE, PH_V1, PH_V1_CR, PH_V2, PH_V2_SKIP };

static void sconn_close(struct sloop *S, struct sconn *s);

/* Consume the header from buf[0..n): returns the bytes it took (n: the header
 * may go on in the next read), or -1 if it is not a valid header. */
static ssize_t proxy_skip(struct sconn *s, const unsigned char *buf, size_t n)
{
    size_t i = 0;
    while (i < n && s->hstate != PH_DONE) {
        unsigned char b;
        if (s->hstate == PH_V2_SKIP) {
            size_t k = n - i < s->hskip ? n - i : s->hskip;
            i += k;
            s->hskip = (uint16_t)(s->hskip - k);
            if (!s->hskip)
                s->hstate = PH_DONE;
            continue;
        }
        b = buf[i++];
        s->hn++;
        switch (s->hstate) {
        case PH_V1:
            if (s->hn <= 6 ? b != (unsigned char)"PROXY "[s->hn - 1] : s->hn >= PP1_MAX)
                return -1;
            if (b == '\r')
                s->hstate = PH_V1_CR;
            break;
        case PH_V1_CR:
            if (b != '\n')
                return -1;
            s->hstate = PH_DONE;
            break;
        default: /* PH_V2: signature, version/command, family, length */
            if (s->hn <= 12 && b != pp2_sig[s->hn - 1])
                return -1;
            if (s->hn == 13 && (b >> 4 != 2 || (b & 15) > 1))
                return -1;
            if (s->hn == 15)
                s->hskip = (uint16_t)(b << 8);
            if (s->hn == 16) {
                s->hskip = (uint16_t)(s->hskip | b);
                s->hstate = s->hskip ? PH_V2_SKIP : PH_DONE;
            }
            break;
        }
    }
    return (ssize_t)i;
}

/* The request bytes of this read: what follows the header, if any. Returns
 * their offset in S->buf, or -1 after closing a connection whose header was
 * bad. */
static ssize_t skip_header(struct sloop *S, struct sconn *s, size_t r)
{
    ssize_t k;
    if (s->hstate == PH_DONE)
        return 0;
    k = proxy_skip(s, S->buf, r);
    if (k < 0) {
        /* a reset, so that a client reading up to the EOF (conn --resp 0)
         * counts an error rather than an exchange */
        struct linger lg = {1, 0};
        (void)setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        S->pp_bad++;
        sconn_close(S, s);
        return -1;
    }
    if (s->hstate == PH_DONE)
        S->pp_ok++;
    return k;
}

static void sconn_close(struct sloop *S, struct sconn *s)
{
    S->byfd[s->fd] = NULL;
    close(s->fd);
    free(s->pend);
    free(s);
}

static int sconn_want(struct sloop *S, struct sconn *s, bool out)
{
    struct epoll_event ev;
    if (s->want_out == out)
        return 0;
    ev.events = out ? EPOLLOUT : EPOLLIN;
    ev.data.u64 = KEY(s->gen, s->fd);
    s->want_out = out;
    return epoll_ctl(S->ep, EPOLL_CTL_MOD, s->fd, &ev);
}

/* Echo: write back what was read; what the socket does not take waits in
 * s->pend and reading stops until it is out. On the client's EOF (only read
 * once nothing is pending) send ours and close. */
static void echo_event(struct sloop *S, struct sconn *s)
{
    ssize_t r, w;

    if (s->plen) {
        w = send(s->fd, s->pend + s->poff, s->plen, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EINTR && !would_block(errno))
                sconn_close(S, s);
            return;
        }
        S->bytes_out += (uint64_t)w;
        s->poff += (size_t)w;
        s->plen -= (size_t)w;
        if (s->plen)
            return;
        free(s->pend);
        s->pend = NULL;
        s->poff = 0;
        if (sconn_want(S, s, false) != 0)
            sconn_close(S, s);
        return;
    }
    r = recv(s->fd, S->buf, CHUNK, 0);
    if (r == 0) {
        (void)shutdown(s->fd, SHUT_WR);
        sconn_close(S, s);
        return;
    }
    if (r < 0) {
        if (errno != EINTR && !would_block(errno))
            sconn_close(S, s);
        return;
    }
    if (s->hstate != PH_DONE) {
        ssize_t k = skip_header(S, s, (size_t)r);
        if (k < 0)
            return;
        r -= k;
        if (!r)
            return;
        if (k)
            memmove(S->buf, S->buf + k, (size_t)r);
    }
    S->bytes_in += (uint64_t)r;
    w = send(s->fd, S->buf, (size_t)r, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EINTR && !would_block(errno)) {
            sconn_close(S, s);
            return;
        }
        w = 0;
    }
    S->bytes_out += (uint64_t)w;
    if (w == r)
        return;
    s->plen = (size_t)(r - w);
    s->pend = malloc(s->plen);
    if (!s->pend) {
        sconn_close(S, s);
        return;
    }
    memcpy(s->pend, S->buf + w, s->plen);
    if (sconn_want(S, s, true) != 0)
        sconn_close(S, s);
}

/* --reply: send what is left of the reply; when it is all out, half-close
 * and read (and drop) whatever comes until the client's EOF. */
static void reply_send(struct sloop *S, struct sconn *s)
{
    const struct opts *o = S->o;
    while (s->left) {
        size_t len = s->left < CHUNK ? (size_t)s->left : CHUNK;
        ssize_t w = send(s->fd, g_pat + (o->reply - s->left) % PAT_PERIOD, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && !would_block(errno)) {
            sconn_close(S, s);
            return;
        }
        if (w > 0) {
            s->left -= (uint64_t)w;
            S->bytes_out += (uint64_t)w;
        }
        if (s->left && (w < 0 || (size_t)w < len)) {
            if (sconn_want(S, s, true) != 0)
                sconn_close(S, s);
            return;
        }
    }
    s->replied = true;
    (void)shutdown(s->fd, SHUT_WR);
    if (sconn_want(S, s, false) != 0)
        sconn_close(S, s);
}

static void reply_event(struct sloop *S, struct sconn *s)
{
    ssize_t r;
    if (s->left) {
        reply_send(S, s);
        return;
    }
    r = recv(s->fd, S->buf, CHUNK, 0);
    if (r == 0 || (r < 0 && errno != EINTR && !would_block(errno))) {
        sconn_close(S, s);
        return;
    }
    if (r < 0)
        return;
    if (s->hstate != PH_DONE) {
        ssize_t k = skip_header(S, s, (size_t)r);
        if (k < 0)
            return;
        r -= k;
    }
    S->bytes_in += (uint64_t)r;
    if (s->replied || s->got >= S->o->size)
        return;
    s->got += (uint64_t)r;
    if (s->got >= S->o->size) {
        s->left = S->o->reply;
        reply_send(S, s);
    }
}

static void serve_accept(struct sloop *S)
{
    for (int k = 0; k < MAX_EVENTS; k++) {
        struct epoll_event ev;
        struct sconn *s;
        int one = 1;
        int fd = accept4(S->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                struct timespec ts = {0, 1000000};
                if (!S->fd_warned)
                    fprintf(stderr, "cgload: serve: accept: %s\n", strerror(errno));
                S->fd_warned = true;
                nanosleep(&ts, NULL);
            }
            return;
        }
        s = (size_t)fd < S->nbyfd ? calloc(1, sizeof *s) : NULL;
        if (!s) {
            close(fd);
            continue;
        }
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s->fd = fd;
        s->gen = ++S->gen;
        s->hstate = S->o->proxy == 1 ? PH_V1 : S->o->proxy == 2 ? PH_V2 : PH_DONE;
        S->byfd[fd] = s;
        ev.events = EPOLLIN;
        ev.data.u64 = KEY(s->gen, fd);
        if (epoll_ctl(S->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            sconn_close(S, s);
            continue;
        }
        S->accepted++;
        if (S->o->reply_set && S->o->size == 0) {
            s->left = S->o->reply;
            reply_send(S, s);
        }
    }
}

static void *serve_run(void *arg)
{
    struct sloop *S = arg;
    struct epoll_event evs[MAX_EVENTS];
    uint64_t end = S->o->duration > 0 ? g_t0 + (uint64_t)(S->o->duration * 1e9) : UINT64_MAX;

    for (;;) {
        uint64_t now = now_ns();
        int n;
        if (g_signalled || now >= end)
            break;
        n = epoll_wait(S->ep, evs, MAX_EVENTS, epoll_ms(end, now));
        if (n < 0 && errno != EINTR) {
            perror("cgload: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t key = evs[i].data.u64;
            uint32_t fd = (uint32_t)key;
            struct sconn *s = fd < S->nbyfd ? S->byfd[fd] : NULL;
            if (key == KEY_STOP)
                return NULL;
            if (key == KEY_LISTEN)
                serve_accept(S);
            else if (!s || s->gen != (uint32_t)(key >> 32))
                S->stale++;
            else if (S->o->reply_set)
                reply_event(S, s);
            else
                echo_event(S, s);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Addresses and the command line                                           */

static bool is_loopback(const union addr *a)
{
    if (a->sa.sa_family == AF_INET)
        return (ntohl(a->in.sin_addr.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&a->in6.sin6_addr);
}

/* One numeric address, no port. */
static bool parse_ip(const char *s, union addr *a)
{
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, s, &a->in.sin_addr) == 1) {
        a->in.sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, &a->in6.sin6_addr) == 1) {
        a->in6.sin6_family = AF_INET6;
        return true;
    }
    return false;
}

static void format_addr(const union addr *a, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof ip);
        snprintf(buf, size, "[%s]:%u", ip, (unsigned)ntohs(a->in6.sin6_port));
    } else {
        inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof ip);
        snprintf(buf, size, "%s:%u", ip, (unsigned)ntohs(a->in.sin_port));
    }
}

static void set_port(union addr *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET6)
        a->in6.sin6_port = htons(port);
    else
        a->in.sin_port = htons(port);
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "cgload: %s%s%s%s\nTry 'cgload --help'.\n", what, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "");
    return 2;
}

/* HOST:PORT or [V6]:PORT, numeric and loopback only. */
static int parse_target(const char *s, bool port0_ok, struct opts *o)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(s, ':');
    size_t hlen;
    char *end;
    unsigned long port;

    if (!colon || colon == s)
        return usage_error("expected HOST:PORT, got", s);
    hlen = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']')
            return usage_error("expected [IPV6]:PORT, got", s);
        s++;
        hlen -= 2;
    }
    if (hlen >= sizeof host)
        return usage_error("bad address in", s);
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port > 65535 || (port == 0 && !port0_ok))
        return usage_error("bad port in", colon + 1);
    if (!parse_ip(host, &o->target))
        return usage_error("not a numeric IP address:", host);
    if (!is_loopback(&o->target))
        return usage_error("cgload only uses loopback addresses (127.0.0.0/8, ::1), not", host);
    set_port(&o->target, (uint16_t)port);
    o->target_len = addr_len(&o->target);
    format_addr(&o->target, o->target_str, sizeof o->target_str);
    return 0;
}

static int add_source(struct opts *o, const union addr *a, size_t *cap)
{
    if (o->nsrc == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        union addr *p = realloc(o->src, ncap * sizeof *p);
        if (!p)
            return -1;
        o->src = p;
        *cap = ncap;
    }
    o->src[o->nsrc++] = *a;
    return 0;
}

/* --src A[,B...], each item an address or an IPv4 range A-B. */
static int parse_sources(const char *arg, struct opts *o)
{
    char *copy = strdup(arg), *save = NULL;
    size_t cap = 0;
    int rc = 0;

    if (!copy)
        return usage_error("out of memory", NULL);
    for (char *item = strtok_r(copy, ",", &save); item && !rc; item = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(item, '-');
        union addr a, b;
        if (!dash) {
            if (!parse_ip(item, &a))
                rc = usage_error("--src: not a numeric IP address:", item);
            else if (!is_loopback(&a))
                rc = usage_error("--src: not a loopback address:", item);
            else if (add_source(o, &a, &cap) != 0)
                rc = usage_error("out of memory", NULL);
            continue;
        }
        *dash = '\0';
        if (!parse_ip(item, &a) || !parse_ip(dash + 1, &b) || a.sa.sa_family != AF_INET ||
            b.sa.sa_family != AF_INET) {
            rc = usage_error("--src: a range is two IPv4 addresses A-B, got", arg);
            continue;
        }
        uint32_t lo = ntohl(a.in.sin_addr.s_addr), hi = ntohl(b.in.sin_addr.s_addr);
        if (hi < lo || !is_loopback(&a) || !is_loopback(&b) || hi - lo >= MAX_SOURCES) {
            rc = usage_error("--src: bad loopback range", arg);
            continue;
        }
        for (uint64_t v = lo; v <= hi && !rc; v++) {
            a.in.sin_addr.s_addr = htonl((uint32_t)v);
            if (add_source(o, &a, &cap) != 0)
                rc = usage_error("out of memory", NULL);
        }
    }
    free(copy);
    if (!rc && o->nsrc > MAX_SOURCES)
        rc = usage_error("--src: too many addresses", NULL);
    return rc;
}

/* A byte count or count: digits with an optional K, M or G (powers of 1024). */
static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return false;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    default:
        break;
    }
    if (*end || v > (UINT64_MAX >> shift))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    uint64_t v;
    if (!parse_u64(s, &v) || v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

static void usage(FILE *f)
{
    fputs("usage: cgload MODE [options] HOST:PORT\n"
          "modes:\n"
          "  conn     connect, send --size bytes, read --resp bytes, close; repeat\n"
          "  reject   like conn, expecting a reset, an EOF or a refusal (data = admitted)\n"
          "  bulk     --concurrency connections each echo --bytes both ways at once\n"
          "  hold     open --count connections, one exchange each, print 'held N', keep idle\n"
          "  serve    echo server (or --reply N) on HOST:PORT, prints 'listening HOST:PORT'\n"
          "options:\n"
          "  -c, --concurrency C  exchanges or connections at once (32; bulk: 1)\n"
          "  -d, --duration S     seconds to run (conn, reject: 5 unless --count);\n"
          "                       hold: seconds to hold after 'held N'\n"
          "  -n, --count N        exchanges (conn, reject) or connections (hold)\n"
          "      --size B         request bytes (64)\n"
          "      --resp B         response bytes to read (= --size); 0: up to EOF\n"
          "      --bytes B        bulk: bytes each way per connection (1G)\n"
          "      --half-close     shut down writing once the request (stream) is sent\n"
          "      --src LIST       source addresses, round robin: A,B,... or A-B (IPv4)\n"
          "      --timeout MS     per exchange; bulk: without progress (5000)\n"
          "      --reply N        serve: answer each --size byte request with N bytes\n"
          "      --proxy-v1, --proxy-v2\n"
          "                       conn, reject, hold: send a PROXY header of that version\n"
          "                       (own address and port -> target) before the request;\n"
          "                       serve: read and drop one at the start of each connection\n"
          "                       (a connection without a valid one is reset)\n"
          "  -t, --threads N      event loops (threads), results merged (1)\n"
          "  -j, --json           print one JSON object instead of the table\n"
          "  -h, --help           this text\n"
          "Sizes take K, M or G (powers of 1024). Addresses: 127.0.0.0/8 and ::1 only.\n"
          "Exit: 0; 2 usage; 1 serve could not listen; 3 conn with errors above 1 %.\n",
          f);
}

enum {
    OPT_SIZE = 256,
    OPT_RESP,
    OPT_BYTES,
    OPT_SRC,
    OPT_TIMEOUT,
    OPT_REPLY,
    OPT_HALF_CLOSE,
    OPT_PROXY_V1,
    OPT_PROXY_V2
};

#define ONLY(m) (1u << (m))
#define CLIENTS (ONLY(M_CONN) | ONLY(M_REJECT) | ONLY(M_BULK) | ONLY(M_HOLD))
#define ANY (CLIENTS | ONLY(M_SERVE))

static unsigned option_modes(int opt)
{
    switch (opt) {
    case 'c':
    case OPT_SRC:
    case OPT_TIMEOUT:
    case OPT_HALF_CLOSE:
        return CLIENTS;
    case 'n':
        return ONLY(M_CONN) | ONLY(M_REJECT) | ONLY(M_HOLD);
    case OPT_RESP:
        return ONLY(M_CONN) | ONLY(M_HOLD);
    case OPT_SIZE:
        return ONLY(M_CONN) | ONLY(M_REJECT) | ONLY(M_HOLD) | ONLY(M_SERVE);
    case OPT_BYTES:
        return ONLY(M_BULK);
    case OPT_REPLY:
        return ONLY(M_SERVE);
    case OPT_PROXY_V1:
    case OPT_PROXY_V2:
        return ONLY(M_CONN) | ONLY(M_REJECT) | ONLY(M_HOLD) | ONLY(M_SERVE);
    default:
        return ANY;
    }
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"concurrency", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},
        {"threads", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"size", required_argument, NULL, OPT_SIZE},
        {"resp", required_argument, NULL, OPT_RESP},
        {"bytes", required_argument, NULL, OPT_BYTES},
        {"src", required_argument, NULL, OPT_SRC},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"reply", required_argument, NULL, OPT_REPLY},
        {"half-close", no_argument, NULL, OPT_HALF_CLOSE},
        {"proxy-v1", no_argument, NULL, OPT_PROXY_V1},
        {"proxy-v2", no_argument, NULL, OPT_PROXY_V2},
        {NULL, 0, NULL, 0},
    };
    const char *src = NULL, *mode_arg;
    bool resp_set = false, conc_set = false;
    int opt, rc, longindex;
    unsigned m;

    memset(o, 0, sizeof *o);
    o->size = 64;
    o->bytes = 1ull << 30;
    o->threads = 1;
    o->timeout_ms = 5000;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        exit(0);
    }
    mode_arg = argv[1];
    for (m = 0; m < M_MODES; m++)
        if (!strcmp(mode_arg, mode_names[m]))
            break;
    if (m == M_MODES)
        return usage_error("unknown mode", mode_arg);
    o->mode = (enum mode)m;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "c:d:n:t:jh", longopts, &longindex)) != -1) {
        const char *name = "?";
        bool ok = true;
        if (opt == '?')
            return usage_error("bad option", NULL);
        for (const struct option *lo = longopts; lo->name; lo++)
            if (lo->val == opt)
                name = lo->name;
        if (!(option_modes(opt) & ONLY(o->mode))) {
            fprintf(stderr, "cgload: --%s does not apply to mode %s\n", name, mode_names[o->mode]);
            return 2;
        }
        switch (opt) {
        case 'c':
            ok = parse_uint(optarg, 1, 1000000, &o->concurrency);
            conc_set = true;
            break;
        case 'd': {
            char *end;
            o->duration = strtod(optarg, &end);
            ok = *optarg && !*end && o->duration > 0 && o->duration < 1e7;
            break;
        }
        case 'n':
            ok = parse_u64(optarg, &o->count) && o->count > 0;
            break;
        case 't':
            ok = parse_uint(optarg, 1, MAX_THREADS, &o->threads);
            break;
        case 'j':
            o->json = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case OPT_SIZE:
            ok = parse_u64(optarg, &o->size);
            break;
        case OPT_RESP:
            ok = parse_u64(optarg, &o->resp);
            resp_set = true;
            break;
        case OPT_BYTES:
            ok = parse_u64(optarg, &o->bytes) && o->bytes > 0;
            break;
        case OPT_SRC:
            src = optarg;
            break;
        case OPT_TIMEOUT:
            ok = parse_uint(optarg, 1, 86400000, &o->timeout_ms);
            break;
        case OPT_REPLY:
            ok = parse_u64(optarg, &o->reply);
            o->reply_set = true;
            break;
        case OPT_HALF_CLOSE:
            o->half_close = true;
            break;
        case OPT_PROXY_V1:
        case OPT_PROXY_V2:
            if (o->proxy)
                return usage_error("--proxy-v1 and --proxy-v2 exclude each other", NULL);
            o->proxy = opt == OPT_PROXY_V1 ? 1 : 2;
            break;
        default:
            return usage_error("bad option", NULL);
        }
        if (!ok) {
            fprintf(stderr, "cgload: bad value for --%s: '%s'\n", name, optarg);
            return 2;
        }
    }
    if (optind >= argc)
        return usage_error("missing HOST:PORT", NULL);
    if (optind < argc - 1)
        return usage_error("unexpected argument", argv[optind + 1]);
    rc = parse_target(argv[optind], o->mode == M_SERVE, o);
    if (rc)
        return rc;
    if (src) {
        rc = parse_sources(src, o);
        if (rc)
            return rc;
        for (size_t i = 0; i < o->nsrc; i++)
            if (o->src[i].sa.sa_family != o->target.sa.sa_family)
                return usage_error("--src: address family differs from the target's", src);
    }
    if (!resp_set)
        o->resp = o->size;
    if (!conc_set)
        o->concurrency = o->mode == M_BULK ? 1 : 32;
    if ((o->mode == M_CONN || o->mode == M_REJECT) && !o->count && o->duration <= 0)
        o->duration = 5;
    if (o->mode == M_HOLD && !o->count)
        return usage_error("hold needs --count N", NULL);
    if (o->mode == M_HOLD && o->count > 10000000)
        return usage_error("--count too large for hold", NULL);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Results                                                                  */

struct latsum {
    uint64_t n, min, max;
    double mean;
    uint64_t p50, p90, p99, p999;
    bool exact;
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least permille/1000 of the
 * samples at or below it. */
static uint64_t rank_of(uint64_t n, unsigned permille)
{
    uint64_t r = (n * permille + 999) / 1000;
    return r ? r : 1;
}

static uint64_t hist_pct(const uint64_t *hist, uint64_t n, unsigned permille, uint64_t max)
{
    uint64_t want = rank_of(n, permille), seen = 0;
    for (unsigned i = 0; i < HBUCKETS; i++) {
        seen += hist[i];
        if (seen >= want) {
            uint64_t v = hist_value(i);
            return v > max ? max : v;
        }
    }
    return max;
}

static struct latsum latency_summary(struct loop *loops, unsigned nloops, const struct stats *all)
{
    struct latsum ls = {0};
    bool exact = true;
    uint64_t *v = NULL;

    ls.n = all->lat_n;
    if (!ls.n)
        return ls;
    ls.min = all->lat_min;
    ls.max = all->lat_max;
    ls.mean = (double)all->lat_sum / (double)ls.n;
    for (unsigned i = 0; i < nloops; i++)
        exact = exact && !loops[i].st.samples_lost;
    if (exact)
        v = malloc(ls.n * sizeof *v);
    if (v) {
        size_t k = 0;
        for (unsigned i = 0; i < nloops; i++) {
            const struct stats *st = &loops[i].st;
            for (size_t j = 0; j < st->nsamples; j++)
                v[k++] = st->blocks[j / SAMPLE_BLOCK][j % SAMPLE_BLOCK];
        }
        qsort(v, k, sizeof *v, cmp_u64);
        ls.p50 = v[rank_of(k, 500) - 1];
        ls.p90 = v[rank_of(k, 900) - 1];
        ls.p99 = v[rank_of(k, 990) - 1];
        ls.p999 = v[rank_of(k, 999) - 1];
        ls.exact = true;
        free(v);
    } else {
        ls.p50 = hist_pct(all->hist, ls.n, 500, ls.max);
        ls.p90 = hist_pct(all->hist, ls.n, 900, ls.max);
        ls.p99 = hist_pct(all->hist, ls.n, 990, ls.max);
        ls.p999 = hist_pct(all->hist, ls.n, 999, ls.max);
    }
    return ls;
}

static void stats_merge(struct stats *d, const struct stats *s)
{
    d->completed += s->completed;
    for (int k = 0; k < E_KINDS; k++)
        d->err[k] += s->err[k];
    for (int k = 0; k < R_KINDS; k++)
        d->rej[k] += s->rej[k];
    d->aborted += s->aborted;
    d->connects += s->connects;
    d->connect_ns += s->connect_ns;
    d->connect_slow += s->connect_slow;
    if (s->connect_max > d->connect_max)
        d->connect_max = s->connect_max;
    d->dropped += s->dropped;
    d->tx_bytes += s->tx_bytes;
    d->rx_bytes += s->rx_bytes;
    if (s->tx_end > d->tx_end)
        d->tx_end = s->tx_end;
    if (s->rx_end > d->rx_end)
        d->rx_end = s->rx_end;
    if (!d->other_errno)
        d->other_errno = s->other_errno;
    if (s->lat_n && (d->lat_n == 0 || s->lat_min < d->lat_min))
        d->lat_min = s->lat_min;
    if (s->lat_max > d->lat_max)
        d->lat_max = s->lat_max;
    d->lat_n += s->lat_n;
    d->lat_sum += s->lat_sum;
    for (unsigned i = 0; i < HBUCKETS; i++)
        d->hist[i] += s->hist[i];
}

static double us(uint64_t ns)
{
    return (double)ns / 1e3;
}

/* Mean time of one connect(2) call, in µs. */
static double connect_us(const struct stats *st)
{
    return st->connects ? (double)st->connect_ns / (double)st->connects / 1e3 : 0;
}

static double mbps(uint64_t bytes, double s)
{
    return s > 0 ? (double)bytes / 1e6 / s : 0;
}

/* What the latency of each mode measures. */
static const char *const lat_label[M_MODES] = {
    [M_CONN] = "latency", [M_REJECT] = "to reject", [M_BULK] = "transfer", [M_HOLD] = "establish"};

struct result {
    const struct opts *o;
    struct stats *st;
    struct latsum ls;
    double elapsed, tx_s, rx_s, held_s;
    uint64_t held;
};

static void print_human(const struct result *r)
{
    const struct opts *o = r->o;
    const struct stats *st = r->st;
    const char *sep = "";

    printf("cgload %s %s\n", mode_names[o->mode], r->o->target_str);
    if (o->mode == M_BULK)
        printf("  threads %u, connections %u, %" PRIu64 " bytes each way per connection%s\n",
               o->threads, o->concurrency, o->bytes, o->half_close ? ", half-close" : "");
    else
        printf("  threads %u, concurrency %u, request %" PRIu64 " B, response %" PRIu64
               " B%s, timeout %u ms%s\n",
               o->threads, o->concurrency, o->size, o->resp, o->resp ? "" : " (to EOF)",
               o->timeout_ms, o->half_close ? ", half-close" : "");
    if (o->nsrc)
        printf("  sources %zu\n", o->nsrc);
    if (o->proxy)
        printf("  PROXY v%u header before each request\n", (unsigned)o->proxy);
    printf("  elapsed       %.3f s\n", r->elapsed);
    if (o->mode == M_HOLD) {
        printf("  requested     %" PRIu64 "\n", o->count);
        printf("  held          %" PRIu64 ", for %.1f s\n", r->held, r->held_s);
        printf("  dropped       %" PRIu64 " (closed by the peer while held)\n", st->dropped);
    } else if (o->mode == M_REJECT) {
        printf("  rejected      %" PRIu64 " (reset %" PRIu64 ", eof %" PRIu64 ", refused %" PRIu64
               ")\n",
               st->completed, st->rej[R_RESET], st->rej[R_EOF], st->rej[R_REFUSED]);
    } else {
        printf("  completed     %" PRIu64 "\n", st->completed);
    }
    printf("  errors        %" PRIu64 " (", err_total(st));
    for (int k = 0; k < E_KINDS; k++) {
        if ((err_shown[o->mode] & (1u << k)) || st->err[k]) {
            printf("%s%s %" PRIu64, sep, err_names[k], st->err[k]);
            sep = ", ";
        }
    }
    printf(")\n");
    if (st->err[E_OTHER])
        printf("  other error   %s\n", strerror(st->other_errno));
    if (st->aborted)
        printf("  aborted       %" PRIu64 " (in flight at the end, not counted)\n", st->aborted);
    if (o->mode == M_CONN || o->mode == M_REJECT)
        printf("  rate          %.1f %s/s\n",
               r->elapsed > 0 ? (double)st->completed / r->elapsed : 0,
               o->mode == M_CONN ? "exchanges" : "rejections");
    if (o->mode == M_BULK) {
        printf("  sent          %.1f MB in %.3f s = %.1f MB/s\n", (double)st->tx_bytes / 1e6,
               r->tx_s, mbps(st->tx_bytes, r->tx_s));
        printf("  received      %.1f MB in %.3f s = %.1f MB/s (verified)\n",
               (double)st->rx_bytes / 1e6, r->rx_s, mbps(st->rx_bytes, r->rx_s));
        printf("  total         %.1f MB/s both ways (MB = 10^6 bytes)\n",
               mbps(st->tx_bytes + st->rx_bytes, r->tx_s > r->rx_s ? r->tx_s : r->rx_s));
    }
    if (st->connects && o->mode != M_BULK)
        printf("  connect(2)    mean %.1f µs, max %.1f µs, %" PRIu64 " calls over 1 ms\n",
               connect_us(st), us(st->connect_max), st->connect_slow);
    /* Over 0.1 % of the calls so slow: the kernel is searching the ephemeral
     * ports for one whose TIME_WAIT it may reuse (at most once a second). */
    if (st->connect_slow * 1000 > st->connects)
        printf(
            "  hint          slow connect(2) calls: this source address is short of ephemeral\n"
            "                ports (TIME_WAIT); add source addresses: --src 127.0.0.2-127.0.0.9\n");
    if (r->ls.n)
        printf("  %-9s µs  p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  (mean %.1f; %s, %" PRIu64
               " samples)\n",
               lat_label[o->mode], us(r->ls.p50), us(r->ls.p90), us(r->ls.p99), us(r->ls.max),
               r->ls.mean / 1e3, r->ls.exact ? "exact" : "histogram, within 0.8 %", r->ls.n);
}

static void print_json(const struct result *r)
{
    const struct opts *o = r->o;
    const struct stats *st = r->st;

    printf("{\"mode\":\"%s\",\"target\":\"%s\",\"threads\":%u,\"concurrency\":%u",
           mode_names[o->mode], o->target_str, o->threads, o->concurrency);
    if (o->mode == M_BULK)
        printf(",\"bytes\":%" PRIu64, o->bytes);
    else
        printf(",\"size\":%" PRIu64 ",\"resp\":%" PRIu64, o->size, o->resp);
    printf(",\"half_close\":%s,\"proxy\":%u,\"sources\":%zu,\"timeout_ms\":%u,\"elapsed_s\":%.6f",
           o->half_close ? "true" : "false", (unsigned)o->proxy, o->nsrc, o->timeout_ms,
           r->elapsed);
    printf(",\"completed\":%" PRIu64 ",\"aborted\":%" PRIu64, st->completed, st->aborted);
    if (o->mode == M_CONN || o->mode == M_REJECT)
        printf(",\"rate_per_s\":%.1f", r->elapsed > 0 ? (double)st->completed / r->elapsed : 0);
    printf(",\"errors\":{\"total\":%" PRIu64, err_total(st));
    for (int k = 0; k < E_KINDS; k++)
        printf(",\"%s\":%" PRIu64, err_names[k], st->err[k]);
    if (st->err[E_OTHER])
        printf(",\"other_first\":\"%s\"", strerror(st->other_errno));
    printf("}");
    printf(",\"connect_call_us\":{\"mean\":%.3f,\"max\":%.3f,\"over_1ms\":%" PRIu64 "}",
           connect_us(st), us(st->connect_max), st->connect_slow);
    if (o->mode == M_REJECT) {
        printf(",\"rejected\":{\"total\":%" PRIu64, st->completed);
        for (int k = 0; k < R_KINDS; k++)
            printf(",\"%s\":%" PRIu64, rej_names[k], st->rej[k]);
        printf("}");
    }
    if (o->mode == M_HOLD)
        printf(",\"requested\":%" PRIu64 ",\"held\":%" PRIu64
               ",\"held_s\":%.3f,\"dropped\":%" PRIu64,
               o->count, r->held, r->held_s, st->dropped);
    if (o->mode == M_BULK)
        printf(",\"sent_bytes\":%" PRIu64 ",\"received_bytes\":%" PRIu64
               ",\"sent_s\":%.6f,\"received_s\":%.6f,\"sent_MBps\":%.1f,\"received_MBps\":%.1f"
               ",\"total_MBps\":%.1f",
               st->tx_bytes, st->rx_bytes, r->tx_s, r->rx_s, mbps(st->tx_bytes, r->tx_s),
               mbps(st->rx_bytes, r->rx_s),
               mbps(st->tx_bytes + st->rx_bytes, r->tx_s > r->rx_s ? r->tx_s : r->rx_s));
    printf(",\"latency_us\":{\"what\":\"%s\",\"samples\":%" PRIu64 ",\"exact\":%s",
           lat_label[o->mode], r->ls.n, r->ls.exact ? "true" : "false");
    if (r->ls.n)
        printf(",\"min\":%.3f,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f"
               ",\"max\":%.3f",
               us(r->ls.min), r->ls.mean / 1e3, us(r->ls.p50), us(r->ls.p90), us(r->ls.p99),
               us(r->ls.p999), us(r->ls.max));
    printf("}}\n");
}

/* ------------------------------------------------------------------------ */
/* Running                                                                  */

static uint64_t share(uint64_t total, unsigned parts, unsigned i)
{
    return total / parts + (i < total % parts ? 1 : 0);
}

/* Run fn on n loops of size `stride` from base, the first in this thread;
 * each loop keeps its pthread_t at offset `tid`. A loop without a thread is
 * not run at all, and says so. */
static void run_threads(void *(*fn)(void *), void *base, size_t stride, size_t tid, unsigned n)
{
    unsigned started = 0;
    for (unsigned i = 1; i < n; i++) {
        char *loop = (char *)base + i * stride;
        if (pthread_create((pthread_t *)(loop + tid), NULL, fn, loop) != 0)
            break;
        started = i;
    }
    if (started + 1 < n)
        fprintf(stderr, "cgload: could start only %u of %u threads\n", started + 1, n);
    fn(base);
    for (unsigned i = 1; i <= started; i++)
        pthread_join(*(pthread_t *)((char *)base + i * stride + tid), NULL);
}

static int add_stop_fd(int ep)
{
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.u64 = KEY_STOP;
    return epoll_ctl(ep, EPOLL_CTL_ADD, g_stopfd, &ev);
}

static int run_client(struct opts *o)
{
    struct loop *loops;
    struct stats *all;
    struct result r;
    unsigned n = o->threads;
    uint64_t finish = 0, total_limit, expect;
    int rc = 0;

    /* No loop without work: with fewer connections than threads, fewer threads. */
    total_limit = o->mode == M_HOLD ? o->count : o->concurrency;
    if (o->count && o->mode != M_HOLD && o->count < total_limit)
        total_limit = o->count;
    if (n > total_limit)
        n = (unsigned)total_limit;
    o->threads = n;
    loops = calloc(n, sizeof *loops);
    all = calloc(1, sizeof *all);
    if (!loops || !all) {
        fprintf(stderr, "cgload: out of memory\n");
        return 1;
    }
    if (o->mode == M_HOLD) {
        struct rlimit rl;
        g_hold_total = o->count;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            o->count + 16 > rl.rlim_cur)
            fprintf(stderr, "cgload: warning: %" PRIu64 " connections, but only %llu descriptors\n",
                    o->count, (unsigned long long)rl.rlim_cur);
    }
    for (unsigned i = 0; i < n; i++) {
        struct loop *L = &loops[i];
        L->o = o;
        L->id = i;
        L->src_next = i;
        L->timeout_ns = (uint64_t)o->timeout_ms * 1000000ull;
        L->limit = (uint32_t)share(o->concurrency, n, i);
        if (!L->limit)
            L->limit = 1;
        switch (o->mode) {
        case M_HOLD:
            L->quota = share(o->count, n, i);
            break;
        case M_BULK:
            L->quota = L->limit;
            break;
        default:
            L->quota = o->count ? share(o->count, n, i) : UINT64_MAX;
            break;
        }
        L->nconns = (uint32_t)(o->mode == M_HOLD ? L->quota : L->limit);
        L->conns = calloc(L->nconns, sizeof *L->conns);
        L->freestk = malloc(L->nconns * sizeof *L->freestk);
        L->rbuf = malloc(CHUNK);
        L->ep = epoll_create1(EPOLL_CLOEXEC);
        if (!L->conns || !L->freestk || !L->rbuf || L->ep < 0 || add_stop_fd(L->ep) != 0) {
            perror("cgload: setting up a loop");
            return 1;
        }
        for (uint32_t k = 0; k < L->nconns; k++) {
            L->conns[k].fd = -1;
            L->freestk[k] = L->nconns - 1 - k;
        }
        L->nfree = L->nconns;
    }
    g_t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        struct loop *L = &loops[i];
        L->t_end = o->duration > 0 && o->mode != M_HOLD ? g_t0 + (uint64_t)(o->duration * 1e9)
                                                        : UINT64_MAX;
    }
    run_threads(client_run, loops, sizeof *loops, offsetof(struct loop, thread), n);

    for (unsigned i = 0; i < n; i++) {
        if (loops[i].stale)
            fprintf(stderr, "cgload: loop %u: %" PRIu64 " events for connections already gone\n", i,
                    loops[i].stale);
        stats_merge(all, &loops[i].st);
        if (loops[i].t_finish > finish)
            finish = loops[i].t_finish;
    }
    memset(&r, 0, sizeof r);
    r.o = o;
    r.st = all;
    r.ls = latency_summary(loops, n, all);
    r.elapsed = (double)(finish - g_t0) / 1e9;
    /* bulk: each way, up to the moment its last byte went (came back), or
     * the whole run when some stream did not finish */
    expect = (uint64_t)o->concurrency * o->bytes;
    r.tx_s = (double)((all->tx_bytes == expect ? all->tx_end : finish) - g_t0) / 1e9;
    r.rx_s = (double)((all->rx_bytes == expect ? all->rx_end : finish) - g_t0) / 1e9;
    if (o->mode == M_HOLD) {
        uint64_t at = atomic_load(&g_held_at);
        r.held = all->completed;
        r.held_s = at && finish > at ? (double)(finish - at) / 1e9 : 0;
    }
    if (o->json)
        print_json(&r);
    else
        print_human(&r);
    fflush(stdout);
    if (o->mode == M_CONN && err_total(all) * 100 > all->completed + err_total(all))
        rc = 3;

    for (unsigned i = 0; i < n; i++) {
        close(loops[i].ep);
        free(loops[i].conns);
        free(loops[i].freestk);
        free(loops[i].rbuf);
        for (unsigned b = 0; b < SAMPLE_BLOCKS; b++)
            free(loops[i].st.blocks[b]);
    }
    free(loops);
    free(all);
    return rc;
}

/* The descriptor limit: the size of the descriptor-indexed tables. */
static size_t fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 24))
        return 1u << 24;
    return (size_t)rl.rlim_cur;
}

static int listen_socket(struct opts *o, bool reuseport)
{
    int one = 1;
    int fd = socket(o->target.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, &o->target.sa, o->target_len) != 0 || listen(fd, 65535) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int run_serve(struct opts *o)
{
    unsigned n = o->threads;
    struct sloop *loops = calloc(n, sizeof *loops);
    uint64_t accepted = 0, in = 0, out = 0, stale = 0, pp_ok = 0, pp_bad = 0;

    if (!loops) {
        fprintf(stderr, "cgload: out of memory\n");
        return 1;
    }
    for (unsigned i = 0; i < n; i++) {
        struct sloop *S = &loops[i];
        struct epoll_event ev;
        S->o = o;
        S->id = i;
        S->lfd = listen_socket(o, n > 1);
        if (S->lfd < 0) {
            fprintf(stderr, "cgload: serve: cannot listen on %s: %s\n", o->target_str,
                    strerror(errno));
            return 1;
        }
        if (i == 0) { /* port 0: the others join the port the kernel chose */
            union addr a;
            socklen_t len = sizeof a;
            if (getsockname(S->lfd, &a.sa, &len) == 0) {
                o->target = a;
                format_addr(&o->target, o->target_str, sizeof o->target_str);
            }
        }
        S->buf = malloc(CHUNK);
        S->nbyfd = fd_limit();
        S->byfd = calloc(S->nbyfd, sizeof *S->byfd);
        S->ep = epoll_create1(EPOLL_CLOEXEC);
        ev.events = EPOLLIN;
        ev.data.u64 = KEY_LISTEN;
        if (!S->buf || !S->byfd || S->ep < 0 || epoll_ctl(S->ep, EPOLL_CTL_ADD, S->lfd, &ev) != 0 ||
            add_stop_fd(S->ep) != 0) {
            perror("cgload: serve: setting up a loop");
            return 1;
        }
    }
    printf("listening %s\n", o->target_str);
    fflush(stdout);
    g_t0 = now_ns();
    run_threads(serve_run, loops, sizeof *loops, offsetof(struct sloop, thread), n);
    for (unsigned i = 0; i < n; i++) {
        accepted += loops[i].accepted;
        in += loops[i].bytes_in;
        out += loops[i].bytes_out;
        stale += loops[i].stale;
        pp_ok += loops[i].pp_ok;
        pp_bad += loops[i].pp_bad;
        close(loops[i].lfd);
        close(loops[i].ep);
        free(loops[i].buf);
        for (size_t fd = 0; fd < loops[i].nbyfd; fd++)
            if (loops[i].byfd[fd])
                sconn_close(&loops[i], loops[i].byfd[fd]);
        free(loops[i].byfd);
    }
    if (stale)
        fprintf(stderr, "cgload: %" PRIu64 " events for connections already closed (dropped)\n",
                stale);
    if (o->json)
        printf("{\"mode\":\"serve\",\"listen\":\"%s\",\"threads\":%u,\"accepted\":%" PRIu64
               ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64 ",\"proxy\":%u"
               ",\"proxy_headers\":%" PRIu64 ",\"proxy_bad\":%" PRIu64 "}\n",
               o->target_str, n, accepted, in, out, (unsigned)o->proxy, pp_ok, pp_bad);
    else
        printf("served %" PRIu64 " connections, %" PRIu64 " bytes in, %" PRIu64 " bytes out\n",
               accepted, in, out);
    if (o->proxy && !o->json)
        printf("PROXY v%u headers skipped %" PRIu64 ", connections closed for a bad one %" PRIu64
               "\n",
               (unsigned)o->proxy, pp_ok, pp_bad);
    free(loops);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct sigaction sa;
    struct rlimit rl;
    int rc = parse_args(argc, argv, &o);

    if (rc)
        return rc;
    /* Every descriptor the hard limit allows. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    g_stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g_stopfd < 0 || pattern_init() != 0) {
        perror("cgload: setup");
        return 1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = o.mode == M_SERVE ? run_serve(&o) : run_client(&o);
    free(o.src);
    free(g_pat);
    close(g_stopfd);
    return rc;
}
