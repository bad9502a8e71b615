/* fuzz_crowdsec.c — the CrowdSec decision-stream parser (cg__cs_parse) and
 * the Go duration parser (cg__cs_duration_ms).
 *
 * An answer that parses holds at most CG_CS_DECISIONS_MAX decisions; each
 * ban is a canonical prefix (a host prefix for scope Ip), each reason at
 * most CG_CS_REASON_MAX bytes that a ban accepts (cg__ban_reason_ok's rules:
 * valid UTF-8, no control character), each origin at most
 * CG_CS_ORIGIN_MAX printable ASCII bytes. A refused answer leaves the output
 * empty and says why on one line. The whole input, if short, is also a
 * duration: one that parses parses to the opposite with a '-' put before
 * it (unless it is signed already).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condgate/common.h"
#include "crowdsec_decisions.h"
#include "fuzz_common.h"

static bool reason_ok(const char *s)
{
    size_t n = strlen(s);
    if (n > CG_CS_REASON_MAX)
        return false;
    char buf[CG_CS_REASON_MAX + 1];
    /* already clean: cleaning it again changes nothing */
    return cg__cs_reason(s, n, buf) == n && memcmp(buf, s, n) == 0;
}

static void check(const cg__cs_decision *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(d[i].kind >= CG__CS_BAN && d[i].kind <= CG__CS_INVALID, "kind %d", d[i].kind);
        FUZZ_CHECK(d[i].reason != NULL && reason_ok(d[i].reason), "reason %zu", i);
        FUZZ_CHECK(d[i].origin != NULL && strlen(d[i].origin) <= CG_CS_ORIGIN_MAX, "origin");
        for (const char *p = d[i].origin; *p; p++)
            FUZZ_CHECK(*p >= 0x20 && *p < 0x7f, "origin byte 0x%02x", (unsigned char)*p);
        if (d[i].kind == CG__CS_BAN)
            FUZZ_CHECK(fuzz_cidr_canonical(&d[i].cidr), "decision %zu: not a canonical prefix", i);
    }
}

static void fuzz_duration(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 64)
        return;
    int64_t ms = 0, neg = 0;
    int rc = cg__cs_duration_ms((const char *)data, size, &ms);
    FUZZ_CHECK(rc == 0 || rc == CG_EINVAL || rc == CG_ERANGE, "duration rc %d", rc);
    if (rc != 0 || data[0] == '-' || data[0] == '+')
        return;
    char buf[66];
    buf[0] = '-';
    memcpy(buf + 1, data, size);
    FUZZ_CHECK(cg__cs_duration_ms(buf, size + 1, &neg) == 0 && neg == -ms,
               "-%lld is not the opposite", (long long)ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exactly size bytes on the heap: ASan sees a read past the end */
    char *text = malloc(size ? size : 1);
    FUZZ_CHECK(text != NULL, "out of memory");
    memcpy(text, data, size);
    cg__cs_answer a;
    char err[256];
    int rc = cg__cs_parse(text, size, &a, err, sizeof err);
    if (rc == 0) {
        FUZZ_CHECK(a.nadded + a.ndeleted <= CG_CS_DECISIONS_MAX, "too many");
        check(a.added, a.nadded);
        check(a.deleted, a.ndeleted);
        cg__cs_answer_free(&a);
    } else {
        FUZZ_CHECK(rc == CG_EINVAL || rc == CG_ERANGE || rc == CG_ENOMEM, "rc %d", rc);
        FUZZ_CHECK(a.added == NULL && a.deleted == NULL && a.pool == NULL, "output on failure");
        fuzz_check_one_line(err, sizeof err);
    }
    free(text);
    fuzz_duration(data, size);
    return 0;
}
