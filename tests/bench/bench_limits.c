/* bench_limits.c — cost and memory of the per-source table (sources.c).
 *
 * Fills a table with 1,000 and then 100,000 sources (random IPv4 callers,
 * /32), and times judge + take + release of random callers among them (the
 * first fits in the caches, the second mostly does not); then fills a fresh
 * table with 1,000,000 sources and reports cg__sources_bytes per source, the
 * process's RSS growth per source and the longest single judge (the hash
 * doubling). Not a ctest test: timings belong to the machine. See
 * tests/bench/README.md.
 */
#include "sources.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SOURCES_HOT 100000u
#define SOURCES_BIG 1000000u
#define OPS 4000000u

static uint64_t rng_state = 0x5eed;

/* splitmix64 */
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

/* This thread's CPU time: a judge's own cost, without the time the
 * scheduler gave to other processes on a busy machine. */
static uint64_t cpu_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
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

/* Caller k of a set: a 32-bit bijection of k and the set's seed as an IPv4
 * host, so distinct k are distinct sources and the bench reads no array. */
static cg_cidr caller(uint32_t k, uint32_t seed)
{
    uint32_t a = k ^ seed;
    cg_cidr c;

    a ^= a >> 16;
    a *= 0x85ebca6bu;
    a ^= a >> 13;
    a *= 0xc2b2ae35u;
    a ^= a >> 16;
    memset(&c, 0, sizeof c);
    c.family = 4;
    c.len = 32;
    c.addr[0] = (uint8_t)(a >> 24);
    c.addr[1] = (uint8_t)(a >> 16);
    c.addr[2] = (uint8_t)(a >> 8);
    c.addr[3] = (uint8_t)a;
    return c;
}

static cg_source_limits bench_limits(void)
{
    cg_source_limits l;
    memset(&l, 0, sizeof l);
    l.max_per_source = 8;
    l.rate.count = 1000000; /* on, never reached: every caller is admitted */
    l.rate.window_ms = 1000;
    l.prefix4 = 32;
    l.prefix6 = 64;
    return l;
}

/* judge + take + release of one caller; 1 when admitted. */
static int cycle(cg__sources *s, const cg_source_limits *lim, const cg_cidr *a, uint64_t ms)
{
    cg__src_effect eff;
    if (cg__sources_judge(s, 0, lim, a, ms, true, &eff) != CG__SRC_OK)
        return 0;
    cg__source *e = cg__sources_take(s, 0, lim, a, ms);
    cg__sources_release(s, e);
    return e != NULL;
}

/* judge + take + release of random callers among `sources` of a table
 * that holds them already: ns per cycle. */
static double bench_cycles(uint32_t sources)
{
    cg_source_limits lim = bench_limits();
    cg__sources *s = cg__sources_new(SOURCES_BIG);
    uint32_t *order = calloc(OPS, sizeof *order);
    unsigned ok = 0;

    if (!s || !order)
        exit(1);
    for (uint32_t i = 0; i < sources; i++) {
        cg_cidr a = caller(i, 1);
        cycle(s, &lim, &a, 0);
    }
    for (size_t i = 0; i < OPS; i++)
        order[i] = (uint32_t)(rnd() % sources);
    uint64_t t0 = now_ns(), c0 = cpu_ns();
    for (size_t i = 0; i < OPS; i++) {
        cg_cidr a = caller(order[i], 1);
        ok += (unsigned)cycle(s, &lim, &a, 1 + i / 1000);
    }
    double ns = (double)(now_ns() - t0) / OPS, cpu = (double)(cpu_ns() - c0) / OPS;
    printf("cycle: %zu sources, %u judge+take+release of random ones: %.1f ns each (%.1f ns "
           "of CPU; %u admitted)\n",
           cg__sources_count(s), OPS, ns, cpu, ok);
    cg__sources_free(s);
    free(order);
    return ns;
}

/* The longest single judge while a table fills to 1,000,000 sources (the
 * hash doubling, a new slab), in thread CPU time; and how many took over
 * 100 us. */
static void bench_pauses(void)
{
    cg_source_limits lim = bench_limits();
    cg__sources *s = cg__sources_new(SOURCES_BIG);
    uint64_t worst = 0, slow = 0;
    cg__src_effect eff;

    if (!s)
        exit(1);
    for (uint32_t i = 0; i < SOURCES_BIG; i++) {
        cg_cidr a = caller(i, 4);
        uint64_t b = cpu_ns();
        cg__sources_judge(s, 0, &lim, &a, 0, true, &eff);
        uint64_t d = cpu_ns() - b;
        worst = d > worst ? d : worst;
        slow += d > 100000;
    }
    printf("pauses: filling %zu sources, longest judge %.1f us of CPU, %" PRIu64 " over 100 us\n",
           cg__sources_count(s), (double)worst / 1e3, slow);
    cg__sources_free(s);
}

static void bench_big(void)
{
    cg_source_limits lim = bench_limits();
    size_t rss0 = rss_bytes();
    cg__sources *s = cg__sources_new(SOURCES_BIG);
    uint64_t t0 = now_ns(), c0 = cpu_ns();
    cg__src_effect eff;

    if (!s)
        exit(1);
    for (uint32_t i = 0; i < SOURCES_BIG; i++) {
        cg_cidr a = caller(i, 2);
        cg__sources_judge(s, 0, &lim, &a, 0, true, &eff);
    }
    uint64_t t1 = now_ns(), c1 = cpu_ns();
    size_t rss1 = rss_bytes(), n = cg__sources_count(s), bytes = cg__sources_bytes(s);
    printf("big: %zu new sources in %.0f ms (%.0f ns each, %.0f ns of CPU)\n", n,
           (double)(t1 - t0) / 1e6, (double)(t1 - t0) / (double)n, (double)(c1 - c0) / (double)n);
    printf("big: cg__sources_bytes %zu = %.1f bytes/source; RSS growth %zu = %.1f bytes/source\n",
           bytes, (double)bytes / (double)n, rss1 - rss0, (double)(rss1 - rss0) / (double)n);
    /* Full: each new source forgets the least recently seen one. */
    t0 = now_ns();
    for (uint32_t i = 0; i < SOURCES_HOT; i++) {
        cg_cidr a = caller(i, 3);
        cg__sources_judge(s, 0, &lim, &a, 1, true, &eff);
    }
    t1 = now_ns();
    printf("big: %u new sources into the full table (each forgets one): %.1f ns each, %zu "
           "sources, %zu bytes\n",
           SOURCES_HOT, (double)(t1 - t0) / SOURCES_HOT, cg__sources_count(s),
           cg__sources_bytes(s));
    cg__sources_free(s);
}

int main(void)
{
    bench_big(); /* first: RSS growth of a fresh heap */
    bench_cycles(1000);
    bench_cycles(SOURCES_HOT);
    bench_pauses();
    return 0;
}
