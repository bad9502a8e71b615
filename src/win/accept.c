/* win/accept.c — conditional accept on Windows, with WSAAccept.
 *
 * WSAAccept runs a CONDITIONPROC with the caller's (lpCallerId) and the
 * callee's (lpCalleeId) addresses; ours asks the user's callback and maps
 * its verdict to CF_ACCEPT, CF_REJECT or CF_DEFER. On a listener with
 * SO_CONDITIONAL_ACCEPT (sys.c sets it before listen) the stack withholds
 * the handshake until then, so CF_REJECT makes WSAAccept fail with
 * WSAECONNREFUSED and the caller gets a reset without ever being connected.
 * Without it (Wine says WSAENOPROTOOPT) the handshake is already done, and a
 * reject is carried out as on POSIX: the procedure answers CF_ACCEPT, and
 * the socket WSAAccept returns is closed with a reset before any byte.
 *
 * CF_DEFER leaves the caller at the head of the backlog (WSAAccept fails
 * with WSATRY_AGAIN) and the next WSAAccept offers it again. So Windows
 * holds at most one deferred caller per listener, and the callers behind it
 * wait too: max_deferred above 1 means 1 here. The acceptor remembers that
 * caller (its address) to count its deferrals and enforce the limits.
 *
 * A deferred caller's state:
 *
 *     (new) ──CF_DEFER──► HELD ──due, offered again──► CF_ACCEPT / CF_REJECT
 *                          │  ▲          │
 *                          │  └─CF_DEFER─┘ (within max_defers, timeout)
 *                          └─a different caller offered (it left)──► forgotten
 */
#include "condgate/accept.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include "error.h"

/* What the condition procedure learnt during one WSAAccept call. */
struct offer {
    cg_acceptor *a;
    bool called;      /* the procedure ran */
    bool judge_after; /* no usable lpCallerId: judge the accepted socket */
    cg_verdict verdict;
    bool timed_out;
    struct sockaddr_storage caller;
    socklen_t caller_len;
    int64_t now;
};

struct cg_acceptor {
    SOCKET fd; /* the listening socket; not ours */
    cg_condition_fn cond;
    void *arg;
    cg_accept_opts opts;
    bool conditional; /* SO_CONDITIONAL_ACCEPT is on: CF_REJECT really rejects */

    struct sockaddr_storage local; /* the listener's address, for a missing lpCalleeId */
    socklen_t local_len;

    /* The deferred caller at the head of the backlog, if any. */
    bool held;
    struct sockaddr_storage held_addr;
    socklen_t held_len;
    unsigned defers;
    int64_t first_ms, due_ms;
};

static int64_t now_ms(void)
{
    return (int64_t)GetTickCount64();
}

/* Copy an address WSAAccept lent us, if it is one we know. */
static socklen_t copy_addr(struct sockaddr_storage *dst, const WSABUF *src)
{
    if (src == NULL || src->buf == NULL || src->len < sizeof(struct sockaddr_in) ||
        src->len > sizeof(*dst))
        return 0;
    memset(dst, 0, sizeof(*dst));
    memcpy(dst, src->buf, src->len);
    if (dst->ss_family != AF_INET && dst->ss_family != AF_INET6)
        return 0;
    return (socklen_t)src->len;
}

static bool is_held(const cg_acceptor *a, const struct offer *o)
{
    return a->held && a->held_len == o->caller_len &&
           memcmp(&a->held_addr, &o->caller, (size_t)o->caller_len) == 0;
}

/* The CONDITIONPROC: judge one caller. A reject without conditional accept
 * answers CF_ACCEPT, and cg_acceptor_accept resets the socket. */
