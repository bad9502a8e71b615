/* config_internal.h — private glue between the configuration loader files.
 *
 * config.c owns the meaning of sections and keys; config_ini.c turns the INI
 * text into section and key events through inih; config_json.c and
 * config_list.c add the entries of included files to a rule set. All of them
 * report the first error through one cg__diag. Only config_*.c include this.
 */
#ifndef CONDGATE_CONFIG_INTERNAL_H
#define CONDGATE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/config.h"
#include "condgate/rules.h"

#if defined(__GNUC__) || defined(__clang__)
#if defined(__MINGW32__)
/* mingw's "printf" archetype is msvcrt's; the build uses mingw's C99 stdio
 * (__USE_MINGW_ANSI_STDIO), whose formats are GNU's. */
#define CG__PRINTF(fmt, args) __attribute__((format(gnu_printf, fmt, args)))
#else
#define CG__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#endif
#else
#define CG__PRINTF(fmt, args)
#endif

/* The first error of a load: "FILE:LINE: message" in the caller's buffer.
 * Later errors are dropped, so the one the user sees is the first one found. */
typedef struct cg__diag {
    char *buf;
    size_t len;
    int code; /* 0 until an error is recorded */
} cg__diag;

/* cg__fail: record "FILE:LINE: message" unless an error is already recorded,
 * replacing control characters so the message stays one line, and bytes
 * that are not well-formed UTF-8 so it can go into JSON (the /reload answer,
 * json logs) as it is. Returns `code`
 * (or the code of the error already recorded) so callers can write
 * `return cg__fail(...)`. */
int cg__fail(cg__diag *d, int code, const char *file, uint32_t line, const char *fmt, ...)
    CG__PRINTF(5, 6);

/* Room for a quoted excerpt of user input (see cg__quote). */
#define CG__QUOTE_MAX 72

/* cg__quote: a printable excerpt of `len` bytes of `s` for messages, with
 * control bytes and every byte past ASCII escaped as \xHH and long input
 * cut with "...". buf must hold CG__QUOTE_MAX bytes. Returns buf. */
const char *cg__quote(char *buf, const char *s, size_t len);

/* cg__read_file: read a whole file into a new NUL-terminated buffer (free
 * with free()). Returns 0, CG_ENOENT, CG_EACCES, CG_EIO, CG_ERANGE (larger
 * than `max` bytes) or CG_ENOMEM; *sys_errno holds the errno of a failed
 * system call, or 0. */
int cg__read_file(const char *path, size_t max, char **data, size_t *len, int *sys_errno);

/* cg__utf8_seq: the length (1 to 4) of the well-formed UTF-8 sequence at
 * s[0..n), n > 0, or 0 when it is not one (a stray continuation byte, an
 * overlong form, a surrogate, past U+10FFFF, or cut short). */
size_t cg__utf8_seq(const unsigned char *s, size_t n);

/* cg__errno_text: a short, platform-independent description of an errno
 * value for messages ("no such file or directory"). Static storage. */
const char *cg__errno_text(int e);

/* cg__suggest: the candidate closest to `word` (at most two edits, ignoring
 * case), or NULL. `candidates` ends with NULL. */
const char *cg__suggest(const char *word, const char *const *candidates);

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
