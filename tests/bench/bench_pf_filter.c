/* bench_pf_filter.c — what the drop mode's socket filter costs the sockets
 * that inherit it (prefilter.h): one thread opens the kernel prefilter with
 * one listener on 127.0.0.1, then, in short blocks alternating between the
 * listener's mode refuse (no filter on the listener since the filter is
 * attached only in drop) and drop (filter attached, so every accepted
 * socket runs it on each packet), makes `conns` connections of one
 * exchange each (connect, accept, 64 bytes each way, close) and times them.
 * Alternating blocks share whatever else loads the machine, so the paired
 * ratio per block pair is steadier than two separate runs.
 *
 *   bench_pf_filter [blocks [conns]]     (default 20 blocks of 2000)
 *
 * Prints the median time per connection in each mode and the median of the
 * per-pair ratios drop / refuse. Needs root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON).
 * Built with the tests where the prefilter is, never run by ctest.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "prefilter.h"

#define MSG 64
#define MAX_BLOCKS 1000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_pf_filter: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Put in force a table where slot 0 has mode and admits everyone. */
static void set_mode(cg__prefilter *p, uint32_t mode)
{
    static struct cg_pf_elem e[CG_PF_MAX_SLOTS + 2];
    char why[256] = "";
    e[0].value = mode;
    e[0].u.hdr.v4_first = CG_PF_MAX_SLOTS;
    e[0].u.hdr.v4_count = 1;
    e[0].u.hdr.v6_first = CG_PF_MAX_SLOTS + 1;
    e[0].u.hdr.v6_count = 1;
    cg__pf_table t = {.elems = e, .n = CG_PF_MAX_SLOTS + 2};
    cg__pf_staged *s = NULL;
    if (cg__prefilter_stage(p, &t, &s, why, sizeof(why)) != 0 || cg__prefilter_commit(p, s) != 0) {
        fprintf(stderr, "bench_pf_filter: cannot put a table in force: %s\n", why);
        exit(1);
    }
}

/* n connections of one exchange each to l; seconds per connection. */
static double block(int l, const struct sockaddr_in *to, int n)
{
    char buf[MSG];
    memset(buf, 'x', sizeof(buf));
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0 || connect(c, (const struct sockaddr *)to, sizeof(*to)) != 0)
            die("connect");
        int a = accept(l, NULL, NULL);
        if (a < 0)
            die("accept");
        if (send(c, buf, MSG, 0) != MSG || recv(a, buf, MSG, MSG_WAITALL) != MSG ||
            send(a, buf, MSG, 0) != MSG || recv(c, buf, MSG, MSG_WAITALL) != MSG)
            die("exchange");
        close(c);
        if (recv(a, buf, 1, 0) != 0) /* the caller's FIN reached the accepted socket */
            die("close");
        close(a);
    }
    return (now_s() - t0) / n;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int blocks = argc > 1 ? atoi(argv[1]) : 20;
    int conns = argc > 2 ? atoi(argv[2]) : 2000;
    if (blocks < 1 || blocks > MAX_BLOCKS || conns < 1 || conns > 1000000) {
        fprintf(stderr, "usage: bench_pf_filter [blocks 1..%d [conns 1..1000000]]\n", MAX_BLOCKS);
        return 2;
    }
    char why[256] = "";
    cg__prefilter *p = NULL;
    if (cg__prefilter_open(&p, 1, why, sizeof(why)) != 0) {
        fprintf(stderr, "bench_pf_filter: %s\n", why);
        return 1;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(to);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&to, len) != 0 || listen(l, 128) != 0 ||
        getsockname(l, (struct sockaddr *)&to, &len) != 0)
        die("listener");
    if (cg__prefilter_add_listener(p, 0, l, (struct sockaddr *)&to, len, why, sizeof(why)) != 0) {
        fprintf(stderr, "bench_pf_filter: %s\n", why);
        return 1;
    }
    static double refuse[MAX_BLOCKS], drop[MAX_BLOCKS], ratio[MAX_BLOCKS];
    set_mode(p, CG_PF_MODE_REFUSE);
    block(l, &to, conns); /* warm-up */
    for (int b = 0; b < blocks; b++) {
        /* alternate which mode goes first, so that drift favours neither */
        uint32_t first = b % 2 ? CG_PF_MODE_DROP : CG_PF_MODE_REFUSE;
        for (int k = 0; k < 2; k++) {
            uint32_t m =
                k == 0 ? first : (first == CG_PF_MODE_DROP ? CG_PF_MODE_REFUSE : CG_PF_MODE_DROP);
            set_mode(p, m);
            double t = block(l, &to, conns);
            if (m == CG_PF_MODE_DROP)
                drop[b] = t;
            else
                refuse[b] = t;
        }
        ratio[b] = drop[b] / refuse[b];
    }
    double r = median(ratio, blocks);
    printf("connections of one 64-byte exchange, %d blocks of %d per mode, one thread\n", blocks,
           conns);
    printf("refuse (no socket filter): %.2f us per connection (median of blocks)\n",
           median(refuse, blocks) * 1e6);
    printf("drop   (filter inherited): %.2f us per connection (median of blocks)\n",
           median(drop, blocks) * 1e6);
    printf("drop / refuse: %.4f (median of per-pair ratios)\n", r);
    cg__prefilter_close(p);
    close(l);
    return 0;
}
