/* admin_bans.h — the /bans endpoints (SPEC §11) as plain functions: the
 * request's parts in, an HTTP status and a JSON body out. admin.c routes
 * and answers; these know nothing of HTTP connections, so the fuzz target
 * can drive them directly.
 */
#ifndef CG_ADMIN_BANS_H
#define CG_ADMIN_BANS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "bans.h"
#include "condgate/rules.h"
#include "runtime.h"

/* Most bans one GET /bans lists (its `limit`; the default too). */
#define CG_ADMIN_BANS_LIST_MAX 1000

/* cg__admin_ban_json: one ban as SPEC §11's BAN object, at now_s (for
 * ttl_s, the seconds left). NULL when out of memory. */
cJSON *cg__admin_ban_json(const cg__ban *b, int64_t now_s);

/* cg__admin_bans_post: POST /bans with body[0..len): parse it
 * (cg__ban_request_parse), refuse any ban overlapping never_ban (422, none
 * added), then put each in force through rt and wait until the state file
 * holds them. Answers 201 {"ok": true, "ban": BAN} for one ban, 201
 * {"ok": true, "count": N, "bans": [...]} (at most the first
 * CG_ADMIN_BANS_LIST_MAX listed) for an array; 400 bad body; 413 body
 * over CG_BAN_BODY_MAX; 422 never_ban overlap or max_bans reached; 500
 * state file not written. *out is the JSON body (the caller frees). Any
 * thread but the control thread. */
unsigned cg__admin_bans_post(cg__runtime *rt, const cg_ruleset *never_ban, const char *body,
                             size_t len, cJSON **out);

/* cg__admin_bans_get: GET /bans?limit=N&after=CIDR (either may be NULL):
 * 200 {"count": total, "bans": [BAN, ...]} in address order, at most limit
 * (1..CG_ADMIN_BANS_LIST_MAX, default that); 400 for a bad limit or
 * after. */
unsigned cg__admin_bans_get(cg__runtime *rt, const char *limit, const char *after, cJSON **out);

/* cg__admin_bans_delete: DELETE /bans?cidr=CIDR: 200 {"ok": true}, 400 bad
 * or missing cidr, 404 no such ban, 500 state file not written. Any thread
 * but the control thread. */
unsigned cg__admin_bans_delete(cg__runtime *rt, const char *cidr, cJSON **out);

#endif /* CG_ADMIN_BANS_H */
