/* fuzz_cidr.c — cg_cidr_parse, the one parser every rule goes through.
 *
 * The input is the text, exactly `size` bytes with no NUL after it. Beyond
 * not crashing, the parser must:
 *   - on success, yield a canonical prefix (known family, length in range,
 *     host bits zero, IPv4-mapped prefixes as IPv4) that cg_cidr_format
 *     prints as text that parses back to the same prefix, and accept only
 *     bytes that can appear in address text;
 *   - agree with inet_pton about which addresses are addresses;
 *   - on failure, write a one-line message NUL-terminated within errlen, for
 *     any errlen, and never past it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "condgate/rules.h"
#include "fuzz_common.h"

#define ERR_BIG 512

/* The input as printable text for messages (static buffer). */
static const char *shown(const uint8_t *data, size_t size)
{
    static char buf[4 * 256 + 4];
    size_t o = 0;
    for (size_t i = 0; i < size && o + 8 < sizeof buf; i++) {
        if (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '\\')
            buf[o++] = (char)data[i];
        else
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", data[i]);
    }
    buf[o] = '\0';
    return buf;
}

static bool address_byte(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
           c == '.' || c == '/';
}

/* What inet_pton says of the address part, for texts it can be asked about:
 * 1 an address, 0 not, -1 cannot ask (a NUL inside, or too long). */
static int pton_says(const uint8_t *data, size_t alen, int *family, uint8_t addr[16])
{
    char buf[64];
    if (alen >= sizeof buf || memchr(data, '\0', alen))
        return -1;
    memcpy(buf, data, alen);
    buf[alen] = '\0';
    *family = memchr(buf, ':', alen) ? AF_INET6 : AF_INET;
    return inet_pton(*family, buf, addr) == 1;
}

static void check_success(const uint8_t *data, size_t size, const cg_cidr *c)
{
    char text[CG_CIDR_STRLEN], again[CG_CIDR_STRLEN];
    cg_cidr back, host;

    FUZZ_CHECK(c->family == 4 || c->family == 6, "family %u", (unsigned)c->family);
    FUZZ_CHECK(c->len <= (c->family == 4 ? 32 : 128), "length %u for family %u", (unsigned)c->len,
               (unsigned)c->family);
    for (size_t i = 0; i < size; i++)
        FUZZ_CHECK(address_byte(data[i]), "accepted \"%s\" with byte 0x%02x at %zu",
                   shown(data, size), data[i], i);

    /* Host bits are zero: masking to the length changes nothing, and the
     * unused bytes of an IPv4 prefix are zero. */
    unsigned bytes = c->family == 4 ? 4 : 16;
    for (unsigned i = 0; i < 16; i++) {
        int bits = (int)c->len - 8 * (int)i;
        uint8_t keep = i >= bytes  ? 0
                       : bits >= 8 ? 0xff
                       : bits <= 0 ? 0
                                   : (uint8_t)(0xff << (8 - bits));
        FUZZ_CHECK((c->addr[i] & (uint8_t)~keep) == 0, "host bits set in byte %u of %s", i,
                   cg_cidr_format(c, text, sizeof text));
    }
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    FUZZ_CHECK(!(c->family == 6 && c->len >= 96 && memcmp(c->addr, mapped, 12) == 0),
               "IPv4-mapped prefix left as IPv6: %s", cg_cidr_format(c, text, sizeof text));

    /* Format, parse back, format again: the same prefix and the same text. */
    cg_cidr_format(c, text, sizeof text);
    size_t tl = strlen(text);
    FUZZ_CHECK(tl > 0 && tl < CG_CIDR_STRLEN && strchr(text, '/'), "formatted as \"%s\"", text);
    char err[ERR_BIG] = "";
    int rc = cg_cidr_parse(text, tl, &back, err, sizeof err);
    FUZZ_CHECK(rc == 0, "own text \"%s\" refused: %s", text, err);
    FUZZ_CHECK(memcmp(&back, c, sizeof back) == 0, "\"%s\" parses back to another prefix", text);
    cg_cidr_format(&back, again, sizeof again);
    FUZZ_CHECK(strcmp(text, again) == 0, "formats \"%s\" then \"%s\"", text, again);

    /* A truncated format still ends in NUL inside the buffer. */
    char small[8];
    memset(small, 'x', sizeof small);
    cg_cidr_format(c, small, 5);
    FUZZ_CHECK(memchr(small, '\0', 5) && small[5] == 'x', "cg_cidr_format overran a 5-byte buffer");

    /* The prefix contains its own first and last address. */
    host = *c;
    host.len = (uint8_t)(c->family == 4 ? 32 : 128);
    FUZZ_CHECK(cg_cidr_contains(c, &host), "%s does not contain its first address", text);
    for (unsigned i = 0; i < bytes; i++) {
        int bits = (int)c->len - 8 * (int)i;
        uint8_t keep = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
        host.addr[i] |= (uint8_t)~keep;
    }
    FUZZ_CHECK(cg_cidr_contains(c, &host), "%s does not contain its last address", text);

    /* A host prefix round-trips through a socket address. */
    if (c->len == (c->family == 4 ? 32 : 128)) {
        struct sockaddr_storage ss;
        cg_cidr key;
        memset(&ss, 0, sizeof ss);
        if (c->family == 4) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            sin->sin_family = AF_INET;
            memcpy(&sin->sin_addr, c->addr, 4);
        } else {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            sin6->sin6_family = AF_INET6;
            memcpy(&sin6->sin6_addr, c->addr, 16);
        }
        FUZZ_CHECK(cg_addr_from_sockaddr((struct sockaddr *)&ss, &key) == 0 &&
                       memcmp(&key, c, sizeof key) == 0,
                   "%s changes through a socket address", text);
    }
}

