/* unix/prefilter.c — prefilter.h on Linux: the BPF programs of
 * src/bpf/prefilter.bpf.c loaded through their libbpf skeleton.
 *
 * Nothing is pinned. The sk_lookup link, the programs and the maps live as
 * long as this process's descriptors: exit or a crash detaches everything.
 */
#include "prefilter.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "prefilter.skel.h"

/* Elements written to a new table per batch call. */
#define BATCH 65536u

struct cg__prefilter {
    struct cg_pf *skel;
    struct bpf_link *link; /* sk_lookup on this network namespace */
    int ncpus;
};

struct cg__pf_staged {
    int fd; /* the new table's array */
};

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    (void)level, (void)fmt, (void)ap;
    return 0;
}

/* errno e of a BPF call as a CG_E* code, with a reason a person can act on. */
static int fail(int e, const char *what, char *why, size_t whylen)
{
    if (e == EPERM || e == EACCES) {
        snprintf(why, whylen, "%s: %s (loading BPF needs root or CAP_BPF and CAP_NET_ADMIN)", what,
                 strerror(e));
        return CG_EACCES;
    }
    snprintf(why, whylen, "%s: %s", what, strerror(e));
    return e == ENOSYS || e == EINVAL || e == EOPNOTSUPP ? CG_ENOTSUP
           : e == ENOMEM                                 ? CG_ENOMEM
                                                         : CG_ESYS;
}

int cg__prefilter_open(cg__prefilter **out, size_t max_bans, char *why, size_t whylen)
{
    (void)max_bans; /* TODO(bans): size the kernel's ban map */
    *out = NULL;
    libbpf_set_print(quiet);
    cg__prefilter *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return fail(ENOMEM, "kernel prefilter", why, whylen);
    p->ncpus = libbpf_num_possible_cpus();
    p->skel = cg_pf__open();
    if (p->skel == NULL || p->ncpus <= 0) {
        int e = errno ? errno : EINVAL;
        cg__prefilter_close(p);
        return fail(e, "cannot open the BPF object", why, whylen);
    }
    if (cg_pf__load(p->skel) != 0) {
        int e = errno;
        cg__prefilter_close(p);
        return fail(e, "cannot load the BPF programs", why, whylen);
    }
    int ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
        int e = errno;
        cg__prefilter_close(p);
        return fail(e, "cannot open /proc/self/ns/net", why, whylen);
    }
    p->link = bpf_program__attach_netns(p->skel->progs.cg_pf_lookup, ns);
    int e = errno;
    close(ns);
    if (p->link == NULL) {
        cg__prefilter_close(p);
        return fail(e, "cannot attach the sk_lookup program", why, whylen);
    }
    *out = p;
    return 0;
}

static int put_key(cg__prefilter *p, const struct cg_pf_lkey *k, uint32_t slot)
{
    struct cg_pf_lval v = {.slot = slot};
    return bpf_map__update_elem(p->skel->maps.listeners, k, sizeof(*k), &v, sizeof(v), BPF_ANY);
}

/* Whether IPv6 socket fd also takes IPv4 callers. */
static bool dual_stack(cg_socket_t fd)
{
    int v6only = 1;
    socklen_t len = sizeof(v6only);
    return getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) == 0 && !v6only;
}

int cg__prefilter_add_listener(cg__prefilter *p, uint32_t slot, cg_socket_t fd,
                               const struct sockaddr *bind, socklen_t bindlen, char *why,
                               size_t whylen)
{
    struct cg_pf_lkey k;
    memset(&k, 0, sizeof(k));
    if (slot >= CG_PF_MAX_SLOTS)
        return fail(ERANGE, "too many listeners for the kernel prefilter", why, whylen);
    if (bind->sa_family == AF_INET && bindlen >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)bind;
        k.family = AF_INET;
        k.port = ntohs(s4->sin_port);
        k.addr[0] = s4->sin_addr.s_addr;
    } else if (bind->sa_family == AF_INET6 && bindlen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)bind;
        k.family = AF_INET6;
        k.port = ntohs(s6->sin6_port);
        memcpy(k.addr, &s6->sin6_addr, sizeof(k.addr));
    } else {
        return fail(EAFNOSUPPORT, "listener address", why, whylen);
    }
    if (put_key(p, &k, slot) != 0)
        return fail(errno, "cannot add a listener to the kernel prefilter", why, whylen);
    static const uint32_t any[4];
    if (k.family == AF_INET6 && memcmp(k.addr, any, sizeof(any)) == 0 && dual_stack(fd)) {
        k.family = AF_INET; /* a dual-stack [::] takes IPv4 callers as IPv4 */
        if (put_key(p, &k, slot) != 0)
            return fail(errno, "cannot add a listener to the kernel prefilter", why, whylen);
    }
    /* The drop mode's filter: by the listening socket's cookie, so that the
     * accepted sockets that inherit it are never filtered. */
    int prog = bpf_program__fd(p->skel->progs.cg_pf_filter);
    uint64_t cookie = 0;
    socklen_t clen = sizeof(cookie);
    struct cg_pf_lval v = {.slot = slot};
    if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &clen) != 0 ||
        bpf_map__update_elem(p->skel->maps.filters, &cookie, sizeof(cookie), &v, sizeof(v),
                             BPF_ANY) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &prog, sizeof(prog)) != 0)
        return fail(errno, "cannot attach the socket filter", why, whylen);
    return 0;
}

