/* test_accept.c — conditional accept over real loopback sockets.
 *
 * Readiness is always waited for with poll() and a timeout, never with a
 * sleep. The only pure waits are for deferral deadlines, which are the thing
 * under test.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* unshare(2), for the private network namespace */
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#endif

#include "condgate/accept.h"
#include "condgate/rules.h"
#include "accept_script.h"

#define WAIT_MS 5000 /* longest wait for something that should happen */

/* ------------------------------------------------------------------------
 * Helpers
 */

static uint16_t local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    return port_of(&ss);
}

/* A non-blocking listener on ip:0, or -1 when the address family or address
 * is not available here (callers skip). v6only is for AF_INET6 only. */
static int listen_on(int family, const char *ip, int v6only, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len = make_addr(family, ip, 0, &ss);
    int one = 1;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6)
        assert_int_equal(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only), 0);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        close(fd);
        return -1;
    }
    assert_int_equal(listen(fd, 64), 0);
    *port = local_port(fd);
    return fd;
}

/* A connected client socket from src (NULL: any) to dst:port. Loopback
 * connects finish in the kernel without the server's help. */
static int connect_from(int family, const char *src, const char *dst, uint16_t port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    if (src) {
        len = make_addr(family, src, 0, &ss);
        assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
    }
    len = make_addr(family, dst, port, &ss);
    assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
    return fd;
}

static int poll_one(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n;

    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    assert_true(n >= 0);
    return n > 0 ? p.revents : 0;
}

static void wait_ms(int64_t ms)
{
    assert_true(ms >= 0 && ms <= WAIT_MS);
    poll(NULL, 0, (int)ms);
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Call cg_acceptor_accept until it has something other than CG_EAGAIN,
 * waiting for a new caller or the next due deferred one in between. */
static int accept_next(cg_acceptor *a, int lfd, int *out, cg_accept_result *res)
{
    for (int i = 0; i < 1000; i++) {
        int rc = cg_acceptor_accept(a, out, res);
        if (rc != CG_EAGAIN)
            return rc;
        int64_t due = cg_acceptor_next_due_ms(a);
        int timeout = due < 0 || due > WAIT_MS ? WAIT_MS : (int)due;
        if (poll_one(lfd, POLLIN, timeout) == 0 && due < 0)
            fail_msg("no caller arrived within %d ms", WAIT_MS);
    }
    fail_msg("accept_next: no progress");
    return CG_EAGAIN;
}

/* The client was reset: it reads an error, never data and never EOF. */
static void expect_reset(int c)
{
    char buf[16];
    ssize_t n;

    assert_true(poll_one(c, POLLIN, WAIT_MS) != 0);
    n = recv(c, buf, sizeof buf, MSG_DONTWAIT);
    assert_int_equal(n, -1);
    assert_int_equal(errno, ECONNRESET);
}

/* Nothing has arrived for the client: no data, no FIN, no reset. */
static void expect_quiet(int c)
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

static cg_acceptor *new_acceptor(int lfd, struct cb *cb, const cg_accept_opts *opts)
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

    assert_string_equal(cg_verdict_name(CG_ACCEPT), "accept");
    assert_string_equal(cg_verdict_name(CG_REJECT), "reject");
    assert_string_equal(cg_verdict_name(CG_DEFER), "defer");
    assert_string_equal(cg_verdict_name((cg_verdict)42), "unknown");

    memset(&o, 0xff, sizeof o);
    cg_accept_opts_default(&o);
    assert_int_equal(o.max_deferred, 64);
    assert_int_equal(o.max_defers, 8);
    assert_int_equal(o.defer_retry_ms, 50);
    assert_int_equal(o.defer_timeout_ms, 2000);
    assert_true(o.keep_reserve_fd);
}

