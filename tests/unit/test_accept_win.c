/* test_accept_win.c — conditional accept on Windows, through the real
 * WSAAccept path (src/win/accept.c) and the gate's own listening sockets
 * (cg__sys_listen, which asks for SO_CONDITIONAL_ACCEPT), over loopback.
 * The POSIX twin is test_accept.c.
 *
 * Runs on Windows and under Wine. Wine 8 answers SO_CONDITIONAL_ACCEPT with
 * WSAENOPROTOOPT, so there the handshake completes before the callback runs
 * and a rejected caller is reset right after WSAAccept, as on POSIX; on
 * Windows with conditional accept a rejected caller's connect is refused
 * instead. The checks accept either ending, never a byte and never an
 * orderly close.
 *
 * Not here, because Windows has no such thing: descriptor exhaustion
 * (EMFILE shedding, keep_reserve_fd: Winsock has no per-process socket
 * limit to lower), the blocking-listener refusal (Windows cannot tell
 * whether a socket is non-blocking) and more than one held caller (CF_DEFER
 * keeps the caller at the head of the backlog; max_deferred above 1 means 1,
 * see test_one_held_blocks_backlog).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "condgate/accept.h"
#include "sys.h"
#include "testsys.h"
#include "accept_script.h"

#include <windows.h>

#define WAIT_MS 5000 /* longest wait for something that should happen */

/* ------------------------------------------------------------------------
 * Helpers
 */

static uint16_t local_port(SOCKET s)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;

    assert_int_equal(getsockname(s, (struct sockaddr *)&ss, &len), 0);
    return port_of(&ss);
}

/* Does this listener withhold the handshake until the callback accepts? */
static bool conditional;

/* A listener made as the gate makes them (cg__sys_listen: non-blocking,
 * SO_EXCLUSIVEADDRUSE, conditional accept if the stack has it; [::] dual
 * stack, ::1 v6 only) on ip:0, or INVALID_SOCKET when the address is not
 * available here (callers skip). */
static SOCKET listen_on(int family, const char *ip, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len = make_addr(family, ip, 0, &ss);
    SOCKET s;
    BOOL on = FALSE;
    int optlen = (int)sizeof on;
    char why[256];

    if (cg__sys_listen((const struct sockaddr *)&ss, len, true, &s, why, sizeof why) != 0) {
        print_message("listen on %s: %s\n", ip, why);
        return INVALID_SOCKET;
    }
    *port = local_port(s);
    conditional = getsockopt(s, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, (char *)&on, &optlen) == 0 && on;
    return s;
}

static int poll_one(SOCKET s, short events, int timeout_ms)
{
    struct pollfd p = {.fd = s, .events = events};
    int n = ts_poll(&p, 1, timeout_ms);

    assert_true(n >= 0);
    return n > 0 ? p.revents : 0;
}

/* A client socket from src (NULL: any) to dst:port, non-blocking. Without
 * conditional accept the stack completes the handshake by itself: wait for
 * that. With it, the handshake waits for the callback, so return at once. */
static SOCKET connect_from(int family, const char *src, const char *dst, uint16_t port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    SOCKET s = ts_socket(family, SOCK_STREAM);

    assert_true(s != INVALID_SOCKET);
    if (src) {
        len = make_addr(family, src, 0, &ss);
        assert_int_equal(bind(s, (struct sockaddr *)&ss, (int)len), 0);
    }
    ts_set_nonblock(s, true);
    len = make_addr(family, dst, port, &ss);
    if (connect(s, (struct sockaddr *)&ss, (int)len) != 0)
        assert_int_equal(WSAGetLastError(), WSAEWOULDBLOCK);
    if (!conditional) {
        int err = -1, elen = (int)sizeof err;
        assert_true(poll_one(s, POLLOUT, WAIT_MS) & POLLOUT);
        assert_int_equal(getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&err, &elen), 0);
        assert_int_equal(err, 0);
    }
    return s;
}