static void check_failure(const uint8_t *data, size_t size, const char *err, size_t errlen)
{
    size_t n = fuzz_check_one_line(err, errlen);
    FUZZ_CHECK(n < errlen, "message of %zu bytes in %zu", n, errlen);
    /* Messages are built from escaped input: printable ASCII only. */
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)err[i] < 0x7f, "byte 0x%02x in message \"%s\" for \"%s\"",
                   (unsigned char)err[i], err, shown(data, size));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cg_cidr c;
    char err[ERR_BIG];

    memset(err, 0xa5, sizeof err);
    int rc = cg_cidr_parse((const char *)data, size, &c, err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == CG_EINVAL, "returned %d", rc);
    if (rc == 0)
        check_success(data, size, &c);
    else
        check_failure(data, size, err, sizeof err);

    /* Address-only text: the verdict must match inet_pton's, except that
     * leading zeros in IPv4 octets, zone ids and whitespace are refused by
     * design (inet_pton refuses all three as well on glibc). */
    if (size > 0 && !memchr(data, '/', size)) {
        int family = 0;
        uint8_t addr[16] = {0};
        int says = pton_says(data, size, &family, addr);
        if (says >= 0) {
            FUZZ_CHECK((rc == 0) == (says == 1), "cg_cidr_parse %s \"%s\", inet_pton %s",
                       rc == 0 ? "accepts" : "refuses", shown(data, size),
                       says ? "accepts" : "refuses");
            if (rc == 0 && family == AF_INET)
                FUZZ_CHECK(c.family == 4 && memcmp(c.addr, addr, 4) == 0,
                           "IPv4 \"%s\" parsed to another address", shown(data, size));
            if (rc == 0 && family == AF_INET6)
                FUZZ_CHECK(c.family == 6 ? memcmp(c.addr, addr, 16) == 0
                                         : memcmp(c.addr, addr + 12, 4) == 0,
                           "IPv6 \"%s\" parsed to another address", shown(data, size));
        }
    }

    /* The same input with a tight error buffer: the message is cut, ends in
     * NUL within errlen and nothing is written past it (the buffer is its
     * own heap block, so ASan sees any overrun). */
    if (rc != 0) {
        size_t errlen = 1 + (size ? data[size - 1] % 24 : 0);
        char *tight = malloc(errlen);
        FUZZ_CHECK(tight != NULL, "out of memory");
        memset(tight, 0xa5, errlen);
        int rc2 = cg_cidr_parse((const char *)data, size, &c, tight, errlen);
        FUZZ_CHECK(rc2 == rc, "returned %d, then %d", rc, rc2);
        FUZZ_CHECK(memchr(tight, '\0', errlen), "no NUL within errlen %zu", errlen);
        FUZZ_CHECK(strncmp(tight, err, errlen - 1) == 0,
                   "cut message \"%s\" is not a prefix of \"%s\"", tight, err);
        free(tight);
        /* And with no buffer at all. */
        FUZZ_CHECK(cg_cidr_parse((const char *)data, size, &c, NULL, 0) == rc,
                   "another result without an error buffer");
    }
    return 0;
}
