/* prefilter_none.c — prefilter.h where condgate is built without BPF
 * support: nothing loads, and every listener is judged after accept. */
#include "prefilter.h"

#include <stdio.h>

int cg__prefilter_open(cg__prefilter **out, size_t max_bans, char *why, size_t whylen)
{
    (void)max_bans;
    *out = NULL;
    snprintf(why, whylen, "built without BPF support (libbpf, clang, bpftool)");
    return CG_ENOTSUP;
}

int cg__prefilter_add_listener(cg__prefilter *p, uint32_t slot, cg_socket_t fd,
                               const struct sockaddr *bind, socklen_t bindlen, char *why,
                               size_t whylen)
{
    (void)p, (void)slot, (void)fd, (void)bind, (void)bindlen;
    snprintf(why, whylen, "built without BPF support (libbpf, clang, bpftool)");
    return CG_ENOTSUP;
}

int cg__prefilter_stage(cg__prefilter *p, const cg__pf_table *t, cg__pf_staged **out, char *why,
                        size_t whylen)
{
    (void)p, (void)t;
    *out = NULL;
    snprintf(why, whylen, "built without BPF support (libbpf, clang, bpftool)");
    return CG_ENOTSUP;
}

int cg__prefilter_commit(cg__prefilter *p, cg__pf_staged *s)
{
    (void)p, (void)s;
    return CG_ENOTSUP;
}

void cg__pf_staged_free(cg__pf_staged *s)
{
    (void)s;
}

int cg__prefilter_counts(const cg__prefilter *p, uint32_t slot, uint64_t out[CG_PF_NREASONS])
{
    (void)p, (void)slot;
    for (int r = 0; r < CG_PF_NREASONS; r++)
        out[r] = 0;
    return CG_ENOTSUP;
}

void cg__prefilter_close(cg__prefilter *p)
{
    (void)p;
}

void cg__prefilter_detach(cg__prefilter *p)
{
    (void)p;
}

int cg__prefilter_ban(cg__prefilter *p, const cg_cidr *c, bool add)
{
    (void)p, (void)c, (void)add;
    return CG_ENOTSUP;
}
