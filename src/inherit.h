/* inherit.h — listening sockets this process did not open itself: passed
 * by systemd (socket activation: LISTEN_FDS, LISTEN_FDNAMES) or handed over
 * by the condgate this one takes over from (condgate -x, takeover.h).
 *
 * Each socket has a name: a listener's name, or "admin" for the admin port.
 * Opening a listener asks here first; the sockets nobody took are closed
 * once the start is over. Main (control) thread only: the table is the
 * process's, as the environment it comes from is.
 */
#ifndef CG_INHERIT_H
#define CG_INHERIT_H

#include <stdbool.h>
#include <stddef.h>

#include "condgate/accept.h"
#include "condgate/config.h"

#define CG_INHERIT_MAX 253 /* sockets held at once (one SCM_RIGHTS message) */
#define CG_INHERIT_ADMIN "admin"

/* Where a socket came from. */
typedef enum cg__inherit_from {
    CG__FROM_SYSTEMD = 1,
    CG__FROM_TAKEOVER = 2,
} cg__inherit_from;

/* cg__inherit_add: hold listening socket fd under name (ownership passes,
 * also on failure). Returns 0, CG_ERANGE when CG_INHERIT_MAX are held or
 * CG_ENOMEM. */
int cg__inherit_add(const char *name, cg_socket_t fd, cg__inherit_from from);

/* cg__inherit_take: the socket passed for `name`, to listen on `bind`.
 * A socket matches by name, or, when none has the name, by address (systemd
 * names sockets after their unit unless FileDescriptorName= says
 * otherwise). Returns 1 and *fd (the caller's from now on: non-blocking,
 * close-on-exec, TCP_NODELAY) and *from; 0 when none was passed for it; or
 * CG_EINVAL with the reason in why when systemd passed a socket of that name
 * that is not a TCP socket listening on bind (a socket handed over by a
 * takeover whose address differs is simply not taken: the new bind is made
 * afresh). */
int cg__inherit_take(const char *name, const cg_endpoint *bind, cg_socket_t *fd,
                     cg__inherit_from *from, char *why, size_t whylen);

/* cg__inherit_close_rest: close every socket no listener took, with a log
 * line each (a warning for systemd's, which the unit should not pass). */
void cg__inherit_close_rest(void);

/* cg__inherit_from_name: "systemd" or "takeover". */
const char *cg__inherit_from_name(cg__inherit_from from);

#endif /* CG_INHERIT_H */
