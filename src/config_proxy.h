/* config_proxy.h — the PROXY protocol keys of a [listener:NAME] section
 * (SPEC §13): accept_proxy, trusted_proxies, proxy_timeout_ms and
 * send_proxy (config_proxy.c).
 *
 * config.c owns the key tables and the order of a load; it hands these keys
 * to cg__listener_proxy_key as they are read and calls
 * cg__listener_proxy_finish for each listener at the end of the file, where
 * the rules between keys (and the backend) are checked.
 */
#ifndef CG_CONFIG_PROXY_H
#define CG_CONFIG_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "condgate/config.h"
#include "config_limits.h"

/* What the loader keeps of a listener's PROXY keys until the end of the
 * file (line 0: not given). */
typedef struct cg__proxy_lines {
    uint32_t send;          /* send_proxy */
    size_t trusted_entries; /* trusted_proxies items so far */
} cg__proxy_lines;

/* cg__listener_proxy_key: one of accept_proxy, trusted_proxies (repeats),
 * proxy_timeout_ms or send_proxy (by name) in the current [listener:NAME]
 * section, into l (trusted_proxies builds l->trusted_proxies, unfrozen, and
 * sets l->trusted_proxies_line on its first line), lines into *pl. `value`
 * is not empty. Returns 0, a negative code with the error in kc->d, or
 * CG_ENOENT (nothing recorded) when `key` is none of them. The loading
 * thread. */
int cg__listener_proxy_key(const cg__keyctx *kc, cg_listener_conf *l, cg__proxy_lines *pl,
                           const char *key, const char *value, uint32_t line);

/* cg__listener_proxy_finish: at the end of the file, the rules between a
 * listener's PROXY keys: accept_proxy needs trusted_proxies (error at the
 * section line), trusted_proxies needs accept_proxy (at its line), and
 * send_proxy needs a backend other than echo (at its line); then freezes
 * l->trusted_proxies. Returns 0, CG_EINVAL or CG_ENOMEM with the error in
 * kc->d. The loading thread. */
int cg__listener_proxy_finish(const cg__keyctx *kc, cg_listener_conf *l, const cg__proxy_lines *pl);

#endif /* CG_CONFIG_PROXY_H */
