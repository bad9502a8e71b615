/* config_limits.h — the keys of the dynamic state (SPEC §11, §12, §14) and
 * the value syntax config.c shares with them (config_limits.c).
 *
 * config.c owns the sections, the key tables and the order of a load; it
 * hands the [gateway] keys never_ban, state_file, max_bans,
 * source_table_max and preview_callers, and the [listener:NAME] keys mode,
 * max_per_source, rate_per_source, source_prefix, ban_after, ban_ttl_s and
 * ban_ttl_max_s to the functions here, and calls the end-of-file checks
 * from its own end of the file.
 */
#ifndef CG_CONFIG_LIMITS_H
#define CG_CONFIG_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/config.h"
#include "diag.h"

/* What a key handler needs of the load: where errors go and how they name
 * the place. `section` points at the loader's "[name]" of the current
 * section, so it follows the load. */
typedef struct cg__keyctx {
    cg__diag *d;
    const char *path;    /* the INI file as given */
    size_t dirlen;       /* bytes of path that name its directory, with the '/' */
    const char *section; /* "[name]" of the current section */
} cg__keyctx;

/* cg__parse_decimal: a strict decimal number in s[0..len): digits only, no
 * sign, no leading zeros, at most 15 digits. Returns whether it is one. */
bool cg__parse_decimal(const char *s, size_t len, uint64_t *out);

/* cg__key_number: `value` of `key` as a whole number from min to max into
 * *out. Returns 0, or CG_EINVAL / CG_ERANGE with "FILE:LINE: ..." in kc->d.
 * The loading thread. */
int cg__key_number(const cg__keyctx *kc, const char *key, const char *value, uint32_t line,
                   uint64_t min, uint64_t max, uint64_t *out);

/* A callback for each item of a comma-separated list, trimmed, of `len`
 * bytes (not NUL-terminated). Returns 0 or a negative code with the error
 * in kc->d. */
typedef int (*cg__item_fn)(const cg__keyctx *kc, const char *key, const char *item, size_t len,
                           uint32_t line, void *arg);

/* cg__key_each_item: call fn for each item of the comma-separated `value`;
 * an empty item is an error. Returns 0 or the first error. The loading
 * thread. */
int cg__key_each_item(const cg__keyctx *kc, const char *key, const char *value, uint32_t line,
                      cg__item_fn fn, void *arg);

/* cg__key_resolve: a path named in the INI file, relative to the INI file's
 * directory unless absolute. Returns a new string (free with free()) or
 * NULL when out of memory. */
char *cg__key_resolve(const cg__keyctx *kc, const char *rel);

/* What the loader keeps of never_ban while it reads [gateway]. */
typedef struct cg__never_ban_build {
    size_t entries;     /* items given so far */
    uint32_t none_line; /* line of `never_ban = none`, 0 when not given */
} cg__never_ban_build;

/* cg__gateway_state_key: one of never_ban, state_file, max_bans,
 * source_table_max, preview_callers or takeover_socket (by name) in [gateway], into cfg.
 * `value` is not empty. Returns 0, a negative code with the error in kc->d,
 * or CG_ENOENT (nothing recorded) when `key` is none of them. The loading
 * thread. */
int cg__gateway_state_key(const cg__keyctx *kc, cg_config *cfg, cg__never_ban_build *nb,
                          const char *key, const char *value, uint32_t line);

/* cg__gateway_state_finish: at the end of the file, the default never_ban
 * set (127.0.0.1 and ::1) when the key was absent, then freeze the set.
 * `line` names the place of an out-of-memory error. Returns 0 or a negative
 * code with the error in kc->d. The loading thread. */
int cg__gateway_state_finish(const cg__keyctx *kc, cg_config *cfg, uint32_t line);

/* The lines of a listener's source keys, for the checks at the end of the
 * file (0: not given). */
typedef struct cg__limits_lines {
    uint32_t rate;
    uint32_t ban_after;
    uint32_t ban_ttl;
    uint32_t ban_ttl_max;
} cg__limits_lines;

/* cg__listener_limits_key: one of mode, max_per_source, rate_per_source,
 * source_prefix, ban_after, ban_ttl_s or ban_ttl_max_s (by name) in the
 * current [listener:NAME] section, into l, its line into *lines. `value` is
 * not empty. Returns 0, a negative code with the error in kc->d, or
 * CG_ENOENT (nothing recorded) when `key` is none of them. The loading
 * thread. */
int cg__listener_limits_key(const cg__keyctx *kc, cg_listener_conf *l, cg__limits_lines *lines,
                            const char *key, const char *value, uint32_t line);

/* cg__listener_limits_check: at the end of the file, the rules between a
 * listener's source keys: ban_after needs rate_per_source, and
 * ban_ttl_max_s is at least ban_ttl_s. Returns 0 or CG_EINVAL with the
 * error (at the later key's line) in kc->d. The loading thread. */
int cg__listener_limits_check(const cg__keyctx *kc, const cg_listener_conf *l,
                              const cg__limits_lines *lines);

#endif /* CG_CONFIG_LIMITS_H */
