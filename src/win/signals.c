/* win/signals.c — the console's Ctrl+C, Ctrl+Break and close events as
 * "stop" on the control loop, through libuv's signal emulation (SIGINT,
 * SIGBREAK, SIGHUP for the console window closing). Windows has no reload
 * or stats signal: POST /reload and GET /stats on the admin port do those.
 */
#include "signals.h"

#include <signal.h>
#include <stdlib.h>

#include "condgate/common.h"

#if !defined(SIGBREAK)
#define SIGBREAK 21 /* the CRT's number, for headers that hide it */
#endif

static const struct {
    int signum;
    const char *name;
} taken[] = {
    {SIGINT, "CTRL_C"},
    {SIGBREAK, "CTRL_BREAK"},
    {SIGHUP, "CTRL_CLOSE"},
};
#define NTAKEN (sizeof(taken) / sizeof(taken[0]))

struct cg__signals {
    cg__signal_cb cb;
    void *arg;
    uv_signal_t sig[NTAKEN];
    unsigned open_handles;
};

static void on_handle_closed(uv_handle_t *h)
{
    cg__signals *s = h->data;
    if (--s->open_handles == 0)
        free(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    cg__signals *s = h->data;
    for (size_t i = 0; i < NTAKEN; i++)
        if (taken[i].signum == signum)
            s->cb(CG__SIG_STOP, taken[i].name, s->arg);
}

/* cg__signals_start: see signals.h. Returns 0 and *out, CG_ENOMEM or
 * CG_ESYS. Control thread. */
int cg__signals_start(uv_loop_t *loop, cg__signal_cb cb, void *arg, cg__signals **out)
{
    cg__signals *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CG_ENOMEM;
    s->cb = cb;
    s->arg = arg;
    for (size_t i = 0; i < NTAKEN; i++) {
        if (uv_signal_init(loop, &s->sig[i]) != 0)
            break;
        s->sig[i].data = s;
        s->open_handles++;
        if (uv_signal_start(&s->sig[i], on_signal, taken[i].signum) != 0)
            break;
    }
    if (s->open_handles < NTAKEN || !uv_is_active((uv_handle_t *)&s->sig[NTAKEN - 1])) {
        cg__signals_stop(s);
        return CG_ESYS;
    }
    *out = s;
    return 0;
}

/* cg__signals_stop: see signals.h. Control thread. */
void cg__signals_stop(cg__signals *s)
{
    if (s == NULL)
        return;
    if (s->open_handles == 0) {
        free(s);
        return;
    }
    for (size_t i = 0; i < s->open_handles; i++) {
        uv_signal_stop(&s->sig[i]);
        uv_close((uv_handle_t *)&s->sig[i], on_handle_closed);
    }
}
