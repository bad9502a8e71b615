/* bans_file.c — the state file (bans_file.h): its writer, its strict
 * reader, and the writer thread that keeps the file in step with the table
 * by group commit.
 *
 * The layout, one ban a line between a fixed header and trailer:
 *
 *     {"condgate_state": 1, "bans": [
 *     {"cidr": "...", "origin": "...", "reason": "...", "created": "...", "expires": "...", "hits":
 * N},
 *     ...
 *     {"cidr": ...}            <- the last ban has no comma
 *     ]}
 *
 * Hit counts go through cJSON's doubles on the way in, so the writer caps
 * them at 2^53 (exact in a double) and the reader refuses more.
 */
#include "bans_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "condgate/common.h"
#include "sys.h"

#define HEADER "{\"condgate_state\": 1, \"bans\": ["
#define TRAILER "]}"
#define HITS_MAX 9007199254740992.0 /* 2^53 */
#define LINE_CAP 640                /* a formatted ban line is < 512 */

/* ------------------------------------------------------------------------
 * Writing
 */

/* format_line: one ban as its line, without comma or newline, into buf
 * (LINE_CAP bytes). Returns its length. */
static size_t format_line(const cg__ban *ban, char *buf)
{
    char cidr[CG_CIDR_STRLEN], created[CG_BAN_TIME_STRLEN], expires[CG_BAN_TIME_STRLEN];
    char reason[CG_BAN_REASON_MAX * 6 + 1];
    size_t r = 0;
    for (const unsigned char *p = (const unsigned char *)ban->reason; *p && r < sizeof reason - 7;
         p++) {
        if (*p == '"' || *p == '\\') {
            reason[r++] = '\\';
            reason[r++] = (char)*p;
        } else if (*p < 0x20) { /* never in a valid reason; kept valid JSON anyway */
            r += (size_t)snprintf(reason + r, 7, "\\u%04x", *p);
        } else {
            reason[r++] = (char)*p;
        }
    }
    reason[r] = '\0';
    uint64_t hits = ban->hits > (uint64_t)HITS_MAX ? (uint64_t)HITS_MAX : ban->hits;
    int n = snprintf(
        buf, LINE_CAP,
        "{\"cidr\": \"%s\", \"origin\": \"%s\", \"reason\": \"%s\", \"created\": "
        "\"%s\", \"expires\": \"%s\", \"hits\": %llu}",
        cg_cidr_format(&ban->cidr, cidr, sizeof cidr), cg__ban_origin_name(ban->origin), reason,
        cg__ban_time_format(ban->created_s, created, sizeof created),
        cg__ban_time_format(ban->expires_s, expires, sizeof expires), (unsigned long long)hits);
    return n < 0 ? 0 : (size_t)n < LINE_CAP ? (size_t)n : LINE_CAP - 1;
}

/* emit: the whole document, a piece at a time, to put(arg, bytes, len),
 * which returns false to stop. Returns false when it was stopped. */
static bool emit(const cg__ban *bans, size_t n, bool (*put)(void *, const char *, size_t),
                 void *arg)
{
    char line[LINE_CAP + 2];
    if (!put(arg, HEADER "\n", sizeof HEADER))
        return false;
    for (size_t i = 0; i < n; i++) {
        size_t l = format_line(&bans[i], line);
        if (i + 1 < n)
            line[l++] = ',';
        line[l++] = '\n';
        if (!put(arg, line, l))
            return false;
    }
    return put(arg, TRAILER "\n", sizeof TRAILER);
}

typedef struct membuf {
    char *p;
    size_t len, cap;
    bool failed;
} membuf;

static bool put_mem(void *arg, const char *s, size_t l)
{
    membuf *m = arg;
    if (m->len + l + 1 > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (m->len + l + 1 > cap)
            cap *= 2;
        char *p = realloc(m->p, cap);
        if (p == NULL) {
            m->failed = true;
            return false;
        }
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->len, s, l);
    m->len += l;
    m->p[m->len] = '\0';
    return true;
}

