/* fuzz_json.c — JSON rule files (cg__load_json).
 *
 * The input is the file. Beyond not crashing:
 *   - a refused file gives one line "rules.json:LINE: message" with LINE
 *     inside the file;
 *   - an accepted file holds no NUL byte, is JSON cJSON accepts too, holds
 *     exactly as many
 *     entries as its "allow", "deny" and "rules" name ("all" counting two),
 *     labels stay within their bound, and the frozen set passes the shared
 *     rule-set checks;
 *   - the line the loader records for each entry is where a string naming
 *     that prefix starts (checked on files without escapes, where the raw
 *     text of a string is its value).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "condgate/rules.h"
#include "config_json.h"
#include "fuzz_common.h"

#define ERR_LEN 1024

static const char path[] = "rules.json";

/* Entries one string of "allow"/"deny"/"cidr" adds. */
static size_t entries_of(const char *s)
{
    return strcmp(s, "all") == 0 ? 2 : 1;
}

/* Counts the entries the document names and checks its labels. */
static size_t model_count(const cJSON *root)
{
    size_t n = 0;
    FUZZ_CHECK(cJSON_IsObject(root), "accepted a top level that is not an object");
    for (const cJSON *m = root->child; m; m = m->next) {
        FUZZ_CHECK(cJSON_IsArray(m), "accepted \"%s\" that is not an array", m->string);
        if (strcmp(m->string, "rules") != 0) {
            FUZZ_CHECK(strcmp(m->string, "allow") == 0 || strcmp(m->string, "deny") == 0,
                       "accepted top-level key \"%s\"", m->string);
            for (const cJSON *it = m->child; it; it = it->next) {
                FUZZ_CHECK(cJSON_IsString(it), "accepted a non-string in \"%s\"", m->string);
                n += entries_of(it->valuestring);
            }
            continue;
        }
        for (const cJSON *r = m->child; r; r = r->next) {
            const cJSON *cidr = cJSON_GetObjectItemCaseSensitive(r, "cidr");
            const cJSON *action = cJSON_GetObjectItemCaseSensitive(r, "action");
            const cJSON *label = cJSON_GetObjectItemCaseSensitive(r, "label");
            FUZZ_CHECK(cJSON_IsString(cidr) && cJSON_IsString(action),
                       "accepted a rule without string \"cidr\" and \"action\"");
            FUZZ_CHECK(strcmp(action->valuestring, "allow") == 0 ||
                           strcmp(action->valuestring, "deny") == 0,
                       "accepted action \"%s\"", action->valuestring);
            if (label) {
                FUZZ_CHECK(cJSON_IsString(label) && strlen(label->valuestring) <= CG_LABEL_MAX,
                           "accepted a bad label");
                for (const char *c = label->valuestring; *c; c++)
                    FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f,
                               "accepted a label with control byte 0x%02x", (unsigned char)*c);
            }
            n += entries_of(cidr->valuestring);
        }
    }
    return n;
}

/* One string of the raw text: where it starts and what it holds. */
typedef struct raw_string {
    uint32_t line;
    const char *s;
    size_t len;
} raw_string;

/* The entry `info` was recorded at the line of a string that names it. */
static void check_entry_line(const cg_rule_info *info, const raw_string *strs, size_t n)
{
    char text[CG_CIDR_STRLEN];
    for (size_t i = 0; i < n; i++) {
        if (strs[i].line != info->line)
            continue;
        cg_cidr c;
        if (strs[i].len == 3 && memcmp(strs[i].s, "all", 3) == 0) {
            if (info->cidr.len == 0)
                return;
        } else if (cg_cidr_parse(strs[i].s, strs[i].len, &c, NULL, 0) == 0 &&
                   memcmp(&c, &info->cidr, sizeof c) == 0) {
            return;
        }
    }
    FUZZ_CHECK(false, "entry %s recorded at line %u, where no string names it",
               cg_cidr_format(&info->cidr, text, sizeof text), (unsigned)info->line);
}

static void check_lines(cg_ruleset *rs, const char *text, size_t len)
{
    if (memchr(text, '\\', len))
        return; /* escapes: raw text and values differ */
    raw_string *strs = NULL;
    size_t n = 0, cap = 0;
    uint32_t line = 1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n')
            line++;
        if (text[i] != '"')
            continue;
        const char *close = memchr(text + i + 1, '"', len - i - 1);
        if (!close)
            break;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            strs = realloc(strs, cap * sizeof *strs);
            FUZZ_CHECK(strs != NULL, "out of memory");
        }
        strs[n++] = (raw_string){line, text + i + 1, (size_t)(close - text - i - 1)};
        for (; text + i < close; i++)
            line += text[i] == '\n';
    }
    cg_ruleset_stats st;
    cg_ruleset_get_stats(rs, &st);
    for (size_t id = 0; id < st.v4 + st.v6; id++) {
        cg_rule_info info;
        FUZZ_CHECK(cg_ruleset_rule(rs, (cg_rule_id)id, &info) == 0, "entry %zu", id);
        check_entry_line(&info, strs, n);
    }
    free(strs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    uint32_t lines = fuzz_lines(text, size);
    char err[ERR_LEN];
    memset(err, 0xa5, sizeof err);
    cg__diag d = {err, sizeof err, 0};
    cg_ruleset *rs = NULL;
    FUZZ_CHECK(cg_ruleset_new("json", size & 1 ? CG_ALLOW : CG_DENY, &rs) == 0, "cg_ruleset_new");

    int rc = cg__load_json(path, text, size, rs, &d);
    if (rc) {
        FUZZ_CHECK(rc < 0 && d.code == rc, "returned %d, diag code %d", rc, d.code);
        fuzz_check_error(err, sizeof err, path, 1, lines);
    } else {
        FUZZ_CHECK(d.code == 0, "success with diag code %d", d.code);
        /* README: NUL bytes are refused, also inside strings, where cJSON
         * would silently cut the value short. */
        const char *nul = memchr(text, '\0', size);
        FUZZ_CHECK(nul == NULL, "accepted a file with a NUL byte at offset %zu (line %u)",
                   (size_t)(nul - text), (unsigned)fuzz_lines(text, (size_t)(nul - text)));
        cJSON *root = cJSON_ParseWithLength(text, size);
        FUZZ_CHECK(root != NULL, "the loader accepted what cJSON refuses");
        size_t want = model_count(root);
        cJSON_Delete(root);

        FUZZ_CHECK(cg_ruleset_freeze(rs) == 0, "freeze failed");
        cg_ruleset_stats st;
        cg_ruleset_get_stats(rs, &st);
        FUZZ_CHECK(st.added == want, "added %zu entries, the document names %zu", st.added, want);
        const char *files[1] = {path};
        fuzz_sources src = {files, &lines, 1, NULL};
        fuzz_check_ruleset(rs, &src);
        check_lines(rs, text, size);
    }
    cg_ruleset_free(rs);
    free(text);
    return 0;
}