static void test_sockaddr_format(void **state)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    char buf[64];

    make_addr(AF_INET, "192.0.2.1", 80, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "192.0.2.1:80");
    make_addr(AF_INET, "0.0.0.0", 0, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf), "0.0.0.0:0");
    make_addr(AF_INET6, "2001:db8::1", 443, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "[2001:db8::1]:443");
    make_addr(AF_INET6, "::ffff:198.51.100.7", 40112, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "198.51.100.7:40112");
    make_addr(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    make_addr(AF_INET6, "fe80::1", 22, &ss);
    in6->sin6_scope_id = 2;
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "[fe80::1%2]:22");
    /* IPv4-compatible is not mapped: it stays IPv6. */
    make_addr(AF_INET6, "::", 1, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf), "[::]:1");
    /* Neither are IPv4-compatible, 6to4 and NAT64 callers: they are logged
     * as the IPv6 hosts they are, never as 127.0.0.2. */
    make_addr(AF_INET6, "::127.0.0.2", 5000, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "[::127.0.0.2]:5000");
    make_addr(AF_INET6, "2002:7f00:2::", 5000, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "[2002:7f00:2::]:5000");
    make_addr(AF_INET6, "64:ff9b::7f00:2", 5000, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf),
                        "[64:ff9b::7f00:2]:5000");

    assert_string_equal(cg_sockaddr_format(NULL, buf, sizeof buf), "-");
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNIX;
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, sizeof buf), "(family 1)");

    /* Too small: cut short, terminated, nothing written past buflen. */
    memset(buf, 'x', sizeof buf);
    make_addr(AF_INET, "192.0.2.1", 80, &ss);
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, 8), "192.0.2");
    assert_int_equal(buf[8], 'x');
    assert_ptr_equal(cg_sockaddr_format((struct sockaddr *)&ss, buf, 0), buf);
    assert_int_equal(buf[0], '1');
}

static void test_new_invalid(void **state)
{
    struct cb cb = cb_always(CG_ACCEPT);
    cg_accept_opts o;
    cg_acceptor *a = (cg_acceptor *)&cb;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    int fd;

    assert_true(lfd >= 0);
    assert_int_equal(cg_acceptor_new(lfd, NULL, &cb, NULL, &a), CG_EINVAL);
    assert_null(a);
    assert_int_equal(cg_acceptor_new(lfd, cond, &cb, NULL, NULL), CG_EINVAL);
    assert_int_equal(cg_acceptor_new(-1, cond, &cb, NULL, &a), CG_EINVAL);

    cg_accept_opts_default(&o);
    o.max_deferred = CG_ACCEPT_MAX_DEFERRED + 1;
    assert_int_equal(cg_acceptor_new(lfd, cond, &cb, &o, &a), CG_EINVAL);

    /* A blocking listener would block in accept: refused. */
    assert_int_equal(fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) & ~O_NONBLOCK), 0);
    assert_int_equal(cg_acceptor_new(lfd, cond, &cb, NULL, &a), CG_EINVAL);
    close(lfd);

    /* Not listening; not TCP; not a socket. */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_int_equal(cg_acceptor_new(fd, cond, &cb, NULL, &a), CG_EINVAL);
    close(fd);
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_int_equal(cg_acceptor_new(fd, cond, &cb, NULL, &a), CG_EINVAL);
    close(fd);
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_int_equal(cg_acceptor_new(fd, cond, &cb, NULL, &a), CG_EINVAL);
    close(fd);
    assert_null(a);

    /* NULL-tolerant pieces. */
    cg_acceptor_free(NULL);
    assert_int_equal(cg_acceptor_deferred(NULL), 0);
    assert_int_equal(cg_acceptor_next_due_ms(NULL), -1);
    assert_int_equal(cg_acceptor_accept(NULL, &fd, NULL), CG_EINVAL);
    assert_int_equal(fd, CG_INVALID_SOCKET);
    errno = EDOM;
    cg_socket_close_reset(CG_INVALID_SOCKET);
    assert_int_equal(errno, EDOM);
}

/* ------------------------------------------------------------------------
 * Accept and reject
 */

static void test_eagain_on_empty_backlog(void **state)
{
    struct cb cb = cb_always(CG_ACCEPT);
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    int fd = 123;

    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EAGAIN);
    assert_int_equal(fd, CG_INVALID_SOCKET);
    assert_int_equal(res.caller_len, 0);
    assert_int_equal(cg_acceptor_accept(a, &fd, NULL), CG_EAGAIN);
    assert_int_equal(cb.calls, 0);
    assert_int_equal(cg_acceptor_deferred(a), 0);
    assert_int_equal(cg_acceptor_next_due_ms(a), -1);
    cg_acceptor_free(a);
    close(lfd);
}

/* Listener on one address: the callee is learnt once, and the callback sees
 * the caller's own source address. */
