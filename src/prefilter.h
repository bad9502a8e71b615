/* prefilter.h — the kernel judge: callers refused before the handshake.
 *
 * On Linux two BPF programs judge by the caller's address alone, with the
 * verdicts compiled from the one judge (prefilter_compile.c):
 *
 *   refuse  an sk_lookup program attached to the network namespace answers
 *           SK_DROP for a refused caller of one of our listeners: the kernel
 *           resets the SYN, the caller's connect fails with ECONNREFUSED, the
 *           process never sees it;
 *   drop    a socket filter on the listening socket discards a refused
 *           caller's SYN: its connect times out. It is attached only while
 *           the listener's mode in force is drop; the sockets accepted from
 *           it meanwhile inherit it (and pass everything it sees).
 *
 * Runtime bans (cg__prefilter_ban) are one LPM trie shared by every
 * listener, looked up before the table for a listener whose mode is not
 * off.
 *
 * What the kernel holds is one table per generation (prefilter_abi.h), built
 * off to the side and swapped in with one map update. Nothing is pinned: the
 * programs and maps go when the process's descriptors close, crash included.
 *
 * Built only where libbpf, clang and bpftool are found (CG_HAVE_PREFILTER);
 * elsewhere cg__prefilter_open answers CG_ENOTSUP.
 */
#ifndef CG_PREFILTER_H
#define CG_PREFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bpf/prefilter_abi.h"
#include "condgate/accept.h"
#include "condgate/rules.h"

typedef struct cg__prefilter cg__prefilter;

/* One generation's table: n elements, the CG_PF_MAX_SLOTS headers first. */
typedef struct cg__pf_table {
    struct cg_pf_elem *elems;
    size_t n;
} cg__pf_table;

/* A table loaded into a kernel map, not yet in force. */
typedef struct cg__pf_staged cg__pf_staged;

/* cg__prefilter_open: load the programs and maps (the ban map sized for
 * max_bans prefixes) and attach the sk_lookup program to the process's
 * network namespace; no listener is judged until
 * added and a table installed. Returns 0 and *out, or CG_EACCES (no right
 * to load BPF programs: root, or CAP_BPF with CAP_NET_ADMIN), CG_ENOTSUP
 * (built without it, or the kernel lacks it) or CG_ESYS, with the reason in
 * why. Any thread. */
int cg__prefilter_open(cg__prefilter **out, size_t max_bans, char *why, size_t whylen);

/* cg__prefilter_add_listener: judge packets for the listening socket fd,
 * bound to bind, as `slot` (< CG_PF_MAX_SLOTS): its address and port (for a
 * dual-stack [::] socket also the IPv4 wildcard) go into the listener map
 * and its socket cookie into the drop mode's filter map. The filter itself
 * is attached by cg__prefilter_commit while the slot is drop, so fd must
 * stay open while tables are committed (close never touches it). Returns 0
 * or a CG_E* code with the reason in why. Control thread. */
int cg__prefilter_add_listener(cg__prefilter *p, uint32_t slot, cg_socket_t fd,
                               const struct sockaddr *bind, socklen_t bindlen, char *why,
                               size_t whylen);

/* cg__prefilter_stage: load table t into a new kernel map, off to the side
 * (nothing changes yet). Returns 0 and *out, or CG_ENOMEM / CG_ERANGE /
 * CG_ESYS with the reason in why. Any thread. */
int cg__prefilter_stage(cg__prefilter *p, const cg__pf_table *t, cg__pf_staged **out, char *why,
                        size_t whylen);

/* cg__prefilter_commit: put staged table s in force with one map update,
 * and free s (also on failure). Before it, the drop mode's socket filter is
 * attached to each added listener that is drop in s; after it, detached
 * from each that no longer is (so the sockets it accepts from then on run
 * no filter). Returns 0 or CG_ESYS (a filter not attached, or the update;
 * the table in force is then the previous one). Control thread. */
int cg__prefilter_commit(cg__prefilter *p, cg__pf_staged *s);

/* cg__pf_staged_free: drop a staged table that will not be committed.
 * Accepts NULL. Any thread. */
void cg__pf_staged_free(cg__pf_staged *s);

/* cg__prefilter_ban: put the ban on prefix c in force in the kernel (add
 * true), or lift it (add false; a prefix not there is not an error). A
 * banned caller of any slot whose mode is not off is refused (by that mode)
 * before the table is searched, and counted under reason CG_PF_REASON_BAN.
 * One map update: a caller sees the ban or not, never half of it. IPv4
 * prefixes are held as IPv4-mapped IPv6 ones, so mapped callers are covered;
 * an IPv4 caller is banned by IPv4 prefixes only (an IPv6 one such as ::/0
 * never refuses it), as the process judges it.
 * Returns 0, CG_ERANGE when the kernel's ban map is full (it holds the
 * max_bans of the start, at least 1; re-adding a prefix already there is 0
 * even then), CG_EINVAL for a prefix of no family, or CG_ESYS. Any
 * thread. */
int cg__prefilter_ban(cg__prefilter *p, const cg_cidr *c, bool add);

/* cg__prefilter_counts: callers refused in the kernel for slot, by reason
 * (summed over CPUs), into out[CG_PF_NREASONS]. Returns 0 or CG_ESYS. Any
 * thread. */
int cg__prefilter_counts(const cg__prefilter *p, uint32_t slot, uint64_t out[CG_PF_NREASONS]);

/* cg__prefilter_detach: take the sk_lookup program off the network
 * namespace: the kernel stops refusing callers for this process (another
 * condgate took the listeners over and judges with its own). The maps stay,
 * so bans and counts go on working; a drop filter on a listening socket is
 * left to the socket's new owner. Accepts NULL. Control thread. */
void cg__prefilter_detach(cg__prefilter *p);

/* cg__prefilter_close: detach and free everything. Accepts NULL. */
void cg__prefilter_close(cg__prefilter *p);

#endif /* CG_PREFILTER_H */
