/* fuzz_proxy.c — the PROXY protocol parser and writer (src/proxy_proto.c).
 *
 * The first byte picks the versions accepted (its value mod 3: v1, v2 or
 * both); the rest is what the sender sent. Every prefix of it is parsed as
 * well, each from a heap block that ends where the prefix ends (so ASan sees
 * a read past buf[k - 1]), and the answers must agree: MORE until the
 * header's last byte, then DONE with the same header for every longer
 * prefix; once BAD, BAD for every longer prefix; never MORE at
 * CG_PROXY_MAX bytes. A header found is at most CG_PROXY_MAX bytes (a v1
 * line at most 107, ending in CRLF), names addresses of AF_INET or AF_INET6
 * (an IPv4-mapped one as AF_INET) unless local, is found again when only its
 * own version is accepted and refused when only the other is.
 *
 * The same bytes also pick two addresses, ports and a version for the
 * writer: what it writes must parse back to those addresses.
 */
#include <stdlib.h>
#include <string.h>

#include "condgate/common.h"
#include "fuzz_common.h"
#include "proxy_proto.h"

static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static bool same_hdr(const cg__proxy_hdr *a, const cg__proxy_hdr *b)
{
    return a->len == b->len && a->version == b->version && a->local == b->local &&
           memcmp(&a->src, &b->src, sizeof a->src) == 0 &&
           memcmp(&a->dst, &b->dst, sizeof a->dst) == 0;
}

static void check_family(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return;
    FUZZ_CHECK(ss->ss_family == AF_INET6, "family %d", (int)ss->ss_family);
    struct sockaddr_in6 s6;
    memcpy(&s6, ss, sizeof s6);
    FUZZ_CHECK(memcmp(&s6.sin6_addr, mapped, sizeof mapped) != 0, "mapped address as AF_INET6");
}

/* What one whole parse promises by itself. */
static void check_one(const uint8_t *buf, size_t n, cg__proxy_status st, const cg__proxy_hdr *h)
{
    switch (st) {
    case CG__PROXY_DONE:
        FUZZ_CHECK(h->why == NULL, "DONE with a reason");
        FUZZ_CHECK(h->len >= 1 && h->len <= n && h->len <= CG_PROXY_MAX, "len %zu of %zu", h->len,
                   n);
        FUZZ_CHECK(h->version == 1 || h->version == 2, "version %u", h->version);
        if (h->version == 1)
            FUZZ_CHECK(h->len <= CG_PROXY_V1_MAX && h->len >= 2 && buf[h->len - 2] == '\r' &&
                           buf[h->len - 1] == '\n',
                       "v1 header of %zu bytes", h->len);
        else
            FUZZ_CHECK(h->len >= CG_PROXY_V2_FIXED, "v2 header of %zu bytes", h->len);
        if (!h->local) {
            check_family(&h->src);
            check_family(&h->dst);
        }
        break;
    case CG__PROXY_MORE:
        FUZZ_CHECK(h->why == NULL, "MORE with a reason");
        FUZZ_CHECK(n < CG_PROXY_MAX, "MORE at %zu bytes", n);
        break;
    case CG__PROXY_BAD:
        FUZZ_CHECK(h->why != NULL && h->why[0] != '\0', "BAD without a reason");
        break;
    default:
        FUZZ_CHECK(0, "status %d", (int)st);
    }
}

/* Parse data[0..k) from the end of a block of `cap` bytes. */
static cg__proxy_status parse_at_end(uint8_t *block, size_t cap, const uint8_t *data, size_t k,
                                     unsigned accept, cg__proxy_hdr *h)
{
    memcpy(block + cap - k, data, k);
    return cg__proxy_parse(block + cap - k, k, accept, h);
}

