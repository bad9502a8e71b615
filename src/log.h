/* log.h — one line per event on stderr, as key=value text or one JSON object.
 *
 * Lines are formatted into a stack buffer and written with a single write(2),
 * so lines from different threads never interleave. Reject lines go through
 * a rate limiter (cg__log_reject_allowed) so that a flood of refused callers
 * cannot flood the log: past the rate, lines are counted and summarised once
 * a second as "suppressed N reject lines".
 */
#ifndef CG_LOG_H
#define CG_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "bans.h"
#include "condgate/config.h"

/* Longest line written; longer values are truncated. */
#define CG_LOG_LINE_MAX 2048

/* Default reject-line budget: this many per second, then summarised. */
#define CG_LOG_REJECT_RATE 20

/* cg__log_setup: level and format for every later line. Thread-safe (atomic
 * stores); call at start and on reload. */
void cg__log_setup(cg_log_level level, cg_log_format format);

/* cg__log_enabled: whether lines at `level` are written. */
bool cg__log_enabled(cg_log_level level);

/* Most key/value pairs in one line. */
#define CG_LOG_MAX_FIELDS 32

/* cg__log_fields: write one line for `event` with npairs key/value string
 * pairs from kv (key0, value0, key1, value1, ...). NULL values are written
 * as empty. Any thread. */
void cg__log_fields(cg_log_level level, const char *event, const char *const *kv, size_t npairs);

/* cg__log_event: write one line for `event` with the given key/value string
 * pairs, terminated by a NULL key: cg__log_event(CG_LOG_INFO, "start",
 * "listener", "web", "bind", "0.0.0.0:8080", NULL). Values may be NULL
 * (written as empty); pairs past CG_LOG_MAX_FIELDS are dropped. Any thread. */
void cg__log_event(cg_log_level level, const char *event, ...);

/* Longest text cg__log_format_source writes, with the NUL. */
#define CG_LOG_SOURCE_STRLEN (CG_SOURCE_MAX + 16)

/* cg__log_format_source: where a rule-set entry came from, as log lines and
 * the admin port show it: "FILE:LINE", or FILE alone when the line is
 * unknown (0). buf should hold CG_LOG_SOURCE_STRLEN bytes; longer text is
 * cut. Any thread. */
void cg__log_format_source(const cg_rule_info *info, char *buf, size_t len);

/* cg__log_reject: write the info line for a caller refused at accept:
 * `event` ("reject", "admin_reject"), listener=NAME (left out when listener
 * is NULL), peer=ADDR:PORT, reason=REASON, and rule=CIDR source=FILE:LINE of
 * entry `rule` of `set` (both empty when rule is CG_RULE_NONE, set is NULL
 * or the entry is not there), or with `ban` rule=CIDR source=ban:ORIGIN of
 * that ban; shadow=1 for a caller a shadow listener admitted all the same.
 * With via (the sender of a PROXY header), client=ADDR via=ADDR instead of
 * peer=ADDR.
 * Applies no rate limit: callers ask their cg__log_limiter first. Any
 * thread. */
void cg__log_reject(const char *event, const char *listener, const struct sockaddr *peer,
                    const struct sockaddr *via, const char *reason, const cg_ruleset *set,
                    cg_rule_id rule, const cg__ban *ban, bool shadow);

/* Reject-line limiter. Not thread-safe: each has a single user thread (the
 * gate's control thread, the admin port's accept thread). */
typedef struct cg__log_limiter {
    uint64_t window_start_ms;
    uint32_t in_window;
    uint32_t rate;       /* lines per second before suppression */
    uint64_t suppressed; /* lines held back in the current window */
} cg__log_limiter;

void cg__log_limiter_init(cg__log_limiter *l, uint32_t rate);

/* cg__log_limiter_allow: whether one more reject line may be written at time
 * now_ms; when a window closes with lines suppressed, writes the summary
 * line first. */
bool cg__log_limiter_allow(cg__log_limiter *l, uint64_t now_ms);

/* cg__log_limiter_flush: write a pending summary (on a timer or at stop). */
void cg__log_limiter_flush(cg__log_limiter *l, uint64_t now_ms);

#endif /* CG_LOG_H */
