/* bans.h — runtime bans with expiry (SPEC §11): the table the judge's `ban`
 * stage reads, and the rules of a ban request.
 *
 * A ban covers one prefix (IPv4 or IPv6; an IPv4-mapped prefix is its IPv4
 * one), has an origin (admin, auto, crowdsec), a reason, a creation and an
 * expiry time (wall clock, whole seconds since the Unix epoch) and a hit
 * count. One ban per prefix: adding a prefix that is banned already replaces
 * that ban (new reason, times and origin; the hits are kept).
 *
 * The table is shared by every listener and outlives generations. It is
 * safe from any thread: the control thread looks callers up, the admin
 * port's threads add, remove and list, a timer on the control thread expires.
 * Lookups cost one hash probe per distinct prefix length in use, so /32 and
 * /24 bans together cost two, whatever their number.
 *
 * Bounds: at most `max` bans (cg__bans_new, cg__bans_set_max), reasons of
 * at most CG_BAN_REASON_MAX bytes of UTF-8.
 */
#ifndef CG_BANS_H
#define CG_BANS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/rules.h"

/* Longest reason, in bytes, without the NUL (SPEC §11). */
#define CG_BAN_REASON_MAX 128
/* ttl_s of a ban request: 1 s to one year (SPEC §11). */
#define CG_BAN_TTL_MAX_S 31536000
/* Longest RFC 3339 UTC time text ("2026-12-05T19:00:00Z") with the NUL. */
#define CG_BAN_TIME_STRLEN 21

typedef enum cg__ban_origin {
    CG__BAN_ADMIN = 0,
    CG__BAN_AUTO = 1,
    CG__BAN_CROWDSEC = 2,
    CG__BAN_ORIGINS = 3,
} cg__ban_origin;

/* cg__ban_origin_name: "admin", "auto", "crowdsec" (static storage). */
const char *cg__ban_origin_name(cg__ban_origin o);

/* cg__ban_origin_parse: the origin named s, or -1. */
int cg__ban_origin_parse(const char *s);

/* One ban, as added, looked up and listed (a copy: the table keeps its own). */
typedef struct cg__ban {
    cg_cidr cidr;
    cg__ban_origin origin;
    int64_t created_s; /* wall clock, seconds since the epoch */
    int64_t expires_s; /* the ban holds while now < expires_s */
    uint64_t hits;     /* callers it refused (not explanations) */
    char reason[CG_BAN_REASON_MAX + 1];
} cg__ban;

/* cg__ban_time_format: t (seconds since the epoch) as RFC 3339 UTC into buf
 * (CG_BAN_TIME_STRLEN bytes). Returns buf. */
char *cg__ban_time_format(int64_t t, char *buf, size_t len);

/* cg__ban_time_parse: RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ" (exactly that
 * form) into *t. Returns 0 or CG_EINVAL. */
int cg__ban_time_parse(const char *s, int64_t *t);

/* cg__ban_reason_ok: whether s[0..len) is a valid reason: at most
 * CG_BAN_REASON_MAX bytes of valid UTF-8 without control characters. */
bool cg__ban_reason_ok(const char *s, size_t len);

/* cg__ban_printable: s for a one-line message, into buf (len bytes, NUL
 * included): bytes outside printable ASCII become '?', and a longer s is
 * cut to 40 bytes and "...". Returns buf. */
char *cg__ban_printable(const char *s, char *buf, size_t len);

typedef struct cg__bans cg__bans;

/* cg__bans_new: an empty table for at most max bans (1..CG_CONFIG_MAX_BANS).
 * NULL when out of memory. */
cg__bans *cg__bans_new(size_t max);

/* cg__bans_free: free the table. Accepts NULL. */
void cg__bans_free(cg__bans *b);

/* cg__bans_set_max: a new bound (a reload); bans already there stay, only
 * new prefixes are refused past it. Any thread. */
void cg__bans_set_max(cg__bans *b, size_t max);

/* cg__bans_add: add ban (or replace the ban on the same prefix; then
 * *replaced is true, the hits are kept). Returns 0, CG_ERANGE when the table
 * holds max bans and this prefix is new, or CG_ENOMEM. Any thread. */
int cg__bans_add(cg__bans *b, const cg__ban *ban, bool *replaced);

/* cg__bans_add_over: as cg__bans_add, but a ban already on that prefix is
 * replaced only when its origin's bit (1u << origin) is in `over`; else
 * nothing changes and it returns CG_EEXIST. Any thread. */
int cg__bans_add_over(cg__bans *b, const cg__ban *ban, unsigned over, bool *replaced);

/* cg__bans_remove_origin: remove the ban on exactly this prefix only when
 * its origin is `origin`. Returns 0, or CG_ENOENT (no ban there, or one of
 * another origin, which stays). Any thread. */
int cg__bans_remove_origin(cg__bans *b, const cg_cidr *cidr, cg__ban_origin origin);

