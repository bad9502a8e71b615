/* unix/sys.c — POSIX side of sys.h: SIGPIPE, listening sockets, the
 * descriptor limit, and the relay's fast paths. */
#include "sys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "condgate/common.h"

/* Descriptor limit asked for when the hard limit is unlimited or huge. */
#define FD_LIMIT_CAP (1u << 20)

/* cg__sys_init: see sys.h. Main thread. */
int cg__sys_init(void)
{
    return signal(SIGPIPE, SIG_IGN) == SIG_ERR ? CG_ESYS : 0;
}

/* cg__sys_cleanup: nothing to undo on POSIX. */
void cg__sys_cleanup(void) {}

/* cg__sys_thread_init: see sys.h. Blocking SIGPIPE here as well keeps a
 * write to a reset peer harmless whatever an embedding program did with the
 * signal's disposition. */
void cg__sys_thread_init(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static int from_errno(int e)
{
    switch (e) {
    case EADDRINUSE:
        return CG_EADDRINUSE;
    case EACCES:
    case EPERM:
        return CG_EACCES;
    case EMFILE:
    case ENFILE:
        return CG_EMFILE;
    case ENOMEM:
    case ENOBUFS:
        return CG_ENOMEM;
    case EAFNOSUPPORT:
        return CG_ENOTSUP;
    default:
        return CG_ESYS;
    }
}

/* cg__sys_listen: see sys.h. Any thread. */
int cg__sys_listen(const struct sockaddr *sa, socklen_t salen, bool conditional, cg_socket_t *out,
                   char *why, size_t whylen)
{
    (void)conditional; /* Linux: the kernel prefilter judges instead */
    int one = 1, e;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (sa->sa_family == AF_INET6) {
        /* [::] is dual-stack: IPv4 callers arrive as mapped addresses and
         * are judged by their IPv4 rules. A specific v6 address stays v6. */
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        int v6only = IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) ? 0 : 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    }
    /* Accepted sockets inherit it on Linux (cg__sys_nodelay_inherited):
     * one setsockopt here instead of one per connection. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, sa, salen) != 0 || listen(fd, SOMAXCONN) != 0)
        goto close_fd;
    *out = fd;
    return 0;

close_fd:
    e = errno;
    close(fd);
    errno = e;
fail:
    e = errno;
    snprintf(why, whylen, "%s", strerror(e));
    return from_errno(e);
}

/* cg__sys_close_socket: see sys.h. */
void cg__sys_close_socket(cg_socket_t fd)
{
    if (fd >= 0)
        close(fd);
}

/* cg__sys_stop_listening: see sys.h. On Linux, shutdown(2) of a listening
 * socket takes it out of LISTEN: callers are refused from then on, queued
 * ones reset, and accept(2) answers EINVAL. */
void cg__sys_stop_listening(cg_socket_t fd)
{
    if (fd >= 0)
        (void)shutdown(fd, SHUT_RDWR);
}

/* cg__sys_raise_fd_limit: the soft RLIMIT_NOFILE raised to the hard one
 * (capped at FD_LIMIT_CAP); returns the limit in force. Main thread. */
uint64_t cg__sys_raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        if (want == RLIM_INFINITY || want > FD_LIMIT_CAP)
            want = FD_LIMIT_CAP;
        if (want > rl.rlim_cur) {
            rl.rlim_cur = want;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    return rl.rlim_cur == RLIM_INFINITY ? FD_LIMIT_CAP : (uint64_t)rl.rlim_cur;
}

/* cg__sys_fd_usage: see sys.h. Counts the entries of /proc/self/fd, less
 * the one the listing itself holds open. */
bool cg__sys_fd_usage(uint64_t *open, uint64_t *limit)
{
    struct rlimit rl;
    DIR *dir;
    struct dirent *e;
    uint64_t n = 0;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || (dir = opendir("/proc/self/fd")) == NULL)
        return false;
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    *open = n > 0 ? n - 1 : 0;
    *limit = rl.rlim_cur == RLIM_INFINITY ? FD_LIMIT_CAP : (uint64_t)rl.rlim_cur;
    return true;
}

/* cg__sys_nodelay_inherited: see sys.h. Linux copies TCP_NODELAY from the
 * listener to the sockets accepted from it; elsewhere the relay sets it. */
bool cg__sys_nodelay_inherited(void)
{
#if defined(__linux__)
    return true;
#else
    return false;
#endif
}

/* Blocks from this size on get a mapping of their own (glibc's starting
 * threshold, kept fixed). */
#define MMAP_THRESHOLD (128 * 1024)

/* cg__sys_memory_setup: see sys.h. */
void cg__sys_memory_setup(void)
{
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
#endif
}

/* cg__sys_release_memory: see sys.h. */
void cg__sys_release_memory(void)
{
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

/* cg__sys_recv: see sys.h. */
int cg__sys_recv(cg_socket_t fd, void *buf, size_t len, bool peek)
{
    ssize_t n;
    do
        n = recv(fd, buf, len, peek ? MSG_PEEK : 0);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return (int)n;
    return errno == EAGAIN || errno == EWOULDBLOCK ? CG_EAGAIN : CG_ESYS;
}

/* cg__sys_shutdown_send: see sys.h. */
int cg__sys_shutdown_send(cg_socket_t fd)
{
    return shutdown(fd, SHUT_WR) == 0 ? 0 : CG_ESYS;
}