/* Call cg_acceptor_accept until it has something other than CG_EAGAIN,
 * waiting for a new caller or the next due deferred one in between. */
static int accept_next(cg_acceptor *a, SOCKET lfd, SOCKET *out, cg_accept_result *res)
{
    for (int i = 0; i < 1000; i++) {
        int rc = cg_acceptor_accept(a, out, res);
        if (rc != CG_EAGAIN)
            return rc;
        int64_t due = cg_acceptor_next_due_ms(a);
        /* A held caller blocks the backlog: the listener stays readable
         * while callers wait behind it, so wait for the held one instead. */
        if (due > 0 && cg_acceptor_deferred(a) > 0) {
            ts_sleep_ms((int)due);
            continue;
        }
        int timeout = due < 0 || due > WAIT_MS ? WAIT_MS : (int)due;
        if (poll_one(lfd, POLLIN, timeout) == 0 && due < 0)
            fail_msg("no caller arrived within %d ms", WAIT_MS);
    }
    fail_msg("accept_next: no progress");
    return CG_EAGAIN;
}

/* The client was turned away: never a byte, never an orderly close. On
 * Windows: a reset after the handshake (recv fails with WSAECONNRESET), or
 * with conditional accept its connect refused (SO_ERROR WSAECONNREFUSED).
 * Under Wine, wineserver collects the pending socket error itself when the
 * reset arrives, so recv then reports an end of stream and the reset shows
 * only as POLLERR from WSAPoll; an orderly close never sets POLLERR there
 * (expect_eof, used in test_accept_path, checks that side). */
static void expect_reset(SOCKET c)
{
    char buf[16];
    int err = 0, elen = (int)sizeof err;
    int rev = poll_one(c, POLLIN, WAIT_MS);
    long n;

    assert_true(rev != 0);
    n = ts_recv(c, buf, sizeof buf);
    assert_true(n <= 0);
    if (n < 0 && ts_errno() == ECONNRESET)
        return;
    if (n == 0 && (rev & POLLERR))
        return;
    assert_int_equal(getsockopt(c, SOL_SOCKET, SO_ERROR, (char *)&err, &elen), 0);
    if (conditional && err == WSAECONNREFUSED)
        return;
    fail_msg("expected a reset: recv %ld, error %d, revents %#x, SO_ERROR %d", n, WSAGetLastError(),
             (unsigned)rev, err);
}

/* The peer closed in order: end of stream, and no POLLERR. */
static void expect_eof(SOCKET c)
{
    char buf[16];
    int rev = poll_one(c, POLLIN, WAIT_MS);

    assert_true(rev != 0);
    assert_false(rev & POLLERR);
    assert_int_equal(ts_recv(c, buf, sizeof buf), 0);
}

/* Nothing has arrived for the client: no data, no FIN, no reset. */
static void expect_quiet(SOCKET c)
{
    assert_int_equal(poll_one(c, POLLIN, 0), 0);
}

static void expect_addr(const struct sockaddr_storage *ss, int family, const char *ip,
                        uint16_t port)
{
    char want[64], got[64];
    struct sockaddr_storage w;

    make_addr(family, ip, port, &w);
    cg_sockaddr_format((const struct sockaddr *)&w, want, sizeof want);
    cg_sockaddr_format((const struct sockaddr *)ss, got, sizeof got);
    assert_int_equal(ss->ss_family, family);
    assert_string_equal(got, want);
}

static cg_acceptor *new_acceptor(SOCKET lfd, struct cb *cb, const cg_accept_opts *opts)
{
    cg_acceptor *a = NULL;

    assert_int_equal(cg_acceptor_new(lfd, cond, cb, opts, &a), 0);
    assert_non_null(a);
    return a;
}

/* ------------------------------------------------------------------------
 * Small functions
 */