static int CALLBACK condition(LPWSABUF caller_id, LPWSABUF caller_data, LPQOS sqos, LPQOS gqos,
                              LPWSABUF callee_id, LPWSABUF callee_data, GROUP *g, DWORD_PTR user)
{
    struct offer *o = (struct offer *)user;
    cg_acceptor *a = o->a;
    struct sockaddr_storage callee;
    socklen_t callee_len;
    int64_t deadline;
    cg_verdict v;

    (void)caller_data;
    (void)sqos;
    (void)gqos;
    (void)callee_data;
    (void)g;
    o->called = true;
    o->caller_len = copy_addr(&o->caller, caller_id);
    callee_len = copy_addr(&callee, callee_id);
    if (callee_len == 0) {
        callee = a->local;
        callee_len = a->local_len;
    }
    /* No usable caller address (Wine passes an empty one for an IPv4 caller
     * on a dual-stack listener). Without conditional accept the handshake
     * is done anyway: take the socket and judge it by getpeername. With it,
     * there is nothing to judge by, so fail closed. */
    if (o->caller_len == 0) {
        if (!a->conditional) {
            o->judge_after = true;
            return CF_ACCEPT;
        }
        goto reject;
    }

    if (a->held && !is_held(a, o))
        a->held = false; /* the deferred caller left; this is someone else */
    if (!a->held) {
        a->defers = 0;
        a->first_ms = o->now;
    }
    deadline = a->first_ms + (int64_t)a->opts.defer_timeout_ms;
    /* The user called late: this caller's time ran out while it waited. */
    if (a->held && o->now > deadline)
        goto expire;

    v = a->cond((const struct sockaddr *)&o->caller, o->caller_len,
                (const struct sockaddr *)&callee, callee_len, a->arg);
    switch (v) {
    case CG_ACCEPT:
        a->held = false;
        o->verdict = CG_ACCEPT;
        return CF_ACCEPT;
    case CG_DEFER:
        if (a->opts.max_deferred == 0 || a->defers >= a->opts.max_defers ||
            o->now + (int64_t)a->opts.defer_retry_ms > deadline)
            goto expire;
        a->held = true;
        a->held_addr = o->caller;
        a->held_len = o->caller_len;
        a->defers++;
        a->due_ms = o->now + (int64_t)a->opts.defer_retry_ms;
        o->verdict = CG_DEFER;
        return CF_DEFER;
    case CG_REJECT:
    default: /* an unknown verdict fails closed */
        goto reject;
    }

expire:
    o->timed_out = true;
reject:
    a->held = false;
    o->verdict = CG_REJECT;
    return a->conditional ? CF_REJECT : CF_ACCEPT;
}

static void set_result(cg_accept_result *res, const struct offer *o)
{
    res->verdict = o->verdict;
    res->timed_out = o->timed_out;
    memcpy(&res->caller, &o->caller, sizeof(res->caller));
    res->caller_len = o->caller_len;
}

/* Judge an accepted socket by its own addresses, as on POSIX (see
 * condition()). A deferral cannot be honoured here: it becomes a reject
 * marked timed_out. */
static void judge_accepted(cg_acceptor *a, SOCKET s, struct offer *o)
{
    struct sockaddr_storage callee;
    int clen = (int)sizeof(o->caller), llen = (int)sizeof(callee);
    cg_verdict v;

    memset(&o->caller, 0, sizeof(o->caller));
    if (getpeername(s, (struct sockaddr *)&o->caller, &clen) != 0 ||
        getsockname(s, (struct sockaddr *)&callee, &llen) != 0) {
        o->caller_len = 0;
        o->verdict = CG_REJECT;
        return;
    }
    o->caller_len = (socklen_t)clen;
    v = a->cond((const struct sockaddr *)&o->caller, o->caller_len,
                (const struct sockaddr *)&callee, (socklen_t)llen, a->arg);
    o->verdict = v == CG_ACCEPT ? CG_ACCEPT : CG_REJECT;
    o->timed_out = v == CG_DEFER;
}

/* Make an accepted socket what accept.h promises: non-blocking and not
 * inherited by child processes. */
static int prepare(SOCKET s)
{
    u_long nb = 1;

    if (ioctlsocket(s, FIONBIO, &nb) != 0)
        return cg__translate_wsa(WSAGetLastError());
    SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
    return 0;
}

/* Is fd a listening TCP socket over IPv4 or IPv6? Reads its local address
 * into a. (Windows cannot tell whether a socket is non-blocking.) */
static int check_listener(cg_acceptor *a, SOCKET fd)
{
    int type = 0, len = (int)sizeof(type);
    BOOL listening = FALSE, cond = FALSE;

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, (char *)&type, &len) != 0 || type != SOCK_STREAM)
        return CG_EINVAL;
    len = (int)sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, (char *)&listening, &len) == 0 && !listening)
        return CG_EINVAL;
    len = (int)sizeof(a->local);
    if (getsockname(fd, (struct sockaddr *)&a->local, &len) != 0)
        return CG_EINVAL;
    a->local_len = (socklen_t)len;
    if (a->local.ss_family != AF_INET && a->local.ss_family != AF_INET6)
        return CG_EINVAL;
    len = (int)sizeof(cond);
    a->conditional =
        getsockopt(fd, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, (char *)&cond, &len) == 0 && cond;
    return 0;
}

/* cg_acceptor_new: see accept.h. keep_reserve_fd has no meaning here (no
 * descriptor table to run out of) and is ignored. Any thread. */
