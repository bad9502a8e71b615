/* prefilter_abi.h — what the kernel programs (prefilter.bpf.c) and the
 * process (src/unix/prefilter.c, src/prefilter_compile.c) share: map keys,
 * the layout of one generation's table, counter indices.
 *
 * Included by BPF C (clang -target bpf) and by ordinary C, so only fixed-size
 * integer types, defined here for both.
 *
 * One generation's table is one BPF array whose elements are cg_pf_elem:
 *
 *     [0, CG_PF_MAX_SLOTS)        one header per listener slot: its mode and
 *                                 where its IPv4 and IPv6 intervals start
 *     [CG_PF_MAX_SLOTS, ...)      intervals, per slot and family: sorted by
 *                                 start, the first starting at address 0, so
 *                                 every address falls in exactly one
 *
 * An address is refused when the interval that holds it (the last one whose
 * start is <= the address) has a non-zero verdict: 1 + the reason counted.
 *
 * Runtime bans are not in the table: they live in the `bans` LPM trie (keys
 * cg_pf_bkey), shared by every slot and looked up before the table for a
 * slot whose mode is not off. A hit counts under CG_PF_REASON_BAN.
 */
#ifndef CG_PREFILTER_ABI_H
#define CG_PREFILTER_ABI_H

#if defined(__bpf__)
typedef unsigned char cg_pf_u8;
typedef unsigned int cg_pf_u32;
typedef unsigned long long cg_pf_u64;
#else
#include <stdint.h>
typedef uint8_t cg_pf_u8;
typedef uint32_t cg_pf_u32;
typedef uint64_t cg_pf_u64;
#endif

/* Listeners one process can have (CG_CONFIG_MAX_LISTENERS). */
#define CG_PF_MAX_SLOTS 256
/* Counters per slot, indexed by reason (policy.h's cg__reject_reason:
 * 0 rule, 1 default; room for the stages to come). */
#define CG_PF_NREASONS 8
/* A slot header's `pad`: flags. NO_BANS: the slot's callers are senders of
 * PROXY headers (accept_proxy), not the clients bans are about. */
#define CG_PF_SLOT_NO_BANS 1u
/* The reason a ban counts under (policy.h's CG__REJ_BAN). */
#define CG_PF_REASON_BAN 3
/* Most intervals in one generation's table, all listeners together: two per
 * entry of a 16 M-entry set is the range tables' own bound; this one keeps a
 * table within 24 B x 8 M = 192 MiB. */
#define CG_PF_MAX_INTERVALS (8u * 1024u * 1024u)
/* Binary-search steps: enough for CG_PF_MAX_INTERVALS (2^23) and more. */
#define CG_PF_SEARCH_STEPS 24

/* A slot's mode in the table's header. */
#define CG_PF_MODE_OFF 0u
#define CG_PF_MODE_REFUSE 1u /* sk_lookup: SK_DROP, the kernel resets the SYN */
#define CG_PF_MODE_DROP 2u   /* socket filter: the SYN is discarded */

/* Key of the `listeners` hash map: which listener a packet is for. family is
 * 2 (AF_INET) or 10 (AF_INET6); addr in network byte order, all zero for a
 * wildcard bind (0.0.0.0 or [::]; a dual-stack [::] listener has an AF_INET
 * wildcard key too); port in host byte order. */
struct cg_pf_lkey {
    cg_pf_u32 family;
    cg_pf_u32 port;
    cg_pf_u32 addr[4];
};

/* Value of `listeners` (and of `filters`, keyed by the listening socket's
 * SO_COOKIE, for the drop mode's socket filter). */
struct cg_pf_lval {
    cg_pf_u32 slot;
};

/* One element of a generation's table (24 bytes). */
struct cg_pf_elem {
    union {
        struct {            /* an interval: its start address */
            cg_pf_u64 hi;   /* IPv6: the high 64 bits; IPv4: 0 */
            cg_pf_u64 lo;   /* IPv6: the low 64 bits; IPv4: the address */
        } key;
        struct {            /* a slot's header */
            cg_pf_u32 v4_first, v4_count;
            cg_pf_u32 v6_first, v6_count;
        } hdr;
    } u;
    cg_pf_u32 value; /* interval: 0 admit, else 1 + reason; header: mode */
    cg_pf_u32 pad;
};

/* Key of the `bans` LPM trie: a prefix of prefixlen bits of addr (network
 * byte order). IPv6 as it is; IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d,
 * prefixlen 96 + the IPv4 length), so that one lookup of a mapped caller
 * finds IPv4 bans too. Bits past prefixlen are zero. The value, a u32, is
 * the prefixlen again: the programs read it to let an IPv4 caller be
 * banned by IPv4 bans only (>= 96; an IPv6 ban such as ::/0 holds the mapped
 * range too), the process to tell an exact prefix from a shorter one that
 * holds it. */
struct cg_pf_bkey {
    cg_pf_u32 prefixlen;
    cg_pf_u8 addr[16];
};

/* Index of a counter in the per-CPU `counters` array. */
#define CG_PF_COUNTER(slot, reason) ((slot) * CG_PF_NREASONS + (reason))

#endif /* CG_PREFILTER_ABI_H */
