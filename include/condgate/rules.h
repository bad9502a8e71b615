/* condgate/rules.h — CIDR parsing, rule sets and longest-prefix lookup.
 *
 * No I/O and no sockets beyond reading a struct sockaddr. A rule set is built
 * by adding entries, then frozen into an immutable lookup structure that any
 * number of threads may query at once. Only the per-entry hit counters change
 * after freezing, and they are relaxed atomics.
 *
 * Semantics (SPEC §4):
 *   - the longest prefix containing the caller wins, allow or deny;
 *   - the same prefix both allowed and denied: deny wins (a conflict is
 *     recorded so `condgate -t` can warn);
 *   - the same entry twice (same prefix, same action): kept once, the first
 *     source is remembered;
 *   - nothing matches: the set's default;
 *   - an IPv4-mapped IPv6 caller (::ffff:a.b.c.d) is matched as a.b.c.d;
 *     IPv4-compatible (::a.b.c.d) and 6to4 (2002::/16) callers are matched as
 *     the IPv6 addresses they are.
 */
#ifndef CONDGATE_RULES_H
#define CONDGATE_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct sockaddr;

typedef enum cg_action {
    CG_DENY = 0,
    CG_ALLOW = 1,
} cg_action;

/* cg_action_name: "allow" or "deny" (static storage). */
const char *cg_action_name(cg_action a);

/* A parsed prefix. IPv4 prefixes keep their 4 address bytes in addr[0..3]
 * and the rest zero. Host bits past len are always zero. */
typedef struct cg_cidr {
    uint8_t family; /* 4 or 6 */
    uint8_t len;    /* 0..32 or 0..128 */
    uint8_t addr[16];
} cg_cidr;

/* Longest text cg_cidr_format writes, with the NUL. */
#define CG_CIDR_STRLEN 52

/* cg_cidr_parse: parse exactly `len` bytes of `s` as one address or prefix.
 *
 * Accepted: dotted-quad IPv4 ("10.0.0.0/8", "192.0.2.1"), any RFC 4291 IPv6
 * text ("2001:db8::/32", "::1"), each with an optional "/len" written in
 * decimal without leading zeros. An address without "/len" is a host (/32 or
 * /128). An IPv4-mapped prefix (::ffff:a.b.c.d/len with len >= 96) is
 * normalised to the IPv4 prefix it names, because mapped callers are judged
 * as IPv4. Refused: whitespace anywhere, empty input, IPv4 octets with
 * leading zeros (octal ambiguity), shortened IPv4 ("10/8"), lengths out of
 * range, and host bits set past the prefix — that message names the masked
 * form ("host bits set past /8; did you mean 10.0.0.0/8?"; every message
 * form is listed at the top of tests/unit/test_cidr.c).
 *
 * "all" is not handled here (it names two prefixes); see cg_ruleset_add_text.
 *
 * Returns 0 and fills *out, or CG_EINVAL with a one-line reason (no file or
 * line) in err. Any thread. */
int cg_cidr_parse(const char *s, size_t len, cg_cidr *out, char *err, size_t errlen);

/* cg_cidr_format: canonical text of a prefix ("10.0.0.0/8", "2001:db8::/32",
 * always with "/len"). buf must hold CG_CIDR_STRLEN bytes. Returns buf. */
char *cg_cidr_format(const cg_cidr *c, char *buf, size_t buflen);

/* cg_cidr_contains: true when prefix c contains address a (a->len ignored).
 * Families must match. */
bool cg_cidr_contains(const cg_cidr *c, const cg_cidr *a);

/* cg_addr_from_sockaddr: the lookup key of a socket address: AF_INET as
 * IPv4, AF_INET6 as IPv6 except IPv4-mapped addresses, which become IPv4.
 * The result is a host prefix (/32 or /128). Returns 0 or CG_EINVAL for any
 * other family. */
int cg_addr_from_sockaddr(const struct sockaddr *sa, cg_cidr *out);

/* ------------------------------------------------------------------------
 * Rule sets
 */

typedef struct cg_ruleset cg_ruleset;

/* Bounds (all enforced, CG_ERANGE past them). */
#define CG_RULESET_MAX_ENTRIES (16u * 1024u * 1024u) /* per set, v4 + v6 */
#define CG_LABEL_MAX 128                             /* bytes of one label */
#define CG_SOURCE_MAX 4096                           /* bytes of a source path */

/* Where an entry came from, for explain and warnings. */
typedef struct cg_source {
    const char *file; /* path as given; copied by the set */
    uint32_t line;    /* 1-based; 0 when unknown */
} cg_source;

/* cg_ruleset_new: an empty, unfrozen set with the given name and default
 * verdict. Returns 0 and *out, or CG_ENOMEM / CG_EINVAL (empty name). The
 * caller owns the set; free it with cg_ruleset_free. */
int cg_ruleset_new(const char *name, cg_action default_action, cg_ruleset **out);

/* cg_ruleset_free: frees a set, frozen or not. Accepts NULL. The caller must
 * make sure no other thread still queries it. */
void cg_ruleset_free(cg_ruleset *rs);

/* cg_ruleset_set_default: change the default verdict (before freezing). */
void cg_ruleset_set_default(cg_ruleset *rs, cg_action default_action);

/* cg_ruleset_add: add one entry to an unfrozen set. label may be NULL. The
 * set copies src->file and label. Returns 0, CG_ERANGE (too many entries,
 * label too long), CG_EINVAL (frozen set) or CG_ENOMEM. One thread. */
