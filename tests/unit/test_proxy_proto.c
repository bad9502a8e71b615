/* test_proxy_proto.c — the PROXY protocol parser and writer
 * (src/proxy_proto.c): every valid v1 and v2 form with its exact length,
 * addresses and ports; MORE for every strict prefix of each; the refusals;
 * the accept bits; and the writer's headers parsed back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proxy_proto.h"

#define ANY (CG_PROXY_ACCEPT_V1 | CG_PROXY_ACCEPT_V2)
#define SIG "\r\n\r\n\0\r\nQUIT\n"

/* A header as bytes (v2 headers hold NULs, so with an explicit length). */
typedef struct hdr {
    const char *bytes;
    size_t len;
} hdr;
#define H(lit) ((hdr){lit, sizeof lit - 1})

/* (%u rather than %zu in messages: mingw's cmocka checks them as msvcrt
 * formats.) */

/* Parse bytes[0..n) from a heap copy of exactly n bytes, so that ASan sees
 * any read past the end. */
static cg__proxy_status parse(const char *bytes, size_t n, unsigned accept, cg__proxy_hdr *out)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, bytes, n);
    cg__proxy_status st = cg__proxy_parse(copy, n, accept, out);
    free(copy);
    return st;
}

static void check_addr(const struct sockaddr_storage *ss, const char *text, unsigned port)
{
    char got[INET6_ADDRSTRLEN];
    if (strchr(text, ':')) {
        struct sockaddr_in6 s6;
        memcpy(&s6, ss, sizeof s6);
        assert_int_equal(s6.sin6_family, AF_INET6);
        assert_non_null(inet_ntop(AF_INET6, &s6.sin6_addr, got, sizeof got));
        assert_int_equal(ntohs(s6.sin6_port), port);
    } else {
        struct sockaddr_in s4;
        memcpy(&s4, ss, sizeof s4);
        assert_int_equal(s4.sin_family, AF_INET);
        assert_non_null(inet_ntop(AF_INET, &s4.sin_addr, got, sizeof got));
        assert_int_equal(ntohs(s4.sin_port), port);
    }
    assert_string_equal(got, text);
}

/* h parses DONE with its whole length (also with payload after it), and
 * every strict prefix is MORE. */
static void check_done(hdr h, unsigned accept, cg__proxy_hdr *out)
{
    for (size_t k = 0; k < h.len; k++) {
        cg__proxy_hdr p;
        if (parse(h.bytes, k, accept, &p) != CG__PROXY_MORE)
            fail_msg("prefix of %u of %u bytes: not MORE (%s)", (unsigned)k, (unsigned)h.len,
                     p.why ? p.why : "DONE");
    }
    cg__proxy_status st = parse(h.bytes, h.len, accept, out);
    if (st != CG__PROXY_DONE)
        fail_msg("header of %u bytes: %d (%s)", (unsigned)h.len, (int)st, out->why ? out->why : "");
    assert_int_equal(out->len, h.len);

    char *more = malloc(h.len + 64);
    assert_non_null(more);
    memcpy(more, h.bytes, h.len);
    memset(more + h.len, 'x', 64);
    memcpy(more + h.len, "\r\n\r\nGET / HTTP/1.0\r\n", 20);
    cg__proxy_hdr again;
    assert_int_equal(parse(more, h.len + 64, accept, &again), CG__PROXY_DONE);
    assert_int_equal(again.len, h.len);
    free(more);
}

static void check_proxy(hdr h, unsigned version, const char *src, unsigned sport, const char *dst,
                        unsigned dport)
{
    cg__proxy_hdr out;
    check_done(h, ANY, &out);
    assert_int_equal(out.version, version);
    assert_false(out.local);
    check_addr(&out.src, src, sport);
    check_addr(&out.dst, dst, dport);
}

static void check_local(hdr h, unsigned version)
{
    cg__proxy_hdr out;
    check_done(h, ANY, &out);
    assert_int_equal(out.version, version);
    assert_true(out.local);
}

