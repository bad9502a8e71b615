/* proxy_proto.c — the PROXY protocol, versions 1 and 2 (SPEC §13): the
 * bounded, incremental parser of the header a trusted load balancer sends
 * first, and the writer of the header condgate sends to a backend.
 *
 * The parser is written so that its answer for a prefix of the input never
 * contradicts its answer for the whole: MORE only while some continuation
 * could still be a valid header, BAD as soon as none could, and DONE only
 * once the header's last byte has arrived. Version 1 is checked field by
 * field as it arrives (a partial address is tried with the few endings that
 * could complete it); version 2 byte by byte through its fixed part.
 */
#include <stdio.h>
#include <string.h>

#include "proxy_proto.h"

#define V2_CMD_LOCAL 0x0u
#define V2_CMD_PROXY 0x1u
#define V2_TLV_HEAD 3u     /* type and a 16-bit length */
#define V4_ADDRS 12u       /* two IPv4 addresses and two ports */
#define V6_ADDRS 36u       /* two IPv6 addresses and two ports */
#define UNIX_ADDRS 216u    /* two 108-byte paths */
#define ADDR6_TEXT_MAX 45u /* longest IPv6 text, an IPv4 tail included */

static const uint8_t v2_sig[CG_PROXY_V2_SIG_LEN] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static cg__proxy_status bad(cg__proxy_hdr *out, const char *why)
{
    out->why = why;
    return CG__PROXY_BAD;
}

/* One address and port into *ss; an IPv4-mapped IPv6 address becomes
 * AF_INET. `a` holds 4 bytes when !v6, else 16. */
static void set_addr(struct sockaddr_storage *ss, const uint8_t *a, bool v6, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    if (v6 && memcmp(a, mapped_prefix, sizeof mapped_prefix) != 0) {
        struct sockaddr_in6 s6;
        memset(&s6, 0, sizeof s6);
        s6.sin6_family = AF_INET6;
        memcpy(&s6.sin6_addr, a, 16);
        s6.sin6_port = htons(port);
        memcpy(ss, &s6, sizeof s6);
        return;
    }
    struct sockaddr_in s4;
    memset(&s4, 0, sizeof s4);
    s4.sin_family = AF_INET;
    memcpy(&s4.sin_addr, v6 ? a + 12 : a, 4);
    s4.sin_port = htons(port);
    memcpy(ss, &s4, sizeof s4);
}

/* --- version 1 ----------------------------------------------------------- */

/* A dotted quad, strictly: four decimals 0..255 without leading zeros. With
 * !whole, whether s[0..len) can begin one. Fills out[] when whole. */
static bool v1_ipv4(const uint8_t *s, size_t len, bool whole, uint8_t out[4])
{
    unsigned parts = 0, val = 0, digits = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] >= '0' && s[i] <= '9') {
            if (digits == 1 && val == 0)
                return false;
            val = val * 10 + (unsigned)(s[i] - '0');
            if (val > 255)
                return false;
            digits++;
        } else if (s[i] == '.') {
            if (digits == 0 || parts == 3)
                return false;
            out[parts++] = (uint8_t)val;
            val = 0;
            digits = 0;
        } else {
            return false;
        }
    }
    if (!whole)
        return true;
    if (parts != 3 || digits == 0)
        return false;
    out[3] = (uint8_t)val;
    return true;
}

/* IPv6 text as inet_pton reads it. With !whole, whether s[0..len) can begin
 * one: some ending of the few below always completes a text that can be
 * completed at all (a group, the "::", or the rest of an IPv4 tail). */
static bool v1_ipv6(const uint8_t *s, size_t len, bool whole, uint8_t out[16])
{
    static const char *const endings[] = {"",   "0",    ":",   "::",    ":0",
                                          ".0", ".0.0", "0.0", "0.0.0", ".0.0.0"};
    char text[ADDR6_TEXT_MAX + 8];
    uint8_t tmp[16];
    if (len > ADDR6_TEXT_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex && c != ':' && c != '.')
            return false;
    }
    memcpy(text, s, len);
    size_t tries = whole ? 1 : sizeof endings / sizeof endings[0];
    for (size_t e = 0; e < tries; e++) {
        size_t el = strlen(endings[e]);
        memcpy(text + len, endings[e], el + 1);
        if (inet_pton(AF_INET6, text, tmp) == 1) {
            memcpy(out, tmp, sizeof tmp);
            return true;
        }
    }
    return false;
}