static void test_names_and_defaults(void **state)
{
    cg_accept_opts o;

    (void)state;
    assert_string_equal(cg_verdict_name(CG_ACCEPT), "accept");
    assert_string_equal(cg_verdict_name(CG_REJECT), "reject");
    assert_string_equal(cg_verdict_name(CG_DEFER), "defer");
    memset(&o, 0xff, sizeof o);
    cg_accept_opts_default(&o);
    assert_int_equal(o.max_deferred, 64);
    assert_int_equal(o.max_defers, 8);
    assert_int_equal(o.defer_retry_ms, 50);
    assert_int_equal(o.defer_timeout_ms, 2000);
}

/* Winsock's inet_ntop behind cg_sockaddr_format writes what glibc's does. */
static void test_sockaddr_format(void **state)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    char buf[64];

    (void)state;
    make_addr(AF_INET, "192.0.2.1", 80, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "192.0.2.1:80");
    make_addr(AF_INET6, "2001:db8::1", 443, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "[2001:db8::1]:443");
    make_addr(AF_INET6, "::ffff:198.51.100.7", 40112, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "198.51.100.7:40112");
    make_addr(AF_INET6, "fe80::1", 22, &ss);
    in6->sin6_scope_id = 2;
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "[fe80::1%2]:22");
    make_addr(AF_INET6, "::", 1, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf), "[::]:1");
}

static void test_new_invalid(void **state)
{
    struct cb cb = cb_always(CG_ACCEPT);
    cg_accept_opts o;
    cg_acceptor *a = (cg_acceptor *)&cb;
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "127.0.0.1", &port);
    SOCKET s = INVALID_SOCKET;

    (void)state;
    assert_true(lfd != INVALID_SOCKET);
    assert_int_equal(cg_acceptor_new(lfd, NULL, &cb, NULL, &a), CG_EINVAL);
    assert_null(a);
    assert_int_equal(cg_acceptor_new(lfd, cond, &cb, NULL, NULL), CG_EINVAL);
    assert_int_equal(cg_acceptor_new(INVALID_SOCKET, cond, &cb, NULL, &a), CG_EINVAL);
    cg_accept_opts_default(&o);
    o.max_deferred = CG_ACCEPT_MAX_DEFERRED + 1;
    assert_int_equal(cg_acceptor_new(lfd, cond, &cb, &o, &a), CG_EINVAL);
    ts_close(lfd);

    /* Not listening; not TCP; not a socket at all. */
    s = ts_socket(AF_INET, SOCK_STREAM);
    assert_int_equal(cg_acceptor_new(s, cond, &cb, NULL, &a), CG_EINVAL);
    ts_close(s);
    s = ts_socket(AF_INET, SOCK_DGRAM);
    assert_int_equal(cg_acceptor_new(s, cond, &cb, NULL, &a), CG_EINVAL);
    ts_close(s);
    assert_int_equal(cg_acceptor_new((SOCKET)0x7ffc, cond, &cb, NULL, &a), CG_EINVAL);
    assert_null(a);

    cg_acceptor_free(NULL);
    assert_int_equal(cg_acceptor_deferred(NULL), 0);
    assert_int_equal(cg_acceptor_next_due_ms(NULL), -1);
    assert_int_equal(cg_acceptor_accept(NULL, &s, NULL), CG_EINVAL);
    assert_true(s == CG_INVALID_SOCKET);
    WSASetLastError(WSAEDISCON);
    cg_socket_close_reset(CG_INVALID_SOCKET);
    assert_int_equal(WSAGetLastError(), WSAEDISCON);
}

/* ------------------------------------------------------------------------
 * Accept and reject
 */

static void test_eagain_on_empty_backlog(void **state)
{
    struct cb cb = cb_always(CG_ACCEPT);
    cg_accept_result res;
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "127.0.0.1", &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    SOCKET fd = 123;

    (void)state;
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EAGAIN);
    assert_true(fd == CG_INVALID_SOCKET);
    assert_int_equal(res.caller_len, 0);
    assert_int_equal(cg_acceptor_accept(a, &fd, NULL), CG_EAGAIN);
    assert_int_equal(cb.calls, 0);
    assert_int_equal(cg_acceptor_deferred(a), 0);
    assert_int_equal(cg_acceptor_next_due_ms(a), -1);
    cg_acceptor_free(a);
    ts_close(lfd);
}

