/* signals.h — the gate's process signals delivered to its control loop.
 *
 * What the operator asks for arrives as an ordinary callback on the control
 * thread's loop, named by what it means rather than by signal number, since
 * the platforms differ:
 *
 *   POSIX    SIGHUP reload, SIGTERM/SIGINT stop, SIGUSR1 stats
 *            (unix/signals.c: on Linux blocked in every thread and read from
 *            a signalfd, so no asynchronous handler ever runs; elsewhere
 *            libuv's signal watchers)
 *   Windows  Ctrl+C and Ctrl+Break stop (win/signals.c); there is no reload
 *            or stats signal: POST /reload and GET /stats do those jobs.
 */
#ifndef CG_SIGNALS_H
#define CG_SIGNALS_H

#include <uv.h>

typedef struct cg__signals cg__signals;

/* What a signal asks the gate to do. */
typedef enum cg__sigevent {
    CG__SIG_RELOAD, /* re-read the configuration */
    CG__SIG_STOP,   /* stop accepting, drain, exit */
    CG__SIG_STATS,  /* log the counters */
} cg__sigevent;

/* Called on the loop's thread for each signal taken; name is the signal's
 * name for logs ("SIGTERM", "CTRL_BREAK"), static storage. */
typedef void (*cg__signal_cb)(cg__sigevent ev, const char *name, void *arg);

/* cg__signals_start: start taking the gate's signals on `loop`. Call it on
 * the control thread before starting any other thread, so that threads
 * started later inherit the blocked mask. Returns 0 and *out, or a negative
 * CG_E* code. */
int cg__signals_start(uv_loop_t *loop, cg__signal_cb cb, void *arg, cg__signals **out);

/* cg__signals_stop: stop taking signals and close the handles; the memory
 * is freed by the loop once the handles are closed. Accepts NULL. */
void cg__signals_stop(cg__signals *s);

#endif /* CG_SIGNALS_H */