static void check_bad(hdr h, unsigned accept, const char *why)
{
    cg__proxy_hdr out;
    cg__proxy_status st = parse(h.bytes, h.len, accept, &out);
    if (st != CG__PROXY_BAD)
        fail_msg("expected BAD (%s), got %d", why, (int)st);
    assert_non_null(out.why);
    if (!strstr(out.why, why))
        fail_msg("why \"%s\", expected \"%s\"", out.why, why);
}

static void test_v1_valid(void **state)
{
    (void)state;
    check_proxy(H("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"), 1, "192.0.2.1", 56324,
                "198.51.100.7", 443);
    check_proxy(H("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"), 1, "0.0.0.0", 0,
                "255.255.255.255", 65535);
    check_proxy(H("PROXY TCP6 2001:db8::1 2001:db8:0:1::ff 1 80\r\n"), 1, "2001:db8::1", 1,
                "2001:db8:0:1::ff", 80);
    check_proxy(H("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
                1, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    /* IPv4-mapped, also with the IPv4 tail spelled in hex: AF_INET */
    check_proxy(H("PROXY TCP6 ::ffff:192.0.2.9 ::ffff:c633:6407 1000 2000\r\n"), 1, "192.0.2.9",
                1000, "198.51.100.7", 2000);
    check_local(H("PROXY UNKNOWN\r\n"), 1);
    check_local(H("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"), 1);
    check_local(H("PROXY UNKNOWN anything \t at all\r\n"), 1);

    /* 107 bytes exactly, the longest a v1 line may be */
    char line[CG_PROXY_V1_MAX + 1];
    memset(line, 'z', sizeof line);
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + CG_PROXY_V1_MAX - 2, "\r\n", 2);
    check_local((hdr){line, CG_PROXY_V1_MAX}, 1);
}

static void test_v2_valid(void **state)
{
    (void)state;
    check_proxy(H(SIG "\x21\x11\x00\x0c"
                      "\xc0\x00\x02\x01\xc6\x33\x64\x07\xdc\x04\x01\xbb"),
                2, "192.0.2.1", 56324, "198.51.100.7", 443);
    /* with TLVs (an ALPN and a NOOP) after the addresses */
    check_proxy(H(SIG "\x21\x11\x00\x1a"
                      "\xc0\x00\x02\x01\xc6\x33\x64\x07\xdc\x04\x01\xbb"
                      "\x01\x00\x02h2"
                      "\x04\x00\x06\0\0\0\0\0\0"),
                2, "192.0.2.1", 56324, "198.51.100.7", 443);
    check_proxy(H(SIG "\x21\x21\x00\x24"
                      "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
                      "\x20\x01\x0d\xb8\0\0\0\x01\0\0\0\0\0\0\0\xff"
                      "\x00\x01\x00\x50"),
                2, "2001:db8::1", 1, "2001:db8:0:1::ff", 80);
    check_proxy(H(SIG "\x21\x21\x00\x29"
                      "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
                      "\x20\x01\x0d\xb8\0\0\0\x01\0\0\0\0\0\0\0\xff"
                      "\x00\x01\x00\x50"
                      "\x02\x00\x02hi"),
                2, "2001:db8::1", 1, "2001:db8:0:1::ff", 80);
    /* IPv4-mapped source and destination: AF_INET */
    check_proxy(H(SIG "\x21\x21\x00\x24"
                      "\0\0\0\0\0\0\0\0\0\0\xff\xff\xc0\x00\x02\x09"
                      "\0\0\0\0\0\0\0\0\0\0\xff\xff\xc6\x33\x64\x07"
                      "\x03\xe8\x07\xd0"),
                2, "192.0.2.9", 1000, "198.51.100.7", 2000);
    /* LOCAL (a health check), with and without an address block; PROXY with
     * AF_UNSPEC is treated the same */
    check_local(H(SIG "\x20\x00\x00\x00"), 2);
    check_local(H(SIG "\x20\x11\x00\x0c"
                      "\xc0\x00\x02\x01\xc6\x33\x64\x07\xdc\x04\x01\xbb"),
                2);
    check_local(H(SIG "\x20\x00\x00\x03"
                      "abc"),
                2);
    check_local(H(SIG "\x20\x31\x00\x00"), 2);
    check_local(H(SIG "\x21\x00\x00\x00"), 2);

    /* the longest: 520 bytes after the fixed part, 508 of them one TLV */
    uint8_t big[CG_PROXY_V2_MAX];
    memset(big, 0, sizeof big);
    memcpy(big,
           SIG "\x21\x11\x02\x08"
               "\xc0\x00\x02\x01\xc6\x33\x64\x07\xdc\x04\x01\xbb"
               "\x04\x01\xf9",
           CG_PROXY_V2_FIXED + 12 + 3);
    cg__proxy_hdr out;
    check_done((hdr){(const char *)big, sizeof big}, ANY, &out);
    check_addr(&out.src, "192.0.2.1", 56324);
}

/* An accepted version must also be accepted alone. */
static void test_accept_bits(void **state)
{
    (void)state;
    cg__proxy_hdr out;
    hdr v1 = H("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
    hdr v2 = H(SIG "\x20\x00\x00\x00");
    check_done(v1, CG_PROXY_ACCEPT_V1, &out);
    check_done(v2, CG_PROXY_ACCEPT_V2, &out);
    check_bad(v1, CG_PROXY_ACCEPT_V2, "a v1 header where v2 is expected");
    check_bad(v2, CG_PROXY_ACCEPT_V1, "a v2 header where v1 is expected");
    /* the first byte decides */
    check_bad(H("P"), CG_PROXY_ACCEPT_V2, "a v1 header where v2 is expected");
    check_bad(H("\r"), CG_PROXY_ACCEPT_V1, "a v2 header where v1 is expected");
    check_bad(H("GET / HTTP/1.1\r\n"), ANY, "not a PROXY");
    check_bad(v1, 0, "no PROXY protocol version");
    assert_int_equal(parse("", 0, CG_PROXY_ACCEPT_V1, &out), CG__PROXY_MORE);
}

static void test_v1_bad(void **state)
{
    (void)state;
    char line[CG_PROXY_V1_MAX + 2];
    cg__proxy_hdr out;
    /* 108 bytes with the CRLF; its first 107 end in the CR, and the LF
     * could only make it 108 */
    memset(line, 'z', sizeof line);
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + CG_PROXY_V1_MAX - 1, "\r\n", 2);
    check_bad((hdr){line, CG_PROXY_V1_MAX + 1}, ANY, "no CRLF within 107");
    check_bad((hdr){line, CG_PROXY_V1_MAX}, ANY, "no CRLF within 107");
    /* no CR at all: MORE up to 106 bytes, BAD at 107 */
    memset(line + 14, 'z', sizeof line - 14);
    assert_int_equal(parse(line, CG_PROXY_V1_MAX - 1, ANY, &out), CG__PROXY_MORE);
    check_bad((hdr){line, CG_PROXY_V1_MAX}, ANY, "no CRLF within 107");

    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r"
                "X"),
              ANY, "CR not followed by LF");
    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\n"), ANY, "bad port");
    check_bad(H("PROXY TCP4 192.0.2.256 198.51.100.7 1 2\r\n"), ANY, "bad address");
    check_bad(H("PROXY TCP4 192.0.2 198.51.100.7 1 2\r\n"), ANY, "bad address");
    check_bad(H("PROXY TCP4 192.0.2.01 198.51.100.7 1 2\r\n"), ANY, "bad address");
    check_bad(H("PROXY TCP4 192.0.2.1.5 198.51.100.7 1 2\r\n"), ANY, "bad address");
    check_bad(H("PROXY TCP4 3221225985 198.51.100.7 1 2\r\n"), ANY, "bad address");
    check_bad(H("PROXY TCP6 2001:db8:::1 ::1 1 2\r\n"), ANY, "bad address");
    check_bad(H("PROXY TCP6 2001:db8::1%eth0 ::1 1 2\r\n"), ANY, "bad address");
    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 65536 443\r\n"), ANY, "bad port");
    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 -1 443\r\n"), ANY, "bad port");
    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 08 443\r\n"), ANY, "bad port");
    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 +8 443\r\n"), ANY, "bad port");
    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 8 443x\r\n"), ANY, "bad port");
    check_bad(H("PROXY TCP4 ::1 198.51.100.7 1 2\r\n"), ANY, "IPv6 address after TCP4");
    check_bad(H("PROXY TCP4 192.0.2.1 ::ffff:198.51.100.7 1 2\r\n"), ANY,
              "IPv6 address after TCP4");
    check_bad(H("PROXY TCP6 192.0.2.1 ::1 1 2\r\n"), ANY, "IPv4 address after TCP6");
    check_bad(H("PROXY TCP4  192.0.2.1 198.51.100.7 1 2\r\n"), ANY, "two spaces");
    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 1  2\r\n"), ANY, "two spaces");
    check_bad(H("PROXY  TCP4 192.0.2.1 198.51.100.7 1 2\r\n"), ANY, "two spaces");
    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 1 2 \r\n"), ANY, "too many fields");
    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 1 2 3\r\n"), ANY, "too many fields");
    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 1\r\n"), ANY, "too few fields");
    check_bad(H("PROXY\r\n"), ANY, "too few fields");
    check_bad(H("PROXY \r\n"), ANY, "ends in a space");
    check_bad(H("proxy TCP4 192.0.2.1 198.51.100.7 1 2\r\n"), ANY, "not a PROXY");
    check_bad(H("PROXY tcp4 192.0.2.1 198.51.100.7 1 2\r\n"), ANY, "protocol");
    check_bad(H("PROXY TCP5 192.0.2.1 198.51.100.7 1 2\r\n"), ANY, "protocol");
    check_bad(H("PROXY UNKNOWNX\r\n"), ANY, "protocol");
    check_bad(H("PROXYTCP4 192.0.2.1 198.51.100.7 1 2\r\n"), ANY, "not \"PROXY\"");
    check_bad(H("PROXY\tTCP4 192.0.2.1 198.51.100.7 1 2\r\n"), ANY, "not \"PROXY\"");
    /* found as early as the bytes show it */
    check_bad(H("PROXY TCP4 192.0.2.1 198.51.100.7 0"
                "1"),
              ANY, "bad port");
    check_bad(H("PROXY TCP4 1.2.3.4."), ANY, "bad address");
    check_bad(H("PROXY TCP6 1.2."), ANY, "IPv4 address after TCP6");
    check_bad(H("PROXY TCP6 12345"), ANY, "bad address");
    check_bad(H("PROXY TCP6 ::1::"), ANY, "bad address");
    check_bad(H("PROXY TCP7"), ANY, "protocol");
    check_bad(H("PROXY U "), ANY, "protocol");
    check_bad(H("PROXX"), ANY, "not \"PROXY\"");
    check_bad(H("PROXY\r"), ANY, "too few fields");
}

