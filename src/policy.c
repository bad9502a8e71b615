/* policy.c — the ordered stages of SPEC §9, for every caller and every
 * explanation. */
#include "policy.h"

#include <stddef.h>

const char *cg__stage_name(cg__stage s)
{
    switch (s) {
    case CG__STAGE_NONE:
        return "none";
    case CG__STAGE_RULE:
        return "rule";
    case CG__STAGE_LIMIT:
        return "limit";
    case CG__STAGE_BAN:
        return "ban";
    case CG__STAGE_SOURCE:
        return "source";
    case CG__STAGE_PROXY:
        return "proxy";
    default:
        return "unknown";
    }
}

const char *cg__reject_reason_name(cg__reject_reason r)
{
    switch (r) {
    case CG__REJ_RULE:
        return "rule";
    case CG__REJ_DEFAULT:
        return "default";
    case CG__REJ_LIMIT:
        return "limit";
    case CG__REJ_BAN:
        return "ban";
    case CG__REJ_SOURCE_LIMIT:
        return "source_limit";
    case CG__REJ_SOURCE_RATE:
        return "source_rate";
    case CG__REJ_UNTRUSTED_PROXY:
        return "untrusted_proxy";
    case CG__REJ_PROXY_HEADER:
        return "proxy_header";
    default:
        return "unknown";
    }
}

static void refuse(cg__judgement *out, cg__stage stage, cg__reject_reason why)
{
    out->admit = false;
    out->stage = stage;
    out->reason = why;
}

/* The ban stage: a runtime ban in force covering the caller. */
static bool ban_stage(const cg__policy *p, const cg_cidr *addr, cg__judgement *out)
{
    if (p->bans == NULL || addr->family == 0 ||
        !cg__bans_match(p->bans, addr, p->now_s, p->count_hits, &out->ban))
        return true;
    refuse(out, CG__STAGE_BAN, CG__REJ_BAN);
    return false;
}

/* The rule stage: the listener's set, longest prefix first. Returns whether
 * the caller passes. */
static bool rule_stage(const cg__policy *p, const cg_cidr *addr, cg__judgement *out)
{
    if (p->set == NULL)
        return true;
    out->set = p->set;
    out->rule_action = cg_ruleset_lookup(p->set, addr, &out->rule);
    if (p->count_hits)
        cg_ruleset_count_hit(p->set, out->rule);
    if (out->rule_action == CG_ALLOW)
        return true;
    refuse(out, CG__STAGE_RULE, out->rule == CG_RULE_NONE ? CG__REJ_DEFAULT : CG__REJ_RULE);
    return false;
}

/* The source stage: the caller's source within its listener's limits. */
static bool source_stage(const cg__policy *p, const cg_cidr *addr, cg__judgement *out)
{
    if (p->sources == NULL || p->limits == NULL || !cg_source_limits_on(p->limits) ||
        addr->family == 0)
        return true;
    out->source = cg__sources_judge(p->sources, p->listener, p->limits, addr, p->now_ms,
                                    p->count_hits, &out->effect);
    if (out->source == CG__SRC_OK)
        return true;
    refuse(out, CG__STAGE_SOURCE,
           out->source == CG__SRC_RATE ? CG__REJ_SOURCE_RATE : CG__REJ_SOURCE_LIMIT);
    return false;
}

/* The limit stage: room under max_connections. */
static bool limit_stage(const cg__policy *p, cg__judgement *out)
{
    if (p->admission == NULL || !cg__admission_full(p->admission))
        return true;
    refuse(out, CG__STAGE_LIMIT, CG__REJ_LIMIT);
    return false;
}

void cg__policy_judge(const cg__policy *p, const cg_cidr *addr, cg__judgement *out)
{
    *out = (cg__judgement){
        .admit = true,
        .stage = CG__STAGE_NONE,
        .reason = CG__REJ_COUNT,
        .rule_action = CG_ALLOW,
        .set = NULL,
        .rule = CG_RULE_NONE,
        .source = CG__SRC_OK,
    };
    if (p->trusted != NULL) { /* the sender of a PROXY header */
        cg_rule_id id;
        if (addr->family == 0 || cg_ruleset_lookup(p->trusted, addr, &id) != CG_ALLOW)
            refuse(out, CG__STAGE_PROXY, CG__REJ_UNTRUSTED_PROXY);
        return;
    }
    if (ban_stage(p, addr, out) && rule_stage(p, addr, out) && source_stage(p, addr, out))
        limit_stage(p, out);
}

bool cg__policy_judge_sockaddr(const cg__policy *p, const struct sockaddr *sa, cg__judgement *out)
{
    cg_cidr a;
    if (cg_addr_from_sockaddr(sa, &a) != 0)
        a.family = 0; /* no family: every set answers its default */
    cg__policy_judge(p, &a, out);
    return out->admit;
}
