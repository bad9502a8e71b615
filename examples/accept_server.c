/* accept_server.c — a minimal server on condgate's conditional accept.
 *
 * The POSIX counterpart of Winsock's "Accepting a Connection" sample, with
 * WSAAccept's condition callback: a small rule set built in code decides who
 * may connect. Admitted callers get one line and are closed; refused callers
 * get a TCP reset and nothing else.
 *
 *   accept_server [PORT]      (default 27015)
 *   nc 127.0.0.1 27015        -> "hello from condgate"
 *   nc -s 127.0.0.66 127.0.0.1 27015   -> connection reset
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "condgate/accept.h"
#include "condgate/rules.h"

#define DEFAULT_PORT 27015
#define PAUSE_MS 100 /* how long to stop accepting when out of descriptors */

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* Allow the loopback network except one address, and IPv6 loopback. */
static int build_rules(cg_ruleset **out)
{
    static const struct {
        const char *cidr;
        cg_action action;
    } entries[] = {
        {"127.0.0.0/8", CG_ALLOW},
        {"127.0.0.66", CG_DENY},
        {"::1", CG_ALLOW},
    };
    cg_source src = {"accept_server.c", 0};
    cg_ruleset *rs = NULL;
    char err[128];
    int rc;

    rc = cg_ruleset_new("example", CG_DENY, &rs);
    if (rc < 0)
        goto fail;
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
        rc = cg_ruleset_add_text(rs, entries[i].cidr, strlen(entries[i].cidr), entries[i].action,
                                 &src, NULL, err, sizeof err);
        if (rc < 0) {
            fprintf(stderr, "rule %s: %s\n", entries[i].cidr, err);
            goto fail;
        }
    }
    rc = cg_ruleset_freeze(rs);
    if (rc < 0)
        goto fail;
    *out = rs;
    return 0;

fail:
    cg_ruleset_free(rs);
    return rc;
}

/* The condition callback: ask the rule set, say what it decided. */
static cg_verdict condition(const struct sockaddr *caller, socklen_t caller_len,
                            const struct sockaddr *callee, socklen_t callee_len, void *arg)
{
    const cg_ruleset *rs = arg;
    cg_rule_id id;
    cg_rule_info info;
    cg_action act = cg_ruleset_judge(rs, caller, &id);
    cg_verdict v = act == CG_ALLOW ? CG_ACCEPT : CG_REJECT;
    char from[64], to[64], why[CG_CIDR_STRLEN] = "default";

    if (id != CG_RULE_NONE && cg_ruleset_rule(rs, id, &info) == 0)
        cg_cidr_format(&info.cidr, why, sizeof why);
    printf("%s -> %s: %s (%s)\n", cg_sockaddr_format(caller, from, sizeof from),
           cg_sockaddr_format(callee, to, sizeof to), cg_verdict_name(v), why);
    fflush(stdout);
    return v;
}

/* A listener on [::]:port taking IPv4 too, or on 0.0.0.0:port where IPv6 is
 * missing. Non-blocking, as cg_acceptor_new requires. */
static int open_listener(unsigned port)
{
    struct sockaddr_in6 in6;
    struct sockaddr_in in;
    int one = 1, off = 0;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);

    if (fd >= 0) {
        memset(&in6, 0, sizeof in6);
        in6.sin6_family = AF_INET6;
        in6.sin6_addr = in6addr_any;
        in6.sin6_port = htons((uint16_t)port);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
        if (bind(fd, (struct sockaddr *)&in6, sizeof in6) < 0)
            goto bad;
    } else {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        memset(&in, 0, sizeof in);
        in.sin_family = AF_INET;
        in.sin_addr.s_addr = htonl(INADDR_ANY);
        in.sin_port = htons((uint16_t)port);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&in, sizeof in) < 0)
            goto bad;
    }
    if (listen(fd, SOMAXCONN) < 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        goto bad;
    return fd;

bad:
    perror("listen");
    close(fd);
    return -1;
}

/* Greet an admitted caller and close. What it has sent so far is read first:
 * closing a socket with unread data sends a reset, which could destroy the
 * greeting before the caller reads it. */
static void serve(int fd)
{
    static const char hello[] = "hello from condgate\n";
    char sink[512];

    if (send(fd, hello, sizeof hello - 1, MSG_NOSIGNAL) < 0)
        perror("send");
    while (recv(fd, sink, sizeof sink, 0) > 0)
        ;
    shutdown(fd, SHUT_WR);
    close(fd);
}

int main(int argc, char **argv)
{
    unsigned long port = DEFAULT_PORT;
    cg_ruleset *rs = NULL;
    cg_acceptor *acc = NULL;
    struct sigaction sa;
    int lfd = -1, status = 1, rc;

    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: %s [PORT]\n", argv[0]);
        return 2;
    }
    if (argc == 2) {
        char *end;
        errno = 0;
        port = strtoul(argv[1], &end, 10);
        if (errno || *end || end == argv[1] || port == 0 || port > 65535) {
            fprintf(stderr, "bad port: %s\n", argv[1]);
            return 2;
        }
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns on a signal */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rc = build_rules(&rs);
    if (rc < 0) {
        fprintf(stderr, "rules: %s\n", cg_strerror(rc));
        goto out;
    }
    lfd = open_listener((unsigned)port);
    if (lfd < 0)
        goto out;
    rc = cg_acceptor_new(lfd, condition, rs, NULL, &acc);
    if (rc < 0) {
        fprintf(stderr, "acceptor: %s\n", cg_strerror(rc));
        goto out;
    }
    printf("listening on port %lu\n", port);
    fflush(stdout);

    while (!stop) {
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        int64_t due = cg_acceptor_next_due_ms(acc);
        int timeout = due < 0 ? -1 : due > INT_MAX ? INT_MAX : (int)due;
        int drained = 0;
        cg_accept_result res;
        cg_socket_t fd;

        if (poll(&p, 1, timeout) < 0 && errno != EINTR) {
            perror("poll");
            goto out;
        }
        /* Drain: one caller per call, until nothing is left. */
        while (!stop && !drained) {
            rc = cg_acceptor_accept(acc, &fd, &res);
            switch (rc) {
            case 0:
                serve(fd);
                break;
            case CG_EREJECTED:
            case CG_EDEFERRED:
            case CG_ECONNABORTED:
                break;
            case CG_EAGAIN:
                drained = 1;
                break;
            case CG_EMFILE:
                /* Polling the listener now would spin: wait a little. */
                fprintf(stderr, "out of descriptors, pausing\n");
                poll(NULL, 0, PAUSE_MS);
                drained = 1;
                break;
            default:
                fprintf(stderr, "accept: %s\n", cg_strerror(rc));
                goto out;
            }
        }
    }
    status = 0;

out:
    cg_acceptor_free(acc);
    if (lfd >= 0)
        close(lfd);
    cg_ruleset_free(rs);
    return status;
}