static void test_v2_bad(void **state)
{
    (void)state;
    check_bad(H("\r\n\r\n\0\r\nQUIT\r"
                "\x21\x11\x00\x0c"),
              ANY, "signature");
    check_bad(H("\r\n\r\n\x01"), ANY, "signature");
    check_bad(H("\r\r"), ANY, "signature");
    check_bad(H(SIG "\x11\x11\x00\x0c"), ANY, "version is not 2");
    check_bad(H(SIG "\x31"), ANY, "version is not 2");
    check_bad(H(SIG "\x22"), ANY, "command");
    check_bad(H(SIG "\x2f"), ANY, "command");
    check_bad(H(SIG "\x21\x12"), ANY, "UDP");
    check_bad(H(SIG "\x21\x22\x00\x24"), ANY, "UDP");
    check_bad(H(SIG "\x21\x31"), ANY, "AF_UNIX");
    check_bad(H(SIG "\x21\x32"), ANY, "AF_UNIX");
    check_bad(H(SIG "\x21\x41\x00\x0c"), ANY, "unknown address family");
    check_bad(H(SIG "\x21\x13"), ANY, "unknown address family");
    check_bad(H(SIG "\x21\x01"), ANY, "unknown address family");
    check_bad(H(SIG "\x20\x10"), ANY, "unknown address family");
    /* 16 + 521 bytes: past the bound as soon as the length is known */
    check_bad(H(SIG "\x21\x11\x02\x09"), ANY, "longer than 536");
    check_bad(H(SIG "\x20\x00\xff\xff"), ANY, "longer than 536");
    check_bad(H(SIG "\x21\x11\x00\x0b"), ANY, "shorter than the family");
    check_bad(H(SIG "\x21\x21\x00\x23"), ANY, "shorter than the family");
    check_bad(H(SIG "\x21\x21\x00\x0c"), ANY, "shorter than the family");
    /* a TLV whose length runs past the header, and a stray byte after the
     * last TLV */
    check_bad(H(SIG "\x21\x11\x00\x12"
                    "\xc0\x00\x02\x01\xc6\x33\x64\x07\xdc\x04\x01\xbb"
                    "\x01\x00\x04h2"
                    "\x00"),
              ANY, "TLV");
    check_bad(H(SIG "\x21\x11\x00\x0e"
                    "\xc0\x00\x02\x01\xc6\x33\x64\x07\xdc\x04\x01\xbb"
                    "\x01\x00"),
              ANY, "TLV");
}

