/* config_json.h — JSON rule files (SPEC §3) into a rule set (config_json.c,
 * cJSON). */
#ifndef CG_CONFIG_JSON_H
#define CG_CONFIG_JSON_H

#include <stddef.h>

#include "condgate/rules.h"
#include "diag.h"

/* cg__load_json: add the entries of the JSON rule file `path`, whose text is
 * text[0..len) (NUL-terminated), to the unfrozen set rs. Returns 0 or a
 * negative code with the error in d. One thread per call. */
int cg__load_json(const char *path, const char *text, size_t len, cg_ruleset *rs, cg__diag *d);

#endif /* CG_CONFIG_JSON_H */
