/* summary.c — the readable account of a loaded configuration (condgate -t).
 *
 * One line per thing, "what name key=value ...", so an operator can read it
 * and a script can grep it.
 */
#include <string.h>

#include "condgate/config.h"

#define ADMIN_ALLOW_SHOWN 8

static int name_width(const cg_config *cfg)
{
    size_t w = strlen("default");
    for (size_t i = 0; i < cfg->nrulesets; i++)
        if (strlen(cg_ruleset_name(cfg->rulesets[i])) > w)
            w = strlen(cg_ruleset_name(cfg->rulesets[i]));
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (strlen(cfg->listeners[i].name) > w)
            w = strlen(cfg->listeners[i].name);
    return (int)w;
}

static void print_admin(const cg_config *cfg, FILE *out)
{
    const cg_admin_conf *a = &cfg->admin;
    cg_ruleset_stats st;
    cg_rule_info info;
    char cidr[CG_CIDR_STRLEN];

    fprintf(out, "%-9s listen=%s allow=", "admin", a->enabled ? a->listen.text : "off");
    cg_ruleset_get_stats(a->allow, &st);
    size_t n = st.v4 + st.v6;
    for (size_t i = 0; i < n && i < ADMIN_ALLOW_SHOWN; i++) {
        if (cg_ruleset_rule(a->allow, (cg_rule_id)i, &info) != 0)
            break;
        fprintf(out, "%s%s%s", i ? "," : "", info.action == CG_DENY ? "!" : "",
                cg_cidr_format(&info.cidr, cidr, sizeof cidr));
    }
    if (n > ADMIN_ALLOW_SHOWN)
        fprintf(out, ",...(%zu in all)", n);
    if (n == 0)
        fputs("none", out);
    fprintf(out, " token=%s\n", a->token ? "set" : "none");
}

/* cg_listener_backends_text: see config.h. Any thread. */
const char *cg_listener_backends_text(const cg_listener_conf *lc, char *buf, size_t len)
{
    size_t off = 0;
    if (len == 0)
        return buf;
    buf[0] = '\0';
    if (lc->echo) {
        snprintf(buf, len, "echo");
        return buf;
    }
    for (size_t b = 0; b < lc->nbackends && off < len; b++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s", b ? "," : "", lc->backends[b].text);
    return buf;
}

/* cg_config_print: see config.h. */
int cg_config_print(const cg_config *cfg, FILE *out)
{
    int w = name_width(cfg);

    fprintf(out, "%-9s %s\n", "config", cfg->path);
    fprintf(out,
            "%-9s workers=%u max_connections=%u drain_timeout_ms=%u log_level=%s "
            "log_format=%s\n",
            "gateway", cfg->workers, cfg->max_connections, (unsigned)cfg->drain_timeout_ms,
            cg_log_level_name(cfg->log_level), cg_log_format_name(cfg->log_format));
    print_admin(cfg, out);

    for (size_t i = 0; i < cfg->nrulesets; i++) {
        const cg_ruleset *rs = cfg->rulesets[i];
        cg_ruleset_stats st;
        cg_ruleset_get_stats(rs, &st);
        fprintf(out,
                "%-9s %-*s default=%s ipv4=%zu ipv6=%zu added=%zu duplicates=%zu "
                "conflicts=%zu\n",
                "rules", w, cg_ruleset_name(rs), cg_action_name(cg_ruleset_default(rs)), st.v4,
                st.v6, st.added, st.duplicates, st.conflicts);
    }

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const cg_listener_conf *l = &cfg->listeners[i];
        char backends[CG_BACKENDS_STRLEN];
        fprintf(out, "%-9s %-*s bind=%s backend=%s", "listener", w, l->name, l->bind.text,
                cg_listener_backends_text(l, backends, sizeof(backends)));
        fprintf(out, " rules=%s connect_timeout_ms=%u idle_timeout_ms=%u prefilter=%s\n",
                cg_ruleset_name(cfg->rulesets[l->ruleset]), (unsigned)l->connect_timeout_ms,
                (unsigned)l->idle_timeout_ms, cg_prefilter_mode_name(l->prefilter));
    }
    return ferror(out) ? CG_EIO : 0;
}
