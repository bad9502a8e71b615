/* config_list.c — plain list files (FireHOL, ipdeny, Spamhaus DROP) into a
 * rule set.
 *
 * One address, CIDR or range ("a.b.c.d-e.f.g.h", IPv6 too: the smallest set
 * of prefixes that covers exactly the range) per line; blank lines and text
 * after '#' or ';' are
 * ignored; spaces, tabs and '\r' around an entry are trimmed; a '\r' that
 * does not end its line is an error. Lists of a
 * million lines are routine, so the file is scanned in place: no copy, no
 * allocation and no stdio per line.
 */
#include "config_list.h"

#include <stdio.h>
#include <string.h>

#include "cidr.h"
#include "condgate/config.h"

/* first_nul_line: the line holding the first NUL byte of text[0..len). */
static uint32_t first_nul_line(const char *text, size_t len)
{
    const char *nul = memchr(text, '\0', len);
    uint32_t line = 1;
    for (const char *p = text; (p = memchr(p, '\n', (size_t)(nul - p))) != NULL; p++)
        line++;
    return line;
}

typedef struct range_add {
    cg_ruleset *rs;
    cg_action action;
    const cg_source *src;
} range_add;

static int add_range_prefix(void *arg, const cg_cidr *prefix)
{
    range_add *ra = arg;
    return cg_ruleset_add(ra->rs, prefix, ra->action, ra->src, NULL);
}

/* One end of a range: a plain address, no "/len". */
static int range_end(const char *s, size_t n, cg_cidr *out, char *why, size_t whylen)
{
    if (memchr(s, '/', n)) {
        snprintf(why, whylen, "a range runs from one address to another, without '/len'");
        return CG_EINVAL;
    }
    return cg_cidr_parse(s, n, out, why, whylen);
}

/* add_range: the line b..e holds '-' at dash: add the prefixes that cover
 * the range exactly. CG_EINVAL with the reason in why. */
static int add_range(cg_ruleset *rs, const char *b, const char *dash, const char *e,
                     cg_action action, const cg_source *src, char *why, size_t whylen)
{
    cg_cidr from, to;
    int rc = range_end(b, (size_t)(dash - b), &from, why, whylen);
    if (rc == 0)
        rc = range_end(dash + 1, (size_t)(e - dash - 1), &to, why, whylen);
    if (rc)
        return rc;
    range_add ra = {rs, action, src};
    return cg__range_prefixes(&from, &to, add_range_prefix, &ra, why, whylen);
}

/* cg__load_list: see config_list.h. One thread per call. */
int cg__load_list(const char *path, const char *text, size_t len, cg_action action, const char *key,
                  cg_ruleset *rs, cg__diag *d)
{
    char why[CG__REASON_MAX];
    char q[CG__QUOTE_MAX];
    const char *p = text;
    const char *end = text + len;
    cg_source src = {path, 0};

    if (memchr(text, '\0', len))
        return cg__fail(d, CG_EINVAL, path, first_nul_line(text, len),
                        "NUL byte in the line; is this a text file?");
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        const char *b = p;
        p = nl ? nl + 1 : end;
        src.line++;

        if (e - b > CG_CONFIG_MAX_LIST_LINE)
            return cg__fail(d, CG_ERANGE, path, src.line, "line longer than %d bytes",
                            CG_CONFIG_MAX_LIST_LINE);
        /* A carriage return that does not end the line: with classic Mac
         * line ends the whole list is one line, and a list that starts
         * with a comment would silently hold nothing. */
        const char *cr = memchr(b, '\r', (size_t)(e - b));
        if (cr && cr + 1 != e)
            return cg__fail(d, CG_EINVAL, path, src.line,
                            "carriage return inside the line; save the file with LF or CRLF "
                            "line ends");
        for (const char *c = b; c < e; c++) {
            if (*c == '#' || *c == ';') {
                e = c;
                break;
            }
        }
        while (b < e && (*b == ' ' || *b == '\t' || *b == '\r'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            e--;
        if (b == e)
            continue;

        const char *dash = memchr(b, '-', (size_t)(e - b));
        int rc =
            dash ? add_range(rs, b, dash, e, action, &src, why, sizeof why)
                 : cg_ruleset_add_text(rs, b, (size_t)(e - b), action, &src, NULL, why, sizeof why);
        if (rc == CG_EINVAL && dash)
            return cg__fail(d, rc, path, src.line, "%s: range %s: %s", key,
                            cg__quote(q, sizeof q, b, (size_t)(e - b), CG__QUOTE_EXCERPT), why);
        if (rc == CG_EINVAL)
            return cg__fail(d, rc, path, src.line, "%s: %s", key, why);
        if (rc == CG_ERANGE)
            return cg__fail_set_full(d, path, src.line, cg_ruleset_name(rs));
        if (rc)
            return cg__fail(d, rc, path, src.line, "%s: %s: %s", key,
                            cg__quote(q, sizeof q, b, (size_t)(e - b), CG__QUOTE_EXCERPT),
                            cg_strerror(rc));
    }
    return 0;
}
