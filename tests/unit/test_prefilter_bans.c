/* test_prefilter_bans.c — runtime bans in the kernel prefilter (prefilter.h,
 * src/bpf/prefilter.bpf.c) over loopback: a banned caller of a refuse
 * listener gets ECONNREFUSED, of a drop listener no answer, of an off one
 * nothing changes; counters, lifting, prefixes, IPv6, a full ban map; and
 * the drop mode's socket filter on a listener only while it is drop.
 *
 * Linux with the prefilter built only; needs the right to load BPF (root,
 * or CAP_BPF with CAP_NET_ADMIN and CAP_PERFMON): every test is skipped, with the reason,
 * where the programs cannot be loaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "condgate/common.h"
#include "condgate/rules.h"
#include "prefilter.h"

/* How long a connect that should be answered may take, and how long one
 * whose SYN is dropped is watched (it stays in progress). */
#define ANSWER_MS 3000
#define DROP_WATCH_MS 300

/* Why the programs could not be loaded, set by the first attempt. */
static char skip_why[256];

/* A listening socket and its address. */
typedef struct lsock {
    int fd;
    struct sockaddr_storage addr;
    socklen_t len;
} lsock;

/* One test's world: the prefilter, an IPv4 listener (slot 0) on
 * 127.0.0.1 and an IPv6 one (slot 1) on [::1]. */
typedef struct world {
    cg__prefilter *p;
    lsock v4, v6;
} world;

static void sockaddr_of(const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
        *len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
        *len = sizeof(*s4);
    }
}

