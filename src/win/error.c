/* win/error.c — Winsock and Win32 errors translated into CG_E* codes, and
 * their text for people. */
#include "error.h"

#include <stdio.h>
#include <string.h>

#include <winsock2.h>
#include <windows.h>

#include "condgate/common.h"

/* cg__translate_wsa: see error.h. */
int cg__translate_wsa(int err)
{
    switch (err) {
    case 0:
        return 0;
    case WSAEWOULDBLOCK:
    case WSAEINPROGRESS:
    case WSAEALREADY:
    case WSATRY_AGAIN:
        return CG_EAGAIN;
    case WSAEINVAL:
    case WSAENOTSOCK:
    case WSAEBADF:
    case WSAEFAULT:
    case WSAEOPNOTSUPP:
    case WSANOTINITIALISED:
    case ERROR_INVALID_PARAMETER:
    case ERROR_INVALID_HANDLE:
        return CG_EINVAL;
    case WSAEMFILE:
    case WSAENOBUFS:
    case ERROR_TOO_MANY_OPEN_FILES:
        return CG_EMFILE;
    case WSA_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
        return CG_ENOMEM;
    case WSAECONNABORTED:
    case WSAECONNRESET:
    case WSAENETDOWN:
    case WSAENETRESET:
    case WSAENETUNREACH:
    case WSAEHOSTUNREACH:
    case WSAETIMEDOUT:
        return CG_ECONNABORTED;
    case WSAECONNREFUSED:
        return CG_EREJECTED;
    case WSAEADDRINUSE:
        return CG_EADDRINUSE;
    case WSAEACCES:
    case ERROR_ACCESS_DENIED:
        return CG_EACCES;
    case WSAEAFNOSUPPORT:
    case WSAEPROTONOSUPPORT:
    case WSAENOPROTOOPT:
    case WSAESOCKTNOSUPPORT:
        return CG_ENOTSUP;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
        return CG_ENOENT;
    default:
        return CG_ESYS;
    }
}

/* cg__wsa_text: see error.h. */
char *cg__wsa_text(int err, char *buf, size_t buflen)
{
    char msg[256] = "";
    DWORD n =
        FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, (DWORD)err,
                       MAKELANGID(LANG_ENGLISH, SUBLANG_DEFAULT), msg, (DWORD)sizeof(msg), NULL);
    /* FormatMessage ends its text with ".\r\n"; keep just the sentence. */
    while (n > 0 &&
           (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == ' ' || msg[n - 1] == '.'))
        msg[--n] = '\0';
    if (n == 0)
        snprintf(buf, buflen, "Windows error %d", err);
    else
        snprintf(buf, buflen, "%s (%d)", msg, err);
    return buf;
}
