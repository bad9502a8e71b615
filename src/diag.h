/* diag.h — the messages of the configuration loaders and of the CIDR parser:
 * the first error of a load as "FILE:LINE: message", excerpts of user input
 * that stay on one line, a "did you mean" guess, and reading a whole file
 * with errors a person can read.
 *
 * Nothing here knows a section, a key or a rule set: config.c, config_ini.c,
 * config_json.c, config_list.c and cidr.c all report through these.
 */
#ifndef CG_DIAG_H
#define CG_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
 * `return cg__fail(...)`. Any thread; one diag per thread. */
int cg__fail(cg__diag *d, int code, const char *file, uint32_t line, const char *fmt, ...)
    CG__PRINTF(5, 6);

/* cg__fail_set_full: "rule set 'SET' has more than N entries" (CG_ERANGE),
 * for a set that reached CG_RULESET_MAX_ENTRIES, through cg__fail. Any
 * thread; one diag per thread. */
int cg__fail_set_full(cg__diag *d, const char *file, uint32_t line, const char *set);

/* Room for a reason from the rule engine (cg_cidr_parse,
 * cg_ruleset_add_text) that a loader puts into a message. This is smaller
 * than CG_ERR_MAX on purpose: a reason quoting 64 bytes that each need an
 * escape is cut here, and the messages (and the model in
 * tests/fuzz/fuzz_list.c) depend on that cut. */
#define CG__REASON_MAX 256

/* How cg__quote cuts and escapes. The configuration's excerpts and the CIDR
 * parser's reasons have always differed, and both are pinned by tests. */
typedef enum cg__quote_style {
    /* 'TEXT' in single quotes; control bytes and bytes past ASCII as \xHH;
     * cut with "..." where the buffer (CG__QUOTE_MAX) runs out. */
    CG__QUOTE_EXCERPT,
    /* TEXT without quotes; tab, LF and CR as \t, \n and \r, other control
     * bytes and bytes past ASCII as \xHH; at most CG__QUOTE_CIDR_IN bytes of
     * input, then "...". The buffer holds CG__QUOTE_CIDR_MAX bytes. */
    CG__QUOTE_CIDR,
} cg__quote_style;

/* Room for an excerpt in CG__QUOTE_EXCERPT style. */
#define CG__QUOTE_MAX 72

/* Input bytes a CG__QUOTE_CIDR excerpt shows, and the room it needs. */
#define CG__QUOTE_CIDR_IN 64
#define CG__QUOTE_CIDR_MAX (CG__QUOTE_CIDR_IN * 4 + 4)

/* cg__quote: a printable excerpt of `len` bytes of `s` for messages, in
 * `style`, with a backslash written as two. buf holds `size` bytes: at
 * least the room the style names, or the excerpt is cut shorter than it
 * would be. Returns buf. Any thread. */
const char *cg__quote(char *buf, size_t size, const char *s, size_t len, cg__quote_style style);

/* cg__read_file: read a whole file into a new NUL-terminated buffer (free
 * with free()). Returns 0, CG_ENOENT, CG_EACCES, CG_EIO, CG_ERANGE (larger
 * than `max` bytes) or CG_ENOMEM; *sys_errno holds the errno of a failed
 * system call, or 0. Any thread. */
int cg__read_file(const char *path, size_t max, char **data, size_t *len, int *sys_errno);

/* cg__utf8_seq: the length (1 to 4) of the well-formed UTF-8 sequence at
 * s[0..n), n > 0, or 0 when it is not one (a stray continuation byte, an
 * overlong form, a surrogate, past U+10FFFF, or cut short). Any thread. */
size_t cg__utf8_seq(const unsigned char *s, size_t n);

/* cg__errno_text: a short, platform-independent description of an errno
 * value for messages ("no such file or directory"). Static storage. */
const char *cg__errno_text(int e);

/* cg__suggest: the candidate closest to `word` (at most two edits, ignoring
 * case), or NULL. `candidates` ends with NULL. Any thread. */
const char *cg__suggest(const char *word, const char *const *candidates);

#endif /* CG_DIAG_H */
