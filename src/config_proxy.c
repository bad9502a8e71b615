/* config_proxy.c — the PROXY protocol keys of a listener (SPEC §13):
 * accept_proxy, trusted_proxies, proxy_timeout_ms and send_proxy.
 *
 * Each value is checked on its own line as it is read. The rules between
 * keys (accept_proxy and trusted_proxies need each other; send_proxy needs a
 * real backend, which may come after it) wait for the end of the file,
 * where config.c calls cg__listener_proxy_finish.
 */
/* System headers first (see config_limits.c: src/limits.h shadows
 * <limits.h> on this file's include path). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_proxy.h"

/* proxy_timeout_ms: 1 ms to one day, as the other timeouts. */
#define PROXY_TIMEOUT_MAX 86400000u
/* Room for "trusted:" and a listener name. */
#define TRUSTED_NAME_MAX (sizeof "trusted:" + CG_CONFIG_MAX_NAME)

static const char *const accept_names[] = {"off", "v1", "v2", "any"};
static const char *const send_names[] = {"off", "v1", "v2"};

/* cg_accept_proxy_name: see config.h. Any thread. */
const char *cg_accept_proxy_name(unsigned bits)
{
    return bits < sizeof accept_names / sizeof accept_names[0] ? accept_names[bits] : "unknown";
}

/* cg_send_proxy_name: see config.h. Any thread. */
const char *cg_send_proxy_name(unsigned version)
{
    return version < sizeof send_names / sizeof send_names[0] ? send_names[version] : "unknown";
}

static int oom(const cg__keyctx *kc, uint32_t line)
{
    return cg__fail(kc->d, CG_ENOMEM, kc->path, line, "out of memory");
}

/* `value` as an index into names[0..n), or a "bad value" error naming
 * `expected`. */
static int pick(const cg__keyctx *kc, const char *key, const char *value, uint32_t line,
                const char *const *names, unsigned n, const char *expected, unsigned *out)
{
    char q[CG__QUOTE_MAX];
    for (unsigned i = 0; i < n; i++)
        if (strcmp(value, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return cg__fail(kc->d, CG_EINVAL, kc->path, line, "bad value %s for '%s' in %s: expected %s",
                    cg__quote(q, sizeof q, value, strlen(value), CG__QUOTE_EXCERPT), key,
                    kc->section, expected);
}

/* One trusted_proxies item into the listener's set; arg is the
 * cg__proxy_lines that counts them. */
static int trusted_item(const cg__keyctx *kc, const char *key, const char *item, size_t len,
                        uint32_t line, void *arg)
{
    void **a = arg;
    cg_listener_conf *l = a[0];
    cg__proxy_lines *pl = a[1];
    char why[CG__REASON_MAX] = "";
    cg_source src = {kc->path, line};

    if (pl->trusted_entries == CG_CONFIG_MAX_TRUSTED_PROXIES)
        return cg__fail(kc->d, CG_ERANGE, kc->path, line,
                        "'%s' in %s: more than %d entries; cover the load balancers with "
                        "shorter prefixes",
                        key, kc->section, CG_CONFIG_MAX_TRUSTED_PROXIES);
    int rc =
        cg_ruleset_add_text(l->trusted_proxies, item, len, CG_ALLOW, &src, NULL, why, sizeof why);
    if (rc == CG_EINVAL)
        return cg__fail(kc->d, rc, kc->path, line, "%s: %s", key, why);
    if (rc == CG_ERANGE)
        return cg__fail_set_full(kc->d, kc->path, line, cg_ruleset_name(l->trusted_proxies));
    if (rc)
        return oom(kc, line);
    pl->trusted_entries++;
    return 0;
}

/* `trusted_proxies = CIDR, ...` (repeats): allow entries of a default-deny
 * set named "trusted:NAME". */
static int trusted_key(const cg__keyctx *kc, cg_listener_conf *l, cg__proxy_lines *pl,
                       const char *key, const char *value, uint32_t line)
{
    if (!l->trusted_proxies) {
        char name[TRUSTED_NAME_MAX];
        snprintf(name, sizeof name, "trusted:%s", l->name);
        if (cg_ruleset_new(name, CG_DENY, &l->trusted_proxies))
            return oom(kc, line);
        l->trusted_proxies_line = line;
    }
    void *arg[2] = {l, pl};
    return cg__key_each_item(kc, key, value, line, trusted_item, arg);
}

/* cg__listener_proxy_key: see config_proxy.h. The loading thread. */
int cg__listener_proxy_key(const cg__keyctx *kc, cg_listener_conf *l, cg__proxy_lines *pl,
                           const char *key, const char *value, uint32_t line)
{
    uint64_t v = 0;
    int rc;

    if (strcmp(key, "accept_proxy") == 0)
        return pick(kc, key, value, line, accept_names, 4, "off, v1, v2 or any", &l->accept_proxy);
    if (strcmp(key, "trusted_proxies") == 0)
        return trusted_key(kc, l, pl, key, value, line);
    if (strcmp(key, "proxy_timeout_ms") == 0) {
        rc = cg__key_number(kc, key, value, line, 1, PROXY_TIMEOUT_MAX, &v);
        l->proxy_timeout_ms = rc ? l->proxy_timeout_ms : (uint32_t)v;
        return rc;
    }
    if (strcmp(key, "send_proxy") == 0) {
        pl->send = line;
        return pick(kc, key, value, line, send_names, 3, "off, v1 or v2", &l->send_proxy);
    }
    return CG_ENOENT;
}

/* cg__listener_proxy_finish: see config_proxy.h. The loading thread. */
int cg__listener_proxy_finish(const cg__keyctx *kc, cg_listener_conf *l, const cg__proxy_lines *pl)
{
    if (l->accept_proxy && !l->trusted_proxies)
        return cg__fail(kc->d, CG_EINVAL, kc->path, l->line,
                        "[listener:%s]: accept_proxy needs trusted_proxies (the load balancers "
                        "allowed to send a header)",
                        l->name);
    if (!l->accept_proxy && l->trusted_proxies)
        return cg__fail(kc->d, CG_EINVAL, kc->path, l->trusted_proxies_line,
                        "'trusted_proxies' in [listener:%s]: trusted_proxies has no effect "
                        "without accept_proxy (set accept_proxy = v1, v2 or any, or remove it)",
                        l->name);
    if (l->send_proxy && l->echo)
        return cg__fail(kc->d, CG_EINVAL, kc->path, pl->send,
                        "'send_proxy' in [listener:%s]: send_proxy needs a real backend: echo "
                        "has nobody to tell",
                        l->name);
    if (l->trusted_proxies && cg_ruleset_freeze(l->trusted_proxies))
        return oom(kc, l->trusted_proxies_line);
    return 0;
}
