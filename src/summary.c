/* summary.c — the readable account of a loaded configuration (condgate -t).
 *
 * One line per thing, "what name key=value ...", so an operator can read it
 * and a script can grep it.
 */
#include <string.h>

#include "condgate/config.h"

#define ADMIN_ALLOW_SHOWN 8 /* also of never_ban and trusted_proxies */

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

/* The first entries of a small set ("!" before a deny), "...(N in all)"
 * past them, or "none". */
static void print_entries(const cg_ruleset *rs, FILE *out)
{
    cg_ruleset_stats st;
    cg_rule_info info;
    char cidr[CG_CIDR_STRLEN];

    cg_ruleset_get_stats(rs, &st);
    size_t n = st.v4 + st.v6;
    for (size_t i = 0; i < n && i < ADMIN_ALLOW_SHOWN; i++) {
        if (cg_ruleset_rule(rs, (cg_rule_id)i, &info) != 0)
            break;
        fprintf(out, "%s%s%s", i ? "," : "", info.action == CG_DENY ? "!" : "",
                cg_cidr_format(&info.cidr, cidr, sizeof cidr));
    }
    if (n > ADMIN_ALLOW_SHOWN)
        fprintf(out, ",...(%zu in all)", n);
    if (n == 0)
        fputs("none", out);
}

static void print_admin(const cg_config *cfg, FILE *out)
{
    const cg_admin_conf *a = &cfg->admin;

    fprintf(out, "%-9s listen=%s allow=", "admin", a->enabled ? a->listen.text : "off");
    print_entries(a->allow, out);
    fprintf(out, " token=%s\n", a->token ? "set" : "none");
}

/* The gateway's dynamic state: bans, sources, the preview ring. */
static void print_state(const cg_config *cfg, FILE *out)
{
    fprintf(out, "%-9s state_file=%s takeover_socket=%s max_bans=%u never_ban=", "gateway",
            cfg->state_file ? cfg->state_file : "none",
            cfg->takeover_socket ? cfg->takeover_socket : "off", (unsigned)cfg->max_bans);
    print_entries(cfg->never_ban, out);
    fprintf(out, " source_table_max=%u preview_callers=%u\n", (unsigned)cfg->source_table_max,
            (unsigned)cfg->preview_callers);
}

/* A rate as "N/Ws", the window in whole seconds as the loader keeps it. */
static void print_rate(FILE *out, const char *key, const cg_rate *r)
{
    fprintf(out, " %s=%u/%us", key, (unsigned)r->count, (unsigned)(r->window_ms / 1000u));
}

/* A listener's mode and source limits, only where they differ from the
 * defaults (source_prefix and the ban durations where they apply). */
static void print_limits(const cg_listener_conf *l, FILE *out)
{
    const cg_source_limits *s = &l->sources;
    if (l->mode != CG_MODE_ENFORCE)
        fprintf(out, " mode=%s", cg_listener_mode_name(l->mode));
    if (s->max_per_source)
        fprintf(out, " max_per_source=%u", (unsigned)s->max_per_source);
    if (s->rate.count)
        print_rate(out, "rate_per_source", &s->rate);
    if (cg_source_limits_on(s))
        fprintf(out, " source_prefix=%u,%u", (unsigned)s->prefix4, (unsigned)s->prefix6);
    if (s->ban_after.count) {
        print_rate(out, "ban_after", &s->ban_after);
        fprintf(out, " ban_ttl_s=%u..%u", (unsigned)s->ban_ttl_s, (unsigned)s->ban_ttl_max_s);
    }
}

/* A listener's PROXY protocol keys, only where they are on. */
static void print_proxy(const cg_listener_conf *l, FILE *out)
{
    if (l->accept_proxy) {
        fprintf(out, " accept_proxy=%s trusted_proxies=", cg_accept_proxy_name(l->accept_proxy));
        print_entries(l->trusted_proxies, out);
        fprintf(out, " proxy_timeout_ms=%u", (unsigned)l->proxy_timeout_ms);
    }
    if (l->send_proxy)
        fprintf(out, " send_proxy=%s", cg_send_proxy_name(l->send_proxy));
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
    print_state(cfg, out);
    print_admin(cfg, out);
    if (cfg->crowdsec.enabled)
        fprintf(out, "%-9s url=%s interval_ms=%u timeout_ms=%u key_file=%s\n", "crowdsec",
                cfg->crowdsec.url, (unsigned)cfg->crowdsec.interval_ms,
                (unsigned)cfg->crowdsec.timeout_ms, cfg->crowdsec.key_file);

    for (size_t i = 0; i < cfg->nrulesets; i++) {
        const cg_ruleset *rs = cfg->rulesets[i];
        cg_ruleset_stats st;
        cg_ruleset_get_stats(rs, &st);
        fprintf(out,
                "%-9s %-*s default=%s ipv4=%zu ipv6=%zu added=%zu duplicates=%zu "
                "conflicts=%zu\n",
                "rules", w, cg_ruleset_name(rs), cg_action_name(cg_ruleset_default(rs)), st.v4,
                st.v6, st.added, st.duplicates, st.conflicts);
        if (cfg->geoip && cfg->geoip[i])
            fprintf(out, "%-9s %-*s %s\n", "geoip", w, cg_ruleset_name(rs), cfg->geoip[i]);
    }

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const cg_listener_conf *l = &cfg->listeners[i];
        char backends[CG_BACKENDS_STRLEN];
        fprintf(out, "%-9s %-*s bind=%s backend=%s", "listener", w, l->name, l->bind.text,
                cg_listener_backends_text(l, backends, sizeof(backends)));
        fprintf(out, " rules=%s connect_timeout_ms=%u idle_timeout_ms=%u prefilter=%s",
                cg_ruleset_name(cfg->rulesets[l->ruleset]), (unsigned)l->connect_timeout_ms,
                (unsigned)l->idle_timeout_ms, cg_prefilter_mode_name(l->prefilter));
        print_limits(l, out);
        print_proxy(l, out);
        fputc('\n', out);
    }
    return ferror(out) ? CG_EIO : 0;
}
