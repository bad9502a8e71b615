/* admin_preview.h — the reload preview (SPEC §14): the recent callers
 * replayed through the configuration in force and a candidate, and the
 * callers whose verdict would flip. A plain function, like admin_bans.h.
 */
#ifndef CG_ADMIN_PREVIEW_H
#define CG_ADMIN_PREVIEW_H

#include <cjson/cJSON.h>

#include "gen.h"
#include "runtime.h"

/* Most flips listed in one answer (SPEC §14). */
#define CG_PREVIEW_LIST_MAX 100

/* cg__admin_preview: replay every caller in rt's recent ring through
 * generation now and candidate `after` (same gate listener indices), each
 * by the stages that do not change with time (ban, rule), and answer
 * {"ok": true, "dry_run": true, "replayed": N, "would_flip": M, "flips":
 * [{"addr", "listener", "now": {...}, "after": {...}}]} with at most
 * CG_PREVIEW_LIST_MAX flips listed; each side names "verdict", "stage",
 * "reason" and the deciding "rule" ({"cidr", "source"} or null). Returns
 * the JSON (the caller frees) or NULL when out of memory. Any thread; the
 * generations must stay alive for the call. */
cJSON *cg__admin_preview(const cg__gen *now, const cg__gen *after, cg__runtime *rt);

#endif /* CG_ADMIN_PREVIEW_H */
