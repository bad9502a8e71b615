/* signals.c (POSIX) — the gate's signals as callbacks on the control loop.
 *
 * Linux: the signals are blocked in the control thread, which every later
 * thread inherits, and read from a signalfd watched by the loop. Nothing runs
 * in signal context, and a signal cannot land on a worker thread or on a
 * runtime's helper thread (a sanitizer's, say) and be lost there.
 * Other POSIX systems: libuv's signal watchers.
 */
#include "signals.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "condgate/common.h"

#if defined(__linux__)
#include <sys/signalfd.h>
#endif

static const int taken[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
#define NTAKEN (sizeof(taken) / sizeof(taken[0]))

/* Pass signal signum on as what it means. */
static void deliver(cg__signal_cb cb, int signum, void *arg)
{
    switch (signum) {
    case SIGHUP:
        cb(CG__SIG_RELOAD, "SIGHUP", arg);
        break;
    case SIGUSR1:
        cb(CG__SIG_STATS, "SIGUSR1", arg);
        break;
    case SIGINT:
        cb(CG__SIG_STOP, "SIGINT", arg);
        break;
    default:
        cb(CG__SIG_STOP, "SIGTERM", arg);
        break;
    }
}

struct cg__signals {
    cg__signal_cb cb;
    void *arg;
#if defined(__linux__)
    int fd;
    uv_poll_t poll;
#else
    uv_signal_t sig[NTAKEN];
#endif
    unsigned open_handles;
};

static void on_handle_closed(uv_handle_t *h)
{
    cg__signals *s = h->data;
    if (--s->open_handles == 0) {
#if defined(__linux__)
        close(s->fd);
#endif
        free(s);
    }
}

#if defined(__linux__)

static void on_signalfd(uv_poll_t *h, int status, int events)
{
    cg__signals *s = h->data;
    struct signalfd_siginfo si[8];
    (void)status;
    (void)events;
    for (;;) {
        ssize_t n = read(s->fd, si, sizeof(si));
        if (n < (ssize_t)sizeof(si[0]))
            return; /* EAGAIN: all taken */
        for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++)
            deliver(s->cb, (int)si[i].ssi_signo, s->arg);
    }
}

int cg__signals_start(uv_loop_t *loop, cg__signal_cb cb, void *arg, cg__signals **out)
{
    sigset_t set;
    cg__signals *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CG_ENOMEM;
    s->cb = cb;
    s->arg = arg;
    sigemptyset(&set);
    for (size_t i = 0; i < NTAKEN; i++)
        sigaddset(&set, taken[i]);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        goto fail;
    s->fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->fd < 0)
        goto unblock;
    if (uv_poll_init(loop, &s->poll, s->fd) != 0) {
        close(s->fd);
        goto unblock;
    }
    s->poll.data = s;
    s->open_handles = 1;
    uv_poll_start(&s->poll, UV_READABLE, on_signalfd);
    *out = s;
    return 0;
unblock:
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
fail:
    free(s);
    return CG_ESYS;
}

void cg__signals_stop(cg__signals *s)
{
    if (s == NULL)
        return;
    /* The signals stay blocked: a late SIGTERM during the final teardown
     * must not kill the process with its default action. */
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
}

#else /* !__linux__ */

static void on_signal(uv_signal_t *h, int signum)
{
    cg__signals *s = h->data;
    deliver(s->cb, signum, s->arg);
}

int cg__signals_start(uv_loop_t *loop, cg__signal_cb cb, void *arg, cg__signals **out)
{
    cg__signals *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CG_ENOMEM;
    s->cb = cb;
    s->arg = arg;
    for (size_t i = 0; i < NTAKEN; i++) {
        uv_signal_init(loop, &s->sig[i]);
        s->sig[i].data = s;
        s->open_handles++;
        uv_signal_start(&s->sig[i], on_signal, taken[i]);
    }
    *out = s;
    return 0;
}

void cg__signals_stop(cg__signals *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < NTAKEN; i++) {
        uv_signal_stop(&s->sig[i]);
        uv_close((uv_handle_t *)&s->sig[i], on_handle_closed);
    }
}

#endif