/* The callback sees the caller's own source address (lpCallerId) and the
 * listener's (lpCalleeId); the socket is handed over non-blocking and not
 * inheritable. */
static void test_accept_path(void **state)
{
    struct cb cb = cb_always(CG_ACCEPT);
    cg_accept_result res;
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "127.0.0.1", &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    SOCKET c = connect_from(AF_INET, "127.0.0.2", "127.0.0.1", port);
    SOCKET fd = INVALID_SOCKET;
    DWORD flags = 0;
    char buf[8];

    (void)state;
    assert_int_equal(accept_next(a, lfd, &fd, &res), 0);
    assert_true(fd != INVALID_SOCKET);
    assert_int_equal(cb.calls, 1);
    expect_addr(&cb.caller[0], AF_INET, "127.0.0.2", local_port(c));
    assert_int_equal(cb.caller_len[0], sizeof(struct sockaddr_in));
    expect_addr(&cb.callee[0], AF_INET, "127.0.0.1", port);
    assert_int_equal(res.verdict, CG_ACCEPT);
    assert_false(res.timed_out);
    expect_addr(&res.caller, AF_INET, "127.0.0.2", local_port(c));

    /* Non-blocking: a read with nothing to read fails at once. */
    assert_int_equal(ts_recv(fd, buf, sizeof buf), -1);
    assert_int_equal(ts_errno(), EAGAIN);
    assert_true(GetHandleInformation((HANDLE)fd, &flags));
    assert_false(flags & HANDLE_FLAG_INHERIT);

    assert_int_equal(ts_send(fd, "hi", 2), 2);
    assert_true(poll_one(c, POLLIN, WAIT_MS) & POLLIN);
    assert_int_equal(ts_recv(c, buf, sizeof buf), 2);
    assert_memory_equal(buf, "hi", 2);
    assert_int_equal(ts_send(c, "yo", 2), 2);
    assert_true(poll_one(fd, POLLIN, WAIT_MS) & POLLIN);
    assert_int_equal(ts_recv(fd, buf, sizeof buf), 2);
    assert_memory_equal(buf, "yo", 2);

    /* An orderly close is told apart from the rejects' resets. */
    ts_close(fd);
    expect_eof(c);

    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EAGAIN);
    assert_int_equal(cb.calls, 1);
    cg_acceptor_free(a);
    ts_close(c);
    ts_close(lfd);
}

/* Wildcard listener: the callee is the address each caller dialled. */
static void test_accept_wildcard_callee(void **state)
{
    struct cb cb = cb_always(CG_ACCEPT);
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "0.0.0.0", &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    SOCKET c1 = connect_from(AF_INET, NULL, "127.0.0.3", port);
    SOCKET fd1 = INVALID_SOCKET, fd2 = INVALID_SOCKET;

    (void)state;
    assert_int_equal(accept_next(a, lfd, &fd1, NULL), 0);
    SOCKET c2 = connect_from(AF_INET, NULL, "127.0.0.4", port);
    assert_int_equal(accept_next(a, lfd, &fd2, NULL), 0);
    assert_int_equal(cb.calls, 2);
    expect_addr(&cb.callee[0], AF_INET, "127.0.0.3", port);
    expect_addr(&cb.callee[1], AF_INET, "127.0.0.4", port);
    ts_close(fd1);
    ts_close(fd2);
    cg_acceptor_free(a);
    ts_close(c1);
    ts_close(c2);
    ts_close(lfd);
}

