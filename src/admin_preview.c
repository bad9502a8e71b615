/* admin_preview.c — replaying recent callers through two generations with
 * the one judge, and listing who would flip. */
#include "admin_preview.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_json.h"
#include "log.h"
#include "policy.h"

/* The judge's time-independent stages for caller addr of listener l. */
static void judge(const cg__gen *gen, size_t l, cg__bans *bans, int64_t now_s,
                  const cg_cidr *addr, cg__judgement *out)
{
    const cg__policy p = {
        .bans = bans,
        .set = gen->cfg->rulesets[cg__gen_listener(gen, l)->ruleset],
        .now_s = now_s,
    };
    cg__policy_judge(&p, addr, out);
}

/* One side of a flip: verdict, stage, reason and the deciding rule. */
static void put_side(bool *oom, cJSON *o, const cg__judgement *j)
{
    char cidr[CG_CIDR_STRLEN], src[CG_LOG_SOURCE_STRLEN];
    cg_rule_info info;
    put_str(oom, o, "verdict", j->admit ? "allow" : "deny");
    put_str(oom, o, "stage", cg__stage_name(j->stage));
    put_str(oom, o, "reason",
            cg__reject_reason_name(!j->admit ? j->reason
                                   : j->rule != CG_RULE_NONE ? CG__REJ_RULE
                                                             : CG__REJ_DEFAULT));
    if (j->stage == CG__STAGE_BAN) {
        cJSON *r = put_obj(oom, o, "rule");
        snprintf(src, sizeof(src), "ban:%s", cg__ban_origin_name(j->ban.origin));
        put_str(oom, r, "cidr", cg_cidr_format(&j->ban.cidr, cidr, sizeof(cidr)));
        put_str(oom, r, "source", src);
    } else if (j->set != NULL && j->rule != CG_RULE_NONE &&
               cg_ruleset_rule(j->set, j->rule, &info) == 0) {
        cJSON *r = put_obj(oom, o, "rule");
        cg__log_format_source(&info, src, sizeof(src));
        put_str(oom, r, "cidr", cg_cidr_format(&info.cidr, cidr, sizeof(cidr)));
        put_str(oom, r, "action", cg_action_name(info.action));
        put_str(oom, r, "source", src);
    } else {
        put_str(oom, o, "rule", NULL);
    }
}

cJSON *cg__admin_preview(const cg__gen *now, const cg__gen *after, cg__runtime *rt)
{
    cg__recent_caller *callers = NULL;
    size_t n = 0;
    if (cg__recent_copy(cg__runtime_recent(rt), &callers, &n) != 0)
        return NULL;
    cg__bans *bans = cg__runtime_bans(rt);
    int64_t now_s = cg__runtime_now_s();
    bool oom = false;
    uint64_t flipped = 0;
    cJSON *root = cJSON_CreateObject();
    put_bool(&oom, root, "ok", true);
    put_bool(&oom, root, "dry_run", true);
    put_u64(&oom, root, "replayed", n);
    cJSON *flips = cJSON_CreateArray();
    for (size_t i = 0; i < n && !oom && flips != NULL; i++) {
        size_t l = callers[i].listener;
        cg__judgement a, b;
        if (l >= now->nlisteners || l >= after->nlisteners)
            continue;
        judge(now, l, bans, now_s, &callers[i].addr, &a);
        judge(after, l, bans, now_s, &callers[i].addr, &b);
        if (a.admit == b.admit)
            continue;
        if (++flipped > CG_PREVIEW_LIST_MAX)
            continue;
        char addr[CG_CIDR_STRLEN];
        cg_cidr host = callers[i].addr;
        cJSON *f = push_obj(&oom, flips);
        /* A host prefix prints with its /32 or /128: drop it. */
        char *slash = strchr(cg_cidr_format(&host, addr, sizeof(addr)), '/');
        if (slash != NULL)
            *slash = '\0';
        put_str(&oom, f, "addr", addr);
        put_str(&oom, f, "listener", cg__gen_listener(now, l)->name);
        put_side(&oom, put_obj(&oom, f, "now"), &a);
        put_side(&oom, put_obj(&oom, f, "after"), &b);
    }
    free(callers);
    put_u64(&oom, root, "would_flip", flipped);
    if (flips == NULL || root == NULL || !cJSON_AddItemToObject(root, "flips", flips)) {
        cJSON_Delete(flips);
        oom = true;
    }
    if (oom) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}
