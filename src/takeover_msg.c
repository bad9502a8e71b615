/* takeover_msg.c — the "condgate-sockets" message of a takeover
 * (takeover.h): written by the old process, parsed by the new one. */
#include "takeover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD "condgate-sockets "

static bool name_ok(const char *s, size_t len)
{
    return (len == strlen(CG_INHERIT_ADMIN) && memcmp(s, CG_INHERIT_ADMIN, len) == 0) ||
           cg_config_name_ok(s, len);
}

size_t cg__takeover_format(const char *const *names, size_t n, char *buf)
{
    if (n > CG_INHERIT_MAX)
        return 0;
    size_t len = (size_t)snprintf(buf, CG_TAKEOVER_MSG_MAX, HEAD "%zu\n", n);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (!name_ok(names[i], l) || len + l + 1 > CG_TAKEOVER_MSG_MAX)
            return 0;
        memcpy(buf + len, names[i], l);
        buf[len + l] = '\n';
        len += l + 1;
    }
    return len;
}

/* The count on the first line: digits only, no leading zero (one way to
 * write each count), at most CG_INHERIT_MAX. */
static int parse_count(const char *s, size_t len, size_t *n)
{
    if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
        return CG_EINVAL;
    size_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CG_EINVAL;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    *n = v;
    return v <= CG_INHERIT_MAX ? 0 : CG_EINVAL;
}

static int bad(char *why, size_t whylen, const char *what)
{
    snprintf(why, whylen, "takeover: %s", what);
    return CG_EINVAL;
}

int cg__takeover_parse(const char *buf, size_t len, size_t nfds, cg__takeover_names *out, char *why,
                       size_t whylen)
{
    size_t hl = strlen(HEAD);
    if (memcmp(buf, HEAD, len < hl ? len : hl) != 0)
        return bad(why, whylen, "the old process did not answer with its sockets");
    if (len > CG_TAKEOVER_MSG_MAX)
        return bad(why, whylen, "the answer is too long");
    if (len <= hl)
        return 0;
    const char *nl = memchr(buf + hl, '\n', len - hl);
    if (nl == NULL)
        return len - hl > 3 ? bad(why, whylen, "a bad count of sockets") : 0;
    size_t n;
    if (parse_count(buf + hl, (size_t)(nl - buf) - hl, &n) != 0)
        return bad(why, whylen, "a bad count of sockets");
    if (n != nfds)
        return bad(why, whylen, "the count of sockets is not the count of descriptors");
    out->n = 0;
    const char *p = nl + 1, *end = buf + len;
    while (out->n < n) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (e == NULL)
            return (size_t)(end - p) > CG_CONFIG_MAX_NAME ? bad(why, whylen, "a bad socket name")
                                                          : 0;
        size_t l = (size_t)(e - p);
        if (!name_ok(p, l))
            return bad(why, whylen, "a bad socket name");
        for (size_t i = 0; i < out->n; i++)
            if (strlen(out->name[i]) == l && memcmp(out->name[i], p, l) == 0)
                return bad(why, whylen, "a socket name given twice");
        memcpy(out->name[out->n], p, l);
        out->name[out->n++][l] = '\0';
        p = e + 1;
    }
    return p == end ? 1 : bad(why, whylen, "bytes after the socket names");
}