int cg_acceptor_new(cg_socket_t fd, cg_condition_fn cond, void *arg, const cg_accept_opts *opts,
                    cg_acceptor **out)
{
    cg_acceptor *a;
    int rc;

    if (out)
        *out = NULL;
    if (fd == CG_INVALID_SOCKET || !cond || !out)
        return CG_EINVAL;
    if (opts && opts->max_deferred > CG_ACCEPT_MAX_DEFERRED)
        return CG_EINVAL;
    a = calloc(1, sizeof(*a));
    if (!a)
        return CG_ENOMEM;
    rc = check_listener(a, fd);
    if (rc < 0)
        goto fail;
    a->fd = fd;
    a->cond = cond;
    a->arg = arg;
    if (opts)
        a->opts = *opts;
    else
        cg_accept_opts_default(&a->opts);
    *out = a;
    return 0;

fail:
    cg_acceptor_free(a);
    return rc;
}

/* cg_acceptor_free: frees a; a deferred caller stays in the listener's
 * backlog, which the listening socket's close resets. Accepts NULL. */
void cg_acceptor_free(cg_acceptor *a)
{
    free(a);
}

/* cg_acceptor_accept: see accept.h. One WSAAccept per call; a deferred
 * caller blocks the backlog until it is due. The acceptor's thread. */
int cg_acceptor_accept(cg_acceptor *a, cg_socket_t *out, cg_accept_result *res)
{
    cg_accept_result scratch;
    struct offer o;
    SOCKET s;
    int err, rc;

    if (!res)
        res = &scratch;
    memset(res, 0, sizeof(*res));
    if (out)
        *out = CG_INVALID_SOCKET;
    if (!a || !out)
        return CG_EINVAL;

    memset(&o, 0, sizeof(o));
    o.a = a;
    o.now = now_ms();
    /* The held caller is first in line and not due: nothing to take. */
    if (a->held && o.now < a->due_ms)
        return CG_EAGAIN;

    s = WSAAccept(a->fd, NULL, NULL, condition, (DWORD_PTR)&o);
    if (s != INVALID_SOCKET) {
        if (o.judge_after)
            judge_accepted(a, s, &o);
        if (o.called)
            set_result(res, &o);
        if (o.called && o.verdict == CG_REJECT) {
            cg_socket_close_reset(s);
            return CG_EREJECTED;
        }
        rc = prepare(s);
        if (rc != 0) {
            cg_socket_close_reset(s);
            return rc;
        }
        res->verdict = CG_ACCEPT;
        *out = s;
        return 0;
    }
    err = WSAGetLastError();
    if (o.called) {
        set_result(res, &o);
        if (err == WSATRY_AGAIN && o.verdict == CG_DEFER)
            return CG_EDEFERRED;
        if (err == WSAECONNREFUSED && o.verdict == CG_REJECT)
            return CG_EREJECTED;
        /* The caller left between the verdict and the accept. */
        a->held = false;
        memset(res, 0, sizeof(*res));
        return CG_ECONNABORTED;
    }
    switch (err) {
    case WSAEWOULDBLOCK:
        /* Empty backlog: a caller we held has left. */
        a->held = false;
        return CG_EAGAIN;
    case WSATRY_AGAIN:
        return CG_EAGAIN;
    case WSAEMFILE:
    case WSAENOBUFS:
        return CG_EMFILE;
    case WSAECONNRESET:
    case WSAECONNABORTED:
    case WSAECONNREFUSED:
    case WSAENETDOWN:
    case WSAETIMEDOUT:
        return CG_ECONNABORTED;
    case WSAENOTSOCK:
    case WSAEINVAL:
    case WSAEOPNOTSUPP:
        return CG_EINVAL;
    default:
        rc = cg__translate_wsa(err);
        return rc < 0 ? rc : CG_ESYS;
    }
}

/* cg_acceptor_next_due_ms: see accept.h. Reads the clock. */
int64_t cg_acceptor_next_due_ms(const cg_acceptor *a)
{
    int64_t d;

    if (!a || !a->held)
        return -1;
    d = a->due_ms - now_ms();
    return d > 0 ? d : 0;
}

/* cg_acceptor_deferred: 1 while a deferred caller is held, else 0. */
unsigned cg_acceptor_deferred(const cg_acceptor *a)
{
    return a && a->held ? 1u : 0u;
}

/* cg_socket_close_reset: close s with a reset (SO_LINGER on, zero time).
 * Ignores CG_INVALID_SOCKET; keeps WSAGetLastError() and errno. Any thread
 * that owns s. */
void cg_socket_close_reset(cg_socket_t s)
{
    struct linger lg;
    int wsa = WSAGetLastError();
    int e = errno;

    if (s == CG_INVALID_SOCKET)
        return;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    (void)setsockopt(s, SOL_SOCKET, SO_LINGER, (const char *)&lg, (int)sizeof(lg));
    (void)closesocket(s);
    WSASetLastError(wsa);
    errno = e;
}
