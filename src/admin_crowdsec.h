/* admin_crowdsec.h — the CrowdSec client's state on the admin port (SPEC
 * §15): the "crowdsec" object of /stats and the condgate_crowdsec_*
 * families of /metrics (admin_crowdsec.c). */
#ifndef CG_ADMIN_CROWDSEC_H
#define CG_ADMIN_CROWDSEC_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "crowdsec.h"

/* Room cg__admin_crowdsec_metrics needs. */
#define CG_ADMIN_CROWDSEC_METRICS_MAX 2048

/* cg__admin_crowdsec_json: add "crowdsec": {"up", "url", "decisions",
 * "last_sync" (RFC 3339 or null), "last_apply_ms", "polls", "errors",
 * "ignored": {"never_ban", "type", "scope", "invalid"}} to root; an
 * allocation failure sets *oom. Any thread. */
void cg__admin_crowdsec_json(bool *oom, cJSON *root, const cg__crowdsec_stats *st);

/* cg__admin_crowdsec_metrics: the condgate_crowdsec_* families in the
 * Prometheus text format into buf (len bytes, CG_ADMIN_CROWDSEC_METRICS_MAX
 * is enough). Returns the length written, NUL excluded. Any thread. */
size_t cg__admin_crowdsec_metrics(const cg__crowdsec_stats *st, char *buf, size_t len);

#endif /* CG_ADMIN_CROWDSEC_H */
