/* relay_common.c — what the two relays (relay.c on libuv, unix/ep_relay.c on
 * Linux's own epoll loop) share: the close's accounting, its log line, and
 * the lines and count of a caller whose every backend failed. */
#include "relay.h"

#include <inttypes.h>
#include <stdio.h>

#include "log.h"

const char *cg__relay_listener_name(const cg__relay_env *env, size_t listener)
{
    return listener < env->nlisteners ? env->listener_names[listener] : "-";
}

/* The caller as text, for a log line; "-" when unknown. */
static const char *peer_text(const cg__peer *peer, char *buf, size_t n)
{
    if (peer == NULL || peer->sa.sa_family == 0) {
        snprintf(buf, n, "-");
        return buf;
    }
    return cg_sockaddr_format(&peer->sa, buf, n);
}

void cg__relay_account_close(const cg__relay_env *env, size_t slot, size_t listener, void *hold)
{
    if (hold != NULL && env->release != NULL)
        env->release(env->arg, hold);
    if (listener < env->nlisteners)
        cg__stat_add(&cg__lstats_of(env->stats, slot, listener)->closed, 1);
    cg__stat_add(&env->stats->slots[slot].finished, 1);
    cg__admission_release(env->admission);
}

void cg__relay_log_close(const cg__relay_env *env, const cg__relay_tally *t, const char *state,
                         const char *reason, int err)
{
    if (!cg__log_enabled(CG_LOG_DEBUG))
        return;
    char in[24], out[24], ms[24], peer[64];
    snprintf(in, sizeof(in), "%" PRIu64, t->bytes_in);
    snprintf(out, sizeof(out), "%" PRIu64, t->bytes_out);
    snprintf(ms, sizeof(ms), "%" PRIu64, t->duration_ms);
    /* With no error the "error" key is NULL and ends the list. */
    cg__log_event(CG_LOG_DEBUG, "close", "listener", cg__relay_listener_name(env, t->listener),
                  "peer", peer_text(t->peer, peer, sizeof(peer)), "state", state, "reason", reason,
                  "bytes_in", in, "bytes_out", out, "duration_ms", ms, err != 0 ? "error" : NULL,
                  err != 0 ? uv_strerror(err) : NULL, NULL);
}

void cg__relay_log_backend_failed(const cg__relay_env *env, size_t slot, size_t listener,
                                  const cg__peer *peer, const cg__route *r, size_t first,
                                  unsigned attempts, const int *errs)
{
    const char *name = cg__relay_listener_name(env, listener);
    char text[64];
    peer_text(peer, text, sizeof(text));
    for (unsigned i = 0; i < attempts; i++) {
        const char *b = r->nbackends ? r->backends[(first + i) % r->nbackends].text : "-";
        cg__log_event(CG_LOG_WARN, "backend_error", "listener", name, "peer", text, "backend", b,
                      "error", uv_strerror(errs[i]), NULL);
    }
    if (listener < env->nlisteners)
        cg__stat_add(&cg__lstats_of(env->stats, slot, listener)->backend_errors, 1);
}
