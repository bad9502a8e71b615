/* win/sys.c — Windows side of sys.h: Winsock start-up, listening sockets
 * that ask for conditional accept, socket close. */
#include "sys.h"

#include <stdbool.h>
#include <stdio.h>

#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include "condgate/common.h"
#include "error.h"
#include "log.h"

/* Windows has no per-process descriptor limit for sockets; this figure
 * only sizes max_connections' sanity check. */
#define SOCKET_LIMIT (1u << 20)

#if !defined(WSA_FLAG_NO_HANDLE_INHERIT)
#define WSA_FLAG_NO_HANDLE_INHERIT 0x80
#endif

/* cg__sys_init: see sys.h. Main thread. */
int cg__sys_init(void)
{
    WSADATA wsa;
    return WSAStartup(MAKEWORD(2, 2), &wsa) == 0 ? 0 : CG_ESYS;
}

/* cg__sys_cleanup: see sys.h. Main thread. */
void cg__sys_cleanup(void)
{
    WSACleanup();
}

/* cg__sys_thread_init: Windows has no SIGPIPE; nothing to do. */
void cg__sys_thread_init(void) {}

/* Ask for the condition callback to run before the handshake completes.
 * Wine (and some layered providers) answer WSAENOPROTOOPT: then the
 * handshake completes first and the accept layer resets rejected callers
 * right after WSAAccept, as on POSIX. Said once per process. */
static void want_conditional(SOCKET s)
{
    static bool told;
    BOOL on = TRUE;

    if (setsockopt(s, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, (const char *)&on, sizeof(on)) == 0)
        return;
    if (!told) {
        char why[160];
        int err = WSAGetLastError();
        told = true;
        if (err == WSAENOPROTOOPT)
            snprintf(why, sizeof(why), "WSAENOPROTOOPT (%d)", err);
        else
            cg__wsa_text(err, why, sizeof(why));
        cg__log_event(CG_LOG_WARN, "conditional_accept", "error", why, "message",
                      "SO_CONDITIONAL_ACCEPT not supported: callers complete the handshake "
                      "before they are judged; rejected ones get a reset right after",
                      NULL);
    }
}

/* cg__sys_listen: see sys.h. SO_EXCLUSIVEADDRUSE keeps another process from
 * binding the same port (Windows' SO_REUSEADDR would allow that). Any
 * thread. */
int cg__sys_listen(const struct sockaddr *sa, socklen_t salen, bool conditional, cg_socket_t *out,
                   char *why, size_t whylen)
{
    BOOL on = TRUE;
    u_long nb = 1;
    int err;
    SOCKET s = WSASocketW(sa->sa_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);

    if (s == INVALID_SOCKET)
        goto fail;
    setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&on, sizeof(on));
    if (sa->sa_family == AF_INET6) {
        /* [::] is dual-stack, as on POSIX; a specific v6 address stays v6. */
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        DWORD v6only = IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) ? 0 : 1;
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&v6only, sizeof(v6only));
    }
    if (bind(s, sa, salen) != 0)
        goto close_socket;
    if (conditional)
        want_conditional(s); /* before listen, or it has no effect */
    if (listen(s, SOMAXCONN) != 0 || ioctlsocket(s, FIONBIO, &nb) != 0)
        goto close_socket;
    *out = s;
    return 0;

close_socket:
    err = WSAGetLastError();
    closesocket(s);
    WSASetLastError(err);
fail:
    err = WSAGetLastError();
    cg__wsa_text(err, why, whylen);
    return cg__translate_wsa(err);
}

/* cg__sys_close_socket: see sys.h. */
void cg__sys_close_socket(cg_socket_t fd)
{
    if (fd != CG_INVALID_SOCKET)
        closesocket(fd);
}

/* cg__sys_stop_listening: see sys.h. */
void cg__sys_stop_listening(cg_socket_t fd)
{
    if (fd != CG_INVALID_SOCKET)
        (void)shutdown(fd, SD_BOTH);
}

/* cg__sys_raise_fd_limit: nothing to raise on Windows; see SOCKET_LIMIT. */
uint64_t cg__sys_raise_fd_limit(void)
{
    return SOCKET_LIMIT;
}

/* cg__sys_fd_usage: sockets have no per-process limit here to compare with. */
bool cg__sys_fd_usage(uint64_t *open, uint64_t *limit)
{
    (void)open;
    (void)limit;
    return false;
}

/* cg__sys_nodelay_inherited: the relay sets TCP_NODELAY itself. */
bool cg__sys_nodelay_inherited(void)
{
    return false;
}

/* cg__sys_memory_setup: the Windows heap gives blocks past 512 KiB their
 * own allocation already. */
void cg__sys_memory_setup(void) {}

/* cg__sys_release_memory: nothing to trim (see cg__sys_memory_setup). */
void cg__sys_release_memory(void) {}

/* Relay fast paths: none on Windows; libuv's shutdown serves (see sys.h). */
/* cg__sys_recv: see sys.h. */
int cg__sys_recv(cg_socket_t fd, void *buf, size_t len, bool peek)
{
    int n = recv(fd, (char *)buf, (int)(len > 65536 ? 65536 : len), peek ? MSG_PEEK : 0);
    if (n >= 0)
        return n;
    return WSAGetLastError() == WSAEWOULDBLOCK ? CG_EAGAIN : CG_ESYS;
}

int cg__sys_shutdown_send(cg_socket_t fd)
{
    (void)fd;
    return CG_ENOTSUP;
}