static void test_accept_path(void **state)
{
    struct cb cb = cb_always(CG_ACCEPT);
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    int c = connect_from(AF_INET, "127.0.0.2", "127.0.0.1", port);
    int fd = -1;
    char buf[8];

    assert_int_equal(accept_next(a, lfd, &fd, &res), 0);
    assert_true(fd >= 0);
    assert_int_equal(cb.calls, 1);
    expect_addr(&cb.caller[0], AF_INET, "127.0.0.2", local_port(c));
    assert_int_equal(cb.caller_len[0], sizeof(struct sockaddr_in));
    expect_addr(&cb.callee[0], AF_INET, "127.0.0.1", port);
    assert_int_equal(cb.callee_len[0], sizeof(struct sockaddr_in));
    assert_int_equal(res.verdict, CG_ACCEPT);
    assert_false(res.timed_out);
    expect_addr(&res.caller, AF_INET, "127.0.0.2", local_port(c));

    /* Handed over non-blocking and close-on-exec. */
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);

    assert_int_equal(send(fd, "hi", 2, MSG_NOSIGNAL), 2);
    assert_true(poll_one(c, POLLIN, WAIT_MS) & POLLIN);
    assert_int_equal(recv(c, buf, sizeof buf, MSG_DONTWAIT), 2);
    assert_memory_equal(buf, "hi", 2);

    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EAGAIN);
    assert_int_equal(cb.calls, 1);
    cg_acceptor_free(a);
    close(c);
    close(lfd);
}

/* Wildcard listener: the callee is the address each caller dialled. */
static void test_accept_wildcard_callee(void **state)
{
    struct cb cb = cb_always(CG_ACCEPT);
    uint16_t port;
    int lfd = listen_on(AF_INET, "0.0.0.0", 0, &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    int c1 = connect_from(AF_INET, NULL, "127.0.0.3", port);
    int c2 = connect_from(AF_INET, NULL, "127.0.0.4", port);
    int fd1 = -1, fd2 = -1;

    assert_int_equal(accept_next(a, lfd, &fd1, NULL), 0);
    assert_int_equal(accept_next(a, lfd, &fd2, NULL), 0);
    assert_int_equal(cb.calls, 2);
    expect_addr(&cb.callee[0], AF_INET, "127.0.0.3", port);
    expect_addr(&cb.callee[1], AF_INET, "127.0.0.4", port);
    close(fd1);
    close(fd2);
    cg_acceptor_free(a);
    close(c1);
    close(c2);
    close(lfd);
}

static void test_reject_recv(void **state)
{
    struct cb cb = cb_always(CG_REJECT);
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    int c = connect_from(AF_INET, "127.0.0.5", "127.0.0.1", port);
    int fd = -1;

    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    assert_int_equal(fd, CG_INVALID_SOCKET);
    assert_int_equal(cb.calls, 1);
    assert_int_equal(res.verdict, CG_REJECT);
    assert_false(res.timed_out);
    expect_addr(&res.caller, AF_INET, "127.0.0.5", local_port(c));
    expect_reset(c);

    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EAGAIN);
    assert_int_equal(cb.calls, 1);
    cg_acceptor_free(a);
    close(c);
    close(lfd);
}

/* A client that already sent a request is reset all the same, and a client
 * that writes after the reset gets an error. */
static void test_reject_send(void **state)
{
    struct cb cb = cb_always(CG_REJECT);
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    int c1 = connect_from(AF_INET, NULL, "127.0.0.1", port);
    int c2 = connect_from(AF_INET, NULL, "127.0.0.1", port);
    int fd;

    assert_int_equal(send(c1, "GET / HTTP/1.0\r\n\r\n", 18, MSG_NOSIGNAL), 18);
    assert_int_equal(accept_next(a, lfd, &fd, NULL), CG_EREJECTED);
    assert_int_equal(accept_next(a, lfd, &fd, NULL), CG_EREJECTED);
    assert_int_equal(cb.calls, 2);
    expect_reset(c1);

    assert_true(poll_one(c2, POLLIN, WAIT_MS) & (POLLERR | POLLHUP | POLLIN));
    errno = 0;
    assert_int_equal(send(c2, "x", 1, MSG_NOSIGNAL), -1);
    assert_true(errno == ECONNRESET || errno == EPIPE);

    cg_acceptor_free(a);
    close(c1);
    close(c2);
    close(lfd);
}

/* A verdict outside the enum fails closed. */
static void test_unknown_verdict_rejects(void **state)
{
    struct cb cb = cb_always((cg_verdict)7);
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    int c = connect_from(AF_INET, NULL, "127.0.0.1", port);
    int fd;

    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    assert_int_equal(res.verdict, CG_REJECT);
    expect_reset(c);
    cg_acceptor_free(a);
    close(c);
    close(lfd);
}

/* ------------------------------------------------------------------------
 * Deferral
 */

