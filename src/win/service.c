/* service.c — Windows: no systemd, no socket activation, no takeover
 * (service.h, inherit.h, takeover.h). A Windows service would be driven by
 * the Service Control Manager instead; condgate runs as a console program.
 */
#include "inherit.h"
#include "service.h"
#include "takeover.h"

#include <stdio.h>

#include "sys.h"

int cg__service_sockets(char *why, size_t whylen)
{
    (void)why;
    (void)whylen;
    return 0;
}

void cg__service_ready(const char *status)
{
    (void)status;
}

void cg__service_reloading(void)
{
}

void cg__service_stopping(const char *status)
{
    (void)status;
}

uint64_t cg__service_tick_ms(void)
{
    return 0;
}

void cg__service_tick(const char *status)
{
    (void)status;
}

int cg__inherit_add(const char *name, cg_socket_t fd, cg__inherit_from from)
{
    (void)name;
    (void)from;
    cg__sys_close_socket(fd);
    return CG_ENOTSUP;
}

int cg__inherit_take(const char *name, const cg_endpoint *bind, cg_socket_t *fd,
                     cg__inherit_from *from, char *why, size_t whylen)
{
    (void)name;
    (void)bind;
    (void)fd;
    (void)from;
    (void)why;
    (void)whylen;
    return 0;
}

void cg__inherit_close_rest(void)
{
}

const char *cg__inherit_from_name(cg__inherit_from from)
{
    return from == CG__FROM_SYSTEMD ? "systemd" : "takeover";
}

int cg__takeover_serve(uv_loop_t *loop, const char *path, bool replacing,
                       const cg__takeover_hooks *hooks, cg__takeover **out, char *err,
                       size_t errlen)
{
    (void)loop;
    (void)replacing;
    (void)hooks;
    *out = NULL;
    snprintf(err, errlen, "takeover_socket %s: takeovers are not supported on Windows", path);
    return CG_ENOTSUP;
}

void cg__takeover_close(cg__takeover *t)
{
    (void)t;
}

void cg__takeover_free(cg__takeover *t)
{
    (void)t;
}

int cg__takeover_fetch(const char *path, cg_socket_t *conn, char *err, size_t errlen)
{
    *conn = CG_INVALID_SOCKET;
    snprintf(err, errlen, "takeover from %s: takeovers are not supported on Windows", path);
    return CG_ENOTSUP;
}

int cg__takeover_finish(cg_socket_t conn, char *err, size_t errlen)
{
    (void)conn;
    (void)err;
    (void)errlen;
    return CG_ENOTSUP;
}

void cg__takeover_abort(cg_socket_t conn)
{
    (void)conn;
}
