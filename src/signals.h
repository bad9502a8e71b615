/* signals.h — the gate's process signals delivered to its control loop.
 *
 * SIGHUP (reload), SIGTERM and SIGINT (drain and stop) and SIGUSR1 (log the
 * counters) arrive as ordinary callbacks on the control thread's loop. On
 * Linux they are blocked in every thread and read from a signalfd, so no
 * asynchronous handler ever runs and no thread but the control thread can
 * take them; elsewhere libuv's signal watchers do the job.
 */
#ifndef CG_SIGNALS_H
#define CG_SIGNALS_H

#include <uv.h>

typedef struct cg__signals cg__signals;

/* Called on the loop's thread for each signal taken. */
typedef void (*cg__signal_cb)(int signum, void *arg);

/* cg__signals_start: start taking the gate's signals on `loop`. Call it on
 * the control thread before starting any other thread, so that threads
 * started later inherit the blocked mask. Returns 0 and *out, or a negative
 * CG_E* code. */
int cg__signals_start(uv_loop_t *loop, cg__signal_cb cb, void *arg, cg__signals **out);

/* cg__signals_stop: stop taking signals and close the handles; the memory
 * is freed by the loop once the handles are closed. Accepts NULL. */
void cg__signals_stop(cg__signals *s);

#endif /* CG_SIGNALS_H */