static void test_reject(void **state)
{
    struct cb cb = cb_always(CG_REJECT);
    cg_accept_result res;
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "127.0.0.1", &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    SOCKET c = connect_from(AF_INET, "127.0.0.5", "127.0.0.1", port);
    SOCKET fd = INVALID_SOCKET;

    (void)state;
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    assert_true(fd == CG_INVALID_SOCKET);
    assert_int_equal(cb.calls, 1);
    assert_int_equal(res.verdict, CG_REJECT);
    assert_false(res.timed_out);
    expect_addr(&res.caller, AF_INET, "127.0.0.5", local_port(c));
    expect_reset(c);

    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EAGAIN);
    assert_int_equal(cb.calls, 1);
    cg_acceptor_free(a);
    ts_close(c);
    ts_close(lfd);
}

/* A client that already sent a request is reset all the same, and a client
 * that writes after the reset gets an error. */
static void test_reject_send(void **state)
{
    struct cb cb = cb_always(CG_REJECT);
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "127.0.0.1", &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    SOCKET c1 = connect_from(AF_INET, NULL, "127.0.0.1", port);
    SOCKET c2 = connect_from(AF_INET, NULL, "127.0.0.1", port);
    SOCKET fd;
    long n;

    (void)state;
    if (!conditional)
        assert_int_equal(ts_send(c1, "GET / HTTP/1.0\r\n\r\n", 18), 18);
    assert_int_equal(accept_next(a, lfd, &fd, NULL), CG_EREJECTED);
    assert_int_equal(accept_next(a, lfd, &fd, NULL), CG_EREJECTED);
    assert_int_equal(cb.calls, 2);
    expect_reset(c1);

    assert_true(poll_one(c2, POLLIN, WAIT_MS) != 0);
    n = ts_send(c2, "x", 1);
    if (n != -1) /* the first send after a reset may still be taken */
        n = ts_send(c2, "x", 1);
    assert_int_equal(n, -1);

    cg_acceptor_free(a);
    ts_close(c1);
    ts_close(c2);
    ts_close(lfd);
}

/* A verdict outside the enum fails closed. */
static void test_unknown_verdict_rejects(void **state)
{
    struct cb cb = cb_always((cg_verdict)7);
    cg_accept_result res;
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "127.0.0.1", &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    SOCKET c = connect_from(AF_INET, NULL, "127.0.0.1", port);
    SOCKET fd;

    (void)state;
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    assert_int_equal(res.verdict, CG_REJECT);
    expect_reset(c);
    cg_acceptor_free(a);
    ts_close(c);
    ts_close(lfd);
}

/* ------------------------------------------------------------------------
 * Deferral (CF_DEFER)
 */

static void test_defer_then_accept(void **state)
{
    static const cg_verdict script[] = {CG_DEFER, CG_ACCEPT};
    struct cb cb = cb_always(CG_REJECT);
    cg_accept_opts o;
    cg_accept_result res;
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "127.0.0.1", &port);
    SOCKET c = connect_from(AF_INET, "127.0.0.6", "127.0.0.1", port);
    SOCKET fd = INVALID_SOCKET;
    int64_t due;
    char buf[4];

    (void)state;
    cb.script = script;
    cb.nscript = 2;
    cg_accept_opts_default(&o);
    o.defer_retry_ms = 400;
    o.defer_timeout_ms = 5000;
    cg_acceptor *a = new_acceptor(lfd, &cb, &o);

    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EDEFERRED);
    assert_true(fd == CG_INVALID_SOCKET);
    assert_int_equal(res.verdict, CG_DEFER);
    expect_addr(&res.caller, AF_INET, "127.0.0.6", local_port(c));
    assert_int_equal(cb.calls, 1);
    assert_int_equal(cg_acceptor_deferred(a), 1);
    due = cg_acceptor_next_due_ms(a);
    assert_true(due > 0 && due <= 400);

    /* Not due yet: nothing to do, the callback is not asked, and the held
     * caller is neither served nor reset. */
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EAGAIN);
    assert_int_equal(cb.calls, 1);
    expect_quiet(c);

    /* GetTickCount64 moves in steps of several milliseconds: a margin. */
    ts_sleep_ms((int)cg_acceptor_next_due_ms(a) + 20);
    assert_int_equal(cg_acceptor_next_due_ms(a), 0);
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), 0);
    assert_true(fd != INVALID_SOCKET);
    assert_int_equal(cb.calls, 2);
    assert_int_equal(res.verdict, CG_ACCEPT);
    assert_false(res.timed_out);
    expect_addr(&cb.caller[1], AF_INET, "127.0.0.6", local_port(c));
    expect_addr(&cb.callee[1], AF_INET, "127.0.0.1", port);
    assert_int_equal(cg_acceptor_deferred(a), 0);
    assert_int_equal(cg_acceptor_next_due_ms(a), -1);

    assert_int_equal(ts_send(fd, "ok", 2), 2);
    assert_true(poll_one(c, POLLIN, WAIT_MS) & POLLIN);
    assert_int_equal(ts_recv(c, buf, sizeof buf), 2);
    ts_close(fd);
    cg_acceptor_free(a);
    ts_close(c);
    ts_close(lfd);
}