/* cg__bans_count_origin: bans of this origin in the table now. Any
 * thread. */
size_t cg__bans_count_origin(cg__bans *b, cg__ban_origin origin);

/* cg__bans_remove: remove the ban on exactly this prefix, copying it into
 * *out when out is not NULL. Returns 0 or CG_ENOENT. Any thread. */
int cg__bans_remove(cg__bans *b, const cg_cidr *cidr, cg__ban *out);

/* cg__bans_find: copy the ban on exactly this prefix. Returns 0 or
 * CG_ENOENT. Any thread. */
int cg__bans_find(cg__bans *b, const cg_cidr *cidr, cg__ban *out);

/* cg__bans_match: whether a ban in force at now_s (now_s < expires_s)
 * covers the address addr (a host prefix; IPv4-mapped IPv6 judged as IPv4).
 * The most specific one is copied to *out when out is not NULL; with
 * count_hit its hit count goes up by one. Any thread; lock-light: one short
 * critical section. */
bool cg__bans_match(cg__bans *b, const cg_cidr *addr, int64_t now_s, bool count_hit,
                    cg__ban *out);

/* cg__bans_expire: remove every ban with expires_s <= now_s, calling
 * gone(arg, ban) for each (outside any lock the caller must know of: the
 * table's own lock is held, so gone must not call back into b). Returns how
 * many were removed. Cheap when nothing is due (the earliest expiry is
 * kept). Any thread. */
size_t cg__bans_expire(cg__bans *b, int64_t now_s, void (*gone)(void *arg, const cg__ban *ban),
                       void *arg);

/* cg__bans_expire_looked: how many times cg__bans_expire has looked at a
 * ban's expiry so far (for tests: a pass with nothing due looks at one, the
 * earliest). Any thread. */
uint64_t cg__bans_expire_looked(cg__bans *b);

/* cg__bans_count: bans in the table now. Any thread. */
size_t cg__bans_count(cg__bans *b);

/* cg__bans_version: a number that changes with every add, replace, removal
 * and expiry (for the state file's writer and the sweep of open
 * connections). Any thread. */
uint64_t cg__bans_version(cg__bans *b);

/* cg__bans_newest: copy the most recently created ban still there. Returns
 * 0 or CG_ENOENT when the table is empty. Any thread. */
int cg__bans_newest(cg__bans *b, cg__ban *out);

/* cg__bans_list: up to limit bans in address order (IPv4 before IPv6, then
 * by address, then shorter prefix first), starting after the prefix `after`
 * (NULL: from the first), each passed to fn(arg, ban); stops early when fn
 * returns false. Returns how many were passed. O(n log limit). Any thread;
 * fn is called without the table's lock held (on copies). */
size_t cg__bans_list(cg__bans *b, const cg_cidr *after, size_t limit,
                     bool (*fn)(void *arg, const cg__ban *ban), void *arg);

/* cg__bans_snapshot: every ban, in address order, as one array (free with
 * free()) in *out with the count in *n and the table's version at that
 * instant in *version. Returns 0 or CG_ENOMEM. Any thread. */
int cg__bans_snapshot(cg__bans *b, cg__ban **out, size_t *n, uint64_t *version);

/* ------------------------------------------------------------------------
 * Ban requests (POST /bans), parsed apart from any table, so the parser can
 * be fuzzed on its own.
 */

/* Most bans in one request body (a JSON array of ban objects). */
#define CG_BAN_REQUEST_MAX 10000
/* Largest request body, in bytes. */
#define CG_BAN_BODY_MAX (2u * 1024u * 1024u)

/* One requested ban: what the caller asked for. */
typedef struct cg__ban_request {
    cg_cidr cidr;
    uint32_t ttl_s;
    char reason[CG_BAN_REASON_MAX + 1];
} cg__ban_request;

/* cg__ban_request_parse: parse a POST /bans body: one object
 * {"cidr": "198.51.100.0/24", "ttl_s": 3600, "reason": "text"} ("reason"
 * optional, default ""; no other key; no key twice) or an array of 1 to
 * CG_BAN_REQUEST_MAX such objects. Fills *out (free with free()) and *n.
 * Returns 0, or CG_EINVAL / CG_ERANGE / CG_ENOMEM with one line for the
 * caller in err (for an array it names the element: "bans[3]: ..."). Any
 * thread. */
int cg__ban_request_parse(const char *body, size_t len, cg__ban_request **out, size_t *n,
                          char *err, size_t errlen);

/* cg__bans_overlap: whether prefix c overlaps any allow entry of the frozen
 * rule set `never` (the [gateway] never_ban set): a ban containing, or
 * contained in, a protected address. Copies the first such entry to *hit.
 * Any thread. */
bool cg__bans_overlap(const cg_ruleset *never, const cg_cidr *c, cg_cidr *hit);

#endif /* CG_BANS_H */
