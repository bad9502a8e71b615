/* unix/accept.c — conditional accept on POSIX.
 *
 * The kernel finishes the handshake before user code runs, so the condition
 * callback is asked right after accept(2): an accepted socket is handed to
 * the caller, a rejected one is closed with a reset, a deferred one waits in
 * a small FIFO and is offered again later. A spare descriptor lets the
 * acceptor shed a caller when the process runs out of descriptors, instead
 * of leaving it in the backlog where poll() keeps reporting it. The
 * platform-independent helpers are in ../accept.c.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* accept4 */
#endif

#include "condgate/accept.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The BSDs have accept4 too, but hide it (and SOCK_NONBLOCK) under a strict
 * _POSIX_C_SOURCE; then the accept+fcntl path is used. */
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC) &&                                             \
    (defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) ||  \
     defined(__DragonFly__))
#define HAVE_ACCEPT4 1
#endif

/* An IPv4 or IPv6 socket address; the only families an acceptor takes. */
union inaddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* One caller between accept(2) and its final verdict. While deferred it sits
 * in the acceptor's ring, which owns fd until the caller is accepted (the
 * socket goes to the user) or rejected (reset and closed). */
struct held {
    int fd;
    unsigned defers;  /* times the callback has deferred it */
    int64_t first_ms; /* when it left the backlog */
    int64_t due_ms;   /* when it is offered next */
    socklen_t caller_len;
    socklen_t callee_len; /* 0 when the acceptor's fixed callee applies */
    union inaddr caller;
    union inaddr callee;
};

struct cg_acceptor {
    int fd; /* the listening socket; not ours */
    cg_condition_fn cond;
    void *arg;
    cg_accept_opts opts;
    int reserve_fd; /* spare descriptor, -1 when not kept or lost */

    /* A listener bound to one address gives every connection the same local
     * address, so it is looked up once here instead of per connection. */
    bool callee_fixed;
    socklen_t callee_len;
    union inaddr callee;

    /* Deferred callers, oldest first. Every entry is queued with due time
     * "now + defer_retry_ms" and the clock never goes back, so the ring is
     * always sorted by due time: the head is the next one due. */
    struct held *ring;
    unsigned head;
    unsigned count;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* accept(2) giving a non-blocking, close-on-exec socket; retries EINTR.
 * Returns the descriptor, or -1 with errno set. */
static int accept_nb(int lfd, union inaddr *addr, socklen_t *len)
{
    int fd;

    for (;;) {
        socklen_t n = (socklen_t)sizeof *addr;
#if defined(HAVE_ACCEPT4)
        fd = accept4(lfd, &addr->sa, &n, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        /* Another thread's fork+exec can inherit fd in this window; only
         * platforms without accept4 take this path. */
        fd = accept(lfd, &addr->sa, &n);
        if (fd >= 0) {
            int fl = fcntl(fd, F_GETFL);
            if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
                fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                int e = errno;
                close(fd);
                errno = e;
                fd = -1;
            }
        }
#endif
        if (fd >= 0 || errno != EINTR) {
            /* The kernel reports the full length of a truncated address. */
            *len = n < (socklen_t)sizeof *addr ? n : (socklen_t)sizeof *addr;
            return fd;
        }
    }
}

/* Translate an accept(2) errno other than EMFILE/ENFILE. */
static int accept_error(int e)
{
    switch (e) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return CG_EAGAIN;
    /* The caller left, a firewall refused it (Linux EPERM), or Linux passed
     * a network error of the new connection up through accept(2); accept(2)
     * says to treat all of them as "try again". */
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENETUNREACH:
#if defined(EHOSTDOWN)
    case EHOSTDOWN:
#endif
    case EHOSTUNREACH:
    case ENOPROTOOPT:
    case EOPNOTSUPP:
#if defined(ENONET)
    case ENONET:
#endif
    case ETIMEDOUT:
        return CG_ECONNABORTED;
    /* Kernel memory, not descriptors, but the cure is the same: pause. */
    case ENOBUFS:
    case ENOMEM:
        return CG_EMFILE;
    case EBADF:
    case EINVAL:
    case ENOTSOCK:
    case EFAULT:
        return CG_EINVAL;
    default:
        return CG_ESYS;
    }
}