/* A caller deferred max_defers times is rejected at the next defer. */
static void test_defer_max_defers(void **state)
{
    struct cb cb = cb_always(CG_DEFER);
    cg_accept_opts o;
    cg_accept_result res;
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "127.0.0.1", &port);
    SOCKET c = connect_from(AF_INET, NULL, "127.0.0.1", port);
    SOCKET fd;

    (void)state;
    cg_accept_opts_default(&o);
    o.max_defers = 3;
    o.defer_retry_ms = 10;
    o.defer_timeout_ms = 10000;
    cg_acceptor *a = new_acceptor(lfd, &cb, &o);

    for (int i = 0; i < 3; i++) {
        assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EDEFERRED);
        assert_false(res.timed_out);
        expect_quiet(c);
    }
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    assert_int_equal(res.verdict, CG_REJECT);
    assert_true(res.timed_out);
    assert_int_equal(cb.calls, 4);
    assert_int_equal(cg_acceptor_deferred(a), 0);
    assert_int_equal(cg_acceptor_next_due_ms(a), -1);
    expect_reset(c);
    cg_acceptor_free(a);
    ts_close(c);
    ts_close(lfd);
}

/* A caller is never held past defer_timeout_ms. */
static void test_defer_timeout(void **state)
{
    struct cb cb = cb_always(CG_DEFER);
    cg_accept_opts o;
    cg_accept_result res;
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "127.0.0.1", &port);
    SOCKET c = connect_from(AF_INET, NULL, "127.0.0.1", port);
    SOCKET fd;
    int rc;
    uint64_t t0 = ts_now_ms();

    (void)state;
    cg_accept_opts_default(&o);
    o.max_defers = 1000;
    o.defer_retry_ms = 20;
    o.defer_timeout_ms = 100;
    cg_acceptor *a = new_acceptor(lfd, &cb, &o);

    while ((rc = accept_next(a, lfd, &fd, &res)) == CG_EDEFERRED)
        assert_true(ts_now_ms() - t0 < WAIT_MS);
    assert_int_equal(rc, CG_EREJECTED);
    assert_true(res.timed_out);
    /* Offers at 0, 20, ..., 100 ms at most; fewer if this process lagged. */
    assert_true(cb.calls >= 1 && cb.calls <= 6);
    expect_reset(c);
    cg_acceptor_free(a);
    ts_close(c);
    ts_close(lfd);
}

/* Offered after the deadline passed: rejected without asking the callback;
 * a retry delay longer than the timeout allows no deferral; max_deferred 0
 * turns every defer into a reject. */
