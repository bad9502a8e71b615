/* unix/prefilter.c — prefilter.h on Linux: the BPF programs of
 * src/bpf/prefilter.bpf.c loaded through their libbpf skeleton.
 *
 * Nothing is pinned. The sk_lookup link, the programs and the maps live as
 * long as this process's descriptors: exit or a crash detaches everything.
 *
 * The drop mode's socket filter is attached to a listening socket only while
 * that listener's mode in force is drop (cg__prefilter_commit attaches and
 * detaches it), because every socket accepted from it inherits the filter
 * and runs it on each packet of the relayed connection.
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

#include "condgate/config.h"
#include "prefilter.skel.h"

/* Elements written to a new table per batch call. */
#define BATCH 65536u

struct cg__prefilter {
    struct cg_pf *skel;
    struct bpf_link *link; /* sk_lookup on this network namespace */
    int ncpus;
    /* Per slot (control thread): the listening socket (-1: none added) and
     * whether the socket filter is attached to it. */
    int fds[CG_PF_MAX_SLOTS];
    bool attached[CG_PF_MAX_SLOTS];
};

struct cg__pf_staged {
    int fd;                         /* the new table's array */
    uint8_t modes[CG_PF_MAX_SLOTS]; /* each slot's mode in it */
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
        snprintf(why, whylen,
                 "%s: %s (loading BPF needs root or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)", what,
                 strerror(e));
        return CG_EACCES;
    }
    snprintf(why, whylen, "%s: %s", what, strerror(e));
    return e == ENOSYS || e == EINVAL || e == EOPNOTSUPP ? CG_ENOTSUP
           : e == ENOMEM                                 ? CG_ENOMEM
                                                         : CG_ESYS;
}

/* The ban map's size for max_bans: at least 1 (a map cannot be empty), at
 * most the configuration's bound. */
static uint32_t ban_entries(size_t max_bans)
{
    if (max_bans == 0)
        return 1;
    return max_bans > CG_CONFIG_MAX_BANS ? CG_CONFIG_MAX_BANS : (uint32_t)max_bans;
}

/* cg__prefilter_open: see prefilter.h. */
int cg__prefilter_open(cg__prefilter **out, size_t max_bans, char *why, size_t whylen)
{
    *out = NULL;
    libbpf_set_print(quiet);
    cg__prefilter *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return fail(ENOMEM, "kernel prefilter", why, whylen);
    for (size_t i = 0; i < CG_PF_MAX_SLOTS; i++)
        p->fds[i] = -1;
    p->ncpus = libbpf_num_possible_cpus();
    p->skel = cg_pf__open();
    if (p->skel == NULL || p->ncpus <= 0) {
        int e = errno ? errno : EINVAL;
        cg__prefilter_close(p);
        return fail(e, "cannot open the BPF object", why, whylen);
    }
    if (bpf_map__set_max_entries(p->skel->maps.bans, ban_entries(max_bans)) != 0) {
        int e = errno;
        cg__prefilter_close(p);
        return fail(e, "cannot size the kernel ban map", why, whylen);
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

/* cg__prefilter_add_listener: see prefilter.h. */
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
    /* The drop mode's filter judges by the listening socket's cookie, so
     * that the accepted sockets that inherit it are never filtered; it is
     * attached by cg__prefilter_commit while the slot's mode is drop. */
    uint64_t cookie = 0;
    socklen_t clen = sizeof(cookie);
    struct cg_pf_lval v = {.slot = slot};
    if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &clen) != 0 ||
        bpf_map__update_elem(p->skel->maps.filters, &cookie, sizeof(cookie), &v, sizeof(v),
                             BPF_ANY) != 0)
        return fail(errno, "cannot add a listener to the kernel prefilter", why, whylen);
    p->fds[slot] = fd;
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

/* cg__prefilter_stage: see prefilter.h. */
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
    for (size_t i = 0; i < CG_PF_MAX_SLOTS && i < t->n; i++)
        s->modes[i] = t->elems[i].value <= CG_PF_MODE_DROP ? (uint8_t)t->elems[i].value
                                                           : (uint8_t)CG_PF_MODE_OFF;
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

/* Attach the socket filter to each listener that is drop in s and has none
 * yet. Harmless ahead of the table: the filter refuses only for a slot
 * whose mode in the table in force is drop. Returns 0 or -1 (errno). */
