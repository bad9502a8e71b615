/* config_list.h — plain list files (one address or CIDR a line) into a rule
 * set (config_list.c). */
#ifndef CG_CONFIG_LIST_H
#define CG_CONFIG_LIST_H

#include <stddef.h>

#include "condgate/rules.h"
#include "diag.h"

/* cg__load_list: add every line of the plain list file `path` (text[0..len),
 * NUL-terminated) to rs with `action`. `key` ("allow_file"/"deny_file")
 * names the list in messages. Returns 0 or a negative code with the error
 * in d. One thread per call. */
int cg__load_list(const char *path, const char *text, size_t len, cg_action action, const char *key,
                  cg_ruleset *rs, cg__diag *d);

#endif /* CG_CONFIG_LIST_H */