static void test_defer_then_accept(void **state)
{
    static const cg_verdict script[] = {CG_DEFER, CG_ACCEPT};
    struct cb cb = cb_always(CG_REJECT);
    cg_accept_opts o;
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    int c = connect_from(AF_INET, "127.0.0.6", "127.0.0.1", port);
    int fd = -1;
    int64_t due;
    char buf[4];

    cb.script = script;
    cb.nscript = 2;
    cg_accept_opts_default(&o);
    o.defer_retry_ms = 400;
    o.defer_timeout_ms = 5000;
    cg_acceptor *a = new_acceptor(lfd, &cb, &o);

    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EDEFERRED);
    assert_int_equal(fd, CG_INVALID_SOCKET);
    assert_int_equal(res.verdict, CG_DEFER);
    expect_addr(&res.caller, AF_INET, "127.0.0.6", local_port(c));
    assert_int_equal(cb.calls, 1);
    assert_int_equal(cg_acceptor_deferred(a), 1);
    due = cg_acceptor_next_due_ms(a);
    assert_true(due > 0 && due <= 400);

    /* Not due yet, nothing new: nothing to do, and the callback is not
     * asked. The held caller is not served, but not reset either. */
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EAGAIN);
    assert_int_equal(cb.calls, 1);
    expect_quiet(c);

    wait_ms(cg_acceptor_next_due_ms(a));
    assert_int_equal(cg_acceptor_next_due_ms(a), 0);
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), 0);
    assert_true(fd >= 0);
    assert_int_equal(cb.calls, 2);
    assert_int_equal(res.verdict, CG_ACCEPT);
    assert_false(res.timed_out);
    expect_addr(&cb.caller[1], AF_INET, "127.0.0.6", local_port(c));
    expect_addr(&cb.callee[1], AF_INET, "127.0.0.1", port);
    assert_int_equal(cg_acceptor_deferred(a), 0);
    assert_int_equal(cg_acceptor_next_due_ms(a), -1);

    assert_int_equal(send(fd, "ok", 2, MSG_NOSIGNAL), 2);
    assert_true(poll_one(c, POLLIN, WAIT_MS) & POLLIN);
    assert_int_equal(recv(c, buf, sizeof buf, MSG_DONTWAIT), 2);
    close(fd);
    cg_acceptor_free(a);
    close(c);
    close(lfd);
}

/* A caller deferred max_defers times is rejected at the next defer. */
static void test_defer_max_defers(void **state)
{
    struct cb cb = cb_always(CG_DEFER);
    cg_accept_opts o;
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    int c = connect_from(AF_INET, NULL, "127.0.0.1", port);
    int fd, rc;

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
    rc = accept_next(a, lfd, &fd, &res);
    assert_int_equal(rc, CG_EREJECTED);
    assert_int_equal(res.verdict, CG_REJECT);
    assert_true(res.timed_out);
    assert_int_equal(cb.calls, 4);
    assert_int_equal(cg_acceptor_deferred(a), 0);
    assert_int_equal(cg_acceptor_next_due_ms(a), -1);
    expect_reset(c);
    cg_acceptor_free(a);
    close(c);
    close(lfd);
}

/* A caller is never held past defer_timeout_ms. */
static void test_defer_timeout(void **state)
{
    struct cb cb = cb_always(CG_DEFER);
    cg_accept_opts o;
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    int c = connect_from(AF_INET, NULL, "127.0.0.1", port);
    int fd, rc;
    int64_t t0 = mono_ms();

    cg_accept_opts_default(&o);
    o.max_defers = 1000;
    o.defer_retry_ms = 20;
    o.defer_timeout_ms = 100;
    cg_acceptor *a = new_acceptor(lfd, &cb, &o);

    while ((rc = accept_next(a, lfd, &fd, &res)) == CG_EDEFERRED)
        assert_true(mono_ms() - t0 < WAIT_MS);
    assert_int_equal(rc, CG_EREJECTED);
    assert_true(res.timed_out);
    /* Offers at 0, 20, ..., 100 ms at most; fewer if this process lagged. */
    assert_true(cb.calls >= 1 && cb.calls <= 6);
    expect_reset(c);
    cg_acceptor_free(a);
    close(c);
    close(lfd);
}

/* Called after the deadline passed: rejected without asking the callback;
 * and a retry delay longer than the timeout allows no deferral at all. */
