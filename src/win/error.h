/* win/error.h — Winsock and Win32 error codes in the library's error space
 * (the platform edge of STYLE.md's "one error space"). */
#ifndef CG_WIN_ERROR_H
#define CG_WIN_ERROR_H

#include <stddef.h>

/* cg__translate_wsa: the CG_E* code for a WSAGetLastError() or
 * GetLastError() value; CG_ESYS for anything without a closer match. Any
 * thread. */
int cg__translate_wsa(int err);

/* cg__wsa_text: the system's English text for err ("... (10048)") into buf,
 * with no trailing newline. Returns buf. Any thread. */
char *cg__wsa_text(int err, char *buf, size_t buflen);

#endif /* CG_WIN_ERROR_H */
