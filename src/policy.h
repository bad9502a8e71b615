/* policy.h — the one judge: how a caller is judged, stage by stage (SPEC §9).
 *
 * Every place that needs a verdict calls cg__policy_judge: the condition
 * callback of every listener, the admin port's /rules/explain, the reload
 * preview and the kernel prefilter's compiler. The stages run in order and
 * the first that refuses decides; the judgement names that stage, the reason
 * counted for it, and the evidence (the ban, or the rule set and entry that
 * decided the rule stage, with its FILE:LINE through cg_ruleset_rule).
 *
 *     caller ──► ban ──none──► rule ──allow──► source ──ok──► limit ──room──► admitted
 *                 │             │                │               │
 *                 ▼             ▼                ▼               ▼
 *               ban        rule / default   source_limit /     limit
 *                                           source_rate
 *
 * A stage whose input is missing is skipped. The verdict is the same in
 * enforce and shadow mode: what shadow changes (admitting the caller anyway)
 * is the gate's business, not the judge's.
 */
#ifndef CG_POLICY_H
#define CG_POLICY_H

#include <stdbool.h>

#include "admission.h"
#include "bans.h"
#include "condgate/config.h"
#include "condgate/rules.h"
#include "sources.h"

/* The stage that decided. CG__STAGE_NONE: every stage let the caller in. */
typedef enum cg__stage {
    CG__STAGE_NONE = 0,
    CG__STAGE_RULE = 1,
    CG__STAGE_LIMIT = 2,
    CG__STAGE_BAN = 3,
    CG__STAGE_SOURCE = 4,
    CG__STAGE_PROXY = 5,
} cg__stage;

/* Why a caller was refused, as counted in rejected_by and the metrics. The
 * numbers are also the kernel prefilter's counter indices
 * (prefilter_abi.h), so they never change; new reasons go at the end. */
typedef enum cg__reject_reason {
    CG__REJ_RULE = 0,         /* a deny entry matched */
    CG__REJ_DEFAULT = 1,      /* nothing matched and the default is deny */
    CG__REJ_LIMIT = 2,        /* max_connections reached */
    CG__REJ_BAN = 3,          /* a runtime ban covers the caller */
    CG__REJ_SOURCE_LIMIT = 4, /* max_per_source open, or the source table full */
    CG__REJ_SOURCE_RATE = 5,  /* rate_per_source reached */
    CG__REJ_UNTRUSTED_PROXY = 6, /* accept_proxy: the sender is not in trusted_proxies */
    CG__REJ_PROXY_HEADER = 7,    /* accept_proxy: no valid header in time */
    CG__REJ_COUNT = 8,
} cg__reject_reason;

/* cg__stage_name: "none", "proxy", "ban", "rule", "source", "limit". Static
 * storage. */
const char *cg__stage_name(cg__stage s);

/* cg__reject_reason_name: "rule", "default", "limit", "ban",
 * "source_limit", "source_rate", "untrusted_proxy", "proxy_header". Static
 * storage. */
const char *cg__reject_reason_name(cg__reject_reason r);

/* What the judge looks at for one caller. A stage whose input is NULL is
 * skipped (explain of a bare rule set has no admission count). */
typedef struct cg__policy {
    const cg_ruleset *trusted;      /* accept_proxy: the proxy stage alone judges
                                       the sender (its allow entries are trusted);
                                       the other stages judge the header's client */
    cg__bans *bans;                 /* the ban stage */
    const cg_ruleset *set;          /* the rule stage */
    cg__sources *sources;           /* the source stage, with limits */
    const cg_source_limits *limits; /* (skipped when cg_source_limits_on is false) */
    uint32_t listener;              /* gate listener index, for the source table */
    const cg__admission *admission; /* the limit stage */
    int64_t now_s;                  /* wall clock, for ban expiry */
    uint64_t now_ms;                /* monotonic, for rates */
    bool count_hits;                /* a real caller, not an explanation: count
                                       hits on the deciding ban or entry, and
                                       rate refusals toward ban_after */
} cg__policy;

/* The outcome, with its evidence. */
typedef struct cg__judgement {
    bool admit;
    cg__stage stage;          /* the stage that refused; NONE when admitted */
    cg__reject_reason reason; /* when refused */
    cg_action rule_action;    /* what the rule stage said (when it ran) */
    const cg_ruleset *set;    /* the set the rule stage judged by, or NULL */
    cg_rule_id rule;          /* its deciding entry; CG_RULE_NONE: the default */
    cg__ban ban;              /* stage ban: the ban that refused */
    cg__src_verdict source;   /* stage source: what the source table said */
    cg__src_effect effect;    /* a real caller's source stage: an auto-ban due */
} cg__judgement;

/* cg__policy_judge: judge the caller `addr` (a host prefix: from
 * cg_addr_from_sockaddr or cg_cidr_parse; IPv4-mapped IPv6 judged as IPv4)
 * by the stages of p, in order. Fills *out. Any thread, lock-free. */
void cg__policy_judge(const cg__policy *p, const cg_cidr *addr, cg__judgement *out);

/* cg__policy_judge_sockaddr: the same for a socket address; an address the
 * rule engine cannot read (another family) gets each set's default. Returns
 * out->admit. Any thread. */
bool cg__policy_judge_sockaddr(const cg__policy *p, const struct sockaddr *sa, cg__judgement *out);

#endif /* CG_POLICY_H */
