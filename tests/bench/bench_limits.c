/* bench_limits.c — cost and memory of the per-source table (limits.c).
 *
 * Fills a table with 100,000 sources (random IPv4 callers, /32), then times
 * judge + take + release of random callers among them; then fills a fresh
 * table with 1,000,000 sources and reports cg__sources_bytes per source, the
 * process's RSS growth per source and the longest single judge (the hash
 * doubling). Not a ctest test: timings belong to the machine. See
 * tests/bench/README.md.
 */
#include "limits.h"

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

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* n distinct random IPv4 hosts (distinct enough: collisions only merge two
 * sources, which the printed count shows). */
static cg_cidr *callers(size_t n)
{
    cg_cidr *v = calloc(n, sizeof *v);
    if (!v)
        exit(1);
    for (size_t i = 0; i < n; i++) {
        uint32_t a = (uint32_t)rnd();
        v[i].family = 4;
        v[i].len = 32;
        v[i].addr[0] = (uint8_t)(a >> 24);
        v[i].addr[1] = (uint8_t)(a >> 16);
        v[i].addr[2] = (uint8_t)(a >> 8);
        v[i].addr[3] = (uint8_t)a;
    }
    return v;
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

static void bench_hot(void)
{
    cg_source_limits lim = bench_limits();
    cg__sources *s = cg__sources_new(SOURCES_BIG);
    cg_cidr *v = callers(SOURCES_HOT);
    uint32_t *order = calloc(OPS, sizeof *order);
    unsigned ok = 0;

    if (!s || !order)
        exit(1);
    for (size_t i = 0; i < SOURCES_HOT; i++)
        cycle(s, &lim, &v[i], 0);
    for (size_t i = 0; i < OPS; i++)
        order[i] = (uint32_t)(rnd() % SOURCES_HOT);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < OPS; i++)
        ok += (unsigned)cycle(s, &lim, &v[order[i]], 1 + i / 1000);
    uint64_t t1 = now_ns();
    printf("hot: %zu sources, %u judge+take+release of random ones: %.1f ns each (%u admitted)\n",
           cg__sources_count(s), OPS, (double)(t1 - t0) / OPS, ok);
    cg__sources_free(s);
    free(order);
    free(v);
}

static void bench_big(void)
{
    cg_source_limits lim = bench_limits();
    cg_cidr *v = callers(SOURCES_BIG);
    size_t rss0 = rss_bytes();
    cg__sources *s = cg__sources_new(SOURCES_BIG);
    uint64_t worst = 0, t0 = now_ns();
    cg__src_effect eff;

    if (!s)
        exit(1);
    for (size_t i = 0; i < SOURCES_BIG; i++) {
        uint64_t a = now_ns();
        cg__sources_judge(s, 0, &lim, &v[i], 0, true, &eff);
        uint64_t d = now_ns() - a;
        if (d > worst)
            worst = d;
    }
    uint64_t t1 = now_ns();
    size_t rss1 = rss_bytes(), n = cg__sources_count(s), bytes = cg__sources_bytes(s);
    printf("big: %zu sources in %.0f ms (%.0f ns each), longest judge %.1f ms\n", n,
           (double)(t1 - t0) / 1e6, (double)(t1 - t0) / (double)n, (double)worst / 1e6);
    printf("big: cg__sources_bytes %zu = %.1f bytes/source; RSS growth %zu = %.1f bytes/source\n",
           bytes, (double)bytes / (double)n, rss1 - rss0, (double)(rss1 - rss0) / (double)n);
    /* Full: new sources forget the least recently seen ones. */
    cg_cidr *w = callers(SOURCES_HOT);
    t0 = now_ns();
    for (size_t i = 0; i < SOURCES_HOT; i++)
        cg__sources_judge(s, 0, &lim, &w[i], 1, true, &eff);
    t1 = now_ns();
    printf("big: %u new sources into the full table (each forgets one): %.1f ns each, %zu "
           "sources, %zu bytes\n",
           SOURCES_HOT, (double)(t1 - t0) / SOURCES_HOT, cg__sources_count(s),
           cg__sources_bytes(s));
    cg__sources_free(s);
    free(w);
    free(v);
}

int main(void)
{
    bench_hot();
    bench_big();
    return 0;
}
