/* fuzz_list.c — plain list files (cg__load_list) against a model of the
 * format.
 *
 * The input holds one or two list files. Without a NUL byte it is one deny
 * list. Otherwise the bytes before the first NUL are an allow list and the
 * rest a deny list (which may hold more NUL bytes, which the loader must
 * refuse); both go into one rule set, so prefixes both allowed and denied,
 * duplicates and nested prefixes of both actions all occur.
 *
 * The model is the format as README.md states it: one address, CIDR or range
 * per line (a range's prefixes found here by splitting the address tree
 * from the root, not by cg__range_prefixes' walk), text after '#' or ';' ignored, blanks, tabs and
 * CR trimmed (a CR that does not end its line is an error), a UTF-8 BOM skipped, lines of at most
 * 1024 bytes, no NUL byte. It predicts the exact error line of a bad file, and for a good one every
 * entry of the frozen set: prefix, verdict (deny wins) and the first source kept.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condgate/config.h"
#include "condgate/rules.h"
#include "config_list.h"
#include "diag.h"
#include "fuzz_common.h"

#define ERR_LEN 1024

static const char *const paths[2] = {"allow.netset", "deny.netset"};

typedef struct want_entry {
    cg_cidr cidr;
    cg_action action;
    uint32_t file; /* index into paths */
    uint32_t line;
    size_t seq; /* insertion order */
} want_entry;

typedef struct model {
    want_entry *v;
    size_t n, cap;
    char err[ERR_LEN]; /* the expected error line */
} model;

static void push(model *m, const cg_cidr *c, cg_action a, uint32_t file, uint32_t line)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->v = realloc(m->v, m->cap * sizeof *m->v);
        FUZZ_CHECK(m->v != NULL, "out of memory");
    }
    m->v[m->n] = (want_entry){*c, a, file, line, m->n};
    m->n++;
}