/* A listener on ip, port chosen by the kernel. */
static void listen_on(const char *ip, lsock *l)
{
    sockaddr_of(ip, 0, &l->addr, &l->len);
    l->fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l->fd >= 0);
    if (l->addr.ss_family == AF_INET6) {
        int one = 1;
        assert_int_equal(setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)), 0);
    }
    assert_int_equal(bind(l->fd, (struct sockaddr *)&l->addr, l->len), 0);
    assert_int_equal(listen(l->fd, 64), 0);
    assert_int_equal(fcntl(l->fd, F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(getsockname(l->fd, (struct sockaddr *)&l->addr, &l->len), 0);
}

/* Put a table in force where slots 0 and 1 have `mode` and admit every
 * address: the headers, then one interval at address 0 with value 0 per
 * family, shared by both slots. */
static void set_mode(world *w, uint32_t mode)
{
    struct cg_pf_elem *e = calloc(CG_PF_MAX_SLOTS + 2, sizeof(*e));
    assert_non_null(e);
    for (uint32_t s = 0; s < 2; s++) {
        e[s].value = mode;
        e[s].u.hdr.v4_first = CG_PF_MAX_SLOTS;
        e[s].u.hdr.v4_count = 1;
        e[s].u.hdr.v6_first = CG_PF_MAX_SLOTS + 1;
        e[s].u.hdr.v6_count = 1;
    }
    cg__pf_table t = {.elems = e, .n = CG_PF_MAX_SLOTS + 2};
    cg__pf_staged *st = NULL;
    char why[256] = "";
    int rc = cg__prefilter_stage(w->p, &t, &st, why, sizeof(why));
    if (rc != 0)
        fail_msg("stage: %s", why);
    assert_int_equal(cg__prefilter_commit(w->p, st), 0);
    free(e);
}

/* The prefilter with max_bans, both listeners added; or a skip. */
static int open_world(world *w, size_t max_bans)
{
    char why[256] = "";
    memset(w, 0, sizeof(*w));
    w->v4.fd = w->v6.fd = -1;
    if (skip_why[0] != '\0')
        return -1;
    if (cg__prefilter_open(&w->p, max_bans, why, sizeof(why)) != 0) {
        snprintf(skip_why, sizeof(skip_why), "%s", why);
        return -1;
    }
    listen_on("127.0.0.1", &w->v4);
    listen_on("::1", &w->v6);
    int rc = cg__prefilter_add_listener(w->p, 0, w->v4.fd, (struct sockaddr *)&w->v4.addr,
                                        w->v4.len, why, sizeof(why));
    if (rc == 0)
        rc = cg__prefilter_add_listener(w->p, 1, w->v6.fd, (struct sockaddr *)&w->v6.addr,
                                        w->v6.len, why, sizeof(why));
    if (rc != 0)
        fail_msg("add_listener: %s", why);
    return 0;
}

#define OPEN_OR_SKIP(w, max)                                                                       \
    do {                                                                                           \
        if (open_world((w), (max)) != 0) {                                                         \
            print_message("skipped: the kernel prefilter cannot be loaded here: %s\n", skip_why);  \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void close_world(world *w)
{
    cg__prefilter_close(w->p);
    if (w->v4.fd >= 0)
        close(w->v4.fd);
    if (w->v6.fd >= 0)
        close(w->v6.fd);
}

/* Accept and close whatever is queued on l, so that backlogs stay empty. */
static void drain(const lsock *l)
{
    for (;;) {
        int c = accept(l->fd, NULL, NULL);
        if (c < 0)
            return;
        close(c);
    }
}

/* Connect from address src (port chosen by the kernel) to listener l, non-
 * blocking, watching at most ms: 0 connected, the socket's error
 * (ECONNREFUSED...), or EINPROGRESS while still unanswered. */
static int connect_from(const char *src, lsock *l, int ms)
{
    struct sockaddr_storage from;
    socklen_t flen;
    sockaddr_of(src, 0, &from, &flen);
    int s = socket(from.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    assert_int_equal(bind(s, (struct sockaddr *)&from, flen), 0);
    int rc = connect(s, (struct sockaddr *)&l->addr, l->len);
    int err = rc == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
        struct pollfd pfd = {.fd = s, .events = POLLOUT};
        if (poll(&pfd, 1, ms) == 1) {
            socklen_t elen = sizeof(err);
            assert_int_equal(getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &elen), 0);
        }
    }
    close(s);
    drain(l);
    return err;
}

static cg_cidr cidr(const char *text)
{
    cg_cidr c;
    char err[128];
    assert_int_equal(cg_cidr_parse(text, strlen(text), &c, err, sizeof(err)), 0);
    return c;
}

static int ban(world *w, const char *text, bool add)
{
    cg_cidr c = cidr(text);
    return cg__prefilter_ban(w->p, &c, add);
}

static uint64_t ban_count(world *w, uint32_t slot)
{
    uint64_t n[CG_PF_NREASONS];
    assert_int_equal(cg__prefilter_counts(w->p, slot, n), 0);
    for (int r = 0; r < CG_PF_NREASONS; r++)
        if (r != CG_PF_REASON_BAN)
            assert_int_equal(n[r], 0); /* the table admits everyone */
    return n[CG_PF_REASON_BAN];
}

/* Whether an eBPF socket filter is attached to fd: SO_GET_FILTER cannot
 * dump one and says EACCES; with none it answers 0. */
static bool has_filter(int fd)
{
    char buf[8];
    socklen_t len = 0;
    if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, buf, &len) == 0)
        return false;
    assert_int_equal(errno, EACCES);
    return true;
}

/* ------------------------------------------------------------------------
 * Tests
 */

static void refuse_mode_bans_and_lifts(void **state)
{
    (void)state;
    world w;
    OPEN_OR_SKIP(&w, 16);
    set_mode(&w, CG_PF_MODE_REFUSE);
    assert_int_equal(connect_from("127.0.0.2", &w.v4, ANSWER_MS), 0);

    assert_int_equal(ban(&w, "127.0.0.2/32", true), 0);
    assert_int_equal(connect_from("127.0.0.2", &w.v4, ANSWER_MS), ECONNREFUSED);
    assert_int_equal(connect_from("127.0.0.3", &w.v4, ANSWER_MS), 0);
    assert_int_equal(ban_count(&w, 0), 1);
    assert_int_equal(ban_count(&w, 1), 0);

    assert_int_equal(ban(&w, "127.0.0.2/32", false), 0);
    assert_int_equal(connect_from("127.0.0.2", &w.v4, ANSWER_MS), 0);
    /* lifting what is not there is no error */
    assert_int_equal(ban(&w, "127.0.0.2/32", false), 0);

    assert_int_equal(ban(&w, "127.0.0.0/24", true), 0);
    assert_int_equal(connect_from("127.0.0.2", &w.v4, ANSWER_MS), ECONNREFUSED);
    assert_int_equal(connect_from("127.0.0.3", &w.v4, ANSWER_MS), ECONNREFUSED);
    assert_int_equal(connect_from("127.0.1.1", &w.v4, ANSWER_MS), 0);
    assert_int_equal(ban_count(&w, 0), 3);
    close_world(&w);
}

