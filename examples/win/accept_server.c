/* win/accept_server.c — a minimal Winsock server on condgate's conditional
 * accept, in the shape of Microsoft's "Accepting a Connection" sample: the
 * same rule set and behaviour as ../accept_server.c (its POSIX twin), with
 * WSAAccept's condition callback underneath. The listener asks for
 * SO_CONDITIONAL_ACCEPT, so a refused caller never completes its handshake
 * (where that option is missing, as under Wine, it gets a reset instead).
 *
 *   accept_server.exe [PORT]      (default 27015; Ctrl+C stops it)
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include "condgate/accept.h"
#include "condgate/rules.h"

#define DEFAULT_PORT 27015
#define PAUSE_MS 100 /* how long to stop accepting when out of resources */
#define POLL_MS 500  /* longest wait, so Ctrl+C is noticed */

static volatile LONG stop;

static BOOL WINAPI on_ctrl(DWORD type)
{
    (void)type;
    InterlockedExchange(&stop, 1);
    return TRUE;
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

    (void)caller_len;
    (void)callee_len;
    if (id != CG_RULE_NONE && cg_ruleset_rule(rs, id, &info) == 0)
        cg_cidr_format(&info.cidr, why, sizeof why);
    printf("%s -> %s: %s (%s)\n", cg_sockaddr_format(caller, from, sizeof from),
           cg_sockaddr_format(callee, to, sizeof to), cg_verdict_name(v), why);
    fflush(stdout);
    return v;
}

/* A dual-stack listener on [::]:port, or 0.0.0.0:port without IPv6, with
 * conditional accept asked for before listen. Non-blocking. */
static SOCKET open_listener(unsigned port)
{
    struct sockaddr_in6 in6;
    struct sockaddr_in in;
    BOOL on = TRUE;
    DWORD off = 0;
    u_long nb = 1;
    SOCKET s = socket(AF_INET6, SOCK_STREAM, IPPROTO_TCP);

    if (s != INVALID_SOCKET) {
        memset(&in6, 0, sizeof in6);
        in6.sin6_family = AF_INET6;
        in6.sin6_addr = in6addr_any;
        in6.sin6_port = htons((u_short)port);
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&off, sizeof off);
        if (bind(s, (struct sockaddr *)&in6, sizeof in6) != 0)
            goto bad;
    } else {
        s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
        if (s == INVALID_SOCKET)
            goto bad;
        memset(&in, 0, sizeof in);
        in.sin_family = AF_INET;
        in.sin_addr.s_addr = htonl(INADDR_ANY);
        in.sin_port = htons((u_short)port);
        if (bind(s, (struct sockaddr *)&in, sizeof in) != 0)
            goto bad;
    }
    if (setsockopt(s, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, (const char *)&on, sizeof on) != 0)
        fprintf(stderr, "SO_CONDITIONAL_ACCEPT not supported (%d): rejects become resets\n",
                WSAGetLastError());
    if (listen(s, SOMAXCONN) != 0 || ioctlsocket(s, FIONBIO, &nb) != 0)
        goto bad;
    return s;

bad:
    fprintf(stderr, "listen: error %d\n", WSAGetLastError());
    if (s != INVALID_SOCKET)
        closesocket(s);
    return INVALID_SOCKET;
}

/* Greet an admitted caller and close. What it has sent so far is read
 * first: closing with unread data sends a reset, which could destroy the
 * greeting before the caller reads it. */
static void serve(SOCKET s)
{
    static const char hello[] = "hello from condgate\n";
    char sink[512];

    if (send(s, hello, (int)(sizeof hello - 1), 0) == SOCKET_ERROR)
        fprintf(stderr, "send: error %d\n", WSAGetLastError());
    while (recv(s, sink, (int)sizeof sink, 0) > 0)
        ;
    shutdown(s, SD_SEND);
    closesocket(s);
}

int main(int argc, char **argv)
{
    unsigned long port = DEFAULT_PORT;
    cg_ruleset *rs = NULL;
    cg_acceptor *acc = NULL;
    SOCKET lfd = INVALID_SOCKET;
    WSADATA wsa;
    int status = 1, rc;

    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: %s [PORT]\n", argv[0]);
        return 2;
    }
    if (argc == 2) {
        char *end;
        port = strtoul(argv[1], &end, 10);
        if (*end || end == argv[1] || port == 0 || port > 65535) {
            fprintf(stderr, "bad port: %s\n", argv[1]);
            return 2;
        }
    }
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        fprintf(stderr, "WSAStartup failed\n");
        return 1;
    }
    SetConsoleCtrlHandler(on_ctrl, TRUE);

    rc = build_rules(&rs);
    if (rc < 0) {
        fprintf(stderr, "rules: %s\n", cg_strerror(rc));
        goto out;
    }
    lfd = open_listener((unsigned)port);
    if (lfd == INVALID_SOCKET)
        goto out;
    rc = cg_acceptor_new(lfd, condition, rs, NULL, &acc);
    if (rc < 0) {
        fprintf(stderr, "acceptor: %s\n", cg_strerror(rc));
        goto out;
    }
    printf("listening on port %lu\n", port);
    fflush(stdout);

    while (!stop) {
        WSAPOLLFD p = {.fd = lfd, .events = POLLRDNORM};
        int64_t due = cg_acceptor_next_due_ms(acc);
        int timeout = due < 0 || due > POLL_MS ? POLL_MS : (int)due;
        int drained = 0;
        cg_accept_result res;
        cg_socket_t fd;

        if (WSAPoll(&p, 1, timeout) == SOCKET_ERROR) {
            fprintf(stderr, "WSAPoll: error %d\n", WSAGetLastError());
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
                fprintf(stderr, "out of resources, pausing\n");
                Sleep(PAUSE_MS);
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
    if (lfd != INVALID_SOCKET)
        closesocket(lfd);
    cg_ruleset_free(rs);
    WSACleanup();
    return status;
}
