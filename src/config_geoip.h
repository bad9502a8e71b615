/* config_geoip.h — the GeoIP keys of a [rules] section (SPEC §16;
 * config_geoip.c).
 *
 * config.c hands geoip_db, geoip_csv, allow_country, deny_country,
 * allow_asn and deny_asn to cg__geo_key, which only records them (keys may
 * come in any order). At the end of the file, before the sets freeze,
 * cg__geo_finish reads each set's databases and adds the networks of the
 * selected countries and ASNs.
 */
#ifndef CG_CONFIG_GEOIP_H
#define CG_CONFIG_GEOIP_H

#include <stdint.h>

#include "condgate/config.h"
#include "config_limits.h"

/* Bounds per rule set: databases named, ASNs selected. */
#define CG_GEO_MAX_DBS 64
#define CG_GEO_MAX_ASNS 4096

/* What a set's GeoIP keys asked for (opaque; NULL when none). */
typedef struct cg__geo_build cg__geo_build;

/* cg__geo_key: one of the six keys (by name) in the current rules section,
 * recorded in *gb (created on first use). `value` is not empty. Returns 0,
 * a negative code with the error in kc->d, or CG_ENOENT (nothing recorded)
 * when `key` is none of them. The loading thread. */
int cg__geo_key(const cg__keyctx *kc, cg__geo_build **gb, const char *key, const char *value,
                uint32_t line);

/* cg__geo_finish: read the databases of gb (NULL: nothing to do), add the
 * selected networks to rs (not frozen), append warnings for selectors that
 * match nothing to cfg->warnings, and set *summary to the set's line for
 * `-t` (a new string, or NULL when gb is NULL). `set_line` is the line of
 * the set's header. Returns 0 or a negative code with the error in kc->d.
 * The loading thread. */
int cg__geo_finish(const cg__keyctx *kc, cg__geo_build *gb, cg_ruleset *rs, cg_config *cfg,
                   uint32_t set_line, char **summary);

/* cg__geo_free: frees gb. Accepts NULL. */
void cg__geo_free(cg__geo_build *gb);

#endif /* CG_CONFIG_GEOIP_H */