/* cg__bans_file_format: see bans_file.h. */
int cg__bans_file_format(const cg__ban *bans, size_t n, char **out, size_t *len)
{
    membuf m = {0};
    if (!emit(bans, n, put_mem, &m)) {
        free(m.p);
        return CG_ENOMEM;
    }
    *out = m.p;
    *len = m.len;
    return 0;
}

static bool put_file(void *arg, const char *s, size_t l)
{
    return fwrite(s, 1, l, (FILE *)arg) == l;
}

/* cg__bans_file_write: see bans_file.h. */
int cg__bans_file_write(const char *path, const cg__ban *bans, size_t n, char *err, size_t errlen)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (tmp == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return CG_ENOMEM;
    }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return CG_EIO;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    bool ok = emit(bans, n, put_file, f);
    ok = fflush(f) == 0 && ok && !ferror(f);
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    int rc = 0;
    if (!ok) {
        snprintf(err, errlen, "%s: write: %s", tmp, strerror(e));
        rc = CG_EIO;
    } else {
        rc = cg__sys_file_commit(tmp, path, err, errlen);
    }
    if (rc != 0)
        remove(tmp);
    free(tmp);
    return rc;
}

/* ------------------------------------------------------------------------
 * Reading
 */

typedef struct reader {
    const char *path;
    cg__bans *b;
    int64_t now;
    size_t loaded, expired;
    char *err;
    size_t errlen;
} reader;

static int rd_fail(const reader *r, uint32_t line, int rc, const char *msg)
{
    snprintf(r->err, r->errlen, "%s:%u: %s", r->path, (unsigned)line, msg);
    return rc;
}

/* A ban line's keys, in the order the writer writes them. */
enum { K_CIDR, K_ORIGIN, K_REASON, K_CREATED, K_EXPIRES, K_HITS, K_COUNT };
static const char *const ban_keys[K_COUNT] = {"cidr",    "origin",  "reason",
                                              "created", "expires", "hits"};

/* ban_member: one member of a ban object into *ban. Returns NULL or what
 * is wrong with it. */
static const char *ban_member(int k, const cJSON *v, cg__ban *ban, char *why, size_t whylen)
{
    if (k == K_HITS) {
        double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (!(d >= 0 && d <= HITS_MAX) || (double)(uint64_t)d != d)
            return "hits must be a whole number from 0 to 2^53";
        ban->hits = (uint64_t)d;
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        snprintf(why, whylen, "%s must be a string", ban_keys[k]);
        return why;
    }
    const char *s = v->valuestring;
    size_t l = strlen(s);
    char m[256];
    int o;
    switch (k) {
    case K_CIDR:
        if (cg_cidr_parse(s, l, &ban->cidr, m, sizeof m) == 0)
            return NULL;
        snprintf(why, whylen, "cidr: %s", m);
        return why;
    case K_ORIGIN:
        if ((o = cg__ban_origin_parse(s)) < 0)
            return "origin must be admin, auto or crowdsec";
        ban->origin = (cg__ban_origin)o;
        return NULL;
    case K_REASON:
        if (!cg__ban_reason_ok(s, l))
            return "reason must be at most 128 bytes of UTF-8 without control characters";
        memcpy(ban->reason, s, l + 1);
        return NULL;
    default:
        if (cg__ban_time_parse(s, k == K_CREATED ? &ban->created_s : &ban->expires_s) == 0)
            return NULL;
        snprintf(why, whylen, "%s must be an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)",
                 ban_keys[k]);
        return why;
    }
}

