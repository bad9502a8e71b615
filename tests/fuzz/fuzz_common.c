/* fuzz_common.c — invariants shared by the fuzz targets (see fuzz_common.h).
 *
 * The rule-set check is an oracle independent of the range tables: it reads
 * the frozen entries back through cg_ruleset_rule and answers each probe by
 * scanning all of them for the longest prefix that contains it, then demands
 * that cg_ruleset_lookup and cg_ruleset_judge agree.
 */
#include "fuzz_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Above this many entries only the structure is checked: the brute-force
 * oracle is quadratic and inputs are small anyway. */
#define ORACLE_MAX_ENTRIES 2048
/* Entries whose edges are probed; the rest are skipped evenly. */
#define ORACLE_PROBED_ENTRIES 128

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\n==fuzz== invariant broken at %s:%d: %s\n==fuzz== ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

char *fuzz_text(const uint8_t *data, size_t size)
{
    char *t = malloc(size + 1);
    FUZZ_CHECK(t != NULL, "out of memory copying %zu bytes", size);
    if (size)
        memcpy(t, data, size);
    t[size] = '\0';
    return t;
}

uint32_t fuzz_lines(const char *text, size_t len)
{
    uint32_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
    return n;
}

size_t fuzz_check_one_line(const char *err, size_t errlen)
{
    const char *nul = memchr(err, '\0', errlen);
    FUZZ_CHECK(nul != NULL, "error message not NUL-terminated within %zu bytes", errlen);
    size_t n = (size_t)(nul - err);
    FUZZ_CHECK(n > 0, "empty error message");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)err[i];
        FUZZ_CHECK(c >= 0x20 && c != 0x7f, "control byte 0x%02x at %zu in error \"%.*s\"", c, i,
                   (int)n, err);
    }
    return n;
}

uint32_t fuzz_check_error(const char *err, size_t errlen, const char *file, uint32_t min_line,
                          uint32_t max_line)
{
    size_t n = fuzz_check_one_line(err, errlen);
    size_t fl = strlen(file);
    FUZZ_CHECK(n > fl && memcmp(err, file, fl) == 0 && err[fl] == ':',
               "error \"%s\" does not start with \"%s:\"", err, file);
    const char *p = err + fl + 1;
    uint64_t line = 0;
    size_t digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 11; p++, digits++)
        line = line * 10 + (uint64_t)(*p - '0');
    FUZZ_CHECK(digits > 0 && digits <= 10, "no line number in error \"%s\"", err);
    FUZZ_CHECK(!(digits > 1 && err[fl + 1] == '0'), "line number with a leading zero: \"%s\"", err);
    FUZZ_CHECK(line >= min_line && line <= max_line, "line %llu not in %u..%u: \"%s\"",
               (unsigned long long)line, (unsigned)min_line, (unsigned)max_line, err);
    FUZZ_CHECK(p[0] == ':' && p[1] == ' ' && p[2] != '\0',
               "no \": message\" after the line in \"%s\"", err);
    FUZZ_CHECK(p[2] != ' ', "message starts with a blank: \"%s\"", err);
    return (uint32_t)line;
}

/* ---- addresses as big-endian byte strings ----------------------------- */

static unsigned nbytes(const cg_cidr *c)
{
    return c->family == 4 ? 4 : 16;
}

static unsigned maxlen(const cg_cidr *c)
{
    return c->family == 4 ? 32 : 128;
}

/* The first len bits of a and b are equal. */
static bool same_prefix(const uint8_t *a, const uint8_t *b, unsigned len)
{
    unsigned full = len / 8, rem = len % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    return rem == 0 || ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rem))) == 0;
}

static bool host_bits_zero(const cg_cidr *c)
{
    for (unsigned i = 0; i < 16; i++) {
        int bits = (int)c->len - 8 * (int)i;
        uint8_t keep = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
        if (i >= nbytes(c) ? c->addr[i] != 0 : (c->addr[i] & (uint8_t)~keep) != 0)
            return false;
    }
    return true;
}

static void set_host_bits(cg_cidr *c)
{
    for (unsigned i = 0; i < nbytes(c); i++) {
        int bits = (int)c->len - 8 * (int)i;
        uint8_t keep = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
        c->addr[i] |= (uint8_t)~keep;
    }
}

