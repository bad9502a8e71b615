/* config_ini.h — INI text to section and key events (config_ini.c, inih).
 *
 * The parser knows the INI syntax and nothing of what sections and keys
 * mean: it hands each header and each key to the callbacks of a sink, which
 * config.c fills in.
 */
#ifndef CG_CONFIG_INI_H
#define CG_CONFIG_INI_H

#include <stddef.h>
#include <stdint.h>

#include "diag.h"

/* Where cg__ini_parse sends what it reads, in file order. Each callback
 * returns 0, or a negative code with the error already in the parse's diag,
 * which stops the parse. */
typedef struct cg__ini_sink {
    /* A "[name]" header; name[0..len) is the text between the brackets. */
    int (*section)(void *ctx, const char *name, size_t len, uint32_t line);
    /* A "key = value" line, the value trimmed by inih. */
    int (*key)(void *ctx, const char *key, const char *value, uint32_t line);
    void *ctx; /* the callbacks' first argument */
} cg__ini_sink;

/* cg__ini_parse: run inih over the INI text of `path` (text[0..len),
 * NUL-terminated), reporting headers and keys to sink. Every error, inih's
 * own included, ends up in d as "path:LINE: message". Returns 0 or a
 * negative code. *lines receives the number of lines read. One thread per
 * call. */
int cg__ini_parse(const char *path, const char *text, size_t len, const cg__ini_sink *sink,
                  cg__diag *d, uint32_t *lines);

#endif /* CG_CONFIG_INI_H */
