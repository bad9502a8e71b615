/* fuzz_geoip_csv.c — the `from,to,CC` CSV reader (cg__geoip_csv).
 *
 * Beyond not crashing: a failure is one line "geo.csv:LINE: message" with
 * LINE within the input; on success every prefix handed on is canonical
 * (no host bits) with a country of two upper-case letters or none, and
 * the networks,
 * added to a rule set with their country as the source, freeze into a set
 * that passes the shared checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "condgate/rules.h"
#include "fuzz_common.h"
#include "geoip.h"

#define ERR_LEN 1024

typedef struct state {
    cg_ruleset *rs;
    size_t n;
} state;

static int on_net(void *arg, const cg_cidr *net, const char *cc, uint32_t asn)
{
    state *s = arg;
    char text[CG_CIDR_STRLEN];
    cg_cidr c = *net;
    FUZZ_CHECK(net->family == 4 || net->family == 6, "family %u", net->family);
    FUZZ_CHECK(net->len <= (net->family == 4 ? 32 : 128), "length %u", net->len);
    FUZZ_CHECK(!cg__cidr_mask(&c), "%s has host bits", cg_cidr_format(net, text, sizeof text));
    FUZZ_CHECK(asn == 0, "a CSV has no ASNs");
    FUZZ_CHECK(cc[0] == '\0' ||
                   (cc[0] >= 'A' && cc[0] <= 'Z' && cc[1] >= 'A' && cc[1] <= 'Z' && cc[2] == '\0'),
               "country '%s'", cc);
    s->n++;
    char src[8];
    snprintf(src, sizeof src, "geo:%s", cc[0] ? cc : "??");
    cg_source source = {src, 0};
    int rc = cg_ruleset_add(s->rs, net, cc[0] && cc[0] < 'N' ? CG_ALLOW : CG_DENY, &source, NULL);
    FUZZ_CHECK(rc == 0 || rc == CG_ERANGE, "add: %d", rc);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    char err[ERR_LEN];
    memset(err, 0xa5, sizeof err);
    cg__diag d = {err, sizeof err, 0};
    state s;
    memset(&s, 0, sizeof s);
    FUZZ_CHECK(cg_ruleset_new("geo", CG_DENY, &s.rs) == 0, "cg_ruleset_new");
    int rc = cg__geoip_csv("geo.csv", text, size, on_net, &s, &d);
    if (rc) {
        FUZZ_CHECK(d.code == rc, "diag code %d, returned %d", d.code, rc);
        fuzz_check_error(err, sizeof err, "geo.csv", 1, fuzz_lines(text, size));
    } else {
        FUZZ_CHECK(cg_ruleset_freeze(s.rs) == 0, "freeze failed");
        fuzz_sources src = {NULL, NULL, 0, NULL};
        fuzz_check_ruleset(s.rs, &src);
    }
    cg_ruleset_free(s.rs);
    free(text);
    return 0;
}