static void test_defer_deadline_edges(void **state)
{
    struct cb cb = cb_always(CG_DEFER);
    cg_accept_opts o;
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    int c1 = connect_from(AF_INET, NULL, "127.0.0.1", port);
    int fd;

    cg_accept_opts_default(&o);
    o.defer_retry_ms = 10;
    o.defer_timeout_ms = 30;
    cg_acceptor *a = new_acceptor(lfd, &cb, &o);
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EDEFERRED);
    wait_ms(60);
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EREJECTED);
    assert_true(res.timed_out);
    assert_int_equal(cb.calls, 1);
    expect_reset(c1);
    cg_acceptor_free(a);

    o.defer_retry_ms = 100;
    o.defer_timeout_ms = 50;
    cb = cb_always(CG_DEFER);
    a = new_acceptor(lfd, &cb, &o);
    int c2 = connect_from(AF_INET, NULL, "127.0.0.1", port);
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    assert_true(res.timed_out);
    assert_int_equal(cb.calls, 1);
    expect_reset(c2);
    cg_acceptor_free(a);

    o.max_deferred = 0;
    o.defer_timeout_ms = 5000;
    cb = cb_always(CG_DEFER);
    a = new_acceptor(lfd, &cb, &o);
    int c3 = connect_from(AF_INET, NULL, "127.0.0.1", port);
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    assert_true(res.timed_out);
    expect_reset(c3);
    cg_acceptor_free(a);

    close(c1);
    close(c2);
    close(c3);
    close(lfd);
}

/* More deferred callers than max_deferred: the one with no slot is reset;
 * freeing the acceptor resets the ones it still holds. */
static void test_defer_capacity(void **state)
{
    struct cb cb = cb_always(CG_DEFER);
    cg_accept_opts o;
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    int c1 = connect_from(AF_INET, "127.0.0.2", "127.0.0.1", port);
    int c2 = connect_from(AF_INET, "127.0.0.3", "127.0.0.1", port);
    int c3 = connect_from(AF_INET, "127.0.0.4", "127.0.0.1", port);
    int fd;
    int64_t due;

    cg_accept_opts_default(&o);
    o.max_deferred = 2;
    o.defer_retry_ms = 5000;
    o.defer_timeout_ms = 10000;
    cg_acceptor *a = new_acceptor(lfd, &cb, &o);

    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EDEFERRED);
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EDEFERRED);
    assert_int_equal(cg_acceptor_deferred(a), 2);
    assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
    assert_true(res.timed_out);
    expect_addr(&res.caller, AF_INET, "127.0.0.4", local_port(c3));
    assert_int_equal(cb.calls, 3);
    assert_int_equal(cg_acceptor_deferred(a), 2);
    due = cg_acceptor_next_due_ms(a);
    assert_true(due > 0 && due <= 5000);
    expect_reset(c3);
    expect_quiet(c1);
    expect_quiet(c2);
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EAGAIN);

    cg_acceptor_free(a);
    expect_reset(c1);
    expect_reset(c2);
    close(c1);
    close(c2);
    close(c3);
    close(lfd);
}

/* A due deferred caller is offered before a new one in the backlog. */
static void test_due_before_new(void **state)
{
    static const cg_verdict script[] = {CG_DEFER, CG_ACCEPT, CG_ACCEPT};
    struct cb cb = cb_always(CG_REJECT);
    cg_accept_opts o;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    int c1 = connect_from(AF_INET, "127.0.0.2", "127.0.0.1", port);
    int fd1 = -1, fd2 = -1, fd;

    cb.script = script;
    cb.nscript = 3;
    cg_accept_opts_default(&o);
    o.defer_retry_ms = 50;
    cg_acceptor *a = new_acceptor(lfd, &cb, &o);

    assert_int_equal(accept_next(a, lfd, &fd, NULL), CG_EDEFERRED);
    int c2 = connect_from(AF_INET, "127.0.0.3", "127.0.0.1", port);
    assert_true(poll_one(lfd, POLLIN, WAIT_MS) & POLLIN);
    wait_ms(cg_acceptor_next_due_ms(a));

    assert_int_equal(cg_acceptor_accept(a, &fd1, NULL), 0);
    assert_int_equal(cg_acceptor_accept(a, &fd2, NULL), 0);
    assert_int_equal(cb.calls, 3);
    expect_addr(&cb.caller[1], AF_INET, "127.0.0.2", local_port(c1));
    expect_addr(&cb.caller[2], AF_INET, "127.0.0.3", local_port(c2));
    close(fd1);
    close(fd2);
    cg_acceptor_free(a);
    close(c1);
    close(c2);
    close(lfd);
}