/* Adds delta (+1 or -1) to the address; false when it wraps. */
static bool step(cg_cidr *c, int delta)
{
    for (unsigned i = nbytes(c); i-- > 0;) {
        uint8_t before = c->addr[i];
        c->addr[i] = (uint8_t)(before + delta);
        if ((delta > 0 && before != 0xff) || (delta < 0 && before != 0))
            return true;
    }
    return false;
}

static int cmp_entries(const cg_cidr *a, const cg_cidr *b)
{
    if (a->family != b->family)
        return (int)a->family - (int)b->family;
    int r = memcmp(a->addr, b->addr, 16);
    return r ? r : (int)a->len - (int)b->len;
}

static bool is_mapped(const uint8_t *a)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, prefix, sizeof prefix) == 0;
}

/* ---- the oracle -------------------------------------------------------- */

typedef struct oracle {
    cg_ruleset *rs;
    cg_rule_info *e;
    size_t n;
    uint64_t *hits; /* hits the probes should have counted */
} oracle;

/* The id of the longest entry containing host address p, or CG_RULE_NONE.
 * An IPv4-mapped address is the IPv4 address it maps (README, "No bypass
 * through IPv6 spellings of IPv4"): IPv6 entries such as ::/0 or ::/80 do
 * not apply to it, IPv4 entries do. */
static cg_rule_id longest_match(const oracle *o, const cg_cidr *addr)
{
    cg_rule_id best = CG_RULE_NONE;
    cg_cidr v4;
    const cg_cidr *p = addr;
    if (addr->family == 6 && is_mapped(addr->addr)) {
        memset(&v4, 0, sizeof v4);
        v4.family = 4;
        v4.len = 32;
        memcpy(v4.addr, addr->addr + 12, 4);
        p = &v4;
    }
    for (size_t i = 0; i < o->n; i++) {
        const cg_cidr *c = &o->e[i].cidr;
        if (c->family == p->family && same_prefix(c->addr, p->addr, c->len) &&
            (best == CG_RULE_NONE || c->len > o->e[best].cidr.len))
            best = (cg_rule_id)i;
    }
    return best;
}

static void probe(oracle *o, const cg_cidr *addr)
{
    char text[CG_CIDR_STRLEN];
    cg_cidr p = *addr;
    p.len = (uint8_t)maxlen(&p);
    cg_rule_id want = longest_match(o, &p);
    cg_action want_action = want == CG_RULE_NONE ? cg_ruleset_default(o->rs) : o->e[want].action;

    cg_rule_id got = 0;
    cg_action action = cg_ruleset_lookup(o->rs, &p, &got);
    FUZZ_CHECK(got == want && action == want_action,
               "lookup(%s) gave entry %u (%s), brute force says %u (%s)",
               cg_cidr_format(&p, text, sizeof text), (unsigned)got, cg_action_name(action),
               (unsigned)want, cg_action_name(want_action));

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (p.family == 4) {
        /* An IPv4-mapped caller is the IPv4 caller. */
        cg_cidr m;
        memset(&m, 0, sizeof m);
        m.family = 6;
        m.len = 128;
        m.addr[10] = m.addr[11] = 0xff;
        memcpy(m.addr + 12, p.addr, 4);
        action = cg_ruleset_lookup(o->rs, &m, &got);
        FUZZ_CHECK(got == want && action == want_action,
                   "mapped lookup of %s gave entry %u, the IPv4 one %u",
                   cg_cidr_format(&p, text, sizeof text), (unsigned)got, (unsigned)want);
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, p.addr, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, p.addr, 16);
    }
    action = cg_ruleset_judge(o->rs, (const struct sockaddr *)&ss, &got);
    FUZZ_CHECK(got == want && action == want_action, "judge(%s) gave entry %u, lookup %u",
               cg_cidr_format(&p, text, sizeof text), (unsigned)got, (unsigned)want);
    if (want != CG_RULE_NONE)
        o->hits[want]++;
}

/* Probes the edges of entry c: its first and last address and the
 * addresses just outside. */
static void probe_edges(oracle *o, const cg_cidr *c)
{
    cg_cidr a = *c;
    probe(o, &a);
    if (step(&a, -1))
        probe(o, &a);
    a = *c;
    set_host_bits(&a);
    probe(o, &a);
    if (step(&a, +1))
        probe(o, &a);
}

