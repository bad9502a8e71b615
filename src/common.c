/* common.c — the library's error strings and version. */
#include "condgate/common.h"

const char *cg_strerror(int err)
{
    switch (err) {
    case CG_OK:
        return "success";
    case CG_EINVAL:
        return "invalid input";
    case CG_ENOMEM:
        return "out of memory";
    case CG_ERANGE:
        return "limit exceeded";
    case CG_EIO:
        return "input/output error";
    case CG_ENOENT:
        return "not found";
    case CG_EEXIST:
        return "already exists";
    case CG_EAGAIN:
        return "try again";
    case CG_EMFILE:
        return "out of file descriptors";
    case CG_ECONNABORTED:
        return "connection aborted";
    case CG_EADDRINUSE:
        return "address in use";
    case CG_EACCES:
        return "permission denied";
    case CG_ENOTSUP:
        return "not supported";
    case CG_ESYS:
        return "system error";
    case CG_EREJECTED:
        return "connection rejected";
    case CG_EDEFERRED:
        return "connection deferred";
    default:
        return "unknown error";
    }
}

const char *cg_version(void)
{
    return CG_VERSION_STRING;
}
