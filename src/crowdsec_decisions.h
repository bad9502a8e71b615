/* crowdsec_decisions.h — one answer of the CrowdSec Local API's decision
 * stream (`GET /v1/decisions/stream`) parsed into plain decisions (SPEC
 * §15), apart from any HTTP client or ban table, so it can be fuzzed alone.
 *
 * An answer is {"new": [DECISION, ...] | null, "deleted": [...] | null};
 * a DECISION is an object with at least "type", "scope", "value",
 * "duration" and "scenario" (strings; "origin" optional); other keys are
 * skipped. A value (scope Ip or Range alike) is an address or a prefix, as
 * typed: host bits are cleared, an IPv4-mapped one of /96 or longer is its
 * IPv4 prefix. A decision whose fields are missing, of the wrong type or
 * whose value is no address or prefix is kept but marked invalid
 * (it is counted, never applied); an answer that is not such an object, or
 * past a bound, is refused whole (nothing of it is applied).
 *
 * Bounds: CG_CS_ANSWER_MAX bytes, CG_CS_DECISIONS_MAX decisions in new and
 * deleted together, CG_CS_VALUE_MAX bytes of value, CG_CS_TEXT_MAX bytes of
 * scenario, type, scope, origin or duration text (longer: invalid).
 */
#ifndef CG_CROWDSEC_DECISIONS_H
#define CG_CROWDSEC_DECISIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/rules.h"

/* Largest answer, in bytes (checked before parsing). */
#define CG_CS_ANSWER_MAX (64u * 1024u * 1024u)
/* Most decisions in one answer (new and deleted together). With real
 * decision objects (about 250 bytes each) the byte bound comes first. */
#define CG_CS_DECISIONS_MAX 1000000u
/* Longest value ("2001:db8::/48"), in bytes. */
#define CG_CS_VALUE_MAX 64
/* Longest scenario, type, scope, origin or duration text, in bytes. */
#define CG_CS_TEXT_MAX 1024
/* Longest reason kept of a scenario (as a ban reason, SPEC §11). */
#define CG_CS_REASON_MAX 128
/* Longest origin kept ("cscli", "crowdsec", "CAPI", "lists"). */
#define CG_CS_ORIGIN_MAX 32

typedef enum cg__cs_kind {
    CG__CS_BAN = 0, /* type "ban" (case-insensitive), scope Ip or Range */
    CG__CS_TYPE,    /* another type ("captcha", ...): ignored */
    CG__CS_SCOPE,   /* a ban of another scope ("Country", "AS", ...): ignored */
    CG__CS_INVALID, /* missing or bad fields, bad value: ignored */
} cg__cs_kind;

/* One decision. reason and origin point into the answer's text pool. */
typedef struct cg__cs_decision {
    cg__cs_kind kind;
    cg_cidr cidr;        /* CG__CS_BAN only: the address or prefix, masked */
    int64_t duration_ms; /* remaining; negative: expired */
    const char *reason;  /* the scenario cut to CG_CS_REASON_MAX bytes of valid UTF-8 */
    const char *origin;  /* cut to CG_CS_ORIGIN_MAX bytes, printable ASCII */
} cg__cs_decision;

typedef struct cg__cs_answer {
    cg__cs_decision *added; /* "new", in answer order */
    size_t nadded;
    cg__cs_decision *deleted;
    size_t ndeleted;
    char *pool; /* the reasons and origins */
} cg__cs_answer;

/* cg__cs_parse: parse one stream answer text[0..len) (need not be
 * NUL-terminated) into *out. Returns 0, or CG_ERANGE (past a bound),
 * CG_EINVAL (not an answer) or CG_ENOMEM with one line in err; on error
 * *out is empty. Free with cg__cs_answer_free. Any thread. */
int cg__cs_parse(const char *text, size_t len, cg__cs_answer *out, char *err, size_t errlen);

/* cg__cs_answer_free: free what cg__cs_parse filled; *a becomes empty.
 * Accepts an empty answer. */
void cg__cs_answer_free(cg__cs_answer *a);

/* cg__cs_duration_ms: a Go duration text s[0..len) ("3h59m58.123s", "5m",
 * "-1.2s", "1.5ms", "0s") in milliseconds (fractions of a millisecond
 * dropped) into *out. Units h, m, s, ms, us/µs, ns; at least one. Returns
 * 0, or CG_EINVAL (bad text) or CG_ERANGE (past about 292 years). */
int cg__cs_duration_ms(const char *s, size_t len, int64_t *out);

/* cg__cs_reason: the scenario s[0..len) as a ban reason into buf (at least
 * CG_CS_REASON_MAX + 1 bytes): control characters and invalid UTF-8 become
 * '?', then it is cut to CG_CS_REASON_MAX bytes on a character boundary.
 * Returns its length. */
size_t cg__cs_reason(const char *s, size_t len, char *buf);

#endif /* CG_CROWDSEC_DECISIONS_H */
