/* config_ini.c — the INI text to section and key events, through inih.
 *
 * inih reads through our reader, which hands it one line of the in-memory
 * file at a time. That lets us count lines (Debian's inih gives the handler
 * no line number), refuse a line that does not fit inih's buffer instead of
 * letting inih split it, refuse NUL bytes, and see section headers (inih
 * reports none, and nothing at all for an empty section). The reader gives
 * inih every line without its leading blanks, so inih never takes a line for
 * a multi-line continuation, whichever way it was built.
 */
#include "config_ini.h"

#include <stdbool.h>
#include <string.h>

#include <ini.h>

#include "condgate/common.h"

typedef struct ini_stream {
    const char *path;
    const char *pos; /* start of the next line */
    const char *end;
    uint32_t line; /* the line last handed to inih */
    const cg__ini_sink *sink;
    cg__diag *d;
    uint32_t fail_line; /* line of the first error, 0 while none */
    char section[64];   /* the section inih should be in, for a sanity check */
} ini_stream;

static bool is_blank(char c)
{
    /* The set isspace() accepts in the C locale, as inih trims with it. */
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* find_stop: the first character of [s, e) that is in `chars`, or the start
 * of an inline comment (';' after a blank) — inih's own rule — or e. */
static const char *find_stop(const char *s, const char *e, const char *chars)
{
    bool was_blank = false;
    for (; s < e; s++) {
        if (chars && strchr(chars, *s))
            return s;
        if (was_blank && *s == ';')
            return s;
        was_blank = is_blank(*s);
    }
    return e;
}

static int stream_fail(ini_stream *s, int code)
{
    if (!s->fail_line)
        s->fail_line = s->line;
    return code;
}

/* section_line: a trimmed line starting with '['. Reports the header to the
 * sink and writes the line inih should see into str. */
static int section_line(ini_stream *s, const char *b, const char *e, char *str, int num)
{
    char q[CG__QUOTE_MAX];
    const char *close = find_stop(b + 1, e, "]");
    if (close == e || *close != ']')
        return stream_fail(s,
                           cg__fail(s->d, CG_EINVAL, s->path, s->line,
                                    "syntax error: section header %s has no closing ']'",
                                    cg__quote(q, sizeof q, b, (size_t)(e - b), CG__QUOTE_EXCERPT)));
    const char *rest = close + 1;
    while (rest < e && is_blank(*rest))
        rest++;
    if (rest < e && *rest != ';' && *rest != '#')
        return stream_fail(
            s, cg__fail(s->d, CG_EINVAL, s->path, s->line,
                        "syntax error: unexpected text %s after the section header",
                        cg__quote(q, sizeof q, rest, (size_t)(e - rest), CG__QUOTE_EXCERPT)));
    size_t nlen = (size_t)(close - (b + 1));
    int rc = s->sink->section(s->sink->ctx, b + 1, nlen, s->line);
    if (rc)
        return stream_fail(s, rc);
    /* The loader accepts only names much shorter than inih's section buffer
     * (and than ours), so inih keeps the whole name. */
    if (nlen + 4 > (size_t)num || nlen >= sizeof s->section)
        return stream_fail(s,
                           cg__fail(s->d, CG_EINVAL, s->path, s->line, "section name is too long"));
    str[0] = '[';
    memcpy(str + 1, b + 1, nlen);
    memcpy(str + 1 + nlen, "]\n", 3);
    memcpy(s->section, b + 1, nlen);
    s->section[nlen] = '\0';
    return 0;
}

/* long_line: the error for a line that does not fit inih's buffer, with
 * advice that fits the key. */
static int long_line(ini_stream *s, const char *b, const char *e, int num)
{
    const char *eq = find_stop(b, e, "=:");
    const char *k = eq;
    while (k > b && is_blank(k[-1]))
        k--;
    size_t klen = (size_t)(k - b);
    bool rules = strncmp(s->section, "rules", 5) == 0;
    bool list =
        (klen == 5 && memcmp(b, "allow", 5) == 0) || (klen == 4 && memcmp(b, "deny", 4) == 0);
    bool backend = klen == 7 && memcmp(b, "backend", 7) == 0;

    if (list && rules)
        return stream_fail(s, cg__fail(s->d, CG_ERANGE, s->path, s->line,
                                       "line longer than %d characters; split the list over "
                                       "repeated '%.*s =' keys or use %.*s_file",
                                       num - 2, (int)klen, b, (int)klen, b));
    if (list || backend)
        return stream_fail(s, cg__fail(s->d, CG_ERANGE, s->path, s->line,
                                       "line longer than %d characters; split the list over "
                                       "repeated '%.*s =' keys",
                                       num - 2, (int)klen, b));
    return stream_fail(s, cg__fail(s->d, CG_ERANGE, s->path, s->line,
                                   "line longer than %d characters, the limit of the INI "
                                   "reader",
                                   num - 2));
}

/* reader: inih's fgets. Returns str holding the next line, or NULL at the
 * end of the text or after an error (which then is in s->d). */
static char *reader(char *str, int num, void *stream)
{
    ini_stream *s = stream;
    char q[CG__QUOTE_MAX];

    if (s->fail_line || s->pos >= s->end || num < 4)
        return NULL;
    const char *b = s->pos;
    const char *nl = memchr(b, '\n', (size_t)(s->end - b));
    const char *e = nl ? nl : s->end;
    s->pos = nl ? nl + 1 : s->end;
    s->line++;

    if (memchr(b, '\0', (size_t)(e - b))) {
        stream_fail(s, cg__fail(s->d, CG_EINVAL, s->path, s->line,
                                "NUL byte in the line; is this a text file?"));
        return NULL;
    }
    /* A carriage return that does not end the line: a file with classic
     * Mac line ends reads as one line, and if that starts with ';' the whole
     * configuration would silently be a comment. */
    const char *cr = memchr(b, '\r', (size_t)(e - b));
    if (cr && cr + 1 != e) {
        stream_fail(s, cg__fail(s->d, CG_EINVAL, s->path, s->line,
                                "carriage return inside the line; save the file with LF or "
                                "CRLF line ends"));
        return NULL;
    }
    if (s->line == 1 && e - b >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0)
        b += 3; /* UTF-8 byte order mark */
    bool indented = b < e && is_blank(*b);
    while (b < e && is_blank(*b))
        b++;
    while (e > b && is_blank(e[-1]))
        e--;

    if (b == e || *b == ';' || *b == '#') {
        /* Blank or comment: inih need not see the text, however long. */
        memcpy(str, "\n", 2);
        return str;
    }
    if (*b == '[')
        return section_line(s, b, e, str, num) ? NULL : str;

    const char *sep = find_stop(b, e, "=:");
    if (sep == e || (*sep != '=' && *sep != ':')) {
        if (indented)
            cg__fail(s->d, CG_EINVAL, s->path, s->line,
                     "syntax error: %s is not 'key = value'; continuation lines are not "
                     "supported, repeat the key instead",
                     cg__quote(q, sizeof q, b, (size_t)(e - b), CG__QUOTE_EXCERPT));
        else
            cg__fail(s->d, CG_EINVAL, s->path, s->line,
                     "syntax error: expected '[section]' or 'key = value', not %s",
                     cg__quote(q, sizeof q, b, (size_t)(e - b), CG__QUOTE_EXCERPT));
        stream_fail(s, CG_EINVAL);
        return NULL;
    }
    /* The line, a newline and the NUL must fit, or inih would split it. */
    if ((size_t)(e - b) + 2 > (size_t)num) {
        long_line(s, b, e, num);
        return NULL;
    }
    memcpy(str, b, (size_t)(e - b));
    str[e - b] = '\n';
    str[e - b + 1] = '\0';
    return str;
}

static int on_key(ini_stream *s, const char *section, const char *name, const char *value)
{
    if (s->fail_line)
        return 0;
    if (!name)
        return 1; /* a library built to report new sections: the reader did */
    if (!value || strcmp(section, s->section) != 0) {
        /* The reader lets through only lines inih reads as we do. */
        stream_fail(s, cg__fail(s->d, CG_EINVAL, s->path, s->line,
                                "syntax error: expected '[section]' or 'key = value'"));
        return 0;
    }
    if (s->sink->key(s->sink->ctx, name, value, s->line)) {
        stream_fail(s, CG_EINVAL);
        return 0;
    }
    return 1;
}

#if INI_HANDLER_LINENO
static int handler(void *user, const char *section, const char *name, const char *value, int lineno)
{
    (void)lineno; /* ours counts the same lines */
    return on_key(user, section, name, value);
}
#else
static int handler(void *user, const char *section, const char *name, const char *value)
{
    return on_key(user, section, name, value);
}
#endif

/* cg__ini_parse: see config_ini.h. One thread per call. */
int cg__ini_parse(const char *path, const char *text, size_t len, const cg__ini_sink *sink,
                  cg__diag *d, uint32_t *lines)
{
    ini_stream s;
    memset(&s, 0, sizeof s);
    s.path = path;
    s.pos = text;
    s.end = text + len;
    s.sink = sink;
    s.d = d;

    int ret = ini_parse_stream(reader, &s, handler, &s);
    *lines = s.line;
    if (ret > 0 && (!s.fail_line || (uint32_t)ret < s.fail_line)) {
        /* inih found a syntax error that the reader did not foresee; it
         * comes first, so it replaces ours. */
        d->code = 0;
        return cg__fail(d, CG_EINVAL, path, (uint32_t)ret,
                        "syntax error: expected '[section]' or 'key = value'");
    }
    if (s.fail_line || d->code)
        return d->code ? d->code : CG_EINVAL;
    if (ret == -2)
        return cg__fail(d, CG_ENOMEM, path, s.line, "out of memory");
    if (ret != 0)
        return cg__fail(d, CG_EIO, path, s.line, "cannot parse the file");
    return 0;
}
