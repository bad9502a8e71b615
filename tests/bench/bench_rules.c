/* bench_rules.c — build time, memory and lookup latency of a large rule set.
 *
 * Generates (fixed seed) random IPv4 prefixes /8-/32 and IPv6 prefixes inside
 * 2000::/3 of /16-/128 as the text lines of an in-memory list file, then
 * measures parse + freeze time, the frozen set's size and the median lookup
 * latency, and checks them against the targets of the rules issue. Not a
 * ctest test: timings depend on the machine. See tests/bench/README.md.
 */
#include "condgate/rules.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define TARGET_BUILD_S 1.0
#define TARGET_LOOKUP_NS 50.0
#define TARGET_BYTES (64.0 * 1024 * 1024)

#define BATCH 1000
#define BATCHES 1000
#define WARMUP_BATCHES 200

static uint64_t rng_state;
static volatile unsigned sink_out;

/* splitmix64: small, fast and good enough to spread prefixes. */
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Resident set size in bytes from /proc/self/statm; 0 where there is none. */
static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;

    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void mask(cg_cidr *c)
{
    unsigned bytes = c->family == 4 ? 4 : 16;
    for (unsigned i = 0; i < bytes; i++) {
        int bits = (int)c->len - (int)(8 * i);
        c->addr[i] &= bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
    }
}

static void random_v4(cg_cidr *c)
{
    uint32_t a = (uint32_t)rnd();
    memset(c, 0, sizeof *c);
    c->family = 4;
    memcpy(c->addr, &a, 4);
}

/* A random address inside 2000::/3, where the generated IPv6 rules are. */
static void random_v6(cg_cidr *c)
{
    uint64_t hi = rnd(), lo = rnd();
    memset(c, 0, sizeof *c);
    c->family = 6;
    memcpy(c->addr, &hi, 8);
    memcpy(c->addr + 8, &lo, 8);
    c->addr[0] = (uint8_t)(0x20 | (c->addr[0] & 0x1f));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct lat {
    double median_ns;
    double per_s;
};

/* Median over BATCHES of (time of BATCH lookups) / BATCH, after a warm-up;
 * addresses are generated outside the timed region. Independent lookups
 * overlap in the CPU; with `chained` each address depends on the previous
 * result, which shows the latency of one lookup on its own. */
static struct lat time_lookups(const cg_ruleset *rs, int family, bool chained, unsigned *sink)
{
    static cg_cidr addrs[BATCH];
    static double per[BATCHES];
    double total = 0;
    struct lat r;

    for (int b = -WARMUP_BATCHES; b < BATCHES; b++) {
        double t0, t1;
        for (int i = 0; i < BATCH; i++) {
            if (family == 4)
                random_v4(&addrs[i]);
            else
                random_v6(&addrs[i]);
            addrs[i].len = family == 4 ? 32 : 128;
        }
        t0 = now_s();
        if (chained) {
            cg_rule_id id = 0;
            for (int i = 0; i < BATCH; i++) {
                cg_cidr a = addrs[i];
                a.addr[family == 4 ? 3 : 15] ^= (uint8_t)(id & 1);
                *sink += (unsigned)cg_ruleset_lookup(rs, &a, &id);
            }
            *sink += id;
        } else {
            for (int i = 0; i < BATCH; i++) {
                cg_rule_id id;
                *sink += (unsigned)cg_ruleset_lookup(rs, &addrs[i], &id) + id;
            }
        }
        t1 = now_s();
        if (b >= 0) {
            per[b] = (t1 - t0) * 1e9 / BATCH;
            total += t1 - t0;
        }
    }
    qsort(per, BATCHES, sizeof per[0], cmp_double);
    r.median_ns = per[BATCHES / 2];
    r.per_s = (double)BATCHES * BATCH / total;
    return r;
}

/* The same for cg_ruleset_judge on sockaddr_in: conversion, lookup and the
 * hit counter together. */
static struct lat time_judge4(const cg_ruleset *rs, unsigned *sink)
{
    static struct sockaddr_in sa[BATCH];
    static double per[BATCHES];
    double total = 0;
    struct lat r;

    for (int b = -WARMUP_BATCHES; b < BATCHES; b++) {
        double t0, t1;
        for (int i = 0; i < BATCH; i++) {
            memset(&sa[i], 0, sizeof sa[i]);
            sa[i].sin_family = AF_INET;
            sa[i].sin_addr.s_addr = (uint32_t)rnd();
        }
        t0 = now_s();
        for (int i = 0; i < BATCH; i++)
            *sink += (unsigned)cg_ruleset_judge(rs, (const struct sockaddr *)&sa[i], NULL);
        t1 = now_s();
        if (b >= 0) {
            per[b] = (t1 - t0) * 1e9 / BATCH;
            total += t1 - t0;
        }
    }
    qsort(per, BATCHES, sizeof per[0], cmp_double);
    r.median_ns = per[BATCHES / 2];
    r.per_s = (double)BATCHES * BATCH / total;
    return r;
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--v4 N] [--v6 N] [--seed S]\n", argv0);
}