static void ipv6_bans(void **state)
{
    (void)state;
    world w;
    OPEN_OR_SKIP(&w, 16);
    set_mode(&w, CG_PF_MODE_REFUSE);
    assert_int_equal(connect_from("::1", &w.v6, ANSWER_MS), 0);
    assert_int_equal(ban(&w, "::1/128", true), 0);
    assert_int_equal(connect_from("::1", &w.v6, ANSWER_MS), ECONNREFUSED);
    assert_int_equal(connect_from("127.0.0.2", &w.v4, ANSWER_MS), 0);
    assert_int_equal(ban_count(&w, 1), 1);
    assert_int_equal(ban(&w, "::1/128", false), 0);

    /* An IPv6 ban that holds the IPv4-mapped range bans IPv6 callers
     * only: IPv4 callers are judged as IPv4, in the kernel as in the
     * process. */
    assert_int_equal(ban(&w, "::/0", true), 0);
    assert_int_equal(connect_from("::1", &w.v6, ANSWER_MS), ECONNREFUSED);
    assert_int_equal(connect_from("127.0.0.2", &w.v4, ANSWER_MS), 0);
    /* ...while an IPv4 ban under it still counts for IPv4 callers */
    assert_int_equal(ban(&w, "127.0.0.2/32", true), 0);
    assert_int_equal(connect_from("127.0.0.2", &w.v4, ANSWER_MS), ECONNREFUSED);
    assert_int_equal(connect_from("127.0.0.3", &w.v4, ANSWER_MS), 0);
    close_world(&w);
}

static void off_mode_ignores_bans(void **state)
{
    (void)state;
    world w;
    OPEN_OR_SKIP(&w, 16);
    set_mode(&w, CG_PF_MODE_OFF);
    assert_int_equal(ban(&w, "127.0.0.0/8", true), 0);
    assert_int_equal(ban(&w, "::1/128", true), 0);
    assert_int_equal(connect_from("127.0.0.2", &w.v4, ANSWER_MS), 0);
    assert_int_equal(connect_from("::1", &w.v6, ANSWER_MS), 0);
    assert_int_equal(ban_count(&w, 0), 0);
    assert_int_equal(ban_count(&w, 1), 0);
    close_world(&w);
}

static void drop_mode_drops_banned_syns(void **state)
{
    (void)state;
    world w;
    OPEN_OR_SKIP(&w, 16);
    set_mode(&w, CG_PF_MODE_DROP);
    assert_int_equal(ban(&w, "127.0.0.2/32", true), 0);
    assert_int_equal(connect_from("127.0.0.2", &w.v4, DROP_WATCH_MS), EINPROGRESS);
    assert_int_equal(connect_from("127.0.0.3", &w.v4, ANSWER_MS), 0);
    assert_true(ban_count(&w, 0) >= 1); /* one per SYN seen */
    assert_int_equal(ban(&w, "::1/128", true), 0);
    assert_int_equal(connect_from("::1", &w.v6, DROP_WATCH_MS), EINPROGRESS);
    assert_true(ban_count(&w, 1) >= 1);
    close_world(&w);
}

