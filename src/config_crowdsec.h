/* config_crowdsec.h — the [crowdsec] section (SPEC §15): url, api_key_file,
 * interval_ms and timeout_ms (config_crowdsec.c).
 *
 * config.c owns the section's header and key table and hands each key to
 * cg__crowdsec_key, then calls cg__crowdsec_finish at the end of the file.
 */
#ifndef CG_CONFIG_CROWDSEC_H
#define CG_CONFIG_CROWDSEC_H

#include <stddef.h>
#include <stdint.h>

#include "condgate/config.h"
#include "config_limits.h"

/* The lines of the section's keys, for the checks at the end (0: not
 * given). */
typedef struct cg__crowdsec_lines {
    uint32_t url;
    uint32_t key_file;
} cg__crowdsec_lines;

/* cg__crowdsec_open: the section's header at `line`: defaults into
 * cfg->crowdsec. A build without libcurl cannot run the client: CG_ENOTSUP
 * naming the line. Returns 0 or a negative code with the error in kc->d.
 * The loading thread. */
int cg__crowdsec_open(const cg__keyctx *kc, cg_config *cfg, uint32_t line);

/* cg__crowdsec_key: one of url, api_key_file, interval_ms, timeout_ms (by
 * name; config.c has checked it is one, given once, with a value). The key
 * file is read here; when other users may read it, a warning (without
 * FILE:LINE) goes into warning[0..wlen) (else warning[0] is '\0'). Returns
 * 0 or a negative code with the error in kc->d. The loading thread. */
int cg__crowdsec_key(const cg__keyctx *kc, cg_config *cfg, cg__crowdsec_lines *lines,
                     const char *key, const char *value, uint32_t line, char *warning, size_t wlen);

/* cg__crowdsec_finish: at the end of the file, url and api_key_file are
 * required. Returns 0 or CG_EINVAL with the error (at the section's line)
 * in kc->d. The loading thread. */
int cg__crowdsec_finish(const cg__keyctx *kc, const cg_config *cfg,
                        const cg__crowdsec_lines *lines);

/* cg__crowdsec_conf_free: free what the section holds. */
void cg__crowdsec_conf_free(cg_crowdsec_conf *cs);

#endif /* CG_CONFIG_CROWDSEC_H */
