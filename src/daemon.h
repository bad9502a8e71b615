/* daemon.h — the running process: start and stop order of the gate, its
 * workers, reloads, signals and the admin port.
 */
#ifndef CG_DAEMON_H
#define CG_DAEMON_H

#include "condgate/config.h"

/* cg__daemon_run: run condgate on an already loaded configuration `cfg`
 * (ownership passes, also on failure) read from `path`, until SIGTERM/SIGINT
 * (or a takeover by a new condgate) and the drain that follows. Listening
 * sockets passed by systemd are used; with `takeover` (a unix socket path,
 * or NULL) they are first taken over from the condgate serving there, which
 * drains once this one serves. Returns the process exit status: 0 after a
 * clean stop, 1 on a runtime failure (a bind failed, the takeover failed,
 * out of memory at start). Main thread. */
int cg__daemon_run(const char *path, cg_config *cfg, const char *takeover);

#endif /* CG_DAEMON_H */