/* A decimal port 0..65535, "0" the only one starting with 0. */
static bool v1_port(const uint8_t *s, size_t len, bool whole, uint16_t *out)
{
    unsigned val = 0;
    if (len == 0)
        return !whole;
    if (s[0] == '0' && len > 1)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        val = val * 10 + (unsigned)(s[i] - '0');
        if (val > 65535)
            return false;
    }
    *out = (uint16_t)val;
    return true;
}

/* s[0..len) is `word` (whole) or a beginning of it. */
static bool v1_word(const uint8_t *s, size_t len, bool whole, const char *word)
{
    size_t wl = strlen(word);
    return (whole ? len == wl : len <= wl) && memcmp(s, word, len) == 0;
}

/* Field i (0 "PROXY", 1 protocol, 2 and 3 addresses, 4 and 5 ports) of a v1
 * line; *proto is 4, 6 or 0 (UNKNOWN) once field 1 is whole. */
static bool v1_field(unsigned i, const uint8_t *s, size_t len, bool whole, unsigned *proto,
                     uint8_t addr[2][16], uint16_t port[2], cg__proxy_hdr *out)
{
    switch (i) {
    case 0:
        out->why = "v1: not \"PROXY\"";
        return v1_word(s, len, whole, "PROXY");
    case 1:
        out->why = "v1: protocol not TCP4, TCP6 or UNKNOWN";
        if (whole)
            *proto = v1_word(s, len, true, "TCP4") ? 4 : v1_word(s, len, true, "TCP6") ? 6 : 0;
        return v1_word(s, len, whole, "TCP4") || v1_word(s, len, whole, "TCP6") ||
               v1_word(s, len, whole, "UNKNOWN");
    case 2:
    case 3:
        if (*proto == 4 && memchr(s, ':', len))
            out->why = "v1: an IPv6 address after TCP4";
        else if (*proto == 6 && memchr(s, '.', len) && !memchr(s, ':', len))
            out->why = "v1: an IPv4 address after TCP6";
        else
            out->why = "v1: bad address";
        return *proto == 4 ? v1_ipv4(s, len, whole, addr[i - 2])
                           : v1_ipv6(s, len, whole, addr[i - 2]);
    default:
        out->why = "v1: bad port";
        return v1_port(s, len, whole, &port[i - 4]);
    }
}

/* The line s[0..len), without its CRLF: whole (the CRLF follows) or the
 * part that has arrived. DONE (whole and valid), MORE (a valid beginning)
 * or BAD. Fills out's addresses when DONE. */
static cg__proxy_status v1_line(const uint8_t *s, size_t len, bool whole, cg__proxy_hdr *out)
{
    uint8_t addr[2][16];
    uint16_t port[2] = {0, 0};
    unsigned proto = 0, field = 0;
    size_t start = 0;
    for (;;) {
        size_t end = start;
        while (end < len && s[end] != ' ')
            end++;
        bool last = end == len; /* the field runs to what has arrived */
        bool fwhole = !last || whole;
        if (end == start && fwhole)
            return bad(out, last ? "v1: line ends in a space" : "v1: two spaces in a row");
        if (!v1_field(field, s + start, end - start, fwhole, &proto, addr, port, out))
            return CG__PROXY_BAD;
        if (field == 1 && fwhole && proto == 0) {
            /* UNKNOWN: the rest of the line, if any, is ignored. */
            out->local = true;
            return whole ? CG__PROXY_DONE : CG__PROXY_MORE;
        }
        if (last) {
            if (!whole)
                return CG__PROXY_MORE;
            if (field != 5)
                return bad(out, "v1: too few fields");
            break;
        }
        if (++field > 5)
            return bad(out, "v1: too many fields");
        start = end + 1;
    }
    set_addr(&out->src, addr[0], proto == 6, port[0]);
    set_addr(&out->dst, addr[1], proto == 6, port[1]);
    return CG__PROXY_DONE;
}

/* A v1 header: one line of at most CG_PROXY_V1_MAX bytes, CRLF included. */
static cg__proxy_status parse_v1(const uint8_t *buf, size_t n, cg__proxy_hdr *out)
{
    size_t m = n < CG_PROXY_V1_MAX ? n : CG_PROXY_V1_MAX;
    const uint8_t *cr = memchr(buf, '\r', m);
    out->version = 1;
    if (!cr) {
        if (n >= CG_PROXY_V1_MAX)
            return bad(out, "v1: no CRLF within 107 bytes");
        return v1_line(buf, n, false, out);
    }
    size_t i = (size_t)(cr - buf);
    if (i + 2 > CG_PROXY_V1_MAX)
        return bad(out, "v1: no CRLF within 107 bytes");
    if (i + 1 < n && buf[i + 1] != '\n')
        return bad(out, "v1: CR not followed by LF");
    cg__proxy_status st = v1_line(buf, i, true, out);
    if (st != CG__PROXY_DONE)
        return st;
    if (i + 1 == n) /* valid up to the CR: the LF is still to come */
        return CG__PROXY_MORE;
    out->len = i + 2;
    return CG__PROXY_DONE;
}