static void full_ban_map(void **state)
{
    (void)state;
    world w;
    OPEN_OR_SKIP(&w, 2);
    set_mode(&w, CG_PF_MODE_REFUSE);
    assert_int_equal(ban(&w, "127.0.0.2/32", true), 0);
    assert_int_equal(ban(&w, "2001:db8::/32", true), 0);
    assert_int_equal(ban(&w, "127.0.0.3/32", true), CG_ERANGE);
    assert_int_equal(connect_from("127.0.0.3", &w.v4, ANSWER_MS), 0);
    /* a prefix already there is no new entry, full or not */
    assert_int_equal(ban(&w, "127.0.0.2/32", true), 0);
    assert_int_equal(ban(&w, "127.0.0.2/32", false), 0);
    assert_int_equal(ban(&w, "127.0.0.3/32", true), 0);
    assert_int_equal(connect_from("127.0.0.3", &w.v4, ANSWER_MS), ECONNREFUSED);
    assert_int_equal(connect_from("127.0.0.2", &w.v4, ANSWER_MS), 0);
    /* a prefix inside a banned one is a new entry all the same: full */
    assert_int_equal(ban(&w, "127.0.0.3/32", false), 0);
    assert_int_equal(ban(&w, "127.0.0.0/24", true), 0);
    assert_int_equal(ban(&w, "127.0.0.3/32", true), CG_ERANGE);
    assert_int_equal(ban(&w, "2001:db8:1::/48", true), CG_ERANGE);
    assert_int_equal(ban(&w, "2001:db8::/32", true), 0);
    /* a size of 0 still opens (one entry) */
    close_world(&w);
    OPEN_OR_SKIP(&w, 0);
    assert_int_equal(ban(&w, "127.0.0.2/32", true), 0);
    assert_int_equal(ban(&w, "127.0.0.3/32", true), CG_ERANGE);
    close_world(&w);
}

/* The drop mode's socket filter sits on a listener only while its mode in
 * force is drop: elsewhere accepted sockets would inherit it for nothing. */
static void filter_only_while_drop(void **state)
{
    (void)state;
    world w;
    OPEN_OR_SKIP(&w, 16);
    assert_false(has_filter(w.v4.fd)); /* added, no table yet */
    set_mode(&w, CG_PF_MODE_REFUSE);
    assert_false(has_filter(w.v4.fd));
    assert_false(has_filter(w.v6.fd));
    set_mode(&w, CG_PF_MODE_DROP);
    assert_true(has_filter(w.v4.fd));
    assert_true(has_filter(w.v6.fd));
    set_mode(&w, CG_PF_MODE_DROP); /* again: stays, no double attach */
    assert_true(has_filter(w.v4.fd));
    set_mode(&w, CG_PF_MODE_OFF);
    assert_false(has_filter(w.v4.fd));
    assert_false(has_filter(w.v6.fd));
    set_mode(&w, CG_PF_MODE_DROP);
    set_mode(&w, CG_PF_MODE_REFUSE);
    assert_false(has_filter(w.v4.fd));
    /* and a socket accepted from a refuse listener has none */
    struct sockaddr_storage from;
    socklen_t flen;
    sockaddr_of("127.0.0.2", 0, &from, &flen);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    assert_int_equal(bind(c, (struct sockaddr *)&from, flen), 0);
    assert_int_equal(connect(c, (struct sockaddr *)&w.v4.addr, w.v4.len), 0);
    struct pollfd pfd = {.fd = w.v4.fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, ANSWER_MS), 1);
    int a = accept(w.v4.fd, NULL, NULL);
    assert_true(a >= 0);
    assert_false(has_filter(a));
    close(a);
    close(c);
    close_world(&w);
}

static void bad_prefix(void **state)
{
    (void)state;
    world w;
    OPEN_OR_SKIP(&w, 4);
    cg_cidr c;
    memset(&c, 0, sizeof(c));
    c.family = 5;
    assert_int_equal(cg__prefilter_ban(w.p, &c, true), CG_EINVAL);
    c.family = 4;
    c.len = 33;
    assert_int_equal(cg__prefilter_ban(w.p, &c, true), CG_EINVAL);
    close_world(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refuse_mode_bans_and_lifts),
        cmocka_unit_test(ipv6_bans),
        cmocka_unit_test(off_mode_ignores_bans),
        cmocka_unit_test(drop_mode_drops_banned_syns),
        cmocka_unit_test(full_ban_map),
        cmocka_unit_test(filter_only_while_drop),
        cmocka_unit_test(bad_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