/* ------------------------------------------------------------------------
 * IPv6
 */

static void test_ipv6_loopback(void **state)
{
    struct cb cb = cb_always(CG_ACCEPT);
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET6, "::1", 1, &port);
    char buf[64], want[64];
    int fd = -1;

    if (lfd < 0)
        skip();
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    int c = connect_from(AF_INET6, NULL, "::1", port);

    assert_int_equal(accept_next(a, lfd, &fd, &res), 0);
    expect_addr(&cb.caller[0], AF_INET6, "::1", local_port(c));
    expect_addr(&cb.callee[0], AF_INET6, "::1", port);
    assert_int_equal(cb.caller_len[0], sizeof(struct sockaddr_in6));
    snprintf(want, sizeof want, "[::1]:%u", (unsigned)local_port(c));
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&res.caller, buf, sizeof buf), want);
    close(fd);
    cg_acceptor_free(a);
    close(c);
    close(lfd);
}

/* [::] without IPV6_V6ONLY takes IPv4 callers as ::ffff:a.b.c.d. */
static void test_dual_stack_mapped(void **state)
{
    struct cb cb = cb_always(CG_ACCEPT);
    uint16_t port;
    int lfd = listen_on(AF_INET6, "::", 0, &port);
    char buf[64], want[64];
    int fd1 = -1, fd2 = -1;

    if (lfd < 0)
        skip();
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    int c4 = connect_from(AF_INET, "127.0.0.7", "127.0.0.1", port);

    assert_int_equal(accept_next(a, lfd, &fd1, NULL), 0);
    expect_addr(&cb.caller[0], AF_INET6, "::ffff:127.0.0.7", local_port(c4));
    assert_true(IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&cb.caller[0])->sin6_addr));
    expect_addr(&cb.callee[0], AF_INET6, "::ffff:127.0.0.1", port);
    snprintf(want, sizeof want, "127.0.0.7:%u", (unsigned)local_port(c4));
    assert_string_equal(cg_sockaddr_format((struct sockaddr *)&cb.caller[0], buf, sizeof buf),
                        want);

    int c6 = connect_from(AF_INET6, NULL, "::1", port);
    assert_int_equal(accept_next(a, lfd, &fd2, NULL), 0);
    expect_addr(&cb.caller[1], AF_INET6, "::1", local_port(c6));
    expect_addr(&cb.callee[1], AF_INET6, "::1", port);

    close(fd1);
    close(fd2);
    cg_acceptor_free(a);
    close(c4);
    close(c6);
    close(lfd);
}

/* ------------------------------------------------------------------------
 * Out of descriptors
 */

struct emfile {
    struct rlimit saved;
    bool lowered;
    int fill[64];
    int nfill;
};

static int emfile_setup(void **state)
{
    static struct emfile e;

    memset(&e, 0, sizeof e);
    if (getrlimit(RLIMIT_NOFILE, &e.saved) < 0)
        return -1;
    *state = &e;
    return 0;
}

static void release_fill(struct emfile *e)
{
    while (e->nfill > 0)
        close(e->fill[--e->nfill]);
}

static int emfile_teardown(void **state)
{
    struct emfile *e = *state;

    release_fill(e);
    if (e->lowered && setrlimit(RLIMIT_NOFILE, &e->saved) < 0)
        return -1;
    e->lowered = false;
    return 0;
}

/* Lower the descriptor limit a little above what is open, then use up every
 * descriptor left. */
static void exhaust_fds(struct emfile *e)
{
    struct rlimit rl = e->saved;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    assert_true(fd >= 0);
    close(fd);
    rl.rlim_cur = (rlim_t)fd + 4;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    e->lowered = true;
    for (;;) {
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            break;
        assert_true(e->nfill < (int)(sizeof e->fill / sizeof e->fill[0]));
        e->fill[e->nfill++] = fd;
    }
    assert_int_equal(errno, EMFILE);
}