int main(int argc, char **argv)
{
    unsigned long nv4 = 1000000, nv6 = 200000;
    uint64_t seed = 20240601;
    size_t nlines, cap, used = 0, *off;
    char *text;
    unsigned char *act;
    cg_ruleset *rs = NULL;
    cg_ruleset_stats st;
    size_t rss0, rss1;
    double t0, t1, build_s;
    struct lat l4, l6, c4, c6, j4;
    unsigned sink = 0;
    char err[256];
    cg_source src = {"bench.netset", 0};
    bool ok_build, ok_lookup, ok_mem;

    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--v4") == 0)
            nv4 = strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--v6") == 0)
            nv6 = strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--seed") == 0)
            seed = strtoull(argv[++i], NULL, 10);
        else {
            usage(argv[0]);
            return 2;
        }
    }
    rng_state = seed;

    /* The list file, in memory: one canonical prefix per line. */
    nlines = nv4 + nv6;
    cap = nlines * CG_CIDR_STRLEN + 1;
    text = malloc(cap);
    off = malloc((nlines + 1) * sizeof *off);
    act = malloc(nlines ? nlines : 1);
    if (!text || !off || !act) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < nlines; i++) {
        cg_cidr c;
        if (i < nv4) {
            random_v4(&c);
            c.len = (uint8_t)(8 + rnd() % 25);
        } else {
            random_v6(&c);
            c.len = (uint8_t)(16 + rnd() % 113);
        }
        mask(&c);
        off[i] = used;
        cg_cidr_format(&c, text + used, CG_CIDR_STRLEN);
        used += strlen(text + used);
        text[used++] = '\n';
        act[i] = (unsigned char)(rnd() & 1);
    }
    off[nlines] = used;

    rss0 = rss_bytes();
    t0 = now_s();
    if (cg_ruleset_new("bench", CG_DENY, &rs) != 0) {
        fprintf(stderr, "cg_ruleset_new failed\n");
        return 1;
    }
    for (size_t i = 0; i < nlines; i++) {
        src.line = (uint32_t)(i + 1);
        if (cg_ruleset_add_text(rs, text + off[i], off[i + 1] - off[i] - 1,
                                act[i] ? CG_ALLOW : CG_DENY, &src, NULL, err, sizeof err)) {
            fprintf(stderr, "bench.netset:%zu: %s\n", i + 1, err);
            return 1;
        }
    }
    if (cg_ruleset_freeze(rs) != 0) {
        fprintf(stderr, "freeze failed\n");
        return 1;
    }
    t1 = now_s();
    rss1 = rss_bytes();
    build_s = t1 - t0;
    free(text);
    free(off);
    free(act);

    cg_ruleset_get_stats(rs, &st);
    l4 = time_lookups(rs, 4, false, &sink);
    l6 = time_lookups(rs, 6, false, &sink);
    c4 = time_lookups(rs, 4, true, &sink);
    c6 = time_lookups(rs, 6, true, &sink);
    j4 = time_judge4(rs, &sink);

    printf("condgate rules benchmark (seed %" PRIu64 ")\n", seed);
    printf("  input          %lu IPv4 (/8-/32) + %lu IPv6 (2000::/3, /16-/128) lines\n", nv4, nv6);
    printf("  unique         %zu IPv4, %zu IPv6 (%zu duplicates, %zu conflicts)\n", st.v4, st.v6,
           st.duplicates, st.conflicts);
    printf("  %-26s %12s %12s\n", "measure", "value", "target");
    printf("  %-26s %10.3f s %10.1f s\n", "build (parse + freeze)", build_s, TARGET_BUILD_S);
    printf("  %-26s %8.1f MiB %8.1f MiB\n", "memory (stats.bytes)", (double)st.bytes / 1048576.0,
           TARGET_BYTES / 1048576.0);
    if (rss0 && rss1)
        printf("  %-26s %8.1f MiB\n", "memory (RSS growth)",
               ((double)rss1 - (double)rss0) / 1048576.0);
    printf("  %-26s %9.1f ns %9.1f ns\n", "lookup IPv4 median", l4.median_ns, TARGET_LOOKUP_NS);
    printf("  %-26s %9.1f ns %9.1f ns\n", "lookup IPv6 median", l6.median_ns, TARGET_LOOKUP_NS);
    printf("  %-26s %9.1f ns\n", "lookup IPv4, dependent", c4.median_ns);
    printf("  %-26s %9.1f ns\n", "lookup IPv6, dependent", c6.median_ns);
    printf("  %-26s %9.1f ns\n", "judge IPv4 median", j4.median_ns);
    printf("  %-26s %8.1f M/s\n", "lookups/s IPv4 (1 thread)", l4.per_s / 1e6);
    printf("  %-26s %8.1f M/s\n", "lookups/s IPv6 (1 thread)", l6.per_s / 1e6);
    printf("  %-26s %8.1f M/s\n", "judge/s IPv4 (1 thread)", j4.per_s / 1e6);

    ok_build = build_s <= TARGET_BUILD_S;
    ok_lookup = l4.median_ns <= TARGET_LOOKUP_NS && l6.median_ns <= TARGET_LOOKUP_NS;
    ok_mem = (double)st.bytes <= TARGET_BYTES;
    printf("%s build <= %.1f s\n", ok_build ? "PASS" : "FAIL", TARGET_BUILD_S);
    printf("%s lookup median <= %.0f ns (IPv4 and IPv6)\n", ok_lookup ? "PASS" : "FAIL",
           TARGET_LOOKUP_NS);
    printf("%s memory <= %.0f MiB\n", ok_mem ? "PASS" : "FAIL", TARGET_BYTES / 1048576.0);
    sink_out = sink; /* keeps the lookups from being optimised away */

    cg_ruleset_free(rs);
    return ok_build && ok_lookup && ok_mem ? 0 : 1;
}
