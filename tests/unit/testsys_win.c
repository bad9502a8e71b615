/* testsys_win.c — Windows side of testsys.h (Winsock, WSAPoll, the CRT's
 * descriptor calls). */
#include "testsys.h"

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <windows.h>

void ts_init(void)
{
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        abort();
}

uint64_t ts_now_us(void)
{
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (uint64_t)((double)c.QuadPart * 1e6 / (double)f.QuadPart);
}

uint64_t ts_now_ms(void)
{
    return ts_now_us() / 1000u;
}

void ts_sleep_ms(int ms)
{
    Sleep(ms > 0 ? (DWORD)ms : 0);
}

cg_socket_t ts_socket(int family, int type)
{
    return WSASocketW(family, type, 0, NULL, 0, WSA_FLAG_OVERLAPPED | 0x80 /* no inherit */);
}

void ts_close(cg_socket_t s)
{
    if (s != INVALID_SOCKET)
        closesocket(s);
}

/* The last Winsock error as the errno value a POSIX test expects. */
int ts_errno(void)
{
    int e = WSAGetLastError();
    switch (e) {
    case WSAEWOULDBLOCK:
        return EAGAIN;
    case WSAEINPROGRESS:
        return EINPROGRESS;
    case WSAEINTR:
        return EINTR;
    case WSAECONNRESET:
        return ECONNRESET;
    case WSAECONNABORTED:
        return ECONNABORTED;
    case WSAECONNREFUSED:
        return ECONNREFUSED;
    case WSAETIMEDOUT:
        return ETIMEDOUT;
    case WSAESHUTDOWN:
        return EPIPE;
    case WSAENOTCONN:
        return ENOTCONN;
    case WSAEINVAL:
        return EINVAL;
    default:
        return e;
    }
}

void ts_set_nonblock(cg_socket_t s, bool on)
{
    u_long nb = on ? 1 : 0;
    ioctlsocket(s, FIONBIO, &nb);
}

long ts_send(cg_socket_t s, const void *buf, size_t n)
{
    return (long)send(s, (const char *)buf, n > INT_MAX ? INT_MAX : (int)n, 0);
}

long ts_recv(cg_socket_t s, void *buf, size_t n)
{
    return (long)recv(s, (char *)buf, n > INT_MAX ? INT_MAX : (int)n, 0);
}

int ts_poll(struct pollfd *p, unsigned n, int timeout_ms)
{
    return WSAPoll(p, (ULONG)n, timeout_ms);
}

void ts_capture_begin(ts_capture *c)
{
    fflush(stderr);
    c->f = tmpfile();
    c->saved = c->f ? _dup(2) : -1;
    if (c->saved >= 0) {
        _setmode(_fileno(c->f), _O_BINARY);
        _dup2(_fileno(c->f), 2);
    }
}

char *ts_capture_end(ts_capture *c)
{
    char *text;
    long n;
    size_t got;

    if (!c->f || c->saved < 0)
        return NULL;
    _dup2(c->saved, 2);
    _close(c->saved);
    fseek(c->f, 0, SEEK_END);
    n = ftell(c->f);
    text = calloc(1, n > 0 ? (size_t)n + 1 : 1);
    if (text) {
        rewind(c->f);
        got = n > 0 ? fread(text, 1, (size_t)n, c->f) : 0;
        text[got] = '\0';
    }
    fclose(c->f);
    return text;
}

int ts_mkdtemp(char *buf, size_t len, const char *stem)
{
    char base[MAX_PATH + 1];
    DWORD n = GetTempPathA(sizeof base, base);

    if (n == 0 || n > MAX_PATH)
        return -1;
    for (char *p = base; *p; p++)
        if (*p == '\\')
            *p = '/';
    if (n > 0 && base[n - 1] == '/')
        base[n - 1] = '\0';
    for (unsigned i = 0; i < 100; i++) {
        unsigned r =
            (unsigned)GetCurrentProcessId() * 2654435761u ^ (unsigned)GetTickCount() ^ i * 40503u;
        int w = snprintf(buf, len, "%s/%s-%06x", base, stem, r & 0xffffffu);
        if (w < 0 || (size_t)w >= len)
            return -1;
        if (CreateDirectoryA(buf, NULL))
            return 0;
        if (GetLastError() != ERROR_ALREADY_EXISTS)
            return -1;
    }
    return -1;
}

int ts_mkdir(const char *path)
{
    return CreateDirectoryA(path, NULL) ? 0 : -1;
}

int ts_rmtree(const char *path)
{
    char pattern[MAX_PATH + 4], sub[MAX_PATH * 2];
    WIN32_FIND_DATAA fd;
    HANDLE h;
    DWORD attr = GetFileAttributesA(path);
    int rc = 0;

    if (attr == INVALID_FILE_ATTRIBUTES)
        return -1;
    if (!(attr & FILE_ATTRIBUTE_DIRECTORY))
        return DeleteFileA(path) ? 0 : -1;
    snprintf(pattern, sizeof pattern, "%s/*", path);
    h = FindFirstFileA(pattern, &fd);
    if (h != INVALID_HANDLE_VALUE) {
        do {
            if (strcmp(fd.cFileName, ".") == 0 || strcmp(fd.cFileName, "..") == 0)
                continue;
            snprintf(sub, sizeof sub, "%s/%s", path, fd.cFileName);
            if (ts_rmtree(sub) != 0)
                rc = -1;
        } while (FindNextFileA(h, &fd));
        FindClose(h);
    }
    return RemoveDirectoryA(path) ? rc : -1;
}
