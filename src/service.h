/* service.h — condgate as a system service: what it tells its supervisor
 * through systemd's notify protocol (READY, RELOADING, STOPPING, STATUS,
 * WATCHDOG) and the sockets a socket unit passes it (LISTEN_FDS).
 *
 * Built with libsystemd (CG_HAVE_SYSTEMD, `condgate -V` lists "systemd");
 * without it the notifications do nothing and passed sockets are refused.
 * Outside systemd (no NOTIFY_SOCKET, no LISTEN_FDS) every call does
 * nothing. Main (control) thread.
 */
#ifndef CG_SERVICE_H
#define CG_SERVICE_H

#include <stddef.h>
#include <stdint.h>

/* cg__service_sockets: hold the sockets systemd passed to this process in
 * the inherit table (inherit.h) under their LISTEN_FDNAMES names, and unset
 * LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES. Returns 0 (also when none were
 * passed), or a negative CG_E* code with the reason in why (CG_ENOTSUP:
 * passed, but condgate was built without libsystemd). */
int cg__service_sockets(char *why, size_t whylen);

/* cg__service_ready: READY=1 with STATUS=status: every listener and the
 * admin port are up, or a reload is over. */
void cg__service_ready(const char *status);

/* cg__service_reloading: RELOADING=1 with MONOTONIC_USEC=now, as
 * systemd.service(5) asks of a reload; cg__service_ready ends it. */
void cg__service_reloading(void);

/* cg__service_stopping: STOPPING=1 with STATUS=status: the drain began. */
void cg__service_stopping(const char *status);

/* cg__service_tick_ms: how often to call cg__service_tick: half the
 * unit's WatchdogSec when it sets one, at most CG_SERVICE_STATUS_MS; 0 when
 * no supervisor listens (no NOTIFY_SOCKET). */
#define CG_SERVICE_STATUS_MS 5000
uint64_t cg__service_tick_ms(void);

/* cg__service_tick: STATUS=status, with WATCHDOG=1 when the unit asks for
 * a watchdog: the control loop is alive. */
void cg__service_tick(const char *status);

#endif /* CG_SERVICE_H */
