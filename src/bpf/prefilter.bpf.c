/* prefilter.bpf.c — the kernel half of the prefilter: two programs that judge
 * a caller by its address alone, against the table in force (prefilter_abi.h).
 *
 *   cg_pf_lookup  sk_lookup, attached to the network namespace: SK_DROP for a
 *                 refused caller of a listener in CG_PF_MODE_REFUSE (the
 *                 kernel answers the SYN with a reset);
 *   cg_pf_filter  socket filter on each listening socket in CG_PF_MODE_DROP
 *                 (attached only while it is): discards a refused caller's
 *                 SYN.
 *
 * A caller is refused when it is banned (the `bans` LPM trie, shared by
 * every listener, counted under CG_PF_REASON_BAN) or, failing that, when the
 * slot's table says so.
 *
 * Fail open only where our own data is missing (no listener entry, no table
 * committed yet, a header or interval outside the table): the process's own
 * judge still sees every caller the kernel lets through, so a gap here costs
 * work, never a wrong admission that the gate would not catch.
 *
 * Written for the Linux 6.1 verifier as well as newer ones: helpers, LPM trie
 * lookups and bounded loops only, no bpf_loop, no kfuncs, no global
 * functions.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "prefilter_abi.h"

#define CG_AF_INET 2
#define CG_AF_INET6 10

/* IPv6 extension headers walked before the TCP header in the drop mode. */
#define CG_PF_MAX_EXTHDRS 6

char LICENSE[] SEC("license") = "GPL";

/* One generation's table: the template only. Each generation's array is
 * created by the process with its own max_entries; BPF_F_INNER_MAP lets the
 * outer map take any of them (the verifier then checks indices at run time,
 * through the lookup helper, instead of against the template's size). */
struct cg_pf_table {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_INNER_MAP);
    __uint(max_entries, CG_PF_MAX_SLOTS + 1);
    __type(key, __u32);
    __type(value, struct cg_pf_elem);
};

/* Never used: a top-level map with the element as its value, so that clang
 * writes the element's full type into BTF (it writes only a forward
 * declaration for a type reached through the inner-map template alone, and
 * libbpf needs the size). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct cg_pf_elem);
} cg_pf_elem_type SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 2 * CG_PF_MAX_SLOTS);
    __type(key, struct cg_pf_lkey);
    __type(value, struct cg_pf_lval);
} listeners SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, CG_PF_MAX_SLOTS);
    __type(key, __u64);
    __type(value, struct cg_pf_lval);
} filters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 1);
    __type(key, __u32);
    __array(values, struct cg_pf_table);
} tables SEC(".maps");

/* Runtime bans: prefixes of any listener's callers. max_entries is the
 * gateway's max_bans, set by the process before load; no preallocation, so
 * an empty trie costs nothing. */
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, 1);
    __type(key, struct cg_pf_bkey);
    __type(value, __u32);
} bans SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, CG_PF_MAX_SLOTS * CG_PF_NREASONS);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

/* A caller's address as the table orders it: IPv4 as hi 0, lo the host-order
 * address; IPv6 as host-order halves. */
struct cg_pf_addr {
    __u64 hi, lo;
    int v4;
};

/* From four network-order words; an IPv4-mapped address (::ffff:a.b.c.d) is
 * judged as the IPv4 address it carries, so that it cannot slip past the
 * IPv4 intervals. */
static __always_inline void addr_from_ip6(struct cg_pf_addr *a, __u32 w0, __u32 w1, __u32 w2,
                                          __u32 w3)
{
    if (w0 == 0 && w1 == 0 && w2 == bpf_htonl(0x0000ffff)) {
        a->v4 = 1;
        a->hi = 0;
        a->lo = bpf_ntohl(w3);
        return;
    }
    a->v4 = 0;
    a->hi = ((__u64)bpf_ntohl(w0) << 32) | bpf_ntohl(w1);
    a->lo = ((__u64)bpf_ntohl(w2) << 32) | bpf_ntohl(w3);
}

/* The table in force, or NULL when none is committed yet. */
static __always_inline void *table_in_force(void)
{
    __u32 zero = 0;

    return bpf_map_lookup_elem(&tables, &zero);
}

/* The verdict for address a in slot's intervals of table inner: 0 admit,
 * else 1 + reason. Binary search for the last start <= a over
 * [first, first + count): n halves each step (the larger half kept), so
 * CG_PF_SEARCH_STEPS steps cover 2^CG_PF_SEARCH_STEPS intervals. */