static void check_counters(const oracle *o)
{
    cg_rule_id *ids = malloc((o->n ? o->n : 1) * sizeof *ids);
    size_t with_hits = 0;
    FUZZ_CHECK(ids != NULL, "out of memory");
    for (size_t i = 0; i < o->n; i++) {
        cg_rule_info info;
        FUZZ_CHECK(cg_ruleset_rule(o->rs, (cg_rule_id)i, &info) == 0, "entry %zu vanished", i);
        FUZZ_CHECK(info.hits == o->hits[i], "entry %zu counted %llu hits, judged %llu", i,
                   (unsigned long long)info.hits, (unsigned long long)o->hits[i]);
        with_hits += o->hits[i] != 0;
    }
    size_t m = cg_ruleset_top(o->rs, ids, o->n);
    FUZZ_CHECK(m == with_hits, "top listed %zu entries, %zu have hits", m, with_hits);
    for (size_t i = 0; i < m; i++) {
        FUZZ_CHECK(ids[i] < o->n && o->hits[ids[i]] > 0, "top[%zu] = %u has no hits", i,
                   (unsigned)ids[i]);
        if (i > 0) {
            uint64_t a = o->hits[ids[i - 1]], b = o->hits[ids[i]];
            FUZZ_CHECK(a > b || (a == b && ids[i - 1] < ids[i]),
                       "top out of order at %zu: %u (%llu hits) before %u (%llu hits)", i,
                       (unsigned)ids[i - 1], (unsigned long long)a, (unsigned)ids[i],
                       (unsigned long long)b);
        }
    }
    /* Asking for fewer gives the head of the same order. */
    cg_rule_id few[3];
    size_t k = cg_ruleset_top(o->rs, few, 3);
    FUZZ_CHECK(k == (m < 3 ? m : 3), "top 3 listed %zu of %zu", k, m);
    for (size_t i = 0; i < k; i++)
        FUZZ_CHECK(few[i] == ids[i], "top 3 differs at %zu: %u, not %u", i, (unsigned)few[i],
                   (unsigned)ids[i]);
    free(ids);
}

static void check_source(const cg_rule_info *info, size_t id, const fuzz_sources *src)
{
    if (!src || src->nfiles == 0)
        return;
    for (size_t f = 0; f < src->nfiles; f++) {
        if (strcmp(info->file, src->files[f]) == 0) {
            FUZZ_CHECK(info->line >= 1 && info->line <= src->max_lines[f],
                       "entry %zu from %s:%u, which has %u lines", id, info->file,
                       (unsigned)info->line, (unsigned)src->max_lines[f]);
            return;
        }
    }
    FUZZ_CHECK(src->other_prefix &&
                   strncmp(info->file, src->other_prefix, strlen(src->other_prefix)) == 0,
               "entry %zu names source file \"%s\", which was never loaded", id, info->file);
}

