/* bench_crowdsec_apply.c — the CrowdSec startup answer's cost inside
 * condgate, without HTTP or the kernel: N decisions (default 100,000) in the
 * Local API's own JSON form, parsed (cg__cs_parse) and applied to a real
 * runtime (cg__crowdsec_apply, startup: the reconciliation included), then
 * the same answer again (every ban renewed). Prints the times in ms.
 *
 *     build/default/tests/bench_crowdsec_apply [N]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "crowdsec.h"

static char *answer(size_t n, size_t *len)
{
    size_t cap = 64 + n * 200;
    char *p = malloc(cap);
    if (p == NULL)
        return NULL;
    size_t o = (size_t)snprintf(p, cap, "{\"deleted\":null,\"new\":[");
    for (size_t i = 0; i < n; i++) {
        uint32_t a = (10u << 24) + (uint32_t)i;
        o += (size_t)snprintf(p + o, cap - o,
                              "%s{\"duration\":\"3h59m58.%03zus\",\"id\":%zu,\"origin\":\"cscli\","
                              "\"scenario\":\"condgate-bulk\",\"scope\":\"Ip\",\"type\":\"ban\","
                              "\"value\":\"%u.%u.%u.%u\"}",
                              i ? "," : "", i % 1000, i + 1, a >> 24, (a >> 16) & 255,
                              (a >> 8) & 255, a & 255);
    }
    o += (size_t)snprintf(p + o, cap - o, "]}");
    *len = o;
    return p;
}

static double ms_since(uint64_t t0)
{
    return (double)(uv_hrtime() - t0) / 1e6;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 100000;
    size_t len = 0;
    char *text = answer(n, &len);
    uv_loop_t loop;
    cg_config cfg = {.max_bans = 1000000, .source_table_max = 1000, .preview_callers = 16};
    cg__runtime *rt = NULL;
    char err[256];
    if (text == NULL || uv_loop_init(&loop) != 0 ||
        cg__runtime_new(&loop, &cfg, &rt, err, sizeof err) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    for (int round = 0; round < 2; round++) {
        cg__cs_answer a;
        cg__cs_result r;
        uint64_t t0 = uv_hrtime();
        if (cg__cs_parse(text, len, &a, err, sizeof err) != 0) {
            fprintf(stderr, "parse: %s\n", err);
            return 1;
        }
        double parse = ms_since(t0);
        uint64_t t1 = uv_hrtime();
        if (cg__crowdsec_apply(rt, NULL, &a, true, 1800000000, &r) != 0)
            return 1;
        double apply = ms_since(t1);
        cg__cs_answer_free(&a);
        printf("%s: %zu decisions, %zu bytes: parse %.1f ms, apply %.1f ms (added %zu, renewed "
               "%zu), total %.1f ms\n",
               round ? "again" : "first", n, len, parse, apply, r.added, r.replaced, ms_since(t0));
    }
    cg__runtime_close(rt);
    uv_run(&loop, UV_RUN_DEFAULT);
    cg__runtime_free(rt);
    uv_loop_close(&loop);
    free(text);
    return 0;
}