/* --- version 2 ----------------------------------------------------------- */

/* Bytes of addresses the family and transport byte announces, or BAD (why
 * set) for a value the specification does not define or this TCP front door
 * cannot use with the PROXY command. */
static bool v2_family(uint8_t fam, unsigned cmd, size_t *need, cg__proxy_hdr *out)
{
    switch (fam) {
    case 0x00:
        *need = 0;
        return true;
    case 0x11:
        *need = V4_ADDRS;
        return true;
    case 0x21:
        *need = V6_ADDRS;
        return true;
    case 0x12:
    case 0x22:
        *need = fam == 0x12 ? V4_ADDRS : V6_ADDRS;
        out->why = "v2: UDP, and this is a TCP front door";
        return cmd == V2_CMD_LOCAL;
    case 0x31:
    case 0x32:
        *need = UNIX_ADDRS;
        out->why = "v2: AF_UNIX addresses, and this is a TCP front door";
        return cmd == V2_CMD_LOCAL;
    default:
        out->why = "v2: unknown address family or transport";
        return false;
    }
}

/* TLVs in b[from..to): skipped, but none may run past the header's end. */
static bool v2_tlvs(const uint8_t *b, size_t from, size_t to)
{
    while (from < to) {
        if (to - from < V2_TLV_HEAD)
            return false;
        size_t tl = (size_t)b[from + 1] << 8 | b[from + 2];
        if (tl > to - from - V2_TLV_HEAD)
            return false;
        from += V2_TLV_HEAD + tl;
    }
    return true;
}

/* A v2 header: the signature, version and command, family and transport, a
 * 16-bit length, then that many bytes (at most CG_PROXY_V2_MAX in all). */
static cg__proxy_status parse_v2(const uint8_t *b, size_t n, cg__proxy_hdr *out)
{
    size_t need = 0;
    out->version = 2;
    if (memcmp(b, v2_sig, n < CG_PROXY_V2_SIG_LEN ? n : CG_PROXY_V2_SIG_LEN) != 0)
        return bad(out, "v2: bad signature");
    if (n <= 12)
        return CG__PROXY_MORE;
    unsigned cmd = b[12] & 0x0Fu;
    if (b[12] >> 4 != 2)
        return bad(out, "v2: version is not 2");
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return bad(out, "v2: command neither LOCAL nor PROXY");
    if (n <= 13)
        return CG__PROXY_MORE;
    if (!v2_family(b[13], cmd, &need, out))
        return CG__PROXY_BAD;
    if (n < CG_PROXY_V2_FIXED)
        return CG__PROXY_MORE;
    size_t total = CG_PROXY_V2_FIXED + ((size_t)b[14] << 8 | b[15]);
    if (total > CG_PROXY_V2_MAX)
        return bad(out, "v2: header longer than 536 bytes");
    /* LOCAL: the address block, whatever its family, is ignored. */
    if (cmd == V2_CMD_PROXY && total < CG_PROXY_V2_FIXED + need)
        return bad(out, "v2: length shorter than the family's addresses");
    if (n < total)
        return CG__PROXY_MORE;
    out->len = total;
    if (cmd == V2_CMD_LOCAL || b[13] == 0x00) {
        /* AF_UNSPEC with PROXY: use the real endpoints, as for LOCAL. */
        out->local = true;
        return CG__PROXY_DONE;
    }
    if (!v2_tlvs(b, CG_PROXY_V2_FIXED + need, total))
        return bad(out, "v2: a TLV runs past the header's end");
    const uint8_t *a = b + CG_PROXY_V2_FIXED;
    size_t al = need == V4_ADDRS ? 4 : 16;
    uint16_t sport = (uint16_t)(a[2 * al] << 8 | a[2 * al + 1]);
    uint16_t dport = (uint16_t)(a[2 * al + 2] << 8 | a[2 * al + 3]);
    set_addr(&out->src, a, al == 16, sport);
    set_addr(&out->dst, a + al, al == 16, dport);
    return CG__PROXY_DONE;
}