static int open_reserve(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void set_caller(cg_accept_result *res, const union inaddr *caller, socklen_t len)
{
    memset(&res->caller, 0, sizeof res->caller);
    memcpy(&res->caller, caller, len);
    res->caller_len = len;
}

/* Out of descriptors with a caller (possibly) waiting. Free the spare so the
 * caller can be taken and reset; otherwise it would stay in the backlog and
 * keep the listener readable, and an event loop would spin on it. */
static int shed(cg_acceptor *a, cg_accept_result *res)
{
    union inaddr caller;
    socklen_t len;
    int fd;

    if (a->reserve_fd < 0)
        return CG_EMFILE;
    close(a->reserve_fd);
    a->reserve_fd = -1;

    fd = accept_nb(a->fd, &caller, &len);
    if (fd >= 0) {
        set_caller(res, &caller, len);
        res->verdict = CG_REJECT;
        cg_socket_close_reset(fd);
    }
    a->reserve_fd = open_reserve();
    return CG_EMFILE;
}

static void ring_push(cg_acceptor *a, const struct held *h)
{
    unsigned tail = (a->head + a->count) % a->opts.max_deferred;

    a->ring[tail] = *h;
    a->count++;
}

static void ring_pop(cg_acceptor *a, struct held *h)
{
    *h = a->ring[a->head];
    a->head = (a->head + 1) % a->opts.max_deferred;
    a->count--;
}

/* Offer caller h (not in the ring) to the callback and carry out the verdict.
 * A deferral that would exceed max_defers, defer_timeout_ms or the ring's
 * room becomes a reset with res->timed_out set. */
static int offer(cg_acceptor *a, struct held *h, int64_t now, cg_socket_t *out,
                 cg_accept_result *res)
{
    const union inaddr *callee = a->callee_fixed ? &a->callee : &h->callee;
    socklen_t callee_len = a->callee_fixed ? a->callee_len : h->callee_len;
    int64_t deadline = h->first_ms + (int64_t)a->opts.defer_timeout_ms;
    cg_verdict v;

    set_caller(res, &h->caller, h->caller_len);

    /* The user called late: this caller's time ran out while it waited. */
    if (h->defers > 0 && now > deadline)
        goto expire;

    v = a->cond(&h->caller.sa, h->caller_len, &callee->sa, callee_len, a->arg);
    switch (v) {
    case CG_ACCEPT:
        res->verdict = CG_ACCEPT;
        *out = h->fd;
        return 0;
    case CG_DEFER:
        /* Never hold a caller past its deadline: if the next offer would
         * fall after it, this was the last one. */
        if (h->defers >= a->opts.max_defers || a->count >= a->opts.max_deferred ||
            now + (int64_t)a->opts.defer_retry_ms > deadline)
            goto expire;
        h->defers++;
        h->due_ms = now + (int64_t)a->opts.defer_retry_ms;
        ring_push(a, h);
        res->verdict = CG_DEFER;
        return CG_EDEFERRED;
    case CG_REJECT:
    default: /* an unknown verdict fails closed */
        res->verdict = CG_REJECT;
        cg_socket_close_reset(h->fd);
        return CG_EREJECTED;
    }

expire:
    res->verdict = CG_REJECT;
    res->timed_out = true;
    cg_socket_close_reset(h->fd);
    return CG_EREJECTED;
}

/* Take a new caller from the backlog and offer it. */
static int take_new(cg_acceptor *a, int64_t now, cg_socket_t *out, cg_accept_result *res)
{
    struct held h;

    memset(&h, 0, sizeof h);
    h.fd = accept_nb(a->fd, &h.caller, &h.caller_len);
    if (h.fd < 0) {
        if (errno == EMFILE || errno == ENFILE)
            return shed(a, res);
        return accept_error(errno);
    }
    if (!a->callee_fixed) {
        h.callee_len = (socklen_t)sizeof h.callee;
        if (getsockname(h.fd, &h.callee.sa, &h.callee_len) < 0)
            goto gone;
    }
    h.first_ms = now;
    return offer(a, &h, now, out, res);

gone:
    /* Only a connection that already died fails here. */
    cg_socket_close_reset(h.fd);
    return CG_ECONNABORTED;
}

/* Is the listener's local address one specific address (not a wildcard)? A
 * transparent (TPROXY) listener takes connections for any address, whatever
 * it is bound to. */
static bool callee_is_fixed(int fd, const union inaddr *local)
{
    int on = 0;
    socklen_t len = (socklen_t)sizeof on;

    if (local->sa.sa_family == AF_INET) {
#if defined(IP_TRANSPARENT)
        if (getsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &on, &len) == 0 && on)
            return false;
#endif
        return local->in.sin_addr.s_addr != htonl(INADDR_ANY);
    }
#if defined(IPV6_TRANSPARENT)
    if (getsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &on, &len) == 0 && on)
        return false;
#endif
    if (IN6_IS_ADDR_UNSPECIFIED(&local->in6.sin6_addr))
        return false;
    /* ::ffff:0.0.0.0 is the IPv4 wildcard in disguise. */
    if (IN6_IS_ADDR_V4MAPPED(&local->in6.sin6_addr)) {
        static const uint8_t zero[4];
        return memcmp(&local->in6.sin6_addr.s6_addr[12], zero, 4) != 0;
    }
    return true;
}

/* Check that fd is a listening, non-blocking TCP socket over IPv4 or IPv6,
 * and read its local address into *local. */
static int check_listener(int fd, union inaddr *local, socklen_t *local_len)
{
    int type = 0, fl;
    socklen_t len = (socklen_t)sizeof type;

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
        return CG_EINVAL;
#if defined(SO_ACCEPTCONN)
    {
        int listening = 0;
        len = (socklen_t)sizeof listening;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && !listening)
            return CG_EINVAL;
    }
