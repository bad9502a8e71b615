/* crowdsec.h — CrowdSec decisions as bans (SPEC §15): the Local API stream
 * client (crowdsec.c, one thread with libcurl; crowdsec_none.c without
 * libcurl) and the applier of one parsed answer to the runtime bans
 * (crowdsec_apply.c, no HTTP, unit-tested against a real ban table).
 *
 * What an answer does to the bans:
 * - "deleted" first: the ban on exactly that prefix is lifted when its
 *   origin is crowdsec (an admin or auto ban there stays);
 * - then "new": each ban of scope Ip or Range becomes a ban of origin
 *   crowdsec, reason the scenario, ttl its remaining duration rounded up and
 *   clamped to 1 s .. one year; an admin or auto ban on the same prefix is
 *   never replaced (the decision is counted as "kept"); expired decisions
 *   (duration <= 0) are skipped; a decision overlapping never_ban, of
 *   another type or scope, or invalid is ignored and counted;
 * - a startup answer (`startup=true`) is the whole truth: afterwards every
 *   crowdsec ban it does not hold is lifted (left from a previous run via
 *   the state file, or deleted while the API was unreachable).
 */
#ifndef CG_CROWDSEC_H
#define CG_CROWDSEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/config.h"
#include "crowdsec_decisions.h"
#include "gen.h"
#include "runtime.h"

/* Why a decision was ignored (the `why` label of
 * condgate_crowdsec_ignored_total). */
typedef enum cg__cs_why {
    CG__CS_WHY_NEVER_BAN = 0, /* it overlaps [gateway] never_ban */
    CG__CS_WHY_TYPE,          /* not a ban ("captcha", ...) */
    CG__CS_WHY_SCOPE,         /* not Ip or Range ("Country", "AS", ...) */
    CG__CS_WHY_INVALID,       /* missing or bad fields or value */
    CG__CS_WHY_COUNT,
} cg__cs_why;

/* cg__cs_why_name: "never_ban", "type", "scope", "invalid" (static). */
const char *cg__cs_why_name(cg__cs_why w);

/* What one answer did. */
typedef struct cg__cs_result {
    size_t added;    /* new bans */
    size_t replaced; /* crowdsec bans renewed */
    size_t kept;     /* decisions on a prefix an admin or auto ban holds */
    size_t expired;  /* new decisions already over: skipped */
    size_t deleted;  /* bans lifted by "deleted" */
    size_t lifted;   /* crowdsec bans a startup answer no longer holds */
    size_t failed;   /* bans the table refused (max_bans, memory) */
    uint64_t ignored[CG__CS_WHY_COUNT];
} cg__cs_result;

/* cg__crowdsec_apply: apply answer a to the bans of rt as above, never_ban
 * being the frozen set `never` (its allow entries are protected), at wall
 * time now_s; startup: a startup answer. Fills *res. Returns 0 or
 * CG_ENOMEM (a startup answer's reconciliation could not run: nothing was
 * lifted). Any thread (the client's). */
int cg__crowdsec_apply(cg__runtime *rt, const cg_ruleset *never, const cg__cs_answer *a,
                       bool startup, int64_t now_s, cg__cs_result *res);

/* The client's state, for /stats and /metrics. */
typedef struct cg__crowdsec_stats {
    bool up; /* the last request succeeded */
    char url[CG_CROWDSEC_URL_MAX + 1];
    uint64_t decisions;   /* crowdsec bans in force */
    int64_t last_sync_s;  /* wall clock of the last good answer; 0: none */
    double last_apply_ms; /* parse and apply time of the last good answer */
    uint64_t polls;       /* requests made */
    uint64_t errors;      /* requests failed (network, status, bad answer) */
    uint64_t ignored[CG__CS_WHY_COUNT];
} cg__crowdsec_stats;

typedef struct cg__crowdsec cg__crowdsec;

/* What the client needs of the gate: the runtime bans, and the current
 * generation (for never_ban, read at each answer). */
typedef struct cg__crowdsec_env {
    cg__runtime *rt;
    cg__gen *(*acquire)(void *arg); /* a reference, dropped with cg__gen_unref */
    void *arg;
} cg__crowdsec_env;

/* cg__crowdsec_start: start the client of conf (copied) on its own thread;
 * prev (NULL: none) is a stopped client whose counters carry on. Returns 0
 * and *out, CG_ENOTSUP (built without libcurl) or CG_ENOMEM / CG_ESYS with
 * the reason in err. Control thread. */
int cg__crowdsec_start(const cg_crowdsec_conf *conf, const cg__crowdsec_env *env,
                       const cg__crowdsec_stats *prev, cg__crowdsec **out, char *err,
                       size_t errlen);

/* cg__crowdsec_same: whether c runs with exactly the settings of conf (url,
 * key, interval, timeout). Any thread. */
bool cg__crowdsec_same(const cg__crowdsec *c, const cg_crowdsec_conf *conf);

/* cg__crowdsec_stats_get: the client's state now into *out. Any thread. */
void cg__crowdsec_stats_get(cg__crowdsec *c, cg__crowdsec_stats *out);

/* cg__crowdsec_stop: stop the thread (a request in progress is abandoned at
 * once) and free the client. Accepts NULL. Control
 * thread. */
void cg__crowdsec_stop(cg__crowdsec *c);

#endif /* CG_CROWDSEC_H */