/* Fill array fd with t, in batches (element by element where the kernel
 * has no batch update). */
static int fill(int fd, const cg__pf_table *t)
{
    uint32_t *keys = malloc(BATCH * sizeof(*keys));
    if (keys == NULL)
        return -ENOMEM;
    int rc = 0;
    for (size_t off = 0; off < t->n && rc == 0; off += BATCH) {
        uint32_t n = (uint32_t)(t->n - off < BATCH ? t->n - off : BATCH);
        for (uint32_t i = 0; i < n; i++)
            keys[i] = (uint32_t)off + i;
        uint32_t count = n;
        rc = bpf_map_update_batch(fd, keys, &t->elems[off], &count, NULL);
        if (rc != 0 && (errno == EINVAL || errno == ENOTSUP || errno == EOPNOTSUPP)) {
            rc = 0;
            for (uint32_t i = 0; i < n && rc == 0; i++)
                rc = bpf_map_update_elem(fd, &keys[i], &t->elems[off + i], BPF_ANY);
        }
    }
    free(keys);
    return rc;
}

int cg__prefilter_stage(cg__prefilter *p, const cg__pf_table *t, cg__pf_staged **out, char *why,
                        size_t whylen)
{
    *out = NULL;
    if (t->n == 0 || t->n > CG_PF_MAX_SLOTS + (size_t)CG_PF_MAX_INTERVALS) {
        snprintf(why, whylen, "a table of %zu elements is past the bound of %u", t->n,
                 CG_PF_MAX_SLOTS + CG_PF_MAX_INTERVALS);
        return CG_ERANGE;
    }
    (void)p;
    cg__pf_staged *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return fail(ENOMEM, "kernel prefilter table", why, whylen);
    /* The same flags as the outer map's inner template, which the kernel
     * compares; BPF_F_INNER_MAP lets each generation have its own size. */
    LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_INNER_MAP);
    s->fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "cg_pf_gen", sizeof(uint32_t),
                           sizeof(struct cg_pf_elem), (uint32_t)t->n, &opts);
    if (s->fd < 0) {
        int e = errno;
        free(s);
        return fail(e, "cannot create the kernel prefilter table", why, whylen);
    }
    if (fill(s->fd, t) != 0) {
        int e = errno;
        cg__pf_staged_free(s);
        return fail(e, "cannot fill the kernel prefilter table", why, whylen);
    }
    *out = s;
    return 0;
}

int cg__prefilter_commit(cg__prefilter *p, cg__pf_staged *s)
{
    uint32_t zero = 0;
    int rc = bpf_map__update_elem(p->skel->maps.tables, &zero, sizeof(zero), &s->fd, sizeof(s->fd),
                                  BPF_ANY);
    /* The outer map holds the table now (and lets the previous one go). */
    cg__pf_staged_free(s);
    return rc == 0 ? 0 : CG_ESYS;
}

/* Close a descriptor the bpf(2) system call made. Raw, like its making:
 * ThreadSanitizer does not see bpf(2) create descriptors, so its close(2)
 * would mistake a table's descriptor for the socket that last had that
 * number on a worker thread and report a race that is not there. */
static void close_bpf_fd(int fd)
{
    syscall(SYS_close, fd);
}

void cg__pf_staged_free(cg__pf_staged *s)
{
    if (s == NULL)
        return;
    close_bpf_fd(s->fd);
    free(s);
}

int cg__prefilter_counts(const cg__prefilter *p, uint32_t slot, uint64_t out[CG_PF_NREASONS])
{
    uint64_t v[512];
    for (int r = 0; r < CG_PF_NREASONS; r++)
        out[r] = 0;
    if (p == NULL || slot >= CG_PF_MAX_SLOTS || p->ncpus > 512)
        return CG_ESYS;
    for (int r = 0; r < CG_PF_NREASONS; r++) {
        uint32_t idx = CG_PF_COUNTER(slot, (uint32_t)r);
        if (bpf_map__lookup_elem(p->skel->maps.counters, &idx, sizeof(idx), v,
                                 (size_t)p->ncpus * sizeof(uint64_t), 0) != 0)
            return CG_ESYS;
        for (int c = 0; c < p->ncpus; c++)
            out[r] += v[c];
    }
    return 0;
}

void cg__prefilter_close(cg__prefilter *p)
{
    if (p == NULL)
        return;
    bpf_link__destroy(p->link);
    cg_pf__destroy(p->skel);
    free(p);
}

int cg__prefilter_ban(cg__prefilter *p, const cg_cidr *c, bool add)
{
    (void)p, (void)c, (void)add; /* TODO(bans): the kernel's ban map */
    return CG_ENOTSUP;
}
