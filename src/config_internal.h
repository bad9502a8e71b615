/* config_internal.h — private glue between the configuration loader files.
 *
 * config.c owns the meaning of sections and keys; config_ini.c turns the INI
 * text into section and key events through inih; config_json.c and
 * config_list.c add the entries of included files to a rule set. All of them
 * report the first error through one cg__diag (diag.h). Only config_*.c
 * include this.
 */
#ifndef CONDGATE_CONFIG_INTERNAL_H
#define CONDGATE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/config.h"
#include "condgate/rules.h"
#include "diag.h"

/* cg__load_json: add the entries of the JSON rule file `path`, whose text is
 * text[0..len) (NUL-terminated), to the unfrozen set rs. Returns 0 or a
 * negative code with the error in d. */
int cg__load_json(const char *path, const char *text, size_t len, cg_ruleset *rs, cg__diag *d);

/* cg__load_list: add every line of the plain list file `path` (text[0..len),
 * NUL-terminated) to rs with `action`. `key` ("allow_file"/"deny_file")
 * names the list in messages. Returns 0 or a negative code with the error
 * in d. */
int cg__load_list(const char *path, const char *text, size_t len, cg_action action, const char *key,
                  cg_ruleset *rs, cg__diag *d);

/* The INI loader state of config.c, driven by config_ini.c. */
typedef struct cg__loader cg__loader;

/* cg__loader_section: a "[name]" header of `len` bytes at `line`. Closes the
 * section before it. Returns 0 or a negative code with the error in d. */
int cg__loader_section(cg__loader *ld, const char *name, size_t len, uint32_t line);

/* cg__loader_key: a "key = value" line (value already trimmed by inih).
 * Returns 0 or a negative code with the error in d. */
int cg__loader_key(cg__loader *ld, const char *key, const char *value, uint32_t line);

/* cg__ini_parse: run inih over the INI text of `path` (text[0..len),
 * NUL-terminated), reporting headers and keys to ld. Every error, inih's own
 * included, ends up in d as "path:LINE: message". Returns 0 or a negative
 * code. *lines receives the number of lines read. */
int cg__ini_parse(const char *path, const char *text, size_t len, cg__loader *ld, cg__diag *d,
                  uint32_t *lines);

#endif /* CONDGATE_CONFIG_INTERNAL_H */
