/* runtime.c — bans, sources and recent callers beside the generations: each
 * ban's way from the table to the kernel, the open connections and the
 * state file. */
#include "runtime.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bans_file.h"
#include "log.h"

struct cg__runtime {
    cg__bans *bans;
    cg__bans_store *store; /* NULL without a state file */
    cg__sources *sources;
    cg__recent *recent;

    cg__prefilter *pf; /* set once at start (control thread), then read-only */
    void (*sweep_fn)(void *arg);
    void *sweep_arg;
    uv_async_t sweep;        /* wakes the control thread to sweep the pool */
    _Atomic bool sweep_open; /* admin threads read it, the control thread clears it */
    _Atomic uint64_t kernel_misses;
};

int64_t cg__runtime_now_s(void)
{
    return (int64_t)time(NULL);
}

static void on_sweep(uv_async_t *a)
{
    cg__runtime *rt = a->data;
    if (rt->sweep_fn != NULL)
        rt->sweep_fn(rt->sweep_arg);
}

static int load_state(cg__runtime *rt, const cg_config *cfg, char *err, size_t errlen)
{
    size_t loaded = 0, expired = 0;
    if (cfg->state_file == NULL)
        return 0;
    int rc = cg__bans_file_load(cfg->state_file, rt->bans, cg__runtime_now_s(), &loaded, &expired,
                                err, errlen);
    if (rc != 0)
        return rc;
    char l[24], e[24];
    snprintf(l, sizeof(l), "%zu", loaded);
    snprintf(e, sizeof(e), "%zu", expired);
    cg__log_event(CG_LOG_INFO, "bans_loaded", "file", cfg->state_file, "bans", l, "expired", e,
                  NULL);
    return cg__bans_store_start(cfg->state_file, rt->bans, &rt->store, err, errlen);
}

int cg__runtime_new(uv_loop_t *loop, const cg_config *cfg, cg__runtime **out, char *err,
                    size_t errlen)
{
    cg__runtime *rt = calloc(1, sizeof(*rt));
    if (rt == NULL || (rt->bans = cg__bans_new(cfg->max_bans)) == NULL ||
        (rt->sources = cg__sources_new(cfg->source_table_max)) == NULL ||
        (rt->recent = cg__recent_new(cfg->preview_callers)) == NULL ||
        uv_async_init(loop, &rt->sweep, on_sweep) != 0) {
        snprintf(err, errlen, "out of memory at start");
        cg__runtime_free(rt);
        return CG_ENOMEM;
    }
    rt->sweep.data = rt;
    rt->sweep_open = true;
    int rc = load_state(rt, cfg, err, errlen);
    if (rc != 0) {
        cg__runtime_close(rt);
        /* The handle's close callback runs on the loop's next turn; the
         * caller stops without running it, so free only what is ours. */
        *out = rt;
        return rc;
    }
    *out = rt;
    return 0;
}

/* Load one ban into the kernel, counting what its map cannot take. */
static void kernel_put(cg__runtime *rt, const cg_cidr *c, bool add)
{
    if (rt->pf == NULL)
        return;
    int rc = cg__prefilter_ban(rt->pf, c, add);
    if (rc != 0 && add) {
        uint64_t n = atomic_fetch_add(&rt->kernel_misses, 1);
        if (n == 0) {
            char cidr[CG_CIDR_STRLEN];
            cg__log_event(CG_LOG_WARN, "prefilter_bans_full", "cidr",
                          cg_cidr_format(c, cidr, sizeof(cidr)), "message",
                          "the kernel's ban map is full: further bans are judged after accept "
                          "only (raising max_bans takes a restart)",
                          NULL);
        }
    }
}

static bool load_one(void *arg, const cg__ban *ban)
{
    kernel_put(arg, &ban->cidr, true);
    return true;
}

size_t cg__runtime_attach(cg__runtime *rt, cg__prefilter *pf, void (*sweep)(void *arg), void *arg)
{
    rt->sweep_fn = sweep;
    rt->sweep_arg = arg;
    rt->pf = pf;
    if (pf != NULL)
        cg__bans_list(rt->bans, NULL, SIZE_MAX, load_one, rt);
    return (size_t)atomic_load(&rt->kernel_misses);
}

