/* inherit.c — the table of passed listening sockets (inherit.h). */
#include "inherit.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

typedef struct passed {
    char *name;
    int fd; /* -1 once taken */
    cg__inherit_from from;
} passed;

static passed table[CG_INHERIT_MAX];
static size_t ntable;

const char *cg__inherit_from_name(cg__inherit_from from)
{
    return from == CG__FROM_SYSTEMD ? "systemd" : "takeover";
}

int cg__inherit_add(const char *name, cg_socket_t fd, cg__inherit_from from)
{
    if (ntable == CG_INHERIT_MAX) {
        close(fd);
        return CG_ERANGE;
    }
    char *copy = strdup(name);
    if (copy == NULL) {
        close(fd);
        return CG_ENOMEM;
    }
    table[ntable++] = (passed){.name = copy, .fd = fd, .from = from};
    return 0;
}

/* Whether fd's local address is bind's, family, address and port. */
static bool same_address(int fd, const cg_endpoint *bind)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        ss.ss_family != bind->addr.ss_family)
        return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&ss, *b = (const void *)&bind->addr;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *a = (const void *)&ss, *b = (const void *)&bind->addr;
    if (a->sin6_port != b->sin6_port || memcmp(&a->sin6_addr, &b->sin6_addr, 16) != 0)
        return false;
    /* [::] is dual-stack for us: a v6-only socket there would miss every
     * IPv4 caller the configuration means to judge. */
    int v6only = 0;
    socklen_t olen = sizeof(v6only);
    if (IN6_IS_ADDR_UNSPECIFIED(&b->sin6_addr) &&
        (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &olen) != 0 || v6only))
        return false;
    return true;
}

/* Whether fd is a TCP socket in LISTEN. */
static bool is_listening_tcp(int fd)
{
    int type = 0, acc = 0;
    socklen_t len = sizeof(type), alen = sizeof(acc);
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM &&
           getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) == 0 && acc == 1;
}

/* Make a taken socket like one cg__sys_listen makes. systemd passes its
 * sockets blocking; a takeover's socket may carry the old process's drop
 * filter, which judges by the old rules: the new prefilter attaches its
 * own when it needs one. */
static void adopt(int fd)
{
    int one = 1;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &one, sizeof(one));
}

static int take(passed *p, cg_socket_t *fd, cg__inherit_from *from)
{
    adopt(p->fd);
    *fd = p->fd;
    *from = p->from;
    p->fd = -1;
    return 1;
}

int cg__inherit_take(const char *name, const cg_endpoint *bind, cg_socket_t *fd,
                     cg__inherit_from *from, char *why, size_t whylen)
{
    for (size_t i = 0; i < ntable; i++) {
        passed *p = &table[i];
        if (p->fd < 0 || strcmp(p->name, name) != 0)
            continue;
        if (is_listening_tcp(p->fd) && same_address(p->fd, bind))
            return take(p, fd, from);
        if (p->from == CG__FROM_SYSTEMD) {
            snprintf(why, whylen,
                     "the socket systemd passed as '%s' is not a TCP socket listening on %s "
                     "(for [::] it must be dual-stack: BindIPv6Only=both)",
                     name, bind->text);
            return CG_EINVAL;
        }
    }
    for (size_t i = 0; i < ntable; i++) {
        passed *p = &table[i];
        if (p->fd >= 0 && is_listening_tcp(p->fd) && same_address(p->fd, bind))
            return take(p, fd, from);
    }
    return 0;
}

void cg__inherit_close_rest(void)
{
    for (size_t i = 0; i < ntable; i++) {
        passed *p = &table[i];
        if (p->fd >= 0) {
            cg__log_event(p->from == CG__FROM_SYSTEMD ? CG_LOG_WARN : CG_LOG_INFO,
                          "socket_unused", "name", p->name, "from", cg__inherit_from_name(p->from),
                          "message", "no listener of this configuration takes it: closed", NULL);
            close(p->fd);
        }
        free(p->name);
    }
    ntable = 0;
}
