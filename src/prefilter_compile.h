/* prefilter_compile.h — a generation as the kernel prefilter judges it.
 *
 * For every listener whose callers the kernel judges, the intervals of its
 * rule set's range tables, each with the verdict of the one judge
 * (cg__policy_judge) on its first address: the kernel and the condition
 * callback cannot disagree, because the kernel holds the judge's answers.
 * Runs of intervals with the same answer are merged; listeners that share a
 * rule set share its intervals. Portable: no kernel needed to build or test.
 */
#ifndef CG_PREFILTER_COMPILE_H
#define CG_PREFILTER_COMPILE_H

#include <stddef.h>
#include <stdint.h>

#include "gen.h"
#include "prefilter.h"

/* cg__pf_compile: the table of generation gen, where modes[i] (CG_PF_MODE_*)
 * is what the kernel does for gate listener i (slot i). Listeners in mode
 * CG_PF_MODE_OFF get a header and no intervals. Returns 0 and *out (free
 * with cg__pf_table_free), CG_ERANGE past CG_PF_MAX_INTERVALS or more than
 * CG_PF_MAX_SLOTS listeners, or CG_ENOMEM. Any thread; gen must stay
 * alive for the call. */
int cg__pf_compile(const cg__gen *gen, const uint32_t *modes, cg__pf_table *out);

/* cg__pf_table_free: free what cg__pf_compile made. Accepts an empty table. */
void cg__pf_table_free(cg__pf_table *t);

/* cg__pf_lookup: what the kernel programs do with a table: the value (0
 * admit, else 1 + reason) of the interval that holds `addr` (a host prefix;
 * IPv4-mapped IPv6 judged as IPv4) for `slot`, and the slot's mode in *mode.
 * The same search as src/bpf/prefilter.bpf.c, for tests and explain. The
 * kernel looks runtime bans up first (its `bans` map, not in the table):
 * this answers for the table alone, as if no ban held `addr`. */
uint32_t cg__pf_lookup(const cg__pf_table *t, uint32_t slot, const cg_cidr *addr, uint32_t *mode);

#endif /* CG_PREFILTER_COMPILE_H */
