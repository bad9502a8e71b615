/* crowdsec_none.c — the CrowdSec client of a build without libcurl: the
 * configuration refuses [crowdsec] (config_crowdsec.c), so nothing here is
 * ever started. The applier (crowdsec_apply.c) is built either way. */
#include <stdio.h>

#include "crowdsec.h"

/* cg__crowdsec_start: see crowdsec.h. Always CG_ENOTSUP. */
int cg__crowdsec_start(const cg_crowdsec_conf *conf, const cg__crowdsec_env *env,
                       const cg__crowdsec_stats *prev, cg__crowdsec **out, char *err, size_t errlen)
{
    (void)conf, (void)env, (void)prev;
    *out = NULL;
    snprintf(err, errlen, "crowdsec: this condgate was built without libcurl");
    return CG_ENOTSUP;
}

/* cg__crowdsec_same: see crowdsec.h. */
bool cg__crowdsec_same(const cg__crowdsec *c, const cg_crowdsec_conf *conf)
{
    (void)c, (void)conf;
    return false;
}

/* cg__crowdsec_stats_get: see crowdsec.h. Never called (no client). */
void cg__crowdsec_stats_get(cg__crowdsec *c, cg__crowdsec_stats *out)
{
    (void)c;
    *out = (cg__crowdsec_stats){0};
}

/* cg__crowdsec_stop: see crowdsec.h. */
void cg__crowdsec_stop(cg__crowdsec *c)
{
    (void)c;
}