static void test_defer_deadline_edges(void **state)
{
    struct cb cb = cb_always(CG_DEFER);
    cg_accept_opts o;
    cg_accept_result res;
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "127.0.0.1", &port);
    SOCKET c1 = connect_from(AF_INET, NULL, "127.0.0.1", port);
    SOCKET fd;

    (void)state;
    cg_accept_opts_default(&o);
    o.defer_retry_ms = 10;
    o.defer_timeout_ms = 30;
    cg_acceptor *a = new_acceptor(lfd, &cb, &o);
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EDEFERRED);
    ts_sleep_ms(60);
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EREJECTED);
    assert_true(res.timed_out);
    assert_int_equal(cb.calls, 1);
    expect_reset(c1);
    cg_acceptor_free(a);

    o.defer_retry_ms = 100;
    o.defer_timeout_ms = 50;
    cb = cb_always(CG_DEFER);
    a = new_acceptor(lfd, &cb, &o);
    SOCKET c2 = connect_from(AF_INET, NULL, "127.0.0.1", port);
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    assert_true(res.timed_out);
    assert_int_equal(cb.calls, 1);
    expect_reset(c2);
    cg_acceptor_free(a);

    o.max_deferred = 0;
    o.defer_timeout_ms = 5000;
    cb = cb_always(CG_DEFER);
    a = new_acceptor(lfd, &cb, &o);
    SOCKET c3 = connect_from(AF_INET, NULL, "127.0.0.1", port);
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    assert_true(res.timed_out);
    expect_reset(c3);
    cg_acceptor_free(a);

    ts_close(c1);
    ts_close(c2);
    ts_close(c3);
    ts_close(lfd);
}

/* Windows holds one deferred caller, at the head of the backlog: the caller
 * behind it waits, unjudged, until the held one is settled; then it is
 * offered in turn. */
static void test_one_held_blocks_backlog(void **state)
{
    static const cg_verdict script[] = {CG_DEFER, CG_ACCEPT, CG_REJECT};
    struct cb cb = cb_always(CG_REJECT);
    cg_accept_opts o;
    cg_accept_result res;
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET, "127.0.0.1", &port);
    SOCKET c1 = connect_from(AF_INET, "127.0.0.2", "127.0.0.1", port);
    SOCKET fd1 = INVALID_SOCKET, fd;

    (void)state;
    cb.script = script;
    cb.nscript = 3;
    cg_accept_opts_default(&o); /* max_deferred 64: still one at a time */
    o.defer_retry_ms = 150;
    cg_acceptor *a = new_acceptor(lfd, &cb, &o);

    assert_int_equal(accept_next(a, lfd, &fd, NULL), CG_EDEFERRED);
    SOCKET c2 = connect_from(AF_INET, "127.0.0.3", "127.0.0.1", port);
    assert_int_equal(cg_acceptor_accept(a, &fd, NULL), CG_EAGAIN);
    assert_int_equal(cg_acceptor_deferred(a), 1);
    assert_int_equal(cb.calls, 1);

    assert_int_equal(accept_next(a, lfd, &fd1, NULL), 0);
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    assert_int_equal(cb.calls, 3);
    expect_addr(&cb.caller[1], AF_INET, "127.0.0.2", local_port(c1));
    expect_addr(&cb.caller[2], AF_INET, "127.0.0.3", local_port(c2));
    expect_addr(&res.caller, AF_INET, "127.0.0.3", local_port(c2));
    expect_reset(c2);
    ts_close(fd1);
    cg_acceptor_free(a);
    ts_close(c1);
    ts_close(c2);
    ts_close(lfd);
}

/* ------------------------------------------------------------------------
 * IPv6
 */

static void test_ipv6_loopback(void **state)
{
    struct cb cb = cb_always(CG_ACCEPT);
    cg_accept_result res;
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET6, "::1", &port);
    char buf[64], want[64];
    SOCKET fd = INVALID_SOCKET;

    (void)state;
    if (lfd == INVALID_SOCKET)
        skip();
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    SOCKET c = connect_from(AF_INET6, NULL, "::1", port);

    assert_int_equal(accept_next(a, lfd, &fd, &res), 0);
    expect_addr(&cb.caller[0], AF_INET6, "::1", local_port(c));
    expect_addr(&cb.callee[0], AF_INET6, "::1", port);
    assert_int_equal(cb.caller_len[0], sizeof(struct sockaddr_in6));
    snprintf(want, sizeof want, "[::1]:%u", (unsigned)local_port(c));
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&res.caller, buf, sizeof buf), want);
    ts_close(fd);
    cg_acceptor_free(a);
    ts_close(c);
    ts_close(lfd);
}

