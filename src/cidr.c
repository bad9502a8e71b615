/* cidr.c — CIDR text and lookup keys: parsing and formatting prefixes,
 * prefix containment, and the key a socket address is looked up by. The
 * rule sets that hold prefixes are rules.c's.
 */
#include "cidr.h"

#include <stdio.h>
#include <string.h>

#include "diag.h"
#include "net.h"

/* ------------------------------------------------------------------------
 * Small helpers
 */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Writes "WHAT 'TEXT'" into err (when there is one) and returns CG_EINVAL. */
static int fail_quoted(char *err, size_t errlen, const char *what, const char *s, size_t n)
{
    if (err && errlen > 0) {
        char q[CG__QUOTE_CIDR_MAX];
        snprintf(err, errlen, "%s '%s'", what, cg__quote(q, sizeof q, s, n, CG__QUOTE_CIDR));
    }
    return CG_EINVAL;
}

static int fail_plain(char *err, size_t errlen, const char *msg)
{
    if (err && errlen > 0)
        snprintf(err, errlen, "%s", msg);
    return CG_EINVAL;
}

/* ------------------------------------------------------------------------
 * CIDR text
 */

enum parse4_result { P4_OK, P4_BAD, P4_LEADING_ZERO, P4_SHORT };

/* Strict dotted quad: exactly four decimal octets 0..255, no leading zeros
 * (inet_aton would read "010" as octal 8; refusing it avoids the surprise),
 * no shortened forms. */
static enum parse4_result parse4(const char *s, size_t n, uint32_t *out)
{
    uint32_t v = 0;
    unsigned octets = 0;
    size_t i = 0;

    for (;;) {
        unsigned o = 0, digits = 0;

        if (i >= n || !is_digit(s[i]))
            return P4_BAD;
        if (s[i] == '0' && i + 1 < n && is_digit(s[i + 1]))
            return P4_LEADING_ZERO;
        while (i < n && is_digit(s[i])) {
            if (++digits > 3)
                return P4_BAD;
            o = o * 10 + (unsigned)(s[i] - '0');
            i++;
        }
        if (o > 255)
            return P4_BAD;
        v = v << 8 | o;
        octets++;
        if (i == n)
            break;
        if (s[i] != '.' || octets == 4)
            return P4_BAD;
        i++;
    }
    if (octets < 4)
        return P4_SHORT;
    *out = v;
    return P4_OK;
}

/* cg__cidr_mask: see cidr.h. Any thread. */
bool cg__cidr_mask(cg_cidr *c)
{
    unsigned bytes = c->family == 4 ? 4 : 16;
    bool changed = false;

    for (unsigned i = 0; i < bytes; i++) {
        int bits = (int)c->len - (int)(8 * i);
        uint8_t m = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
        if (c->addr[i] & (uint8_t)~m) {
            c->addr[i] &= m;
            changed = true;
        }
    }
    return changed;
}

/* cg__cidr_normalise_mapped: see cidr.h. Any thread. */
void cg__cidr_normalise_mapped(cg_cidr *c)
{
    if (c->family == 6 && c->len >= 96 && cg__addr_is_mapped(c->addr)) {
        uint8_t v4[4];
        memcpy(v4, c->addr + 12, 4);
        memset(c->addr, 0, sizeof c->addr);
        memcpy(c->addr, v4, 4);
        c->family = 4;
        c->len = (uint8_t)(c->len - 96);
    }
}