static void test_emfile_shed(void **state)
{
    struct emfile *e = *state;
    struct cb cb = cb_always(CG_ACCEPT);
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    cg_acceptor *a = new_acceptor(lfd, &cb, NULL);
    int c1 = connect_from(AF_INET, "127.0.0.8", "127.0.0.1", port);
    int c2 = connect_from(AF_INET, "127.0.0.9", "127.0.0.1", port);
    int fd = -1;

    assert_true(poll_one(lfd, POLLIN, WAIT_MS) & POLLIN);
    exhaust_fds(e);

    /* Each call sheds one pending caller with a reset, and the reserve is
     * taken back for the next time. */
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EMFILE);
    assert_int_equal(fd, CG_INVALID_SOCKET);
    assert_int_equal(res.verdict, CG_REJECT);
    expect_addr(&res.caller, AF_INET, "127.0.0.8", local_port(c1));
    expect_reset(c1);
    assert_true(poll_one(lfd, POLLIN, WAIT_MS) & POLLIN);
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EMFILE);
    expect_addr(&res.caller, AF_INET, "127.0.0.9", local_port(c2));
    expect_reset(c2);
    assert_int_equal(cb.calls, 0);

    /* Nobody waiting, still no descriptors. */
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EMFILE);
    assert_int_equal(res.caller_len, 0);

    /* Descriptors free again: back to normal, under the same low limit. */
    release_fill(e);
    int c3 = connect_from(AF_INET, "127.0.0.10", "127.0.0.1", port);
    assert_int_equal(accept_next(a, lfd, &fd, &res), 0);
    assert_true(fd >= 0);
    assert_int_equal(cb.calls, 1);
    expect_addr(&cb.caller[0], AF_INET, "127.0.0.10", local_port(c3));
    close(fd);
    cg_acceptor_free(a);
    close(c1);
    close(c2);
    close(c3);
    close(lfd);
}

/* Without a reserve the caller stays in the backlog, untouched. */
static void test_emfile_no_reserve(void **state)
{
    struct emfile *e = *state;
    struct cb cb = cb_always(CG_ACCEPT);
    cg_accept_opts o;
    cg_accept_result res;
    uint16_t port;
    int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port);
    int c = connect_from(AF_INET, "127.0.0.11", "127.0.0.1", port);
    int fd = -1;

    cg_accept_opts_default(&o);
    o.keep_reserve_fd = false;
    cg_acceptor *a = new_acceptor(lfd, &cb, &o);
    assert_true(poll_one(lfd, POLLIN, WAIT_MS) & POLLIN);
    exhaust_fds(e);

    assert_int_equal(cg_acceptor_accept(a, &fd, &res), CG_EMFILE);
    assert_int_equal(res.caller_len, 0);
    assert_int_equal(cb.calls, 0);
    expect_quiet(c);

    release_fill(e);
    assert_int_equal(cg_acceptor_accept(a, &fd, &res), 0);
    expect_addr(&cb.caller[0], AF_INET, "127.0.0.11", local_port(c));
    close(fd);
    cg_acceptor_free(a);
    close(c);
    close(lfd);
}

/* ------------------------------------------------------------------------
 * IPv6 spellings of IPv4 through a real dual-stack listener
 */

#if defined(__linux__)
/* The kernel's struct in6_ifreq (linux/ipv6.h clashes with netinet/in.h). */
struct in6_ifreq_ {
    struct in6_addr addr;
    uint32_t prefixlen;
    int ifindex;
};

/* Enter a new network namespace with its loopback up and the callers'
 * addresses on it. Needs CAP_SYS_ADMIN; 0 or -1. The host's own network is
 * never touched. */
static int private_netns(const char *const *addrs, size_t n)
{
    struct ifreq ifr;
    int rc = -1;

    if (unshare(CLONE_NEWNET) != 0)
        return -1;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int fd6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || fd6 < 0)
        goto close_fds;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0)
        goto close_fds;
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
        goto close_fds;
    for (size_t i = 0; i < n; i++) {
        struct in6_ifreq_ r;
        memset(&r, 0, sizeof r);
        if (inet_pton(AF_INET6, addrs[i], &r.addr) != 1)
            goto close_fds;
        r.prefixlen = 128;
        r.ifindex = (int)if_nametoindex("lo");
        if (ioctl(fd6, SIOCSIFADDR, &r) != 0)
            goto close_fds;
    }
    /* A new address is tentative until the kernel's address work has run
     * (duplicate address detection, instant on a loopback): wait until each
     * one can be bound. */
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        socklen_t len = make_addr(AF_INET6, addrs[i], 0, &ss);
        int64_t deadline = mono_ms() + WAIT_MS;
        for (;;) {
            int p = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
            int b = p >= 0 ? bind(p, (struct sockaddr *)&ss, len) : -1;
            int e = errno;
            if (p >= 0)
                close(p);
            if (b == 0)
                break;
            if (e != EADDRNOTAVAIL || mono_ms() > deadline)
                goto close_fds;
            poll(NULL, 0, 10); /* polling interval while the address settles */
        }
    }
    rc = 0;