static void fuzz_parse(const uint8_t *data, size_t n, unsigned accept)
{
    uint8_t *block = malloc(n ? n : 1);
    FUZZ_CHECK(block != NULL, "out of memory");
    size_t cap = n ? n : 1;
    cg__proxy_hdr whole, h;
    cg__proxy_status st = parse_at_end(block, cap, data, n, accept, &whole);
    check_one(block + cap - n, n, st, &whole);

    cg__proxy_status prev = CG__PROXY_MORE;
    cg__proxy_hdr first = {0};
    for (size_t k = 0; k < n; k++) {
        cg__proxy_status s = parse_at_end(block, cap, data, k, accept, &h);
        check_one(block + cap - k, k, s, &h);
        if (prev == CG__PROXY_BAD)
            FUZZ_CHECK(s == CG__PROXY_BAD, "BAD at %zu bytes, then %d at %zu", k - 1, (int)s, k);
        if (prev == CG__PROXY_DONE)
            FUZZ_CHECK(s == CG__PROXY_DONE && same_hdr(&h, &first),
                       "DONE at %zu bytes, then %d or another header at %zu", k - 1, (int)s, k);
        if (s == CG__PROXY_DONE && prev == CG__PROXY_MORE) {
            FUZZ_CHECK(h.len == k, "first DONE at %zu bytes with len %zu", k, h.len);
            first = h;
        }
        prev = s;
    }
    if (prev == CG__PROXY_BAD)
        FUZZ_CHECK(st == CG__PROXY_BAD, "BAD at %zu bytes, then %d at %zu", n - 1, (int)st, n);
    if (prev == CG__PROXY_DONE)
        FUZZ_CHECK(st == CG__PROXY_DONE && same_hdr(&whole, &first), "DONE, then not at %zu", n);
    if (st == CG__PROXY_DONE && prev == CG__PROXY_MORE)
        FUZZ_CHECK(whole.len == n, "first DONE at %zu bytes with len %zu", n, whole.len);

    if (st == CG__PROXY_DONE) {
        unsigned own = whole.version == 1 ? CG_PROXY_ACCEPT_V1 : CG_PROXY_ACCEPT_V2;
        FUZZ_CHECK(parse_at_end(block, cap, data, n, own, &h) == CG__PROXY_DONE &&
                       same_hdr(&h, &whole),
                   "not found with only v%u accepted", whole.version);
        FUZZ_CHECK(parse_at_end(block, cap, data, n, own ^ 3u, &h) == CG__PROXY_BAD,
                   "v%u header accepted by the other version", whole.version);
    }
    free(block);
}

/* An address from 17 bytes: p[0] bit 0 says IPv6, bit 1 IPv4-mapped IPv6;
 * then 16 bytes of address (the first 4 for IPv4) and 2 of port. */
static void make_addr(const uint8_t *p, struct sockaddr_storage *ss, struct sockaddr_storage *want)
{
    uint16_t port = (uint16_t)(p[17] << 8 | p[18]);
    memset(ss, 0, sizeof *ss);
    memset(want, 0, sizeof *want);
    struct sockaddr_in s4;
    memset(&s4, 0, sizeof s4);
    s4.sin_family = AF_INET;
    s4.sin_port = htons(port);
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(port);
    if (p[0] & 2) {
        memcpy(&s4.sin_addr, p + 1, 4);
        memcpy(&s6.sin6_addr, mapped, sizeof mapped);
        memcpy((uint8_t *)&s6.sin6_addr + 12, p + 1, 4);
        memcpy(ss, &s6, sizeof s6);
        memcpy(want, &s4, sizeof s4);
    } else if (p[0] & 1) {
        memcpy(&s6.sin6_addr, p + 1, 16);
        memcpy(ss, &s6, sizeof s6);
        if (memcmp(p + 1, mapped, sizeof mapped) == 0) {
            memcpy(&s4.sin_addr, p + 13, 4);
            memcpy(want, &s4, sizeof s4);
        } else {
            memcpy(want, &s6, sizeof s6);
        }
    } else {
        memcpy(&s4.sin_addr, p + 1, 4);
        memcpy(ss, &s4, sizeof s4);
        memcpy(want, &s4, sizeof s4);
    }
}

/* Write two addresses made from data (zero-padded) and parse them back. */
static void fuzz_write(uint8_t mode, const uint8_t *data, size_t n)
{
    uint8_t p[38];
    memset(p, 0, sizeof p);
    memcpy(p, data, n < sizeof p ? n : sizeof p);
    struct sockaddr_storage src, dst, want_src, want_dst;
    make_addr(p, &src, &want_src);
    make_addr(p + 19, &dst, &want_dst);
    unsigned version = (mode & 4) ? 2 : 1;
    uint8_t buf[CG_PROXY_WRITE_MAX];
    size_t len = cg__proxy_write(version, (const struct sockaddr *)&src,
                                 (const struct sockaddr *)&dst, buf, sizeof buf);
    FUZZ_CHECK(len > 0 && len <= sizeof buf, "wrote %zu bytes", len);
    cg__proxy_hdr h;
    cg__proxy_status st = cg__proxy_parse(buf, len, version, &h);
    FUZZ_CHECK(st == CG__PROXY_DONE && h.len == len && !h.local && h.version == version,
               "v%u header written does not parse: %d (%s)", version, (int)st, h.why ? h.why : "");
    FUZZ_CHECK(memcmp(&h.src, &want_src, sizeof want_src) == 0, "source differs");
    FUZZ_CHECK(memcmp(&h.dst, &want_dst, sizeof want_dst) == 0, "destination differs");
    FUZZ_CHECK(cg__proxy_write(version, (const struct sockaddr *)&src,
                               (const struct sockaddr *)&dst, buf, len - 1) == 0,
               "wrote into %zu bytes", len - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned accept = data[0] % 3u + 1u;
    fuzz_parse(data + 1, size - 1, accept);
    fuzz_write(data[0], data + 1, size - 1);
    return 0;
}