size_t fuzz_check_ruleset(cg_ruleset *rs, const fuzz_sources *src)
{
    char text[CG_CIDR_STRLEN];
    cg_ruleset_stats st;
    cg_ruleset_get_stats(rs, &st);
    size_t n = st.v4 + st.v6;

    FUZZ_CHECK(st.added == n + st.duplicates + st.conflicts,
               "added %zu != unique %zu + duplicates %zu + conflicts %zu", st.added, n,
               st.duplicates, st.conflicts);
    FUZZ_CHECK(st.bytes > 0, "a frozen set holds 0 bytes");
    FUZZ_CHECK(n <= CG_RULESET_MAX_ENTRIES, "%zu entries", n);

    oracle o = {rs, malloc((n ? n : 1) * sizeof *o.e), n, calloc(n ? n : 1, sizeof *o.hits)};
    FUZZ_CHECK(o.e != NULL && o.hits != NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        cg_rule_info *info = &o.e[i];
        FUZZ_CHECK(cg_ruleset_rule(rs, (cg_rule_id)i, info) == 0, "entry %zu of %zu missing", i, n);
        const cg_cidr *c = &info->cidr;
        FUZZ_CHECK(c->family == (i < st.v4 ? 4 : 6), "entry %zu has family %u", i,
                   (unsigned)c->family);
        FUZZ_CHECK(c->len <= maxlen(c) && host_bits_zero(c), "entry %zu is not canonical: %s", i,
                   cg_cidr_format(c, text, sizeof text));
        FUZZ_CHECK(!(c->family == 6 && c->len >= 96 && is_mapped(c->addr)),
                   "entry %zu is an IPv4-mapped prefix kept as IPv6: %s", i,
                   cg_cidr_format(c, text, sizeof text));
        FUZZ_CHECK(info->action == CG_ALLOW || info->action == CG_DENY, "entry %zu action %d", i,
                   (int)info->action);
        FUZZ_CHECK(info->hits == 0, "entry %zu has hits before any lookup", i);
        FUZZ_CHECK(info->file != NULL, "entry %zu has no file", i);
        if (info->label) {
            size_t ll = strlen(info->label);
            FUZZ_CHECK(ll > 0 && ll <= CG_LABEL_MAX, "entry %zu label of %zu bytes", i, ll);
        }
        check_source(info, i, src);
        if (i > 0 && i != st.v4)
            FUZZ_CHECK(cmp_entries(&o.e[i - 1].cidr, c) < 0,
                       "entries %zu and %zu out of address order or not merged", i - 1, i);
    }
    cg_rule_info past;
    FUZZ_CHECK(cg_ruleset_rule(rs, (cg_rule_id)n, &past) == CG_ENOENT, "entry past the end");

    size_t shown =
        st.conflicts < CG_RULESET_MAX_CONFLICTS ? st.conflicts : CG_RULESET_MAX_CONFLICTS;
    for (size_t i = 0; i <= shown; i++) {
        cg_conflict cf;
        int rc = cg_ruleset_conflict(rs, i, &cf);
        if (i == shown) {
            FUZZ_CHECK(rc == CG_ENOENT, "conflict %zu of %zu exists", i, shown);
            break;
        }
        FUZZ_CHECK(rc == 0, "conflict %zu of %zu missing", i, shown);
        size_t k = 0;
        while (k < n && cmp_entries(&o.e[k].cidr, &cf.cidr) != 0)
            k++;
        FUZZ_CHECK(k < n && o.e[k].action == CG_DENY, "conflict %s is not a deny entry",
                   cg_cidr_format(&cf.cidr, text, sizeof text));
        FUZZ_CHECK(cf.allow.file && cf.deny.file && strcmp(cf.deny.file, o.e[k].file) == 0 &&
                       cf.deny.line == o.e[k].line,
                   "conflict %s names another deny source than its entry",
                   cg_cidr_format(&cf.cidr, text, sizeof text));
    }

    if (n <= ORACLE_MAX_ENTRIES) {
        static const char *const fixed[] = {"0.0.0.0",   "255.255.255.255",
                                            "127.0.0.1", "::",
                                            "::1",       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                                            "2002::1",   "::1.2.3.4"};
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
            cg_cidr p;
            FUZZ_CHECK(cg_cidr_parse(fixed[i], strlen(fixed[i]), &p, NULL, 0) == 0, "%s", fixed[i]);
            probe(&o, &p);
        }
        size_t stride = n / ORACLE_PROBED_ENTRIES + 1;
        for (size_t i = 0; i < n; i += stride)
            probe_edges(&o, &o.e[i].cidr);
        check_counters(&o);
    }
    free(o.e);
    free(o.hits);
    return n;
}

void fuzz_make_tmpdir(char *dir, size_t len, const char *name)
{
    const char *base = getenv("CG_FUZZ_TMPDIR");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(dir, len, "%s/%s.XXXXXX", base, name);
    FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
}

/* fuzz_cidr_canonical: see fuzz_common.h. */
bool fuzz_cidr_canonical(const cg_cidr *c)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    unsigned bits = c->family == 4 ? 32 : c->family == 6 ? 128 : 0;
    if (bits == 0 || c->len > bits)
        return false;
    if (c->family == 6 && c->len >= 96 && memcmp(c->addr, mapped, 12) == 0)
        return false;
    for (unsigned i = c->len; i < 128; i++)
        if (c->addr[i / 8] & (0x80u >> (i % 8)))
            return false;
    return true;
}
