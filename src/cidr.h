/* cidr.h — what cidr.c and rules.c share beyond the public rules.h: the
 * canonical form of a prefix (host bits clear, IPv4-mapped prefixes as
 * IPv4) and big-endian loads and stores of address bytes.
 */
#ifndef CG_CIDR_H
#define CG_CIDR_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "condgate/rules.h"

/* cg__cidr_mask: clear the host bits of c past its length. Returns true if
 * any were set. Any thread. */
bool cg__cidr_mask(cg_cidr *c);

/* cg__cidr_normalise_mapped: an IPv4-mapped prefix that only covers mapped
 * addresses (::ffff:0:0/96 or longer) becomes the IPv4 prefix it names,
 * because mapped callers are judged as IPv4. Other prefixes are left as
 * they are. Any thread. */
void cg__cidr_normalise_mapped(cg_cidr *c);

/* cg__range_prefixes: call fn(arg, &prefix) for each prefix of the smallest
 * set that covers exactly the addresses from..to (both included; their
 * lengths are ignored), in address order. Both must be of one family, from
 * no greater than to. Returns 0, the first non-zero answer of fn, or
 * CG_EINVAL (families differ, or from > to) with the reason in why (when
 * why is not NULL). Any thread. */
int cg__range_prefixes(const cg_cidr *from, const cg_cidr *to,
                       int (*fn)(void *arg, const cg_cidr *prefix), void *arg, char *why,
                       size_t whylen);

/* Whether the 16 address bytes at a are an IPv4-mapped IPv6 address. Inline:
 * every IPv6 lookup asks. */
static inline bool cg__addr_is_mapped(const uint8_t *a)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, prefix, sizeof prefix) == 0;
}

static inline uint32_t cg__load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t cg__load_be64(const uint8_t *p)
{
    return (uint64_t)cg__load_be32(p) << 32 | cg__load_be32(p + 4);
}

static inline void cg__store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void cg__store_be64(uint8_t *p, uint64_t v)
{
    cg__store_be32(p, (uint32_t)(v >> 32));
    cg__store_be32(p + 4, (uint32_t)v);
}

#endif /* CG_CIDR_H */