close_fds:
    if (fd >= 0)
        close(fd);
    if (fd6 >= 0)
        close(fd6);
    return rc;
}

/* The gate's condition callback in small: the rule set decides. */
struct judge {
    const cg_ruleset *rs;
    int calls;
    struct sockaddr_storage caller[4];
};

static cg_verdict judge_cond(const struct sockaddr *caller, socklen_t caller_len,
                             const struct sockaddr *callee, socklen_t callee_len, void *arg)
{
    struct judge *j = arg;

    (void)callee;
    (void)callee_len;
    if (j->calls < 4)
        memcpy(&j->caller[j->calls], caller, (size_t)caller_len);
    j->calls++;
    return cg_ruleset_judge(j->rs, caller, NULL) == CG_ALLOW ? CG_ACCEPT : CG_REJECT;
}

/* The child's part: rules "allow 127.0.0.0/8, default deny" on [::]. The
 * IPv4 caller 127.0.0.2 arrives as ::ffff:127.0.0.2 and is admitted; the
 * callers ::127.0.0.2 (IPv4-compatible) and 2002:7f00:2::1 (6to4 for
 * 127.0.0.2) arrive as those IPv6 addresses and are reset. */
static void v4_spellings_in_netns(void)
{
    static const char *const addrs[] = {"::127.0.0.2", "2002:7f00:2::1"};
    cg_ruleset *rs = NULL;
    char err[128];
    cg_source src = {"test", 1};
    uint16_t port;
    int fd = -1;

    if (private_netns(addrs, 2) != 0)
        _exit(77);
    assert_int_equal(cg_ruleset_new("t", CG_DENY, &rs), 0);
    assert_int_equal(
        cg_ruleset_add_text(rs, "127.0.0.0/8", 11, CG_ALLOW, &src, NULL, err, sizeof err), 0);
    assert_int_equal(cg_ruleset_freeze(rs), 0);
    struct judge j = {rs, 0, {{0}}};
    int lfd = listen_on(AF_INET6, "::", 0, &port);
    assert_true(lfd >= 0);
    cg_acceptor *a = NULL;
    assert_int_equal(cg_acceptor_new(lfd, judge_cond, &j, NULL, &a), 0);

    int c4 = connect_from(AF_INET, "127.0.0.2", "127.0.0.1", port);
    assert_int_equal(accept_next(a, lfd, &fd, NULL), 0);
    expect_addr(&j.caller[0], AF_INET6, "::ffff:127.0.0.2", local_port(c4));
    close(fd);

    for (size_t i = 0; i < 2; i++) {
        int c6 = connect_from(AF_INET6, addrs[i], "::1", port);
        cg_accept_result res;
        assert_int_equal(accept_next(a, lfd, &fd, &res), CG_EREJECTED);
        expect_addr(&j.caller[1 + i], AF_INET6, addrs[i], local_port(c6));
        assert_false(IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&j.caller[1 + i])->sin6_addr));
        expect_reset(c6);
        close(c6);
    }
    assert_int_equal(j.calls, 3);
    cg_acceptor_free(a);
    close(c4);
    close(lfd);
    cg_ruleset_free(rs);
}
#endif

/* Runs v4_spellings_in_netns in a child (the namespace is the child's
 * alone); skipped where namespaces are not allowed (not root). Last in the
 * list: a failed assertion in the child ends the child's run there. */
static void test_v4_spellings_dual_stack(void **state)
{
    (void)state;
#if defined(__linux__)
    int status = 0;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        v4_spellings_in_netns();
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        skip();
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
#else
    skip();
#endif
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
        cmocka_unit_test(test_reject_recv),
        cmocka_unit_test(test_reject_send),
        cmocka_unit_test(test_unknown_verdict_rejects),
        cmocka_unit_test(test_defer_then_accept),
        cmocka_unit_test(test_defer_max_defers),
        cmocka_unit_test(test_defer_timeout),
        cmocka_unit_test(test_defer_deadline_edges),
        cmocka_unit_test(test_defer_capacity),
        cmocka_unit_test(test_due_before_new),
        cmocka_unit_test(test_ipv6_loopback),
        cmocka_unit_test(test_dual_stack_mapped),
        cmocka_unit_test_setup_teardown(test_emfile_shed, emfile_setup, emfile_teardown),
        cmocka_unit_test_setup_teardown(test_emfile_no_reserve, emfile_setup, emfile_teardown),
        cmocka_unit_test(test_v4_spellings_dual_stack),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