static __always_inline __u32 search(void *inner, const struct cg_pf_elem *hdr,
                                    const struct cg_pf_addr *a)
{
    __u32 lo = a->v4 ? hdr->u.hdr.v4_first : hdr->u.hdr.v6_first;
    __u32 n = a->v4 ? hdr->u.hdr.v4_count : hdr->u.hdr.v6_count;
    struct cg_pf_elem *e;
    __u32 i;

    if (n == 0)
        return 0;
    for (i = 0; i < CG_PF_SEARCH_STEPS; i++) {
        __u32 half, mid;

        if (n <= 1)
            break;
        half = n / 2;
        mid = lo + half;
        e = bpf_map_lookup_elem(inner, &mid);
        if (!e)
            return 0; /* interval outside the table: our data, fail open */
        if (e->u.key.hi < a->hi || (e->u.key.hi == a->hi && e->u.key.lo <= a->lo))
            lo = mid;
        n -= half;
    }
    if (n > 1)
        return 0; /* more intervals than the ABI allows: fail open */
    e = bpf_map_lookup_elem(inner, &lo);
    if (!e)
        return 0;
    return e->value;
}

/* Count one refusal for slot by verdict v (1 + reason). A reason beyond the
 * counters is refused all the same but not counted, so that it never lands
 * in another slot's counters. */
static __always_inline void count(__u32 slot, __u32 v)
{
    __u32 reason = v - 1;
    __u32 idx;
    __u64 *c;

    if (reason >= CG_PF_NREASONS || slot >= CG_PF_MAX_SLOTS)
        return;
    idx = CG_PF_COUNTER(slot, reason);
    c = bpf_map_lookup_elem(&counters, &idx);
    if (c)
        *c += 1; /* per-CPU: no other writer */
}

/* Whether address a is under a ban: one LPM lookup of a as a /128, IPv4
 * (and IPv4-mapped callers, which a carries as IPv4) as ::ffff:a.b.c.d.
 * An IPv4 caller is banned by IPv4 bans only (prefixlen >= 96), as the
 * process judges it: the longest match of a mapped key shorter than that is
 * an IPv6 ban such as ::/0 that happens to hold the mapped range. */
static __always_inline int banned(const struct cg_pf_addr *a)
{
    struct cg_pf_bkey k = {};
    __u32 *plen;
    __u32 w[4];

    if (a->v4) {
        w[0] = 0;
        w[1] = 0;
        w[2] = bpf_htonl(0x0000ffff);
        w[3] = bpf_htonl((__u32)a->lo);
    } else {
        w[0] = bpf_htonl((__u32)(a->hi >> 32));
        w[1] = bpf_htonl((__u32)a->hi);
        w[2] = bpf_htonl((__u32)(a->lo >> 32));
        w[3] = bpf_htonl((__u32)a->lo);
    }
    k.prefixlen = 128;
    __builtin_memcpy(k.addr, w, sizeof(w));
    plen = bpf_map_lookup_elem(&bans, &k);
    if (!plen)
        return 0;
    return !a->v4 || *plen >= 96;
}

/* Judge address a for slot in mode: the verdict (0 admit, else 1 + reason)
 * when the slot's header in the table in force has that mode, else 0. A ban
 * comes first; then the slot's intervals. */
static __always_inline __u32 judge(__u32 slot, __u32 mode, const struct cg_pf_addr *a)
{
    const struct cg_pf_elem *hdr;
    void *inner;
    __u32 v;

    inner = table_in_force();
    if (!inner)
        return 0; /* no table committed yet */
    hdr = bpf_map_lookup_elem(inner, &slot);
    if (!hdr || hdr->value != mode)
        return 0;
    if (!(hdr->pad & CG_PF_SLOT_NO_BANS) && banned(a)) {
        count(slot, 1 + CG_PF_REASON_BAN);
        return 1 + CG_PF_REASON_BAN;
    }
    v = search(inner, hdr, a);
    if (v)
        count(slot, v);
    return v;
}