/* The first (hi = false) or last address of prefix c, as 16 bytes. */
static void edge(const cg_cidr *c, bool hi, uint8_t out[16])
{
    unsigned width = c->family == 4 ? 32 : 128;
    memcpy(out, c->addr, 16);
    for (unsigned bit = c->len; hi && bit < width; bit++)
        out[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
}

/* The prefixes that cover exactly from..to: p is pushed whole when it lies
 * inside, split in two when it straddles an end, dropped when outside. */
static void cover(model *m, const cg_cidr *p, const uint8_t from[16], const uint8_t to[16],
                  cg_action a, uint32_t file, uint32_t line)
{
    uint8_t first[16], last[16];
    edge(p, false, first);
    edge(p, true, last);
    if (memcmp(last, from, 16) < 0 || memcmp(first, to, 16) > 0)
        return;
    if (memcmp(first, from, 16) >= 0 && memcmp(last, to, 16) <= 0) {
        push(m, p, a, file, line);
        return;
    }
    cg_cidr child = *p;
    child.len++;
    cover(m, &child, from, to, a, file, line);
    child.addr[p->len / 8] |= (uint8_t)(0x80 >> (p->len % 8));
    cover(m, &child, from, to, a, file, line);
}

/* A range line b..e with its first '-' at dash: 0 with the prefixes pushed,
 * or CG_EINVAL with the reason in why. */
static int model_range(model *m, const char *b, const char *dash, const char *e, cg_action a,
                       uint32_t file, uint32_t line, char *why, size_t whylen)
{
    cg_cidr end[2];
    const char *s[2] = {b, dash + 1};
    size_t n[2] = {(size_t)(dash - b), (size_t)(e - dash - 1)};
    for (int i = 0; i < 2; i++) {
        if (memchr(s[i], '/', n[i])) {
            snprintf(why, whylen, "a range runs from one address to another, without '/len'");
            return CG_EINVAL;
        }
        if (cg_cidr_parse(s[i], n[i], &end[i], why, whylen) != 0)
            return CG_EINVAL;
    }
    if (end[0].family != end[1].family) {
        snprintf(why, whylen, "a range's two ends must be of one family (IPv4 or IPv6)");
        return CG_EINVAL;
    }
    if (memcmp(end[0].addr, end[1].addr, 16) > 0) {
        snprintf(why, whylen, "a range must not end before it starts");
        return CG_EINVAL;
    }
    cg_cidr root = {.family = end[0].family, .len = 0};
    cover(m, &root, end[0].addr, end[1].addr, a, file, line);
    return 0;
}

/* model_file: what loading text[0..len) as list `file` should do. Returns
 * the expected code; on error m->err holds the expected line. */
static int model_file(model *m, const char *text, size_t len, uint32_t file)
{
    const char *path = paths[file];
    const char *key = file == 0 ? "allow_file" : "deny_file";
    cg_action action = file == 0 ? CG_ALLOW : CG_DENY;
    const char *nul = memchr(text, '\0', len);

    if (nul) {
        snprintf(m->err, sizeof m->err, "%s:%u: NUL byte in the line; is this a text file?", path,
                 (unsigned)fuzz_lines(text, (size_t)(nul - text)));
        return CG_EINVAL;
    }
    const char *p = text, *end = text + len;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    for (uint32_t line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *b = p, *e = nl ? nl : end;
        p = nl ? nl + 1 : end;
        if (e - b > CG_CONFIG_MAX_LIST_LINE) {
            snprintf(m->err, sizeof m->err, "%s:%u: line longer than %d bytes", path,
                     (unsigned)line, CG_CONFIG_MAX_LIST_LINE);
            return CG_ERANGE;
        }
        const char *cr = memchr(b, '\r', (size_t)(e - b));
        if (cr && cr + 1 != e) {
            snprintf(m->err, sizeof m->err,
                     "%s:%u: carriage return inside the line; save the file with LF or CRLF "
                     "line ends",
                     path, (unsigned)line);
            return CG_EINVAL;
        }
        const char *comment = b;
        while (comment < e && *comment != '#' && *comment != ';')
            comment++;
        e = comment;
        while (b < e && strchr(" \t\r", *b))
            b++;
        while (e > b && strchr(" \t\r", e[-1]))
            e--;
        if (b == e)
            continue;

        cg_cidr c;
        char why[256];
        if (e - b == 3 && memcmp(b, "all", 3) == 0) {
            memset(&c, 0, sizeof c);
            c.family = 4;
            push(m, &c, action, file, line);
            c.family = 6;
            push(m, &c, action, file, line);
            continue;
        }
        const char *dash = memchr(b, '-', (size_t)(e - b));
        if (dash) {
            if (model_range(m, b, dash, e, action, file, line, why, sizeof why) != 0) {
                char q[CG__QUOTE_MAX];
                snprintf(m->err, sizeof m->err, "%s:%u: %s: range %s: %s", path, (unsigned)line,
                         key, cg__quote(q, sizeof q, b, (size_t)(e - b), CG__QUOTE_EXCERPT), why);
                return CG_EINVAL;
            }
            continue;
        }
        if (cg_cidr_parse(b, (size_t)(e - b), &c, why, sizeof why) != 0) {
            snprintf(m->err, sizeof m->err, "%s:%u: %s: %s", path, (unsigned)line, key, why);
            return CG_EINVAL;
        }
        push(m, &c, action, file, line);
    }
    return 0;
}

static int by_prefix_then_seq(const void *pa, const void *pb)
{
    const want_entry *a = pa, *b = pb;
    if (a->cidr.family != b->cidr.family)
        return a->cidr.family < b->cidr.family ? -1 : 1;
    int r = memcmp(a->cidr.addr, b->cidr.addr, 16);
    if (r)
        return r;
    if (a->cidr.len != b->cidr.len)
        return a->cidr.len < b->cidr.len ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Compares the frozen set with the model: same unique prefixes in order,
 * deny wherever a deny was written, the first source of the kept action,
 * and the duplicate and conflict counts. */
static void compare(cg_ruleset *rs, model *m)
{
    char text[CG_CIDR_STRLEN];
    cg_ruleset_stats st;
    size_t dups = 0, conflicts = 0, k = 0;

    if (m->n > 1)
        qsort(m->v, m->n, sizeof *m->v, by_prefix_then_seq);
    cg_ruleset_get_stats(rs, &st);
    FUZZ_CHECK(st.added == m->n, "added %zu entries, the file holds %zu", st.added, m->n);
    for (size_t i = 0; i < m->n;) {
        size_t j = i, allows = 0, denies = 0;
        const want_entry *first_allow = NULL, *first_deny = NULL;
        for (; j < m->n && m->v[j].cidr.len == m->v[i].cidr.len &&
               m->v[j].cidr.family == m->v[i].cidr.family &&
               memcmp(m->v[j].cidr.addr, m->v[i].cidr.addr, 16) == 0;
             j++) {
            if (m->v[j].action == CG_ALLOW && !allows++)
                first_allow = &m->v[j];
            if (m->v[j].action == CG_DENY && !denies++)
                first_deny = &m->v[j];
        }
        dups += (allows ? allows - 1 : 0) + (denies ? denies - 1 : 0);
        conflicts += allows && denies;
        const want_entry *kept = first_deny ? first_deny : first_allow;

        cg_rule_info info;
        FUZZ_CHECK(cg_ruleset_rule(rs, (cg_rule_id)k, &info) == 0, "entry %zu missing (%s)", k,
                   cg_cidr_format(&kept->cidr, text, sizeof text));
        FUZZ_CHECK(memcmp(&info.cidr, &kept->cidr, sizeof info.cidr) == 0,
                   "entry %zu is %s, the model has %s", k,
                   cg_cidr_format(&info.cidr, text, sizeof text),
                   cg_cidr_format(&kept->cidr, (char[CG_CIDR_STRLEN]){0}, CG_CIDR_STRLEN));
        FUZZ_CHECK(info.action == kept->action, "%s: %s, but the model says %s",
                   cg_cidr_format(&info.cidr, text, sizeof text), cg_action_name(info.action),
                   cg_action_name(kept->action));
        FUZZ_CHECK(strcmp(info.file, paths[kept->file]) == 0 && info.line == kept->line,
                   "%s kept source %s:%u, the first was %s:%u",
                   cg_cidr_format(&info.cidr, text, sizeof text), info.file, (unsigned)info.line,
                   paths[kept->file], (unsigned)kept->line);
        k++;
        i = j;
    }
    FUZZ_CHECK(st.v4 + st.v6 == k, "%zu unique entries, the model has %zu", st.v4 + st.v6, k);
    FUZZ_CHECK(st.duplicates == dups && st.conflicts == conflicts,
               "duplicates %zu conflicts %zu, the model says %zu and %zu", st.duplicates,
               st.conflicts, dups, conflicts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    const uint8_t *part[2] = {NULL, data};
    size_t plen[2] = {0, size};
    size_t nparts = 1;
    if (nul) {
        part[0] = data;
        plen[0] = (size_t)(nul - data);
        part[1] = nul + 1;
        plen[1] = size - plen[0] - 1;
        nparts = 2;
    }

    cg_ruleset *rs = NULL;
    FUZZ_CHECK(cg_ruleset_new("list", size & 1 ? CG_ALLOW : CG_DENY, &rs) == 0, "cg_ruleset_new");
    model m;
    memset(&m, 0, sizeof m);
    uint32_t lines[2] = {0, 0};
    int rc = 0;

    for (size_t f = 2 - nparts; f < 2 && rc == 0; f++) {
        char *text = fuzz_text(part[f], plen[f]);
        char err[ERR_LEN];
        memset(err, 0xa5, sizeof err);
        cg__diag d = {err, sizeof err, 0};
        lines[f] = fuzz_lines(text, plen[f]);

        int want = model_file(&m, text, plen[f], (uint32_t)f);
        rc = cg__load_list(paths[f], text, plen[f], f == 0 ? CG_ALLOW : CG_DENY,
                           f == 0 ? "allow_file" : "deny_file", rs, &d);
        FUZZ_CHECK(rc == want, "%s: returned %d, the model expects %d (%s)", paths[f], rc, want,
                   want ? m.err : "success");
        if (rc) {
            FUZZ_CHECK(d.code == rc, "diag code %d, returned %d", d.code, rc);
            fuzz_check_error(err, sizeof err, paths[f], 1, lines[f]);
            FUZZ_CHECK(strcmp(err, m.err) == 0, "error \"%s\", the model expects \"%s\"", err,
                       m.err);
        }
        free(text);
    }

    if (rc == 0) {
        FUZZ_CHECK(cg_ruleset_freeze(rs) == 0, "freeze failed");
        const char *files[2] = {paths[0], paths[1]};
        fuzz_sources src = {files, lines, 2, NULL};
        fuzz_check_ruleset(rs, &src);
        compare(rs, &m);
    }
    free(m.v);
    cg_ruleset_free(rs);
    return 0;
}