static int attach_drop_filters(cg__prefilter *p, const cg__pf_staged *s)
{
    int prog = bpf_program__fd(p->skel->progs.cg_pf_filter);
    for (size_t i = 0; i < CG_PF_MAX_SLOTS; i++) {
        if (p->fds[i] < 0 || p->attached[i] || s->modes[i] != CG_PF_MODE_DROP)
            continue;
        if (setsockopt(p->fds[i], SOL_SOCKET, SO_ATTACH_BPF, &prog, sizeof(prog)) != 0)
            return -1;
        p->attached[i] = true;
    }
    return 0;
}

/* Detach the socket filter from each listener that is no longer drop in s
 * (in force now), so that the sockets it accepts from here on run none. A
 * failure leaves a filter that passes everything: a cost, not a verdict. */
static void detach_other_filters(cg__prefilter *p, const cg__pf_staged *s)
{
    int none = 0;
    for (size_t i = 0; i < CG_PF_MAX_SLOTS; i++) {
        if (!p->attached[i] || s->modes[i] == CG_PF_MODE_DROP)
            continue;
        if (setsockopt(p->fds[i], SOL_SOCKET, SO_DETACH_BPF, &none, sizeof(none)) == 0)
            p->attached[i] = false;
    }
}

/* cg__prefilter_commit: see prefilter.h. */
int cg__prefilter_commit(cg__prefilter *p, cg__pf_staged *s)
{
    uint32_t zero = 0;
    int rc = attach_drop_filters(p, s);
    if (rc == 0)
        rc = bpf_map__update_elem(p->skel->maps.tables, &zero, sizeof(zero), &s->fd, sizeof(s->fd),
                                  BPF_ANY);
    if (rc == 0)
        detach_other_filters(p, s);
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

/* cg__pf_staged_free: see prefilter.h. */
void cg__pf_staged_free(cg__pf_staged *s)
{
    if (s == NULL)
        return;
    close_bpf_fd(s->fd);
    free(s);
}

/* cg__prefilter_counts: see prefilter.h. */
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

/* cg__prefilter_detach: see prefilter.h. */
void cg__prefilter_detach(cg__prefilter *p)
{
    if (p == NULL)
        return;
    bpf_link__destroy(p->link);
    p->link = NULL;
}

/* cg__prefilter_close: see prefilter.h. */
void cg__prefilter_close(cg__prefilter *p)
{
    if (p == NULL)
        return;
    bpf_link__destroy(p->link);
    cg_pf__destroy(p->skel);
    free(p);
}

/* The ban map's key for prefix c (prefilter_abi.h), bits past the prefix
 * cleared. Returns 0 or CG_EINVAL for a family or length out of range. */
static int ban_key(const cg_cidr *c, struct cg_pf_bkey *k)
{
    memset(k, 0, sizeof(*k));
    if (c->family == 4 && c->len <= 32) {
        k->addr[10] = k->addr[11] = 0xff;
        memcpy(k->addr + 12, c->addr, 4);
        k->prefixlen = 96u + c->len;
    } else if (c->family == 6 && c->len <= 128) {
        memcpy(k->addr, c->addr, 16);
        k->prefixlen = c->len;
    } else {
        return CG_EINVAL;
    }
    for (uint32_t bit = k->prefixlen; bit < 128; bit++)
        k->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    return 0;
}

/* Whether exactly prefix k is in the ban map: its longest match within
 * k's length carries k's length as its value. */
static bool ban_present(const cg__prefilter *p, const struct cg_pf_bkey *k)
{
    uint32_t plen = 0;
    return bpf_map__lookup_elem(p->skel->maps.bans, k, sizeof(*k), &plen, sizeof(plen), 0) == 0 &&
           plen == k->prefixlen;
}

/* cg__prefilter_ban: see prefilter.h. Also CG_EINVAL for a prefix of no
 * family. */
int cg__prefilter_ban(cg__prefilter *p, const cg_cidr *c, bool add)
{
    struct cg_pf_bkey k;
    if (p == NULL || c == NULL || ban_key(c, &k) != 0)
        return CG_EINVAL;
    if (!add) {
        int rc = bpf_map__delete_elem(p->skel->maps.bans, &k, sizeof(k), 0);
        return rc == 0 || rc == -ENOENT ? 0 : CG_ESYS;
    }
    uint32_t v = k.prefixlen;
    int rc = bpf_map__update_elem(p->skel->maps.bans, &k, sizeof(k), &v, sizeof(v), BPF_ANY);
    if (rc == 0)
        return 0;
    if (rc != -ENOSPC && rc != -E2BIG)
        return CG_ESYS;
    /* Full. Kernels before 6.13 refuse even a prefix already there (whose
     * update would change nothing): that one is in force all the same. */
    return ban_present(p, &k) ? 0 : CG_ERANGE;
}