/* ban_object: a parsed ban line into *ban. Returns NULL or the message. */
static const char *ban_object(const cJSON *o, cg__ban *ban, char *why, size_t whylen)
{
    if (!cJSON_IsObject(o))
        return "a ban must be a JSON object";
    unsigned seen = 0;
    memset(ban, 0, sizeof *ban);
    for (const cJSON *m = o->child; m != NULL; m = m->next) {
        int k = 0;
        while (k < K_COUNT && strcmp(m->string, ban_keys[k]) != 0)
            k++;
        if (k == K_COUNT) {
            char key[48];
            snprintf(why, whylen, "unknown key \"%s\"",
                     cg__ban_printable(m->string, key, sizeof key));
            return why;
        }
        if (seen & (1u << k)) {
            snprintf(why, whylen, "key \"%s\" given twice", ban_keys[k]);
            return why;
        }
        seen |= 1u << k;
        const char *bad = ban_member(k, m, ban, why, whylen);
        if (bad != NULL)
            return bad;
    }
    for (int k = 0; k < K_COUNT; k++) {
        if (!(seen & (1u << k))) {
            snprintf(why, whylen, "missing \"%s\"", ban_keys[k]);
            return why;
        }
    }
    if (ban->expires_s <= ban->created_s)
        return "the ban expires before it was created";
    return NULL;
}

/* ban_line: parse one ban line (without its comma) and add it. */
static int ban_line(reader *r, uint32_t ln, const char *p, size_t l)
{
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(p, l, &end, 0);
    if (o == NULL || end != p + l) {
        cJSON_Delete(o);
        return rd_fail(r, ln, CG_EINVAL, "bad JSON: expected one ban object");
    }
    cg__ban ban;
    char why[512];
    const char *bad = ban_object(o, &ban, why, sizeof why);
    cJSON_Delete(o);
    if (bad != NULL)
        return rd_fail(r, ln, CG_EINVAL, bad);
    if (ban.expires_s <= r->now) {
        r->expired++;
        return 0;
    }
    char c[CG_CIDR_STRLEN];
    if (cg__bans_find(r->b, &ban.cidr, NULL) == 0) {
        snprintf(why, sizeof why, "a second ban on %s", cg_cidr_format(&ban.cidr, c, sizeof c));
        return rd_fail(r, ln, CG_EINVAL, why);
    }
    int rc = cg__bans_add(r->b, &ban, NULL);
    if (rc == CG_ERANGE)
        return rd_fail(r, ln, rc, "more bans than max_bans allows");
    if (rc != 0)
        return rd_fail(r, ln, rc, rc == CG_ENOMEM ? "out of memory" : "cannot add the ban");
    r->loaded++;
    return 0;
}

/* next_line: the line at *pos of text[0..len) (without its newline) in
 * *p, *l; *pos moves past it. False at the end of the text. */
static bool next_line(const char *text, size_t len, size_t *pos, const char **p, size_t *l)
{
    if (*pos >= len)
        return false;
    *p = text + *pos;
    const char *nl = memchr(*p, '\n', len - *pos);
    *l = nl ? (size_t)(nl - *p) : len - *pos;
    *pos += *l + (nl != NULL);
    return true;
}

static bool line_is(const char *p, size_t l, const char *want)
{
    return l == strlen(want) && memcmp(p, want, l) == 0;
}

/* cg__bans_file_parse: see bans_file.h. */
int cg__bans_file_parse(const char *path, const char *text, size_t len, cg__bans *b, int64_t now_s,
                        size_t *loaded, size_t *expired, char *err, size_t errlen)
{
    reader r = {.path = path, .b = b, .now = now_s, .err = err, .errlen = errlen};
    size_t pos = 0, l;
    const char *p;
    uint32_t ln = 1;
    int rc = 0;
    bool comma = false; /* the line before ended with a comma */
    if (!next_line(text, len, &pos, &p, &l) || !line_is(p, l, HEADER)) {
        rc = rd_fail(&r, 1, CG_EINVAL, "expected the header {\"condgate_state\": 1, \"bans\": [");
        goto out;
    }
    for (;;) {
        ln++;
        if (!next_line(text, len, &pos, &p, &l)) {
            rc = rd_fail(&r, ln, CG_EINVAL, "missing the closing ]}");
            break;
        }
        if (l > CG_BANS_FILE_MAX_LINE) {
            rc = rd_fail(&r, ln, CG_EINVAL, "line longer than 1024 bytes");
            break;
        }
        if (memchr(p, '\0', l) != NULL) {
            rc = rd_fail(&r, ln, CG_EINVAL, "a NUL byte");
            break;
        }
        if (line_is(p, l, TRAILER)) {
            if (comma)
                rc = rd_fail(&r, ln - 1, CG_EINVAL, "a comma after the last ban");
            else if (pos < len)
                rc = rd_fail(&r, ln + 1, CG_EINVAL, "text after the closing ]}");
            break;
        }
        if (ln > 2 && !comma) {
            rc = rd_fail(&r, ln, CG_EINVAL, "expected ]} after a ban without a comma");
            break;
        }
        comma = l > 0 && p[l - 1] == ',';
        if ((rc = ban_line(&r, ln, p, comma ? l - 1 : l)) != 0)
            break;
    }
out:
    *loaded = r.loaded;
    *expired = r.expired;
    return rc;
}