/* cg__proxy_parse: see proxy_proto.h. */
cg__proxy_status cg__proxy_parse(const uint8_t *buf, size_t n, unsigned accept, cg__proxy_hdr *out)
{
    memset(out, 0, sizeof *out);
    accept &= CG_PROXY_ACCEPT_V1 | CG_PROXY_ACCEPT_V2;
    if (accept == 0)
        return bad(out, "no PROXY protocol version accepted");
    if (n == 0)
        return CG__PROXY_MORE;
    cg__proxy_status st;
    if (buf[0] == v2_sig[0]) {
        if (!(accept & CG_PROXY_ACCEPT_V2))
            return bad(out, "a v2 header where v1 is expected");
        st = parse_v2(buf, n, out);
    } else if (buf[0] == 'P') {
        if (!(accept & CG_PROXY_ACCEPT_V1))
            return bad(out, "a v1 header where v2 is expected");
        st = parse_v1(buf, n, out);
    } else {
        return bad(out, "not a PROXY protocol header");
    }
    if (st != CG__PROXY_BAD)
        out->why = NULL; /* the field checks leave their reason ready */
    return st;
}

/* --- the writer ---------------------------------------------------------- */

/* An address as 16 bytes (IPv4 in a[0..4)) and its port; returns 4, 6, or 0
 * for another family. A mapped IPv6 address is returned as IPv4. */
static unsigned norm(const struct sockaddr *sa, uint8_t a[16], uint16_t *port)
{
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in s4;
        memcpy(&s4, sa, sizeof s4);
        memcpy(a, &s4.sin_addr, 4);
        *port = ntohs(s4.sin_port);
        return 4;
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 s6;
        memcpy(&s6, sa, sizeof s6);
        *port = ntohs(s6.sin6_port);
        if (memcmp(&s6.sin6_addr, mapped_prefix, sizeof mapped_prefix) == 0) {
            memcpy(a, (const uint8_t *)&s6.sin6_addr + 12, 4);
            return 4;
        }
        memcpy(a, &s6.sin6_addr, 16);
        return 6;
    }
    return 0;
}

/* An IPv4 address in a[0..4) as ::ffff:a.b.c.d. */
static void map4(uint8_t a[16])
{
    memmove(a + 12, a, 4);
    memcpy(a, mapped_prefix, sizeof mapped_prefix);
}

static size_t write_v1(unsigned fam, uint8_t a[2][16], const uint16_t port[2], uint8_t *buf,
                       size_t len)
{
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    int af = fam == 4 ? AF_INET : AF_INET6;
    if (!inet_ntop(af, a[0], s, sizeof s) || !inet_ntop(af, a[1], d, sizeof d))
        return 0;
    int w = snprintf((char *)buf, len, "PROXY TCP%u %s %s %u %u\r\n", fam, s, d, (unsigned)port[0],
                     (unsigned)port[1]);
    if (w < 0 || (size_t)w >= len)
        return 0;
    return (size_t)w;
}

static size_t write_v2(unsigned fam, uint8_t a[2][16], const uint16_t port[2], uint8_t *buf,
                       size_t len)
{
    size_t al = fam == 4 ? 4 : 16, body = 2 * al + 4, total = CG_PROXY_V2_FIXED + body;
    if (len < total)
        return 0;
    memcpy(buf, v2_sig, sizeof v2_sig);
    buf[12] = 0x20 | V2_CMD_PROXY;
    buf[13] = fam == 4 ? 0x11 : 0x21;
    buf[14] = (uint8_t)(body >> 8);
    buf[15] = (uint8_t)body;
    uint8_t *p = buf + CG_PROXY_V2_FIXED;
    memcpy(p, a[0], al);
    memcpy(p + al, a[1], al);
    p += 2 * al;
    p[0] = (uint8_t)(port[0] >> 8);
    p[1] = (uint8_t)port[0];
    p[2] = (uint8_t)(port[1] >> 8);
    p[3] = (uint8_t)port[1];
    return total;
}

/* cg__proxy_write: see proxy_proto.h. Returns 0 as well for a version other
 * than 1 or 2 and for a buffer too small for the header. */
size_t cg__proxy_write(unsigned version, const struct sockaddr *src, const struct sockaddr *dst,
                       uint8_t *buf, size_t len)
{
    uint8_t a[2][16];
    uint16_t port[2];
    if (!src || !dst || !buf || (version != 1 && version != 2))
        return 0;
    unsigned fs = norm(src, a[0], &port[0]), fd = norm(dst, a[1], &port[1]);
    if (fs == 0 || fd == 0)
        return 0;
    if (fs != fd) {
        map4(fs == 4 ? a[0] : a[1]);
        fs = fd = 6;
    }
    return version == 1 ? write_v1(fs, a, port, buf, len) : write_v2(fs, a, port, buf, len);
}