SEC("sk_lookup")
int cg_pf_lookup(struct bpf_sk_lookup *ctx)
{
    struct cg_pf_lkey key = {};
    struct cg_pf_lval *lv;
    struct cg_pf_addr a;

    if (ctx->protocol != IPPROTO_TCP)
        return SK_PASS;
    key.family = ctx->family;
    key.port = ctx->local_port;
    if (ctx->family == CG_AF_INET) {
        key.addr[0] = ctx->local_ip4;
        a.v4 = 1;
        a.hi = 0;
        a.lo = bpf_ntohl(ctx->remote_ip4);
    } else if (ctx->family == CG_AF_INET6) {
        key.addr[0] = ctx->local_ip6[0];
        key.addr[1] = ctx->local_ip6[1];
        key.addr[2] = ctx->local_ip6[2];
        key.addr[3] = ctx->local_ip6[3];
        addr_from_ip6(&a, ctx->remote_ip6[0], ctx->remote_ip6[1], ctx->remote_ip6[2],
                      ctx->remote_ip6[3]);
    } else {
        return SK_PASS;
    }
    lv = bpf_map_lookup_elem(&listeners, &key);
    if (!lv) {
        /* not bound to that address: the wildcard bind of the port */
        key.addr[0] = key.addr[1] = key.addr[2] = key.addr[3] = 0;
        lv = bpf_map_lookup_elem(&listeners, &key);
        if (!lv)
            return SK_PASS; /* not one of our listeners */
    }
    return judge(lv->slot, CG_PF_MODE_REFUSE, &a) ? SK_DROP : SK_PASS;
}

/* The caller's address and the offset of the TCP header of skb, or -1 when
 * it is no TCP segment we can read. */
static __always_inline int parse_ip(struct __sk_buff *skb, struct cg_pf_addr *a)
{
    __u8 first;

    if (bpf_skb_load_bytes_relative(skb, 0, &first, 1, BPF_HDR_START_NET))
        return -1;
    if ((first >> 4) == 4) {
        struct iphdr ip;

        if (bpf_skb_load_bytes_relative(skb, 0, &ip, sizeof ip, BPF_HDR_START_NET))
            return -1;
        if (ip.protocol != IPPROTO_TCP || (ip.frag_off & bpf_htons(0x1fff)))
            return -1;
        a->v4 = 1;
        a->hi = 0;
        a->lo = bpf_ntohl(ip.saddr);
        return ip.ihl * 4;
    }
    if ((first >> 4) == 6) {
        struct ipv6hdr ip6;
        __u8 next;
        int off, i;

        if (bpf_skb_load_bytes_relative(skb, 0, &ip6, sizeof ip6, BPF_HDR_START_NET))
            return -1;
        addr_from_ip6(a, ip6.saddr.in6_u.u6_addr32[0], ip6.saddr.in6_u.u6_addr32[1],
                      ip6.saddr.in6_u.u6_addr32[2], ip6.saddr.in6_u.u6_addr32[3]);
        next = ip6.nexthdr;
        off = sizeof ip6;
        /* Extension headers before TCP, so that none hides a SYN. */
        for (i = 0; i < CG_PF_MAX_EXTHDRS; i++) {
            __u8 ext[2];

            if (next == IPPROTO_TCP)
                return off;
            if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING &&
                next != IPPROTO_DSTOPTS)
                return -1;
            if (bpf_skb_load_bytes_relative(skb, off, ext, sizeof ext, BPF_HDR_START_NET))
                return -1;
            next = ext[0];
            off += (ext[1] + 1) * 8;
        }
        return next == IPPROTO_TCP ? off : -1;
    }
    return -1;
}

SEC("socket")
int cg_pf_filter(struct __sk_buff *skb)
{
    __u64 cookie = bpf_get_socket_cookie(skb);
    struct cg_pf_lval *lv;
    struct cg_pf_addr a;
    __u8 flags;
    int off;

    /* Only the listening socket is in `filters`: its accepted sockets
     * inherit the filter under cookies of their own and pass here. */
    lv = bpf_map_lookup_elem(&filters, &cookie);
    if (!lv)
        return skb->len;
    off = parse_ip(skb, &a);
    if (off < 0 || off > 512)
        return skb->len;
    /* byte 13 of the TCP header: CWR ECE URG ACK PSH RST SYN FIN */
    if (bpf_skb_load_bytes_relative(skb, off + 13, &flags, 1, BPF_HDR_START_NET))
        return skb->len;
    if ((flags & 0x12) != 0x02)
        return skb->len; /* not a SYN without ACK */
    return judge(lv->slot, CG_PF_MODE_DROP, &a) ? 0 : skb->len;
}