/* [::] (dual stack, as cg__sys_listen makes it) takes IPv4 callers as
 * ::ffff:a.b.c.d. Wine's WSAAccept passes no caller address for them; the
 * acceptor then judges the accepted socket by getpeername, and the callback
 * must see the same mapped address either way. A rejected IPv4 caller is
 * turned away like any other. */
static void test_dual_stack_mapped(void **state)
{
    static const cg_verdict script[] = {CG_ACCEPT, CG_ACCEPT, CG_REJECT};
    struct cb cb = cb_always(CG_REJECT);
    uint16_t port;
    SOCKET lfd = listen_on(AF_INET6, "::", &port);
    char buf[64], want[64];
    SOCKET fd1 = INVALID_SOCKET, fd2 = INVALID_SOCKET, fd;
    cg_accept_result res;

    (void)state;
    if (lfd == INVALID_SOCKET)
        skip();
    cb.script = script;
    cb.nscript = 3;
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    SOCKET c4 = connect_from(AF_INET, "127.0.0.7", "127.0.0.1", port);

    assert_int_equal(accept_next(a, lfd, &fd1, NULL), 0);
    expect_addr(&cb.caller[0], AF_INET6, "::ffff:127.0.0.7", local_port(c4));
    assert_true(IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&cb.caller[0])->sin6_addr));
    expect_addr(&cb.callee[0], AF_INET6, "::ffff:127.0.0.1", port);
    snprintf(want, sizeof want, "127.0.0.7:%u", (unsigned)local_port(c4));
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&cb.caller[0], buf, sizeof buf),
                        want);

    SOCKET c6 = connect_from(AF_INET6, NULL, "::1", port);
    assert_int_equal(accept_next(a, lfd, &fd2, NULL), 0);
    expect_addr(&cb.caller[1], AF_INET6, "::1", local_port(c6));
    expect_addr(&cb.callee[1], AF_INET6, "::1", port);

    SOCKET c4r = connect_from(AF_INET, "127.0.0.66", "127.0.0.1", port);
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    snprintf(want, sizeof want, "127.0.0.66:%u", (unsigned)local_port(c4r));
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&res.caller, buf, sizeof buf), want);
    expect_reset(c4r);

    ts_close(fd1);
    ts_close(fd2);
    cg_acceptor_free(a);
    ts_close(c4);
    ts_close(c6);
    ts_close(c4r);
    ts_close(lfd);
}

static int group_setup(void **state)
{
    (void)state;
    return cg__sys_init();
}

static int group_teardown(void **state)
{
    (void)state;
    cg__sys_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_defaults),
        cmocka_unit_test(test_sockaddr_format),
        cmocka_unit_test(test_new_invalid),
        cmocka_unit_test(test_eagain_on_empty_backlog),
        cmocka_unit_test(test_accept_path),
        cmocka_unit_test(test_accept_wildcard_callee),
        cmocka_unit_test(test_reject),
        cmocka_unit_test(test_reject_send),
        cmocka_unit_test(test_unknown_verdict_rejects),
        cmocka_unit_test(test_defer_then_accept),
        cmocka_unit_test(test_defer_max_defers),
        cmocka_unit_test(test_defer_timeout),
        cmocka_unit_test(test_defer_deadline_edges),
        cmocka_unit_test(test_one_held_blocks_backlog),
        cmocka_unit_test(test_ipv6_loopback),
        cmocka_unit_test(test_dual_stack_mapped),
    };

    ts_init();
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
