/* admin_crowdsec.c — the CrowdSec client's state rendered for /stats and
 * /metrics (see admin_crowdsec.h). */
#include "admin_crowdsec.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "admin_json.h"
#include "bans.h"
#include "diag.h"

/* cg__admin_crowdsec_json: see admin_crowdsec.h. */
void cg__admin_crowdsec_json(bool *oom, cJSON *root, const cg__crowdsec_stats *st)
{
    char when[CG_BAN_TIME_STRLEN];
    cJSON *o = put_obj(oom, root, "crowdsec");
    put_bool(oom, o, "up", st->up);
    put_str(oom, o, "url", st->url);
    put_u64(oom, o, "decisions", st->decisions);
    put_str(oom, o, "last_sync",
            st->last_sync_s > 0 ? cg__ban_time_format(st->last_sync_s, when, sizeof when) : NULL);
    if (o != NULL && cJSON_AddNumberToObject(o, "last_apply_ms", st->last_apply_ms) == NULL)
        *oom = true;
    put_u64(oom, o, "polls", st->polls);
    put_u64(oom, o, "errors", st->errors);
    cJSON *ign = put_obj(oom, o, "ignored");
    for (int w = 0; w < CG__CS_WHY_COUNT; w++)
        put_u64(oom, ign, cg__cs_why_name((cg__cs_why)w), st->ignored[w]);
}

typedef struct out {
    char *p;
    size_t len, cap;
} out;

static void emit(out *o, const char *fmt, ...) CG__PRINTF(2, 3);

static void emit(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len = o->len + (size_t)n < o->cap ? o->len + (size_t)n : o->cap - 1;
}

static void family(out *o, const char *name, const char *type, const char *help)
{
    emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* cg__admin_crowdsec_metrics: see admin_crowdsec.h. */
size_t cg__admin_crowdsec_metrics(const cg__crowdsec_stats *st, char *buf, size_t len)
{
    out o = {.p = buf, .cap = len};
    if (len == 0)
        return 0;
    buf[0] = '\0';
    family(&o, "condgate_crowdsec_up", "gauge",
           "Whether the last request to the CrowdSec Local API succeeded.");
    emit(&o, "condgate_crowdsec_up %d\n", st->up ? 1 : 0);
    family(&o, "condgate_crowdsec_decisions", "gauge", "Bans of origin crowdsec in force.");
    emit(&o, "condgate_crowdsec_decisions %" PRIu64 "\n", st->decisions);
    family(&o, "condgate_crowdsec_last_sync_timestamp_seconds", "gauge",
           "When the last good answer of the Local API was applied (0: never).");
    emit(&o, "condgate_crowdsec_last_sync_timestamp_seconds %" PRId64 "\n", st->last_sync_s);
    family(&o, "condgate_crowdsec_ignored_total", "counter",
           "Decisions ignored, by why: never_ban, type, scope, invalid.");
    for (int w = 0; w < CG__CS_WHY_COUNT; w++)
        emit(&o, "condgate_crowdsec_ignored_total{why=\"%s\"} %" PRIu64 "\n",
             cg__cs_why_name((cg__cs_why)w), st->ignored[w]);
    family(&o, "condgate_crowdsec_polls_total", "counter", "Requests made to the Local API.");
    emit(&o, "condgate_crowdsec_polls_total %" PRIu64 "\n", st->polls);
    family(&o, "condgate_crowdsec_errors_total", "counter",
           "Requests to the Local API that failed (unreachable, status, bad answer).");
    emit(&o, "condgate_crowdsec_errors_total %" PRIu64 "\n", st->errors);
    return o.len;
}
