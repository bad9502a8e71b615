/* condgate/common.h — version, the one error space, and small shared types.
 *
 * Every action-named function in the library returns 0 or a negative CG_E*
 * code. Platform codes (errno, WSA*) are translated at the platform edge so
 * callers never see them.
 */
#ifndef CONDGATE_COMMON_H
#define CONDGATE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define CG_VERSION_MAJOR 0
#define CG_VERSION_MINOR 1
#define CG_VERSION_PATCH 0
#define CG_VERSION_STRING "0.1.0"

/* Error codes. Values are stable and platform independent. */
enum cg_error {
    CG_OK = 0,
    CG_EINVAL = -1,       /* malformed input (a message says where) */
    CG_ENOMEM = -2,       /* allocation failed */
    CG_ERANGE = -3,       /* a bounded limit was exceeded */
    CG_EIO = -4,          /* a file could not be read */
    CG_ENOENT = -5,       /* no such file, rule set or listener */
    CG_EEXIST = -6,       /* duplicate name */
    CG_EAGAIN = -7,       /* nothing to do now; try again later */
    CG_EMFILE = -8,       /* out of descriptors (process or system) */
    CG_ECONNABORTED = -9, /* the caller went away before it was accepted */
    CG_EADDRINUSE = -10,  /* bind: address in use */
    CG_EACCES = -11,      /* permission denied */
    CG_ENOTSUP = -12,     /* not supported on this platform */
    CG_ESYS = -13,        /* another operating-system error */
    CG_EREJECTED = -14,   /* conditional accept: the caller was rejected */
    CG_EDEFERRED = -15,   /* conditional accept: the caller was deferred */
};

/* Room for one error line ("FILE:LINE: message", no newline) with its NUL:
 * every buffer that receives an error from the library, the loader or the
 * gate is this size, so an error is never cut shorter in one place (a
 * reload's answer) than in another (the start-up message). */
#define CG_ERR_MAX 4608

/* cg_strerror: a short English description of a CG_E* code (never NULL,
 * static storage). Any thread. */
const char *cg_strerror(int err);

/* cg_version: "X.Y.Z" of the linked library. Any thread. */
const char *cg_version(void);

#endif /* CONDGATE_COMMON_H */