/* MORE is never answered once CG_PROXY_MAX bytes are there: a v1 line of
 * spaces-free text and a v2 header announcing more than it may hold. */
static void test_never_more_at_max(void **state)
{
    (void)state;
    uint8_t *buf = malloc(CG_PROXY_MAX);
    assert_non_null(buf);
    cg__proxy_hdr out;
    memset(buf, '1', CG_PROXY_MAX);
    memcpy(buf, "PROXY UNKNOWN ", 14);
    for (size_t n = CG_PROXY_V1_MAX; n <= CG_PROXY_MAX; n++)
        assert_int_equal(cg__proxy_parse(buf, n, ANY, &out), CG__PROXY_BAD);
    memset(buf, 0, CG_PROXY_MAX);
    memcpy(buf, SIG "\x21\x11\x02\x08", CG_PROXY_V2_FIXED);
    assert_int_equal(cg__proxy_parse(buf, CG_PROXY_MAX - 1, ANY, &out), CG__PROXY_MORE);
    /* 508 zero bytes after the addresses: 169 empty TLVs and a stray byte;
     * then one TLV of 505 bytes */
    assert_int_equal(cg__proxy_parse(buf, CG_PROXY_MAX, ANY, &out), CG__PROXY_BAD);
    buf[CG_PROXY_V2_FIXED + 12 + 1] = 0x01;
    buf[CG_PROXY_V2_FIXED + 12 + 2] = 0xf9;
    assert_int_equal(cg__proxy_parse(buf, CG_PROXY_MAX, ANY, &out), CG__PROXY_DONE);
    assert_int_equal(out.len, CG_PROXY_MAX);
    free(buf);
}

