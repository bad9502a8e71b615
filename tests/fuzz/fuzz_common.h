/* fuzz_common.h — the checks every fuzz target shares.
 *
 * A target feeds one parser; these helpers check what all of them promise
 * beyond not crashing: a failure is one line "FILE:LINE: message", and a
 * rule set that loaded freezes into counts that add up and a lookup table
 * that agrees with a brute-force longest-prefix match over its own entries.
 * A broken promise prints why and aborts, so libFuzzer keeps the input.
 */
#ifndef CONDGATE_FUZZ_COMMON_H
#define CONDGATE_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/rules.h"

/* libFuzzer's entry points, declared here for -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#if defined(__GNUC__) || defined(__clang__)
#define FUZZ_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define FUZZ_NORETURN __attribute__((noreturn))
#else
#define FUZZ_PRINTF(fmt, args)
#define FUZZ_NORETURN
#endif

/* fuzz_fail: report a broken invariant on stderr and abort. */
FUZZ_NORETURN void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    FUZZ_PRINTF(4, 5);

/* FUZZ_CHECK(cond, fmt, ...): abort with a message unless cond holds. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
    } while (0)

/* fuzz_text: a NUL-terminated copy of data[0..size) (the loaders want one).
 * Free with free(). Never NULL: aborts when out of memory. */
char *fuzz_text(const uint8_t *data, size_t size);

/* fuzz_make_tmpdir: create a private directory NAME.XXXXXX for a target's
 * files, in $CG_FUZZ_TMPDIR (run.sh sets it), else /dev/shm, else $TMPDIR,
 * else /tmp; its path goes to dir[0..len). Aborts on failure. */
void fuzz_make_tmpdir(char *dir, size_t len, const char *name);

/* fuzz_lines: how many lines a message may name in text[0..len): one more
 * than the number of newlines. */
uint32_t fuzz_lines(const char *text, size_t len);

/* fuzz_check_one_line: err is NUL-terminated within errlen, not empty, and
 * holds no control character (so it is one line). Returns its length. */
size_t fuzz_check_one_line(const char *err, size_t errlen);

/* fuzz_check_error: err is exactly one line "FILE:LINE: message" with FILE
 * equal to `file`, LINE a decimal from `min_line` to `max_line` and a
 * non-empty message. Returns LINE. */
uint32_t fuzz_check_error(const char *err, size_t errlen, const char *file, uint32_t min_line,
                          uint32_t max_line);

/* What check_ruleset may assume about where entries came from. */
typedef struct fuzz_sources {
    const char *const *files;  /* the only source files entries may name */
    const uint32_t *max_lines; /* lines of each file */
    size_t nfiles;             /* 0: do not check sources */
    const char *other_prefix;  /* other files allowed if they start with it */
} fuzz_sources;

/* fuzz_check_ruleset: a frozen set's counts add up (added = unique +
 * duplicates + conflicts), its entries are canonical and in address order,
 * conflicts name denied entries, and lookups and judged sockets give the
 * brute-force longest-prefix answer, with hit counters to match. Returns the
 * number of unique entries. */
size_t fuzz_check_ruleset(cg_ruleset *rs, const fuzz_sources *src);

/* fuzz_cidr_canonical: whether c is a prefix as the parsers hand them on:
 * a known family, a length in range, every bit past it zero (for IPv4, the
 * twelve unused bytes too), and no IPv4-mapped prefix (those become IPv4). */
bool fuzz_cidr_canonical(const cg_cidr *c);

#endif /* CONDGATE_FUZZ_COMMON_H */