void cg__runtime_reconfigure(cg__runtime *rt, const cg_config *cfg)
{
    cg__bans_set_max(rt->bans, cfg->max_bans);
    cg__sources_set_max(rt->sources, cfg->source_table_max);
}

cg__bans *cg__runtime_bans(cg__runtime *rt)
{
    return rt->bans;
}

cg__sources *cg__runtime_sources(cg__runtime *rt)
{
    return rt->sources;
}

cg__recent *cg__runtime_recent(cg__runtime *rt)
{
    return rt->recent;
}

uint64_t cg__runtime_kernel_misses(cg__runtime *rt)
{
    return atomic_load(&rt->kernel_misses);
}

/* Wait for the state file to hold the table as of `version`. */
static int durable_wait(cg__runtime *rt, uint64_t version, char *err, size_t errlen)
{
    if (rt->store == NULL)
        return 0;
    return cg__bans_store_sync(rt->store, version, err, errlen);
}

int cg__runtime_ban(cg__runtime *rt, const cg__ban *ban, bool durable, bool *replaced, char *err,
                    size_t errlen)
{
    bool rep = false;
    int rc = cg__bans_add(rt->bans, ban, &rep);
    if (replaced != NULL)
        *replaced = rep;
    if (rc != 0) {
        snprintf(err, errlen, "%s",
                 rc == CG_ERANGE ? "the ban table is full (max_bans)" : "out of memory");
        return rc;
    }
    uint64_t version = cg__bans_version(rt->bans);
    kernel_put(rt, &ban->cidr, true);
    if (rt->sweep_open)
        uv_async_send(&rt->sweep);
    if (durable)
        return durable_wait(rt, version, err, errlen);
    if (rt->store != NULL)
        cg__bans_store_kick(rt->store);
    return 0;
}

int cg__runtime_unban(cg__runtime *rt, const cg_cidr *c, char *err, size_t errlen)
{
    if (cg__bans_remove(rt->bans, c, NULL) != 0) {
        snprintf(err, errlen, "no such ban");
        return CG_ENOENT;
    }
    uint64_t version = cg__bans_version(rt->bans);
    kernel_put(rt, c, false);
    return durable_wait(rt, version, err, errlen);
}

int cg__runtime_ban_over(cg__runtime *rt, const cg__ban *ban, unsigned over, bool *replaced)
{
    int rc = cg__bans_add_over(rt->bans, ban, over, replaced);
    if (rc == 0)
        kernel_put(rt, &ban->cidr, true);
    return rc;
}

int cg__runtime_unban_origin(cg__runtime *rt, const cg_cidr *c, cg__ban_origin origin)
{
    int rc = cg__bans_remove_origin(rt->bans, c, origin);
    if (rc == 0)
        kernel_put(rt, c, false);
    return rc;
}

void cg__runtime_changed(cg__runtime *rt)
{
    if (rt->sweep_open)
        uv_async_send(&rt->sweep);
    if (rt->store != NULL)
        cg__bans_store_kick(rt->store);
}

static void expired_one(void *arg, const cg__ban *ban)
{
    cg__runtime *rt = arg;
    char cidr[CG_CIDR_STRLEN];
    kernel_put(rt, &ban->cidr, false);
    cg__log_event(CG_LOG_INFO, "unban", "cidr", cg_cidr_format(&ban->cidr, cidr, sizeof(cidr)),
                  "origin", cg__ban_origin_name(ban->origin), "why", "expired", NULL);
}

void cg__runtime_tick(cg__runtime *rt, int64_t now_s)
{
    if (cg__bans_expire(rt->bans, now_s, expired_one, rt) > 0 && rt->store != NULL)
        cg__bans_store_kick(rt->store);
}

static void on_sweep_closed(uv_handle_t *h)
{
    (void)h;
}

void cg__runtime_close(cg__runtime *rt)
{
    if (rt != NULL && rt->sweep_open) {
        rt->sweep_open = false;
        uv_close((uv_handle_t *)&rt->sweep, on_sweep_closed);
    }
}

void cg__runtime_free(cg__runtime *rt)
{
    if (rt == NULL)
        return;
    cg__bans_store_stop(rt->store);
    cg__bans_free(rt->bans);
    cg__sources_free(rt->sources);
    cg__recent_free(rt->recent);
    free(rt);
}