static void sa4(struct sockaddr_storage *ss, const char *text, unsigned port)
{
    struct sockaddr_in s4;
    memset(&s4, 0, sizeof s4);
    s4.sin_family = AF_INET;
    s4.sin_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET, text, &s4.sin_addr), 1);
    memset(ss, 0, sizeof *ss);
    memcpy(ss, &s4, sizeof s4);
}

static void sa6(struct sockaddr_storage *ss, const char *text, unsigned port)
{
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET6, text, &s6.sin6_addr), 1);
    memset(ss, 0, sizeof *ss);
    memcpy(ss, &s6, sizeof s6);
}

/* Write src/dst in both versions, parse back, compare; for v1 also the
 * exact text. */
static void round_trip(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                       const char *v1_text, const char *want_src, unsigned sport,
                       const char *want_dst, unsigned dport)
{
    for (unsigned v = 1; v <= 2; v++) {
        uint8_t buf[CG_PROXY_WRITE_MAX];
        size_t n = cg__proxy_write(v, (const struct sockaddr *)src, (const struct sockaddr *)dst,
                                   buf, sizeof buf);
        assert_true(n > 0);
        if (v == 1) {
            assert_int_equal(n, strlen(v1_text));
            assert_memory_equal(buf, v1_text, n);
        }
        cg__proxy_hdr out;
        check_done((hdr){(const char *)buf, n}, v == 1 ? CG_PROXY_ACCEPT_V1 : CG_PROXY_ACCEPT_V2,
                   &out);
        assert_int_equal(out.version, v);
        assert_false(out.local);
        check_addr(&out.src, want_src, sport);
        check_addr(&out.dst, want_dst, dport);
        /* one byte short of room: nothing written */
        assert_int_equal(cg__proxy_write(v, (const struct sockaddr *)src,
                                         (const struct sockaddr *)dst, buf, n - 1),
                         0);
    }
}