/* read_all: the whole file at path into *text (NUL-terminated) and *len.
 * Returns 0, CG_ENOENT when it does not exist, or another code with the
 * reason in err. */
static int read_all(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT)
            return CG_ENOENT;
        snprintf(err, errlen, "%s:0: cannot read the state file: %s", path, strerror(errno));
        return CG_EIO;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int rc = buf ? 0 : CG_ENOMEM;
    while (rc == 0) {
        if (n + 1 >= cap) {
            char *nb = cap > CG_BANS_FILE_MAX_BYTES ? NULL : realloc(buf, cap * 2);
            if (nb == NULL) {
                rc = cap > CG_BANS_FILE_MAX_BYTES ? CG_ERANGE : CG_ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0)
            rc = ferror(f) ? CG_EIO : 1;
    }
    fclose(f);
    if (rc == 1 && n > CG_BANS_FILE_MAX_BYTES)
        rc = CG_ERANGE;
    if (rc != 1) {
        snprintf(err, errlen, "%s:0: %s", path,
                 rc == CG_ERANGE ? "the state file is larger than 1 GiB"
                 : rc == CG_EIO  ? "cannot read the state file"
                                 : "out of memory");
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

/* cg__bans_file_load: see bans_file.h. */
int cg__bans_file_load(const char *path, cg__bans *b, int64_t now_s, size_t *loaded,
                       size_t *expired, char *err, size_t errlen)
{
    *loaded = 0;
    *expired = 0;
    char *text = NULL;
    size_t len = 0;
    int rc = read_all(path, &text, &len, err, errlen);
    if (rc == CG_ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    rc = cg__bans_file_parse(path, text, len, b, now_s, loaded, expired, err, errlen);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------
 * The store: one writer thread, group commit.
 *
 * `pending` asks for a write; the writer takes the request (a new attempt,
 * numbered `started`), snapshots the table outside the store's lock and
 * writes. Every change made before the snapshot is in it, so one write
 * serves every waiter whose request it took. A waiter remembers the attempt
 * number at its request: any later attempt started after its change, so
 * its success (written >= version) or failure (fail_seq past it) answers.
 */

#define STORE_ERR 1024

struct cg__bans_store {
    char *path;
    cg__bans *b;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t work; /* pending or stop */
    uv_cond_t done; /* an attempt finished */
    bool pending, stop;
    uint64_t written;  /* version on disk */
    uint64_t started;  /* attempts started */
    uint64_t finished; /* attempts finished */
    uint64_t fail_seq; /* the last attempt that failed, 0: none */
    char fail[STORE_ERR];
};

/* attempt: one snapshot and write, outside the store's lock. */
static int attempt(cg__bans_store *s, uint64_t on_disk, uint64_t *version, char *err, size_t errlen)
{
    cg__ban *v = NULL;
    size_t n = 0;
    if (cg__bans_snapshot(s->b, &v, &n, version) != 0) {
        snprintf(err, errlen, "%s: out of memory", s->path);
        return CG_ENOMEM;
    }
    int rc = *version <= on_disk ? 0 : cg__bans_file_write(s->path, v, n, err, errlen);
    free(v);
    return rc;
}

static void writer(void *arg)
{
    cg__bans_store *s = arg;
    char err[STORE_ERR];
    bool final = false;
    uv_mutex_lock(&s->mu);
    for (;;) {
        while (!s->pending && !s->stop)
            uv_cond_wait(&s->work, &s->mu);
        if (s->stop && !s->pending) {
            /* the last changes, once */
            if (final || cg__bans_version(s->b) <= s->written)
                break;
            final = true;
        }
        s->pending = false;
        uint64_t seq = ++s->started, on_disk = s->written, v = 0;
        uv_mutex_unlock(&s->mu);
        int rc = attempt(s, on_disk, &v, err, sizeof err);
        uv_mutex_lock(&s->mu);
        if (rc == 0 && v > s->written)
            s->written = v;
        if (rc != 0) {
            s->fail_seq = seq;
            memcpy(s->fail, err, sizeof s->fail);
        }
        s->finished = seq;
        uv_cond_broadcast(&s->done);
    }
    uv_mutex_unlock(&s->mu);
}

/* cg__bans_store_start: see bans_file.h. */
int cg__bans_store_start(const char *path, cg__bans *b, cg__bans_store **out, char *err,
                         size_t errlen)
{
    cg__bans_store *s = calloc(1, sizeof *s);
    size_t pl = strlen(path);
    if (s == NULL || (s->path = malloc(pl + 1)) == NULL) {
        free(s);
        snprintf(err, errlen, "%s: out of memory", path);
        return CG_ENOMEM;
    }
    memcpy(s->path, path, pl + 1);
    s->b = b;
    s->written = cg__bans_version(b);
    int rc = uv_mutex_init(&s->mu);
    if (rc == 0 && (rc = uv_cond_init(&s->work)) != 0)
        uv_mutex_destroy(&s->mu);
    if (rc == 0 && (rc = uv_cond_init(&s->done)) != 0) {
        uv_cond_destroy(&s->work);
        uv_mutex_destroy(&s->mu);
    }
    if (rc == 0 && (rc = uv_thread_create(&s->thread, writer, s)) != 0) {
        uv_cond_destroy(&s->done);
        uv_cond_destroy(&s->work);
        uv_mutex_destroy(&s->mu);
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot start the state file's writer: %s", path,
                 uv_strerror(rc));
        free(s->path);
        free(s);
        return CG_ESYS;
    }
    *out = s;
    return 0;
}

/* cg__bans_store_sync: see bans_file.h. */
int cg__bans_store_sync(cg__bans_store *s, uint64_t version, char *err, size_t errlen)
{
    int rc = 0;
    uv_mutex_lock(&s->mu);
    if (s->written < version) {
        uint64_t mine = s->started;
        s->pending = true;
        uv_cond_signal(&s->work);
        while (s->written < version && s->fail_seq <= mine && s->finished <= mine)
            uv_cond_wait(&s->done, &s->mu);
        if (s->written < version) {
            rc = CG_EIO;
            snprintf(err, errlen, "%s",
                     s->fail_seq > mine ? s->fail : "the table never reached that version");
        }
    }
    uv_mutex_unlock(&s->mu);
    return rc;
}

/* cg__bans_store_kick: see bans_file.h. */
void cg__bans_store_kick(cg__bans_store *s)
{
    uv_mutex_lock(&s->mu);
    s->pending = true;
    uv_cond_signal(&s->work);
    uv_mutex_unlock(&s->mu);
}

/* cg__bans_store_stop: see bans_file.h. */
void cg__bans_store_stop(cg__bans_store *s)
{
    if (s == NULL)
        return;
    uv_mutex_lock(&s->mu);
    s->stop = true;
    uv_cond_signal(&s->work);
    uv_mutex_unlock(&s->mu);
    uv_thread_join(&s->thread);
    uv_cond_destroy(&s->done);
    uv_cond_destroy(&s->work);
    uv_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}