/* cg_cidr_parse: see rules.h. Any thread. */
int cg_cidr_parse(const char *s, size_t len, cg_cidr *out, char *err, size_t errlen)
{
    cg_cidr c;
    size_t slash = len, alen;
    unsigned maxlen;

    if (!s || len == 0)
        return fail_plain(err, errlen, "empty address");
    for (size_t i = 0; i < len; i++) {
        if (is_space(s[i]))
            return fail_quoted(err, errlen, "whitespace in address", s, len);
        if (s[i] == '\0') /* inet_pton would stop there and ignore the rest */
            return fail_quoted(err, errlen, "NUL byte in address", s, len);
        if (s[i] == '/' && slash == len)
            slash = i;
    }
    alen = slash;
    if (alen == 0)
        return fail_quoted(err, errlen, "missing address in", s, len);

    memset(&c, 0, sizeof c);
    if (memchr(s, ':', alen)) {
        char buf[INET6_ADDRSTRLEN];

        if (memchr(s, '%', alen))
            return fail_quoted(err, errlen, "zone id not allowed in", s, alen);
        /* inet_pton wants a C string; the longest valid text fits buf. */
        if (alen >= sizeof buf)
            return fail_quoted(err, errlen, "invalid address", s, alen);
        memcpy(buf, s, alen);
        buf[alen] = '\0';
        if (inet_pton(AF_INET6, buf, c.addr) != 1)
            return fail_quoted(err, errlen, "invalid address", s, alen);
        c.family = 6;
        maxlen = 128;
    } else {
        uint32_t v = 0;

        switch (parse4(s, alen, &v)) {
        case P4_OK:
            break;
        case P4_LEADING_ZERO:
            return fail_quoted(err, errlen, "leading zero in address", s, alen);
        case P4_SHORT:
            return fail_quoted(err, errlen, "incomplete IPv4 address", s, alen);
        default:
            return fail_quoted(err, errlen, "invalid address", s, alen);
        }
        cg__store_be32(c.addr, v);
        c.family = 4;
        maxlen = 32;
    }

    if (slash == len) {
        c.len = (uint8_t)maxlen;
    } else {
        const char *p = s + slash + 1;
        size_t plen = len - slash - 1;
        unsigned v = 0;

        if (plen == 0)
            return fail_quoted(err, errlen, "missing prefix length in", s, len);
        if (p[0] == '0' && plen > 1)
            return fail_quoted(err, errlen, "invalid prefix length", p - 1, plen + 1);
        for (size_t i = 0; i < plen; i++) {
            if (!is_digit(p[i]))
                return fail_quoted(err, errlen, "invalid prefix length", p - 1, plen + 1);
            if (v <= 1000) /* saturate: anything this large is out of range */
                v = v * 10 + (unsigned)(p[i] - '0');
        }
        if (v > maxlen) {
            if (err && errlen > 0) {
                char q[CG__QUOTE_CIDR_MAX];
                snprintf(err, errlen, "prefix length /%s out of range for %s (0-%u)",
                         cg__quote(q, sizeof q, p, plen, CG__QUOTE_CIDR),
                         maxlen == 32 ? "IPv4" : "IPv6", maxlen);
            }
            return CG_EINVAL;
        }
        c.len = (uint8_t)v;
    }

    if (cg__cidr_mask(&c)) {
        if (err && errlen > 0) {
            char m[CG_CIDR_STRLEN];
            snprintf(err, errlen, "host bits set past /%u; did you mean %s?", (unsigned)c.len,
                     cg_cidr_format(&c, m, sizeof m));
        }
        return CG_EINVAL;
    }
    cg__cidr_normalise_mapped(&c);
    if (out)
        *out = c;
    return 0;
}

/* Writes a decimal number, returns the count of characters. */
static size_t put_uint(char *p, unsigned v)
{
    char tmp[10];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* cg_cidr_format: see rules.h. Any thread. */
char *cg_cidr_format(const cg_cidr *c, char *buf, size_t buflen)
{
    char tmp[CG_CIDR_STRLEN + 8];
    size_t n = 0;

    if (!buf || buflen == 0)
        return buf;
    if (c && c->family == 4) {
        for (unsigned i = 0; i < 4; i++) {
            if (i)
                tmp[n++] = '.';
            n += put_uint(tmp + n, c->addr[i]);
        }
    } else if (c && c->family == 6) {
        if (!inet_ntop(AF_INET6, c->addr, tmp, INET6_ADDRSTRLEN))
            tmp[0] = '\0';
        n = strlen(tmp);
    }
    if (c && (c->family == 4 || c->family == 6)) {
        tmp[n++] = '/';
        n += put_uint(tmp + n, c->len);
    }
    if (n >= buflen)
        n = buflen - 1;
    memcpy(buf, tmp, n);
    buf[n] = '\0';
    return buf;
}

/* cg_cidr_contains: see rules.h. Any thread. */
bool cg_cidr_contains(const cg_cidr *c, const cg_cidr *a)
{
    unsigned full, rem;

    if (!c || !a || c->family != a->family || (c->family != 4 && c->family != 6))
        return false;
    if (c->len > (c->family == 4 ? 32 : 128))
        return false;
    full = c->len / 8u;
    rem = c->len % 8u;
    if (memcmp(c->addr, a->addr, full) != 0)
        return false;
    if (rem) {
        uint8_t m = (uint8_t)(0xff << (8 - rem));
        if ((c->addr[full] & m) != (a->addr[full] & m))
            return false;
    }
    return true;
}

/* cg_addr_from_sockaddr: see rules.h. The structures are copied out rather
 * than cast, since callers hand in sockaddr_storage or raw buffers. Any
 * thread. */
int cg_addr_from_sockaddr(const struct sockaddr *sa, cg_cidr *out)
{
    struct sockaddr head;

    if (!sa || !out)
        return CG_EINVAL;
    memset(out, 0, sizeof *out);
    memcpy(&head, sa, sizeof head);
    if (head.sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, sa, sizeof sin);
        memcpy(out->addr, &sin.sin_addr, 4);
        out->family = 4;
        out->len = 32;
        return 0;
    }
    if (head.sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, sa, sizeof sin6);
        memcpy(out->addr, &sin6.sin6_addr, 16);
        out->family = 6;
        out->len = 128;
        cg__cidr_normalise_mapped(out);
        return 0;
    }
    return CG_EINVAL;
}