static void test_write(void **state)
{
    (void)state;
    struct sockaddr_storage a, b;
    sa4(&a, "192.0.2.1", 56324);
    sa4(&b, "198.51.100.7", 443);
    round_trip(&a, &b, "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n", "192.0.2.1", 56324,
               "198.51.100.7", 443);
    sa6(&a, "2001:db8::1", 0);
    sa6(&b, "2001:db8:0:1::ff", 65535);
    round_trip(&a, &b, "PROXY TCP6 2001:db8::1 2001:db8:0:1::ff 0 65535\r\n", "2001:db8::1", 0,
               "2001:db8:0:1::ff", 65535);
    /* mapped: written as IPv4 */
    sa6(&a, "::ffff:192.0.2.9", 1000);
    sa6(&b, "::ffff:198.51.100.7", 2000);
    round_trip(&a, &b, "PROXY TCP4 192.0.2.9 198.51.100.7 1000 2000\r\n", "192.0.2.9", 1000,
               "198.51.100.7", 2000);
    sa6(&a, "::ffff:192.0.2.9", 1000);
    sa4(&b, "198.51.100.7", 2000);
    round_trip(&a, &b, "PROXY TCP4 192.0.2.9 198.51.100.7 1000 2000\r\n", "192.0.2.9", 1000,
               "198.51.100.7", 2000);
    /* mixed families: both as IPv6, the IPv4 one mapped (and read back as
     * IPv4) */
    sa4(&a, "192.0.2.9", 1000);
    sa6(&b, "2001:db8::2", 2000);
    round_trip(&a, &b, "PROXY TCP6 ::ffff:192.0.2.9 2001:db8::2 1000 2000\r\n", "192.0.2.9", 1000,
               "2001:db8::2", 2000);
    round_trip(&b, &a, "PROXY TCP6 2001:db8::2 ::ffff:192.0.2.9 2000 1000\r\n", "2001:db8::2", 2000,
               "192.0.2.9", 1000);

    /* the longest v1 line fits CG_PROXY_WRITE_MAX */
    sa6(&a, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
    sa6(&b, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    uint8_t buf[CG_PROXY_WRITE_MAX];
    size_t n = cg__proxy_write(1, (const struct sockaddr *)&a, (const struct sockaddr *)&b, buf,
                               sizeof buf);
    assert_int_equal(n, 104);

    /* another family, another version */
    struct sockaddr_storage u;
    memset(&u, 0, sizeof u);
    u.ss_family = AF_UNSPEC;
    assert_int_equal(cg__proxy_write(1, (const struct sockaddr *)&u, (const struct sockaddr *)&b,
                                     buf, sizeof buf),
                     0);
    assert_int_equal(cg__proxy_write(2, (const struct sockaddr *)&a, (const struct sockaddr *)&u,
                                     buf, sizeof buf),
                     0);
    assert_int_equal(cg__proxy_write(3, (const struct sockaddr *)&a, (const struct sockaddr *)&b,
                                     buf, sizeof buf),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_valid),    cmocka_unit_test(test_v2_valid),
        cmocka_unit_test(test_accept_bits), cmocka_unit_test(test_v1_bad),
        cmocka_unit_test(test_v2_bad),      cmocka_unit_test(test_never_more_at_max),
        cmocka_unit_test(test_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
