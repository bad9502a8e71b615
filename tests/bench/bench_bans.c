/* bench_bans.c — the ban table and its state file at scale: time to add N
 * /32 bans (default 1,000,000), the table's memory (RSS growth, bytes per
 * ban), lookups, an expiry pass with nothing due, a snapshot, writing the
 * state file (fsync and rename included) and its size, and loading it into a
 * fresh table.
 *
 *     bench_bans [N] [DIR]      DIR: where the state file goes (default /tmp)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bans_file.h"
#include "condgate/common.h"

#define NOW 1796497200

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Resident set size in bytes from /proc/self/statm; 0 where there is none. */
static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return (size_t)res * 4096u;
}

static cg_cidr host(uint32_t i)
{
    cg_cidr c = {.family = 4, .len = 32};
    uint32_t a = 0x0b000000u + i * 2654435761u % 0x7f000000u; /* spread, no order */
    c.addr[0] = (uint8_t)(a >> 24);
    c.addr[1] = (uint8_t)(a >> 16);
    c.addr[2] = (uint8_t)(a >> 8);
    c.addr[3] = (uint8_t)a;
    return c;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    char path[4096], err[1024];
    snprintf(path, sizeof path, "%s/bench_bans_state.json", dir);

    size_t rss0 = rss_bytes();
    cg__bans *t = cg__bans_new(n * 2);
    double t0 = now_s();
    size_t added = 0;
    for (uint32_t i = 0; added < n; i++) {
        cg__ban b = {.cidr = host(i),
                     .origin = CG__BAN_AUTO,
                     .created_s = NOW,
                     .expires_s = NOW + 3600 + i % 86400};
        snprintf(b.reason, sizeof b.reason, "scan");
        bool replaced;
        if (cg__bans_add(t, &b, &replaced) != 0)
            return 1;
        added += !replaced;
    }
    double t_add = now_s() - t0;
    size_t rss1 = rss_bytes();
    printf("bans                      %zu\n", n);
    printf("add                       %.3f s (%.0f ns a ban)\n", t_add, t_add * 1e9 / (double)n);
    printf("table memory (RSS growth) %.1f MiB (%.0f bytes a ban)\n",
           (double)(rss1 - rss0) / 1048576.0, (double)(rss1 - rss0) / (double)n);

    t0 = now_s();
    size_t hits = 0;
    for (uint32_t i = 0; i < 2000000; i++) {
        cg_cidr a = host(i % (uint32_t)(n + n / 4));
        hits += cg__bans_match(t, &a, NOW, true, NULL);
    }
    double t_match = now_s() - t0;
    printf("match                     %.0f ns a lookup (%zu of 2000000 banned)\n",
           t_match * 1e9 / 2e6, hits);

    t0 = now_s();
    for (int i = 0; i < 1000000; i++)
        cg__bans_expire(t, NOW, NULL, NULL);
    printf("expire, nothing due       %.1f ns a pass\n", (now_s() - t0) * 1e3);

    cg__ban *v;
    size_t cnt;
    t0 = now_s();
    if (cg__bans_snapshot(t, &v, &cnt, NULL) != 0)
        return 1;
    printf("snapshot (copy + sort)    %.3f s\n", now_s() - t0);
    t0 = now_s();
    if (cg__bans_file_write(path, v, cnt, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("write state file          %.3f s\n", now_s() - t0);
    free(v);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    printf("state file                %.1f MiB (%.0f bytes a ban)\n", (double)size / 1048576.0,
           (double)size / (double)n);

    cg__bans *u = cg__bans_new(n * 2);
    size_t loaded, expired;
    t0 = now_s();
    if (cg__bans_file_load(path, u, NOW, &loaded, &expired, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("load state file           %.3f s (%zu loaded)\n", now_s() - t0, loaded);
    remove(path);
    cg__bans_free(u);
    cg__bans_free(t);
    return loaded == n ? 0 : 1;
}
