/* diag.c — the loaders' messages: the first error of a load, excerpts of
 * user input, "did you mean", and reading a whole file (see diag.h).
 */
#include "diag.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "condgate/common.h"
#include "condgate/rules.h"

/* cg__fail: see diag.h. Any thread. */
int cg__fail(cg__diag *d, int code, const char *file, uint32_t line, const char *fmt, ...)
{
    if (d->code)
        return d->code;
    d->code = code;
    if (!d->buf || d->len == 0)
        return code;
    int n = snprintf(d->buf, d->len, "%s:%u: ", file ? file : "(unknown)", (unsigned)line);
    if (n >= 0 && (size_t)n < d->len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->buf + n, d->len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    char *end = d->buf + strlen(d->buf);
    for (char *p = d->buf; p < end;) {
        size_t seq = cg__utf8_seq((const unsigned char *)p, (size_t)(end - p));
        if (seq == 0 || (unsigned char)*p < 0x20 || *p == 0x7f) {
            *p++ = '?';
            continue;
        }
        p += seq;
    }
    return code;
}

/* cg__fail_set_full: see diag.h. Any thread. */
int cg__fail_set_full(cg__diag *d, const char *file, uint32_t line, const char *set)
{
    return cg__fail(d, CG_ERANGE, file, line, "rule set '%s' has more than %u entries", set,
                    CG_RULESET_MAX_ENTRIES);
}

/* cg__utf8_seq: see diag.h. Any thread. */
size_t cg__utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* past U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* cg__quote: see diag.h. Any thread. */
const char *cg__quote(char *buf, size_t size, const char *s, size_t len, cg__quote_style style)
{
    static const char hex[] = "0123456789abcdef";
    bool quotes = style == CG__QUOTE_EXCERPT;
    size_t max_in = quotes ? SIZE_MAX : CG__QUOTE_CIDR_IN;
    /* Kept free until the end: the widest escape, "...", the closing quote
     * and the NUL. */
    size_t tail = 4 + 3 + (quotes ? 1 : 0) + 1;
    size_t o = 0;

    if (size < tail + 1) {
        if (size)
            buf[0] = '\0';
        return buf;
    }
    if (quotes)
        buf[o++] = '\'';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == max_in || o + tail > size) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        /* Bytes past ASCII too: an excerpt shows what is in the file, and a
         * byte order mark or a zero-width space would otherwise be
         * invisible ("unknown key 'workers'"). */
        if (!quotes && (c == '\t' || c == '\n' || c == '\r')) {
            buf[o++] = '\\';
            buf[o++] = c == '\t' ? 't' : c == '\n' ? 'n' : 'r';
        } else if (c < 0x20 || c >= 0x7f || c == '\\') {
            buf[o++] = '\\';
            if (c == '\\') {
                buf[o++] = '\\';
            } else {
                buf[o++] = 'x';
                buf[o++] = hex[c >> 4];
                buf[o++] = hex[c & 15];
            }
        } else {
            buf[o++] = (char)c;
        }
    }
    if (quotes)
        buf[o++] = '\'';
    buf[o] = '\0';
    return buf;
}

/* cg__errno_text: see diag.h. Any thread. */
const char *cg__errno_text(int e)
{
    switch (e) {
    case ENOENT:
        return "no such file or directory";
    case EACCES:
        return "permission denied";
    case EISDIR:
        return "is a directory";
    case ENODEV:
        return "not a regular file (a device, FIFO or socket)";
    case ENOTDIR:
        return "a part of the path is not a directory";
    case ENAMETOOLONG:
        return "file name too long";
    case EMFILE:
    case ENFILE:
        return "too many open files";
    case ENOMEM:
        return "out of memory";
    case EIO:
        return "input/output error";
#if defined(ELOOP)
    case ELOOP:
        return "too many levels of symbolic links";
#endif
    default:
        return "cannot read the file";
    }
}

/* cg__read_file: see diag.h. Any thread. */
int cg__read_file(const char *path, size_t max, char **data, size_t *len, int *sys_errno)
{
    int rc = 0;
    size_t cap = 64 * 1024;
    size_t n = 0;
    char *buf = NULL;

    *sys_errno = 0;
    /* Only regular files: a FIFO would block the loader (and a reload with
     * it) for ever, and /dev/zero would be read up to the size bound. */
    struct stat pre;
    if (stat(path, &pre) == 0) {
        if (!S_ISREG(pre.st_mode)) {
            *sys_errno = S_ISDIR(pre.st_mode) ? EISDIR : ENODEV;
            return CG_EIO;
        }
        /* Too large already: refuse it without reading (and holding) `max`
         * bytes first. The loop below still bounds a file that grows. */
        if ((uint64_t)pre.st_size > (uint64_t)max)
            return CG_ERANGE;
    }
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *sys_errno = errno;
        return errno == ENOENT ? CG_ENOENT : errno == EACCES ? CG_EACCES : CG_EIO;
    }
    for (;;) {
        if (!buf || n == cap) {
            if (buf)
                cap *= 2;
            if (cap > max + 1)
                cap = max + 1;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                rc = CG_ENOMEM;
                goto close_file;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n > max) {
            rc = CG_ERANGE;
            goto close_file;
        }
        if (got == 0 || n < cap) {
            if (ferror(f)) {
                *sys_errno = errno ? errno : EIO;
                rc = CG_EIO;
                goto close_file;
            }
            if (feof(f))
                break;
        }
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    buf = NULL;
close_file:
    fclose(f);
    free(buf);
    return rc;
}

/* cg__suggest: see diag.h. Any thread. */
const char *cg__suggest(const char *word, const char *const *candidates)
{
    enum { MAXW = 48 };
    size_t wl = strlen(word);
    const char *best = NULL;
    size_t best_d = 3;

    if (wl == 0 || wl >= MAXW)
        return NULL;
    for (size_t c = 0; candidates[c]; c++) {
        const char *cand = candidates[c];
        size_t cl = strlen(cand);
        size_t row[MAXW + 1];
        if (cl >= MAXW)
            continue;
        /* Levenshtein distance, one row at a time, ignoring ASCII case. */
        for (size_t j = 0; j <= cl; j++)
            row[j] = j;
        for (size_t i = 1; i <= wl; i++) {
            size_t diag = row[0];
            row[0] = i;
            for (size_t j = 1; j <= cl; j++) {
                char a = word[i - 1], b = cand[j - 1];
                if (a >= 'A' && a <= 'Z')
                    a = (char)(a - 'A' + 'a');
                size_t sub = diag + (a == b ? 0 : 1);
                size_t del = row[j] + 1, ins = row[j - 1] + 1;
                diag = row[j];
                row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            }
        }
        if (row[cl] < best_d && row[cl] < cl) {
            best_d = row[cl];
            best = cand;
        }
    }
    return best;
}