#endif
    /* A blocking listener would make CG_EAGAIN impossible and could hang
     * the shedding accept when the pending caller vanishes. */
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || !(fl & O_NONBLOCK))
        return CG_EINVAL;
    *local_len = (socklen_t)sizeof *local;
    if (getsockname(fd, &local->sa, local_len) < 0)
        return CG_EINVAL;
    if (local->sa.sa_family != AF_INET && local->sa.sa_family != AF_INET6)
        return CG_EINVAL;
    return 0;
}

/* cg_acceptor_new: see accept.h. Validates the listener, learns whether its
 * local address is fixed, allocates the deferral ring and opens the spare
 * descriptor. Returns 0 and *out (free with cg_acceptor_free), or CG_EINVAL,
 * CG_ENOMEM, CG_EMFILE (no descriptor for the spare). Any thread; the
 * acceptor then belongs to the thread that uses it. */
int cg_acceptor_new(cg_socket_t fd, cg_condition_fn cond, void *arg, const cg_accept_opts *opts,
                    cg_acceptor **out)
{
    cg_acceptor *a = NULL;
    union inaddr local;
    socklen_t local_len;
    int rc;

    if (out)
        *out = NULL;
    if (fd < 0 || !cond || !out)
        return CG_EINVAL;
    if (opts && opts->max_deferred > CG_ACCEPT_MAX_DEFERRED)
        return CG_EINVAL;
    rc = check_listener(fd, &local, &local_len);
    if (rc < 0)
        return rc;

    a = calloc(1, sizeof *a);
    if (!a)
        return CG_ENOMEM;
    a->fd = fd;
    a->cond = cond;
    a->arg = arg;
    a->reserve_fd = -1;
    if (opts)
        a->opts = *opts;
    else
        cg_accept_opts_default(&a->opts);

    if (callee_is_fixed(fd, &local)) {
        a->callee_fixed = true;
        a->callee = local;
        a->callee_len = local_len;
    }
    if (a->opts.max_deferred > 0) {
        a->ring = calloc(a->opts.max_deferred, sizeof *a->ring);
        if (!a->ring) {
            rc = CG_ENOMEM;
            goto fail;
        }
    }
    if (a->opts.keep_reserve_fd) {
        a->reserve_fd = open_reserve();
        if (a->reserve_fd < 0) {
            rc = (errno == EMFILE || errno == ENFILE) ? CG_EMFILE : CG_ESYS;
            goto fail;
        }
    }
    *out = a;
    return 0;

fail:
    cg_acceptor_free(a);
    return rc;
}

/* cg_acceptor_free: resets every deferred caller, closes the spare
 * descriptor and frees a. Leaves the listening socket open. Accepts NULL
 * and a half-built acceptor. The acceptor's thread. */
void cg_acceptor_free(cg_acceptor *a)
{
    struct held h;

    if (!a)
        return;
    while (a->count > 0) {
        ring_pop(a, &h);
        cg_socket_close_reset(h.fd);
    }
    if (a->reserve_fd >= 0)
        close(a->reserve_fd);
    free(a->ring);
    free(a);
}

/* cg_acceptor_accept: see accept.h. A due deferred caller goes before the
 * backlog, and only one caller is handled per call. The acceptor's thread. */
int cg_acceptor_accept(cg_acceptor *a, cg_socket_t *out, cg_accept_result *res)
{
    cg_accept_result scratch;
    int64_t now;

    if (!res)
        res = &scratch;
    memset(res, 0, sizeof *res);
    if (out)
        *out = CG_INVALID_SOCKET;
    if (!a || !out)
        return CG_EINVAL;

    /* The spare was lost when it could not be reopened after shedding; take
     * it back as soon as a descriptor is free again. */
    if (a->opts.keep_reserve_fd && a->reserve_fd < 0)
        a->reserve_fd = open_reserve();

    now = now_ms();
    if (a->count > 0 && a->ring[a->head].due_ms <= now) {
        struct held h;
        ring_pop(a, &h);
        return offer(a, &h, now, out, res);
    }
    return take_new(a, now, out, res);
}

/* cg_acceptor_next_due_ms: see accept.h. Reads the clock; the acceptor's
 * thread. */
int64_t cg_acceptor_next_due_ms(const cg_acceptor *a)
{
    int64_t d;

    if (!a || a->count == 0)
        return -1;
    d = a->ring[a->head].due_ms - now_ms();
    return d > 0 ? d : 0;
}

/* cg_acceptor_deferred: callers held right now (0 for NULL). The acceptor's
 * thread. */
unsigned cg_acceptor_deferred(const cg_acceptor *a)
{
    return a ? a->count : 0;
}

/* cg_socket_close_reset: close fd so the peer gets a TCP reset instead of a
 * FIN (SO_LINGER on with a zero timeout). Ignores fd < 0 and keeps errno, so
 * error paths may call it. Any thread that owns fd. */
void cg_socket_close_reset(cg_socket_t fd)
{
    struct linger lg;
    int e = errno;

    if (fd < 0)
        return;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, (socklen_t)sizeof lg);
    /* Linux and the BSDs release fd even when close fails; never retry. */
    (void)close(fd);
    errno = e;
}