/* ------------------------------------------------------------------------
 * Ranges
 *
 * Both families as one 128-bit big-endian value, top-aligned the way
 * cg_cidr stores them (an IPv4 address in the top 32 bits, the rest zero),
 * so a prefix of length len keeps bits 0..len-1 from the top.
 */

typedef struct u128 {
    uint64_t hi, lo;
} u128;

static u128 u128_load(const cg_cidr *c)
{
    u128 v = {cg__load_be64(c->addr), cg__load_be64(c->addr + 8)};
    return v;
}

static bool u128_le(u128 a, u128 b)
{
    return a.hi < b.hi || (a.hi == b.hi && a.lo <= b.lo);
}

/* The bits past a prefix of length len, within a family of width bits. */
static u128 host_bits(unsigned len, unsigned width)
{
    u128 m = {len >= 64 ? 0 : UINT64_MAX >> len, len >= 128  ? 0
                                                 : len <= 64 ? UINT64_MAX
                                                             : UINT64_MAX >> (len - 64)};
    if (width == 32) {
        m.hi &= 0xffffffff00000000u;
        m.lo = 0;
    }
    return m;
}

/* cg__range_prefixes: see cidr.h. Any thread. */
int cg__range_prefixes(const cg_cidr *from, const cg_cidr *to,
                       int (*fn)(void *arg, const cg_cidr *prefix), void *arg, char *why,
                       size_t whylen)
{
    if (from->family != to->family || (from->family != 4 && from->family != 6))
        return fail_plain(why, whylen, "a range's two ends must be of one family (IPv4 or IPv6)");
    unsigned width = from->family == 4 ? 32 : 128;
    u128 cur = u128_load(from), last = u128_load(to);
    cur.hi &= ~host_bits(width, width).hi;
    cur.lo &= ~host_bits(width, width).lo;
    last.hi &= ~host_bits(width, width).hi;
    last.lo &= ~host_bits(width, width).lo;
    if (!u128_le(cur, last))
        return fail_plain(why, whylen, "a range must not end before it starts");
    const u128 top = host_bits(0, width); /* the family's last address */
    for (;;) {
        /* The shortest prefix that starts at cur and ends by last. */
        unsigned len = 0;
        u128 h = host_bits(0, width);
        for (; len < width; len++) {
            h = host_bits(len, width);
            u128 end = {cur.hi | h.hi, cur.lo | h.lo};
            if ((cur.hi & h.hi) == 0 && (cur.lo & h.lo) == 0 && u128_le(end, last))
                break;
        }
        if (len == width)
            h = host_bits(width, width);
        cg_cidr p = {.family = from->family, .len = (uint8_t)len};
        cg__store_be64(p.addr, cur.hi);
        cg__store_be64(p.addr + 8, cur.lo);
        int rc = fn(arg, &p);
        if (rc)
            return rc;
        u128 end = {cur.hi | h.hi, cur.lo | h.lo};
        if ((end.hi == last.hi && end.lo == last.lo) || (end.hi == top.hi && end.lo == top.lo))
            return 0;
        /* The address after end: add one unit of the family's last bit. */
        if (width == 32) {
            cur.hi = end.hi + (1ull << 32);
            cur.lo = 0;
        } else {
            cur.lo = end.lo + 1;
            cur.hi = end.hi + (cur.lo == 0);
        }
    }
}
