/* bans_file.h — the state file: bans kept across restarts (SPEC §11).
 *
 * `[gateway] state_file = FILE` holds the ban table as JSON, one ban a line,
 * so a bad file is reported at its line and a million bans load without one
 * giant parse:
 *
 *     {"condgate_state": 1, "bans": [
 *     {"cidr": "198.51.100.0/24", "origin": "admin", "reason": "scan", "created": "2026-12-05T19:00:00Z", "expires": "2026-12-05T20:00:00Z", "hits": 3},
 *     {"cidr": "2001:db8::/32", ...}
 *     ]}
 *
 * The whole document is valid JSON (jq reads it); the reader insists on the
 * layout the writer makes. Every write goes to FILE.tmp, is fsynced, renamed
 * over FILE and the directory fsynced, so a crash at any instant leaves the
 * old file or the new one, never a torn one.
 *
 * The store is a writer thread with group commit: every change to the table
 * bumps its version; cg__bans_store_sync waits until a write that holds
 * that version is on disk, and one write serves every change made before it
 * started. So POST /bans answers 201 only for a ban that would survive a
 * crash, and a burst of bans costs a few writes, not one each.
 */
#ifndef CG_BANS_FILE_H
#define CG_BANS_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "bans.h"

/* Longest line of a state file the reader accepts (a ban line is < 512). */
#define CG_BANS_FILE_MAX_LINE 1024
/* Largest state file the reader accepts. */
#define CG_BANS_FILE_MAX_BYTES (1024u * 1024u * 1024u)

/* cg__bans_file_parse: the state file text[0..len) (named path in
 * messages) into table b: bans expired at now_s are skipped and counted in
 * *expired, the others added (origin, reason, times and hits as written) and
 * counted in *loaded. Returns 0, or CG_EINVAL / CG_ERANGE (more bans than
 * the table's bound) / CG_ENOMEM with "FILE:LINE: message" in err; then b
 * may hold part of the file (load into a fresh table). Any thread. */
int cg__bans_file_parse(const char *path, const char *text, size_t len, cg__bans *b,
                        int64_t now_s, size_t *loaded, size_t *expired, char *err,
                        size_t errlen);

/* cg__bans_file_load: read the file at path and parse it as above. A file
 * that does not exist is an empty table (0, nothing loaded). Returns 0 or a
 * CG_E* code with "FILE:LINE: message" in err (LINE 0: the file as a whole
 * could not be read). Any thread. */
int cg__bans_file_load(const char *path, cg__bans *b, int64_t now_s, size_t *loaded,
                       size_t *expired, char *err, size_t errlen);

/* cg__bans_file_write: write bans[0..n) to path as above (temporary file,
 * fsync, rename, fsync of the directory). Returns 0 or CG_EIO / CG_ENOMEM
 * with "FILE: message" in err; on failure the old file is untouched. Any
 * thread. */
int cg__bans_file_write(const char *path, const cg__ban *bans, size_t n, char *err,
                        size_t errlen);

/* cg__bans_file_format: the text cg__bans_file_write would write for
 * bans[0..n), in memory (for tests and the fuzz target): *out
 * (NUL-terminated, free with free()) and its length in *len. Returns 0 or
 * CG_ENOMEM. Any thread. */
int cg__bans_file_format(const cg__ban *bans, size_t n, char **out, size_t *len);

typedef struct cg__bans_store cg__bans_store;

/* cg__bans_store_start: a writer thread keeping path in step with table b
 * (which must outlive the store). Nothing is written until a change.
 * Returns 0 and *out, or CG_ENOMEM / CG_ESYS with the reason in err. */
int cg__bans_store_start(const char *path, cg__bans *b, cg__bans_store **out, char *err,
                         size_t errlen);

/* cg__bans_store_sync: block until the file on disk holds the table as of
 * `version` (cg__bans_version after the caller's change) or later. Returns 0,
 * or CG_EIO with the reason in err when the write that should have held it
 * failed (the change is in the table but not on disk). Any thread but the
 * writer's. */
int cg__bans_store_sync(cg__bans_store *s, uint64_t version, char *err, size_t errlen);

/* cg__bans_store_kick: the table changed and nobody waits (an expiry, an
 * auto-ban): write it soon. Any thread. */
void cg__bans_store_kick(cg__bans_store *s);

/* cg__bans_store_stop: write what changed since the last write, stop the
 * thread and free the store. Accepts NULL. */
void cg__bans_store_stop(cg__bans_store *s);

#endif /* CG_BANS_FILE_H */