int cg_ruleset_add(cg_ruleset *rs, const cg_cidr *cidr, cg_action action, const cg_source *src,
                   const char *label);

/* cg_ruleset_add_text: parse `len` bytes of text (a CIDR as for
 * cg_cidr_parse, or "all" for 0.0.0.0/0 and ::/0) and add it. On CG_EINVAL
 * the reason is in err. */
int cg_ruleset_add_text(cg_ruleset *rs, const char *text, size_t len, cg_action action,
                        const cg_source *src, const char *label, char *err, size_t errlen);

/* cg_ruleset_freeze: sort, merge duplicates, resolve conflicts (deny wins)
 * and build the lookup structure. Afterwards the set is immutable but for
 * hit counters and may be shared between threads. Returns 0, CG_ENOMEM, or
 * CG_EINVAL when already frozen. */
int cg_ruleset_freeze(cg_ruleset *rs);

/* Index of an entry in a frozen set; CG_RULE_NONE when nothing matched. */
typedef uint32_t cg_rule_id;
#define CG_RULE_NONE UINT32_MAX

/* cg_ruleset_lookup: the verdict for address `addr` (a host prefix from
 * cg_addr_from_sockaddr or cg_cidr_parse) in a frozen set, and the entry
 * that decided it (CG_RULE_NONE for the default) in *rule if rule is not
 * NULL. Counts nothing. Any thread, lock-free. */
cg_action cg_ruleset_lookup(const cg_ruleset *rs, const cg_cidr *addr, cg_rule_id *rule);

/* cg_ruleset_judge: as cg_ruleset_lookup for a socket address, and counts a
 * hit on the deciding entry (relaxed atomic). An address of another family
 * gets the default. Any thread, lock-free. */
cg_action cg_ruleset_judge(const cg_ruleset *rs, const struct sockaddr *sa, cg_rule_id *rule);

/* cg_ruleset_count_hit: count one hit on entry `rule` of a frozen set
 * (relaxed atomic), as cg_ruleset_judge does; CG_RULE_NONE (the default) and
 * ids past the last entry count nothing. Any thread, lock-free. */
void cg_ruleset_count_hit(const cg_ruleset *rs, cg_rule_id rule);

/* cg_ruleset_each_interval: call fn(arg, start) for every interval of the
 * frozen set's range table of `family` (4 or 6), in address order. An
 * interval is a run of addresses with one lookup result: start is its first
 * address (a /32 or /128 host prefix) and it ends where the next one starts;
 * the first starts at address 0. IPv4-mapped IPv6 addresses are looked up
 * as IPv4, so the IPv6 intervals over ::ffff:0:0/96 do not decide them.
 * Stops at the first non-zero answer of fn and returns it; 0 otherwise, or
 * CG_EINVAL for an unfrozen set or another family. Any thread. */
int cg_ruleset_each_interval(const cg_ruleset *rs, int family,
                             int (*fn)(void *arg, const cg_cidr *start), void *arg);

/* A read-only view of one entry of a frozen set. Pointers stay valid as long
 * as the set. */
typedef struct cg_rule_info {
    cg_cidr cidr;
    cg_action action;
    const char *file; /* source file, never NULL ("" when unknown) */
    uint32_t line;
    const char *label; /* NULL when none */
    uint64_t hits;
} cg_rule_info;

/* cg_ruleset_rule: fill *out for entry `id` of a frozen set. Returns 0 or
 * CG_ENOENT. Any thread. */
int cg_ruleset_rule(const cg_ruleset *rs, cg_rule_id id, cg_rule_info *out);

/* Counts of a frozen set (unique prefixes after merging duplicates). */
typedef struct cg_ruleset_stats {
    size_t v4;         /* IPv4 entries */
    size_t v6;         /* IPv6 entries */
    size_t added;      /* entries added before merging */
    size_t duplicates; /* same prefix and action seen again */
    size_t conflicts;  /* prefixes both allowed and denied (deny kept) */
    size_t bytes;      /* memory held by the frozen structure */
} cg_ruleset_stats;

/* cg_ruleset_get_stats: counts of a frozen set. Any thread. */
void cg_ruleset_get_stats(const cg_ruleset *rs, cg_ruleset_stats *out);

/* A prefix both allowed and denied, for warnings. */
typedef struct cg_conflict {
    cg_cidr cidr;
    cg_source allow; /* first allow source */
    cg_source deny;  /* first deny source (the one kept) */
} cg_conflict;

/* cg_ruleset_conflict: the i-th conflict found by freezing (0-based, in
 * address order). Returns 0, or CG_ENOENT past the last one. At most
 * CG_RULESET_MAX_CONFLICTS are remembered; stats.conflicts counts them all. */
#define CG_RULESET_MAX_CONFLICTS 64
int cg_ruleset_conflict(const cg_ruleset *rs, size_t i, cg_conflict *out);

/* cg_ruleset_name, cg_ruleset_default: accessors. Any thread. */
const char *cg_ruleset_name(const cg_ruleset *rs);
cg_action cg_ruleset_default(const cg_ruleset *rs);

/* cg_ruleset_top: up to `max` entry ids with the most hits, most first,
 * entries without hits left out. Returns how many were written. Reads the
 * counters without stopping writers, so the order is a snapshot. */
size_t cg_ruleset_top(const cg_ruleset *rs, cg_rule_id *ids, size_t max);

#endif /* CONDGATE_RULES_H */
